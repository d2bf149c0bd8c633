//! Differentiable transformer building blocks, each with `new(cfg, vb)` and
//! `forward`, named so that `vb.pp(..)` paths are the checkpoint keys.
//!
//! Shapes: tokens are `[B, N, D]` (batch, tokens, embedding).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::device::bf16_products;
use super::fused::{self, Activation};
use super::ops::{add_bias, bias_gelu, normalise_last_dim, scale_shift, softmax_last_dim};

/// Weight initialisations, recorded in each parameter's hint and applied by
/// [`super::mae::init_weights`] with a seeded generator (candle's CPU generator
/// cannot be seeded).
pub const ZERO: Init = Init::Const(0.0);
/// LayerNorm scale starts at one.
pub const ONE: Init = Init::Const(1.0);

/// Layer normalisation over the last dimension: the fused kernel where it
/// applies, else differentiable composed ops (candle's own fused LayerNorm
/// drops gradients).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// `weight` (ones) and `bias` (zeros) of size `dim`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", ONE)?,
            bias: vb.get_with_hints(dim, "bias", ZERO)?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::applies_to(x) {
            return fused::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        scale_shift(&normalise_last_dim(x, self.eps)?, &self.weight, &self.bias)
    }
}

/// The matrix product `a b` of the composed path, in bf16 when this thread asked
/// for bf16 products (`--precision bf16`; see [`in_product_precision`]).
pub(crate) fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    in_product_precision(a, b, |a, b| a.matmul(b))
}

/// `op(a, b)` (a product or a convolution) as this thread asked: in f32, or,
/// with bf16 products, with both operands cast to bf16, the sums accumulated in
/// f32 (cuBLAS), the result stored as bf16 and widened back to f32: the layers
/// around it and the master weights stay f32, and gradients pass through the
/// casts (candle differentiates `to_dtype`), so the backward products are bf16
/// too. candle's CPU products have no bf16, so there the same arithmetic runs in
/// f32 on the rounded operands, which lets the CPU tests check this path.
fn in_product_precision(a: &Tensor, b: &Tensor, op: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if !bf16_products() || a.dtype() != DType::F32 {
        return op(a, b);
    }
    let (a, b) = (a.to_dtype(DType::BF16)?, b.to_dtype(DType::BF16)?);
    let y = if a.device().is_cpu() {
        op(&a.to_dtype(DType::F32)?, &b.to_dtype(DType::F32)?)?.to_dtype(DType::BF16)?
    } else {
        op(&a, &b)?
    };
    y.to_dtype(DType::F32)
}

/// `y = x W^T + b`, weights xavier-uniform, bias zero (MAE's initialisation).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// A `[in_dim] -> [out_dim]` layer.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let bound = (6.0 / (in_dim + out_dim) as f64).sqrt();
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", Init::Uniform { lo: -bound, up: bound })?;
        Ok(Linear { weight, bias: vb.get_with_hints(out_dim, "bias", ZERO)? })
    }
}

impl Linear {
    /// `act(x W^T + b)`, with the bias and activation fused into the product
    /// where the fused kernels apply.
    pub fn forward_with(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        if fused::applies_to(x) {
            return fused::linear(x, &self.weight, &self.bias, activation);
        }
        // CUDA's matmul takes only contiguous rows (the CLS token is a strided view).
        let x = x.contiguous()?;
        let w = self.weight.t()?;
        let in_dim = w.dim(0)?;
        let rows = x.elem_count() / in_dim;
        let y = product(&x.reshape((rows, in_dim))?, &w)?;
        let y = match activation {
            Activation::Identity => add_bias(&y, &self.bias)?,
            Activation::Gelu => bias_gelu(&y, &self.bias)?,
        };
        let mut out_dims = x.dims().to_vec();
        *out_dims.last_mut().expect("a linear layer's input has a last dimension") = w.dim(1)?;
        y.reshape(out_dims)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Activation::Identity)
    }
}

