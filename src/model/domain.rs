//! What a classifier knows of its training domain, and how far an input is from it.
//!
//! The domain is a Gaussian per class with one shared covariance over the encoder's
//! features of an image (the CLS token beside the mean of the patch tokens), fitted
//! on validation images (Lee et al. 2018); an input's `ood_score` is its Mahalanobis
//! distance to the nearest class, and it is in the domain when that is at most the
//! threshold: a quantile of the validation images' out-of-fold scores (each image
//! scored by the domain fitted without it, [`DomainModel::out_of_fold_scores`]). Inputs the model never
//! saw the like of (noise where training had none, 16-bit copies of noise-free
//! images, other instruments, blank cutouts) land far from every class.
//!
//! With the temperature fitted on the same images (probabilities from
//! softmax(logits / T)) this is a checkpoint's [`Calibration`]; its tensors are
//! stored under `domain.*` beside the weights.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Checkpoint key of the class means `[k, F]`.
pub const CLASS_MEANS_KEY: &str = "domain.class_means";
/// Checkpoint key of the shared precision matrix (inverse covariance) `[F, F]`.
pub const PRECISION_KEY: &str = "domain.precision";

/// The calibration a checkpoint records in its description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Softmax temperature: probabilities are softmax(logits / temperature).
    pub temperature: f64,
    /// Largest `ood_score` of an in-domain input.
    pub ood_threshold: f64,
    /// The share of the fitting images the calibration admits: since 2026-12-08 by all
    /// its bounds together ([`THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS`]), before that
    /// the quantile of their scores the threshold is.
    pub ood_quantile: f64,
    /// Which scores of the fitting images the threshold was taken of: out-of-fold
    /// with the other bounds counted in ([`THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS`]),
    /// out-of-fold alone ([`THRESHOLD_FROM_OUT_OF_FOLD`], 2026-12-05 to 2026-12-07) or,
    /// in checkpoints calibrated before, their scores under the domain fitted on them
    /// ([`THRESHOLD_FROM_IN_SAMPLE`]).
    #[serde(default = "in_sample")]
    pub ood_threshold_from: String,
    /// For a classifier of smooth-lens residuals: the range of chi^2 per pixel
    /// (mean squared residual) of the calibration residuals, [0.001, 0.999] quantiles.
    /// An input outside it was not explained by the fit as the training lenses were
    /// (noise cutouts leave hundreds; noise-free images almost none), whatever its
    /// features: the classifier's scaling divides out the residual's own level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_chi2_range: Option<[f64; 2]>,
    /// For a classifier of smooth-lens residuals: the range of the calibration
    /// residuals' noise level ([`residual_noise`], a robust sigma that substructure,
    /// confined to the arcs, hardly moves). A residual
    /// whose level is outside it was weighted by another noise than the cutout's
    /// (a sky brighter than the recipe's and no noise map: about 1.4), which the
    /// chi^2 range, wide at the top for strong substructure, lets through; the
    /// [`RESIDUAL_NOISE_QUANTILES`] of the calibration residuals. None in
    /// checkpoints calibrated before 2026-12-07.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_noise_range: Option<[f64; 2]>,
    /// For a model that scales each image by its own minimum and maximum (noise-free
    /// training images, whose faintest pixels it reads): the smallest fraction of a
    /// cutout's pixels that must hold distinct values, [`DISTINCT_PIXELS_MARGIN`] of
    /// the calibration images' [`DISTINCT_PIXELS_QUANTILE`] quantile. Storage with
    /// fewer levels than the training images had (16-bit integers, float16) folds
    /// those faint pixels onto a few values, and the model, which reads them as
    /// structure, answers confidently and wrongly where its features alone may not
    /// look out of place (float16 copies of Model II images: `ood_score` below the
    /// threshold for 8 of 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_pixels_floor: Option<f64>,
    /// Which features: `cls+mean-tokens` (a ViT's) or `pooled-maps` (a ResNet's).
    pub features: String,
    /// Images the temperature and the domain were fitted on.
    pub fitted_on: usize,
    /// Where those images came from.
    pub data: String,
}

