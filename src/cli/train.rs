//! `lensmae pretrain`, `lensmae finetune`, `lensmae evaluate`, `lensmae model info`.

use crate::data::augment::Augment;
use crate::data::images::{read_float_columns, read_parquet_labels};
use crate::data::images::{read_image_pairs, read_labelled_images};
use crate::data::predictions::read_predictions;
use crate::eval::classifier::{evaluate_classifier, evaluate_predictions, evaluated_column_names};
use crate::eval::superres::{evaluate_superres_model, SuperresEvaluation};
use crate::infer::{LoadedClassifier, LoadedSuperres, TestTimeAugmentation};
use crate::model::checkpoint::{
    compact_tensors, load_checkpoint, read_checkpoint_meta, save_checkpoint, CheckpointMeta, ModelTask,
};
use crate::model::device::{open_device, Precision};
use crate::model::mae::Pooling;
use crate::model::preprocess::Scaling;
use crate::model::superres::SuperresConfig;
use crate::model::{MaeConfig, Network};
use crate::train::joint::{finetune_joint, JointOptions};
use crate::train::superres::{finetune_superres, PixelLoss, SuperresOptions};
use crate::train::{finetune_classify, pretrain, EncoderInit, FinetuneOptions, PretrainOptions, TrainOptions};
use anyhow::{bail, Context};
use candle_core::Device;
use clap::{Args, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a command computes.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Compute device: `cpu`, `cuda` or `cuda:N` (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CUDA's matrix products: `f32`, `tf32` (tensor cores, ~3 decimal digits) or
    /// `bf16` (operands cast to bf16, f32 accumulation; weights and the rest stay f32).
    #[arg(long, default_value = "f32", value_name = "f32|tf32|bf16")]
    precision: String,
    /// The same as `--precision tf32`.
    #[arg(long, conflicts_with = "precision")]
    tf32: bool,
}

impl DeviceArgs {
    /// Opens the device, with an error that says what is missing.
    pub fn open(&self) -> anyhow::Result<Device> {
        let precision = if self.tf32 { Precision::Tf32 } else { self.precision.parse()? };
        Ok(open_device(&self.device, precision)?)
    }
}

/// Flags every training command takes.
#[derive(Debug, Args)]
pub struct CommonTrainArgs {
    /// Labelled images: a Parquet, Arrow IPC or FITS dataset (e.g. from `lensmae simulate`).
    /// Several (`--data a b`) are joined in that order when they agree on classes,
    /// image size, pixel scale and residual recipe (pretraining and classification).
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Image column of the dataset.
    #[arg(long, default_value = "image")]
    image_col: String,
    /// Passes over the training split.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Decoupled weight decay on weight matrices.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Linear warm-up, epochs.
    #[arg(long, default_value_t = 1.0)]
    warmup_epochs: f64,
    /// Clip the global gradient norm to this value (0 = no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip_grad: f64,
    /// Seed of splits, initialisation, shuffling and masks.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Augmentation of training images: `dihedral` (a random rotation by a
    /// multiple of 90 degrees and/or mirror per image) or `none`.
    #[arg(long, value_enum, default_value_t = AugmentArg::Dihedral)]
    augment: AugmentArg,
    /// Per-image scaling of the inputs: `minmax` (each image to [0, 1], the paper's)
    /// `noise-asinh` (asinh of the background-subtracted image in units of the
    /// noise estimated from it: for noisy survey cutouts, unchanged by 16-bit storage)
    /// or `antisymmetric-asinh` (the same of the image's point-antisymmetric part
    /// (I(x) - I(-x)) / sqrt 2 about the deflector, found up to 5 pixels from the
    /// centre: the deflector's light and the sky cancel, the arcs stay; for survey
    /// cutouts centred on the lens).
    /// A fine-tuned encoder must be pretrained with the same scaling.
    #[arg(long, default_value = "minmax", value_parser = parse_scaling)]
    scaling: Scaling,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Fraction of each class held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Fraction of each class held out for the final test.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Output checkpoint (the best epoch on validation); logs go beside it.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run from `<out>.state.safetensors` (refused when the
    /// data or any setting differs from the run it continues).
    #[arg(long)]
    resume: bool,
    /// Replace an existing --out checkpoint.
    #[arg(long)]
    overwrite: bool,
    /// Stop after this many epochs in this run (continue later with --resume).
    #[arg(long)]
    stop_after_epochs: Option<usize>,
    /// Model sizes: `paper` (64x64, 192 wide, 6 blocks), `tiny` (16x16), or a JSON file.
    #[arg(long, default_value = "paper")]
    model: String,
    #[command(flatten)]
    device: DeviceArgs,
    /// The command line recorded in the checkpoint (a pipeline step's); this
    /// process's when `None`.
    #[arg(skip)]
    command_line: Option<String>,
}

/// `--dropout` of a ViT classifier unless given.
const VIT_DROPOUT: f32 = 0.1;

fn parse_scaling(name: &str) -> Result<Scaling, String> {
    Scaling::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Scaling::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scaling `{name}` (known: {})", known.join(", "))
    })
}

