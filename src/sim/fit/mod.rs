//! Fitting a smooth lens to an image: the SIE + external shear, a Sersic source and
//! the deflector's elliptical Sersic light, by MINPACK's Levenberg-Marquardt (the
//! `levenberg-marquardt` crate) with a forward-difference Jacobian, weighted by the
//! noise. The lens modeller's first step before looking for substructure in what
//! the fit leaves, and what [`crate::infer`] does to every cutout a classifier of
//! residuals reads.
//!
//! - [`fit_smooth_lens`]: from a given start (the core, below);
//! - [`fit_smooth_lens_blind`] (`blind`): from the cutout alone: a start from the
//!   central light's moments and a grid of Einstein radii and source positions,
//!   then polishing fits and basin hops;
//! - [`smooth_lens_residual`] (`residuals`): that fit, reweighted by its model's
//!   noise, and the residual it leaves, with the fit's covariance;
//! - [`fit_vortex`] (`vortex`): the recipe's axion vortex on top of such a fit, the
//!   likelihood ratio of a vortex against no substructure (RESULTS.md, "A matched
//!   filter for the vortex": it reads no more than the classifier of residuals).
//!
//! Every fit is local: it only lowers chi^2 from its start, and never steps beyond
//! the galaxy-scale lenses of [`lens_within_envelope`].

mod blind;
mod residuals;
mod vortex;

pub use blind::{fit_smooth_lens_blind, BlindGrid, Observation, MAX_FITS};
pub use residuals::{
    residual_from, smooth_lens_residual, FitCovariance, SmoothLensResidual, SmoothLensResiduals,
    SMOOTH_LENS_RESIDUALS_KEY,
};
pub use vortex::{fit_vortex, fit_vortex_from, VortexFit, VortexGrid};

use super::grid::Image;
use super::scene::{Camera, LayeredRender};
use super::simulator::{capped_ellipticity, ImageParams, LensLightDraw, Simulator, VortexDraw};
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};

/// What a fit varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fitted {
    /// The smooth lens and the source (14 parameters): ln theta_E, lens e1, e2,
    /// centre x, y, shear gamma1, gamma2, ln source amplitude, ln source radius, ln
    /// Sersic index, source e1, e2, centre x, y. Logarithms keep positive quantities
    /// positive whatever the step.
    LensAndSource,
    /// Those and the deflector's light (21): ln amplitude, ln radius, ln Sersic
    /// index, e1, e2, centre x, y, for cutouts whose light nobody gave.
    LensSourceAndLight,
    /// Those and an axion vortex through the lens centre (24): ln total mass
    /// (Msun), ln axion mass (eV: the half-length is the recipe's length constant
    /// over it) and the line's angle. The class fitted must be a vortex class.
    LensSourceLightAndVortex,
}

impl Fitted {
    fn n_params(self) -> usize {
        match self {
            Fitted::LensAndSource => 14,
            Fitted::LensSourceAndLight => 21,
            Fitted::LensSourceLightAndVortex => 24,
        }
    }

    fn includes_light(self) -> bool {
        self != Fitted::LensAndSource
    }
}

/// Forward-difference step of every parameter: 1e-4 of a log or of an arcsec
/// (1e-3 of a pixel) is far above the renderer's rounding and far below any
/// feature of the image.
const STEP: f64 = 1e-4;

/// Sersic indices the refit may use (the source profile is defined for these).
const SERSIC_INDEX_RANGE: (f64, f64) = (0.3, 8.0);

/// A smooth lens has no substructure, so any class renders it.
const SMOOTH_CLASS: usize = 0;

/// The outcome of [`fit_smooth_lens`].
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothLensFit {
    /// The best smooth lens found (no substructure).
    pub params: ImageParams,
    /// sqrt(chi^2) at the start.
    pub chi_start: f64,
    /// sqrt(chi^2) at the best fit (at most `chi_start`).
    pub chi: f64,
    /// Image renders the fit used.
    pub renders: usize,
}

