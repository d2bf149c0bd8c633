//! Super-resolution metrics on images scaled to [0, 1], as scikit-image computes
//! them (golden values from scikit-image in `fixtures/oracle/` are checked by the
//! tests): mean squared error, PSNR with data range 1, and SSIM with a 7x7
//! uniform window, sample covariances, K1 = 0.01, K2 = 0.03, averaged over the
//! pixels whose window lies inside the image.

use crate::data::images::ImagePairs;
use crate::infer::{super_resolve, LoadedSuperres};
use crate::model::preprocess::{minmax_scale, scaled};
use crate::model::superres::SuperResolver;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Mean squared error.
pub fn mse(reference: &[f32], test: &[f32]) -> f64 {
    assert_eq!(reference.len(), test.len());
    reference.iter().zip(test).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() / reference.len() as f64
}

/// Peak signal-to-noise ratio in dB for data range 1 (infinite for equal images).
pub fn psnr(reference: &[f32], test: &[f32]) -> f64 {
    10.0 * (1.0 / mse(reference, test)).log10()
}

const WINDOW: usize = 7;

/// Mean of each 7x7 window fully inside the `size x size` image, as a
/// `(size - 6) x (size - 6)` grid.
fn window_means(v: &[f64], size: usize) -> Vec<f64> {
    let n = size - WINDOW + 1;
    let mut rows = vec![0f64; size * n];
    for r in 0..size {
        for c in 0..n {
            rows[r * n + c] = v[r * size + c..r * size + c + WINDOW].iter().sum();
        }
    }
    let mut out = vec![0f64; n * n];
    for r in 0..n {
        for c in 0..n {
            out[r * n + c] = (0..WINDOW).map(|k| rows[(r + k) * n + c]).sum::<f64>() / (WINDOW * WINDOW) as f64;
        }
    }
    out
}

/// Mean structural similarity of two `size x size` images (size >= 7).
pub fn ssim(reference: &[f32], test: &[f32], size: usize) -> f64 {
    assert!(size >= WINDOW, "SSIM needs images of at least 7x7");
    assert_eq!(reference.len(), size * size);
    assert_eq!(test.len(), size * size);
    let x: Vec<f64> = reference.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = test.iter().map(|&v| v as f64).collect();
    let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<_>>();
    let (ux, uy) = (window_means(&x, size), window_means(&y, size));
    let (uxx, uyy, uxy) =
        (window_means(&prod(&x, &x), size), window_means(&prod(&y, &y), size), window_means(&prod(&x, &y), size));
    let np = (WINDOW * WINDOW) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let total: f64 = (0..ux.len())
        .map(|i| {
            let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
            let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
            let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
            let a = (2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2);
            let b = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
            a / b
        })
        .sum();
    total / ux.len() as f64
}

/// Per-image metrics averaged over a set of images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SuperresMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// PSNR, dB (the mean of per-image values).
    pub psnr: f64,
    /// SSIM (the mean of per-image values).
    pub ssim: f64,
    /// Images.
    pub n: usize,
}

impl SuperresMetrics {
    /// Metrics of `test` against `reference`, both `n` images of `size x size`
    /// in [0, 1] (scaled by the caller, e.g. by the reference's min-max).
    pub fn compute(reference: &[f32], test: &[f32], size: usize) -> SuperresMetrics {
        let per = size * size;
        assert_eq!(reference.len(), test.len());
        let n = reference.len() / per;
        let mut m = SuperresMetrics { n, ..Default::default() };
        for (r, t) in reference.chunks_exact(per).zip(test.chunks_exact(per)) {
            m.mse += mse(r, t);
            m.psnr += psnr(r, t);
            m.ssim += ssim(r, t, size);
        }
        let k = n.max(1) as f64;
        m.mse /= k;
        m.psnr /= k;
        m.ssim /= k;
        m
    }
}

/// Held-out metrics of the model beside the two classical upsamplings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SuperresEvaluation {
    /// The model.
    pub model: SuperresMetrics,
    /// Bicubic upsampling (PyTorch's, a = -0.75).
    pub bicubic: SuperresMetrics,
    /// Nearest-neighbour upsampling.
    pub nearest: SuperresMetrics,
}

/// Metrics of `sr` against the HR images at `indices`, both mapped by each HR
/// image's min-max.
fn metrics_against_hr(pairs: &ImagePairs, indices: &[usize], sr: &[f32]) -> SuperresMetrics {
    let per = pairs.hr.size * pairs.hr.size;
    let (mut reference, mut test) = (Vec::with_capacity(sr.len()), Vec::with_capacity(sr.len()));
    for (k, &i) in indices.iter().enumerate() {
        let hr = pairs.hr.image(i);
        let s = minmax_scale(hr);
        reference.extend(scaled(hr, s));
        test.extend(scaled(&sr[k * per..(k + 1) * per], s));
    }
    SuperresMetrics::compute(&reference, &test, pairs.hr.size)
}

/// The model's SR images of the pairs at `indices` and its metrics.
pub fn evaluate_model(
    model: &SuperResolver,
    pairs: &ImagePairs,
    indices: &[usize],
    batch: usize,
) -> Result<(SuperresMetrics, Vec<f32>)> {
    let sr = super_resolve(model, &pairs.lr_rows(indices), pairs.lr.size, batch)?;
    Ok((metrics_against_hr(pairs, indices, &sr), sr))
}

/// The model and the classical baselines on the pairs at `indices`.
pub fn evaluate_superres(
    model: &SuperResolver,
    pairs: &ImagePairs,
    indices: &[usize],
    batch: usize,
) -> Result<SuperresEvaluation> {
    let (model_metrics, _) = evaluate_model(model, pairs, indices, batch)?;
    let (bicubic, nearest) = pairs.classical_upsamplings(indices);
    Ok(SuperresEvaluation {
        model: model_metrics,
        bicubic: metrics_against_hr(pairs, indices, &bicubic),
        nearest: metrics_against_hr(pairs, indices, &nearest),
    })
}

/// [`evaluate_superres`] of a loaded checkpoint, once the pairs are checked to be
/// the sizes it maps between.
pub fn evaluate_superres_model(
    loaded: &LoadedSuperres,
    pairs: &ImagePairs,
    indices: &[usize],
    batch: usize,
) -> Result<SuperresEvaluation> {
    let (lr, hr) = (loaded.lr_size(), loaded.hr_size());
    if pairs.hr.size != hr || pairs.lr.size != lr {
        return Err(Error::Mismatch {
            path: pairs.hr.source.clone(),
            message: format!(
                "pairs are {0}x{0} -> {1}x{1}, the model takes {2}x{2} -> {3}x{3} ({4})",
                pairs.lr.size,
                pairs.hr.size,
                lr,
                hr,
                loaded.path.display()
            ),
        });
    }
    evaluate_superres(&loaded.model, pairs, indices, batch)
}
