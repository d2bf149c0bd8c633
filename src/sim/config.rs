//! The simulation config: what a preset or a `--config sim.toml` file says.
//!
//! Every key is checked: unknown keys are refused by the parser (with the key and
//! line), impossible values by [`SimConfig::validate`] (with the dotted key). The
//! built-in presets are TOML files of this very format (see [`super::presets`]).

use super::distribution::Param;
use super::instrument::{Instrument, InstrumentSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A complete simulation recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Short name, written into dataset metadata.
    pub name: String,
    /// One line saying what the recipe makes.
    #[serde(default)]
    pub description: String,
    /// Instrument giving the zero point (for magnitudes) and noise settings.
    #[serde(default)]
    pub instrument: Option<InstrumentSpec>,
    /// Pixel grid.
    pub image: ImageConfig,
    /// Point-spread function.
    pub psf: PsfConfig,
    /// Cosmology used to turn masses into Einstein radii.
    pub cosmology: CosmologyConfig,
    /// Optional multi-plane deflection convention (DeepLense Models II/III).
    #[serde(default)]
    pub ray_tracing: Option<RayTracingConfig>,
    /// Main deflector (an SIE).
    pub lens: LensConfig,
    /// External shear.
    #[serde(default)]
    pub shear: ShearConfig,
    /// The lensed source (an elliptical Sersic).
    pub source: SourceConfig,
    /// The main deflector's own light (none when absent, as in the DeepLense recipes).
    #[serde(default)]
    pub lens_light: Option<LensLightConfig>,
    /// Another galaxy or a star beside the lens in some cutouts (none when absent).
    #[serde(default)]
    pub neighbour: Option<NeighbourConfig>,
    /// Noise model.
    #[serde(default)]
    pub noise: NoiseConfig,
    /// Substructure of each class, by class name.
    pub classes: BTreeMap<String, Substructure>,
    /// Order of `label_idx`; alphabetical when absent.
    #[serde(default)]
    pub class_order: Option<Vec<String>>,
}

/// The pixel grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Pixels per side.
    pub size: usize,
    /// Pixel size, arcsec.
    pub pixel_scale: f64,
    /// Sub-pixels per side integrated into each pixel (1 = centre sampling).
    #[serde(default = "one_usize")]
    pub supersampling: usize,
    /// Factor applied to the final image. DeepLense Models II/III released
    /// `2 x` the noise-free model, so their presets set 2.
    #[serde(default = "one_f64")]
    pub output_scale: f64,
}

impl ImageConfig {
    /// The side of the field the image covers, arcsec: the widest PSF it takes. A
    /// wider one blurs the image into its edge values, and its kernel grows with it
    /// (a FWHM of 1e9 arcsec asked for hundreds of GB).
    pub fn extent(&self) -> f64 {
        self.size as f64 * self.pixel_scale
    }
}

/// Most rays a side of the supersampled grid: a render holds several f64 layers of
/// it (at 4096, ~130 MB each) per image a thread renders.
pub const MAX_SUPERSAMPLED_SIDE: usize = 4096;

/// The point-spread function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PsfConfig {
    /// No PSF. (A struct variant, so that keys beside `type = "none"` are refused.)
    None {},
    /// Circular Gaussian.
    Gaussian {
        /// FWHM, arcsec.
        fwhm: Param,
        /// Kernel cut in sigma (lenstronomy's default 4).
        #[serde(default = "four")]
        truncation: f64,
    },
    /// Circular Moffat, (1 + (r/alpha)^2)^-beta: a PSF with wings, as real ones
    /// have (a Gaussian fitted to one leaves them in every smooth-lens residual).
    /// Each image draws its FWHM and beta; its kernel is sampled at the image's
    /// pixels ([`crate::sim::psf::PsfKernel::moffat`]) and convolved as lenstronomy's
    /// `psf_type = 'PIXEL'`.
    Moffat {
        /// FWHM, arcsec.
        fwhm: Param,
        /// Power-law index of the wings, > 1 (2.5-4.5 for most telescopes).
        beta: Param,
        /// Pixels a side of the kernel (odd); by default as many as hold 99.5% of
        /// the light ([`crate::sim::psf::moffat_side`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        side: Option<usize>,
    },
}

