//! Fused CPU kernels for the models' hot spots, as candle custom ops with
//! analytic backward passes: LayerNorm, a linear layer with its bias (and
//! optionally exact GELU) in the matrix product's epilogue, convolutions as
//! im2col + one matrix product per group of images (candle's CPU convolution backward is a
//! direct loop that was most of a super-resolution training step), batch
//! normalisation with the batch's statistics (and ReLU) and overlapping max
//! pooling for the ResNet (candle has no backward pass for the latter), and a
//! whole transformer block (`block.rs`: its multi-head attention works from the
//! packed `qkv` projection, one head of one image at a time).
//!
//! Why: composed from candle's elementwise ops, each of these is 5-15 passes
//! over memory forward and as many again backward (plus a zero-filled gradient
//! buffer per node), which cost more than the matrix products themselves. Here
//! each is one pass around a `gemm` call, and attention never materialises the
//! per-head copies of `q`, `k`, `v`.
//!
//! One file per kernel (`layer_norm.rs`, `linear.rs`, `conv.rs`,
//! `batch_norm.rs`, `max_pool.rs`, `block.rs` with `attention.rs`); here the
//! switch between fused and composed paths and what the kernels share: the
//! `gemm` wrappers, row arithmetic (moments, GELU, softmax) and the in-order
//! reductions that keep gradients deterministic.
//!
//! The ops run for f32 tensors on the CPU; everywhere else, and inside
//! [`with_kernels`]`(Kernels::Composed, ..)`, the layers use the composed
//! reference path, which the tests compare these kernels against.

use std::cell::Cell;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::fastmath::{erf_f32, exp_f32};

mod attention;
mod batch_norm;
pub(crate) mod block;
mod conv;
mod layer_norm;
mod linear;
mod max_pool;
mod spare;

use attention::{attend, attend_backward, Heads};
pub use batch_norm::{batch_norm_train, BatchStatistics};
pub use conv::{conv2d, conv2d_same};
pub use layer_norm::layer_norm;
pub use linear::{linear, Activation};
pub use max_pool::max_pool2d;

/// Which implementation the layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The fused CPU kernels of this module (the default where they apply).
    Fused,
    /// candle's composed, individually differentiated ops: the reference.
    Composed,
}

thread_local! {
    static KERNELS: Cell<Kernels> = const { Cell::new(Kernels::Fused) };
}

/// Runs `f` with the layers on this thread using `kernels`, then restores the
/// previous choice. A thread-local switch, so parallel tests do not interfere.
pub fn with_kernels<R>(kernels: Kernels, f: impl FnOnce() -> R) -> R {
    let previous = KERNELS.with(|k| k.replace(kernels));
    let result = f();
    KERNELS.with(|k| k.set(previous));
    result
}

/// Whether the fused kernels apply to `x`: f32 on the CPU, not switched off.
pub fn applies_to(x: &Tensor) -> bool {
    KERNELS.with(Cell::get) == Kernels::Fused && x.device().is_cpu() && x.dtype() == DType::F32
}

// ---------------------------------------------------------------------------
// Plumbing: slices in and out of candle tensors, and strided matrix products.

pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("fused {what}: input must be contiguous"),
    }
}

/// [`contiguous_f32`] for an operand written in place.
pub(crate) fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused {what}: input must be contiguous")
    };
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("fused {what}: input must be f32"),
    }
}

/// The three contiguous f32 inputs of a [`CustomOp3`]'s `cpu_fwd`.
fn inputs3<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
    what: &str,
) -> Result<(&'a [f32], &'a [f32], &'a [f32])> {
    Ok((contiguous_f32(s1, l1, what)?, contiguous_f32(s2, l2, what)?, contiguous_f32(s3, l3, what)?))
}

/// Runs `f` on the contiguous f32 data of three tensors (as [`with_data`]).
fn with_data3<R>(a: &Tensor, b: &Tensor, c: &Tensor, f: impl FnOnce(&[f32], &[f32], &[f32]) -> Result<R>) -> Result<R> {
    with_data(a, |a| with_data(b, |b| with_data(c, |c| f(a, b, c))))
}

/// Runs `f` on the contiguous f32 data of `t` (copied to contiguous if needed).
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous_f32(cpu, layout, "op")?),
        _ => candle_core::bail!("fused kernels run on the CPU only"),
    }
}

