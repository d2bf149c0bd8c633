//! A whole pre-norm transformer block as one op: `y = x + attn(norm1(x))`, then
//! `y + mlp(norm2(y))`, with an analytic backward pass.
//!
//! Why: op by op, each layer of a batch of 64 images reads and writes tens of
//! megabytes (the MLP's hidden layer alone is 50 MB), LayerNorm, GELU, softmax
//! and the residual adds run at memory speed between the matrix products, and
//! candle's autograd zero-fills and adds a gradient buffer for every one of the
//! dozen intermediate tensors. Here the batch is cut into groups of about
//! [`GROUP_ROWS`] token rows (one image of the paper's model), each group runs
//! the whole block with its activations in cache, and only what the backward
//! pass cannot cheaply recompute is kept (q/k/v, attention probabilities, the
//! attention output, the first residual sum and the MLP's pre-activation; the
//! LayerNorm outputs and the GELU are recomputed).
//!
//! Determinism: the weight gradients are accumulated group by group within a
//! fixed number of chunks of groups and the chunks summed in order, so a
//! step's gradients do not depend on thread scheduling or the thread count.

use super::*;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Token rows per group: one image of 257 tokens; several of the MAE
/// encoder's few visible tokens.
const GROUP_ROWS: usize = 256;
/// Chunks of groups with their own weight-gradient accumulator (the backward
/// pass's units of parallel work).
const GRADIENT_CHUNKS: usize = 16;

/// The parameters of one [`crate::model::layers::Block`], borrowed: (weight,
/// bias) of the first LayerNorm, the packed q/k/v projection, the attention's
/// output projection, the second LayerNorm and the MLP's two layers.
pub(crate) struct BlockWeights<'a> {
    pub(crate) norm1: (&'a Tensor, &'a Tensor),
    pub(crate) qkv: (&'a Tensor, &'a Tensor),
    pub(crate) proj: (&'a Tensor, &'a Tensor),
    pub(crate) norm2: (&'a Tensor, &'a Tensor),
    pub(crate) fc1: (&'a Tensor, &'a Tensor),
    pub(crate) fc2: (&'a Tensor, &'a Tensor),
    pub(crate) eps: f64,
    pub(crate) num_heads: usize,
}

impl BlockWeights<'_> {
    /// In the order of [`ParamLayout`].
    fn tensors(&self) -> [&Tensor; 12] {
        let [a, b, c, d, e, f] = [self.norm1, self.qkv, self.proj, self.norm2, self.fc1, self.fc2];
        [a.0, a.1, b.0, b.1, c.0, c.1, d.0, d.1, e.0, e.1, f.0, f.1]
    }
}

/// Where each of the twelve parameters sits in their concatenation.
#[derive(Clone, Copy)]
struct ParamLayout {
    dim: usize,
    hidden: usize,
}

impl ParamLayout {
    fn sizes(&self) -> [usize; 12] {
        self.shapes().map(|shape| shape.iter().product())
    }
    fn shapes(&self) -> [Vec<usize>; 12] {
        let (d, h) = (self.dim, self.hidden);
        [
            vec![d],
            vec![d],
            vec![3 * d, d],
            vec![3 * d],
            vec![d, d],
            vec![d],
            vec![d],
            vec![d],
            vec![h, d],
            vec![h],
            vec![d, h],
            vec![d],
        ]
    }
    fn len(&self) -> usize {
        self.sizes().iter().sum()
    }
    /// The concatenation cut back into its twelve parts.
    fn split<'a>(&self, mut flat: &'a [f32]) -> [&'a [f32]; 12] {
        self.sizes().map(|n| {
            let (head, rest) = flat.split_at(n);
            flat = rest;
            head
        })
    }
    fn split_mut<'a>(&self, mut flat: &'a mut [f32]) -> [&'a mut [f32]; 12] {
        self.sizes().map(|n| {
            let (head, rest) = std::mem::take(&mut flat).split_at_mut(n);
            flat = rest;
            head
        })
    }
}

/// The block's configuration, checked against the input and weights.
#[derive(Clone, Copy)]
struct Shapes {
    batch: usize,
    tokens: usize,
    params: ParamLayout,
    attention: Heads,
    eps: f32,
}