/// How masses become Einstein radii.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EinsteinRadiusConvention {
    /// Proper angular-diameter distances.
    AngularDiameter,
    /// The DeepLense scripts' luminosity distances with `D_ls = D_s - D_l`.
    DeeplenseLuminosity,
}

/// Cosmology and redshifts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosmologyConfig {
    /// Hubble constant, km/s/Mpc.
    pub h0: f64,
    /// Matter density.
    pub om0: f64,
    /// Lens redshift.
    pub z_lens: f64,
    /// Source redshift.
    pub z_source: f64,
    /// Mass to Einstein radius convention.
    #[serde(default = "angular")]
    pub einstein_radius: EinsteinRadiusConvention,
}

/// Deflections defined for a source at `z_source_convention` applied to a source
/// at `cosmology.z_source`, in a cosmology of its own (lenstronomy's multi-plane
/// `z_source_convention`, as DeepLense Models II/III used it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayTracingConfig {
    /// Source redshift the deflections are defined for.
    pub z_source_convention: f64,
    /// Hubble constant of the ray-tracing cosmology.
    pub h0: f64,
    /// Matter density of the ray-tracing cosmology.
    pub om0: f64,
}

/// The main deflector, an SIE. Give exactly one of `theta_e` and `mass`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LensConfig {
    /// Einstein radius, arcsec.
    #[serde(default)]
    pub theta_e: Option<Param>,
    /// Mass, Msun (converted with `cosmology.einstein_radius`).
    #[serde(default)]
    pub mass: Option<Param>,
    /// Ellipticity modulus e1.
    #[serde(default)]
    pub e1: Param,
    /// Ellipticity modulus e2.
    #[serde(default)]
    pub e2: Param,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: Param,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: Param,
}

/// External shear.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShearConfig {
    /// gamma1.
    #[serde(default)]
    pub gamma1: Param,
    /// gamma2.
    #[serde(default)]
    pub gamma2: Param,
}

/// The source: an elliptical Sersic. Give exactly one of `amp` and `magnitude`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Surface brightness at the half-light radius, flux / arcsec^2.
    #[serde(default)]
    pub amp: Option<Param>,
    /// Apparent magnitude (needs an `instrument` for the zero point).
    #[serde(default)]
    pub magnitude: Option<Param>,
    /// Half-light radius, arcsec.
    pub r_sersic: Param,
    /// Sersic index.
    pub n_sersic: Param,
    /// Ellipticity modulus e1.
    #[serde(default)]
    pub e1: Param,
    /// Ellipticity modulus e2.
    #[serde(default)]
    pub e2: Param,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: Param,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: Param,
}

/// The deflector's light: an elliptical Sersic, not lensed, centred on the mass and
/// aligned with it up to the given offsets (real lens galaxies' light follows their
/// mass closely, but not exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LensLightConfig {
    /// Apparent magnitude (needs an `instrument` for the zero point).
    pub magnitude: Param,
    /// Half-light radius, arcsec.
    pub r_sersic: Param,
    /// Sersic index.
    pub n_sersic: Param,
    /// Added to the mass's e1.
    #[serde(default)]
    pub e1_offset: Param,
    /// Added to the mass's e2.
    #[serde(default)]
    pub e2_offset: Param,
    /// Added to the mass's centre x, arcsec.
    #[serde(default)]
    pub center_offset_x: Param,
    /// Added to the mass's centre y, arcsec.
    #[serde(default)]
    pub center_offset_y: Param,
}

