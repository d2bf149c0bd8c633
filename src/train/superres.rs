//! Fine-tuning for super-resolution (the paper's second task) and SR inference.
//!
//! Each pair is scaled by its LR image's min-max (the only scale known at
//! inference); the model's output is scaled back, so SR images come out in the
//! input's units. Metrics compare SR and HR after mapping both by the HR
//! image's own min-max to [0, 1], as the paper's protocol does, beside the
//! bicubic and nearest-neighbour upsamplings of the same LR images.

use super::*;
use crate::data::augment::dihedral;
use crate::data::images::ImagePairs;
use crate::eval::superres::{evaluate_model, evaluate_superres, SuperresEvaluation};
use crate::model::preprocess::{minmax_scale, scaled};
use crate::model::superres::{SuperResolver, SuperresConfig};
use rand::Rng;

/// The pixel loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelLoss {
    /// Mean absolute error.
    L1,
    /// Mean squared error.
    Mse,
}

/// Super-resolution fine-tuning settings.
#[derive(Debug, Clone)]
pub struct SuperresOptions {
    /// Shared settings.
    pub train: TrainOptions,
    /// Encoder sizes (taken from the MAE checkpoint when initialising from one).
    pub model: MaeConfig,
    /// The decoder head.
    pub head: SuperresConfig,
    /// Encoder initialisation.
    pub init: EncoderInit,
    /// The training loss.
    pub loss: PixelLoss,
}