fn cpu_tensor(data: Vec<f32>, shape: &Shape) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
}

/// A matrix operand in memory: element (i, j) is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    fn rows(ptr: *const f32, row_stride: usize) -> Mat {
        Mat { ptr, rs: row_stride as isize, cs: 1 }
    }
    fn t(self) -> Mat {
        Mat { ptr: self.ptr, rs: self.cs, cs: self.rs }
    }
}

/// A raw output pointer that rayon tasks writing disjoint regions may share.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every use writes regions no other task touches.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

// An accessor, so closures capture the Send wrapper rather than its raw field.
impl OutPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `dst[m x n] (+)= scale * lhs[m x k] * rhs[k x n]`, dst rows `dst_rs` apart.
///
/// # Safety
/// The operands must be valid for the given shapes and strides, and nothing else
/// may write `dst`'s region during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    scale: f32,
    parallelism: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        1.0,
        scale,
        false,
        false,
        false,
        parallelism,
    )
}

fn threads() -> Parallelism {
    match rayon::current_num_threads() {
        1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `out = base + x W^T + b` (without a base, `x W^T + b`) for row-major
/// `x: [rows, in]`, `W: [out, in]`, `b: [out]`, `base: [rows, out]`: the base
/// and bias are written first (one pass) and the product accumulated onto them,
/// so no second pass over `out` is needed.
fn affine_rows(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], base: Option<&[f32]>, parallelism: Parallelism) {
    let in_dim = w.len() / b.len();
    affine_rows_with(x, w, Mat::rows(w.as_ptr(), in_dim).t(), b, out, base, parallelism)
}

/// [`affine_rows`] with the weights given transposed, `wt: [in, out_dim]`
/// row-major. gemm computes a row-major product as its transpose, with the
/// weights as the left operand: laid out this way they are already in the
/// column-major panels it wants, and with [`weights_unpacked`] it reads them in
/// place instead of packing the same weights again for every group of rows (the
/// packing was 11% of an inference step in `perf`). Same sums in the same order.
fn affine_rows_transposed(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32], base: Option<&[f32]>, par: Parallelism) {
    affine_rows_with(x, wt, Mat::rows(wt.as_ptr(), b.len()), b, out, base, par)
}

/// `out = x W^T` (no bias) for the weights given transposed, `wt: [in, out_dim]`
/// row-major, as in [`affine_rows_transposed`].
fn product_rows_transposed(x: &[f32], wt: &[f32], out_dim: usize, out: &mut [f32], par: Parallelism) {
    let in_dim = wt.len() / out_dim;
    let rows = x.len() / in_dim;
    assert!(rows * in_dim == x.len() && rows * out_dim == out.len(), "product_rows: shapes");
    // SAFETY: `x` and `out` hold `rows` rows and `wt` is `[in_dim, out_dim]`, checked above.
    unsafe { product_rows(x, Mat::rows(wt.as_ptr(), out_dim), (rows, out_dim, in_dim), out, false, par) }
}

/// `out = (base +) x W^T + b` with `W^T` read through `weights` (a view of `w`).
fn affine_rows_with(
    x: &[f32],
    w: &[f32],
    weights: Mat,
    b: &[f32],
    out: &mut [f32],
    base: Option<&[f32]>,
    parallelism: Parallelism,
) {
    let (out_dim, in_dim) = (b.len(), w.len() / b.len());
    let rows = x.len() / in_dim;
    assert!(w.len() == out_dim * in_dim && out.len() == rows * out_dim, "affine_rows: shapes");
    assert!(base.is_none_or(|base| base.len() == out.len()), "affine_rows: base shape");
    start_with_bias(out, b, base);
    // SAFETY: the shapes were checked above and `weights` views `w`.
    unsafe { product_rows(x, weights, (rows, out_dim, in_dim), out, true, parallelism) }
}

/// `out (+)= x W^T` for row-major `x: [rows, in_dim]` and `out: [rows, out_dim]`,
/// with `W^T` read through `weights`.
///
/// # Safety
/// `x` and `out` must hold those shapes and `weights` view an `in_dim x out_dim` matrix.
unsafe fn product_rows(
    x: &[f32],
    weights: Mat,
    (rows, out_dim, in_dim): (usize, usize, usize),
    out: &mut [f32],
    accumulate: bool,
    parallelism: Parallelism,
) {
    matmul(
        (rows, out_dim, in_dim),
        out.as_mut_ptr(),
        out_dim,
        accumulate,
        Mat::rows(x.as_ptr(), in_dim),
        weights,
        1.0,
        parallelism,
    )
}

