//! Cutout readers: every input layout behind one streaming trait.
//!
//! A reader yields [`CutoutBatch`]es of at most `max_rows` images. Problems with a
//! single row (a null image, a wrong pixel count) become that row's `problem`, so
//! the row still reaches the output with its status; problems with the input as a
//! whole (an unreadable file, a missing column) are errors naming the file.

use crate::data::fingerprint::{fingerprint_all, FileFingerprint};
use crate::data::fits::wcs::CelestialWcs;
use crate::data::flux_unit::StatedFlux;
use crate::data::ipc::{cutouts::IpcCutouts, IpcFormat};
use crate::data::parquet::dataset::InputFolder;
use crate::data::remote;
use crate::data::{fits::cutouts::FitsCutouts, npy::cutouts::NpyCutouts, parquet::cutouts::ParquetCutouts};
use crate::{Error, Result};
use arrow_array::ArrayRef;
use arrow_schema::Field;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub mod arrow;

/// Images of one batch, row-major `[n, height, width]`, with what travels beside them.
#[derive(Debug, Clone)]
pub struct CutoutBatch {
    /// Pixels (non-finite values are kept; the stage applies the NaN policy);
    /// empty when every row has a problem (rows a truncated file lacks).
    pub pixels: Vec<f32>,
    /// Per row: why its image could not be decoded (its pixels are then zeros, or
    /// absent).
    pub problems: Vec<Option<String>>,
    /// Columns carried into the output unchanged (ids, coordinates, `--keep`).
    pub carried: Vec<(Field, ArrayRef)>,
    /// Per row: the pixel scale the input records, arcsec per pixel (FITS WCS,
    /// the `--pixel-scale-col` column, a table's `lensmae:pixel_scale`).
    pub pixel_scales: Vec<Option<f64>>,
    /// Per row: where the cutout lies on the sky (a FITS cutout's or stamp's
    /// celestial WCS), brought along with its pixels to the model's grid.
    pub wcs: Vec<Option<CelestialWcs>>,
    /// Per row: what the input states of its pixel values' flux (a FITS `BUNIT` and
    /// photometric keywords; an Arrow or Parquet image column's `unit`), which may
    /// fix their photometric zero point ([`crate::data::flux_unit`]).
    pub flux: Vec<StatedFlux>,
    /// The noise sigma of every pixel (laid out as `pixels`; NaN where unknown),
    /// when the input has noise maps (FITS RMS / variance / weight extensions, a
    /// table's `--noise-col`).
    pub noise: Option<Vec<f32>>,
}

impl CutoutBatch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The image of row `r` (`image_len` pixels), unless the row has a problem.
    pub fn image(&self, r: usize, image_len: usize) -> Option<&[f32]> {
        match self.problems[r] {
            Some(_) => None,
            None => self.pixels.get(r * image_len..(r + 1) * image_len),
        }
    }
}

/// What an input holds, before any image is decoded (`lensmae inspect`).
#[derive(Debug, Clone, Serialize)]
pub struct InputDescription {
    /// `parquet`, `arrow` (an Arrow IPC file, or a table in memory), `hats`, `fits` or `npy`.
    pub format: String,
    /// Files read, in order (a long list is shortened by the printer).
    pub files: Vec<PathBuf>,
    /// Rows (images) in all.
    pub rows: usize,
    /// Image shape `[height, width]`.
    pub image_shape: [usize; 2],
    /// The pixel scale the input records, when it does: for the first cutout or
    /// the whole input (`None` when it is given row by row in a column), and where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_scale: Option<RecordedScale>,
    /// Where the images come from (column, HDU, folder layout).
    pub layout: String,
    /// Columns carried into the output.
    pub carried_columns: Vec<String>,
    /// Chunks the input defines itself (a HATS catalogue's partition files, as
    /// paths relative to the catalogue, with their rows); folder outputs mirror them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub natural_chunks: Vec<(String, usize)>,
    /// The HATS catalogue's `hats.properties`, when the input is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hats_properties: Option<std::collections::BTreeMap<String, String>>,
}

/// The pixel scale an input records.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedScale {
    /// Arcsec per pixel of the first cutout, or of all (`None`: per row).
    pub arcsec_per_pixel: Option<f64>,
    /// Where it is recorded (a WCS, a column, a table's metadata).
    pub source: String,
}

/// A source of cutouts, read batch by batch with bounded memory.
pub trait CutoutReader: Send {
    /// The input's layout, size and image shape.
    fn describe(&self) -> &InputDescription;
    /// The columns every batch carries, in order.
    fn carried_fields(&self) -> Vec<Field>;
    /// The next at most `max_rows` images (fewer when they are large: a batch
    /// holds at most [`MAX_BATCH_PIXELS`] pixels, and at least one row), or `None`
    /// at the end.
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>>;
    /// Passes over the next `n` rows without decoding them (chunks done already,
    /// or another shard's).
    fn skip_rows(&mut self, n: usize) -> Result<()>;
    /// Every file read, as it is now, for a resumed run or a merge to compare (a
    /// folder stands for the files under it).
    fn fingerprints(&self) -> Result<Vec<FileFingerprint>> {
        fingerprint_all(&self.describe().files)
    }
}

