//! Noise models applied to a rendered noise-free image.

use super::grid::Image;
use super::instrument::Instrument;
use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal};

/// A survey's noise map of one cutout, as variance per pixel (NaN where it does
/// not know the pixel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseMap<'a> {
    /// Variance per pixel.
    pub variance: &'a [f64],
    /// Whether it holds all of each pixel's noise, the source's Poisson noise
    /// included, rather than the background's alone.
    pub includes_source: bool,
}

/// How noise is added to an image (already resolved: no distributions left).
#[derive(Debug, Clone, PartialEq)]
pub enum Noise {
    /// Noise-free.
    None,
    /// DeepLense Model I: with exposure time t,
    /// `Poisson(clip(t * (model + N(0, sqrt(|model|/t)) + N(0, background_rms)), 0))`,
    /// i.e. integer counts.
    DeepLenseCounts {
        /// Exposure time, s.
        exposure_time: f64,
        /// Gaussian background sigma, flux units.
        background_rms: f64,
    },
    /// A co-added survey exposure: Poisson noise on source + sky electrons, Gaussian
    /// read noise per exposure; returned as sky-subtracted e-/s.
    Instrument {
        /// Instrument settings.
        instrument: Instrument,
        /// Total exposure time, s (all exposures).
        exposure_time: f64,
    },
}

impl Noise {
    /// Add noise to `image` (pixel size `pixel_scale` arcsec), drawing from `rng`.
    pub fn apply<R: Rng>(&self, image: &mut Image, pixel_scale: f64, rng: &mut R) {
        match self {
            Noise::None => {}
            Noise::DeepLenseCounts { exposure_time: t, background_rms } => {
                for v in image.pixels.iter_mut() {
                    let shot: f64 = rng.sample::<f64, _>(StandardNormal) * (v.abs() / t).sqrt();
                    let background: f64 = rng.sample::<f64, _>(StandardNormal) * background_rms;
                    *v = t * (*v + shot + background);
                }
                for v in image.pixels.iter_mut() {
                    *v = poisson(v.max(0.0), rng);
                }
            }
            Noise::Instrument { instrument, exposure_time: t } => {
                let sky = instrument.sky_per_pixel(pixel_scale);
                let read_sigma = instrument.read_noise * (instrument.num_exposures as f64).sqrt();
                let read = Normal::new(0.0, read_sigma).expect("read noise is validated to be >= 0");
                add_instrument_noise(&mut image.pixels, sky, *t, read, rng);
            }
        }
    }
}

impl Noise {
    /// The expected variance of every pixel of `noise_free` once noise is added, in
    /// the units of `noise_free` (flux per pixel, before any output scale); None when
    /// noise-free. For the instrument this is lenstronomy's `estimate_noise(image)^2`
    /// (sky + read noise + Poisson on the source, with the same clipping of negative
    /// pixels); for DeepLense counts it is Var/t^2 of the count, 2 |v| / t + rms^2.
    pub fn variance(&self, noise_free: &Image, pixel_scale: f64) -> Option<Vec<f64>> {
        self.variance_over(noise_free, pixel_scale, None)
    }

    /// [`Noise::variance`] where a survey's noise `map` knows a pixel (its variance
    /// finite), in the units of `noise_free` squared: the map's variance as the
    /// background (sky and read noise) under the source's own Poisson noise from the
    /// model, as the weight and RMS maps of coadded images hold; or, where the map
    /// [`NoiseMap::includes_source`] (HST's and JWST's `ERR`), the map's variance alone.
    ///
    /// # Panics
    /// If the map has not one entry per pixel of `noise_free`.
    pub fn variance_over(&self, noise_free: &Image, pixel_scale: f64, map: Option<NoiseMap>) -> Option<Vec<f64>> {
        let (model_background, t, counts) = match self {
            Noise::None => return None,
            Noise::DeepLenseCounts { exposure_time, background_rms } => {
                (background_rms * background_rms, *exposure_time, true)
            }
            Noise::Instrument { instrument, exposure_time } => {
                (instrument.background_variance(pixel_scale, *exposure_time), *exposure_time, false)
            }
        };
        if let Some(map) = map {
            assert_eq!(map.variance.len(), noise_free.pixels.len(), "one map variance per pixel");
        }
        let source = |v: f64| if counts { (v.abs() + v.max(0.0)) / t } else { v.max(0.0) / t };
        let known = |i: usize| map.map(|m| m.variance[i]).filter(|b| b.is_finite());
        let includes_source = map.is_some_and(|m| m.includes_source);
        Some(
            noise_free
                .pixels
                .iter()
                .enumerate()
                .map(|(i, &v)| match known(i) {
                    Some(total) if includes_source => total,
                    Some(background) => source(v) + background,
                    None => source(v) + model_background,
                })
                .collect(),
        )
    }
}

