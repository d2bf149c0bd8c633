//! Fitting a classifier's calibration on labelled images it was not trained on:
//! the softmax temperature that minimises their cross-entropy, and the model of
//! its training domain with the `ood_score` threshold at a quantile of their
//! out-of-fold scores (see [`crate::model::domain`]). `finetune` does this on its validation split;
//! `lensmae model calibrate` does it for an existing checkpoint.

use crate::data::images::LabelledImages;
use crate::eval::classification::RELIABILITY_BINS;
use crate::eval::Reliability;
use crate::infer::{softmax_probabilities, LoadedClassifier};
use crate::model::checkpoint::{load_checkpoint, save_checkpoint, CheckpointMeta};
use crate::model::domain::{
    distinct_pixels_floor, residual_chi2_range, residual_noise_range, threshold_with_other_bounds, Calibration,
    DomainModel, THRESHOLD_FOLDS, THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS,
};
use crate::model::preprocess::Scaling;
use crate::{Error, Result};
use candle_core::Device;
use serde::Serialize;
use std::path::Path;

/// The share of the fitting images a calibration admits by default, by its
/// `ood_score` threshold and its other bounds together: about 1% of new in-domain
/// images get flagged.
pub const DEFAULT_OOD_QUANTILE: f64 = 0.99;

/// Fewest images a calibration is fitted on (`finetune` leaves a checkpoint
/// uncalibrated, and says so, when its validation split is smaller).
pub const MIN_IMAGES: usize = 30;

/// A fitted calibration with what it did on the images it was fitted on.
#[derive(Debug, Clone)]
pub struct FittedCalibration {
    /// Temperature and threshold, for the checkpoint's description.
    pub calibration: Calibration,
    /// The domain model, for the checkpoint's tensors.
    pub domain: DomainModel,
    /// Expected calibration error before and after the temperature.
    pub summary: CalibrationSummary,
}

/// What a calibration changed, on the images it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationSummary {
    /// Images used.
    pub images: usize,
    /// Fitted temperature.
    pub temperature: f64,
    /// ECE of softmax(logits).
    pub ece_before: f64,
    /// ECE of softmax(logits / T).
    pub ece_after: f64,
    /// The ood_score threshold.
    pub ood_threshold: f64,
    /// Share of the images the bounds besides the `ood_score` flag (a residual's
    /// chi^2 or noise level, a fit that found no lens, too few distinct pixel values).
    pub flagged_otherwise: f64,
    /// Share of the images flagged in all, their out-of-fold scores included: 1 -
    /// the quantile asked for, unless the other bounds alone flag more.
    pub flagged: f64,
}

/// Which statistics of its inputs a classifier's calibration bounds, besides their features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputBounds {
    /// Smooth-lens residuals: [`Calibration::residual_chi2_range`].
    pub residuals: bool,
    /// A model that reads its images' faintest levels
    /// ([`crate::model::preprocess::Scaling::reads_faint_levels`]; not a residual
    /// classifier): [`Calibration::distinct_pixels_floor`].
    pub faint_levels: bool,
}

impl InputBounds {
    /// The bounds of a classifier of residuals (or not) whose inputs are scaled by `scaling`.
    pub fn of(residuals: bool, scaling: Scaling) -> InputBounds {
        InputBounds { residuals, faint_levels: !residuals && scaling.reads_faint_levels() }
    }
}

/// The calibration images as the model reads them, before its scaling, and which
/// of their statistics the calibration bounds.
#[derive(Debug, Clone, Copy)]
pub struct RawImages<'a> {
    /// `n` images, `pixels_per_image` each.
    pub pixels: &'a [f32],
    /// Pixels of one image.
    pub pixels_per_image: usize,
    /// What the calibration bounds of them.
    pub bounds: InputBounds,
    /// For smooth-lens residuals, whether each one's fit found a galaxy-scale lens
    /// (the dataset's [`crate::data::record::FIT_LENS_FOUND`]), where recorded:
    /// `predict` flags a cutout whose fit did not, so the share admitted counts them.
    pub fit_lens_found: Option<&'a [bool]>,
}

