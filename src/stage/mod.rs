//! The streaming survey stage: cutouts in (Parquet, FITS, `.npy`), class
//! probabilities and super-resolved cutouts out, as one Parquet table.
//!
//! A reader thread decodes batch `k + 1` while the model runs on batch `k`; the
//! queue between them holds two batches, so memory follows the batch size, not the
//! catalogue's. Every input row gives exactly one output row: an image that cannot
//! be used (undecodable, wrong size, non-finite pixels under `skip-row`) keeps its
//! row, with nulls and the reason in `status`. The output appears under its name
//! only when complete.

pub mod chunks;
pub mod geometry;
pub mod observation;
pub mod output;
pub mod sr_fits;

pub use crate::data::cutouts::{open_input, CutoutBatch, CutoutReader, InputDescription, InputOptions};
pub use crate::data::ipc::table_writer::STANDARD_STREAM;
pub use crate::data::predictions::UNSTABLE_FIT;
use crate::infer::residuals::{mean_over_refits, FitWatch, FittedCutout, LENS_QUANTITIES};
use crate::infer::{
    file_sha256, reads_as_residuals, super_resolve, LoadedClassifier, LoadedSuperres, TestTimeAugmentation,
};
use crate::model::checkpoint::{BUNDLED_CLASSIFIER, BUNDLED_SUPERRES};
use crate::model::preprocess::{Centring, CENTRING_REACH};
use crate::progress::{Progress, SharedProgress};
use crate::{Error, Result};
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use candle_core::Device;
pub use observation::{read_psf_image, FitNoise, ObservationSource, MOFFAT_BETA_COLUMN};
use output::{predictions_schema, PREDICTIONS_SCHEMA_VERSION};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What to do with an image that has NaN or infinite pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NanPolicy {
    /// Stop with an error naming the row.
    Fail,
    /// Set them to 0 and predict (the status says how many); a classifier of
    /// smooth-lens residuals masks them in its fit instead.
    Zero,
    /// Predict nothing for the row; its status says why.
    SkipRow,
}

/// What `predict` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageTask {
    /// Class probabilities.
    Classify,
    /// Super-resolved cutouts.
    Superres,
    /// Super-resolve, then classify the super-resolved cutouts.
    All,
}

/// Everything `lensmae predict` needs.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Input files (one kind), or a folder of `.npy` images.
    pub inputs: Vec<PathBuf>,
    /// How to find the images in them.
    pub input: InputOptions,
    /// The models and how they answer.
    pub predictor: PredictorOptions,
    /// The output Parquet file.
    pub out: PathBuf,
    /// Replace an existing output (file, or chunk files).
    pub overwrite: bool,
    /// Rows per chunk file when `out` is a folder.
    pub chunk_rows: usize,
    /// Write only this shard's chunks (folder output).
    pub shard: Option<chunks::Shard>,
    /// Keep the chunks a previous run finished (folder output).
    pub resume: bool,
    /// Stops the run between batches.
    pub cancel: crate::cancel::Cancel,
    /// The command that asked for the run, recorded in the output's metadata.
    pub command: Option<String>,
    /// How progress is shown on stderr.
    pub progress: crate::progress::ProgressMode,
}

/// What a finished `predict` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PredictSummary {
    /// The output file.
    pub out: PathBuf,
    /// Rows written (= rows read).
    pub rows: usize,
    /// Rows with a prediction.
    pub predicted: usize,
    /// Rows without one, by reason.
    pub not_predicted: HashMap<String, usize>,
    /// Rows a smooth-lens fit was made of (a classifier of residuals).
    pub fitted: usize,
    /// Of those, the rows whose deflector's core the fit left less explained than
    /// nine in ten of the classifier's own lenses (`fit_core_chi2` above
    /// [`CORE_CHI2_TYPICAL`](crate::infer::residuals::CORE_CHI2_TYPICAL)): most of a
    /// run's rows there means its PSF is not what the fit assumed.
    pub core_unexplained: usize,
    /// Predicted rows whose image lies outside the classifier's training domain.
    pub out_of_domain: usize,
    /// Of those, rows whose deflector lies beyond the classifier's centring search.
    pub off_centre: usize,
    /// Predicted rows whose smooth-lens fit its refits did not find again or
    /// answered apart.
    pub unstable_fit: usize,
    /// Rows without a prediction for a reason other than a policy the caller chose
    /// (`--nan-policy skip-row`): unreadable or truncated inputs, failed models.
    pub failed: usize,
    /// Rows predicted as each class.
    pub per_class: HashMap<String, usize>,
    /// Chunk files written by this run.
    pub chunks_written: usize,
    /// Chunks left to other shards or finished before (resume).
    pub chunks_skipped: usize,
    /// HATS input written as a sibling catalogue: whether this run completed its
    /// metadata (the run that finishes its last partition does). None for other
    /// inputs and outputs, which have no catalogue to finish.
    pub catalogue_finished: Option<bool>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Of which in the models (preprocessing included), seconds: the rest is the
    /// stage's own cost where reading does not overlap inference.
    pub model_seconds: f64,
}

/// What a [`Predictor`] loads and how it answers: the models, the task, the batch
/// size and the non-finite pixel policy (everything that changes an output row).
#[derive(Debug, Clone)]
pub struct PredictorOptions {
    /// The classifier checkpoint (classify, all); the bundled one when `None`.
    pub model: Option<PathBuf>,
    /// The super-resolution checkpoint (superres, all); the bundled one when `None`.
    pub sr_model: Option<PathBuf>,
    /// What runs.
    pub task: StageTask,
    /// Images per inference batch (and per read).
    pub batch_size: usize,
    /// Where the models run.
    pub device: Device,
    /// Non-finite pixels.
    pub nan_policy: NanPolicy,
    /// Where the cutouts' pixel scale comes from (for bringing them to the model's grid).
    pub pixel_scale: geometry::PixelScale,
    /// The views of each cutout the classifier's probabilities average.
    pub tta: TestTimeAugmentation,
    /// Where a classifier of smooth-lens residuals finds each cutout's PSF and
    /// exposure time (unused by other models).
    pub observation: ObservationSource,
    /// Refits of each cutout moved within its last 16 bits, for a classifier of
    /// smooth-lens residuals (unused by other models): the answer is the mean over
    /// the fit and the refits, and a row whose refits land more than
    /// `UNSTABLE_FIT_CHI2` from its fit, or answer more than `UNSTABLE_ANSWER` apart,
    /// is answered with status [`UNSTABLE_FIT`].
    /// 0 reads the first fit alone and checks nothing; each refit costs one more fit.
    pub fit_refits: usize,
}

