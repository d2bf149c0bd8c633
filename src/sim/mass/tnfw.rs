//! Truncated NFW halo (Baltz, Marshall & Oguri 2009), as in lenstronomy's `TNFW`.
//!
//! rho(r) = rho_NFW(r) * r_t^2 / (r_t^2 + r^2). Parameters as [`super::Nfw`] plus
//! the truncation radius `r_trunc` (arcsec); `alpha_rs` is the deflection the
//! untruncated halo would have at Rs. With x = R/Rs, tau = r_trunc/Rs and
//! L(x) = ln(x / (tau + sqrt(tau^2 + x^2))):
//!
//! g(x) = tau^2/(tau^2+1)^2 [ (tau^2 + 1 + 2(x^2 - 1)) f(x) + pi tau + (tau^2 - 1) ln tau
//!        + sqrt(tau^2 + x^2) (-pi + L(x) (tau^2 - 1)/tau) ]
//!
//! and alpha = 4 rho0 Rs g(x)/x^2 (dx, dy). Radii are floored at 0.001 Rs.

use super::nfw::{nfw_f, nfw_projected, rho0_from_alpha_rs};
use super::{Hessian, MassProfile};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

const S: f64 = 0.001;

/// Truncated NFW halo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tnfw {
    /// Scale radius, arcsec.
    pub rs: f64,
    /// Deflection of the untruncated halo at the scale radius, arcsec.
    pub alpha_rs: f64,
    /// Truncation radius, arcsec.
    pub r_trunc: f64,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: f64,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: f64,
}

fn big_l(x: f64, tau: f64) -> f64 {
    let x = x.max(S);
    (x / (tau + (tau * tau + x * x).sqrt())).ln()
}

fn g(x: f64, tau: f64) -> f64 {
    let x = x.max(S);
    let t2 = tau * tau;
    t2 / ((t2 + 1.0) * (t2 + 1.0))
        * ((t2 + 1.0 + 2.0 * (x * x - 1.0)) * nfw_f(x)
            + tau * PI
            + (t2 - 1.0) * tau.ln()
            + (t2 + x * x).sqrt() * (-PI + big_l(x, tau) * (t2 - 1.0) / tau))
}

/// Projected density kernel: kappa = 2 rho0 Rs F(x, tau).
fn projected(x: f64, tau: f64) -> f64 {
    let x = x.max(S);
    let t2 = tau * tau;
    let a = t2 / ((t2 + 1.0) * (t2 + 1.0));
    let b = (t2 + 1.0) * nfw_projected(x);
    let c = 2.0 * nfw_f(x);
    let root = (t2 + x * x).sqrt();
    let d = -PI / root;
    let e = (t2 - 1.0) / (tau * root) * big_l(x, tau);
    a * (b + c + d + e)
}

fn h(x: f64, tau: f64) -> f64 {
    let x = x.max(S);
    let u = x * x;
    let t2 = tau * tau;
    let root = (t2 + u).sqrt();
    let lx = big_l(x, tau);
    let cos_term = if x < 1.0 { -(1.0 / x).acosh().powi(2) } else { (1.0 / x).acos().powi(2) };
    let lt = tau.ln();
    (2.0 * t2 * PI * (tau - root + tau * (tau + root).ln())
        + 2.0 * (t2 - 1.0) * tau * root * lx
        + t2 * (t2 - 1.0) * lx * lx
        + 4.0 * t2 * (u - 1.0) * nfw_f(x)
        + t2 * (t2 - 1.0) * cos_term
        + t2 * ((t2 - 1.0) * lt - t2 - 1.0) * u.ln()
        - t2 * ((t2 - 1.0) * lt * (4.0 * tau).ln() + 2.0 * (0.5 * tau).ln()
            - 2.0 * tau * (tau - PI) * (2.0 * tau).ln()))
        / ((t2 + 1.0) * (t2 + 1.0))
}

impl Tnfw {
    fn rho0(&self) -> f64 {
        rho0_from_alpha_rs(self.alpha_rs, self.rs)
    }
}

impl MassProfile for Tnfw {
    fn potential(&self, x: f64, y: f64) -> f64 {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(S * self.rs);
        2.0 * self.rho0() * self.rs.powi(3) * h(r / self.rs, self.r_trunc / self.rs)
    }

    #[inline]
    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(S * self.rs);
        let xr = (r / self.rs).max(S);
        let a = 4.0 * self.rho0() * self.rs * g(xr, self.r_trunc / self.rs) / (xr * xr);
        (a * dx, a * dy)
    }

    fn hessian(&self, x: f64, y: f64) -> Hessian {
        let (dx, dy) = (x - self.center_x, y - self.center_y);
        let r = (dx * dx + dy * dy).sqrt().max(S * self.rs);
        let xr = r / self.rs;
        let tau = self.r_trunc / self.rs;
        let rho0 = self.rho0();
        let f = projected(xr, tau);
        let kappa = 2.0 * rho0 * self.rs * f;
        let a = 2.0 * rho0 * self.rs * (2.0 * g(xr, tau) / (xr * xr) - f);
        Hessian::circular(kappa, a, dx, dy, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mass::Nfw;

    #[test]
    fn a_far_truncation_recovers_the_nfw() {
        let t = Tnfw { rs: 0.3, alpha_rs: 0.05, r_trunc: 3000.0, center_x: 0.0, center_y: 0.0 };
        let n = Nfw { rs: 0.3, alpha_rs: 0.05, center_x: 0.0, center_y: 0.0 };
        let (a, _) = t.deflection(0.4, 0.0);
        let (b, _) = n.deflection(0.4, 0.0);
        assert!((a - b).abs() / b < 1e-3, "{a} {b}");
    }

    #[test]
    fn truncation_reduces_the_deflection_far_out() {
        let t = Tnfw { rs: 0.3, alpha_rs: 0.05, r_trunc: 0.6, center_x: 0.0, center_y: 0.0 };
        let n = Nfw { rs: 0.3, alpha_rs: 0.05, center_x: 0.0, center_y: 0.0 };
        assert!(t.deflection(3.0, 0.0).0 < n.deflection(3.0, 0.0).0);
    }
}
