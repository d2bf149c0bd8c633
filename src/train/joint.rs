//! Joint fine-tuning of one encoder for both of the paper's tasks (one of its
//! open questions): each step adds the classification cross-entropy of the HR
//! images and a weighted pixel loss of super-resolving their LR images, so the
//! encoder's gradient comes from both heads.
//!
//! The result is two ordinary checkpoints, a classifier and a super-resolution
//! model that share the same encoder weights (taken at the same epoch: the best
//! validation macro AUC), so `evaluate` and `predict` use them like any other.

use super::superres::{pixel_loss, superres_meta, PixelLoss};
use super::*;
use crate::data::images::ImagePairs;
use crate::eval::superres::{evaluate_model, evaluate_superres, SuperresEvaluation};
use crate::model::superres::{SuperResolver, SuperresConfig};

/// Joint fine-tuning settings.
#[derive(Debug, Clone)]
pub struct JointOptions {
    /// Shared settings; `out` is the classifier checkpoint (and the resumable state).
    pub train: TrainOptions,
    /// Encoder sizes (taken from the MAE checkpoint when initialising from one).
    pub model: MaeConfig,
    /// The super-resolution head (its factor is the data's).
    pub head: SuperresConfig,
    /// Encoder initialisation.
    pub init: EncoderInit,
    /// Token pooling of the classification head.
    pub pooling: Pooling,
    /// Dropout on the pooled features during training.
    pub dropout: f32,
    /// Per-pixel standardisation of the classifier's input (see [`FinetuneOptions`]).
    pub standardise_pixels: bool,
    /// The super-resolution loss.
    pub loss: PixelLoss,
    /// Weight of the super-resolution loss beside the cross-entropy.
    pub superres_weight: f64,
    /// Where the super-resolution checkpoint goes.
    pub superres_out: PathBuf,
}

/// What a joint run produced.
#[derive(Debug, Clone)]
pub struct JointOutcome {
    /// The classifier checkpoint.
    pub classifier: PathBuf,
    /// The super-resolution checkpoint (same encoder).
    pub superres: PathBuf,
    /// Epoch both checkpoints come from.
    pub best_epoch: usize,
    /// Per-epoch records (validation loss = cross-entropy).
    pub epochs: Vec<EpochLog>,
    /// Held-out test metrics of the classifier.
    pub classify_test: ClassificationMetrics,
    /// Held-out test metrics of the super-resolution model and the baselines.
    pub superres_test: SuperresEvaluation,
}

