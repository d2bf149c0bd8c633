//! Batch normalisation of `[B, C, H, W]` maps with the batch's own statistics
//! (training), optionally followed by ReLU, in one pass forward and two back.

use std::sync::{Arc, OnceLock};

use super::*;

/// The statistics a training batch was normalised with, per channel: what the
/// running estimates of inference are updated from.
#[derive(Debug, Clone)]
pub struct BatchStatistics {
    /// Mean over images and pixels.
    pub mean: Vec<f32>,
    /// Variance over images and pixels (divided by n: the one normalised with).
    pub variance: Vec<f32>,
}

/// `gamma (x - mean) / sqrt(var + eps) + beta` per channel of `x: [B, C, H, W]`,
/// with the mean and (biased) variance of each channel over the batch and its
/// pixels, then ReLU when `relu`; also returns those statistics. Differentiable
/// in `x`, `gamma` and `beta` (the statistics are part of the graph, as in
/// PyTorch's training mode).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    relu: bool,
) -> Result<(Tensor, BatchStatistics)> {
    let statistics = Arc::new(OnceLock::new());
    let op = BatchNormOp { eps, relu, statistics: statistics.clone() };
    let y = x.contiguous()?.apply_op3(gamma, beta, op)?;
    let Some(stats) = statistics.get() else { candle_core::bail!("fused batch norm: no statistics were computed") };
    Ok((y, BatchStatistics { mean: stats.mean.clone(), variance: stats.variance.clone() }))
}

struct BatchNormOp {
    eps: f32,
    relu: bool,
    statistics: Arc<OnceLock<Moments>>,
}

struct Moments {
    mean: Vec<f32>,
    variance: Vec<f32>,
    inv_std: Vec<f32>,
}

#[derive(Clone, Copy)]
struct MapShape {
    batch: usize,
    channels: usize,
    pixels: usize,
}

impl MapShape {
    fn of(x: &[usize], gamma: &[usize], beta: &[usize]) -> Result<MapShape> {
        match x {
            &[batch, channels, h, w] if gamma == [channels] && beta == [channels] && batch * h * w > 0 => {
                Ok(MapShape { batch, channels, pixels: h * w })
            }
            _ => candle_core::bail!("fused batch norm: input {x:?} with gamma {gamma:?} and beta {beta:?}"),
        }
    }
    fn count(&self) -> f64 {
        (self.batch * self.pixels) as f64
    }
    /// The `pixels`-long planes of channel `c`, one per image.
    fn planes<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (stride, px) = (self.channels * self.pixels, self.pixels);
        (0..self.batch).map(move |b| &data[b * stride + c * px..b * stride + (c + 1) * px])
    }
}

/// Per-channel mean and variance, summed in f64 plane by plane (a channel of a
/// batch's stem has ~65,000 values).
fn channel_moments(x: &[f32], s: MapShape, eps: f32) -> Moments {
    let per_channel: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let mean = s.planes(x, c).map(|p| sum(p) as f64).sum::<f64>() / s.count();
            let m = mean as f32;
            let squares = s.planes(x, c).map(|p| squared_deviations(p, m) as f64).sum::<f64>();
            (m, (squares / s.count()) as f32)
        })
        .collect();
    let (mean, variance): (Vec<f32>, Vec<f32>) = per_channel.into_iter().unzip();
    let inv_std = variance.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    Moments { mean, variance, inv_std }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn scale_shift_plane(x: &[f32], scale: f32, shift: f32, relu: bool, out: &mut [f32]) {
    if relu {
        out.iter_mut().zip(x).for_each(|(o, x)| *o = (x * scale + shift).max(0.0));
    } else {
        out.iter_mut().zip(x).for_each(|(o, x)| *o = x * scale + shift);
    }
}

