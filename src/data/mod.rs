//! Datasets on disk: the simulator's writers (Parquet, FITS, `.npy` trees), the
//! shared record layout, atomic output, and `.npy` reading.
//!
//! Every writer implements [`DatasetWriter`]: batches in, one `finish` that moves
//! the complete output into place and reports what was written.

pub mod atomic;
pub mod augment;
pub mod fingerprint;
pub mod fits;
pub mod images;
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

use crate::Result;
use std::path::PathBuf;

pub use record::{DatasetInfo, Record, Task};

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
}
