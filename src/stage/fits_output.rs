//! The predictions as a FITS file (`--out x.fits`), for astropy, TOPCAT and DS9:
//! a binary table extension `PREDICTIONS` with every column of the Parquet output
//! (TUNITn and TCOMMn from the columns' descriptions; nulls as NaN, TNULLn or
//! blank strings), and, when a super-resolution model ran, the super-resolved
//! cutouts as the primary HDU's image cube (NAXIS3 = rows, aligned with the
//! table; rows without an image are NaN). The primary header names the version,
//! models with their SHA-256, task, input, command and time.
//!
//! The table is kept in memory until the end (string columns need their widest
//! value before the first row is written; predictions take ~100-200 bytes a
//! row), the cube is written as it comes. The file appears under its name only
//! when complete.

use super::output::{PredictionSink, DESCRIPTION_KEY, UNIT_KEY};
use crate::data::atomic::AtomicPath;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use fitsio::FitsFile;
use std::path::Path;

/// The null of integer columns (TNULLn).
const INT_NULL: i64 = i64::MIN;

/// Primary-header keywords for the output's metadata (FITS keys have 8 characters).
const HEADER_KEYS: [(&str, &str); 14] = [
    ("lensmae:version", "LENSMAE"),
    ("lensmae:schema_version", "SCHEMAV"),
    ("lensmae:task", "TASK"),
    ("lensmae:model", "MODEL"),
    ("lensmae:model_sha256", "MODELSHA"),
    ("lensmae:sr_model", "SRMODEL"),
    ("lensmae:sr_model_sha256", "SRMODSHA"),
    ("lensmae:nan_policy", "NANPOLCY"),
    ("lensmae:tta", "TTA"),
    ("lensmae:class_names", "CLASSES"),
    ("lensmae:input", "INPUT"),
    ("lensmae:command", "COMMAND"),
    ("lensmae:created", "DATE"),
    ("lensmae:build", "BUILD"),
];

/// Streams predictions into a FITS file.
pub struct FitsPredictionWriter {
    atomic: AtomicPath,
    /// The table's columns (all but the SR images), and where they are in a batch.
    table_schema: SchemaRef,
    table_columns: Vec<usize>,
    file: FitsFile,
    /// The table's batches.
    batches: Vec<RecordBatch>,
    /// `sr_image`'s column index and side, when there is one.
    sr: Option<(usize, usize)>,
    rows: usize,
    total_rows: usize,
}

fn fits_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Fits { path: path.to_path_buf(), message: e.to_string() }
}

/// The FITS column form of an Arrow type, or why it has none.
fn column_type(dt: &DataType) -> std::result::Result<ColumnDataType, String> {
    Ok(match dt {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnDataType::LongLong,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => ColumnDataType::LongLong,
        DataType::Float32 | DataType::Float16 => ColumnDataType::Float,
        DataType::Float64 => ColumnDataType::Double,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnDataType::String,
        DataType::Boolean => ColumnDataType::Logical,
        other => return Err(format!("{other} has no FITS table form")),
    })
}

