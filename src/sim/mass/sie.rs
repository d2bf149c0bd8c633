//! Singular isothermal ellipsoid, in lenstronomy's default form: the non-singular
//! isothermal ellipsoid (Keeton & Kochanek 1998) with a vanishing core.
//!
//! kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q)) in the frame of the major axis;
//! `theta_e` is the product-averaged Einstein radius. With `b = theta_E sqrt(q)`,
//! `s = 1e-10 / sqrt(q)`, `psi = sqrt(q^2 (s^2 + x'^2) + y'^2)`:
//!
//! alpha_x' = b / sqrt(1-q^2) atan(sqrt(1-q^2) x' / (psi + s))
//! alpha_y' = b / sqrt(1-q^2) atanh(sqrt(1-q^2) y' / (psi + q^2 s))

use super::{Hessian, MassProfile};
use crate::fastmath;
use crate::sim::ellipticity::Ellipse;
use serde::{Deserialize, Serialize};

/// lenstronomy's SIE core size before the sqrt(q) scaling.
const S_SCALE: f64 = 1e-10;
/// lenstronomy replaces q = 1 by this value to keep the formulas finite.
const Q_MAX: f64 = 0.99999999;

/// Singular isothermal ellipsoid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sie {
    /// Product-averaged Einstein radius, arcsec.
    pub theta_e: f64,
    /// Ellipticity modulus along x (see [`Ellipse`]).
    #[serde(default)]
    pub e1: f64,
    /// Ellipticity modulus along the diagonal.
    #[serde(default)]
    pub e2: f64,
    /// Centre x, arcsec.
    #[serde(default)]
    pub center_x: f64,
    /// Centre y, arcsec.
    #[serde(default)]
    pub center_y: f64,
}

/// An SIE with its trigonometry done once, for evaluating many rays.
#[derive(Debug, Clone)]
pub struct SieKernel {
    center_x: f64,
    center_y: f64,
    nie: Nie,
}

impl SieKernel {
    /// Deflection at (x, y), identical to [`Sie::deflection`].
    #[inline]
    pub fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (xp, yp) = self.nie.ellipse.to_profile_frame(x - self.center_x, y - self.center_y);
        let (ax, ay) = self.nie.deflection_major_axis(xp, yp);
        self.nie.ellipse.to_sky_frame(ax, ay)
    }

    /// Adds the deflection at every `(xs[i], y)` of one row to `(ax[i], ay[i])`.
    pub fn accumulate_row(&self, xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
        sie_row(self, xs, y, ax, ay)
    }
}

/// [`SieKernel::deflection`] along a row, as a plain loop compiled for AVX-512,
/// AVX2 and NEON: `atan` and `ln` are [`fastmath`]'s branch-free versions, so the
/// loop vectorises at the CPU's width (the survey recipe redraws its SIE every
/// image: this loop is a third of a `no_sub` render). atan(sq x' / (psi + s))
/// takes the ratio's parts (one division for the reduction), and atanh(z) =
/// ln((D + sq y') / (D - sq y')) / 2 with D = psi + q^2 s. Agrees with the scalar
/// deflection to ~1e-15 arcsec.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn sie_row(k: &SieKernel, xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
    let e = &k.nie.ellipse;
    let (c, s) = (e.cos_phi(), e.sin_phi());
    let (q2, core, sq) = (k.nie.q * k.nie.q, k.nie.s, k.nie.sq);
    let scale = k.nie.b / sq;
    let dy = y - k.center_y;
    for ((&x, ax), ay) in xs.iter().zip(ax.iter_mut()).zip(ay.iter_mut()) {
        let dx = x - k.center_x;
        let xp = c * dx + s * dy;
        let yp = c * dy - s * dx;
        let psi = (q2 * (core * core + xp * xp) + yp * yp).sqrt();
        let along = scale * fastmath::atan_of_ratio(sq * xp, psi + core);
        let (d, t) = (psi + q2 * core, sq * yp);
        let across = scale * 0.5 * fastmath::ln((d + t) / (d - t));
        *ax += c * along - s * across;
        *ay += s * along + c * across;
    }
}

/// Pre-computed constants of the major-axis NIE.
#[derive(Debug, Clone)]
struct Nie {
    ellipse: Ellipse,
    b: f64,
    s: f64,
    q: f64,
    sq: f64,
}

impl Sie {
    /// Pre-compute the constants of this profile for repeated evaluation.
    pub fn kernel(&self) -> SieKernel {
        SieKernel { center_x: self.center_x, center_y: self.center_y, nie: self.nie() }
    }

    fn nie(&self) -> Nie {
        let ellipse = Ellipse::from_e1e2(self.e1, self.e2);
        let q = ellipse.q.min(Q_MAX);
        Nie { ellipse, b: self.theta_e * ellipse.q.sqrt(), s: S_SCALE / ellipse.q.sqrt(), q, sq: (1.0 - q * q).sqrt() }
    }
}

