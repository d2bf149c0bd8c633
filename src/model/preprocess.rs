//! How raw pixels become a classifier's or an MAE's input, recorded in every
//! checkpoint (`preprocessing.normalisation`) so that inference repeats it exactly.
//!
//! Two per-image scalings, optionally followed by a per-pixel standardisation fitted
//! on the training split:
//! - `minmax`: each image to [0, 1] by its own extremes (the paper's choice). On
//!   noise-free images the faint wings 1e-5 below the peak carry the classes, so
//!   quantising a cutout to 16 bits changes the answer: such inputs must be flagged.
//! - `noise-asinh`: asinh((x - b) / sigma), with the background b the median of
//!   the cutout's border and sigma the noise estimated from the cutout itself
//!   (the MAD of differences of neighbouring pixels, blind to smooth light). Noise
//!   maps to ~±1 and a bright lens galaxy to ~7; storage as int16 / uint16 changes
//!   nothing the noise does not already hide. For survey cutouts.
//!
//! The name written is the scaling, then `+pixel-standardise` when standardised.

use super::checkpoint::CheckpointMeta;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Checkpoint key of the per-pixel means of the standardisation.
pub const PIXEL_MEAN_KEY: &str = "preprocess.pixel_mean";
/// Checkpoint key of the per-pixel standard deviations.
pub const PIXEL_STD_KEY: &str = "preprocess.pixel_std";
/// Suffix of a standardised normalisation's name.
const STANDARDISED_SUFFIX: &str = "+pixel-standardise";

/// Bound on a standardised pixel. In-domain values stay far inside it (at most 96 on
/// Model II test images, RESULTS.md); an out-of-domain image (noise where training saw none) would
/// otherwise turn a pixel with a tiny training spread into a value that overflows
/// the network.
pub const STANDARDISED_PIXEL_BOUND: f32 = 1e3;

/// Width of the border whose median is the background of `noise-asinh`, pixels.
const BORDER: usize = 2;

/// Furthest from a cutout's centre that `antisymmetric-asinh` looks for the
/// deflector's brightest light, pixels: survey cutouts are centred on the
/// deflector's catalogue position to a pixel or two, and a wider window finds
/// bright arcs (with 6 pixels, 3.5% of the held-out survey lenses were centred on
/// an arc).
pub const CENTRING_SEARCH: usize = 3;

/// Furthest a cutout is moved to put its deflector at the centre, pixels. From
/// the brightest light within [`CENTRING_SEARCH`] the search climbs the light to
/// its peak (at most `CLIMB_STEPS` = 4 more pixels), which follows the deflector
/// where a wider window would jump to an arc; a deflector further off is beyond
/// the search ([`Centring::beyond_search`]).
pub const CENTRING_REACH: usize = 5;

/// Half-width of the window whose light-weighted centroid refines the brightest
/// pixel, pixels.
const CENTROID_HALF_WIDTH: usize = 2;

/// Steps from the brightest box within [`CENTRING_SEARCH`] to brighter
/// neighbouring boxes: two more than [`CENTRING_REACH`] needs, so that a climb
/// that has not stopped by then is on light that peaks further out.
const CLIMB_STEPS: usize = 4;

/// The per-image scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scaling {
    /// Each image to [0, 1] by its minimum and maximum.
    #[default]
    MinMax,
    /// asinh of the background-subtracted image in units of its estimated noise.
    NoiseAsinh,
    /// `noise-asinh` of the image's point-antisymmetric part about the deflector,
    /// (I(x) - I(-x)) / sqrt 2. The deflector's light (an elliptical profile
    /// centred on the lens) and the sky are symmetric under a half turn and cancel;
    /// the arcs are not, and keep their shape; the noise keeps its sigma. Survey
    /// lenses' light outshines their arcs by 1-6 mag, and a network given it learns
    /// "bright arc" before substructure (RESULTS.md). The image is first moved by
    /// whole pixels (wrapping at the edges, where there is only sky) so that the
    /// deflector's light, found at most [`CENTRING_REACH`] pixels from the
    /// centre, is at the centre: a cutout centred a pixel off leaves the light
    /// uncancelled and costs the bundled survey classifier 0.011 of macro AUC. A
    /// deflector further off is reported ([`Centring::beyond_search`]).
    AntisymmetricAsinh,
}