/// What a calibration bounds of an input besides its features: the chi^2 per pixel
/// of a residual ([`Calibration::residual_chi2_range`]) and the fraction of distinct
/// pixel values ([`Calibration::distinct_pixels_floor`]), each where it bounds it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InputStatistics {
    /// [`residual_chi2`] of the input as read.
    pub residual_chi2: Option<f32>,
    /// [`residual_noise`] of the input as read.
    pub residual_noise: Option<f32>,
    /// [`distinct_pixel_fractions`] of the input as read.
    pub distinct_pixels: Option<f32>,
}

impl Calibration {
    /// Whether an input is within the domain: its `ood_score` within the threshold
    /// (never an infinite or NaN one) and, where the calibration bounds them, its
    /// residual's chi^2 per pixel and noise level within the calibration residuals'
    /// ranges and its fraction of distinct pixel values at least the floor.
    pub fn admits(&self, score: f32, input: InputStatistics) -> bool {
        let fits_like_training = input.residual_chi2.is_none_or(|chi2| within_range(self.residual_chi2_range, chi2))
            && input.residual_noise.is_none_or(|level| within_range(self.residual_noise_range, level));
        let levels_like_training =
            input.distinct_pixels.is_none_or(|f| self.distinct_pixels_floor.is_none_or(|floor| f as f64 >= floor));
        (score as f64) <= self.ood_threshold && fits_like_training && levels_like_training
    }

    /// Per image of `raw` (as read, `pixels_per_image` each), the statistics this
    /// calibration bounds.
    pub fn input_statistics(&self, raw: &[f32], pixels_per_image: usize) -> Vec<InputStatistics> {
        let n = raw.len() / pixels_per_image.max(1);
        let chi2 = self.residual_chi2_range.map(|_| residual_chi2(raw, pixels_per_image));
        let noise = self.residual_noise_range.map(|_| residual_noise(raw, pixels_per_image));
        let levels = self.distinct_pixels_floor.map(|_| distinct_pixel_fractions(raw, pixels_per_image));
        (0..n)
            .map(|i| InputStatistics {
                residual_chi2: chi2.as_ref().map(|c| c[i]),
                residual_noise: noise.as_ref().map(|l| l[i]),
                distinct_pixels: levels.as_ref().map(|l| l[i]),
            })
            .collect()
    }
}

/// Whether a residual's statistic lies within a calibration's range of it (its chi^2
/// per pixel in [`Calibration::residual_chi2_range`], its noise level in
/// [`Calibration::residual_noise_range`]); always, where it has none.
pub fn within_range(range: Option<[f64; 2]>, value: f32) -> bool {
    range.is_none_or(|[low, high]| (low..=high).contains(&(value as f64)))
}

/// [`Calibration::ood_threshold_from`] of a threshold taken from out-of-fold scores
/// alone: the images the other bounds flag came on top of its quantile (the shipped
/// residual classifier flagged 2.03% of its held-out lenses at a quantile of 0.99).
pub const THRESHOLD_FROM_OUT_OF_FOLD: &str = "out-of-fold scores, 10 folds";
/// [`Calibration::ood_threshold_from`] of a threshold taken from out-of-fold scores
/// with the other bounds counted in ([`threshold_with_other_bounds`]): the
/// calibration as a whole admits [`Calibration::ood_quantile`] of its fitting images.
pub const THRESHOLD_FROM_OUT_OF_FOLD_WITH_BOUNDS: &str = "out-of-fold scores, 10 folds, with the other bounds";
/// [`Calibration::ood_threshold_from`] of checkpoints calibrated before out-of-fold
/// scores: the fitting images scored by the domain fitted on them, which flags more
/// than the quantile asks of new images.
pub const THRESHOLD_FROM_IN_SAMPLE: &str = "in-sample scores";
/// Folds of [`THRESHOLD_FROM_OUT_OF_FOLD`].
pub const THRESHOLD_FOLDS: usize = 10;

fn in_sample() -> String {
    THRESHOLD_FROM_IN_SAMPLE.into()
}