impl Shapes {
    fn of(x: &[usize], weights: &BlockWeights) -> Result<Shapes> {
        let [batch, tokens, dim] = *x else { candle_core::bail!("fused block: input {x:?} is not [B, N, D]") };
        let params = ParamLayout { dim, hidden: weights.fc1.0.dims().first().copied().unwrap_or(0) };
        for (t, want) in weights.tensors().iter().zip(params.shapes()) {
            if t.dims() != want.as_slice() {
                candle_core::bail!("fused block: a weight is {:?}, expected {want:?} for width {dim}", t.dims());
            }
        }
        let attention = Heads::new(tokens, dim, weights.num_heads)?;
        Ok(Shapes { batch, tokens, params, attention, eps: weights.eps as f32 })
    }
    fn dim(&self) -> usize {
        self.params.dim
    }
    fn hidden(&self) -> usize {
        self.params.hidden
    }
    fn heads(&self) -> usize {
        self.attention.heads
    }
    /// The fewest groups of at most [`GROUP_ROWS`] rows (or one image), then
    /// the images spread evenly over them: 64 images of the MAE encoder's 26
    /// visible tokens at mask 0.9 make 8 groups of 8, not 7 of 9 and one of 1
    /// (which left one of two threads a third idle). It depends on the shapes
    /// only, never on the thread count, so the gradients' order does not either.
    fn images_per_group(&self) -> usize {
        even_group_size(self.batch, self.tokens)
    }
    fn groups(&self) -> usize {
        self.batch.div_ceil(self.images_per_group())
    }
    /// First image and image count of group `g`.
    fn group(&self, g: usize) -> (usize, usize) {
        let first = g * self.images_per_group();
        (first, self.images_per_group().min(self.batch - first))
    }
    /// The group's gemm calls run multi-threaded only when there are too few
    /// groups to keep the threads busy.
    fn inner_parallelism(&self) -> Parallelism {
        if self.groups() >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            threads()
        }
    }
}

/// Images per group for `batch` images of `tokens` rows: see [`Shapes::images_per_group`].
fn even_group_size(batch: usize, tokens: usize) -> usize {
    let most = (GROUP_ROWS / tokens.max(1)).max(1);
    let groups = batch.div_ceil(most).max(1);
    batch.div_ceil(groups).max(1)
}

/// Whether the fused block applies: the fused kernels are on and `x` is `[B, N, D]`.
pub(crate) fn applies(x: &Tensor) -> bool {
    applies_to(x) && x.rank() == 3
}

/// The block's output. Differentiable (a candle op over `x` and the twelve
/// parameters' concatenation) when `x` or a parameter tracks gradients;
/// otherwise computed directly, keeping nothing.
pub(crate) fn forward(x: &Tensor, weights: &BlockWeights) -> Result<Tensor> {
    let shapes = Shapes::of(x.dims(), weights)?;
    // The concatenation tracks gradients when any parameter does. Without them,
    // copying the parameters (~1.8 MB for the paper's block) costs little beside
    // the block's products.
    let (x, flat) = (x.contiguous()?, concatenated(&weights.tensors())?);
    if x.track_op() || flat.track_op() {
        return x.apply_op2(&flat, BlockOp { shapes, saved: Mutex::new(None) });
    }
    let out =
        with_data(&x, |xs| with_data(&flat, |flat| Ok(run_forward(shapes, xs, &shapes.params.split(flat), None))))?;
    cpu_tensor(out, x.shape())
}

/// The parameters flattened and laid end to end, as [`ParamLayout`] has them
/// (differentiable: candle's backward pass cuts the gradient back into parts).
fn concatenated(tensors: &[&Tensor; 12]) -> Result<Tensor> {
    Tensor::cat(&tensors.iter().map(|t| t.flatten_all()).collect::<Result<Vec<_>>>()?, 0)
}

/// The activations the backward pass reads, which the forward pass writes in
/// full: for the whole batch when a backward pass will follow ([`Saved`]),
/// else one group's in its [`Scratch`]. Taken from the spares that earlier
/// steps' activations left, and handed back when dropped.
#[derive(Default)]
struct Activations {
    qkv: Vec<f32>,
    probs: Vec<f32>,
    attended: Vec<f32>,
    /// `x + attn(norm1(x))`
    residual: Vec<f32>,
    /// The MLP's first layer before GELU.
    pre_activation: Vec<f32>,
}

/// What the backward pass needs, for the whole batch.
type Saved = Activations;

