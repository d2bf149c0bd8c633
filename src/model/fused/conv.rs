//! "Same" convolutions as im2col and one matrix product per image.

use super::*;

/// `[B, C, H, W]` convolved with `weight: [O, C, k, k]` (k odd, stride 1, zero
/// padding k / 2) plus `bias: [O]`: `[B, O, H, W]`. Per image an im2col matrix
/// (`C k k` rows of `H W` pixels) and one matrix product forward; backward two
/// products and a col2im scatter, images in parallel.
pub fn conv2d_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(weight, bias, ConvOp)
}

struct ConvOp;

#[derive(Clone, Copy)]
struct ConvShape {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
}

impl ConvShape {
    fn of(x: &[usize], weight: &[usize]) -> Result<ConvShape> {
        match (x, weight) {
            (&[batch, c_in, h, w], &[c_out, wc, k, k2]) if wc == c_in && k == k2 && k % 2 == 1 => {
                Ok(ConvShape { batch, c_in, c_out, h, w, k })
            }
            _ => candle_core::bail!("fused conv: input {x:?} and weight {weight:?} do not fit an odd square kernel"),
        }
    }
    fn pixels(&self) -> usize {
        self.h * self.w
    }
    fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
}

/// The output columns `lo..hi` whose source column `x + kx - pad` is inside the image.
fn inside_columns(s: ConvShape, kx: usize) -> (usize, usize) {
    let pad = s.k / 2;
    let lo = pad.saturating_sub(kx).min(s.w);
    (lo, (s.w + pad).saturating_sub(kx).min(s.w).max(lo))
}

/// The transposed im2col matrix of one image: row `(c, ky, kx)` holds, for each
/// output pixel, the input pixel under that kernel tap (zero outside).
fn im2col_t(x: &[f32], s: ConvShape, cols: &mut [f32]) {
    let pad = s.k / 2;
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &x[c * s.pixels()..(c + 1) * s.pixels()];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &mut cols[j * s.pixels()..(j + 1) * s.pixels()];
                for y in 0..s.h {
                    let out = &mut row[y * s.w..(y + 1) * s.w];
                    let sy = (y + ky).wrapping_sub(pad);
                    if sy >= s.h {
                        out.fill(0.0);
                        continue;
                    }
                    let (lo, hi) = inside_columns(s, kx);
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if lo < hi {
                        let src = &plane[sy * s.w..(sy + 1) * s.w];
                        out[lo..hi].copy_from_slice(&src[lo + kx - pad..hi + kx - pad]);
                    }
                }
                j += 1;
            }
        }
    }
}

/// Adds the columns of a transposed im2col matrix back onto the image they came from.
fn col2im_t(cols: &[f32], s: ConvShape, dx: &mut [f32]) {
    let pad = s.k / 2;
    let mut j = 0;
    for c in 0..s.c_in {
        let plane = &mut dx[c * s.pixels()..(c + 1) * s.pixels()];
        for ky in 0..s.k {
            for kx in 0..s.k {
                let row = &cols[j * s.pixels()..(j + 1) * s.pixels()];
                for y in 0..s.h {
                    let sy = (y + ky).wrapping_sub(pad);
                    if sy >= s.h {
                        continue;
                    }
                    let (lo, hi) = inside_columns(s, kx);
                    if lo == hi {
                        continue;
                    }
                    let dst = &mut plane[sy * s.w + lo + kx - pad..sy * s.w + hi + kx - pad];
                    dst.iter_mut().zip(&row[y * s.w + lo..y * s.w + hi]).for_each(|(d, v)| *d += v);
                }
                j += 1;
            }
        }
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "fused-conv2d"
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
        let s = ConvShape::of(xl.shape().dims(), wl.shape().dims())?;
        let (px, patch) = (s.pixels(), s.patch());
        let mut out = vec![0f32; s.batch * s.c_out * px];
        out.par_chunks_mut(s.c_out * px).zip(x.par_chunks(s.c_in * px)).for_each_init(
            || vec![0f32; patch * px],
            |cols, (y, x)| {
                im2col_t(x, s, cols);
                for (row, bias) in y.chunks_exact_mut(px).zip(b) {
                    row.fill(*bias);
                }
                // SAFETY: y is [c_out, px], w [c_out, patch], cols [patch, px].
                unsafe {
                    matmul(
                        (s.c_out, px, patch),
                        y.as_mut_ptr(),
                        px,
                        true,
                        Mat::rows(w.as_ptr(), patch),
                        Mat::rows(cols.as_ptr(), px),
                        1.0,
                        Parallelism::None,
                    )
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((s.batch, s.c_out, s.h, s.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = ConvShape::of(x.dims(), weight.dims())?;
        let (px, patch) = (s.pixels(), s.patch());
        let (dx, dw, db) = with_data3(x, weight, grad, |x, w, g| {
            let mut dx = vec![0f32; x.len()];
            let (dw, db) = dx
                .par_chunks_mut(s.c_in * px)
                .zip(x.par_chunks(s.c_in * px).zip(g.par_chunks(s.c_out * px)))
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
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(dw, weight.shape())?),
            Some(cpu_tensor(db, bias.shape())?),
        ))
    }
}
