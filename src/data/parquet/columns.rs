//! The columns of a table beside its images: labels and ids of a training set,
//! simulated parameters to bin a report by, numbers of a predictions table.
//! Images are read by [`crate::data::cutouts::open_input`]. A table is one Parquet
//! or Arrow IPC file, or a folder of Parquet files ([`super::dataset`]), whose
//! partition folders (`label=cdm/`) give string columns.

use super::dataset::{dataset_of, with_partition_columns, with_partition_fields, DatasetFile};
use crate::data::LabelTable;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use std::path::Path;

/// Named columns of numbers, row by row (`None` where null).
pub type FloatColumns = Vec<(String, Vec<Option<f64>>)>;

/// Class of the rows of a table without labels (super-resolution pairs need none).
pub const UNLABELLED: &str = "unlabelled";

/// The labels of a Parquet training set: `label_idx` (any integer type) with the
/// class names the schema's `lensmae:class_names` records, or `label` strings;
/// `id` when the table has one. Without labels, every row is [`UNLABELLED`]
/// unless `require_labels`.
pub fn read_label_table(path: &Path, require_labels: bool) -> Result<LabelTable> {
    label_table_of(path, &table_files(path)?, require_labels)
}

/// [`read_label_table`] of the files `sources` of the table `path` ([`table_files`]).
pub(crate) fn label_table_of(path: &Path, sources: &[DatasetFile], require_labels: bool) -> Result<LabelTable> {
    let err = |message: String| Error::Parquet { path: path.to_path_buf(), message };
    let schema = schema_of(sources)?;
    let mut class_names: Option<Vec<String>> =
        schema.metadata().get("lensmae:class_names").and_then(|s| serde_json::from_str(s).ok());
    let has_idx = schema.field_with_name("label_idx").is_ok();
    let has_label = schema.field_with_name("label").is_ok();
    let has_id = schema.field_with_name("id").is_ok();
    // Without lensmae's class list, `label_idx` numbers nameless classes: the
    // `label` strings (when there) say which class is which.
    let from_strings = has_label && (!has_idx || class_names.is_none());
    let unlabelled = !has_idx && !has_label;
    if unlabelled && require_labels {
        return Err(err("no `label_idx` or `label` column".into()));
    }
    let wanted: Vec<&str> = ["id", "label", "label_idx"].into_iter().filter(|n| schema.index_of(n).is_ok()).collect();
    let (mut labels, mut ids, mut label_strings) = (Vec::new(), Vec::new(), Vec::new());
    for_each_batch(sources, &wanted, |batch| {
        let batch_ids = id_column(&batch, ids.len() as i64).map_err(&err)?;
        if unlabelled {
            labels.resize(labels.len() + batch.num_rows(), 0);
        } else if !from_strings {
            labels.extend(integer_column(&batch, "label_idx").map_err(&err)?);
        } else {
            let col = batch.column_by_name("label").expect("projected");
            let strings = as_strings(col).map_err(|m| err(format!("column `label`: {m}")))?;
            for (k, s) in strings.iter().enumerate() {
                label_strings.push(s.ok_or_else(|| err(format!("row id {}: null label", batch_ids[k])))?.to_string());
            }
        }
        ids.extend(batch_ids);
        Ok(())
    })?;
    if unlabelled {
        class_names.get_or_insert_with(|| vec![UNLABELLED.to_string()]);
    }
    if from_strings {
        let names = class_names.get_or_insert_with(|| {
            let mut unique = label_strings.clone();
            unique.sort();
            unique.dedup();
            unique
        });
        for (k, s) in label_strings.iter().enumerate() {
            let idx = names
                .iter()
                .position(|n| n == s)
                .ok_or_else(|| err(format!("row id {}: unknown label `{s}`", ids[k])))?;
            labels.push(idx);
        }
    }
    let max_label = labels.iter().copied().max().unwrap_or(0);
    let class_names = class_names.unwrap_or_else(|| (0..=max_label).map(|i| format!("class_{i}")).collect());
    if let Some(k) = labels.iter().position(|&l| l >= class_names.len()) {
        return Err(err(format!("row id {}: label_idx {} but only {} classes", ids[k], labels[k], class_names.len())));
    }
    Ok(LabelTable { labels, class_names, ids: has_id.then_some(ids) })
}