/// Fit the smooth lens of `start` (its substructure dropped) to `data`, weighting
/// pixel i by 1 / `variance[i]` (pixels of zero variance are left out), varying
/// what `fitted` names; everything else (PSF, and the light unless fitted) stays as
/// in `start`. A local minimum: Levenberg-Marquardt with a forward-difference
/// Jacobian, which only lowers chi^2 from the start, and never steps beyond the
/// galaxy-scale lenses of [`lens_within_envelope`] (a fit started beyond them keeps
/// its start unless it gets back in).
///
/// # Panics
/// If `variance` has not one entry per pixel of `data`, or `fitted` includes the
/// light and `start` has none to start from.
pub fn fit_smooth_lens(
    sim: &Simulator,
    class_idx: usize,
    start: &ImageParams,
    data: &Image,
    variance: &[f64],
    fitted: Fitted,
) -> SmoothLensFit {
    let mut smooth = start.clone();
    smooth.subhalos.clear();
    smooth.vortex = None;
    fit_lens(sim, class_idx, smooth, data, variance, fitted)
}

/// Levenberg-Marquardt from `start` as it is (its substructure kept), varying what
/// `fitted` names.
fn fit_lens(
    sim: &Simulator,
    class_idx: usize,
    start: ImageParams,
    data: &Image,
    variance: &[f64],
    fitted: Fitted,
) -> SmoothLensFit {
    let problem = Problem::at(sim, class_idx, start, data, variance, fitted);
    let chi_start = norm(&problem.residuals);
    // Few iterations suffice from a good start; the bound keeps a hard image's cost
    // at a few hundred renders.
    let (problem, _report) = LevenbergMarquardt::new().with_patience(20).minimize(problem);
    let chi = norm(&problem.residuals);
    let improved = chi <= chi_start && problem.within_envelope(&problem.x);
    let params = if improved { decode(&problem.x, &problem.smooth, fitted) } else { problem.smooth.clone() };
    SmoothLensFit { params, chi_start, chi: if improved { chi } else { chi_start }, renders: problem.renders.get() }
}

/// The strongest external shear a fit may find: 0.5 is the convergence of an
/// isothermal lens at its Einstein radius, so a stronger "external" shear would
/// outweigh the lens it perturbs (the survey recipe draws at most 0.13).
pub const MOST_SHEAR: f64 = 0.5;

/// The largest ellipticity modulus of the mass a fit may find: the cap the
/// parametrisation puts on every ellipse (axis ratio 0.053).
pub const MOST_ELLIPTICITY: f64 = 0.9;

/// chi of every pixel at a step beyond the envelope: far above any fit's, so the
/// step is refused.
const OUTSIDE_ENVELOPE_RESIDUAL: f64 = 1e6;

/// Whether an SIE + shear is a galaxy-scale lens a smooth-lens fit of a cutout of
/// `size` pixels of `pixel_scale` arcsec may end on: an Einstein radius of at least
/// one pixel and at most the cutout's side, a mass ellipticity of at most
/// [`MOST_ELLIPTICITY`], a shear of at most [`MOST_SHEAR`]. Beyond them a fit has
/// stopped modelling a lens: blind fits of faint arcs ran away to Einstein radii of
/// 1e-158" and 6e8" and shears of 400, and answered at chance (RESULTS.md, "The
/// lens model of the smooth-lens fit").
pub fn lens_within_envelope(theta_e: f64, ellipticity: f64, shear: f64, pixel_scale: f64, size: usize) -> bool {
    // Grown by a hair: an ellipticity capped at 0.9 comes back a rounding above it.
    within_envelope_shrunk_by(-1e-9, theta_e, ellipticity, shear, pixel_scale, size)
}

/// Whether the fitted lens `params` lies inside the envelope of
/// [`lens_within_envelope`] by more than 1% of each bound: a fit that ends on its edge
/// was held there by it, and found no lens inside.
pub fn lens_clear_of_envelope(params: &ImageParams, pixel_scale: f64, size: usize) -> bool {
    let (ellipticity, shear) = (params.lens_e1.hypot(params.lens_e2), params.shear_gamma1.hypot(params.shear_gamma2));
    within_envelope_shrunk_by(0.01, params.lens_theta_e, ellipticity, shear, pixel_scale, size)
}

