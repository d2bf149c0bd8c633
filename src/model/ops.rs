//! Softmax, normalisation over the last dimension and exact GELU for the
//! composed path (CUDA, and the CPU wherever the fused kernels do not apply), as
//! candle custom ops whose forward and analytic backward passes are one kernel
//! each: `ops.cu` on CUDA (compiled to PTX by `build.rs`), a plain loop on the CPU.
//!
//! Why: candle's softmax and LayerNorm kernels have no backward pass (gradients
//! silently stop), and its GELU backward is about a dozen element-wise kernels.
//! Composed from differentiable primitives, these three were 10, 4.5 and 10 ms of
//! a paper-sized block's 29.8 ms forward + backward on an H200, most of a
//! training step (BENCHMARKS.md, 2026-11-27). The CPU loops are the twins the
//! tests check the formulas with; `examples/device_parity.rs` checks the kernels
//! against the CPU on a GPU host.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::fused::{contiguous_f32, gelu, gelu_derivative};

/// Softmax over the last dimension; its backward pass is `dx = y (g - sum(g y))`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(RowOp::Softmax)
}

/// `(x - mean) / sqrt(var + eps)` over the last dimension (LayerNorm with unit
/// scale and zero shift); its backward pass is
/// `dx = (g - mean(g) - y mean(g y)) / sqrt(var + eps)`.
pub fn normalise_last_dim(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(RowOp::Normalise { eps: eps as f32 })
}

/// Exact GELU, `x Phi(x)` (PyTorch's default); its backward pass is
/// `dx = g (Phi(x) + x phi(x))`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// An op over each row of the last dimension.
#[derive(Clone, Copy)]
enum RowOp {
    Softmax,
    Normalise { eps: f32 },
}

/// The backward pass of a [`RowOp`], from its input `x`, output `y` and the
/// output's gradient `g`.
struct RowOpBackward(RowOp);

/// Exact GELU, elementwise.
struct Gelu;

/// GELU's backward pass, from its input `x` and the output's gradient `g`.
struct GeluBackward;

fn last_dim(layout: &Layout) -> Result<usize> {
    match layout.dims().last() {
        Some(&cols) => Ok(cols),
        None => candle_core::bail!("row op: a scalar has no last dimension"),
    }
}

fn same_shape(a: &Layout, b: &Layout, what: &str) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        candle_core::bail!("{what}: shapes differ, {:?} and {:?}", a.shape(), b.shape())
    }
}

fn softmax_row(x: &[f32], y: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - max).exp();
        sum += *y;
    }
    y.iter_mut().for_each(|y| *y /= sum);
}