/// Quantiles of the calibration residuals' chi^2 per pixel that bound
/// [`Calibration::residual_chi2_range`].
pub const RESIDUAL_CHI2_QUANTILES: [f64; 2] = [0.001, 0.999];

/// Chi^2 per pixel of each residual image (rows of `pixels_per_image`): the mean
/// squared residual, about 1 where a fit explains the image to the noise.
pub fn residual_chi2(residuals: &[f32], pixels_per_image: usize) -> Vec<f32> {
    residuals
        .chunks_exact(pixels_per_image)
        .map(|r| (r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / pixels_per_image as f64) as f32)
        .collect()
}

/// The `ood_score` threshold at which a calibration admits `admitted_share` of its
/// fitting images (their out-of-fold `scores`), where `flagged_otherwise` are those
/// its other bounds already flag (a residual's chi^2 or noise level out of range, a
/// fit that found no lens): the scores flag only what is left of the share to flag.
/// Each bound alone at its own quantile would flag its share on top of the others'.
/// Where the other bounds alone flag the whole share, no fitting image is flagged by
/// its score (the threshold is their largest).
pub fn threshold_with_other_bounds(scores: &[f32], flagged_otherwise: &[bool], admitted_share: f64) -> f64 {
    let rest: Vec<f32> =
        scores.iter().zip(flagged_otherwise).filter(|(_, &flagged)| !flagged).map(|(&s, _)| s).collect();
    let to_flag = (1.0 - admitted_share) * scores.len() as f64 - (scores.len() - rest.len()) as f64;
    if to_flag <= 0.0 || rest.is_empty() {
        return scores.iter().copied().filter(|s| s.is_finite()).fold(f32::NEG_INFINITY, f32::max) as f64;
    }
    quantile(&rest, 1.0 - to_flag / rest.len() as f64)
}

/// [`Calibration::residual_chi2_range`] of calibration residuals.
pub fn residual_chi2_range(residuals: &[f32], pixels_per_image: usize) -> [f64; 2] {
    let chi2 = residual_chi2(residuals, pixels_per_image);
    RESIDUAL_CHI2_QUANTILES.map(|q| quantile(&chi2, q))
}

/// The noise level of each residual image (rows of `pixels_per_image`): 1.4826 times
/// the median absolute deviation from its median, the sigma of Gaussian noise; about
/// 1 where the residual is in units of the cutout's own noise. Substructure and a
/// failed fit's arcs move a minority of the pixels, which the median passes over.
pub fn residual_noise(residuals: &[f32], pixels_per_image: usize) -> Vec<f32> {
    use super::preprocess::median;
    residuals
        .chunks_exact(pixels_per_image)
        .map(|r| {
            let mut values = r.to_vec();
            let centre = median(&mut values);
            values.iter_mut().for_each(|v| *v = (*v - centre).abs());
            1.4826 * median(&mut values)
        })
        .collect()
}

/// Quantiles of the calibration residuals' noise levels that bound
/// [`Calibration::residual_noise_range`]. The top is lower than chi^2's: on the 3,000
/// calibration residuals of `bundled:survey-residual-classifier` (seed 26) the levels'
/// median is 1.00, their 0.99 quantile 1.14, and the last half percent (15 residuals,
/// 1.20-1.44) are fits left far from the noise (chi^2 2.2-29, median 10), whose answers
/// are no more to be trusted than those of a cutout weighted by the wrong sky (a sky of
/// twice the recipe's variance: about 1.4); `bench/residual_noise_levels.py`.
pub const RESIDUAL_NOISE_QUANTILES: [f64; 2] = [0.001, 0.995];

/// [`Calibration::residual_noise_range`] of calibration residuals.
pub fn residual_noise_range(residuals: &[f32], pixels_per_image: usize) -> [f64; 2] {
    let noise = residual_noise(residuals, pixels_per_image);
    RESIDUAL_NOISE_QUANTILES.map(|q| quantile(&noise, q))
}

