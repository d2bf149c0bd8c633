//! From a validated [`SimConfig`] to images: draw the per-image parameters, build
//! the [`Scene`], render it, add noise.
//!
//! Randomness: image `index` of a dataset made with `seed` uses its own ChaCha8
//! stream (`seed`, stream = `index`), so every image is reproducible on its own and
//! the output does not depend on the number of threads or the order of work.

use super::config::{
    Count, EinsteinRadiusConvention, HaloProfile, MassFunction, NoiseConfig, Placement, PsfConfig, SimConfig,
    Substructure,
};
use super::cosmology::{FlatLcdm, LensPlane};
use super::distribution::Param;
use super::grid::{Image, PixelGrid};
use super::instrument::Instrument;
use super::light::{LightProfile, Sersic};
use super::mass::{MassModel, Nfw, PointMass, Shear, Sie, Tnfw};
use super::noise::Noise;
use super::psf::{Psf, PsfKernel};
use super::scene::{Camera, DeflectionField, Neighbour, Scene};
use crate::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Poisson};
use std::f64::consts::TAU;
use std::sync::Arc;

/// One drawn subhalo.
#[derive(Debug, Clone, PartialEq)]
pub struct SubhaloDraw {
    /// Mass (point mass) or M200 (halo), Msun.
    pub mass: f64,
    /// Position x, arcsec.
    pub x: f64,
    /// Position y, arcsec.
    pub y: f64,
    /// Concentration (halos only).
    pub concentration: Option<f64>,
    /// Truncation radius over scale radius (TNFW only).
    pub truncation: Option<f64>,
}

/// The drawn axion vortex.
#[derive(Debug, Clone, PartialEq)]
pub struct VortexDraw {
    /// Axion mass, eV.
    pub axion_mass: f64,
    /// Orientation of the line, radians.
    pub angle: f64,
    /// Total mass, Msun.
    pub total_mass: f64,
}

/// The drawn light of the deflector.
#[derive(Debug, Clone, PartialEq)]
pub struct LensLightDraw {
    /// Apparent magnitude.
    pub magnitude: f64,
    /// Sersic amplitude, flux / arcsec^2.
    pub amp: f64,
    /// Half-light radius, arcsec.
    pub r_sersic: f64,
    /// Sersic index.
    pub n_sersic: f64,
    /// e1 (the mass's plus the drawn offset).
    pub e1: f64,
    /// e2 (the mass's plus the drawn offset).
    pub e2: f64,
    /// Centre x, arcsec.
    pub center_x: f64,
    /// Centre y, arcsec.
    pub center_y: f64,
}

/// A neighbour's draw: a galaxy (an elliptical Sersic) or a star.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourDraw {
    /// A star (a point source through the PSF) rather than a galaxy.
    pub star: bool,
    /// Apparent magnitude.
    pub magnitude: f64,
    /// Total flux, e-/s.
    pub flux: f64,
    /// Centre x, arcsec.
    pub center_x: f64,
    /// Centre y, arcsec.
    pub center_y: f64,
    /// A galaxy's half-light radius, arcsec (0 for a star).
    pub r_sersic: f64,
    /// A galaxy's Sersic index (0 for a star).
    pub n_sersic: f64,
    /// A galaxy's e1.
    pub e1: f64,
    /// A galaxy's e2.
    pub e2: f64,
}

impl NeighbourDraw {
    /// Distance from the cutout's centre, arcsec.
    pub fn distance(&self) -> f64 {
        self.center_x.hypot(self.center_y)
    }
}

/// Every random quantity behind one image; with the config it fixes the image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageParams {
    /// Main-lens Einstein radius, arcsec (before any deflection rescaling).
    pub lens_theta_e: f64,
    /// Main-lens e1.
    pub lens_e1: f64,
    /// Main-lens e2.
    pub lens_e2: f64,
    /// Main-lens centre x, arcsec.
    pub lens_center_x: f64,
    /// Main-lens centre y, arcsec.
    pub lens_center_y: f64,
    /// Shear gamma1.
    pub shear_gamma1: f64,
    /// Shear gamma2.
    pub shear_gamma2: f64,
    /// Source amplitude, flux / arcsec^2.
    pub source_amp: f64,
    /// Source apparent magnitude, when the recipe draws magnitudes.
    pub source_magnitude: Option<f64>,
    /// Source half-light radius, arcsec.
    pub source_r_sersic: f64,
    /// Source Sersic index.
    pub source_n_sersic: f64,
    /// Source e1.
    pub source_e1: f64,
    /// Source e2.
    pub source_e2: f64,
    /// Source centre x, arcsec.
    pub source_x: f64,
    /// Source centre y, arcsec.
    pub source_y: f64,
    /// PSF FWHM, arcsec (0 without PSF).
    pub psf_fwhm: f64,
    /// The Moffat PSF's beta, for a recipe of Moffat PSFs.
    pub psf_beta: Option<f64>,
    /// A PSF image at the pixels, in place of a Gaussian of `psf_fwhm`: a Moffat
    /// recipe's kernel, or the PSF model a fit to a survey's cutout is given.
    pub psf_kernel: Option<Arc<PsfKernel>>,
    /// Exposure time, s (None when noise-free).
    pub exposure_time: Option<f64>,
    /// Subhalos (point masses or halos).
    pub subhalos: Vec<SubhaloDraw>,
    /// Axion vortex, for vortex classes.
    pub vortex: Option<VortexDraw>,
    /// The deflector's light, when the recipe has it.
    pub lens_light: Option<LensLightDraw>,
    /// A neighbouring galaxy or star, when the recipe has them and this image drew one.
    pub neighbour: Option<NeighbourDraw>,
}

impl ImageParams {
    /// Number of substructure deflectors.
    pub fn n_subhalos(&self, vortex_points: u32) -> usize {
        self.subhalos.len() + if self.vortex.is_some() { vortex_points as usize } else { 0 }
    }

