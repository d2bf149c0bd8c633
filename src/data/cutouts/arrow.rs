//! Record batches handed over in memory (a pyarrow table, a Dask partition, a
//! polars frame through the Arrow C stream) read as cutouts, decoded exactly as
//! the Parquet reader decodes the same columns.
//!
//! Batches are re-cut to the size asked for, across the boundaries of the batches
//! given: the model then sees the batches `predict` makes from one Parquet file
//! of the same rows, so it gives the same values bit for bit.

use super::{CutoutBatch, CutoutReader, InputDescription, InputOptions};
use crate::data::parquet::cutouts::{first_image_shape_in, TableLayout};
use crate::data::parquet::{recorded_pixel_scale, PIXEL_SCALE_KEY};
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{Field, SchemaRef};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// In-memory record batches as a [`CutoutReader`].
pub struct ArrowCutouts {
    layout: TableLayout,
    /// The schema of the layout's columns (carried, then the image).
    projected: SchemaRef,
    desc: InputDescription,
    queue: VecDeque<RecordBatch>,
    /// The pixel scale the schema's metadata records (`lensmae:pixel_scale`).
    recorded_scale: Option<f64>,
}

impl ArrowCutouts {
    /// Reads `batches` (all of `schema`), named `name` in messages. A list column
    /// whose shape neither its type nor `opts` gives takes its first image's;
    /// `shape_without_images` where no row has one (an empty partition of a
    /// distributed table, or one of null images: each row then fails on its own
    /// instead of the whole table), else such a table is refused.
    pub fn new(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        opts: &InputOptions,
        name: &str,
        shape_without_images: Option<[usize; 2]>,
    ) -> Result<ArrowCutouts> {
        let origin = PathBuf::from(name);
        let layout = TableLayout::of_schema(&schema, opts, &origin, |column| {
            first_image_shape_in(&batches, column, shape_without_images)
        })?;
        let indices: Vec<usize> = layout
            .column_names()
            .map(|n| schema.index_of(n).map_err(|e| Error::Shape(format!("{name}: {e}"))))
            .collect::<Result<_>>()?;
        let projected = SchemaRef::new(schema.project(&indices).map_err(|e| Error::Shape(e.to_string()))?);
        let queue = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| b.project(&indices).map_err(|e| Error::Shape(format!("{name}: {e}"))))
            .collect::<Result<VecDeque<_>>>()?;
        let recorded_scale = recorded_pixel_scale(&schema);
        let desc = InputDescription {
            format: "arrow".into(),
            files: vec![origin],
            rows: queue.iter().map(RecordBatch::num_rows).sum(),
            image_shape: layout.image_shape,
            pixel_scale: layout.recorded_scale(recorded_scale, || format!("`{PIXEL_SCALE_KEY}` of the table's schema")),
            layout: layout.layout(&schema),
            carried_columns: layout.carried_fields.iter().map(|f| f.name().clone()).collect(),
            natural_chunks: vec![],
            hats_properties: None,
        };
        Ok(ArrowCutouts { layout, projected, desc, queue, recorded_scale })
    }
}

impl CutoutReader for ArrowCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        self.layout.carried_fields.clone()
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let max_rows = super::rows_in_batch(max_rows, self.desc.image_shape);
        let (mut parts, mut rows) = (Vec::new(), 0);
        while rows < max_rows {
            let Some(batch) = self.queue.pop_front() else { break };
            let take = batch.num_rows().min(max_rows - rows);
            if take < batch.num_rows() {
                self.queue.push_front(batch.slice(take, batch.num_rows() - take));
            }
            parts.push(batch.slice(0, take));
            rows += take;
        }
        if rows == 0 {
            return Ok(None);
        }
        let batch = arrow_select::concat::concat_batches(&self.projected, &parts)
            .map_err(|e| Error::Shape(format!("joining record batches: {e}")))?;
        self.layout.decode(Path::new(&self.desc.files[0]), &batch, self.recorded_scale).map(Some)
    }

    fn skip_rows(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            let Some(batch) = self.queue.pop_front() else { break };
            let take = batch.num_rows().min(n);
            if take < batch.num_rows() {
                self.queue.push_front(batch.slice(take, batch.num_rows() - take));
            }
            n -= take;
        }
        Ok(())
    }
}