impl Activations {
    /// Buffers for `rows` token rows and `probs` attention probabilities.
    fn take(s: Shapes, rows: usize, probs: usize) -> Activations {
        Activations {
            qkv: spare::take(rows * 3 * s.dim()),
            probs: spare::take(probs),
            attended: spare::take(rows * s.dim()),
            residual: spare::take(rows * s.dim()),
            pre_activation: spare::take(rows * s.hidden()),
        }
    }

    /// The whole batch's, every head's probabilities kept.
    fn for_batch(s: Shapes) -> Saved {
        Activations::take(s, s.batch * s.tokens, s.batch * s.heads() * s.tokens * s.tokens)
    }
}

impl Drop for Activations {
    fn drop(&mut self) {
        let Activations { qkv, probs, attended, residual, pre_activation } = self;
        spare::give_all([qkv, probs, attended, residual, pre_activation]);
    }
}

/// A group's buffers, reused from group to group and taken from (and handed
/// back to) the spares: every element is written before it is read.
struct Scratch {
    normed: Vec<f32>,
    hidden: Vec<f32>,
    /// Without a backward pass to serve, the group's activations live here
    /// (one head's probabilities at a time); empty otherwise.
    local: Activations,
}

impl Scratch {
    fn forward(s: Shapes, keep: bool) -> Scratch {
        let rows = s.images_per_group() * s.tokens;
        Scratch {
            normed: spare::take(rows * s.dim()),
            hidden: spare::take(rows * s.hidden()),
            local: if keep { Activations::default() } else { Activations::take(s, rows, s.tokens * s.tokens) },
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        spare::give_all([&mut self.normed, &mut self.hidden]);
    }
}

/// A mutable window of a buffer that parallel tasks share, each its own part.
///
/// # Safety
/// `start + len` must lie inside the buffer, and no other live reference may
/// overlap the window.
unsafe fn window<'a>(base: &OutPtr, start: usize, len: usize) -> &'a mut [f32] {
    std::slice::from_raw_parts_mut(base.get().add(start), len)
}

/// An output buffer that the parallel tasks zero and fill, each its own
/// window, instead of a `vec![0.0; len]` zeroed up front: that zero-fill ran on
/// the calling thread while the workers waited (~0.5% of an inference step's
/// CPU time in `perf`).
/// Zeroed rather than left unset because the writers take `&mut [f32]`,
/// which must not point at uninitialised floats; the zeroing costs the tasks
/// a write of lines they are about to write anyway. Nothing is read before it
/// is zeroed, so the values are those of a zeroed vector written the same way.
struct ZeroedByTasks {
    buffer: Vec<MaybeUninit<f32>>,
    /// The buffer's first element, for the tasks' writes.
    first: *mut MaybeUninit<f32>,
    zeroed: AtomicUsize,
}

// SAFETY: tasks write only through disjoint windows (see `window`).
unsafe impl Sync for ZeroedByTasks {}

impl ZeroedByTasks {
    fn new(len: usize) -> ZeroedByTasks {
        let mut buffer = Vec::with_capacity(len);
        // SAFETY: `MaybeUninit` elements need no initialisation.
        unsafe { buffer.set_len(len) };
        let first = buffer.as_mut_ptr();
        ZeroedByTasks { buffer, first, zeroed: AtomicUsize::new(0) }
    }

    /// Elements `start..start + len`, zeroed.
    ///
    /// # Safety
    /// The window must lie inside the buffer and overlap no other window.
    #[allow(clippy::mut_from_ref)]
    unsafe fn window(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.buffer.len(), "window outside the buffer");
        let first = self.first.add(start);
        let window = std::slice::from_raw_parts_mut(first, len);
        window.fill(MaybeUninit::new(0.0));
        self.zeroed.fetch_add(len, Ordering::Relaxed);
        // SAFETY: every element was just written.
        std::slice::from_raw_parts_mut(first.cast::<f32>(), len)
    }

    /// The filled buffer. Panics unless the windows covered it (they do not
    /// overlap, so their lengths summing to its length means all of it).
    fn into_vec(self) -> Vec<f32> {
        assert_eq!(self.zeroed.into_inner(), self.buffer.len(), "the tasks' windows did not cover the buffer");
        let mut buffer = ManuallyDrop::new(self.buffer);
        // SAFETY: every element was initialised through a window, and
        // `MaybeUninit<f32>` has `f32`'s layout.
        unsafe { Vec::from_raw_parts(buffer.as_mut_ptr().cast::<f32>(), buffer.len(), buffer.capacity()) }
    }
}

