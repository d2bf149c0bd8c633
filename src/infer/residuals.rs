//! Classifiers of smooth-lens residuals. A slightly different smooth lens imitates
//! most substructure, so such a classifier does not read the cutout: every cutout
//! is first fitted with the smooth lens (SIE + shear), a Sersic source and the
//! deflector's Sersic light, from the cutout alone, and the model reads what the
//! fit leaves, (data - fit) / sigma (RESULTS.md, "Conditioning on a smooth-lens
//! fit"). The fit is the checkpoint's recipe ([`SmoothLensResiduals`]), the one its
//! training residuals were made with; it needs each cutout's PSF and exposure time.
//!
//! The blind fit is a local search, and on a few percent of survey lenses where it
//! ends depends on the last bits of the pixels: stored again at 16 bits, the same
//! cutout can be fitted to another minimum and the classifier's answer move by up
//! to 0.8 (RESULTS.md, "Basin hops", "Fits that depend on the last bits"). So the
//! fitter can refit copies of each cutout moved within half a 16-bit step
//! ([`ResidualFitter::fit`]'s `refits`), and report how far their chi^2 lands
//! from the fit's: an answer whose fit does not come back is not to be trusted.
//! The classifier answers with its probabilities averaged over the fit and the
//! refits ([`mean_over_refits`]): each is as good a reading of the cutout as the
//! others, and their mean moves less with the last bits than any one of them.

use super::LoadedClassifier;
use crate::data::images::value_range;
use crate::model::domain::within_range;
use crate::sim::fit::{lens_clear_of_envelope, smooth_lens_residual, FitCovariance, Observation, SmoothLensResiduals};
use crate::sim::grid::{Image, PixelGrid};
use crate::sim::noise::NoiseMap;
use crate::sim::Simulator;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// How a caller follows a batch of fits, each of which can take seconds: told of each
/// cutout fitted (a progress bar that moves by the cutout, not by the batch), and able to
/// stop the fits not yet started (a Ctrl-C answered within one fit, not a batch of them).
#[derive(Clone, Copy)]
pub struct FitWatch<'a> {
    /// Once cancelled, the cutouts not yet started are not fitted: they get
    /// [`NOT_FITTED_CANCELLED`] as their reason, and the caller is to drop the batch.
    pub cancel: Option<&'a crate::cancel::Cancel>,
    /// Called once for each cutout whose fit (and refits) ended, from the fitting threads.
    pub fitted: &'a (dyn Fn() + Sync),
}

impl FitWatch<'static> {
    /// Nothing follows and nothing stops the fits.
    pub const UNWATCHED: FitWatch<'static> = FitWatch { cancel: None, fitted: &|| {} };
}

/// The reason given to a cutout whose fit was not started because the run was cancelled.
pub const NOT_FITTED_CANCELLED: &str = "not fitted: the run was cancelled";

/// The smooth-lens fit of a checkpoint, ready to run.
pub struct ResidualFitter {
    /// The recipe it fits with.
    pub recipe: SmoothLensResiduals,
    /// Where a first fit's residual chi^2 per pixel must lie for its refits to run
    /// (None: always). Outside the classifier's calibrated range the row is out of
    /// its domain whatever the refits find, and a cutout that is not a lens (noise,
    /// an artefact) costs some ten times a lens to fit: its refits would triple that
    /// for nothing.
    pub refit_chi2_range: Option<[f64; 2]>,
    sim: Simulator,
}

/// What the fit of one cutout gives.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedCutout {
    /// (data - fit) / sigma per pixel: what the classifier reads.
    pub residual: Vec<f32>,
    /// The residuals of the refits, in the order of their moves (those whose
    /// residual is finite): the classifier reads them too, and answers with the
    /// mean ([`mean_over_refits`]).
    pub refit_residuals: Vec<Vec<f32>>,
    /// chi^2 of the fit per pixel it was fitted on, its masked ones left out
    /// (about 1 when the smooth lens explains the cutout to the noise).
    pub chi2_per_pixel: f64,
    /// The best smooth lens, as astronomers quote one.
    pub lens: FittedLens,
    /// Its statistical uncertainty (None: the cutout does not constrain every
    /// parameter of the fit).
    pub lens_errors: Option<FittedLensErrors>,
    /// Whether the fit ended inside the galaxy-scale lenses it may find, clear of the
    /// envelope's edge ([`lens_clear_of_envelope`]); false: it found no lens, and the
    /// residual is not one the classifier was made to read.
    pub lens_found: bool,
    /// The largest |chi^2| difference between the fit and the fits of the cutout's
    /// copies moved within half a 16-bit step (None: no such refits were asked for).
    pub refit_spread: Option<f64>,
    /// Whether the cutout's noise map gave the fit its background noise (on every
    /// pixel where the map is finite), rather than the recipe's sky and read noise.
    pub noise_map: bool,
    /// chi^2 of the residual's azimuthal means about the fitted deflector's light
    /// ([`core_profile_chi2`]): 4 at the median of the classifier's own lenses (below
    /// the [`CORE_ANNULI`] of pure noise: the fit absorbs some), far above
    /// [`CORE_CHI2_TYPICAL`] for most lenses of a PSF the fit does not model.
    pub core_chi2: f64,
}

