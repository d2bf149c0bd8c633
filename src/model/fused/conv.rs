//! 2-D convolutions (square kernel, any stride and zero padding) as im2col and
//! one matrix product per image.

use super::*;

/// `[B, C, H, W]` convolved with `weight: [O, C, k, k]` (k odd, stride 1, zero
/// padding k / 2) plus `bias: [O]`: `[B, O, H, W]`.
pub fn conv2d_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let kernel = weight.dim(3)?;
    if kernel % 2 == 0 {
        candle_core::bail!("fused conv: a 'same' convolution needs an odd kernel, not {kernel}");
    }
    x.contiguous()?.apply_op3(weight, bias, ConvOp { stride: 1, padding: kernel / 2 })
}

/// `[B, C, H, W]` convolved with `weight: [O, C, k, k]` at `stride`, the input
/// zero-padded by `padding` on every side, without a bias (ResNet's convolutions,
/// each followed by a batch normalisation): `[B, O, H', W']` with
/// `H' = (H + 2 padding - k) / stride + 1`. Per image an im2col matrix (`C k k`
/// rows of `H' W'` pixels) and one matrix product forward; backward two products
/// and a col2im scatter, images in parallel.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if stride == 0 {
        candle_core::bail!("fused conv: stride 0");
    }
    x.contiguous()?.apply_op2(weight, ConvOp { stride, padding })
}

#[derive(Clone, Copy)]
struct ConvOp {
    stride: usize,
    padding: usize,
}

#[derive(Clone, Copy)]
struct ConvShape {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    h_out: usize,
    w_out: usize,
}

impl ConvShape {
    fn of(x: &[usize], weight: &[usize], op: ConvOp) -> Result<ConvShape> {
        match (x, weight) {
            (&[batch, c_in, h, w], &[c_out, wc, k, k2])
                if wc == c_in && k == k2 && k > 0 && h + 2 * op.padding >= k && w + 2 * op.padding >= k =>
            {
                let out = |n: usize| (n + 2 * op.padding - k) / op.stride + 1;
                Ok(ConvShape {
                    batch,
                    c_in,
                    c_out,
                    h,
                    w,
                    k,
                    stride: op.stride,
                    pad: op.padding,
                    h_out: out(h),
                    w_out: out(w),
                })
            }
            _ => candle_core::bail!(
                "fused conv: input {x:?} and weight {weight:?} (padding {}) do not fit a square kernel",
                op.padding
            ),
        }
    }
    fn in_pixels(&self) -> usize {
        self.h * self.w
    }
    fn out_pixels(&self) -> usize {
        self.h_out * self.w_out
    }
    fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
    /// The input row under output row `y` and kernel row `ky`, if inside the image.
    fn source_row(&self, y: usize, ky: usize) -> Option<usize> {
        (y * self.stride + ky).checked_sub(self.pad).filter(|&sy| sy < self.h)
    }
    /// The output columns `lo..hi` whose source column `x stride + kx - pad` is
    /// inside the image.
    fn inside_columns(&self, kx: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride).min(self.w_out);
        let hi = (self.w + self.pad).saturating_sub(kx).div_ceil(self.stride).min(self.w_out);
        (lo, hi.max(lo))
    }
}

/// The transposed im2col matrix of one image: row `(c, ky, kx)` holds, for each
/// output pixel, the input pixel under that kernel tap (zero outside).
fn im2col_t(x: &[f32], s: ConvShape, cols: &mut [f32]) {
    let (px_in, px_out) = (s.in_pixels(), s.out_pixels());
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &x[c * px_in..(c + 1) * px_in];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &mut cols[j * px_out..(j + 1) * px_out];
                let (lo, hi) = s.inside_columns(kx);
                for y in 0..s.h_out {
                    let out = &mut row[y * s.w_out..(y + 1) * s.w_out];
                    let Some(sy) = s.source_row(y, ky) else {
                        out.fill(0.0);
                        continue;
                    };
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let src = &plane[sy * s.w..(sy + 1) * s.w];
                    let first = lo * s.stride + kx - s.pad;
                    if s.stride == 1 {
                        out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        out[lo..hi].iter_mut().zip(src[first..].iter().step_by(s.stride)).for_each(|(o, v)| *o = *v);
                    }
                }
                j += 1;
            }
        }
    }
}

/// Adds the columns of a transposed im2col matrix back onto the image they came from.
fn col2im_t(cols: &[f32], s: ConvShape, dx: &mut [f32]) {
    let (px_in, px_out) = (s.in_pixels(), s.out_pixels());
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &mut dx[c * px_in..(c + 1) * px_in];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &cols[j * px_out..(j + 1) * px_out];
                let (lo, hi) = s.inside_columns(kx);
                j += 1;
                if lo == hi {
                    continue;
                }
                for y in 0..s.h_out {
                    let Some(sy) = s.source_row(y, ky) else { continue };
                    let first = sy * s.w + lo * s.stride + kx - s.pad;
                    let src = &row[y * s.w_out + lo..y * s.w_out + hi];
                    if s.stride == 1 {
                        let dst = &mut plane[first..first + hi - lo];
                        dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                    } else {
                        plane[first..].iter_mut().step_by(s.stride).zip(src).for_each(|(d, v)| *d += v);
                    }
                }
            }
        }
    }
}

