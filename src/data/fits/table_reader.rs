//! A FITS table [`super::table_writer::FitsTableWriter`] wrote, read back as Arrow
//! batches: its binary table extension's columns (nulls as NaN, TNULLn or blank
//! strings, as written) and its primary cube as a column of images (an all-NaN
//! plane, a null row, as written). What `lensmae predict --out x.fits` wrote can so
//! go on to `lensmae sr-fits`.

use super::table_writer::FitsTableLayout;
use super::{check_declared_bytes, fits_message, open_fits};
use crate::{Error, Result};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use fitsio::hdu::HduInfo;
use fitsio::tables::ColumnDataType;
use std::path::Path;
use std::sync::Arc;

/// Rows decoded at a time.
const ROWS_PER_BATCH: usize = 1024;

/// How one column is read.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The primary cube's planes of `side` x `side`.
    Cube { side: usize },
    /// Table column `number` (from 1) of this FITS type, integers with this TNULL.
    Column { kind: ColumnDataType, null: Option<i64>, number: usize },
}

/// The open file, its table, its rows, and every column it offers with its Arrow field.
struct FitsTable {
    file: fitsio::FitsFile,
    table: fitsio::hdu::FitsHdu,
    rows: usize,
    columns: Vec<(Field, Source)>,
    /// The layout's header keywords found in the primary header, under their metadata keys.
    metadata: std::collections::HashMap<String, String>,
}

impl FitsTable {
    fn open(path: &Path, layout: &FitsTableLayout) -> std::result::Result<FitsTable, String> {
        let mut f = open_fits(path)?;
        let table = super::hdu_named(&mut f, layout.table_name)?
            .ok_or_else(|| format!("no `{}` table extension", layout.table_name))?;
        let HduInfo::TableInfo { column_descriptions, num_rows } = &table.info else {
            return Err(format!("`{}` is not a binary table", layout.table_name));
        };
        let (rows, descriptions) = (*num_rows, column_descriptions.clone());
        let row_bytes: i64 = table.read_key(&mut f, "NAXIS1").map_err(|e| fits_message(&e))?;
        let declared = u64::try_from(row_bytes).ok().and_then(|b| b.checked_mul(rows as u64));
        check_declared_bytes(&mut f, path, &format!("the `{}` table", layout.table_name), declared)?;
        let mut columns = Vec::new();
        for (index, description) in descriptions.iter().enumerate() {
            use ColumnDataType::*;
            let kind = description.data_type.typ;
            let data_type = match kind {
                _ if description.data_type.repeat != 1 && !matches!(kind, String | Text) => continue,
                Byte | SignedByte | Short | UnsignedShort | Int | Long | LongLong => DataType::Int64,
                Float => DataType::Float32,
                Double => DataType::Float64,
                String | Text => DataType::Utf8,
                Logical => DataType::Boolean,
                _ => continue,
            };
            let null = table.read_key::<i64>(&mut f, &format!("TNULL{}", index + 1)).ok();
            let source = Source::Column { kind, null, number: index + 1 };
            columns.push((Field::new(description.name.trim(), data_type, true), source));
        }
        let mut metadata = std::collections::HashMap::new();
        // (hdu_at makes the primary HDU the current one, which the keywords are read from.)
        if super::hdu_at(&mut f, 0)?.is_some() {
            for (key, keyword) in layout.header_keys {
                if let Some(value) = read_long_string(&mut f, keyword) {
                    metadata.insert(key.to_string(), value.trim().to_string());
                }
            }
        }
        if let Some((name, _)) = layout.cube {
            if let Some(side) = cube_side(&mut f, path, rows)? {
                let item = Arc::new(Field::new("item", DataType::Float32, true));
                let field = Field::new(name, DataType::FixedSizeList(item, (side * side) as i32), true);
                columns.push((field, Source::Cube { side }));
            }
        }
        Ok(FitsTable { file: f, table, rows, columns, metadata })
    }
}

/// The columns lensmae reads of the FITS table `path` laid out as `layout` says:
/// integer columns as Int64, `E` as Float32, `D` as Float64, text as Utf8, the
/// cube (when the primary HDU holds one plane a row) as a column of images; the
/// layout's header keywords as the schema's metadata.
pub fn schema(path: &Path, layout: &FitsTableLayout) -> Result<Arc<Schema>> {
    let table = FitsTable::open(path, layout).map_err(|message| Error::Fits { path: path.to_path_buf(), message })?;
    let fields: Vec<Field> = table.columns.into_iter().map(|(field, _)| field).collect();
    Ok(Arc::new(Schema::new_with_metadata(fields, table.metadata)))
}

