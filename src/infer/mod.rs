//! Inference: a checkpoint becomes a prepared model (its preprocessing, temperature
//! and training domain with it) that turns in-memory images into predictions. No
//! process-global state; nothing here depends on training (`train`, `stage`,
//! `report` and `evaluate` all call this).

pub mod residuals;

use crate::data::augment::{dihedral, Augment};
use crate::data::images::LabelledImages;
use crate::model::checkpoint::{checkpoint_bytes, load_checkpoint, CheckpointMeta, ModelTask};
use crate::model::domain::{DomainModel, InputStatistics};
use crate::model::mae::Pooling;
use crate::model::preprocess::{minmax_scale, scaled, Centring, Preprocessor};
use crate::model::superres::SuperResolver;
use crate::model::Classifier;
use crate::sim::fit::SmoothLensResiduals;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use residuals::ResidualFitter;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Hex SHA-256 of a checkpoint (a file or a bundled model), recorded beside
/// predictions so they name their model exactly.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = checkpoint_bytes(path)?;
    Ok(Sha256::digest(&bytes[..]).iter().map(|b| format!("{b:02x}")).collect())
}

fn check_task(path: &Path, meta: &CheckpointMeta, want: ModelTask) -> Result<()> {
    if meta.task != want {
        return Err(Error::checkpoint(
            path,
            format!("is a {:?} checkpoint, a {want:?} model is needed here", meta.task),
        ));
    }
    Ok(())
}

/// Which views of each image a classifier averages its probabilities over
/// (test-time augmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TestTimeAugmentation {
    /// The image as given.
    #[default]
    None,
    /// The 8 rotations and reflections of the square: lensing does not know which
    /// way the sky is turned, and models trained with `--augment dihedral` saw all
    /// eight, so their mean answer is less noisy than any one (8x the compute).
    Dihedral,
}

impl TestTimeAugmentation {
    /// The name `--tta` takes and outputs record.
    pub fn name(self) -> &'static str {
        match self {
            TestTimeAugmentation::None => "none",
            TestTimeAugmentation::Dihedral => "dihedral",
        }
    }

    fn views(self) -> u8 {
        match self {
            TestTimeAugmentation::None => 1,
            TestTimeAugmentation::Dihedral => 8,
        }
    }
}

impl std::str::FromStr for TestTimeAugmentation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(TestTimeAugmentation::None),
            "dihedral" => Ok(TestTimeAugmentation::Dihedral),
            other => Err(format!("`{other}`: one of none, dihedral")),
        }
    }
}

/// A classifier and its input preparation.
pub struct LoadedClassifier {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its description (classes in output order, image size, provenance).
    pub meta: CheckpointMeta,
    model: Classifier,
    /// The input preparation it was trained with.
    pub preprocessor: Preprocessor,
    /// Its training domain, when the checkpoint is calibrated.
    pub domain: Option<DomainModel>,
    /// The views its probabilities average (the out-of-domain score is always of
    /// the image as given: that is what its threshold was fitted on).
    pub tta: TestTimeAugmentation,
    /// For a classifier of smooth-lens residuals, the fit every cutout goes through
    /// before [`LoadedClassifier::predict`] (which takes the residuals).
    pub residuals: Option<ResidualFitter>,
}

/// What a classifier says about a batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierOutput {
    /// Class probabilities `[n * k]` (softmax of the logits over the checkpoint's temperature).
    pub probabilities: Vec<f32>,
    /// Distance of each image from the training domain (calibrated checkpoints only).
    pub ood_scores: Option<Vec<f32>>,
    /// Per image, where its preparation found the deflector and how far it moved
    /// it to the centre (antisymmetric scalings; not moved for the others).
    pub centring: Vec<Centring>,
    /// Per input, the statistics its classifier's calibration bounds
    /// ([`crate::model::domain::Calibration::input_statistics`]; empty when uncalibrated).
    pub input_statistics: Vec<InputStatistics>,
}

impl ClassifierOutput {
    /// Chi^2 per pixel of each input residual, for a classifier of residuals whose
    /// calibration bounds it ([`crate::model::domain::Calibration::residual_chi2_range`]).
    pub fn residual_chi2(&self) -> Option<Vec<f32>> {
        self.input_statistics.iter().map(|s| s.residual_chi2).collect::<Option<Vec<f32>>>().filter(|c| !c.is_empty())
    }
}

impl LoadedClassifier {
    /// Loads a `classify` checkpoint onto `dev`.
    pub fn load(path: &Path, dev: &Device) -> Result<LoadedClassifier> {
        let (tensors, meta) = load_checkpoint(path, dev)?;
        Self::from_checkpoint(path, tensors, meta, dev)
    }

