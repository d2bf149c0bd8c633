//! The simulator's FITS writer: one image cube per image column (the first in the
//! primary HDU, the others in extensions named after the column), then a binary
//! table `PARAMS` with `id`, `label`, `label_idx` and every parameter column, one
//! row per cube plane. Undefined parameters are NaN (the FITS float convention).
//!
//! The cube has NAXIS1 = width, NAXIS2 = height, NAXIS3 = rows, so astropy's
//! `hdul[0].data` is `(rows, height, width)`.

use super::atomic::AtomicPath;
use super::record::{DatasetInfo, Record, PARAM_COLUMNS};
use super::{DatasetWriter, WriteSummary};
use crate::{Error, Result};
use fitsio::hdu::FitsHdu;
use fitsio::images::{ImageDescription, ImageType};
use fitsio::tables::{ColumnDataType, ColumnDescription};
use fitsio::FitsFile;
use std::path::{Path, PathBuf};

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
                primary.write_key(&mut file, &short_key, value.clone()).map_err(&err)?;
            }
        }
        let mut cubes = vec![primary];
        for (k, (name, _)) in columns.iter().enumerate().skip(1) {
            let desc = ImageDescription { data_type: ImageType::Float, dimensions: &dims[k] };
            cubes.push(file.create_image(name.to_uppercase(), &desc).map_err(&err)?);
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

/// Set a string keyword of the current HDU, replacing an existing one
/// (fitsio's `write_key` always appends, which would leave two EXTNAME cards).
fn update_string_key(file: &mut FitsFile, key: &str, value: &str) -> Result<(), fitsio::errors::Error> {
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

fn fits_error(path: &Path) -> impl Fn(fitsio::errors::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |e| Error::Fits { path: path.clone(), message: e.to_string() }
}
