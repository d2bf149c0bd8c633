//! Multi-head scaled dot-product attention from the packed projection
//! `qkv: [B, N, 3 * D]` (laid out `[3, heads, D / heads]` in the last axis, as
//! `nn.Linear(D, 3 D)` and MAE's reshape have it), one head of one image at a
//! time; the block op (`block.rs`) calls these for every head of its groups.

use super::*;

/// Shapes of attention over one image's `tokens` rows of width `dim`.
#[derive(Clone, Copy)]
pub(super) struct Heads {
    tokens: usize,
    dim: usize,
    pub(super) heads: usize,
}

impl Heads {
    pub(super) fn new(tokens: usize, dim: usize, heads: usize) -> Result<Heads> {
        if heads == 0 || dim % heads != 0 {
            candle_core::bail!("fused attention: width {dim} is not divisible into {heads} heads");
        }
        Ok(Heads { tokens, dim, heads })
    }
    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
    /// Offset in `qkv` of part `which` (0 q, 1 k, 2 v) of `head` in image `b`.
    fn qkv_offset(&self, b: usize, head: usize, which: usize) -> usize {
        b * self.tokens * 3 * self.dim + which * self.dim + head * self.head_dim()
    }
    /// Offset in the `[B, N, D]` output of `head` in image `b`.
    fn out_offset(&self, b: usize, head: usize) -> usize {
        b * self.tokens * self.dim + head * self.head_dim()
    }
}

/// One head of one image: `p = softmax(q k^T scale)` (`p` holds `N x N`), then
/// that head's columns of the output, `p v`.
///
/// # Safety
/// `qkv` and `out` must hold `[batch, N, 3 D]` and `[batch, N, D]` for `s`, and
/// nothing else may write this head's output columns during the call.
pub(super) unsafe fn attend(s: Heads, qkv: *const f32, out: *mut f32, b: usize, head: usize, p: &mut [f32]) {
    let (n, hd) = (s.tokens, s.head_dim());
    let q = Mat::rows(qkv.add(s.qkv_offset(b, head, 0)), 3 * s.dim);
    let k = Mat::rows(qkv.add(s.qkv_offset(b, head, 1)), 3 * s.dim);
    let v = Mat::rows(qkv.add(s.qkv_offset(b, head, 2)), 3 * s.dim);
    matmul((n, n, hd), p.as_mut_ptr(), n, false, q, k.t(), s.scale(), Parallelism::None);
    softmax_rows(p, n);
    let o = out.add(s.out_offset(b, head));
    matmul((n, hd, n), o, s.dim, false, Mat::rows(p.as_ptr(), n), v, 1.0, Parallelism::None);
}

/// Backward of [`attend`] for one head of one image: from the probabilities `p`
/// and the gradient at that head's output columns, writes the head's q, k and v
/// columns of `dqkv`. `dp` is scratch for `N x N`.
///
/// # Safety
/// `qkv`, `grad_out` (`[batch, N, D]`) and `dqkv` must hold `s`'s shapes, and
/// nothing else may touch this head's columns of `dqkv` during the call.
pub(super) unsafe fn attend_backward(
    s: Heads,
    (qkv, grad_out, dqkv): (*const f32, *const f32, *mut f32),
    (b, head): (usize, usize),
    p: &[f32],
    dp: &mut [f32],
) {
    let (n, hd, row) = (s.tokens, s.head_dim(), 3 * s.dim);
    let at = |which| Mat::rows(qkv.add(s.qkv_offset(b, head, which)), row);
    let (q, k, v) = (at(0), at(1), at(2));
    let d_at = |which| dqkv.add(s.qkv_offset(b, head, which));
    let go = Mat::rows(grad_out.add(s.out_offset(b, head)), s.dim);
    let p_mat = Mat::rows(p.as_ptr(), n);
    // dV = P^T dO
    matmul((n, hd, n), d_at(2), row, false, p_mat.t(), go, 1.0, Parallelism::None);
    // dP = dO V^T, then dS = P (dP - rowsum(P dP)) * scale
    matmul((n, n, hd), dp.as_mut_ptr(), n, false, go, v.t(), 1.0, Parallelism::None);
    softmax_backward_rows(dp, p, n, s.scale());
    let ds = Mat::rows(dp.as_ptr(), n);
    // dQ = dS K, dK = dS^T Q
    matmul((n, hd, n), d_at(0), row, false, ds, k, 1.0, Parallelism::None);
    matmul((n, hd, n), d_at(1), row, false, ds.t(), q, 1.0, Parallelism::None);
}
