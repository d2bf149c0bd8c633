//! Parquet cutout tables, one file after another, decoded batch by batch.
//!
//! The image column is an `arrow.fixed_shape_tensor` (shape from its metadata), a
//! `FixedSizeList`/`List`/`LargeList` of numbers (square, or `--shape H,W`), a list
//! of such lists, one per image row (polars' 2-D `Array`, pandas' lists of lists),
//! or FITS files in bytes (alert stamps). Pixels of any integer or floating type are
//! read as float32; a null pixel is read as NaN, so that the non-finite pixel policy
//! sees it. Only the image column and the carried columns are decoded.

use crate::data::cutouts::{
    rows_in_batch, take_rows, CutoutBatch, CutoutReader, InputDescription, InputOptions, RecordedScale, AUTO_CARRIED,
};
use crate::data::fingerprint::{fingerprint_all, fingerprint_file, remote_fingerprint, FileFingerprint};
use crate::data::fits::cutouts::{decode_fits_bytes, DecodedStamp};
use crate::data::flux_unit::StatedFlux;
use crate::data::parquet::dataset::{with_partition_columns, with_partition_fields, Partition};
use crate::data::parquet::{
    open_parquet_footer, open_parquet_rows, recorded_pixel_scale, ParquetBatches, ParquetBuilder, ParquetLocation,
    PIXEL_SCALE_KEY,
};
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use std::path::{Path, PathBuf};

/// Which column of a table holds the cutouts, their shape, and the columns carried
/// into the output: worked out once from a schema (Parquet footers, or an Arrow
/// stream handed over in memory) and used to decode every batch alike.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// The image column.
    pub image_column: String,
    /// `[height, width]` of every cutout.
    pub image_shape: [usize; 2],
    /// Carried columns, in output order.
    pub carried_fields: Vec<Field>,
    /// The column of per-row pixel scales (arcsec per pixel), if any.
    pub pixel_scale_column: Option<String>,
    /// The unit of the image column's values: its field's `unit`, else the table's
    /// `lensmae:flux_unit` (a FITS stamp's own `BUNIT` comes first).
    pub flux_unit: Option<String>,
    /// The column of each cutout's noise map (sigma per pixel, laid out as the image).
    pub noise_column: Option<String>,
}

impl TableLayout {
    /// The layout of a table with `schema` (named `origin` in errors);
    /// `first_image` finds the shape of a FITS-bytes column, or of variable lists
    /// of image rows, without `--shape`.
    pub fn of_schema(
        schema: &Schema,
        opts: &InputOptions,
        origin: &Path,
        first_image: impl FnOnce(&str) -> std::result::Result<[usize; 2], String>,
    ) -> Result<TableLayout> {
        let image_column = find_image_column(schema, opts.image_column.as_deref(), origin)?;
        let image_field = schema.field_with_name(&image_column).expect("found above").clone();
        let image_shape = image_shape(&image_field, opts.shape, origin, first_image)?;
        if image_shape.contains(&0) {
            let [h, w] = image_shape;
            return Err(table_error(origin, format!("column `{image_column}`: its images are {h}x{w}: no pixels")));
        }
        let id = match &opts.id_column {
            Some(name) if schema.field_with_name(name).is_err() => {
                return Err(table_error(origin, format!("no column `{name}` (--id-col)")))
            }
            Some(name) => Some(name.clone()),
            None => schema.field_with_name("id").ok().map(|_| "id".to_string()),
        };
        let mut carried: Vec<String> = id.into_iter().collect();
        let wanted = AUTO_CARRIED.iter().map(|s| s.to_string());
        for name in wanted.chain(opts.keep.iter().cloned()).chain(opts.carry_if_present.iter().cloned()) {
            if carried.contains(&name) || name == image_column {
                continue;
            }
            match schema.field_with_name(&name) {
                Ok(_) => carried.push(name),
                Err(_) if opts.keep.contains(&name) => {
                    return Err(table_error(origin, format!("no column `{name}` (--keep)")))
                }
                Err(_) => {}
            }
        }
        let carried_fields = carried.iter().map(|n| schema.field_with_name(n).expect("checked").clone()).collect();
        let column_of = |name: &Option<String>, option: &str, holds: fn(&DataType) -> bool, what: &str| {
            let Some(name) = name else { return Ok(()) };
            match schema.field_with_name(name).map(|f| f.data_type()) {
                Ok(t) if holds(t) => Ok(()),
                Ok(other) => Err(table_error(origin, format!("column `{name}` ({option}) is {other}, not {what}"))),
                Err(_) => Err(table_error(origin, format!("no column `{name}` ({option})"))),
            }
        };
        column_of(&opts.pixel_scale_column, "--pixel-scale-col", is_number_type, "numbers of arcsec per pixel")?;
        column_of(&opts.noise_column, "--noise-col", is_image_list, "lists of noise sigmas laid out as the images")?;
        let flux_unit = [image_field.metadata(), schema.metadata()]
            .into_iter()
            .zip([crate::data::schema::UNIT_KEY, crate::data::simulate::FLUX_UNIT_KEY])
            .find_map(|(metadata, key)| metadata.get(key))
            .map(|unit| unit.trim().to_string())
            .filter(|unit| !unit.is_empty() && unit != "arbitrary");
        Ok(TableLayout {
            image_column,
            image_shape,
            carried_fields,
            pixel_scale_column: opts.pixel_scale_column.clone(),
            flux_unit,
            noise_column: opts.noise_column.clone(),
        })
    }

