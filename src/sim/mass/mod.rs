//! Lens mass profiles, one file each, behind the [`MassProfile`] trait.
//!
//! Units: positions and deflections in arcsec, potential in arcsec^2. All profiles
//! follow lenstronomy's conventions (same parameter names, same ellipticity and
//! normalisation conventions), so parameters can be moved between the two codes.
//! [`MassModel`] is the registry: a tagged enum, so the TOML/JSON name, the
//! parameters and the implementation cannot drift apart.

mod nfw;
mod point_mass;
mod shear;
mod sie;
mod sis;
mod tnfw;

pub use nfw::Nfw;
pub use point_mass::PointMass;
pub use shear::Shear;
pub use sie::{Sie, SieKernel};
pub use sis::Sis;
pub use tnfw::{Tnfw, TnfwKernel};

use serde::{Deserialize, Serialize};

/// Second derivatives of the lensing potential.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hessian {
    /// d^2 psi / dx^2
    pub xx: f64,
    /// d^2 psi / dx dy
    pub xy: f64,
    /// d^2 psi / dy^2
    pub yy: f64,
}

impl Hessian {
    /// Convergence kappa = (psi_xx + psi_yy) / 2.
    pub fn kappa(&self) -> f64 {
        0.5 * (self.xx + self.yy)
    }
}

impl Hessian {
    /// The Hessian of a circularly symmetric profile at offset (dx, dy), radius r,
    /// from its convergence and the amplitude `a` of its tangential shear
    /// (gamma = a (dy^2 - dx^2, -2 dx dy) / r^2).
    pub(crate) fn circular(kappa: f64, a: f64, dx: f64, dy: f64, r: f64) -> Hessian {
        let (g1, g2) = (a * (dy * dy - dx * dx) / (r * r), -2.0 * a * dx * dy / (r * r));
        Hessian { xx: kappa + g1, xy: g2, yy: kappa - g1 }
    }
}

/// What every lens mass profile provides.
pub trait MassProfile {
    /// Lensing potential psi(x, y), arcsec^2.
    fn potential(&self, x: f64, y: f64) -> f64;
    /// Deflection (alpha_x, alpha_y) = grad psi, arcsec.
    fn deflection(&self, x: f64, y: f64) -> (f64, f64);
    /// Hessian of the potential.
    fn hessian(&self, x: f64, y: f64) -> Hessian;
}

/// Every mass profile lensmae knows, selected by `type` in TOML/JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MassModel {
    /// Singular isothermal sphere.
    Sis(Sis),
    /// Singular isothermal ellipsoid (NIE with a vanishing core).
    Sie(Sie),
    /// External shear.
    Shear(Shear),
    /// Point mass.
    PointMass(PointMass),
    /// Navarro-Frenk-White halo.
    Nfw(Nfw),
    /// Truncated NFW halo (Baltz, Marshall & Oguri 2009).
    Tnfw(Tnfw),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            MassModel::Sis($p) => $e,
            MassModel::Sie($p) => $e,
            MassModel::Shear($p) => $e,
            MassModel::PointMass($p) => $e,
            MassModel::Nfw($p) => $e,
            MassModel::Tnfw($p) => $e,
        }
    };
}

impl MassProfile for MassModel {
    fn potential(&self, x: f64, y: f64) -> f64 {
        dispatch!(self, p => p.potential(x, y))
    }
    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        dispatch!(self, p => p.deflection(x, y))
    }
    fn hessian(&self, x: f64, y: f64) -> Hessian {
        dispatch!(self, p => p.hessian(x, y))
    }
}