/// The forward pass over the whole batch; fills `saved` when given.
fn run_forward(s: Shapes, x: &[f32], params: &[&[f32]; 12], saved: Option<&mut Saved>) -> Vec<f32> {
    let [n1w, n1b, qkv_w, qkv_b, proj_w, proj_b, n2w, n2b, fc1_w, fc1_b, fc2_w, fc2_b] = *params;
    let (n, d, h) = (s.tokens, s.dim(), s.hidden());
    let out = ZeroedByTasks::new(s.batch * n * d);
    let keep = saved.is_some();
    let ptrs = saved.map(|sv| {
        [&mut sv.qkv, &mut sv.probs, &mut sv.attended, &mut sv.residual, &mut sv.pre_activation]
            .map(|v| OutPtr(v.as_mut_ptr()))
    });
    let par = s.inner_parallelism();
    weights_unpacked();
    let [qkv_t, proj_t, fc1_t, fc2_t] =
        [(qkv_w, 3 * d), (proj_w, d), (fc1_w, h), (fc2_w, d)].map(|(w, out_dim)| transposed(w, out_dim));
    (0..s.groups()).into_par_iter().for_each_init(
        || Scratch::forward(s, keep),
        |sc, g| {
            let (first, images) = s.group(g);
            let (r0, rows) = (first * n, images * n);
            let probs_per_head = n * n;
            // SAFETY: each group writes only its own rows (and its images'
            // probability blocks) of the shared buffers.
            let (qkv, probs, attended, residual, pre) = match &ptrs {
                Some([q, p, a, r, pa]) => unsafe {
                    (
                        window(q, r0 * 3 * d, rows * 3 * d),
                        window(p, first * s.heads() * probs_per_head, images * s.heads() * probs_per_head),
                        window(a, r0 * d, rows * d),
                        window(r, r0 * d, rows * d),
                        window(pa, r0 * h, rows * h),
                    )
                },
                None => (
                    &mut sc.local.qkv[..rows * 3 * d],
                    &mut sc.local.probs[..],
                    &mut sc.local.attended[..rows * d],
                    &mut sc.local.residual[..rows * d],
                    &mut sc.local.pre_activation[..rows * h],
                ),
            };
            let (normed, hidden) = (&mut sc.normed[..rows * d], &mut sc.hidden[..rows * h]);
            let x = &x[r0 * d..(r0 + rows) * d];
            layer_norm_rows(x, n1w, n1b, s.eps, normed);
            affine_rows_transposed(normed, &qkv_t, qkv_b, qkv, None, par);
            for task in 0..images * s.heads() {
                let p = if keep { &mut probs[task * probs_per_head..][..probs_per_head] } else { &mut probs[..] };
                // SAFETY: `qkv` and `attended` hold this group's images.
                unsafe {
                    attend(s.attention, qkv.as_ptr(), attended.as_mut_ptr(), task / s.heads(), task % s.heads(), p)
                };
            }
            affine_rows_transposed(attended, &proj_t, proj_b, residual, Some(x), par);
            layer_norm_rows(residual, n2w, n2b, s.eps, normed);
            product_rows_transposed(normed, &fc1_t, h, pre, par);
            bias_gelu_into(pre, fc1_b, hidden, keep);
            // SAFETY: this group's rows of `out`.
            let y = unsafe { out.window(r0 * d, rows * d) };
            affine_rows_transposed(hidden, &fc2_t, fc2_b, y, Some(residual), par);
        },
    );
    out.into_vec()
}

struct BlockOp {
    shapes: Shapes,
    saved: Mutex<Option<Saved>>,
}

