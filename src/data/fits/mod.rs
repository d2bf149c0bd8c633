//! FITS: reading cutouts ([`cutouts::FitsCutouts`], the stage's and training's
//! one reader) and a training set's label table, the guards every read shares
//! (declared sizes against the file's bytes, the bounded gzip header scan), and
//! the simulator's writer; [`table_writer`] writes any Arrow table (the stage's
//! predictions).
//!
//! The writer writes one image cube per image column (the first in the
//! primary HDU, the others in extensions named after the column), then a binary
//! table `PARAMS` with `id`, `label`, `label_idx` and every parameter column, one
//! row per cube plane. Undefined parameters are NaN (the FITS float convention).
//!
//! The cube has NAXIS1 = width, NAXIS2 = height, NAXIS3 = rows, so astropy's
//! `hdul[0].data` is `(rows, height, width)`.

use crate::data::atomic::AtomicPath;
use crate::data::record::{DatasetInfo, Record, PARAM_COLUMNS};
use crate::data::{DatasetWriter, LabelTable, WriteSummary};
use crate::{Error, Result};
use fitsio::hdu::FitsHdu;
use fitsio::images::{ImageDescription, ImageType};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use fitsio::FitsFile;
use std::path::{Path, PathBuf};

pub mod cutout_file;
pub mod cutouts;
mod kept;
pub use kept::keywords_for;
pub mod table_reader;
pub mod table_writer;
pub mod wcs;

pub use wcs::wcs_pixel_scale;

/// Streams rows into `dataset.fits`, atomically. The row count is fixed up front,
/// because a FITS cube's size is in its header.
pub struct FitsDatasetWriter {
    info: DatasetInfo,
    file: Option<FitsFile>,
    cubes: Vec<FitsHdu>,
    table: FitsHdu,
    atomic: AtomicPath,
    total_rows: usize,
    rows: usize,
    /// Class of every row so far; the `label` strings are written at the end,
    /// because fitsio 0.21's string `write_col_range` indexes its input by absolute
    /// row number and so only works for ranges starting at row 0.
    class_of_row: Vec<u16>,
}

impl FitsDatasetWriter {
    /// Start writing `path` for exactly `total_rows` rows.
    pub fn create(path: &Path, info: DatasetInfo, total_rows: usize, overwrite: bool) -> Result<Self> {
        let atomic = AtomicPath::new(path, overwrite)?;
        let err = fits_error(path);
        let columns = info.image_columns();
        let dims: Vec<[usize; 3]> = columns.iter().map(|(_, s)| [total_rows, *s, *s]).collect();
        let mut file = FitsFile::create(atomic.temp_path())
            .with_custom_primary(&ImageDescription { data_type: ImageType::Float, dimensions: &dims[0] })
            .open()
            .map_err(&err)?;
        let primary = file.primary_hdu().map_err(&err)?;
        // fitsio names a custom primary `_PRIMARY`; give it the column's name instead.
        update_string_key(&mut file, "EXTNAME", &columns[0].0.to_uppercase()).map_err(&err)?;
        for (key, value) in &info.metadata {
            // Short values only: long ones (the config) go to config.toml beside the file.
            let short_key = key.trim_start_matches("lensmae:").to_uppercase();
            if short_key.len() <= 8 && value.len() <= 68 && !value.contains('\n') {
                match value.parse::<i64>() {
                    Ok(number) => primary.write_key(&mut file, &short_key, number),
                    Err(_) => primary.write_key(&mut file, &short_key, value.clone()),
                }
                .map_err(&err)?;
            }
        }
        let mut cubes = vec![primary];
        for (k, (name, _)) in columns.iter().enumerate().skip(1) {
            let desc = ImageDescription { data_type: ImageType::Float, dimensions: &dims[k] };
            cubes.push(file.create_image(name.to_uppercase(), &desc).map_err(&err)?);
        }
        let scale = info.metadata.get(crate::data::parquet::PIXEL_SCALE_KEY).and_then(|v| v.parse::<f64>().ok());
        let unit = info.metadata.get(crate::data::simulate::FLUX_UNIT_KEY).filter(|u| *u != "arbitrary");
        for (cube, (_, size)) in cubes.iter().zip(&columns) {
            // A column of another size (the LR images) has proportionally larger pixels.
            let scale = scale.map(|s| s * info.image_size as f64 / *size as f64);
            write_image_wcs(&mut file, cube, *size, scale, unit.map(String::as_str)).map_err(&err)?;
        }
        let label_width = info.class_names.iter().map(|c| c.len()).max().unwrap_or(1).max(1);
        let mut table_columns = vec![
            ColumnDescription::new("id").with_type(ColumnDataType::LongLong).create().map_err(&err)?,
            ColumnDescription::new("label")
                .with_type(ColumnDataType::String)
                .that_repeats(label_width)
                .create()
                .map_err(&err)?,
            ColumnDescription::new("label_idx").with_type(ColumnDataType::Short).create().map_err(&err)?,
            ColumnDescription::new("n_subhalos").with_type(ColumnDataType::Int).create().map_err(&err)?,
        ];
        for col in &PARAM_COLUMNS {
            table_columns
                .push(ColumnDescription::new(col.name).with_type(ColumnDataType::Double).create().map_err(&err)?);
        }
        let table = file.create_table("PARAMS", &table_columns).map_err(&err)?;
        let described = [
            ("row id, as in the Parquet dataset", None),
            ("class name", None),
            ("class index, in the order of CLASS_NAMES", None),
            ("number of substructure deflectors", None),
        ]
        .into_iter()
        .chain(PARAM_COLUMNS.iter().map(|c| (c.description, c.unit())));
        for (n, (description, unit)) in described.enumerate() {
            let comment: String = description.chars().take(68).collect();
            table.write_key(&mut file, &format!("TCOMM{}", n + 1), comment).map_err(&err)?;
            if let Some(unit) = unit {
                table.write_key(&mut file, &format!("TUNIT{}", n + 1), unit.to_string()).map_err(&err)?;
            }
        }
        Ok(FitsDatasetWriter {
            info,
            file: Some(file),
            cubes,
            table,
            atomic,
            total_rows,
            rows: 0,
            class_of_row: Vec::new(),
        })
    }
}

