//! One Arrow table written to a Parquet file batch by batch, under a hidden
//! temporary name until it is complete (predictions, a catalogue's metadata).

use crate::data::atomic::AtomicPath;
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::Path;

/// Streams record batches into a Parquet file that appears only when finished.
pub struct TableWriter {
    atomic: AtomicPath,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: usize,
}

impl TableWriter {
    /// Starts `target` (refused if it exists, unless `overwrite`).
    pub fn create(target: &Path, schema: SchemaRef, overwrite: bool) -> Result<TableWriter> {
        // The parquet crate panics on a union ("not implemented"); a carried column of an
        // Arrow IPC file or an in-memory table may be one.
        if let Some((name, data_type)) = schema.fields().iter().find_map(|f| union_in(f.name(), f.data_type())) {
            return Err(Error::Parquet {
                path: target.to_path_buf(),
                message: format!(
                    "column `{name}` holds a union ({data_type}), which Parquet cannot store: write an Arrow IPC \
                     file (`.arrow`), or carry other columns"
                ),
            });
        }
        let atomic = AtomicPath::new(target, overwrite)?;
        let file = File::create(atomic.temp_path()).map_err(|e| Error::io(atomic.temp_path(), e))?;
        // The same key-values in the Parquet footer, for readers that ignore the Arrow schema.
        let footer: Vec<KeyValue> =
            schema.metadata().iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(footer))
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
            .set_max_row_group_row_count(Some(16 * 1024))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| Error::Parquet { path: target.to_path_buf(), message: e.to_string() })?;
        Ok(TableWriter { atomic, writer, schema, rows: 0 })
    }

    /// Appends one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| self.error(e))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The columns (and metadata) written.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Writes the footer and moves the file into place; returns the rows written.
    pub fn finish(self) -> Result<usize> {
        let TableWriter { atomic, writer, rows, .. } = self;
        writer.close().map_err(|e| Error::Parquet { path: atomic.target().to_path_buf(), message: e.to_string() })?;
        atomic.commit()?;
        Ok(rows)
    }

    fn error(&self, e: parquet::errors::ParquetError) -> Error {
        Error::Parquet { path: self.atomic.target().to_path_buf(), message: e.to_string() }
    }
}

/// The first union in a column `name` of `data_type`, however deep: its path and type.
fn union_in(name: &str, data_type: &DataType) -> Option<(String, DataType)> {
    let inner = |field: &arrow_schema::Field| union_in(&format!("{name}.{}", field.name()), field.data_type());
    match data_type {
        DataType::Union(..) => Some((name.to_string(), data_type.clone())),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => inner(f),
        DataType::Struct(fields) => fields.iter().find_map(|f| inner(f)),
        DataType::Dictionary(_, values) => union_in(name, values),
        DataType::RunEndEncoded(_, values) => inner(values),
        _ => None,
    }
}
