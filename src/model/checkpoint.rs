//! Checkpoints: one `.safetensors` file per model, weights under their `vb.pp`
//! keys, and in the header's metadata (key `lensmae`) a JSON description: the
//! model config, the task, the class names, the preprocessing inference must
//! repeat, and how the model was made (command, data, seed, metrics). Written to
//! a temporary file and renamed.

use super::classifier::Network;
use super::mae::{MaeConfig, Pooling};
use super::superres::SuperresConfig;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// The models compiled into lensmae (`models/*.safetensors`, trained by
/// `pipelines/bundled.toml` and, the survey models, `pipelines/survey.toml` and
/// `pipelines/survey-residual.toml`; model
/// cards beside them), reachable everywhere a checkpoint path is taken under
/// these names, so `predict` works on day one from any folder and after
/// `cargo install`.
pub const BUNDLED: [(&str, &[u8]); 5] = [
    ("bundled:classifier", include_bytes!("../../models/classifier.safetensors")),
    ("bundled:superres", include_bytes!("../../models/superres.safetensors")),
    ("bundled:survey-superres", include_bytes!("../../models/survey-superres.safetensors")),
    ("bundled:survey-classifier", include_bytes!("../../models/survey-classifier.safetensors")),
    ("bundled:survey-residual-classifier", include_bytes!("../../models/survey-residual-classifier.safetensors")),
];

/// The bundled classifier's name.
pub const BUNDLED_CLASSIFIER: &str = BUNDLED[0].0;
/// The bundled super-resolution model's name.
pub const BUNDLED_SUPERRES: &str = BUNDLED[1].0;

/// The bytes of a checkpoint: a bundled model by name, or a file.
pub fn checkpoint_bytes(path: &Path) -> Result<Cow<'static, [u8]>> {
    if let Some((_, bytes)) = BUNDLED.iter().find(|(name, _)| path.as_os_str() == *name) {
        return Ok(Cow::Borrowed(bytes));
    }
    if path.to_str().is_some_and(|p| p.starts_with("bundled:")) {
        let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
        return Err(Error::checkpoint(path, format!("no such bundled model (there are {})", names.join(", "))));
    }
    Ok(Cow::Owned(std::fs::read(path).map_err(|e| Error::io(path, e))?))
}

/// Identifies lensmae checkpoints, and their layout version.
pub const CHECKPOINT_FORMAT: &str = "lensmae-checkpoint-1";

/// What a checkpoint's weights are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTask {
    /// A masked autoencoder (encoder + decoder).
    Mae,
    /// A classifier (encoder + linear head).
    Classify,
    /// A super-resolution model (encoder + convolutional decoder).
    Superres,
}

/// How images are prepared before the model sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Per-image scaling: `minmax` maps each image to [0, 1]; `minmax-lr` maps
    /// each LR image to [0, 1] and the model's output back by the inverse.
    pub normalisation: String,
    /// Image side the model takes, pixels.
    pub image_size: usize,
    /// Arcsec per pixel of those images (super-resolution: of the high-resolution
    /// ones), when the training data recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_scale: Option<f64>,
}

/// Everything a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// What the weights are for.
    pub task: ModelTask,
    /// The network and its sizes (a ViT's encoder and decoder, or a ResNet's).
    pub model: Network,
    /// Class names in output order (classifiers).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Token pooling of a classifier.
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// The head of a super-resolution model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superres: Option<SuperresConfig>,
    /// Input preparation.
    pub preprocessing: Preprocessing,
    /// Temperature and training domain of a classifier (tensors `domain.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<super::domain::Calibration>,
    /// A classifier of smooth-lens residuals: how every cutout is fitted before
    /// the model sees it (trained on a dataset that records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smooth_lens_residuals: Option<crate::sim::fit::SmoothLensResiduals>,
    /// How the model was trained: command, data, seed, epochs, metrics, version.
    pub provenance: serde_json::Value,
}

impl CheckpointMeta {
    /// The ViT's sizes, for what only a ViT does (MAE pretraining, super-resolution):
    /// an error naming `path` for a checkpoint of another network.
    pub fn vit(&self, path: &Path) -> Result<&MaeConfig> {
        self.model
            .vit()
            .ok_or_else(|| Error::checkpoint(path, format!("holds a {}, and this needs a ViT", self.model.describe())))
    }
}

/// Write `tensors` (sorted by key) with one metadata entry `key: value` to `path`, atomically.
pub fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>, key: &str, value: String) -> Result<()> {
    let atomic = crate::data::atomic::AtomicPath::new(path, true)?;
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    // Serialised in memory and written with std::fs, so the file gets the usual
    // permissions (safetensors' own file writer makes it readable by its owner only).
    let bytes = safetensors::serialize(sorted, Some(HashMap::from([(key.to_string(), value)])))
        .map_err(|e| Error::checkpoint(path, format!("writing safetensors: {e}")))?;
    std::fs::write(atomic.temp_path(), bytes).map_err(|e| Error::io(path, e))?;
    atomic.commit()
}