/// The envelope's test with each bound moved inwards by the fraction `shrink`.
fn within_envelope_shrunk_by(
    shrink: f64,
    theta_e: f64,
    ellipticity: f64,
    shear: f64,
    pixel_scale: f64,
    size: usize,
) -> bool {
    let (low, high) = (1.0 + shrink, 1.0 - shrink);
    (pixel_scale * low..=pixel_scale * size as f64 * high).contains(&theta_e)
        && ellipticity <= MOST_ELLIPTICITY * high
        && shear <= MOST_SHEAR * high
}

/// Each pixel's chi^2 weight, 1 / variance; pixels of no variance are left out.
fn inverse_variance(variance: &[f64]) -> Vec<f64> {
    variance.iter().map(|v| if *v > 0.0 { v.recip() } else { 0.0 }).collect()
}

fn norm(residuals: &[f64]) -> f64 {
    residuals.iter().map(|r| r * r).sum::<f64>().sqrt()
}

/// The least-squares problem: residuals (I - I_smooth(x)) / sigma per pixel.
struct Problem<'a> {
    sim: &'a Simulator,
    class_idx: usize,
    camera: Camera,
    fitted: Fitted,
    /// Everything that is not refitted (PSF, exposure, maybe the light), no substructure.
    smooth: ImageParams,
    target: &'a [f64],
    inverse_sigma: Vec<f64>,
    x: DVector<f64>,
    /// The render at `x`, in parts: the Jacobian's renders each move one parameter
    /// and redo only the part of the scene it belongs to.
    render: Option<LayeredRender>,
    /// The residuals at `x`.
    residuals: Vec<f64>,
    renders: std::cell::Cell<usize>,
}

impl<'a> Problem<'a> {
    /// The problem of fitting `data` weighted by 1 / `variance` from `start`, its
    /// parameters set there.
    fn at(
        sim: &'a Simulator,
        class_idx: usize,
        start: ImageParams,
        data: &'a Image,
        variance: &[f64],
        fitted: Fitted,
    ) -> Problem<'a> {
        assert_eq!(variance.len(), data.pixels.len(), "one variance per pixel");
        let inverse_sigma = variance.iter().map(|v| if *v > 0.0 { v.sqrt().recip() } else { 0.0 }).collect();
        let mut problem = Problem {
            sim,
            class_idx,
            camera: sim.camera(&start),
            fitted,
            x: DVector::zeros(fitted.n_params()),
            smooth: start,
            target: &data.pixels,
            inverse_sigma,
            render: None,
            residuals: Vec::new(),
            renders: std::cell::Cell::new(0),
        };
        let x0 = encode(&problem.smooth, fitted);
        problem.set_params(&x0);
        problem
    }

    /// The render at `x`, from `near` where given (sharing the parts `x` leaves as
    /// they are there).
    fn render_at(&self, x: &DVector<f64>, near: Option<&LayeredRender>) -> LayeredRender {
        self.renders.set(self.renders.get() + 1);
        let scene = self.sim.scene(self.class_idx, &decode(x, &self.smooth, self.fitted));
        match near {
            Some(render) => render.rerender(&scene),
            None => scene.render_layered(&self.camera),
        }
    }

    /// Whether `x` is a lens a fit may find ([`lens_within_envelope`]).
    fn within_envelope(&self, x: &DVector<f64>) -> bool {
        let (theta_e, e, shear) = (x[0].exp(), x[1].hypot(x[2]), x[5].hypot(x[6]));
        lens_within_envelope(theta_e, e, shear, self.camera.grid.pixel_scale, self.camera.grid.size)
    }

    fn residuals_of(&self, render: &LayeredRender) -> Vec<f64> {
        let model = render.image();
        self.target
            .iter()
            .zip(&model.pixels)
            .zip(&self.inverse_sigma)
            .map(|((data, model), inverse_sigma)| (data - model) * inverse_sigma)
            .collect()
    }
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.x.copy_from(x);
        let render = self.render_at(x, None);
        self.residuals = self.residuals_of(&render);
        self.render = Some(render);
    }

    fn params(&self) -> DVector<f64> {
        self.x.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        // A step beyond the lenses a fit may find is refused as a step that made chi^2
        // far worse: the damping grows and a shorter step is tried.
        if !self.within_envelope(&self.x) {
            return Some(DVector::from_element(self.residuals.len(), OUTSIDE_ENVELOPE_RESIDUAL));
        }
        // A parameter the renderer cannot use makes the step fail, not the fit.
        self.residuals.iter().all(|r| r.is_finite()).then(|| DVector::from_column_slice(&self.residuals))
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let (rows, n_params) = (self.residuals.len(), self.fitted.n_params());
        // Column after column, as the matrix stores them (not zeroed first: ~700 KB a call).
        let mut columns = Vec::with_capacity(rows * n_params);
        for j in 0..n_params {
            let mut stepped = self.x.clone();
            stepped[j] += STEP;
            let shifted = self.residuals_of(&self.render_at(&stepped, self.render.as_ref()));
            columns.extend(shifted.iter().zip(&self.residuals).map(|(after, before)| (after - before) / STEP));
        }
        let jacobian = DMatrix::from_vec(rows, n_params, columns);
        jacobian.iter().all(|v| v.is_finite()).then_some(jacobian)
    }
}