impl FittedCutout {
    /// Whether the fit came back when the cutout was moved within its last bits,
    /// and the classifier answered its refits alike (`answer_spread`, from
    /// [`mean_over_refits`]); true where either was not checked.
    pub fn is_reproducible(&self, answer_spread: Option<f32>) -> bool {
        self.refit_spread.is_none_or(|spread| spread <= UNSTABLE_FIT_CHI2)
            && answer_spread.is_none_or(|spread| spread <= UNSTABLE_ANSWER)
    }
}

/// How many one-pixel annuli about the fitted deflector's light
/// [`core_profile_chi2`] sums: out to 0.6" on the survey's pixels, where a
/// deflector's light outshines the arcs and a PSF's wings show first.
pub const CORE_ANNULI: usize = 6;

/// The 0.9 quantile of [`core_profile_chi2`] over 1,500 survey lenses of the seed
/// the bundled residual classifier was calibrated on, fitted as `predict` fits them
/// (`bench/core_chi2_limit.sh`): a run in which most fitted rows lie above it is not
/// of the recipe's PSF (a PSF with wings fitted as a Gaussian put 98% of lenstronomy's
/// survey lenses above it). Not a row's flag: the classifier's own lenses reach far
/// above it (1% above 72-89) and are answered as well as the rest, while rows of a
/// wrong PSF below any such limit are answered as badly as those above (RESULTS.md,
/// "A PSF with wings").
pub const CORE_CHI2_TYPICAL: f64 = 10.13;

/// Sum over [`CORE_ANNULI`] one-pixel annuli about (`centre_x`, `centre_y`) (arcsec
/// on `grid`) of (sum of the annulus's residual chi)^2 / its pixel count: each term
/// is the square of a standard normal when the residual is noise, and a rotationally
/// symmetric misfit of the deflector (the wings of a PSF modelled as a Gaussian, a
/// light profile steeper or shallower than the Sersic fitted) adds up in it where it
/// averages away in the residual's overall chi^2. Masked pixels (`data` not finite)
/// are left out.
pub fn core_profile_chi2(chi: &[f64], data: &[f64], grid: PixelGrid, centre_x: f64, centre_y: f64) -> f64 {
    let (x0, y0) = (grid.index_of(centre_x), grid.index_of(centre_y));
    let (mut sums, mut counts) = ([0.0; CORE_ANNULI], [0usize; CORE_ANNULI]);
    for (i, (&c, &d)) in chi.iter().zip(data).enumerate() {
        let (row, col) = ((i / grid.size) as f64, (i % grid.size) as f64);
        let annulus = (col - x0).hypot(row - y0) as usize;
        if annulus < CORE_ANNULI && d.is_finite() {
            sums[annulus] += c;
            counts[annulus] += 1;
        }
    }
    sums.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(s, n)| s * s / n as f64).sum()
}

/// The |chi^2| difference between a fit and a refit of the cutout moved within its
/// last 16 bits above which the fit counts as not reproducible. The residual
/// classifier reads differences of this order: two minima 8.8 apart moved its answer
/// by 0.08 (RESULTS.md, "Basin hops"). Fits that come back land far closer: on 900
/// survey lenses two refits stayed within 0.33 of the fit for half of them and within
/// 1.8 for 95% ("Fits that depend on the last bits").
pub const UNSTABLE_FIT_CHI2: f64 = 4.0;

/// The answer spread over a row's fit and refits ([`mean_over_refits`]) above which
/// the row counts as not reproducible, even when the refits' chi^2 stay within
/// [`UNSTABLE_FIT_CHI2`]: the most any class's probability may move between storages
/// of a cutout (issue 20). A refit 3.9 away in chi^2 moved lens 776 of seed 16 by
/// 0.022 between its float32 and 16-bit copies (RESULTS.md, "The residual classifier
/// on 18,000 lenses, shipped"). Where the refits land within `UNSTABLE_FIT_CHI2`
/// their answers lie 0.0008 apart at the median, 0.014 at the 99th percentile (the
/// 300 held-out cutouts of pipelines/survey-residual.toml).
pub const UNSTABLE_ANSWER: f32 = 0.02;

