//! How much of a lens's substructure signal no smooth lens can imitate.
//!
//! `sub_snr` compares an image with the *same* lens rendered without its
//! substructure. A classifier never sees that lens: it has to tell the image from
//! *any* smooth lens, and a varied lens absorbs much of the signal (a vortex
//! inside the Einstein ring is mostly extra central mass and a quadrupole, i.e. a
//! slightly different Einstein radius, ellipticity and shear). `sub_snr_refit`
//! measures what is left: the smooth lens (SIE + external shear) and the Sersic
//! source are refitted to the noise-free image with substructure, weighted by the
//! noise, and the noise-weighted distance that remains is
//! sqrt(sum (I_sub - I_fit)^2 / sigma^2).
//!
//! The fit is MINPACK's Levenberg-Marquardt (the `levenberg-marquardt` crate) on
//! 14 parameters with a forward-difference Jacobian, started from the drawn
//! values; the deflector's light, the PSF and the instrument stay as drawn. From
//! that start it can only lower the distance, and it finds a local minimum, so
//! `sub_snr_refit` lies between the truly marginal detectability (the global
//! minimum over every smooth lens and source) and `sub_snr`: an upper bound of
//! what an observer who knows the smooth model family could see.
//!
//! [`fit_smooth_lens_blind`] fits the same family, the deflector's light included,
//! to a cutout from the cutout alone (what a lens modeller does before looking for
//! substructure in the residuals): a start from the central light's moments and a
//! grid of Einstein radii and source positions, then [`fit_smooth_lens`].
//!
//! [`fit_vortex`] looks for the recipe's axion vortex on top of such a fit: the
//! likelihood ratio of a vortex against no substructure, a matched filter that
//! searches where the vortex lies and how long it is (RESULTS.md, "A matched filter
//! for the vortex": it reads no more than the classifier of residuals).

use super::grid::Image;
use super::noise::{Noise, NoiseMap};
use super::psf::PsfKernel;
use super::scene::{Camera, LayeredRender};
use super::simulator::{capped_ellipticity, ImageParams, LensLightDraw, Simulator, VortexDraw};
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};
use std::sync::Arc;

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

/// The outcome of one smooth-lens refit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refit {
    /// sqrt(chi^2) between the image and the best smooth lens found.
    pub sub_snr_refit: f64,
    /// The same distance before the refit (the drawn smooth lens: `sub_snr`).
    pub sub_snr: f64,
    /// Image renders the fit used (residuals and Jacobian columns).
    pub renders: usize,
    /// The best smooth lens and source found (no substructure).
    pub params: ImageParams,
}

/// Refit the smooth lens and source of image `params` of class `class_idx` to its
/// noise-free render `noise_free` (before the output scale, as `simulate` renders
/// it), weighting each pixel by the expected noise variance. None without noise.
pub fn refit_smooth_lens(
    sim: &Simulator,
    class_idx: usize,
    params: &ImageParams,
    noise_free: &Image,
    noise: &Noise,
) -> Option<Refit> {
    let camera = sim.camera(params);
    let variance = noise.variance(noise_free, camera.grid.pixel_scale)?;
    let fit = fit_smooth_lens(sim, class_idx, params, noise_free, &variance, Fitted::LensAndSource);
    Some(Refit { sub_snr_refit: fit.chi, sub_snr: fit.chi_start, renders: fit.renders, params: fit.params })
}

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

/// Where [`fit_smooth_lens_blind`] starts looking: the Einstein radii and source
/// offsets (arcsec, from the light's centre, in x and in y) of its grid, at most
/// how many of the grid's best points it fits from, and how many more fits it runs
/// from the best one when noise alone does not explain what it leaves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlindGrid {
    /// Einstein radii tried, arcsec.
    pub theta_e: Vec<f64>,
    /// Source offsets tried along each axis, arcsec.
    pub source_offsets: Vec<f64>,
    /// Fits run from the grid's best points, in turn, until one leaves a chi^2 that
    /// noise alone explains (N + 4 sqrt(2N) for N weighted pixels).
    pub max_fits: usize,
    /// Fits run again from the best fit while its chi^2 stays above what noise
    /// explains and the last one lowered it by at least 1: a fit stops where its
    /// damping gives up, and a new start from there often goes on (one more fit
    /// lowered chi^2 by over 100 for 4% of survey lenses, RESULTS.md). Absent in
    /// the recipes of classifiers trained before it existed, which fit without it.
    #[serde(default)]
    pub polish_fits: usize,
    /// Fits run from moved copies of the best fit (`basin_hops`) while its chi^2
    /// stays above what noise explains: a local fit that stalled in a wrong basin
    /// does not leave it by polishing. Absent in the recipes of classifiers trained
    /// before it existed, which fit without it. Hops mend stalled fits, but they
    /// did not make a residual classifier's answers steadier on 16-bit copies of
    /// its cutouts (RESULTS.md, "Basin hops").
    #[serde(default)]
    pub basin_hops: usize,
    /// Fits run again from the best fit, each weighted by the noise variance of
    /// the model the fit before it found instead of the data's own: weighting a
    /// pixel by its data's variance gives one that fluctuated up less weight than
    /// one that fluctuated down (Neyman's chi^2), and the fitted fluxes come out
    /// low (the deflector's light 0.011-0.015 mag faint on the survey's held-out
    /// lenses, within 0.004 mag after one such fit; RESULTS.md, "Weighted by the
    /// model, not the data"). Absent in the recipes of classifiers trained before
    /// it existed, which fit without it.
    #[serde(default)]
    pub reweighted_fits: usize,
}

