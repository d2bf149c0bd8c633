//! Labelled image sets in memory, read from the simulator's Parquet datasets (or
//! any Parquet table with an image column and labels), for training and
//! evaluation.
//!
//! The image column may be a `FixedSizeList` or `List` of float32/float64 (shape
//! from the `arrow.fixed_shape_tensor` metadata, else a square), labels come from
//! `label_idx` (any integer type) or from `label` strings. A missing column, a
//! wrong type, a wrong size or a non-finite pixel is an error that names the file,
//! the column and the row.

use crate::data::cutouts::{CutoutReader, InputOptions};
use crate::data::fits::cutouts::FitsCutouts;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
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
    /// Where the images came from.
    pub source: PathBuf,
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
        let ext = self.source.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => super::parquet::open_parquet(&self.source)
                .ok()
                .and_then(|b| super::parquet::recorded_pixel_scale(b.schema())),
            "fits" | "fit" | "fts" | "gz" => {
                let mut f = super::fits::open_fits(&self.source).ok()?;
                let hdu = f.primary_hdu().ok()?;
                super::fits::wcs_pixel_scale(&mut f, &hdu)
            }
            _ => None,
        }
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

/// Read LR/HR pairs: a Parquet file with `lr` and `hr` image columns (as the
/// simulator writes them with `--task superres`), or a folder with `LR/` and
/// `HR/` subfolders of `.npy` images with the same file names (the DeepLense
/// super-resolution release's layout). Refuses pairs whose sizes are not an
/// integer factor apart.
pub fn read_image_pairs(path: &Path) -> Result<ImagePairs> {
    let (lr, hr) = if path.is_dir() {
        read_npy_pairs(path)?
    } else {
        (read_parquet_images_labelled(path, "lr", false)?, read_parquet_images_labelled(path, "hr", false)?)
    };
    let err = |message: String| Error::Parquet { path: path.to_path_buf(), message };
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
        };
        read_npy_folder(d, 0, &mut out)?;
        Ok(out)
    };
    Ok((read(&lr_dir)?, read(&hr_dir)?))
}

/// Named columns of numbers, row by row (`None` where null).
pub type FloatColumns = Vec<(String, Vec<Option<f64>>)>;

/// The float columns `names` of a Parquet file that has them (others are left
/// out), row by row; integer columns are read as floats, nulls stay `None`.
/// For reporting metrics per bin of a simulated parameter (`sub_snr`, ...).
pub fn read_float_columns(path: &Path, names: &[&str]) -> Result<FloatColumns> {
    let err = |message: String| Error::Parquet { path: path.to_path_buf(), message };
    let builder = super::parquet::open_parquet(path)?;
    let schema = builder.schema().clone();
    let present: Vec<&str> =
        names.iter().copied().filter(|n| schema.field_with_name(n).is_ok_and(|f| f.data_type().is_numeric())).collect();
    let wanted: Vec<usize> = present.iter().filter_map(|n| schema.index_of(n).ok()).collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = super::parquet::ParquetBatches::new(path, builder.with_projection(mask).with_batch_size(8192))?;
    let mut columns: FloatColumns = present.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for batch in reader {
        let batch = batch?;
        for (name, values) in columns.iter_mut() {
            let col = batch.column_by_name(name).expect("projected");
            let as_f64 = arrow_cast_f64(col).map_err(|m| err(format!("column `{name}`: {m}")))?;
            values.extend(as_f64.iter());
        }
    }
    Ok(columns)
}

pub(crate) fn arrow_cast_f64(col: &ArrayRef) -> std::result::Result<arrow_array::Float64Array, String> {
    Ok(match col.data_type() {
        DataType::Float64 => col.as_primitive::<Float64Type>().clone(),
        DataType::Float32 => col.as_primitive::<Float32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Int64 => col.as_primitive::<Int64Type>().iter().map(|v| v.map(|x| x as f64)).collect(),
        DataType::Int32 => col.as_primitive::<Int32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Int16 => col.as_primitive::<Int16Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Int8 => col.as_primitive::<Int8Type>().iter().map(|v| v.map(f64::from)).collect(),
        other => return Err(format!("type {other} is not read as a number here")),
    })
}

