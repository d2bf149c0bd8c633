//! Source light profiles, one file each, behind [`LightProfile`].
//!
//! Surface brightness is in flux per arcsec^2; the renderer multiplies by the pixel
//! area (lenstronomy's convention, no integration over the pixel unless
//! supersampling is asked for).

mod sersic;

pub use sersic::{sersic_b_n, Sersic, SersicKernel};

use serde::{Deserialize, Serialize};

/// What every light profile provides.
pub trait LightProfile {
    /// Surface brightness at (x, y), flux / arcsec^2.
    fn surface_brightness(&self, x: f64, y: f64) -> f64;
    /// Total flux of the profile per unit `amp`, used to turn magnitudes into amplitudes.
    fn total_flux_per_amp(&self) -> f64;
}

/// Every light profile lensmae knows, selected by `type` in TOML/JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LightModel {
    /// Elliptical Sersic profile.
    SersicEllipse(Sersic),
}

impl LightProfile for LightModel {
    fn surface_brightness(&self, x: f64, y: f64) -> f64 {
        match self {
            LightModel::SersicEllipse(p) => p.surface_brightness(x, y),
        }
    }
    fn total_flux_per_amp(&self) -> f64 {
        match self {
            LightModel::SersicEllipse(p) => p.total_flux_per_amp(),
        }
    }
}