    /// Mass of the most massive subhalo, Msun (None without subhalos).
    pub fn subhalo_mass_max(&self) -> Option<f64> {
        self.subhalos.iter().map(|s| s.mass).reduce(f64::max)
    }

    /// Total substructure mass, Msun.
    pub fn subhalo_mass_total(&self) -> f64 {
        self.subhalos.iter().map(|s| s.mass).sum::<f64>() + self.vortex.as_ref().map_or(0.0, |v| v.total_mass)
    }
}

/// One simulated image with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedImage {
    /// Index into the class names.
    pub class_idx: usize,
    /// The final image (noise and output scale applied).
    pub image: Image,
    /// What was drawn.
    pub params: ImageParams,
    /// How far the noise lets the substructure be seen (see [`Simulator::sub_snr`]):
    /// 0 without substructure, None for noise-free recipes.
    pub sub_snr: Option<f64>,
    /// What is left of it once the smooth lens and source are refitted (see
    /// [`super::detectability`]); None unless asked for, or noise-free.
    pub sub_snr_refit: Option<f64>,
}

/// A simulated super-resolution pair (see [`Simulator::simulate_pair`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedPair {
    /// Index into the class names.
    pub class_idx: usize,
    /// The low-resolution observation.
    pub lr: Image,
    /// The high-resolution image (noise-free when the recipe has noise).
    pub hr: Image,
    /// What was drawn.
    pub params: ImageParams,
    /// Substructure signal-to-noise of the LR observation (None when noise-free).
    pub sub_snr: Option<f64>,
}

/// A validated config with its cosmology pre-computed.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    class_names: Vec<String>,
    instrument: Option<Instrument>,
    lens_plane: LensPlane,
    /// Einstein radius of 1 Msun in the config's convention; theta_E ~ sqrt(M).
    theta_e_per_sqrt_msun: f64,
    deflection_scale: f64,
    /// Deflection of the main lens and shear when the config fixes them.
    fixed_field: Option<DeflectionField>,
}

impl Simulator {
    /// Validate `config` and pre-compute distances.
    pub fn new(config: SimConfig) -> Result<Simulator> {
        config.validate()?;
        let c = &config.cosmology;
        let cosmo = FlatLcdm { h0: c.h0, om0: c.om0 };
        let lens_plane = cosmo.lens_plane(c.z_lens, c.z_source);
        let theta_e_per_sqrt_msun = match c.einstein_radius {
            EinsteinRadiusConvention::AngularDiameter => lens_plane.einstein_radius(1.0),
            EinsteinRadiusConvention::DeeplenseLuminosity => cosmo.einstein_radius_deeplense(1.0, c.z_lens, c.z_source),
        };
        let deflection_scale = config.ray_tracing.as_ref().map_or(1.0, |rt| {
            FlatLcdm { h0: rt.h0, om0: rt.om0 }.deflection_rescaling(c.z_lens, c.z_source, rt.z_source_convention)
        });
        let mut sim = Simulator {
            class_names: config.class_names(),
            instrument: config.resolved_instrument()?,
            config,
            lens_plane,
            theta_e_per_sqrt_msun,
            deflection_scale,
            fixed_field: None,
        };
        sim.fixed_field = sim.main_lens_field();
        Ok(sim)
    }

    /// The main lens and shear evaluated once on the grid, if nothing about them
    /// varies between images.
    fn main_lens_field(&self) -> Option<DeflectionField> {
        let (l, sh) = (&self.config.lens, &self.config.shear);
        let params = [l.theta_e.as_ref(), l.mass.as_ref(), Some(&l.e1), Some(&l.e2), Some(&l.center_x)]
            .into_iter()
            .chain([Some(&l.center_y), Some(&sh.gamma1), Some(&sh.gamma2)]);
        if !params.flatten().all(|p| matches!(p, Param::Fixed(_))) {
            return None;
        }
        // With the lens fixed, any draw gives the same main lens, shear and grid.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let template = self.sample_params(0, &mut rng);
        let scene = self.scene(0, &template);
        Some(DeflectionField::new(&scene.lenses[..2], &self.camera(&template)))
    }

    /// The config this simulator runs.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Class names in `label_idx` order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The factor applied to all deflections (1 without a ray-tracing convention).
    pub fn deflection_scale(&self) -> f64 {
        self.deflection_scale
    }

    /// Einstein radius (arcsec) of a point mass of `mass` Msun.
    pub fn einstein_radius(&self, mass: f64) -> f64 {
        self.theta_e_per_sqrt_msun * mass.sqrt()
    }

    /// Number of point masses in a vortex of `class_idx` (0 for other classes).
    pub fn vortex_points(&self, class_idx: usize) -> u32 {
        match self.substructure(class_idx) {
            Substructure::Vortex { points, .. } => *points,
            _ => 0,
        }
    }

    /// A vortex class's half-length times axion mass, arcsec eV (None for other classes).
    pub fn vortex_length_constant(&self, class_idx: usize) -> Option<f64> {
        match self.substructure(class_idx) {
            Substructure::Vortex { length_constant, .. } => Some(*length_constant),
            _ => None,
        }
    }

    fn substructure(&self, class_idx: usize) -> &Substructure {
        &self.config.classes[&self.class_names[class_idx]]
    }

