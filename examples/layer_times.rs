//! Where a training step's time goes, at the paper model's shapes (batch x 257
//! tokens x 192, 3 heads, MLP 768): `layer_times [device=cpu] [batch=256] [repeats=5]`
//! prints JSON of milliseconds (best of `repeats`): a classification step split
//! into forward, backward and AdamW (also with the composed ops' AdamW); an MAE
//! step at mask 0.9 split into encoder, decoder, loss, backward and AdamW (both
//! ways); then each layer alone, forward and forward +
//! backward of `sum(y * r)` with respect to its input and parameters; then single
//! kernels on the largest tensors. bench/gpu-check.sh runs it on CUDA, where the
//! layers take candle's composed ops.
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use lensmae::model::fused::{with_kernels, Activation, Kernels};
use lensmae::model::layers::{Block, LayerNorm, Linear};
use lensmae::model::mae::{init_weights, masking_noise, Pooling};
use lensmae::model::ops::{bias_gelu, softmax_last_dim};
use lensmae::model::{Mae, MaeConfig, VitClassifier};
use lensmae::train::optim::AdamW;
use rand::SeedableRng;
use std::time::Instant;

fn best_ms(dev: &Device, repeats: usize, f: &mut dyn FnMut()) -> f64 {
    f(); // warm-up (kernel loading, allocator pools)
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        dev.synchronize().unwrap();
        let t = Instant::now();
        f();
        dev.synchronize().unwrap();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

/// Forward and forward + backward times of `f` on a fresh input of `dims`.
fn layer(
    dev: &Device,
    repeats: usize,
    dims: &[usize],
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> serde_json::Value {
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, dims, dev).unwrap()).unwrap();
    let y = f(x.as_tensor()).unwrap();
    let r = Tensor::randn(0f32, 1.0, y.dims(), dev).unwrap();
    let forward = best_ms(dev, repeats, &mut || {
        f(x.as_tensor()).unwrap();
    });
    let both = best_ms(dev, repeats, &mut || {
        (f(x.as_tensor()).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
    });
    serde_json::json!({"forward": forward, "forward_backward": both})
}

/// The model's variables set to their initial values, and an AdamW over them.
fn initialised_optimiser(vars: &VarMap) -> candle_core::Result<AdamW> {
    init_weights(vars, 0)?;
    let named = vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    AdamW::new(named, 0.9, 0.999, 0.05)
}

/// An AdamW step with `kernels` (in place when fused, candle ops when composed).
fn optimiser_ms(dev: &Device, repeats: usize, opt: &mut AdamW, grads: &GradStore, kernels: Kernels) -> f64 {
    best_ms(dev, repeats, &mut || with_kernels(kernels, || opt.step(grads, 1e-4, f64::INFINITY)).unwrap())
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("cpu", |s| s.as_str());
    let batch: usize = args.get(2).map_or(256, |s| s.parse().expect("batch"));
    let repeats: usize = args.get(3).map_or(5, |s| s.parse().expect("repeats"));
    let dev = lensmae::model::device::open_device(spec, lensmae::model::device::Precision::F32).expect("device");
    let (n, d, heads, hidden) = (257, 192, 3, 768);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let block = Block::new(d, heads, 4.0, 1e-6, vb.pp("block"))?;
    let norm = LayerNorm::new(d, 1e-6, vb.pp("norm"))?;
    let qkv = Linear::new(d, 3 * d, vb.pp("qkv"))?;
    let fc1 = Linear::new(d, hidden, vb.pp("fc1"))?;
    let fc2 = Linear::new(hidden, d, vb.pp("fc2"))?;
    let tokens = [batch, n, d];
    let scores = [batch, heads, n, n];
    let mut out = serde_json::json!({"device": lensmae::model::device::device_name(&dev), "batch": batch});

    // The whole classification step of the paper's model.
    let cfg = MaeConfig::paper_64();
    let clf_vars = VarMap::new();
    let clf = VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, VarBuilder::from_varmap(&clf_vars, DType::F32, &dev))?;
    let mut opt = initialised_optimiser(&clf_vars)?;
    let imgs = Tensor::rand(0f32, 1.0, (batch, 1, 64, 64), &dev)?;
    let labels = Tensor::from_vec((0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(), batch, &dev)?;
    let loss = || candle_nn::loss::cross_entropy(&clf.forward(&imgs, Some(0)).unwrap(), &labels).unwrap();
    let (step_loss, step_grads) = {
        let l = loss();
        let g = l.backward()?;
        (l, g)
    };
    out["classify_step"] = serde_json::json!({
        "forward": best_ms(&dev, repeats, &mut || drop(loss())),
        "backward": best_ms(&dev, repeats, &mut || drop(step_loss.backward().unwrap())),
        "optimiser": optimiser_ms(&dev, repeats, &mut opt, &step_grads, Kernels::Fused),
        "optimiser_composed": optimiser_ms(&dev, repeats, &mut opt, &step_grads, Kernels::Composed),
    });
    // The MAE step at mask 0.9, part by part (the same noise every time).
    let mae_vars = VarMap::new();
    let mae = Mae::new(&cfg, VarBuilder::from_varmap(&mae_vars, DType::F32, &dev))?;
    let mut mae_opt = initialised_optimiser(&mae_vars)?;
    let noise = masking_noise(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0), batch, cfg.num_patches(), &dev)?;
    let (latent, mask, ids_restore) = mae.forward_encoder(&imgs, 0.9, &noise)?;
    let pred = mae.forward_decoder(&latent, &ids_restore)?;
    let mae_loss = mae.forward_loss(&imgs, &pred, &mask)?;
    let mae_grads = mae_loss.backward()?;
    out["mae_step_090"] = serde_json::json!({
        "encoder": best_ms(&dev, repeats, &mut || drop(mae.forward_encoder(&imgs, 0.9, &noise).unwrap())),
        "decoder": best_ms(&dev, repeats, &mut || drop(mae.forward_decoder(&latent, &ids_restore).unwrap())),
        "loss": best_ms(&dev, repeats, &mut || drop(mae.forward_loss(&imgs, &pred, &mask).unwrap())),
        "backward": best_ms(&dev, repeats, &mut || drop(mae_loss.backward().unwrap())),
        "optimiser": optimiser_ms(&dev, repeats, &mut mae_opt, &mae_grads, Kernels::Fused),
        "optimiser_composed": optimiser_ms(&dev, repeats, &mut mae_opt, &mae_grads, Kernels::Composed),
    });
    out["block"] = layer(&dev, repeats, &tokens, &|x| block.forward(x));
    out["layer_norm"] = layer(&dev, repeats, &tokens, &|x| norm.forward(x));
    out["linear_qkv"] = layer(&dev, repeats, &tokens, &|x| qkv.forward(x));
    out["linear_fc1_gelu"] = layer(&dev, repeats, &tokens, &|x| fc1.forward_with(x, Activation::Gelu));
    out["linear_fc2"] = layer(&dev, repeats, &[batch, n, hidden], &|x| fc2.forward(x));
    let zero_bias = Tensor::zeros(hidden, DType::F32, &dev)?;
    out["gelu_erf"] = layer(&dev, repeats, &[batch * n, hidden], &|x| bias_gelu(x, &zero_bias));
    // candle's own, differentiated by its element-wise ops (the layers' op before 2026-12-04).
    out["gelu_erf_candle"] = layer(&dev, repeats, &[batch * n, hidden], &|x| x.gelu_erf());
    out["softmax"] = layer(&dev, repeats, &scores, &|x| softmax_last_dim(x));
    // Attention's core, as layers::Attention runs it after the qkv product.
    out["attention_core"] = layer(&dev, repeats, &[batch, n, 3 * d], &|x| {
        let qkv = x.reshape((batch, n, 3, heads, d / heads))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let p = softmax_last_dim(&(q.matmul(&k.t()?.contiguous()?)? * 0.125)?)?;
        p.matmul(&v)?.transpose(1, 2)?.reshape((batch, n, d))
    });
    // Single kernels on the largest tensors.
    let big = Tensor::randn(0f32, 1.0, (batch * n, hidden), &dev)?;
    let ones_row = Tensor::ones((1, batch * n), DType::F32, &dev)?;
    let row = Tensor::randn(0f32, 1.0, hidden, &dev)?;
    let permuted = Tensor::randn(0f32, 1.0, (batch, n, 3, heads, d / heads), &dev)?;
    let s = Tensor::randn(0f32, 1.0, &scores, &dev)?;
    let (narrow, w1) = (Tensor::randn(0f32, 1.0, (batch * n, d), &dev)?, Tensor::randn(0f32, 1.0, (d, hidden), &dev)?);
    type Kernel<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let kernels: Vec<Kernel> = vec![
        ("add_contiguous", Box::new(|| drop((&big + &big).unwrap()))),
        ("add_broadcast_row", Box::new(|| drop(big.broadcast_add(&row).unwrap()))),
        ("mul_scalar", Box::new(|| drop((&big * 0.5).unwrap()))),
        ("gelu_erf_forward", Box::new(|| drop(big.gelu_erf().unwrap()))),
        ("sum_last_dim", Box::new(|| drop(big.sum_keepdim(D::Minus1).unwrap()))),
        ("sum_rows", Box::new(|| drop(big.sum_keepdim(0).unwrap()))),
        ("sum_rows_as_ones_product", Box::new(|| drop(ones_row.matmul(&big).unwrap()))),
        ("copy_permuted", Box::new(|| drop(permuted.permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap()))),
        ("softmax_kernel", Box::new(|| drop(candle_nn::ops::softmax_last_dim(&s).unwrap()))),
        ("matmul_fc1", Box::new(|| drop(narrow.matmul(&w1).unwrap()))),
        ("zeros_like", Box::new(|| drop(big.zeros_like().unwrap()))),
    ];
    for (name, f) in kernels {
        out["kernels"][name] = best_ms(&dev, repeats, &mut || f()).into();
    }
    println!("{out}");
    Ok(())
}
