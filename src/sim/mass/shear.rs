//! External shear about the origin.
//!
//! psi = (gamma1 (x^2 - y^2) + 2 gamma2 x y) / 2, so
//! alpha = (gamma1 x + gamma2 y, gamma2 x - gamma1 y).

use super::{Hessian, MassProfile};
use serde::{Deserialize, Serialize};

/// External shear (lenstronomy's `SHEAR` with `ra_0 = dec_0 = 0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shear {
    /// Shear component along the x axis.
    #[serde(default)]
    pub gamma1: f64,
    /// Shear component along the diagonal.
    #[serde(default)]
    pub gamma2: f64,
}

impl MassProfile for Shear {
    fn potential(&self, x: f64, y: f64) -> f64 {
        0.5 * (self.gamma1 * (x * x - y * y) + 2.0 * self.gamma2 * x * y)
    }

    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        (self.gamma1 * x + self.gamma2 * y, self.gamma2 * x - self.gamma1 * y)
    }

    fn hessian(&self, _x: f64, _y: f64) -> Hessian {
        Hessian { xx: self.gamma1, xy: self.gamma2, yy: -self.gamma1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shear_has_no_convergence() {
        let s = Shear { gamma1: 0.05, gamma2: -0.02 };
        assert_eq!(s.hessian(1.0, 2.0).kappa(), 0.0);
        assert_eq!(s.deflection(0.0, 0.0), (0.0, 0.0));
        assert_eq!(s.deflection(1.0, 0.0), (0.05, -0.02));
    }
}
