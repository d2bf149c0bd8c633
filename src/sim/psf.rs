//! Point-spread functions.
//!
//! The Gaussian PSF is applied exactly as lenstronomy does for `psf_type =
//! 'GAUSSIAN'`: `scipy.ndimage.gaussian_filter` with sigma = FWHM / (2 sqrt(2 ln 2))
//! in pixels, edges extended with the nearest pixel ("nearest" mode) and the kernel
//! cut at `truncation` sigma (radius `int(truncation * sigma + 0.5)` pixels), applied
//! along rows then columns.
//!
//! A pixelated PSF (a survey's PSF model at the cutout's pixels: Euclid VIS has wings
//! no Gaussian has) is convolved as lenstronomy does for `psf_type = 'PIXEL'` without
//! supersampled convolution: `scipy.signal.fftconvolve(image, kernel, mode='same')`
//! on the binned image, zeros beyond its edges.

use super::grid::Image;
use std::sync::Arc;

/// FWHM / sigma of a Gaussian.
pub const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949_3;

/// A point-spread function.
#[derive(Debug, Clone, PartialEq)]
pub enum Psf {
    /// No blurring.
    None,
    /// Circular Gaussian.
    Gaussian {
        /// Full width at half maximum, arcsec.
        fwhm: f64,
        /// Kernel cut, in units of sigma (lenstronomy's default is 4).
        truncation: f64,
    },
    /// A kernel sampled at the image's pixels (shared: every render of a fit uses it).
    Pixelated(Arc<PsfKernel>),
}

/// A PSF image at the pixels it blurs: an odd number of pixels per side, the centre
/// pixel on the centre of light, normalised to a sum of 1.
#[derive(Debug, Clone, PartialEq)]
pub struct PsfKernel {
    side: usize,
    weights: Vec<f64>,
}

/// Refuses a kernel side that is even (no centre pixel) or above [`MAX_KERNEL_SIDE`].
fn check_side(side: usize) -> Result<(), String> {
    if side % 2 == 0 || side > MAX_KERNEL_SIDE {
        return Err(format!(
            "a PSF image of {side} pixels per side: needs an odd side (its centre on a pixel), at most {MAX_KERNEL_SIDE}"
        ));
    }
    Ok(())
}

/// The odd side, at least 3 pixels, of a kernel of `side` pixels brought to pixels
/// `ratio` times as wide: as many as hold what it covers.
pub fn resampled_side(side: usize, ratio: f64) -> usize {
    (((side as f64 / ratio).ceil() as usize) | 1).clamp(3, MAX_KERNEL_SIDE)
}

/// The share of a Moffat profile's light that [`moffat_side`] keeps within the kernel.
pub const MOFFAT_ENCLOSED: f64 = 0.995;

/// The Moffat profile's alpha of a FWHM (any unit; alpha in the same).
fn moffat_alpha(fwhm: f64, beta: f64) -> f64 {
    fwhm / (2.0 * (2f64.powf(1.0 / beta) - 1.0).sqrt())
}

/// The odd side, pixels, of a Moffat kernel of `fwhm` pixels that holds
/// [`MOFFAT_ENCLOSED`] of its light (the light beyond radius r is (1 + (r/alpha)^2)^(1 -
/// beta)), at least 3 and at most [`MAX_KERNEL_SIDE`] (beta near 1 spreads light
/// farther than any cutout): 19 for beta 2.5 and Euclid VIS's 1.7 pixels.
pub fn moffat_side(fwhm: f64, beta: f64) -> usize {
    let radius = moffat_alpha(fwhm, beta) * ((1.0 - MOFFAT_ENCLOSED).powf(1.0 / (1.0 - beta)) - 1.0).sqrt();
    if !radius.is_finite() {
        return MAX_KERNEL_SIDE;
    }
    (2 * (radius.ceil().min(MAX_KERNEL_SIDE as f64) as usize) + 1).clamp(3, MAX_KERNEL_SIDE)
}

