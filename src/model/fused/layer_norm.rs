//! LayerNorm over the last dimension, forward and backward in one pass over the rows.

use super::*;

/// Layer normalisation over the last dimension of `x`, scaled by `weight` and
/// shifted by `bias` (PyTorch's `LayerNorm` with biased variance).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(weight, bias, LayerNormOp { eps: eps as f32 })
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let (x, w, b) = inputs3((xs, xl), (ws, wl), (bs, bl), "layer norm")?;
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROW_BLOCK)
            .zip(x.par_chunks(d * ROW_BLOCK))
            .for_each(|(out, x)| layer_norm_rows(x, w, b, self.eps, out));
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = weight.elem_count();
        let (dx, dw, db) = with_data3(x, weight, grad, |x, w, g| {
            let mut dx = vec![0f32; x.len()];
            let (dw, db) = dx
                .par_chunks_mut(d * ROW_BLOCK)
                .zip(x.par_chunks(d * ROW_BLOCK).zip(g.par_chunks(d * ROW_BLOCK)))
                .map(|(dx, (x, g))| {
                    let (mut dw, mut db, mut xhat) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
                    layer_norm_backward_rows(x, w, g, self.eps, dx, &mut dw, &mut db, &mut xhat);
                    (dw, db)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .fold((vec![0f32; d], vec![0f32; d]), add_pairs);
            Ok((dx, dw, db))
        })?;
        let wshape = weight.shape();
        Ok((Some(cpu_tensor(dx, x.shape())?), Some(cpu_tensor(dw, wshape)?), Some(cpu_tensor(db, wshape)?)))
    }
}