fn encode(p: &ImageParams, fitted: Fitted) -> DVector<f64> {
    let mut x = vec![
        p.lens_theta_e.ln(),
        p.lens_e1,
        p.lens_e2,
        p.lens_center_x,
        p.lens_center_y,
        p.shear_gamma1,
        p.shear_gamma2,
        p.source_amp.ln(),
        p.source_r_sersic.ln(),
        p.source_n_sersic.ln(),
        p.source_e1,
        p.source_e2,
        p.source_x,
        p.source_y,
    ];
    if fitted.includes_light() {
        let l = p.lens_light.as_ref().expect("a fit of the light starts from a light");
        x.extend([l.amp.ln(), l.r_sersic.ln(), l.n_sersic.ln(), l.e1, l.e2, l.center_x, l.center_y]);
    }
    if fitted == Fitted::LensSourceLightAndVortex {
        let v = p.vortex.as_ref().expect("a fit of a vortex starts from a vortex");
        x.extend([v.total_mass.ln(), v.axion_mass.ln(), v.angle]);
    }
    DVector::from_vec(x)
}

/// `base` with the refitted parameters `x`; ellipticities capped so that any step
/// still describes an ellipse.
fn decode(x: &DVector<f64>, base: &ImageParams, fitted: Fitted) -> ImageParams {
    let (lens_e1, lens_e2) = capped_ellipticity(x[1], x[2]);
    let (source_e1, source_e2) = capped_ellipticity(x[10], x[11]);
    let lens_light = match &base.lens_light {
        Some(l) if fitted.includes_light() => {
            let (amp, r_sersic, n_sersic) = sersic_profile(x, 14);
            let (e1, e2) = capped_ellipticity(x[17], x[18]);
            Some(LensLightDraw { amp, r_sersic, n_sersic, e1, e2, center_x: x[19], center_y: x[20], ..l.clone() })
        }
        _ => base.lens_light.clone(),
    };
    let vortex = match &base.vortex {
        Some(v) if fitted == Fitted::LensSourceLightAndVortex => {
            Some(VortexDraw { total_mass: x[21].exp(), axion_mass: x[22].exp(), angle: x[23] })
        }
        _ => base.vortex.clone(),
    };
    let (source_amp, source_r_sersic, source_n_sersic) = sersic_profile(x, 7);
    ImageParams {
        lens_theta_e: x[0].exp(),
        lens_e1,
        lens_e2,
        lens_center_x: x[3],
        lens_center_y: x[4],
        shear_gamma1: x[5],
        shear_gamma2: x[6],
        source_amp,
        source_r_sersic,
        source_n_sersic,
        source_e1,
        source_e2,
        source_x: x[12],
        source_y: x[13],
        lens_light,
        vortex,
        ..base.clone()
    }
}

/// A Sersic profile's amplitude, radius and index from their logarithms at `x[at..]`,
/// the index kept where the profile is defined.
fn sersic_profile(x: &DVector<f64>, at: usize) -> (f64, f64, f64) {
    (x[at].exp(), x[at + 1].exp(), x[at + 2].exp().clamp(SERSIC_INDEX_RANGE.0, SERSIC_INDEX_RANGE.1))
}

#[cfg(test)]
mod tests;
