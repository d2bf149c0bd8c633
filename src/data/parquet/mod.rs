//! Parquet: the simulator's dataset writer (here), cutouts read in bounded
//! batches ([`cutouts::ParquetCutouts`], local, remote or a HATS catalogue's
//! partitions), and any Arrow table written atomically ([`table_writer`]).
//!
//! Images are `FixedSizeList<Float32>` columns marked as Arrow's canonical
//! `arrow.fixed_shape_tensor` extension through field metadata, with a *nullable*
//! child named `item`: the form pyarrow reads back as a tensor column
//! (`to_numpy_ndarray()` gives `(n, H, W)`), polars as an Array column and pandas as
//! arrays per row. The metadata is written by hand because arrow-rs' own
//! `FixedShapeTensor` writes `"dim_names": null`, which pyarrow refuses.
//!
//! ```
//! use lensmae::data::parquet::tensor_field;
//! let field = tensor_field("image", 4, 4);
//! assert_eq!(field.metadata()["ARROW:extension:name"], "arrow.fixed_shape_tensor");
//! ```

use crate::data::atomic::AtomicPath;
use crate::data::record::{DatasetInfo, Record, PARAM_COLUMNS};
use crate::data::remote::{self, RemoteObject, RemoteReader};
use crate::data::{DatasetWriter, WriteSummary};
use crate::sim::fit::{SmoothLensResiduals, SMOOTH_LENS_RESIDUALS_KEY};
use crate::{Error, Result};
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array, Int8Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod columns;
pub mod cutouts;
pub mod dataset;
pub mod table_writer;

/// Field metadata key of an Arrow extension type's name.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Field metadata key of an Arrow extension type's parameters.
pub const EXTENSION_METADATA_KEY: &str = "ARROW:extension:metadata";
/// Arrow's canonical fixed-shape tensor extension.
pub const FIXED_SHAPE_TENSOR: &str = "arrow.fixed_shape_tensor";

/// The schema metadata key under which lensmae's tables record their pixel scale
/// (arcsec per pixel).
pub const PIXEL_SCALE_KEY: &str = "lensmae:pixel_scale";

/// The smooth-lens residual recipe a table's schema metadata records (a table of
/// residuals, `simulate --smooth-lens-residuals`), if any; an error naming `path`
/// when the entry is not one.
pub fn recorded_smooth_lens_residuals(schema: &Schema, path: &Path) -> Result<Option<SmoothLensResiduals>> {
    let Some(text) = schema.metadata().get(SMOOTH_LENS_RESIDUALS_KEY) else { return Ok(None) };
    serde_json::from_str(text).map(Some).map_err(|e| Error::Parquet {
        path: path.to_path_buf(),
        message: format!("metadata `{SMOOTH_LENS_RESIDUALS_KEY}` is not a smooth-lens residual recipe: {e}"),
    })
}

/// The pixel scale a table's schema metadata records, if any.
pub fn recorded_pixel_scale(schema: &Schema) -> Option<f64> {
    let value = schema.metadata().get(PIXEL_SCALE_KEY)?.trim().parse::<f64>().ok()?;
    (value.is_finite() && value > 0.0).then_some(value)
}

/// A `[height, width]` float32 image column in the canonical tensor form.
pub fn tensor_field(name: &str, height: usize, width: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let metadata = HashMap::from([
        (EXTENSION_NAME_KEY.to_string(), FIXED_SHAPE_TENSOR.to_string()),
        (EXTENSION_METADATA_KEY.to_string(), format!("{{\"shape\":[{height},{width}]}}")),
    ]);
    Field::new(name, DataType::FixedSizeList(item, (height * width) as i32), false).with_metadata(metadata)
}

/// The Arrow schema of a simulated dataset.
pub fn dataset_schema(info: &DatasetInfo) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("label_idx", DataType::Int8, false),
    ];
    for (name, size) in info.image_columns() {
        fields.push(tensor_field(name, size, size));
    }
    fields.push(Field::new("n_subhalos", DataType::Int32, false));
    for col in &PARAM_COLUMNS {
        fields.push(Field::new(col.name, DataType::Float64, col.nullable));
    }
    let metadata: HashMap<String, String> = info.metadata.clone().into_iter().collect();
    Arc::new(Schema::new(fields).with_metadata(metadata))
}

/// Streams record batches into `dataset.parquet`, atomically.
pub struct ParquetDatasetWriter {
    info: DatasetInfo,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    atomic: AtomicPath,
    rows: usize,
}