/// A training batch: LR and HR of each pair scaled by the LR's min-max, both
/// given the same random dihedral transform when augmenting.
fn training_pairs(t: &TrainOptions, pairs: &ImagePairs, indices: &[usize], step: usize) -> Result<(Tensor, Tensor)> {
    let (ls, hs) = (pairs.lr.size, pairs.hr.size);
    let mut rng = ChaCha8Rng::seed_from_u64(t.seed ^ 0x5EED_5A5A ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (mut lr, mut hr) = (Vec::with_capacity(indices.len() * ls * ls), Vec::with_capacity(indices.len() * hs * hs));
    let (mut lr_buf, mut hr_buf) = (vec![0f32; ls * ls], vec![0f32; hs * hs]);
    for &i in indices {
        let s = minmax_scale(pairs.lr.image(i));
        let (l, h): (Vec<f32>, Vec<f32>) =
            (scaled(pairs.lr.image(i), s).collect(), scaled(pairs.hr.image(i), s).collect());
        let k = if t.augment == Augment::Dihedral { rng.random_range(0..8u8) } else { 0 };
        dihedral(&l, ls, k, &mut lr_buf);
        dihedral(&h, hs, k, &mut hr_buf);
        lr.extend_from_slice(&lr_buf);
        hr.extend_from_slice(&hr_buf);
    }
    let n = indices.len();
    Ok((Tensor::from_vec(lr, (n, 1, ls, ls), &t.device)?, Tensor::from_vec(hr, (n, 1, hs, hs), &t.device)?))
}

/// A super-resolution checkpoint's description.
pub(super) fn superres_meta(
    t: &TrainOptions,
    model: &MaeConfig,
    head: &SuperresConfig,
    pairs: &ImagePairs,
    pixel_scale: Option<f64>,
    extra: serde_json::Value,
) -> CheckpointMeta {
    CheckpointMeta {
        format: CHECKPOINT_FORMAT.into(),
        task: ModelTask::Superres,
        model: Network::Vit(model.clone()),
        class_names: pairs.hr.class_names.clone(),
        pooling: None,
        superres: Some(head.clone()),
        preprocessing: Preprocessing { normalisation: "minmax-lr".into(), image_size: pairs.hr.size, pixel_scale },
        calibration: None,
        smooth_lens_residuals: None,
        provenance: provenance(t, &pairs.hr, extra),
    }
}

/// The pixel loss of the (augmented) training pairs `chunk` at optimiser step `step`.
pub(super) fn pixel_loss(
    model: &SuperResolver,
    t: &TrainOptions,
    pairs: &ImagePairs,
    chunk: &[usize],
    step: usize,
    loss: PixelLoss,
) -> Result<Tensor> {
    let (x, y) = training_pairs(t, pairs, chunk, step)?;
    let diff = (model.forward(&x)? - y)?;
    Ok(match loss {
        PixelLoss::L1 => diff.abs()?.mean_all()?,
        PixelLoss::Mse => diff.sqr()?.mean_all()?,
    })
}

/// Fine-tune a super-resolution model on `pairs`; best checkpoint by validation
/// PSNR; test metrics (model, bicubic, nearest) in the checkpoint's provenance.
pub fn finetune_superres(pairs: &ImagePairs, opts: &SuperresOptions) -> Result<SuperresOutcome> {
    let t = &opts.train;
    check_output(t)?;
    let dev = opts.train.device.clone();
    let mut model_cfg = opts.model.clone();
    if t.scaling != Scaling::MinMax {
        return Err(Error::config("scaling", "super-resolution scales its LR images by min-max (`minmax-lr`)"));
    }
    let init_tensors = load_mae_init(&opts.init, Scaling::MinMax, &dev, &mut model_cfg)?;
    check_data(&pairs.hr, &Network::Vit(model_cfg.clone()), t)?;
    let head = SuperresConfig { factor: pairs.factor(), ..opts.head.clone() };
    head.validate(&model_cfg)?;
    let [train, val, test] = stratified_split(&pairs.hr.labels, t.val_fraction, t.test_fraction, t.seed);
    check_split(&pairs.hr, t, &train, &val)?;
    write_split(t, &pairs.hr, [&train, &val, &test])?;
    let varmap = VarMap::new();
    let model = SuperResolver::new(&model_cfg, &head, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let specifics = format!("{:?}", (&opts.model, &opts.head, opts.loss));
    let identity = run_identity(t, &[&pairs.lr, &pairs.hr], &opts.init, specifics)?;
    let mut run = start_finetuning(t, identity, &varmap, &init_tensors, |_| true, train.len())?;
    let init_name = init_label(&opts.init);
    let pixel_scale = pairs.hr.recorded_pixel_scale();
    let meta = |extra: serde_json::Value| superres_meta(t, &model_cfg, &head, pairs, pixel_scale, extra);
    train_epochs(
        t,
        &varmap,
        &mut run,
        &train,
        |chunk, step, _| pixel_loss(&model, t, pairs, chunk, step, opts.loss),
        |e| {
            let (val_metrics, _) = evaluate_model(&model, pairs, &val, t.batch_size)?;
            let log = EpochLog {
                epoch: e.epoch,
                lr: e.lr,
                train_loss: e.train_loss,
                val_loss: val_metrics.mse,
                val_macro_auc: None,
                val_accuracy: None,
                mask_ratio: None,
                val_ssim: Some(val_metrics.ssim),
                val_psnr: Some(val_metrics.psnr),
                images_per_s: e.images_per_s,
            };
            Ok((log, val_metrics.psnr, val_metrics))
        },
        |epoch, val_metrics| {
            let extra =
                serde_json::json!({"init": init_name, "best_epoch": epoch, "loss": opts.loss, "val": val_metrics});
            save_checkpoint(&t.out, &tensors_of(&varmap), &meta(extra))
        },
    )?;
    let r = run.r;
    let (best, _) = load_checkpoint(&t.out, &dev)?;
    set_vars(&varmap, &best, "", &t.out)?;
    let test_eval = evaluate_superres(&model, pairs, &test, t.batch_size)?;
    let extra = serde_json::json!({"init": init_name, "best_epoch": r.best_epoch, "loss": opts.loss,
        "test": test_eval, "test_split": test.len()});
    save_checkpoint(&t.out, &best, &meta(extra))?;
    Ok(SuperresOutcome { checkpoint: t.out.clone(), best_epoch: r.best_epoch, epochs: r.logs, test: test_eval })
}

/// What a super-resolution training run produced.
#[derive(Debug, Clone)]
pub struct SuperresOutcome {
    /// The best checkpoint.
    pub checkpoint: PathBuf,
    /// Epoch of the best checkpoint.
    pub best_epoch: usize,
    /// Per-epoch records.
    pub epochs: Vec<EpochLog>,
    /// Held-out test metrics of the best model and the baselines.
    pub test: SuperresEvaluation,
}
