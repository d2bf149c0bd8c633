//! A folder of Parquet files read as one table: the datasets Spark, Dask, Ray,
//! pyarrow and polars write (`part-00000-....snappy.parquet`, `part.0.parquet`), with
//! Hive-style partition folders (`label=cdm/`) whose values become string columns.
//!
//! Files and folders whose names begin with `_` or `.` are the writers' bookkeeping
//! (`_SUCCESS`, `_metadata`, `.part-0.parquet.crc`, `_temporary/`) and are passed
//! over. On S3 (`s3://bucket/prefix`) the prefix is listed; a plain web server cannot
//! list a folder, so there a dataset is read by naming its files. Files are read in
//! natural order of their paths (`part.2` before `part.10`, as Dask numbers them), so
//! the output rows follow the writer's partitions.

use crate::data::remote;
use crate::{Error, Result};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The value Hive writes for a null partition value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// `(key, value)` of a dataset file's `key=value` folders (null: Hive's default partition).
pub type Partition = Vec<(String, Option<String>)>;

/// One Parquet file of a dataset and the partition values its folders give it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetFile {
    /// The file.
    pub path: PathBuf,
    /// `(key, value)` of each `key=value` folder between the root and the file, outermost first.
    pub partition: Partition,
}

impl DatasetFile {
    /// A Parquet file read on its own, outside any partition folder.
    pub fn alone(path: &Path) -> DatasetFile {
        DatasetFile { path: path.to_path_buf(), partition: Partition::new() }
    }
}

/// What a folder given as input holds, found by one walk of it.
#[derive(Debug, Clone, PartialEq)]
pub enum InputFolder {
    /// Parquet files: a dataset ([`dataset_of`]).
    Dataset(Vec<DatasetFile>),
    /// A local folder of FITS stamps, as cutout services deliver them, in natural
    /// order of their paths (`stamp-2` before `stamp-10`).
    FitsStamps(Vec<PathBuf>),
    /// Neither: not a folder, or a folder of `.npy` images or of nothing lensmae reads.
    Other,
}

/// What the folder `dir` holds for `predict`: a local folder of FITS files stands
/// for them; one holding Parquet, `.npy` or Arrow IPC files beside them is refused,
/// since which kind to read would be a guess and a run's output written into the
/// folder would be read as cutouts the next time. Else as [`dataset_of`].
pub fn input_folder(dir: &Path) -> Result<InputFolder> {
    let Some(mut found) = walk_if_listable(dir)? else { return Ok(InputFolder::Other) };
    if found.fits.is_empty() || remote::is_remote(dir) {
        return Ok(dataset_from(dir, found)?.map_or(InputFolder::Other, InputFolder::Dataset));
    }
    if let Some(other) = found.parquet.first().or(found.npy.as_ref()).or(found.ipc.as_ref()) {
        return Err(Error::config(
            "input",
            format!(
                "{} holds both FITS files ({}) and {}: give one kind (a folder's FITS files are its cutouts)",
                dir.display(),
                found.fits[0].display(),
                other.display()
            ),
        ));
    }
    found.fits.sort_by(|a, b| crate::data::natural_order(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(InputFolder::FitsStamps(found.fits))
}

/// The Parquet files of `dir`, in natural order of their paths, when it is a
/// dataset: a local folder or an S3 prefix (one that does not name a file) holding
/// Parquet files, in it or in folders below; none for a file, or a folder of `.npy`
/// images or of nothing lensmae reads. A folder that holds both Parquet files and
/// `.npy` files, or whose partition folders disagree on their keys, is refused
/// rather than read in part. The folder is walked (or listed) once: callers pass
/// the files on.
pub fn dataset_of(dir: &Path) -> Result<Option<Vec<DatasetFile>>> {
    match walk_if_listable(dir)? {
        Some(found) => dataset_from(dir, found),
        None => Ok(None),
    }
}

/// The files under `dir` by kind, when it is a local folder or an S3 prefix that
/// does not name a file.
fn walk_if_listable(dir: &Path) -> Result<Option<Walked>> {
    let listable = match remote::is_remote(dir) {
        true => {
            let named_file = dir.extension().is_some_and(|e| {
                ["parquet", "parq", "pq", "fits", "fit", "fts", "gz", "fz", "npy"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            });
            dir.to_string_lossy().starts_with("s3://") && !named_file
        }
        false => dir.is_dir(),
    };
    match listable {
        true => walk(dir).map(Some),
        false => Ok(None),
    }
}

/// The dataset of the files `found` under `dir` (see [`dataset_of`]).
fn dataset_from(dir: &Path, found: Walked) -> Result<Option<Vec<DatasetFile>>> {
    let Walked { mut parquet, npy, .. } = found;
    if parquet.is_empty() {
        return Ok(None);
    }
    if let Some(npy) = npy {
        return Err(Error::config(
            "input",
            format!("{} holds both Parquet files and .npy images ({}): give one kind", dir.display(), npy.display()),
        ));
    }
    parquet.sort_by(|a, b| crate::data::natural_order(&a.to_string_lossy(), &b.to_string_lossy()));
    let files: Vec<DatasetFile> = parquet
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(dir).expect("under the root");
            let partition = relative.parent().map(partition_values).unwrap_or_default();
            DatasetFile { path, partition }
        })
        .collect();
    let keys = |f: &DatasetFile| f.partition.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    if let Some(other) = files.iter().find(|f| keys(f) != keys(&files[0])) {
        return Err(Error::config(
            "input",
            format!(
                "{}: partition folders disagree: {} is under {:?}, {} under {:?}",
                dir.display(),
                files[0].path.display(),
                keys(&files[0]),
                other.path.display(),
                keys(other)
            ),
        ));
    }
    Ok(Some(files))
}

/// `schema` with a string field for each partition key it does not hold itself.
pub(crate) fn with_partition_fields(schema: &Schema, partition: &Partition) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (key, _) in partition {
        if schema.field_with_name(key).is_err() {
            fields.push(Field::new(key, DataType::Utf8, true));
        }
    }
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `batch` with a column of its file's value for each partition key it lacks.
pub(crate) fn with_partition_columns(path: &Path, batch: RecordBatch, partition: &Partition) -> Result<RecordBatch> {
    let missing: Vec<_> = partition.iter().filter(|(key, _)| batch.column_by_name(key).is_none()).collect();
    if missing.is_empty() {
        return Ok(batch);
    }
    let schema = with_partition_fields(&batch.schema(), partition);
    let mut columns = batch.columns().to_vec();
    for (_, value) in missing {
        columns.push(Arc::new(StringArray::from(vec![value.as_deref(); batch.num_rows()])) as ArrayRef);
    }
    RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| Error::Parquet { path: path.to_path_buf(), message: e.to_string() })
}

