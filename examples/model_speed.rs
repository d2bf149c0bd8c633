//! Training and inference speed of lensmae's paper-size model on the CPU, as
//! images/s (best of N steps): `cargo run --release --example model_speed -- [batch] [steps]`.
//! Prints JSON; bench/model_bench.sh compares it with the PyTorch twin.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lensmae::model::mae::{init_weights, masking_noise, Pooling};
use lensmae::model::{Mae, MaeConfig, VitClassifier};
use lensmae::train::optim::AdamW;
use rand::SeedableRng;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rate(batch: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    step(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..steps {
        let t = Instant::now();
        step();
        best = best.min(t.elapsed().as_secs_f64());
    }
    batch as f64 / best
}

fn main() -> candle_core::Result<()> {
    // SAFETY: set before any thread starts (as the lensmae binary does).
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(64, |s| s.parse().expect("batch"));
    let steps: usize = args.get(2).map_or(5, |s| s.parse().expect("steps"));
    let dev = Device::Cpu;
    let cfg = MaeConfig::paper_64();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let mae = Mae::new(&cfg, vb.clone())?;
    let clf = VitClassifier::new(&cfg, 3, Pooling::Cls, 0.0, vb)?;
    init_weights(&varmap, 0)?;
    let vars = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut opt = AdamW::new(vars, 0.9, 0.999, 0.05)?;
    let imgs = Tensor::rand(0f32, 1.0, (batch, 1, 64, 64), &dev)?;
    let labels = Tensor::from_vec((0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(), batch, &dev)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let classify = rate(batch, steps, || {
        let loss = candle_nn::loss::cross_entropy(&clf.forward(&imgs, true).unwrap(), &labels).unwrap();
        opt.step(&loss.backward().unwrap(), 1e-4, f64::INFINITY).unwrap();
    });
    let mae_rate = rate(batch, steps, || {
        let noise = masking_noise(&mut rng, batch, cfg.num_patches(), &dev).unwrap();
        let loss = mae.forward(&imgs, 0.9, &noise).unwrap().loss;
        opt.step(&loss.backward().unwrap(), 1e-4, f64::INFINITY).unwrap();
    });
    let infer = rate(batch, steps, || {
        clf.forward(&imgs, false).unwrap();
    });
    println!(
        "{{\"tool\":\"lensmae\",\"batch\":{batch},\"classify_train_images_per_s\":{classify:.2},\"mae_train_images_per_s\":{mae_rate:.2},\"inference_images_per_s\":{infer:.2}}}"
    );
    Ok(())
}