/// Fit temperature and domain from `logits` (`[n * k]`), domain `features`
/// (`[n * F]`, recorded as `features_name`) and `labels` of `n` images; `raw`, the
/// same images before the model's scaling, give the bounds of
/// [`Calibration::residual_chi2_range`] and [`Calibration::distinct_pixels_floor`]
/// where it says they apply. The `ood_score` threshold is set so that these bounds and
/// it together admit `ood_quantile` of the images (by their out-of-fold scores).
#[allow(clippy::too_many_arguments)]
pub fn fit_calibration(
    logits: &[f32],
    features: &[f32],
    features_name: &str,
    labels: &[usize],
    k: usize,
    ood_quantile: f64,
    data: &str,
    raw: Option<RawImages>,
) -> Result<FittedCalibration> {
    let n = labels.len();
    if n < MIN_IMAGES || logits.len() != n * k || features.len() % n.max(1) != 0 {
        return Err(Error::config("calibration", format!("needs at least {MIN_IMAGES} labelled images, got {n}")));
    }
    if !(0.5..1.0).contains(&ood_quantile) {
        return Err(Error::config("ood_quantile", format!("must be in [0.5, 1), got {ood_quantile}")));
    }
    if logits.iter().chain(features).any(|v| !v.is_finite()) {
        return Err(Error::config("calibration", "the model gives non-finite logits or features on these images"));
    }
    let width = features.len() / n;
    if let Some(found) = raw.and_then(|r| r.fit_lens_found).filter(|found| found.len() != n) {
        let message = format!("{} images, but {} records of whether their fit found a lens", n, found.len());
        return Err(Error::config("calibration", message));
    }
    let temperature = fit_temperature(logits, labels, k);
    let domain = DomainModel::fit(features, labels, k, width)?;
    let mut calibration = Calibration {
        temperature,
        ood_threshold: f64::INFINITY,
        ood_quantile,
        ood_threshold_from: THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS.into(),
        residual_chi2_range: (raw.filter(|r| r.bounds.residuals))
            .map(|r| residual_chi2_range(r.pixels, r.pixels_per_image)),
        residual_noise_range: (raw.filter(|r| r.bounds.residuals))
            .map(|r| residual_noise_range(r.pixels, r.pixels_per_image)),
        distinct_pixels_floor: (raw.filter(|r| r.bounds.faint_levels))
            .map(|r| distinct_pixels_floor(r.pixels, r.pixels_per_image)),
        features: features_name.into(),
        fitted_on: n,
        data: data.into(),
    };
    // What the bounds besides the score flag of these images, which the score's
    // threshold then leaves out of its share.
    let flagged_otherwise: Vec<bool> = match raw {
        Some(r) => {
            let inputs = calibration.input_statistics(r.pixels, r.pixels_per_image);
            let lens_lost = |i: usize| r.fit_lens_found.is_some_and(|found| !found[i]);
            inputs.iter().enumerate().map(|(i, &input)| !calibration.admits(0.0, input) || lens_lost(i)).collect()
        }
        None => vec![false; n],
    };
    let out_of_fold = DomainModel::out_of_fold_scores(features, labels, k, width, THRESHOLD_FOLDS)?;
    let ood_threshold = threshold_with_other_bounds(&out_of_fold, &flagged_otherwise, ood_quantile);
    calibration.ood_threshold = ood_threshold;
    let share = |count: usize| count as f64 / n as f64;
    let flagged = (out_of_fold.iter().zip(&flagged_otherwise))
        .filter(|&(&s, &otherwise)| otherwise || s as f64 > ood_threshold)
        .count();
    // The probabilities `predict` will give, before and after the temperature.
    let ece = |t: Option<f64>| -> Result<f64> {
        let probs = softmax_probabilities(logits.to_vec(), k, t, &Device::Cpu)?;
        Ok(Reliability::compute(&probs, labels, k, RELIABILITY_BINS).ece)
    };
    let summary = CalibrationSummary {
        images: n,
        temperature,
        ece_before: ece(None)?,
        ece_after: ece(Some(temperature))?,
        ood_threshold,
        flagged_otherwise: share(flagged_otherwise.iter().filter(|&&f| f).count()),
        flagged: share(flagged),
    };
    Ok(FittedCalibration { calibration, domain, summary })
}