impl CommonTrainArgs {
    fn options(&self, default_lr: f64, default_wd: f64) -> anyhow::Result<TrainOptions> {
        if let Some(n) = self.threads {
            let n = super::threads_option(n)?;
            // Ignored when a pool exists already (only in tests).
            let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
        }
        for (name, v) in [("--val-fraction", self.val_fraction), ("--test-fraction", self.test_fraction)] {
            if !(0.0..0.5).contains(&v) {
                bail!("{name} must be in [0, 0.5)");
            }
        }
        let options = TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr.unwrap_or(default_lr),
            min_lr: self.lr.unwrap_or(default_lr) * 0.01,
            weight_decay: self.weight_decay.unwrap_or(default_wd),
            warmup_epochs: self.warmup_epochs,
            clip_grad: if self.clip_grad > 0.0 { self.clip_grad } else { f64::INFINITY },
            seed: self.seed,
            augment: match self.augment {
                AugmentArg::None => Augment::None,
                AugmentArg::Dihedral => Augment::Dihedral,
            },
            layer_decay: 1.0,
            scaling: self.scaling,
            val_fraction: self.val_fraction,
            test_fraction: self.test_fraction,
            out: self.out.clone(),
            resume: self.resume,
            overwrite: self.overwrite,
            stop_after: self.stop_after_epochs,
            command: self.command_line.clone().unwrap_or_else(super::command_line),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            device: self.device.open()?,
        };
        // Before the data is read: bad settings and an existing checkpoint are refused at once.
        options.validate()?;
        crate::train::check_output(&options)?;
        Ok(options)
    }

    fn network(&self) -> anyhow::Result<Network> {
        let network = match self.model.as_str() {
            "paper" => MaeConfig::paper_64().into(),
            "tiny" => MaeConfig::tiny_16().into(),
            path => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading --model {path}"))?;
                Network::from_json(&text).with_context(|| format!("in --model {path}"))?
            }
        };
        network.validate().context("--model")?;
        Ok(network)
    }

    /// The ViT of a command that trains only ViTs (MAE, super-resolution).
    fn model_config(&self) -> anyhow::Result<MaeConfig> {
        match self.network()? {
            Network::Vit(cfg) => Ok(cfg),
            other => bail!("--model {}: {}; this command trains a ViT", self.model, other.describe()),
        }
    }
}

/// Arguments of `lensmae pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    common: CommonTrainArgs,
    /// Fraction of patches hidden from the encoder (at the last epoch).
    #[arg(long, default_value_t = 0.9)]
    mask_ratio: f64,
    /// Mask ratio at the first epoch, rising linearly to --mask-ratio (a curriculum).
    #[arg(long)]
    mask_ratio_start: Option<f64>,
    /// Pretrain on these classes only (comma-separated; the paper uses no_sub).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Predict per-patch normalised pixels.
    #[arg(long)]
    norm_pix_loss: bool,
}

impl PretrainArgs {
    /// Records `line` as the command that asked for the work.
    pub fn set_command_line(&mut self, line: String) {
        self.common.command_line = Some(line);
    }
}

impl FinetuneArgs {
    /// Records `line` as the command that asked for the work.
    pub fn set_command_line(&mut self, line: String) {
        self.common.command_line = Some(line);
    }

