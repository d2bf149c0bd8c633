//! Flat Lambda-CDM distances and the conversions lensing needs.
//!
//! Matter plus a cosmological constant, no radiation (astropy's `FlatLambdaCDM`
//! with its default `Tcmb0 = 0`). Distances in Mpc.

use serde::{Deserialize, Serialize};

/// Speed of light, m/s.
pub const C_M_S: f64 = 299_792_458.0;
/// Newton's constant, m^3 kg^-1 s^-2 (CODATA 2018, as astropy).
pub const G_SI: f64 = 6.674_30e-11;
/// Solar mass, kg (IAU 2015 nominal, as astropy).
pub const M_SUN_KG: f64 = 1.988_409_870_698_051e30;
/// One megaparsec, m (astropy's value, digits as it prints them).
#[allow(clippy::excessive_precision)]
pub const MPC_M: f64 = 3.085_677_581_491_367_3e22;
/// Arcseconds per radian.
pub const ARCSEC_PER_RAD: f64 = 206_264.806_247_096_36;

/// A flat Lambda-CDM cosmology.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatLcdm {
    /// Hubble constant, km/s/Mpc.
    pub h0: f64,
    /// Matter density today.
    pub om0: f64,
}

impl FlatLcdm {
    /// E(z) = H(z) / H0.
    pub fn efunc(&self, z: f64) -> f64 {
        (self.om0 * (1.0 + z).powi(3) + 1.0 - self.om0).sqrt()
    }

    /// Hubble distance c / H0, Mpc.
    pub fn hubble_distance(&self) -> f64 {
        C_M_S / 1000.0 / self.h0
    }

    /// Line-of-sight comoving distance to `z`, Mpc (composite Simpson, 4096 intervals).
    pub fn comoving_distance(&self, z: f64) -> f64 {
        if z <= 0.0 {
            return 0.0;
        }
        let n = 4096;
        let h = z / n as f64;
        let f = |zz: f64| 1.0 / self.efunc(zz);
        let mut sum = f(0.0) + f(z);
        for i in 1..n {
            sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h);
        }
        self.hubble_distance() * sum * h / 3.0
    }

    /// Angular-diameter distance to `z`, Mpc.
    pub fn angular_diameter_distance(&self, z: f64) -> f64 {
        self.comoving_distance(z) / (1.0 + z)
    }

    /// Angular-diameter distance between `z1 < z2`, Mpc (flat universe).
    pub fn angular_diameter_distance_z1z2(&self, z1: f64, z2: f64) -> f64 {
        (self.comoving_distance(z2) - self.comoving_distance(z1)) / (1.0 + z2)
    }

    /// Luminosity distance to `z`, Mpc.
    pub fn luminosity_distance(&self, z: f64) -> f64 {
        self.comoving_distance(z) * (1.0 + z)
    }

    /// Critical density at `z`, Msun / Mpc^3 (physical).
    pub fn critical_density(&self, z: f64) -> f64 {
        let h0_si = self.h0 * 1000.0 / MPC_M;
        let rho_si = 3.0 * (h0_si * self.efunc(z)).powi(2) / (8.0 * std::f64::consts::PI * G_SI);
        rho_si / M_SUN_KG * MPC_M.powi(3)
    }

    /// Distances and densities of a lens plane at `z_lens` for a source at `z_source`.
    pub fn lens_plane(&self, z_lens: f64, z_source: f64) -> LensPlane {
        let dl = self.angular_diameter_distance(z_lens);
        let ds = self.angular_diameter_distance(z_source);
        let dls = self.angular_diameter_distance_z1z2(z_lens, z_source);
        LensPlane {
            dl,
            ds,
            dls,
            critical_density: self.critical_density(z_lens),
            critical_surface_density: C_M_S * C_M_S / (4.0 * std::f64::consts::PI * G_SI) * ds / (dl * dls) / M_SUN_KG
                * MPC_M,
        }
    }

    /// Einstein radius (arcsec) the way the DeepLense scripts compute it: with
    /// *luminosity* distances, `D_ls = D_s - D_l`, and 206265 arcsec per radian.
    /// A quirk of the public recipe, kept so `deeplense-*` presets match the data.
    pub fn einstein_radius_deeplense(&self, mass: f64, z_lens: f64, z_source: f64) -> f64 {
        let dl = self.luminosity_distance(z_lens);
        let ds = self.luminosity_distance(z_source);
        einstein_radius_rad(mass, (ds - dl) / (dl * ds) / MPC_M) * 206_265.0
    }

    /// Ratio by which deflections defined for a source at `z_convention` must be
    /// multiplied for a source at `z_source` (single lens plane at `z_lens`):
    /// `[D_ls/D_s](z_source) / [D_ls/D_s](z_convention)`.
    pub fn deflection_rescaling(&self, z_lens: f64, z_source: f64, z_convention: f64) -> f64 {
        let ratio = |zs: f64| self.angular_diameter_distance_z1z2(z_lens, zs) / self.angular_diameter_distance(zs);
        ratio(z_source) / ratio(z_convention)
    }
}

/// A lens plane: angular-diameter distances (Mpc) and densities at the lens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LensPlane {
    /// Observer to lens.
    pub dl: f64,
    /// Observer to source.
    pub ds: f64,
    /// Lens to source.
    pub dls: f64,
    /// Critical density of the universe at the lens redshift, Msun / Mpc^3.
    pub critical_density: f64,
    /// Critical surface density for lensing, Msun / Mpc^2.
    pub critical_surface_density: f64,
}

impl LensPlane {
    /// Einstein radius (arcsec) of a point mass `mass` (Msun).
    pub fn einstein_radius(&self, mass: f64) -> f64 {
        einstein_radius_rad(mass, self.dls / (self.dl * self.ds) / MPC_M) * ARCSEC_PER_RAD
    }

    /// Lensing parameters `(rs, alpha_rs)` in arcsec of an NFW halo of mass M200
    /// (Msun, 200 x critical) and concentration `c`, as lenstronomy's
    /// `LensCosmo.nfw_physical2angle`.
    pub fn nfw_angles(&self, m200: f64, concentration: f64) -> (f64, f64) {
        let rho_c = self.critical_density;
        let r200 = (3.0 * m200 / (4.0 * std::f64::consts::PI * 200.0 * rho_c)).cbrt();
        let c = concentration;
        let rho0 = 200.0 / 3.0 * rho_c * c.powi(3) / ((1.0 + c).ln() - c / (1.0 + c));
        let rs = r200 / c;
        let arcsec = 1.0 / ARCSEC_PER_RAD;
        let alpha_rs = rho0 * 4.0 * rs * rs * (1.0 + 0.5f64.ln());
        (rs / self.dl / arcsec, alpha_rs / self.critical_surface_density / self.dl / arcsec)
    }
}

fn einstein_radius_rad(mass: f64, distance_ratio_per_m: f64) -> f64 {
    (4.0 * G_SI * mass * M_SUN_KG / (C_M_S * C_M_S) * distance_ratio_per_m).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeplense_main_halo_has_the_recipe_einstein_radius() {
        let c = FlatLcdm { h0: 70.0, om0: 0.3 };
        let theta = c.einstein_radius_deeplense(1e12, 0.5, 1.0);
        assert!((theta - 1.2815).abs() < 5e-4, "{theta}");
    }

    #[test]
    fn multi_plane_factor_is_0_633() {
        let c = FlatLcdm { h0: 67.5, om0: 0.309 };
        let f = c.deflection_rescaling(0.5, 1.0, 2.5);
        assert!((f - 0.633).abs() < 2e-3, "{f}");
    }
}
