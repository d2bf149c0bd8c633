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
use crate::fastmath;
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

/// Log2(r^2) steps per table entry of [`TnfwKernel`]: 16 entries per octave of r^2.
const STEPS_PER_OCTAVE: f64 = 16.0;

/// A TNFW halo prepared for many rays: its radial deflection profile
/// A(r) = alpha(r) / r tabulated on a grid uniform in t = log2(r^2) and read back by
/// four-point Lagrange interpolation.
///
/// The exact profile costs an `atan`/`atanh` and two logarithms per ray, ~40 ns; a
/// survey image has ~25 halos and 16k rays. The table takes ~600 evaluations per
/// halo, and the interpolation error is O(h^4) with h = 1/16: below 1e-6 of the
/// deflection beyond 0.01 Rs (tested against the profile). Within a few percent
/// of the floor radius 0.001 Rs, where the profile has a kink, it reaches 2e-4 of
/// the deflection there, where hardly a ray falls.
/// log2 is [`fastmath::log2`], so the row loop has no library calls and vectorises.
#[derive(Debug, Clone)]
pub struct TnfwKernel {
    center_x: f64,
    center_y: f64,
    /// t of the first entry: log2 of the squared floor radius (S Rs)^2, below which
    /// A is constant (the profile floors r there).
    t_first: f64,
    /// Intervals before the first tabulated one: none of the rays comes that close
    /// (the table keeps the nodes it would have from t_first, so a ray's value is
    /// the same whatever the rays' nearest approach).
    skipped: usize,
    /// Per interval i (t from t_first + i / STEPS_PER_OCTAVE, one step long): the
    /// cubic through A at the nodes i - 1 ..= i + 2, as c0 + c1 u + c2 u^2 + c3 u^3
    /// in the interval's fraction u (one contiguous load and three fused
    /// multiply-adds per ray, where the Lagrange form took four loads and a dozen
    /// products).
    cubics: Vec<[f64; 4]>,
}

impl Tnfw {
    /// The kernel for rays at most `r_max` arcsec from the halo's centre (farther rays
    /// are clamped to the table's end: give the grid's extent).
    pub fn kernel(&self, r_max: f64) -> TnfwKernel {
        self.kernel_between(0.0, r_max)
    }

    /// [`Self::kernel`] for rays at least `r_min` arcsec from the halo's centre:
    /// the table starts a little inside `r_min` (from the floor radius, a halo's
    /// table is ~600 evaluations of the profile, each with its own `atan` and
    /// logarithms; a ray grid's nearest approach typically spares half of them).
    pub fn kernel_between(&self, r_min: f64, r_max: f64) -> TnfwKernel {
        let r_floor = S * self.rs;
        let t_first = (r_floor * r_floor).log2();
        let t_last = (r_max.max(2.0 * r_floor)).powi(2).log2();
        let entries = ((t_last - t_first) * STEPS_PER_OCTAVE).ceil() as usize + 4;
        // Two intervals of margin below the nearest ray, for the rounding of its r^2.
        let nearest = ((r_min * r_min).log2() - t_first) * STEPS_PER_OCTAVE;
        let skipped = if nearest.is_finite() && nearest > 2.0 { (nearest as usize - 2).min(entries - 4) } else { 0 };
        let (rho0, tau) = (self.rho0(), self.r_trunc / self.rs);
        let radial = |t: f64| {
            let r = (0.5 * t).exp2().max(r_floor);
            let xr = (r / self.rs).max(S);
            4.0 * rho0 * self.rs * g(xr, tau) / (xr * xr)
        };
        let table: Vec<f64> =
            (skipped..entries).map(|i| radial(t_first + (i as f64 - 1.0) / STEPS_PER_OCTAVE)).collect();
        let cubics = table
            .windows(4)
            .map(|f| {
                let [before, at, next, after] = [f[0], f[1], f[2], f[3]];
                [
                    at,
                    -before / 3.0 - at / 2.0 + next - after / 6.0,
                    before / 2.0 - at + next / 2.0,
                    (after - before) / 6.0 + (at - next) / 2.0,
                ]
            })
            .collect();
        TnfwKernel { center_x: self.center_x, center_y: self.center_y, t_first, skipped, cubics }
    }
}

impl TnfwKernel {
    /// Add the deflection at every `(xs[i], y)` to `(ax[i], ay[i])`.
    pub fn accumulate_row(&self, xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
        tnfw_row(self, xs, y, ax, ay)
    }

    /// The deflection at (x, y).
    pub fn deflection(&self, x: f64, y: f64) -> (f64, f64) {
        let (mut ax, mut ay) = ([0.0], [0.0]);
        self.accumulate_row(&[x], y, &mut ax, &mut ay);
        (ax[0], ay[0])
    }
}