/// Mean cross-entropy of softmax(logits / t).
fn cross_entropy(logits: &[f32], labels: &[usize], k: usize, t: f64) -> f64 {
    let total: f64 = logits
        .chunks_exact(k)
        .zip(labels)
        .map(|(row, &label)| {
            let scaled: Vec<f64> = row.iter().map(|&v| v as f64 / t).collect();
            let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + scaled.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            log_sum - scaled[label]
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// The temperature in [0.05, 20] minimising the cross-entropy: golden-section
/// search on log T (the cross-entropy is convex in 1/T).
fn fit_temperature(logits: &[f32], labels: &[usize], k: usize) -> f64 {
    let f = |log_t: f64| cross_entropy(logits, labels, k, log_t.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - ratio * (b - a), a + ratio * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    (0.5 * (a + b)).exp()
}

/// Calibrate the classifier at `model` on `images` (raw, labelled) and write it,
/// calibrated, to `out` (weights unchanged). With `adopt_fit_recipe`, a classifier
/// of smooth-lens residuals takes the fit recipe `images` were made with
/// ([`adopt_fit_recipe`]).
pub fn calibrate_checkpoint(
    model: &Path,
    images: &LabelledImages,
    out: &Path,
    ood_quantile: f64,
    batch: usize,
    adopt_fit_recipe: bool,
    device: &Device,
) -> Result<CalibrationSummary> {
    let (mut tensors, mut meta) = load_checkpoint(model, device)?;
    if adopt_fit_recipe {
        self::adopt_fit_recipe(&mut meta, images)?;
    }
    let clf = LoadedClassifier::from_checkpoint(model, tensors.clone(), meta.clone(), device)?;
    if images.class_names != clf.meta.class_names {
        return Err(Error::config(
            "data",
            format!(
                "{}: classes {:?}, the model's are {:?}",
                images.source.display(),
                images.class_names,
                clf.meta.class_names
            ),
        ));
    }
    clf.check_images(images)?;
    let s = clf.image_size();
    if images.size != s {
        let (path, size) = (images.source.display(), images.size);
        return Err(Error::config("data", format!("{path}: images are {size}x{size}, the model takes {s}x{s}")));
    }
    let mut prepared = images.pixels.clone();
    clf.preprocessor.apply(&mut prepared, s * s);
    let (logits, features) = clf.logits_and_features(&prepared, batch)?;
    let k = clf.meta.class_names.len();
    let bounds = InputBounds::of(clf.residuals.is_some(), clf.preprocessor.scaling);
    let fit_lens_found = if clf.residuals.is_some() { images.fit_lens_found()? } else { None };
    let raw = RawImages {
        pixels: &images.pixels,
        pixels_per_image: s * s,
        bounds,
        fit_lens_found: fit_lens_found.as_deref(),
    };
    let data = images.source.display().to_string();
    let fitted =
        fit_calibration(&logits, &features, clf.domain_features(), &images.labels, k, ood_quantile, &data, Some(raw))?;
    tensors.extend(fitted.domain.checkpoint_tensors(device)?);
    meta.calibration = Some(fitted.calibration);
    save_checkpoint(out, &tensors, &meta)?;
    Ok(fitted.summary)
}

/// Makes the fit recipe of the residuals `images` hold the classifier's own, so
/// that `predict` fits cutouts as they were fitted: a classifier recalibrated on
/// residuals of a mended fit answers for that fit. Only the fit may differ: the
/// simulator recipe (the model fitted, PSF, noise) must be the classifier's.
pub fn adopt_fit_recipe(meta: &mut CheckpointMeta, images: &LabelledImages) -> Result<()> {
    let data = images.source.display();
    let refuse = |why: String| Err(Error::config("adopt-fit-recipe", why));
    match (&mut meta.smooth_lens_residuals, images.recorded_smooth_lens_residuals()?) {
        (Some(own), Some(theirs)) if own.simulator == theirs.simulator => {
            *own = theirs;
            Ok(())
        }
        (Some(_), Some(_)) => refuse(format!(
            "{data}: its residuals are of another simulator recipe than the classifier's; only the fit's may differ"
        )),
        (Some(_), None) => refuse(format!("{data} holds cutouts, not smooth-lens residuals with their fit's recipe")),
        (None, _) => refuse("the classifier reads cutouts, not the residuals of a smooth-lens fit".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_temperature_undoes_overconfidence() {
        // Logits of a model that is right 70% of the time with margins far too large.
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            let label = i % 2;
            let right = i % 10 < 7;
            let predicted = if right { label } else { 1 - label };
            let mut row = [0.0f32; 2];
            row[predicted] = 8.0;
            logits.extend(row);
            labels.push(label);
        }
        let t = fit_temperature(&logits, &labels, 2);
        // softmax(8 / t) = 0.7 at the optimum: t = 8 / ln(0.7 / 0.3).
        assert!((t / (8.0 / (0.7f64 / 0.3).ln()) - 1.0).abs() < 1e-4, "{t}");
        let features: Vec<f32> = (0..2000).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
        let fitted = fit_calibration(&logits, &features, "test features", &labels, 2, 0.99, "test", None).unwrap();
        assert!(fitted.summary.ece_after < 1e-3 && fitted.summary.ece_before > 0.29, "{:?}", fitted.summary);
    }

    #[test]
    fn a_calibration_of_residuals_admits_its_quantile_of_them_with_every_bound_counted() {
        use rand::{Rng, SeedableRng};
        use rand_distr::StandardNormal;
        let (n, k, width, side) = (2000, 2, 8, 8);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        let logits: Vec<f32> = labels.iter().flat_map(|&l| [l as f32, 1.0 - l as f32]).collect();
        let features: Vec<f32> = (0..n * width).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
        // Residuals of unit noise, each at its own level (0.9-1.1), as fits leave them.
        let residuals: Vec<f32> = (0..n)
            .flat_map(|i| {
                let level = 0.9 + 0.2 * ((i * 389) % n) as f32 / n as f32;
                (0..side * side).map(|_| level * rng.sample::<f32, _>(StandardNormal)).collect::<Vec<_>>()
            })
            .collect();
        let lens_found: Vec<bool> = (0..n).map(|i| i % 500 != 7).collect();
        let bounds = InputBounds { residuals: true, faint_levels: false };
        let fit = |found: Option<&[bool]>| {
            let raw = RawImages { pixels: &residuals, pixels_per_image: side * side, bounds, fit_lens_found: found };
            fit_calibration(&logits, &features, "f", &labels, k, 0.99, "test", Some(raw))
        };
        let without_lens = fit(None).unwrap().summary;
        let with_lens = fit(Some(&lens_found)).unwrap().summary;
        // The chi^2 and noise ranges flag their tails (0.2% and 0.6%), and the four lost
        // lenses add 0.2%; the score flags what is left of 1%, not 1% on top.
        assert!((0.005..0.01).contains(&without_lens.flagged_otherwise), "{without_lens:?}");
        assert!(with_lens.flagged_otherwise > without_lens.flagged_otherwise + 0.0015, "{with_lens:?}");
        for summary in [&without_lens, &with_lens] {
            assert!((summary.flagged - 0.01).abs() <= 0.5 / n as f64 + 1e-12, "{summary:?}");
        }
        assert!(with_lens.ood_threshold > without_lens.ood_threshold, "{with_lens:?} {without_lens:?}");
        let refused = fit(Some(&lens_found[..10])).unwrap_err();
        assert!(refused.to_string().contains("records of whether their fit found a lens"), "{refused}");
    }
}