/// The quantile of the calibration images' fractions of distinct pixel values that
/// [`Calibration::distinct_pixels_floor`] is taken of.
pub const DISTINCT_PIXELS_QUANTILE: f64 = 0.001;
/// The floor's margin below that quantile. Measured on 900 images of each preset
/// (seed 15, `bench/distinct_pixels.py`): float32 Model II images hold 0.9995-1
/// distinct values per pixel, their float16 copies at most 0.58 and uint16 copies
/// 0.26; Model III 0.9998 against 0.88 and 0.37.
pub const DISTINCT_PIXELS_MARGIN: f64 = 0.9;

/// Per image (rows of `pixels_per_image`): the fraction of its pixels whose values
/// are distinct (all NaNs count as one value).
pub fn distinct_pixel_fractions(images: &[f32], pixels_per_image: usize) -> Vec<f32> {
    use rayon::prelude::*;
    // A sort per image, on `predict`'s path: side by side, as the model's own work is.
    images
        .par_chunks_exact(pixels_per_image)
        .map(|image| {
            let mut sorted = image.to_vec();
            sorted.sort_unstable_by(f32::total_cmp);
            // -0.0 and 0.0 sort apart but are the same level.
            let distinct = 1 + sorted.windows(2).filter(|w| w[0] != w[1] && !(w[0].is_nan() && w[1].is_nan())).count();
            distinct as f32 / pixels_per_image as f32
        })
        .collect()
}

/// [`Calibration::distinct_pixels_floor`] of calibration images (raw, as read).
pub fn distinct_pixels_floor(images: &[f32], pixels_per_image: usize) -> f64 {
    DISTINCT_PIXELS_MARGIN * quantile(&distinct_pixel_fractions(images, pixels_per_image), DISTINCT_PIXELS_QUANTILE)
}

/// The fitted domain: class means and the shared precision matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainModel {
    /// Feature width F.
    pub width: usize,
    /// `[k * F]`, class by class.
    pub class_means: Vec<f32>,
    /// `[F * F]`, row-major, symmetric positive definite.
    pub precision: Vec<f64>,
}

impl DomainModel {
    /// Fit from `features` (`[n * width]`) with their `labels` among `k` classes.
    /// The covariance is shrunk towards its mean variance by F / (n + F), so that a
    /// few hundred images of a 128-wide feature still give an invertible estimate.
    pub fn fit(features: &[f32], labels: &[usize], k: usize, width: usize) -> Result<DomainModel> {
        let n = labels.len();
        if n < 2 || features.len() != n * width {
            return Err(Error::config("calibration", format!("needs at least 2 images, got {n}")));
        }
        let mut means = vec![0f64; k * width];
        let mut counts = vec![0usize; k];
        for (f, &c) in features.chunks_exact(width).zip(labels) {
            counts[c] += 1;
            means[c * width..(c + 1) * width].iter_mut().zip(f).for_each(|(m, &v)| *m += v as f64);
        }
        for (c, &count) in counts.iter().enumerate() {
            means[c * width..(c + 1) * width].iter_mut().for_each(|m| *m /= count.max(1) as f64);
        }
        let mut covariance = vec![0f64; width * width];
        let mut centred = vec![0f64; width];
        for (f, &c) in features.chunks_exact(width).zip(labels) {
            for (j, d) in centred.iter_mut().enumerate() {
                *d = f[j] as f64 - means[c * width + j];
            }
            for a in 0..width {
                let row = &mut covariance[a * width..(a + 1) * width];
                for (b, r) in row.iter_mut().enumerate() {
                    *r += centred[a] * centred[b];
                }
            }
        }
        covariance.iter_mut().for_each(|v| *v /= (n - 1) as f64);
        let mean_variance = (0..width).map(|a| covariance[a * width + a]).sum::<f64>() / width as f64;
        let shrink = width as f64 / (n + width) as f64;
        for a in 0..width {
            for b in 0..width {
                let target = if a == b { mean_variance.max(1e-12) } else { 0.0 };
                covariance[a * width + b] = (1.0 - shrink) * covariance[a * width + b] + shrink * target;
            }
        }
        let precision = spd_inverse(&covariance, width)
            .ok_or_else(|| Error::config("calibration", "the feature covariance is not positive definite"))?;
        Ok(DomainModel { width, class_means: means.iter().map(|&m| m as f32).collect(), precision })
    }

