//! One Arrow table written to an Arrow IPC file batch by batch (the file format
//! for `.arrow`, `.feather`, `.ipc`; the stream format for `.arrows`), under a
//! hidden temporary name until it is complete. Uncompressed, so that readers can
//! memory-map it (pyarrow `ipc.open_file(pa.memory_map(path))`, polars
//! `read_ipc(memory_map=True)`): Parquet is the compact format.

use super::{ipc_error, IpcFormat};
use crate::data::atomic::AtomicPath;
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::SchemaRef;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

enum Writer {
    File(FileWriter<BufWriter<File>>),
    Stream(StreamWriter<BufWriter<File>>),
}

/// Streams record batches into an Arrow IPC file that appears only when finished.
pub struct IpcTableWriter {
    atomic: AtomicPath,
    writer: Writer,
    rows: usize,
}

impl IpcTableWriter {
    /// Starts `target` in `format` (refused if it exists, unless `overwrite`);
    /// the schema's metadata is the file's.
    pub fn create(target: &Path, schema: SchemaRef, format: IpcFormat, overwrite: bool) -> Result<IpcTableWriter> {
        let atomic = AtomicPath::new(target, overwrite)?;
        let file = File::create(atomic.temp_path()).map_err(|e| Error::io(atomic.temp_path(), e))?;
        let err = |e: arrow_schema::ArrowError| ipc_error(target, e.to_string());
        let writer = match format {
            IpcFormat::File => Writer::File(FileWriter::try_new_buffered(file, &schema).map_err(err)?),
            IpcFormat::Stream => Writer::Stream(StreamWriter::try_new_buffered(file, &schema).map_err(err)?),
        };
        Ok(IpcTableWriter { atomic, writer, rows: 0 })
    }

    /// Appends one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.writer {
            Writer::File(w) => w.write(batch),
            Writer::Stream(w) => w.write(batch),
        }
        .map_err(|e| ipc_error(self.atomic.target(), e.to_string()))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Writes the footer (or end-of-stream marker), flushes, and moves the file
    /// into place; returns the rows written.
    pub fn finish(self) -> Result<usize> {
        let IpcTableWriter { atomic, writer, rows } = self;
        let err = |e: arrow_schema::ArrowError| ipc_error(atomic.target(), e.to_string());
        let file = match writer {
            Writer::File(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner().map_err(err)?
            }
            Writer::Stream(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner().map_err(err)?
            }
        };
        drop(file.into_inner().map_err(|e| Error::io(atomic.temp_path(), e.into_error()))?);
        atomic.commit()?;
        Ok(rows)
    }
}