impl FitsPredictionWriter {
    /// Starts `target` for `total_rows` rows of `schema` (refused if it exists,
    /// unless `overwrite`; refused for a column FITS tables cannot hold).
    pub fn create(target: &Path, schema: SchemaRef, total_rows: usize, overwrite: bool) -> Result<Self> {
        let mut sr = None;
        for (i, field) in schema.fields().iter().enumerate() {
            match (field.name().as_str(), field.data_type()) {
                ("sr_image", DataType::FixedSizeList(_, n)) => {
                    let side = (*n as f64).sqrt() as usize;
                    sr = Some((i, side));
                }
                (name, dt) => {
                    column_type(dt).map_err(|why| {
                        Error::config(
                            "--out",
                            format!("{}: column `{name}`: {why} (write a .parquet file instead)", target.display()),
                        )
                    })?;
                }
            }
        }
        let atomic = AtomicPath::new(target, overwrite)?;
        let err = |e: fitsio::errors::Error| fits_error(target, e);
        let mut file = match sr {
            Some((_, side)) => {
                let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[total_rows, side, side] };
                FitsFile::create(atomic.temp_path()).with_custom_primary(&desc).open().map_err(err)?
            }
            None => FitsFile::create(atomic.temp_path()).open().map_err(err)?,
        };
        if sr.is_some() {
            crate::data::fits::update_string_key(&mut file, "EXTNAME", "SR_IMAGE").map_err(err)?;
        }
        for (key, short) in HEADER_KEYS {
            if let Some(value) = schema.metadata().get(key) {
                // FITS dates are UTC without a zone letter.
                let value = if short == "DATE" { value.trim_end_matches('Z') } else { value };
                write_long_string(&mut file, short, value).map_err(|e| fits_error(target, e))?;
            }
        }
        let table_columns: Vec<usize> = (0..schema.fields().len()).filter(|&i| Some(i) != sr.map(|(c, _)| c)).collect();
        let table_schema = SchemaRef::new(schema.project(&table_columns).map_err(|e| fits_error(target, e))?);
        Ok(FitsPredictionWriter {
            atomic,
            table_schema,
            table_columns,
            file,
            batches: Vec::new(),
            sr,
            rows: 0,
            total_rows,
        })
    }

    fn write_table(&mut self) -> Result<()> {
        let path = self.atomic.target().to_path_buf();
        let err = |e: fitsio::errors::Error| fits_error(&path, e);
        let schema = self.table_schema.clone();
        let columns: Vec<(usize, &arrow_schema::FieldRef)> = schema.fields().iter().enumerate().collect();
        let joined: Vec<ArrayRef> = columns
            .iter()
            .map(|(i, field)| {
                let parts: Vec<&dyn Array> = self.batches.iter().map(|b| b.column(*i).as_ref()).collect();
                match parts.is_empty() {
                    true => Ok(arrow_array::new_empty_array(field.data_type())),
                    false => arrow_select::concat::concat(&parts).map_err(|e| fits_error(&path, e)),
                }
            })
            .collect::<Result<_>>()?;
        let mut descriptions = Vec::new();
        for ((_, field), array) in columns.iter().zip(&joined) {
            let kind = column_type(field.data_type()).expect("checked at create");
            let width = match kind {
                ColumnDataType::String => {
                    strings(array).iter().map(|s| s.as_deref().map_or(0, str::len)).max().unwrap_or(0).max(1)
                }
                _ => 1,
            };
            let mut description = ColumnDescription::new(field.name());
            let description = description.with_type(kind);
            let description = if width > 1 { description.that_repeats(width) } else { description };
            descriptions.push(description.create().map_err(err)?);
        }
        let table = self.file.create_table("PREDICTIONS", &descriptions).map_err(err)?;
        let file = &mut self.file;
        for (n, ((_, field), array)) in columns.iter().zip(&joined).enumerate() {
            let k = n + 1;
            if let Some(description) = field.metadata().get(DESCRIPTION_KEY) {
                write_long_string(file, &format!("TCOMM{k}"), description).map_err(|e| fits_error(&path, e))?;
            }
            if let Some(unit) = field.metadata().get(UNIT_KEY) {
                table.write_key(file, &format!("TUNIT{k}"), unit.clone()).map_err(err)?;
            }
            let rows = 0..array.len();
            match column_type(field.data_type()).expect("checked at create") {
                ColumnDataType::LongLong => {
                    let cast = arrow_cast::cast(array, &DataType::Int64).map_err(|e| fits_error(&path, e))?;
                    let values: Vec<i64> =
                        cast.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(INT_NULL)).collect();
                    if cast.null_count() > 0 {
                        table.write_key(file, &format!("TNULL{k}"), INT_NULL).map_err(err)?;
                    }
                    table.write_col_range(file, field.name(), &values, &rows).map_err(err)?;
                }
                ColumnDataType::Float => {
                    let cast = arrow_cast::cast(array, &DataType::Float32).map_err(|e| fits_error(&path, e))?;
                    let values: Vec<f32> =
                        cast.as_primitive::<Float32Type>().iter().map(|v| v.unwrap_or(f32::NAN)).collect();
                    table.write_col_range(file, field.name(), &values, &rows).map_err(err)?;
                }
                ColumnDataType::Double => {
                    let values: Vec<f64> =
                        array.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect();
                    table.write_col_range(file, field.name(), &values, &rows).map_err(err)?;
                }
                ColumnDataType::String => {
                    let values: Vec<String> = strings(array).into_iter().map(Option::unwrap_or_default).collect();
                    table.write_col_range(file, field.name(), &values, &rows).map_err(err)?;
                }
                ColumnDataType::Logical => {
                    let values: Vec<Option<bool>> = array.as_boolean().iter().collect();
                    write_logical_column(file, k, &values).map_err(|e| fits_error(&path, e))?;
                }
                other => unreachable!("{other:?} is not a column type lensmae writes"),
            }
        }
        Ok(())
    }
}

