//! Elliptical Sersic profile (lenstronomy's `SERSIC_ELLIPSE`).
//!
//! I(R) = amp exp(-b_n ((R / R_s)^(1/n) - 1)), b_n = 1.9992 n - 0.3271, with the
//! product-averaged elliptical radius R = sqrt(q x'^2 + y'^2 / q) in the frame of the
//! major axis. R and R_s are floored at 1e-5 arcsec, and the profile is zero beyond
//! 100 R_s, as in lenstronomy.

use super::LightProfile;
use crate::fastmath;
use crate::sim::ellipticity::Ellipse;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

const R_FLOOR: f64 = 1e-5;
const MAX_R_FRAC: f64 = 100.0;

/// The Sersic b_n approximation used by lenstronomy (kept positive for tiny n).
pub fn sersic_b_n(n: f64) -> f64 {
    (1.9992 * n - 0.3271).max(1e-5)
}

/// Elliptical Sersic light profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sersic {
    /// Surface brightness at the half-light radius, flux / arcsec^2.
    pub amp: f64,
    /// Product-averaged half-light radius, arcsec.
    pub r_sersic: f64,
    /// Sersic index.
    pub n_sersic: f64,
    /// Ellipticity modulus along x.
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

/// A Sersic profile with its constants computed once, for evaluating many rays.
#[derive(Debug, Clone)]
pub struct SersicKernel {
    amp: f64,
    center_x: f64,
    center_y: f64,
    ellipse: Ellipse,
    sqrt_q: f64,
    inv_r_s: f64,
    inv_n: f64,
    b_n: f64,
}

impl SersicKernel {
    /// Surface brightness at (x, y), identical to [`Sersic::surface_brightness`].
    #[inline]
    pub fn surface_brightness(&self, x: f64, y: f64) -> f64 {
        let (xp, yp) = self.ellipse.to_profile_frame(x - self.center_x, y - self.center_y);
        let (xs, ys) = (xp * self.sqrt_q, yp / self.sqrt_q);
        let r_frac = (xs * xs + ys * ys).sqrt().max(R_FLOOR) * self.inv_r_s;
        if r_frac > MAX_R_FRAC {
            return 0.0;
        }
        let reduced = if self.inv_n == 1.0 { r_frac } else { r_frac.powf(self.inv_n) };
        self.amp * (-self.b_n * (reduced - 1.0)).exp()
    }