/// A 2-D convolution with a square kernel, stride 1 and "same" zero padding:
/// `[B, C_in, H, W] -> [B, C_out, H, W]` (weights `[C_out, C_in, k, k]`).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
}

impl Conv2d {
    /// A `k x k` convolution (k odd), initialised as PyTorch's `nn.Conv2d`.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((in_channels * kernel * kernel) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        Ok(Conv2d {
            weight: vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?,
            bias: vb.get_with_hints(out_channels, "bias", ZERO)?,
            padding: kernel / 2,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::applies_to(x) {
            return fused::conv2d_same(x, &self.weight, &self.bias);
        }
        let y = in_product_precision(x, &self.weight, |x, w| x.conv2d(w, self.padding, 1, 1, 1))?;
        y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
}

/// PyTorch's `pixel_shuffle`: `[B, C r^2, H, W] -> [B, C, H r, W r]`.
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let c_out = c / (r * r);
    x.reshape((b, c_out, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?.reshape((b, c_out, h * r, w * r))
}

/// Multi-head self-attention, from candle's composed ops: where the fused
/// kernels apply, blocks run attention inside the whole-block op instead.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl Attention {
    pub(crate) fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Attention {
            qkv: Linear::new(dim, 3 * dim, vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, vb.pp("proj"))?,
            num_heads,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let h = self.num_heads;
        let qkv = self.qkv.forward(x)?;
        // [B, N, 3D] -> [3, B, H, N, D/H]
        let qkv = qkv.reshape((b, n, 3, h, d / h))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let scale = 1.0 / ((d / h) as f64).sqrt();
        // Scaling q rather than the scores: a pass over [B, H, N, D/H], not [B, H, N, N].
        let attn = softmax_last_dim(&product(&(q * scale)?, &k.t()?.contiguous()?)?)?;
        // [B, H, N, D/H] -> [B, N, D]
        let out = product(&attn, &v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward(&out)
    }
}

/// Two-layer perceptron with exact (erf) GELU, as PyTorch's default.
#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp { fc1: Linear::new(dim, hidden, vb.pp("fc1"))?, fc2: Linear::new(hidden, dim, vb.pp("fc2"))? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward_with(x, Activation::Gelu)?)
    }
}

/// Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    /// A block of width `dim`, `num_heads` heads and MLP width `mlp_ratio * dim`.
    pub fn new(dim: usize, num_heads: usize, mlp_ratio: f64, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Block {
            norm1: LayerNorm::new(dim, eps, vb.pp("norm1"))?,
            attn: Attention::new(dim, num_heads, vb.pp("attn"))?,
            norm2: LayerNorm::new(dim, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, (dim as f64 * mlp_ratio) as usize, vb.pp("mlp"))?,
        })
    }

    pub(crate) fn weights(&self) -> fused::block::BlockWeights<'_> {
        fn pair(l: &Linear) -> (&Tensor, &Tensor) {
            (&l.weight, &l.bias)
        }
        fused::block::BlockWeights {
            norm1: (&self.norm1.weight, &self.norm1.bias),
            qkv: pair(&self.attn.qkv),
            proj: pair(&self.attn.proj),
            norm2: (&self.norm2.weight, &self.norm2.bias),
            fc1: pair(&self.mlp.fc1),
            fc2: pair(&self.mlp.fc2),
            eps: self.norm1.eps,
            num_heads: self.attn.num_heads,
        }
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::block::applies(x) {
            return fused::block::forward(x, &self.weights());
        }
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// MAE's fixed 2-D sine-cosine positional embedding for a `grid x grid` patch
/// grid, with a leading all-zero row for the CLS token: `[1 + grid^2, dim]`.
pub fn sincos_pos_embed(dim: usize, grid: usize) -> Vec<f32> {
    assert!(dim % 4 == 0, "the embedding width must be a multiple of 4");
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut out = vec![0.0f32; dim]; // CLS
    for row in 0..grid {
        for col in 0..grid {
            // MAE's meshgrid puts the column index (w) first.
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}