/// The metadata entry `key` of the safetensors file held in `bytes` (read from `path`).
pub fn safetensors_metadata(path: &Path, bytes: &[u8], key: &str) -> Result<Option<String>> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::checkpoint(path, format!("not a safetensors file: {e}")))?;
    Ok(header.metadata().as_ref().and_then(|m| m.get(key)).cloned())
}

/// The JSONL epoch log a training run writes beside its checkpoint `out`.
pub fn log_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("log.jsonl")
}

/// Write `tensors` and `meta` to `path` atomically.
pub fn save_checkpoint(path: &Path, tensors: &HashMap<String, Tensor>, meta: &CheckpointMeta) -> Result<()> {
    write_safetensors(path, tensors, "lensmae", serde_json::to_string(meta).expect("metadata serialises"))
}

/// Read a checkpoint's weights and description; files that are not lensmae
/// checkpoints are refused with the reason.
/// Weights stored in half precision (see [`compact_tensors`]) come back as f32.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, CheckpointMeta)> {
    let bytes = checkpoint_bytes(path)?;
    let meta = read_meta(path, &bytes)?;
    let read = |e: candle_core::Error| Error::checkpoint(path, format!("reading weights: {e}"));
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(read)?
        .into_iter()
        .map(|(k, t)| match t.dtype() {
            DType::F16 | DType::BF16 => Ok((k, t.to_dtype(DType::F32).map_err(read)?)),
            _ => Ok((k, t)),
        })
        .collect::<Result<_>>()?;
    Ok((tensors, meta))
}

/// Only the description of a checkpoint (no weights loaded).
pub fn read_checkpoint_meta(path: &Path) -> Result<CheckpointMeta> {
    read_meta(path, &checkpoint_bytes(path)?)
}

/// The weights of a checkpoint in f16 for shipping (half the bytes; the f32
/// model's outputs move by ~1e-3, see the bundled models' cards), except the
/// preprocessing statistics, batch normalisation's running statistics and the
/// domain model, which stay f32.
pub fn compact_tensors(tensors: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .iter()
        .map(|(k, t)| {
            let keep = k.starts_with("preprocess.")
                || k.starts_with("domain.")
                || super::resnet::is_running_statistic(k)
                || t.dtype() != DType::F32;
            Ok((k.clone(), if keep { t.clone() } else { t.to_dtype(DType::F16)? }))
        })
        .collect()
}

fn read_meta(path: &Path, bytes: &[u8]) -> Result<CheckpointMeta> {
    let bad = |m: String| Error::checkpoint(path, m);
    let text = safetensors_metadata(path, bytes, "lensmae")?
        .ok_or_else(|| bad("a safetensors file without lensmae metadata (not a lensmae checkpoint)".into()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| bad(format!("bad lensmae metadata: {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(bad(format!("checkpoint format `{}`, this lensmae reads `{CHECKPOINT_FORMAT}`", meta.format)));
    }
    // Sizes no network can be built from (a patch of 0 divided by zero) or no
    // machine holds, before anything is built from them.
    meta.model.validate().map_err(|e| bad(format!("the described model: {e}")))?;
    // The preparation sizes and scales the cutouts by these: a side of 0 divided
    // into zero-length chunks, one of 2^31 overflowed the resampled image's buffer.
    let prepared = &meta.preprocessing;
    if prepared.image_size != meta.model.image_size() {
        return Err(bad(format!(
            "its preprocessing takes {0}x{0} images, its model {1}x{1}",
            prepared.image_size,
            meta.model.image_size()
        )));
    }
    if let Some(scale) = prepared.pixel_scale.filter(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(bad(format!("its preprocessing's pixel scale {scale} is not a finite number > 0")));
    }
    if let (Some(head), Some(vit)) = (&meta.superres, meta.model.vit()) {
        head.validate(vit).map_err(|e| bad(format!("the described super-resolution head: {e}")))?;
    }
    if let Some(residuals) = &meta.smooth_lens_residuals {
        residuals.simulator.validate().map_err(|e| bad(format!("the recipe of its smooth-lens fit: {e}")))?;
        residuals.grid.validate().map_err(|e| bad(format!("the grid of its smooth-lens fit: {e}")))?;
    }
    if let Some(calibration) = &meta.calibration {
        if !(calibration.temperature.is_finite() && calibration.temperature > 0.0) {
            return Err(bad(format!("its temperature {} is not a finite number > 0", calibration.temperature)));
        }
    }
    Ok(meta)
}