impl DatasetWriter for FitsDatasetWriter {
    fn write_batch(&mut self, records: &[Record]) -> Result<()> {
        let path = self.atomic.target().to_path_buf();
        let err = fits_error(&path);
        if self.rows + records.len() > self.total_rows {
            return Err(Error::Shape(format!("{}: more rows than the {} declared", path.display(), self.total_rows)));
        }
        let file = self.file.as_mut().expect("not finished");
        let columns = self.info.image_columns();
        for (k, (_, size)) in columns.iter().enumerate() {
            let n = size * size;
            let mut data = Vec::with_capacity(n * records.len());
            for r in records {
                data.extend(r.images[k].pixels.iter().map(|&v| v as f32));
            }
            let start = self.rows * n;
            self.cubes[k].write_section(file, start, start + data.len(), &data).map_err(&err)?;
        }
        let rows = self.rows..self.rows + records.len();
        let t = &self.table;
        t.write_col_range(file, "id", &records.iter().map(|r| r.id).collect::<Vec<i64>>(), &rows).map_err(&err)?;
        self.class_of_row.extend(records.iter().map(|r| r.class_idx as u16));
        t.write_col_range(file, "label_idx", &records.iter().map(|r| r.class_idx as i16).collect::<Vec<_>>(), &rows)
            .map_err(&err)?;
        t.write_col_range(file, "n_subhalos", &records.iter().map(|r| r.n_subhalos).collect::<Vec<i32>>(), &rows)
            .map_err(&err)?;
        for col in &PARAM_COLUMNS {
            let values: Vec<f64> = records.iter().map(|r| (col.get)(r).unwrap_or(f64::NAN)).collect();
            t.write_col_range(file, col.name, &values, &rows).map_err(&err)?;
        }
        self.rows += records.len();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<WriteSummary> {
        let path = self.atomic.target().to_path_buf();
        if self.rows != self.total_rows {
            return Err(Error::Shape(format!(
                "{}: {} rows written of {} declared",
                path.display(),
                self.rows,
                self.total_rows
            )));
        }
        let mut file = self.file.take().expect("not finished");
        let labels: Vec<String> =
            self.class_of_row.iter().map(|&c| self.info.class_names[c as usize].clone()).collect();
        self.table.write_col_range(&mut file, "label", &labels, &(0..labels.len())).map_err(fits_error(&path))?;
        drop(file); // closes and flushes the file
        let bytes = std::fs::metadata(self.atomic.temp_path()).map_err(|e| Error::io(&path, e))?.len();
        let rows = self.rows;
        self.atomic.commit()?;
        Ok(WriteSummary { rows, bytes, path })
    }
}

/// A simple WCS for a simulated cube: celestial axes with the lens at RA = Dec =
/// 0, north up, east left, and a linear third axis `ROW` counting rows from 0
/// (so that astropy's `WCS(header).celestial` needs no fixing); the pixel scale
/// as PIXSCALE, and the pixel unit as BUNIT when it has one.
fn write_image_wcs(
    file: &mut FitsFile,
    hdu: &FitsHdu,
    size: usize,
    arcsec_per_pixel: Option<f64>,
    unit: Option<&str>,
) -> Result<(), fitsio::errors::Error> {
    if let Some(unit) = unit {
        hdu.write_key(file, "BUNIT", unit.to_string())?;
    }
    let Some(scale) = arcsec_per_pixel else { return Ok(()) };
    let centre = (size as f64 + 1.0) / 2.0;
    hdu.write_key(file, "WCSAXES", 3i64)?;
    hdu.write_key(file, "CTYPE1", "RA---TAN".to_string())?;
    hdu.write_key(file, "CTYPE2", "DEC--TAN".to_string())?;
    hdu.write_key(file, "CUNIT1", "deg".to_string())?;
    hdu.write_key(file, "CUNIT2", "deg".to_string())?;
    hdu.write_key(file, "CRPIX1", centre)?;
    hdu.write_key(file, "CRPIX2", centre)?;
    hdu.write_key(file, "CRVAL1", 0.0f64)?;
    hdu.write_key(file, "CRVAL2", 0.0f64)?;
    hdu.write_key(file, "CD1_1", -scale / 3600.0)?;
    hdu.write_key(file, "CD1_2", 0.0f64)?;
    hdu.write_key(file, "CD2_1", 0.0f64)?;
    hdu.write_key(file, "CD2_2", scale / 3600.0)?;
    hdu.write_key(file, "CTYPE3", "ROW".to_string())?;
    hdu.write_key(file, "CRPIX3", 1.0f64)?;
    hdu.write_key(file, "CRVAL3", 0.0f64)?;
    hdu.write_key(file, "CD3_3", 1.0f64)?;
    hdu.write_key(file, "PIXSCALE", scale)
}

/// Set a string keyword of the current HDU, replacing an existing one
/// (fitsio's `write_key` always appends, which would leave two EXTNAME cards).
pub(crate) fn update_string_key(file: &mut FitsFile, key: &str, value: &str) -> Result<(), fitsio::errors::Error> {
    let key = std::ffi::CString::new(key)?;
    let value = std::ffi::CString::new(value)?;
    let mut status = 0;
    // SAFETY: the pointer comes from an open FitsFile that outlives the call, and
    // the strings are NUL-terminated CStrings that live until it returns.
    unsafe {
        fitsio::sys::ffukys(file.as_raw(), key.as_ptr(), value.as_ptr(), std::ptr::null(), &mut status);
    }
    fitsio::errors::check_status(status)
}

/// HDU `i` (0-based) of `f`, except a table with a variable-length array column
/// (TFORMn `1PD(...)`, `QJ`: legal FITS, which lensmae never reads): fitsio panics
/// on their descriptors when it describes the HDU, so tables are looked into
/// through cfitsio first, and a panic of fitsio's is contained as an error.
pub(crate) fn hdu_at(f: &mut FitsFile, i: usize) -> std::result::Result<Option<FitsHdu>, String> {
    const IMAGE_HDU: std::ffi::c_int = 0;
    if move_to(f, i)? != IMAGE_HDU && variable_length_column(f)?.is_some() {
        return Ok(None);
    }
    described(f, i).map(Some)
}

/// Makes HDU `i` (0-based) the current one, without fitsio describing it; its type
/// as cfitsio presents it (a tile-compressed image is an image).
pub(crate) fn move_to(f: &mut FitsFile, i: usize) -> std::result::Result<std::ffi::c_int, String> {
    let number = std::ffi::c_int::try_from(i + 1).map_err(|_| format!("HDU {i}: no such HDU"))?;
    let (mut kind, mut status) = (0, 0);
    // SAFETY: the pointer comes from an open FitsFile that outlives the calls.
    unsafe {
        fitsio::sys::ffmahd(f.as_raw(), number, &mut kind, &mut status);
        fitsio::sys::ffghdt(f.as_raw(), &mut kind, &mut status);
    }
    fitsio::errors::check_status(status).map_err(|e| fits_message(&e))?;
    Ok(kind)
}

/// The string value of keyword `key` in the current HDU, trimmed; None where it is not there.
fn string_key(f: &mut FitsFile, key: &str) -> std::result::Result<Option<String>, String> {
    let key = std::ffi::CString::new(key).map_err(|e| e.to_string())?;
    let mut value = [0 as std::ffi::c_char; 72];
    let mut status = 0;
    // SAFETY: cfitsio writes at most 71 characters and a NUL into `value`.
    unsafe {
        fitsio::sys::ffgkys(f.as_raw(), key.as_ptr(), value.as_mut_ptr(), std::ptr::null_mut(), &mut status);
    }
    const KEY_NO_EXIST: std::ffi::c_int = 202;
    if status == KEY_NO_EXIST {
        return Ok(None);
    }
    fitsio::errors::check_status(status).map_err(|e| fits_message(&e))?;
    // SAFETY: NUL-terminated by cfitsio.
    Ok(Some(unsafe { std::ffi::CStr::from_ptr(value.as_ptr()) }.to_string_lossy().trim().to_string()))
}

/// fitsio's description of HDU `i`, its panics contained.
fn described(f: &mut FitsFile, i: usize) -> std::result::Result<FitsHdu, String> {
    crate::data::contain_decoder_panic(|| f.hdu(i))?.map_err(|e| fits_message(&e))
}

/// The extension named `name` (see [`hdu_at`]); None when there is none, an error
/// naming the column when it is a table with a variable-length array column.
/// The HDUs cfitsio counts are looked at one by one: its own search by name
/// (`ffmnhd`) goes on into a broken header after the last HDU, and on one a fuzzer
/// made it allocated 2.5 GB.
pub(crate) fn hdu_named(f: &mut FitsFile, name: &str) -> std::result::Result<Option<FitsHdu>, String> {
    let count = f.num_hdus().map_err(|e| fits_message(&e))?;
    for i in 0..count {
        move_to(f, i)?;
        // An EXTNAME that cannot be read names no extension.
        let extname = string_key(f, "EXTNAME").ok().flatten();
        if !extname.is_some_and(|found| found.eq_ignore_ascii_case(name)) {
            continue;
        }
        if let Some((n, form)) = variable_length_column(f)? {
            return Err(format!("`{name}` has a variable-length array column (TFORM{n} = '{form}')"));
        }
        return described(f, i).map(Some);
    }
    Ok(None)
}

/// The first TFORMn of the current table HDU that describes a variable-length
/// array (`P` or `Q` after the repeat count), with its n.
fn variable_length_column(f: &mut FitsFile) -> std::result::Result<Option<(i64, String)>, String> {
    let fields: i64 = string_key(f, "TFIELDS")?.and_then(|v| v.parse().ok()).unwrap_or(0);
    // cfitsio refuses more than 999 columns when it opens the table.
    for n in 1..=fields.clamp(0, 999) {
        let Some(form) = string_key(f, &format!("TFORM{n}"))?.map(|v| v.to_ascii_uppercase()) else { continue };
        if form.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(['P', 'Q']) {
            return Ok(Some((n, form)));
        }
    }
    Ok(None)
}

fn fits_error(path: &Path) -> impl Fn(fitsio::errors::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |e| Error::Fits { path: path.clone(), message: e.to_string() }
}

/// Largest inflated size of a gzipped FITS file lensmae opens (cfitsio inflates
/// such files into memory).
pub const MAX_INFLATED_BYTES: u64 = 4 << 30;

/// Most HDUs a file may have.
const MAX_HDUS: usize = 10_000;

/// Most header blocks of one HDU (36,000 cards).
const MAX_HEADER_BLOCKS: usize = 1_000;

/// Opens a FITS file for reading after checking every header's declared sizes:
/// cfitsio trusts them, and a negative GCOUNT or PCOUNT sends it round an HDU
/// list it never finishes (a 16 KB stamp took 4 GB before it was stopped), a
/// gzipped file inflates into memory without limit. Files that end inside an HDU
/// are opened: readers report the missing planes.
pub fn open_fits(path: &Path) -> std::result::Result<FitsFile, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let gzipped = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if gzipped {
        let inflated = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        scan_headers(&mut HeaderSource::Stream {
            inflating: Box::new(inflated),
            inflated: 0,
            limit: MAX_INFLATED_BYTES,
        })?;
    } else {
        scan_headers(&mut HeaderSource::File(std::io::BufReader::new(file)))?;
    }
    FitsFile::open(path).map_err(|e| fits_message(&e))
}