    /// The columns a reader must decode: the carried ones, the pixel scales, the
    /// noise maps, then the image.
    pub fn column_names(&self) -> impl Iterator<Item = &String> {
        let carried = |name: &&String| self.carried_fields.iter().any(|f| f.name() == *name);
        self.carried_fields
            .iter()
            .map(|f| f.name())
            .chain(self.pixel_scale_column.iter().filter(move |n| !carried(n)))
            .chain(self.noise_column.iter().filter(move |n| !carried(n)))
            .chain(std::iter::once(&self.image_column))
    }

    /// Per pixel of `batch`'s cutouts (rows of `h * w`), the noise sigma of the noise
    /// column, NaN where unknown (a null map, a sigma not finite or not > 0); a row
    /// whose map is not of the image's shape gets that as its problem.
    fn noise_of(
        &self,
        origin: &Path,
        batch: &RecordBatch,
        problems: &mut [Option<String>],
    ) -> Result<Option<Vec<f32>>> {
        let Some(name) = &self.noise_column else { return Ok(None) };
        let [h, w] = self.image_shape;
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| table_error(origin, format!("no column `{name}` in this batch")))?;
        let ImageRows { floats, offsets, problems: map_problems } =
            image_rows(col, w).map_err(|m| table_error(origin, format!("column `{name}` (--noise-col): {m}")))?;
        let mut sigma = vec![f32::NAN; batch.num_rows() * h * w];
        for (row, map_problem) in map_problems.into_iter().enumerate() {
            let (a, b) = (offsets[row], offsets[row + 1]);
            if col.is_null(row) {
                continue;
            }
            let problem = match map_problem {
                Some(why) => Some(why),
                None if b - a != h * w => Some(format!("{} pixels, expected {h}x{w}", b - a)),
                None => None,
            };
            match problem {
                Some(why) => {
                    problems[row].get_or_insert_with(|| format!("noise map (`{name}`): {why}"));
                }
                None => {
                    let out = &mut sigma[row * h * w..(row + 1) * h * w];
                    for (s, &v) in out.iter_mut().zip(&floats[a..b]) {
                        *s = if v.is_finite() && v > 0.0 { v } else { f32::NAN };
                    }
                }
            }
        }
        Ok(Some(sigma))
    }

    /// What the table records of its pixel scale: the column's, row by row, else
    /// `metadata` (its schema's `lensmae:pixel_scale`), found where `source` says.
    pub fn recorded_scale(&self, metadata: Option<f64>, source: impl FnOnce() -> String) -> Option<RecordedScale> {
        match (&self.pixel_scale_column, metadata) {
            (Some(name), _) => Some(RecordedScale { arcsec_per_pixel: None, source: format!("column `{name}`") }),
            (None, Some(scale)) => Some(RecordedScale { arcsec_per_pixel: Some(scale), source: source() }),
            (None, None) => None,
        }
    }

    /// Per row of `batch`: the pixel scale of its column (any numeric type), else
    /// `recorded` (the table's).
    fn pixel_scales(&self, origin: &Path, batch: &RecordBatch, recorded: Option<f64>) -> Result<Vec<Option<f64>>> {
        use arrow_array::types::Float64Type;
        let Some(name) = &self.pixel_scale_column else { return Ok(vec![recorded; batch.num_rows()]) };
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| table_error(origin, format!("no column `{name}` in this batch")))?;
        if !is_number_type(col.data_type()) {
            return Err(table_error(origin, format!("column `{name}` is {} in this batch", col.data_type())));
        }
        let scales = arrow_cast::cast(col, &DataType::Float64).map_err(|e| table_error(origin, e.to_string()))?;
        let positive = |v: f64| Some(v).filter(|v| v.is_finite() && *v > 0.0);
        Ok(scales.as_primitive::<Float64Type>().iter().map(|v| v.and_then(positive)).collect())
    }

    /// How the input is described to people.
    pub fn layout(&self, schema: &Schema) -> String {
        let dtype = schema.field_with_name(&self.image_column).map(|f| f.data_type().to_string()).unwrap_or_default();
        let images = match &self.flux_unit {
            Some(unit) => {
                format!("column `{}` ({dtype}, in {})", self.image_column, crate::data::flux_unit::described(unit))
            }
            None => format!("column `{}` ({dtype})", self.image_column),
        };
        match &self.noise_column {
            Some(noise) => format!("{images}; its noise sigma in column `{noise}`"),
            None => images,
        }
    }

    /// The cutouts, pixel scales and carried columns of `batch` (read from
    /// `origin`, whose metadata records the pixel scale `recorded`).
    pub fn decode(&self, origin: &Path, batch: &RecordBatch, recorded: Option<f64>) -> Result<CutoutBatch> {
        let mut cutouts = self.decode_images(origin, batch, recorded)?;
        cutouts.noise = self.noise_of(origin, batch, &mut cutouts.problems)?;
        Ok(cutouts)
    }

    fn decode_images(&self, origin: &Path, batch: &RecordBatch, recorded: Option<f64>) -> Result<CutoutBatch> {
        let [h, w] = self.image_shape;
        let n = h * w;
        let col = batch
            .column_by_name(&self.image_column)
            .ok_or_else(|| table_error(origin, format!("no column `{}` in this batch", self.image_column)))?;
        let pixel_scales = self.pixel_scales(origin, batch, recorded)?;
        if is_fits_bytes(col.data_type()) {
            return self.decode_stamps(col.as_ref(), batch, pixel_scales);
        }
        let ImageRows { floats, offsets, mut problems } =
            image_rows(col, w).map_err(|m| table_error(origin, format!("column `{}`: {m}", self.image_column)))?;
        let mut pixels = vec![0f32; batch.num_rows() * n];
        for (row, problem) in problems.iter_mut().enumerate() {
            let (a, b) = (offsets[row], offsets[row + 1]);
            if col.is_null(row) {
                *problem = Some("null image".to_string());
            } else if problem.is_some() {
                // An image row of another width or a null one: said by `image_rows`.
            } else if b - a != n {
                *problem = Some(format!("{} pixels, expected {h}x{w}", b - a));
            } else {
                pixels[row * n..(row + 1) * n].copy_from_slice(&floats[a..b]);
            }
        }
        let rows = problems.len();
        Ok(CutoutBatch {
            pixels,
            problems,
            carried: self.carried_of(origin, batch)?,
            pixel_scales,
            wcs: vec![None; rows],
            flux: vec![StatedFlux::of_unit(self.flux_unit.clone()); rows],
            noise: None,
        })
    }

    fn carried_of(&self, origin: &Path, batch: &RecordBatch) -> Result<Vec<(Field, arrow_array::ArrayRef)>> {
        self.carried_fields
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok((field.clone(), column.clone())),
                Some(column) => Err(table_error(
                    origin,
                    format!(
                        "column `{}` is {} in this batch, {} before",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ),
                )),
                None => Err(table_error(origin, format!("no column `{}` in this batch", field.name()))),
            })
            .collect()
    }

    /// A column of FITS files in bytes (alert stamps), decoded row by row in
    /// parallel; a stamp's own WCS gives its pixel scale unless a column does.
    fn decode_stamps(
        &self,
        col: &dyn Array,
        batch: &RecordBatch,
        mut pixel_scales: Vec<Option<f64>>,
    ) -> Result<CutoutBatch> {
        use rayon::prelude::*;
        let [h, w] = self.image_shape;
        let decoded: Vec<std::result::Result<DecodedStamp, String>> = (0..col.len())
            .into_par_iter()
            .map(|row| {
                let bytes = binary_value(col, row).ok_or_else(|| "null image".to_string())?;
                let stamp = decode_fits_bytes(bytes).map_err(|e| format!("FITS stamp: {e}"))?;
                if stamp.shape != [h, w] {
                    return Err(format!("FITS stamp is {}x{}, expected {h}x{w}", stamp.shape[0], stamp.shape[1]));
                }
                Ok(stamp)
            })
            .collect();
        let mut pixels = vec![0f32; col.len() * h * w];
        let mut problems = vec![None; col.len()];
        let mut wcs = vec![None; col.len()];
        let mut flux = vec![StatedFlux::of_unit(self.flux_unit.clone()); col.len()];
        for (row, result) in decoded.into_iter().enumerate() {
            match result {
                Ok(stamp) => {
                    pixels[row * h * w..(row + 1) * h * w].copy_from_slice(&stamp.pixels);
                    wcs[row] = stamp.wcs;
                    if stamp.flux.is_stated() {
                        flux[row] = stamp.flux;
                    }
                    if self.pixel_scale_column.is_none() {
                        pixel_scales[row] = stamp.pixel_scale.or(pixel_scales[row]);
                    }
                }
                Err(problem) => problems[row] = Some(problem),
            }
        }
        let carried = self.carried_of(Path::new(""), batch)?;
        Ok(CutoutBatch { pixels, problems, carried, pixel_scales, wcs, flux, noise: None })
    }
}