/// The refits `predict` and the Python binding run by default (`fit_refits`).
pub const DEFAULT_FIT_REFITS: usize = 2;

/// Models loaded once and ready to answer batches of cutouts: the prepared model
/// of the inference layer, with the stage's row statuses and output columns. It
/// holds no process-wide state; a caller may hold several and call them from
/// several threads (`&self` throughout).
pub struct Predictor {
    options: PredictorOptions,
    classifier: Option<LoadedClassifier>,
    superres: Option<LoadedSuperres>,
    /// The classifier reads smooth-lens residuals and the input holds cutouts to fit
    /// (not residuals already made with its recipe).
    fits_inputs: bool,
}

impl Predictor {
    /// Loads the models the task needs and checks that they fit together.
    pub fn load(options: &PredictorOptions) -> Result<Predictor> {
        if options.batch_size == 0 {
            return Err(Error::config("--batch-size", "must be at least 1"));
        }
        options.observation.check()?;
        // Without a model argument the bundled models run.
        let or_bundled = |path: &Option<PathBuf>, name: &str| path.clone().unwrap_or_else(|| PathBuf::from(name));
        let classifier = match options.task {
            StageTask::Classify | StageTask::All => Some(
                LoadedClassifier::load(&or_bundled(&options.model, BUNDLED_CLASSIFIER), &options.device)?
                    .with_tta(options.tta)?,
            ),
            StageTask::Superres => None,
        };
        let superres = match options.task {
            StageTask::Superres | StageTask::All => {
                Some(LoadedSuperres::load(&or_bundled(&options.sr_model, BUNDLED_SUPERRES), &options.device)?)
            }
            StageTask::Classify => None,
        };
        if let (Some(_), Some(c)) = (&superres, &classifier) {
            if c.residuals.is_some() {
                return Err(Error::config(
                    "--task",
                    format!(
                        "{} fits a smooth lens to observed cutouts, not to super-resolved ones: use --task classify",
                        c.path.display()
                    ),
                ));
            }
        }
        if let (Some(sr), Some(c)) = (&superres, &classifier) {
            if sr.hr_size() != c.image_size() {
                return Err(Error::config(
                    "--model",
                    format!(
                        "{} makes {2}x{2} images, the classifier {} takes {3}x{3}",
                        sr.path.display(),
                        c.path.display(),
                        sr.hr_size(),
                        c.image_size()
                    ),
                ));
            }
        }
        let fits_inputs = classifier.as_ref().is_some_and(|c| c.residuals.is_some());
        let mut options = options.clone();
        if let Some(fitter) = classifier.as_ref().and_then(|c| c.residuals.as_ref()) {
            options.observation = options.observation.for_recipe_psf(&fitter.recipe.simulator.psf);
        }
        Ok(Predictor { options, classifier, superres, fits_inputs })
    }

    /// The predictor for `inputs`: a table of smooth-lens residuals (written by
    /// `simulate --smooth-lens-residuals`, which records their recipe) goes to a
    /// classifier of residuals of the same recipe as it is, without a second fit;
    /// residuals for any other classifier, or of another recipe, are refused.
    pub fn for_inputs(mut self, inputs: &[PathBuf]) -> Result<Predictor> {
        if self.inputs_hold_residuals(inputs)? {
            self.fits_inputs = false;
        }
        Ok(self)
    }

    /// Whether the table file `inputs` begin with holds smooth-lens residuals made
    /// with the classifier's own recipe (an error naming it when it holds residuals
    /// the models do not read).
    pub fn inputs_hold_residuals(&self, inputs: &[PathBuf]) -> Result<bool> {
        match inputs.first().filter(|p| p.is_file() && crate::data::is_table_name(p)) {
            Some(first) => self.reads_as_residuals(&*crate::data::table_schema(first)?, first),
            None => Ok(false),
        }
    }

    /// Whether an input of table schema `schema` holds smooth-lens residuals made
    /// with the classifier's own recipe (to be read as they are); an error naming
    /// `source` when it holds residuals the models do not read.
    pub fn reads_as_residuals(&self, schema: &arrow_schema::Schema, source: &Path) -> Result<bool> {
        let recorded = crate::data::parquet::recorded_smooth_lens_residuals(schema, source)?;
        let fitter = self.classifier.as_ref().and_then(|c| c.residuals.as_ref());
        reads_as_residuals(fitter, recorded.as_ref(), source)
    }

