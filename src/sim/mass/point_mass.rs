//! Point mass.
//!
//! psi = theta_E^2 ln r, alpha = theta_E^2 (dx, dy) / r^2. The radius is floored at
//! 1e-25 arcsec as in lenstronomy, so a ray through the mass stays finite.

use super::{Hessian, MassProfile};
use serde::{Deserialize, Serialize};

const R_MIN: f64 = 1e-25;

/// Point mass lens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointMass {
    /// Einstein radius, arcsec.
    pub theta_e: f64,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: f64,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: f64,
}

impl MassProfile for PointMass {
    fn potential(&self, x: f64, y: f64) -> f64 {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        self.theta_e * self.theta_e * (dx * dx + dy * dy).sqrt().max(R_MIN).ln()
    }

    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r2 = (dx * dx + dy * dy).max(R_MIN * R_MIN);
        let k = self.theta_e * self.theta_e / r2;
        (k * dx, k * dy)
    }

    fn hessian(&self, x: f64, y: f64) -> Hessian {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r2 = (dx * dx + dy * dy).max(R_MIN * R_MIN);
        let c = self.theta_e * self.theta_e / (r2 * r2);
        Hessian { xx: c * (dy * dy - dx * dx), xy: -2.0 * c * dx * dy, yy: c * (dx * dx - dy * dy) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflection_at_the_einstein_radius_is_the_einstein_radius() {
        let p = PointMass { theta_e: 0.01, center_x: 1.0, center_y: 0.0 };
        let (ax, ay) = p.deflection(1.01, 0.0);
        assert!((ax - 0.01).abs() < 1e-15 && ay == 0.0);
        assert_eq!(p.hessian(3.0, 1.0).kappa(), 0.0);
    }
}