    /// The classifier of a checkpoint already read from `path`.
    pub fn from_checkpoint(
        path: &Path,
        tensors: HashMap<String, Tensor>,
        meta: CheckpointMeta,
        dev: &Device,
    ) -> Result<LoadedClassifier> {
        check_task(path, &meta, ModelTask::Classify)?;
        let preprocessor = Preprocessor::from_checkpoint(path, &meta, &tensors)?;
        let domain = DomainModel::from_checkpoint(path, &tensors)?;
        if domain.is_some() != meta.calibration.is_some() {
            return Err(Error::checkpoint(path, "a domain model needs its calibration record, and the reverse"));
        }
        let chi2_range = meta.calibration.as_ref().and_then(|c| c.residual_chi2_range);
        let residuals = meta
            .smooth_lens_residuals
            .as_ref()
            .map(|r| ResidualFitter::new(path, r).map(|fitter| fitter.refitting_only_within(chi2_range)))
            .transpose()?;
        if let Some(fitter) = &residuals {
            if fitter.image_size() != meta.preprocessing.image_size {
                return Err(Error::checkpoint(
                    path,
                    "its smooth-lens fit and its model take cutouts of different sizes",
                ));
            }
        }
        let pooling = meta.pooling.unwrap_or(Pooling::Cls);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, dev);
        let model = Classifier::new(&meta.model, meta.class_names.len(), pooling, 0.0, vb)
            .map_err(|e| Error::checkpoint(path, format!("weights do not fit the described model: {e}")))?;
        Ok(LoadedClassifier {
            path: path.to_path_buf(),
            meta,
            model,
            preprocessor,
            domain,
            tta: TestTimeAugmentation::None,
            residuals,
        })
    }

    /// The same classifier averaging its probabilities over the views `tta` gives.
    /// Refused for a model trained without dihedral augmentation: it never saw a
    /// turned sky, and averaging over views it cannot read makes its answers worse
    /// (the bundled Model II classifier: accuracy 0.990 -> 0.746 on its held-out).
    pub fn with_tta(self, tta: TestTimeAugmentation) -> Result<LoadedClassifier> {
        if tta == TestTimeAugmentation::Dihedral && trained_with(&self.meta.provenance) == Some(Augment::None) {
            return Err(Error::config(
                "--tta",
                format!(
                    "{}: trained without dihedral augmentation (--augment none), so its answers on turned or \
                     mirrored cutouts are not its answers on the cutout; use --tta none with it",
                    self.path.display()
                ),
            ));
        }
        Ok(LoadedClassifier { tta, ..self })
    }

    /// A classifier of smooth-lens residuals reads residuals made by its own recipe,
    /// and any other classifier reads cutouts: evaluating either on the other's images
    /// would score a model on inputs it never takes. An error naming `data` when it
    /// is of the wrong kind.
    pub fn check_images(&self, data: &LabelledImages) -> Result<()> {
        let recorded = data.recorded_smooth_lens_residuals()?;
        if reads_as_residuals(self.residuals.as_ref(), recorded.as_ref(), &data.source)? || self.residuals.is_none() {
            return Ok(());
        }
        let message = "holds cutouts, and the classifier reads the residuals of a smooth-lens fit to each: evaluate \
                       it on residuals made with its recipe, or run `lensmae predict` (which fits the cutouts) and \
                       evaluate the predictions";
        Err(Error::Mismatch { path: data.source.clone(), message: message.into() })
    }

    /// The side of the square images it takes.
    pub fn image_size(&self) -> usize {
        self.meta.preprocessing.image_size
    }

    /// Which features its domain model describes (as a calibration records it).
    pub fn domain_features(&self) -> &'static str {
        self.model.domain_features()
    }

    /// Class probabilities `[n * k]` of raw images (rows of `image_size^2`),
    /// prepared as in training (the checkpoint's scaling, then any per-pixel standardisation).
    pub fn probabilities(&self, raw: &[f32], batch: usize) -> Result<Vec<f32>> {
        Ok(self.predict(raw, batch)?.probabilities)
    }

    /// Probabilities and, for a calibrated checkpoint, out-of-domain scores of raw images.
    pub fn predict(&self, raw: &[f32], batch: usize) -> Result<ClassifierOutput> {
        self.predict_with_noise(raw, None, batch)
    }

    /// As [`LoadedClassifier::predict`], with each image's noise sigma when a
    /// noise map gives it (used by noise-scaled models instead of their estimate).
    pub fn predict_with_noise(
        &self,
        raw: &[f32],
        sigmas: Option<&[Option<f32>]>,
        batch: usize,
    ) -> Result<ClassifierOutput> {
        let s = self.image_size();
        let input_statistics = (self.meta.calibration.as_ref()).map_or(Vec::new(), |c| c.input_statistics(raw, s * s));
        let mut pixels = raw.to_vec();
        let centring = self.preprocessor.apply_with_noise(&mut pixels, s * s, sigmas);
        let (logits, features) = self.logits_and_features(&pixels, batch)?;
        let k = self.meta.class_names.len();
        let temperature = self.meta.calibration.as_ref().map(|c| c.temperature);
        let dev = self.model.device();
        let mut probabilities = softmax_probabilities(logits, k, temperature, dev)?;
        let views = self.tta.views();
        if views > 1 {
            // The prepared image is transformed, as training's augmentation does.
            let mut view = vec![0f32; pixels.len()];
            for transform in 1..views {
                for (image, out) in pixels.chunks_exact(s * s).zip(view.chunks_exact_mut(s * s)) {
                    dihedral(image, s, transform, out);
                }
                let (logits, _) = self.logits_and_features(&view, batch)?;
                for (sum, p) in probabilities.iter_mut().zip(softmax_probabilities(logits, k, temperature, dev)?) {
                    *sum += p;
                }
            }
            probabilities.iter_mut().for_each(|p| *p /= views as f32);
        }
        let ood_scores = self.domain.as_ref().map(|d| d.scores(&features));
        Ok(ClassifierOutput { probabilities, ood_scores, centring, input_statistics })
    }

    /// Logits `[n * k]` and domain features `[n * F]` of images already prepared.
    pub fn logits_and_features(&self, prepared: &[f32], batch: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let s = self.image_size();
        let dev = self.model.device();
        classify_batches(&self.model, prepared.len() / (s * s), batch, |rows| {
            Ok(Tensor::from_slice(&prepared[rows.start * s * s..rows.end * s * s], (rows.len(), 1, s, s), dev)?)
        })
    }

    /// Per image of `output`, whether it is within the training domain
    /// ([`crate::model::domain::Calibration::admits`]) with its deflector where the
    /// preparation could centre it (None without a domain model; all false when uncalibrated).
    pub fn in_domain_flags(&self, output: &ClassifierOutput) -> Option<Vec<bool>> {
        let scores = output.ood_scores.as_ref()?;
        let input = |i: usize| output.input_statistics.get(i).copied().unwrap_or_default();
        let flags = scores.iter().zip(&output.centring).enumerate().map(|(i, (&s, c))| {
            self.meta.calibration.as_ref().is_some_and(|cal| cal.admits(s, input(i))) && !c.beyond_search
        });
        Some(flags.collect())
    }
}

