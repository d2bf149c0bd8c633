//! Training and inference speed of lensmae's paper-size model on the CPU, as
//! images/s (best of N steps), with the matrix-product work per image and this
//! machine's sgemm rate through the same `gemm` crate the kernels use:
//! `cargo run --release --example model_speed -- [batch] [steps] [only|all] [device] [f32|tf32|bf16]`.
//! Prints JSON; bench/model_bench.sh compares it with the PyTorch twin.
//! `only` runs a single measure (e.g. `classify_train`, for a peak-memory run);
//! `device` is `cpu` (default) or `cuda[:N]` (a `--features cuda` build;
//! bench/gpu-check.sh), where the roofline is cuBLAS's sgemm rate instead.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lensmae::model::mae::{init_weights, masking_noise, Pooling};
use lensmae::model::superres::{shuffle_stages, SuperResolver, SuperresConfig};
use lensmae::model::{Mae, MaeConfig, VitClassifier};
use lensmae::train::optim::AdamW;
use rand::SeedableRng;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Images/s of the fastest of `steps` steps; waits for the device after each
/// step, since CUDA work is queued asynchronously.
fn rate(dev: &Device, batch: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    step(); // warm-up
    dev.synchronize().unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..steps {
        let t = Instant::now();
        step();
        dev.synchronize().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    batch as f64 / best
}

/// Best f32 matrix-product rate (GFLOP/s) of candle on `dev` (cuBLAS on CUDA)
/// on square `size` matrices.
fn device_sgemm_gflops(dev: &Device, size: usize) -> f64 {
    let a = Tensor::rand(0f32, 1.0, (size, size), dev).unwrap();
    let b = Tensor::rand(0f32, 1.0, (size, size), dev).unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        dev.synchronize().unwrap();
        let t = Instant::now();
        let _c = a.matmul(&b).unwrap();
        dev.synchronize().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (size as f64).powi(3) / best / 1e9
}

/// Floating-point operations (a multiply-add is 2) of the matrix products of
/// `depth` pre-norm blocks of width `dim` over `tokens` tokens.
fn blocks_flops(tokens: f64, dim: f64, depth: usize, mlp_ratio: f64) -> f64 {
    let per_block = 2.0 * tokens * dim * 3.0 * dim // qkv
        + 2.0 * tokens * dim * dim // proj
        + 2.0 * 2.0 * tokens * dim * mlp_ratio * dim // fc1, fc2
        + 2.0 * 2.0 * tokens * tokens * dim; // q k^T, p v
    per_block * depth as f64
}

/// Forward matrix-product flops per image: the encoder over the visible patches
/// (all of them without masking), plus the MAE decoder when `mask_ratio` is given.
fn forward_flops(cfg: &MaeConfig, mask_ratio: Option<f64>) -> f64 {
    let patches = cfg.num_patches() as f64;
    let visible = (patches * (1.0 - mask_ratio.unwrap_or(0.0))).floor();
    let (d, pd) = (cfg.embed_dim as f64, cfg.patch_dim() as f64);
    let mut flops = 2.0 * visible * pd * d + blocks_flops(visible + 1.0, d, cfg.depth, cfg.mlp_ratio);
    if mask_ratio.is_some() {
        let dd = cfg.decoder_embed_dim as f64;
        flops += 2.0 * (visible + 1.0) * d * dd
            + blocks_flops(patches + 1.0, dd, cfg.decoder_depth, cfg.mlp_ratio)
            + 2.0 * patches * dd * pd;
    }
    flops
}

/// Forward flops per image of the SR model: the encoder on all patches plus
/// the 3x3 convolutions of the PixelShuffle decoder (`channels` wide).
fn superres_flops(cfg: &MaeConfig, channels: usize) -> f64 {
    let mut flops = forward_flops(cfg, None);
    let (mut side, mut c_in) = (cfg.grid() as f64, cfg.embed_dim as f64);
    let c = channels as f64;
    for r in shuffle_stages(cfg.patch_size) {
        let r = r as f64;
        flops += 2.0 * side * side * 9.0 * c_in * r * r * c;
        side *= r;
        c_in = c;
    }
    flops + 2.0 * side * side * 9.0 * c
}

/// Best sgemm rate (GFLOP/s) of `gemm` on square `size` matrices, all threads.
fn sgemm_gflops(size: usize) -> f64 {
    let (a, b) = (vec![1.0f32; size * size], vec![0.5f32; size * size]);
    let mut c = vec![0.0f32; size * size];
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: three row-major size x size buffers.
        unsafe {
            gemm::gemm(
                size,
                size,
                size,
                c.as_mut_ptr(),
                1,
                size as isize,
                false,
                a.as_ptr(),
                1,
                size as isize,
                b.as_ptr(),
                1,
                size as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            )
        };
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (size as f64).powi(3) / best / 1e9
}

fn main() -> candle_core::Result<()> {
    // SAFETY: set before any thread starts (as the lensmae binary does).
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(64, |s| s.parse().expect("batch"));
    let steps: usize = args.get(2).map_or(5, |s| s.parse().expect("steps"));
    let only = args.get(3).cloned().filter(|o| o != "all");
    let device_spec = args.get(4).map_or("cpu", |s| s.as_str());
    let precision: lensmae::model::device::Precision =
        args.get(5).map_or("f32", |s| s.as_str()).parse().expect("precision");
    let dev = lensmae::model::device::open_device(device_spec, precision).expect("device");
    let cfg = MaeConfig::paper_64();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let mae = Mae::new(&cfg, vb.clone())?;
    let clf = VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, vb.clone())?;
    let sr = SuperResolver::new(&cfg, &SuperresConfig::paper(4), vb.pp("sr")).expect("the paper SR head fits");
    init_weights(&varmap, 0)?;
    // Inference runs on weights loaded as plain tensors, as from a checkpoint
    // (no gradient tracking, so no graph is kept).
    let loaded = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let loaded = VarBuilder::from_tensors(loaded, DType::F32, &dev);
    let clf_infer = VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, loaded.clone())?;
    let sr_infer =
        SuperResolver::new(&cfg, &SuperresConfig::paper(4), loaded.pp("sr")).expect("the paper SR head fits");
    let vars = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut opt = AdamW::new(vars, 0.9, 0.999, 0.05)?;
    let imgs = Tensor::rand(0f32, 1.0, (batch, 1, 64, 64), &dev)?;
    let lr_imgs = Tensor::rand(0f32, 1.0, (batch, 1, 16, 16), &dev)?;
    let labels = Tensor::from_vec((0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(), batch, &dev)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);

    let mut out = serde_json::json!({"tool": "lensmae", "batch": batch, "threads": rayon::current_num_threads(),
        "device": lensmae::model::device::device_name(&dev), "precision": precision.to_string()});
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("classify_train") {
        out["classify_train"] = rate(&dev, batch, steps, || {
            let loss = candle_nn::loss::cross_entropy(&clf.forward(&imgs, Some(0)).unwrap(), &labels).unwrap();
            opt.step(&loss.backward().unwrap(), 1e-4, f64::INFINITY).unwrap();
        })
        .into();
    }
    for (name, ratio) in [("mae_train_075", 0.75), ("mae_train_090", 0.9)] {
        if wanted(name) {
            out[name] = rate(&dev, batch, steps, || {
                let noise = masking_noise(&mut rng, batch, cfg.num_patches(), &dev).unwrap();
                let loss = mae.forward(&imgs, ratio, &noise).unwrap().loss;
                opt.step(&loss.backward().unwrap(), 1e-4, f64::INFINITY).unwrap();
            })
            .into();
        }
    }
    if wanted("classify_infer") {
        out["classify_infer"] = rate(&dev, batch, steps, || {
            clf_infer.forward(&imgs, None).unwrap();
        })
        .into();
    }
    if wanted("superres_train") {
        out["superres_train"] = rate(&dev, batch, steps, || {
            let loss = (sr.forward(&lr_imgs).unwrap() - &imgs).unwrap().abs().unwrap().mean_all().unwrap();
            opt.step(&loss.backward().unwrap(), 1e-4, f64::INFINITY).unwrap();
        })
        .into();
    }
    if wanted("superres_infer") {
        out["superres_infer"] = rate(&dev, batch, steps, || {
            sr_infer.forward(&lr_imgs).unwrap();
        })
        .into();
    }
    if only.is_none() {
        // Training costs about three forward passes (forward, and two products per
        // product backward).
        out["gflop_per_image"] = serde_json::json!({
            "classify_train": 3.0 * forward_flops(&cfg, None) / 1e9,
            "mae_train_075": 3.0 * forward_flops(&cfg, Some(0.75)) / 1e9,
            "mae_train_090": 3.0 * forward_flops(&cfg, Some(0.9)) / 1e9,
            "classify_infer": forward_flops(&cfg, None) / 1e9,
            "superres_train": 3.0 * superres_flops(&cfg, 64) / 1e9,
            "superres_infer": superres_flops(&cfg, 64) / 1e9,
        });
        out["sgemm_gflops"] = if dev.is_cpu() { sgemm_gflops(2048) } else { device_sgemm_gflops(&dev, 8192) }.into();
    }
    println!("{out}");
    Ok(())
}