impl Scaling {
    /// Every scaling, by name.
    pub const ALL: [Scaling; 3] = [Scaling::MinMax, Scaling::NoiseAsinh, Scaling::AntisymmetricAsinh];

    /// The name written into checkpoints and taken by `--scaling`.
    pub fn name(self) -> &'static str {
        match self {
            Scaling::MinMax => "minmax",
            Scaling::NoiseAsinh => "noise-asinh",
            Scaling::AntisymmetricAsinh => "antisymmetric-asinh",
        }
    }

    /// The scaling called `name`.
    pub fn parse(name: &str) -> Option<Scaling> {
        Scaling::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Scale every image (a run of `image_len` pixels, square) of `pixels` in place.
    pub fn apply(self, pixels: &mut [f32], image_len: usize) {
        let _ = self.apply_with_noise(pixels, image_len, None);
    }

    /// As [`Scaling::apply`], with each image's noise sigma when known (from the
    /// survey's noise map) instead of the estimate from the cutout itself; only
    /// `noise-asinh` uses it. Returns, per image, where `antisymmetric-asinh`
    /// found the deflector and how far it moved it to the centre (not moved for
    /// the other scalings).
    pub fn apply_with_noise(
        self,
        pixels: &mut [f32],
        image_len: usize,
        sigmas: Option<&[Option<f32>]>,
    ) -> Vec<Centring> {
        match self {
            Scaling::MinMax => {
                crate::data::images::minmax_normalise(pixels, image_len);
                vec![Centring::default(); pixels.len() / image_len.max(1)]
            }
            Scaling::NoiseAsinh | Scaling::AntisymmetricAsinh => pixels
                .chunks_mut(image_len)
                .enumerate()
                .map(|(i, img)| {
                    let mut centring = Centring::default();
                    if self == Scaling::AntisymmetricAsinh {
                        centring = centre_on_light(img);
                        point_antisymmetric(img);
                    }
                    noise_asinh(img, sigmas.and_then(|s| s.get(i).copied().flatten()));
                    centring
                })
                .collect(),
        }
    }

    /// Whether a model with this scaling reads its images' faintest levels, and so
    /// needs them stored as finely as its training images were
    /// ([`crate::model::domain::Calibration::distinct_pixels_floor`]): the min-max
    /// scaling keeps every level of a noise-free image; the noise scalings put
    /// levels far below the noise within a fraction of a sigma of each other.
    pub fn reads_faint_levels(self) -> bool {
        self == Scaling::MinMax
    }

    /// The full normalisation name, with or without standardisation.
    pub fn normalisation_name(self, standardised: bool) -> String {
        format!("{}{}", self.name(), if standardised { STANDARDISED_SUFFIX } else { "" })
    }
}

/// A checkpoint's input preparation, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    /// The per-image scaling.
    pub scaling: Scaling,
    /// Per-pixel (mean, std) applied after the scaling.
    pub standardisation: Option<(Vec<f32>, Vec<f32>)>,
}

impl Preprocessor {
    /// The preparation `meta` names, with its tensors; unknown names are refused.
    pub fn from_checkpoint(path: &Path, meta: &CheckpointMeta, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let name = meta.preprocessing.normalisation.as_str();
        let (scaling_name, standardised) = match name.strip_suffix(STANDARDISED_SUFFIX) {
            Some(base) => (base, true),
            None => (name, false),
        };
        let scaling = Scaling::parse(scaling_name)
            .ok_or_else(|| Error::checkpoint(path, format!("unknown normalisation `{name}`")))?;
        let standardisation = if standardised {
            let get = |key: &str| -> Result<Vec<f32>> {
                let t = tensors.get(key).ok_or_else(|| Error::checkpoint(path, format!("has no `{key}` tensor")))?;
                Ok(t.flatten_all()?.to_vec1::<f32>()?)
            };
            Some((get(PIXEL_MEAN_KEY)?, get(PIXEL_STD_KEY)?))
        } else {
            None
        };
        Ok(Preprocessor { scaling, standardisation })
    }