/// The shape of the first image among `batches`' column `name` that gives one: a
/// decodable FITS stamp, a list of image rows (rows x the first row's values), or a
/// list of values (square, else an error). Where no row gives one (no rows, or
/// only null or undecodable images), `when_none` if given: every row then fails on
/// its own, so the shape decides nothing but the geometry, which the caller keeps
/// as is by giving its model's.
pub fn first_image_shape_in<'a>(
    batches: impl IntoIterator<Item = &'a RecordBatch>,
    name: &str,
    when_none: Option<[usize; 2]>,
) -> std::result::Result<[usize; 2], String> {
    let mut fits = false;
    for batch in batches {
        let Some(col) = batch.column_by_name(name) else { continue };
        fits = is_fits_bytes(col.data_type());
        if let Some(shape) = first_image_shape_of(col.as_ref())? {
            return Ok(shape);
        }
    }
    when_none.ok_or_else(|| no_image_shape(fits))
}

fn no_image_shape(fits: bool) -> String {
    if fits { "no decodable FITS stamp: give --shape H,W" } else { "no image: give --shape H,W" }.into()
}

/// [`first_image_shape_in`] of one column: none where no row gives a shape. The
/// lists' offsets are worked out once: a column may begin with many null images.
fn first_image_shape_of(col: &dyn Array) -> std::result::Result<Option<[usize; 2]>, String> {
    if is_fits_bytes(col.data_type()) {
        let stamp = |row| binary_value(col, row).map(decode_fits_bytes).and_then(|stamp| stamp.ok());
        return Ok((0..col.len()).find_map(|row| stamp(row).map(|s| s.shape)));
    }
    let Some((rows, offsets)) = list_level(col) else { return Ok(None) };
    let inner = if is_nested_list(col.data_type()) { list_level(rows.as_ref()).map(|(_, o)| o) } else { None };
    for row in (0..col.len()).filter(|&r| !col.is_null(r) && offsets[r + 1] > offsets[r]) {
        let (first, end) = (offsets[row], offsets[row + 1]);
        match &inner {
            // A list of image rows: rows x the first row's values.
            Some(inner) if inner[first + 1] > inner[first] => {
                return Ok(Some([end - first, inner[first + 1] - inner[first]]))
            }
            Some(_) => {}
            None => return square(end - first).map(Some),
        }
    }
    Ok(None)
}