    /// Draw the parameters of one image of class `class_idx`.
    pub fn sample_params<R: Rng>(&self, class_idx: usize, rng: &mut R) -> ImageParams {
        let cfg = &self.config;
        let lens_theta_e = match (&cfg.lens.theta_e, &cfg.lens.mass) {
            (Some(t), _) => t.sample(rng),
            (None, Some(m)) => self.einstein_radius(m.sample(rng)),
            (None, None) => unreachable!("validated: the lens has theta_e or mass"),
        };
        let (lens_e1, lens_e2) = (cfg.lens.e1.sample(rng), cfg.lens.e2.sample(rng));
        let (lens_center_x, lens_center_y) = (cfg.lens.center_x.sample(rng), cfg.lens.center_y.sample(rng));
        let (shear_gamma1, shear_gamma2) = (cfg.shear.gamma1.sample(rng), cfg.shear.gamma2.sample(rng));
        let s = &cfg.source;
        let amp_or_mag = s.amp.as_ref().or(s.magnitude.as_ref()).expect("validated").sample(rng);
        let source_r_sersic = s.r_sersic.sample(rng);
        let source_n_sersic = s.n_sersic.sample(rng);
        let (source_amp, source_magnitude) = if s.magnitude.is_some() {
            (self.amplitude_of_magnitude(amp_or_mag, source_r_sersic, source_n_sersic), Some(amp_or_mag))
        } else {
            (amp_or_mag, None)
        };
        let (source_e1, source_e2) = (s.e1.sample(rng), s.e2.sample(rng));
        let (source_x, source_y) = (s.center_x.sample(rng), s.center_y.sample(rng));
        let psf_fwhm = match &cfg.psf {
            PsfConfig::None {} => 0.0,
            PsfConfig::Gaussian { fwhm, .. } | PsfConfig::Moffat { fwhm, .. } => fwhm.sample(rng),
        };
        let exposure_time = match &cfg.noise {
            NoiseConfig::None {} => None,
            NoiseConfig::DeeplenseCounts { exposure_time, .. } => Some(exposure_time.sample(rng)),
            NoiseConfig::Instrument { exposure_time } => Some(match exposure_time {
                Some(t) => t.sample(rng),
                None => {
                    let i = self.instrument.as_ref().expect("validated");
                    i.exposure_time * i.num_exposures as f64
                }
            }),
        };
        let (subhalos, vortex) = self.sample_substructure(class_idx, rng);
        // Drawn last, so that recipes without lens light keep their random streams.
        let lens_light = cfg.lens_light.as_ref().map(|ll| {
            let magnitude = ll.magnitude.sample(rng);
            let (r_sersic, n_sersic) = (ll.r_sersic.sample(rng), ll.n_sersic.sample(rng));
            let (e1, e2) = capped_ellipticity(lens_e1 + ll.e1_offset.sample(rng), lens_e2 + ll.e2_offset.sample(rng));
            LensLightDraw {
                magnitude,
                amp: self.amplitude_of_magnitude(magnitude, r_sersic, n_sersic),
                r_sersic,
                n_sersic,
                e1,
                e2,
                center_x: lens_center_x + ll.center_offset_x.sample(rng),
                center_y: lens_center_y + ll.center_offset_y.sample(rng),
            }
        });
        // After the lens light, for the same reason.
        let neighbour = cfg.neighbour.as_ref().and_then(|nb| {
            if rng.random::<f64>() >= nb.probability {
                return None;
            }
            let star = rng.random::<f64>() < nb.star_fraction;
            let magnitude = nb.magnitude.sample(rng);
            let (distance, angle) = (nb.distance.sample(rng), rng.random::<f64>() * TAU);
            let instrument = self.instrument.as_ref().expect("validated: magnitudes need an instrument");
            let mut draw = NeighbourDraw {
                star,
                magnitude,
                flux: instrument.magnitude_to_cps(magnitude),
                center_x: distance * angle.cos(),
                center_y: distance * angle.sin(),
                r_sersic: 0.0,
                n_sersic: 0.0,
                e1: 0.0,
                e2: 0.0,
            };
            if !star {
                draw.r_sersic = nb.r_sersic.sample(rng);
                draw.n_sersic = nb.n_sersic.sample(rng);
                (draw.e1, draw.e2) = capped_ellipticity(nb.e1.sample(rng), nb.e2.sample(rng));
            }
            Some(draw)
        });
        // Last of all, so that a Moffat recipe draws the lenses its Gaussian twin draws.
        let psf_beta = match &cfg.psf {
            PsfConfig::Moffat { beta, .. } => Some(beta.sample(rng)),
            PsfConfig::None {} | PsfConfig::Gaussian { .. } => None,
        };
        let psf_kernel = psf_beta.map(|beta| self.moffat_kernel(psf_fwhm, beta, cfg.image.pixel_scale));
        ImageParams {
            lens_theta_e,
            lens_e1,
            lens_e2,
            lens_center_x,
            lens_center_y,
            shear_gamma1,
            shear_gamma2,
            source_amp,
            source_magnitude,
            source_r_sersic,
            source_n_sersic,
            source_e1,
            source_e2,
            source_x,
            source_y,
            psf_fwhm,
            psf_beta,
            exposure_time,
            subhalos,
            vortex,
            lens_light,
            neighbour,
            psf_kernel,
        }
    }

    /// The kernel of a Moffat recipe's PSF of `fwhm` arcsec and `beta` at pixels of
    /// `pixel_scale` arcsec: the recipe's `side` at its own pixels; at others (a
    /// super-resolution pair's coarse image), or without a side, as many pixels as
    /// hold its light ([`crate::sim::psf::moffat_side`]).
    fn moffat_kernel(&self, fwhm: f64, beta: f64, pixel_scale: f64) -> Arc<PsfKernel> {
        let fixed_side = match &self.config.psf {
            PsfConfig::Moffat { side, .. } if pixel_scale == self.config.image.pixel_scale => *side,
            _ => None,
        };
        let fwhm = fwhm / pixel_scale;
        let kernel = match fixed_side {
            Some(side) => PsfKernel::moffat(fwhm, beta, side),
            None => PsfKernel::moffat_enclosing(fwhm, beta),
        };
        Arc::new(kernel.expect("validated: FWHM > 0, beta > 1, an odd side"))
    }

    /// The Sersic amplitude (flux / arcsec^2 at the half-light radius) of a profile
    /// of apparent magnitude `magnitude`.
    pub fn amplitude_of_magnitude(&self, magnitude: f64, r_sersic: f64, n_sersic: f64) -> f64 {
        let unit = Sersic { amp: 1.0, r_sersic, n_sersic, ..Sersic::default() };
        let instrument = self.instrument.as_ref().expect("validated: magnitudes need an instrument");
        instrument.magnitude_to_cps(magnitude) / unit.total_flux_per_amp()
    }

