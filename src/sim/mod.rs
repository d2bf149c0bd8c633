//! The strong-lensing simulator.
//!
//! Physics follows lenstronomy's conventions, one file per profile
//! ([`mass`], [`light`]), with the PSF, noise, instruments and cosmology beside
//! them, and the fit of a smooth lens to an image ([`fit`]). A [`SimConfig`] (a built-in preset or a TOML file) says what to draw; the
//! [`Simulator`] draws per-image parameters, builds a [`Scene`] and renders it.
//!
//! Coordinates are arcsec on the sky, x along image columns and y along rows,
//! centred on the image centre.

pub mod config;
pub mod cosmology;
pub mod detectability;
pub mod distribution;
pub mod ellipticity;
pub mod fit;
pub mod grid;
pub mod instrument;
pub mod light;
pub mod mass;
pub mod noise;
pub mod poisson;
pub mod presets;
pub mod psf;
pub mod scene;
pub mod simulator;

pub use config::SimConfig;
pub use grid::{Image, PixelGrid};
pub use scene::{Camera, DeflectionField, Scene};
pub use simulator::{ImageParams, SimulatedImage, Simulator};

/// What the simulator's tests share.
#[cfg(test)]
pub(crate) mod test_lenses {
    use super::{presets::preset, Simulator};

    /// The `survey` preset's simulator.
    pub fn survey() -> Simulator {
        Simulator::new(preset("survey").unwrap()).unwrap()
    }

    /// The index of class `name` of `sim`.
    pub fn class(sim: &Simulator, name: &str) -> usize {
        sim.class_names().iter().position(|c| c == name).unwrap()
    }
}
