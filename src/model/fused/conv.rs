//! 2-D convolutions (square kernel, any stride and zero padding) as im2col and
//! one matrix product per group of images.

use std::ops::Range;

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
/// `H' = (H + 2 padding - k) / stride + 1`. Per group of images an im2col matrix
/// (`C k k` rows of the images' `H' W'` pixels side by side) and one matrix product
/// forward; backward two products and a col2im scatter; groups in parallel.
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

/// How many output pixels one matrix product takes at least, images of a batch
/// together. gemm's microkernels cover 16 to 64 output pixels a tile: a product per
/// image at ResNet's last two stages (16 and 4 output pixels at 64x64 inputs) left
/// most of each tile empty and packed the weights again for every image (a fifth
/// of the time in gemm's one-row kernel and its packing, profile of 2026-12-06).
/// Larger groups lose again: their im2col matrices leave the cache (training
/// images/s of the width-16 network at 1, 16, 32, 64, 128, 256, 512, 1024 pixels:
/// BENCHMARKS.md). Fixed by the shape alone, not the thread count, so results do
/// not depend on the machine.
const PIXELS_PER_PRODUCT: usize = 64;

impl ConvShape {
    /// Images per product: enough for [`PIXELS_PER_PRODUCT`] output pixels.
    fn images_per_product(&self) -> usize {
        PIXELS_PER_PRODUCT.div_ceil(self.out_pixels()).clamp(1, self.batch.max(1))
    }
    fn in_floats(&self) -> usize {
        self.c_in * self.in_pixels()
    }
    fn out_floats(&self) -> usize {
        self.c_out * self.out_pixels()
    }
}