/// Parquet files read as one table.
pub struct ParquetCutouts {
    files: Vec<PathBuf>,
    /// Each file on disk or remote (a remote one's size and version asked once).
    locations: Vec<ParquetLocation>,
    layout: TableLayout,
    desc: InputDescription,
    /// Rows of each file, from the footers.
    file_rows: Vec<usize>,
    /// The pixel scale each file's metadata records.
    file_scales: Vec<Option<f64>>,
    /// The root column indices of each file read (the image and carried columns).
    file_columns: Vec<Vec<usize>>,
    /// The partition values each file's folders give it (a dataset's `key=value/`).
    file_partitions: Vec<Partition>,
    /// The next row to hand out, counted over all files.
    position: usize,
    current: Option<(PathBuf, ParquetBatches)>,
    /// The pixel scale the open file's metadata records.
    current_scale: Option<f64>,
    /// Where the open file's rows end, counted over all files (from its footer).
    current_end: usize,
    /// The open file's partition values, added to its batches as string columns.
    current_partition: Partition,
    /// Rows read but not yet handed out (a batch larger than asked for).
    pending: Option<RecordBatch>,
}

fn parquet_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Parquet { path: path.to_path_buf(), message: message.into() }
}

/// What a table's columns lack, whatever stores it (Parquet, Arrow IPC, memory).
fn table_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Table { path: path.to_path_buf(), message: message.into() }
}

fn is_fits_bytes(dt: &DataType) -> bool {
    matches!(dt, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

/// The item type of a list type.
fn list_item(dt: &DataType) -> Option<&DataType> {
    match dt {
        DataType::FixedSizeList(item, _) | DataType::List(item) | DataType::LargeList(item) => Some(item.data_type()),
        _ => None,
    }
}

fn is_number_type(dt: &DataType) -> bool {
    dt.is_integer() || dt.is_floating()
}

/// A list of pixels, or a list of image rows that are lists of pixels.
fn is_image_list(dt: &DataType) -> bool {
    match list_item(dt) {
        Some(item) if is_number_type(item) => true,
        Some(item) => list_item(item).is_some_and(is_number_type),
        None => false,
    }
}

/// A list of image rows (two levels of lists).
fn is_nested_list(dt: &DataType) -> bool {
    list_item(dt).and_then(list_item).is_some()
}

/// The image column: the one asked for, else `image`, else the only tensor or
/// float-list column.
fn find_image_column(schema: &Schema, asked: Option<&str>, path: &Path) -> Result<String> {
    if let Some(name) = asked {
        return match schema.field_with_name(name) {
            Ok(_) => Ok(name.to_string()),
            Err(_) => Err(table_error(path, format!("no column `{name}` (--image-col)"))),
        };
    }
    if schema.field_with_name("image").is_ok() {
        return Ok("image".into());
    }
    let lists: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| is_image_list(f.data_type()) || is_fits_bytes(f.data_type()))
        .map(|f| f.name().as_str())
        .collect();
    match lists.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(table_error(path, "no image column: no list-of-numbers or tensor column (--image-col)")),
        many => {
            Err(table_error(path, format!("several image columns ({}): choose one with --image-col", many.join(", "))))
        }
    }
}