/// `(sum g, sum g (x - mean))` over one plane, `g` zeroed where the (ReLU) output is.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn gradient_sums(g: &[f32], x: &[f32], y: &[f32], mean: f32, relu: bool) -> (f32, f32) {
    let (mut sg, mut sgx) = ([0f32; LANES], [0f32; LANES]);
    let mut tail = (0f32, 0f32);
    let n = g.len() / LANES * LANES;
    for ((g, x), y) in g[..n].chunks_exact(LANES).zip(x[..n].chunks_exact(LANES)).zip(y[..n].chunks_exact(LANES)) {
        for i in 0..LANES {
            let gi = if relu && y[i] <= 0.0 { 0.0 } else { g[i] };
            sg[i] += gi;
            sgx[i] += gi * (x[i] - mean);
        }
    }
    for ((g, x), y) in g[n..].iter().zip(&x[n..]).zip(&y[n..]) {
        let gi = if relu && *y <= 0.0 { 0.0 } else { *g };
        tail.0 += gi;
        tail.1 += gi * (x - mean);
    }
    (sg.iter().sum::<f32>() + tail.0, sgx.iter().sum::<f32>() + tail.1)
}

/// `dx = a g + b (x - mean) + c` over one plane, `g` zeroed where the (ReLU) output is.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments)]
fn input_gradient_plane(
    g: &[f32],
    x: &[f32],
    y: &[f32],
    mean: f32,
    (a, b, c): (f32, f32, f32),
    relu: bool,
    dx: &mut [f32],
) {
    for (((d, g), x), y) in dx.iter_mut().zip(g).zip(x).zip(y) {
        let gi = if relu && *y <= 0.0 { 0.0 } else { *g };
        *d = a * gi + b * (x - mean) + c;
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "fused-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = inputs3((xs, xl), (gs, gl), (bs, bl), "batch norm")?;
        let s = MapShape::of(xl.shape().dims(), gl.shape().dims(), bl.shape().dims())?;
        let m = channel_moments(x, s, self.eps);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(s.pixels).zip(x.par_chunks(s.pixels)).enumerate().for_each(|(i, (out, x))| {
            let c = i % s.channels;
            let scale = gamma[c] * m.inv_std[c];
            scale_shift_plane(x, scale, beta[c] - m.mean[c] * scale, self.relu, out);
        });
        // A second forward through the same op would have the same input.
        let _ = self.statistics.set(m);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = MapShape::of(x.dims(), gamma.dims(), beta.dims())?;
        let (dx, dgamma, dbeta) = with_data3(x, gamma, res, |x, gamma, y| {
            with_data(grad, |g| {
                // Set by the forward pass this backward pass follows.
                let Some(m) = self.statistics.get() else {
                    candle_core::bail!("fused batch norm: backward before forward")
                };
                let sums: Vec<(f32, f32)> = (0..s.channels)
                    .into_par_iter()
                    .map(|c| {
                        let planes = s.planes(g, c).zip(s.planes(x, c)).zip(s.planes(y, c));
                        let (sg, sgx) = planes.fold((0f64, 0f64), |(sg, sgx), ((g, x), y)| {
                            let (a, b) = gradient_sums(g, x, y, m.mean[c], self.relu);
                            (sg + a as f64, sgx + b as f64)
                        });
                        (sg as f32, sgx as f32)
                    })
                    .collect();
                let n = s.count() as f32;
                // dx = gamma inv_std (g - mean(g) - xhat mean(g xhat)), xhat = (x - mean) inv_std
                let coefficients: Vec<(f32, f32, f32)> = (0..s.channels)
                    .map(|c| {
                        let (sg, sgx) = sums[c];
                        let k = gamma[c] * m.inv_std[c];
                        (k, -k * m.inv_std[c] * m.inv_std[c] * sgx / n, -k * sg / n)
                    })
                    .collect();
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(s.pixels)
                    .zip(g.par_chunks(s.pixels).zip(x.par_chunks(s.pixels)).zip(y.par_chunks(s.pixels)))
                    .enumerate()
                    .for_each(|(i, (dx, ((g, x), y)))| {
                        let c = i % s.channels;
                        input_gradient_plane(g, x, y, m.mean[c], coefficients[c], self.relu, dx);
                    });
                let dgamma = (0..s.channels).map(|c| sums[c].1 * m.inv_std[c]).collect();
                let dbeta = sums.iter().map(|s| s.0).collect();
                Ok((dx, dgamma, dbeta))
            })
        })?;
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(dgamma, gamma.shape())?),
            Some(cpu_tensor(dbeta, beta.shape())?),
        ))
    }
}
