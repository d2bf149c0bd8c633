//! What a simulated dataset holds per row, and the one table of its parameter
//! columns that every writer (Parquet, FITS, CSV) and `schemas/` share.

use crate::sim::{Image, ImageParams};
use std::collections::BTreeMap;

/// Which images a dataset row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One `image` per row (classification).
    Classify,
    /// A high-resolution `hr` image and its area-averaged `lr` version.
    Superres {
        /// Downsampling factor from `hr` to `lr`.
        factor: usize,
    },
}

impl Task {
    /// Image column names and their side lengths for simulator images of `size`.
    pub fn image_columns(&self, size: usize) -> Vec<(&'static str, usize)> {
        match *self {
            Task::Classify => vec![("image", size)],
            Task::Superres { factor } => vec![("lr", size / factor), ("hr", size)],
        }
    }

    /// Short name, as written in metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Superres { .. } => "superres",
        }
    }
}

/// The column of a dataset of smooth-lens residuals that says whether each row's
/// fit found a galaxy-scale lens ([`Record::fit_lens_found`]).
pub const FIT_LENS_FOUND: &str = "fit_lens_found";

/// One row of a simulated dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Row id (also the random stream of the image).
    pub id: i64,
    /// Index into the class names.
    pub class_idx: usize,
    /// Images, in the order of [`Task::image_columns`].
    pub images: Vec<Image>,
    /// Drawn parameters.
    pub params: ImageParams,
    /// Number of substructure deflectors.
    pub n_subhalos: i32,
    /// Substructure signal-to-noise (see [`crate::sim::Simulator::sub_snr`]).
    pub sub_snr: Option<f64>,
    /// What is left of it after a smooth-lens refit (see
    /// [`crate::sim::detectability`]); None unless the dataset asked for it.
    pub sub_snr_refit: Option<f64>,
    /// For a row of smooth-lens residuals: whether the blind fit found a
    /// galaxy-scale lens, ending clear of the envelope's edge
    /// ([`crate::sim::fit::lens_clear_of_envelope`]); None for cutouts.
    pub fit_lens_found: Option<bool>,
}

/// Everything a writer needs besides the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Class names in `label_idx` order.
    pub class_names: Vec<String>,
    /// What each row carries.
    pub task: Task,
    /// Side of the simulator's images.
    pub image_size: usize,
    /// Key-value metadata written into the file (lensmae version, preset, seed...).
    pub metadata: BTreeMap<String, String>,
}

impl DatasetInfo {
    /// Image column names and sizes.
    pub fn image_columns(&self) -> Vec<(&'static str, usize)> {
        self.task.image_columns(self.image_size)
    }
}

/// A float parameter column: name, unit/description, whether it can be null, getter.
pub struct ParamColumn {
    /// Column name.
    pub name: &'static str,
    /// Unit and meaning, for schemas and FITS TUNIT/comments.
    pub description: &'static str,
    /// Whether rows may lack a value.
    pub nullable: bool,
    /// Value of a row.
    pub get: fn(&Record) -> Option<f64>,
}

impl ParamColumn {
    /// The unit the description names (after its last comma), in FITS / astropy
    /// spelling; `None` for dimensionless or arbitrary-flux columns.
    pub fn unit(&self) -> Option<&'static str> {
        if self.description.contains("apparent magnitude") {
            return Some("mag");
        }
        let named = self.description.split(" (").next()?.rsplit(", ").next()?;
        match named {
            "arcsec" => Some("arcsec"),
            "s" => Some("s"),
            "Msun" => Some("solMass"),
            "eV" => Some("eV"),
            "rad" => Some("rad"),
            _ => None,
        }
    }
}

