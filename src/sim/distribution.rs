//! Parameters of a simulation config: a fixed number or a distribution.
//!
//! In TOML a parameter is either a number (`e1 = 0.1`) or a one-key table naming
//! its distribution:
//!
//! | TOML | draw |
//! |---|---|
//! | `{ uniform = [a, b] }` | U(a, b) |
//! | `{ log_uniform = [a, b] }` | exp(U(ln a, ln b)), a, b > 0 |
//! | `{ log10_uniform = [p, q] }` | 10^U(p, q) |
//! | `{ normal = [mean, std] }` | N(mean, std) |
//! | `{ truncated_normal = [mean, std, min, max] }` | N(mean, std) redrawn until inside [min, max] |

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// A distribution a parameter is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Uniform on [a, b].
    Uniform([f64; 2]),
    /// Log-uniform on [a, b].
    LogUniform([f64; 2]),
    /// 10 to the power of a uniform draw on [p, q].
    Log10Uniform([f64; 2]),
    /// Normal with mean and standard deviation.
    Normal([f64; 2]),
    /// Normal with mean and standard deviation, restricted to [min, max].
    TruncatedNormal([f64; 4]),
}

/// A parameter: fixed, or drawn per image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    /// The same value for every image.
    Fixed(f64),
    /// A fresh draw for every image.
    Random(Distribution),
}

impl Default for Param {
    fn default() -> Self {
        Param::Fixed(0.0)
    }
}

impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Param::Fixed(v)
    }
}

impl Param {
    /// Draw a value (a fixed parameter consumes no randomness).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Param::Fixed(v) => v,
            Param::Random(d) => d.sample(rng),
        }
    }

    /// Smallest and largest value the parameter can take.
    pub fn support(&self) -> (f64, f64) {
        match *self {
            Param::Fixed(v) => (v, v),
            Param::Random(d) => d.support(),
        }
    }

    /// Check the distribution is well formed and its support lies in [min, max];
    /// errors name `key`.
    pub fn validate(&self, key: &str, min: f64, max: f64) -> crate::Result<()> {
        if let Param::Random(d) = self {
            d.validate(key)?;
        }
        let (lo, hi) = self.support();
        if !(lo >= min && hi <= max) {
            return Err(crate::Error::config(
                key,
                format!("values from {lo} to {hi} are possible, but it must stay within [{min}, {max}]"),
            ));
        }
        Ok(())
    }
}

impl Distribution {
    /// Draw one value.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Distribution::Uniform([a, b]) => a + (b - a) * rng.random::<f64>(),
            Distribution::LogUniform([a, b]) => (a.ln() + (b.ln() - a.ln()) * rng.random::<f64>()).exp(),
            Distribution::Log10Uniform([p, q]) => 10f64.powf(p + (q - p) * rng.random::<f64>()),
            Distribution::Normal([m, s]) => m + s * rng.sample::<f64, _>(StandardNormal),
            Distribution::TruncatedNormal([m, s, lo, hi]) => loop {
                let v = m + s * rng.sample::<f64, _>(StandardNormal);
                if (lo..=hi).contains(&v) {
                    break v;
                }
            },
        }
    }

    fn support(&self) -> (f64, f64) {
        match *self {
            Distribution::Uniform([a, b]) | Distribution::LogUniform([a, b]) => (a, b),
            Distribution::Log10Uniform([p, q]) => (10f64.powf(p), 10f64.powf(q)),
            Distribution::Normal([m, s]) => {
                if s == 0.0 {
                    (m, m)
                } else {
                    (f64::NEG_INFINITY, f64::INFINITY)
                }
            }
            Distribution::TruncatedNormal([_, _, lo, hi]) => (lo, hi),
        }
    }

    fn validate(&self, key: &str) -> crate::Result<()> {
        let err = |m: &str| Err(crate::Error::config(key, m.to_string()));
        let finite = |xs: &[f64]| xs.iter().all(|x| x.is_finite());
        match *self {
            Distribution::Uniform([a, b]) | Distribution::Log10Uniform([a, b]) => {
                if !finite(&[a, b]) || a > b {
                    return err("the bounds must be finite with lower <= upper");
                }
            }
            Distribution::LogUniform([a, b]) => {
                if !finite(&[a, b]) || a <= 0.0 || a > b {
                    return err("log_uniform needs 0 < lower <= upper");
                }
            }
            Distribution::Normal([m, s]) => {
                if !finite(&[m, s]) || s < 0.0 {
                    return err("normal needs a finite mean and std >= 0");
                }
            }
            Distribution::TruncatedNormal([m, s, lo, hi]) => {
                if !finite(&[m, s, lo, hi]) || s <= 0.0 || lo >= hi {
                    return err("truncated_normal needs std > 0 and min < max");
                }
                // Redrawing is only efficient when the window holds real probability.
                if (lo - m) / s > 4.0 || (m - hi) / s > 4.0 {
                    return err("the [min, max] window lies more than 4 std from the mean");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[derive(Deserialize)]
    struct T {
        p: Param,
    }

    #[test]
    fn parses_numbers_and_tables() {
        let t: T = toml::from_str("p = 0.5").unwrap();
        assert_eq!(t.p, Param::Fixed(0.5));
        let t: T = toml::from_str("p = { log10_uniform = [3.0, 3.5] }").unwrap();
        assert_eq!(t.p, Param::Random(Distribution::Log10Uniform([3.0, 3.5])));
        assert!(toml::from_str::<T>("p = { gaussian = [0, 1] }").is_err());
    }

    #[test]
    fn draws_stay_in_the_support() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = Param::Random(Distribution::TruncatedNormal([0.0, 0.1, -0.05, 0.2]));
        for _ in 0..1000 {
            let v = d.sample(&mut rng);
            assert!((-0.05..=0.2).contains(&v));
        }
        let e = Param::Random(Distribution::Log10Uniform([3.0, 3.5]));
        assert!(e.validate("noise.exposure_time", 0.0, f64::INFINITY).is_ok());
        assert!(e.validate("x", 2000.0, 3000.0).is_err());
    }
}