/// Read a labelled Parquet dataset (see the module doc) from `path`.
pub fn read_parquet_images(path: &Path, image_column: &str) -> Result<LabelledImages> {
    read_parquet_images_labelled(path, image_column, true)
}

/// Class of the images of a file without labels (super-resolution pairs need none).
pub const UNLABELLED: &str = "unlabelled";

/// [`read_parquet_images`]; without `require_labels`, a file with no label column
/// gives one class, [`UNLABELLED`].
fn read_parquet_images_labelled(path: &Path, image_column: &str, require_labels: bool) -> Result<LabelledImages> {
    read_parquet_rows(path, Some(image_column), require_labels)
}

/// The labels and ids of a labelled Parquet dataset without its images (`size`
/// 0, no pixels): what scoring a table of predictions needs.
pub fn read_parquet_labels(path: &Path) -> Result<LabelledImages> {
    read_parquet_rows(path, None, true)
}

/// Labels, ids and, with an `image_column`, the images of a Parquet dataset.
fn read_parquet_rows(path: &Path, image_column: Option<&str>, require_labels: bool) -> Result<LabelledImages> {
    let err = |message: String| Error::Parquet { path: path.to_path_buf(), message };
    let builder = super::parquet::open_parquet(path)?;
    let schema = builder.schema().clone();
    let size = match image_column {
        Some(name) => {
            let field = schema.field_with_name(name).map_err(|_| err(format!("no column `{name}`")))?;
            image_size(field).map_err(|m| err(format!("column `{name}`: {m}")))?
        }
        None => 0,
    };
    let mut class_names: Option<Vec<String>> =
        schema.metadata().get("lensmae:class_names").and_then(|s| serde_json::from_str(s).ok());
    let has_idx = schema.field_with_name("label_idx").is_ok();
    let has_label = schema.field_with_name("label").is_ok();
    // Without lensmae's class list, `label_idx` numbers nameless classes: the
    // `label` strings (when there) say which class is which.
    let from_strings = has_label && (!has_idx || class_names.is_none());
    let unlabelled = !has_idx && !has_label;
    if unlabelled && require_labels {
        return Err(err("no `label_idx` or `label` column".into()));
    }
    // Decode only the columns used: a dataset also holds parameter columns, and a
    // super-resolution file a second image column.
    let wanted: Vec<usize> = ["id", "label", "label_idx"]
        .into_iter()
        .chain(image_column)
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = super::parquet::ParquetBatches::new(path, builder.with_projection(mask).with_batch_size(1024))?;
    let (mut pixels, mut labels, mut ids, mut label_strings) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut row0 = 0i64;
    for batch in reader {
        let batch = batch?;
        let batch_ids = id_column(&batch, row0).map_err(&err)?;
        if let Some(name) = image_column {
            append_images(batch.column_by_name(name).expect("checked"), size, &batch_ids, &mut pixels)
                .map_err(|m| err(format!("column `{name}`: {m}")))?;
        }
        if unlabelled {
            labels.resize(labels.len() + batch.num_rows(), 0);
            class_names.get_or_insert_with(|| vec![UNLABELLED.to_string()]);
        } else if !from_strings {
            labels.extend(integer_column(&batch, "label_idx").map_err(&err)?);
        } else {
            let col = batch.column_by_name("label").expect("checked");
            let strings =
                col.as_string_opt::<i32>().ok_or_else(|| err("column `label` is not a string column".into()))?;
            for (k, s) in strings.iter().enumerate() {
                label_strings.push(s.ok_or_else(|| err(format!("row id {}: null label", batch_ids[k])))?.to_string());
            }
        }
        row0 += batch.num_rows() as i64;
        ids.extend(batch_ids);
    }
    if from_strings {
        let names = class_names.get_or_insert_with(|| {
            let mut u: Vec<String> = label_strings.clone();
            u.sort();
            u.dedup();
            u
        });
        for (k, s) in label_strings.iter().enumerate() {
            let idx = names
                .iter()
                .position(|n| n == s)
                .ok_or_else(|| err(format!("row id {}: unknown label `{s}`", ids[k])))?;
            labels.push(idx);
        }
    }
    let max_label = labels.iter().copied().max().unwrap_or(0);
    let class_names = class_names.unwrap_or_else(|| (0..=max_label).map(|i| format!("class_{i}")).collect());
    if let Some(k) = labels.iter().position(|&l| l >= class_names.len()) {
        return Err(err(format!("row id {}: label_idx {} but only {} classes", ids[k], labels[k], class_names.len())));
    }
    Ok(LabelledImages { class_names, size, pixels, labels, ids, source: path.to_path_buf() })
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
    let [height, width] = cutouts.describe().image_shape;
    if height != width {
        return Err(err(format!("the images are {height}x{width}; expected square images")));
    }
    let size = height;
    let mut pixels = Vec::new();
    let mut images = 0;
    while let Some(batch) = cutouts.next_batch(256)? {
        if let Some((k, problem)) = batch.problems.iter().enumerate().find_map(|(k, p)| Some(k).zip(p.as_ref())) {
            return Err(err(format!("image {}: {problem}", images + k)));
        }
        if let Some(k) = batch.pixels.iter().position(|v| !v.is_finite()) {
            let image = images + k / (size * size);
            return Err(err(format!("image {image}: non-finite pixel at index {}", k % (size * size))));
        }
        images += batch.len();
        pixels.extend_from_slice(&batch.pixels);
    }
    let labels = super::fits::read_label_table(path).map_err(err)?;
    if labels.labels.len() != images {
        return Err(err(format!("{} labels for {images} images", labels.labels.len())));
    }
    let ids = labels.ids.unwrap_or_else(|| (0..images as i64).collect());
    Ok(LabelledImages {
        class_names: labels.class_names,
        size,
        pixels,
        labels: labels.labels,
        ids,
        source: path.to_path_buf(),
    })
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
    };
    for (label, class_dir) in classes.iter().enumerate() {
        read_npy_folder(class_dir, label, &mut out)?;
    }
    Ok(out)
}