/// The cumulative light of a kernel `side` pixels wide at position `x` (in pixels
/// from its first edge), as coefficients of the cumulative sums through its edges:
/// `(k, c)` stands for c times the light of its first k pixels. A Catmull-Rom cubic
/// through the four nearest edges, linear next to the kernel's own edges, the whole
/// light beyond them.
fn cumulative_coefficients(x: f64, side: usize) -> Vec<(usize, f64)> {
    if x <= 0.0 {
        return Vec::new();
    }
    if x >= side as f64 {
        return vec![(side, 1.0)];
    }
    let m = x.floor() as usize;
    let t = x - m as f64;
    if m == 0 || m + 2 > side {
        return vec![(m, 1.0 - t), (m + 1, t)];
    }
    let (t2, t3) = (t * t, t * t * t);
    vec![
        (m - 1, 0.5 * (-t + 2.0 * t2 - t3)),
        (m, 0.5 * (2.0 - 5.0 * t2 + 3.0 * t3)),
        (m + 1, 0.5 * (t + 4.0 * t2 - 3.0 * t3)),
        (m + 2, 0.5 * (-t2 + t3)),
    ]
}

/// The widest kernel accepted, pixels per side: a PSF image is a few FWHM across,
/// and one as wide as this costs 65,000 multiply-adds per pixel of every render.
pub const MAX_KERNEL_SIDE: usize = 255;