/// `out = base + b` (or `out = b`) on every row: the bias, before the product is added.
fn start_with_bias(out: &mut [f32], b: &[f32], base: Option<&[f32]>) {
    match base {
        Some(base) => {
            for (row, base) in out.chunks_exact_mut(b.len()).zip(base.chunks_exact(b.len())) {
                row.iter_mut().zip(base).zip(b).for_each(|((o, x), b)| *o = x + b);
            }
        }
        None => out.chunks_exact_mut(b.len()).for_each(|row| row.copy_from_slice(b)),
    }
}

/// Tells gemm (once per process) not to pack a left operand that is already
/// column-major with whole vector rows, unless it is reused over more than
/// 256 x 6 columns: the transposed weights of [`affine_rows_transposed`], used
/// by a group of a few hundred token rows. Packing changes where the operand is
/// read from, not the order of the sums.
fn weights_unpacked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gemm::set_lhs_packing_threshold_single_thread(256);
        gemm::set_lhs_packing_threshold_multi_thread(256);
    });
}

/// `w: [out_dim, in]` row-major as `[in, out_dim]` row-major: the threads
/// each write bands of `TILE` rows, reading `TILE` adjacent floats of every row
/// of `w` per pass. (Done serially, the transposes were 0.6% of an inference
/// step's CPU time in `perf`, on the calling thread while the workers waited.)
fn transposed(w: &[f32], out_dim: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let in_dim = w.len() / out_dim;
    let mut t = vec![0f32; w.len()];
    t.par_chunks_mut(TILE * out_dim).enumerate().for_each(|(band, rows)| {
        let first = band * TILE;
        for (o, w_row) in w.chunks_exact(in_dim).enumerate() {
            for (row, &v) in rows.chunks_exact_mut(out_dim).zip(&w_row[first..]) {
                row[o] = v;
            }
        }
    });
    t
}

/// `dw (+)= g^T x` for row-major `g: [rows, out_dim]` and `x: [rows, in]`: the
/// weight gradient `[out_dim, in]` of a linear layer.
fn weight_gradient(g: &[f32], x: &[f32], out_dim: usize, dw: &mut [f32], accumulate: bool, par: Parallelism) {
    let rows = g.len() / out_dim;
    let in_dim = x.len().checked_div(rows).unwrap_or(0);
    assert!(g.len() == rows * out_dim && x.len() == rows * in_dim && dw.len() == out_dim * in_dim, "dW shapes");
    // SAFETY: the shapes were checked above and `dw` is borrowed mutably.
    unsafe {
        let (g, x) = (Mat::rows(g.as_ptr(), out_dim), Mat::rows(x.as_ptr(), in_dim));
        matmul((out_dim, in_dim, rows), dw.as_mut_ptr(), in_dim, accumulate, g.t(), x, 1.0, par)
    }
}

/// `dx = g W` for row-major `g: [rows, out_dim]` and `W: [out_dim, in]`: the
/// input gradient `[rows, in]` of a linear layer.
fn input_gradient(g: &[f32], w: &[f32], out_dim: usize, dx: &mut [f32], par: Parallelism) {
    let (rows, in_dim) = (g.len() / out_dim, w.len() / out_dim);
    assert!(w.len() == out_dim * in_dim && dx.len() == rows * in_dim, "dx shapes");
    // SAFETY: the shapes were checked above and `dx` is borrowed mutably.
    unsafe {
        let (g, w) = (Mat::rows(g.as_ptr(), out_dim), Mat::rows(w.as_ptr(), in_dim));
        matmul((rows, in_dim, out_dim), dx.as_mut_ptr(), in_dim, false, g, w, 1.0, par)
    }
}

/// Rows per rayon task for row-wise kernels: enough work to amortise the task.
const ROW_BLOCK: usize = 64;

// ---------------------------------------------------------------------------
// Row kernels. Sums use 16 independent accumulators so that the compiler may
// vectorise them (a single running sum is a sequential dependency); each kernel
// is compiled for AVX-512, AVX2 and the baseline, picked at run time.

const LANES: usize = 16;

