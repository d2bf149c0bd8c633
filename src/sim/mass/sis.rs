//! Singular isothermal sphere.
//!
//! kappa(r) = theta_E / (2 r); the deflection has constant modulus theta_E and
//! points away from the centre; psi = theta_E r.

use super::{Hessian, MassProfile};
use serde::{Deserialize, Serialize};

/// Radius below which the singular centre is regularised (lenstronomy uses the same idea).
const R_MIN: f64 = 1e-15;

/// Singular isothermal sphere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sis {
    /// Einstein radius, arcsec.
    pub theta_e: f64,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: f64,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: f64,
}

impl MassProfile for Sis {
    fn potential(&self, x: f64, y: f64) -> f64 {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        self.theta_e * (dx * dx + dy * dy).sqrt()
    }

    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt();
        if r < R_MIN {
            return (0.0, 0.0);
        }
        (self.theta_e * dx / r, self.theta_e * dy / r)
    }

    fn hessian(&self, x: f64, y: f64) -> Hessian {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(R_MIN);
        let r3 = r * r * r;
        Hessian { xx: self.theta_e * dy * dy / r3, xy: -self.theta_e * dx * dy / r3, yy: self.theta_e * dx * dx / r3 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflection_modulus_is_theta_e_everywhere_but_the_centre() {
        let sis = Sis { theta_e: 1.3, center_x: 0.1, center_y: -0.2 };
        for &(x, y) in &[(1.0, 0.0), (0.1, 2.0), (-3.0, 0.7)] {
            let (ax, ay) = sis.deflection(x, y);
            assert!(((ax * ax + ay * ay).sqrt() - 1.3).abs() < 1e-14);
        }
        assert_eq!(sis.deflection(0.1, -0.2), (0.0, 0.0));
        // kappa = theta_E / (2 r)
        assert!((sis.hessian(2.1, -0.2).kappa() - 1.3 / 4.0).abs() < 1e-14);
    }
}
