//! One Arrow table written to a FITS file, for astropy, TOPCAT and DS9: a binary
//! table extension with every column (TUNITn and TCOMMn from the fields'
//! `unit` / `description` metadata; nulls as NaN, TNULLn or blank strings), and
//! optionally one fixed-size-list column of square images as the primary HDU's
//! image cube (NAXIS3 = rows, aligned with the table; null rows are NaN). Chosen
//! schema metadata keys become primary-header keywords. The FITS twin of
//! [`crate::data::parquet::table_writer::TableWriter`].
//!
//! The table is kept in memory until the end (string columns need their widest
//! value before the first row is written), the cube is written as it comes. The
//! file appears under its name only when complete.

use crate::data::atomic::AtomicPath;
use crate::data::schema::{DESCRIPTION_KEY, UNIT_KEY};
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use fitsio::FitsFile;
use std::path::Path;

/// Where a table's parts go in the FITS file.
#[derive(Debug, Clone, Copy)]
pub struct FitsTableLayout {
    /// EXTNAME of the binary table.
    pub table_name: &'static str,
    /// The image column written as the primary cube, and the cube's EXTNAME.
    pub cube: Option<(&'static str, &'static str)>,
    /// Schema metadata keys written as primary-header keywords (key, keyword).
    pub header_keys: &'static [(&'static str, &'static str)],
}

/// The null of integer columns (TNULLn).
const INT_NULL: i64 = i64::MIN;

