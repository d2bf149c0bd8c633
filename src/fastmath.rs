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
    let mut p: f64 = 1.0 / 6_227_020_800.0;
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
        p = p.mul_add(r, c);
    }
    f64::from_bits(p.to_bits().wrapping_add(k << 52))
}

/// The exponent e and s = (m - 1) / (m + 1) of v = 2^e m with the mantissa m
/// folded into [sqrt(1/2), sqrt(2)), |s| < 0.172: log2 v = e + 2 atanh(s) / ln 2.
/// Selects rather than a branch, so that loops calling this vectorise.
#[inline(always)]
fn exponent_and_atanh_argument(v: f64) -> (f64, f64) {
    let bits = v.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { 0.5 * m } else { m };
    ((exponent + high as i64) as f64, (m - 1.0) / (m + 1.0))
}

/// log2 of a positive normal f64 to ~1e-12 absolute, without library calls: the
/// exponent plus the mantissa's atanh series summed to s^13.
#[inline(always)]
pub fn log2(v: f64) -> f64 {
    let (exponent, s) = exponent_and_atanh_argument(v);
    let s2 = s * s;
    let series =
        1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0)))));
    exponent + 2.0 * std::f64::consts::LOG2_E * s * series
}

/// ln of a positive normal f64 within a few ulp, without library calls: as
/// [`log2`], with the series of the mantissa's atanh summed to s^21 (its
/// truncation, below 1e-19 relative, is then under the rounding).
#[inline(always)]
pub fn ln(v: f64) -> f64 {
    let (exponent, s) = exponent_and_atanh_argument(v);
    let s2 = s * s;
    let mut series = 1.0 / 21.0;
    for c in [1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0] {
        series = series * s2 + c;
    }
    exponent * LN2_HI + (exponent * LN2_LO + 2.0 * s * (1.0 + s2 * series))
}

/// atan(num / den) for den > 0, within ~2 ulp of libm, branch-free: Cephes'
/// reduction to |t| <= tan(pi/8) ~ 0.66 (t = num / den, (num - den) / (num + den)
/// or -den / num, picked by selects and divided once) and its degree 4/5 rational
/// approximation. Taking the ratio's parts spares callers a division.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as Cephes publishes them
pub fn atan_of_ratio(num: f64, den: f64) -> f64 {
    const TAN_3PI_8: f64 = 2.414_213_562_373_095_048_80;
    const MOREBITS: f64 = 6.123_233_995_736_765_886_130e-17;
    let a = num.abs();
    let big = a > TAN_3PI_8 * den;
    let mid = a > 0.66 * den;
    let (top, bottom, base, extra) = if big {
        (-den, a, std::f64::consts::FRAC_PI_2, MOREBITS)
    } else if mid {
        (a - den, a + den, std::f64::consts::FRAC_PI_4, 0.5 * MOREBITS)
    } else {
        (a, den, 0.0, 0.0)
    };
    let t = top / bottom;
    let z = t * t;
    let p = (((-8.750_608_600_031_904_122_785e-1 * z - 1.615_753_718_733_365_076_637e1) * z
        - 7.500_855_792_314_704_667_340e1)
        * z
        - 1.228_866_684_490_136_173_410e2)
        * z
        - 6.485_021_904_942_025_371_773e1;
    let q = ((((z + 2.485_846_490_142_306_297_962e1) * z + 1.650_270_098_316_988_542_046e2) * z
        + 4.328_810_604_912_902_668_951e2)
        * z
        + 4.853_903_996_359_136_964_868e2)
        * z
        + 1.945_506_571_482_613_964_425e2;
    let magnitude = base + (t * (z * p / q) + t + extra);
    magnitude.copysign(num)
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
    fn atan_of_ratio_is_atan() {
        let mut worst = 0.0f64;
        let mut x = -40.0;
        while x < 40.0 {
            for (num, den) in [(x, 1.0), (x * 0.37, 0.37), (x * 1e-9, 1e-9)] {
                let (got, want) = (atan_of_ratio(num, den), (num / den).atan());
                worst = worst.max((got - want).abs() / want.abs().max(f64::MIN_POSITIVE));
            }
            x += 0.000_731;
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst relative error {worst}");
        for (num, den) in
            [(0.0, 1.0), (1.0, 1.0), (-1.0, 1.0), (1e300, 1.0), (-1e300, 1e-300), (2.414_213_562_373_095, 1.0)]
        {
            let (got, want) = (atan_of_ratio(num, den), (num / den).atan());
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.abs(), "{num}/{den}: {got} vs {want}");
        }
    }

    #[test]
    fn ln_is_within_a_few_ulp_of_libm() {
        let mut worst = 0.0f64;
        let mut v = 1e-300;
        while v < 1e300 {
            for w in [v, v * 1.000_000_1, std::f64::consts::SQRT_2 * v] {
                let (got, want) = (ln(w), w.ln());
                worst = worst.max((got - want).abs() / want.abs().max(1.0));
            }
            v *= 1.0173;
        }
        for w in [0.5, 0.999_999, 1.000_001, 1.3, 2.0, 3.0] {
            worst = worst.max((ln(w) - w.ln()).abs() / w.ln().abs().max(1e-300).max(1.0));
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst error {worst}");
        assert_eq!(ln(1.0), 0.0);
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