/// One step of a 16-bit storage over the range of `pixels`.
fn step_of_16_bits(pixels: &[f32]) -> f64 {
    let (lo, hi) = value_range(pixels);
    (hi as f64 - lo as f64) / 65535.0
}

/// `data` moved within half of a 16-bit `step`, the `draw`-th of a fixed sequence
/// of such moves: what storing the cutout another way does to it.
fn moved_within_16_bits(data: &Image, step: f64, draw: u64) -> Image {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(draw);
    Image { size: data.size, pixels: data.pixels.iter().map(|v| v + step * (rng.random::<f64>() - 0.5)).collect() }
}

impl ResidualFitter {
    /// The fitter of the recipe a checkpoint at `path` carries.
    pub fn new(path: &Path, recipe: &SmoothLensResiduals) -> Result<ResidualFitter> {
        let sim = Simulator::new(recipe.simulator.clone())
            .map_err(|e| Error::checkpoint(path, format!("its smooth-lens residual recipe: {e}")))?;
        if !recipe.simulator.has_noise() {
            return Err(Error::checkpoint(path, "its smooth-lens residual recipe has no noise model to weight a fit"));
        }
        Ok(ResidualFitter { recipe: recipe.clone(), refit_chi2_range: None, sim })
    }

    /// This fitter, refitting only cutouts whose first residual's chi^2 per pixel
    /// lies within `range` (a classifier's calibrated range; None: every cutout).
    pub fn refitting_only_within(self, range: Option<[f64; 2]>) -> ResidualFitter {
        ResidualFitter { refit_chi2_range: range, ..self }
    }

    /// The AB magnitude of a source of one unit of the recipe's flux (its
    /// instrument's zero point), when the recipe has an instrument.
    pub fn zero_point(&self) -> Option<f64> {
        let instrument = self.recipe.simulator.instrument.as_ref()?;
        instrument.resolve("instrument").ok().map(|i| i.zero_point)
    }

    /// The side of the cutouts it fits, pixels.
    pub fn image_size(&self) -> usize {
        self.grid().size
    }

    /// The pixel grid of the cutouts it fits (the recipe's image), on which a fit's
    /// arcsec offsets from the centre are laid.
    pub fn grid(&self) -> PixelGrid {
        let image = &self.sim.config().image;
        PixelGrid { size: image.size, pixel_scale: image.pixel_scale }
    }

    /// The fits of `raw` cutouts (rows of `image_size^2`, in the units the recipe's
    /// simulator writes; a non-finite pixel is masked, left out of the fit with a
    /// residual of 0) observed as `observations` say, one per row, in parallel;
    /// a row that cannot be fitted (more than half its pixels masked, say) gets the
    /// reason. `noise`, when given (laid out as `raw`, in the same units), is each
    /// pixel's noise sigma from the cutout's noise map (NaN where unknown): the fit and
    /// its residual take it in place of the recipe's sky and read noise, under the
    /// source's Poisson noise from the recipe, or alone where `noise_includes_source`.
    /// With `refits` > 0 each cutout is fitted again that many times, moved within
    /// half a 16-bit step each time, and the fit records how far those land
    /// (`refit_spread`) and what they leave (`refit_residuals`), except where the
    /// first fit's chi^2 per pixel is outside [`ResidualFitter::refit_chi2_range`]
    /// (no refits, `refit_spread` None). `watch` hears of each cutout fitted and can
    /// stop those not yet started.
    pub fn fit(
        &self,
        raw: &[f32],
        observations: &[Observation],
        noise: Option<&[f32]>,
        noise_includes_source: bool,
        refits: usize,
        watch: FitWatch,
    ) -> Vec<std::result::Result<FittedCutout, String>> {
        let per = self.image_size() * self.image_size();
        assert_eq!(raw.len(), per * observations.len(), "one observation per cutout");
        assert!(noise.is_none_or(|n| n.len() == raw.len()), "one noise sigma per pixel");
        raw.par_chunks_exact(per)
            .zip(observations)
            .enumerate()
            .map(|(i, (pixels, observed))| {
                if watch.cancel.is_some_and(|c| c.is_cancelled()) {
                    return Err(NOT_FITTED_CANCELLED.to_string());
                }
                let sigma = noise.map(|n| &n[i * per..(i + 1) * per]);
                let fitted = self.fit_one(pixels, observed, sigma.map(|s| (s, noise_includes_source)), refits);
                (watch.fitted)();
                fitted
            })
            .collect()
    }