    /// Prepare every image (`image_len` pixels) of `pixels` in place.
    pub fn apply(&self, pixels: &mut [f32], image_len: usize) {
        let _ = self.apply_with_noise(pixels, image_len, None);
    }

    /// As [`Preprocessor::apply`], with each image's known noise sigma; returns
    /// where each image's deflector was found (see [`Scaling::apply_with_noise`]).
    pub fn apply_with_noise(
        &self,
        pixels: &mut [f32],
        image_len: usize,
        sigmas: Option<&[Option<f32>]>,
    ) -> Vec<Centring> {
        let moved = self.scaling.apply_with_noise(pixels, image_len, sigmas);
        if let Some((mean, std)) = &self.standardisation {
            standardise_pixel_rows(pixels, mean, std);
        }
        moved
    }

    /// The tensors a checkpoint keeps for this preparation.
    pub fn checkpoint_tensors(&self, side: usize, dev: &Device) -> Result<HashMap<String, Tensor>> {
        let mut tensors = HashMap::new();
        if let Some((mean, std)) = &self.standardisation {
            tensors.insert(PIXEL_MEAN_KEY.to_string(), Tensor::from_slice(mean, (side, side), dev)?);
            tensors.insert(PIXEL_STD_KEY.to_string(), Tensor::from_slice(std, (side, side), dev)?);
        }
        Ok(tensors)
    }

    /// The name a checkpoint records.
    pub fn normalisation_name(&self) -> String {
        self.scaling.normalisation_name(self.standardisation.is_some())
    }
}

/// (offset, range) of an image's min-max scaling (`minmax-lr`, the super-resolution
/// models' input and output mapping); a flat image gets range 1.
pub fn minmax_scale(img: &[f32]) -> (f32, f32) {
    let (lo, hi) = crate::data::images::value_range(img);
    (lo, if hi > lo { hi - lo } else { 1.0 })
}

/// The pixels of `img` mapped by (offset, range): `(v - offset) / range`.
pub fn scaled(img: &[f32], (lo, range): (f32, f32)) -> impl Iterator<Item = f32> + '_ {
    img.iter().map(move |v| (v - lo) / range)
}

/// Applies `(v - mean) / std` pixel by pixel, bounded by
/// [`STANDARDISED_PIXEL_BOUND`], to every image (row of `mean.len()`) of `pixels`.
pub fn standardise_pixel_rows(pixels: &mut [f32], mean: &[f32], std: &[f32]) {
    let bound = STANDARDISED_PIXEL_BOUND;
    for img in pixels.chunks_exact_mut(mean.len()) {
        for ((v, m), s) in img.iter_mut().zip(mean).zip(std) {
            *v = ((*v - m) / s).clamp(-bound, bound);
        }
    }
}

/// (background, sigma) of a square cutout: the median of its `BORDER`-pixel frame,
/// and 1.4826 MAD / sqrt(2) of the differences of horizontally neighbouring pixels
/// (smooth light cancels in the differences, independent noise adds in quadrature).
/// sigma is 0 for noise-free or constant images.
pub fn background_and_sigma(img: &[f32]) -> (f32, f32) {
    let side = (img.len() as f64).sqrt() as usize;
    if side < 2 || side * side != img.len() {
        return (0.0, 0.0);
    }
    let border = BORDER.min(side / 2);
    let mut frame: Vec<f32> = (0..side)
        .flat_map(|r| (0..side).map(move |c| (r, c)))
        .filter(|&(r, c)| r < border || c < border || r >= side - border || c >= side - border)
        .map(|(r, c)| img[r * side + c])
        .collect();
    let background = median(&mut frame);
    let mut differences: Vec<f32> =
        img.chunks_exact(side).flat_map(|row| row.windows(2).map(|w| w[1] - w[0])).collect();
    let centre = median(&mut differences);
    differences.iter_mut().for_each(|d| *d = (*d - centre).abs());
    let sigma = 1.4826 * median(&mut differences) / std::f32::consts::SQRT_2;
    (background, sigma)
}

/// The median of `values` (reordered), the mean of the two middle values for an
/// even count; 0 when empty.
pub(crate) fn median(values: &mut [f32]) -> f32 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let (_, upper, _) = values.select_nth_unstable_by(n / 2, f32::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return upper;
    }
    let lower = values[..n / 2].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    0.5 * (lower + upper)
}

