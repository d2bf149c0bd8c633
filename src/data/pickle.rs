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

/// Deepest nesting of containers accepted: numpy's object arrays are a few levels
/// deep, and deeper values would recurse (clone, drop, walk) without bound.
const MAX_DEPTH: u32 = 64;

/// Values (nodes, and bytes of strings / 8) a pickle of `len` bytes may build,
/// memo copies included: linear in the input, so a few hundred bytes whose memo
/// doubles at each step are refused instead of filling the memory.
fn budget_for(len: usize) -> usize {
    64 * len + (1 << 20)
}

/// A value on the machine's stack: the memo index it was stored under, and how
/// deeply containers nest inside it.
struct Item {
    value: Py,
    memo: Option<u32>,
    depth: u32,
}

impl Item {
    fn new(value: Py) -> Item {
        Item { value, memo: None, depth: 0 }
    }
}

/// Nodes of `v`, with strings and bytes counted by eighths of their length.
fn weight(v: &Py) -> usize {
    1 + match v {
        Py::Str(s) => s.len() / 8,
        Py::Bytes(b) => b.len() / 8,
        Py::Tuple(items) | Py::List(items) => items.iter().map(weight).sum(),
        Py::Dict(pairs) => pairs.iter().map(|(k, v)| weight(k) + weight(v)).sum(),
        Py::Global(m, n) => (m.len() + n.len()) / 8,
        Py::Object { callable, args, state } => weight(callable) + weight(args) + state.as_deref().map_or(0, weight),
        _ => 0,
    }
}

/// The pickle machine's state.
struct Machine {
    stack: Vec<Item>,
    marks: Vec<usize>,
    /// Memo entries as stored, with their depth. An entry whose value is still on
    /// the stack and has changed since is absent here and read from the stack, at
    /// the position `live` gives (items below the top never move).
    memo: HashMap<u32, (Py, u32)>,
    live: HashMap<u32, usize>,
    /// Indices stored so far (`MEMOIZE` numbers entries by their count).
    memo_count: u32,
    built: usize,
    budget: usize,
}

impl Machine {
    /// Pays for a copy of `v`, or refuses it.
    fn charge(&mut self, v: &Py) -> Result<(), String> {
        self.built += weight(v);
        if self.built > self.budget {
            return Err(format!("pickle builds more than {} values from its bytes: refused", self.budget));
        }
        Ok(())
    }

    fn push(&mut self, value: Py) {
        self.stack.push(Item::new(value));
    }

    /// Pops an item; a memoised one that changed since it was stored is stored as
    /// it is now (once, when it leaves the stack).
    fn pop_item(&mut self) -> Result<Item, String> {
        let item = self.stack.pop().ok_or("pickle stack underflow")?;
        if let Some(idx) = item.memo {
            if self.live.get(&idx) == Some(&self.stack.len()) {
                self.live.remove(&idx);
                self.charge(&item.value)?;
                self.memo.insert(idx, (item.value.clone(), item.depth));
            }
        }
        Ok(item)
    }

    fn pop(&mut self) -> Result<Py, String> {
        Ok(self.pop_item()?.value)
    }