/// A string column's values (Utf8, LargeUtf8, Utf8View).
fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    match array.data_type() {
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(|s| s.map(String::from)).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(|s| s.map(String::from)).collect(),
        _ => array.as_string::<i32>().iter().map(|s| s.map(String::from)).collect(),
    }
}

/// A string keyword of the current HDU of any length (cfitsio's long-string
/// convention: CONTINUE cards, which astropy reads back whole).
fn write_long_string(file: &mut FitsFile, key: &str, value: &str) -> std::result::Result<(), String> {
    let key = std::ffi::CString::new(key).map_err(|e| e.to_string())?;
    // FITS header text is printable ASCII.
    let printable: String =
        value.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
    let value = std::ffi::CString::new(printable).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: an open file's pointer, used for this one call while `file` is
    // borrowed mutably; NUL-terminated strings that outlive the call.
    unsafe {
        fitsio::sys::ffpkls(file.as_raw(), key.as_ptr(), value.as_ptr(), std::ptr::null(), &mut status);
    }
    fitsio::errors::check_status(status).map_err(|e| e.to_string())
}

/// Column `k` (from 1) of the current table as FITS logicals, nulls undefined.
fn write_logical_column(file: &mut FitsFile, k: usize, values: &[Option<bool>]) -> std::result::Result<(), String> {
    // cfitsio's logicals: 1 true, 0 false, and a third value marking null.
    const NULL: std::os::raw::c_char = 2;
    let mut bytes: Vec<std::os::raw::c_char> =
        values.iter().map(|v| v.map_or(NULL, std::os::raw::c_char::from)).collect();
    let mut status = 0;
    // SAFETY: an open file's pointer whose current HDU is the table; `bytes`
    // holds `values.len()` elements and outlives the call.
    unsafe {
        fitsio::sys::ffpcnl(file.as_raw(), k as i32, 1, 1, bytes.len() as i64, bytes.as_mut_ptr(), NULL, &mut status);
    }
    fitsio::errors::check_status(status).map_err(|e| e.to_string())
}

impl PredictionSink for FitsPredictionWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some((column, side)) = self.sr {
            let path = self.atomic.target().to_path_buf();
            let images = batch.column(column).as_fixed_size_list();
            let n = side * side;
            let mut pixels = vec![f32::NAN; batch.num_rows() * n];
            for r in 0..batch.num_rows() {
                if images.is_valid(r) {
                    let values = images.value(r);
                    pixels[r * n..(r + 1) * n].copy_from_slice(values.as_primitive::<Float32Type>().values());
                }
            }
            let start = self.rows * n;
            let primary = self.file.primary_hdu().map_err(|e| fits_error(&path, e))?;
            primary
                .write_section(&mut self.file, start, start + pixels.len(), &pixels)
                .map_err(|e| fits_error(&path, e))?;
        }
        let path = self.atomic.target();
        self.batches.push(batch.project(&self.table_columns).map_err(|e| fits_error(path, e))?);
        self.rows += batch.num_rows();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<usize> {
        if self.rows != self.total_rows {
            return Err(Error::Shape(format!(
                "{}: {} rows written of the {} planned",
                self.atomic.target().display(),
                self.rows,
                self.total_rows
            )));
        }
        self.write_table()?;
        let FitsPredictionWriter { atomic, file, rows, .. } = *self;
        drop(file); // closes and flushes
        atomic.commit()?;
        Ok(rows)
    }
}