    /// `input` with the columns the models need carried too, where the input has
    /// them: a classifier of smooth-lens residuals reads each cutout's PSF and
    /// exposure time (and zero point, when a column is named) from its row unless one
    /// value is given for all (Parquet columns; a FITS file's PARAMS table or header
    /// keywords; `.npy` images need the values). Those the input lacks are named, all
    /// of them, by the first batch, with how to give each.
    pub fn input_options(&self, input: &InputOptions) -> InputOptions {
        let mut input = input.clone();
        if self.fits_inputs {
            for column in self.options.observation.columns() {
                if !input.keep.contains(&column) && !input.carry_if_present.contains(&column) {
                    input.carry_if_present.push(column);
                }
            }
        }
        input
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &PredictorOptions {
        &self.options
    }

    /// The classifier's class names (empty for super-resolution alone).
    pub fn class_names(&self) -> Vec<String> {
        self.classifier.as_ref().map(|c| c.meta.class_names.clone()).unwrap_or_default()
    }

    /// `[height, width]` of the cutouts it takes.
    pub fn input_shape(&self) -> [usize; 2] {
        let side = match (&self.superres, &self.classifier) {
            (Some(sr), _) => sr.lr_size(),
            (None, Some(c)) => c.image_size(),
            (None, None) => unreachable!("every task loads a model"),
        };
        [side, side]
    }

    /// Arcsec per pixel of the images the first model takes, when its checkpoint records it.
    pub fn input_pixel_scale(&self) -> Option<f64> {
        match (&self.superres, &self.classifier) {
            (Some(sr), _) => {
                let hr = sr.meta.preprocessing.pixel_scale?;
                Some(hr * sr.hr_size() as f64 / sr.lr_size() as f64)
            }
            (None, Some(c)) => c.meta.preprocessing.pixel_scale,
            (None, None) => unreachable!("every task loads a model"),
        }
    }

    /// How the input's cutouts are brought to the first model's grid, or an error
    /// when they cannot be (another size at an unknown pixel scale).
    pub fn check_input(&self, desc: &InputDescription) -> Result<geometry::Geometry> {
        let [h, w] = desc.image_shape;
        let [first_size, _] = self.input_shape();
        let first_path = match (&self.superres, &self.classifier) {
            (Some(sr), _) => &sr.path,
            (_, Some(c)) => &c.path,
            (None, None) => unreachable!("every task loads a model"),
        };
        let input = desc.files.first().map(|p| p.display().to_string()).unwrap_or_else(|| "input".into());
        let model_name = first_path.display().to_string();
        geometry::Geometry::new(
            desc.image_shape,
            first_size,
            self.input_pixel_scale(),
            self.options.pixel_scale,
            desc.pixel_scale.is_some(),
            &model_name,
        )
        .map_err(|why| {
            // Low-resolution cutouts for the classifier: say how to super-resolve them first.
            let bundled_lr = crate::model::checkpoint::read_checkpoint_meta(Path::new(BUNDLED_SUPERRES))
                .ok()
                .and_then(|m| Some((m.superres.as_ref()?.lr_size(m.model.vit()?), m.model.image_size())));
            let hint = match (&self.superres, &self.classifier) {
                (None, Some(_)) if h == w && bundled_lr == Some((h, first_size)) => {
                    " (or `--task all`, which super-resolves them first with the bundled super-resolution model)"
                }
                _ => "",
            };
            Error::config("--pixel-scale", format!("{input}: {why}{hint}"))
        })
    }

    /// The output file metadata: versions, models (with SHA-256), `inputs`, task, policy.
    pub fn output_metadata(&self, inputs: &[String]) -> Result<HashMap<String, String>> {
        let mut m = HashMap::from([
            ("lensmae:version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("lensmae:schema_version".to_string(), PREDICTIONS_SCHEMA_VERSION.to_string()),
            ("lensmae:task".to_string(), format!("{:?}", self.options.task).to_lowercase()),
            ("lensmae:input".to_string(), serde_json::to_string(inputs).expect("strings serialise")),
            (
                "lensmae:nan_policy".to_string(),
                serde_json::to_value(self.options.nan_policy).expect("enum").as_str().unwrap_or_default().to_string(),
            ),
        ]);
        if let Some(c) = &self.classifier {
            m.insert("lensmae:tta".into(), c.tta.name().to_string());
            m.insert("lensmae:model".into(), c.path.display().to_string());
            m.insert("lensmae:model_sha256".into(), file_sha256(&c.path)?);
            m.insert("lensmae:class_names".into(), serde_json::to_string(&c.meta.class_names).expect("strings"));
            if self.fits_inputs && c.residuals.is_some() {
                m.insert(crate::data::predictions::FIT_REFITS_KEY.into(), self.options.fit_refits.to_string());
            }
        }
        if let Some(sr) = &self.superres {
            m.insert("lensmae:sr_model".into(), sr.path.display().to_string());
            m.insert("lensmae:sr_model_sha256".into(), file_sha256(&sr.path)?);
        }
        Ok(m)
    }

    /// The output columns for these carried columns.
    pub fn output_schema(&self, carried: &[arrow_schema::Field], metadata: HashMap<String, String>) -> SchemaRef {
        let sr_shape = self.superres.as_ref().map(|s| [s.hr_size(), s.hr_size()]);
        predictions_schema(carried, &self.class_names(), self.fits_inputs, sr_shape, metadata)
    }

    /// Every row of `reader` predicted in memory, in batches of the batch size:
    /// the same batches, so the same values, as `predict` writes for that input.
    pub fn predict_reader(
        &self,
        reader: &mut dyn CutoutReader,
        inputs: &[String],
        cancel: &crate::cancel::Cancel,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, PredictSummary)> {
        let geometry = self.check_input(reader.describe())?;
        let mut metadata = self.output_metadata(inputs)?;
        metadata.extend(output::provenance(None));
        let schema = self.output_schema(&reader.carried_fields(), metadata);
        let mut summary = PredictSummary::empty(PathBuf::new());
        let started = Instant::now();
        let mut out = Vec::new();
        let watch = FitWatch { cancel: Some(cancel), ..FitWatch::UNWATCHED };
        while let Some(batch) = reader.next_batch(self.options.batch_size)? {
            cancel.check("nothing returned")?;
            let n = batch.len();
            let predicted = self.predict_batch(batch, &geometry, summary.rows, &schema, &mut summary, watch)?;
            cancel.check("nothing returned")?;
            out.push(predicted);
            summary.rows += n;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok((schema, out, summary))
    }
}

impl PredictSummary {
    /// Whether more than half of at least 20 fitted rows left the deflector's core
    /// less explained than nine in ten of the classifier's own lenses: a run whose
    /// PSF the fit does not model (a batch of the classifier's own lenses lands there
    /// with a chance far below one in a million).
    pub fn psf_suspect(&self) -> bool {
        self.fitted >= 20 && self.core_unexplained * 2 > self.fitted
    }

    fn empty(out: PathBuf) -> PredictSummary {
        PredictSummary {
            out,
            rows: 0,
            predicted: 0,
            not_predicted: HashMap::new(),
            fitted: 0,
            core_unexplained: 0,
            out_of_domain: 0,
            off_centre: 0,
            unstable_fit: 0,
            failed: 0,
            per_class: HashMap::new(),
            chunks_written: 0,
            chunks_skipped: 0,
            catalogue_finished: None,
            seconds: 0.0,
            model_seconds: 0.0,
        }
    }
}

/// The options that change an output row, as a manifest records them (beside the
/// task, models and `--nan-policy`, which the output's metadata names).
fn row_options(opts: &PredictOptions, carried: &[arrow_schema::Field]) -> std::collections::BTreeMap<String, String> {
    let carried: Vec<String> = carried.iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
    let input = &opts.input;
    std::collections::BTreeMap::from([
        ("carried columns (--keep, --id-col)".to_string(), carried.join(", ")),
        ("--image-col".to_string(), input.image_column.clone().unwrap_or_default()),
        ("--shape".to_string(), input.shape.map(|[h, w]| format!("{h}x{w}")).unwrap_or_default()),
        ("--hdu".to_string(), input.hdu.clone().unwrap_or_default()),
        // Flags become NaN pixels; a noise map weights a smooth-lens fit and scales
        // noise-scaled models.
        ("--rms-hdu".to_string(), input.rms_hdu.clone().unwrap_or_default()),
        ("--weight-hdu".to_string(), input.weight_hdu.clone().unwrap_or_default()),
        ("--flag-hdu".to_string(), input.flag_hdu.clone().unwrap_or_default()),
        ("--noise-col".to_string(), input.noise_column.clone().unwrap_or_default()),
        ("--pixel-scale".to_string(), opts.predictor.pixel_scale.to_string()),
        ("--pixel-scale-col".to_string(), input.pixel_scale_column.clone().unwrap_or_default()),
        // Matrix products of another batch size may round differently in the last bit.
        ("--batch-size".to_string(), opts.predictor.batch_size.to_string()),
        ("--fit-refits".to_string(), opts.predictor.fit_refits.to_string()),
        ("--fit-noise".to_string(), opts.predictor.observation.noise.name().to_string()),
        // The fit's PSF, exposure and zero point when one value is given for all
        // (per-row values are carried columns, above).
        (
            "observation (--psf-fwhm, --exposure-time, --zero-point)".to_string(),
            opts.predictor.observation.given_values(),
        ),
    ])
}

/// The end of the status of a row skipped by `--nan-policy skip-row`.
const NON_FINITE_SKIP: &str = " non-finite pixels";

/// The end of the status of a row whose non-finite pixels the smooth-lens fit left
/// out (`--nan-policy zero` with a classifier of residuals).
const MASKED_IN_FIT: &str = " non-finite pixels masked in the fit";

/// Whether a row's status is a skip the caller asked for (not a failure).
fn skipped_by_policy(status: &str) -> bool {
    status.strip_prefix("skipped: ").is_some_and(|rest| {
        rest.strip_suffix(NON_FINITE_SKIP).is_some_and(|count| count.chars().all(|c| c.is_ascii_digit()))
    })
}

/// Status of each row and the pixels the model may use (non-finite pixels
/// handled by the policy), with each row's count of non-finite pixels (None: no
/// image); `Err` under `fail`. Under `zero`, rows that are to be fitted
/// (`masked_in_fit`) keep their non-finite pixels: the smooth-lens fit leaves them
/// out and its residual, which the model reads, is 0 there.
fn screen_rows(
    batch: &mut CutoutBatch,
    image_len: usize,
    policy: NanPolicy,
    first_row: usize,
    masked_in_fit: bool,
) -> Result<(Vec<String>, Vec<Option<i32>>)> {
    let mut status = Vec::with_capacity(batch.len());
    let mut nonfinite = Vec::with_capacity(batch.len());
    for r in 0..batch.len() {
        if let Some(problem) = &batch.problems[r] {
            status.push(format!("skipped: {problem}"));
            nonfinite.push(None);
            continue;
        }
        let img = &mut batch.pixels[r * image_len..(r + 1) * image_len];
        let bad = img.iter().filter(|v| !v.is_finite()).count();
        nonfinite.push(Some(i32::try_from(bad).unwrap_or(i32::MAX)));
        status.push(match (bad, policy) {
            (0, _) => "ok".to_string(),
            (_, NanPolicy::Fail) => {
                return Err(Error::config(
                    "--nan-policy",
                    format!(
                        "row {}{}: {bad} non-finite pixels (use --nan-policy zero or skip-row)",
                        first_row + r,
                        source_of(batch, r).map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                ))
            }
            (_, NanPolicy::Zero) if masked_in_fit => format!("ok: {bad}{MASKED_IN_FIT}"),
            (_, NanPolicy::Zero) => {
                img.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.0);
                format!("ok: {bad} non-finite pixels set to 0")
            }
            (_, NanPolicy::SkipRow) => format!("skipped: {bad}{NON_FINITE_SKIP}"),
        });
    }
    Ok((status, nonfinite))
}

/// The median of an image's finite noise sigmas, if it has any.
fn median_sigma(sigma: &[f32]) -> Option<f32> {
    let mut finite: Vec<f32> = sigma.iter().copied().filter(|s| s.is_finite() && *s > 0.0).collect();
    if finite.is_empty() {
        return None;
    }
    let middle = finite.len() / 2;
    Some(*finite.select_nth_unstable_by(middle, f32::total_cmp).1)
}

/// The `source` (file) or `id` of row `r`, for messages.
fn source_of(batch: &CutoutBatch, r: usize) -> Option<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let (_, col) = batch.carried.iter().find(|(f, _)| f.name() == "source" || f.name() == "id")?;
    match col.data_type() {
        arrow_schema::DataType::Utf8 => Some(col.as_string::<i32>().value(r).to_string()),
        arrow_schema::DataType::Int64 => Some(format!("id {}", col.as_primitive::<Int64Type>().value(r))),
        _ => None,
    }
}

/// Extensions of file formats `--out` does not write (refused rather than taken
/// as a folder name).
const FILE_EXTENSIONS: [&str; 9] = ["fz", "gz", "csv", "ecsv", "txt", "json", "npy", "h5", "hdf5"];

/// The status of a predicted row whose image is unlike the classifier's training data.
pub const OUT_OF_DOMAIN: &str = "out_of_domain";

impl Predictor {
    /// Runs one batch through the models (its cutouts first brought to their grid
    /// by `geometry`, from [`Predictor::check_input`]) and builds its output record
    /// batch (rows numbered from `first_row`), counting its rows in `summary`. A
    /// classifier of residuals fits each cutout first (seconds each): `watch` hears of
    /// each row fitted, and once cancelled the rows not yet fitted get
    /// [`NOT_FITTED_CANCELLED`](crate::infer::residuals::NOT_FITTED_CANCELLED), so
    /// that a caller who cancels drops the batch rather than write it.
    pub fn predict_batch(
        &self,
        mut batch: CutoutBatch,
        geometry: &geometry::Geometry,
        first_row: usize,
        schema: &arrow_schema::SchemaRef,
        summary: &mut PredictSummary,
        watch: FitWatch,
    ) -> Result<RecordBatch> {
        let (models, opts) = (self, &self.options);
        let regridded = geometry.apply(&mut batch);
        for (r, row) in regridded.iter().enumerate() {
            if batch.problems[r].is_none() {
                batch.problems[r] = row.problem.clone();
            }
        }
        let image_len = geometry.size() * geometry.size();
        // A classifier of smooth-lens residuals reads what the fit of each cutout leaves.
        let fitter = models.classifier.as_ref().and_then(|c| c.residuals.as_ref()).filter(|_| self.fits_inputs);
        let (mut status, nonfinite) = screen_rows(&mut batch, image_len, opts.nan_policy, first_row, fitter.is_some())?;
        let model_started = Instant::now();
        let fits = match fitter {
            Some(fitter) => {
                let scale_ratios: Vec<f64> = regridded.iter().map(|g| g.scale_ratio).collect();
                Some(observation::fit_rows(fitter, opts, &mut batch, &mut status, image_len, &scale_ratios, watch)?)
            }
            None => None,
        };
        let ok: Vec<bool> = status.iter().map(|s| s.starts_with("ok")).collect();
        let usable: Vec<usize> = (0..batch.len()).filter(|&r| ok[r]).collect();
        // Only the usable rows go to the models (all of them, usually: no copy then).
        let inputs: std::borrow::Cow<[f32]> = if usable.len() == batch.len() {
            std::borrow::Cow::Borrowed(&batch.pixels)
        } else {
            usable.iter().flat_map(|&r| batch.pixels[r * image_len..(r + 1) * image_len].iter().copied()).collect()
        };
        let sr = match &models.superres {
            Some(sr) => Some(super_resolve(&sr.model, &inputs, sr.lr_size(), opts.batch_size)?),
            None => None,
        };
        // A noise map's median sigma per image, for noise-scaled classifiers (not
        // after super-resolution: the SR images are on another grid; nor for a
        // smooth-lens fit's residuals, which are in units of the noise already).
        let sigmas: Option<Vec<Option<f32>>> = match (&batch.noise, &sr, &fits) {
            (Some(noise), None, None) => {
                Some(usable.iter().map(|&r| median_sigma(&noise[r * image_len..(r + 1) * image_len])).collect())
            }
            _ => None,
        };
        let mut predicted = match &models.classifier {
            Some(c) => {
                Some(c.predict_with_noise(sr.as_deref().unwrap_or(&inputs), sigmas.as_deref(), opts.batch_size)?)
            }
            None => None,
        };
        // A fitted row is answered by the mean over its fit and refits, and records
        // how far their answers lie apart.
        let mut answer_spread: Vec<Option<f32>> = vec![None; batch.len()];
        if let (Some(c), Some(fits), Some(predicted)) = (&models.classifier, &fits, predicted.as_mut()) {
            let refits: Vec<&[Vec<f32>]> = usable
                .iter()
                .map(|&r| fits.cutouts[r].as_ref().map_or(&[][..], |f| f.refit_residuals.as_slice()))
                .collect();
            let spreads =
                mean_over_refits(c, &refits, sigmas.as_deref(), &mut predicted.probabilities, opts.batch_size)?;
            for (&r, spread) in usable.iter().zip(spreads) {
                answer_spread[r] = spread;
            }
        }
        summary.model_seconds += model_started.elapsed().as_secs_f64();
        // Where the classifier found each row's deflector (antisymmetric scalings).
        let mut centring = vec![Centring::default(); batch.len()];
        if let Some(predicted) = &predicted {
            for (&r, &found) in usable.iter().zip(&predicted.centring) {
                centring[r] = found;
            }
        }
        // Rows outside the model's domain whatever their features say (calibrated
        // or not): a pixel scale far from the model's, or a deflector beyond its
        // centring search.
        let placed_outside: Vec<bool> =
            regridded.iter().zip(&centring).map(|(g, c)| g.out_of_domain || c.beyond_search).collect();
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from_iter_values((0..batch.len()).map(|r| (first_row + r) as i64)))];
        columns.extend(batch.carried.iter().map(|(_, a)| a.clone()));
        if let (Some(c), Some(predicted)) = (&models.classifier, &predicted) {
            let k = c.meta.class_names.len();
            let probs = &predicted.probabilities;
            let flags = c.in_domain_flags(predicted);
            let mut per_row: Vec<Option<&[f32]>> = vec![None; batch.len()];
            let mut ood: Vec<Option<f32>> = vec![None; batch.len()];
            let mut in_domain: Vec<Option<bool>> = vec![None; batch.len()];
            for (i, &r) in usable.iter().enumerate() {
                let p = &probs[i * k..(i + 1) * k];
                // A model that gives NaN or infinity (broken weights, overflow) has no answer.
                if p.iter().any(|v| !v.is_finite()) {
                    status[r] = "failed: the model's output is not finite".into();
                    continue;
                }
                per_row[r] = Some(p);
                ood[r] = predicted.ood_scores.as_ref().map(|s| s[i]);
                // A smooth-lens fit that found no lens leaves a residual of something else.
                let lens_found = fits.as_ref().and_then(|f| f.cutouts[r].as_ref()).is_none_or(|fit| fit.lens_found);
                in_domain[r] = match &flags {
                    Some(f) => Some(f[i] && !regridded[r].out_of_domain && lens_found),
                    None => (!lens_found).then_some(false),
                };
            }
            for (r, inside) in in_domain.iter().enumerate() {
                if *inside == Some(false) {
                    status[r] = OUT_OF_DOMAIN.into();
                }
            }
            // Out of the domain says more than an unstable fit, so it stays.
            let fitted = fits.iter().flat_map(|f| &f.cutouts);
            for ((s, fit), &spread) in status.iter_mut().zip(fitted).zip(&answer_spread) {
                if s.starts_with("ok") && fit.as_ref().is_some_and(|f| !f.is_reproducible(spread)) {
                    *s = UNSTABLE_FIT.into();
                }
            }
            for j in 0..k {
                columns.push(Arc::new(Float32Array::from_iter(per_row.iter().map(|p| p.map(|p| p[j])))));
            }
            let best = |p: &[f32]| (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
            let pred: Vec<Option<String>> =
                per_row.iter().map(|p| p.map(|p| c.meta.class_names[best(p)].clone())).collect();
            for name in pred.iter().flatten() {
                *summary.per_class.entry(name.clone()).or_default() += 1;
            }
            columns.push(Arc::new(StringArray::from(pred)));
            columns.push(Arc::new(Float32Array::from_iter(per_row.iter().map(|p| p.map(|p| p[best(p)])))));
            let entropy = |p: &[f32]| -p.iter().filter(|&&v| v > 0.0).map(|&v| v * v.ln()).sum::<f32>();
            columns.push(Arc::new(Float32Array::from_iter(per_row.iter().map(|p| p.map(entropy)))));
            columns.push(Arc::new(Float32Array::from(ood)));
            columns.push(Arc::new(arrow_array::BooleanArray::from(in_domain)));
            if let Some(fitted) = &fits {
                let fit_column = |value: &dyn Fn(&FittedCutout) -> Option<f64>| -> ArrayRef {
                    Arc::new(arrow_array::Float64Array::from_iter(
                        fitted.cutouts.iter().map(|f| f.as_ref().and_then(value)),
                    ))
                };
                columns.push(fit_column(&|f| Some(f.chi2_per_pixel)));
                columns.push(fit_column(&|f| Some(f.core_chi2)));
                // The lens model, then its errors (output::predictions_schema's order).
                for k in 0..LENS_QUANTITIES {
                    columns.push(fit_column(&|f| f.lens.quantities()[k]));
                }
                for k in 0..LENS_QUANTITIES {
                    columns.push(fit_column(&|f| f.lens_errors.and_then(|e| e.quantities()[k])));
                }
                let sky_column = |value: fn(&observation::LensOnSky) -> Option<f64>| -> ArrayRef {
                    Arc::new(arrow_array::Float64Array::from_iter(
                        fitted.on_sky.iter().map(|s| s.as_ref().and_then(value)),
                    ))
                };
                columns.push(sky_column(|s| Some(s.ra)));
                columns.push(sky_column(|s| Some(s.dec)));
                columns.push(sky_column(|s| s.position_angle));
                columns.push(sky_column(|s| s.shear_angle));
                columns.push(Arc::new(arrow_array::Float64Array::from(fitted.zero_points.clone())));
                columns.push(Arc::new(arrow_array::BooleanArray::from_iter(
                    fitted.cutouts.iter().map(|f| f.as_ref().map(|f| f.noise_map)),
                )));
                columns.push(fit_column(&|f| f.refit_spread));
                let answered = per_row.iter().zip(&answer_spread).map(|(p, &d)| p.and(d));
                columns.push(Arc::new(Float32Array::from_iter(answered)));
            }
        }
        if let (Some(sr), Some(images)) = (&models.superres, &sr) {
            let hr = sr.hr_size() * sr.hr_size();
            let mut builder = FixedSizeListBuilder::new(Float32Builder::with_capacity(batch.len() * hr), hr as i32)
                .with_field(Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true)));
            let mut next = images.chunks_exact(hr);
            for &row_ok in &ok {
                if row_ok {
                    builder.values().append_slice(next.next().expect("one SR image per usable row"));
                    builder.append(true);
                } else {
                    builder.values().append_nulls(hr);
                    builder.append(false);
                }
            }
            columns.push(Arc::new(builder.finish()));
            // The input's WCS, brought to the model's grid by the geometry, then
            // sampled `factor` times as finely.
            let factor = sr.hr_size() as f64 / sr.lr_size() as f64;
            let wcs = batch.wcs.iter().zip(&ok).map(|(wcs, &row_ok)| {
                wcs.as_ref().filter(|_| row_ok).and_then(|wcs| wcs.upsampled(factor).header_cards())
            });
            columns.push(Arc::new(StringArray::from_iter(wcs)));
        }
        // Answered, but out of the model's domain, calibrated or not.
        for (s, &outside) in status.iter_mut().zip(&placed_outside) {
            if outside && (s.starts_with("ok") || s == UNSTABLE_FIT) {
                *s = OUT_OF_DOMAIN.into();
            }
        }
        columns.push(Arc::new(arrow_array::Float64Array::from(
            regridded.iter().map(|g| g.pixel_scale).collect::<Vec<_>>(),
        )));
        columns.push(Arc::new(StringArray::from_iter_values(
            regridded.iter().zip(&centring).map(|(g, c)| geometry_note(g.note.as_deref(), c)),
        )));
        columns.push(Arc::new(arrow_array::Int32Array::from(nonfinite)));
        for fit in fits.iter().flat_map(|f| f.cutouts.iter().flatten()) {
            summary.fitted += 1;
            summary.core_unexplained += usize::from(fit.core_chi2 > crate::infer::residuals::CORE_CHI2_TYPICAL);
        }
        for (s, c) in status.iter().zip(&centring) {
            match s.as_str() {
                s if s.starts_with("ok") => summary.predicted += 1,
                OUT_OF_DOMAIN => {
                    summary.predicted += 1;
                    summary.out_of_domain += 1;
                    summary.off_centre += usize::from(c.beyond_search);
                }
                UNSTABLE_FIT => {
                    summary.predicted += 1;
                    summary.unstable_fit += 1;
                }
                other => {
                    *summary.not_predicted.entry(other.to_string()).or_default() += 1;
                    summary.failed += usize::from(!skipped_by_policy(other));
                }
            }
        }
        columns.push(Arc::new(StringArray::from(status)));
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Shape(format!("building the output: {e}")))
    }
}

