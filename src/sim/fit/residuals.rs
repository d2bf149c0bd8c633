//! What a smooth-lens fit leaves of a cutout, and how sure the fit is.

use super::{decode, fit_smooth_lens, fit_smooth_lens_blind, BlindGrid, Fitted, Observation, Problem, SmoothLensFit};
use super::{SMOOTH_CLASS, STEP};
use crate::sim::grid::Image;
use crate::sim::noise::{Noise, NoiseMap};
use crate::sim::simulator::{ImageParams, Simulator};
use levenberg_marquardt::LeastSquaresProblem;
use nalgebra::{DMatrix, DVector};

/// How a classifier of smooth-lens residuals prepares a cutout: the simulator
/// whose smooth lens, source, deflector light, PSF and instrument noise are fitted
/// (the recipe its training lenses came from; its class draws are not used), and
/// the grid the blind fit starts from. A dataset of residuals records it under
/// [`SMOOTH_LENS_RESIDUALS_KEY`], and a classifier trained on one carries it, so
/// that inference fits every cutout the same way before the model sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothLensResiduals {
    /// The recipe of the fitted model.
    pub simulator: crate::sim::config::SimConfig,
    /// Where the blind fit starts.
    pub grid: BlindGrid,
}

/// The metadata key of a dataset of smooth-lens residuals (its value is the
/// [`SmoothLensResiduals`] JSON).
pub const SMOOTH_LENS_RESIDUALS_KEY: &str = "lensmae:smooth_lens_residuals";

/// A cutout with its best smooth lens taken away.
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothLensResidual {
    /// (data - fit) / sigma per pixel, sigma^2 the noise variance of the fitted
    /// image (the model's, so a bright residual is not down-weighted by itself).
    pub chi: Vec<f64>,
    /// The fit.
    pub fit: SmoothLensFit,
    /// The variance its last fit weighted each pixel by (infinite where masked):
    /// what its uncertainty is reckoned with ([`SmoothLensResidual::covariance`]).
    pub variance: Vec<f64>,
}

impl SmoothLensResidual {
    /// The fit's uncertainty ([`FitCovariance`]; None: not every parameter is
    /// constrained), for `data`, the cutout it was fitted to. Reckoned only when
    /// asked: 21 renders that training residuals and refits do without.
    pub fn covariance(&self, sim: &Simulator, data: &Image) -> Option<FitCovariance> {
        let data = with_masked_zeroed(data);
        FitCovariance::of(sim, &self.fit.params, &data, &self.variance, Fitted::LensSourceAndLight)
    }
}

/// `data` with its non-finite (masked) pixels read as 0, which the fit weighs
/// nothing: a NaN times a weight of 0 would still be NaN.
fn with_masked_zeroed(data: &Image) -> std::borrow::Cow<'_, Image> {
    if data.pixels.iter().all(|v| v.is_finite()) {
        return std::borrow::Cow::Borrowed(data);
    }
    let pixels = data.pixels.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect();
    std::borrow::Cow::Owned(Image { size: data.size, pixels })
}

/// The statistical uncertainty of a smooth-lens fit in the Gaussian approximation:
/// the covariance of its parameters, (J^T J)^-1 for J the Jacobian of the
/// noise-weighted residuals at the best fit. It knows the noise only: a lens the
/// smooth model does not describe (substructure) is off by more.
#[derive(Debug, Clone, PartialEq)]
pub struct FitCovariance {
    best: DVector<f64>,
    base: ImageParams,
    fitted: Fitted,
    covariance: DMatrix<f64>,
}

impl FitCovariance {
    /// The covariance of the fit `best` of `data`, weighted by 1 / `variance`; None
    /// where the image does not constrain every parameter (J^T J singular) or the
    /// Jacobian is not finite.
    pub fn of(sim: &Simulator, best: &ImageParams, data: &Image, variance: &[f64], fitted: Fitted) -> Option<Self> {
        let problem = Problem::at(sim, SMOOTH_CLASS, best.clone(), data, variance, fitted);
        let jacobian = problem.jacobian()?;
        let covariance = (jacobian.transpose() * &jacobian).try_inverse()?;
        let variances_usable = covariance.diagonal().iter().all(|v| v.is_finite() && *v >= 0.0);
        variances_usable.then_some(FitCovariance { best: problem.x, base: problem.smooth, fitted, covariance })
    }

