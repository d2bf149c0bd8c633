//! Flux-conserving regridding of a cutout onto a model's pixel grid: another
//! pixel scale, then a centred crop or pad.
//!
//! Each output pixel receives every input pixel's flux in proportion to the area
//! of the input pixel it covers (exact overlap of axis-aligned squares, what
//! reproject's `reproject_exact` computes for grids that differ by a scale and a
//! shift; `tests/oracle/regrid_oracle.py` checks it there), so the total flux of
//! a fully covered region is kept. The overlap of squares is separable: one 1-D
//! map per axis. A non-finite input pixel spoils exactly the output pixels that
//! overlap it (the NaN policy then applies to them). Output pixels outside the
//! input are 0.
//!
//! ```
//! use lensmae::data::regrid::Regrid;
//! // A 4x4 cutout of ones at twice the model's pixel scale onto a 4x4 grid.
//! let regrid = Regrid::centred([4, 4], 4, 0.5);
//! let mut out = vec![0.0; 16];
//! regrid.apply(&[1.0; 16], &mut out);
//! assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-6)); // a quarter of each input pixel
//! ```

/// For one axis: each output pixel's input pixels and overlap lengths (in input
/// pixels, each at most 1).
#[derive(Debug, Clone)]
struct AxisMap {
    taps: Vec<Vec<(usize, f64)>>,
}

impl AxisMap {
    /// Output pixel `o` covers input coordinates `[start + o * ratio, start + (o + 1) * ratio)`.
    fn new(input_len: usize, output_len: usize, ratio: f64, start: f64) -> AxisMap {
        let taps = (0..output_len)
            .map(|o| {
                let (lo, hi) = (start + o as f64 * ratio, start + (o + 1) as f64 * ratio);
                let first = lo.floor().max(0.0) as usize;
                let last = (hi.ceil().max(0.0) as usize).min(input_len);
                (first..last)
                    .filter_map(|i| {
                        let overlap = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                        (overlap > 1e-12).then_some((i, overlap))
                    })
                    .collect()
            })
            .collect();
        AxisMap { taps }
    }

    /// Fraction of the output length that lies over the input.
    fn coverage(&self, ratio: f64) -> f64 {
        let covered: f64 = self.taps.iter().flatten().map(|&(_, w)| w).sum();
        covered / (ratio * self.taps.len() as f64)
    }
}

/// A regridding from `[height, width]` input pixels to a square output grid.
#[derive(Debug, Clone)]
pub struct Regrid {
    input: [usize; 2],
    size: usize,
    ratio: f64,
    /// The input position (x, y: along columns, then rows; 0-based, at pixel
    /// edges) of the output grid's first pixel edge.
    origin: [f64; 2],
    rows: AxisMap,
    cols: AxisMap,
}

impl Regrid {
    /// The `size x size` grid whose pixels are `ratio` input pixels wide (the
    /// model's pixel scale over the input's), centred on the input. With `ratio`
    /// 1 the grid is shifted by whole pixels (a plain crop or pad, the input's
    /// pixels unchanged; an odd margin leaves the extra pixel at the far end).
    pub fn centred(input: [usize; 2], size: usize, ratio: f64) -> Regrid {
        let start = |len: usize| {
            if ratio == 1.0 {
                (len as i64 - size as i64).div_euclid(2) as f64
            } else {
                len as f64 / 2.0 - size as f64 * ratio / 2.0
            }
        };
        let origin = [start(input[1]), start(input[0])];
        Regrid {
            input,
            size,
            ratio,
            origin,
            rows: AxisMap::new(input[0], size, ratio, origin[1]),
            cols: AxisMap::new(input[1], size, ratio, origin[0]),
        }
    }

    /// Where the output grid lies on the input: output pixel edge `o` (0-based, x
    /// along columns, y along rows) is at input position `origin + o * ratio`.
    pub fn placement(&self) -> ([f64; 2], f64) {
        (self.origin, self.ratio)
    }

    /// Whether the output is the input, unchanged.
    pub fn is_identity(&self) -> bool {
        self.ratio == 1.0 && self.input == [self.size, self.size]
    }

    /// Fraction of the output grid that lies over the input (1 unless padded).
    pub fn coverage(&self) -> f64 {
        self.rows.coverage(self.ratio) * self.cols.coverage(self.ratio)
    }

    /// Regrids the noise sigma map `src` of an image into `dst`: each output
    /// pixel's flux is a weighted sum of independent input pixels, so its
    /// variance is the sum of the squared weights times their variances.
    pub fn apply_to_sigma(&self, src: &[f32], dst: &mut [f32]) {
        let variance: Vec<f32> = src.iter().map(|s| s * s).collect();
        self.sum(&variance, dst, |w| w * w);
        dst.iter_mut().for_each(|v| *v = v.sqrt());
    }