/// The data files under a folder, by kind (in the order found).
struct Walked {
    parquet: Vec<PathBuf>,
    fits: Vec<PathBuf>,
    /// The first `.npy` file, if any.
    npy: Option<PathBuf>,
    /// The first Arrow IPC file, if any.
    ipc: Option<PathBuf>,
}

/// The data files under `dir` (a folder, or an S3 prefix), by kind.
fn walk(dir: &Path) -> Result<Walked> {
    let mut found = Walked { parquet: Vec::new(), fits: Vec::new(), npy: None, ipc: None };
    let mut file_found = |path: PathBuf, name: &str| {
        if !visible(name) {
            return;
        }
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".parquet") || lower.ends_with(".parq") || lower.ends_with(".pq") {
            found.parquet.push(path);
        } else if lower.ends_with(".npy") {
            found.npy.get_or_insert(path);
        } else if crate::data::fits::has_fits_name(name) {
            found.fits.push(path);
        } else if crate::data::ipc::IpcFormat::for_name(&path).is_some() {
            found.ipc.get_or_insert(path);
        }
    };
    if remote::is_remote(dir) {
        for key in remote::list_folder(dir)? {
            // Keys under a hidden or bookkeeping folder (`_temporary/0/...`) are passed over.
            let (folders, name) = key.rsplit_once('/').unwrap_or(("", &key));
            if folders.split('/').filter(|f| !f.is_empty()).all(visible) {
                file_found(dir.join(&key), name);
            }
        }
    } else {
        crate::data::walk_files(dir, visible, &mut file_found)?;
    }
    Ok(found)
}

/// Whether a file or folder of a dataset holds data, not a writer's bookkeeping.
fn visible(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

/// The `key=value` folders of `relative` (a file's folder below the root), values
/// unescaped as Spark and Hive escape them (`%2F` for `/`).
fn partition_values(relative: &Path) -> Vec<(String, Option<String>)> {
    relative
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter_map(|name| name.split_once('='))
        .map(|(key, value)| (unescape(key), Some(unescape(value)).filter(|v| v != HIVE_NULL)))
        .collect()
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_folders_give_unescaped_values_and_nulls() {
        let got = partition_values(Path::new("label=cdm/band=VIS%2FY/run=__HIVE_DEFAULT_PARTITION__"));
        let want = [("label", Some("cdm")), ("band", Some("VIS/Y")), ("run", None)];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.map(str::to_string))));
        assert_eq!(unescape("100%"), "100%"); // a lone percent sign is itself
        assert!(partition_values(Path::new("plain/folders")).is_empty());
    }
}