/// `[height, width]` of the image column: tensor metadata, `--shape`, fixed sizes
/// (two levels, or one square), or (FITS bytes, variable lists of image rows) the
/// first image.
fn image_shape(
    field: &Field,
    asked: Option<[usize; 2]>,
    path: &Path,
    first_image: impl FnOnce(&str) -> std::result::Result<[usize; 2], String>,
) -> Result<[usize; 2]> {
    let err = |m: String| table_error(path, format!("column `{}`: {m}", field.name()));
    if is_fits_bytes(field.data_type()) {
        return match asked {
            Some(shape) => Ok(shape),
            None => first_image(field.name()).map_err(err),
        };
    }
    if !is_image_list(field.data_type()) {
        return Err(err(format!(
            "images must be lists of numbers (or lists of image rows), found {}",
            field.data_type()
        )));
    }
    if is_nested_list(field.data_type()) {
        let fixed = match field.data_type() {
            DataType::FixedSizeList(rows, h) => match rows.data_type() {
                DataType::FixedSizeList(_, w) => Some([*h as usize, *w as usize]),
                _ => None,
            },
            _ => None,
        };
        return match (fixed, asked) {
            (Some(fixed), Some(asked)) if fixed != asked => {
                Err(err(format!("its images are {}x{}, --shape says {}x{}", fixed[0], fixed[1], asked[0], asked[1])))
            }
            (Some(shape), _) | (None, Some(shape)) => Ok(shape),
            (None, None) => first_image(field.name()).map_err(err),
        };
    }
    if let Some(shape) = tensor_shape(field) {
        let shape = shape.map_err(err)?;
        return match shape.as_slice() {
            [h, w] | [1, h, w] => Ok([*h, *w]),
            other => Err(err(format!("tensor shape {other:?} is not a single-band image"))),
        };
    }
    if let Some(shape) = asked {
        return Ok(shape);
    }
    match field.data_type() {
        DataType::FixedSizeList(_, n) => square(*n as usize).map_err(err),
        // pandas and Spark write lists of any length: the first image's length says.
        _ => first_image(field.name()).map_err(err),
    }
}

/// The square shape of images of `n` values.
fn square(n: usize) -> std::result::Result<[usize; 2], String> {
    let side = (n as f64).sqrt().round() as usize;
    match side * side == n {
        true => Ok([side, side]),
        false => Err(format!("{n} values per row is not square: give --shape H,W")),
    }
}

/// The shape of the first image in column `name` of `path` that gives one
/// ([`first_image_shape_in`]).
fn first_image_shape(
    location: &ParquetLocation,
    path: &Path,
    schema: &Schema,
    name: &str,
) -> std::result::Result<Option<[usize; 2]>, String> {
    let index = schema.index_of(name).map_err(|e| format!("{}: {e}", path.display()))?;
    let builder = open_parquet_rows(location, path, &[index]).map_err(|e| e.to_string())?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader =
        ParquetBatches::new(path, builder.with_projection(mask).with_batch_size(64)).map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        if let Some(shape) = first_image_shape_of(batch.column(0).as_ref())? {
            return Ok(Some(shape));
        }
    }
    Ok(None)
}

/// The shape of the first image of column `name` in `files` (the first of which
/// is at `first_location`, of `first_schema`), file after file: a file of only
/// null images (an empty partition, or a shard whose rows all failed upstream)
/// gives none, and the next may.
fn first_image_shape_in_files(
    files: &[PathBuf],
    first_location: &ParquetLocation,
    first_schema: &Schema,
    name: &str,
) -> std::result::Result<[usize; 2], String> {
    if let Some(shape) = first_image_shape(first_location, &files[0], first_schema, name)? {
        return Ok(shape);
    }
    for path in &files[1..] {
        let location = ParquetLocation::find(path).map_err(|e| e.to_string())?;
        let schema = open_parquet_footer(&location, path).map_err(|e| e.to_string())?.schema().clone();
        if let Some(shape) = first_image_shape(&location, path, &schema, name)? {
            return Ok(shape);
        }
    }
    let index = first_schema.index_of(name).map_err(|e| e.to_string())?;
    Err(no_image_shape(is_fits_bytes(first_schema.field(index).data_type())))
}

/// Row `row` of a binary column, or none if null.
fn binary_value(col: &dyn Array, row: usize) -> Option<&[u8]> {
    use arrow_array::cast::AsArray;
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::LargeBinary => col.as_binary::<i64>().value(row),
        DataType::BinaryView => col.as_binary_view().value(row),
        _ => col.as_binary::<i32>().value(row),
    })
}

/// What [`ParquetCutouts::open`] learns of one file from its footer.
struct FileFacts {
    location: ParquetLocation,
    rows: usize,
    /// The pixel scale its metadata records.
    scale: Option<f64>,
    /// The root column indices read (the image and carried columns).
    columns: Vec<usize>,
}

impl FileFacts {
    /// Checks that `path` has the columns `layout` reads, of the types `schema` (the
    /// first file's, `first`) gives them.
    fn of(
        location: ParquetLocation,
        builder: &ParquetBuilder,
        path: &Path,
        layout: &TableLayout,
        schema: &Schema,
        first: &Path,
        partition: &Partition,
    ) -> Result<FileFacts> {
        let other = builder.schema();
        for name in layout.column_names() {
            let want = schema.field_with_name(name).expect("checked").data_type();
            match other.field_with_name(name) {
                // A partition column: its value comes from the file's folder.
                Err(_) if partition.iter().any(|(key, _)| key == name) => {}
                Ok(f) if f.data_type() == want => {}
                Ok(f) => {
                    return Err(parquet_error(
                        path,
                        format!("column `{name}` is {}, in {} it is {want}", f.data_type(), first.display()),
                    ))
                }
                Err(_) => return Err(parquet_error(path, format!("no column `{name}` (the first file has it)"))),
            }
        }
        Ok(FileFacts {
            columns: layout.column_names().filter_map(|n| other.index_of(n).ok()).collect(),
            rows: builder.metadata().file_metadata().num_rows() as usize,
            scale: recorded_pixel_scale(other),
            location,
        })
    }
}

