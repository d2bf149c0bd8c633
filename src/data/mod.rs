//! Data on disk, one module per format: [`fits`], [`parquet`], [`ipc`] (Arrow IPC,
//! Feather), [`npy`] (with [`npy_tree`]), [`hats`] each read and write their format; the shared record
//! layout, atomic output, remote objects and fingerprints beside them.
//!
//! Every cutout reader implements [`cutouts::CutoutReader`] (batches of images
//! with their per-row problems and carried columns): the stage streams through
//! it, and training and evaluation read their Parquet and FITS sets through the
//! same readers ([`images`] adds the labels). Every dataset writer implements
//! [`DatasetWriter`]: batches in, one `finish` that moves the complete output
//! into place and reports what was written.

pub mod atomic;
pub mod augment;
pub mod cutouts;
pub mod fingerprint;
pub mod fits;
pub mod flux_unit;
pub mod hats;
pub mod images;
pub mod ipc;
pub mod npy;
pub mod npy_tree;
pub mod parquet;
mod parquet_bounds;
pub mod pickle;
pub mod predictions;
pub mod record;
pub mod regrid;
pub mod remote;
pub mod resample;
pub mod schema;
pub mod simulate;

use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub use record::{DatasetInfo, Record, Task};

/// A local file read whole when it holds at most `limit` bytes, else `Err` with
/// its size (more than `limit` for a file that declares none: a FIFO,
/// `/dev/zero`), refused before anything is allocated: a sparse file of
/// terabytes costs nothing to make.
pub(crate) fn read_whole_at_most(path: &Path, limit: u64) -> Result<std::result::Result<Vec<u8>, u64>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let declared = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if declared > limit {
        return Ok(Err(declared));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(if bytes.len() as u64 > limit { Err(bytes.len() as u64) } else { Ok(bytes) })
}

/// Runs a decoder call of a crate that may panic on a malformed file (the
/// parquet crate, arrow-ipc), turning the panic into the refusal `malformed file
/// (the decoder failed: ...)` for the caller to name the file in.
pub(crate) fn contain_decoder_panic<T>(call: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("malformed file (the decoder failed: {why})")
    })
}

/// Whether `path` is named as a table file: Parquet (`.parquet`, `.pq`) or Arrow
/// IPC (`.arrow`, `.feather`, `.ipc`, `.arrows`).
pub(crate) fn is_table_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "parquet" | "pq") || ipc::IpcFormat::for_name(path).is_some()
}

/// Whether the local file `path` is an Arrow IPC file (by its first bytes,
/// whatever its name), rather than Parquet. Only a regular file is looked into:
/// reading a pipe's first bytes would lose them.
pub(crate) fn is_ipc_file(path: &Path) -> Result<bool> {
    Ok(!remote::is_remote(path) && path.is_file() && ipc::IpcFormat::of_file(path)?.is_some())
}

/// The Arrow schema, with its metadata, of the table file `path`: an Arrow IPC
/// file, else Parquet.
pub fn table_schema(path: &Path) -> Result<arrow_schema::SchemaRef> {
    if is_ipc_file(path)? {
        return Ok(ipc::IpcTable::open(path)?.schema().clone());
    }
    Ok(parquet::open_parquet(path)?.schema().clone())
}

/// Every batch of the columns `names` of the table file `path` (Arrow IPC or
/// Parquet), in order; a missing column is the error `missing` words.
pub fn for_each_table_batch(
    path: &Path,
    names: &[&str],
    missing: &dyn Fn(&str) -> String,
    each: impl FnMut(arrow_array::RecordBatch) -> Result<()>,
) -> Result<()> {
    if is_ipc_file(path)? {
        return ipc::for_each_batch(path, names, missing, each);
    }
    parquet::for_each_batch(path, names, missing, each)
}

/// Every file under `root`, going into the folders whose names `into_folder` accepts,
/// each folder once however many names lead to it: a symbolic link back up the tree
/// (`Dir=1 -> ..`) would otherwise make the walk endless, or the recursion overflow the
/// stack, and one across the tree would give its files twice. Hands each file that is
/// not a folder to `file` with its name; the order is the file system's.
pub(crate) fn walk_files(
    root: &Path,
    into_folder: impl Fn(&str) -> bool,
    mut file: impl FnMut(PathBuf, &str),
) -> Result<()> {
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !visited.insert(std::fs::canonicalize(&dir).map_err(|e| Error::io(&dir, e))?) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if path.is_dir() {
                if into_folder(&name) {
                    stack.push(path);
                }
            } else {
                file(path, &name);
            }
        }
    }
    Ok(())
}

/// Compares strings with their runs of digits as numbers: `part.2` < `part.10`.
pub(crate) fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (Some(x), Some(y)) = (a.chars().next(), b.chars().next()) else { return a.len().cmp(&b.len()) };
        if x.is_ascii_digit() && y.is_ascii_digit() {
            let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (n, m) = (digits(a), digits(b));
            let (p, q) = (a[..n].trim_start_matches('0'), b[..m].trim_start_matches('0'));
            // More significant digits is the larger number; then digit by digit; then
            // fewer leading zeros first, so that the order is total.
            let order = p.len().cmp(&q.len()).then_with(|| p.cmp(q)).then_with(|| n.cmp(&m));
            if order != std::cmp::Ordering::Equal {
                return order;
            }
            (a, b) = (&a[n..], &b[m..]);
        } else {
            if x != y {
                return x.cmp(&y);
            }
            (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
        }
    }
}

/// The labels of a training set, read beside its images (a FITS file's binary
/// table, a Parquet table's label columns).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTable {
    /// Per row: the class index.
    pub labels: Vec<usize>,
    /// Class names by index.
    pub class_names: Vec<String>,
    /// Per row: the `id` column, when the table has one.
    pub ids: Option<Vec<i64>>,
}

/// What a finished writer reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSummary {
    /// Rows written.
    pub rows: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// The output file or folder.
    pub path: PathBuf,
}

/// A streaming dataset writer.
pub trait DatasetWriter {
    /// Append rows.
    fn write_batch(&mut self, records: &[Record]) -> Result<()>;
    /// Complete the output and move it into place.
    fn finish(self: Box<Self>) -> Result<WriteSummary>;
}

/// Output formats of `lensmae simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `dataset.parquet` with tensor columns.
    Parquet,
    /// `dataset.fits`: image cube(s) plus a binary table of labels and parameters.
    Fits,
    /// The DeepLense release layout: class folders of float64 `.npy` files.
    Npy,
    /// `dataset.arrow`: the Parquet table's columns and metadata in an Arrow IPC
    /// (Feather v2) file, uncompressed, for readers that memory-map it.
    Arrow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn natural_order_reads_numbers_as_numbers() {
        let mut names = vec!["part.10.parquet", "part.2.parquet", "part.1.parquet", "part.02.parquet", "a"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, ["a", "part.1.parquet", "part.2.parquet", "part.02.parquet", "part.10.parquet"]);
        assert_eq!(natural_order("x", "x"), Ordering::Equal);
        assert_eq!(natural_order("x", "x1"), Ordering::Less);
    }
}