    /// `out[i] = scale * I(bx[i], by[i])` for a row of points: a plain loop with
    /// branch-free `exp` and `log2` ([`fastmath`]), compiled for AVX-512/AVX2 and
    /// picked at run time. n = 1 (the DeepLense sources) skips the power.
    pub fn surface_brightness_row(&self, bx: &[f64], by: &[f64], scale: f64, out: &mut [f64]) {
        if self.inv_n == 1.0 {
            exponential_row(self, bx, by, scale, out);
        } else {
            sersic_row(self, bx, by, scale, out);
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn exponential_row(k: &SersicKernel, bx: &[f64], by: &[f64], scale: f64, out: &mut [f64]) {
    let (c, s) = (k.ellipse.cos_phi(), k.ellipse.sin_phi());
    let inv_sqrt_q = 1.0 / k.sqrt_q;
    for ((o, &x), &y) in out.iter_mut().zip(bx).zip(by) {
        let (dx, dy) = (x - k.center_x, y - k.center_y);
        let xs = (c * dx + s * dy) * k.sqrt_q;
        let ys = (c * dy - s * dx) * inv_sqrt_q;
        let r_frac = (xs * xs + ys * ys).sqrt().max(R_FLOOR) * k.inv_r_s;
        let sb = k.amp * fastmath::exp(-k.b_n * (r_frac - 1.0)) * scale;
        *o = if r_frac > MAX_R_FRAC { 0.0 } else { sb };
    }
}

/// As [`exponential_row`] for any n: r^(1/n) = 2^(log2(r) / n), within ~1e-12
/// relative of `powf` (1e-9 in far tails where the profile is ~1e-300 of its peak).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn sersic_row(k: &SersicKernel, bx: &[f64], by: &[f64], scale: f64, out: &mut [f64]) {
    let (c, s) = (k.ellipse.cos_phi(), k.ellipse.sin_phi());
    let inv_sqrt_q = 1.0 / k.sqrt_q;
    let ln2_over_n = std::f64::consts::LN_2 * k.inv_n;
    for ((o, &x), &y) in out.iter_mut().zip(bx).zip(by) {
        let (dx, dy) = (x - k.center_x, y - k.center_y);
        let xs = (c * dx + s * dy) * k.sqrt_q;
        let ys = (c * dy - s * dx) * inv_sqrt_q;
        let r_frac = (xs * xs + ys * ys).sqrt().max(R_FLOOR) * k.inv_r_s;
        let reduced = fastmath::exp(fastmath::log2(r_frac) * ln2_over_n);
        let sb = k.amp * fastmath::exp(-k.b_n * (reduced - 1.0)) * scale;
        *o = if r_frac > MAX_R_FRAC { 0.0 } else { sb };
    }
}

impl Sersic {
    /// Pre-compute the constants of this profile.
    pub fn kernel(&self) -> SersicKernel {
        let ellipse = Ellipse::from_e1e2(self.e1, self.e2);
        SersicKernel {
            amp: self.amp,
            center_x: self.center_x,
            center_y: self.center_y,
            ellipse,
            sqrt_q: ellipse.q.sqrt(),
            inv_r_s: 1.0 / self.r_sersic.max(R_FLOOR),
            inv_n: 1.0 / self.n_sersic,
            b_n: sersic_b_n(self.n_sersic),
        }
    }
}

impl LightProfile for Sersic {
    fn surface_brightness(&self, x: f64, y: f64) -> f64 {
        self.kernel().surface_brightness(x, y)
    }

    /// 2 pi n R_s^2 e^(b_n) b_n^(-2n) Gamma(2n) (the ellipse keeps the area: R is
    /// product-averaged).
    fn total_flux_per_amp(&self) -> f64 {
        let n = self.n_sersic;
        let b = sersic_b_n(n);
        self.r_sersic * self.r_sersic * 2.0 * PI * n * b.exp() * b.powf(-2.0 * n) * libm::tgamma(2.0 * n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amp_is_the_brightness_at_the_half_light_radius() {
        let s = Sersic { amp: 3.0, r_sersic: 0.25, n_sersic: 1.0, e1: 0.0, e2: 0.0, center_x: 0.0, center_y: 0.0 };
        assert!((s.surface_brightness(0.25, 0.0) - 3.0).abs() < 1e-14);
        assert_eq!(s.surface_brightness(30.0, 0.0), 0.0);
    }

    #[test]
    fn the_row_path_agrees_with_the_scalar_profile() {
        for n in [1.0, 2.7, 4.0, 0.7, 5.0] {
            let s = Sersic { amp: 3.0, r_sersic: 0.25, n_sersic: n, e1: 0.1, e2: -0.2, center_x: 0.1, center_y: 0.0 };
            let k = s.kernel();
            let bx: Vec<f64> = (0..37).map(|i| -2.0 + 0.11 * i as f64).collect();
            let by: Vec<f64> = (0..37).map(|i| 0.9 - 0.07 * i as f64).collect();
            let mut out = vec![0.0; 37];
            k.surface_brightness_row(&bx, &by, 0.5, &mut out);
            for i in 0..37 {
                let e = 0.5 * k.surface_brightness(bx[i], by[i]);
                assert!((out[i] - e).abs() <= 1e-11 * e, "n={n} {i}: {} vs {e}", out[i]);
            }
        }
    }

    #[test]
    fn deeplense_magnitude_20_on_euclid_gives_amp_53() {
        let s = Sersic { amp: 1.0, r_sersic: 0.25, n_sersic: 1.0, e1: -0.1, e2: 0.1, center_x: 0.0, center_y: 0.0 };
        let amp = 10f64.powf(-0.4 * (20.0 - 24.0)) / s.total_flux_per_amp();
        assert!((amp - 53.24).abs() < 0.01, "{amp}");
    }
}