impl ParquetCutouts {
    /// Reads the footers of `files` and checks that they agree on the columns used.
    pub fn open(files: &[PathBuf], opts: &InputOptions) -> Result<ParquetCutouts> {
        Self::open_partitioned(files, vec![Partition::new(); files.len()], opts)
    }

    /// A folder of Parquet files as Spark, Dask, Ray, pyarrow or polars write them,
    /// `found` as [`super::dataset::dataset_of`] found them: its files in natural
    /// order, its partition folders' values as string columns that `--keep` can carry.
    pub fn open_dataset(
        dir: &Path,
        found: Vec<super::dataset::DatasetFile>,
        opts: &InputOptions,
    ) -> Result<ParquetCutouts> {
        let files: Vec<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
        let mut reader = Self::open_partitioned(&files, found.into_iter().map(|f| f.partition).collect(), opts)?;
        reader.desc.layout = format!("Parquet dataset, {} files; {}", files.len(), reader.desc.layout);
        reader.desc.files = vec![dir.to_path_buf()];
        Ok(reader)
    }

    fn open_partitioned(files: &[PathBuf], partitions: Vec<Partition>, opts: &InputOptions) -> Result<ParquetCutouts> {
        use rayon::prelude::*;
        let first = &files[0];
        let first_location = ParquetLocation::find(first)?;
        let first_builder = open_parquet_footer(&first_location, first)?;
        let file_schema = first_builder.schema().clone();
        let schema = with_partition_fields(&file_schema, &partitions[0]);
        let layout = TableLayout::of_schema(&schema, opts, first, |name| {
            first_image_shape_in_files(files, &first_location, &file_schema, name)
        })?;
        let facts_of = |k: usize, location: ParquetLocation, builder: Option<ParquetBuilder>| {
            let builder = match builder {
                Some(builder) => builder,
                None => open_parquet_footer(&location, &files[k])?,
            };
            FileFacts::of(location, &builder, &files[k], &layout, &schema, first, &partitions[k])
        };
        let mut facts = vec![facts_of(0, first_location, Some(first_builder))?];
        // The other footers side by side: each costs a request or two to a remote
        // store, and a catalogue has hundreds to thousands of partitions. No
        // builder outlives its file's facts (a local one holds the file open).
        let rest: Vec<Result<FileFacts>> = (1..files.len())
            .into_par_iter()
            .map(|k| ParquetLocation::find(&files[k]).and_then(|location| facts_of(k, location, None)))
            .collect();
        for file in rest {
            facts.push(file?);
        }
        let mut locations = Vec::with_capacity(files.len());
        let mut file_rows = Vec::with_capacity(files.len());
        let mut file_scales = Vec::with_capacity(files.len());
        let mut file_columns = Vec::with_capacity(files.len());
        for file in facts {
            locations.push(file.location);
            file_rows.push(file.rows);
            file_scales.push(file.scale);
            file_columns.push(file.columns);
        }
        let pixel_scale =
            layout.recorded_scale(file_scales[0], || format!("`{PIXEL_SCALE_KEY}` of {}", first.display()));
        Ok(ParquetCutouts {
            files: files.to_vec(),
            locations,
            desc: InputDescription {
                format: "parquet".into(),
                files: files.to_vec(),
                rows: file_rows.iter().sum(),
                image_shape: layout.image_shape,
                pixel_scale,
                layout: layout.layout(&schema),
                carried_columns: layout.carried_fields.iter().map(|f| f.name().clone()).collect(),
                natural_chunks: vec![],
                hats_properties: None,
            },
            layout,
            file_rows,
            file_scales,
            file_columns,
            file_partitions: partitions,
            position: 0,
            current: None,
            current_scale: None,
            current_end: 0,
            current_partition: Partition::new(),
            pending: None,
        })
    }

    /// A HATS catalogue: its partition files in (order, pixel) order, each a chunk.
    pub fn open_hats(dir: &Path, opts: &InputOptions) -> Result<ParquetCutouts> {
        let relative = crate::data::hats::partition_files(dir)?;
        let files: Vec<PathBuf> = relative.iter().map(|r| dir.join(r)).collect();
        let mut reader = ParquetCutouts::open(&files, opts)?;
        reader.desc.format = "hats".into();
        reader.desc.layout = format!("HATS catalogue, {} partition files; {}", files.len(), reader.desc.layout);
        reader.desc.files = vec![dir.to_path_buf()];
        reader.desc.natural_chunks =
            relative.iter().map(|r| r.display().to_string()).zip(reader.file_rows.iter().copied()).collect();
        reader.desc.hats_properties = Some(crate::data::hats::read_properties(dir)?);
        Ok(reader)
    }

    /// Opens the file holding row `position`, at that row; false at the end.
    fn start_file(&mut self, max_rows: usize) -> Result<bool> {
        let mut start = 0;
        let Some(k) = self.file_rows.iter().position(|&n| {
            start += n;
            self.position < start
        }) else {
            return Ok(false);
        };
        let offset = self.position - (start - self.file_rows[k]);
        let path = self.files[k].clone();
        let wanted = self.file_columns[k].clone();
        let builder = open_parquet_rows(&self.locations[k], &path, &wanted)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let reader = ParquetBatches::new(
            &path,
            builder.with_projection(mask).with_offset(offset).with_batch_size(max_rows.max(1)),
        )?;
        self.current = Some((path, reader));
        self.current_scale = self.file_scales[k];
        self.current_end = start;
        self.current_partition = self.file_partitions[k].clone();
        Ok(true)
    }
}