/// Whether `name` is a FITS file's by its extension: `.fits`, `.fit` or `.fts`,
/// maybe gzipped (`.gz`) or tile-compressed (`.fz`) as survey archives deliver them.
pub fn has_fits_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_suffix(".gz").or_else(|| lower.strip_suffix(".fz")).unwrap_or(&lower);
    [".fits", ".fit", ".fts"].iter().any(|ext| bare.ends_with(ext)) || lower.ends_with(".fz")
}

/// Whether the local file `path` begins as a FITS file does (its first card `SIMPLE`),
/// whatever its name.
pub fn is_fits_file(path: &Path) -> bool {
    use std::io::Read;
    let mut first = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut first)).is_ok() && &first == b"SIMPLE  "
}

/// How many bytes of the current HDU's data the file holds from where that data
/// begins (cfitsio's `fits_get_hduaddrll`) to its end; unknown (`None`) for a
/// gzipped file, which [`open_fits`] has already bounded by [`MAX_INFLATED_BYTES`].
/// What a header declares beyond this is not there: reading it would allocate
/// what the header says and fail, or abort, on the missing bytes.
pub fn data_bytes_in_file(f: &mut FitsFile, path: &Path) -> Option<u64> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) {
        return None;
    }
    let len = std::fs::metadata(path).ok()?.len();
    let (mut head, mut data, mut end, mut status) = (0i64, 0i64, 0i64, 0i32);
    // SAFETY: the pointer is the open file's own, used for this one call while `f`
    // is borrowed mutably; cfitsio only reads its HDU bookkeeping here.
    unsafe { fitsio::sys::ffghadll(f.as_raw(), &mut head, &mut data, &mut end, &mut status) };
    (status == 0 && data >= 0).then(|| len.saturating_sub(data as u64))
}