impl ConvOp {
    /// `[B, O, H', W']` of `x` convolved with `w`, plus `bias` when given.
    fn forward(
        &self,
        x: &[f32],
        x_dims: &[usize],
        w: &[f32],
        w_dims: &[usize],
        bias: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let s = ConvShape::of(x_dims, w_dims, *self)?;
        if bias.is_some_and(|b| b.len() != s.c_out) {
            candle_core::bail!(
                "fused conv: a bias of {} values for {} output channels",
                bias.map_or(0, <[f32]>::len),
                s.c_out
            );
        }
        let (px_in, px, patch) = (s.in_pixels(), s.out_pixels(), s.patch());
        let mut out = vec![0f32; s.batch * s.c_out * px];
        out.par_chunks_mut(s.c_out * px).zip(x.par_chunks(s.c_in * px_in)).for_each_init(
            || vec![0f32; patch * px],
            |cols, (y, x)| {
                im2col_t(x, s, cols);
                if let Some(b) = bias {
                    for (row, bias) in y.chunks_exact_mut(px).zip(b) {
                        row.fill(*bias);
                    }
                }
                // SAFETY: y is [c_out, px], w [c_out, patch], cols [patch, px].
                unsafe {
                    matmul(
                        (s.c_out, px, patch),
                        y.as_mut_ptr(),
                        px,
                        bias.is_some(),
                        Mat::rows(w.as_ptr(), patch),
                        Mat::rows(cols.as_ptr(), px),
                        1.0,
                        Parallelism::None,
                    )
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((s.batch, s.c_out, s.h_out, s.w_out))))
    }

    /// The gradients of the input, the weights and (summed over images and
    /// pixels) the bias.
    fn backward(&self, x: &Tensor, weight: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let s = ConvShape::of(x.dims(), weight.dims(), *self)?;
        let (px_in, px, patch) = (s.in_pixels(), s.out_pixels(), s.patch());
        let (dx, dw, db) = with_data3(x, weight, grad, |x, w, g| {
            let mut dx = vec![0f32; x.len()];
            let (dw, db) = dx
                .par_chunks_mut(s.c_in * px_in)
                .zip(x.par_chunks(s.c_in * px_in).zip(g.par_chunks(s.c_out * px)))
                .fold(
                    || (vec![0f32; s.c_out * patch], vec![0f32; s.c_out], vec![0f32; patch * px]),
                    |(mut dw, mut db, mut cols), (dx, (x, g))| {
                        for (d, row) in db.iter_mut().zip(g.chunks_exact(px)) {
                            *d += sum(row);
                        }
                        im2col_t(x, s, &mut cols);
                        // SAFETY: g is [c_out, px], cols [patch, px], w [c_out, patch].
                        unsafe {
                            // dW += g cols^T
                            matmul(
                                (s.c_out, patch, px),
                                dw.as_mut_ptr(),
                                patch,
                                true,
                                Mat::rows(g.as_ptr(), px),
                                Mat::rows(cols.as_ptr(), px).t(),
                                1.0,
                                Parallelism::None,
                            );
                            // dcols = W^T g, then scattered back onto dx
                            matmul(
                                (patch, px, s.c_out),
                                cols.as_mut_ptr(),
                                px,
                                false,
                                Mat::rows(w.as_ptr(), patch).t(),
                                Mat::rows(g.as_ptr(), px),
                                1.0,
                                Parallelism::None,
                            );
                        }
                        col2im_t(&cols, s, dx);
                        (dw, db, cols)
                    },
                )
                .map(|(dw, db, _)| (dw, db))
                .collect::<Vec<_>>()
                .into_iter()
                .fold((vec![0f32; s.c_out * patch], vec![0f32; s.c_out]), add_pairs);
            Ok((dx, dw, db))
        })?;
        Ok((cpu_tensor(dx, x.shape())?, cpu_tensor(dw, weight.shape())?, cpu_tensor(db, &Shape::from(s.c_out))?))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous_f32(xs, xl, "conv")?, contiguous_f32(ws, wl, "conv")?);
        self.forward(x, xl.shape().dims(), w, wl.shape().dims(), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, weight, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "fused-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = inputs3((xs, xl), (ws, wl), (bs, bl), "conv")?;
        self.forward(x, xl.shape().dims(), w, wl.shape().dims(), Some(b))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(x, weight, grad)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