    fn fit_one(
        &self,
        pixels: &[f32],
        observed: &Observation,
        sigma: Option<(&[f32], bool)>,
        refits: usize,
    ) -> std::result::Result<FittedCutout, String> {
        if !(observed.psf_fwhm.is_finite() && observed.psf_fwhm > 0.0) {
            return Err(format!("PSF FWHM {} arcsec: must be finite and > 0", observed.psf_fwhm));
        }
        let image = &self.sim.config().image;
        if observed.psf_fwhm > image.extent() {
            return Err(format!(
                "PSF FWHM {} arcsec is wider than the {}-pixel cutout ({} arcsec)",
                observed.psf_fwhm,
                image.size,
                image.extent()
            ));
        }
        match observed.exposure_time {
            Some(t) if t.is_finite() && t > 0.0 => {}
            other => return Err(format!("exposure time {other:?} s: must be finite and > 0")),
        }
        let fitted_pixels = pixels.iter().filter(|v| v.is_finite()).count();
        if fitted_pixels * 2 < pixels.len() {
            return Err(format!(
                "{} of its {} pixels are masked (not finite): a fit needs at least half of them",
                pixels.len() - fitted_pixels,
                pixels.len()
            ));
        }
        let data = Image { size: self.image_size(), pixels: pixels.iter().map(|&v| v as f64).collect() };
        // The map's variance where it knows the pixel (a finite sigma > 0), else NaN: the recipe's.
        let known = |v: f32| v.is_finite() && v > 0.0;
        let variance: Option<Vec<f64>> = sigma
            .filter(|(s, _)| s.iter().any(|&v| known(v)))
            .map(|(s, _)| s.iter().map(|&v| if known(v) { f64::from(v).powi(2) } else { f64::NAN }).collect());
        let map = variance.as_deref().map(|variance| NoiseMap {
            variance,
            includes_source: sigma.is_some_and(|(_, includes_source)| includes_source),
        });
        let fitted = smooth_lens_residual(&self.sim, observed, &data, map, &self.recipe.grid)
            .ok_or_else(|| "the recipe has no noise model for this exposure".to_string())?;
        let as_f32 = |chi: &[f64]| chi.iter().map(|&c| c as f32).collect::<Vec<f32>>();
        let chi2: f64 = fitted.chi.iter().map(|c| c * c).sum();
        if !chi2.is_finite() {
            return Err("the fit's residual is not finite".into());
        }
        // The residual's chi^2 is of the model's variance, the fit's of the data's:
        // refits are compared on the fit's own.
        let fit_chi2 = fitted.fit.chi * fitted.fit.chi;
        let residual = as_f32(&fitted.chi);
        // The chi^2 the classifier's domain check reads, judged as it judges it.
        let residual_chi2 = crate::model::domain::residual_chi2(&residual, residual.len())[0];
        let refits = if within_range(self.refit_chi2_range, residual_chi2) { refits } else { 0 };
        let step = step_of_16_bits(pixels);
        let refitted: Vec<_> = (1..=refits as u64)
            .filter_map(|draw| {
                let moved = moved_within_16_bits(&data, step, draw);
                smooth_lens_residual(&self.sim, observed, &moved, map, &self.recipe.grid)
            })
            .collect();
        let lens = FittedLens::of(&self.sim, &fitted.fit.params);
        let params = &fitted.fit.params;
        let (core_x, core_y) = params
            .lens_light
            .as_ref()
            .map_or((params.lens_center_x, params.lens_center_y), |l| (l.center_x, l.center_y));
        let core_chi2 = core_profile_chi2(&fitted.chi, &data.pixels, self.grid(), core_x, core_y);
        let refit_spread = (refits > 0)
            .then(|| refitted.iter().map(|refit| (refit.fit.chi * refit.fit.chi - fit_chi2).abs()).fold(0.0, f64::max));
        Ok(FittedCutout {
            residual,
            refit_residuals: refitted
                .iter()
                .filter(|refit| refit.chi.iter().all(|c| c.is_finite()))
                .map(|refit| as_f32(&refit.chi))
                .collect(),
            chi2_per_pixel: chi2 / fitted_pixels as f64,
            lens,
            lens_errors: fitted
                .covariance(&self.sim, &data)
                .map(|covariance| FittedLensErrors::of(&self.sim, &lens, &covariance)),
            lens_found: lens_clear_of_envelope(&fitted.fit.params, self.grid().pixel_scale, self.grid().size),
            refit_spread,
            noise_map: map.is_some(),
            core_chi2,
        })
    }
}