/// Refuses to read `declared` bytes of the current HDU's data when the file
/// cannot hold them (see [`data_bytes_in_file`]); `what` names the HDU.
pub fn check_declared_bytes(f: &mut FitsFile, path: &Path, what: &str, declared: Option<u64>) -> Result<(), String> {
    let present = data_bytes_in_file(f, path).unwrap_or(MAX_INFLATED_BYTES);
    match declared {
        Some(d) if d <= present => Ok(()),
        _ => Err(format!(
            "{what} declares {} bytes of data, the file holds {present}: a truncated file or a corrupt header",
            declared.map_or_else(|| "more than 2^64".to_string(), |d| d.to_string())
        )),
    }
}

/// A cfitsio error as a person reads it: cfitsio's message and its status code,
/// not the Debug form of the error struct.
pub fn fits_message(e: &fitsio::errors::Error) -> String {
    match e {
        fitsio::errors::Error::Fits(f) => format!("{} (cfitsio status {})", f.message, f.status),
        other => other.to_string(),
    }
}

/// Where headers are read from: a file (data skipped by seeking) or an inflating
/// stream (data read and dropped, its length counted against the limit).
enum HeaderSource {
    File(std::io::BufReader<std::fs::File>),
    Stream { inflating: Box<dyn std::io::Read>, inflated: u64, limit: u64 },
}