#[inline(always)]
pub(crate) fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, x)| *a += x);
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, x)| *a = if *x > *a { *x } else { *a });
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Mean and 1/std of one row.
#[inline(always)]
pub(crate) fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let var = squared_deviations(row, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// The sum of `(v - mean)^2` over `row`, in [`sum`]'s order.
#[inline(always)]
pub(crate) fn squared_deviations(row: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, v)| *a += (v - mean) * (v - mean));
    }
    acc.iter().sum::<f32>() + tail
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let (mean, rstd) = moments(x, eps);
        for (((o, x), w), b) in o.iter_mut().zip(x).zip(w).zip(b) {
            *o = (x - mean) * rstd * w + b;
        }
    }
}

/// Backward of [`layer_norm_rows`] for a block of rows: writes `dx`, adds the
/// block's contributions to `dw` and `db`. `scratch` holds one row.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments)]
fn layer_norm_backward_rows(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    eps: f32,
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    xhat: &mut [f32],
) {
    let d = w.len();
    for ((dx, x), g) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(g.chunks_exact(d)) {
        let (mean, rstd) = moments(x, eps);
        xhat.iter_mut().zip(x).for_each(|(h, x)| *h = (x - mean) * rstd);
        // dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat)); dx holds g w first.
        dx.iter_mut().zip(g).zip(w).for_each(|((dx, g), w)| *dx = g * w);
        let mean_gw = sum(dx) / d as f32;
        let mean_gw_xhat = dot(dx, xhat) / d as f32;
        for (dx, h) in dx.iter_mut().zip(xhat.iter()) {
            *dx = rstd * (*dx - mean_gw - h * mean_gw_xhat);
        }
        for (((dw, db), g), h) in dw.iter_mut().zip(db.iter_mut()).zip(g).zip(xhat.iter()) {
            *dw += g * h;
            *db += g;
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|v| *v = gelu(*v));
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_into(pre: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(pre).for_each(|(o, p)| *o = gelu(*p));
}

/// The MLP's activation: `pre += b` on every row (the pre-activation, which
/// the backward pass reads, when `keep_pre`; otherwise `pre` is left as it
/// is) and `out = gelu(pre + b)`, in one pass. The bias comes here rather
/// than onto the product's output before the product: that was a pass of its
/// own over the hidden layer, and gemm's reading it back. Bit for bit the same
/// where gemm runs the product's depth in one block (it then adds the bias
/// to the finished sum either way), as at the paper's and the quickstart's widths.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn bias_gelu_into(pre: &mut [f32], b: &[f32], out: &mut [f32], keep_pre: bool) {
    for (pre, out) in pre.chunks_exact_mut(b.len()).zip(out.chunks_exact_mut(b.len())) {
        if keep_pre {
            for ((p, o), b) in pre.iter_mut().zip(out.iter_mut()).zip(b) {
                *p += b;
                *o = gelu(*p);
            }
        } else {
            out.iter_mut().zip(pre.iter()).zip(b).for_each(|((o, p), b)| *o = gelu(p + b));
        }
    }
}

/// GELU of `pre` into `out` and its derivative into `slope`, with the error
/// function evaluated once for both (the block's backward pass needs both;
/// [`gelu`] and [`gelu_derivative`]'s own expressions, so the same bits).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_with_slope(pre: &[f32], out: &mut [f32], slope: &mut [f32]) {
    for ((o, s), &x) in out.iter_mut().zip(slope.iter_mut()).zip(pre) {
        let erf = gelu_erf(x);
        *o = gelu_given_erf(x, erf);
        *s = gelu_derivative_given_erf(x, erf);
    }
}

/// `g *= slope`, elementwise.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn mul_in_place(g: &mut [f32], slope: &[f32]) {
    g.iter_mut().zip(slope).for_each(|(g, s)| *g *= s);
}

/// `g *= gelu'(pre)`
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_backward_in_place(g: &mut [f32], pre: &[f32]) {
    g.iter_mut().zip(pre).for_each(|(g, p)| *g *= gelu_derivative(*p));
}

/// `acc += sum of the rows of `rows``
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn add_rows(acc: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    }
}

