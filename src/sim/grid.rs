//! The pixel grid and the images rendered on it.
//!
//! lenstronomy's convention: the grid is centred on (0, 0), x runs with the column
//! and y with the row, `x(col) = (col - (N-1)/2) * pixel_scale`. With an even N no
//! pixel sits on the centre.

/// A square grid of pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelGrid {
    /// Pixels per side.
    pub size: usize,
    /// Pixel size, arcsec.
    pub pixel_scale: f64,
}

impl PixelGrid {
    /// Sky coordinate (arcsec) of the centre of pixel `index` along one axis.
    #[inline]
    pub fn coordinate(&self, index: usize) -> f64 {
        (index as f64 - (self.size as f64 - 1.0) / 2.0) * self.pixel_scale
    }

    /// The (fractional) 0-based pixel index of sky coordinate `arcsec` along one axis:
    /// the inverse of [`PixelGrid::coordinate`].
    #[inline]
    pub fn index_of(&self, arcsec: f64) -> f64 {
        arcsec / self.pixel_scale + (self.size as f64 - 1.0) / 2.0
    }

    /// Sky coordinates (arcsec) of the pixel centres along one axis.
    pub fn coordinates(&self) -> Vec<f64> {
        (0..self.size).map(|i| self.coordinate(i)).collect()
    }

    /// The same field of view with `factor` times more pixels per side.
    pub fn supersampled(&self, factor: usize) -> PixelGrid {
        PixelGrid { size: self.size * factor, pixel_scale: self.pixel_scale / factor as f64 }
    }

    /// Area of one pixel, arcsec^2.
    pub fn pixel_area(&self) -> f64 {
        self.pixel_scale * self.pixel_scale
    }
}

/// A square single-band image, row-major (`pixels[row * size + col]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Pixels per side.
    pub size: usize,
    /// Pixel values, row-major.
    pub pixels: Vec<f64>,
}

impl Image {
    /// An image of zeros.
    pub fn zeros(size: usize) -> Self {
        Image { size, pixels: vec![0.0; size * size] }
    }

    /// Sum blocks of `factor x factor` pixels into one (flux-conserving rebinning).
    pub fn bin_sum(&self, factor: usize) -> Image {
        self.bin(factor, 1.0)
    }

    /// Average blocks of `factor x factor` pixels (area averaging, keeps surface brightness).
    pub fn bin_mean(&self, factor: usize) -> Image {
        self.bin(factor, 1.0 / (factor * factor) as f64)
    }

    fn bin(&self, factor: usize, weight: f64) -> Image {
        assert!(factor > 0 && self.size % factor == 0, "binning factor must divide the image size");
        let out_size = self.size / factor;
        let mut out = Image::zeros(out_size);
        if factor == 2 {
            // The simulator's 2x supersampling, rendered thousands of times a fit: the
            // same sums in the same order, each out pixel's two rows read side by side.
            let rows_in_pairs = self.pixels.chunks_exact(2 * self.size);
            for (out_row, pair) in out.pixels.chunks_exact_mut(out_size).zip(rows_in_pairs) {
                let (upper, lower) = pair.split_at(self.size);
                for ((sum, u), l) in out_row.iter_mut().zip(upper.chunks_exact(2)).zip(lower.chunks_exact(2)) {
                    *sum = ((((0.0 + u[0]) + u[1]) + l[0]) + l[1]) * weight;
                }
            }
            return out;
        }
        for (row, values) in self.pixels.chunks_exact(self.size).enumerate() {
            let out_row = &mut out.pixels[(row / factor) * out_size..(row / factor + 1) * out_size];
            // Added one at a time in row order, as a pixel-by-pixel loop would.
            for (sum, block) in out_row.iter_mut().zip(values.chunks_exact(factor)) {
                for value in block {
                    *sum += value;
                }
            }
        }
        out.pixels.iter_mut().for_each(|v| *v *= weight);
        out
    }

    /// Largest pixel value.
    pub fn max(&self) -> f64 {
        self.pixels.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// The image as a float32 table stores it and a reader gets it back: what
    /// inference sees of a simulated cutout.
    pub fn rounded_to_f32(&self) -> Image {
        Image { size: self.size, pixels: self.pixels.iter().map(|&v| v as f32 as f64).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_grids_have_no_central_pixel() {
        let g = PixelGrid { size: 4, pixel_scale: 0.1 };
        assert!((g.coordinate(0) + 0.15).abs() < 1e-15);
        assert!((g.coordinate(2) - 0.05).abs() < 1e-15);
        assert!((0..4).all(|i| (g.index_of(g.coordinate(i)) - i as f64).abs() < 1e-12));
        assert!((g.index_of(0.0) - 1.5).abs() < 1e-15, "the centre lies between the middle pixels");
    }

    #[test]
    fn binning_conserves_flux_or_mean() {
        let img = Image { size: 4, pixels: (0..16).map(|v| v as f64).collect() };
        let sum = img.bin_sum(2);
        assert_eq!(sum.pixels, vec![10.0, 18.0, 42.0, 50.0]);
        assert_eq!(img.bin_mean(2).pixels, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn binning_by_two_adds_in_row_order_to_the_bit() {
        // Values of every magnitude and sign, so that the order of the additions shows.
        let size = 16;
        let pixels: Vec<f64> = (0..size * size)
            .map(|i| match i % 5 {
                0 => -0.0,
                1 => (i as f64).sin() * 1e16,
                2 => (i as f64).cos(),
                3 => -(i as f64).sqrt() * 1e-9,
                _ => 1.0 / (i as f64 + 0.3),
            })
            .collect();
        let img = Image { size, pixels };
        for (binned, weight) in [(img.bin_sum(2), 1.0), (img.bin_mean(2), 0.25)] {
            for (k, got) in binned.pixels.iter().enumerate() {
                let (y, x) = (2 * (k / (size / 2)), 2 * (k % (size / 2)));
                let mut sum = 0.0;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    sum += img.pixels[(y + dy) * size + x + dx];
                }
                assert_eq!(got.to_bits(), (sum * weight).to_bits(), "pixel {k}");
            }
        }
    }
}