/// Every batch of the columns `names` of the FITS table `path` laid out as `layout`
/// says, in order and typed as [`schema`] says; a missing column is the error
/// `missing` words. Text loses its trailing blanks, which FITS does not keep.
pub fn for_each_batch(
    path: &Path,
    layout: &FitsTableLayout,
    names: &[&str],
    missing: &dyn Fn(&str) -> String,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let fail = |message: String| Error::Fits { path: path.to_path_buf(), message };
    let FitsTable { file: mut f, table, rows, columns, .. } = FitsTable::open(path, layout).map_err(fail)?;
    let chosen: Vec<(Field, Source)> = names
        .iter()
        .map(|&name| columns.iter().find(|(field, _)| field.name() == name).cloned().ok_or_else(|| fail(missing(name))))
        .collect::<Result<_>>()?;
    let schema = Arc::new(Schema::new(chosen.iter().map(|(field, _)| field.clone()).collect::<Vec<_>>()));
    for start in (0..rows).step_by(ROWS_PER_BATCH) {
        let range = start..(start + ROWS_PER_BATCH).min(rows);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(chosen.len());
        for (field, source) in &chosen {
            let name = field.name();
            let read = |e: fitsio::errors::Error| fail(format!("column `{name}`: {}", fits_message(&e)));
            let array: ArrayRef = match *source {
                Source::Cube { side } => {
                    let n = side * side;
                    let primary = f.primary_hdu().map_err(read)?;
                    let pixels: Vec<f32> =
                        primary.read_section(&mut f, range.start * n, range.end * n).map_err(read)?;
                    let valid: Vec<bool> =
                        pixels.chunks_exact(n).map(|plane| plane.iter().any(|v| !v.is_nan())).collect();
                    let item = Arc::new(Field::new("item", DataType::Float32, true));
                    let values = Arc::new(arrow_array::Float32Array::from(pixels));
                    Arc::new(arrow_array::FixedSizeListArray::new(item, n as i32, values, Some(valid.into())))
                }
                Source::Column { kind: ColumnDataType::Float, .. } => {
                    let values: Vec<f32> = table.read_col_range(&mut f, name, &range).map_err(read)?;
                    Arc::new(arrow_array::Float32Array::from_iter(
                        values.into_iter().map(|v| (!v.is_nan()).then_some(v)),
                    ))
                }
                Source::Column { kind: ColumnDataType::Double, .. } => {
                    let values: Vec<f64> = table.read_col_range(&mut f, name, &range).map_err(read)?;
                    Arc::new(arrow_array::Float64Array::from_iter(
                        values.into_iter().map(|v| (!v.is_nan()).then_some(v)),
                    ))
                }
                Source::Column { kind: ColumnDataType::String | ColumnDataType::Text, .. } => {
                    let values: Vec<String> = table.read_col_range(&mut f, name, &range).map_err(read)?;
                    Arc::new(arrow_array::StringArray::from_iter(values.into_iter().map(|v| {
                        let v = v.trim_end().to_string();
                        (!v.is_empty()).then_some(v)
                    })))
                }
                Source::Column { kind: ColumnDataType::Logical, number, .. } => {
                    let values = read_logicals(&mut f, &table, number, &range)
                        .map_err(|m| fail(format!("column `{name}`: {m}")))?;
                    Arc::new(arrow_array::BooleanArray::from(values))
                }
                Source::Column { null, .. } => {
                    let values: Vec<i64> = table.read_col_range(&mut f, name, &range).map_err(read)?;
                    Arc::new(arrow_array::Int64Array::from_iter(
                        values.into_iter().map(|v| (Some(v) != null).then_some(v)),
                    ))
                }
            };
            arrays.push(array);
        }
        each(RecordBatch::try_new(schema.clone(), arrays).map_err(|e| fail(e.to_string()))?)?;
    }
    Ok(())
}

/// Rows `range` of the table's logical column `number` (from 1), undefined values as None.
fn read_logicals(
    f: &mut fitsio::FitsFile,
    table: &fitsio::hdu::FitsHdu,
    number: usize,
    range: &std::ops::Range<usize>,
) -> std::result::Result<Vec<Option<bool>>, String> {
    // fitsio reads logicals without their nulls: cfitsio's flagged read instead.
    super::move_to(f, table.number)?;
    let n = range.len();
    let (mut values, mut undefined) = (vec![0 as std::os::raw::c_char; n], vec![0 as std::os::raw::c_char; n]);
    let (mut any_undefined, mut status) = (0, 0);
    // SAFETY: the file is open and its current HDU the table; both buffers hold `n` elements.
    unsafe {
        fitsio::sys::ffgcfl(
            f.as_raw(),
            number as i32,
            range.start as i64 + 1,
            1,
            n as i64,
            values.as_mut_ptr(),
            undefined.as_mut_ptr(),
            &mut any_undefined,
            &mut status,
        );
    }
    fitsio::errors::check_status(status).map_err(|e| fits_message(&e))?;
    Ok(values.into_iter().zip(undefined).map(|(v, u)| (u == 0).then_some(v != 0)).collect())
}

