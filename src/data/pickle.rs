//! Just enough of Python's pickle format to read the DeepLense release's axion
//! files: `np.save` of an object array `[image, m_a]`, which numpy stores as a
//! pickle of ndarrays (`numpy.core.multiarray._reconstruct` + `BUILD` state) and
//! floats (Python floats or `numpy.core.multiarray.scalar`). Only data is built;
//! nothing is ever called or imported, so a hostile file can at worst be refused.

use std::collections::HashMap;

/// A value on the pickle machine's stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Py>),
    /// A list.
    List(Vec<Py>),
    /// A dict, as pairs.
    Dict(Vec<(Py, Py)>),
    /// A global `module.name` (never resolved).
    Global(String, String),
    /// `callable(*args)` with the state given by `BUILD`, recorded, not run.
    Object {
        /// What would be called.
        callable: Box<Py>,
        /// Its arguments.
        args: Box<Py>,
        /// The `__setstate__` argument.
        state: Option<Box<Py>>,
    },
}

/// A numeric n-dimensional array found in a pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, C order, as f64.
    pub data: Vec<f64>,
}

/// Run the pickle in `bytes` and return the value it builds.
pub fn unpickle(bytes: &[u8]) -> Result<Py, String> {
    let mut pos = 0usize;
    let mut stack: Vec<(Py, Option<u32>)> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Py> = HashMap::new();
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = bytes.get(*pos..*pos + n).ok_or("truncated pickle")?;
        *pos += n;
        Ok(s)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
    let pop = |stack: &mut Vec<(Py, Option<u32>)>| stack.pop().map(|v| v.0).ok_or("pickle stack underflow".to_string());
    let since_mark = |stack: &mut Vec<(Py, Option<u32>)>, marks: &mut Vec<usize>| -> Result<Vec<Py>, String> {
        let m = marks.pop().ok_or("pickle MARK missing")?;
        Ok(stack.drain(m..).map(|v| v.0).collect())
    };
    loop {
        let op = *take(&mut pos, 1)?.first().expect("one byte");
        match op {
            0x80 => {
                take(&mut pos, 1)?;
            }
            0x95 => {
                take(&mut pos, 8)?;
            }
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            0x8c | b'U' => {
                let n = take(&mut pos, 1)?[0] as usize;
                stack.push((Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()), None));
            }
            b'X' | b'T' => {
                let n = le(take(&mut pos, 4)?) as usize;
                stack.push((Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()), None));
            }
            0x8d => {
                let n = le(take(&mut pos, 8)?) as usize;
                stack.push((Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()), None));
            }
            b'C' => {
                let n = take(&mut pos, 1)?[0] as usize;
                stack.push((Py::Bytes(take(&mut pos, n)?.to_vec()), None));
            }
            b'B' => {
                let n = le(take(&mut pos, 4)?) as usize;
                stack.push((Py::Bytes(take(&mut pos, n)?.to_vec()), None));
            }
            0x8e => {
                let n = le(take(&mut pos, 8)?) as usize;
                stack.push((Py::Bytes(take(&mut pos, n)?.to_vec()), None));
            }
            0x94 | b'q' | b'r' => {
                let idx = match op {
                    0x94 => memo.len() as u32,
                    b'q' => take(&mut pos, 1)?[0] as u32,
                    _ => le(take(&mut pos, 4)?) as u32,
                };
                let top = stack.last_mut().ok_or("MEMOIZE on an empty stack")?;
                memo.insert(idx, top.0.clone());
                top.1 = Some(idx);
            }
            b'h' | b'j' => {
                let idx = if op == b'h' { take(&mut pos, 1)?[0] as u32 } else { le(take(&mut pos, 4)?) as u32 };
                let v = memo.get(&idx).ok_or(format!("pickle memo {idx} missing"))?.clone();
                stack.push((v, Some(idx)));
            }
            b'c' => {
                let mut line = || -> Result<String, String> {
                    let end = bytes[pos..].iter().position(|&b| b == b'\n').ok_or("truncated GLOBAL")?;
                    let s = String::from_utf8_lossy(&bytes[pos..pos + end]).into_owned();
                    pos += end + 1;
                    Ok(s)
                };
                let (module, name) = (line()?, line()?);
                stack.push((Py::Global(module, name), None));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Py::Str(m), Py::Str(n)) => stack.push((Py::Global(m, n), None)),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'J' => {
                stack.push((Py::Int(i32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes")) as i64), None))
            }
            b'K' => stack.push((Py::Int(take(&mut pos, 1)?[0] as i64), None)),
            b'M' => stack.push((Py::Int(le(take(&mut pos, 2)?) as i64), None)),
            0x8a => {
                let n = take(&mut pos, 1)?[0] as usize;
                let b = take(&mut pos, n)?;
                let mut v = le(b) as i64;
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push((Py::Int(v), None));
            }
            b'G' => stack.push((Py::Float(f64::from_be_bytes(take(&mut pos, 8)?.try_into().expect("8 bytes"))), None)),
            b'N' => stack.push((Py::None, None)),
            0x88 => stack.push((Py::Bool(true), None)),
            0x89 => stack.push((Py::Bool(false), None)),
            b')' => stack.push((Py::Tuple(vec![]), None)),
            b't' => {
                let items = since_mark(&mut stack, &mut marks)?;
                stack.push((Py::Tuple(items), None));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n).into_iter().map(|v| v.0).collect();
                stack.push((Py::Tuple(items), None));
            }
            b']' => stack.push((Py::List(vec![]), None)),
            b'l' => {
                let items = since_mark(&mut stack, &mut marks)?;
                stack.push((Py::List(items), None));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                push_items(&mut stack, &mut memo, vec![v])?;
            }
            b'e' => {
                let items = since_mark(&mut stack, &mut marks)?;
                push_items(&mut stack, &mut memo, items)?;
            }
            b'}' => stack.push((Py::Dict(vec![]), None)),
            b'u' | b's' => {
                let items = if op == b'u' {
                    since_mark(&mut stack, &mut marks)?
                } else {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                };
                let top = stack.last_mut().ok_or("SETITEMS on an empty stack")?;
                let Py::Dict(d) = &mut top.0 else { return Err("SETITEMS on a non-dict".into()) };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                if let Some(i) = top.1 {
                    memo.insert(i, top.0.clone());
                }
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push((Py::Object { callable: Box::new(callable), args: Box::new(args), state: None }, None));
            }
            b'b' => {
                let state = pop(&mut stack)?;
                let top = stack.last_mut().ok_or("BUILD on an empty stack")?;
                let Py::Object { state: s, .. } = &mut top.0 else { return Err("BUILD on a non-object".into()) };
                *s = Some(Box::new(state));
                if let Some(i) = top.1 {
                    memo.insert(i, top.0.clone());
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", pos - 1)),
        }
    }
}

fn push_items(stack: &mut [(Py, Option<u32>)], memo: &mut HashMap<u32, Py>, items: Vec<Py>) -> Result<(), String> {
    let top = stack.last_mut().ok_or("APPEND on an empty stack")?;
    let Py::List(list) = &mut top.0 else { return Err("APPEND on a non-list".into()) };
    list.extend(items);
    if let Some(i) = top.1 {
        memo.insert(i, top.0.clone());
    }
    Ok(())
}

/// `(kind, little-endian, item size)` of a numpy dtype object, e.g. `('f', true, 8)`.
fn dtype_of(dtype: &Py) -> Result<(char, bool, usize), String> {
    let Py::Object { args, state, .. } = dtype else { return Err("expected a numpy dtype".into()) };
    let Py::Tuple(a) = args.as_ref() else { return Err("bad dtype arguments".into()) };
    let Some(Py::Str(code)) = a.first() else { return Err("bad dtype code".into()) };
    let kind = code.chars().next().ok_or("empty dtype code")?;
    let size: usize = code[1..].parse().map_err(|_| format!("bad dtype code `{code}`"))?;
    let little = match state.as_deref() {
        Some(Py::Tuple(s)) => !matches!(s.get(1), Some(Py::Str(e)) if e == ">"),
        _ => true,
    };
    Ok((kind, little, size))
}

fn decode(kind: char, little: bool, size: usize, bytes: &[u8]) -> Result<Vec<f64>, String> {
    let chunks = bytes.chunks_exact(size);
    let word = |c: &[u8]| -> [u8; 8] {
        let mut w = [0u8; 8];
        if little {
            w[..size].copy_from_slice(c);
        } else {
            for (i, b) in c.iter().rev().enumerate() {
                w[i] = *b;
            }
        }
        w
    };
    Ok(match (kind, size) {
        ('f', 8) => chunks.map(|c| f64::from_le_bytes(word(c))).collect(),
        ('f', 4) => chunks.map(|c| f32::from_le_bytes(word(c)[..4].try_into().expect("4")) as f64).collect(),
        ('i', 8) => chunks.map(|c| i64::from_le_bytes(word(c)) as f64).collect(),
        ('i', 4) => chunks.map(|c| i32::from_le_bytes(word(c)[..4].try_into().expect("4")) as f64).collect(),
        (k, s) => return Err(format!("unsupported numpy dtype {k}{s}")),
    })
}

/// The bytes of a `bytes` value; protocol-2 pickles write them as
/// `_codecs.encode(text, 'latin1')`, which is undone here.
fn bytes_of(v: &Py) -> Option<Vec<u8>> {
    match v {
        Py::Bytes(b) => Some(b.clone()),
        Py::Object { callable, args, .. } => match (callable.as_ref(), args.as_ref()) {
            (Py::Global(m, n), Py::Tuple(a)) if m == "_codecs" && n == "encode" => match a.as_slice() {
                [Py::Str(text), Py::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                    text.chars().map(|c| u8::try_from(c as u32).ok()).collect()
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The numeric arrays and floats inside a pickled value, in order (an object
/// array `[image, m_a]` gives one array and one float).
pub fn arrays_and_floats(v: &Py) -> Result<(Vec<PickledArray>, Vec<f64>), String> {
    let (mut arrays, mut floats) = (Vec::new(), Vec::new());
    collect(v, &mut arrays, &mut floats)?;
    Ok((arrays, floats))
}

fn collect(v: &Py, arrays: &mut Vec<PickledArray>, floats: &mut Vec<f64>) -> Result<(), String> {
    match v {
        Py::Float(f) => floats.push(*f),
        Py::List(items) | Py::Tuple(items) => {
            for item in items {
                collect(item, arrays, floats)?;
            }
        }
        Py::Object { callable, args, state } => match callable.as_ref() {
            Py::Global(m, n) if m.starts_with("numpy") && n == "_reconstruct" => {
                let Some(Py::Tuple(s)) = state.as_deref() else { return Err("ndarray without state".into()) };
                let [_, Py::Tuple(shape), dtype, _, data] = s.as_slice() else {
                    return Err("bad ndarray state".into());
                };
                let shape: Vec<usize> = shape
                    .iter()
                    .map(|d| if let Py::Int(i) = d { Ok(*i as usize) } else { Err("bad shape".to_string()) })
                    .collect::<Result<_, _>>()?;
                let (kind, little, size) = dtype_of(dtype)?;
                match (kind, data) {
                    ('O', Py::List(items)) => {
                        for item in items {
                            collect(item, arrays, floats)?;
                        }
                    }
                    (_, payload) if bytes_of(payload).is_some() => {
                        let data = decode(kind, little, size, &bytes_of(payload).expect("checked"))?;
                        if data.len() != shape.iter().product::<usize>() {
                            return Err("ndarray data does not fill its shape".into());
                        }
                        arrays.push(PickledArray { shape, data });
                    }
                    _ => return Err("unsupported ndarray payload".into()),
                }
            }
            Py::Global(m, n) if m.starts_with("numpy") && n == "scalar" => {
                let Py::Tuple(a) = args.as_ref() else { return Err("bad numpy scalar".into()) };
                let [dtype, payload, ..] = a.as_slice() else { return Err("bad numpy scalar".into()) };
                let b = bytes_of(payload).ok_or("bad numpy scalar payload")?;
                let (kind, little, size) = dtype_of(dtype)?;
                floats.extend(decode(kind, little, size, &b)?);
            }
            other => return Err(format!("unsupported pickled object {other:?}")),
        },
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_or_unknown_pickles_are_errors_not_panics() {
        assert!(unpickle(b"").is_err());
        assert!(unpickle(b"\x80\x02K").is_err()); // truncated
        assert!(unpickle(b"\x80\x02\xffK\x01.").unwrap_err().contains("0xff"));
        assert!(unpickle(b"b.").is_err()); // BUILD on an empty stack
        assert_eq!(unpickle(b"\x80\x02K\x07.").unwrap(), Py::Int(7));
        assert_eq!(
            unpickle(b"(K\x01G?\xf0\x00\x00\x00\x00\x00\x00t.").unwrap(),
            Py::Tuple(vec![Py::Int(1), Py::Float(1.0)])
        );
    }
}
