//! The recipe's axion vortex on top of a smooth-lens fit.

use super::{fit_lens, inverse_variance, Fitted, SmoothLensFit};
use crate::sim::grid::Image;
use crate::sim::simulator::{ImageParams, Simulator, VortexDraw};

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
/// fit `smooth` (a [`fit_smooth_lens_blind`](super::fit_smooth_lens_blind) of the same cutout with the same
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
