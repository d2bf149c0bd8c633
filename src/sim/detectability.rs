//! How much of a lens's substructure signal no smooth lens can imitate.
//!
//! `sub_snr` compares an image with the *same* lens rendered without its
//! substructure. A classifier never sees that lens: it has to tell the image from
//! *any* smooth lens, and a varied lens absorbs much of the signal (a vortex
//! inside the Einstein ring is mostly extra central mass and a quadrupole, i.e. a
//! slightly different Einstein radius, ellipticity and shear). `sub_snr_refit`
//! measures what is left: the smooth lens (SIE + external shear) and the Sersic
//! source are refitted ([`super::fit`]) to the noise-free image with substructure,
//! weighted by the noise, and the noise-weighted distance that remains is
//! sqrt(sum (I_sub - I_fit)^2 / sigma^2).
//!
//! The fit starts from the drawn values; the deflector's light, the PSF and the
//! instrument stay as drawn. From that start it can only lower the distance, and
//! it finds a local minimum, so `sub_snr_refit` lies between the truly marginal
//! detectability (the global minimum over every smooth lens and source) and
//! `sub_snr`: an upper bound of what an observer who knows the smooth model family
//! could see.

use super::fit::{fit_smooth_lens, Fitted};
use super::grid::Image;
use super::noise::Noise;
use super::simulator::{ImageParams, Simulator};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::presets::preset;
    use crate::sim::test_lenses::{class, survey};
    use rand::SeedableRng;

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
