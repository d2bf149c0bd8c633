//! Upsampling of square images by an integer factor, as PyTorch's
//! `F.interpolate(..., align_corners=False)` does it (golden values from
//! PyTorch in `fixtures/oracle/` are checked by the tests): nearest neighbour
//! (each pixel repeated factor x factor times) and bicubic (Keys' cubic
//! convolution with a = -0.75, edges clamped).

/// Nearest-neighbour upsampling of the `size x size` image `src` by `factor`.
pub fn upsample_nearest(src: &[f32], size: usize, factor: usize) -> Vec<f32> {
    let out_size = size * factor;
    let mut out = Vec::with_capacity(out_size * out_size);
    for r in 0..out_size {
        let row = &src[(r / factor) * size..(r / factor + 1) * size];
        for c in 0..out_size {
            out.push(row[c / factor]);
        }
    }
    out
}

/// PyTorch's cubic convolution coefficient.
const A: f64 = -0.75;

fn cubic_weights(t: f64) -> [f64; 4] {
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0; // |x| <= 1
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A; // 1 < |x| < 2
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index: the four source indices (clamped) and their weights.
fn taps(size: usize, factor: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = 1.0 / factor as f64;
    (0..size * factor)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let i0 = src.floor();
            let w = cubic_weights(src - i0);
            let idx = [-1, 0, 1, 2].map(|k| (i0 as i64 + k).clamp(0, size as i64 - 1) as usize);
            (idx, w)
        })
        .collect()
}

/// Bicubic upsampling of the `size x size` image `src` by `factor` (separable:
/// rows, then columns, in f64).
pub fn upsample_bicubic(src: &[f32], size: usize, factor: usize) -> Vec<f32> {
    let out_size = size * factor;
    let taps = taps(size, factor);
    // Along x: size rows of out_size.
    let mut wide = vec![0f64; size * out_size];
    for r in 0..size {
        let row = &src[r * size..(r + 1) * size];
        for (c, (idx, w)) in taps.iter().enumerate() {
            wide[r * out_size + c] = (0..4).map(|k| w[k] * row[idx[k]] as f64).sum();
        }
    }
    // Along y.
    let mut out = vec![0f32; out_size * out_size];
    for (r, (idx, w)) in taps.iter().enumerate() {
        for c in 0..out_size {
            out[r * out_size + c] = (0..4).map(|k| w[k] * wide[idx[k] * out_size + c]).sum::<f64>() as f32;
        }
    }
    out
}

/// Mean of each `factor x factor` block: the inverse the simulator's LR images
/// are made with, and the constraint of flux-conserving super-resolution.
pub fn downsample_mean(src: &[f32], size: usize, factor: usize) -> Vec<f32> {
    let out_size = size / factor;
    let mut out = vec![0f32; out_size * out_size];
    for r in 0..out_size * factor {
        for c in 0..out_size * factor {
            out[(r / factor) * out_size + c / factor] += src[r * size + c];
        }
    }
    let inv = 1.0 / (factor * factor) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
    out
}

/// Bicubic upsampling as a matrix `U` (`size * factor` rows, `size` columns,
/// row-major) such that the upsampled image is `U X U^T`: the form a model uses
/// to add the bicubic image to its output with two matrix products.
pub fn bicubic_matrix(size: usize, factor: usize) -> Vec<f32> {
    let mut m = vec![0f32; size * factor * size];
    for (o, (idx, w)) in taps(size, factor).into_iter().enumerate() {
        for k in 0..4 {
            m[o * size + idx[k]] += w[k] as f32;
        }
    }
    m
}