    /// The standard deviations of `quantities`, smooth functions of the fitted lens
    /// (each wrapping one, as an angle, taken as its offset from the best fit), by
    /// linear propagation of the covariance; None where one is not finite. The
    /// quantities are evaluated together, twice per parameter.
    pub fn stds_of<const N: usize>(&self, quantities: impl Fn(&ImageParams) -> [f64; N]) -> [Option<f64>; N] {
        let n = self.best.len();
        // Row i: the gradient of quantity i over the parameters (central differences).
        let mut gradients = DMatrix::zeros(N, n);
        for j in 0..n {
            let moved = |by: f64| {
                let mut x = self.best.clone();
                x[j] += by;
                quantities(&decode(&x, &self.base, self.fitted))
            };
            let (ahead, behind) = (moved(STEP), moved(-STEP));
            for i in 0..N {
                gradients[(i, j)] = (ahead[i] - behind[i]) / (2.0 * STEP);
            }
        }
        let variances = (&gradients * &self.covariance * gradients.transpose()).diagonal();
        std::array::from_fn(|i| Some(variances[i]).filter(|v| v.is_finite() && *v >= 0.0).map(f64::sqrt))
    }
}

/// The noise-normalised residual of `data` from the smooth-lens image of `fit`:
/// (data - model) / sigma, sigma^2 the variance `noise` gives the model, with the
/// cutout's noise `map` where given ([`Noise::variance_over`]).
/// None when `noise` is noise-free.
pub fn residual_from(
    sim: &Simulator,
    fit: &ImageParams,
    data: &Image,
    noise: &Noise,
    map: Option<NoiseMap>,
) -> Option<Vec<f64>> {
    let model = smooth_image(sim, fit);
    let variance = noise.variance_over(&model, sim.camera(fit).grid.pixel_scale, map)?;
    Some(data.pixels.iter().zip(&model.pixels).zip(&variance).map(|((d, m), v)| (d - m) / v.sqrt()).collect())
}

/// The noise-free image of the smooth lens `params` (its substructure ignored).
fn smooth_image(sim: &Simulator, params: &ImageParams) -> Image {
    sim.scene(SMOOTH_CLASS, params).render_with(&sim.camera(params), None)
}

/// The blind smooth-lens fit of `data` ([`fit_smooth_lens_blind`], weighted by the
/// instrument's noise of `sim` at the observation's exposure, evaluated on the
/// data, then [`BlindGrid::reweighted_fits`] by its model's) and the residual it
/// leaves ([`residual_from`]). `data` is in the units
/// `simulate` writes for `sim` (sky-subtracted e-/s for an instrument). Its
/// non-finite pixels are masked (a survey's flagged cosmic ray, a bad column): they
/// weigh nothing in the fit and their residual is 0, for a masked pixel read as 0
/// flux on a lens's arc would be fitted as a hole in it. `map`, where given and
/// finite, is the cutout's own noise ([`Noise::variance_over`]), in place of the
/// instrument's sky and read noise: a survey's depth and sky vary over its footprint
/// and the map knows them. None when `sim` has no noise model for the observation
/// (noise-free, or no exposure time).
///
/// # Panics
/// If `data` is not square of the simulator's image size, or `map` has not one
/// entry per pixel.
pub fn smooth_lens_residual(
    sim: &Simulator,
    observed: &Observation,
    data: &Image,
    map: Option<NoiseMap>,
    grid: &BlindGrid,
) -> Option<SmoothLensResidual> {
    assert_eq!(data.size, sim.config().image.size, "the simulator's image size");
    let masked: Vec<bool> = data.pixels.iter().map(|v| !v.is_finite()).collect();
    let data = &*with_masked_zeroed(data);
    let noise = sim.noise_at(observed.exposure_time);
    let pixel_scale = sim.config().image.pixel_scale;
    // The variance of `image`'s pixels; infinite where masked: no weight, and
    // (data - model) / sigma = 0.
    let variance_of = |image: &Image| {
        let mut variance = noise.variance_over(image, pixel_scale, map)?;
        variance.iter_mut().zip(&masked).filter(|(_, m)| **m).for_each(|(v, _)| *v = f64::INFINITY);
        Some(variance)
    };
    // The blind fit weighs by the data's variance (no model yet), each reweighted
    // fit by its predecessor's model's.
    let mut variance = variance_of(data)?;
    let mut fit = fit_smooth_lens_blind(sim, observed, data, &variance, grid);
    for _ in 0..grid.reweighted_fits {
        variance = variance_of(&smooth_image(sim, &fit.params))?;
        let again = fit_smooth_lens(sim, SMOOTH_CLASS, &fit.params, data, &variance, Fitted::LensSourceAndLight);
        fit = SmoothLensFit { chi_start: fit.chi_start, renders: fit.renders + again.renders, ..again };
    }
    let mut chi = residual_from(sim, &fit.params, data, &noise, map)?;
    chi.iter_mut().zip(&masked).filter(|(_, m)| **m).for_each(|(c, _)| *c = 0.0);
    Some(SmoothLensResidual { chi, fit, variance })
}
