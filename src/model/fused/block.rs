//! A whole pre-norm transformer block for inference, one image at a time.
//!
//! Why: op by op, each layer of a batch of 64 images reads and writes tens of
//! megabytes (the MLP's hidden layer alone is 50 MB), so LayerNorm, GELU,
//! softmax and the residual adds run at memory speed between the matrix
//! products. One image's activations (at most ~1 MB for the paper's model)
//! stay in a core's L2 cache through the whole block, and no intermediate
//! tensor is allocated. Nothing is kept for a backward pass, so this path runs
//! only when no input or weight needs a gradient; training takes the per-op
//! kernels of the parent module.

use super::*;

/// The parameters of one [`crate::model::layers::Block`], borrowed.
pub(crate) struct BlockWeights<'a> {
    /// (weight, bias) of: the first LayerNorm, the packed q/k/v projection, the
    /// attention's output projection, the second LayerNorm, the MLP's two layers.
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
    fn tensors(&self) -> [&Tensor; 12] {
        let [a, b, c, d, e, f] = [self.norm1, self.qkv, self.proj, self.norm2, self.fc1, self.fc2];
        [a.0, a.1, b.0, b.1, c.0, c.1, d.0, d.1, e.0, e.1, f.0, f.1]
    }
}

/// Whether [`forward_inference`] may run: the fused kernels apply, nothing can
/// ask for a gradient, the weights are contiguous, and the batch has at least
/// an image per thread (images are the unit of parallel work here).
pub(crate) fn applies(x: &Tensor, weights: &BlockWeights) -> bool {
    let tensors = weights.tensors();
    applies_to(x)
        && x.rank() == 3
        && x.dim(0).is_ok_and(|b| b >= rayon::current_num_threads())
        && !x.track_op()
        && tensors.iter().all(|t| !t.track_op() && t.is_contiguous() && applies_to(t))
}

/// `y = x + attn(norm1(x))`, then `y + mlp(norm2(y))`, for `x: [B, N, D]`: the
/// per-op kernels' arithmetic, except that the residual is added before the
/// projection's product rather than after it (a rounding-level difference).
pub(crate) fn forward_inference(x: &Tensor, weights: &BlockWeights) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (batch, n, d) = x.dims3()?;
    let hidden = weights.fc1.0.dim(0)?;
    let expected: [&[usize]; 12] =
        [&[d], &[d], &[3 * d, d], &[3 * d], &[d, d], &[d], &[d], &[d], &[hidden, d], &[hidden], &[d, hidden], &[d]];
    let tensors = weights.tensors();
    for (t, want) in tensors.iter().zip(expected) {
        if t.dims() != want {
            candle_core::bail!("fused block: a weight is {:?}, expected {want:?} for width {d}", t.dims());
        }
    }
    let s = Heads::of(&[1, n, 3 * d], weights.num_heads)?;
    let guards: Vec<_> = std::iter::once(&x).chain(tensors).map(|t| t.storage_and_layout()).collect();
    let data = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => contiguous_f32(cpu, layout, "block"),
            _ => candle_core::bail!("fused kernels run on the CPU only"),
        })
        .collect::<Result<Vec<_>>>()?;
    let [xs, n1w, n1b, qkv_w, qkv_b, proj_w, proj_b, n2w, n2b, fc1_w, fc1_b, fc2_w, fc2_b] = data[..] else {
        unreachable!("thirteen tensors")
    };
    let eps = weights.eps as f32;
    let mut out = vec![0f32; batch * n * d];
    out.par_chunks_mut(n * d).zip(xs.par_chunks(n * d)).for_each_init(
        || Scratch::new(n, d, hidden),
        |sc, (y, x)| {
            layer_norm_rows(x, n1w, n1b, eps, &mut sc.normed);
            affine_rows(&sc.normed, qkv_w, qkv_b, &mut sc.qkv, false, Parallelism::None);
            for head in 0..s.heads {
                // SAFETY: `qkv` and `attended` hold one image of `s`'s shapes,
                // and this task owns both.
                unsafe { attend(s, sc.qkv.as_ptr(), sc.attended.as_mut_ptr(), 0, head, &mut sc.probs) };
            }
            y.copy_from_slice(x);
            affine_rows(&sc.attended, proj_w, proj_b, y, true, Parallelism::None);
            layer_norm_rows(y, n2w, n2b, eps, &mut sc.normed);
            affine_rows(&sc.normed, fc1_w, fc1_b, &mut sc.hidden, false, Parallelism::None);
            gelu_in_place(&mut sc.hidden);
            affine_rows(&sc.hidden, fc2_w, fc2_b, y, true, Parallelism::None);
        },
    );
    cpu_tensor(out, x.shape())
}

/// One task's buffers for one image, reused from image to image.
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    probs: Vec<f32>,
    hidden: Vec<f32>,
}

impl Scratch {
    fn new(n: usize, d: usize, hidden: usize) -> Scratch {
        Scratch {
            normed: vec![0.0; n * d],
            qkv: vec![0.0; n * 3 * d],
            attended: vec![0.0; n * d],
            probs: vec![0.0; n * n],
            hidden: vec![0.0; n * hidden],
        }
    }
}