/// How the `geometry` note begins for a deflector the classifier moved to the centre.
const DEFLECTOR_CENTRED: &str = "deflector centred from";
/// How it begins for a deflector beyond the classifier's centring search.
const DEFLECTOR_BEYOND: &str = "deflector more than";

/// The `geometry` entry of a row: the regridding's note, then where the
/// classifier found the deflector when it moved it or could not reach it.
fn geometry_note(regridding: Option<&str>, centring: &Centring) -> String {
    let (rows, columns) = centring.moved_by;
    let centred = match (centring.beyond_search, (rows, columns) == (0, 0)) {
        (true, _) => format!(
            "{DEFLECTOR_BEYOND} {CENTRING_REACH} pixels off the centre (moved column {columns:+}, row {rows:+} towards it): out of the model's domain"
        ),
        (false, true) => return regridding.unwrap_or(geometry::AS_IS).to_string(),
        (false, false) => format!("{DEFLECTOR_CENTRED} column {columns:+}, row {rows:+}"),
    };
    match regridding {
        Some(note) => format!("{note}; {centred}"),
        None => centred,
    }
}

/// What a `geometry` entry says, as `inspect` counts it: one kind per part.
fn geometry_kinds(note: &str) -> impl Iterator<Item = &'static str> + '_ {
    note.split("; ").map(|part| match part {
        geometry::AS_IS => "as is",
        p if p.starts_with(DEFLECTOR_CENTRED) => "deflector centred",
        p if p.starts_with(DEFLECTOR_BEYOND) => "deflector beyond the centring search",
        p if p.starts_with(geometry::FAR_SCALE) => "pixel scale out of the domain",
        _ => "resampled, cropped or padded",
    })
}