/// Read labelled images from a Parquet (`.parquet`) or FITS (`.fits`, `.fit`)
/// file, or a DeepLense-style folder of `.npy` class folders.
pub fn read_labelled_images(path: &Path, image_column: &str) -> Result<LabelledImages> {
    if path.is_dir() {
        return read_npy_tree(path);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "fits" | "fit" | "fts" => read_fits_images(path),
        _ => read_parquet_images(path, image_column),
    }
}

fn image_size(field: &arrow_schema::Field) -> std::result::Result<usize, String> {
    let len = match field.data_type() {
        DataType::FixedSizeList(item, n) if matches!(item.data_type(), DataType::Float32 | DataType::Float64) => {
            Some(*n as usize)
        }
        DataType::List(item) if matches!(item.data_type(), DataType::Float32 | DataType::Float64) => None,
        other => return Err(format!("images must be lists of float32/float64, found {other}")),
    };
    if let Some(shape) = tensor_shape(field) {
        return match shape?.as_slice() {
            [h, w] if h == w => Ok(*h),
            [1, h, w] if h == w => Ok(*h),
            other => Err(format!("images must be square and single-band, shape is {other:?}")),
        };
    }
    let len = len.ok_or("variable-length lists need a fixed_shape_tensor shape")?;
    let side = (len as f64).sqrt().round() as usize;
    if side * side != len {
        return Err(format!("{len} values per row is not a square image"));
    }
    Ok(side)
}

