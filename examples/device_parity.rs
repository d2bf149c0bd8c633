//! CPU-versus-GPU parity of lensmae's paper-size models: the same weights and
//! inputs on the CPU (fused kernels) and on a CUDA device (candle's ops), one
//! forward pass and one AdamW training step of the classifier, the MAE and the
//! super-resolution model, compared as relative differences.
//! `device_parity [device=cuda] [batch=16] [f32|tf32|bf16]` prints JSON; bench/gpu-check.sh runs it.
//! With `cpu` as the device the second copy runs candle's composed ops on the
//! CPU (what CUDA runs), so the check itself can be exercised without a GPU.
//! Exits with status 1 when a difference exceeds the bound (1e-3; 1e-2 with tf32;
//! 5e-2 with bf16, whose 8-bit mantissa rounds each product's output by up to 4e-3).
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use lensmae::model::device::{device_name, open_device, with_bf16_products, DeviceSpec, Precision};
use lensmae::model::fused::{with_kernels, Kernels};
use lensmae::model::mae::{init_weights, masking_noise, Pooling};
use lensmae::model::superres::{SuperResolver, SuperresConfig};
use lensmae::model::{Mae, MaeConfig, VitClassifier};
use lensmae::train::optim::AdamW;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// The three models on one device, built from one VarMap.
struct Models {
    varmap: VarMap,
    clf: VitClassifier,
    mae: Mae,
    sr: SuperResolver,
}

fn build(cfg: &MaeConfig, dev: &Device) -> candle_core::Result<Models> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    let mae = Mae::new(cfg, vb.pp("mae"))?;
    let clf = VitClassifier::new(cfg, 3, Pooling::Cls, 0.0, vb.pp("clf"))?;
    let sr = SuperResolver::new(cfg, &SuperresConfig::paper(4), vb.pp("sr")).expect("the paper SR head fits");
    Ok(Models { varmap, clf, mae, sr })
}

