//! Cutout tables in Arrow IPC files (Feather v2, `.arrow`, `.arrows`), one file
//! after another, decoded batch by batch with the columns and layouts the
//! Parquet reader takes ([`TableLayout`]): the same table gives the same cutouts
//! from either format.

use super::{ipc_error, IpcTable};
use crate::data::cutouts::{rows_in_batch, take_rows, CutoutBatch, CutoutReader, InputDescription, InputOptions};
use crate::data::parquet::cutouts::{first_image_shape_in, TableLayout};
use crate::data::parquet::{recorded_pixel_scale, PIXEL_SCALE_KEY};
use crate::Result;
use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use std::path::{Path, PathBuf};

/// Arrow IPC files as a [`CutoutReader`].
pub struct IpcCutouts {
    files: Vec<PathBuf>,
    layout: TableLayout,
    desc: InputDescription,
    /// Rows of each file, and of each of its batches, from their metadata.
    file_rows: Vec<usize>,
    file_batches: Vec<Vec<usize>>,
    /// The pixel scale each file's schema records.
    file_scales: Vec<Option<f64>>,
    /// The columns decoded in each file (the carried ones, the pixel scales, the image).
    file_columns: Vec<Vec<usize>>,
    /// The next row to hand out, counted over all files.
    position: usize,
    /// The open file, its index, and where its rows end (counted over all files).
    current: Option<(usize, IpcTable, usize)>,
    /// Rows decoded but not yet handed out.
    pending: Option<RecordBatch>,
    /// Standard input's copy, removed with the reader.
    _spool: Option<tempfile::NamedTempFile>,
}

impl IpcCutouts {
    /// Reads the schemas of `files` (and the row counts their batches declare),
    /// and checks that they agree on the columns used.
    pub fn open(files: &[PathBuf], opts: &InputOptions) -> Result<IpcCutouts> {
        let first = &files[0];
        let mut table = IpcTable::open(first)?;
        let schema = table.schema().clone();
        let layout = TableLayout::of_schema(&schema, opts, first, |column| first_shape(files, &mut table, column))?;
        let (mut file_rows, mut file_batches, mut file_scales, mut file_columns) = (vec![], vec![], vec![], vec![]);
        for path in files {
            // (The first file's table has passed its first images finding their shape.)
            let table = IpcTable::open(path)?;
            let other = table.schema().clone();
            file_columns.push(columns_of(&layout, &other, &schema, path, first)?);
            file_scales.push(recorded_pixel_scale(&other));
            let batches = table.batch_rows()?;
            file_rows.push(batches.iter().sum());
            file_batches.push(batches);
        }
        let pixel_scale =
            layout.recorded_scale(file_scales[0], || format!("`{PIXEL_SCALE_KEY}` of {}", first.display()));
        let format = match table.format() {
            super::IpcFormat::File => "Arrow IPC file",
            super::IpcFormat::Stream => "Arrow IPC stream",
        };
        Ok(IpcCutouts {
            files: files.to_vec(),
            desc: InputDescription {
                format: "arrow".into(),
                files: files.to_vec(),
                rows: file_rows.iter().sum(),
                image_shape: layout.image_shape,
                pixel_scale,
                layout: format!("{format}; {}", layout.layout(&schema)),
                carried_columns: layout.carried_fields.iter().map(|f| f.name().clone()).collect(),
                natural_chunks: vec![],
                hats_properties: None,
            },
            layout,
            file_rows,
            file_batches,
            file_scales,
            file_columns,
            position: 0,
            current: None,
            pending: None,
            _spool: None,
        })
    }

    /// An Arrow IPC stream (or file) piped into standard input, copied whole to a
    /// temporary file first: the stage plans its rows before it reads them.
    pub fn from_stdin(opts: &InputOptions) -> Result<IpcCutouts> {
        use std::io::IsTerminal;
        let name = Path::new(super::table_writer::STANDARD_STREAM);
        if std::io::stdin().is_terminal() {
            return Err(ipc_error(name, "standard input is a terminal: pipe an Arrow IPC stream into it"));
        }
        let mut spool = tempfile::Builder::new()
            .prefix(".lensmae-stdin-")
            .suffix(".arrows")
            .tempfile()
            .map_err(|e| crate::Error::io(std::env::temp_dir(), e))?;
        let copied = std::io::copy(&mut std::io::stdin().lock(), spool.as_file_mut())
            .map_err(|e| crate::Error::io(spool.path(), e))?;
        if copied == 0 {
            return Err(ipc_error(name, "standard input held nothing: pipe an Arrow IPC stream into it"));
        }
        let mut reader = IpcCutouts::open(&[spool.path().to_path_buf()], opts).map_err(|e| match e {
            crate::Error::Table { message, .. } => crate::Error::Table { path: name.to_path_buf(), message },
            other => other,
        })?;
        reader.desc.layout =
            format!("standard input (copied to {} first); {}", spool.path().display(), reader.desc.layout);
        reader._spool = Some(spool);
        Ok(reader)
    }