/// Whether an input recording the residual recipe `recorded` (None: cutouts) is
/// read as it is by a model with the fit `fitter` (None: a model of cutouts):
/// true for residuals of its own recipe, false for cutouts; an error naming
/// `source` for residuals it does not read.
pub fn reads_as_residuals(
    fitter: Option<&ResidualFitter>,
    recorded: Option<&SmoothLensResiduals>,
    source: &Path,
) -> Result<bool> {
    let message = match (fitter.map(|f| &f.recipe), recorded) {
        (_, None) => return Ok(false),
        (Some(wanted), Some(r)) if wanted == r => return Ok(true),
        (Some(_), Some(_)) => "holds smooth-lens residuals of another recipe than the classifier's",
        (None, Some(_)) => "holds smooth-lens residuals, and this model reads cutouts",
    };
    Err(Error::Mismatch { path: source.to_path_buf(), message: message.into() })
}

/// The augmentation a classifier was trained with: recorded in its provenance
/// since 2026-12-03, before that only in its command line (`--augment X`); None
/// when neither says.
fn trained_with(provenance: &serde_json::Value) -> Option<Augment> {
    if let Some(recorded) = provenance.get("augment") {
        return serde_json::from_value(recorded.clone()).ok();
    }
    let command = provenance.get("command")?.as_str()?;
    let mut words = command.split_whitespace();
    words.find(|w| *w == "--augment")?;
    match words.next()? {
        "none" => Some(Augment::None),
        "dihedral" => Some(Augment::Dihedral),
        _ => None,
    }
}