fn vars(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap();
    let mut v: Vec<(String, Var)> =
        data.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

thread_local! {
    static BF16: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with candle's composed ops (a no-op for CUDA tensors, which never
/// take the fused CPU kernels), and bf16 products when asked (so that a CPU dry
/// run exercises them too; on CUDA the device's opening already set them).
fn composed<R>(f: impl FnOnce() -> R) -> R {
    with_bf16_products(BF16.with(|b| b.get()), || with_kernels(Kernels::Composed, f))
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_device(&Device::Cpu).unwrap().to_vec1::<f32>().unwrap()
}

/// max |a - b| / max |a|: the worst element against the tensor's scale.
fn rel_max(a: &[f32], b: &[f32]) -> f64 {
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
}

/// ||a - b|| / ||a||.
fn rel_norm(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let n: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

/// Differences of one training step: the loss, every gradient (worst parameter
/// by relative norm), all weights after the AdamW step, and the loss after it.
fn step_parity(
    name: &str,
    cpu: &Models,
    gpu: &Models,
    loss: impl Fn(&Models) -> Tensor,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    let (lc, lg) = (loss(cpu), composed(|| loss(gpu)));
    let (gc, gg) = (lc.backward().unwrap(), lg.backward().unwrap());
    let (vc, vg) = (vars(&cpu.varmap, name), vars(&gpu.varmap, name));
    let (mut worst_grad, mut worst_name) = (0f64, String::new());
    for ((n, a), (_, b)) in vc.iter().zip(&vg) {
        if let (Some(x), Some(y)) = (gc.get(a.as_tensor()), gg.get(b.as_tensor())) {
            let d = rel_norm(&host(x), &host(y));
            if d > worst_grad {
                (worst_grad, worst_name) = (d, n.clone());
            }
        }
    }
    let mut oc = AdamW::new(vc.clone(), 0.9, 0.999, 0.05).unwrap();
    let mut og = AdamW::new(vg.clone(), 0.9, 0.999, 0.05).unwrap();
    oc.step(&gc, 1e-4, 1.0).unwrap();
    og.step(&gg, 1e-4, 1.0).unwrap();
    // All weights as one vector: per tensor, AdamW's first step is lr * sign(g),
    // so a zero-initialised bias whose gradient is ~0 flips sign on rounding.
    let all = |v: &[(String, Var)]| v.iter().flat_map(|(_, w)| host(w)).collect::<Vec<f32>>();
    let weights = rel_norm(&all(&vc), &all(&vg));
    let (ac, ag) = (host(&loss(cpu))[0], host(&composed(|| loss(gpu)))[0]);
    out.insert(
        format!("{name}train_step"),
        serde_json::json!({
            "loss_cpu": host(&lc)[0], "loss_gpu": host(&lg)[0], "loss_rel": rel_max(&host(&lc), &host(&lg)),
            "grad_rel_norm_worst": worst_grad, "grad_worst_param": worst_name,
            "weights_after_step_rel_norm": weights,
            "loss_after_step_rel": ((ac - ag).abs() / ac.abs().max(1e-30)) as f64,
        }),
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("cuda", |s| s.as_str());
    let batch: usize = args.get(2).map_or(16, |s| s.parse().expect("batch"));
    let precision: Precision = args.get(3).map_or("f32", |s| s.as_str()).parse()?;
    BF16.with(|b| b.set(precision == Precision::Bf16));
    // The CPU refuses reduced precisions; its dry run opens it in f32 and sets bf16 per thread.
    let open_as = if spec.parse::<DeviceSpec>()? == DeviceSpec::Cpu { Precision::F32 } else { precision };
    let gpu_dev = open_device(spec, open_as).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let cfg = MaeConfig::paper_64();
    let cpu = build(&cfg, &Device::Cpu)?;
    init_weights(&cpu.varmap, 0)?;
    let gpu = build(&cfg, &gpu_dev)?;
    for ((_, c), (_, g)) in vars(&cpu.varmap, "").iter().zip(&vars(&gpu.varmap, "")) {
        g.set(&c.as_tensor().to_device(&gpu_dev)?)?;
    }
    let imgs = Tensor::rand(0f32, 1.0, (batch, 1, 64, 64), &Device::Cpu)?;
    let lr_imgs = Tensor::rand(0f32, 1.0, (batch, 1, 16, 16), &Device::Cpu)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 3).collect();
    let noise = masking_noise(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1), batch, cfg.num_patches(), &Device::Cpu)?;
    let on = |m: &Models, t: &Tensor| t.to_device(m.clf.encoder.device()).unwrap();

    let mut out = BTreeMap::new();
    let forward = [
        (
            "clf.forward_logits",
            host(&cpu.clf.forward(&imgs, None)?),
            host(&composed(|| gpu.clf.forward(&on(&gpu, &imgs), None))?),
        ),
        (
            "mae.forward_pred",
            host(&cpu.mae.forward(&imgs, 0.75, &noise)?.pred),
            host(&composed(|| gpu.mae.forward(&on(&gpu, &imgs), 0.75, &on(&gpu, &noise)))?.pred),
        ),
        (
            "sr.forward_output",
            host(&cpu.sr.forward(&lr_imgs)?),
            host(&composed(|| gpu.sr.forward(&on(&gpu, &lr_imgs)))?),
        ),
    ];
    for (name, a, b) in &forward {
        out.insert(name.to_string(), serde_json::json!({"rel_max": rel_max(a, b), "rel_norm": rel_norm(a, b)}));
    }
    let xent = |m: &Models| {
        let y = Tensor::from_vec(labels.clone(), batch, m.clf.encoder.device()).unwrap();
        candle_nn::loss::cross_entropy(&m.clf.forward(&on(m, &imgs), None).unwrap(), &y).unwrap()
    };
    step_parity("clf.", &cpu, &gpu, xent, &mut out);
    step_parity("mae.", &cpu, &gpu, |m| m.mae.forward(&on(m, &imgs), 0.75, &on(m, &noise)).unwrap().loss, &mut out);
    let l1 = |m: &Models| {
        (m.sr.forward(&on(m, &lr_imgs)).unwrap() - on(m, &imgs)).unwrap().abs().unwrap().mean_all().unwrap()
    };
    step_parity("sr.", &cpu, &gpu, l1, &mut out);

    let bound = match precision {
        Precision::F32 => 1e-3,
        Precision::Tf32 => 1e-2,
        Precision::Bf16 => 5e-2,
    };
    let worst = out
        .values()
        .flat_map(|v| v.as_object().unwrap().iter().filter(|(k, _)| k.contains("rel")).filter_map(|(_, v)| v.as_f64()))
        .fold(0f64, f64::max);
    let report = serde_json::json!({"device": device_name(&gpu_dev), "precision": precision.to_string(), "batch": batch, "bound": bound,
        "worst_rel": worst, "pass": worst <= bound, "checks": out});
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    if worst > bound {
        std::process::exit(1);
    }
    Ok(())
}