/// Streams an Arrow table into a FITS file.
pub struct FitsTableWriter {
    layout: FitsTableLayout,
    atomic: AtomicPath,
    /// The table's columns (all but the cube's), and where they are in a batch.
    table_schema: SchemaRef,
    table_columns: Vec<usize>,
    file: FitsFile,
    /// The table's batches.
    batches: Vec<RecordBatch>,
    /// The cube column's index and side, when there is one.
    cube: Option<(usize, usize)>,
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

impl FitsTableWriter {
    /// Starts `target` for `total_rows` rows of `schema` laid out as `layout`
    /// (refused if it exists, unless `overwrite`; refused for a column FITS
    /// tables cannot hold, or a cube column that is not a list of square images).
    pub fn create(
        target: &Path,
        schema: SchemaRef,
        layout: FitsTableLayout,
        total_rows: usize,
        overwrite: bool,
    ) -> Result<Self> {
        let mut cube = None;
        let cube_column = layout.cube.map(|(column, _)| column);
        for (i, field) in schema.fields().iter().enumerate() {
            match (field.name().as_str(), field.data_type()) {
                (name, DataType::FixedSizeList(item, n)) if Some(name) == cube_column => {
                    let side = (*n as f64).sqrt().round() as usize;
                    if side * side != *n as usize || item.data_type() != &DataType::Float32 {
                        return Err(Error::Shape(format!(
                            "{}: column `{name}` holds {n} {} values a row, not a square float32 image",
                            target.display(),
                            item.data_type()
                        )));
                    }
                    cube = Some((i, side));
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
        let mut file = match cube {
            Some((_, side)) => {
                let desc = ImageDescription { data_type: ImageType::Float, dimensions: &[total_rows, side, side] };
                FitsFile::create(atomic.temp_path()).with_custom_primary(&desc).open().map_err(err)?
            }
            None => FitsFile::create(atomic.temp_path()).open().map_err(err)?,
        };
        if let (Some(_), Some((_, cube_name))) = (cube, layout.cube) {
            super::update_string_key(&mut file, "EXTNAME", cube_name).map_err(err)?;
        }
        for &(key, short) in layout.header_keys {
            if let Some(value) = schema.metadata().get(key) {
                // FITS dates are UTC without a zone letter.
                let value = if short == "DATE" { value.trim_end_matches('Z') } else { value };
                write_long_string(&mut file, short, value).map_err(|e| fits_error(target, e))?;
            }
        }
        let table_columns: Vec<usize> =
            (0..schema.fields().len()).filter(|&i| Some(i) != cube.map(|(c, _)| c)).collect();
        let table_schema = SchemaRef::new(schema.project(&table_columns).map_err(|e| fits_error(target, e))?);
        Ok(FitsTableWriter {
            layout,
            atomic,
            table_schema,
            table_columns,
            file,
            batches: Vec::new(),
            cube,
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
        let table = self.file.create_table(self.layout.table_name, &descriptions).map_err(err)?;
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

impl FitsTableWriter {
    /// Appends one batch of rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some((column, side)) = self.cube {
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

    /// Writes the table, completes the file and moves it into place; returns
    /// the rows written.
    pub fn finish(mut self) -> Result<usize> {
        if self.rows != self.total_rows {
            return Err(Error::Shape(format!(
                "{}: {} rows written of the {} planned",
                self.atomic.target().display(),
                self.rows,
                self.total_rows
            )));
        }
        self.write_table()?;
        let FitsTableWriter { atomic, file, rows, .. } = self;
        drop(file); // closes and flushes
        atomic.commit()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use std::collections::HashMap;
    use std::sync::Arc;

    const LAYOUT: FitsTableLayout =
        FitsTableLayout { table_name: "ROWS", cube: Some(("image", "IMAGES")), header_keys: &[("x:origin", "ORIGIN")] };

    fn schema(image_values: i32) -> SchemaRef {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let fields = vec![
            Field::new("id", DataType::Int64, true)
                .with_metadata(HashMap::from([(UNIT_KEY.to_string(), "count".to_string())])),
            Field::new("name", DataType::Utf8, true),
            Field::new("good", DataType::Boolean, true),
            Field::new("image", DataType::FixedSizeList(item, image_values), true),
        ];
        Arc::new(Schema::new_with_metadata(fields, HashMap::from([("x:origin".to_string(), "a test".to_string())])))
    }

    fn batch(schema: &SchemaRef, ids: Vec<Option<i64>>, valid: Vec<bool>) -> RecordBatch {
        let n = ids.len();
        let names: Vec<Option<&str>> = (0..n).map(|i| (i % 2 == 0).then_some("lens")).collect();
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let pixels = Float32Array::from((0..n * 4).map(|v| v as f32).collect::<Vec<_>>());
        let images = FixedSizeListArray::new(item, 4, Arc::new(pixels), Some(valid.into()));
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)][..n].to_vec())),
                Arc::new(images),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_table_and_its_image_column_come_back_from_the_fits_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        let schema = schema(4);
        let mut writer = FitsTableWriter::create(&path, schema.clone(), LAYOUT, 3, false).unwrap();
        writer.write(&batch(&schema, vec![Some(7), None], vec![true, false])).unwrap();
        assert!(!path.exists(), "the file appears only when complete");
        writer.write(&batch(&schema, vec![Some(9)], vec![true])).unwrap();
        assert_eq!(writer.finish().unwrap(), 3);

        let mut f = FitsFile::open(&path).unwrap();
        let primary = f.primary_hdu().unwrap();
        assert_eq!(primary.read_key::<String>(&mut f, "EXTNAME").unwrap(), "IMAGES");
        assert_eq!(primary.read_key::<String>(&mut f, "ORIGIN").unwrap(), "a test");
        let cube: Vec<f32> = primary.read_image(&mut f).unwrap();
        assert_eq!(&cube[..4], &[0.0, 1.0, 2.0, 3.0]);
        assert!(cube[4..8].iter().all(|v| v.is_nan()), "a null image is NaN: {cube:?}");
        assert_eq!(&cube[8..], &[0.0, 1.0, 2.0, 3.0]);
        let table = f.hdu("ROWS").unwrap();
        let ids: Vec<i64> = table.read_col(&mut f, "id").unwrap();
        assert_eq!(ids, vec![7, INT_NULL, 9]);
        assert_eq!(table.read_key::<i64>(&mut f, "TNULL1").unwrap(), INT_NULL);
        assert_eq!(table.read_key::<String>(&mut f, "TUNIT1").unwrap(), "count");
        let names: Vec<String> = table.read_col(&mut f, "name").unwrap();
        let names: Vec<&str> = names.iter().map(|s| s.trim_end()).collect();
        assert_eq!(names, vec!["lens", "", "lens"], "a null string is blank");
    }

    #[test]
    fn an_image_column_that_is_not_square_or_a_column_fits_cannot_hold_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        let err = FitsTableWriter::create(&path, schema(3), LAYOUT, 1, false).err().unwrap().to_string();
        assert!(err.contains("`image`") && err.contains("square"), "{err}");
        let no_cube = FitsTableLayout { cube: None, ..LAYOUT };
        let err = FitsTableWriter::create(&path, schema(4), no_cube, 1, false).err().unwrap().to_string();
        assert!(err.contains("`image`") && err.contains("no FITS table form"), "{err}");
        assert!(!path.exists());
    }
}