    /// Each image's score under the domain fitted without it: image `i` goes to fold
    /// `i % folds`, and each fold is scored by the domain fitted on the others. Why:
    /// the means and covariance follow the images they are fitted on, so those images
    /// score closer than new ones of the same kind; with 128 features and 900
    /// validation images a threshold at their own 0.99 quantile flagged 2.6% of the
    /// held-out lenses (RESULTS.md). A class none of the other folds holds is left out
    /// of that fold's nearest-class search.
    pub fn out_of_fold_scores(
        features: &[f32],
        labels: &[usize],
        k: usize,
        width: usize,
        folds: usize,
    ) -> Result<Vec<f32>> {
        let n = labels.len();
        if folds < 2 || n < 2 * folds || features.len() != n * width {
            return Err(Error::config(
                "calibration",
                format!("out-of-fold scores in {folds} folds need at least {} images, got {n}", 2 * folds),
            ));
        }
        let mut scores = vec![0f32; n];
        for fold in 0..folds {
            let (mut kept, mut kept_labels, mut held) = (Vec::new(), Vec::new(), Vec::new());
            for (i, (row, &label)) in features.chunks_exact(width).zip(labels).enumerate() {
                if i % folds == fold {
                    held.extend_from_slice(row);
                } else {
                    kept.extend_from_slice(row);
                    kept_labels.push(label);
                }
            }
            let mut domain = DomainModel::fit(&kept, &kept_labels, k, width)?;
            for c in (0..k).filter(|c| !kept_labels.contains(c)) {
                domain.class_means[c * width..(c + 1) * width].fill(f32::NAN);
            }
            for (j, score) in domain.scores(&held).into_iter().enumerate() {
                scores[fold + j * folds] = score;
            }
        }
        Ok(scores)
    }

    /// The Mahalanobis distance of each feature row (`[n * width]`) to its nearest
    /// class mean; infinite for rows with non-finite features (as far out as can be).
    /// Classes whose mean is not finite are never the nearest.
    pub fn scores(&self, features: &[f32]) -> Vec<f32> {
        let w = self.width;
        let mut diff = vec![0f64; w];
        features
            .chunks_exact(w)
            .map(|f| {
                let nearest = self
                    .class_means
                    .chunks_exact(w)
                    .map(|mean| {
                        diff.iter_mut().zip(f.iter().zip(mean)).for_each(|(d, (&x, &m))| *d = x as f64 - m as f64);
                        let mut total = 0.0;
                        for (a, row) in self.precision.chunks_exact(w).enumerate() {
                            total += diff[a] * row.iter().zip(&diff).map(|(p, d)| p * d).sum::<f64>();
                        }
                        total
                    })
                    .fold(f64::INFINITY, f64::min);
                nearest.max(0.0).sqrt() as f32
            })
            .collect()
    }

    /// The tensors a checkpoint keeps.
    pub fn checkpoint_tensors(&self, dev: &Device) -> Result<HashMap<String, Tensor>> {
        let k = self.class_means.len() / self.width;
        let precision: Vec<f32> = self.precision.iter().map(|&v| v as f32).collect();
        Ok(HashMap::from([
            (CLASS_MEANS_KEY.to_string(), Tensor::from_slice(&self.class_means, (k, self.width), dev)?),
            (PRECISION_KEY.to_string(), Tensor::from_vec(precision, (self.width, self.width), dev)?),
        ]))
    }

