//! Softmax, normalisation over the last dimension, a bias added to rows (alone or
//! under exact GELU) and LayerNorm's scale and shift for the composed path (CUDA,
//! and the CPU wherever the fused kernels do not apply), as candle custom ops whose
//! forward and analytic backward passes are one kernel each: `ops.cu` on CUDA
//! (compiled to PTX by `build.rs`), a plain loop on the CPU.
//!
//! Why: candle's softmax and LayerNorm kernels have no backward pass (gradients
//! silently stop), its GELU backward is about a dozen element-wise kernels, and a
//! bias broadcast over rows was materialised. Composed from differentiable
//! primitives, softmax, LayerNorm and GELU were 10, 4.5 and 10 ms of a paper-sized
//! block's 29.8 ms forward + backward on an H200, most of a training step
//! (BENCHMARKS.md, 2026-11-27). The CPU loops are the twins the tests check the
//! formulas with; `tests/it/cuda_kernels.rs` runs the kernels' source under a CPU
//! warp emulation, and `examples/device_parity.rs` checks them against the CPU on a
//! GPU host.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::fused::{contiguous_f32, dot, gelu, gelu_derivative, moments, softmax_rows, sum};

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

/// `a + bias` over the last dimension (`bias` is `[cols]`, `a` is `[.., cols]`).
/// The bias's gradient is the product `ones^T g` (a cuBLAS call on CUDA, where
/// candle reduces a column per thread block, reading `g` column-wise).
pub fn add_bias(a: &Tensor, bias: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&bias.contiguous()?, Rowwise::AddBias)
}

/// Exact GELU (PyTorch's default, `x Phi(x)`) of `a + bias`, `bias` as in
/// [`add_bias`]; its backward pass is `dz = g (Phi(z) + z phi(z))`, `z = a + bias`,
/// the gradient of `a`, and summed over rows that of `bias`.
pub fn bias_gelu(a: &Tensor, bias: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&bias.contiguous()?, Rowwise::BiasGelu)
}

/// `a * weight + bias` over the last dimension (LayerNorm's scale and shift, both
/// `[cols]`); the gradients are `g weight` and, summed over rows, `g a` and `g`.
pub fn scale_shift(a: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Rowwise::ScaleShift)
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

/// An element-wise op over a `[.., cols]` tensor (the first input) and `[cols]`
/// vectors applied to every row; `BiasGeluBackward` takes a third input of the
/// first one's shape, the output's gradient.
#[derive(Clone, Copy)]
enum Rowwise {
    /// `a + b[c]`
    AddBias,
    /// `gelu(a + b[c])`
    BiasGelu,
    /// `g gelu'(a + b[c])`, inputs `(a, b, g)`
    BiasGeluBackward,
    /// `a w[c] + b[c]`, inputs `(a, w, b)`
    ScaleShift,
    /// `g w[c]`, [`Rowwise::ScaleShift`]'s `da`
    Scale,
}