    /// The apparent magnitude of a Sersic profile of amplitude `amp` (the inverse of
    /// [`Simulator::amplitude_of_magnitude`]); None without an instrument, or for a
    /// profile of no flux.
    pub fn magnitude_of_amplitude(&self, amp: f64, r_sersic: f64, n_sersic: f64) -> Option<f64> {
        let unit = Sersic { amp: 1.0, r_sersic, n_sersic, ..Sersic::default() };
        let counts_per_second = amp * unit.total_flux_per_amp();
        let instrument = self.instrument.as_ref()?;
        (counts_per_second > 0.0 && counts_per_second.is_finite())
            .then(|| instrument.zero_point - 2.5 * counts_per_second.log10())
    }

    fn sample_substructure<R: Rng>(&self, class_idx: usize, rng: &mut R) -> (Vec<SubhaloDraw>, Option<VortexDraw>) {
        match self.substructure(class_idx) {
            Substructure::None {} => (Vec::new(), None),
            Substructure::PointMasses { count, mass_function, radius, placement } => {
                let n = draw_count(count, rng);
                // Masses first, then positions: the DeepLense order.
                let masses: Vec<f64> = (0..n).map(|_| draw_mass(mass_function, rng)).collect();
                let subs = masses
                    .into_iter()
                    .map(|mass| {
                        let (x, y) = draw_position(radius, *placement, rng);
                        SubhaloDraw { mass, x, y, concentration: None, truncation: None }
                    })
                    .collect();
                (subs, None)
            }
            Substructure::Halos { count, mass_function, concentration, truncation, radius, placement, .. } => {
                let n = draw_count(count, rng);
                let subs = (0..n)
                    .map(|_| {
                        let mass = draw_mass(mass_function, rng);
                        let (x, y) = draw_position(radius, *placement, rng);
                        let concentration = Some(concentration.sample(rng));
                        let truncation = truncation.as_ref().map(|t| t.sample(rng));
                        SubhaloDraw { mass, x, y, concentration, truncation }
                    })
                    .collect();
                (subs, None)
            }
            Substructure::Vortex { total_mass, axion_mass_log10, angle, .. } => {
                let axion_mass = 10f64.powf(axion_mass_log10.sample(rng));
                let angle = angle.sample(rng);
                let total_mass = total_mass.sample(rng);
                (Vec::new(), Some(VortexDraw { axion_mass, angle, total_mass }))
            }
        }
    }

    /// The camera for one image.
    pub fn camera(&self, params: &ImageParams) -> Camera {
        let im = &self.config.image;
        let psf = match (&params.psf_kernel, &self.config.psf) {
            (Some(kernel), _) => Psf::Pixelated(kernel.clone()),
            (None, PsfConfig::None {}) => Psf::None,
            (None, PsfConfig::Gaussian { truncation, .. }) => {
                Psf::Gaussian { fwhm: params.psf_fwhm, truncation: *truncation }
            }
            // A Moffat recipe's images carry their kernel; what has none (a fit told
            // only a FWHM) is seen through the Gaussian of that FWHM.
            (None, PsfConfig::Moffat { .. }) => Psf::Gaussian { fwhm: params.psf_fwhm, truncation: 4.0 },
        };
        Camera { grid: PixelGrid { size: im.size, pixel_scale: im.pixel_scale }, supersampling: im.supersampling, psf }
    }

    /// The scene of one image of class `class_idx` with parameters `params`.
    pub fn scene(&self, class_idx: usize, params: &ImageParams) -> Scene {
        let p = params;
        let mut lenses = vec![
            MassModel::Sie(Sie {
                theta_e: p.lens_theta_e,
                e1: p.lens_e1,
                e2: p.lens_e2,
                center_x: p.lens_center_x,
                center_y: p.lens_center_y,
            }),
            MassModel::Shear(Shear { gamma1: p.shear_gamma1, gamma2: p.shear_gamma2 }),
        ];
        let sub = self.substructure(class_idx);
        for s in &p.subhalos {
            lenses.push(match (sub, s.concentration) {
                (Substructure::Halos { profile, .. }, Some(c)) => {
                    let (rs, alpha_rs) = self.lens_plane.nfw_angles(s.mass, c);
                    let (center_x, center_y) = (p.lens_center_x + s.x, p.lens_center_y + s.y);
                    match profile {
                        HaloProfile::Nfw => MassModel::Nfw(Nfw { rs, alpha_rs, center_x, center_y }),
                        HaloProfile::Tnfw => MassModel::Tnfw(Tnfw {
                            rs,
                            alpha_rs,
                            r_trunc: rs * s.truncation.unwrap_or(f64::INFINITY),
                            center_x,
                            center_y,
                        }),
                    }
                }
                _ => MassModel::PointMass(PointMass {
                    theta_e: self.einstein_radius(s.mass),
                    center_x: p.lens_center_x + s.x,
                    center_y: p.lens_center_y + s.y,
                }),
            });
        }
        if let (Some(v), Substructure::Vortex { points, length_constant, .. }) = (&p.vortex, sub) {
            let half_length = length_constant / v.axion_mass;
            let theta_e = self.einstein_radius(v.total_mass / *points as f64);
            let (c, s) = (v.angle.cos(), v.angle.sin());
            for i in 0..*points {
                // numpy.linspace(-L, L, points)
                let t = if *points == 1 {
                    -half_length
                } else {
                    -half_length + 2.0 * half_length * i as f64 / (*points - 1) as f64
                };
                lenses.push(MassModel::PointMass(PointMass {
                    theta_e,
                    center_x: p.lens_center_x + t * c,
                    center_y: p.lens_center_y + t * s,
                }));
            }
        }
        Scene {
            lenses,
            deflection_scale: self.deflection_scale,
            source: Sersic {
                amp: p.source_amp,
                r_sersic: p.source_r_sersic,
                n_sersic: p.source_n_sersic,
                e1: p.source_e1,
                e2: p.source_e2,
                center_x: p.source_x,
                center_y: p.source_y,
            },
            lens_light: p.lens_light.as_ref().map(|l| Sersic {
                amp: l.amp,
                r_sersic: l.r_sersic,
                n_sersic: l.n_sersic,
                e1: l.e1,
                e2: l.e2,
                center_x: l.center_x,
                center_y: l.center_y,
            }),
            neighbour: p.neighbour.as_ref().map(|n| {
                if n.star {
                    Neighbour::Star { flux: n.flux, x: n.center_x, y: n.center_y }
                } else {
                    let unit = Sersic { amp: 1.0, r_sersic: n.r_sersic, n_sersic: n.n_sersic, ..Sersic::default() };
                    Neighbour::Galaxy(Sersic {
                        amp: n.flux / unit.total_flux_per_amp(),
                        r_sersic: n.r_sersic,
                        n_sersic: n.n_sersic,
                        e1: n.e1,
                        e2: n.e2,
                        center_x: n.center_x,
                        center_y: n.center_y,
                    })
                }
            }),
        }
    }