fn inflates_too_much(limit: u64) -> String {
    format!("inflates to more than {} MiB: decompress it first", limit >> 20)
}

impl HeaderSource {
    /// Fills `block`; false at the end of the file (a partial block is the end too).
    fn block(&mut self, block: &mut [u8; 2880]) -> std::result::Result<bool, String> {
        use std::io::Read;
        let reader: &mut dyn Read = match self {
            HeaderSource::File(f) => f,
            HeaderSource::Stream { inflating, .. } => inflating,
        };
        let mut filled = 0;
        while filled < block.len() {
            match reader.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
        if let HeaderSource::Stream { inflated, limit, .. } = self {
            *inflated += filled as u64;
            if *inflated > *limit {
                return Err(inflates_too_much(*limit));
            }
        }
        Ok(filled == block.len())
    }

    /// Passes over `bytes` of data; false when the file ends first.
    fn skip(&mut self, bytes: u64) -> std::result::Result<bool, String> {
        use std::io::{Read, Seek};
        match self {
            HeaderSource::File(f) => {
                let here = f.stream_position().map_err(|e| e.to_string())?;
                let len = f.get_ref().metadata().map_err(|e| e.to_string())?.len();
                let to = here.saturating_add(bytes);
                f.seek(std::io::SeekFrom::Start(to.min(len))).map_err(|e| e.to_string())?;
                Ok(to <= len)
            }
            HeaderSource::Stream { inflating, inflated, limit } => {
                // The declared size is checked before inflating anything.
                if inflated.saturating_add(bytes) > *limit {
                    return Err(inflates_too_much(*limit));
                }
                let skipped =
                    std::io::copy(&mut inflating.take(bytes), &mut std::io::sink()).map_err(|e| e.to_string())?;
                *inflated += skipped;
                Ok(skipped == bytes)
            }
        }
    }
}

/// Walks every HDU's header, checking the values that decide where the next HDU
/// starts; returns the number of HDUs. An inflating stream is read to its end:
/// cfitsio inflates all of it, trailing bytes included.
fn scan_headers(source: &mut HeaderSource) -> std::result::Result<usize, String> {
    let hdus = scan_hdus(source)?;
    if let HeaderSource::Stream { inflating, inflated, limit } = source {
        let room = limit.saturating_sub(*inflated);
        let rest = std::io::copy(&mut std::io::Read::take(inflating, room + 1), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        if rest > room {
            return Err(inflates_too_much(*limit));
        }
    }
    Ok(hdus)
}

fn scan_hdus(source: &mut HeaderSource) -> std::result::Result<usize, String> {
    let mut block = [0u8; 2880];
    for hdu in 0..MAX_HDUS {
        if !source.block(&mut block)? {
            return if hdu == 0 { Err("shorter than one FITS header block (2880 bytes)".into()) } else { Ok(hdu) };
        }
        let first_key = &block[..8];
        match (hdu, first_key) {
            (0, b"SIMPLE  ") => {}
            (0, _) => return Err("not a FITS file (no SIMPLE card first)".into()),
            (_, b"XTENSION") => {}
            // Bytes after the last HDU (padding, junk): cfitsio stops there too.
            _ => return Ok(hdu),
        }
        let mut cards: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        let mut groups = false;
        let mut ended = false;
        for header_block in 0..MAX_HEADER_BLOCKS {
            if header_block > 0 && !source.block(&mut block)? {
                // The file ends in the header. cfitsio may still take the sizes it
                // declares (NAXIS2 = -32768 of a table without an END card: 2.5 GB
                // allocated), so those it holds are checked as a whole header's are.
                declared_values(&cards).map_err(|e| format!("HDU {hdu}: {e}"))?;
                return Ok(hdu + 1);
            }
            for card in block.chunks_exact(80) {
                let key = std::str::from_utf8(&card[..8]).unwrap_or("").trim_end();
                if key == "END" {
                    ended = true;
                    break;
                }
                if &card[8..10] != b"= " {
                    continue;
                }
                let value = std::str::from_utf8(&card[10..]).unwrap_or("");
                let value = value.split('/').next().unwrap_or("").trim();
                let sized = key == "BITPIX" || key == "PCOUNT" || key == "GCOUNT" || key.starts_with("NAXIS");
                if key == "GROUPS" {
                    groups = value == "T";
                } else if sized {
                    let number =
                        value.parse::<i64>().map_err(|_| format!("HDU {hdu}: {key} = `{value}` is not an integer"))?;
                    cards.insert(key.to_string(), number);
                }
            }
            if ended {
                break;
            }
        }
        if !ended {
            return Err(format!("HDU {hdu}: no END card in {MAX_HEADER_BLOCKS} header blocks"));
        }
        let data = data_bytes(&cards, groups).map_err(|e| format!("HDU {hdu}: {e}"))?;
        if !source.skip(data.div_ceil(2880).saturating_mul(2880))? {
            return Ok(hdu + 1); // truncated data: readers report the missing planes
        }
    }
    Err(format!("more than {MAX_HDUS} HDUs"))
}

/// The sizing values a header holds, each within what FITS allows (those it
/// lacks are not asked for here).
fn declared_values(cards: &std::collections::HashMap<String, i64>) -> std::result::Result<(), String> {
    let get = |key: &str| cards.get(key).copied();
    if let Some(bitpix) = get("BITPIX").filter(|b| ![8, 16, 32, 64, -32, -64].contains(b)) {
        return Err(format!("BITPIX = {bitpix} is not a FITS pixel type"));
    }
    if let Some(naxis) = get("NAXIS").filter(|n| !(0..=999).contains(n)) {
        return Err(format!("NAXIS = {naxis} is outside 0..999"));
    }
    for key in ["PCOUNT", "GCOUNT"] {
        if let Some(count) = get(key).filter(|&c| c < 0) {
            return Err(format!("{key} = {count} is negative"));
        }
    }
    let mut axes: Vec<(&String, &i64)> = cards.iter().filter(|(k, _)| k.starts_with("NAXIS") && k.len() > 5).collect();
    axes.sort();
    match axes.into_iter().find(|(_, &n)| n < 0) {
        Some((key, n)) => Err(format!("{key} = {n} is negative")),
        None => Ok(()),
    }
}

/// Bytes of data an HDU's header declares (FITS standard 4.4.1.1 and 7.1.2).
fn data_bytes(cards: &std::collections::HashMap<String, i64>, groups: bool) -> std::result::Result<u64, String> {
    declared_values(cards)?;
    let get = |key: &str| cards.get(key).copied();
    let bitpix = get("BITPIX").ok_or("no BITPIX")?;
    let naxis = get("NAXIS").ok_or("no NAXIS")?;
    let pcount = get("PCOUNT").unwrap_or(0);
    let gcount = get("GCOUNT").unwrap_or(1);
    if naxis == 0 {
        return Ok(0);
    }
    let too_big =
        || "its declared data size (NAXISn x BITPIX x GCOUNT) is beyond 2^64 bytes, larger than any file".to_string();
    let mut elements: u64 = 1;
    for axis in 1..=naxis {
        let key = format!("NAXIS{axis}");
        let n = get(&key).ok_or_else(|| format!("no {key} (NAXIS = {naxis})"))?;
        // Random groups: NAXIS1 = 0 is a marker, not an axis.
        if axis == 1 && groups && n == 0 {
            continue;
        }
        elements = elements.checked_mul(n as u64).ok_or_else(too_big)?;
    }
    elements
        .checked_add(pcount as u64)
        .and_then(|e| e.checked_mul(gcount as u64))
        .and_then(|e| e.checked_mul(bitpix.unsigned_abs() / 8))
        .ok_or_else(too_big)
}

/// The labels of a FITS training set: its first binary table's `label_idx`
/// and/or `label` columns (and `id`, when it has one). The table's declared size
/// is checked against the file's bytes first.
pub fn read_label_table(path: &Path) -> std::result::Result<LabelTable, String> {
    let mut f = open_fits(path)?;
    let count = f.num_hdus().map_err(|e| fits_message(&e))?;
    let table = (1..count)
        .find_map(|i| {
            let hdu = hdu_at(&mut f, i).ok()??;
            matches!(hdu.info, fitsio::hdu::HduInfo::TableInfo { .. }).then_some(hdu)
        })
        .ok_or_else(|| "no binary table of labels".to_string())?;
    let (row_bytes, rows): (i64, i64) = (
        table.read_key(&mut f, "NAXIS1").map_err(|e| fits_message(&e))?,
        table.read_key(&mut f, "NAXIS2").map_err(|e| fits_message(&e))?,
    );
    let declared = (row_bytes as u64).checked_mul(rows as u64);
    check_declared_bytes(&mut f, path, "the label table", declared)?;
    let idx: Option<Vec<i64>> = table.read_col(&mut f, "label_idx").ok();
    let names: Option<Vec<String>> = table.read_col(&mut f, "label").ok();
    let ids: Option<Vec<i64>> = table.read_col(&mut f, "id").ok();
    let (labels, class_names) = match (idx, names) {
        (Some(idx), names) => {
            let labels: Vec<usize> = idx.iter().map(|&v| v.max(0) as usize).collect();
            let k = labels.iter().max().map_or(0, |m| m + 1);
            let mut class_names: Vec<String> = (0..k).map(|i| format!("class_{i}")).collect();
            if let Some(names) = names {
                for (&l, name) in labels.iter().zip(&names) {
                    class_names[l] = name.trim().to_string();
                }
            }
            (labels, class_names)
        }
        (None, Some(names)) => {
            let mut unique: Vec<String> = names.iter().map(|s| s.trim().to_string()).collect();
            unique.sort();
            unique.dedup();
            (names.iter().map(|s| unique.iter().position(|u| u == s.trim()).expect("present")).collect(), unique)
        }
        (None, None) => return Err("the table has no `label_idx` or `label` column".into()),
    };
    Ok(LabelTable { labels, class_names, ids })
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn header(cards: &[&str]) -> Vec<u8> {
        let mut h: Vec<u8> = cards.iter().chain(["END"].iter()).flat_map(|c| format!("{c:<80}").into_bytes()).collect();
        h.resize(h.len().div_ceil(2880) * 2880, b' ');
        h
    }

    fn scan(bytes: &[u8]) -> std::result::Result<usize, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fits");
        std::fs::write(&path, bytes).unwrap();
        scan_headers(&mut HeaderSource::File(std::io::BufReader::new(std::fs::File::open(&path).unwrap())))
    }

    #[test]
    fn negative_counts_and_sizes_are_refused_before_cfitsio_sees_them() {
        let primary = header(&[
            "SIMPLE  =                    T",
            "BITPIX  =                    8",
            "NAXIS   =                    0",
        ]);
        let ext = |gcount: &str, pcount: &str| {
            let mut f = primary.clone();
            f.extend(header(&[
                "XTENSION= 'IMAGE   '",
                "BITPIX  =                   16",
                "NAXIS   =                    2",
                "NAXIS1  =                  255",
                "NAXIS2  =                   16",
                &format!("PCOUNT  = {pcount:>20}"),
                &format!("GCOUNT  = {gcount:>20}"),
            ]));
            f.extend(vec![0u8; 8640]);
            f
        };
        assert_eq!(scan(&ext("1", "0")), Ok(2));
        // The input the fuzz campaign found: cfitsio looped over ever more HDUs.
        assert_eq!(scan(&ext("-1", "8")).unwrap_err(), "HDU 1: GCOUNT = -1 is negative");
        assert_eq!(scan(&ext("1", "-1")).unwrap_err(), "HDU 1: PCOUNT = -1 is negative");
        assert!(scan(&ext("9223372036854775807", "0")).unwrap_err().contains("beyond 2^64 bytes"));
        assert!(scan(&primary[..100]).unwrap_err().contains("shorter than one FITS header block"));
        // Truncated data is left to the readers (they report the missing planes).
        assert_eq!(scan(&ext("1", "0")[..2880 * 3]), Ok(2));
        // A header the file ends in before its END card: what it declares is checked
        // all the same (cfitsio took a table's NAXIS2 = -32768 from such a header
        // and allocated 2.5 GB: the slowest input of the 2026-12-07 fits-file campaign).
        let cut = |naxis2: &str| {
            let mut f = primary.clone();
            let cards = ["XTENSION= 'BINTABLE'", "BITPIX  =                    8", "NAXIS   =                    2"];
            let naxis = [format!("NAXIS1  = {:>20}", 260), format!("NAXIS2  = {naxis2:>20}")];
            let mut block: Vec<u8> = cards
                .iter()
                .map(|c| c.to_string())
                .chain(naxis)
                .flat_map(|c| format!("{c:<80}").into_bytes())
                .collect();
            block.resize(2880, b' '); // a whole block of cards, no END, and then the file ends
            f.extend(block);
            f
        };
        assert_eq!(scan(&cut("-32768")).unwrap_err(), "HDU 1: NAXIS2 = -32768 is negative");
        assert_eq!(scan(&cut("3")), Ok(2), "nothing wrong declared: left to cfitsio");
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_its_inflated_size() {
        use std::io::Write;
        let primary = |naxis1: &str| {
            let mut bytes = header(&[
                "SIMPLE  =                    T",
                "BITPIX  =                    8",
                "NAXIS   =                    1",
                &format!("NAXIS1  = {naxis1:>20}"),
            ]);
            bytes.extend(vec![0u8; 4 << 20]); // 4 MiB of zeros inflate from a few KB
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap()
        };
        let scan_gz = |gz: Vec<u8>, limit: u64| {
            let inflating = Box::new(flate2::read::MultiGzDecoder::new(std::io::Cursor::new(gz)));
            scan_headers(&mut HeaderSource::Stream { inflating, inflated: 0, limit })
        };
        assert_eq!(scan_gz(primary("4000000"), 8 << 20), Ok(1));
        // Declared beyond the limit: refused before inflating.
        assert_eq!(
            scan_gz(primary("10000000000"), 8 << 20).unwrap_err(),
            "inflates to more than 8 MiB: decompress it first"
        );
        // Declared small, but more bytes follow than the limit allows.
        let e = scan_gz(primary("1"), 1 << 20).unwrap_err();
        assert_eq!(e, "inflates to more than 1 MiB: decompress it first");
    }
}