fn with_prefixes(tensors: &HashMap<String, Tensor>, prefixes: &[&str]) -> HashMap<String, Tensor> {
    tensors
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Classifier keys (`encoder.*`, `head.*`) and super-resolution keys (`encoder.*`,
/// `up.*`, `out.*`) do not collide, so one variable map holds both models and
/// the encoder's variables are shared.
const CLASSIFIER_KEYS: [&str; 2] = ["encoder.", "head."];
const SUPERRES_KEYS: [&str; 3] = ["encoder.", "up.", "out."];

/// Fine-tune one encoder for classification and super-resolution at once, on
/// LR/HR pairs with class labels (a `simulate --task superres` dataset).
pub fn finetune_joint(pairs: &ImagePairs, opts: &JointOptions) -> Result<JointOutcome> {
    let t = &opts.train;
    check_output(t)?;
    let dev = t.device.clone();
    if opts.superres_out == t.out {
        return Err(Error::config("superres_out", "must differ from the classifier's --out"));
    }
    if !t.overwrite && !t.resume {
        crate::data::atomic::refuse_existing(&opts.superres_out, false)?;
    }
    if !(opts.superres_weight.is_finite() && opts.superres_weight >= 0.0) {
        return Err(Error::config("superres_weight", format!("must be >= 0, got {}", opts.superres_weight)));
    }
    if t.scaling != Scaling::MinMax {
        return Err(Error::config(
            "scaling",
            "joint fine-tuning shares one encoder with super-resolution, which scales images by min-max",
        ));
    }
    let mut model_cfg = opts.model.clone();
    let init_tensors = load_mae_init(&opts.init, t.scaling, &dev, &mut model_cfg)?;
    check_data(&pairs.hr, &Network::Vit(model_cfg.clone()), t)?;
    let head = SuperresConfig { factor: pairs.factor(), ..opts.head.clone() };
    head.validate(&model_cfg)?;
    let k = pairs.hr.class_names.len();
    let [train, val, test] = stratified_split(&pairs.hr.labels, t.val_fraction, t.test_fraction, t.seed);
    check_split(&pairs.hr, t, &train, &val)?;
    let (images, preprocessor) = classifier_inputs(&pairs.hr, &train, t, opts.standardise_pixels);
    let preprocess_tensors = preprocessor.checkpoint_tensors(images.size, &dev)?;
    write_split(t, &pairs.hr, [&train, &val, &test])?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let classifier = Classifier::Vit(VitClassifier::new(&model_cfg, k, opts.pooling, opts.dropout, vb.clone())?);
    let resolver = SuperResolver::new(&model_cfg, &head, vb)?;
    let specifics = format!(
        "{:?}",
        (&opts.model, &opts.head, opts.pooling, opts.dropout, opts.standardise_pixels, opts.loss, opts.superres_weight)
    );
    let identity = run_identity(t, &[&pairs.lr, &pairs.hr], &opts.init, specifics)?;
    let mut run = start_finetuning(t, identity, &varmap, &init_tensors, |_| true, train.len())?;
    let init_name = init_label(&opts.init);
    let joint = serde_json::json!({"superres_weight": opts.superres_weight, "loss": opts.loss,
        "classifier": t.out.display().to_string(), "superres": opts.superres_out.display().to_string()});
    // Each call site's object (best epoch, metrics) plus what every save records.
    let extra = |mut e: serde_json::Value| {
        e["init"] = init_name.clone().into();
        e["joint"] = joint.clone();
        e
    };
    let (recorded, sr_scale) = (RecordedInput::of(&images)?, pairs.hr.recorded_pixel_scale());
    let save_both = |tensors: &HashMap<String, Tensor>, cls_extra: serde_json::Value, sr_extra: serde_json::Value| {
        let mut cls = with_prefixes(tensors, &CLASSIFIER_KEYS);
        cls.extend(preprocess_tensors.iter().map(|(k, v)| (k.clone(), v.clone())));
        let cls_meta = classifier_meta(
            t,
            &Network::Vit(model_cfg.clone()),
            &images,
            opts.pooling,
            &preprocessor,
            &recorded,
            cls_extra,
        );
        save_checkpoint(&t.out, &cls, &cls_meta)?;
        let sr_meta = superres_meta(t, &model_cfg, &head, pairs, sr_scale, sr_extra);
        save_checkpoint(&opts.superres_out, &with_prefixes(tensors, &SUPERRES_KEYS), &sr_meta)
    };
    train_epochs(
        t,
        &varmap,
        &mut run,
        &train,
        |chunk, step, _| {
            let ce = classify_batch_loss(&classifier, t, &images, chunk, step, false)?;
            let pixels = pixel_loss(&resolver, t, pairs, chunk, step, opts.loss)?;
            Ok((ce + (pixels * opts.superres_weight)?)?)
        },
        |e| {
            let (metrics, val_loss) = classify_validation(&classifier, &images, &val, t.batch_size)?;
            let (sr_metrics, _) = evaluate_model(&resolver, pairs, &val, t.batch_size)?;
            let log = EpochLog {
                val_ssim: Some(sr_metrics.ssim),
                val_psnr: Some(sr_metrics.psnr),
                ..EpochLog::classification(e.epoch, e.lr, e.train_loss, val_loss, e.images_per_s, &metrics)
            };
            // One epoch for both heads, chosen by the classification (as finetune does).
            Ok((log, metrics.macro_auc - 1e-9 * val_loss, (metrics, sr_metrics)))
        },
        |epoch, (metrics, sr_metrics)| {
            let e = extra(serde_json::json!({"best_epoch": epoch, "val": metrics}));
            let sr_e = extra(serde_json::json!({"best_epoch": epoch, "val": sr_metrics}));
            save_both(&tensors_of(&varmap), e, sr_e)
        },
    )?;
    let r = run.r;
    let (best_cls, _) = load_checkpoint(&t.out, &dev)?;
    let (best_sr, _) = load_checkpoint(&opts.superres_out, &dev)?;
    for prefix in CLASSIFIER_KEYS {
        set_vars(&varmap, &best_cls, prefix, &t.out)?;
    }
    for prefix in &SUPERRES_KEYS[1..] {
        set_vars(&varmap, &best_sr, prefix, &opts.superres_out)?;
    }
    let (classify_test, _) = classify_validation(&classifier, &images, &test, t.batch_size)?;
    let superres_test = evaluate_superres(&resolver, pairs, &test, t.batch_size)?;
    let e = extra(serde_json::json!({"best_epoch": r.best_epoch, "test": classify_test, "test_split": test.len()}));
    let sr_e = extra(serde_json::json!({"best_epoch": r.best_epoch, "test": superres_test, "test_split": test.len()}));
    save_both(&tensors_of(&varmap), e, sr_e)?;
    Ok(JointOutcome {
        classifier: t.out.clone(),
        superres: opts.superres_out.clone(),
        best_epoch: r.best_epoch,
        epochs: r.logs,
        classify_test,
        superres_test,
    })
}