    /// The noise model of one image.
    pub fn noise(&self, params: &ImageParams) -> Noise {
        self.noise_at(params.exposure_time)
    }

    /// The noise of an image observed for `exposure_time` s (the recipe's noise
    /// model; none without an exposure time).
    pub fn noise_at(&self, exposure_time: Option<f64>) -> Noise {
        match (&self.config.noise, exposure_time) {
            (NoiseConfig::DeeplenseCounts { background_rms, .. }, Some(t)) => {
                Noise::DeepLenseCounts { exposure_time: t, background_rms: *background_rms }
            }
            (NoiseConfig::Instrument { .. }, Some(t)) => {
                Noise::Instrument { instrument: self.instrument.clone().expect("validated"), exposure_time: t }
            }
            _ => Noise::None,
        }
    }

    /// The noise-free image for `params`, output scale applied.
    pub fn render_noise_free(&self, class_idx: usize, params: &ImageParams) -> Image {
        let mut image = self.render(class_idx, params);
        self.apply_output_scale(&mut image);
        image
    }

    /// Simulate image `index` of class `class_idx` of a dataset made with `seed`.
    pub fn simulate(&self, class_idx: usize, seed: u64, index: u64) -> SimulatedImage {
        self.simulate_with(class_idx, seed, index, false)
    }

    /// [`Self::simulate`], with `sub_snr_refit` when `refit` (a smooth-lens fit:
    /// about 0.1-0.2 s of one core per image with substructure).
    pub fn simulate_with(&self, class_idx: usize, seed: u64, index: u64, refit: bool) -> SimulatedImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let params = self.sample_params(class_idx, &mut rng);
        let noise = self.noise(&params);
        let camera = self.camera(&params);
        let (mut image, smooth) =
            self.render_for_sub_snr(&camera, class_idx, &params, &noise, self.fixed_field.as_ref());
        let sub_snr = sub_snr_between(&image, smooth.as_ref(), &noise, camera.grid.pixel_scale);
        let sub_snr_refit = match sub_snr {
            Some(s) if refit && s > 0.0 => {
                super::detectability::refit_smooth_lens(self, class_idx, &params, &image, &noise)
                    .map(|r| r.sub_snr_refit)
            }
            Some(_) if refit => Some(0.0),
            _ => None,
        };
        noise.apply(&mut image, self.config.image.pixel_scale, &mut rng);
        self.apply_output_scale(&mut image);
        SimulatedImage { class_idx, image, params, sub_snr, sub_snr_refit }
    }

    /// The noise-weighted distance between the noise-free image and the same lens
    /// without its substructure, sqrt(sum (I_sub - I_smooth)^2 / sigma^2), with sigma^2
    /// the expected noise variance of each pixel of the image with substructure.
    /// It bounds what any classifier can see: near 0 the noise hides the substructure.
    /// 0 for classes without substructure; None when the recipe adds no noise.
    pub fn sub_snr(&self, class_idx: usize, params: &ImageParams, noise_free: &Image, noise: &Noise) -> Option<f64> {
        self.sub_snr_on(&self.camera(params), class_idx, params, noise_free, noise)
    }

    /// [`Self::sub_snr`] of an image taken with `camera`.
    fn sub_snr_on(
        &self,
        camera: &Camera,
        class_idx: usize,
        params: &ImageParams,
        noise_free: &Image,
        noise: &Noise,
    ) -> Option<f64> {
        let smooth = (self.has_substructure(class_idx) && *noise != Noise::None).then(|| {
            let mut scene = self.scene(class_idx, params);
            scene.lenses.truncate(SMOOTH_LENSES);
            scene.render_with(camera, self.fixed_field.as_ref())
        });
        sub_snr_between(noise_free, smooth.as_ref(), noise, camera.grid.pixel_scale)
    }

    fn has_substructure(&self, class_idx: usize) -> bool {
        !matches!(self.substructure(class_idx), Substructure::None {})
    }

    /// The noise-free image taken with `camera` and, when `sub_snr` will need it
    /// (substructure, and noise to weigh it by), the same lens without its
    /// substructure, from one pass over the rays.
    fn render_for_sub_snr(
        &self,
        camera: &Camera,
        class_idx: usize,
        params: &ImageParams,
        noise: &Noise,
        fixed: Option<&DeflectionField>,
    ) -> (Image, Option<Image>) {
        let scene = self.scene(class_idx, params);
        if self.has_substructure(class_idx) && *noise != Noise::None {
            let (image, smooth) = scene.render_with_smooth(camera, fixed, SMOOTH_LENSES);
            (image, Some(smooth))
        } else {
            (scene.render_with(camera, fixed), None)
        }
    }

    /// A super-resolution pair of image `index` of class `class_idx`: the
    /// high-resolution image on the recipe's grid and the low-resolution one a
    /// `factor`-times coarser instrument takes of the same sky.
    ///
    /// Noise-free recipes give the HR image and its block mean (the DeepLense
    /// super-resolution data). Recipes with noise give what an SR model is for: HR
    /// noise-free (the truth), LR rendered through the instrument on pixels `factor`
    /// times larger (the same sub-pixel samples summed, the PSF at that pixel
    /// scale) with the noise of such pixels (sky per pixel x factor^2), divided by
    /// factor^2 so that it is in the HR pixels' units like a block mean; `sub_snr` is
    /// then that of the LR observation.
    pub fn simulate_pair(&self, class_idx: usize, seed: u64, index: u64, factor: usize) -> SimulatedPair {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let params = self.sample_params(class_idx, &mut rng);
        let mut hr = self.render(class_idx, &params);
        let noise = self.noise(&params);
        let (mut lr, sub_snr) = if noise == Noise::None {
            (hr.bin_mean(factor), None)
        } else {
            let camera = self.coarse_camera(&params, factor);
            let (mut lr, smooth) = self.render_for_sub_snr(&camera, class_idx, &params, &noise, None);
            let sub_snr = sub_snr_between(&lr, smooth.as_ref(), &noise, camera.grid.pixel_scale);
            noise.apply(&mut lr, camera.grid.pixel_scale, &mut rng);
            // In the units of the HR pixels, as a block mean is (the DeepLense
            // super-resolution data's convention, which models and baselines assume).
            let per_hr_pixel = 1.0 / (factor * factor) as f64;
            lr.pixels.iter_mut().for_each(|v| *v *= per_hr_pixel);
            (lr, sub_snr)
        };
        self.apply_output_scale(&mut hr);
        self.apply_output_scale(&mut lr);
        SimulatedPair { class_idx, lr, hr, params, sub_snr }
    }

    /// The camera of the recipe with pixels `factor` times larger, sampling the sky
    /// at the same sub-pixel positions.
    fn coarse_camera(&self, params: &ImageParams, factor: usize) -> Camera {
        let fine = self.camera(params);
        let pixel_scale = fine.grid.pixel_scale * factor as f64;
        // A kernel is sampled at the pixels it blurs: the Moffat's again at these.
        let psf = match (&self.config.psf, params.psf_beta) {
            (PsfConfig::Moffat { .. }, Some(beta)) => {
                Psf::Pixelated(self.moffat_kernel(params.psf_fwhm, beta, pixel_scale))
            }
            _ => fine.psf,
        };
        Camera {
            grid: PixelGrid { size: fine.grid.size / factor, pixel_scale },
            supersampling: fine.supersampling.max(1) * factor,
            psf,
        }
    }

    /// Lensed, pixelated, PSF-convolved image, taking the main lens from the
    /// pre-computed field when the config fixes it.
    fn render(&self, class_idx: usize, params: &ImageParams) -> Image {
        self.scene(class_idx, params).render_with(&self.camera(params), self.fixed_field.as_ref())
    }

    fn apply_output_scale(&self, image: &mut Image) {
        let scale = self.config.image.output_scale;
        if scale != 1.0 {
            image.pixels.iter_mut().for_each(|v| *v *= scale);
        }
    }
}