/// Where `antisymmetric-asinh` found a cutout's deflector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Centring {
    /// (rows, columns) by which the deflector's light was off the centre, and the
    /// image moved to put it there ((0, 0): not moved).
    pub moved_by: (isize, isize),
    /// The deflector's light peaks more than [`CENTRING_REACH`] pixels from the
    /// centre: the image is moved only that far, the light is not cancelled, and
    /// the classifier's answer is outside its domain (uncancelled, the bundled
    /// survey classifier's held-out moved 4 pixels lost 0.016 of macro AUC while the
    /// feature-space flag still passed 92% of them; RESULTS.md).
    pub beyond_search: bool,
}

/// Where a square image's deflector is, as [`Centring`]: the brightest 3x3 box
/// within [`CENTRING_SEARCH`] pixels of the centre, then up its light to the
/// brightest neighbouring box while there is one (at most `CLIMB_STEPS`), refined
/// by the light-weighted centroid of the 5x5 pixels around it and rounded. A climb
/// still rising, or a centroid more than [`CENTRING_REACH`] pixels out, puts the
/// deflector beyond the search (and the move stops at the reach). Not moved for
/// images too small to search, without positive light there, or flat.
pub fn locate_deflector(img: &[f32]) -> Centring {
    let side = (img.len() as f64).sqrt() as usize;
    let h = CENTROID_HALF_WIDTH;
    let margin = CENTRING_SEARCH + h + 1;
    if side * side != img.len() || side < 2 * margin + 2 {
        return Centring::default();
    }
    let centre = (side as f64 - 1.0) / 2.0;
    let at = |r: usize, c: usize| img[r * side + c];
    // Candidate peaks: every pixel at most the search radius from the centre along
    // each axis.
    let search = CENTRING_SEARCH as f64;
    let (first, last) = ((centre - search).ceil() as usize, (centre + search).floor() as usize);
    let box_sum = |(r, c): (usize, usize)| {
        (r - 1..=r + 1).flat_map(|y| (c - 1..=c + 1).map(move |x| (y, x))).map(|(y, x)| at(y, x)).sum::<f32>()
    };
    // Nearest the centre first, so that flat light (a constant image) stays put.
    let mut candidates: Vec<(usize, usize)> =
        (first..=last).flat_map(|r| (first..=last).map(move |c| (r, c))).collect();
    candidates.sort_by(|a, b| {
        let distance = |&(r, c): &(usize, usize)| (r as f64 - centre).powi(2) + (c as f64 - centre).powi(2);
        distance(a).total_cmp(&distance(b))
    });
    let mut peak = candidates[0];
    let mut brightest = f32::NEG_INFINITY;
    for candidate in candidates {
        let sum = box_sum(candidate);
        if sum > brightest {
            (brightest, peak) = (sum, candidate);
        }
    }
    // The light-weighted centroid of the 5x5 pixels around `at`, from the centre.
    let centroid = |(r0, c0): (usize, usize)| -> Option<(f64, f64)> {
        let (mut weight, mut row, mut column) = (0.0f64, 0.0f64, 0.0f64);
        for y in r0 - h..=r0 + h {
            for x in c0 - h..=c0 + h {
                let w = at(y, x).max(0.0) as f64;
                (weight, row, column) = (weight + w, row + w * y as f64, column + w * x as f64);
            }
        }
        (weight > 0.0 && weight.is_finite()).then(|| (row / weight - centre, column / weight - centre))
    };
    // Climb from the peak while a neighbouring box is brighter, its centroid window
    // inside the image.
    let inside = |p: usize| p >= h && p + h < side;
    let (mut top, mut rising) = (peak, true);
    for _ in 0..CLIMB_STEPS {
        let here = box_sum(top);
        let neighbours = (-1isize..=1).flat_map(|dr| (-1isize..=1).map(move |dc| (dr, dc)));
        let brighter = neighbours
            .filter(|&step| step != (0, 0))
            .map(|(dr, dc)| (top.0.wrapping_add_signed(dr), top.1.wrapping_add_signed(dc)))
            .filter(|&(r, c)| inside(r) && inside(c))
            .map(|p| (box_sum(p), p))
            .filter(|&(sum, _)| sum > here)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match brighter {
            Some((_, p)) => top = p,
            None => {
                rising = false;
                break;
            }
        }
    }
    let Some((row, column)) = centroid(top) else {
        return Centring::default();
    };
    // Ties to even: flat light, whose centroid is the chosen pixel half a pixel off
    // an even-sided image's centre, stays put.
    let reach = CENTRING_REACH as f64;
    let offset = |d: f64| d.round_ties_even().clamp(-reach, reach) as isize;
    let beyond = |d: f64| d.round_ties_even().abs() > reach;
    Centring { moved_by: (offset(row), offset(column)), beyond_search: rising || beyond(row) || beyond(column) }
}