impl ParquetDatasetWriter {
    /// Start writing `path`; `overwrite` allows replacing an existing file.
    pub fn create(path: &Path, info: DatasetInfo, overwrite: bool) -> Result<Self> {
        let atomic = AtomicPath::new(path, overwrite)?;
        let file = File::create(atomic.temp_path()).map_err(|e| Error::io(atomic.temp_path(), e))?;
        let schema = dataset_schema(&info);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
            .set_max_row_group_row_count(Some(4096));
        // Float pixels barely compress (zstd kept ~98% of the bytes of deeplense-model2
        // images) and a dictionary never pays off for them: skip both, and statistics.
        for (name, _) in info.image_columns() {
            let pixels = ColumnPath::new(vec![name.to_string(), "list".into(), "item".into()]);
            props = props
                .set_column_compression(pixels.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(pixels.clone(), false)
                .set_column_statistics_enabled(pixels, EnabledStatistics::None);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| parquet_error(path, e))?;
        Ok(ParquetDatasetWriter { info, schema, writer: Some(writer), atomic, rows: 0 })
    }

    fn batch(&self, records: &[Record]) -> Result<RecordBatch> {
        dataset_batch(&self.info, &self.schema, records).map_err(|e| match e {
            Error::Shape(m) => parquet_error(self.atomic.target(), m),
            other => other,
        })
    }
}

/// The dataset table's rows for `records` (schema: [`dataset_schema`] of `info`).
pub fn dataset_batch(info: &DatasetInfo, schema: &SchemaRef, records: &[Record]) -> Result<RecordBatch> {
    {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| info.class_names[r.class_idx].as_str()))),
            Arc::new(Int8Array::from_iter_values(records.iter().map(|r| r.class_idx as i8))),
        ];
        for (k, (_, size)) in info.image_columns().iter().enumerate() {
            let n = size * size;
            let mut values: Vec<f32> = Vec::with_capacity(n * records.len());
            for r in records {
                let img = &r.images[k];
                if img.pixels.len() != n {
                    return Err(Error::Shape(format!(
                        "row {}: image has {} pixels, column wants {n}",
                        r.id,
                        img.pixels.len()
                    )));
                }
                values.extend(img.pixels.iter().map(|&v| v as f32));
            }
            let item = Arc::new(Field::new("item", DataType::Float32, true));
            let list = FixedSizeListArray::try_new(item, n as i32, Arc::new(Float32Array::from(values)), None)
                .map_err(|e| Error::Shape(e.to_string()))?;
            columns.push(Arc::new(list));
        }
        columns.push(Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.n_subhalos))));
        for col in &PARAM_COLUMNS {
            columns.push(Arc::new(records.iter().map(|r| (col.get)(r)).collect::<Float64Array>()));
        }
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Shape(e.to_string()))
    }
}

impl DatasetWriter for ParquetDatasetWriter {
    fn write_batch(&mut self, records: &[Record]) -> Result<()> {
        let batch = self.batch(records)?;
        let target = self.atomic.target().to_path_buf();
        self.writer.as_mut().expect("not finished").write(&batch).map_err(|e| parquet_error(&target, e))?;
        self.rows += records.len();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<WriteSummary> {
        let target = self.atomic.target().to_path_buf();
        let file = self.writer.take().expect("not finished").into_inner().map_err(|e| parquet_error(&target, e))?;
        file.sync_all().map_err(|e| Error::io(&target, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&target, e))?.len();
        drop(file);
        let rows = self.rows;
        self.atomic.commit()?;
        Ok(WriteSummary { rows, bytes, path: target })
    }
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Parquet { path: path.to_path_buf(), message: e.to_string() }
}

/// Runs a Parquet decoder call, turning a panic of the parquet crate on a
/// malformed file (the fuzz campaign found several: thrift varints longer than 10
/// bytes, negative column offsets) into an error naming the file.
fn guarded<T>(path: &Path, call: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::data::contain_decoder_panic(call)
        .unwrap_or_else(|message| Err(Error::Parquet { path: path.to_path_buf(), message }))
}

/// Where a Parquet file is: on disk, or a remote object (its HEAD answered).
#[derive(Debug, Clone)]
pub enum ParquetLocation {
    /// A local file.
    Local(PathBuf),
    /// An `s3://` or `http(s)://` object.
    Remote(Arc<RemoteObject>),
}

impl ParquetLocation {
    /// Finds `path`: a local file, or a URL asked for its size and version.
    pub fn find(path: &Path) -> Result<ParquetLocation> {
        if remote::is_remote(path) {
            Ok(ParquetLocation::Remote(RemoteObject::open(path)?))
        } else {
            Ok(ParquetLocation::Local(path.to_path_buf()))
        }
    }