/// Softmax of each row of `rows` (rows of `n`), in place.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn softmax_rows(rows: &mut [f32], n: usize) {
    for row in rows.chunks_exact_mut(n) {
        let m = max(row);
        // The exponentials summed as they are written, in `sum`'s order: one
        // pass over the row fewer.
        let mut acc = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (v, a) in c.iter_mut().zip(acc.iter_mut()) {
                *v = exp_f32(*v - m);
                *a += *v;
            }
        }
        let tail = chunks.into_remainder();
        tail.iter_mut().for_each(|v| *v = exp_f32(*v - m));
        let inv = 1.0 / (acc.iter().sum::<f32>() + tail.iter().sum::<f32>());
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Softmax backward with the logits' scale: `dP -> P (dP - rowsum(P dP)) scale`.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn softmax_backward_rows(dp: &mut [f32], p: &[f32], n: usize, scale: f32) {
    for (dp_row, p_row) in dp.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
        let d = dot(dp_row, p_row);
        dp_row.iter_mut().zip(p_row).for_each(|(g, p)| *g = p * (*g - d) * scale);
    }
}

// Per-block partial gradients are collected in block order and summed in that
// order: rayon's `reduce` pairs them as work-stealing splits fall, so float
// rounding (and, through training, the held-out metrics) differed run to run.
fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    a
}

/// The partials summed element by element in their order, as folding them
/// with [`add_into`] does (the same bits), with the elements split among threads:
/// the block's backward pass has up to 16 partials of ~1.8 MB per block.
fn sum_in_order(partials: Vec<Vec<f32>>) -> Option<Vec<f32>> {
    let mut partials = partials.into_iter();
    let mut total = partials.next()?;
    let rest: Vec<Vec<f32>> = partials.collect();
    const CHUNK: usize = 1 << 14;
    total.par_chunks_mut(CHUNK).enumerate().for_each(|(c, total)| {
        for partial in &rest {
            total.iter_mut().zip(&partial[c * CHUNK..]).for_each(|(t, p)| *t += p);
        }
    });
    Some(total)
}

fn add_pairs(a: (Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
    (add_into(a.0, b.0), add_into(a.1, b.1))
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    gelu_given_erf(x, gelu_erf(x))
}

#[inline(always)]
pub(crate) fn gelu_derivative(x: f32) -> f32 {
    gelu_derivative_given_erf(x, gelu_erf(x))
}

/// `erf(x / sqrt(2))`, which GELU and its derivative share.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    erf_f32(x * FRAC_1_SQRT_2)
}

#[inline(always)]
fn gelu_given_erf(x: f32, erf: f32) -> f32 {
    0.5 * x * (1.0 + erf)
}

