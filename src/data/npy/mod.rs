//! NumPy `.npy` files: the DeepLense release layout and the oracle goldens.
//!
//! Reading accepts float and integer arrays of any shape (converted to f64);
//! writing produces little-endian float64 arrays, as the DeepLense release has.

use crate::{Error, Result};
use npyz::{DType, TypeChar, WriterBuilder};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

pub mod cutouts;

/// An n-dimensional array read from a `.npy` file, C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f64>,
}

/// numpy's own bound on the header it reads (`max_header_size`, numpy >= 1.24).
const MAX_HEADER_BYTES: usize = 10_000;

/// How deep a header may nest brackets: a plain array's nests 2 (the dict and its
/// shape tuple); structured dtypes nest more, and lensmae reads none.
const MAX_HEADER_NESTING: usize = 3;

/// An `.npy` file's header: where the data starts, and the header's text (a
/// Python dict literal).
struct Header {
    data_start: usize,
    text: String,
}

impl Header {
    /// Whether it declares numpy's object dtype `|O` (pickled Python objects).
    fn is_object_array(&self) -> bool {
        self.text.contains("'|O'")
    }
}

/// The file's header, checked; `None` when the file does not start as an `.npy`
/// file does (npyz then says what is wrong). Refuses a header that npyz's parser
/// should not see: longer than numpy reads, or nesting brackets deeper than a
/// plain array's. Why: npyz parses the header's Python literal with a
/// backtracking grammar whose time grows 2.5-3.5x with every unclosed bracket (a
/// fuzz campaign's input; 12 nested `{` took 3 s, 15 took 63 s, and a header of a
/// few hundred bytes could hold a hundred).
fn read_header(path: &Path) -> Result<Option<Header>> {
    let err = |message: String| Error::Npy { path: path.to_path_buf(), message };
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, (12 + MAX_HEADER_BYTES) as u64), &mut head)
        })
        .map_err(|e| Error::io(path, e))?;
    let (start, len) = match (head.get(..6), head.get(6)) {
        (Some(b"\x93NUMPY"), Some(1)) if head.len() >= 10 => (10, u16::from_le_bytes([head[8], head[9]]) as usize),
        (Some(b"\x93NUMPY"), Some(2 | 3)) if head.len() >= 12 => {
            (12, u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize)
        }
        _ => return Ok(None),
    };
    if len > MAX_HEADER_BYTES {
        return Err(err(format!("the header declares {len} bytes; numpy itself reads at most {MAX_HEADER_BYTES}")));
    }
    let header = &head[start.min(head.len())..(start + len).min(head.len())];
    let (mut depth, mut quote, mut escaped) = (0usize, None, false);
    for &b in header {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => quote = Some(b),
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(err(format!(
                        "the header nests brackets more than {MAX_HEADER_NESTING} deep (a plain array's nests 2)"
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(Some(Header { data_start: start + len, text: String::from_utf8_lossy(header).into_owned() }))
}

/// Read a numeric `.npy` file into f64.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    read_numeric(path, read_header(path)?.as_ref())
}

/// [`read_npy`] after its header was read and checked.
fn read_numeric(path: &Path, header: Option<&Header>) -> Result<NpyArray> {
    let err = |message: String| Error::Npy { path: path.to_path_buf(), message };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| {
        if header.is_some_and(Header::is_object_array) {
            err("a pickled object array (like a DeepLense axion [image, m_a] file), not a numeric array".into())
        } else {
            err(e.to_string())
        }
    })?;
    if npy.order() != npyz::Order::C {
        return Err(err("Fortran-ordered arrays are not supported; save with order='C'".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let DType::Plain(ts) = &dtype else {
        return Err(err(format!("unsupported dtype {}", dtype.descr())));
    };
    let data = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 8) => npy.into_vec::<f64>(),
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Float, 2) => npy.into_vec::<half::f16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 8) => npy.into_vec::<i64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        (TypeChar::Int, 4) => npy.into_vec::<i32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 2) => npy.into_vec::<i16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 1) => npy.into_vec::<i8>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 1) => npy.into_vec::<u8>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 2) => npy.into_vec::<u16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 4) => npy.into_vec::<u32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 8) => npy.into_vec::<u64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        _ => return Err(err(format!("unsupported dtype {ts}"))),
    }
    .map_err(|e| err(e.to_string()))?;
    Ok(NpyArray { shape, data })
}