impl Default for BlindGrid {
    /// The `survey` recipe's lenses: theta_E 0.8-1.6", sources within 0.4" of the
    /// centre; 45 points, at most 4 fits, then at most 3 from the best; no basin
    /// hops (they did not make the bundled residual classifier's answers steadier
    /// on 16-bit copies, RESULTS.md "Basin hops"); one fit weighted by the best
    /// model's variance.
    fn default() -> Self {
        BlindGrid {
            theta_e: vec![0.8, 1.0, 1.2, 1.4, 1.6],
            source_offsets: vec![-0.25, 0.0, 0.25],
            max_fits: 4,
            polish_fits: 3,
            basin_hops: 0,
            reweighted_fits: 1,
        }
    }
}

/// Most fits of each kind a blind fit may run: each is ~0.1 s of a core, and a
/// recipe asking for billions (a checkpoint's metadata, `--basin-hops`) never ends.
pub const MAX_FITS: usize = 64;

impl BlindGrid {
    /// Refuses grids no fit can start from or no run finishes, naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        let check = crate::Error::check;
        let finite = |values: &[f64]| values.iter().all(|v| v.is_finite());
        check(
            !self.theta_e.is_empty() && finite(&self.theta_e) && self.theta_e.iter().all(|&t| t > 0.0),
            "theta_e",
            "needs Einstein radii, each a finite number > 0".into(),
        )?;
        check(
            !self.source_offsets.is_empty() && finite(&self.source_offsets),
            "source_offsets",
            "needs finite offsets".into(),
        )?;
        let points =
            self.theta_e.len().saturating_mul(self.source_offsets.len()).saturating_mul(self.source_offsets.len());
        check(points <= 10_000, "theta_e", format!("{points} grid points: at most 10,000"))?;
        for (key, fits) in [
            ("max_fits", self.max_fits),
            ("polish_fits", self.polish_fits),
            ("basin_hops", self.basin_hops),
            ("reweighted_fits", self.reweighted_fits),
        ] {
            check(fits <= MAX_FITS, key, format!("{fits}: at most {MAX_FITS}"))?;
        }
        check(self.max_fits >= 1, "max_fits", "must be at least 1".into())
    }
}

/// What a survey knows of a cutout besides its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The PSF's FWHM, arcsec (with `psf_kernel`, the kernel's Gaussian-equivalent one).
    pub psf_fwhm: f64,
    /// The cutout's PSF image at its pixels, when the survey has one: the fit renders
    /// with it in place of a Gaussian of `psf_fwhm`.
    pub psf_kernel: Option<Arc<PsfKernel>>,
    /// Total exposure time, s.
    pub exposure_time: Option<f64>,
}

impl Observation {
    /// How a simulated image was observed: its drawn PSF and exposure.
    pub fn of_drawn(params: &ImageParams) -> Self {
        Observation {
            psf_fwhm: params.psf_fwhm,
            psf_kernel: params.psf_kernel.clone(),
            exposure_time: params.exposure_time,
        }
    }
}

/// Fit the smooth lens (SIE + shear), the Sersic source and the deflector's
/// elliptical Sersic light to `data` from the cutout alone, weighting pixel i by
/// 1 / `variance[i]`. The light's centre and ellipticity start from the moments of
/// the central light (the mass starts on it, round shear); the Einstein radius and
/// the source position from the grid point whose linear fit of the two amplitudes
/// leaves the least chi^2, then the grid's polishing fits and basin hops from the
/// best one. `renders` counts the grid's renders too. A local minimum: of the
/// pipeline's held-out survey lenses about 5% ended more than 100 in chi^2 above
/// the fit started from the truth before the polishing fits (RESULTS.md,
/// "Conditioning on a smooth-lens fit"), and a cutout stored another way can land
/// in another one ("Blind fits that go on where they stopped", "Basin hops").
///
/// # Panics
/// If `variance` has not one entry per pixel of `data`.
pub fn fit_smooth_lens_blind(
    sim: &Simulator,
    observed: &Observation,
    data: &Image,
    variance: &[f64],
    grid: &BlindGrid,
) -> SmoothLensFit {
    assert_eq!(variance.len(), data.pixels.len(), "one variance per pixel");
    let weight = inverse_variance(variance);
    let starts = blind_starts(sim, observed, data, &weight, grid);
    let noise_only = {
        let n = weight.iter().filter(|w| **w > 0.0).count() as f64;
        n + 4.0 * (2.0 * n).sqrt()
    };
    let explained = |fit: &SmoothLensFit| fit.chi * fit.chi < noise_only;
    let mut renders = 1 + starts.len();
    let mut best: Option<SmoothLensFit> = None;
    for start in starts.iter().take(grid.max_fits.max(1)) {
        let fit = fit_smooth_lens(sim, SMOOTH_CLASS, start, data, variance, Fitted::LensSourceAndLight);
        renders += fit.renders;
        if best.as_ref().is_none_or(|b| fit.chi < b.chi) {
            best = Some(fit);
        }
        if best.as_ref().is_some_and(explained) {
            break;
        }
    }
    let best = best.expect("the grid has at least one point");
    // Polishing: a fit stops where its damping gives up, and a new start from the
    // same point often goes on.
    let polish = |mut best: SmoothLensFit, renders: &mut usize| {
        for _ in 0..grid.polish_fits {
            if explained(&best) {
                break;
            }
            let again = fit_smooth_lens(sim, SMOOTH_CLASS, &best.params, data, variance, Fitted::LensSourceAndLight);
            *renders += again.renders;
            let progress = best.chi * best.chi - again.chi * again.chi;
            // A fit never ends above its start, so `again` is at least as good.
            best = SmoothLensFit { chi_start: best.chi_start, ..again };
            if progress < LEAST_GAIN {
                break;
            }
        }
        best
    };
    let mut best = polish(best, &mut renders);
    // Basin hops: fits from moved copies of the best fit (`basin_hops`), in turn;
    // a hop that gains is polished, and the moves start again from it.
    let mut hops_left = grid.basin_hops;
    let mut moves = basin_hops(&best.params).into_iter();
    while hops_left > 0 && !explained(&best) {
        let Some(start) = moves.next() else { break };
        hops_left -= 1;
        let hop = fit_smooth_lens(sim, SMOOTH_CLASS, &start, data, variance, Fitted::LensSourceAndLight);
        renders += hop.renders;
        if hop.chi * hop.chi < best.chi * best.chi - LEAST_GAIN {
            best = polish(SmoothLensFit { chi_start: best.chi_start, ..hop }, &mut renders);
            moves = basin_hops(&best.params).into_iter();
        }
    }
    best.renders = renders;
    best
}