/// A neighbour in the cutout, as real survey cutouts hold them: with probability
/// `probability` an image gets one unlensed galaxy (an elliptical Sersic) or star
/// (a point source through the PSF), `distance` from the cutout's centre in a
/// uniformly drawn direction. Its light and noise are part of the image, and of
/// the smooth image that `sub_snr` compares with, so `sub_snr` is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// Chance that an image has a neighbour, in [0, 1].
    pub probability: f64,
    /// Of the neighbours, the fraction that are stars, in [0, 1] (the rest are galaxies).
    #[serde(default)]
    pub star_fraction: f64,
    /// Apparent magnitude (needs an `instrument` for the zero point).
    pub magnitude: Param,
    /// Distance from the cutout's centre, arcsec.
    pub distance: Param,
    /// A galaxy's half-light radius, arcsec.
    pub r_sersic: Param,
    /// A galaxy's Sersic index.
    pub n_sersic: Param,
    /// A galaxy's ellipticity modulus e1.
    #[serde(default)]
    pub e1: Param,
    /// A galaxy's ellipticity modulus e2.
    #[serde(default)]
    pub e2: Param,
}

/// The noise model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NoiseConfig {
    /// Noise-free images. (A struct variant, so that keys beside `type = "none"` are refused.)
    None {},
    /// DeepLense Model I integer counts.
    DeeplenseCounts {
        /// Exposure time, s.
        exposure_time: Param,
        /// Gaussian background sigma.
        background_rms: f64,
    },
    /// Poisson + sky + read noise of the config's `instrument`.
    Instrument {
        /// Total exposure time, s; defaults to the instrument's exposures x count.
        #[serde(default)]
        exposure_time: Option<Param>,
    },
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig::None {}
    }
}

/// A number of subhalos: fixed, or Poisson-distributed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Count {
    /// Exactly this many.
    Fixed(u32),
    /// Poisson with this mean.
    Poisson {
        /// Mean count.
        poisson: f64,
    },
}

/// Subhalo mass function dN/dm ~ m^slope on [min, max] Msun.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MassFunction {
    /// Power-law slope of dN/dm (DeepLense: -0.9).
    pub slope: f64,
    /// Smallest mass, Msun.
    pub min: f64,
    /// Largest mass, Msun.
    pub max: f64,
}

/// How subhalo positions are drawn within `radius = [r_min, r_max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// r ~ U(r_min, r_max), phi ~ U(0, 2 pi), x = r sin phi, y = r cos phi (DeepLense).
    UniformRadius,
    /// Uniform surface density in the annulus.
    UniformArea,
}

/// Density profile of extended subhalos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaloProfile {
    /// NFW.
    Nfw,
    /// Truncated NFW.
    Tnfw,
}

/// The substructure that defines a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Substructure {
    /// No substructure. (A struct variant, so that keys beside `type = "none"` are refused.)
    None {},
    /// Point-mass subhalos (DeepLense CDM).
    PointMasses {
        /// How many.
        count: Count,
        /// Mass function.
        mass_function: MassFunction,
        /// Annulus [r_min, r_max], arcsec.
        radius: [f64; 2],
        /// Position draw.
        placement: Placement,
    },
    /// NFW/TNFW subhalos (realistic CDM).
    Halos {
        /// Density profile.
        profile: HaloProfile,
        /// How many.
        count: Count,
        /// Mass function (M200), Msun.
        mass_function: MassFunction,
        /// Concentration c200.
        concentration: Param,
        /// Truncation radius in units of the scale radius (TNFW only).
        #[serde(default)]
        truncation: Option<Param>,
        /// Annulus [r_min, r_max], arcsec.
        radius: [f64; 2],
        /// Position draw.
        placement: Placement,
    },
    /// An axion "vortex": equal point masses evenly spaced on a line through the
    /// lens centre, of half-length `length_constant / m_a` arcsec.
    Vortex {
        /// Total mass, Msun.
        total_mass: Param,
        /// Number of point masses.
        points: u32,
        /// log10 of the axion mass in eV.
        axion_mass_log10: Param,
        /// Half-length times axion mass, arcsec eV (DeepLense: 3e-24).
        #[serde(default = "vortex_length_constant")]
        length_constant: f64,
        /// Orientation, radians.
        #[serde(default = "full_turn")]
        angle: Param,
    },
}