/// The smooth lens a blind fit found, as a lens model is quoted: the SIE's Einstein
/// radius, axis ratio and orientation, its centre, the external shear, and the
/// magnitudes of the deflector's light and of the (unlensed) source. Angles are
/// counter-clockwise from the cutout's +x axis (its columns) towards +y (its rows, as
/// FITS stores them and DS9 shows them: up), in (-90, 90] degrees; positions are
/// arcsec from the cutout's centre on the same axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedLens {
    /// Einstein radius, arcsec.
    pub theta_e: f64,
    /// Minor/major axis ratio of the mass.
    pub axis_ratio: f64,
    /// Orientation of the mass's major axis, degrees.
    pub position_angle: f64,
    /// Centre of the mass, arcsec along x (columns).
    pub center_x: f64,
    /// Centre of the mass, arcsec along y (rows).
    pub center_y: f64,
    /// External shear strength.
    pub shear: f64,
    /// Orientation of the shear, degrees.
    pub shear_angle: f64,
    /// AB magnitude of the deflector's light (None: a recipe without an instrument
    /// or light).
    pub lens_light_magnitude: Option<f64>,
    /// AB magnitude of the source before lensing (None: a recipe without an instrument).
    pub source_magnitude: Option<f64>,
}

/// How many quantities a [`FittedLens`] quotes ([`FittedLens::quantities`]).
pub const LENS_QUANTITIES: usize = 9;

/// Which of [`FittedLens::quantities`] are orientations, repeating every 180 degrees.
const ORIENTATIONS: [usize; 2] = [2, 6];

impl FittedLens {
    /// Its quantities in the order `predict` writes them: Einstein radius, axis
    /// ratio, position angle, centre x and y, shear, shear angle, deflector and
    /// source magnitudes.
    pub fn quantities(&self) -> [Option<f64>; LENS_QUANTITIES] {
        [
            Some(self.theta_e),
            Some(self.axis_ratio),
            Some(self.position_angle),
            Some(self.center_x),
            Some(self.center_y),
            Some(self.shear),
            Some(self.shear_angle),
            self.lens_light_magnitude,
            self.source_magnitude,
        ]
    }

    /// The lens model of `params` (a fit's best), its magnitudes through `sim`'s instrument.
    pub fn of(sim: &Simulator, params: &crate::sim::ImageParams) -> FittedLens {
        let mass = crate::sim::ellipticity::Ellipse::from_e1e2(params.lens_e1, params.lens_e2);
        let half_angle_degrees = |a: f64, b: f64| normalised_angle(b.atan2(a).to_degrees() / 2.0);
        FittedLens {
            theta_e: params.lens_theta_e,
            axis_ratio: mass.q,
            position_angle: normalised_angle(mass.phi.to_degrees()),
            center_x: params.lens_center_x,
            center_y: params.lens_center_y,
            shear: params.shear_gamma1.hypot(params.shear_gamma2),
            shear_angle: half_angle_degrees(params.shear_gamma1, params.shear_gamma2),
            lens_light_magnitude: params
                .lens_light
                .as_ref()
                .and_then(|light| sim.magnitude_of_amplitude(light.amp, light.r_sersic, light.n_sersic)),
            source_magnitude: sim.magnitude_of_amplitude(
                params.source_amp,
                params.source_r_sersic,
                params.source_n_sersic,
            ),
        }
    }
}

/// One standard deviation of each quantity of a [`FittedLens`], from the noise
/// alone: the fit's parameter covariance ([`FitCovariance`]) propagated linearly.
/// None where it is not finite (a round mass has no orientation to err in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedLensErrors {
    /// Of the Einstein radius, arcsec.
    pub theta_e: Option<f64>,
    /// Of the axis ratio.
    pub axis_ratio: Option<f64>,
    /// Of the position angle, degrees.
    pub position_angle: Option<f64>,
    /// Of the centre along x, arcsec.
    pub center_x: Option<f64>,
    /// Of the centre along y, arcsec.
    pub center_y: Option<f64>,
    /// Of the shear strength.
    pub shear: Option<f64>,
    /// Of the shear's orientation, degrees.
    pub shear_angle: Option<f64>,
    /// Of the deflector light's magnitude.
    pub lens_light_magnitude: Option<f64>,
    /// Of the source's magnitude.
    pub source_magnitude: Option<f64>,
}

impl FittedLensErrors {
    /// The errors of `best`, the lens model of the fit whose covariance is `covariance`.
    pub fn of(sim: &Simulator, best: &FittedLens, covariance: &FitCovariance) -> FittedLensErrors {
        let at = best.quantities().map(|v| v.unwrap_or(f64::NAN));
        let [theta_e, axis_ratio, position_angle, center_x, center_y, shear, shear_angle, lens_light, source] =
            covariance.stds_of(|p| {
                let mut quantities = FittedLens::of(sim, p).quantities().map(|v| v.unwrap_or(f64::NAN));
                // Orientations as their offsets from the best, wrapped.
                for i in ORIENTATIONS {
                    quantities[i] = (quantities[i] - at[i] + 90.0).rem_euclid(180.0) - 90.0;
                }
                quantities
            });
        FittedLensErrors {
            theta_e,
            axis_ratio,
            position_angle,
            center_x,
            center_y,
            shear,
            shear_angle,
            lens_light_magnitude: lens_light,
            source_magnitude: source,
        }
    }