/// How the reader finds the images.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Parquet: the image column (default: `image`, else the only tensor column).
    pub image_column: Option<String>,
    /// Parquet: the id column carried first (default: `id` when present).
    pub id_column: Option<String>,
    /// Parquet: more columns to carry through.
    pub keep: Vec<String>,
    /// Columns carried through where the input has them, left out without an error
    /// where it has not: a model's optional inputs (a residual classifier's PSF and
    /// exposure columns, which can also be given as one value), whose absence the
    /// model reports for all of them at once (FITS files carry them as `keep`'s,
    /// null where a file has no such keyword; `.npy` images have none).
    pub carry_if_present: Vec<String>,
    /// Parquet: the image shape of plain list columns without tensor metadata.
    pub shape: Option<[usize; 2]>,
    /// FITS: the image extension by name (default: the primary HDU if it holds an
    /// image, else every image extension that is not a noise map, weight, flags,
    /// PSF or background by its name).
    pub hdu: Option<String>,
    /// FITS: the extension of noise sigma per pixel (default: one named RMS, ERR,
    /// NOISE, SIGMA, or VAR for variance, beside the flux).
    pub rms_hdu: Option<String>,
    /// FITS: the extension of inverse-variance weights (default: WHT, WEIGHT, IVAR);
    /// pixels of weight 0 are masked (NaN, then the NaN policy).
    pub weight_hdu: Option<String>,
    /// FITS: the extension of data-quality flags; flagged pixels are masked
    /// (NaN, then the NaN policy) (default: FLAG, MASK, DQ, BPM).
    pub flag_hdu: Option<String>,
    /// FITS: the mask planes that flag a pixel, by the names its flags HDU declares
    /// (`MP_<NAME>` keywords, Rubin's and HSC's masks); default: the defect planes
    /// (`DEFECT_MASK_PLANES`) where the HDU declares planes, else any non-zero flag.
    pub flag_planes: Option<Vec<String>>,
    /// Tables: a column of per-row pixel scales, arcsec per pixel.
    pub pixel_scale_column: Option<String>,
    /// Tables: a column of each cutout's noise map, sigma per pixel laid out as the
    /// image (the FITS RMS extension's twin).
    pub noise_column: Option<String>,
    /// FITS: only the cutouts of this band (a band cube's planes, or the files whose
    /// `FILTER` names it); None: every band, each a row with its `band`.
    pub band: Option<String>,
}

/// Most pixels a reader puts in one batch (256 MiB of f32): batches of large
/// cutouts hold fewer rows than asked for.
pub const MAX_BATCH_PIXELS: usize = 1 << 26;

/// How many rows of `image_shape` a batch asked for `max_rows` holds: at least
/// one, at most [`MAX_BATCH_PIXELS`] pixels.
pub fn rows_in_batch(max_rows: usize, image_shape: [usize; 2]) -> usize {
    let pixels = image_shape[0].saturating_mul(image_shape[1]).max(1);
    max_rows.clamp(1, (MAX_BATCH_PIXELS / pixels).max(1))
}

/// The first `n` rows of the batch in `pending` (all of them when it holds no
/// more), the rest left there: how a reader hands out rows from batches of
/// another size than asked for.
pub(crate) fn take_rows(pending: &mut Option<arrow_array::RecordBatch>, n: usize) -> Option<arrow_array::RecordBatch> {
    let batch = pending.take()?;
    let take = batch.num_rows().min(n);
    if take < batch.num_rows() {
        *pending = Some(batch.slice(take, batch.num_rows() - take));
    }
    Some(batch.slice(0, take))
}

/// Columns carried automatically when a Parquet input has them (survey and HATS conventions).
pub const AUTO_CARRIED: [&str; 5] = ["ra", "dec", "_healpix_29", "object_id", "objectId"];