impl PsfKernel {
    /// A kernel from `side` x `side` row-major values, normalised to a sum of 1.
    /// Refuses an even or too large side, a value count that is not side^2, values
    /// that are not finite, and a sum or centre that is not positive (small negative
    /// wings, as PSF models have, are kept).
    pub fn new(side: usize, values: &[f64]) -> Result<Self, String> {
        check_side(side)?;
        if values.len() != side * side {
            return Err(format!("a PSF image of side {side} needs {} values, got {}", side * side, values.len()));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!("PSF pixel {i} is {}: every value must be finite", values[i]));
        }
        let sum: f64 = values.iter().sum();
        let centre = values[side * side / 2];
        if !(sum > 0.0 && centre > 0.0) {
            return Err(format!("a PSF image summing to {sum} with centre {centre}: both must be > 0"));
        }
        Ok(PsfKernel { side, weights: values.iter().map(|v| v / sum).collect() })
    }

    /// A kernel from a square list of values (side = its square root).
    pub fn from_square(values: &[f64]) -> Result<Self, String> {
        let side = (values.len() as f64).sqrt().round() as usize;
        if side * side != values.len() {
            return Err(format!("{} PSF values are not a square image", values.len()));
        }
        Self::new(side, values)
    }

    /// A circular Moffat profile, (1 + (r/alpha)^2)^-beta, of `fwhm` pixels, each
    /// pixel the mean of 5 x 5 samples across it, cut at `side`: the usual model of
    /// a ground- or space-based PSF with wings (beta 2.5-4.5; a Gaussian as beta
    /// grows).
    pub fn moffat(fwhm: f64, beta: f64, side: usize) -> Result<Self, String> {
        if !(fwhm > 0.0 && fwhm.is_finite() && beta > 1.0 && beta.is_finite()) {
            return Err(format!("a Moffat PSF of FWHM {fwhm} pixels and beta {beta}: needs FWHM > 0 and beta > 1"));
        }
        check_side(side)?;
        let alpha = moffat_alpha(fwhm, beta);
        let half = side / 2;
        // The profile and the samples across a pixel are symmetric about both axes and
        // the diagonal: an eighth of the pixels is computed (a recipe draws a kernel
        // an image), the others copied.
        let pixel_mean = |row: usize, col: usize| {
            let mut sum = 0.0;
            for a in 0..5 {
                for b in 0..5 {
                    let (dy, dx) = (row as f64 + (a as f64 - 2.0) / 5.0, col as f64 + (b as f64 - 2.0) / 5.0);
                    sum += (1.0 + (dx * dx + dy * dy) / (alpha * alpha)).powf(-beta);
                }
            }
            sum / 25.0
        };
        let mut values = vec![0.0; side * side];
        for row in 0..=half {
            for col in 0..=row {
                let value = pixel_mean(row, col);
                for (r, c) in [(row, col), (col, row)] {
                    for (y, x) in
                        [(half + r, half + c), (half - r, half + c), (half + r, half - c), (half - r, half - c)]
                    {
                        values[y * side + x] = value;
                    }
                }
            }
        }
        Self::new(side, &values)
    }

    /// A Moffat PSF of `fwhm` pixels ([`PsfKernel::moffat`]) cut at
    /// [`moffat_side`]: where no side is given.
    pub fn moffat_enclosing(fwhm: f64, beta: f64) -> Result<Self, String> {
        Self::moffat(fwhm, beta, moffat_side(fwhm, beta))
    }

    /// Pixels per side.
    pub fn side(&self) -> usize {
        self.side
    }

    /// The normalised values, row-major.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The kernel on pixels `ratio` times as wide as its own, centred as it is, on
    /// the odd side that holds what it covers (at least 3): a PSF model sampled finer
    /// than the cutouts, brought to their pixels. Each new pixel is the kernel's light
    /// between its edges, read along each axis from the cumulative light through the
    /// old pixels' edges, interpolated by a cubic (Catmull-Rom) between them: an odd
    /// whole ratio puts every new edge on an old one and sums old pixels exactly; an
    /// even one cuts through old pixels, whose light a cubic places better than
    /// spreading it evenly across each (area weighting, as cutouts are resampled):
    /// test `a_kernel_sampled_finer_comes_back_at_coarser_pixels`.
    pub fn resampled(&self, ratio: f64) -> Result<Self, String> {
        if !(ratio.is_finite() && ratio > 0.0) {
            return Err(format!("a PSF resampled by {ratio}: needs a finite ratio > 0"));
        }
        let side = self.side;
        let out = resampled_side(side, ratio);
        let start = side as f64 / 2.0 - out as f64 * ratio / 2.0;
        // weights[i * side + j]: old pixel j's share of new pixel i along one axis.
        let mut weights = vec![0.0; out * side];
        for i in 0..out {
            let row = &mut weights[i * side..(i + 1) * side];
            for (x, sign) in [(start + (i + 1) as f64 * ratio, 1.0), (start + i as f64 * ratio, -1.0)] {
                for (edge, coefficient) in cumulative_coefficients(x, side) {
                    row[..edge].iter_mut().for_each(|w| *w += sign * coefficient);
                }
            }
        }
        // new = W K W^T, one axis at a time.
        let mut half = vec![0.0; out * side];
        for i in 0..out {
            for (j, &w) in weights[i * side..(i + 1) * side].iter().enumerate().filter(|(_, w)| **w != 0.0) {
                for (h, k) in half[i * side..(i + 1) * side].iter_mut().zip(&self.weights[j * side..(j + 1) * side]) {
                    *h += w * k;
                }
            }
        }
        let mut values = vec![0.0; out * out];
        for (i, row) in half.chunks_exact(side).enumerate() {
            for c in 0..out {
                values[i * out + c] = row.iter().zip(&weights[c * side..(c + 1) * side]).map(|(h, w)| h * w).sum();
            }
        }
        Self::new(out, &values)
    }

    /// The FWHM of the Gaussian with the same second moment about the centre
    /// pixel, in pixels: a size to compare kernels by (wider than the core's own
    /// FWHM where the kernel has wings).
    pub fn gaussian_equivalent_fwhm(&self) -> f64 {
        let half = (self.side / 2) as f64;
        let second: f64 = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (dy, dx) = ((i / self.side) as f64 - half, (i % self.side) as f64 - half);
                w * (dx * dx + dy * dy)
            })
            .sum();
        (second.max(0.0) / 2.0).sqrt() * FWHM_PER_SIGMA
    }
}