    /// The domain stored in a checkpoint's tensors, if any.
    pub fn from_checkpoint(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<Option<DomainModel>> {
        let (Some(means), Some(precision)) = (tensors.get(CLASS_MEANS_KEY), tensors.get(PRECISION_KEY)) else {
            return Ok(None);
        };
        let bad = |m: &str| Error::checkpoint(path, format!("domain model: {m}"));
        let (_, width) = means.dims2().map_err(|_| bad("class means are not a matrix"))?;
        if precision.dims2().ok() != Some((width, width)) {
            return Err(bad("the precision matrix does not match the class means"));
        }
        let class_means = means.flatten_all()?.to_vec1::<f32>()?;
        let precision = precision.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        Ok(Some(DomainModel { width, class_means, precision }))
    }
}

/// The inverse of a symmetric positive definite `n x n` matrix by Cholesky
/// factorisation; None when it is not positive definite.
fn spd_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    // a = L L^T, L lower triangular.
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|p| l[i * n + p] * l[j * n + p]).sum();
            if i == j {
                let d = a[i * n + i] - sum;
                if !(d > 0.0 && d.is_finite()) {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - sum) / l[j * n + j];
            }
        }
    }
    // Columns of a^-1: solve L y = e_c, then L^T x = y.
    let mut inverse = vec![0f64; n * n];
    let mut y = vec![0f64; n];
    for c in 0..n {
        for i in 0..n {
            let rhs = if i == c { 1.0 } else { 0.0 };
            y[i] = (rhs - (0..i).map(|p| l[i * n + p] * y[p]).sum::<f64>()) / l[i * n + i];
        }
        for i in (0..n).rev() {
            let x = (y[i] - (i + 1..n).map(|p| l[p * n + i] * inverse[p * n + c]).sum::<f64>()) / l[i * n + i];
            inverse[i * n + c] = x;
        }
    }
    Some(inverse)
}