impl CustomOp2 for BlockOp {
    fn name(&self) -> &'static str {
        "fused-block"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ps: &CpuStorage, pl: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = self.shapes;
        let x = contiguous_f32(xs, xl, "block")?;
        let flat = contiguous_f32(ps, pl, "block")?;
        if x.len() != s.batch * s.tokens * s.dim() || flat.len() != s.params.len() {
            candle_core::bail!("fused block: input or parameters do not match the block's shapes");
        }
        let mut saved = Activations::for_batch(s);
        let out = run_forward(s, x, &s.params.split(flat), Some(&mut saved));
        *self.saved.lock().expect("block activations lock") = Some(saved);
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, flat: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().expect("block activations lock");
        let saved = saved.as_ref().ok_or_else(|| candle_core::Error::Msg("fused block: no saved forward".into()))?;
        let (dx, dflat) = with_data3(x, flat, grad, |x, flat, g| Ok(run_backward(self.shapes, x, flat, g, saved)))?;
        Ok((Some(cpu_tensor(dx, x.shape())?), Some(cpu_tensor(dflat, flat.shape())?)))
    }
}

/// A thread's buffers for the backward pass, reused from chunk to chunk and
/// taken from the spares (each is written in full before it is read; zeroed
/// fresh, they were ~1% of an MAE step in `memset`).
struct BackScratch {
    normed: Vec<f32>,
    hidden: Vec<f32>,
    /// GELU's derivative at the MLP's pre-activation.
    slope: Vec<f32>,
    d_hidden: Vec<f32>,
    d_normed: Vec<f32>,
    d_residual: Vec<f32>,
    d_attended: Vec<f32>,
    d_qkv: Vec<f32>,
    d_probs: Vec<f32>,
    row: Vec<f32>,
}

impl BackScratch {
    fn new(s: Shapes) -> BackScratch {
        let rows = s.images_per_group() * s.tokens;
        let (d, h) = (s.dim(), s.hidden());
        BackScratch {
            normed: spare::take(rows * d),
            hidden: spare::take(rows * h),
            slope: spare::take(rows * h),
            d_hidden: spare::take(rows * h),
            d_normed: spare::take(rows * d),
            d_residual: spare::take(rows * d),
            d_attended: spare::take(rows * d),
            d_qkv: spare::take(rows * 3 * d),
            d_probs: spare::take(s.tokens * s.tokens),
            row: vec![0.0; d],
        }
    }
}

impl Drop for BackScratch {
    fn drop(&mut self) {
        let BackScratch { normed, hidden, slope, d_hidden, d_normed, d_residual, d_attended, d_qkv, d_probs, row: _ } =
            self;
        spare::give_all([normed, hidden, slope, d_hidden, d_normed, d_residual, d_attended, d_qkv, d_probs]);
    }
}