/// Logits `[n * k]` and domain features `[n * F]` of `n` prepared images, `batch`
/// at a time, each batch the `[rows, 1, H, W]` tensor `input(rows)` gives: the one
/// classifier inference loop (`predict`, `evaluate`, and training's validation).
pub fn classify_batches(
    model: &Classifier,
    n: usize,
    batch: usize,
    mut input: impl FnMut(std::ops::Range<usize>) -> Result<Tensor>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut logits, mut features) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(batch.max(1)) {
        let (l, f) = model.logits_and_domain_features(&input(start..(start + batch.max(1)).min(n))?)?;
        logits.extend(l.flatten_all()?.to_vec1::<f32>()?);
        features.extend(f.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok((logits, features))
}

/// softmax(logits / temperature) of `[n * k]` logits; without a temperature the
/// logits are not divided, so uncalibrated checkpoints keep their bits.
pub fn softmax_probabilities(logits: Vec<f32>, k: usize, temperature: Option<f64>, dev: &Device) -> Result<Vec<f32>> {
    let n = logits.len() / k.max(1);
    let mut logits = Tensor::from_vec(logits, (n, k), dev)?;
    if let Some(t) = temperature {
        logits = (logits / t)?;
    }
    Ok(candle_nn::ops::softmax_last_dim(&logits)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A super-resolution model.
pub struct LoadedSuperres {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its description.
    pub meta: CheckpointMeta,
    /// The model.
    pub model: SuperResolver,
}

impl LoadedSuperres {
    /// Loads a `superres` checkpoint onto `dev`.
    pub fn load(path: &Path, dev: &Device) -> Result<LoadedSuperres> {
        let (tensors, meta) = load_checkpoint(path, dev)?;
        Self::from_checkpoint(path, tensors, meta, dev)
    }

    /// The model of a checkpoint already read from `path` (its head as `meta` describes it).
    pub fn from_checkpoint(
        path: &Path,
        tensors: HashMap<String, Tensor>,
        meta: CheckpointMeta,
        dev: &Device,
    ) -> Result<LoadedSuperres> {
        check_task(path, &meta, ModelTask::Superres)?;
        let head =
            meta.superres.clone().ok_or_else(|| Error::checkpoint(path, "no super-resolution head described"))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, dev);
        let model = SuperResolver::new(meta.vit(path)?, &head, vb)
            .map_err(|e| Error::checkpoint(path, format!("weights do not fit the described model: {e}")))?;
        Ok(LoadedSuperres { path: path.to_path_buf(), meta, model })
    }

    /// The side of the LR images it takes.
    pub fn lr_size(&self) -> usize {
        self.model.head_config().lr_size(self.model.config())
    }

    /// The side of the images it makes.
    pub fn hr_size(&self) -> usize {
        self.meta.model.image_size()
    }
}

/// SR images (rows of `(lr_size * factor)^2`) of the LR images `lr` (rows of
/// `lr_size^2`), in the LR images' units: each LR image scaled by its own min-max,
/// through the model, and the output mapped back by the same scale.
pub fn super_resolve(model: &SuperResolver, lr: &[f32], lr_size: usize, batch: usize) -> Result<Vec<f32>> {
    let per = lr_size * lr_size;
    let scales: Vec<(f32, f32)> = lr.chunks_exact(per).map(minmax_scale).collect();
    let mut out = Vec::with_capacity(lr.len() * model.head_config().factor.pow(2));
    for (chunk, chunk_scales) in lr.chunks(per * batch.max(1)).zip(scales.chunks(batch.max(1))) {
        let n = chunk_scales.len();
        let x: Vec<f32> = chunk.chunks_exact(per).zip(chunk_scales).flat_map(|(img, &s)| scaled(img, s)).collect();
        let y = model.forward(&Tensor::from_vec(x, (n, 1, lr_size, lr_size), model.encoder.device())?)?;
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        let hr_per = y.len() / n;
        for (img, &(lo, range)) in y.chunks_exact(hr_per).zip(chunk_scales) {
            out.extend(img.iter().map(|v| v * range + lo));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_training_augmentation_is_read_from_the_record_else_from_the_command() {
        assert_eq!(trained_with(&json!({"augment": "none", "command": "x --augment dihedral"})), Some(Augment::None));
        assert_eq!(trained_with(&json!({"augment": "dihedral"})), Some(Augment::Dihedral));
        let command = |c: &str| trained_with(&json!({ "command": c }));
        assert_eq!(command("lensmae finetune --augment none --batch-size 64"), Some(Augment::None));
        assert_eq!(command("lensmae finetune --data d.parquet --augment dihedral"), Some(Augment::Dihedral));
        assert_eq!(command("lensmae finetune --data d.parquet"), None);
        assert_eq!(command("lensmae finetune --augment"), None);
        assert_eq!(trained_with(&json!({})), None);
    }
}