/// The values of a list-of-floats image column as f32, with each row's offsets
/// into them (`offsets[r]..offsets[r + 1]`); nulls are left to the caller.
pub(crate) fn list_rows(col: &ArrayRef) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    let (values, offsets): (ArrayRef, Vec<usize>) = match col.data_type() {
        DataType::FixedSizeList(_, n) => {
            let (l, n) = (col.as_fixed_size_list(), *n as usize);
            (l.values().slice(l.value_offset_at(0), l.len() * n), (0..=l.len()).map(|i| i * n).collect())
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            let o = l.value_offsets();
            let base = o[0] as usize;
            (l.values().slice(base, o[o.len() - 1] as usize - base), o.iter().map(|&v| v as usize - base).collect())
        }
        DataType::LargeList(_) => {
            let l = col.as_list::<i64>();
            let o = l.value_offsets();
            let base = o[0] as usize;
            (l.values().slice(base, o[o.len() - 1] as usize - base), o.iter().map(|&v| v as usize - base).collect())
        }
        other => return Err(format!("images must be lists of float32/float64, found {other}")),
    };
    let floats: Vec<f32> = match values.data_type() {
        DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
        DataType::Float64 => values.as_primitive::<Float64Type>().values().iter().map(|&v| v as f32).collect(),
        other => return Err(format!("image values are {other}, not float32/float64")),
    };
    Ok((floats, offsets))
}

/// The `[H, W, ...]` shape an `arrow.fixed_shape_tensor` field declares, if any.
pub(crate) fn tensor_shape(field: &arrow_schema::Field) -> Option<std::result::Result<Vec<usize>, String>> {
    let meta = field.metadata().get(crate::data::parquet::EXTENSION_METADATA_KEY)?;
    Some(
        serde_json::from_str::<serde_json::Value>(meta)
            .map_err(|e| format!("bad tensor metadata: {e}"))
            .and_then(|v| serde_json::from_value(v["shape"].clone()).map_err(|e| format!("bad tensor shape: {e}"))),
    )
}

fn append_images(col: &ArrayRef, size: usize, ids: &[i64], out: &mut Vec<f32>) -> std::result::Result<(), String> {
    let n = size * size;
    let (floats, offsets) = list_rows(col)?;
    for row in 0..offsets.len() - 1 {
        if col.is_null(row) {
            return Err(format!("row id {}: null image", ids[row]));
        }
        let (a, b) = (offsets[row], offsets[row + 1]);
        if b - a != n {
            return Err(format!("row id {}: {} pixels, expected {size}x{size}", ids[row], b - a));
        }
        let img = &floats[a..b];
        if let Some(k) = img.iter().position(|v| !v.is_finite()) {
            return Err(format!("row id {}: non-finite pixel {} at index {k}", ids[row], img[k]));
        }
        out.extend_from_slice(img);
    }
    Ok(())
}

fn id_column(batch: &RecordBatch, row0: i64) -> std::result::Result<Vec<i64>, String> {
    match batch.column_by_name("id") {
        None => Ok((0..batch.num_rows() as i64).map(|i| row0 + i).collect()),
        Some(_) => integer_column(batch, "id").map(|v| v.into_iter().map(|x| x as i64).collect()),
    }
}

fn integer_column(batch: &RecordBatch, name: &str) -> std::result::Result<Vec<usize>, String> {
    let col = batch.column_by_name(name).ok_or_else(|| format!("no column `{name}`"))?;
    if col.null_count() > 0 {
        return Err(format!("column `{name}` has nulls"));
    }
    let to_usize = |v: i64| usize::try_from(v).map_err(|_| format!("column `{name}` has a negative value {v}"));
    match col.data_type() {
        DataType::Int8 => col.as_primitive::<Int8Type>().values().iter().map(|&v| to_usize(v as i64)).collect(),
        DataType::Int16 => col.as_primitive::<Int16Type>().values().iter().map(|&v| to_usize(v as i64)).collect(),
        DataType::Int32 => col.as_primitive::<Int32Type>().values().iter().map(|&v| to_usize(v as i64)).collect(),
        DataType::Int64 => col.as_primitive::<Int64Type>().values().iter().map(|&v| to_usize(v)).collect(),
        other => Err(format!("column `{name}` is {other}, not an integer")),
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
