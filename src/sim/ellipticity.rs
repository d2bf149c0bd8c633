//! Ellipticity conventions shared by the elliptical profiles (lenstronomy's).
//!
//! `e1`, `e2` are the complex ellipticity moduli: the position angle is
//! `phi = atan2(e2, e1) / 2` (radians, counter-clockwise from the x axis) and the
//! axis ratio is `q = (1 - c) / (1 + c)` with `c = min(|e|, 0.9999)`.

/// Orientation and axis ratio of an ellipse given by `(e1, e2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipse {
    /// Position angle of the major axis, radians.
    pub phi: f64,
    /// Minor/major axis ratio, in (0, 1].
    pub q: f64,
    cos_phi: f64,
    sin_phi: f64,
}

impl Ellipse {
    /// The ellipse of the complex ellipticity `(e1, e2)`.
    pub fn from_e1e2(e1: f64, e2: f64) -> Self {
        let phi = e2.atan2(e1) / 2.0;
        let c = (e1 * e1 + e2 * e2).sqrt().min(0.9999);
        let q = (1.0 - c) / (1.0 + c);
        Ellipse { phi, q, cos_phi: phi.cos(), sin_phi: phi.sin() }
    }

    /// cos of the position angle.
    pub fn cos_phi(&self) -> f64 {
        self.cos_phi
    }

    /// sin of the position angle.
    pub fn sin_phi(&self) -> f64 {
        self.sin_phi
    }

    /// Rotate an offset from the profile centre into the frame of the major axis.
    #[inline]
    pub fn to_profile_frame(&self, dx: f64, dy: f64) -> (f64, f64) {
        (self.cos_phi * dx + self.sin_phi * dy, -self.sin_phi * dx + self.cos_phi * dy)
    }

    /// Rotate a vector from the major-axis frame back to the sky frame.
    #[inline]
    pub fn to_sky_frame(&self, vx: f64, vy: f64) -> (f64, f64) {
        (self.cos_phi * vx - self.sin_phi * vy, self.sin_phi * vx + self.cos_phi * vy)
    }

    /// Rotate a symmetric tensor `(txx, txy, tyy)` from the major-axis frame to the sky.
    #[inline]
    pub fn tensor_to_sky_frame(&self, txx: f64, txy: f64, tyy: f64) -> (f64, f64, f64) {
        let (c, s) = (self.cos_phi, self.sin_phi);
        (
            c * c * txx - 2.0 * c * s * txy + s * s * tyy,
            c * s * (txx - tyy) + (c * c - s * s) * txy,
            s * s * txx + 2.0 * c * s * txy + c * c * tyy,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ellipse_has_unit_axis_ratio() {
        let e = Ellipse::from_e1e2(0.0, 0.0);
        assert_eq!(e.q, 1.0);
        assert_eq!(e.phi, 0.0);
    }

    #[test]
    fn rotations_are_inverse() {
        let e = Ellipse::from_e1e2(0.1, -0.2);
        let (a, b) = e.to_profile_frame(0.3, -0.7);
        let (x, y) = e.to_sky_frame(a, b);
        assert!((x - 0.3).abs() < 1e-15 && (y + 0.7).abs() < 1e-15);
        assert!((e.q - (1.0 - 0.05f64.sqrt()) / (1.0 + 0.05f64.sqrt())).abs() < 1e-15);
    }
}