    fn train_options(&self, default_lr: f64, default_wd: f64) -> anyhow::Result<TrainOptions> {
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            bail!("--layer-decay must be in (0, 1], got {}", self.layer_decay);
        }
        Ok(TrainOptions { layer_decay: self.layer_decay, ..self.common.options(default_lr, default_wd)? })
    }
}

/// Arguments of `lensmae finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    common: CommonTrainArgs,
    /// What to fine-tune for.
    #[arg(long, value_enum, default_value_t = FinetuneTask::Classify)]
    task: FinetuneTask,
    /// Start the encoder from this MAE checkpoint.
    #[arg(long, conflicts_with = "scratch", required_unless_present = "scratch")]
    init: Option<PathBuf>,
    /// Start from random weights.
    #[arg(long)]
    scratch: bool,
    /// Train only the head (a linear probe of the encoder).
    #[arg(long)]
    freeze_encoder: bool,
    /// Token pooling for the head of a ViT (default `cls`; the ResNet pools globally).
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
    /// Dropout on the pooled features while training (a ViT's: default 0.1; the
    /// ResNet has none).
    #[arg(long)]
    dropout: Option<f32>,
    /// Layer-wise learning-rate decay (MAE's fine-tuning recipe, e.g. 0.75): block i
    /// of a depth-d encoder learns at decay^(d - i) of the rate, the patch embedding
    /// at decay^(d + 1), the head at the full rate. 1 turns it off.
    #[arg(long, default_value_t = 1.0)]
    layer_decay: f64,
    /// Classification: after min-max scaling, standardise each pixel by its mean
    /// and standard deviation over the training split (stored in the checkpoint).
    #[arg(long)]
    standardise_pixels: bool,
    /// Super-resolution: add the bicubic upsampling to the network's output.
    #[arg(long)]
    residual: bool,
    /// Super-resolution: make each block of the output average to its LR pixel.
    #[arg(long)]
    flux_conserving: bool,
    /// Super-resolution: channels of the convolutional decoder.
    #[arg(long, default_value_t = 64)]
    channels: usize,
    /// Super-resolution: the pixel loss.
    #[arg(long, value_enum, default_value_t = LossArg::L1)]
    loss: LossArg,
    /// Joint: where the super-resolution checkpoint goes (--out is the classifier's).
    #[arg(long, required_if_eq("task", "joint"))]
    superres_out: Option<PathBuf>,
    /// Joint: weight of the super-resolution pixel loss beside the cross-entropy.
    #[arg(long, default_value_t = 10.0)]
    superres_weight: f64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LossArg {
    L1,
    Mse,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FinetuneTask {
    Classify,
    Superres,
    /// Classification and super-resolution at once, one shared encoder, on
    /// LR/HR pairs with labels; writes two checkpoints (--out, --superres-out).
    Joint,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AugmentArg {
    None,
    Dihedral,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PoolingArg {
    Cls,
    Mean,
    /// All patch tokens side by side: a head weight per position.
    Flatten,
}

/// Arguments of `lensmae evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier or super-resolution checkpoint.
    #[arg(long, required_unless_present = "predictions", conflicts_with = "predictions")]
    model: Option<PathBuf>,
    /// Instead of a checkpoint: a table of per-row class probabilities (Parquet or
    /// Arrow IPC with `id` and `p_<class>` columns, as `lensmae predict` writes it, or any
    /// other model's output in those columns), scored against the labelled rows
    /// of --input with the same `id`.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Labelled images (Parquet, Arrow IPC, FITS, `.npy` tree) for a classifier;
    /// LR/HR pairs (a table with `lr` and `hr` columns) for a super-resolution model.
    #[arg(long)]
    input: PathBuf,
    /// Image column.
    #[arg(long, default_value = "image")]
    image_col: String,
    /// Write the JSON report here (default: print it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Replace an existing report (and its plots).
    #[arg(long)]
    overwrite: bool,
    /// Write the ROC curves as a PNG here (default: beside --report, as
    /// `<report stem>.roc.png`; none when the report is printed).
    #[arg(long)]
    roc_plot: Option<PathBuf>,
    /// Super-resolution: write a PNG grid of LR / bicubic / model / HR /
    /// residual here (default: beside --report, as `<report stem>.grid.png`).
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Super-resolution: examples (rows) in the grid.
    #[arg(long, default_value_t = 4)]
    grid_rows: usize,
    /// Super-resolution: apply the flux-conserving projection at inference
    /// (each block of the output then averages to its LR pixel) even if the
    /// model was trained without it.
    #[arg(long)]
    flux_conserving: bool,
    /// Classifier: `dihedral` averages its probabilities over the 8 rotations and
    /// reflections of each image, as `predict --tta dihedral` (recorded in the report).
    #[arg(long, default_value = "none", value_parser = str::parse::<TestTimeAugmentation>, conflicts_with = "predictions")]
    tta: TestTimeAugmentation,
    /// Images per inference batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `lensmae model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print a checkpoint's description (config, task, classes, provenance).
    Info {
        /// The checkpoint (or a bundled model: `bundled:classifier`, `bundled:superres`,
        /// `bundled:survey-classifier`, `bundled:survey-residual-classifier`, `bundled:survey-superres`).
        checkpoint: PathBuf,
    },
    /// Write a compact copy of a checkpoint for shipping: weights in f16
    /// (preprocessing statistics stay f32), same description.
    Export {
        /// The checkpoint.
        #[arg(long)]
        model: PathBuf,
        /// The compact checkpoint to write.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing --out.
        #[arg(long)]
        overwrite: bool,
    },
    /// Fit a classifier's calibration on labelled images it was not trained on
    /// (validation data): the softmax temperature, and the model of its training
    /// domain behind `ood_score` / `in_domain` with the threshold at a quantile of
    /// these images' out-of-fold scores. Writes the calibrated checkpoint (weights unchanged).
    Calibrate {
        /// The classifier (a path or `bundled:classifier`).
        #[arg(long)]
        model: PathBuf,
        /// Labelled images from the model's domain, not its training data.
        #[arg(long)]
        data: PathBuf,
        /// Image column of the data.
        #[arg(long, default_value = "image")]
        image_col: String,
        /// Share of the data to admit into the model's domain: the `ood_score`
        /// threshold is set so that it and the other bounds (a residual's chi^2 and
        /// noise level, a fit that found no lens) together flag the rest.
        #[arg(long, default_value_t = crate::train::calibrate::DEFAULT_OOD_QUANTILE)]
        ood_quantile: f64,
        /// Images per forward pass.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// For a classifier of smooth-lens residuals: take the fit recipe of the
        /// data's residuals as its own (`predict` then fits cutouts that way), where
        /// they were fitted otherwise from the same simulator recipe (a mended fit).
        #[arg(long)]
        adopt_fit_recipe: bool,
        /// The calibrated checkpoint to write.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing --out.
        #[arg(long)]
        overwrite: bool,
    },
}

fn read_data(path: &std::path::Path, col: &str) -> anyhow::Result<crate::data::images::LabelledImages> {
    read_labelled_images(path, col).with_context(|| format!("reading {}", path.display()))
}

/// The images of every `--data`, joined in order.
fn read_training_data(paths: &[PathBuf], col: &str) -> anyhow::Result<crate::data::images::LabelledImages> {
    let parts = paths.iter().map(|p| read_data(p, col)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(crate::data::images::LabelledImages::join(parts)?)
}

fn print_outcome(outcome: &crate::train::TrainOutcome) {
    if let Some(last) = outcome.epochs.last() {
        eprintln!("last epoch {}: train loss {:.4}, val loss {:.4}", last.epoch, last.train_loss, last.val_loss);
    }
    eprintln!("best epoch {} -> {}", outcome.best_epoch, outcome.checkpoint.display());
    if let Some(t) = &outcome.test {
        eprintln!("test: macro AUC {:.4}, accuracy {:.4}, macro F1 {:.4}", t.macro_auc, t.accuracy, t.macro_f1);
    }
    if let Some(l) = outcome.test_loss {
        eprintln!("test MAE loss {l:.5}");
    }
}

/// Run `lensmae pretrain`.
pub fn pretrain_cmd(args: PretrainArgs) -> anyhow::Result<()> {
    let mut model = args.common.model_config()?;
    model.norm_pix_loss = args.norm_pix_loss;
    let opts = PretrainOptions {
        train: args.common.options(1.5e-4, 0.05)?,
        model,
        mask_ratio: (args.mask_ratio_start.unwrap_or(args.mask_ratio), args.mask_ratio),
        classes: args.classes,
    };
    opts.validate()?;
    let data = read_training_data(&args.common.data, &args.common.image_col)?;
    print_outcome(&pretrain(&data, &opts)?);
    Ok(())
}

/// Run `lensmae finetune`.
pub fn finetune_cmd(args: FinetuneArgs) -> anyhow::Result<()> {
    let init = match &args.init {
        Some(p) => EncoderInit::Mae(p.clone()),
        None => EncoderInit::Scratch,
    };
    if args.freeze_encoder && !matches!(args.task, FinetuneTask::Classify) {
        bail!("--freeze-encoder is for classification probes; super-resolution trains the whole model");
    }
    if args.superres_out.is_some() && !matches!(args.task, FinetuneTask::Joint) {
        bail!("--superres-out is for --task joint");
    }
    let loss = match args.loss {
        LossArg::L1 => PixelLoss::L1,
        LossArg::Mse => PixelLoss::Mse,
    };
    let pooling = match args.pooling.unwrap_or(PoolingArg::Cls) {
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
        PoolingArg::Flatten => Pooling::Flatten,
    };
    if !matches!(args.task, FinetuneTask::Classify) {
        let [data] = args.common.data.as_slice() else {
            bail!("--data: super-resolution trains on one dataset of image pairs, not several");
        };
        let pairs = read_image_pairs(data).with_context(|| format!("reading {}", data.display()))?;
        let head = SuperresConfig {
            factor: pairs.factor(),
            channels: args.channels,
            residual: args.residual,
            flux_conserving: args.flux_conserving,
        };
        let model = args.common.model_config()?;
        if let Some(superres_out) = args.superres_out.clone() {
            let opts = JointOptions {
                train: args.train_options(5e-4, 0.05)?,
                model,
                head,
                init,
                pooling,
                dropout: args.dropout.unwrap_or(VIT_DROPOUT),
                standardise_pixels: args.standardise_pixels,
                loss,
                superres_weight: args.superres_weight,
                superres_out,
            };
            let outcome = finetune_joint(&pairs, &opts)?;
            eprintln!(
                "best epoch {} -> {} and {}",
                outcome.best_epoch,
                outcome.classifier.display(),
                outcome.superres.display()
            );
            let t = &outcome.classify_test;
            eprintln!("test: macro AUC {:.4}, accuracy {:.4}, macro F1 {:.4}", t.macro_auc, t.accuracy, t.macro_f1);
            print_superres(&outcome.superres_test, "test");
            return Ok(());
        }
        let opts = SuperresOptions { train: args.train_options(5e-4, 0.05)?, model, head, init, loss };
        let outcome = finetune_superres(&pairs, &opts)?;
        eprintln!("best epoch {} -> {}", outcome.best_epoch, outcome.checkpoint.display());
        print_superres(&outcome.test, "test");
        return Ok(());
    }
    let network = args.common.network()?;
    if network.vit().is_none() && args.pooling.is_some() {
        bail!("--pooling: the ResNet ({}) pools its last maps globally; the option is the ViT's", network.describe());
    }
    let opts = FinetuneOptions {
        train: args.train_options(
            if args.freeze_encoder { 1e-2 } else { 5e-4 },
            if args.freeze_encoder { 0.0 } else { 0.05 },
        )?,
        model: network.clone(),
        init,
        freeze_encoder: args.freeze_encoder,
        pooling,
        dropout: args.dropout.unwrap_or(if network.vit().is_some() { VIT_DROPOUT } else { 0.0 }),
        standardise_pixels: args.standardise_pixels,
    };
    let data = read_training_data(&args.common.data, &args.common.image_col)?;
    print_outcome(&finetune_classify(&data, &opts)?);
    Ok(())
}

fn print_superres(e: &SuperresEvaluation, split: &str) {
    for (name, m) in [("model", &e.model), ("bicubic", &e.bicubic), ("nearest", &e.nearest)] {
        eprintln!("{split} {name:>8}: SSIM {:.4}, PSNR {:.2} dB, MSE {:.3e} ({} images)", m.ssim, m.psnr, m.mse, m.n);
    }
}

/// The default path of a figure beside the report: `<report stem>.<suffix>`.
fn beside_report(report: &Option<PathBuf>, explicit: &Option<PathBuf>, suffix: &str) -> Option<PathBuf> {
    explicit.clone().or_else(|| report.as_deref().map(|r| crate::report::beside(r, suffix)))
}

/// `lensmae evaluate` of a super-resolution checkpoint on LR/HR pairs.
fn evaluate_superres_cmd(
    args: &EvaluateArgs,
    model_path: &Path,
    tensors: HashMap<String, candle_core::Tensor>,
    mut meta: CheckpointMeta,
    dev: &Device,
) -> anyhow::Result<()> {
    if let Some(head) = meta.superres.as_mut() {
        head.flux_conserving |= args.flux_conserving;
    }
    let loaded = LoadedSuperres::from_checkpoint(model_path, tensors, meta, dev)?;
    let pairs = read_image_pairs(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let all: Vec<usize> = (0..pairs.hr.len()).collect();
    let evaluation = evaluate_superres_model(&loaded, &pairs, &all, args.batch_size)?;
    let json = serde_json::json!({
        "model": model_path.display().to_string(), "input": args.input.display().to_string(), "superres": evaluation,
    });
    write_report(&args.report, &json)?;
    print_superres(&evaluation, "all");
    if let Some(path) = beside_report(&args.report, &args.grid, "grid.png") {
        let shown: Vec<usize> = all.iter().copied().take(args.grid_rows).collect();
        let png = crate::report::superres_grid_png(&loaded.model, &pairs, &shown)?;
        crate::data::atomic::write_atomically(&path, png)?;
        eprintln!("example grid -> {}", path.display());
    }
    Ok(())
}

/// The JSON report at `path`, or on stdout without one.
fn write_report(path: &Option<PathBuf>, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(json)?;
    match path {
        Some(path) => crate::data::atomic::write_atomically(path, text)?,
        None => crate::cli::out(format_args!("{text}"))?,
    }
    Ok(())
}

/// Run `lensmae evaluate`.
pub fn evaluate_cmd(args: EvaluateArgs) -> anyhow::Result<()> {
    let inputs: Vec<PathBuf> =
        [Some(&args.input), args.model.as_ref(), args.predictions.as_ref()].into_iter().flatten().cloned().collect();
    for (flag, out) in [("--report", &args.report), ("--roc-plot", &args.roc_plot), ("--grid", &args.grid)] {
        if let Some(out) = out {
            crate::data::atomic::refuse_output_over_inputs(&inputs, out, flag)?;
        }
    }
    if let Some(report) = &args.report {
        crate::data::atomic::refuse_existing(report, args.overwrite)?;
    }
    let (evaluated, evaluation) = match (&args.model, &args.predictions) {
        (Some(model), _) => {
            let dev = args.device.open()?;
            let (tensors, meta) = load_checkpoint(model, &dev)?;
            match meta.task {
                ModelTask::Classify => {}
                ModelTask::Superres if args.tta != TestTimeAugmentation::None => {
                    bail!("{}: --tta is for classifiers, this is a super-resolution model", model.display())
                }
                ModelTask::Superres => return evaluate_superres_cmd(&args, model, tensors, meta, &dev),
                other => bail!(
                    "{}: a {other:?} checkpoint; evaluate needs a classifier or a super-resolution model",
                    model.display()
                ),
            }
            let classifier = LoadedClassifier::from_checkpoint(model, tensors, meta, &dev)?.with_tta(args.tta)?;
            let (data, parameters) = read_labelled_with_parameters(&args, true)?;
            (("model", model.as_path()), evaluate_classifier(&classifier, &data, &parameters, args.batch_size)?)
        }
        (None, Some(predictions)) => {
            let table = read_predictions(predictions)?;
            let (data, parameters) = read_labelled_with_parameters(&args, false)?;
            (("predictions", predictions.as_path()), evaluate_predictions(&table, predictions, &data, &parameters)?)
        }
        (None, None) => bail!("evaluate needs --model or --predictions"),
    };
    let mut json = evaluation.to_json(&[evaluated, ("input", args.input.as_path())]);
    if args.tta != TestTimeAugmentation::None {
        json["tta"] = args.tta.name().into();
    }
    write_report(&args.report, &json)?;
    eprint!("{}", evaluation.summary());
    let title = format!("{} on {}", file_name(evaluated.1), file_name(&args.input));
    if let Some(report) = &args.report {
        for (suffix, png) in crate::report::classifier_figures(&evaluation, &title)? {
            let explicit = if suffix == "roc.png" { args.roc_plot.clone() } else { None };
            let path = explicit.unwrap_or_else(|| crate::report::beside(report, &suffix));
            crate::data::atomic::write_atomically(&path, png)?;
            eprintln!("{suffix} -> {}", path.display());
        }
    } else if let Some(path) = &args.roc_plot {
        crate::data::atomic::write_atomically(path, crate::report::plot::roc_png(&evaluation.report, &title)?)?;
    }
    if !evaluation.unscored_ids.is_empty() {
        let ids = &evaluation.unscored_ids;
        bail!(
            "{}: {} rows have no probabilities (their prediction failed; first ids {:?}); the report leaves them out",
            evaluated.1.display(),
            ids.len(),
            &ids[..ids.len().min(5)]
        );
    }
    Ok(())
}

/// The labelled images of `--input` (from a table without its pixels unless
/// `with_pixels`) and, from a table, the columns the report bins by.
fn read_labelled_with_parameters(
    args: &EvaluateArgs,
    with_pixels: bool,
) -> anyhow::Result<(crate::data::images::LabelledImages, crate::data::images::FloatColumns)> {
    let is_table = crate::data::images::is_table(&args.input)?;
    let data = if is_table && !with_pixels {
        read_parquet_labels(&args.input).with_context(|| format!("reading {}", args.input.display()))?
    } else {
        read_data(&args.input, &args.image_col)?
    };
    let parameters = if is_table { read_float_columns(&args.input, &evaluated_column_names())? } else { Vec::new() };
    Ok((data, parameters))
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Run `lensmae model ...`.
pub fn model_cmd(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Info { checkpoint } => {
            let meta = read_checkpoint_meta(&checkpoint)?;
            crate::cli::out(format_args!("{}", serde_json::to_string_pretty(&meta)?))?;
            Ok(())
        }
        ModelCommand::Export { model: checkpoint, out, overwrite } => {
            // Not over the checkpoint itself: its f32 weights would be gone for good.
            crate::data::atomic::refuse_output_over_inputs(std::slice::from_ref(&checkpoint), &out, "--out")?;
            crate::data::atomic::refuse_existing(&out, overwrite)?;
            let (tensors, mut meta) = load_checkpoint(&checkpoint, &Device::Cpu)?;
            if let Some(p) = meta.provenance.as_object_mut() {
                p.insert("exported_from".into(), checkpoint.display().to_string().into());
                p.insert("weights_dtype".into(), "f16".into());
            }
            save_checkpoint(&out, &compact_tensors(&tensors)?, &meta)?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            eprintln!("{} -> {} ({:.2} MB, f16 weights)", checkpoint.display(), out.display(), size as f64 / 1e6);
            Ok(())
        }
        ModelCommand::Calibrate {
            model,
            data,
            image_col,
            ood_quantile,
            batch_size,
            adopt_fit_recipe,
            out,
            overwrite,
        } => {
            crate::data::atomic::refuse_output_over_inputs(&[data.clone(), model.clone()], &out, "--out")?;
            crate::data::atomic::refuse_existing(&out, overwrite)?;
            let images = read_data(&data, &image_col)?;
            let summary = crate::train::calibrate::calibrate_checkpoint(
                &model,
                &images,
                &out,
                ood_quantile,
                batch_size,
                adopt_fit_recipe,
                &Device::Cpu,
            )
            .with_context(|| format!("calibrating {}", model.display()))?;
            eprintln!(
                "temperature {:.4} (ECE {:.4} -> {:.4} on {} images), ood_score threshold {:.3}; flagged {:.2}% of \
                 them ({:.2}% by bounds besides the score) -> {}",
                summary.temperature,
                summary.ece_before,
                summary.ece_after,
                summary.images,
                summary.ood_threshold,
                100.0 * summary.flagged,
                100.0 * summary.flagged_otherwise,
                out.display()
            );
            crate::cli::out(format_args!("{}", serde_json::to_string_pretty(&summary)?))?;
            Ok(())
        }
    }
}