/// The `q`-quantile of `values` (linear interpolation between order statistics,
/// numpy's default); non-finite values are left out.
pub fn quantile(values: &[f32], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    v[lo] + frac * (v[(lo + 1).min(v.len() - 1)] - v[lo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    #[test]
    fn the_cholesky_inverse_inverts() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let inv = spd_inverse(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|p| a[i * 3 + p] * inv[p * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12, "({i},{j}) {v}");
            }
        }
        assert!(spd_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn scores_are_the_mahalanobis_distance_to_the_nearest_class() {
        // Two classes in 3-D, unit covariance along x and y, 4 along z.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for i in 0..20_000 {
            let c = i % 2;
            let centre = if c == 0 { -3.0 } else { 3.0 };
            let g = |rng: &mut rand_chacha::ChaCha8Rng| rng.sample::<f32, _>(StandardNormal);
            features.extend([centre + g(&mut rng), g(&mut rng), 2.0 * g(&mut rng)]);
            labels.push(c);
        }
        let domain = DomainModel::fit(&features, &labels, 2, 3).unwrap();
        let s = domain.scores(&[3.0, 0.0, 0.0, 3.0, 2.0, 0.0, -3.0, 0.0, 4.0, 0.0, 0.0, 0.0]);
        for (got, want) in s.iter().zip([0.0, 2.0, 2.0, 3.0]) {
            assert!((got - want).abs() < 0.05, "{s:?}");
        }
        assert_eq!(domain.scores(&[f32::NAN, 0.0, 0.0])[0], f32::INFINITY);
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0, f32::NAN], 0.5) - 2.5).abs() < 1e-12);
    }

    /// Gaussian features of `k` classes: `n` rows of `width`, class `i % k`.
    fn gaussian_features(n: usize, k: usize, width: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut features, mut labels) = (Vec::with_capacity(n * width), Vec::with_capacity(n));
        for i in 0..n {
            let c = i % k;
            features.extend((0..width).map(|j| rng.sample::<f32, _>(StandardNormal) + if j == c { 4.0 } else { 0.0 }));
            labels.push(c);
        }
        (features, labels)
    }

    #[test]
    fn the_threshold_with_other_bounds_flags_only_what_they_leave_of_the_share() {
        // 1,000 scores in shuffled order; the other bounds flag every 97th image.
        let scores: Vec<f32> = (0..1000).map(|i| ((i * 389) % 1000) as f32).collect();
        let flagged_otherwise: Vec<bool> = (0..1000).map(|i| i % 97 == 0).collect();
        let flagged_by =
            |t: f64| scores.iter().zip(&flagged_otherwise).filter(|&(&s, &other)| other || s as f64 > t).count();
        assert_eq!(flagged_otherwise.iter().filter(|&&f| f).count(), 11);
        // Alone, the scores' quantile flags 1%, and the bounds add their 11 images.
        assert_eq!(flagged_by(quantile(&scores, 0.99)), 21);
        let t = threshold_with_other_bounds(&scores, &flagged_otherwise, 0.98);
        assert_eq!(flagged_by(t), 20, "threshold {t}");
        // No other bound: the plain quantile.
        assert_eq!(threshold_with_other_bounds(&scores, &[false; 1000], 0.99), quantile(&scores, 0.99));
        // Bounds that flag more than the share already: no image is flagged by its score.
        assert_eq!(threshold_with_other_bounds(&scores, &flagged_otherwise, 0.995), 999.0);
    }

    #[test]
    fn an_out_of_fold_threshold_flags_what_its_quantile_says_of_new_images() {
        let (k, width, q) = (3, 64, 0.99);
        let (features, labels) = gaussian_features(600, k, width, 3);
        let (new, _) = gaussian_features(30_000, k, width, 4);
        let domain = DomainModel::fit(&features, &labels, k, width).unwrap();
        let flagged = |threshold: f64| {
            let scores = domain.scores(&new);
            scores.iter().filter(|&&s| s as f64 > threshold).count() as f64 / scores.len() as f64
        };
        let in_sample = flagged(quantile(&domain.scores(&features), q));
        let out_of_fold = DomainModel::out_of_fold_scores(&features, &labels, k, width, THRESHOLD_FOLDS).unwrap();
        let honest = flagged(quantile(&out_of_fold, q));
        // RESULTS.md quotes these (`cargo test --release --lib out_of_fold -- --nocapture`).
        eprintln!("flagged among new images: in-sample threshold {in_sample}, out-of-fold {honest}");
        // Fitted on 600 images of 64 features, a domain's own images sit closer than new
        // ones: their own quantile flags several times what it asks.
        assert!(in_sample > 0.03, "in-sample threshold flags {in_sample}");
        assert!((0.002..0.02).contains(&honest), "out-of-fold threshold flags {honest}");
    }

    #[test]
    fn a_calibration_recorded_before_out_of_fold_thresholds_says_its_threshold_is_in_sample() {
        let old = r#"{"temperature":1.0,"ood_threshold":9.9,"ood_quantile":0.99,
            "features":"cls+mean-tokens","fitted_on":900,"data":"validation split"}"#;
        let calibration: Calibration = serde_json::from_str(old).unwrap();
        assert_eq!(calibration.ood_threshold_from, THRESHOLD_FROM_IN_SAMPLE);
        assert_eq!(calibration.residual_chi2_range, None);
        assert_eq!(calibration.residual_noise_range, None);
    }

    #[test]
    fn the_residual_range_bounds_the_calibration_residuals_chi2() {
        // Residuals of 1,000 images of 16 pixels, at levels 0.5 to 1.5 (chi^2 0.25 to 2.25).
        let residuals: Vec<f32> = (0..1000).flat_map(|i| [0.5 + i as f32 / 1000.0; 16]).collect();
        let chi2 = residual_chi2(&residuals, 16);
        assert!((chi2[0] - 0.25).abs() < 1e-6 && (chi2[999] - 1.499f32.powi(2)).abs() < 1e-4, "{chi2:?}");
        let [low, high] = residual_chi2_range(&residuals, 16);
        assert!((0.25..0.26).contains(&low) && (2.24..2.25).contains(&high), "{low} {high}");
    }

    #[test]
    fn the_noise_level_of_a_residual_passes_over_its_substructure_and_sees_a_wrong_sky() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let noise: Vec<f32> = (0..4096).map(|_| StandardNormal.sample(&mut rng)).collect();
        // A residual of the noise with a strong arc of substructure on 5% of its pixels,
        // and the same noise weighted by a sky of half its variance.
        let mut arc = noise.clone();
        arc.iter_mut().step_by(20).for_each(|v| *v += 25.0);
        let mis_weighted: Vec<f32> = noise.iter().map(|v| v * 2f32.sqrt()).collect();
        let levels = residual_noise(&[noise, arc.clone(), mis_weighted.clone()].concat(), 4096);
        assert!((levels[0] - 1.0).abs() < 0.05 && (levels[1] - 1.0).abs() < 0.1, "{levels:?}");
        assert!((levels[2] / levels[0] - 2f32.sqrt()).abs() < 1e-4, "{levels:?}");
        let chi2 = residual_chi2(&arc, 4096)[0];
        assert!(chi2 > 25.0, "the arc's chi^2 {chi2} is beyond any range the level would need");
        let calibration = Calibration {
            temperature: 1.0,
            ood_threshold: 10.0,
            ood_quantile: 0.99,
            ood_threshold_from: THRESHOLD_FROM_OUT_OF_FOLD.into(),
            residual_chi2_range: Some([0.9, 40.0]),
            residual_noise_range: Some([0.9, 1.1]),
            distinct_pixels_floor: None,
            features: "test".into(),
            fitted_on: 3,
            data: "test".into(),
        };
        let stats = calibration.input_statistics(&[arc, mis_weighted].concat(), 4096);
        assert!(calibration.admits(1.0, stats[0]), "{:?}", stats[0]);
        assert!(!calibration.admits(1.0, stats[1]), "{:?}", stats[1]);
        let [low, high] = residual_noise_range(&vec![1.0f32; 4096 * 3], 4096);
        assert_eq!((low, high), (0.0, 0.0), "a constant residual has no noise");
    }

    #[test]
    fn the_distinct_pixels_floor_admits_finely_stored_images_and_not_their_coarse_copies() {
        // A smooth image of 256 distinct levels, and the same image on 32 levels.
        let fine: Vec<f32> = (0..256).map(|i| ((i as f32 - 127.5) / 40.0).powi(2).mul_add(-1.0, 12.0).exp()).collect();
        let (lo, hi) = fine.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let coarse: Vec<f32> = fine.iter().map(|&v| ((v - lo) / (hi - lo) * 31.0).round()).collect();
        let [f, c] = [&fine, &coarse].map(|image| distinct_pixel_fractions(image, 256)[0]);
        assert!(f > 0.45 && c <= 32.0 / 256.0, "{f} {c}");
        // NaNs are one level; -0 and 0 are one.
        let odd = [f32::NAN, f32::NAN, -0.0, 0.0];
        assert_eq!(distinct_pixel_fractions(&odd, 4), vec![0.5]);
        let floor = distinct_pixels_floor(&[fine.clone(), fine.clone()].concat(), 256);
        assert!((floor - DISTINCT_PIXELS_MARGIN * f as f64).abs() < 1e-6, "{floor}");
        let calibration = Calibration {
            temperature: 1.0,
            ood_threshold: 10.0,
            ood_quantile: 0.99,
            ood_threshold_from: THRESHOLD_FROM_OUT_OF_FOLD.into(),
            residual_chi2_range: None,
            residual_noise_range: None,
            distinct_pixels_floor: Some(floor),
            features: "test".into(),
            fitted_on: 2,
            data: "test".into(),
        };
        let stats = calibration.input_statistics(&[fine, coarse].concat(), 256);
        assert_eq!(stats[0].residual_chi2, None);
        assert!(calibration.admits(1.0, stats[0]) && !calibration.admits(1.0, stats[1]));
        // Without a floor (noise-scaled models, older checkpoints) levels are not judged.
        let unbounded = Calibration { distinct_pixels_floor: None, ..calibration };
        assert!(unbounded.admits(1.0, stats[1]));
    }

    #[test]
    fn out_of_fold_scores_leave_out_a_class_the_other_folds_lack() {
        // One image of class 2, far from the others: its fold's domain has no class 2,
        // so it is scored against classes 0 and 1 and comes out far.
        let (mut features, mut labels) = gaussian_features(40, 2, 4, 5);
        features.extend([40.0, 40.0, 40.0, 40.0]);
        labels.push(2);
        let scores = DomainModel::out_of_fold_scores(&features, &labels, 3, 4, 10).unwrap();
        assert!(scores[40].is_finite() && scores[40] > 20.0, "{}", scores[40]);
        assert!(scores[..40].iter().all(|s| s.is_finite() && *s < 10.0), "{scores:?}");
        assert!(DomainModel::out_of_fold_scores(&features[..4 * 19], &labels[..19], 3, 4, 10).is_err());
    }
}