/// Moves a square image in place so that the deflector's light ([`locate_deflector`])
/// is at its centre; the pixels that leave one edge come back at the other.
fn centre_on_light(img: &mut [f32]) -> Centring {
    let centring = locate_deflector(img);
    let (rows, columns) = centring.moved_by;
    if (rows, columns) == (0, 0) {
        return centring;
    }
    let side = (img.len() as f64).sqrt() as usize;
    let shifted: Vec<f32> = (0..side * side)
        .map(|i| {
            let r = (i / side) as isize + rows;
            let c = (i % side) as isize + columns;
            img[r.rem_euclid(side as isize) as usize * side + c.rem_euclid(side as isize) as usize]
        })
        .collect();
    img.copy_from_slice(&shifted);
    centring
}

/// The point-antisymmetric part of a square image about its centre, in place:
/// (I(x) - I(-x)) / sqrt 2, which has the noise sigma of the image.
fn point_antisymmetric(img: &mut [f32]) {
    let n = img.len();
    for i in 0..n / 2 {
        let (a, b) = (img[i], img[n - 1 - i]);
        let half = (a - b) * std::f32::consts::FRAC_1_SQRT_2;
        (img[i], img[n - 1 - i]) = (half, -half);
    }
    if n % 2 == 1 {
        img[n / 2] = 0.0; // the centre pixel is its own mirror
    }
}

