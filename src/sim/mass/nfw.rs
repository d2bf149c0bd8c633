//! Navarro-Frenk-White halo in lenstronomy's lensing parameterisation.
//!
//! rho(r) = rho0 / ((r/Rs) (1 + r/Rs)^2). The lensing normalisation is the
//! deflection at the scale radius, `alpha_rs`, so that
//! `rho0 = alpha_rs / (4 Rs^2 (1 + ln 1/2))` in angular units. With x = R/Rs:
//!
//! alpha(R) = 4 rho0 Rs g(x) / x^2 * (dx, dy),  g(x) = ln(x/2) + f(x)
//! kappa(R) = 2 rho0 Rs F(x),                  F(x) = (1 - f(x)) / (x^2 - 1)
//! psi(R)   = 2 rho0 Rs^3 h(x),                h(x) = ln^2(x/2) - arccosh^2(1/x) (x < 1),
//!                                            h(x) = ln^2(x/2) + arccos^2(1/x)  (x >= 1)
//!
//! with f(x) = arccosh(1/x)/sqrt(1-x^2) for x < 1 and arccos(1/x)/sqrt(x^2-1) for
//! x > 1. Near x = 1 the functions use series expansions instead of 0/0.

use super::{Hessian, MassProfile};
use serde::{Deserialize, Serialize};

/// Smallest x = R/Rs evaluated (lenstronomy's floor for g and h).
pub(crate) const X_MIN: f64 = 1e-6;

/// NFW halo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfw {
    /// Scale radius, arcsec.
    pub rs: f64,
    /// Deflection at the scale radius, arcsec.
    pub alpha_rs: f64,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: f64,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: f64,
}

/// rho0 (angular units) from the deflection at the scale radius.
pub(crate) fn rho0_from_alpha_rs(alpha_rs: f64, rs: f64) -> f64 {
    alpha_rs / (4.0 * rs * rs * (1.0 + 0.5f64.ln()))
}

/// f(x): arccosh(1/x)/sqrt(1-x^2) below 1, arccos(1/x)/sqrt(x^2-1) above, 1 at 1.
pub(crate) fn nfw_f(x: f64) -> f64 {
    let e = x - 1.0;
    if e.abs() < 1e-4 {
        1.0 - 2.0 * e / 3.0 + 7.0 * e * e / 15.0
    } else if x < 1.0 {
        let s = (1.0 - x * x).sqrt();
        s.atanh() / s
    } else {
        let s = (x * x - 1.0).sqrt();
        s.atan() / s
    }
}

/// F(x) = (1 - f(x)) / (x^2 - 1), the projected-density kernel; 1/3 at x = 1.
pub(crate) fn nfw_projected(x: f64) -> f64 {
    let e = x - 1.0;
    if e.abs() < 1e-4 {
        1.0 / 3.0 - 0.4 * e
    } else {
        (1.0 - nfw_f(x)) / (x * x - 1.0)
    }
}

fn g(x: f64) -> f64 {
    let x = x.max(X_MIN);
    (x / 2.0).ln() + nfw_f(x)
}

fn h(x: f64) -> f64 {
    let x = x.max(X_MIN);
    let l = (x / 2.0).ln();
    if x < 1.0 {
        l * l - (1.0 / x).acosh().powi(2)
    } else {
        l * l + (1.0 / x).acos().powi(2)
    }
}

impl Nfw {
    fn rho0(&self) -> f64 {
        rho0_from_alpha_rs(self.alpha_rs, self.rs)
    }
}

impl MassProfile for Nfw {
    fn potential(&self, x: f64, y: f64) -> f64 {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt();
        2.0 * self.rho0() * self.rs.powi(3) * h(r / self.rs)
    }

    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(1e-8);
        let xr = r / self.rs;
        let a = 4.0 * self.rho0() * self.rs * g(xr) / (xr * xr);
        (a * dx, a * dy)
    }

    fn hessian(&self, x: f64, y: f64) -> Hessian {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(1e-6);
        let xr = r / self.rs;
        let rho0 = self.rho0();
        let kappa = 2.0 * rho0 * self.rs * nfw_projected(xr.max(X_MIN));
        let a = 2.0 * rho0 * self.rs * (2.0 * g(xr) / (xr * xr) - nfw_projected(xr.max(X_MIN)));
        Hessian::circular(kappa, a, dx, dy, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflection_at_the_scale_radius_is_alpha_rs() {
        let nfw = Nfw { rs: 0.5, alpha_rs: 0.02, center_x: 0.0, center_y: 0.0 };
        let (ax, ay) = nfw.deflection(0.0, 0.5);
        assert!(ax.abs() < 1e-18 && (ay - 0.02).abs() < 1e-9, "{ay}");
    }

    #[test]
    fn kernels_are_continuous_through_one() {
        for &(a, b) in &[(1.0 - 1.0001e-4, 1.0 - 0.9999e-4), (1.0 + 0.9999e-4, 1.0 + 1.0001e-4)] {
            assert!((nfw_f(a) - nfw_f(b)).abs() < 1e-6);
            assert!((nfw_projected(a) - nfw_projected(b)).abs() < 1e-6);
        }
    }
}