/// A string keyword of the current HDU however long (cfitsio's CONTINUE cards,
/// which the writer uses for paths and commands); None where it is not there.
fn read_long_string(f: &mut fitsio::FitsFile, key: &str) -> Option<String> {
    let key = std::ffi::CString::new(key).ok()?;
    let mut value: *mut std::os::raw::c_char = std::ptr::null_mut();
    let mut status = 0;
    // SAFETY: the file is open for the call; cfitsio allocates `value` (its length
    // bounded by the header it reads), which is copied and freed with its own `fffree`.
    unsafe {
        fitsio::sys::ffgkls(f.as_raw(), key.as_ptr(), &mut value, std::ptr::null_mut(), &mut status);
        if status != 0 || value.is_null() {
            return None;
        }
        let text = std::ffi::CStr::from_ptr(value).to_string_lossy().into_owned();
        fitsio::sys::fffree(value.cast(), &mut status);
        Some(text)
    }
}

/// The side of the primary cube's square planes, one a table row; None where the
/// primary HDU holds no image.
fn cube_side(f: &mut fitsio::FitsFile, path: &Path, rows: usize) -> std::result::Result<Option<usize>, String> {
    let Some(primary) = super::hdu_at(f, 0)? else { return Ok(None) };
    let HduInfo::ImageInfo { shape, .. } = &primary.info else { return Ok(None) };
    match shape.as_slice() {
        [] | [0, ..] => Ok(None),
        [planes, h, w] if h == w && *planes == rows => {
            let bitpix: i64 = primary.read_key(f, "BITPIX").map_err(|e| fits_message(&e))?;
            let declared = [*planes as u64, *h as u64, *w as u64, bitpix.unsigned_abs() / 8]
                .into_iter()
                .try_fold(1u64, |bytes, n| bytes.checked_mul(n));
            check_declared_bytes(f, path, "the primary cube", declared)?;
            Ok(Some(*h))
        }
        other => Err(format!("the primary HDU is {other:?}, not {rows} square images, one a table row")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::fits::table_writer::FitsTableWriter;
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, FixedSizeListArray, Float32Array, Float64Array, Int64Array, StringArray};
    use std::collections::HashMap;

    const LAYOUT: FitsTableLayout =
        FitsTableLayout { table_name: "ROWS", cube: Some(("image", "IMAGES")), header_keys: &[("x:origin", "ORIGIN")] };

    #[test]
    fn a_table_the_writer_wrote_comes_back_with_its_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.fits");
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let fields = vec![
            Field::new("id", DataType::Int64, true),
            Field::new("p", DataType::Float32, true),
            Field::new("chi2", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("in_domain", DataType::Boolean, true),
            Field::new("image", DataType::FixedSizeList(item.clone(), 4), true),
        ];
        let long = "a path ".repeat(30);
        let schema = Arc::new(Schema::new_with_metadata(fields, HashMap::from([("x:origin".into(), long.clone())])));
        let pixels = Float32Array::from((0..12).map(|v| v as f32).collect::<Vec<_>>());
        let written = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None, Some(-3)])),
                Arc::new(Float32Array::from(vec![Some(0.5), None, Some(1.0)])),
                Arc::new(Float64Array::from(vec![None, Some(2.5), Some(1e300)])),
                Arc::new(StringArray::from(vec![Some("cards  "), None, Some("ok")])),
                Arc::new(arrow_array::BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(FixedSizeListArray::new(item, 4, Arc::new(pixels), Some(vec![true, false, true].into()))),
            ],
        )
        .unwrap();
        let mut writer = FitsTableWriter::create(&path, schema, LAYOUT, 3, false).unwrap();
        writer.write(&written).unwrap();
        writer.finish().unwrap();

        let read = schema_of(&path);
        assert_eq!(read.metadata()["x:origin"], long.trim(), "a long header value, whole");
        let names = ["image", "text", "chi2", "p", "id", "in_domain"];
        let mut batches = Vec::new();
        for_each_batch(&path, &LAYOUT, &names, &|n| format!("no {n}"), |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        let got = &batches[0];
        assert_eq!(got.column(4).as_primitive::<arrow_array::types::Int64Type>(), written.column(0).as_primitive());
        assert_eq!(got.column(3).as_primitive::<arrow_array::types::Float32Type>(), written.column(1).as_primitive());
        assert_eq!(got.column(2).as_primitive::<arrow_array::types::Float64Type>(), written.column(2).as_primitive());
        // FITS keeps no trailing blanks.
        let text: Vec<Option<&str>> = got.column(1).as_string::<i32>().iter().collect();
        assert_eq!(text, [Some("cards"), None, Some("ok")]);
        assert_eq!(got.column(5).as_boolean(), written.column(4).as_boolean());
        let images = got.column(0).as_fixed_size_list();
        assert_eq!(images.nulls().map(|n| n.iter().collect::<Vec<_>>()), Some(vec![true, false, true]));
        assert_eq!(images.value(2).as_primitive::<arrow_array::types::Float32Type>().values(), &[8.0, 9.0, 10.0, 11.0]);
        let missing = for_each_batch(&path, &LAYOUT, &["nope"], &|n| format!("no column `{n}`"), |_| Ok(()));
        assert!(missing.unwrap_err().to_string().contains("no column `nope`"));
    }

    fn schema_of(path: &Path) -> Arc<Schema> {
        schema(path, &LAYOUT).unwrap()
    }
}