/// The float columns `names` of a Parquet file that has them (others are left
/// out), row by row; integer columns are read as floats, nulls stay `None`.
/// For reporting metrics per bin of a simulated parameter (`sub_snr`, ...).
pub fn read_float_columns(path: &Path, names: &[&str]) -> Result<FloatColumns> {
    let err = |message: String| Error::Parquet { path: path.to_path_buf(), message };
    let sources = table_files(path)?;
    let schema = schema_of(&sources)?;
    let present: Vec<&str> =
        names.iter().copied().filter(|n| schema.field_with_name(n).is_ok_and(|f| f.data_type().is_numeric())).collect();
    let mut columns: FloatColumns = present.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for_each_batch(&sources, &present, |batch| {
        for (name, values) in columns.iter_mut() {
            let col = batch.column_by_name(name).expect("projected");
            let as_f64 = arrow_cast_f64(col).map_err(|m| err(format!("column `{name}`: {m}")))?;
            values.extend(as_f64.iter());
        }
        Ok(())
    })?;
    Ok(columns)
}

/// The files of the table `path`: a dataset folder's, else the file itself.
fn table_files(path: &Path) -> Result<Vec<DatasetFile>> {
    Ok(dataset_of(path)?.unwrap_or_else(|| vec![DatasetFile::alone(path)]))
}

/// The schema a table's files are read as: the first file's, with its partition folders' keys.
fn schema_of(sources: &[DatasetFile]) -> Result<Schema> {
    let schema = crate::data::table_schema(&sources[0].path)?;
    Ok(with_partition_fields(&schema, &sources[0].partition))
}

/// Every batch of the columns `names` of `sources` (Parquet or Arrow IPC files),
/// in order, with each file's partition values; a file without one of them is
/// refused.
fn for_each_batch(
    sources: &[DatasetFile],
    names: &[&str],
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    for source in sources {
        let stored: Vec<&str> =
            names.iter().copied().filter(|name| !source.partition.iter().any(|(key, _)| key == name)).collect();
        let missing = |name: &str| format!("no column `{name}` ({} has one)", sources[0].path.display());
        crate::data::for_each_table_batch(&source.path, &stored, &missing, |batch| {
            each(with_partition_columns(&source.path, batch, &source.partition)?)
        })?;
    }
    Ok(())
}

/// A numeric column as float64 (integers, float16 and decimals converted, nulls kept).
pub(crate) fn arrow_cast_f64(col: &ArrayRef) -> std::result::Result<arrow_array::Float64Array, String> {
    if !col.data_type().is_numeric() {
        return Err(format!("type {} is not read as a number here", col.data_type()));
    }
    let cast = arrow_cast::cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
    Ok(cast.as_primitive::<Float64Type>().clone())
}

/// A text column as strings, however its writer stored them: `string`,
/// `large_string` (polars, pandas), `string_view`, or dictionary-encoded (pandas'
/// categoricals).
fn as_strings(col: &ArrayRef) -> std::result::Result<arrow_array::StringArray, String> {
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let readable = match col.data_type() {
        DataType::Dictionary(_, values) => text(values),
        other => text(other),
    };
    if !readable {
        return Err(format!("{} is not text", col.data_type()));
    }
    let cast = arrow_cast::cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
    Ok(cast.as_string::<i32>().clone())
}

/// The `id` column of `batch`, else row numbers from `row0`.
fn id_column(batch: &RecordBatch, row0: i64) -> std::result::Result<Vec<i64>, String> {
    match batch.column_by_name("id") {
        None => Ok((0..batch.num_rows() as i64).map(|i| row0 + i).collect()),
        Some(_) => integer_column(batch, "id").map(|v| v.into_iter().map(|x| x as i64).collect()),
    }
}

fn integer_column(batch: &RecordBatch, name: &str) -> std::result::Result<Vec<usize>, String> {
    let col = batch.column_by_name(name).ok_or_else(|| format!("no column `{name}`"))?;
    if col.null_count() > 0 {
        return Err(format!("column `{name}` has nulls"));
    }
    let to_usize = |v: i64| usize::try_from(v).map_err(|_| format!("column `{name}` has a negative value {v}"));
    if !col.data_type().is_integer() {
        return Err(format!("column `{name}` is {}, not an integer", col.data_type()));
    }
    // Unsigned values beyond int64 are an error, not a null.
    let strict = arrow_cast::CastOptions { safe: false, ..Default::default() };
    let cast =
        arrow_cast::cast_with_options(col, &DataType::Int64, &strict).map_err(|e| format!("column `{name}`: {e}"))?;
    cast.as_primitive::<Int64Type>().values().iter().map(|&v| to_usize(v)).collect()
}
