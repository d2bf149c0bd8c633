//! A bounded walk over a Parquet file's Thrift structures (the footer and every
//! page header), run before the parquet crate decodes them.
//!
//! The crate trusts declared sizes in two places a hostile file controls: its
//! Thrift skipper steps over a declared list of booleans without consuming a byte
//! per element (a 12 KB mutated file kept it busy for 30 s counting to 2^31), and
//! its stream reader reserves a declared binary length before reading it. Each
//! check here makes the crate's own walk linear in the file: every collection
//! declares no more elements than there are bytes left, every binary fits in the
//! bytes left, nesting stops at 64, and collections of booleans (which no Parquet
//! footer or page header holds) are refused because the two walks would read them
//! differently.
//!
//! Pages are bounded too: a declared uncompressed size over [`MAX_PAGE_BYTES`] is
//! refused, and pages of the codecs the crate inflates without a limit (gzip,
//! brotli, LZ4 frames) are inflated here first, stopping one byte past their
//! declared size (a kilobyte of brotli can declare itself small and inflate to
//! gigabytes).

use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Random access to a file's bytes: a local file, or a remote object's cache.
pub trait ReadAt {
    /// Bytes in the file.
    fn size(&self) -> std::io::Result<u64>;
    /// Fills `buf` from byte `at`; an error past the end.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }
}

/// Nesting the walk follows (the parquet crate's own skip limit).
const MAX_DEPTH: u32 = 64;
/// A page header larger than this is refused (writers put kilobytes there).
const MAX_PAGE_HEADER: u64 = 64 << 20;
/// The largest page the readers inflate: one 8192 x 8192 float64 stamp (the
/// largest image they accept) with room to spare.
pub const MAX_PAGE_BYTES: u64 = 1 << 30;
/// A footer larger than this is refused (HATS partitions' footers are kilobytes;
/// a remote object's size is only what its server claims).
const MAX_FOOTER_BYTES: u64 = 256 << 20;
/// The first read of a page header; grown while the header runs past it.
const FIRST_WINDOW: u64 = 1 << 10;

// Compact-protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// Why a walk stopped: the structure is malformed, or it runs past the bytes read.
#[derive(Debug)]
enum Stop {
    Malformed(String),
    OutOfBytes,
}

type Walk<T> = std::result::Result<T, Stop>;

fn malformed<T>(why: impl Into<String>) -> Walk<T> {
    Err(Stop::Malformed(why.into()))
}

