//! The library's one error type. Every error that concerns a file names the path,
//! every config error names the key, so a survey operator can fix the input without
//! reading the source.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in lensmae's library code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error (in the message, not chained as a source: a chain
        /// would print it twice).
        cause: std::io::Error,
    },
    /// A FITS file could not be read or written.
    #[error("{path}: FITS error: {message}")]
    Fits {
        /// The FITS file.
        path: PathBuf,
        /// What cfitsio or lensmae reported.
        message: String,
    },
    /// A Parquet or Arrow operation failed.
    // The parquet crate's own messages start with the same words.
    #[error("{path}: Parquet error: {}", message.trim_start_matches("Parquet error: "))]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// What arrow/parquet reported.
        message: String,
    },
    /// A table (an Arrow IPC file, or record batches handed over in memory)
    /// could not be decoded, or lacks a column asked for.
    #[error("{path}: {message}")]
    Table {
        /// The file, or the name the table was given.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A `.npy` file could not be read or written.
    #[error("{path}: npy error: {message}")]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A model checkpoint could not be written, read, or used as asked.
    #[error("{path}: checkpoint error: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is missing, unknown or impossible.
    #[error("config error at `{key}`: {message}")]
    Config {
        /// Dotted path of the offending key, e.g. `source.r_sersic`.
        key: String,
        /// Why the value is refused.
        message: String,
    },
    /// A tensor operation failed (shapes, dtypes, devices).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Array shapes do not fit together.
    #[error("shape error: {0}")]
    Shape(String),
    /// Readable inputs that do not fit together (a model and the data it is
    /// evaluated on, a table of predictions and its labels).
    #[error("{path}: {message}")]
    Mismatch {
        /// The input concerned.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// The run was asked to stop (Ctrl-C, SIGTERM, a caller's [`crate::cancel::Cancel`]).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// A config error for `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { key: key.into(), message: message.into() }
    }

    /// `Ok` where `ok`, else [`Error::config`] of `key` and `message`: the checks of
    /// settings and sizes, one line each.
    pub fn check(ok: bool, key: &str, message: impl Into<String>) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(Error::config(key, message))
        }
    }

    /// A checkpoint error for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }

    /// An I/O error that names its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
}