    /// Opens the file holding row `position` and passes over the batches before
    /// it without decoding them; false at the end.
    fn start_file(&mut self) -> Result<bool> {
        let mut start = 0;
        let Some(k) = self.file_rows.iter().position(|&n| {
            start += n;
            self.position < start
        }) else {
            return Ok(false);
        };
        let mut table = IpcTable::open(&self.files[k])?;
        let mut skip = self.position - (start - self.file_rows[k]);
        for &rows in &self.file_batches[k] {
            if skip < rows {
                break;
            }
            if table.skip_batch()? != Some(rows) {
                return Err(ipc_error(&self.files[k], "its batches changed since it was opened"));
            }
            skip -= rows;
        }
        if skip > 0 {
            let batch = table
                .next_batch(Some(&self.file_columns[k]))?
                .filter(|b| b.num_rows() > skip)
                .ok_or_else(|| ipc_error(&self.files[k], "its batches changed since it was opened"))?;
            self.pending = Some(batch.slice(skip, batch.num_rows() - skip));
        }
        self.current = Some((k, table, start));
        Ok(true)
    }
}

/// The shape of the first image in column `name` of `files`, read batch by batch
/// from `first` (the first file, open; left after it: the reader reopens the
/// file to read its rows), then from the next files: a file of only null images
/// gives none, and the next may.
fn first_shape(files: &[PathBuf], first: &mut IpcTable, name: &str) -> std::result::Result<[usize; 2], String> {
    let look_in = |table: &mut IpcTable| -> std::result::Result<Option<[usize; 2]>, String> {
        let index = table.schema().index_of(name).map_err(|e| e.to_string())?;
        while let Some(batch) = table.next_batch(Some(&[index])).map_err(|e| e.to_string())? {
            // [0, 0] stands for "no image in this batch": look in the next.
            match first_image_shape_in([&batch], name, Some([0, 0]))? {
                [0, 0] => continue,
                shape => return Ok(Some(shape)),
            }
        }
        Ok(None)
    };
    if let Some(shape) = look_in(first)? {
        return Ok(shape);
    }
    for path in &files[1..] {
        if let Some(shape) = look_in(&mut IpcTable::open(path).map_err(|e| e.to_string())?)? {
            return Ok(shape);
        }
    }
    first_image_shape_in([], name, None)
}

/// The indices of `layout`'s columns in a file of schema `other`, which must give
/// them the types the first file's `schema` does.
fn columns_of(layout: &TableLayout, other: &Schema, schema: &Schema, path: &Path, first: &Path) -> Result<Vec<usize>> {
    layout
        .column_names()
        .map(|name| {
            let want = schema.field_with_name(name).expect("the layout's").data_type();
            match other.field_with_name(name) {
                Ok(f) if f.data_type() == want => Ok(other.index_of(name).expect("found")),
                Ok(f) => Err(ipc_error(
                    path,
                    format!("column `{name}` is {}, in {} it is {want}", f.data_type(), first.display()),
                )),
                Err(_) => Err(ipc_error(path, format!("no column `{name}` (the first file has it)"))),
            }
        })
        .collect()
}

impl CutoutReader for IpcCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        self.layout.carried_fields.clone()
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let max_rows = rows_in_batch(max_rows, self.desc.image_shape);
        loop {
            if let Some(batch) = take_rows(&mut self.pending, max_rows) {
                self.position += batch.num_rows();
                let (k, _, end) = self.current.as_ref().expect("a file is open while rows are pending");
                let (path, scale) = (self.files[*k].clone(), self.file_scales[*k]);
                if self.position == *end {
                    (self.pending, self.current) = (None, None);
                }
                return self.layout.decode(&path, &batch, scale).map(Some);
            }
            if self.current.is_none() {
                if !self.start_file()? {
                    return Ok(None);
                }
                // Its first rows may be pending already (a batch begun mid-way).
                continue;
            }
            let (k, table, end) = self.current.as_mut().expect("started");
            match table.next_batch(Some(&self.file_columns[*k]))? {
                Some(batch) => self.pending = Some(batch).filter(|b| b.num_rows() > 0),
                // The rows the batches declared were counted when the file was
                // opened, and each batch is checked against its declaration.
                None => {
                    let read = self.file_rows[*k] - (*end - self.position);
                    return Err(ipc_error(
                        &self.files[*k],
                        format!(
                            "the batches declared {} rows, {read} were read (the file changed?)",
                            self.file_rows[*k]
                        ),
                    ));
                }
            }
        }
    }

    fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.position += n;
        self.pending = None;
        self.current = None;
        Ok(())
    }
}