    /// The items since the last MARK, with their greatest depth.
    fn since_mark(&mut self) -> Result<(Vec<Py>, u32), String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK beyond the stack".into());
        }
        let mut items = Vec::with_capacity(self.stack.len() - m);
        let mut depth = 0;
        while self.stack.len() > m {
            let item = self.pop_item()?;
            depth = depth.max(item.depth);
            items.push(item.value);
        }
        items.reverse();
        Ok((items, depth))
    }

    /// Pushes a container holding items of nesting `inner`.
    fn push_container(&mut self, value: Py, inner: u32) -> Result<(), String> {
        let depth = inner + 1;
        if depth > MAX_DEPTH {
            return Err(format!("pickle nests containers deeper than {MAX_DEPTH}: refused"));
        }
        self.stack.push(Item { value, memo: None, depth });
        Ok(())
    }

    /// The top item, about to change: its memo entry (if any) now lives on the stack.
    fn top_for_update(&mut self, what: &str) -> Result<&mut Item, String> {
        let position = self.stack.len().checked_sub(1).ok_or(format!("{what} on an empty stack"))?;
        let top = &mut self.stack[position];
        if let Some(idx) = top.memo {
            self.memo.remove(&idx);
            self.live.insert(idx, position);
        }
        Ok(top)
    }

    fn append(&mut self, items: Vec<Py>, inner: u32) -> Result<(), String> {
        let top = self.top_for_update("APPEND")?;
        let Py::List(list) = &mut top.value else { return Err("APPEND on a non-list".into()) };
        list.extend(items);
        top.depth = top.depth.max(inner + 1);
        if top.depth > MAX_DEPTH {
            return Err(format!("pickle nests containers deeper than {MAX_DEPTH}: refused"));
        }
        Ok(())
    }

    fn memoize(&mut self, idx: u32) -> Result<(), String> {
        let position = self.stack.len().checked_sub(1).ok_or("MEMOIZE on an empty stack")?;
        // Stored again under a new index: the old entry keeps the value as it is now.
        if let Some(old) = self.stack[position].memo {
            if self.live.get(&old) == Some(&position) {
                self.live.remove(&old);
                let (value, depth) = (self.stack[position].value.clone(), self.stack[position].depth);
                self.charge(&value)?;
                self.memo.insert(old, (value, depth));
            }
        }
        let top = &self.stack[position];
        let (value, depth) = (top.value.clone(), top.depth);
        self.charge(&value)?;
        self.memo.insert(idx, (value, depth));
        self.memo_count += 1;
        self.stack.last_mut().expect("checked").memo = Some(idx);
        Ok(())
    }

    fn get(&mut self, idx: u32) -> Result<(), String> {
        let (value, depth) = match (self.memo.get(&idx), self.live.get(&idx)) {
            (Some((v, d)), _) => (v.clone(), *d),
            (None, Some(&position)) => match self.stack.get(position) {
                Some(item) if item.memo == Some(idx) => (item.value.clone(), item.depth),
                _ => return Err(format!("pickle memo {idx} missing")),
            },
            (None, None) => return Err(format!("pickle memo {idx} missing")),
        };
        self.charge(&value)?;
        self.stack.push(Item { value, memo: Some(idx), depth });
        Ok(())
    }
}