    /// Opens its bytes for reading (a remote object: with an empty cache).
    pub fn bytes(&self) -> Result<ParquetBytes> {
        match self {
            ParquetLocation::Local(path) => {
                Ok(ParquetBytes::Local(Arc::new(File::open(path).map_err(|e| Error::io(path, e))?)))
            }
            ParquetLocation::Remote(object) => Ok(ParquetBytes::Remote(object.reader())),
        }
    }
}

/// A Parquet file's bytes as the decoder and the bounded walk read them.
#[derive(Clone)]
pub enum ParquetBytes {
    /// An open local file.
    Local(Arc<File>),
    /// A remote object through its reader's cache of column chunks.
    Remote(RemoteReader),
}

impl parquet::file::reader::Length for ParquetBytes {
    fn len(&self) -> u64 {
        match self {
            ParquetBytes::Local(file) => file.metadata().map(|m| m.len()).unwrap_or(0),
            ParquetBytes::Remote(reader) => reader.object().size(),
        }
    }
}

impl parquet::file::reader::ChunkReader for ParquetBytes {
    type T = Box<dyn std::io::Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            ParquetBytes::Local(file) => Box::new(file.as_ref().get_read(start)?),
            ParquetBytes::Remote(reader) => Box::new(reader.stream_from(start)),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        match self {
            ParquetBytes::Local(file) => file.as_ref().get_bytes(start, length),
            ParquetBytes::Remote(reader) => Ok(reader.read_exact_at(start, length as u64)?),
        }
    }
}

impl crate::data::parquet_bounds::ReadAt for ParquetBytes {
    fn size(&self) -> std::io::Result<u64> {
        match self {
            ParquetBytes::Local(file) => file.as_ref().size(),
            ParquetBytes::Remote(reader) => Ok(reader.object().size()),
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        match self {
            ParquetBytes::Local(file) => std::os::unix::fs::FileExt::read_exact_at(file.as_ref(), buf, at),
            ParquetBytes::Remote(reader) => {
                buf.copy_from_slice(&reader.read_exact_at(at, buf.len() as u64)?);
                Ok(())
            }
        }
    }
}

/// A reader builder over a Parquet file's bytes.
pub type ParquetBuilder = ParquetRecordBatchReaderBuilder<ParquetBytes>;

/// Opens a Parquet file (local or remote) for reading, decoder panics contained,
/// after a bounded walk of its footer and every page header and a check of its
/// dictionary pages.
pub fn open_parquet(path: &Path) -> Result<ParquetBuilder> {
    let bytes = ParquetLocation::find(path)?.bytes()?;
    let metadata = walked(path, &bytes, &|_| true)?;
    builder_of(path, bytes, metadata)
}

/// Opens a file to learn its schema and rows, walking what can be walked cheaply:
/// a local file whole (as [`open_parquet`]), a remote object's footer only, since
/// its page headers are spread over the whole object: [`open_parquet_rows`]
/// walks the pages of the columns read just before they are decoded.
pub fn open_parquet_footer(location: &ParquetLocation, path: &Path) -> Result<ParquetBuilder> {
    let bytes = location.bytes()?;
    let metadata = match location {
        ParquetLocation::Local(_) => walked(path, &bytes, &|_| true)?,
        ParquetLocation::Remote(_) => walked(path, &bytes, &|_| false)?,
    };
    builder_of(path, bytes, metadata)
}

/// Opens again a file [`open_parquet_footer`] opened already, to read its rows: a
/// remote object's pages of the columns `wanted` (by root column index) are walked
/// now, through the cache the decoder then reads; a local file was walked whole.
pub fn open_parquet_rows(location: &ParquetLocation, path: &Path, wanted: &[usize]) -> Result<ParquetBuilder> {
    let bytes = location.bytes()?;
    let metadata = match location {
        ParquetLocation::Local(_) => walked(path, &bytes, &|_| false)?,
        ParquetLocation::Remote(_) => walked(path, &bytes, &|root| wanted.contains(&root))?,
    };
    builder_of(path, bytes, metadata)
}

/// The footer of `bytes` after a bounded walk of it and, for the root columns
/// `wanted` picks, of every page header and dictionary page; decoder panics
/// contained. A remote reader's cache learns where the column chunks are.
fn walked(path: &Path, bytes: &ParquetBytes, wanted: &dyn Fn(usize) -> bool) -> Result<ParquetMetaData> {
    let error = |message: String| Error::Parquet { path: path.to_path_buf(), message };
    guarded(path, || {
        let metadata = crate::data::parquet_bounds::check_footer(bytes).map_err(error)?;
        if let ParquetBytes::Remote(reader) = bytes {
            let ranges =
                crate::data::parquet_bounds::column_chunk_ranges(&metadata, reader.object().size()).map_err(error)?;
            reader.set_column_chunks(ranges.into_iter().flatten().filter(|r| !r.is_empty()).collect());
        }
        let descriptor = metadata.file_metadata().schema_descr();
        let leaf_wanted = |leaf: usize| wanted(descriptor.get_column_root_idx(leaf));
        crate::data::parquet_bounds::check_column_pages(bytes, &metadata, &leaf_wanted).map_err(error)?;
        check_dictionary_pages(bytes, &metadata, &leaf_wanted).map_err(error)?;
        Ok(metadata)
    })
}

/// A reader builder over `bytes` from their footer as [`walked`] decoded it (not
/// decoded again).
fn builder_of(path: &Path, bytes: ParquetBytes, metadata: ParquetMetaData) -> Result<ParquetBuilder> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    guarded(path, || {
        let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::default())
            .map_err(|e| Error::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata))
    })
}