fn one_usize() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn angular() -> EinsteinRadiusConvention {
    EinsteinRadiusConvention::AngularDiameter
}
fn vortex_length_constant() -> f64 {
    3e-24
}
fn full_turn() -> Param {
    Param::Random(super::distribution::Distribution::Uniform([0.0, std::f64::consts::TAU]))
}

const INF: f64 = f64::INFINITY;

impl SimConfig {
    /// Parse a TOML recipe; errors name the key (and line).
    pub fn from_toml(text: &str) -> Result<SimConfig> {
        let cfg: SimConfig = toml::from_str(text).map_err(|e| Error::config("toml", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a SimConfig always serialises")
    }

    /// Class names in `label_idx` order.
    pub fn class_names(&self) -> Vec<String> {
        self.class_order.clone().unwrap_or_else(|| self.classes.keys().cloned().collect())
    }

    /// Whether images get noise (and so a `sub_snr`).
    pub fn has_noise(&self) -> bool {
        !matches!(self.noise, NoiseConfig::None {})
    }

    /// The resolved instrument, if any.
    pub fn resolved_instrument(&self) -> Result<Option<Instrument>> {
        self.instrument.as_ref().map(|i| i.resolve("instrument")).transpose()
    }

    /// Check every value; the error names the first offending key.
    pub fn validate(&self) -> Result<()> {
        let instrument = self.resolved_instrument()?;
        if let Some(i) = &instrument {
            Error::check(
                i.pixel_scale > 0.0 && i.psf_fwhm > 0.0,
                "instrument",
                "pixel_scale and psf_fwhm must be > 0",
            )?;
            Error::check(
                i.read_noise >= 0.0 && i.exposure_time > 0.0 && i.num_exposures > 0,
                "instrument",
                "read_noise must be >= 0, exposure_time and num_exposures > 0",
            )?;
        }
        let im = &self.image;
        Error::check((4..=4096).contains(&im.size), "image.size", "must be between 4 and 4096")?;
        Error::check(im.pixel_scale > 0.0 && im.pixel_scale.is_finite(), "image.pixel_scale", "must be > 0")?;
        Error::check((1..=16).contains(&im.supersampling), "image.supersampling", "must be between 1 and 16")?;
        Error::check(
            im.size * im.supersampling <= MAX_SUPERSAMPLED_SIDE,
            "image.supersampling",
            format!("image.size x image.supersampling must be at most {MAX_SUPERSAMPLED_SIDE} rays a side"),
        )?;
        Error::check(im.output_scale > 0.0 && im.output_scale.is_finite(), "image.output_scale", "must be > 0")?;
        match &self.psf {
            PsfConfig::None {} => {}
            PsfConfig::Gaussian { fwhm, truncation } => {
                fwhm.validate("psf.fwhm", 1e-6, im.extent())?;
                Error::check(*truncation > 0.0 && *truncation <= 20.0, "psf.truncation", "must be in (0, 20]")?;
            }
            PsfConfig::Moffat { fwhm, beta, side } => {
                fwhm.validate("psf.fwhm", 1e-6, im.extent())?;
                beta.validate("psf.beta", 1.01, 100.0)?;
                if let Some(side) = side {
                    Error::check(
                        side % 2 == 1 && *side <= crate::sim::psf::MAX_KERNEL_SIDE,
                        "psf.side",
                        format!("must be odd and at most {}", crate::sim::psf::MAX_KERNEL_SIDE),
                    )?;
                }
            }
        }
        let c = &self.cosmology;
        Error::check(c.h0 > 0.0 && (0.0..=1.0).contains(&c.om0), "cosmology", "needs h0 > 0 and 0 <= om0 <= 1")?;
        Error::check(c.z_lens > 0.0, "cosmology.z_lens", "must be > 0")?;
        Error::check(c.z_source > c.z_lens, "cosmology.z_source", "must be larger than z_lens")?;
        if let Some(rt) = &self.ray_tracing {
            Error::check(
                rt.h0 > 0.0 && (0.0..=1.0).contains(&rt.om0),
                "ray_tracing",
                "needs h0 > 0 and 0 <= om0 <= 1",
            )?;
            Error::check(
                rt.z_source_convention > c.z_lens,
                "ray_tracing.z_source_convention",
                "must be larger than z_lens",
            )?;
        }
        let l = &self.lens;
        match (&l.theta_e, &l.mass) {
            (Some(t), None) => t.validate("lens.theta_e", 0.0, 100.0)?,
            (None, Some(m)) => m.validate("lens.mass", 0.0, 1e16)?,
            _ => return Err(Error::config("lens", "give exactly one of `theta_e` and `mass`")),
        }
        l.e1.validate("lens.e1", -0.9, 0.9)?;
        l.e2.validate("lens.e2", -0.9, 0.9)?;
        l.center_x.validate("lens.center_x", -INF, INF)?;
        l.center_y.validate("lens.center_y", -INF, INF)?;
        self.shear.gamma1.validate("shear.gamma1", -0.5, 0.5)?;
        self.shear.gamma2.validate("shear.gamma2", -0.5, 0.5)?;
        let s = &self.source;
        match (&s.amp, &s.magnitude) {
            (Some(a), None) => a.validate("source.amp", 0.0, INF)?,
            (None, Some(m)) => {
                m.validate("source.magnitude", -10.0, 50.0)?;
                Error::check(instrument.is_some(), "source.magnitude", "needs an `instrument` for the zero point")?;
            }
            _ => return Err(Error::config("source", "give exactly one of `amp` and `magnitude`")),
        }
        s.r_sersic.validate("source.r_sersic", 1e-4, 100.0)?;
        s.n_sersic.validate("source.n_sersic", 0.2, 10.0)?;
        s.e1.validate("source.e1", -0.9, 0.9)?;
        s.e2.validate("source.e2", -0.9, 0.9)?;
        s.center_x.validate("source.center_x", -INF, INF)?;
        s.center_y.validate("source.center_y", -INF, INF)?;
        if let Some(ll) = &self.lens_light {
            ll.magnitude.validate("lens_light.magnitude", -10.0, 50.0)?;
            Error::check(instrument.is_some(), "lens_light.magnitude", "needs an `instrument` for the zero point")?;
            ll.r_sersic.validate("lens_light.r_sersic", 1e-4, 100.0)?;
            ll.n_sersic.validate("lens_light.n_sersic", 0.2, 10.0)?;
            ll.e1_offset.validate("lens_light.e1_offset", -0.5, 0.5)?;
            ll.e2_offset.validate("lens_light.e2_offset", -0.5, 0.5)?;
            ll.center_offset_x.validate("lens_light.center_offset_x", -INF, INF)?;
            ll.center_offset_y.validate("lens_light.center_offset_y", -INF, INF)?;
        }
        if let Some(nb) = &self.neighbour {
            Error::check((0.0..=1.0).contains(&nb.probability), "neighbour.probability", "must be in [0, 1]")?;
            Error::check((0.0..=1.0).contains(&nb.star_fraction), "neighbour.star_fraction", "must be in [0, 1]")?;
            nb.magnitude.validate("neighbour.magnitude", -10.0, 50.0)?;
            Error::check(instrument.is_some(), "neighbour.magnitude", "needs an `instrument` for the zero point")?;
            nb.distance.validate("neighbour.distance", 0.0, 1e4)?;
            nb.r_sersic.validate("neighbour.r_sersic", 1e-4, 100.0)?;
            nb.n_sersic.validate("neighbour.n_sersic", 0.2, 10.0)?;
            nb.e1.validate("neighbour.e1", -0.9, 0.9)?;
            nb.e2.validate("neighbour.e2", -0.9, 0.9)?;
        }
        match &self.noise {
            NoiseConfig::None {} => {}
            NoiseConfig::DeeplenseCounts { exposure_time, background_rms } => {
                exposure_time.validate("noise.exposure_time", 1e-9, INF)?;
                Error::check(*background_rms >= 0.0, "noise.background_rms", "must be >= 0")?;
            }
            NoiseConfig::Instrument { exposure_time } => {
                Error::check(instrument.is_some(), "noise", "type = \"instrument\" needs an `instrument`")?;
                if let Some(t) = exposure_time {
                    t.validate("noise.exposure_time", 1e-9, INF)?;
                }
            }
        }
        Error::check(!self.classes.is_empty(), "classes", "at least one class is needed")?;
        for (name, sub) in &self.classes {
            Error::check(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                &format!("classes.{name}"),
                "class names may use letters, digits, `_` and `-` only",
            )?;
            sub.validate(&format!("classes.{name}"))?;
        }
        if let Some(order) = &self.class_order {
            let mut sorted = order.clone();
            sorted.sort();
            let names: Vec<String> = self.classes.keys().cloned().collect();
            Error::check(sorted == names, "class_order", "must list every class exactly once")?;
        }
        Ok(())
    }
}

impl Substructure {
    fn validate(&self, key: &str) -> Result<()> {
        let k = |sub: &str| format!("{key}.{sub}");
        match self {
            Substructure::None {} => Ok(()),
            Substructure::PointMasses { count, mass_function, radius, .. } => {
                validate_count(count, &k("count"))?;
                validate_mass_function(mass_function, &k("mass_function"))?;
                validate_annulus(radius, &k("radius"))
            }
            Substructure::Halos { count, mass_function, concentration, truncation, radius, profile, .. } => {
                validate_count(count, &k("count"))?;
                validate_mass_function(mass_function, &k("mass_function"))?;
                concentration.validate(&k("concentration"), 0.1, 1000.0)?;
                match (profile, truncation) {
                    (HaloProfile::Tnfw, Some(t)) => t.validate(&k("truncation"), 1e-3, 1e6)?,
                    (HaloProfile::Tnfw, None) => {
                        return Err(Error::config(k("truncation"), "a tnfw profile needs a truncation"))
                    }
                    (HaloProfile::Nfw, Some(_)) => {
                        return Err(Error::config(k("truncation"), "only the tnfw profile is truncated"))
                    }
                    (HaloProfile::Nfw, None) => {}
                }
                validate_annulus(radius, &k("radius"))
            }
            Substructure::Vortex { total_mass, points, axion_mass_log10, length_constant, angle } => {
                total_mass.validate(&k("total_mass"), 0.0, 1e14)?;
                Error::check((1..=100_000).contains(points), &k("points"), "must be between 1 and 100000")?;
                axion_mass_log10.validate(&k("axion_mass_log10"), -40.0, 0.0)?;
                Error::check(*length_constant > 0.0, &k("length_constant"), "must be > 0")?;
                angle.validate(&k("angle"), -1e3, 1e3)
            }
        }
    }
}

fn validate_count(count: &Count, key: &str) -> Result<()> {
    match *count {
        Count::Fixed(n) => Error::check(n <= 100_000, key, "at most 100000 subhalos"),
        Count::Poisson { poisson } => {
            Error::check((0.0..=100_000.0).contains(&poisson), key, "mean must be in [0, 100000]")
        }
    }
}

fn validate_mass_function(mf: &MassFunction, key: &str) -> Result<()> {
    Error::check(mf.min > 0.0 && mf.max >= mf.min, key, "needs 0 < min <= max")?;
    Error::check(mf.slope.is_finite() && mf.slope != -1.0, key, "slope must be finite and not -1")
}

fn validate_annulus(r: &[f64; 2], key: &str) -> Result<()> {
    Error::check(r[0] >= 0.0 && r[1] >= r[0] && r[1].is_finite(), key, "needs 0 <= r_min <= r_max")
}