/// The lenses of a scene without its substructure: the main lens and the shear.
const SMOOTH_LENSES: usize = 2;

/// sqrt(sum (I - I_smooth)^2 / sigma^2) over the pixels of `noise_free` (sigma^2
/// the variance `noise` gives them); 0 without a smooth image (no substructure),
/// `None` without noise.
fn sub_snr_between(noise_free: &Image, smooth: Option<&Image>, noise: &Noise, pixel_scale: f64) -> Option<f64> {
    let variance = noise.variance(noise_free, pixel_scale)?;
    let Some(smooth) = smooth else { return Some(0.0) };
    let chi2: f64 = noise_free
        .pixels
        .iter()
        .zip(&smooth.pixels)
        .zip(&variance)
        .filter(|(_, v)| **v > 0.0) // only a noiseless custom instrument has such pixels
        .map(|((a, b), v)| (a - b) * (a - b) / v)
        .sum();
    Some(chi2.sqrt())
}

/// (e1, e2) scaled down to a modulus of at most 0.9, keeping the angle: an offset
/// added to the mass's ellipticity must still describe an ellipse.
pub(super) fn capped_ellipticity(e1: f64, e2: f64) -> (f64, f64) {
    let modulus = e1.hypot(e2);
    if modulus > 0.9 {
        (e1 * 0.9 / modulus, e2 * 0.9 / modulus)
    } else {
        (e1, e2)
    }
}

fn draw_count<R: Rng>(count: &Count, rng: &mut R) -> usize {
    match *count {
        Count::Fixed(n) => n as usize,
        Count::Poisson { poisson } if poisson > 0.0 => {
            Poisson::new(poisson).expect("validated mean").sample(rng) as usize
        }
        Count::Poisson { .. } => 0,
    }
}

/// Inverse-transform draw from dN/dm ~ m^slope on [min, max].
fn draw_mass<R: Rng>(mf: &MassFunction, rng: &mut R) -> f64 {
    let u: f64 = rng.random();
    let b1 = mf.slope + 1.0;
    let (lo, hi) = (mf.min.powf(b1), mf.max.powf(b1));
    (lo + (hi - lo) * u).powf(1.0 / b1)
}