/// Sky + Poisson + read noise on every pixel (flux per pixel, `sky` e-/s, `t` s).
/// Compiled for the wider instruction sets too, where `floor` is one instruction
/// rather than a call; the arithmetic, and so every draw, is the same on all.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn add_instrument_noise<R: Rng>(pixels: &mut [f64], sky: f64, t: f64, read: Normal<f64>, rng: &mut R) {
    for v in pixels.iter_mut() {
        let electrons = poisson(((*v + sky) * t).max(0.0), rng) + read.sample(rng);
        *v = electrons / t - sky;
    }
}

#[inline(always)]
fn poisson<R: Rng>(mean: f64, rng: &mut R) -> f64 {
    if mean <= 0.0 {
        0.0
    } else {
        super::poisson::sample(mean, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn instrument_noise_is_unbiased_with_the_expected_variance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let euclid = Instrument::named("euclid-vis").unwrap();
        let (signal, t, pixel) = (0.2, 2260.0, 0.101);
        let mut img = Image { size: 128, pixels: vec![signal; 128 * 128] };
        Noise::Instrument { instrument: euclid.clone(), exposure_time: t }.apply(&mut img, pixel, &mut rng);
        let n = img.pixels.len() as f64;
        let mean = img.pixels.iter().sum::<f64>() / n;
        let var = img.pixels.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let sky = euclid.sky_per_pixel(pixel);
        let expected = (signal + sky) / t + euclid.read_noise.powi(2) * euclid.num_exposures as f64 / (t * t);
        assert!((mean - signal).abs() < 4.0 * (expected / n).sqrt(), "mean {mean}");
        assert!((var / expected - 1.0).abs() < 0.05, "variance {var} vs {expected}");
    }

    #[test]
    fn deeplense_counts_are_non_negative_integers_around_the_scaled_model() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut img = Image { size: 64, pixels: vec![0.5; 64 * 64] };
        Noise::DeepLenseCounts { exposure_time: 2000.0, background_rms: 0.01 }.apply(&mut img, 0.05, &mut rng);
        assert!(img.pixels.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
        let mean = img.pixels.iter().sum::<f64>() / img.pixels.len() as f64;
        assert!((mean / 1000.0 - 1.0).abs() < 0.01, "{mean}");
    }

    #[test]
    fn a_noise_map_replaces_the_background_where_it_is_finite_and_keeps_the_source_noise() {
        let euclid = Instrument::named("euclid-vis").unwrap();
        let (t, pixel) = (2260.0, 0.101);
        let noise = Noise::Instrument { instrument: euclid.clone(), exposure_time: t };
        let image = Image { size: 2, pixels: vec![0.0, 0.3, -0.1, 2.0] };
        let model = noise.variance(&image, pixel).unwrap();
        let background_map = |variance| Some(NoiseMap { variance, includes_source: false });
        let unknown = vec![f64::NAN; 4];
        assert_eq!(noise.variance_over(&image, pixel, background_map(&unknown)).unwrap(), model);
        let map = [1e-4, f64::NAN, 4e-4, 9e-4];
        let over = noise.variance_over(&image, pixel, background_map(&map)).unwrap();
        let background = euclid.background_variance(pixel, t);
        assert_eq!(over, [1e-4, model[1], 4e-4, 9e-4 + 2.0 / t]);
        assert_eq!(model[1], background + 0.3 / t);
        // A map of all the noise is taken as it is where it knows the pixel.
        let total = noise.variance_over(&image, pixel, Some(NoiseMap { variance: &map, includes_source: true }));
        assert_eq!(total.unwrap(), [1e-4, model[1], 4e-4, 9e-4]);
        assert_eq!(Noise::None.variance_over(&image, pixel, background_map(&map)), None);
    }
}
