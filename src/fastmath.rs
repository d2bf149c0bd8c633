//! Branch-free elementary functions written so that loops calling them vectorise.
//!
//! libm's `exp` is an opaque call per element, which stops the compiler from
//! vectorising a loop; this `exp` is plain arithmetic on the float's bits, so a
//! loop over an image row compiles to SIMD at whatever width the CPU has.

const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split in a part exact in few bits and the remainder (Cody-Waite).
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1.5 * 2^52: adding it rounds to an integer kept in the low mantissa bits.
const ROUNDING_MAGIC: f64 = 6_755_399_441_055_744.0;

/// e^x for x in [-708, 709] (clamped outside), within 2 ulp of the true value.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    let shifted = x * LOG2_E + ROUNDING_MAGIC;
    let n = shifted - ROUNDING_MAGIC;
    let k = shifted.to_bits().wrapping_sub(ROUNDING_MAGIC.to_bits()); // n as a two's-complement integer
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ln2 / 2
                                           // Taylor series to r^13: the truncation error is below 4e-18 relative.
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    f64::from_bits(p.to_bits().wrapping_add(k << 52))
}

/// log2 of a positive normal f64 to ~1e-12 absolute, without library calls: the exponent,
/// plus 2 atanh(s) / ln 2 of the mantissa m in [sqrt(1/2), sqrt(2)) with
/// s = (m - 1) / (m + 1), |s| < 0.172, summed to s^13.
#[inline(always)]
pub fn log2(v: f64) -> f64 {
    let bits = v.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // Selects rather than a branch, so that loops calling this vectorise.
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { 0.5 * m } else { m };
    exponent += high as i64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0)))));
    exponent as f64 + 2.0 * std::f64::consts::LOG2_E * s * series
}

/// e^x in single precision for x in [-87, 88] (clamped outside), within 2 ulp;
/// the same construction as [`exp`], for the model's softmax and GELU.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUNDING_MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDING_MAGIC;
    let n = shifted - ROUNDING_MAGIC;
    let k = shifted.to_bits().wrapping_sub(ROUNDING_MAGIC.to_bits());
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // Taylor series to r^7: truncation below 6e-9 relative for |r| <= ln2 / 2.
    // Fused multiply-adds: Rust never contracts `p * r + c` into one, and these
    // are the model's softmax and GELU (a multiply and an add each took a port).
    // The model's kernels are compiled for AVX2+FMA, AVX-512 and NEON, where each
    // is one instruction; a CPU without FMA gets the same values from libm's fmaf.
    let mut p: f32 = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
    f32::from_bits(p.to_bits().wrapping_add(k << 23))
}

/// The error function in single precision, absolute error below 1e-6: a rational
/// approximation (odd degree-13 numerator, even degree-8 denominator, the form
/// Eigen and XLA use) on [-4, 4], where erf is within 2e-8 of +-1 outside.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as Eigen publishes them
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p: f32 = -2.726_142_3e-10;
    for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600e-3, -1.609_603_3e-2] {
        p = p.mul_add(x2, c);
    }
    let mut q: f32 = -1.456_607_2e-5;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329_3e-3, -1.426_474e-2] {
        q = q.mul_add(x2, c);
    }
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut x = -700.0;
        while x < 700.0 {
            let (mine, libm) = (exp(x), x.exp());
            assert!((mine - libm).abs() <= 2.0 * f64::EPSILON * libm, "exp({x}) = {mine}, libm {libm}");
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_f32_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (mine, libm) = (exp_f32(x), (x as f64).exp());
            assert!((mine as f64 - libm).abs() <= 2.0 * f32::EPSILON as f64 * libm, "exp({x}) = {mine}, libm {libm}");
            x += 0.00731;
        }
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn erf_f32_is_within_1e6_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf_f32(x) as f64 - libm::erf(x as f64)).abs());
            x += 0.000_37;
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
    }

    #[test]
    fn log2_is_log2() {
        use std::f64::consts::{FRAC_1_SQRT_2, SQRT_2};
        // Either side of the mantissa's fold at sqrt(2) (and of its half) too.
        let near_the_fold =
            [FRAC_1_SQRT_2 * (1.0 - 1e-9), FRAC_1_SQRT_2 * (1.0 + 1e-9), SQRT_2 * (1.0 - 1e-9), SQRT_2 * (1.0 + 1e-9)];
        for v in [1e-300, 1e-12, 3.7e-7, 0.5, 1.0, 2.0, 3.0, 1e5, 7.3e12].into_iter().chain(near_the_fold) {
            let (got, want) = (log2(v), v.log2());
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{v}: {got} vs {want}");
        }
    }
}
