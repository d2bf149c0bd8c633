//! Max pooling of `[B, C, H, W]` maps over square windows that may overlap
//! (ResNet's 3x3 stem pool at stride 2): candle's own `max_pool2d` has no
//! backward pass for overlapping windows.

use super::*;

/// The maximum of each `kernel x kernel` window of every plane of `x`, windows
/// `stride` apart on the input padded by `padding` (padding never wins: it is
/// minus infinity, as PyTorch's): `[B, C, H', W']`, `H' = (H + 2 padding -
/// kernel) / stride + 1`. The gradient goes to the first maximum of a window in
/// row-major order, as PyTorch's.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPoolOp { kernel, stride, padding })
}

#[derive(Clone, Copy)]
struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    padding: usize,
}

#[derive(Clone, Copy)]
struct PoolShape {
    planes: usize,
    h: usize,
    w: usize,
    h_out: usize,
    w_out: usize,
}

impl MaxPoolOp {
    fn shape(&self, dims: &[usize]) -> Result<PoolShape> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        match dims {
            // PyTorch's condition: padding at most half the window, so no window is all padding.
            &[b, c, h, w] if k > 0 && s > 0 && 2 * p <= k && h + 2 * p >= k && w + 2 * p >= k => {
                Ok(PoolShape { planes: b * c, h, w, h_out: (h + 2 * p - k) / s + 1, w_out: (w + 2 * p - k) / s + 1 })
            }
            _ => candle_core::bail!("fused max pool: input {dims:?} with a {k}x{k} window, stride {s}, padding {p}"),
        }
    }

    /// Index in its plane of the first maximum of output pixel `(y, x)`'s window.
    fn argmax(&self, plane: &[f32], s: PoolShape, y: usize, x: usize) -> usize {
        let rows =
            (y * self.stride).saturating_sub(self.padding)..(y * self.stride + self.kernel - self.padding).min(s.h);
        let cols =
            (x * self.stride).saturating_sub(self.padding)..(x * self.stride + self.kernel - self.padding).min(s.w);
        let mut best = (f32::NEG_INFINITY, usize::MAX);
        for sy in rows {
            for sx in cols.clone() {
                let i = sy * s.w + sx;
                // NaN wins, as in PyTorch, so that it propagates.
                if plane[i] > best.0 || plane[i].is_nan() || best.1 == usize::MAX {
                    best = (plane[i], i);
                    if plane[i].is_nan() {
                        return i;
                    }
                }
            }
        }
        best.1
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "fused-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "max pool")?;
        let dims = layout.shape().dims();
        let s = self.shape(dims)?;
        let mut out = vec![0f32; s.planes * s.h_out * s.w_out];
        out.par_chunks_mut(s.h_out * s.w_out).zip(x.par_chunks(s.h * s.w)).for_each(|(out, plane)| {
            for y in 0..s.h_out {
                for x in 0..s.w_out {
                    out[y * s.w_out + x] = plane[self.argmax(plane, s, y, x)];
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((dims[0], dims[1], s.h_out, s.w_out))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let s = self.shape(x.dims())?;
        let dx = with_data(x, |x| {
            with_data(grad, |g| {
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(s.h * s.w)
                    .zip(x.par_chunks(s.h * s.w).zip(g.par_chunks(s.h_out * s.w_out)))
                    .for_each(|(dx, (plane, g))| {
                        for y in 0..s.h_out {
                            for x in 0..s.w_out {
                                dx[self.argmax(plane, s, y, x)] += g[y * s.w_out + x];
                            }
                        }
                    });
                Ok(dx)
            })
        })?;
        Ok(Some(cpu_tensor(dx, x.shape())?))
    }
}