/// Opens `inputs` (Parquet files, Arrow IPC files, FITS files and folders of them,
/// one HATS catalogue, one folder of Parquet files (a dataset), one folder of `.npy`
/// images or class folders, or `-`: an Arrow IPC stream on standard input) as one
/// reader; every path must be of the same kind.
pub fn open_input(inputs: &[PathBuf], opts: &InputOptions) -> Result<Box<dyn CutoutReader>> {
    let first = inputs.first().ok_or_else(|| Error::config("input", "no input given"))?;
    let stdin = Path::new(crate::data::ipc::table_writer::STANDARD_STREAM);
    if inputs.iter().any(|p| p == stdin) {
        if inputs.len() > 1 {
            return Err(Error::config("input", "`-` (standard input) is read alone, not beside files"));
        }
        return Ok(Box::new(IpcCutouts::from_stdin(opts)?));
    }
    if inputs.len() == 1 && crate::data::hats::is_catalogue(first)? {
        return Ok(Box::new(ParquetCutouts::open_hats(first, opts)?));
    }
    for path in inputs {
        if remote::is_remote(path) {
            continue; // asked for when opened, with the store's own answer
        }
        if !path.exists() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
        }
        if !path.is_file() && !path.is_dir() {
            return Err(Error::config(
                "input",
                format!(
                    "{} is neither a file nor a folder (a pipe or a device?): give `-` to read an Arrow IPC \
                     stream from standard input",
                    path.display()
                ),
            ));
        }
    }
    // A local folder of FITS stamps stands for its files (a cutout service delivers
    // more than a command line holds); a folder of Parquet files is a dataset (as
    // Spark or Dask write them, on disk or under an S3 prefix); else a local folder
    // of .npy images. Each folder is walked once.
    let (mut expanded, mut datasets) = (Vec::with_capacity(inputs.len()), Vec::with_capacity(inputs.len()));
    for path in inputs {
        match crate::data::parquet::dataset::input_folder(path)? {
            InputFolder::FitsStamps(files) => {
                datasets.extend(files.iter().map(|_| None));
                expanded.extend(files);
            }
            InputFolder::Dataset(files) => {
                expanded.push(path.clone());
                datasets.push(Some(files));
            }
            InputFolder::Other => {
                expanded.push(path.clone());
                datasets.push(None);
            }
        }
    }
    let inputs = &expanded[..];
    let first = &inputs[0];
    let kinds: Vec<&str> =
        inputs.iter().zip(&datasets).map(|(p, files)| input_kind(p, files.is_some())).collect::<Result<_>>()?;
    let k = kinds[0];
    if let Some(i) = kinds.iter().position(|&kind| kind != k) {
        return Err(Error::config(
            "input",
            format!("{} is {}, {} is {k}: give inputs of one kind", inputs[i].display(), kinds[i], first.display()),
        ));
    }
    if let Some(url) = inputs.iter().find(|p| remote::is_remote(p) && !k.starts_with("parquet")) {
        return Err(Error::config(
            "input",
            format!(
                "{}: URLs are read as Parquet files, S3 folders of them or HATS catalogues; copy {k} files to disk",
                url.display()
            ),
        ));
    }
    if let Some(band) = opts.band.as_ref().filter(|_| k != "fits") {
        return Err(Error::config(
            "--band",
            format!("{band}: picks the band of FITS cubes and files; {} is {k}", first.display()),
        ));
    }
    Ok(match k {
        "fits" => Box::new(FitsCutouts::open(inputs, opts)?),
        "arrow" => Box::new(IpcCutouts::open(inputs, opts)?),
        "parquet dataset" if inputs.len() > 1 => {
            return Err(Error::config(
                "input",
                format!(
                    "{}: give one folder of Parquet files at a time (or the files themselves)",
                    inputs[1].display()
                ),
            ))
        }
        "parquet dataset" => {
            let files = datasets.swap_remove(0).expect("a dataset");
            Box::new(ParquetCutouts::open_dataset(first, files, opts)?)
        }
        "npy" => {
            let reader = NpyCutouts::open(inputs)?;
            let carried = &reader.describe().carried_columns;
            if let Some(name) = opts.keep.iter().find(|name| !carried.contains(name)) {
                return Err(Error::config(
                    "--keep",
                    format!("`.npy` images carry no column `{name}` (they carry {})", carried.join(", ")),
                ));
            }
            Box::new(reader)
        }
        _ => Box::new(ParquetCutouts::open(inputs, opts)?),
    })
}

/// What `input` is read as: `dataset` says whether it is a folder of Parquet
/// files. A local file of no FITS or `.npy` name is an Arrow IPC file when its
/// first bytes say so (whatever its name: Feather files are often `.parquet`'s
/// siblings in name only), else Parquet.
fn input_kind(input: &Path, dataset: bool) -> Result<&'static str> {
    if dataset {
        return Ok("parquet dataset");
    }
    if input.is_dir() {
        return Ok("npy");
    }
    Ok(match input.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase().as_str() {
        "fits" | "fit" | "fts" | "gz" | "fz" => "fits",
        "npy" => "npy",
        _ if IpcFormat::for_name(input).is_some() || crate::data::is_ipc_file(input)? => "arrow",
        _ => "parquet",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_large_cutouts_hold_fewer_rows() {
        assert_eq!(rows_in_batch(256, [64, 64]), 256);
        assert_eq!(rows_in_batch(256, [4096, 4096]), MAX_BATCH_PIXELS / (4096 * 4096));
        // One row even when a single cutout is beyond the cap, and never zero rows.
        assert_eq!(rows_in_batch(256, [1 << 14, 1 << 14]), 1);
        assert_eq!(rows_in_batch(0, [64, 64]), 1);
    }
}