    /// Its errors in the order of [`FittedLens::quantities`].
    pub fn quantities(&self) -> [Option<f64>; LENS_QUANTITIES] {
        [
            self.theta_e,
            self.axis_ratio,
            self.position_angle,
            self.center_x,
            self.center_y,
            self.shear,
            self.shear_angle,
            self.lens_light_magnitude,
            self.source_magnitude,
        ]
    }
}

/// An orientation in (-90, 90] degrees (a half turn brings an ellipse onto itself).
fn normalised_angle(degrees: f64) -> f64 {
    if degrees <= -90.0 {
        degrees + 180.0
    } else {
        degrees
    }
}

/// Averages `probabilities` (`[n * k]`, the classifier's answers on the first
/// residuals of `n` rows) with its answers on each row's `refit_residuals[i]`, in
/// place; `sigmas`, when given, are the rows' own and go with their refits.
/// Returns each row's answer spread: the largest difference in any class's
/// probability between the answers on its fit and refits (None: no refits).
pub fn mean_over_refits(
    classifier: &LoadedClassifier,
    refit_residuals: &[&[Vec<f32>]],
    sigmas: Option<&[Option<f32>]>,
    probabilities: &mut [f32],
    batch: usize,
) -> Result<Vec<Option<f32>>> {
    let k = classifier.meta.class_names.len();
    assert_eq!(probabilities.len(), refit_residuals.len() * k, "one row of probabilities per fitted row");
    let owners: Vec<usize> =
        refit_residuals.iter().enumerate().flat_map(|(i, refits)| std::iter::repeat_n(i, refits.len())).collect();
    if owners.is_empty() {
        return Ok(vec![None; refit_residuals.len()]);
    }
    let pixels: Vec<f32> = refit_residuals.iter().flat_map(|refits| refits.iter().flatten().copied()).collect();
    let refit_sigmas: Option<Vec<Option<f32>>> = sigmas.map(|s| owners.iter().map(|&i| s[i]).collect());
    let refit_probabilities = classifier.predict_with_noise(&pixels, refit_sigmas.as_deref(), batch)?.probabilities;
    // Each class's lowest and highest answer over a row's fit and refits.
    let mut lowest = probabilities.to_vec();
    let mut highest = probabilities.to_vec();
    for (&i, p) in owners.iter().zip(refit_probabilities.chunks_exact(k)) {
        for (j, &v) in (i * k..(i + 1) * k).zip(p) {
            probabilities[j] += v;
            lowest[j] = lowest[j].min(v);
            highest[j] = highest[j].max(v);
        }
    }
    for (row, refits) in probabilities.chunks_exact_mut(k).zip(refit_residuals) {
        row.iter_mut().for_each(|p| *p /= (1 + refits.len()) as f32);
    }
    Ok(refit_residuals
        .iter()
        .enumerate()
        .map(|(i, refits)| {
            let spread = (i * k..(i + 1) * k).map(|j| highest[j] - lowest[j]).fold(0f32, f32::max);
            (!refits.is_empty()).then_some(spread)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fit::BlindGrid;

    #[test]
    fn the_core_profile_of_noise_is_chi2_with_one_degree_an_annulus_and_a_ring_stands_out() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let grid = PixelGrid { size: 64, pixel_scale: 0.1 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let data = vec![1.0; 4096];
        let draws = 4000;
        let (mut sum, mut flagged) = (0.0, 0);
        for _ in 0..draws {
            let chi: Vec<f64> = (0..4096).map(|_| StandardNormal.sample(&mut rng)).collect();
            let t = core_profile_chi2(&chi, &data, grid, 0.13, -0.21);
            sum += t;
            // chi^2 of 6 degrees of freedom passes 27.856 with probability 1e-4.
            flagged += usize::from(t > 27.856);
        }
        let mean = sum / draws as f64;
        assert!((mean / CORE_ANNULI as f64 - 1.0).abs() < 0.05, "mean {mean} over {draws} noise residuals");
        assert!(flagged <= 3, "{flagged} of {draws} noise residuals above chi^2's 1e-4 point");
        // A ring of +2 sigma 2-3 pixels from the centre, as a PSF's wings leave, adds
        // 0.016 to the residual's chi^2 per pixel and stands out in the profile (64).
        let (x0, y0) = (grid.index_of(0.13), grid.index_of(-0.21));
        let ring: Vec<f64> = (0..4096)
            .map(|i| {
                let r = ((i % 64) as f64 - x0).hypot((i / 64) as f64 - y0);
                if (2.0..3.0).contains(&r) {
                    2.0
                } else {
                    0.0
                }
            })
            .collect();
        assert!(core_profile_chi2(&ring, &data, grid, 0.13, -0.21) > 6.0 * CORE_CHI2_TYPICAL);
        // Masked pixels count for nothing.
        let masked = vec![f64::NAN; 4096];
        assert_eq!(core_profile_chi2(&ring, &masked, grid, 0.13, -0.21), 0.0);
    }

    #[test]
    fn a_lens_model_is_quoted_with_axis_ratios_and_angles_from_the_x_axis() {
        let sim = Simulator::new(crate::sim::presets::preset("survey").unwrap()).unwrap();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let mut params = sim.sample_params(0, &mut rng);
        let quoted = |e: (f64, f64), shear: (f64, f64), params: &mut crate::sim::ImageParams| {
            ((params.lens_e1, params.lens_e2), (params.shear_gamma1, params.shear_gamma2)) = (e, shear);
            FittedLens::of(&sim, params)
        };
        // e = (1 - q) / (1 + q): |e| 1/3 is q 0.5; the angle is half that of (e1, e2).
        for ((e1, e2), angle) in
            [((1.0 / 3.0, 0.0), 0.0), ((0.0, 1.0 / 3.0), 45.0), ((-1.0 / 3.0, 0.0), 90.0), ((0.0, -1.0 / 3.0), -45.0)]
        {
            let lens = quoted((e1, e2), (e1 * 0.3, e2 * 0.3), &mut params);
            assert!((lens.axis_ratio - 0.5).abs() < 1e-12, "{lens:?}");
            assert!((lens.position_angle - angle).abs() < 1e-9, "({e1}, {e2}): {}", lens.position_angle);
            assert!((lens.shear - 0.1).abs() < 1e-12 && (lens.shear_angle - angle).abs() < 1e-9, "{lens:?}");
        }
        let round = quoted((0.0, 0.0), (0.0, 0.0), &mut params);
        assert_eq!((round.axis_ratio, round.shear), (1.0, 0.0));
        assert_eq!(round.theta_e, params.lens_theta_e);
        assert!(round
            .lens_light_magnitude
            .is_some_and(|m| (m - params.lens_light.as_ref().unwrap().magnitude).abs() < 1e-9));
    }

    /// The survey recipe, its blind fit cut to one start: the tests need its answers, not
    /// its best fits.
    fn survey_recipe_of_one_fit() -> SmoothLensResiduals {
        SmoothLensResiduals {
            simulator: crate::sim::presets::preset("survey").unwrap(),
            grid: BlindGrid { max_fits: 1, ..BlindGrid::default() },
        }
    }

    #[test]
    fn each_cutout_fitted_is_told_and_a_cancel_stops_the_fits_not_yet_started() {
        let recipe = survey_recipe_of_one_fit();
        let fitter = ResidualFitter::new(Path::new("test"), &recipe).unwrap();
        let cutouts = vec![0f32; 4 * fitter.image_size().pow(2)];
        // Unusable observations end each fit at once, with their reason.
        let observed = vec![Observation { psf_fwhm: 0.0, psf_kernel: None, exposure_time: Some(2200.0) }; 4];
        let told = std::sync::atomic::AtomicUsize::new(0);
        let one_more = || {
            told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let fits = fitter.fit(&cutouts, &observed, None, false, 0, FitWatch { cancel: None, fitted: &one_more });
        assert_eq!(told.load(std::sync::atomic::Ordering::Relaxed), 4);
        assert!(fits.iter().all(|f| f.as_ref().is_err_and(|why| why.contains("PSF FWHM"))), "{fits:?}");

        // One thread, cancelled as the first fit ends: the other three never start.
        let cancel = crate::cancel::Cancel::new();
        let cancel_at_first = || cancel.cancel();
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let fits = one_thread.install(|| {
            fitter.fit(
                &cutouts,
                &observed,
                None,
                false,
                0,
                FitWatch { cancel: Some(&cancel), fitted: &cancel_at_first },
            )
        });
        let reasons: Vec<&str> = fits.iter().map(|f| f.as_ref().unwrap_err().as_str()).collect();
        assert!(reasons[0].contains("PSF FWHM"), "{reasons:?}");
        assert_eq!(reasons[1..], [NOT_FITTED_CANCELLED; 3]);
    }

    #[test]
    fn cutouts_that_are_not_lenses_get_an_answer_or_a_reason_never_a_panic() {
        let recipe = survey_recipe_of_one_fit();
        let fitter = ResidualFitter::new(Path::new("test"), &recipe).unwrap();
        let n = fitter.image_size().pow(2);
        let observed = Observation { psf_fwhm: 0.17, psf_kernel: None, exposure_time: Some(2200.0) };
        let mut cutouts = vec![0f32; n]; // blank
        cutouts.extend(std::iter::repeat_n(-5.0f32, n)); // negative sky
        cutouts.extend(std::iter::repeat_n(f32::MAX, n)); // saturated everywhere
        let fits = fitter.fit(&cutouts, &vec![observed; 3], None, false, 1, FitWatch::UNWATCHED);
        for (which, fit) in ["blank", "negative", "saturated"].iter().zip(&fits) {
            if let Ok(fit) = fit {
                assert!(fit.residual.iter().all(|v| v.is_finite()) && fit.chi2_per_pixel.is_finite(), "{which}");
            }
        }
        // What a survey must say: a PSF and an exposure the fit can use.
        let bad = [
            Observation { psf_fwhm: f64::NAN, psf_kernel: None, exposure_time: Some(2200.0) },
            Observation { psf_fwhm: 0.17, psf_kernel: None, exposure_time: None },
            Observation { psf_fwhm: 0.17, psf_kernel: None, exposure_time: Some(-1.0) },
        ];
        let refused = fitter.fit(&cutouts, &bad, None, false, 1, FitWatch::UNWATCHED);
        assert!(refused[0].as_ref().unwrap_err().contains("PSF FWHM"));
        assert!(refused[1].as_ref().unwrap_err().contains("exposure time"));
        assert!(refused[2].as_ref().unwrap_err().contains("exposure time"));
    }

    #[test]
    fn refits_run_only_where_the_first_fit_leaves_a_chi2_the_classifier_admits() {
        let recipe = survey_recipe_of_one_fit();
        let sim = Simulator::new(recipe.simulator.clone()).unwrap();
        let drawn = sim.simulate(2, 5, 0);
        let observed = Observation::of_drawn(&drawn.params);
        let mut cutouts: Vec<f32> = drawn.image.pixels.iter().map(|&v| v as f32).collect();
        let n = cutouts.len();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        cutouts.extend((0..n).map(|_| rand::Rng::random::<f32>(&mut rng))); // uniform noise, not a lens
        let everywhere = ResidualFitter::new(Path::new("test"), &recipe).unwrap();
        let within = ResidualFitter::new(Path::new("test"), &recipe).unwrap().refitting_only_within(Some([0.5, 30.0]));
        let (all, some) = (
            everywhere.fit(&cutouts, &vec![observed.clone(); 2], None, false, 2, FitWatch::UNWATCHED),
            within.fit(&cutouts, &vec![observed; 2], None, false, 2, FitWatch::UNWATCHED),
        );
        let (lens, noise) = (all[0].as_ref().unwrap(), all[1].as_ref().unwrap());
        assert!((0.5..=30.0).contains(&lens.chi2_per_pixel), "{}", lens.chi2_per_pixel);
        assert!(!(0.5..=30.0).contains(&noise.chi2_per_pixel), "{}", noise.chi2_per_pixel);
        assert!(noise.refit_spread.is_some() && noise.refit_residuals.len() == 2);
        // The lens is fitted and refitted as without a range; the noise only fitted.
        assert_eq!(some[0].as_ref().unwrap(), lens);
        let skipped = some[1].as_ref().unwrap();
        assert_eq!((skipped.refit_spread, skipped.refit_residuals.len()), (None, 0));
        assert_eq!((&skipped.residual, skipped.chi2_per_pixel), (&noise.residual, noise.chi2_per_pixel));
    }

    #[test]
    fn a_cutout_is_moved_within_half_a_16_bit_step_the_same_way_every_time() {
        let data = Image { size: 2, pixels: vec![-1.0, 0.0, 2.5, 64.0] };
        let step = 65.0 / 65535.0;
        let (first, again, second) = (
            moved_within_16_bits(&data, step, 1),
            moved_within_16_bits(&data, step, 1),
            moved_within_16_bits(&data, step, 2),
        );
        assert_eq!(first, again);
        assert_ne!(first, second);
        for moved in [&first, &second] {
            for (m, v) in moved.pixels.iter().zip(&data.pixels) {
                assert!(m != v && (m - v).abs() <= step / 2.0, "{m} from {v}");
            }
        }
    }
}