/// Rays go in blocks: first every ray's table position (plain arithmetic, which
/// vectorises), then the interpolation (indexed loads, which do not).
const BLOCK: usize = 64;

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn tnfw_row(k: &TnfwKernel, xs: &[f64], y: f64, ax: &mut [f64], ay: &mut [f64]) {
    let dy = y - k.center_y;
    // Positions are clamped to the table's first and last intervals: the profile is
    // constant below the floor, and no ray lies beyond r_max.
    let (first, last) = (k.skipped as f64, (k.skipped + k.cubics.len() - 1) as f64);
    let mut pos = [0.0f64; BLOCK];
    for ((xs, ax), ay) in xs.chunks(BLOCK).zip(ax.chunks_mut(BLOCK)).zip(ay.chunks_mut(BLOCK)) {
        for (p, x) in pos.iter_mut().zip(xs) {
            let dx = x - k.center_x;
            let r2 = dx.mul_add(dx, dy * dy).max(f64::MIN_POSITIVE);
            *p = ((fastmath::log2(r2) - k.t_first) * STEPS_PER_OCTAVE).clamp(first, last);
        }
        for (((p, x), ax), ay) in pos.iter().zip(xs).zip(ax.iter_mut()).zip(ay.iter_mut()) {
            let i = *p as usize;
            let u = p - i as f64;
            let [c0, c1, c2, c3] = k.cubics[i - k.skipped];
            let a = c3.mul_add(u, c2).mul_add(u, c1).mul_add(u, c0);
            *ax = a.mul_add(x - k.center_x, *ax);
            *ay = a.mul_add(dy, *ay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mass::Nfw;

    #[test]
    fn the_tabulated_deflection_follows_the_profile_from_the_centre_to_the_grid_edge() {
        // Survey-like halos: Rs 0.02-0.3 arcsec, truncation 5-20 Rs, a 6.5 arcsec grid.
        // Within ~0.002 Rs of the centre (where hardly a ray of these grids falls)
        // the table's first cells straddle the kink at the radius floor.
        for (rs, alpha_rs, tau) in [(0.02, 1e-4, 5.0), (0.08, 1e-3, 12.0), (0.3, 0.02, 20.0), (0.25, 0.03, 6.0)] {
            let halo = Tnfw { rs, alpha_rs, r_trunc: tau * rs, center_x: 0.31, center_y: -0.17 };
            let kernel = halo.kernel(6.0);
            let (mut worst_outside, mut worst_anywhere) = (0.0f64, 0.0f64);
            for i in 0..4000 {
                // Radii log-spaced from far inside the floor to the edge, at varied angles.
                let r = 1e-6 * (6.0f64 / 1e-6).powf(i as f64 / 3999.0);
                let phi = 0.37 * i as f64;
                let (x, y) = (halo.center_x + r * phi.cos(), halo.center_y + r * phi.sin());
                let (ex, ey) = halo.deflection(x, y);
                let (gx, gy) = kernel.deflection(x, y);
                let relative = (gx - ex).hypot(gy - ey) / ex.hypot(ey);
                worst_anywhere = worst_anywhere.max(relative);
                if r >= 0.01 * rs {
                    worst_outside = worst_outside.max(relative);
                }
            }
            assert!(worst_outside < 1e-6, "rs {rs}, tau {tau}: worst relative error {worst_outside:e}");
            assert!(
                worst_anywhere < 1e-3,
                "rs {rs}, tau {tau}: worst relative error near the floor {worst_anywhere:e}"
            );
        }
    }

    #[test]
    fn a_table_started_at_the_nearest_ray_gives_the_same_deflections() {
        let halo = Tnfw { rs: 0.08, alpha_rs: 1e-3, r_trunc: 0.8, center_x: 0.31, center_y: -0.17 };
        let (full, near) = (halo.kernel(6.0), halo.kernel_between(0.05, 6.0));
        assert!(near.skipped > 100 && near.cubics.len() + near.skipped == full.cubics.len(), "{}", near.skipped);
        let xs: Vec<f64> = (0..500).map(|i| -3.0 + 0.012 * i as f64).collect();
        for y in [-0.17 - 0.05, -0.17 + 0.05, 0.4, 3.0] {
            let (mut a, mut b) = ((vec![0.0; 500], vec![0.0; 500]), (vec![0.0; 500], vec![0.0; 500]));
            full.accumulate_row(&xs, y, &mut a.0, &mut a.1);
            near.accumulate_row(&xs, y, &mut b.0, &mut b.1);
            assert_eq!(a, b, "row y = {y}");
        }
    }

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