/// Run the pickle in `bytes` and return the value it builds. Its cost is bounded
/// by its length: copies through the memo are counted against a budget linear in
/// the input, nesting is limited, and every length is checked against the bytes
/// there before anything is read.
pub fn unpickle(bytes: &[u8]) -> Result<Py, String> {
    let mut pos = 0usize;
    let mut m = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        live: HashMap::new(),
        memo_count: 0,
        built: 0,
        budget: budget_for(bytes.len()),
    };
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = pos.checked_add(n).ok_or("truncated pickle")?;
        let s = bytes.get(*pos..end).ok_or("truncated pickle")?;
        *pos = end;
        Ok(s)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
    loop {
        let op = *take(&mut pos, 1)?.first().expect("one byte");
        match op {
            0x80 => {
                take(&mut pos, 1)?;
            }
            0x95 => {
                take(&mut pos, 8)?;
            }
            b'.' => return m.pop(),
            b'(' => m.marks.push(m.stack.len()),
            0x8c | b'U' => {
                let n = take(&mut pos, 1)?[0] as usize;
                m.push(Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()));
            }
            b'X' | b'T' => {
                let n = le(take(&mut pos, 4)?) as usize;
                m.push(Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()));
            }
            0x8d => {
                let n = usize::try_from(le(take(&mut pos, 8)?)).map_err(|_| "truncated pickle")?;
                m.push(Py::Str(String::from_utf8_lossy(take(&mut pos, n)?).into_owned()));
            }
            b'C' => {
                let n = take(&mut pos, 1)?[0] as usize;
                m.push(Py::Bytes(take(&mut pos, n)?.to_vec()));
            }
            b'B' => {
                let n = le(take(&mut pos, 4)?) as usize;
                m.push(Py::Bytes(take(&mut pos, n)?.to_vec()));
            }
            0x8e => {
                let n = usize::try_from(le(take(&mut pos, 8)?)).map_err(|_| "truncated pickle")?;
                m.push(Py::Bytes(take(&mut pos, n)?.to_vec()));
            }
            0x94 | b'q' | b'r' => {
                let idx = match op {
                    0x94 => m.memo_count,
                    b'q' => take(&mut pos, 1)?[0] as u32,
                    _ => le(take(&mut pos, 4)?) as u32,
                };
                m.memoize(idx)?;
            }
            b'h' | b'j' => {
                let idx = if op == b'h' { take(&mut pos, 1)?[0] as u32 } else { le(take(&mut pos, 4)?) as u32 };
                m.get(idx)?;
            }
            b'c' => {
                let mut line = || -> Result<String, String> {
                    let end = bytes[pos..].iter().position(|&b| b == b'\n').ok_or("truncated GLOBAL")?;
                    let s = String::from_utf8_lossy(&bytes[pos..pos + end]).into_owned();
                    pos += end + 1;
                    Ok(s)
                };
                let (module, name) = (line()?, line()?);
                m.push(Py::Global(module, name));
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Py::Str(a), Py::Str(b)) => m.push(Py::Global(a, b)),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'J' => m.push(Py::Int(i32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4 bytes")) as i64)),
            b'K' => m.push(Py::Int(take(&mut pos, 1)?[0] as i64)),
            b'M' => m.push(Py::Int(le(take(&mut pos, 2)?) as i64)),
            0x8a => {
                let n = take(&mut pos, 1)?[0] as usize;
                let b = take(&mut pos, n)?;
                let mut v = le(b) as i64;
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.push(Py::Int(v));
            }
            b'G' => m.push(Py::Float(f64::from_be_bytes(take(&mut pos, 8)?.try_into().expect("8 bytes")))),
            b'N' => m.push(Py::None),
            0x88 => m.push(Py::Bool(true)),
            0x89 => m.push(Py::Bool(false)),
            b')' => m.push_container(Py::Tuple(vec![]), 0)?,
            b't' => {
                let (items, inner) = m.since_mark()?;
                m.push_container(Py::Tuple(items), inner)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let mut items = Vec::with_capacity(n);
                let mut inner = 0;
                for _ in 0..n {
                    let item = m.pop_item()?;
                    inner = inner.max(item.depth);
                    items.push(item.value);
                }
                items.reverse();
                m.push_container(Py::Tuple(items), inner)?;
            }
            b']' => m.push_container(Py::List(vec![]), 0)?,
            b'l' => {
                let (items, inner) = m.since_mark()?;
                m.push_container(Py::List(items), inner)?;
            }
            b'a' => {
                let item = m.pop_item()?;
                m.append(vec![item.value], item.depth)?;
            }
            b'e' => {
                let (items, inner) = m.since_mark()?;
                m.append(items, inner)?;
            }
            b'}' => m.push_container(Py::Dict(vec![]), 0)?,
            b'u' | b's' => {
                let (items, inner) = if op == b'u' {
                    m.since_mark()?
                } else {
                    let v = m.pop_item()?;
                    let k = m.pop_item()?;
                    let inner = v.depth.max(k.depth);
                    (vec![k.value, v.value], inner)
                };
                let top = m.top_for_update("SETITEMS")?;
                let Py::Dict(d) = &mut top.value else { return Err("SETITEMS on a non-dict".into()) };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                top.depth = top.depth.max(inner + 1);
                if top.depth > MAX_DEPTH {
                    return Err(format!("pickle nests containers deeper than {MAX_DEPTH}: refused"));
                }
            }
            b'R' | 0x81 => {
                let args = m.pop_item()?;
                let callable = m.pop_item()?;
                let inner = args.depth.max(callable.depth);
                let object = Py::Object { callable: Box::new(callable.value), args: Box::new(args.value), state: None };
                m.push_container(object, inner)?;
            }
            b'b' => {
                let state = m.pop_item()?;
                let top = m.top_for_update("BUILD")?;
                let Py::Object { state: s, .. } = &mut top.value else { return Err("BUILD on a non-object".into()) };
                *s = Some(Box::new(state.value));
                top.depth = top.depth.max(state.depth + 1);
                if top.depth > MAX_DEPTH {
                    return Err(format!("pickle nests containers deeper than {MAX_DEPTH}: refused"));
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", pos - 1)),
        }
    }
}

/// `(kind, little-endian, item size)` of a numpy dtype object, e.g. `('f', true, 8)`.
fn dtype_of(dtype: &Py) -> Result<(char, bool, usize), String> {
    let Py::Object { args, state, .. } = dtype else { return Err("expected a numpy dtype".into()) };
    let Py::Tuple(a) = args.as_ref() else { return Err("bad dtype arguments".into()) };
    let Some(Py::Str(code)) = a.first() else { return Err("bad dtype code".into()) };
    let kind = code.chars().next().ok_or("empty dtype code")?;
    let size: usize = code[kind.len_utf8()..].parse().map_err(|_| format!("bad dtype code `{code}`"))?;
    let little = match state.as_deref() {
        Some(Py::Tuple(s)) => !matches!(s.get(1), Some(Py::Str(e)) if e == ">"),
        _ => true,
    };
    Ok((kind, little, size))
}

fn decode(kind: char, little: bool, size: usize, bytes: &[u8]) -> Result<Vec<f64>, String> {
    if !matches!((kind, size), ('f' | 'i', 4 | 8)) {
        return Err(format!("unsupported numpy dtype {kind}{size}"));
    }
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
                    .map(|d| match d {
                        Py::Int(i) => usize::try_from(*i).map_err(|_| format!("bad shape dimension {i}")),
                        _ => Err("bad shape".to_string()),
                    })
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
                        if Some(data.len()) != shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
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
        // Lengths beyond the input, however large, are a truncation.
        assert!(unpickle(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff.").unwrap_err().contains("truncated"));
    }

    #[test]
    fn hostile_pickles_cost_time_and_memory_in_proportion_to_their_size() {
        // A memo that doubles at each step: 40 steps would build 2^40 values.
        let mut doubling = b"\x80\x02]q\x00".to_vec();
        for k in 0..40u8 {
            doubling.extend([b'h', k, b'h', k, 0x86, b'q', k + 1]);
        }
        doubling.push(b'.');
        assert!(unpickle(&doubling).unwrap_err().contains("refused"));
        // 100,000 nested lists: refused, no stack overflow building or dropping them.
        let mut nested = vec![b'('; 100_000];
        nested.extend(vec![b'l'; 100_000]);
        nested.push(b'.');
        assert!(unpickle(&nested).unwrap_err().contains("deeper than"));
        // 200,000 appends to a memoised list: linear, not a copy of the list per
        // append (which took minutes here).
        let mut appends = b"\x80\x02]q\x00".to_vec();
        for _ in 0..200_000 {
            appends.extend(b"K\x01a");
        }
        appends.extend(b"h\x00.");
        let Py::List(items) = unpickle(&appends).unwrap() else { panic!("a list") };
        assert_eq!(items.len(), 200_000);
    }

    #[test]
    fn a_dtype_of_size_zero_or_a_foreign_code_is_an_error() {
        let array = |code: &str| Py::Object {
            callable: Box::new(Py::Global("numpy.core.multiarray".into(), "_reconstruct".into())),
            args: Box::new(Py::Tuple(vec![])),
            state: Some(Box::new(Py::Tuple(vec![
                Py::Int(1),
                Py::Tuple(vec![Py::Int(2)]),
                Py::Object {
                    callable: Box::new(Py::Global("numpy".into(), "dtype".into())),
                    args: Box::new(Py::Tuple(vec![Py::Str(code.into())])),
                    state: None,
                },
                Py::Bool(false),
                Py::Bytes(vec![0; 16]),
            ]))),
        };
        assert!(arrays_and_floats(&array("f0")).unwrap_err().contains("f0"));
        assert!(arrays_and_floats(&array("é8")).is_err());
        assert_eq!(arrays_and_floats(&array("f8")).unwrap().0[0].data, vec![0.0, 0.0]);
    }
}