impl Psf {
    /// Convolve `image`, whose pixels are `pixel_scale` arcsec wide.
    pub fn convolve(&self, image: &Image, pixel_scale: f64) -> Image {
        match *self {
            Psf::None => image.clone(),
            Psf::Gaussian { fwhm, truncation } => {
                let kernel = gaussian_kernel_1d(fwhm / FWHM_PER_SIGMA / pixel_scale, truncation);
                separable_filter_nearest(image, &kernel)
            }
            Psf::Pixelated(ref kernel) => convolve_zero_padded(image, kernel),
        }
    }
}

/// The normalised 1-D Gaussian kernel scipy builds for `sigma` (pixels).
pub fn gaussian_kernel_1d(sigma: f64, truncation: f64) -> Vec<f64> {
    let radius = (truncation * sigma + 0.5) as i64;
    let mut weights: Vec<f64> = (-radius..=radius).map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= sum);
    weights
}

/// Correlate along axis 0 (rows) then axis 1, with "nearest" edges. The inner
/// loops are plain multiply-adds, compiled per SIMD width and picked at run time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn separable_filter_nearest(image: &Image, kernel: &[f64]) -> Image {
    let n = image.size;
    let radius = kernel.len() / 2;
    let clamp = |i: isize| i.clamp(0, n as isize - 1) as usize;
    // scipy filters the first axis (down the columns) first: whole rows at a time.
    let mut tmp = vec![0.0; n * n];
    for row in 0..n {
        let out = &mut tmp[row * n..(row + 1) * n];
        for (k, w) in kernel.iter().enumerate() {
            let src = clamp(row as isize + k as isize - radius as isize);
            for (o, s) in out.iter_mut().zip(&image.pixels[src * n..(src + 1) * n]) {
                *o += w * s;
            }
        }
    }
    // Then along each row, through a copy padded with the edge values.
    let mut out = Image::zeros(n);
    let mut padded = vec![0.0; n + 2 * radius];
    for row in 0..n {
        let src = &tmp[row * n..(row + 1) * n];
        padded[..radius].fill(src[0]);
        padded[radius..radius + n].copy_from_slice(src);
        padded[radius + n..].fill(src[n - 1]);
        // Tap-outer, pixel-inner: the inner loop has no dependency and vectorises.
        let out_row = &mut out.pixels[row * n..(row + 1) * n];
        for (k, w) in kernel.iter().enumerate() {
            for (o, v) in out_row.iter_mut().zip(&padded[k..k + n]) {
                *o += w * v;
            }
        }
    }
    out
}

/// Output pixels computed together per row: their sums stay in registers across
/// all the kernel's taps (four AVX-512 or eight AVX2 vectors, independent chains).
const BLOCK: usize = 32;

