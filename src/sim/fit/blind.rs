//! The blind fit: a smooth lens found from the cutout alone.

use super::{fit_smooth_lens, inverse_variance, Fitted, SmoothLensFit, SMOOTH_CLASS};
use crate::sim::grid::Image;
use crate::sim::psf::PsfKernel;
use crate::sim::simulator::{ImageParams, LensLightDraw, Simulator};
use std::sync::Arc;

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
pub(super) fn light_moments(data: &Image, pixel_scale: f64) -> (f64, f64, f64, f64) {
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
pub(super) fn two_amplitudes(data: &[f64], light: &[f64], source: &[f64], weight: &[f64]) -> (f64, f64, f64) {
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