#[inline(always)]
fn gelu_derivative_given_erf(x: f32, erf: f32) -> f32 {
    0.5 * (1.0 + erf) + x * FRAC_1_SQRT_2PI * exp_f32(-0.5 * x * x)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::device::with_bf16_products;
    use crate::model::layers::{self, LayerNorm};
    use crate::model::mae::{init_weights, masking_noise, Pooling};
    use crate::model::superres::{SuperResolver, SuperresConfig};
    use crate::model::{Mae, MaeConfig, VitClassifier};
    use candle_core::{Device, Module, Var};
    use candle_nn::{VarBuilder, VarMap};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A tensor of `dims` uniform in [-scale, scale).
    pub(crate) fn random(rng: &mut ChaCha8Rng, dims: &[usize], scale: f32) -> Tensor {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    /// ||a - b|| / ||b||
    pub(crate) fn relative_difference(a: &Tensor, b: &Tensor) -> f32 {
        let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
        norm(&(a - b).unwrap()) / norm(b).max(1e-30)
    }

    /// Runs `forward` with both kernel sets on the same input and parameters and
    /// compares the outputs and the gradients of `sum(y * r)` for a fixed random
    /// `r` with respect to the input and every parameter.
    fn compare_paths(
        rng: &mut ChaCha8Rng,
        input: Tensor,
        varmap: &VarMap,
        forward: impl Fn(&Tensor) -> Result<Tensor>,
        tolerance: f32,
    ) {
        compare_with_composed(rng, input, varmap, forward, tolerance, false);
    }

    /// [`compare_paths`], the composed path with bf16 products when `bf16`;
    /// returns the largest relative difference seen.
    fn compare_with_composed(
        rng: &mut ChaCha8Rng,
        input: Tensor,
        varmap: &VarMap,
        forward: impl Fn(&Tensor) -> Result<Tensor>,
        tolerance: f32,
        bf16: bool,
    ) -> f32 {
        let x = Var::from_tensor(&input).unwrap();
        let run = |kernels| {
            with_bf16_products(bf16 && kernels == Kernels::Composed, || {
                with_kernels(kernels, || forward(x.as_tensor()).unwrap())
            })
        };
        let (fused, composed) = (run(Kernels::Fused), run(Kernels::Composed));
        let diff = relative_difference(&fused, &composed);
        assert!(diff <= tolerance, "outputs differ by {diff:e}");
        let mut worst = diff;
        let r = random(rng, fused.dims(), 1.0);
        let grads = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gc) = (grads(&fused), grads(&composed));
        let mut named = vec![("input".to_string(), x.as_tensor().clone())];
        named.extend(varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())));
        for (name, t) in named {
            let (a, b) = (gf.get(&t), gc.get(&t));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, None) => continue, // e.g. a decoder variable the classifier never uses
                _ => panic!("gradient of {name} present on one path only"),
            };
            let diff = relative_difference(a, b);
            assert!(diff <= tolerance, "gradients of {name} differ by {diff:e}");
            worst = worst.max(diff);
        }
        worst
    }

    fn varmap_with<T>(seed: u64, make: impl FnOnce(VarBuilder) -> Result<T>) -> (VarMap, T) {
        let varmap = VarMap::new();
        let model = make(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        init_weights(&varmap, seed).unwrap();
        // Non-trivial norm parameters, so their gradients are tested too; drawn in
        // name order (the map's own order changes from process to process).
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = varmap.data().lock().unwrap();
        let mut named: Vec<_> = data.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        for (name, var) in named {
            if name.ends_with("bias") || name.contains("norm") {
                var.set(
                    &random(&mut rng, var.dims(), 0.5)
                        .broadcast_add(&Tensor::new(1f32, &Device::Cpu).unwrap())
                        .unwrap(),
                )
                .unwrap();
            }
        }
        drop(data);
        (varmap, model)
    }

    #[test]
    fn transposed_weights_are_the_transpose_at_any_shape() {
        // Band edges: widths below, at and past the 16-row bands.
        for (out_dim, in_dim) in [(1, 1), (3, 37), (16, 16), (33, 5), (576, 192)] {
            let w: Vec<f32> = (0..out_dim * in_dim).map(|i| i as f32).collect();
            let t = transposed(&w, out_dim);
            for o in 0..out_dim {
                for i in 0..in_dim {
                    assert_eq!(t[i * out_dim + o], w[o * in_dim + i], "({o}, {i}) of a {out_dim} x {in_dim} matrix");
                }
            }
        }
    }

    #[test]
    fn the_bias_added_in_the_gelu_pass_gives_the_bits_of_the_bias_written_first() {
        // The MLP's first layer (rows, width, hidden) of the paper's encoder and
        // decoder and the quickstart's: the pre-activation and the GELU of the
        // product with the bias added after it equal, bit for bit, those of the
        // bias written before the product accumulates onto it.
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        weights_unpacked();
        for (rows, in_dim, out_dim) in [(257, 192, 768), (257, 128, 512), (65, 64, 128), (65, 32, 64)] {
            let mut values = |n: usize| (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect::<Vec<f32>>();
            let (x, wt, b) = (values(rows * in_dim), values(in_dim * out_dim), values(out_dim));
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut bias_first = vec![0f32; rows * out_dim];
            affine_rows_transposed(&x, &wt, &b, &mut bias_first, None, Parallelism::None);
            let gelu_of_bias_first: Vec<f32> = bias_first.iter().map(|&v| gelu(v)).collect();
            for keep_pre in [true, false] {
                let (mut pre, mut hidden) = (vec![0f32; rows * out_dim], vec![0f32; rows * out_dim]);
                product_rows_transposed(&x, &wt, out_dim, &mut pre, Parallelism::None);
                bias_gelu_into(&mut pre, &b, &mut hidden, keep_pre);
                assert!(bits(&hidden) == bits(&gelu_of_bias_first), "GELU at {rows} x {in_dim} x {out_dim}");
                if keep_pre {
                    assert!(bits(&pre) == bits(&bias_first), "pre-activation at {rows} x {in_dim} x {out_dim}");
                }
            }
        }
    }

    #[test]
    fn fused_layer_norm_matches_the_composed_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..4 {
            let (rows, dim) = (rng.random_range(1..150), rng.random_range(2..300));
            let (varmap, norm) = varmap_with(rng.random(), |vb| LayerNorm::new(dim, 1e-6, vb.pp("norm")));
            let x = random(&mut rng, &[rows, dim], 3.0).broadcast_add(&random(&mut rng, &[rows, 1], 2.0)).unwrap();
            compare_paths(&mut rng, x, &varmap, |x| norm.forward(x), 1e-5);
        }
    }

    #[test]
    fn fused_linear_and_gelu_match_the_composed_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for activation in [Activation::Identity, Activation::Gelu, Activation::Gelu] {
            let (b, n, i, o) =
                (rng.random_range(1..5), rng.random_range(1..70), rng.random_range(1..200), rng.random_range(1..200));
            let (varmap, lin) = varmap_with(rng.random(), |vb| layers::Linear::new(i, o, vb.pp("fc")));
            let x = random(&mut rng, &[b, n, i], 2.0);
            compare_paths(&mut rng, x, &varmap, |x| lin.forward_with(x, activation), 1e-5);
        }
    }

    #[test]
    fn the_whole_block_op_matches_the_composed_path_forward_and_backward() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        // Random shapes (some with several images to a group), then the paper's
        // (257 tokens, width 192, 3 heads).
        let mut shapes: Vec<_> = (0..4)
            .map(|_| {
                let heads = rng.random_range(1..4);
                (heads, heads * 4 * rng.random_range(1..6), rng.random_range(1..7), rng.random_range(1..140))
            })
            .collect();
        shapes.push((3, 192, 2, 257));
        for (heads, dim, batch, tokens) in shapes {
            let (varmap, trained) = varmap_with(rng.random(), |vb| layers::Block::new(dim, heads, 4.0, 1e-6, vb));
            let x = random(&mut rng, &[batch, tokens, dim], 2.0);
            compare_paths(&mut rng, x.clone(), &varmap, |x| trained.forward(x), 1e-5);
            // As from a checkpoint: plain tensors that track no gradient, so the
            // block runs without keeping anything.
            let loaded =
                varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
            let loaded =
                layers::Block::new(dim, heads, 4.0, 1e-6, VarBuilder::from_tensors(loaded, DType::F32, &Device::Cpu))
                    .unwrap();
            let inferred = loaded.forward(&x).unwrap();
            assert!(!inferred.track_op());
            let composed = with_kernels(Kernels::Composed, || loaded.forward(&x)).unwrap();
            let diff = relative_difference(&inferred, &composed);
            assert!(diff <= 1e-5, "inference vs composed: {diff:e} at {batch} x {tokens} x {dim}");
        }
    }

    #[test]
    fn the_block_gives_the_same_bits_on_any_number_of_threads() {
        // Its docs promise gradients that do not depend on scheduling or the
        // thread count (so a run repeats on another machine): output, input
        // gradient and every parameter gradient, compared bit for bit, for
        // shapes with many groups, few groups (gemm then runs multi-threaded
        // inside a group) and several images to a group.
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for (heads, dim, batch, tokens) in [(2, 16, 7, 26), (1, 8, 1, 40), (3, 24, 3, 257)] {
            let (varmap, block) = varmap_with(rng.random(), |vb| layers::Block::new(dim, heads, 4.0, 1e-6, vb));
            let x = Var::from_tensor(&random(&mut rng, &[batch, tokens, dim], 2.0)).unwrap();
            let r = random(&mut rng, &[batch, tokens, dim], 1.0);
            let run = |threads: usize| -> Vec<Vec<u32>> {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let y = block.forward(x.as_tensor()).unwrap();
                    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let vars = varmap.all_vars();
                    let bits = |t: &Tensor| {
                        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
                    };
                    std::iter::once(bits(&y))
                        .chain(std::iter::once(bits(grads.get(x.as_tensor()).unwrap())))
                        .chain(vars.iter().map(|v| bits(grads.get(v.as_tensor()).unwrap())))
                        .collect()
                })
            };
            let one = run(1);
            for threads in [2, 3, 4] {
                assert!(run(threads) == one, "{threads} threads differ from one at {batch} x {tokens} x {dim}");
            }
        }
    }

    #[test]
    fn fused_paper_size_classifier_matches_the_composed_one() {
        // The shapes training runs at (257 tokens, width 192, multi-threaded gemm).
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let cfg = MaeConfig::paper_64();
        let images = random(&mut rng, &[2, 1, 64, 64], 1.0).abs().unwrap();
        let (varmap, clf) = varmap_with(9, |vb| VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, vb));
        compare_paths(&mut rng, images, &varmap, |x| clf.forward(x, None), 1e-4);
    }

    #[test]
    fn fused_convolution_matches_candles() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for k in [3, 3, 1, 5] {
            let (b, c_in, c_out) = (rng.random_range(1..4), rng.random_range(1..9), rng.random_range(1..9));
            let (h, w) = (rng.random_range(1..12), rng.random_range(1..12));
            let (varmap, conv) = varmap_with(rng.random(), |vb| layers::Conv2d::new(c_in, c_out, k, vb.pp("conv")));
            let x = random(&mut rng, &[b, c_in, h, w], 2.0);
            compare_paths(&mut rng, x, &varmap, |x| conv.forward(x), 1e-5);
        }
    }

    #[test]
    fn fused_models_match_the_composed_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let cfg = MaeConfig::tiny_16();
        let images = random(&mut rng, &[3, 1, 16, 16], 1.0).abs().unwrap();
        let (varmap, clf) = varmap_with(5, |vb| VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, vb));
        compare_paths(&mut rng, images.clone(), &varmap, |x| clf.forward(x, None), 1e-4);
        let (varmap, mae) = varmap_with(6, |vb| Mae::new(&cfg, vb));
        let noise = masking_noise(&mut rng, 3, cfg.num_patches(), &Device::Cpu).unwrap();
        compare_paths(&mut rng, images, &varmap, |x| Ok(mae.forward(x, 0.75, &noise)?.pred), 1e-4);
        let head = crate::model::superres::SuperresConfig { channels: 8, residual: true, ..SuperresConfig::paper(4) };
        let (varmap, sr) = varmap_with(7, |vb| {
            SuperResolver::new(&cfg, &head, vb).map_err(|e| candle_core::Error::Msg(e.to_string()))
        });
        let lr = random(&mut rng, &[2, 1, 4, 4], 1.0).abs().unwrap();
        compare_paths(
            &mut rng,
            lr,
            &varmap,
            |x| sr.forward(x).map_err(|e| candle_core::Error::Msg(e.to_string())),
            1e-4,
        );
    }

    #[test]
    fn bf16_products_round_the_composed_models_by_bf16_only() {
        // CUDA's `--precision bf16` path (emulated on the CPU with the same
        // rounding) against the f32 fused kernels: close, every gradient present,
        // yet not f32-close, so the option cannot be silently ignored.
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let cfg = MaeConfig::tiny_16();
        let images = random(&mut rng, &[3, 1, 16, 16], 1.0).abs().unwrap();
        let (varmap, clf) = varmap_with(15, |vb| VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, vb));
        let clf_worst = compare_with_composed(&mut rng, images.clone(), &varmap, |x| clf.forward(x, None), 5e-2, true);
        let (varmap, mae) = varmap_with(16, |vb| Mae::new(&cfg, vb));
        let noise = masking_noise(&mut rng, 3, cfg.num_patches(), &Device::Cpu).unwrap();
        let mae_worst =
            compare_with_composed(&mut rng, images, &varmap, |x| Ok(mae.forward(x, 0.75, &noise)?.pred), 5e-2, true);
        let head = crate::model::superres::SuperresConfig { channels: 8, residual: true, ..SuperresConfig::paper(4) };
        let (varmap, sr) = varmap_with(17, |vb| {
            SuperResolver::new(&cfg, &head, vb).map_err(|e| candle_core::Error::Msg(e.to_string()))
        });
        let lr = random(&mut rng, &[2, 1, 4, 4], 1.0).abs().unwrap();
        let sr_forward = |x: &Tensor| sr.forward(x).map_err(|e| candle_core::Error::Msg(e.to_string()));
        let sr_worst = compare_with_composed(&mut rng, lr, &varmap, sr_forward, 5e-2, true);
        for (model, worst) in [("classifier", clf_worst), ("MAE", mae_worst), ("SR", sr_worst)] {
            assert!(worst > 1e-3, "{model}: bf16 products changed nothing ({worst:e})");
        }
    }
}
