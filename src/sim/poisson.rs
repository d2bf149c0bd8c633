//! Poisson variates for the noise of every pixel, the same draws as `rand_distr`'s.
//!
//! `rand_distr::Poisson` (0.5) is built for many draws at one mean: its constructor
//! prepares the constants of Ahrens & Dieter's PD algorithm (three divisions and two
//! square roots) that only the rare slow branches read. A noisy image draws once per
//! pixel, each at its own mean, so that preparation was about half of the noise's cost.
//! [`sample`] runs the same algorithm with the same arithmetic in the same order, and
//! prepares the slow branches' constants only when a draw reaches them: for a given
//! random stream it returns what `Poisson::new(mean)?.sample(rng)` returns (tested
//! against it below), so simulated images do not change.

use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use std::f64::consts::PI;

/// One Poisson variate of mean `lambda` (> 0, finite, at most `rand_distr`'s
/// `Poisson::MAX_LAMBDA`), drawn as `rand_distr::Poisson::new(lambda).sample(rng)` does.
#[inline(always)]
pub fn sample<R: Rng + ?Sized>(lambda: f64, rng: &mut R) -> f64 {
    // rand_distr refuses such a mean; PD's rejection loop would never end on a NaN.
    assert!(lambda.is_finite() && lambda > 0.0, "positive finite mean, not {lambda}");
    if lambda < 12.0 {
        // Knuth's multiplication of uniforms.
        let exp_lambda = (-lambda).exp();
        let mut result = 1.0;
        let mut p: f64 = rng.random();
        while p > exp_lambda {
            p *= rng.random::<f64>();
            result += 1.0;
        }
        return result - 1.0;
    }
    let s = lambda.sqrt();
    // Step N: a normal deviate, accepted at once when it is not far below the mean.
    let g = lambda + s * rng.sample::<f64, _>(StandardNormal);
    if g >= 0.0 {
        let k1 = g.floor();
        if k1 >= (lambda - 1.1484).floor() {
            return k1;
        }
        let u: f64 = rng.random();
        if 6.0 * lambda.powi(2) * u >= (lambda - k1).powi(3) {
            return k1;
        }
        let slow = SlowBranch::new(lambda, s);
        let (px, py, fx, fy) = slow.f(k1);
        if fy * (1.0 - u) <= py * (px - fx).exp() {
            return k1;
        }
        return slow.exponential_rejection(rng);
    }
    SlowBranch::new(lambda, s).exponential_rejection(rng)
}

/// The constants and steps of PD that only draws far below the mean reach.
struct SlowBranch {
    lambda: f64,
    s: f64,
    c: f64,
    c0: f64,
    c1: f64,
    c2: f64,
    c3: f64,
    omega: f64,
}

impl SlowBranch {
    fn new(lambda: f64, s: f64) -> Self {
        let b1 = (1.0 / 24.0) / lambda;
        let b2 = 0.3 * b1 * b1;
        let c3 = (1.0 / 7.0) * b1 * b2;
        let c2 = b2 - 15.0 * c3;
        let c1 = b1 - 6.0 * b2 + 45.0 * c3;
        let c0 = 1.0 - b1 + 3.0 * b2 - 15.0 * c3;
        SlowBranch { lambda, s, c: 0.1069 / lambda, c0, c1, c2, c3, omega: 1.0 / (2.0 * PI).sqrt() / lambda.sqrt() }
    }

    /// Step E: double-exponential proposals until one is accepted.
    fn exponential_rejection<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        loop {
            let e: f64 = Exp1.sample(rng);
            let u: f64 = rng.random::<f64>() * 2.0 - 1.0;
            let t = 1.8 + e * u.signum();
            if t > -0.6744 {
                let k2 = (self.lambda + self.s * t).floor();
                let (px, py, fx, fy) = self.f(k2);
                if self.c * u.abs() <= py * (px + e).exp() - fy * (fx + e).exp() {
                    return k2;
                }
            }
        }
    }

    /// PD's procedure F: the log of the Poisson probability of `k` and of its
    /// normal approximation.
    fn f(&self, k: f64) -> (f64, f64, f64, f64) {
        const FACTORIAL: [f64; 10] = [1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362880.0];
        const A: [f64; 10] = [
            -0.5000000002,
            0.3333333343,
            -0.2499998565,
            0.1999997049,
            -0.1666848753,
            0.1428833286,
            -0.1241963125,
            0.1101687109,
            -0.1142650302,
            0.1055093006,
        ];
        let lambda = self.lambda;
        let (px, py) = if k < 10.0 {
            (-lambda, lambda.powf(k) / FACTORIAL[k as usize])
        } else {
            let delta = (12.0 * k).recip();
            let delta = delta - 4.8 * delta.powi(3);
            let v = (lambda - k) / k;
            let px = if v.abs() <= 0.25 {
                k * v.powi(2) * A.iter().rev().fold(0.0, |acc, &a| acc * v + a) - delta
            } else {
                k * (1.0 + v).ln() - (lambda - k) - delta
            };
            (px, 1.0 / (2.0 * PI).sqrt() / k.sqrt())
        };
        let x = (k - lambda + 0.5) / self.s;
        let fx = -0.5 * x * x;
        let fy = self.omega * (((self.c3 * x * x + self.c2) * x * x + self.c1) * x * x + self.c0);
        (px, py, fx, fy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::Poisson;

    /// Every branch of PD is reached over these means (Knuth below 12, the slow
    /// branches most often just above it), and the two random streams stay in step.
    #[test]
    fn draws_what_rand_distr_draws_from_the_same_stream() {
        let means = [1e-3, 0.5, 3.0, 11.999, 12.0, 12.5, 20.0, 47.3, 150.0, 515.2, 4096.7, 1e5, 3.3e7];
        for (seed, &lambda) in means.iter().enumerate() {
            let mut ours = ChaCha8Rng::seed_from_u64(seed as u64);
            let mut theirs = ours.clone();
            let reference = Poisson::new(lambda).unwrap();
            for i in 0..20_000 {
                let (a, b) = (sample(lambda, &mut ours), reference.sample(&mut theirs));
                assert_eq!(a.to_bits(), b.to_bits(), "mean {lambda}, draw {i}");
            }
            assert_eq!(ours.random::<u64>(), theirs.random::<u64>(), "streams apart after mean {lambda}");
        }
    }

    #[test]
    fn draws_what_rand_distr_draws_at_a_different_mean_every_draw() {
        let mut ours = ChaCha8Rng::seed_from_u64(7);
        let mut theirs = ours.clone();
        let mut means = ChaCha8Rng::seed_from_u64(8);
        for i in 0..200_000 {
            let lambda = 10f64.powf(means.random_range(-2.0..6.0));
            let (a, b) = (sample(lambda, &mut ours), Poisson::new(lambda).unwrap().sample(&mut theirs));
            assert_eq!(a.to_bits(), b.to_bits(), "mean {lambda}, draw {i}");
        }
    }
}