impl CutoutReader for ParquetCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        self.layout.carried_fields.clone()
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let max_rows = rows_in_batch(max_rows, self.desc.image_shape);
        loop {
            // Never past the rows the file's footer declares: those rows are the plan.
            if let Some(batch) = take_rows(&mut self.pending, max_rows.min(self.current_end - self.position)) {
                self.position += batch.num_rows();
                let path = self.current.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
                if self.position == self.current_end {
                    (self.pending, self.current) = (None, None);
                }
                let batch = with_partition_columns(&path, batch, &self.current_partition)?;
                return self.layout.decode(&path, &batch, self.current_scale).map(Some);
            }
            if self.current.is_none() && !self.start_file(max_rows)? {
                return Ok(None);
            }
            let (path, reader) = self.current.as_mut().expect("started");
            match reader.next() {
                Some(Ok(batch)) => self.pending = Some(batch).filter(|b| b.num_rows() > 0),
                Some(Err(e)) => return Err(e),
                // The pages ended before the rows the footer declares (a corrupt file):
                // reopening would find the same end again.
                None => {
                    let k = self.files.iter().position(|f| f == path).unwrap_or(0);
                    let read = self.file_rows[k] - (self.current_end - self.position);
                    return Err(parquet_error(
                        path,
                        format!("the footer declares {} rows, the pages hold {read}", self.file_rows[k]),
                    ));
                }
            }
        }
    }

    /// A remote file as its HEAD found it when opened (no second request; its
    /// content is not downloaded to be hashed); local inputs as any reader's.
    fn fingerprints(&self) -> Result<Vec<FileFingerprint>> {
        if self.locations.iter().all(|l| matches!(l, ParquetLocation::Local(_))) {
            return fingerprint_all(&self.desc.files);
        }
        self.locations
            .iter()
            .zip(&self.files)
            .map(|(location, path)| match location {
                ParquetLocation::Local(_) => fingerprint_file(path),
                ParquetLocation::Remote(object) => Ok(remote_fingerprint(object)),
            })
            .collect()
    }

    fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.position += n;
        self.pending = None;
        self.current = None;
        Ok(())
    }
}

/// An image column's pixels as float32, each row's range in them
/// (`offsets[r]..offsets[r + 1]`), and what is wrong with a row that the counts
/// alone do not show (an image row of another width, a null image row); null
/// images are left to the caller.
struct ImageRows {
    floats: ScalarBuffer<f32>,
    offsets: Vec<usize>,
    problems: Vec<Option<String>>,
}

/// The rows of an image column of lists of pixels, or of lists of image rows
/// `width` pixels wide. float32 pixels without nulls are shared with the column.
fn image_rows(col: &ArrayRef, width: usize) -> std::result::Result<ImageRows, String> {
    let unexpected = || format!("images must be lists of numbers (or lists of image rows), found {}", col.data_type());
    let (values, offsets) = list_level(col.as_ref()).ok_or_else(unexpected)?;
    let mut problems = vec![None; col.len()];
    let (pixels, offsets) = if is_nested_list(col.data_type()) {
        let (pixels, row_offsets) = list_level(values.as_ref()).ok_or_else(unexpected)?;
        for (image, problem) in problems.iter_mut().enumerate() {
            let rows = offsets[image]..offsets[image + 1];
            let odd = rows.clone().find(|&r| values.is_null(r) || row_offsets[r + 1] - row_offsets[r] != width);
            *problem = odd.map(|r| {
                let k = r - rows.start;
                match values.is_null(r) {
                    true => format!("image row {k} is null"),
                    false => {
                        format!("image row {k} has {} pixels, expected {width}", row_offsets[r + 1] - row_offsets[r])
                    }
                }
            });
        }
        (pixels, offsets.iter().map(|&r| row_offsets[r]).collect())
    } else {
        (values, offsets)
    };
    Ok(ImageRows { floats: pixels_as_f32(&pixels)?, offsets, problems })
}

/// One row of a column of small images: None when null, else its values or why a
/// row of it is unusable.
pub(crate) type SmallImageRow = Option<std::result::Result<Vec<f64>, String>>;