/// `noise-asinh` of one image in place. Without measurable noise (a noise-free
/// simulation, a constant image) sigma falls back to 1e-6 of the image's range, so
/// such an image comes out far from anything noisy training data showed (the
/// out-of-domain flag's job); a constant image becomes zeros.
fn noise_asinh(img: &mut [f32], known_sigma: Option<f32>) {
    let (background, estimated) = background_and_sigma(img);
    let sigma = known_sigma.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(estimated);
    let (lo, hi) = crate::data::images::value_range(img);
    let sigma = if sigma > 0.0 && sigma.is_finite() { sigma } else { 1e-6 * (hi - lo) };
    for v in img.iter_mut() {
        *v = if sigma > 0.0 { ((*v - background) / sigma).asinh() } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// A smooth bright blob on a background of 0.3 with Gaussian noise `sigma`.
    fn noisy_blob(side: usize, sigma: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let c = side as f32 / 2.0;
        (0..side * side)
            .map(|i| {
                let (r, col) = ((i / side) as f32 - c, (i % side) as f32 - c);
                let light = 50.0 * sigma * (-(r * r + col * col) / 40.0).exp();
                0.3 + light + sigma * rng.sample::<f32, _>(StandardNormal)
            })
            .collect()
    }

    #[test]
    fn the_noise_and_background_of_a_cutout_are_recovered_despite_its_light() {
        for (sigma, seed) in [(0.011, 1), (2.5, 2), (1e-3, 3)] {
            let img = noisy_blob(64, sigma, seed);
            let (background, estimate) = background_and_sigma(&img);
            assert!((estimate / sigma - 1.0).abs() < 0.08, "sigma {sigma}: estimated {estimate}");
            assert!((background - 0.3).abs() < 0.2 * sigma, "background {background}");
        }
        assert_eq!(background_and_sigma(&[1.0; 16]), (1.0, 0.0));
    }

    #[test]
    fn a_noise_map_sigma_replaces_the_estimate() {
        let side = 32;
        let img = noisy_blob(side, 0.05, 4);
        let (background, _) = background_and_sigma(&img);
        let mut given = img.clone();
        Scaling::NoiseAsinh.apply_with_noise(&mut given, side * side, Some(&[Some(0.2)]));
        for (g, v) in given.iter().zip(&img) {
            assert!((g - ((v - background) / 0.2).asinh()).abs() < 1e-5);
        }
        // No usable sigma in the map: the cutout's own estimate, as without one.
        let (mut a, mut b) = (img.clone(), img);
        Scaling::NoiseAsinh.apply_with_noise(&mut a, side * side, Some(&[None]));
        Scaling::NoiseAsinh.apply(&mut b, side * side);
        assert_eq!(a, b);
    }

    #[test]
    fn the_antisymmetric_scaling_removes_centred_light_and_keeps_the_rest() {
        // An elliptical blob centred on the cutout (the deflector) plus an arc-like
        // blob off centre: only the arc, and its negative mirror, are left.
        let side = 64;
        let centre = (side as f32 - 1.0) / 2.0;
        let light = |r: f32, c: f32| (-((r - centre).powi(2) / 30.0 + (c - centre).powi(2) / 80.0)).exp();
        let arc = |r: f32, c: f32| 0.05 * (-((r - 20.0).powi(2) + (c - 40.0).powi(2)) / 4.0).exp();
        let image: Vec<f32> =
            (0..side * side).map(|i| ((i / side) as f32, (i % side) as f32)).map(|(r, c)| 3.0 * light(r, c)).collect();
        let mut lens = image.clone();
        point_antisymmetric(&mut lens);
        assert!(lens.iter().all(|v| v.abs() < 1e-5), "a centred ellipse cancels");
        let mut with_arc: Vec<f32> = (0..side * side)
            .map(|i| ((i / side) as f32, (i % side) as f32))
            .map(|(r, c)| 3.0 * light(r, c) + arc(r, c))
            .collect();
        point_antisymmetric(&mut with_arc);
        let at = |r: usize, c: usize| with_arc[r * side + c];
        assert!((at(20, 40) - 0.05 * std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-4, "{}", at(20, 40));
        assert!((at(63 - 20, 63 - 40) + at(20, 40)).abs() < 1e-6);
        // The sky cancels: a constant image scales to zeros, as with `noise-asinh`.
        let mut constant = vec![4.0; side * side];
        Scaling::AntisymmetricAsinh.apply(&mut constant, side * side);
        assert!(constant.iter().all(|v| *v == 0.0));
        // The noise keeps its sigma (pairs of independent pixels, divided by sqrt 2).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut noise: Vec<f32> = (0..side * side).map(|_| 0.5 * rng.sample::<f32, _>(StandardNormal)).collect();
        point_antisymmetric(&mut noise);
        let variance = noise.iter().map(|v| v * v).sum::<f32>() / noise.len() as f32;
        assert!((variance.sqrt() / 0.5 - 1.0).abs() < 0.05, "sigma {}", variance.sqrt());
    }

    #[test]
    fn the_antisymmetric_scaling_centres_the_deflector_first() {
        // A bright elliptical deflector 2 rows down and 1 column left of the centre,
        // a fainter arc 12 pixels from it, and noise.
        let side = 64;
        let centre = (side as f32 - 1.0) / 2.0;
        let (dr, dc) = (2.0, -1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let image = |dr: f32, dc: f32, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f32> {
            (0..side * side)
                .map(|i| ((i / side) as f32 - centre - dr, (i % side) as f32 - centre - dc))
                .map(|(r, c)| {
                    let light = 40.0 * (-(r * r / 6.0 + c * c / 12.0)).exp();
                    let arc = 8.0 * (-((r + 12.0).powi(2) + c * c) / 3.0).exp();
                    light + arc + 0.1 * rng.sample::<f32, _>(StandardNormal)
                })
                .collect()
        };
        let off = image(dr, dc, &mut rng);
        // Off the window where the brightest light is looked for, the search climbs
        // the deflector's light up to the reach; further off, the deflector is
        // beyond it, and the move stops at the reach.
        for (dr, dc) in [(3.0, 0.0), (0.0, 4.0), (-5.0, 0.0), (-4.0, -4.0)] {
            let moved_by = (dr as isize, dc as isize);
            let found = locate_deflector(&image(dr, dc, &mut rng));
            assert_eq!(found, Centring { moved_by, beyond_search: false }, "{dr} {dc}");
        }
        for (dr, dc, moved_by) in [(0.0, 6.0, (0, 5)), (-7.0, 0.0, (-5, 0)), (6.0, 6.0, (5, 5))] {
            let found = locate_deflector(&image(dr, dc, &mut rng));
            assert_eq!(found, Centring { moved_by, beyond_search: true }, "{dr} {dc}");
        }
        assert_eq!(locate_deflector(&off), Centring { moved_by: (2, -1), beyond_search: false });
        let centred = image(0.0, 0.0, &mut rng);
        assert_eq!(locate_deflector(&centred), Centring::default());
        // Around the deflector only noise is left (~1 in asinh units of sigma), where
        // without centring its light would stand out by tens of sigma.
        let central_rms = |v: &[f32], (r0, c0): (usize, usize)| {
            let values: Vec<f32> = (r0 - 4..=r0 + 4)
                .flat_map(|r| (c0 - 4..=c0 + 4).map(move |c| (r, c)))
                .map(|(r, c)| v[r * side + c])
                .collect();
            (values.iter().map(|x| x * x).sum::<f32>() / values.len() as f32).sqrt()
        };
        let mut a = off.clone();
        Scaling::AntisymmetricAsinh.apply(&mut a, side * side);
        assert!(central_rms(&a, (32, 32)) < 1.5, "{}", central_rms(&a, (32, 32)));
        let mut uncentred = off;
        point_antisymmetric(&mut uncentred);
        noise_asinh(&mut uncentred, None);
        assert!(central_rms(&uncentred, (32, 32)) > 3.0, "{}", central_rms(&uncentred, (32, 32)));
        // A brighter arc 8 pixels out is not taken for the deflector.
        let mut far = vec![0.0f32; side * side];
        for (r, c) in [(31, 31), (31, 32), (32, 31), (32, 32)] {
            far[r * side + c] = 1.0;
        }
        far[40 * side + 31] = 10.0;
        assert_eq!(locate_deflector(&far), Centring::default());
        // Too small to search, or nothing positive: left where it is.
        assert_eq!(locate_deflector(&[1.0; 16 * 16]), Centring::default());
        assert_eq!(locate_deflector(&vec![-1.0; side * side]), Centring::default());
    }

    #[test]
    fn noise_asinh_does_not_see_16_bit_quantisation() {
        let side = 64;
        let img = noisy_blob(side, 0.011, 7);
        let (lo, hi) = crate::data::images::value_range(&img);
        // As uint16 (or int16 with BZERO) over the image's range, read back.
        let step = (hi - lo) / 65535.0;
        let quantised: Vec<f32> = img.iter().map(|v| lo + ((v - lo) / step).round() * step).collect();
        let (mut a, mut b) = (img.clone(), quantised);
        Scaling::NoiseAsinh.apply(&mut a, side * side);
        Scaling::NoiseAsinh.apply(&mut b, side * side);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.01, "largest change of a scaled pixel {worst}");
        // (Min-max passes this too: its step is 1.5e-5 of the range. It fails on
        // noise-free images, whose faint wings are that small.) A constant image:
        let mut constant = vec![4.0; side * side];
        Scaling::NoiseAsinh.apply(&mut constant, side * side);
        assert!(constant.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn normalisation_names_round_trip_and_unknown_ones_are_refused() {
        for scaling in Scaling::ALL {
            for standardised in [false, true] {
                let name = scaling.normalisation_name(standardised);
                let base = name.strip_suffix(STANDARDISED_SUFFIX).unwrap_or(&name);
                assert_eq!(Scaling::parse(base), Some(scaling), "{name}");
            }
        }
        assert_eq!(Scaling::parse("zscale"), None);
    }

    #[test]
    fn standardised_pixels_are_bounded() {
        let mut rows = vec![1.0, 2.0, 1e9];
        standardise_pixel_rows(&mut rows, &[0.0, 1.0, 0.0], &[1.0, 0.5, 1e-6]);
        assert_eq!(rows, vec![1.0, 2.0, STANDARDISED_PIXEL_BOUND]);
    }
}