/// The float parameter columns, in file order (`n_subhalos` is written separately
/// as an integer).
pub const PARAM_COLUMNS: [ParamColumn; 32] = [
    ParamColumn {
        name: "lens_theta_e",
        description: "main-lens Einstein radius, arcsec",
        nullable: false,
        get: |r| Some(r.params.lens_theta_e),
    },
    ParamColumn {
        name: "lens_e1",
        description: "main-lens ellipticity e1",
        nullable: false,
        get: |r| Some(r.params.lens_e1),
    },
    ParamColumn {
        name: "lens_e2",
        description: "main-lens ellipticity e2",
        nullable: false,
        get: |r| Some(r.params.lens_e2),
    },
    ParamColumn {
        name: "lens_center_x",
        description: "main-lens centre x, arcsec",
        nullable: false,
        get: |r| Some(r.params.lens_center_x),
    },
    ParamColumn {
        name: "lens_center_y",
        description: "main-lens centre y, arcsec",
        nullable: false,
        get: |r| Some(r.params.lens_center_y),
    },
    ParamColumn {
        name: "shear_gamma1",
        description: "external shear gamma1",
        nullable: false,
        get: |r| Some(r.params.shear_gamma1),
    },
    ParamColumn {
        name: "shear_gamma2",
        description: "external shear gamma2",
        nullable: false,
        get: |r| Some(r.params.shear_gamma2),
    },
    ParamColumn {
        name: "source_amp",
        description: "source Sersic amplitude, flux/arcsec^2",
        nullable: false,
        get: |r| Some(r.params.source_amp),
    },
    ParamColumn {
        name: "source_magnitude",
        description: "source apparent magnitude (null = drawn as amplitude)",
        nullable: true,
        get: |r| r.params.source_magnitude,
    },
    ParamColumn {
        name: "source_r_sersic",
        description: "source half-light radius, arcsec",
        nullable: false,
        get: |r| Some(r.params.source_r_sersic),
    },
    ParamColumn {
        name: "source_n_sersic",
        description: "source Sersic index",
        nullable: false,
        get: |r| Some(r.params.source_n_sersic),
    },
    ParamColumn {
        name: "source_e1",
        description: "source ellipticity e1",
        nullable: false,
        get: |r| Some(r.params.source_e1),
    },
    ParamColumn {
        name: "source_e2",
        description: "source ellipticity e2",
        nullable: false,
        get: |r| Some(r.params.source_e2),
    },
    ParamColumn {
        name: "source_x",
        description: "source centre x, arcsec",
        nullable: false,
        get: |r| Some(r.params.source_x),
    },
    ParamColumn {
        name: "source_y",
        description: "source centre y, arcsec",
        nullable: false,
        get: |r| Some(r.params.source_y),
    },
    ParamColumn {
        name: "psf_fwhm",
        description: "PSF FWHM, arcsec (0 = no PSF)",
        nullable: false,
        get: |r| Some(r.params.psf_fwhm),
    },
    ParamColumn {
        name: "psf_beta",
        description: "Moffat PSF's power-law index beta (null = a Gaussian PSF or none)",
        nullable: true,
        get: |r| r.params.psf_beta,
    },
    ParamColumn {
        name: "exposure_time",
        description: "exposure time, s (null = noise-free)",
        nullable: true,
        get: |r| r.params.exposure_time,
    },
    ParamColumn {
        name: "subhalo_mass_total",
        description: "total substructure mass, Msun",
        nullable: false,
        get: |r| Some(r.params.subhalo_mass_total()),
    },
    ParamColumn {
        name: "axion_mass",
        description: "axion mass m_a, eV (vortex classes)",
        nullable: true,
        get: |r| r.params.vortex.as_ref().map(|v| v.axion_mass),
    },
    ParamColumn {
        name: "vortex_angle",
        description: "vortex orientation, rad (vortex classes)",
        nullable: true,
        get: |r| r.params.vortex.as_ref().map(|v| v.angle),
    },
    ParamColumn {
        name: "vortex_total_mass",
        description: "vortex mass, Msun (vortex classes)",
        nullable: true,
        get: |r| r.params.vortex.as_ref().map(|v| v.total_mass),
    },
    ParamColumn {
        name: "subhalo_mass_max",
        description: "mass of the most massive subhalo, Msun (null = no subhalos)",
        nullable: true,
        get: |r| r.params.subhalo_mass_max(),
    },
    ParamColumn {
        name: "sub_snr",
        description:
            "substructure S/N: sqrt(sum (I_sub - I_smooth)^2 / sigma^2) (0 = no substructure, null = noise-free)",
        nullable: true,
        get: |r| r.sub_snr,
    },
    ParamColumn {
        name: "sub_snr_refit",
        description: "sub_snr left after refitting the smooth lens and source (an upper bound of what any classifier \
                      can see; null = not computed or noise-free)",
        nullable: true,
        get: |r| r.sub_snr_refit,
    },
    ParamColumn {
        name: FIT_LENS_FOUND,
        description: "smooth-lens residuals: 1 when the blind fit found a galaxy-scale lens (ended clear of the \
                      envelope's edge), 0 when it ended on the edge, which makes the row out of a residual \
                      classifier's domain (null = cutouts)",
        nullable: true,
        get: |r| r.fit_lens_found.map(|found| if found { 1.0 } else { 0.0 }),
    },
    ParamColumn {
        name: "lens_light_magnitude",
        description: "deflector light apparent magnitude (null = no lens light)",
        nullable: true,
        get: |r| r.params.lens_light.as_ref().map(|l| l.magnitude),
    },
    ParamColumn {
        name: "lens_light_r_sersic",
        description: "deflector light half-light radius, arcsec (null = no lens light)",
        nullable: true,
        get: |r| r.params.lens_light.as_ref().map(|l| l.r_sersic),
    },
    ParamColumn {
        name: "lens_light_n_sersic",
        description: "deflector light Sersic index (null = no lens light)",
        nullable: true,
        get: |r| r.params.lens_light.as_ref().map(|l| l.n_sersic),
    },
    ParamColumn {
        name: "neighbour_magnitude",
        description: "apparent magnitude of the galaxy or star beside the lens (null = none)",
        nullable: true,
        get: |r| r.params.neighbour.as_ref().map(|n| n.magnitude),
    },
    ParamColumn {
        name: "neighbour_distance",
        description: "distance of the neighbour from the cutout's centre, arcsec (null = none)",
        nullable: true,
        get: |r| r.params.neighbour.as_ref().map(|n| n.distance()),
    },
    ParamColumn {
        name: "neighbour_star",
        description: "1 when the neighbour is a star, 0 when a galaxy (null = none)",
        nullable: true,
        get: |r| r.params.neighbour.as_ref().map(|n| if n.star { 1.0 } else { 0.0 }),
    },
];