/// The rows of a column of small square images (a PSF image per cutout: a list of
/// side^2 values, or a list of rows), of any numeric type, as float64 values row
/// by row: None for a null row, `Err` for a row that is not square, has a null row or
/// more than `max_values` values (refused before it is copied). `Err` for the column
/// when it holds no lists of numbers.
pub(crate) fn square_image_rows(col: &ArrayRef, max_values: usize) -> std::result::Result<Vec<SmallImageRow>, String> {
    let unexpected = || format!("lists of numbers (or lists of rows) are needed, found {}", col.data_type());
    let (values, offsets) = list_level(col.as_ref()).ok_or_else(unexpected)?;
    let nested = is_nested_list(col.data_type());
    let (floats, inner) = if nested {
        let (pixels, row_offsets) = list_level(values.as_ref()).ok_or_else(unexpected)?;
        (pixels_as_f32(&pixels)?, Some(row_offsets))
    } else {
        (pixels_as_f32(&values)?, None)
    };
    Ok((0..col.len())
        .map(|r| {
            if col.is_null(r) {
                return None;
            }
            let (a, b) = (offsets[r], offsets[r + 1]);
            let count = inner.as_ref().map_or(b - a, |row_offsets| row_offsets[b] - row_offsets[a]);
            if count > max_values {
                return Some(Err(format!("{count} values: at most {max_values}")));
            }
            Some(match &inner {
                None => Ok(floats[a..b].iter().map(|&v| f64::from(v)).collect()),
                Some(row_offsets) => {
                    let side = b - a;
                    match (a..b).find(|&i| values.is_null(i) || row_offsets[i + 1] - row_offsets[i] != side) {
                        Some(i) => Err(format!("row {} of the image is null or not {side} values long", i - a)),
                        None => Ok(floats[row_offsets[a]..row_offsets[b]].iter().map(|&v| f64::from(v)).collect()),
                    }
                }
            })
        })
        .collect())
}

/// One level of a list array: its child values, and each row's range in them
/// counted from the first row's start.
fn list_level(col: &dyn Array) -> Option<(ArrayRef, Vec<usize>)> {
    fn variable<O: arrow_array::OffsetSizeTrait>(l: &arrow_array::GenericListArray<O>) -> (ArrayRef, Vec<usize>) {
        let o = l.value_offsets();
        let base = o[0].as_usize();
        let end = o[o.len() - 1].as_usize();
        (l.values().slice(base, end - base), o.iter().map(|v| v.as_usize() - base).collect())
    }
    Some(match col.data_type() {
        DataType::FixedSizeList(_, n) => {
            let (l, n) = (col.as_fixed_size_list(), *n as usize);
            (l.values().slice(l.value_offset_at(0), l.len() * n), (0..=l.len()).map(|i| i * n).collect())
        }
        DataType::List(_) => variable(col.as_list::<i32>()),
        DataType::LargeList(_) => variable(col.as_list::<i64>()),
        _ => return None,
    })
}

/// Pixels of any integer or floating type as float32, null pixels as NaN.
fn pixels_as_f32(values: &ArrayRef) -> std::result::Result<ScalarBuffer<f32>, String> {
    if !is_number_type(values.data_type()) {
        return Err(format!("image values are {}, not numbers", values.data_type()));
    }
    let floats = match values.data_type() {
        DataType::Float32 => values.clone(),
        // f64 to f32 rounds as `as` does; integers above 2^24 lose their last bits.
        _ => arrow_cast::cast(values, &DataType::Float32).map_err(|e| format!("image values: {e}"))?,
    };
    let floats = floats.as_primitive::<Float32Type>();
    Ok(match floats.nulls().filter(|n| n.null_count() > 0) {
        None => floats.values().clone(),
        Some(nulls) => {
            floats.values().iter().zip(nulls.iter()).map(|(&v, valid)| if valid { v } else { f32::NAN }).collect()
        }
    })
}

/// The `[H, W, ...]` shape a tensor field declares, if any: Arrow's canonical
/// `arrow.fixed_shape_tensor` (`{"shape": [H, W]}`), Ray Data's tensor columns
/// (`ray.data.arrow_tensor` and `_v2`: `[H, W]`, numpy's row-major order) and
/// lensmae's own HATS partitions (`lensmae:shape`, their tensors as plain lists).
/// Another extension over a list (or none) is read as a plain list.
fn tensor_shape(field: &arrow_schema::Field) -> Option<std::result::Result<Vec<usize>, String>> {
    use crate::data::parquet::{EXTENSION_METADATA_KEY, EXTENSION_NAME_KEY, FIXED_SHAPE_TENSOR};
    let metadata = field.metadata();
    let json =
        |text: &str| serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("bad tensor metadata: {e}"));
    let dims = |value: serde_json::Value| -> std::result::Result<Vec<usize>, String> {
        serde_json::from_value(value).map_err(|e| format!("bad tensor shape: {e}"))
    };
    if let Some(shape) = metadata.get("lensmae:shape") {
        return Some(json(shape).and_then(dims));
    }
    let parameters = metadata.get(EXTENSION_METADATA_KEY)?;
    Some(match metadata.get(EXTENSION_NAME_KEY).map(String::as_str) {
        // A file that kept the parameters alone (no name) was written with lensmae's.
        Some(FIXED_SHAPE_TENSOR) | None => json(parameters).and_then(|declared| {
            let shape = dims(declared["shape"].clone())?;
            // Images stored in another order than row-major would be read transposed.
            match declared.get("permutation").map(|p| dims(p.clone())).transpose()? {
                Some(order) if order.iter().enumerate().any(|(axis, &to)| axis != to) => Err(format!(
                    "tensor permutation {order:?}: its images are not stored row by row; write them \
                     row-major (numpy's C order)"
                )),
                _ => Ok(shape),
            }
        }),
        Some("ray.data.arrow_tensor" | "ray.data.arrow_tensor_v2") => json(parameters).and_then(dims),
        Some(_) => return None,
    })
}