/// The row's mean and `1 / sqrt(var + eps)`, two passes as the kernel does.
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp1 for RowOp {
    fn name(&self) -> &'static str {
        match self {
            RowOp::Softmax => "softmax-last-dim",
            RowOp::Normalise { .. } => "normalise-last-dim",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let cols = last_dim(layout)?;
        let mut y = vec![0f32; x.len()];
        for (x, y) in x.chunks_exact(cols.max(1)).zip(y.chunks_exact_mut(cols.max(1))) {
            match *self {
                RowOp::Softmax => softmax_row(x, y),
                RowOp::Normalise { eps } => {
                    let (mean, inv_std) = moments(x, eps);
                    y.iter_mut().zip(x).for_each(|(y, x)| *y = (x - mean) * inv_std);
                }
            }
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, x: &candle_core::CudaStorage, layout: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (kernel, eps) = match *self {
            RowOp::Softmax => ("lensmae_softmax_forward", None),
            RowOp::Normalise { eps } => ("lensmae_normalise_forward", Some(eps)),
        };
        let y = cuda::launch_rows(kernel, &[(x, layout)], last_dim(layout)?, eps)?;
        Ok((y, layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op3_no_bwd(y, &g.contiguous()?, &RowOpBackward(*self))?))
    }
}

impl CustomOp3 for RowOpBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            RowOp::Softmax => "softmax-last-dim-backward",
            RowOp::Normalise { .. } => "normalise-last-dim-backward",
        }
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        y: &CpuStorage,
        y_layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(x_layout, y_layout, self.name())?;
        same_shape(x_layout, g_layout, self.name())?;
        let x = contiguous_f32(x, x_layout, self.name())?;
        let y = contiguous_f32(y, y_layout, self.name())?;
        let g = contiguous_f32(g, g_layout, self.name())?;
        let cols = last_dim(x_layout)?.max(1);
        let mut dx = vec![0f32; x.len()];
        let rows = x.chunks_exact(cols).zip(y.chunks_exact(cols)).zip(g.chunks_exact(cols));
        for (((x, y), g), dx) in rows.zip(dx.chunks_exact_mut(cols)) {
            match self.0 {
                RowOp::Softmax => {
                    let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
                    dx.iter_mut().zip(g.iter().zip(y)).for_each(|(dx, (g, y))| *dx = y * (g - dot));
                }
                RowOp::Normalise { eps } => {
                    let (_, inv_std) = moments(x, eps);
                    let n = cols as f32;
                    let g_mean = g.iter().sum::<f32>() / n;
                    let gy_mean = g.iter().zip(y).map(|(g, y)| g * y).sum::<f32>() / n;
                    for (dx, (g, y)) in dx.iter_mut().zip(g.iter().zip(y)) {
                        *dx = (g - g_mean - y * gy_mean) * inv_std;
                    }
                }
            }
        }
        Ok((CpuStorage::F32(dx), x_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        y: &candle_core::CudaStorage,
        y_layout: &Layout,
        g: &candle_core::CudaStorage,
        g_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        same_shape(x_layout, y_layout, self.name())?;
        same_shape(x_layout, g_layout, self.name())?;
        let cols = last_dim(x_layout)?;
        let dx = match self.0 {
            RowOp::Softmax => {
                cuda::launch_rows("lensmae_softmax_backward", &[(y, y_layout), (g, g_layout)], cols, None)?
            }
            RowOp::Normalise { eps } => cuda::launch_rows(
                "lensmae_normalise_backward",
                &[(x, x_layout), (y, y_layout), (g, g_layout)],
                cols,
                Some(eps),
            )?,
        };
        Ok((dx, x_layout.shape().clone()))
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        Ok((CpuStorage::F32(x.iter().map(|&x| gelu(x)).collect()), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, x: &candle_core::CudaStorage, layout: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((cuda::launch_elementwise("lensmae_gelu_forward", &[(x, layout)], &[])?, layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluBackward)?))
    }
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-erf-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(x_layout, g_layout, self.name())?;
        let x = contiguous_f32(x, x_layout, self.name())?;
        let g = contiguous_f32(g, g_layout, self.name())?;
        let dx = x.iter().zip(g).map(|(&x, g)| g * gelu_derivative(x)).collect();
        Ok((CpuStorage::F32(dx), x_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        g: &candle_core::CudaStorage,
        g_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        same_shape(x_layout, g_layout, self.name())?;
        let dx = cuda::launch_elementwise("lensmae_gelu_backward", &[(x, x_layout), (g, g_layout)], &[])?;
        Ok((dx, x_layout.shape().clone()))
    }
}

/// Launching `ops.cu`'s kernels: every input an f32 contiguous view, the output
/// a fresh buffer of the first input's size, the kernel's arguments the inputs,
/// the output, then the sizes (and `eps` where given).
#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Result};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/ops.ptx"));
    /// Must match `ROWS_PER_BLOCK` in `ops.cu`.
    const ROWS_PER_BLOCK: usize = 8;
    const THREADS: u32 = 256;

    fn view<'a>(storage: &'a CudaStorage, layout: &Layout, kernel: &str) -> Result<CudaView<'a, f32>> {
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok(storage.as_cuda_slice::<f32>()?.slice(start..end)),
            None => candle_core::bail!("{kernel}: input must be contiguous"),
        }
    }

    /// A kernel's scalar arguments, after its tensors (`size_t`, `unsigned`, `float`).
    #[derive(Clone, Copy)]
    pub(super) enum Scalar {
        Size(usize),
        Count(u32),
        Float(f32),
    }

    fn launch(
        kernel: &str,
        inputs: &[(&CudaStorage, &Layout)],
        config: LaunchConfig,
        scalars: &[Scalar],
    ) -> Result<CudaStorage> {
        let (first, first_layout) = inputs[0];
        let dev = first.device.clone();
        let n = first_layout.shape().elem_count();
        let views = inputs.iter().map(|(s, l)| view(s, l, kernel)).collect::<Result<Vec<_>>>()?;
        // SAFETY: every element is written by the kernel before it is read.
        let mut out = unsafe { dev.alloc::<f32>(n)? };
        if n > 0 {
            let func = dev.get_or_load_custom_func(kernel, "lensmae_ops", PTX)?;
            let mut builder = func.builder();
            for v in &views {
                builder.arg(v);
            }
            builder.arg(&mut out);
            for scalar in scalars {
                match scalar {
                    Scalar::Size(v) => builder.arg(v),
                    Scalar::Count(v) => builder.arg(v),
                    Scalar::Float(v) => builder.arg(v),
                };
            }
            // SAFETY: the argument list matches the kernel's signature in ops.cu.
            unsafe { builder.launch(config) }.w()?;
        }
        Ok(CudaStorage::wrap_cuda_slice(out, dev))
    }

    /// A row kernel: `(inputs..., out, size_t rows, unsigned cols[, float eps])`.
    pub(super) fn launch_rows(
        kernel: &str,
        inputs: &[(&CudaStorage, &Layout)],
        cols: usize,
        eps: Option<f32>,
    ) -> Result<CudaStorage> {
        let n = inputs[0].1.shape().elem_count();
        let rows = n.checked_div(cols).unwrap_or(0);
        let blocks = u32::try_from(rows.div_ceil(ROWS_PER_BLOCK)).ok().filter(|_| u32::try_from(cols).is_ok());
        let Some(blocks) = blocks else { candle_core::bail!("{kernel}: {rows} rows of {cols} exceed a launch") };
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (ROWS_PER_BLOCK as u32 * 32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut scalars = vec![Scalar::Size(rows), Scalar::Count(cols as u32)];
        scalars.extend(eps.map(Scalar::Float));
        launch(kernel, inputs, config, &scalars)
    }

    /// An element-wise kernel with a grid-stride loop: `(inputs..., out, size_t n[, extra...])`.
    pub(super) fn launch_elementwise(
        kernel: &str,
        inputs: &[(&CudaStorage, &Layout)],
        extra: &[Scalar],
    ) -> Result<CudaStorage> {
        let n = inputs[0].1.shape().elem_count();
        // Enough blocks to fill the card many times over; the loop takes the rest.
        let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
        let config = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut scalars = vec![Scalar::Size(n)];
        scalars.extend_from_slice(extra);
        launch(kernel, inputs, config, &scalars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// ||a - b|| / ||b||
    fn rel(a: &Tensor, b: &Tensor) -> f32 {
        let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
        norm(&(a - b).unwrap()) / norm(b)
    }

    /// The gradient of `sum(y * r)` with respect to `x`.
    fn grad_of(y: &Tensor, r: &Tensor, x: &Var) -> Tensor {
        (y * r).unwrap().sum_all().unwrap().backward().unwrap().get(x).unwrap().clone()
    }

    #[test]
    fn softmax_with_gradient_matches_the_composed_softmax() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (2, 3, 5, 7), &dev).unwrap())).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &dev).unwrap();
        let composed = {
            let max = x.max_keepdim(D::Minus1).unwrap().detach();
            let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
            e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
        };
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        assert!(rel(&ours, &composed) < 1e-6);
        let (go, gc) = (grad_of(&ours, &r, &x), grad_of(&composed, &r, &x));
        assert!(gc.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3);
        assert!(rel(&go, &gc) < 1e-5, "gradients differ by {}", rel(&go, &gc));
        // A strided (transposed) input is fine (made contiguous first).
        let t = x.as_tensor().transpose(2, 3).unwrap();
        assert_eq!(softmax_last_dim(&t).unwrap().dims(), &[2, 3, 7, 5]);
    }

    #[test]
    fn normalisation_with_gradient_matches_the_composed_one() {
        let dev = Device::Cpu;
        // An offset and a spread per row, as a residual stream has.
        let raw = (Tensor::randn(0f32, 1.0, (4, 6, 48), &dev).unwrap() * 2.5).unwrap();
        let x = Var::from_tensor(&(raw + 3.0).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (4, 6, 48), &dev).unwrap();
        let eps = 1e-6;
        let composed = {
            let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap()).unwrap();
            let var = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            centered.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap()
        };
        let ours = normalise_last_dim(x.as_tensor(), eps).unwrap();
        assert!(rel(&ours, &composed) < 1e-5, "values differ by {}", rel(&ours, &composed));
        let (go, gc) = (grad_of(&ours, &r, &x), grad_of(&composed, &r, &x));
        assert!(rel(&go, &gc) < 1e-5, "gradients differ by {}", rel(&go, &gc));
    }

    #[test]
    fn gelu_with_gradient_matches_candles_exact_gelu() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (3, 5, 64), &dev).unwrap())).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 5, 64), &dev).unwrap();
        let (ours, candles) = (gelu_erf(x.as_tensor()).unwrap(), x.as_tensor().gelu_erf().unwrap());
        assert!(rel(&ours, &candles) < 1e-6, "values differ by {}", rel(&ours, &candles));
        let (go, gc) = (grad_of(&ours, &r, &x), grad_of(&candles, &r, &x));
        assert!(rel(&go, &gc) < 1e-5, "gradients differ by {}", rel(&go, &gc));
    }

    #[test]
    fn a_gradient_of_another_shape_is_refused() {
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(x.apply_op2_no_bwd(&g, &GeluBackward).is_err());
    }
}
