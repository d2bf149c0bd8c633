//! Instruments: pixel scale, PSF width, photometric zero point and noise settings.
//!
//! Values follow lenstronomy's `SimulationAPI.ObservationConfig`: `euclid-vis` as
//! lenstronomy 1.9 had it (zero point 24.0, the DeepLenseSim scripts' and so the
//! DeepLense presets'), `euclid-vis-wide` as lenstronomy 1.14 has it (the Euclid wide
//! survey: zero point 25.72 e-/s, 4 x 566 s), HST WFC3 F160W, LSST r 10-year coadd;
//! `custom` instruments are given in full in the config.

use serde::{Deserialize, Serialize};

/// An imaging instrument and its observing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Pixel size, arcsec.
    pub pixel_scale: f64,
    /// PSF full width at half maximum, arcsec.
    pub psf_fwhm: f64,
    /// Magnitude giving 1 e-/s.
    pub zero_point: f64,
    /// Sky brightness, mag / arcsec^2.
    pub sky_brightness: f64,
    /// Read noise per exposure, e-.
    pub read_noise: f64,
    /// Time of one exposure, s.
    pub exposure_time: f64,
    /// Number of co-added exposures.
    pub num_exposures: u32,
}

/// Names of the built-in instruments.
pub const INSTRUMENT_NAMES: [&str; 4] = ["euclid-vis", "euclid-vis-wide", "hst-wfc3-f160w", "lsst-r"];

impl Instrument {
    /// A built-in instrument by name.
    pub fn named(name: &str) -> Option<Instrument> {
        Some(match name {
            "euclid-vis" => Instrument {
                pixel_scale: 0.101,
                psf_fwhm: 0.16,
                zero_point: 24.0,
                sky_brightness: 22.35,
                read_noise: 4.2,
                exposure_time: 565.0,
                num_exposures: 4,
            },
            "euclid-vis-wide" => Instrument {
                pixel_scale: 0.101,
                psf_fwhm: 0.16,
                zero_point: 25.72,
                sky_brightness: 22.3,
                read_noise: 4.2,
                exposure_time: 566.0,
                num_exposures: 4,
            },
            "hst-wfc3-f160w" => Instrument {
                pixel_scale: 0.08,
                psf_fwhm: 0.08,
                zero_point: 25.96,
                sky_brightness: 22.3,
                read_noise: 4.0,
                exposure_time: 5400.0,
                num_exposures: 1,
            },
            "lsst-r" => Instrument {
                pixel_scale: 0.2,
                psf_fwhm: 0.73,
                zero_point: 28.13,
                sky_brightness: 21.2,
                read_noise: 10.0,
                exposure_time: 15.0,
                num_exposures: 460,
            },
            _ => return None,
        })
    }

    /// Counts per second (e-/s) of a source of apparent magnitude `mag`.
    pub fn magnitude_to_cps(&self, mag: f64) -> f64 {
        10f64.powf(-0.4 * (mag - self.zero_point))
    }

    /// Sky level per pixel, e-/s.
    pub fn sky_per_pixel(&self, pixel_scale: f64) -> f64 {
        self.magnitude_to_cps(self.sky_brightness) * pixel_scale * pixel_scale
    }

    /// Variance of an empty pixel of a co-add of `exposure_time` s, (e-/s)^2:
    /// Poisson on the sky plus the read noise of every exposure.
    pub fn background_variance(&self, pixel_scale: f64, exposure_time: f64) -> f64 {
        let t = exposure_time;
        self.sky_per_pixel(pixel_scale) / t + self.read_noise * self.read_noise * self.num_exposures as f64 / (t * t)
    }
}

/// An instrument in a config: a built-in name or a full table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InstrumentSpec {
    /// One of [`INSTRUMENT_NAMES`].
    Named(String),
    /// Every setting given.
    Custom(Instrument),
}

impl InstrumentSpec {
    /// Resolve to settings; an unknown name is an error naming `key`.
    pub fn resolve(&self, key: &str) -> crate::Result<Instrument> {
        match self {
            InstrumentSpec::Custom(i) => Ok(i.clone()),
            InstrumentSpec::Named(name) => Instrument::named(name).ok_or_else(|| {
                crate::Error::config(
                    key,
                    format!("unknown instrument `{name}` (known: {})", INSTRUMENT_NAMES.join(", ")),
                )
            }),
        }
    }
}
