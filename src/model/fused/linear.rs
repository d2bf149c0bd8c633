//! A linear layer with its bias (and optionally exact GELU) applied in the matrix
//! product's epilogue; the backward pass reuses the saved pre-activation.

use super::*;

/// What follows the matrix product and bias in [`linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: `x W^T + b`.
    Identity,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
}

/// `act(x W^T + b)` over the last dimension of `x`: one matrix product with the
/// bias and activation applied as it is written.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, activation: Activation) -> Result<Tensor> {
    let save = x.track_op() || weight.track_op() || bias.track_op();
    x.contiguous()?.apply_op3(weight, bias, LinearOp { activation, save, pre_activation: Mutex::new(None) })
}

struct LinearOp {
    activation: Activation,
    /// Keep what the backward pass needs (only when a gradient can be asked for).
    save: bool,
    /// `x W^T + b` before GELU, kept for the backward pass.
    pre_activation: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
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
        let (x, w, b) = inputs3((xs, xl), (ws, wl), (bs, bl), "linear")?;
        let (out_dim, in_dim) = wl.shape().dims2()?;
        let dims = xl.shape().dims();
        if dims.last() != Some(&in_dim) || b.len() != out_dim {
            candle_core::bail!("fused linear: input {:?}, weight {:?}, bias {}", dims, (out_dim, in_dim), b.len());
        }
        let mut out = vec![0f32; x.len() / in_dim * out_dim];
        affine_rows(x, w, b, &mut out, None, threads());
        if self.activation == Activation::Gelu {
            if self.save {
                let mut activated = vec![0f32; out.len()];
                activated.par_chunks_mut(1 << 14).zip(out.par_chunks(1 << 14)).for_each(|(a, p)| gelu_into(p, a));
                *self.pre_activation.lock().expect("pre-activation lock") =
                    Some(std::mem::replace(&mut out, activated));
            } else {
                out.par_chunks_mut(1 << 14).for_each(gelu_in_place);
            }
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank >= 1") = out_dim;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The gradient at the product: grad itself, or grad * gelu'(pre) (a new buffer).
        let grad = grad.contiguous()?;
        let scaled = match self.activation {
            Activation::Identity => None,
            Activation::Gelu => {
                let pre = self.pre_activation.lock().expect("pre-activation lock");
                let pre =
                    pre.as_ref().ok_or_else(|| candle_core::Error::Msg("fused linear: no saved forward".into()))?;
                let mut g = with_data(&grad, |g| Ok(g.to_vec()))?;
                g.par_chunks_mut(1 << 14).zip(pre.par_chunks(1 << 14)).for_each(|(g, p)| gelu_backward_in_place(g, p));
                Some(cpu_tensor(g, grad.shape())?)
            }
        };
        let grad = scaled.unwrap_or(grad);
        with_data(&grad, |g| self.backward_products(x, weight, bias, g))
    }
}

impl LinearOp {
    /// Gradients of x, W and b from the gradient `g` at `x W^T + b`.
    fn backward_products(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        g: &[f32],
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out_dim, in_dim) = weight.dims2()?;
        let rows = g.len() / out_dim;
        let db = g
            .par_chunks(out_dim * ROW_BLOCK)
            .map(|block| {
                let mut acc = vec![0f32; out_dim];
                add_rows(&mut acc, block);
                acc
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0f32; out_dim], add_into);
        let (dx, dw) = with_data(x, |x| {
            with_data(weight, |w| {
                let mut dx = vec![0f32; rows * in_dim];
                let mut dw = vec![0f32; out_dim * in_dim];
                input_gradient(g, w, out_dim, &mut dx, threads());
                weight_gradient(g, x, out_dim, &mut dw, false, threads());
                Ok((dx, dw))
            })
        })?;
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(dw, weight.shape())?),
            Some(cpu_tensor(db, bias.shape())?),
        ))
    }
}