/// One image's part of a transposed im2col matrix whose rows are `ld` apart: row
/// `(c, ky, kx)` holds, for each output pixel, the input pixel under that kernel
/// tap (zero outside). Images of a group sit side by side, `out_pixels` columns each.
fn im2col_t(x: &[f32], s: ConvShape, cols: &mut [f32], ld: usize) {
    let (px_in, px_out) = (s.in_pixels(), s.out_pixels());
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &x[c * px_in..(c + 1) * px_in];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &mut cols[j * ld..j * ld + px_out];
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

/// Adds one image's columns of a transposed im2col matrix (rows `ld` apart) back
/// onto the image they came from.
fn col2im_t(cols: &[f32], s: ConvShape, ld: usize, dx: &mut [f32]) {
    let (px_in, px_out) = (s.in_pixels(), s.out_pixels());
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &mut dx[c * px_in..(c + 1) * px_in];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &cols[j * ld..j * ld + px_out];
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

/// The im2col matrix of a group of images (`x`: whole images), `patch` rows of
/// `images * out_pixels` columns; returns the column count.
fn im2col_group(x: &[f32], s: ConvShape, cols: &mut Vec<f32>) -> usize {
    let (px, images) = (s.out_pixels(), x.len() / s.in_floats());
    let ld = images * px;
    cols.resize(s.patch() * ld, 0.0);
    for (i, image) in x.chunks_exact(s.in_floats()).enumerate() {
        im2col_t(image, s, &mut cols[i * px..], ld);
    }
    ld
}

/// Where each output plane of a group of `images` sits in the group's `[c_out,
/// images * out_pixels]` matrix and in the images' `[c_out, out_pixels]` planes.
fn plane_offsets(s: ConvShape, images: usize) -> impl Iterator<Item = (usize, usize)> {
    let (px, ld) = (s.out_pixels(), images * s.out_pixels());
    (0..images).flat_map(move |i| (0..s.c_out).map(move |o| (o * ld + i * px, i * s.out_floats() + o * px)))
}

/// Runs `f` on each group of [`ConvShape::images_per_product`] images (their
/// indices, their chunk of `outputs`, scratch buffers): in parallel over groups
/// when there are enough for every thread, else one group after another with the
/// threads inside each product. Results in group order.
fn for_each_group<R: Send>(
    s: ConvShape,
    outputs: &mut [f32],
    f: impl Fn(Range<usize>, &mut [f32], &mut Scratch, Parallelism) -> R + Sync,
) -> Vec<R> {
    if outputs.is_empty() {
        return Vec::new(); // an empty batch (or empty images): nothing to compute
    }
    let group = s.images_per_product();
    let chunk = group * (outputs.len() / s.batch);
    let images = |g: usize| g * group..((g + 1) * group).min(s.batch);
    if s.batch.div_ceil(group) >= rayon::current_num_threads() {
        outputs
            .par_chunks_mut(chunk)
            .enumerate()
            .map_init(Scratch::default, |scratch, (g, out)| f(images(g), out, scratch, Parallelism::None))
            .collect()
    } else {
        let mut scratch = Scratch::default();
        outputs.chunks_mut(chunk).enumerate().map(|(g, out)| f(images(g), out, &mut scratch, threads())).collect()
    }
}

/// A group's im2col matrix and its regrouped output (or gradient) matrix.
#[derive(Default)]
struct Scratch {
    cols: Vec<f32>,
    staged: Vec<f32>,
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
        let patch = s.patch();
        let mut out = vec![0f32; s.batch * s.out_floats()];
        for_each_group(s, &mut out, |images, y, scratch, parallelism| {
            let x = &x[images.start * s.in_floats()..images.end * s.in_floats()];
            let ld = im2col_group(x, s, &mut scratch.cols);
            let grouped = ld > s.out_pixels();
            let dst: &mut [f32] = if grouped {
                scratch.staged.resize(s.c_out * ld, 0.0);
                &mut scratch.staged
            } else {
                y
            };
            if let Some(b) = bias {
                for (row, bias) in dst.chunks_exact_mut(ld).zip(b) {
                    row.fill(*bias);
                }
            }
            // SAFETY: dst is [c_out, ld], w [c_out, patch], cols [patch, ld].
            unsafe {
                matmul(
                    (s.c_out, ld, patch),
                    dst.as_mut_ptr(),
                    ld,
                    bias.is_some(),
                    Mat::rows(w.as_ptr(), patch),
                    Mat::rows(scratch.cols.as_ptr(), ld),
                    1.0,
                    parallelism,
                )
            }
            if grouped {
                for (m, p) in plane_offsets(s, images.len()) {
                    y[p..p + s.out_pixels()].copy_from_slice(&scratch.staged[m..m + s.out_pixels()]);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((s.batch, s.c_out, s.h_out, s.w_out))))
    }

    /// The gradients of the input, the weights and (summed over images and
    /// pixels) the bias; per group of images one product for the weights'
    /// gradient and one for the input's, the groups' weight gradients summed in
    /// their order (the same bits whatever the threads).
    fn backward(&self, x: &Tensor, weight: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let s = ConvShape::of(x.dims(), weight.dims(), *self)?;
        let (px, patch) = (s.out_pixels(), s.patch());
        let (dx, dw, db) = with_data3(x, weight, grad, |x, w, g| {
            let mut dx = vec![0f32; x.len()];
            let partials = for_each_group(s, &mut dx, |images, dx, scratch, parallelism| {
                let x = &x[images.start * s.in_floats()..images.end * s.in_floats()];
                let g = &g[images.start * s.out_floats()..images.end * s.out_floats()];
                let mut db = vec![0f32; s.c_out];
                for image in g.chunks_exact(s.out_floats()) {
                    for (d, row) in db.iter_mut().zip(image.chunks_exact(px)) {
                        *d += sum(row);
                    }
                }
                let ld = im2col_group(x, s, &mut scratch.cols);
                let g: &[f32] = if ld > px {
                    scratch.staged.resize(s.c_out * ld, 0.0);
                    for (m, p) in plane_offsets(s, images.len()) {
                        scratch.staged[m..m + px].copy_from_slice(&g[p..p + px]);
                    }
                    &scratch.staged
                } else {
                    g
                };
                let mut dw = vec![0f32; s.c_out * patch];
                // SAFETY: g is [c_out, ld], cols [patch, ld], w [c_out, patch].
                unsafe {
                    // dW = g cols^T
                    matmul(
                        (s.c_out, patch, ld),
                        dw.as_mut_ptr(),
                        patch,
                        false,
                        Mat::rows(g.as_ptr(), ld),
                        Mat::rows(scratch.cols.as_ptr(), ld).t(),
                        1.0,
                        parallelism,
                    );
                    // dcols = W^T g, then scattered back onto each image of dx
                    matmul(
                        (patch, ld, s.c_out),
                        scratch.cols.as_mut_ptr(),
                        ld,
                        false,
                        Mat::rows(w.as_ptr(), patch).t(),
                        Mat::rows(g.as_ptr(), ld),
                        1.0,
                        parallelism,
                    );
                }
                for (i, dx) in dx.chunks_exact_mut(s.in_floats()).enumerate() {
                    col2im_t(&scratch.cols[i * px..], s, ld, dx);
                }
                (dw, db)
            });
            let (dws, dbs): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
            let dw = sum_in_order(dws).unwrap_or_else(|| vec![0f32; s.c_out * patch]);
            let db = dbs.into_iter().reduce(add_into).unwrap_or_else(|| vec![0f32; s.c_out]);
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