/// The sums over all leading dimensions, `[cols]`: the product `ones^T t`.
fn column_sums(t: &Tensor) -> Result<Tensor> {
    let cols = t.dim(candle_core::D::Minus1)?;
    let rows = t.elem_count() / cols.max(1);
    Tensor::ones((1, rows), t.dtype(), t.device())?.matmul(&t.reshape((rows, cols))?)?.reshape(cols)
}

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
        let mut y = x.to_vec();
        match *self {
            RowOp::Softmax => softmax_rows(&mut y, cols.max(1)),
            RowOp::Normalise { eps } => {
                for (x, y) in x.chunks_exact(cols.max(1)).zip(y.chunks_exact_mut(cols.max(1))) {
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
                    let gy = dot(g, y);
                    dx.iter_mut().zip(g.iter().zip(y)).for_each(|(dx, (g, y))| *dx = y * (g - gy));
                }
                RowOp::Normalise { eps } => {
                    let (_, inv_std) = moments(x, eps);
                    let n = cols as f32;
                    let g_mean = sum(g) / n;
                    let gy_mean = dot(g, y) / n;
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

impl Rowwise {
    fn name(self) -> &'static str {
        match self {
            Rowwise::AddBias => "add-bias",
            Rowwise::BiasGelu => "bias-gelu",
            Rowwise::BiasGeluBackward => "bias-gelu-backward",
            Rowwise::ScaleShift => "scale-shift",
            Rowwise::Scale => "scale-rows",
        }
    }

    /// Whether input `k` is a `[cols]` vector (else it has the first input's shape).
    fn is_vector(self, k: usize) -> bool {
        k > 0 && !matches!((self, k), (Rowwise::BiasGeluBackward, 2))
    }

    /// The rows' width, once every input's shape is checked.
    fn cols(self, layouts: &[&Layout]) -> Result<usize> {
        let cols = last_dim(layouts[0])?;
        for (k, layout) in layouts.iter().enumerate().skip(1) {
            if self.is_vector(k) && layout.dims() != [cols] {
                candle_core::bail!("{}: a vector of {:?} for rows of {cols}", self.name(), layout.dims())
            }
            if !self.is_vector(k) {
                same_shape(layouts[0], layout, self.name())?;
            }
        }
        Ok(cols)
    }

    /// Element `i` (in column `c`) from the inputs `x`.
    fn element(self, x: &[&[f32]], i: usize, c: usize) -> f32 {
        match self {
            Rowwise::AddBias => x[0][i] + x[1][c],
            Rowwise::BiasGelu => gelu(x[0][i] + x[1][c]),
            Rowwise::BiasGeluBackward => x[2][i] * gelu_derivative(x[0][i] + x[1][c]),
            Rowwise::ScaleShift => x[0][i] * x[1][c] + x[2][c],
            Rowwise::Scale => x[0][i] * x[1][c],
        }
    }

    fn cpu(self, inputs: &[(&CpuStorage, &Layout)]) -> Result<(CpuStorage, Shape)> {
        let layouts: Vec<&Layout> = inputs.iter().map(|(_, l)| *l).collect();
        let cols = self.cols(&layouts)?.max(1);
        let x = inputs.iter().map(|(s, l)| contiguous_f32(s, l, self.name())).collect::<Result<Vec<_>>>()?;
        let y = (0..x[0].len()).map(|i| self.element(&x, i, i % cols)).collect();
        Ok((CpuStorage::F32(y), layouts[0].shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda(self, inputs: &[(&candle_core::CudaStorage, &Layout)]) -> Result<(candle_core::CudaStorage, Shape)> {
        let layouts: Vec<&Layout> = inputs.iter().map(|(_, l)| *l).collect();
        let cols = cuda::Scalar::cols(self.cols(&layouts)?)?;
        let kernel = match self {
            Rowwise::AddBias => "lensmae_add_bias_forward",
            Rowwise::BiasGelu => "lensmae_bias_gelu_forward",
            Rowwise::BiasGeluBackward => "lensmae_bias_gelu_backward",
            Rowwise::ScaleShift => "lensmae_scale_shift_forward",
            Rowwise::Scale => "lensmae_scale_backward",
        };
        Ok((cuda::launch_elementwise(kernel, inputs, &cols)?, layouts[0].shape().clone()))
    }
}

impl CustomOp2 for Rowwise {
    fn name(&self) -> &'static str {
        Rowwise::name(*self)
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu(&[(a, a_layout), (b, b_layout)])
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        a_layout: &Layout,
        b: &candle_core::CudaStorage,
        b_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda(&[(a, a_layout), (b, b_layout)])
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dz = match self {
            Rowwise::AddBias => g.clone(),
            Rowwise::BiasGelu => a.apply_op3_no_bwd(b, &g.contiguous()?, &Rowwise::BiasGeluBackward)?,
            _ => candle_core::bail!("{}: no backward pass (a backward pass itself)", Rowwise::name(*self)),
        };
        let db = column_sums(&dz)?;
        Ok((Some(dz), Some(db)))
    }
}

impl CustomOp3 for Rowwise {
    fn name(&self) -> &'static str {
        Rowwise::name(*self)
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
        c: &CpuStorage,
        c_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu(&[(a, a_layout), (b, b_layout), (c, c_layout)])
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        a_layout: &Layout,
        b: &candle_core::CudaStorage,
        b_layout: &Layout,
        c: &candle_core::CudaStorage,
        c_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda(&[(a, a_layout), (b, b_layout), (c, c_layout)])
    }

    fn bwd(
        &self,
        a: &Tensor,
        w: &Tensor,
        _: &Tensor,
        _: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Rowwise::ScaleShift = self else {
            candle_core::bail!("{}: no backward pass (a backward pass itself)", Rowwise::name(*self))
        };
        let g = g.contiguous()?;
        let da = g.apply_op2_no_bwd(w, &Rowwise::Scale)?;
        let dw = column_sums(&(&g * a)?)?;
        let db = column_sums(&g)?;
        Ok((Some(da), Some(dw), Some(db)))
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

    impl Scalar {
        /// `unsigned cols`, the element-wise bias kernels' one extra argument.
        pub(super) fn cols(cols: usize) -> Result<[Scalar; 1]> {
            match u32::try_from(cols) {
                Ok(cols) if cols > 0 => Ok([Scalar::Count(cols)]),
                _ => candle_core::bail!("a bias over rows of {cols} cannot be launched"),
            }
        }
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
    use candle_core::{DType, Device, Var, D};

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

    /// The gradients of `sum(y * r)` with respect to each of `vars`.
    fn grads_of(y: &Tensor, r: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
        let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter().map(|v| grads.get(v).expect("every input gets a gradient").clone()).collect()
    }

    /// `ours` and `composed` (of the same `vars`) agree in value and in every gradient.
    fn agree(ours: &Tensor, composed: &Tensor, vars: &[&Var]) {
        assert!(rel(ours, composed) < 1e-6, "values differ by {}", rel(ours, composed));
        let r = Tensor::randn(0f32, 1.0, ours.dims(), ours.device()).unwrap();
        for (i, (go, gc)) in grads_of(ours, &r, vars).iter().zip(grads_of(composed, &r, vars)).enumerate() {
            assert_eq!(go.dims(), gc.dims());
            assert!(rel(go, &gc) < 1e-5, "gradient {i} differs by {}", rel(go, &gc));
        }
    }

    fn var(dims: &[usize], std: f32) -> Var {
        Var::from_tensor(&Tensor::randn(0f32, std, dims, &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn bias_ops_with_gradients_match_candles_composed_ops() {
        let (a, b, w) = (var(&[3, 5, 64], 2.0), var(&[64], 1.0), var(&[64], 1.0));
        let shifted = a.broadcast_add(b.as_tensor()).unwrap();
        agree(&add_bias(&a, &b).unwrap(), &shifted, &[&a, &b]);
        agree(&bias_gelu(&a, &b).unwrap(), &shifted.gelu_erf().unwrap(), &[&a, &b]);
        let scaled = a.broadcast_mul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap();
        agree(&scale_shift(&a, &w, &b).unwrap(), &scaled, &[&a, &w, &b]);
    }

    #[test]
    fn a_bias_of_another_width_is_refused() {
        let (a, b) = (
            Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let err = add_bias(&a, &b).unwrap_err().to_string();
        assert!(err.contains("add-bias") && err.contains("[3]"), "{err}");
        assert!(scale_shift(&a, &b, &b).is_err());
    }

    #[test]
    fn a_gradient_of_another_shape_is_refused() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(x.apply_op3_no_bwd(&x, &g, &RowOpBackward(RowOp::Softmax)).is_err());
    }
}