/// Gradients of the input and of the twelve parameters' concatenation from
/// the gradient `g` at the block's output.
fn run_backward(s: Shapes, x: &[f32], flat: &[f32], g: &[f32], saved: &Saved) -> (Vec<f32>, Vec<f32>) {
    let [n1w, n1b, qkv_w, _, proj_w, _, n2w, n2b, fc1_w, _, fc2_w, _] = s.params.split(flat);
    let (n, d, h) = (s.tokens, s.dim(), s.hidden());
    let dx = ZeroedByTasks::new(x.len());
    let groups = s.groups();
    let chunks = groups.min(GRADIENT_CHUNKS);
    let par = s.inner_parallelism();
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map_init(
            || BackScratch::new(s),
            |sc, chunk| {
                let mut acc = vec![0f32; s.params.len()];
                let [dn1w, dn1b, dqkv_w, dqkv_b, dproj_w, dproj_b, dn2w, dn2b, dfc1_w, dfc1_b, dfc2_w, dfc2_b] =
                    s.params.split_mut(&mut acc);
                for grp in (chunk * groups / chunks)..((chunk + 1) * groups / chunks) {
                    let (first, images) = s.group(grp);
                    let (r0, rows) = (first * n, images * n);
                    let span = |width: usize| r0 * width..(r0 + rows) * width;
                    let (xg, dy) = (&x[span(d)], &g[span(d)]);
                    let (qkv, attended, residual, pre) = (
                        &saved.qkv[span(3 * d)],
                        &saved.attended[span(d)],
                        &saved.residual[span(d)],
                        &saved.pre_activation[span(h)],
                    );
                    let probs = &saved.probs[first * s.heads() * n * n..][..images * s.heads() * n * n];
                    let normed = &mut sc.normed[..rows * d];
                    let hidden = &mut sc.hidden[..rows * h];
                    let slope = &mut sc.slope[..rows * h];
                    let d_hidden = &mut sc.d_hidden[..rows * h];
                    let d_normed = &mut sc.d_normed[..rows * d];
                    let d_residual = &mut sc.d_residual[..rows * d];
                    let d_attended = &mut sc.d_attended[..rows * d];
                    let d_qkv = &mut sc.d_qkv[..rows * 3 * d];
                    // The MLP: y = residual + gelu(norm2(residual) W1^T + b1) W2^T + b2.
                    layer_norm_rows(residual, n2w, n2b, s.eps, normed);
                    gelu_with_slope(pre, hidden, slope);
                    weight_gradient(dy, hidden, d, dfc2_w, true, par);
                    add_rows(dfc2_b, dy);
                    input_gradient(dy, fc2_w, d, d_hidden, par);
                    mul_in_place(d_hidden, slope);
                    weight_gradient(d_hidden, normed, h, dfc1_w, true, par);
                    add_rows(dfc1_b, d_hidden);
                    input_gradient(d_hidden, fc1_w, h, d_normed, par);
                    layer_norm_backward_rows(residual, n2w, d_normed, s.eps, d_residual, dn2w, dn2b, &mut sc.row);
                    d_residual.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
                    // Attention: residual = x + attended Wp^T + bp.
                    weight_gradient(d_residual, attended, d, dproj_w, true, par);
                    add_rows(dproj_b, d_residual);
                    input_gradient(d_residual, proj_w, d, d_attended, par);
                    for task in 0..images * s.heads() {
                        let p = &probs[task * n * n..][..n * n];
                        // SAFETY: the group's q/k/v, output gradient and dqkv rows.
                        unsafe {
                            attend_backward(
                                s.attention,
                                (qkv.as_ptr(), d_attended.as_ptr(), d_qkv.as_mut_ptr()),
                                (task / s.heads(), task % s.heads()),
                                p,
                                &mut sc.d_probs,
                            )
                        };
                    }
                    // q/k/v: qkv = norm1(x) Wqkv^T + bqkv.
                    layer_norm_rows(xg, n1w, n1b, s.eps, normed);
                    weight_gradient(d_qkv, normed, 3 * d, dqkv_w, true, par);
                    add_rows(dqkv_b, d_qkv);
                    input_gradient(d_qkv, qkv_w, 3 * d, d_normed, par);
                    // SAFETY: only this chunk writes its groups' rows of dx.
                    let dxg = unsafe { dx.window(r0 * d, rows * d) };
                    layer_norm_backward_rows(xg, n1w, d_normed, s.eps, dxg, dn1w, dn1b, &mut sc.row);
                    dxg.iter_mut().zip(d_residual.iter()).for_each(|(a, b)| *a += *b);
                }
                acc
            },
        )
        .collect();
    let dflat = sum_in_order(partials).unwrap_or_else(|| vec![0f32; s.params.len()]);
    (dx.into_vec(), dflat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_zeroed_by_tasks_hold_what_the_tasks_wrote() {
        let buffer = ZeroedByTasks::new(10);
        (0..2usize).into_par_iter().for_each(|task| {
            // SAFETY: the two windows are disjoint halves.
            let window = unsafe { buffer.window(task * 5, 5) };
            window[task] = 1.0 + task as f32;
        });
        assert_eq!(buffer.into_vec(), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "did not cover")]
    fn a_buffer_the_tasks_did_not_cover_is_refused() {
        let buffer = ZeroedByTasks::new(10);
        // SAFETY: one window.
        unsafe { buffer.window(0, 9) }.fill(1.0);
        let _ = buffer.into_vec();
    }

    #[test]
    fn groups_are_as_even_as_the_row_limit_allows() {
        // (batch, tokens) -> images per group
        for ((batch, tokens), want) in [
            ((64, 26), 8),  // MAE encoder at mask 0.9: 8 groups of 8, not 7 of 9 and 1
            ((32, 17), 11), // quickstart MAE encoder: 11, 11, 10
            ((64, 257), 1), // one image of the paper's model a group
            ((64, 65), 3),  // 22 groups, the last of 1: no fewer groups of 3 or less fit
            ((9, 26), 9),
            ((10, 26), 5),
            ((1, 1000), 1),
            ((0, 26), 1),
        ] {
            let size = even_group_size(batch, tokens);
            assert_eq!(size, want, "batch {batch}, tokens {tokens}");
            assert!(size * tokens <= GROUP_ROWS.max(tokens), "a group exceeds the row limit");
        }
    }
}