/// Refuses dictionary pages that declare more values than their bytes can hold:
/// the parquet crate sizes the dictionary by the declared count before decoding
/// (a mutated 3 KB file asked for 4.6 GB, found by the fuzz campaign).
fn check_dictionary_pages(
    file: &ParquetBytes,
    metadata: &ParquetMetaData,
    wanted: &dyn Fn(usize) -> bool,
) -> std::result::Result<(), String> {
    use parquet::basic::Type as Physical;
    use parquet::column::page::{Page, PageReader};
    use parquet::file::serialized_reader::SerializedPageReader;
    let file = Arc::new(file.clone());
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for c in (0..group.num_columns()).filter(|&c| wanted(c)) {
            let column = group.column(c);
            let mut pages =
                SerializedPageReader::new(Arc::clone(&file), column, group.num_rows().max(0) as usize, None)
                    .map_err(|e| e.to_string())?;
            let first_is_dictionary = pages.peek_next_page().map_err(|e| e.to_string())?.is_some_and(|p| p.is_dict);
            if !first_is_dictionary {
                continue;
            }
            if let Some(Page::DictionaryPage { buf, num_values, .. }) =
                pages.get_next_page().map_err(|e| e.to_string())?
            {
                // Bytes each plain-encoded value takes at least.
                let width: usize = match column.column_type() {
                    Physical::BOOLEAN => 0,
                    Physical::INT32 | Physical::FLOAT | Physical::BYTE_ARRAY => 4,
                    Physical::INT64 | Physical::DOUBLE => 8,
                    Physical::INT96 => 12,
                    Physical::FIXED_LEN_BYTE_ARRAY => column.column_descr().type_length().max(0) as usize,
                };
                if (num_values as usize).saturating_mul(width) > buf.len() {
                    return Err(format!(
                        "row group {g}, column `{}`: a dictionary page declares {num_values} values in {} bytes",
                        column.column_path(),
                        buf.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The record batches a configured builder gives, each decoded with panics contained.
pub struct ParquetBatches {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
}

impl ParquetBatches {
    /// Builds the reader of `builder` (opened from `path`).
    pub fn new(path: &Path, builder: ParquetBuilder) -> Result<ParquetBatches> {
        let reader = guarded(path, || {
            builder.build().map_err(|e| Error::Parquet { path: path.to_path_buf(), message: e.to_string() })
        })?;
        Ok(ParquetBatches { path: path.to_path_buf(), reader })
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let ParquetBatches { path, reader } = self;
        guarded(path, || {
            reader.next().transpose().map_err(|e| Error::Parquet { path: path.clone(), message: e.to_string() })
        })
        .transpose()
    }
}

/// Every batch of the columns `names` of the Parquet file `path`, in order; a
/// missing column is the error `missing` words.
pub fn for_each_batch(
    path: &Path,
    names: &[&str],
    missing: &dyn Fn(&str) -> String,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let builder = open_parquet(path)?;
    let wanted = names
        .iter()
        .map(|name| {
            builder
                .schema()
                .index_of(name)
                .map_err(|_| Error::Table { path: path.to_path_buf(), message: missing(name) })
        })
        .collect::<Result<Vec<usize>>>()?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), wanted);
    for batch in ParquetBatches::new(path, builder.with_projection(mask).with_batch_size(8192))? {
        each(batch?)?;
    }
    Ok(())
}