fn draw_position<R: Rng>(radius: &[f64; 2], placement: Placement, rng: &mut R) -> (f64, f64) {
    let r = match placement {
        Placement::UniformRadius => radius[0] + (radius[1] - radius[0]) * rng.random::<f64>(),
        Placement::UniformArea => {
            let (a, b) = (radius[0] * radius[0], radius[1] * radius[1]);
            (a + (b - a) * rng.random::<f64>()).sqrt()
        }
    };
    let phi = TAU * rng.random::<f64>();
    (r * phi.sin(), r * phi.cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::presets::preset;

    #[test]
    fn sub_snr_is_zero_without_substructure_positive_with_it_and_absent_without_noise() {
        let survey = Simulator::new(preset("survey").unwrap()).unwrap();
        let snr = |sim: &Simulator, class: &str, index| {
            let class_idx = sim.class_names().iter().position(|c| c == class).unwrap();
            sim.simulate(class_idx, 3, index).sub_snr
        };
        for i in 0..5 {
            assert_eq!(snr(&survey, "no_sub", i), Some(0.0));
            assert!(snr(&survey, "cdm", i).unwrap() > 0.0);
            assert!(snr(&survey, "axion", i).unwrap() > 0.0);
        }
        let model2 = Simulator::new(preset("deeplense-model2").unwrap()).unwrap();
        assert_eq!(snr(&model2, "cdm", 0), None);
    }

    #[test]
    fn a_moffat_recipe_draws_its_gaussian_twins_lenses_and_blurs_them_with_its_own_kernel() {
        let gaussian = Simulator::new(preset("survey").unwrap()).unwrap();
        let moffat_of = |beta: f64| {
            let mut recipe = preset("survey").unwrap();
            let PsfConfig::Gaussian { fwhm, .. } = recipe.psf.clone() else { panic!("the survey's PSF is a Gaussian") };
            recipe.psf = PsfConfig::Moffat { fwhm, beta: Param::Fixed(beta), side: None };
            Simulator::new(recipe).unwrap()
        };
        let moffat = moffat_of(2.5);
        let cdm = gaussian.class_names().iter().position(|c| c == "cdm").unwrap();
        let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(8), ChaCha8Rng::seed_from_u64(8));
        let (p, q) = (gaussian.sample_params(cdm, &mut a), moffat.sample_params(cdm, &mut b));
        assert_eq!(q.psf_beta, Some(2.5));
        let kernel = q.psf_kernel.clone().expect("a Moffat recipe's image carries its kernel");
        assert_eq!(*kernel, PsfKernel::moffat_enclosing(q.psf_fwhm / 0.101, 2.5).unwrap());
        assert_eq!(ImageParams { psf_beta: Some(2.5), psf_kernel: Some(kernel.clone()), ..p.clone() }, q);
        let (blurred, through_kernel) = (moffat.render_noise_free(cdm, &q), gaussian.render_noise_free(cdm, &q));
        assert_eq!(blurred, through_kernel);
        // The wings: the Moffat of beta 2.5 moves light the Gaussian of its FWHM does
        // not; as beta grows the Moffat nears that Gaussian (not to the last percent:
        // the kernel is averaged across each pixel, the Gaussian sampled at its centre).
        let wide = gaussian.render_noise_free(cdm, &p);
        let peak = wide.pixels.iter().cloned().fold(0.0, f64::max);
        let largest_difference = |image: &Image| {
            image.pixels.iter().zip(&wide.pixels).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / peak
        };
        let steep = moffat.sample_params(cdm, &mut ChaCha8Rng::seed_from_u64(8));
        let steep = ImageParams { psf_kernel: Some(moffat_of(80.0).moffat_kernel(q.psf_fwhm, 80.0, 0.101)), ..steep };
        let (near_gaussian, winged) =
            (largest_difference(&moffat.render_noise_free(cdm, &steep)), largest_difference(&blurred));
        assert!(near_gaussian < 0.1 && winged > 3.0 * near_gaussian, "{near_gaussian} {winged}");
        // Recipes whose Moffat is none, named by the key at fault.
        for (beta, side, key) in [(1.0, None, "psf.beta"), (3.0, Some(20), "psf.side")] {
            let mut recipe = preset("survey").unwrap();
            recipe.psf = PsfConfig::Moffat { fwhm: Param::Fixed(0.17), beta: Param::Fixed(beta), side };
            let error = Simulator::new(recipe).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn magnitudes_come_back_from_the_amplitudes_they_drew() {
        let sim = Simulator::new(preset("survey").unwrap()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..50 {
            let p = sim.sample_params(1, &mut rng);
            let light = p.lens_light.as_ref().unwrap();
            let lens = sim.magnitude_of_amplitude(light.amp, light.r_sersic, light.n_sersic).unwrap();
            assert!((lens - light.magnitude).abs() < 1e-9, "{lens} vs {}", light.magnitude);
            let source = sim.magnitude_of_amplitude(p.source_amp, p.source_r_sersic, p.source_n_sersic).unwrap();
            assert!((source - p.source_magnitude.unwrap()).abs() < 1e-9);
        }
        assert_eq!(sim.magnitude_of_amplitude(0.0, 0.3, 1.0), None);
    }

    #[test]
    fn the_lens_light_follows_the_mass_within_its_offsets() {
        let sim = Simulator::new(preset("survey").unwrap()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..200 {
            let p = sim.sample_params(2, &mut rng);
            let light = p.lens_light.as_ref().unwrap();
            assert!(light.e1.hypot(light.e2) <= 0.9);
            assert!((light.e1 - p.lens_e1).abs() <= 0.2 + 1e-12 && (light.e2 - p.lens_e2).abs() <= 0.2 + 1e-12);
            assert!((light.center_x - p.lens_center_x).abs() < 0.15, "{light:?}");
            assert!((18.5..=21.0).contains(&light.magnitude));
        }
        let (e1, e2) = capped_ellipticity(0.9, 0.9);
        assert!((e1.hypot(e2) - 0.9).abs() < 1e-12 && (e1 - e2).abs() < 1e-15, "{e1} {e2}");
        assert_eq!(capped_ellipticity(0.3, -0.4), (0.3, -0.4));
    }

    /// The survey recipe with a neighbour in half the cutouts, 30% of them stars.
    fn survey_with_neighbours() -> Simulator {
        let neighbour =
            "\n[neighbour]\nprobability = 0.5\nstar_fraction = 0.3\nmagnitude = { uniform = [18.0, 24.0] }\n\
                         distance = { uniform = [2.0, 3.0] }\nr_sersic = 0.3\nn_sersic = 1.0\n";
        let text = format!("{}{neighbour}", crate::sim::presets::preset_toml("survey").unwrap());
        Simulator::new(SimConfig::from_toml(&text).unwrap()).unwrap()
    }

    #[test]
    fn neighbours_come_at_their_rate_and_distance_after_every_other_draw() {
        let (with, without) = (survey_with_neighbours(), Simulator::new(preset("survey").unwrap()).unwrap());
        let (mut present, mut stars) = (0, 0);
        for i in 0..2000 {
            let p = with.sample_params(1, &mut ChaCha8Rng::seed_from_u64(i));
            let q = without.sample_params(1, &mut ChaCha8Rng::seed_from_u64(i));
            assert_eq!(ImageParams { neighbour: None, ..p.clone() }, q, "the other draws move");
            assert!(q.neighbour.is_none());
            let Some(n) = p.neighbour else { continue };
            present += 1;
            stars += n.star as usize;
            assert!((2.0..=3.0).contains(&n.distance()) && (18.0..=24.0).contains(&n.magnitude), "{n:?}");
            assert!((n.flux / 10f64.powf(-0.4 * (n.magnitude - 25.72)) - 1.0).abs() < 1e-12);
            if n.star {
                assert_eq!((n.r_sersic, n.n_sersic), (0.0, 0.0));
            } else {
                assert_eq!((n.r_sersic, n.n_sersic), (0.3, 1.0));
            }
        }
        assert!((900..1100).contains(&present), "{present} of 2000 with a neighbour");
        let star_fraction = stars as f64 / present as f64;
        assert!((0.25..0.35).contains(&star_fraction), "{star_fraction}");
    }

    #[test]
    fn a_neighbour_adds_its_flux_and_leaves_the_substructure_signal_alone() {
        let sim = survey_with_neighbours();
        let cdm = sim.config().class_names().iter().position(|c| c == "cdm").unwrap();
        let mut seen = [false, false];
        for i in 0.. {
            let p = sim.sample_params(cdm, &mut ChaCha8Rng::seed_from_u64(i));
            let Some(n) = p.neighbour.clone() else { continue };
            let alone = ImageParams { neighbour: None, ..p.clone() };
            let camera = sim.camera(&p);
            let smooth_lenses = 2; // the SIE and the shear
            let (image, smooth) = sim.scene(cdm, &p).render_with_smooth(&camera, None, smooth_lenses);
            let (image0, smooth0) = sim.scene(cdm, &alone).render_with_smooth(&camera, None, smooth_lenses);
            let added: f64 = image.pixels.iter().zip(&image0.pixels).map(|(a, b)| a - b).sum();
            // A star's flux lands whole; a galaxy's (r_e 0.3", 2-3" out) nearly whole.
            let floor = if n.star { 1.0 - 1e-9 } else { 0.9 };
            assert!(added / n.flux > floor && added / n.flux < 1.0 + 1e-9, "{added} of {} ({n:?})", n.flux);
            for ((a, b), (c, d)) in
                image.pixels.iter().zip(&smooth.pixels).zip(image0.pixels.iter().zip(&smooth0.pixels))
            {
                assert!(((a - b) - (c - d)).abs() <= 1e-9 * image.max(), "the substructure signal moved");
            }
            seen[n.star as usize] = true;
            if seen == [true, true] {
                break;
            }
        }
    }

    #[test]
    fn noise_free_pairs_are_the_image_and_its_block_mean() {
        let sim = Simulator::new(preset("deeplense-model2").unwrap()).unwrap();
        for class in 0..3 {
            let pair = sim.simulate_pair(class, 5, 9, 4);
            let single = sim.simulate(class, 5, 9);
            assert_eq!(pair.hr, single.image);
            assert_eq!(pair.lr, single.image.bin_mean(4));
            assert_eq!(pair.sub_snr, None);
        }
    }

    #[test]
    fn the_coarse_instrument_sums_the_same_sky_samples_and_adds_its_own_noise() {
        let sim = Simulator::new(preset("survey").unwrap()).unwrap();
        let cdm = sim.class_names().iter().position(|c| c == "cdm").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let params = sim.sample_params(cdm, &mut rng);
        let scene = sim.scene(cdm, &params);
        let (fine, coarse) = (sim.camera(&params), sim.coarse_camera(&params, 4));
        assert_eq!((coarse.grid.size, coarse.supersampling), (16, 8));
        let from_fine = scene.render_unconvolved(&fine).bin_sum(4);
        let direct = scene.render_unconvolved(&coarse);
        for (a, b) in direct.pixels.iter().zip(&from_fine.pixels) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-9), "{a} vs {b}");
        }
        // The LR noise: residuals of many pairs against the noise-free LR renders
        // have the variance the noise model gives pixels 4x as wide.
        let (mut ratio_sum, mut count) = (0.0, 0);
        for index in 0..30 {
            let pair = sim.simulate_pair(cdm, 4, index, 4);
            assert!(pair.sub_snr.unwrap() >= 0.0);
            let camera = sim.coarse_camera(&pair.params, 4);
            let clean = sim.scene(cdm, &pair.params).render_with(&camera, None);
            let variance = sim.noise(&pair.params).variance(&clean, camera.grid.pixel_scale).unwrap();
            for ((noisy, clean), v) in pair.lr.pixels.iter().zip(&clean.pixels).zip(&variance) {
                ratio_sum += (noisy * 16.0 - clean).powi(2) / v; // LR comes in HR pixels' units
                count += 1;
            }
            assert_eq!(pair.hr, sim.render_noise_free(cdm, &pair.params), "HR is the noise-free truth");
            // In the HR pixels' units: the same mean brightness as the HR image.
            let mean = |img: &Image| img.pixels.iter().sum::<f64>() / img.pixels.len() as f64;
            assert!((mean(&pair.lr) / mean(&pair.hr) - 1.0).abs() < 0.05, "{} vs {}", mean(&pair.lr), mean(&pair.hr));
        }
        let ratio = ratio_sum / count as f64;
        assert!((ratio - 1.0).abs() < 0.05, "residual / expected variance {ratio}");
    }
}