/// Where [`fit_vortex`] looks: every half-length (arcsec) at every angle (radians)
/// of a vortex through the fitted lens's centre, each scored by a linear matched
/// filter with a vortex of `probe_mass` (Msun), and how many of the best it fits
/// from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VortexGrid {
    /// Half-lengths tried, arcsec.
    pub half_lengths: Vec<f64>,
    /// Angles of the line tried, radians (a line repeats after pi).
    pub angles: Vec<f64>,
    /// The mass of the vortex whose image change is the filter's template, Msun:
    /// small enough that the change is linear in the mass.
    pub probe_mass: f64,
    /// Fits run from the best-scored starts.
    pub max_fits: usize,
}

impl Default for VortexGrid {
    /// The `survey` recipe's vortices: half-lengths 0.03-3" (log-uniform), 1e10-5e10
    /// Msun; seven half-lengths at eight angles, the best two fitted.
    fn default() -> Self {
        VortexGrid {
            half_lengths: vec![0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.0],
            angles: (0..8).map(|i| i as f64 * std::f64::consts::PI / 8.0).collect(),
            probe_mass: 1e9,
            max_fits: 2,
        }
    }
}

/// The outcome of [`fit_vortex`].
#[derive(Debug, Clone, PartialEq)]
pub struct VortexFit {
    /// The best lens found: with its vortex, or the smooth fit where no vortex helps.
    pub params: ImageParams,
    /// sqrt(chi^2) of the smooth fit it started from.
    pub chi_smooth: f64,
    /// sqrt(chi^2) of the best fit with a vortex (at most `chi_smooth`: where no
    /// vortex helps, the smooth fit stands).
    pub chi: f64,
    /// Image renders the search used.
    pub renders: usize,
}

impl VortexFit {
    /// How much a vortex lowers chi^2 below the best smooth lens: the likelihood
    /// ratio statistic of "a vortex" against "no substructure".
    pub fn delta_chi2(&self) -> f64 {
        self.chi_smooth * self.chi_smooth - self.chi * self.chi
    }
}

