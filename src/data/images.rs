//! Labelled image sets in memory, for training and evaluation: a Parquet or Arrow
//! IPC table with an image column and labels (the simulator's datasets), a FITS
//! file of cutouts with a label table, or a DeepLense folder of `.npy` class folders.
//!
//! Images come through the stage's cutout readers ([`ParquetCutouts`], the
//! Arrow IPC reader, [`FitsCutouts`]), so a training set is read as a prediction input is: the
//! same column layouts (tensor or float lists, FITS stamps in bytes), BSCALE,
//! BLANK and truncation handling. Labels come from `label_idx` (any integer
//! type) or `label` strings ([`columns::read_label_table`], or the FITS label
//! table). A training set needs every image: a missing column, a wrong type, an
//! undecodable row or a non-finite pixel is an error that names the file, the
//! column and the row.

use crate::data::cutouts::{CutoutReader, InputOptions};
use crate::data::fits::cutouts::FitsCutouts;
use crate::data::parquet::columns;
pub use crate::data::parquet::columns::{read_float_columns, FloatColumns, UNLABELLED};
use crate::data::parquet::cutouts::ParquetCutouts;
use crate::data::parquet::dataset::{dataset_of, DatasetFile};
use crate::data::LabelTable;
use crate::sim::fit::SmoothLensResiduals;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Single-band square images with integer labels, row-major `[n, size, size]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImages {
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Image side, pixels.
    pub size: usize,
    /// Pixels, `n * size * size`.
    pub pixels: Vec<f32>,
    /// Label of each image.
    pub labels: Vec<usize>,
    /// Row id of each image (the `id` column, else the row number).
    pub ids: Vec<i64>,
    /// Where the images came from (the first dataset of several joined).
    pub source: PathBuf,
    /// Images joined from several datasets ([`LabelledImages::join`]): each
    /// dataset and its number of rows, in order; empty for one source. A subset
    /// keeps the list of the images it was taken from.
    pub joined_from: Vec<(PathBuf, usize)>,
}

impl LabelledImages {
    /// SHA-256 (hex) of the images as read, their labels and ids: what a training
    /// run saw, wherever it came from (a file, a folder, memory).
    pub fn content_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update((self.size as u64).to_le_bytes());
        for name in &self.class_names {
            hasher.update(name.as_bytes());
            hasher.update([0]);
        }
        for chunk in self.pixels.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            hasher.update(&bytes);
        }
        for (label, id) in self.labels.iter().zip(&self.ids) {
            hasher.update((*label as u64).to_le_bytes());
            hasher.update(id.to_le_bytes());
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The pixel scale (arcsec per pixel) the file these images came from
    /// records: a Parquet table's `lensmae:pixel_scale`, a FITS file's WCS or
    /// PIXSCALE. `None` for other sources or when unrecorded.
    pub fn recorded_pixel_scale(&self) -> Option<f64> {
        let source = self.described_by();
        if super::is_table_name(&source) {
            return super::table_schema(&source).ok().and_then(|schema| super::parquet::recorded_pixel_scale(&schema));
        }
        let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "fits" | "fit" | "fts" | "gz" => {
                let mut f = super::fits::open_fits(&source).ok()?;
                let hdu = f.primary_hdu().ok()?;
                super::fits::wcs_pixel_scale(&mut f, &hdu)
            }
            _ => None,
        }
    }

    /// How these images were made from cutouts when they are smooth-lens
    /// residuals: the recipe a Parquet table records under
    /// [`SMOOTH_LENS_RESIDUALS_KEY`](crate::sim::fit::SMOOTH_LENS_RESIDUALS_KEY); `None` for other images and sources.
    pub fn recorded_smooth_lens_residuals(&self) -> Result<Option<SmoothLensResiduals>> {
        let source = self.described_by();
        if !super::is_table_name(&source) {
            return Ok(None);
        }
        super::parquet::recorded_smooth_lens_residuals(&*super::table_schema(&source)?, &source)
    }

    /// The file whose metadata describes these images: their source, or the first
    /// file of a folder of Parquet files (a dataset's writer gives each file the
    /// table's metadata).
    fn described_by(&self) -> PathBuf {
        match dataset_of(&self.source) {
            Ok(Some(files)) => files[0].path.clone(),
            _ => self.source.clone(),
        }
    }

    /// Images with the labels (and ids, else row numbers) of `table`, read from `source`.
    fn from_labels(table: LabelTable, size: usize, pixels: Vec<f32>, source: &Path) -> LabelledImages {
        let ids = table.ids.unwrap_or_else(|| (0..table.labels.len() as i64).collect());
        LabelledImages {
            class_names: table.class_names,
            size,
            pixels,
            labels: table.labels,
            ids,
            source: source.to_path_buf(),
            joined_from: Vec::new(),
        }
    }

    /// Several labelled datasets as one, rows in the order given: for a training
    /// set made of several simulations. They must agree on everything a checkpoint
    /// records of its data: the classes, the image size, the pixel scale and, for
    /// smooth-lens residuals, the fit's recipe. Ids stay each dataset's own, so they
    /// may repeat; [`LabelledImages::part_of_row`] tells the rows apart.
    pub fn join(parts: Vec<LabelledImages>) -> Result<LabelledImages> {
        let mut parts = parts.into_iter();
        let Some(mut joined) = parts.next() else {
            return Err(Error::config("data", "no dataset to join"));
        };
        if parts.len() == 0 {
            return Ok(joined);
        }
        let (scale, recipe) = (joined.recorded_pixel_scale(), joined.recorded_smooth_lens_residuals()?);
        let first = joined.source.clone();
        joined.joined_from = vec![(first.clone(), joined.len())];
        for part in parts {
            let differs = |what: &str| Error::Mismatch {
                path: part.source.clone(),
                message: format!(
                    "its {what} differs from {}'s: datasets joined for training must agree",
                    first.display()
                ),
            };
            if part.class_names != joined.class_names {
                return Err(differs("class list"));
            }
            if part.size != joined.size {
                return Err(differs("image size"));
            }
            if part.recorded_pixel_scale() != scale {
                return Err(differs("recorded pixel scale"));
            }
            if part.recorded_smooth_lens_residuals()? != recipe {
                return Err(differs("smooth-lens residual recipe"));
            }
            joined.joined_from.push((part.source.clone(), part.len()));
            joined.pixels.extend_from_slice(&part.pixels);
            joined.labels.extend_from_slice(&part.labels);
            joined.ids.extend_from_slice(&part.ids);
        }
        Ok(joined)
    }

    /// Every dataset the images came from, in order.
    pub fn sources(&self) -> Vec<&Path> {
        if self.joined_from.is_empty() {
            vec![self.source.as_path()]
        } else {
            self.joined_from.iter().map(|(p, _)| p.as_path()).collect()
        }
    }

    /// For smooth-lens residuals, whether each image's fit found a galaxy-scale lens
    /// ([`crate::data::record::FIT_LENS_FOUND`]; true where a source does not record
    /// it), or None where no source does. Of the images as read or joined, not of a subset.
    pub fn fit_lens_found(&self) -> Result<Option<Vec<bool>>> {
        use crate::data::record::FIT_LENS_FOUND;
        let parts: Vec<(&Path, usize)> = if self.joined_from.is_empty() {
            vec![(self.source.as_path(), self.len())]
        } else {
            self.joined_from.iter().map(|(p, rows)| (p.as_path(), *rows)).collect()
        };
        let (mut found, mut recorded) = (Vec::with_capacity(self.len()), false);
        for (path, rows) in parts {
            // FITS cubes and .npy trees carry no such column.
            let column = if is_table(path)? { read_float_columns(path, &[FIT_LENS_FOUND])?.pop() } else { None };
            match column {
                Some((_, values)) if values.len() == rows => {
                    recorded = true;
                    found.extend(values.iter().map(|v| *v != Some(0.0)));
                }
                Some((_, values)) => {
                    let message = format!("{} rows of `{FIT_LENS_FOUND}` for {rows} images", values.len());
                    return Err(Error::Mismatch { path: path.to_path_buf(), message });
                }
                None => found.extend(std::iter::repeat_n(true, rows)),
            }
        }
        if found.len() != self.len() {
            let message = format!("{} images, but their sources hold {} rows", self.len(), found.len());
            return Err(Error::Mismatch { path: self.source.clone(), message });
        }
        Ok(recorded.then_some(found))
    }

    /// Which of [`LabelledImages::sources`] row `row` came from (of the images as
    /// joined, not of a subset).
    pub fn part_of_row(&self, row: usize) -> usize {
        let mut end = 0;
        for (part, (_, rows)) in self.joined_from.iter().enumerate() {
            end += rows;
            if row < end {
                return part;
            }
        }
        0
    }

    /// The sources for messages and provenance: one path, or the paths joined by " + ".
    pub fn source_description(&self) -> String {
        self.sources().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ")
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.size * self.size;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> LabelledImages {
        let mut pixels = Vec::with_capacity(indices.len() * self.size * self.size);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        LabelledImages {
            class_names: self.class_names.clone(),
            size: self.size,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ids: indices.iter().map(|&i| self.ids[i]).collect(),
            source: self.source.clone(),
            joined_from: self.joined_from.clone(),
        }
    }
}

/// The files of `dir`, sorted by name.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Appends the `.npy` images of `folder` (file-name order) to `out` with `label`.
fn read_npy_folder(folder: &Path, label: usize, out: &mut LabelledImages) -> Result<()> {
    for file in sorted_entries(folder)?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "npy")) {
        let (array, _) = crate::data::npy::read_npy_image(&file)?;
        let side = match array.shape.as_slice() {
            [h, w] | [1, h, w] if h == w => *h,
            other => return Err(Error::Npy { path: file, message: format!("shape {other:?} is not a square image") }),
        };
        if out.size == 0 {
            out.size = side;
        } else if side != out.size {
            return Err(Error::Npy { path: file, message: format!("{side}x{side}, the others are {0}x{0}", out.size) });
        }
        if array.data.iter().any(|v| !v.is_finite()) {
            return Err(Error::Npy { path: file, message: "non-finite pixels".into() });
        }
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let digits: String =
            stem.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
        out.ids.push(digits.parse().unwrap_or(out.ids.len() as i64));
        out.pixels.extend(array.data.iter().map(|&v| v as f32));
        out.labels.push(label);
    }
    Ok(())
}

/// Low- and high-resolution versions of the same images, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePairs {
    /// The low-resolution images (with the labels and ids).
    pub lr: LabelledImages,
    /// The high-resolution images.
    pub hr: LabelledImages,
}

impl ImagePairs {
    /// The HR/LR side ratio.
    pub fn factor(&self) -> usize {
        self.hr.size / self.lr.size.max(1)
    }

    /// The LR images at `indices`, concatenated.
    pub fn lr_rows(&self, indices: &[usize]) -> Vec<f32> {
        indices.iter().flat_map(|&i| self.lr.image(i).iter().copied()).collect()
    }

    /// Bicubic and nearest-neighbour upsamplings of the LR images at `indices`:
    /// the baselines every super-resolution result is reported beside.
    pub fn classical_upsamplings(&self, indices: &[usize]) -> (Vec<f32>, Vec<f32>) {
        use super::resample::{upsample_bicubic, upsample_nearest};
        let (size, f) = (self.lr.size, self.factor());
        let bicubic = indices.iter().flat_map(|&i| upsample_bicubic(self.lr.image(i), size, f)).collect();
        let nearest = indices.iter().flat_map(|&i| upsample_nearest(self.lr.image(i), size, f)).collect();
        (bicubic, nearest)
    }
}

/// Read LR/HR pairs: a Parquet or Arrow IPC file with `lr` and `hr` image columns (as the
/// simulator writes them with `--task superres`), or a folder with `LR/` and
/// `HR/` subfolders of `.npy` images with the same file names (the DeepLense
/// super-resolution release's layout). Refuses pairs whose sizes are not an
/// integer factor apart.
pub fn read_image_pairs(path: &Path) -> Result<ImagePairs> {
    let (lr, hr) = if path.is_dir() {
        read_npy_pairs(path)?
    } else {
        let dataset = dataset_of(path)?;
        (
            read_parquet_images_labelled(path, dataset.clone(), "lr", false)?,
            read_parquet_images_labelled(path, dataset, "hr", false)?,
        )
    };
    let err = |message: String| Error::Table { path: path.to_path_buf(), message };
    if lr.size == 0 || hr.size % lr.size != 0 || hr.size == lr.size {
        return Err(err(format!(
            "`hr` images are {0}x{0} and `lr` {1}x{1}: not an integer upsampling",
            hr.size, lr.size
        )));
    }
    if lr.len() != hr.len() {
        return Err(err(format!("{} `lr` rows but {} `hr` rows", lr.len(), hr.len())));
    }
    Ok(ImagePairs { lr, hr })
}

fn read_npy_pairs(dir: &Path) -> Result<(LabelledImages, LabelledImages)> {
    let err = |message: String| Error::Npy { path: dir.to_path_buf(), message };
    let sub = |name: &str| -> Result<PathBuf> {
        sorted_entries(dir)?
            .into_iter()
            .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name)))
            .ok_or_else(|| err(format!("no `{name}/` folder of .npy images")))
    };
    let names = |d: &Path| -> Result<Vec<std::ffi::OsString>> {
        Ok(sorted_entries(d)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    };
    let (lr_dir, hr_dir) = (sub("LR")?, sub("HR")?);
    let (lr_names, hr_names) = (names(&lr_dir)?, names(&hr_dir)?);
    if let Some(missing) =
        lr_names.iter().find(|n| !hr_names.contains(n)).or(hr_names.iter().find(|n| !lr_names.contains(n)))
    {
        return Err(err(format!("{} has no partner in the other of LR/ and HR/", missing.to_string_lossy())));
    }
    let read = |d: &Path| -> Result<LabelledImages> {
        let mut out = LabelledImages {
            class_names: vec!["unlabelled".into()],
            size: 0,
            pixels: Vec::new(),
            labels: Vec::new(),
            ids: Vec::new(),
            source: dir.to_path_buf(),
            joined_from: Vec::new(),
        };
        read_npy_folder(d, 0, &mut out)?;
        Ok(out)
    };
    Ok((read(&lr_dir)?, read(&hr_dir)?))
}

/// Read a labelled Parquet or Arrow IPC table (see the module doc) from `path`.
pub fn read_parquet_images(path: &Path, image_column: &str) -> Result<LabelledImages> {
    read_parquet_images_labelled(path, dataset_of(path)?, image_column, true)
}

/// [`read_parquet_images`] of the file `path`, or of the folder whose files
/// `dataset` holds ([`dataset_of`]); without `require_labels`, a table with no label
/// column gives one class, [`UNLABELLED`].
fn read_parquet_images_labelled(
    path: &Path,
    dataset: Option<Vec<DatasetFile>>,
    image_column: &str,
    require_labels: bool,
) -> Result<LabelledImages> {
    let sources = dataset.clone().unwrap_or_else(|| vec![DatasetFile::alone(path)]);
    let table = columns::label_table_of(path, &sources, require_labels)?;
    let opts = InputOptions { image_column: Some(image_column.to_string()), ..InputOptions::default() };
    let mut cutouts: Box<dyn CutoutReader> = match dataset {
        Some(files) => Box::new(ParquetCutouts::open_dataset(path, files, &opts)?),
        None => crate::data::cutouts::open_input(&[path.to_path_buf()], &opts)?,
    };
    let err = |message: String| Error::Table { path: path.to_path_buf(), message };
    let id_of = |row: usize| table.ids.as_ref().map_or(Some(row as i64), |ids| ids.get(row).copied());
    let name_row = |row: usize| match id_of(row) {
        Some(id) => format!("column `{image_column}`, row id {id}"),
        None => format!("column `{image_column}`, row {row}"),
    };
    let (size, pixels) = read_every_cutout(cutouts.as_mut(), name_row, err)?;
    let images = pixels.len() / (size * size);
    if images != table.labels.len() {
        return Err(err(format!("{} labels for {images} images", table.labels.len())));
    }
    Ok(LabelledImages::from_labels(table, size, pixels, path))
}

/// The labels and ids of a labelled Parquet dataset without its images (`size`
/// 0, no pixels): what scoring a table of predictions needs.
pub fn read_parquet_labels(path: &Path) -> Result<LabelledImages> {
    Ok(LabelledImages::from_labels(columns::read_label_table(path, true)?, 0, Vec::new(), path))
}

/// Every image of `cutouts` (square), as a training set needs them: a row the
/// reader cannot give or a non-finite pixel is an error naming the row
/// (`name_row` says how; `err` makes the error of the input).
fn read_every_cutout(
    cutouts: &mut dyn CutoutReader,
    name_row: impl Fn(usize) -> String,
    err: impl Fn(String) -> Error,
) -> Result<(usize, Vec<f32>)> {
    let [height, width] = cutouts.describe().image_shape;
    if height != width || height == 0 {
        return Err(err(format!("the images are {height}x{width}; expected square images")));
    }
    let image_len = height * width;
    // Reserved once for the rows the input declares (growing a vector of
    // hundreds of MB by doubling costs more than reading it), but never more
    // than a hostile header asks for beyond 1 GiB.
    let declared = cutouts.describe().rows.saturating_mul(image_len).min(1 << 28);
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(declared).map_err(|e| err(format!("{declared} pixels: {e}")))?;
    let mut rows = 0;
    while let Some(batch) = cutouts.next_batch(4096)? {
        if let Some((k, problem)) = batch.problems.iter().enumerate().find_map(|(k, p)| Some(k).zip(p.as_ref())) {
            return Err(err(format!("{}: {problem}", name_row(rows + k))));
        }
        if let Some(k) = batch.pixels.iter().position(|v| !v.is_finite()) {
            let (row, index) = (rows + k / image_len, k % image_len);
            return Err(err(format!("{}: non-finite pixel at index {index} ({})", name_row(row), batch.pixels[k])));
        }
        rows += batch.len();
        pixels.extend_from_slice(&batch.pixels);
    }
    Ok((height, pixels))
}

/// Read labelled images from a FITS file as `lensmae simulate --format fits`
/// writes it (and as survey tools commonly lay cutouts out): the cutouts as the
/// stage reads them ([`FitsCutouts`]: a cube of NAXIS3 images in the primary HDU,
/// or image extensions; BSCALE/BZERO applied, BLANK as NaN), and a binary table
/// with `label_idx` and/or `label` columns, one row per image. A training set
/// needs every image: a row the reader cannot give (a truncated cube) or a
/// non-finite pixel is an error naming the image.
pub fn read_fits_images(path: &Path) -> Result<LabelledImages> {
    let err = |message: String| Error::Fits { path: path.to_path_buf(), message };
    let mut cutouts = FitsCutouts::open(&[path.to_path_buf()], &InputOptions::default())?;
    let (size, pixels) = read_every_cutout(&mut cutouts, |row| format!("image {row}"), err)?;
    let images = pixels.len() / (size * size);
    let labels = super::fits::read_label_table(path).map_err(err)?;
    if labels.labels.len() != images {
        return Err(err(format!("{} labels for {images} images", labels.labels.len())));
    }
    Ok(LabelledImages::from_labels(labels, size, pixels, path))
}

/// Read a DeepLense-style folder tree: one sub-folder per class (classes in
/// name order), `.npy` images inside, in file-name order. The release's pickled
/// axion files (`[image, m_a]`) are read too. Ids are the trailing number of each
/// file name (`cdm_sim_123.npy` -> 123) or the running index.
pub fn read_npy_tree(dir: &Path) -> Result<LabelledImages> {
    let err = |message: String| Error::Npy { path: dir.to_path_buf(), message };
    let classes: Vec<PathBuf> = sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(err("no class folders".into()));
    }
    let mut out = LabelledImages {
        class_names: classes.iter().map(|c| c.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect(),
        size: 0,
        pixels: Vec::new(),
        labels: Vec::new(),
        ids: Vec::new(),
        source: dir.to_path_buf(),
        joined_from: Vec::new(),
    };
    for (label, class_dir) in classes.iter().enumerate() {
        read_npy_folder(class_dir, label, &mut out)?;
    }
    Ok(out)
}

/// Whether `path` is a table whose columns beside the images can be read alone
/// (labels, simulated parameters): a Parquet or Arrow IPC file, or a folder of
/// Parquet files; not FITS files or `.npy` trees.
pub fn is_table(path: &Path) -> Result<bool> {
    if dataset_of(path)?.is_some() {
        return Ok(true);
    }
    Ok(super::is_table_name(path) || super::is_ipc_file(path)?)
}

/// Read labelled images from a Parquet (`.parquet`), Arrow IPC (`.arrow`,
/// `.feather`) or FITS (`.fits`, `.fit`) file, a folder of Parquet files (a dataset: [`crate::data::parquet::dataset`]),
/// or a DeepLense-style folder of `.npy` class folders.
pub fn read_labelled_images(path: &Path, image_column: &str) -> Result<LabelledImages> {
    if let Some(files) = dataset_of(path)? {
        return read_parquet_images_labelled(path, Some(files), image_column, true);
    }
    if path.is_dir() {
        return read_npy_tree(path);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "fits" | "fit" | "fts" => read_fits_images(path),
        _ => read_parquet_images(path, image_column),
    }
}

/// Scale each image to [0, 1] by its own minimum and maximum (a constant image
/// becomes zeros), in place.
pub fn minmax_normalise(pixels: &mut [f32], image_len: usize) {
    for img in pixels.chunks_mut(image_len) {
        let (lo, hi) = value_range(img);
        let range = hi - lo;
        for v in img.iter_mut() {
            *v = if range > 0.0 { (*v - lo) / range } else { 0.0 };
        }
    }
}

/// The smallest and largest value of `img`.
pub fn value_range(img: &[f32]) -> (f32, f32) {
    img.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)))
}

/// Deterministic stratified split: within each class, indices are shuffled with
/// `seed` and cut by the fractions. Returns (train, validation, test) indices.
pub fn stratified_split(labels: &[usize], val_fraction: f64, test_fraction: f64, seed: u64) -> [Vec<usize>; 3] {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let num_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut out: [Vec<usize>; 3] = Default::default();
    for c in 0..num_classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        idx.shuffle(&mut rng);
        let n_test = (idx.len() as f64 * test_fraction).round() as usize;
        let n_val = (idx.len() as f64 * val_fraction).round() as usize;
        out[2].extend_from_slice(&idx[..n_test]);
        out[1].extend_from_slice(&idx[n_test..n_test + n_val]);
        out[0].extend_from_slice(&idx[n_test + n_val..]);
    }
    for part in out.iter_mut() {
        part.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_disjoint_stratified_and_seeded() {
        let labels: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let [train, val, test] = stratified_split(&labels, 0.1, 0.2, 5);
        assert_eq!((train.len(), val.len(), test.len()), (210, 30, 60));
        let mut all: Vec<usize> = train.iter().chain(&val).chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
        assert_eq!(test.iter().filter(|&&i| labels[i] == 1).count(), 20);
        assert_eq!(stratified_split(&labels, 0.1, 0.2, 5)[2], test);
        assert_ne!(stratified_split(&labels, 0.1, 0.2, 6)[2], test);
    }

    #[test]
    fn minmax_maps_each_image_to_the_unit_interval() {
        let mut px = vec![2.0, 4.0, 3.0, 2.0, 5.0, 5.0, 5.0, 5.0];
        minmax_normalise(&mut px, 4);
        assert_eq!(px, vec![0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