/// out[i][j] = sum over (dy, dx) of kernel[c + dy][c + dx] * image[i - dy][j - dx],
/// zero beyond the image (scipy's `fftconvolve(..., mode='same')` for an odd kernel).
/// Through a zero-padded copy, a block of [`BLOCK`] output pixels at a time whose sums
/// are kept in registers over every tap: one load and one multiply-add per tap and
/// pixel, no branch in the innermost loop.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn convolve_zero_padded(image: &Image, kernel: &PsfKernel) -> Image {
    let n = image.size;
    let (k, c) = (kernel.side, kernel.side / 2);
    let blocks = n.div_ceil(BLOCK);
    // Wide enough that the last block reads zeros past the image, not past the buffer.
    let width = blocks * BLOCK + 2 * c;
    let mut padded = vec![0.0; (n + 2 * c) * width];
    for row in 0..n {
        let at = (row + c) * width + c;
        padded[at..at + n].copy_from_slice(&image.pixels[row * n..(row + 1) * n]);
    }
    let mut out = Image::zeros(n);
    for row in 0..n {
        for block in 0..blocks {
            let j0 = block * BLOCK;
            let mut sums = [0.0; BLOCK];
            for (a, taps) in kernel.weights.chunks_exact(k).enumerate() {
                // Kernel row a takes image row row - (a - c): padded row row + 2c - a.
                let source = &padded[(row + 2 * c - a) * width + j0..][..BLOCK + 2 * c];
                for (b, &w) in taps.iter().enumerate() {
                    // Kernel column b takes image column j - (b - c): padded column j + 2c - b.
                    let shifted: &[f64; BLOCK] = source[2 * c - b..][..BLOCK].try_into().expect("BLOCK values");
                    for (sum, v) in sums.iter_mut().zip(shifted) {
                        *sum += w * v;
                    }
                }
            }
            let len = BLOCK.min(n - j0);
            out.pixels[row * n + j0..][..len].copy_from_slice(&sums[..len]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_conserves_a_flat_image_and_the_kernel_is_normalised() {
        let k = gaussian_kernel_1d(0.7, 4.0);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let flat = Image { size: 8, pixels: vec![2.0; 64] };
        let out = Psf::Gaussian { fwhm: 0.2, truncation: 4.0 }.convolve(&flat, 0.1);
        assert!(out.pixels.iter().all(|v| (v - 2.0).abs() < 1e-14));
    }

    /// The definition, one output pixel at a time.
    fn convolve_by_definition(image: &Image, kernel: &PsfKernel) -> Image {
        let (n, k, c) = (image.size as isize, kernel.side() as isize, kernel.side() as isize / 2);
        let mut out = Image::zeros(image.size);
        for i in 0..n {
            for j in 0..n {
                let mut sum = 0.0;
                for dy in -c..=c {
                    for dx in -c..=c {
                        let (si, sj) = (i - dy, j - dx);
                        if (0..n).contains(&si) && (0..n).contains(&sj) {
                            sum += kernel.weights()[((c + dy) * k + c + dx) as usize]
                                * image.pixels[(si * n + sj) as usize];
                        }
                    }
                }
                out.pixels[(i * n + j) as usize] = sum;
            }
        }
        out
    }

    #[test]
    fn a_pixelated_psf_convolves_as_the_definition_with_zeros_beyond_the_edges() {
        // An asymmetric kernel, so that a correlation (the kernel not flipped) would differ.
        let values: Vec<f64> = (0..25).map(|i| 1.0 + (i * 7 % 11) as f64 + if i == 12 { 20.0 } else { 0.0 }).collect();
        let kernel = PsfKernel::new(5, &values).unwrap();
        let image = Image { size: 9, pixels: (0..81).map(|i| ((i * 37) % 13) as f64 - 3.0).collect() };
        let fast = Psf::Pixelated(Arc::new(kernel.clone())).convolve(&image, 0.1);
        let slow = convolve_by_definition(&image, &kernel);
        for (a, b) in fast.pixels.iter().zip(&slow.pixels) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // A point in the middle takes the kernel's shape, not its mirror image.
        let mut point = Image::zeros(9);
        point.pixels[4 * 9 + 4] = 1.0;
        let spread = Psf::Pixelated(Arc::new(kernel.clone())).convolve(&point, 0.1);
        assert!((spread.pixels[3 * 9 + 5] - kernel.weights()[5 + 3]).abs() < 1e-15);
        // A kernel wider than the image leaves no tap out of range.
        let wide = PsfKernel::moffat(3.0, 2.5, 21).unwrap();
        let small = Image { size: 6, pixels: (0..36).map(|i| i as f64).collect() };
        let (a, b) =
            (Psf::Pixelated(Arc::new(wide.clone())).convolve(&small, 0.1), convolve_by_definition(&small, &wide));
        assert!(a.pixels.iter().zip(&b.pixels).all(|(x, y)| (x - y).abs() < 1e-12));
    }

    #[test]
    fn a_pixelated_gaussian_blurs_as_the_gaussian_psf_away_from_the_edges() {
        let sigma: f64 = 1.3;
        let side = 2 * (4.0 * sigma + 0.5) as usize + 1;
        let values: Vec<f64> = (0..side * side)
            .map(|i| {
                let (dy, dx) = ((i / side) as f64 - (side / 2) as f64, (i % side) as f64 - (side / 2) as f64);
                (-0.5 * (dx * dx + dy * dy) / (sigma * sigma)).exp()
            })
            .collect();
        let kernel = PsfKernel::new(side, &values).unwrap();
        assert!((kernel.gaussian_equivalent_fwhm() / (sigma * FWHM_PER_SIGMA) - 1.0).abs() < 1e-3);
        let mut image = Image::zeros(32);
        image.pixels[16 * 32 + 15] = 5.0;
        image.pixels[14 * 32 + 17] = 2.0;
        let pixelated = Psf::Pixelated(Arc::new(kernel)).convolve(&image, 0.1);
        let gaussian = Psf::Gaussian { fwhm: sigma * FWHM_PER_SIGMA * 0.1, truncation: 4.0 }.convolve(&image, 0.1);
        for (a, b) in pixelated.pixels.iter().zip(&gaussian.pixels) {
            // The 2-D kernel is cut on a square, the separable one on the same square.
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let flux: f64 = pixelated.pixels.iter().sum();
        assert!((flux - 7.0).abs() < 1e-12);
    }

    #[test]
    fn psf_images_that_cannot_be_a_psf_are_refused_with_the_reason() {
        let refused = |side: usize, values: &[f64]| PsfKernel::new(side, values).unwrap_err();
        assert!(refused(4, &[1.0; 16]).contains("odd side"));
        assert!(refused(3, &[1.0; 8]).contains("needs 9 values"));
        assert!(refused(3, &[1.0, 1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).contains("pixel 2 is NaN"));
        assert!(refused(3, &[0.0; 9]).contains("must be > 0"));
        assert!(refused(MAX_KERNEL_SIDE + 2, &[]).contains("at most"));
        assert!(PsfKernel::from_square(&[1.0; 10]).unwrap_err().contains("not a square"));
        let kernel = PsfKernel::new(3, &[-0.01, 0.1, 0.0, 0.1, 1.0, 0.1, 0.0, 0.1, 0.0]).unwrap();
        assert!((kernel.weights().iter().sum::<f64>() - 1.0).abs() < 1e-15, "negative wings are kept, the sum made 1");
        let moffat = PsfKernel::moffat(1.6, 2.5, 41).unwrap();
        assert!(moffat.gaussian_equivalent_fwhm() > 1.6 * 1.3, "wings widen the second moment");
        assert!(PsfKernel::moffat(1.6, 2.5, 20).unwrap_err().contains("odd side"));
        assert!(PsfKernel::moffat(1.6, 1.0, 21).unwrap_err().contains("beta > 1"));
    }

    #[test]
    fn a_kernel_sampled_finer_comes_back_at_coarser_pixels() {
        // A Moffat sampled 2, 3 and 4 times finer, against the same Moffat sampled at
        // the coarse pixels with as many samples across each (10, 15, 20 where 5 + 5 in
        // the fine ones): an odd ratio sums whole pixels; an even one cuts through them.
        let fine_samples = |n: usize| {
            let coarse = PsfKernel::moffat(1.7 * n as f64, 3.0, 21 * n - (n + 1) % 2).unwrap();
            let reference = moffat_with_samples(1.7, 3.0, 21, 5 * n);
            let back = coarse.resampled(n as f64).unwrap();
            assert_eq!(back.side(), 21);
            let peak = reference.iter().cloned().fold(0.0, f64::max);
            back.weights().iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / peak
        };
        let (two, three, four) = (fine_samples(2), fine_samples(3), fine_samples(4));
        assert!(three < 1e-12, "{three}");
        // `cargo test --release --lib coarser_pixels -- --nocapture` prints them.
        eprintln!("largest difference, of the peak: 2x finer {two:.4}, 3x {three:.1e}, 4x {four:.4}");
        assert!(two < 0.025 && four < 0.003, "{two} {four}");
        assert!(PsfKernel::moffat(1.7, 3.0, 21).unwrap().resampled(0.0).is_err());
        // Resampled by one, a kernel is itself.
        let kernel = PsfKernel::moffat(1.7, 3.0, 21).unwrap();
        let same = kernel.resampled(1.0).unwrap();
        assert!(same.weights().iter().zip(kernel.weights()).all(|(a, b)| (a - b).abs() < 1e-15));
    }

    /// [`PsfKernel::moffat`]'s profile averaged over `samples` x `samples` points across each pixel, normalised.
    fn moffat_with_samples(fwhm: f64, beta: f64, side: usize, samples: usize) -> Vec<f64> {
        let alpha = fwhm / (2.0 * (2f64.powf(1.0 / beta) - 1.0).sqrt());
        let half = (side / 2) as f64;
        let offset = |s: usize| (s as f64 + 0.5) / samples as f64 - 0.5;
        let values: Vec<f64> = (0..side * side)
            .map(|i| {
                let (row, col) = ((i / side) as f64 - half, (i % side) as f64 - half);
                let mut sum = 0.0;
                for a in 0..samples {
                    for b in 0..samples {
                        let (dy, dx) = (row + offset(a), col + offset(b));
                        sum += (1.0 + (dx * dx + dy * dy) / (alpha * alpha)).powf(-beta);
                    }
                }
                sum
            })
            .collect();
        let total: f64 = values.iter().sum();
        values.iter().map(|v| v / total).collect()
    }

    #[test]
    fn a_moffat_kernel_is_its_profile_averaged_across_each_pixel_and_holds_its_share_of_light() {
        let (fwhm, beta, side) = (1.7, 2.5, 15);
        let kernel = PsfKernel::moffat(fwhm, beta, side).unwrap();
        let alpha = fwhm / (2.0 * (2f64.powf(1.0 / beta) - 1.0).sqrt());
        // Half its peak at half the FWHM from the centre, on the profile itself.
        let profile = |r: f64| (1.0 + (r / alpha).powi(2)).powf(-beta);
        assert!((profile(fwhm / 2.0) - 0.5).abs() < 1e-12);
        // Every pixel, asymmetric offsets included, from the definition.
        let half = (side / 2) as f64;
        let total: f64 = (0..side * side)
            .map(|i| {
                let (row, col) = ((i / side) as f64 - half, (i % side) as f64 - half);
                let samples = (0..25).map(|s| {
                    let (dy, dx) = (row + ((s / 5) as f64 - 2.0) / 5.0, col + ((s % 5) as f64 - 2.0) / 5.0);
                    profile(dx.hypot(dy))
                });
                samples.sum::<f64>() / 25.0
            })
            .sum();
        for (row, col) in [(0, 0), (7, 7), (3, 12), (12, 3), (7, 0), (14, 14), (1, 9)] {
            let (y, x) = (row as f64 - half, col as f64 - half);
            let samples = (0..25).map(|s| {
                let (dy, dx) = (y + ((s / 5) as f64 - 2.0) / 5.0, x + ((s % 5) as f64 - 2.0) / 5.0);
                profile(dx.hypot(dy))
            });
            let expected = samples.sum::<f64>() / 25.0 / total;
            let got = kernel.weights()[row * side + col];
            assert!((got / expected - 1.0).abs() < 1e-12, "pixel ({row}, {col}): {got} vs {expected}");
        }
        // The side chosen holds 99.5% of the light of a far wider kernel.
        let chosen = moffat_side(fwhm, beta);
        assert_eq!(chosen, 19);
        let wide = PsfKernel::moffat(fwhm, beta, 201).unwrap();
        let skip = (201 - chosen) / 2;
        let inside: f64 = (skip..skip + chosen)
            .flat_map(|row| (skip..skip + chosen).map(move |col| row * 201 + col))
            .map(|i| wide.weights()[i])
            .sum();
        assert!((0.995..0.998).contains(&inside), "{inside}");
        assert_eq!(moffat_side(fwhm, 1.05), MAX_KERNEL_SIDE);
        assert_eq!(moffat_side(0.01, 4.0), 3);
    }
}