impl Nie {
    #[inline]
    fn psi(&self, x: f64, y: f64) -> f64 {
        (self.q * self.q * (self.s * self.s + x * x) + y * y).sqrt()
    }

    #[inline]
    fn deflection_major_axis(&self, x: f64, y: f64) -> (f64, f64) {
        let psi = self.psi(x, y);
        let k = self.b / self.sq;
        (k * (self.sq * x / (psi + self.s)).atan(), k * (self.sq * y / (psi + self.q * self.q * self.s)).atanh())
    }
}

impl MassProfile for Sie {
    fn potential(&self, x: f64, y: f64) -> f64 {
        let nie = self.nie();
        let (xp, yp) = nie.ellipse.to_profile_frame(x - self.center_x, y - self.center_y);
        let (ax, ay) = nie.deflection_major_axis(xp, yp);
        let psi = nie.psi(xp, yp);
        xp * ax + yp * ay - nie.b * nie.s * 0.5 * ((psi + nie.s).powi(2) + (1.0 - nie.q * nie.q) * xp * xp).ln()
    }

    fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        self.kernel().deflection(x, y)
    }

    fn hessian(&self, x: f64, y: f64) -> Hessian {
        // Analytic derivatives of the major-axis deflection (lenstronomy differences
        // them numerically instead).
        let nie = self.nie();
        let (xp, yp) = nie.ellipse.to_profile_frame(x - self.center_x, y - self.center_y);
        let (q2, s, t) = (nie.q * nie.q, nie.s, nie.sq);
        let psi = nie.psi(xp, yp);
        let (dpsi_dx, dpsi_dy) = (q2 * xp / psi, yp / psi);
        let dx_den = psi + s;
        let u = t * xp / dx_den;
        let cx = nie.b / (1.0 + u * u) / (dx_den * dx_den);
        let fxx = cx * (dx_den - xp * dpsi_dx);
        let fxy = -cx * xp * dpsi_dy;
        let dy_den = psi + q2 * s;
        let v = t * yp / dy_den;
        let cy = nie.b / (1.0 - v * v) / (dy_den * dy_den);
        let fyy = cy * (dy_den - yp * dpsi_dy);
        let (xx, xy, yy) = nie.ellipse.tensor_to_sky_frame(fxx, fxy, fyy);
        Hessian { xx, xy, yy }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mass::Sis;

    #[test]
    fn the_vectorised_row_agrees_with_the_scalar_deflection() {
        let sie = Sie { theta_e: 1.2815, e1: 0.1, e2: -0.07, center_x: 0.01, center_y: -0.02 };
        let k = sie.kernel();
        // Across the axes, at the centre's core, far out, and on either side of the
        // atan reduction's thresholds.
        let xs: Vec<f64> = (-400..=400).map(|i| i as f64 * 0.0123).chain([0.01, 0.01 + 1e-9, 1e-7, 37.0]).collect();
        for y in [-3.1, -0.02, -0.02 + 1e-10, 0.0, 0.4, 2.9] {
            let (mut ax, mut ay) = (vec![0.5; xs.len()], vec![-0.25; xs.len()]);
            k.accumulate_row(&xs, y, &mut ax, &mut ay);
            for (i, &x) in xs.iter().enumerate() {
                let (a, b) = k.deflection(x, y);
                assert!(
                    (ax[i] - 0.5 - a).abs() < 1e-14 && (ay[i] + 0.25 - b).abs() < 1e-14,
                    "({x}, {y}): {} {} vs {a} {b}",
                    ax[i] - 0.5,
                    ay[i] + 0.25
                );
            }
        }
    }

    #[test]
    fn round_sie_is_an_sis() {
        let sie = Sie { theta_e: 1.2, e1: 0.0, e2: 0.0, center_x: 0.3, center_y: 0.1 };
        let sis = Sis { theta_e: 1.2, center_x: 0.3, center_y: 0.1 };
        for &(x, y) in &[(1.0, 0.5), (-0.4, 2.0), (0.0, -1.0)] {
            let (a, b) = sie.deflection(x, y);
            let (c, d) = sis.deflection(x, y);
            assert!((a - c).abs() < 1e-7 && (b - d).abs() < 1e-7, "{a} {c} {b} {d}");
        }
    }

    #[test]
    fn convergence_matches_the_closed_form() {
        let sie = Sie { theta_e: 1.0, e1: 0.2, e2: 0.0, center_x: 0.0, center_y: 0.0 };
        let q = Ellipse::from_e1e2(0.2, 0.0).q;
        let (x, y) = (0.7, 0.4);
        let expected = 0.5 / (q * x * x + y * y / q).sqrt();
        assert!((sie.hessian(x, y).kappa() - expected).abs() < 1e-9);
    }
}