/// What the reader thread sends: a batch of chunk `k`, or the end of chunk `k`.
enum Message {
    Batch(usize, CutoutBatch),
    EndOfChunk(usize),
}

/// Reads the inputs, runs the models, writes the predictions table (one file, or
/// the chunks of a folder: see [`chunks`]).
pub fn predict(opts: &PredictOptions) -> Result<PredictSummary> {
    if opts.predictor.batch_size == 0 {
        return Err(Error::config("--batch-size", "must be at least 1"));
    }
    if opts.chunk_rows == 0 {
        return Err(Error::config("--chunk-rows", "must be at least 1"));
    }
    let single = chunks::is_single_file(&opts.out);
    // A file name of another format would otherwise become a folder of Parquet chunks.
    if let Some(ext) = opts.out.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) {
        if !single && FILE_EXTENSIONS.contains(&ext.as_str()) {
            return Err(Error::config(
                "--out",
                format!(
                    "{}: predictions are written as a `.parquet`, `.fits` or Arrow IPC (`.arrow`, `.feather`, `.arrows`) file or a folder of Parquet chunks, not `.{ext}`",
                    opts.out.display()
                ),
            ));
        }
    }
    if single && (opts.resume || opts.shard.is_some()) {
        return Err(Error::config("--out", "--resume and --shard write a folder of chunks: give --out a folder"));
    }
    let to_stdout = opts.out == Path::new(STANDARD_STREAM);
    if !to_stdout {
        crate::data::atomic::refuse_output_over_inputs(&opts.inputs, &opts.out, "--out")?;
        crate::data::atomic::refuse_output_inside_input_folders(&opts.inputs, &opts.out, "--out")?;
    }
    let started = Instant::now();
    let predictor = Predictor::load(&opts.predictor)?.for_inputs(&opts.inputs)?;
    let reader = open_input(&opts.inputs, &predictor.input_options(&opts.input))?;
    let geometry = predictor.check_input(reader.describe())?;
    let inputs: Vec<String> = opts.inputs.iter().map(|p| p.display().to_string()).collect();
    let metadata = predictor.output_metadata(&inputs)?;
    let rows = reader.describe().rows;
    let hats_properties = reader.describe().hats_properties.clone();
    let manifest = chunks::Manifest {
        rows,
        chunk_rows: if single { rows.max(1) } else { opts.chunk_rows },
        inputs,
        // A single file is written whole each time: no resume to check.
        fingerprints: if single { vec![] } else { reader.fingerprints()? },
        identity: metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        options: row_options(opts, &reader.carried_fields()),
        natural_chunks: if single { vec![] } else { reader.describe().natural_chunks.clone() },
    };
    let mut metadata = metadata;
    metadata.extend(output::provenance(opts.command.as_deref()));
    let mut schema = predictor.output_schema(&reader.carried_fields(), metadata);
    if hats_properties.is_some() && !single {
        schema = crate::data::hats::plain_tensor_columns(&schema);
    }
    // Which chunks this run writes: its shard's, less those done (resume).
    let path_of = |k: usize| if single { opts.out.clone() } else { manifest.chunk_path(&opts.out, k) };
    let owed: Vec<bool> = (0..manifest.chunks().max(1))
        .map(|k| opts.shard.is_none_or(|s| k % s.count == s.index) && !(opts.resume && path_of(k).exists()))
        .collect();
    if single && !to_stdout {
        crate::data::atomic::refuse_existing(&opts.out, opts.overwrite)?;
    } else if !single {
        chunks::claim_folder(&opts.out, &manifest, opts.overwrite && !opts.resume)?;
        if let Some(k) = (0..owed.len()).find(|&k| owed[k] && path_of(k).exists() && !opts.overwrite) {
            return Err(Error::config(
                "--out",
                format!("{} exists: --resume to keep finished chunks, or --overwrite", path_of(k).display()),
            ));
        }
    }
    let mut summary = PredictSummary::empty(opts.out.clone());
    summary.chunks_skipped = owed.iter().filter(|o| !**o).count();
    let batch_size = opts.predictor.batch_size;
    let owed_rows: usize = (0..owed.len()).filter(|&k| owed[k]).map(|k| manifest.range(k).len()).sum();
    // Fitted rows move the progress as each is fitted (from the fitting threads), the
    // others when their batch is done.
    let progress = SharedProgress::new(Progress::new(opts.progress, owed_rows as u64, "predict: rows"));
    let one_more_fitted = || progress.add(1);
    let watch = FitWatch { cancel: Some(&opts.cancel), fitted: &one_more_fitted };
    std::thread::scope(|scope| -> Result<()> {
        let (send, receive) = std::sync::mpsc::sync_channel::<Result<Message>>(2);
        let mut reader = reader;
        let (manifest, owed) = (&manifest, &owed);
        scope.spawn(move || {
            let mut run = || -> Result<()> {
                for (k, &todo) in owed.iter().enumerate() {
                    let mut left = manifest.range(k).len();
                    if !todo {
                        reader.skip_rows(left)?;
                        continue;
                    }
                    while left > 0 {
                        let Some(batch) = reader.next_batch(batch_size.min(left))? else { break };
                        left -= batch.len();
                        send.send(Ok(Message::Batch(k, batch))).map_err(|_| Error::config("predict", "stopped"))?;
                    }
                    send.send(Ok(Message::EndOfChunk(k))).map_err(|_| Error::config("predict", "stopped"))?;
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = send.send(Err(e)); // fails only when the consumer has stopped already
            }
        });
        let mut open: Option<(Box<dyn output::PredictionSink>, usize)> = None;
        for message in receive {
            // The chunk being written is dropped (its temporary removed); finished ones stay.
            opts.cancel.check("finished chunk files are kept (a folder output continues with --resume)")?;
            match message? {
                Message::Batch(k, batch) => {
                    if open.is_none() {
                        let rows = manifest.range(k).len();
                        let writer = output::create_sink(&path_of(k), schema.clone(), rows, true)?;
                        open = Some((writer, manifest.range(k).start));
                    }
                    let (writer, next_row) = open.as_mut().expect("opened");
                    let n = batch.len();
                    let before = progress.done();
                    let predicted =
                        predictor.predict_batch(batch, &geometry, *next_row, &schema, &mut summary, watch)?;
                    // A batch cancelled during its fits is not written: its last rows were not fitted.
                    opts.cancel.check("finished chunk files are kept (a folder output continues with --resume)")?;
                    writer.write(&predicted)?;
                    *next_row += n;
                    summary.rows += n;
                    let fitted = progress.done() - before;
                    progress.add(n as u64 - fitted);
                }
                Message::EndOfChunk(k) => {
                    let writer = match open.take() {
                        Some((w, _)) => w,
                        None => output::create_sink(&path_of(k), schema.clone(), 0, true)?, // an empty input
                    };
                    writer.finish()?;
                    summary.chunks_written += 1;
                }
            }
        }
        Ok(())
    })?;
    progress.finish();
    if let (Some(props), false) = (&hats_properties, single) {
        summary.catalogue_finished =
            Some(crate::data::hats::finish_catalogue(&opts.out, props, &manifest.natural_chunks, schema)?);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A predictions table at a glance: its model, its rows by status and by what
/// was done to their cutouts, the share of the scored rows in the model's domain,
/// and the rows per most probable class.
fn inspect_predictions(path: &Path) -> Result<serde_json::Value> {
    let table = crate::data::predictions::read_predictions(path)?;
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    for status in table.statuses.iter().flatten() {
        // Failures carry their reason after the kind ("failed: ..."): counted by kind.
        let kind = status.as_deref().map_or("null", |s| s.split(':').next().unwrap_or(s)).trim().to_string();
        *statuses.entry(kind).or_default() += 1;
    }
    let mut most_probable: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in table.probabilities.iter().flatten() {
        let best = (0..p.len()).fold(0, |b, c| if p[c] > p[b] { c } else { b });
        *most_probable.entry(table.class_names[best].as_str()).or_default() += 1;
    }
    // Rows by what was done to bring them to the model (a row may count twice).
    let mut geometries: std::collections::BTreeMap<&str, usize> = Default::default();
    for note in table.geometries.iter().flatten().flatten() {
        for kind in geometry_kinds(note) {
            *geometries.entry(kind).or_default() += 1;
        }
    }
    let flags: Vec<bool> = table.in_domain.iter().flatten().flatten().copied().collect();
    let in_domain_fraction =
        (!flags.is_empty()).then(|| flags.iter().filter(|f| **f).count() as f64 / flags.len() as f64);
    let meta = |key: &str| table.metadata.get(key).cloned();
    Ok(serde_json::json!({
        "predictions": path.display().to_string(),
        "rows": table.ids.len(),
        "model": meta("lensmae:model"),
        "model_sha256": meta("lensmae:model_sha256"),
        "tta": meta("lensmae:tta"),
        // For a classifier of smooth-lens residuals: whether the answers are the
        // first fit's (0) or means over refits that also set `unstable_fit`.
        "fit_refits": meta(crate::data::predictions::FIT_REFITS_KEY).and_then(|n| n.parse::<u64>().ok()),
        "created": meta("lensmae:created"),
        "classes": table.class_names,
        "status": statuses,
        "geometry": geometries,
        "rows_without_probabilities": table.probabilities.iter().filter(|p| p.is_none()).count(),
        "in_domain_fraction": in_domain_fraction,
        "most_probable_class": most_probable,
    }))
}

/// Files `inspect` lists by name; beyond them it gives their count (`files_total`).
const INSPECT_FILES_LISTED: usize = 20;

/// What `lensmae inspect` prints: the input, and what `predict` would do with it;
/// for a table `predict` wrote, what it holds instead.
pub fn inspect(inputs: &[PathBuf], opts: &InputOptions) -> Result<serde_json::Value> {
    if let [path] = inputs {
        let table_file = crate::data::is_table_name(path) || crate::data::fits::is_fits_file(path);
        if path.is_file() && table_file && crate::data::predictions::is_prediction_table(path) {
            return inspect_predictions(path);
        }
    }
    let mut reader = open_input(inputs, opts)?;
    let desc = reader.describe().clone();
    let sample = reader.next_batch(16)?;
    let (mut usable, mut nonfinite, mut problems) = (0, 0, Vec::new());
    if let Some(b) = &sample {
        let n = desc.image_shape[0] * desc.image_shape[1];
        for r in 0..b.len() {
            match (&b.problems[r], b.image(r, n)) {
                (Some(p), _) => problems.push(p.clone()),
                (None, Some(img)) if img.iter().any(|v| !v.is_finite()) => nonfinite += 1,
                _ => usable += 1,
            }
        }
    }
    let [h, w] = desc.image_shape;
    // A folder of 100,000 stamps would list them all: the first ones and a count say enough.
    let mut described = serde_json::to_value(&desc).map_err(|e| Error::config("inspect", e.to_string()))?;
    if desc.files.len() > INSPECT_FILES_LISTED {
        described["files"] = serde_json::json!(desc.files[..INSPECT_FILES_LISTED]);
        described["files_total"] = serde_json::json!(desc.files.len());
    }
    Ok(serde_json::json!({
        "input": described,
        "first_rows_checked": sample.as_ref().map_or(0, |b| b.len()),
        "first_rows_usable": usable,
        "first_rows_with_nonfinite_pixels": nonfinite,
        "first_rows_problems": problems,
        "predict_would": format!(
            "read {} rows of {h}x{w} cutouts ({}), carry {:?}, and write one output row per input row",
            desc.rows, desc.layout, desc.carried_columns
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_suspected_of_another_psf_when_most_of_twenty_or_more_cores_are_unexplained() {
        let summary = |fitted, core_unexplained| PredictSummary {
            fitted,
            core_unexplained,
            ..PredictSummary::empty(PathBuf::from("p.parquet"))
        };
        assert!(summary(20, 11).psf_suspect());
        assert!(!summary(20, 10).psf_suspect(), "half is not most");
        assert!(!summary(19, 19).psf_suspect(), "too few rows to tell a run's PSF");
        assert!(!summary(0, 0).psf_suspect());
    }

    #[test]
    fn inspect_counts_each_part_of_a_geometry_note() {
        let regridded = "resampled 101x101 at 0.1 to 0.101 arcsec/px, cropped to 64x64";
        let far = Centring { moved_by: (0, 3), beyond_search: true };
        let note = geometry_note(Some(regridded), &far);
        let kinds: Vec<_> = geometry_kinds(&note).collect();
        assert_eq!(kinds, ["resampled, cropped or padded", "deflector beyond the centring search"], "{note}");
        let moved = geometry_note(None, &Centring { moved_by: (-1, 2), beyond_search: false });
        assert_eq!(moved, "deflector centred from column +2, row -1");
        assert_eq!(geometry_kinds(&moved).collect::<Vec<_>>(), ["deflector centred"]);
        let as_is = geometry_note(None, &Centring::default());
        assert_eq!(geometry_kinds(&as_is).collect::<Vec<_>>(), ["as is"]);
        let scale = "pixel scale 0.2 arcsec/px is 1.98x the model's 0.101: out of its domain";
        assert_eq!(geometry_kinds(scale).collect::<Vec<_>>(), ["pixel scale out of the domain"]);
    }
}
