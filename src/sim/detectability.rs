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

use super::grid::Image;
use super::noise::Noise;
use super::scene::Camera;
use super::simulator::{capped_ellipticity, ImageParams, LensLightDraw, Simulator};
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
}

impl Fitted {
    fn n_params(self) -> usize {
        match self {
            Fitted::LensAndSource => 14,
            Fitted::LensSourceAndLight => 21,
        }
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
    Some(Refit {
        sub_snr_refit: fit.chi.min(fit.chi_start),
        sub_snr: fit.chi_start,
        renders: fit.renders,
        params: fit.params,
    })
}

/// The outcome of [`fit_smooth_lens`].
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothLensFit {
    /// The best smooth lens found (no substructure).
    pub params: ImageParams,
    /// sqrt(chi^2) at the start.
    pub chi_start: f64,
    /// sqrt(chi^2) at the best fit.
    pub chi: f64,
    /// Image renders the fit used.
    pub renders: usize,
}

/// Fit the smooth lens of `start` (its substructure dropped) to `data`, weighting
/// pixel i by 1 / `variance`[i] (pixels of zero variance are left out), varying
/// what `fitted` names; everything else (PSF, and the light unless fitted) stays as
/// in `start`. A local minimum: Levenberg-Marquardt with a forward-difference
/// Jacobian, which only lowers chi^2 from the start.
pub fn fit_smooth_lens(
    sim: &Simulator,
    class_idx: usize,
    start: &ImageParams,
    data: &Image,
    variance: &[f64],
    fitted: Fitted,
) -> SmoothLensFit {
    let inverse_sigma: Vec<f64> = variance.iter().map(|v| if *v > 0.0 { v.sqrt().recip() } else { 0.0 }).collect();
    let mut smooth = start.clone();
    smooth.subhalos.clear();
    smooth.vortex = None;
    let mut problem = Problem {
        sim,
        class_idx,
        camera: sim.camera(start),
        fitted,
        x: DVector::zeros(fitted.n_params()),
        smooth,
        target: &data.pixels,
        inverse_sigma,
        residuals: Vec::new(),
        renders: std::cell::Cell::new(0),
    };
    let x0 = encode(&problem.smooth, fitted);
    problem.set_params(&x0);
    let chi_start = norm(&problem.residuals);
    // Few iterations suffice from a good start; the bound keeps a hard image's cost
    // at a few hundred renders.
    let (problem, _report) = LevenbergMarquardt::new().with_patience(20).minimize(problem);
    let chi = norm(&problem.residuals);
    let params = if chi <= chi_start { decode(&problem.x, &problem.smooth, fitted) } else { problem.smooth.clone() };
    SmoothLensFit { params, chi_start, chi: chi.min(chi_start), renders: problem.renders.get() }
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
    /// The residuals at `x`.
    residuals: Vec<f64>,
    renders: std::cell::Cell<usize>,
}

impl Problem<'_> {
    fn residuals_at(&self, x: &DVector<f64>) -> Vec<f64> {
        self.renders.set(self.renders.get() + 1);
        let params = decode(x, &self.smooth, self.fitted);
        let model = self.sim.scene(self.class_idx, &params).render_with(&self.camera, None);
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
        self.residuals = self.residuals_at(x);
    }

    fn params(&self) -> DVector<f64> {
        self.x.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        // A parameter the renderer cannot use makes the step fail, not the fit.
        self.residuals.iter().all(|r| r.is_finite()).then(|| DVector::from_column_slice(&self.residuals))
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let n_params = self.fitted.n_params();
        let mut jacobian = DMatrix::zeros(self.residuals.len(), n_params);
        for j in 0..n_params {
            let mut stepped = self.x.clone();
            stepped[j] += STEP;
            let shifted = self.residuals_at(&stepped);
            for (i, (after, before)) in shifted.iter().zip(&self.residuals).enumerate() {
                jacobian[(i, j)] = (after - before) / STEP;
            }
        }
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
    if fitted == Fitted::LensSourceAndLight {
        let l = p.lens_light.as_ref().expect("a fit of the light starts from a light");
        x.extend([l.amp.ln(), l.r_sersic.ln(), l.n_sersic.ln(), l.e1, l.e2, l.center_x, l.center_y]);
    }
    DVector::from_vec(x)
}

/// `base` with the refitted parameters `x`; ellipticities capped so that any step
/// still describes an ellipse.
fn decode(x: &DVector<f64>, base: &ImageParams, fitted: Fitted) -> ImageParams {
    let (lens_e1, lens_e2) = capped_ellipticity(x[1], x[2]);
    let (source_e1, source_e2) = capped_ellipticity(x[10], x[11]);
    let lens_light = match (fitted, &base.lens_light) {
        (Fitted::LensSourceAndLight, Some(l)) => {
            let (e1, e2) = capped_ellipticity(x[17], x[18]);
            Some(LensLightDraw {
                amp: x[14].exp(),
                r_sersic: x[15].exp(),
                n_sersic: x[16].exp().clamp(SERSIC_INDEX_RANGE.0, SERSIC_INDEX_RANGE.1),
                e1,
                e2,
                center_x: x[19],
                center_y: x[20],
                ..l.clone()
            })
        }
        _ => base.lens_light.clone(),
    };
    ImageParams {
        lens_theta_e: x[0].exp(),
        lens_e1,
        lens_e2,
        lens_center_x: x[3],
        lens_center_y: x[4],
        shear_gamma1: x[5],
        shear_gamma2: x[6],
        source_amp: x[7].exp(),
        source_r_sersic: x[8].exp(),
        source_n_sersic: x[9].exp().clamp(SERSIC_INDEX_RANGE.0, SERSIC_INDEX_RANGE.1),
        source_e1,
        source_e2,
        source_x: x[12],
        source_y: x[13],
        lens_light,
        ..base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::presets::preset;
    use rand::SeedableRng;

    fn survey() -> Simulator {
        Simulator::new(preset("survey").unwrap()).unwrap()
    }

    fn class(sim: &Simulator, name: &str) -> usize {
        sim.class_names().iter().position(|c| c == name).unwrap()
    }

    #[test]
    fn a_smooth_lens_is_found_again_from_a_displaced_start() {
        // The image of a smooth lens, refitted from a smooth lens a little off: the
        // fit must find the image's lens (chi^2 from thousands down to ~0).
        let sim = survey();
        let no_sub = class(&sim, "no_sub");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let truth = sim.sample_params(no_sub, &mut rng);
        let image = sim.scene(no_sub, &truth).render_with(&sim.camera(&truth), None);
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
        let no_sub = class(&sim, "no_sub");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let truth = sim.sample_params(no_sub, &mut rng);
        let image = sim.scene(no_sub, &truth).render_with(&sim.camera(&truth), None);
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
    fn noise_free_recipes_have_no_refit() {
        let sim = Simulator::new(preset("deeplense-model2").unwrap()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let params = sim.sample_params(0, &mut rng);
        let image = sim.render_noise_free(0, &params);
        assert_eq!(refit_smooth_lens(&sim, 0, &params, &image, &sim.noise(&params)), None);
    }
}