/// Read a `.npy` image, including the DeepLense release's pickled object arrays
/// `[image, m_a]`: returns the (first) numeric array and the (first) float found
/// beside it, if any.
pub fn read_npy_image(path: &Path) -> Result<(NpyArray, Option<f64>)> {
    let header = match read_header(path)? {
        Some(header) if header.is_object_array() => header,
        header => return Ok((read_numeric(path, header.as_ref())?, None)),
    };
    let err = |message: String| Error::Npy { path: path.to_path_buf(), message };
    // Read whole to unpickle, bounded by the largest cutout lensmae reads (as
    // float64) and a megabyte of pickle around it.
    let largest = (crate::data::fits::cutouts::MAX_CUTOUT_PIXELS * 8 + (1 << 20)) as u64;
    let bytes = crate::data::read_whole_at_most(path, largest)?
        .map_err(|size| err(format!("a pickled object array of {size} bytes; the largest cutout takes {largest}")))?;
    let value = crate::data::pickle::unpickle(bytes.get(header.data_start..).unwrap_or_default()).map_err(&err)?;
    let (arrays, floats) = crate::data::pickle::arrays_and_floats(&value).map_err(&err)?;
    let image = arrays.into_iter().next().ok_or_else(|| err("the object array holds no numeric array".into()))?;
    Ok((NpyArray { shape: image.shape, data: image.data }, floats.first().copied()))
}

/// Write `data` (C order, `shape`) as a little-endian float64 `.npy` file.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::Shape(format!("{} values for shape {shape:?}", data.len())));
    }
    let io = |e: std::io::Error| Error::io(path, e);
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer =
        npyz::WriteOptions::new().default_dtype().shape(&shape64).writer(&mut out).begin_nd().map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)?;
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_f64(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.5);
        std::fs::write(&p, b"not an npy file").unwrap();
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy"), "{e}");
    }

    /// An `.npy` file of `header` (padded as numpy pads it) and 16 bytes of data.
    fn npy_with_header(path: &Path, header: &str) {
        npy_with_data(path, header, &[0; 16]);
    }

    fn npy_with_data(path: &Path, header: &str, data: &[u8]) {
        let mut header = header.as_bytes().to_vec();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn float16_and_every_integer_width_read_as_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let header = |descr: &str| format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}");
        // 1.5, -2, 65504 (float16's largest) and 2^-24 (its smallest subnormal).
        let f16: [u16; 4] = [0x3E00, 0xC000, 0x7BFF, 0x0001];
        npy_with_data(&p, &header("<f2"), &f16.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        assert_eq!(read_npy(&p).unwrap().data, vec![1.5, -2.0, 65504.0, 2f64.powi(-24)]);
        let values: [i64; 4] = [0, 1, 100, 127];
        for (descr, width) in [("|i1", 1), ("|u1", 1), ("<u4", 4), ("<u8", 8), ("<i8", 8)] {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()[..width].to_vec()).collect();
            npy_with_data(&p, &header(descr), &data);
            assert_eq!(read_npy(&p).unwrap().data, vec![0.0, 1.0, 100.0, 127.0], "{descr}");
        }
    }

    #[test]
    fn headers_nesting_deeper_than_a_plain_arrays_are_refused_before_npyz_parses_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("braces.npy");
        // npyz's parser took 3 s on these 12 unclosed braces (63 s on 15), then refused.
        let nested = format!("{{'descr':{} '<f4', 'fortran_order': False, 'shape': (2, 2), }}", "{".repeat(12));
        npy_with_header(&p, &nested);
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("braces.npy") && e.contains("nests brackets more than 3 deep"), "{e}");
        // Brackets inside the strings do not count; a plain header still reads.
        npy_with_header(&p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), '(((((': ']]]]', }");
        assert_eq!(read_npy(&p).unwrap().shape, vec![2, 2]);
        npy_with_header(
            &p,
            &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': '{}'}}", "a".repeat(10_000)),
        );
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("numpy itself reads at most 10000"), "{e}");
        // A pickled object array (the DeepLense axion layout) grown to a sparse 1 GiB
        // is refused by its size, not read.
        npy_with_header(&p, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }");
        std::fs::File::options().write(true).open(&p).unwrap().set_len(1 << 30).unwrap();
        let e = read_npy_image(&p).unwrap_err().to_string();
        assert!(e.contains("braces.npy") && e.contains("a pickled object array of 1073741824 bytes"), "{e}");
    }
}
