//! One Arrow table written to an Arrow IPC file batch by batch (the file format
//! for `.arrow`, `.feather`, `.ipc`; the stream format for `.arrows`), under a
//! hidden temporary name until it is complete; or as a stream to standard output
//! (`-`), batch by batch as each is predicted, for the next program in a pipe.
//! Uncompressed, so that readers can memory-map it (pyarrow
//! `ipc.open_file(pa.memory_map(path))`, polars `read_ipc(memory_map=True)`):
//! Parquet is the compact format.

use super::{ipc_error, IpcFormat};
use crate::data::atomic::AtomicPath;
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::SchemaRef;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

enum Writer {
    File(FileWriter<BufWriter<File>>),
    Stream(StreamWriter<BufWriter<File>>),
    Stdout(StdoutStream),
}

/// The stream on standard output. Arrow readers take a stream that stops
/// between two batches, without its end-of-stream marker, as complete; a run
/// that fails part-way must not look finished to the next program in the pipe,
/// so one dropped unfinished writes the start of a message that never comes
/// (a continuation marker declaring 64 KiB of metadata, then the end of the
/// output), which every reader reports as a broken stream.
struct StdoutStream(Option<StreamWriter<std::io::Stdout>>);

impl Drop for StdoutStream {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            let _ = writer.flush();
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00]);
            let _ = stdout.flush();
        }
    }
}

/// Streams record batches into an Arrow IPC file that appears only when
/// finished, or onto standard output.
pub struct IpcTableWriter {
    /// The file's temporary name and target; none for standard output.
    atomic: Option<AtomicPath>,
    writer: Writer,
    rows: usize,
}

/// The name that stands for standard output (and input).
pub const STANDARD_STREAM: &str = "-";

impl IpcTableWriter {
    /// Starts `target` in `format` (refused if it exists, unless `overwrite`), or
    /// the stream on standard output for `-`; the schema's metadata is the file's.
    pub fn create(target: &Path, schema: SchemaRef, format: IpcFormat, overwrite: bool) -> Result<IpcTableWriter> {
        if target == Path::new(STANDARD_STREAM) {
            // Each batch goes out as soon as it is written: the stream's reader
            // starts on the first rows while the rest are predicted.
            let writer = StreamWriter::try_new(std::io::stdout(), &schema)
                .map_err(|e| ipc_error(target, format!("standard output: {e}")))?;
            return Ok(IpcTableWriter { atomic: None, writer: Writer::Stdout(StdoutStream(Some(writer))), rows: 0 });
        }
        let atomic = AtomicPath::new(target, overwrite)?;
        let file = File::create(atomic.temp_path()).map_err(|e| Error::io(atomic.temp_path(), e))?;
        let err = |e: arrow_schema::ArrowError| ipc_error(target, e.to_string());
        let writer = match format {
            IpcFormat::File => Writer::File(FileWriter::try_new_buffered(file, &schema).map_err(err)?),
            IpcFormat::Stream => Writer::Stream(StreamWriter::try_new_buffered(file, &schema).map_err(err)?),
        };
        Ok(IpcTableWriter { atomic: Some(atomic), writer, rows: 0 })
    }

    fn target(&self) -> &Path {
        self.atomic.as_ref().map_or(Path::new(STANDARD_STREAM), AtomicPath::target)
    }

    /// Appends one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let written = match &mut self.writer {
            Writer::File(w) => w.write(batch),
            Writer::Stream(w) => w.write(batch),
            Writer::Stdout(StdoutStream(Some(w))) => w.write(batch).and_then(|()| w.flush()),
            Writer::Stdout(StdoutStream(None)) => unreachable!("finished writers are consumed"),
        };
        written.map_err(|e| ipc_error(self.target(), e.to_string()))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Writes the footer (or end-of-stream marker), flushes, and moves the file
    /// into place; returns the rows written.
    pub fn finish(self) -> Result<usize> {
        let target = self.target().to_path_buf();
        let IpcTableWriter { atomic, writer, rows } = self;
        let err = |e: arrow_schema::ArrowError| ipc_error(&target, e.to_string());
        let file = match writer {
            Writer::File(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner().map_err(err)?
            }
            Writer::Stream(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner().map_err(err)?
            }
            Writer::Stdout(mut stream) => {
                let mut w = stream.0.take().expect("not finished before");
                // (A failure here leaves the end marker unwritten; the drop of `stream`
                // then writes nothing more: the caller's error says what happened.)
                w.finish().map_err(err)?;
                return Ok(rows);
            }
        };
        let atomic = atomic.expect("a file has its temporary");
        drop(file.into_inner().map_err(|e| Error::io(atomic.temp_path(), e.into_error()))?);
        atomic.commit()?;
        Ok(rows)
    }
}

/// Streams simulated records into `dataset.arrow`: the columns and metadata of
/// the Parquet dataset ([`crate::data::parquet::dataset_schema`]), atomically.
pub struct IpcDatasetWriter {
    info: crate::data::DatasetInfo,
    schema: SchemaRef,
    writer: IpcTableWriter,
}

impl IpcDatasetWriter {
    /// Start writing `path`; `overwrite` allows replacing an existing file.
    pub fn create(path: &Path, info: crate::data::DatasetInfo, overwrite: bool) -> Result<Self> {
        let schema = crate::data::parquet::dataset_schema(&info);
        let writer = IpcTableWriter::create(path, schema.clone(), IpcFormat::File, overwrite)?;
        Ok(IpcDatasetWriter { info, schema, writer })
    }
}

impl crate::data::DatasetWriter for IpcDatasetWriter {
    fn write_batch(&mut self, records: &[crate::data::Record]) -> Result<()> {
        let batch = crate::data::parquet::dataset_batch(&self.info, &self.schema, records).map_err(|e| match e {
            Error::Shape(m) => ipc_error(self.writer.target(), m),
            other => other,
        })?;
        self.writer.write(&batch)
    }

    fn finish(self: Box<Self>) -> Result<crate::data::WriteSummary> {
        let path = self.writer.target().to_path_buf();
        let rows = self.writer.finish()?;
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        Ok(crate::data::WriteSummary { rows, bytes, path })
    }
}