    /// Regrids one image `src` (`height * width`, row-major) into `dst` (`size * size`).
    pub fn apply(&self, src: &[f32], dst: &mut [f32]) {
        self.sum(src, dst, |w| w);
    }

    /// `dst[i][j] = sum over (y, x) of src[y][x] * weight(wy) * weight(wx)`.
    fn sum(&self, src: &[f32], dst: &mut [f32], weight: impl Fn(f64) -> f64) {
        let [_, width] = self.input;
        debug_assert_eq!(src.len(), self.input[0] * width);
        debug_assert_eq!(dst.len(), self.size * self.size);
        // Along each row first, only for the input rows some output row uses.
        let mut along_rows = vec![0f64; self.input[0] * self.size];
        let mut needed = vec![false; self.input[0]];
        self.rows.taps.iter().flatten().for_each(|&(y, _)| needed[y] = true);
        for (y, _) in needed.iter().enumerate().filter(|(_, &n)| n) {
            let row = &src[y * width..(y + 1) * width];
            for (j, taps) in self.cols.taps.iter().enumerate() {
                along_rows[y * self.size + j] = taps.iter().map(|&(x, w)| f64::from(row[x]) * weight(w)).sum();
            }
        }
        for (i, taps) in self.rows.taps.iter().enumerate() {
            for j in 0..self.size {
                dst[i * self.size + j] =
                    taps.iter().map(|&(y, w)| along_rows[y * self.size + j] * w).sum::<f64>() as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regrid(src: &[f32], input: [usize; 2], size: usize, ratio: f64) -> Vec<f32> {
        let mut out = vec![f32::NAN; size * size];
        Regrid::centred(input, size, ratio).apply(src, &mut out);
        out
    }

    #[test]
    fn a_crop_at_the_same_scale_keeps_the_pixels() {
        let src: Vec<f32> = (0..25).map(|v| v as f32).collect();
        // 5x5 -> 3x3: rows and columns 1..4.
        assert_eq!(regrid(&src, [5, 5], 3, 1.0), vec![6.0, 7.0, 8.0, 11.0, 12.0, 13.0, 16.0, 17.0, 18.0]);
        // 4x4 -> 3x3: an odd margin, the extra pixel at the far end.
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(regrid(&src, [4, 4], 3, 1.0), vec![0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0]);
        assert!(Regrid::centred([3, 3], 3, 1.0).is_identity());
    }

    #[test]
    fn a_pad_surrounds_the_input_with_zeros() {
        let out = regrid(&[1.0, 2.0, 3.0, 4.0], [2, 2], 4, 1.0);
        #[rustfmt::skip]
        assert_eq!(out, vec![0.0, 0.0, 0.0, 0.0,  0.0, 1.0, 2.0, 0.0,  0.0, 3.0, 4.0, 0.0,  0.0, 0.0, 0.0, 0.0]);
        assert!((Regrid::centred([2, 2], 4, 1.0).coverage() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn flux_is_conserved_when_the_input_covers_the_grid() {
        let src: Vec<f32> = (0..30 * 30).map(|i| ((i * 7919) % 101) as f32).collect();
        // The 20 output pixels 1.3 input pixels wide span 26 of the 30 input pixels.
        let out = regrid(&src, [30, 30], 20, 1.3);
        let covered: f64 =
            (2..28).flat_map(|y| (2..28).map(move |x| (y, x))).map(|(y, x)| f64::from(src[y * 30 + x])).sum();
        let total: f64 = out.iter().map(|&v| f64::from(v)).sum();
        assert!((total - covered).abs() < 1e-6 * covered, "{total} vs {covered}");
    }

    #[test]
    fn noise_adds_in_quadrature_when_pixels_are_summed() {
        // 2x2 input pixels of sigma 1 into each output pixel: sigma 2.
        let mut out = vec![0f32; 16];
        Regrid::centred([8, 8], 4, 2.0).apply_to_sigma(&[1.0; 64], &mut out);
        assert!(out.iter().all(|&s| (s - 2.0).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn a_non_finite_pixel_spoils_only_what_overlaps_it() {
        let mut src = vec![1.0f32; 64];
        src[0] = f32::NAN;
        let out = regrid(&src, [8, 8], 4, 2.0);
        assert!(out[0].is_nan());
        assert_eq!(out.iter().filter(|v| v.is_nan()).count(), 1);
        assert!(out[1..].iter().all(|&v| (v - 4.0).abs() < 1e-6));
    }
}