/// A cursor over compact-protocol bytes.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Compact<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn left(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn byte(&mut self) -> Walk<u8> {
        let b = *self.bytes.get(self.at).ok_or(Stop::OutOfBytes)?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Walk<()> {
        if n > self.left() {
            return Err(Stop::OutOfBytes);
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Walk<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        malformed("a Thrift varint longer than 10 bytes")
    }

    fn zigzag(&mut self) -> Walk<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A declared element count, refused when the bytes left cannot hold it (every
    /// element takes at least `bytes_each`).
    fn count(&mut self, declared: u64, bytes_each: u64, what: &str) -> Walk<u64> {
        if declared > i32::MAX as u64 {
            return malformed(format!("a Thrift {what} declares {declared} elements"));
        }
        if declared.saturating_mul(bytes_each) > self.left() {
            // Past the end of what was read: a larger window may hold them.
            return Err(Stop::OutOfBytes);
        }
        Ok(declared)
    }

    fn element_type(&self, code: u8, what: &str) -> Walk<u8> {
        match code {
            BOOL_TRUE | BOOL_FALSE => {
                malformed(format!("a Thrift {what} of booleans, which Parquet metadata never holds"))
            }
            BYTE..=UUID => Ok(code),
            other => malformed(format!("a Thrift {what} of unknown element type {other}")),
        }
    }

    /// Steps over one value of type `kind` (a boolean struct field has its value
    /// in the field header: no bytes).
    fn value(&mut self, kind: u8, depth: u32) -> Walk<()> {
        if depth > MAX_DEPTH {
            return malformed(format!("Thrift structures nested deeper than {MAX_DEPTH}"));
        }
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.byte().map(drop),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip(8),
            UUID => self.skip(16),
            BINARY => {
                let len = self.varint()?;
                self.skip(len)
            }
            LIST | SET => {
                let what = if kind == LIST { "list" } else { "set" };
                let header = self.byte()?;
                if header == 0 {
                    return Ok(());
                }
                let element = self.element_type(header & 0x0f, what)?;
                let short = u64::from(header >> 4);
                let declared = if short == 15 { self.varint()? } else { short };
                for _ in 0..self.count(declared, 1, what)? {
                    self.value(element, depth + 1)?;
                }
                Ok(())
            }
            MAP => {
                let declared = self.varint()?;
                if declared == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                let key = self.element_type(kinds >> 4, "map")?;
                let val = self.element_type(kinds & 0x0f, "map")?;
                for _ in 0..self.count(declared, 2, "map")? {
                    self.value(key, depth + 1)?;
                    self.value(val, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => self.structure(depth + 1, |_, _, _| Ok(false)).map(drop),
            other => malformed(format!("unknown Thrift type {other}")),
        }
    }

    /// Walks a struct; `field` is offered each field (id, type) first and returns
    /// whether it consumed the value itself.
    fn structure(&mut self, depth: u32, mut field: impl FnMut(i16, u8, &mut Self) -> Walk<bool>) -> Walk<()> {
        if depth > MAX_DEPTH {
            return malformed(format!("Thrift structures nested deeper than {MAX_DEPTH}"));
        }
        let mut last_id: i16 = 0;
        loop {
            let header = self.byte()?;
            let kind = header & 0x0f;
            if kind == 0 {
                return Ok(());
            }
            let delta = i16::from(header >> 4);
            let id = if delta == 0 { self.zigzag()? as i16 } else { last_id.wrapping_add(delta) };
            last_id = id;
            if !field(id, kind, self)? {
                self.value(kind, depth)?;
            }
        }
    }
}

/// Checks a file's footer and returns it decoded.
pub fn check_footer(file: &impl ReadAt) -> std::result::Result<ParquetMetaData, String> {
    let size = file.size().map_err(|e| e.to_string())?;
    if size < 12 {
        return Err(format!("{size} bytes is too short for a Parquet file"));
    }
    let mut tail = [0u8; 8];
    file.read_exact_at(&mut tail, size - 8).map_err(|e| e.to_string())?;
    if &tail[2..] == b"ARROW1" {
        return Err("an Arrow IPC (Feather) file, not Parquet: lensmae reads those from local files \
                    (copy it to disk), not inside a folder of Parquet files or a catalogue, nor from a URL"
            .into());
    }
    if &tail[4..] != b"PAR1" {
        return Err("the file does not end with Parquet's `PAR1` marker".into());
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len > size - 12 {
        return Err(format!("the footer declares {footer_len} bytes in a file of {size}"));
    }
    if footer_len > MAX_FOOTER_BYTES {
        return Err(format!(
            "the footer declares {footer_len} bytes (the readers take footers up to {MAX_FOOTER_BYTES})"
        ));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.read_exact_at(&mut footer, size - 8 - footer_len).map_err(|e| e.to_string())?;
    match Compact::new(&footer).structure(0, |_, _, _| Ok(false)) {
        Ok(()) => {}
        Err(Stop::Malformed(why)) => return Err(format!("footer: {why}")),
        Err(Stop::OutOfBytes) => return Err("footer: a value runs past the footer's end".into()),
    }
    parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| e.to_string())
}

/// The byte range of every column chunk (dictionary page first), by row group
/// then column; `Err` for a negative offset or length.
pub fn column_chunk_ranges(
    metadata: &ParquetMetaData,
    size: u64,
) -> std::result::Result<Vec<Vec<std::ops::Range<u64>>>, String> {
    metadata
        .row_groups()
        .iter()
        .enumerate()
        .map(|(g, group)| {
            group
                .columns()
                .iter()
                .map(|column| {
                    let start = column.dictionary_page_offset().unwrap_or_else(|| column.data_page_offset());
                    let length = column.compressed_size();
                    if start < 0 || length < 0 {
                        return Err(format!(
                            "row group {g}, column `{}`: a negative offset or length",
                            column.column_path().string()
                        ));
                    }
                    Ok((start as u64).min(size)..(start as u64).saturating_add(length as u64).min(size))
                })
                .collect()
        })
        .collect()
}

/// Checks every page header of the column chunks of the columns `wanted` (by
/// index) picks, in every row group of the decoded footer `metadata`.
pub fn check_column_pages(
    file: &impl ReadAt,
    metadata: &ParquetMetaData,
    wanted: &dyn Fn(usize) -> bool,
) -> std::result::Result<(), String> {
    let size = file.size().map_err(|e| e.to_string())?;
    let ranges = column_chunk_ranges(metadata, size)?;
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for (c, column) in group.columns().iter().enumerate() {
            if !wanted(c) {
                continue;
            }
            let where_ = || format!("row group {g}, column `{}`", column.column_path().string());
            let range = &ranges[g][c];
            check_pages(file, range.start, range.end, size, column.compression())
                .map_err(|why| format!("{}: {why}", where_()))?;
        }
    }
    Ok(())
}

/// What a page header declares.
#[derive(Default)]
struct PageSizes {
    compressed: Option<i64>,
    uncompressed: Option<i64>,
    /// Bytes of levels at the start of a version-2 page, never compressed.
    raw_levels: u64,
    /// A version-2 page whose values are not compressed either.
    values_raw: bool,
}

/// Walks the page headers of the chunk in `[start, end)`, each followed by its
/// declared compressed bytes, and bounds what each page inflates to.
fn check_pages(
    file: &impl ReadAt,
    mut at: u64,
    end: u64,
    size: u64,
    codec: Compression,
) -> std::result::Result<(), String> {
    let mut buffer = Vec::new();
    while at < end {
        let mut window = FIRST_WINDOW;
        let (header_len, sizes) = loop {
            let available = (size - at).min(window);
            buffer.resize(available as usize, 0);
            file.read_exact_at(&mut buffer, at).map_err(|e| e.to_string())?;
            let mut compact = Compact::new(&buffer);
            let mut sizes = PageSizes::default();
            let walked = compact.structure(0, |id, kind, c| {
                let slot = match (id, kind) {
                    (2, I32) => &mut sizes.uncompressed,
                    (3, I32) => &mut sizes.compressed,
                    // A version-2 data page: levels stored raw before the values.
                    (8, STRUCT) => {
                        c.structure(1, |id, kind, c| {
                            match (id, kind) {
                                (5 | 6, I32) => sizes.raw_levels += c.zigzag()?.max(0) as u64,
                                (7, BOOL_FALSE) => sizes.values_raw = true,
                                _ => return Ok(false),
                            }
                            Ok(true)
                        })?;
                        return Ok(true);
                    }
                    _ => return Ok(false),
                };
                *slot = Some(c.zigzag()?);
                Ok(true)
            });
            match walked {
                Ok(()) => break (compact.at as u64, sizes),
                Err(Stop::Malformed(why)) => return Err(format!("page header at byte {at}: {why}")),
                Err(Stop::OutOfBytes) if available < (size - at).min(MAX_PAGE_HEADER) => window *= 8,
                Err(Stop::OutOfBytes) => {
                    return Err(format!("page header at byte {at}: a value runs past the end of the file"))
                }
            }
        };
        let (compressed, uncompressed) = match (sizes.compressed, sizes.uncompressed) {
            (Some(c), Some(u)) if c >= 0 && u >= 0 => (c as u64, u as u64),
            // The crate stops at such a header too.
            _ => return Err(format!("page header at byte {at}: no valid page sizes")),
        };
        if uncompressed > MAX_PAGE_BYTES || compressed > MAX_PAGE_BYTES {
            return Err(format!(
                "page at byte {at} declares {compressed} bytes, {uncompressed} uncompressed (the readers take pages up to {MAX_PAGE_BYTES})"
            ));
        }
        let body = at + header_len;
        if inflates_without_limit(codec) && !sizes.values_raw && body + compressed <= size {
            let levels = sizes.raw_levels.min(compressed);
            let mut values = vec![0u8; (compressed - levels) as usize];
            file.read_exact_at(&mut values, body + levels).map_err(|e| e.to_string())?;
            check_inflated_size(&values, codec, uncompressed.saturating_sub(levels))
                .map_err(|why| format!("page at byte {at}: {why}"))?;
        }
        at = body + compressed;
    }
    Ok(())
}

fn inflates_without_limit(codec: Compression) -> bool {
    matches!(codec, Compression::GZIP(_) | Compression::BROTLI(_) | Compression::LZ4)
}

/// Inflates a page as the crate will, stopping one byte past its declared size.
/// Errors of the codec itself are left for the crate to report.
fn check_inflated_size(page: &[u8], codec: Compression, declared: u64) -> std::result::Result<(), String> {
    use std::io::Read;
    const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
    let decoder: Box<dyn Read + '_> = match codec {
        Compression::GZIP(_) => Box::new(flate2::read::MultiGzDecoder::new(page)),
        Compression::BROTLI(_) => Box::new(brotli::Decompressor::new(page, 4096)),
        // The crate reads Hadoop's framing (sizes declared, bounded) first and
        // falls back to LZ4 frames, which it inflates without a limit.
        Compression::LZ4 if page.starts_with(&LZ4_FRAME_MAGIC) => Box::new(lz4_flex::frame::FrameDecoder::new(page)),
        _ => return Ok(()),
    };
    let inflated = std::io::copy(&mut decoder.take(declared + 1), &mut std::io::sink()).unwrap_or(0);
    if inflated > declared {
        return Err(format!("the {codec:?} data inflates past the {declared} bytes its header declares"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(bytes: &[u8]) -> Walk<()> {
        Compact::new(bytes).structure(0, |_, _, _| Ok(false))
    }

    /// A file its server claims to be `size` bytes, ending with `tail`.
    struct Claimed {
        size: u64,
        tail: Vec<u8>,
    }

    impl ReadAt for Claimed {
        fn size(&self) -> std::io::Result<u64> {
            Ok(self.size)
        }

        fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
            let start = at.checked_sub(self.size - self.tail.len() as u64).ok_or(std::io::ErrorKind::Other)?;
            buf.copy_from_slice(&self.tail[start as usize..start as usize + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn a_footer_of_gigabytes_is_refused_before_it_is_read() {
        let mut tail = (3u32 << 30).to_le_bytes().to_vec();
        tail.extend_from_slice(b"PAR1");
        let why = check_footer(&Claimed { size: 1 << 40, tail }).unwrap_err();
        assert!(why.contains("declares 3221225472 bytes"), "{why}");
    }

    #[test]
    fn an_arrow_ipc_file_is_named_as_one() {
        let why = check_footer(&Claimed { size: 4096, tail: b"\0\0ARROW1".to_vec() }).unwrap_err();
        assert!(why.contains("an Arrow IPC (Feather) file, not Parquet"), "{why}");
    }

    #[test]
    fn a_list_of_two_billion_booleans_is_refused_at_once() {
        // field 1, type list; header: size in a varint (0xf_), element bool (1).
        let bytes = [0x19, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
        assert!(matches!(walk(&bytes), Err(Stop::Malformed(why)) if why.contains("booleans")));
    }

    #[test]
    fn a_map_of_booleans_is_refused_at_once() {
        // field 1, type map, 2^31 - 1 pairs of (bool, bool): the crate's skip of it
        // consumes no byte per pair (the campaign's 20-30 s input).
        let bytes = [0x1b, 0xff, 0xff, 0xff, 0xff, 0x07, 0x11, 0x00];
        assert!(matches!(walk(&bytes), Err(Stop::Malformed(why)) if why.contains("map of booleans")));
    }

    #[test]
    fn declared_sizes_beyond_the_bytes_left_are_out_of_bytes() {
        // field 1 list of i32, 1,000 elements, 2 bytes there.
        assert!(matches!(walk(&[0x19, 0xf5, 0xe8, 0x07, 0x02, 0x04]), Err(Stop::OutOfBytes)));
        // field 1 binary of 2^40 bytes.
        assert!(matches!(walk(&[0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00]), Err(Stop::OutOfBytes)));
    }

    #[test]
    fn well_formed_structures_are_walked_to_their_stop() {
        // {1: i32 7, 2: binary "ab", 3: list<i64>[1, 2], 4: struct{1: true}, 5: false}
        let bytes = [0x15, 0x0e, 0x18, 0x02, b'a', b'b', 0x19, 0x26, 0x02, 0x04, 0x1c, 0x11, 0x00, 0x12, 0x00];
        let mut compact = Compact::new(&bytes);
        compact.structure(0, |_, _, _| Ok(false)).unwrap();
        assert_eq!(compact.at, bytes.len());
    }

    #[test]
    fn pages_inflating_past_their_declared_size_are_refused() {
        use std::io::Write;
        let zeros = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        let gzip = Compression::GZIP(Default::default());
        assert!(check_inflated_size(&gz, gzip, 1 << 20).is_ok());
        assert!(check_inflated_size(&gz, gzip, 1000).unwrap_err().contains("inflates past the 1000 bytes"));
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 11, 22).write_all(&zeros).unwrap();
        assert!(check_inflated_size(&br, Compression::BROTLI(Default::default()), 4096).is_err());
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(&zeros).unwrap();
        let lz = lz.finish().unwrap();
        assert!(check_inflated_size(&lz, Compression::LZ4, 4096).is_err());
        assert!(check_inflated_size(&lz, Compression::LZ4, 1 << 20).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut bytes = vec![0x1c; 200];
        bytes.extend([0u8; 200]);
        assert!(matches!(walk(&bytes), Err(Stop::Malformed(why)) if why.contains("nested")));
    }
}