/// Look for an axion vortex of class `vortex_class` in `data` on top of the smooth
/// fit `smooth` (a [`fit_smooth_lens_blind`] of the same cutout with the same
/// `variance`). Every (half-length, angle) of `grid` is scored by the linear
/// matched filter of the image change a light vortex makes, g: the chi^2 it
/// removes at its best positive mass, (sum w r g)^2 / sum w g^2 for the smooth
/// fit's residual r; the best `max_fits` are fitted from that mass with the lens,
/// source, light and vortex all free. What an observer who knew the vortex's form,
/// but not where or how long it is, would compute.
///
/// # Panics
/// If `vortex_class` is not a vortex class, `smooth` has no light, or `variance`
/// has not one entry per pixel of `data`.
pub fn fit_vortex(
    sim: &Simulator,
    vortex_class: usize,
    smooth: &SmoothLensFit,
    data: &Image,
    variance: &[f64],
    grid: &VortexGrid,
) -> VortexFit {
    let length_constant = sim.vortex_length_constant(vortex_class).expect("a vortex class");
    let camera = sim.camera(&smooth.params);
    let weight = inverse_variance(variance);
    let model = sim.scene(vortex_class, &smooth.params).render_with(&camera, None);
    let residual: Vec<f64> = data.pixels.iter().zip(&model.pixels).map(|(d, m)| d - m).collect();
    let mut scored = Vec::new();
    for &half_length in &grid.half_lengths {
        for &angle in &grid.angles {
            let mut start = smooth.params.clone();
            let axion_mass = length_constant / half_length;
            start.vortex = Some(VortexDraw { total_mass: grid.probe_mass, axion_mass, angle });
            let with_vortex = sim.scene(vortex_class, &start).render_with(&camera, None);
            let (mut rg, mut gg) = (0.0, 0.0);
            for (((v, m), r), w) in with_vortex.pixels.iter().zip(&model.pixels).zip(&residual).zip(&weight) {
                let g = v - m;
                rg += w * r * g;
                gg += w * g * g;
            }
            if rg > 0.0 && gg > 0.0 {
                let mass = grid.probe_mass * rg / gg;
                start.vortex = Some(VortexDraw { total_mass: mass, axion_mass, angle });
                scored.push((rg * rg / gg, start));
            }
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = VortexFit {
        params: smooth.params.clone(),
        chi_smooth: smooth.chi,
        chi: smooth.chi,
        renders: 1 + grid.half_lengths.len() * grid.angles.len(),
    };
    for (_, start) in scored.into_iter().take(grid.max_fits) {
        let fit = fit_vortex_from(sim, vortex_class, smooth, start, data, variance);
        best.renders += fit.renders;
        if fit.chi < best.chi {
            (best.params, best.chi) = (fit.params, fit.chi);
        }
    }
    best
}

/// The fit of [`fit_vortex`] from one `start` (a lens with a vortex of class
/// `vortex_class`), against the smooth fit `smooth` of the same `data`.
///
/// # Panics
/// If `start` has no vortex or no light, or `variance` has not one entry per
/// pixel of `data`.
pub fn fit_vortex_from(
    sim: &Simulator,
    vortex_class: usize,
    smooth: &SmoothLensFit,
    start: ImageParams,
    data: &Image,
    variance: &[f64],
) -> VortexFit {
    let fit = fit_lens(sim, vortex_class, start, data, variance, Fitted::LensSourceLightAndVortex);
    let (params, chi) = if fit.chi < smooth.chi { (fit.params, fit.chi) } else { (smooth.params.clone(), smooth.chi) };
    VortexFit { params, chi_smooth: smooth.chi, chi, renders: fit.renders }
}

/// Where a basin hop starts from a stalled fit, in the order tried: the source
/// reset to the grid's compact round start where it sits, the Einstein radius 15%
/// larger and smaller, the source mirrored through the lens centre, the lens made
/// round with no shear, and the lens's ellipticity turned by 90 degrees. Chosen,
/// and ordered by how often each took a stalled fit to a better basin, on the
/// stalled fits of 16-bit copies of survey lenses (RESULTS.md, "Basin hops"): the
/// source reset most often.
fn basin_hops(best: &ImageParams) -> [ImageParams; 6] {
    let moved = |change: &dyn Fn(&mut ImageParams)| {
        let mut p = best.clone();
        change(&mut p);
        p
    };
    [
        moved(&|p| {
            (p.source_r_sersic, p.source_n_sersic) = START_SOURCE_SHAPE;
            (p.source_e1, p.source_e2) = (0.0, 0.0);
        }),
        moved(&|p| p.lens_theta_e *= 1.15),
        moved(&|p| p.lens_theta_e *= 0.85),
        moved(&|p| {
            p.source_x = 2.0 * p.lens_center_x - p.source_x;
            p.source_y = 2.0 * p.lens_center_y - p.source_y;
        }),
        moved(&|p| (p.lens_e1, p.lens_e2, p.shear_gamma1, p.shear_gamma2) = (0.0, 0.0, 0.0, 0.0)),
        moved(&|p| (p.lens_e1, p.lens_e2) = (-p.lens_e1, -p.lens_e2)),
    ]
}

/// The blind fit's source at its start: half-light radius (arcsec) and Sersic
/// index of a compact, typical survey source.
const START_SOURCE_SHAPE: (f64, f64) = (0.25, 1.5);

/// The least drop in chi^2 the blind fit counts as progress, both for running
/// another polishing fit and for taking a basin hop: a fit that gained less has
/// settled where it is.
const LEAST_GAIN: f64 = 1.0;

/// A smooth lens has no substructure, so any class renders it.
const SMOOTH_CLASS: usize = 0;

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
    pub simulator: super::config::SimConfig,
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

/// The grid's starts, best first.
fn blind_starts(
    sim: &Simulator,
    observed: &Observation,
    data: &Image,
    weight: &[f64],
    grid: &BlindGrid,
) -> Vec<ImageParams> {
    let pixel_scale = sim.config().image.pixel_scale;
    let (cx, cy, e1, e2) = light_moments(data, pixel_scale);
    let guess = ImageParams {
        lens_theta_e: 1.0,
        lens_e1: e1,
        lens_e2: e2,
        lens_center_x: cx,
        lens_center_y: cy,
        shear_gamma1: 0.0,
        shear_gamma2: 0.0,
        source_amp: 1.0,
        source_magnitude: None,
        source_r_sersic: START_SOURCE_SHAPE.0,
        source_n_sersic: START_SOURCE_SHAPE.1,
        source_e1: 0.0,
        source_e2: 0.0,
        source_x: cx,
        source_y: cy,
        psf_fwhm: observed.psf_fwhm,
        psf_beta: None,
        exposure_time: observed.exposure_time,
        subhalos: Vec::new(),
        vortex: None,
        // Magnitudes are not fitted; the renderer reads the amplitude.
        lens_light: Some(LensLightDraw {
            magnitude: f64::NAN,
            amp: 0.0,
            r_sersic: 0.7,
            n_sersic: 4.0,
            e1,
            e2,
            center_x: cx,
            center_y: cy,
        }),
        neighbour: None,
        psf_kernel: observed.psf_kernel.clone(),
    };
    let camera = sim.camera(&guess);
    let mut light_only = guess.clone();
    light_only.source_amp = 0.0;
    light_only.lens_light.as_mut().expect("set above").amp = 1.0;
    let light = sim.scene(SMOOTH_CLASS, &light_only).render_with(&camera, None);
    let mut scored = Vec::new();
    for &theta_e in &grid.theta_e {
        for &dx in &grid.source_offsets {
            for &dy in &grid.source_offsets {
                let mut start = guess.clone();
                (start.lens_theta_e, start.source_x, start.source_y) = (theta_e, cx + dx, cy + dy);
                let source = sim.scene(SMOOTH_CLASS, &start).render_with(&camera, None);
                let (a, b, chi2) = two_amplitudes(&data.pixels, &light.pixels, &source.pixels, weight);
                start.source_amp = b;
                start.lens_light.as_mut().expect("set above").amp = a;
                scored.push((chi2, start));
            }
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, start)| start).collect()
}

/// The light-weighted centre (arcsec) and ellipticity (lenstronomy's e = (1 - q) /
/// (1 + q), from the second moments' (1 - q^2) / (1 + q^2)) of the light within
/// 0.4" (centre, three passes) and 0.5" (shape) of the cutout's centre.
fn light_moments(data: &Image, pixel_scale: f64) -> (f64, f64, f64, f64) {
    let half = (data.size as f64 - 1.0) / 2.0;
    let coordinate = |i: usize| (i as f64 - half) * pixel_scale;
    let moments = |cx: f64, cy: f64, radius: f64| {
        let mut m = [0.0; 6]; // w, x, y, xx, yy, xy
        for row in 0..data.size {
            for col in 0..data.size {
                let (dx, dy) = (coordinate(col) - cx, coordinate(row) - cy);
                if dx * dx + dy * dy < radius * radius {
                    let v = data.pixels[row * data.size + col].max(0.0);
                    m[0] += v;
                    m[1] += v * dx;
                    m[2] += v * dy;
                    m[3] += v * dx * dx;
                    m[4] += v * dy * dy;
                    m[5] += v * dx * dy;
                }
            }
        }
        m
    };
    let (mut cx, mut cy) = (0.0, 0.0);
    for _ in 0..3 {
        let [w, x, y, ..] = moments(cx, cy, 0.4);
        if w > 0.0 {
            cx += x / w;
            cy += y / w;
        }
    }
    let [_, _, _, xx, yy, xy] = moments(cx, cy, 0.5);
    if xx + yy <= 0.0 {
        return (cx, cy, 0.0, 0.0);
    }
    let (chi1, chi2) = ((xx - yy) / (xx + yy), 2.0 * xy / (xx + yy));
    let chi = chi1.hypot(chi2).min(0.95);
    if chi < 1e-9 {
        return (cx, cy, 0.0, 0.0);
    }
    // e = (1 - sqrt(1 - chi^2)) / chi along the same direction.
    let scale = (1.0 - (1.0 - chi * chi).sqrt()) / chi / chi1.hypot(chi2);
    (cx, cy, chi1 * scale, chi2 * scale)
}

/// Weighted least squares of data ~ a * light + b * source: (a, b, chi^2), both
/// amplitudes kept positive (the fit works in their logarithms).
fn two_amplitudes(data: &[f64], light: &[f64], source: &[f64], weight: &[f64]) -> (f64, f64, f64) {
    let (mut ll, mut ss, mut ls, mut ld, mut sd) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..data.len() {
        let w = weight[i];
        ll += w * light[i] * light[i];
        ss += w * source[i] * source[i];
        ls += w * light[i] * source[i];
        ld += w * light[i] * data[i];
        sd += w * source[i] * data[i];
    }
    let det = ll * ss - ls * ls;
    let (a, b) = if det > 0.0 { ((ld * ss - sd * ls) / det, (sd * ll - ld * ls) / det) } else { (1.0, 1.0) };
    let (a, b) = (a.max(1e-3), b.max(1e-3));
    let chi2 = (0..data.len()).map(|i| weight[i] * (data[i] - a * light[i] - b * source[i]).powi(2)).sum();
    (a, b, chi2)
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
mod tests {
    use super::*;
    use crate::sim::presets::preset;
    use rand::SeedableRng;

    fn survey() -> Simulator {
        Simulator::new(preset("survey").unwrap()).unwrap()
    }

    /// Lens `id` of `seed` (class id % 3) as `simulate` stores it (float32), its
    /// observation and the noise variance the blind fit weights it by.
    fn stored_survey_lens(sim: &Simulator, seed: u64, id: u64) -> (Image, Observation, Vec<f64>) {
        let drawn = sim.simulate(id as usize % 3, seed, id);
        let data = drawn.image.rounded_to_f32();
        let observed = Observation::of_drawn(&drawn.params);
        let variance = sim.noise_at(observed.exposure_time).variance(&data, sim.config().image.pixel_scale).unwrap();
        (data, observed, variance)
    }

    fn class(sim: &Simulator, name: &str) -> usize {
        sim.class_names().iter().position(|c| c == name).unwrap()
    }

    /// A `no_sub` lens of `seed` and its noise-free image: (class index, lens, image).
    fn smooth_lens(sim: &Simulator, seed: u64) -> (usize, ImageParams, Image) {
        let no_sub = class(sim, "no_sub");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let truth = sim.sample_params(no_sub, &mut rng);
        let image = sim.scene(no_sub, &truth).render_with(&sim.camera(&truth), None);
        (no_sub, truth, image)
    }

    #[test]
    fn a_smooth_lens_is_found_again_from_a_displaced_start() {
        // The image of a smooth lens, refitted from a smooth lens a little off: the
        // fit must find the image's lens (chi^2 from thousands down to ~0).
        let sim = survey();
        let (no_sub, truth, image) = smooth_lens(&sim, 5);
        let mut start = truth.clone();
        start.lens_theta_e *= 1.02;
        start.lens_e1 += 0.02;
        start.shear_gamma2 -= 0.01;
        start.source_x += 0.02;
        start.source_r_sersic *= 1.05;
        let refit = refit_smooth_lens(&sim, no_sub, &start, &image, &sim.noise(&truth)).unwrap();
        assert!(refit.sub_snr > 10.0, "the displaced start must be far off: {}", refit.sub_snr);
        assert!(refit.sub_snr_refit < 0.05, "left {} of {}", refit.sub_snr_refit, refit.sub_snr);
        assert!((refit.params.lens_theta_e - truth.lens_theta_e).abs() < 1e-3);
        assert!((refit.params.source_x - truth.source_x).abs() < 1e-3);
    }

    #[test]
    fn a_smooth_lens_and_its_light_are_found_again_from_a_displaced_start() {
        let sim = survey();
        let (no_sub, truth, image) = smooth_lens(&sim, 7);
        let variance = sim.noise(&truth).variance(&image, sim.config().image.pixel_scale).unwrap();
        let mut start = truth.clone();
        start.lens_theta_e *= 0.98;
        start.source_y -= 0.02;
        let light = start.lens_light.as_mut().unwrap();
        light.amp *= 1.1;
        light.r_sersic *= 0.95;
        light.center_x += 0.01;
        let fit = fit_smooth_lens(&sim, no_sub, &start, &image, &variance, Fitted::LensSourceAndLight);
        assert!(fit.chi_start > 10.0, "the displaced start must be far off: {}", fit.chi_start);
        assert!(fit.chi < 0.05, "left {} of {}", fit.chi, fit.chi_start);
        let (found, drawn) = (fit.params.lens_light.unwrap(), truth.lens_light.unwrap());
        assert!((found.amp / drawn.amp - 1.0).abs() < 1e-3, "{} vs {}", found.amp, drawn.amp);
        assert!((found.center_x - drawn.center_x).abs() < 1e-3);
        // Fitting only the lens and source leaves the light's error in the residuals.
        let without_light = fit_smooth_lens(&sim, no_sub, &start, &image, &variance, Fitted::LensAndSource);
        assert!(without_light.chi > 1.0, "{}", without_light.chi);
    }

    #[test]
    fn a_noisy_smooth_lens_is_fitted_from_the_cutout_alone() {
        // Nothing of the truth but the PSF and exposure: the blind fit must explain the
        // cutout as well as the fit started from the drawn lens, down to the noise.
        let sim = survey();
        let no_sub = class(&sim, "no_sub");
        for seed in [3, 4] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let truth = sim.sample_params(no_sub, &mut rng);
            let mut data = sim.scene(no_sub, &truth).render_with(&sim.camera(&truth), None);
            let noise = sim.noise(&truth);
            noise.apply(&mut data, sim.config().image.pixel_scale, &mut rng);
            let variance = noise.variance(&data, sim.config().image.pixel_scale).unwrap();
            let observed = Observation::of_drawn(&truth);
            let blind = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &BlindGrid::default());
            let from_truth = fit_smooth_lens(&sim, no_sub, &truth, &data, &variance, Fitted::LensSourceAndLight);
            let n = data.pixels.len() as f64;
            assert!(
                blind.chi_start.powi(2) > n + 100.0,
                "seed {seed}: the grid's start must be off: {}",
                blind.chi_start
            );
            assert!(
                blind.chi.powi(2) < from_truth.chi.powi(2) + 10.0,
                "seed {seed}: {} vs {}",
                blind.chi,
                from_truth.chi
            );
            let ratio = blind.params.lens_theta_e / truth.lens_theta_e;
            assert!(
                (ratio - 1.0).abs() < 0.05,
                "seed {seed}: theta_E {} vs {}",
                blind.params.lens_theta_e,
                truth.lens_theta_e
            );
            assert!(blind.renders > BlindGrid::default().theta_e.len() * 9);
        }
    }

    #[test]
    fn the_reweighted_fit_finds_the_deflector_light_that_weighting_by_the_data_finds_faint() {
        // Weighting each pixel by its data's variance favours those that fluctuated
        // down: at a short exposure (300 s, few electrons a pixel) the deflector's
        // fitted light comes out ~0.09 mag faint; weighted by the fitted model's
        // variance it comes out brighter on every lens, and within the noise of the
        // drawn magnitude on average (-0.03 +- 0.04 mag).
        let sim = survey();
        let no_sub = class(&sim, "no_sub");
        let magnitude = |p: &ImageParams| {
            let light = p.lens_light.as_ref().expect("the survey draws the deflector's light");
            sim.magnitude_of_amplitude(light.amp, light.r_sersic, light.n_sersic).unwrap()
        };
        let lenses = 6;
        let (mut by_data, mut reweighted) = (Vec::new(), Vec::new());
        for seed in 0..lenses {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(60 + seed);
            let mut truth = sim.sample_params(no_sub, &mut rng);
            truth.exposure_time = Some(300.0);
            let mut data = sim.scene(no_sub, &truth).render_with(&sim.camera(&truth), None);
            sim.noise(&truth).apply(&mut data, sim.config().image.pixel_scale, &mut rng);
            let observed = Observation::of_drawn(&truth);
            let fit = |reweighted_fits| {
                let grid = BlindGrid { reweighted_fits, ..BlindGrid::default() };
                smooth_lens_residual(&sim, &observed, &data, None, &grid).unwrap().fit.params
            };
            by_data.push(magnitude(&fit(0)) - magnitude(&truth));
            reweighted.push(magnitude(&fit(1)) - magnitude(&truth));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        eprintln!(
            "deflector, fit - drawn: {:+.3} mag by the data, {:+.3} by the model",
            mean(&by_data),
            mean(&reweighted)
        );
        assert!(mean(&by_data) > 0.05, "{by_data:?}");
        assert!(mean(&reweighted).abs() < 0.05, "{reweighted:?}");
        assert!(by_data.iter().zip(&reweighted).all(|(d, r)| d > r), "{by_data:?} vs {reweighted:?}");
    }

    #[test]
    fn the_fits_covariance_predicts_how_far_noise_moves_the_fit() {
        // One smooth lens, many noise realisations, each fitted blind as `predict` fits: the
        // spread of the fitted Einstein radius, shear and deflector magnitude over the
        // realisations is what the covariance of one fit says, to the ~10% a spread of 48
        // draws resolves (the ratios are printed: `cargo test --release --lib
        // fits_covariance -- --nocapture`).
        let sim = survey();
        let (_, truth, image) = smooth_lens(&sim, 5);
        let noise = sim.noise(&truth);
        let observed = Observation::of_drawn(&truth);
        let magnitude = |p: &ImageParams| {
            let light = p.lens_light.as_ref().unwrap();
            sim.magnitude_of_amplitude(light.amp, light.r_sersic, light.n_sersic).unwrap()
        };
        let quantities = |p: &ImageParams| [p.lens_theta_e, p.shear_gamma1.hypot(p.shear_gamma2), magnitude(p)];
        let draws = 48;
        let (mut fitted, mut predicted) = (Vec::new(), Vec::new());
        for draw in 0..draws {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(900 + draw);
            let mut data = image.clone();
            noise.apply(&mut data, sim.config().image.pixel_scale, &mut rng);
            let residual = smooth_lens_residual(&sim, &observed, &data, None, &BlindGrid::default()).unwrap();
            let covariance = residual.covariance(&sim, &data).unwrap();
            let fit = residual.fit;
            fitted.push(quantities(&fit.params));
            predicted.push(covariance.stds_of(quantities).map(Option::unwrap));
        }
        for (k, name) in ["theta_E", "shear", "deflector magnitude"].iter().enumerate() {
            let values: Vec<f64> = fitted.iter().map(|v| v[k]).collect();
            let mean = values.iter().sum::<f64>() / draws as f64;
            let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (draws - 1) as f64).sqrt();
            let error = predicted.iter().map(|e| e[k]).sum::<f64>() / draws as f64;
            eprintln!("{name}: spread over the realisations / predicted error {:.2}", spread / error);
            assert!((0.7..1.4).contains(&(spread / error)), "{name}: spread {spread:.3e}, predicted {error:.3e}");
        }
    }

    #[test]
    fn the_blind_fit_goes_on_from_where_its_damping_gave_up() {
        // Lens 27 of the survey preset's seed 22 (an `axion` lens): the best of the
        // grid's fits stops at chi^2 ~ 48,900; one more fit from there reaches ~9,600
        // (`examples/fit_stability.rs`).
        let sim = survey();
        let (data, observed, variance) = stored_survey_lens(&sim, 22, 27);
        let unpolished = BlindGrid { polish_fits: 0, ..BlindGrid::default() };
        let stopped = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &unpolished);
        let polished = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &BlindGrid::default());
        assert!(stopped.chi.powi(2) > 40_000.0, "{}", stopped.chi.powi(2));
        assert!(polished.chi.powi(2) < 12_000.0, "{}", polished.chi.powi(2));
        assert!(polished.renders > stopped.renders);
        assert_eq!(polished.chi_start, stopped.chi_start, "the start is the grid's");
    }

    #[test]
    fn recipes_written_before_polishing_fit_without_it() {
        let old = r#"{"theta_e":[0.8,1.0],"source_offsets":[0.0],"max_fits":4}"#;
        let grid: BlindGrid = serde_json::from_str(old).unwrap();
        assert_eq!((grid.polish_fits, grid.basin_hops), (0, 0));
    }

    #[test]
    fn a_basin_hop_takes_a_stalled_fit_to_the_noise() {
        // Lens 2897 of the survey preset's seed 22 (a `no_sub` lens): the grid and
        // polishing stall at chi^2 ~ 2.4 N; six hops reach the noise
        // (`examples/hop_probe.rs`). (Lens 80 of seed 16, this test's lens before the
        // fit was held among galaxy-scale lenses, no longer stalls.)
        let sim = survey();
        let (data, observed, variance) = stored_survey_lens(&sim, 22, 2897);
        let n = data.pixels.len() as f64;
        let stalled = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &BlindGrid::default());
        let hops = BlindGrid { basin_hops: 6, ..BlindGrid::default() };
        let hopped = fit_smooth_lens_blind(&sim, &observed, &data, &variance, &hops);
        assert!(stalled.chi.powi(2) > 2.0 * n, "{}", stalled.chi.powi(2) / n);
        assert!(hopped.chi.powi(2) < 1.05 * n, "{}", hopped.chi.powi(2) / n);
        assert_eq!(hopped.chi_start, stalled.chi_start, "the start is the grid's");
    }

    #[test]
    fn grids_no_fit_starts_from_or_no_run_finishes_are_refused_by_field() {
        BlindGrid::default().validate().unwrap();
        let refused = |grid: BlindGrid| grid.validate().unwrap_err().to_string();
        assert!(refused(BlindGrid { max_fits: 1 << 31, ..Default::default() }).contains("`max_fits`"));
        assert!(refused(BlindGrid { basin_hops: 65, ..Default::default() }).contains("`basin_hops`"));
        assert!(refused(BlindGrid { theta_e: vec![f64::NAN], ..Default::default() }).contains("`theta_e`"));
        assert!(refused(BlindGrid { source_offsets: vec![0.0; 101], ..Default::default() }).contains("grid points"));
    }

    #[test]
    fn light_moments_find_an_offset_elliptical_galaxy() {
        let sim = survey();
        let no_sub = class(&sim, "no_sub");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut params = sim.sample_params(no_sub, &mut rng);
        params.source_amp = 0.0;
        let light = params.lens_light.as_mut().unwrap();
        (light.center_x, light.center_y, light.e1, light.e2, light.r_sersic) = (0.1, -0.05, 0.2, -0.1, 0.3);
        let image = sim.scene(no_sub, &params).render_with(&sim.camera(&params), None);
        let (cx, cy, e1, e2) = light_moments(&image, sim.config().image.pixel_scale);
        assert!((cx - 0.1).abs() < 0.01 && (cy + 0.05).abs() < 0.01, "centre ({cx}, {cy})");
        // The PSF and the aperture round the light: the direction is kept, the size is not.
        assert!(e1 > 0.05 && e2 < -0.02 && (e2 / e1 + 0.5).abs() < 0.15, "e ({e1}, {e2})");
    }

    #[test]
    fn two_amplitudes_solve_the_linear_fit() {
        let light = [1.0, 2.0, 0.0, 1.0];
        let source = [0.0, 1.0, 3.0, 1.0];
        let data: Vec<f64> = light.iter().zip(&source).map(|(l, s)| 2.0 * l + 0.5 * s).collect();
        let (a, b, chi2) = two_amplitudes(&data, &light, &source, &[1.0; 4]);
        assert!((a - 2.0).abs() < 1e-12 && (b - 0.5).abs() < 1e-12 && chi2 < 1e-20, "{a} {b} {chi2}");
        // A negative best amplitude (here -0.5) is held at the floor the log-parameter fit needs.
        let less_source: Vec<f64> = light.iter().zip(&source).map(|(l, s)| l - 0.5 * s).collect();
        let (_, b, _) = two_amplitudes(&less_source, &light, &source, &[1.0; 4]);
        assert!(b > 0.0);
    }

    #[test]
    fn the_refit_never_exceeds_sub_snr_and_a_central_vortex_is_absorbed() {
        let sim = survey();
        let axion = class(&sim, "axion");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut params = sim.sample_params(axion, &mut rng);
        // A short vortex well inside the Einstein ring: extra central mass, which a
        // larger Einstein radius imitates.
        params.vortex.as_mut().unwrap().axion_mass = 1e-22; // half-length 0.03"
        let image = sim.scene(axion, &params).render_with(&sim.camera(&params), None);
        let noise = sim.noise(&params);
        let refit = refit_smooth_lens(&sim, axion, &params, &image, &noise).unwrap();
        let sub_snr = sim.sub_snr(axion, &params, &image, &noise).unwrap();
        assert!((refit.sub_snr - sub_snr).abs() < 1e-9 * sub_snr, "{} vs {sub_snr}", refit.sub_snr);
        assert!(refit.sub_snr_refit <= refit.sub_snr);
        assert!(refit.sub_snr_refit < 0.2 * sub_snr, "{} of {sub_snr} left", refit.sub_snr_refit);
        assert!(refit.params.lens_theta_e > params.lens_theta_e);
    }

    #[test]
    fn the_vortex_filter_finds_a_long_vortex_that_no_smooth_lens_imitates_and_none_in_a_smooth_lens() {
        let sim = survey();
        let axion = class(&sim, "axion");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut truth = sim.sample_params(axion, &mut rng);
        // A vortex through the ring, 1.5" each side: nothing smooth imitates it.
        let vortex = truth.vortex.as_mut().unwrap();
        (vortex.axion_mass, vortex.total_mass) = (2e-24, 4e10);
        let camera = sim.camera(&truth);
        let noise = sim.noise(&truth);
        let smooth_truth = ImageParams { vortex: None, ..truth.clone() };
        for (params, has_vortex) in [(&truth, true), (&smooth_truth, false)] {
            let image = sim.scene(axion, params).render_with(&camera, None);
            let variance = noise.variance(&image, camera.grid.pixel_scale).unwrap();
            let smooth = fit_smooth_lens(&sim, axion, params, &image, &variance, Fitted::LensSourceAndLight);
            let found = fit_vortex(&sim, axion, &smooth, &image, &variance, &VortexGrid::default());
            assert!(found.chi <= found.chi_smooth && found.delta_chi2() >= 0.0);
            if has_vortex {
                assert!(smooth.chi > 10.0, "the smooth fit leaves {}", smooth.chi);
                assert!(found.chi < 0.3 * smooth.chi, "{} of {} left", found.chi, smooth.chi);
                let v = found.params.vortex.as_ref().unwrap();
                assert!((v.axion_mass / 2e-24).ln().abs() < 0.3, "half-length {}", 3e-24 / v.axion_mass);
            } else {
                assert!(found.delta_chi2() < 1.0, "a vortex lowers chi^2 by {}", found.delta_chi2());
            }
        }
    }

    #[test]
    fn noise_free_recipes_have_no_refit() {
        let sim = Simulator::new(preset("deeplense-model2").unwrap()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let params = sim.sample_params(0, &mut rng);
        let image = sim.render_noise_free(0, &params);
        assert_eq!(refit_smooth_lens(&sim, 0, &params, &image, &sim.noise(&params)), None);
    }
}
