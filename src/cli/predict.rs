//! `lensmae predict` and `lensmae inspect`.

use crate::cli::train::DeviceArgs;
use crate::infer::TestTimeAugmentation;
use crate::stage::chunks::{merge, Shard};
use crate::stage::{
    inspect, predict, read_psf_image, FitNoise, InputOptions, NanPolicy, ObservationSource, PredictOptions,
    PredictorOptions, StageTask,
};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Where the cutouts are and how to find the images in them.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input files of one kind (Parquet, Arrow IPC/Feather, FITS, `.npy`; shell globs
    /// expand to many), a HATS catalogue folder, a folder of Parquet files, a folder
    /// of FITS stamps (read in natural order, subfolders too), a folder of `.npy`
    /// images or class folders, or `-`: an Arrow IPC stream piped into standard input.
    /// Parquet files and HATS catalogues may be `s3://` or `https://` URLs
    /// (credentials and endpoint from AWS_* variables; see the README).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Tables: the image column (default `image`, else the only image-like column).
    #[arg(long)]
    image_col: Option<String>,
    /// Tables: the id column (default `id` when present).
    #[arg(long)]
    id_col: Option<String>,
    /// More columns to carry into the output, comma-separated: table columns; for FITS
    /// files, each cutout's PARAMS table column (lensmae's cubes) or header keyword of that
    /// name (the image HDU's, else the primary's; `id`: a single image's integer ID keyword).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
    /// Tables: the image shape `H,W` of plain list columns.
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<usize>>,
    /// FITS: read the image extension with this EXTNAME (default: the primary
    /// image, else every image extension).
    #[arg(long)]
    hdu: Option<String>,
    /// Tables: a column of per-row pixel scales, arcsec per pixel.
    #[arg(long)]
    pixel_scale_col: Option<String>,
    /// Tables: a column of each cutout's noise map, sigma per pixel laid out as the
    /// image (the twin of a FITS RMS extension; noise-scaled models and the
    /// smooth-lens fit use it as they use those).
    #[arg(long)]
    noise_col: Option<String>,
    /// FITS: the extension of per-pixel noise sigma (default: found by name:
    /// RMS, ERR, NOISE, SIGMA; VAR for a variance map).
    #[arg(long)]
    rms_hdu: Option<String>,
    /// FITS: the extension of inverse-variance weights (default: WHT, WEIGHT, IVAR);
    /// pixels of weight 0 hold no data and are masked as flags are.
    #[arg(long)]
    weight_hdu: Option<String>,
    /// FITS: the extension of data-quality flags; flagged pixels are masked and
    /// follow --nan-policy (default: FLAG, MASK, DQ, BPM).
    #[arg(long)]
    flag_hdu: Option<String>,
    /// FITS: the mask planes that flag a pixel, by the names the flags extension
    /// declares (MP_<NAME> keywords, as Rubin's and HSC's masks do). Default there:
    /// BAD, SAT, CR, EDGE, NO_DATA, SUSPECT, INTRP, UNMASKEDNAN, CROSSTALK, STREAK (not
    /// DETECTED, which covers the lens itself); flags declaring no planes: any non-zero.
    #[arg(long, value_delimiter = ',')]
    flag_planes: Option<Vec<String>>,
    /// FITS: only the cutouts of this band: the planes of band cubes whose header
    /// names them (BAND0, BAND1... or BANDS, as the Legacy Surveys' cutouts), or the
    /// files whose FILTER says it (default: every band, a row each with its `band`).
    #[arg(long)]
    band: Option<String>,
}

impl InputArgs {
    fn options(&self) -> anyhow::Result<InputOptions> {
        let shape = match self.shape.as_deref() {
            None => None,
            Some([h, w]) if *h > 0 && *w > 0 => Some([*h, *w]),
            Some(other) => bail!("--shape wants H,W (two positive numbers), got {other:?}"),
        };
        Ok(InputOptions {
            image_column: self.image_col.clone(),
            id_column: self.id_col.clone(),
            keep: self.keep.clone(),
            shape,
            hdu: self.hdu.clone(),
            pixel_scale_column: self.pixel_scale_col.clone(),
            rms_hdu: self.rms_hdu.clone(),
            weight_hdu: self.weight_hdu.clone(),
            flag_hdu: self.flag_hdu.clone(),
            noise_column: self.noise_col.clone(),
            carry_if_present: Vec::new(),
            band: self.band.clone(),
            flag_planes: self.flag_planes.clone(),
        })
    }
}

/// What a classifier of smooth-lens residuals (e.g. `bundled:survey-residual-classifier`)
/// needs to fit each cutout; other models ignore it.
#[derive(Debug, Args)]
struct ObservationArgs {
    /// The PSF FWHM of every cutout, arcsec (default: the column --psf-fwhm-col).
    #[arg(long)]
    psf_fwhm: Option<f64>,
    /// The column of per-cutout PSF FWHMs, arcsec (FITS: a PARAMS column or header keyword of
    /// that name, PSF_FWHM by default).
    #[arg(long, default_value = "psf_fwhm")]
    psf_fwhm_col: String,
    /// The PSF image of every cutout, a FITS file whose first image is the PSF at the
    /// cutouts' pixels (odd side, centred; e.g. a survey's PSF model evaluated at the
    /// field): the fit renders with it in place of a Gaussian of --psf-fwhm.
    #[arg(long, value_name = "FITS")]
    psf_image: Option<PathBuf>,
    /// Arcsec per pixel of the PSF images (--psf-image, --psf-image-col) where they are
    /// not at the cutouts' pixels (an oversampled PSF model): they are resampled to the
    /// model's pixels from it (an odd oversampling, 3 or 5, exactly; an even one, whose
    /// pixels the model's cut through, to about 2% of the peak at 2x). A
    /// --psf-image file's WCS (or PIXSCALE keyword) gives it where this is not given.
    #[arg(long, value_name = "ARCSEC")]
    psf_image_scale: Option<f64>,
    /// The column of per-cutout PSF images at the cutouts' pixels (square lists of
    /// values, or lists of rows), in place of --psf-fwhm.
    #[arg(long)]
    psf_image_col: Option<String>,
    /// The PSF of every cutout is a Moffat profile, (1 + (r/alpha)^2)^-beta, of the FWHM
    /// given (--psf-fwhm or its column) and this beta (> 1; 2.5-4.5 for most telescopes):
    /// the fit renders with its kernel in place of a Gaussian.
    #[arg(long)]
    psf_moffat_beta: Option<f64>,
    /// The column of per-cutout Moffat betas, in place of --psf-moffat-beta (`lensmae
    /// simulate` writes `psf_beta` for a recipe of Moffat PSFs).
    #[arg(long)]
    psf_moffat_beta_col: Option<String>,
    /// The total exposure time of every cutout, s (default: the column --exposure-time-col).
    #[arg(long)]
    exposure_time: Option<f64>,
    /// The column of per-cutout exposure times, s (FITS: a PARAMS column or header keyword of
    /// that name, by default EXPOSURE_TIME or the standard EXPTIME).
    #[arg(long, default_value = "exposure_time")]
    exposure_time_col: String,
    /// The AB zero point of every cutout's pixel values, when they are not the model's
    /// instrument counts per second (the bundled survey models: Euclid VIS, 25.72): the AB
    /// magnitude of a source of one unit of flux, e.g. 23.9 for microjanskys (Euclid MER),
    /// 31.4 for nanojanskys (Rubin). The fit converts the pixels before it weights them by
    /// the noise; the other models are indifferent to the unit. Without it, a flux-density
    /// unit the input states fixes it (FITS BUNIT or an image column's `unit`: uJy, nJy, mJy,
    /// Jy, nanomaggy), else a FITS header's photometry keywords (HST PHOTFLAM and PHOTPLAM,
    /// JWST MJy/sr with PIXAR_SR, FLUXMAG0, MAGZERO / MAGZP / PHOTZP).
    #[arg(long, allow_negative_numbers = true)]
    zero_point: Option<f64>,
    /// The column of per-cutout zero points, AB mag (FITS: a PARAMS column or header
    /// keyword of that name, e.g. MAGZERO).
    #[arg(long)]
    zero_point_col: Option<String>,
    /// Where the smooth-lens fit takes each pixel's background noise (sky and read
    /// noise): `map`, the cutout's noise map where it has one (FITS RMS, ERR, VAR,
    /// WHT extensions, --noise-col; the maps of coadded images hold the background,
    /// and the source's Poisson noise is added from the recipe), else the recipe's at
    /// the cutout's exposure time; `map-total`, maps that hold all the noise, the
    /// source's included (HST and JWST ERR), taken alone; `recipe`, always the recipe's.
    #[arg(long, value_enum, default_value_t = FitNoiseArg::Map)]
    fit_noise: FitNoiseArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FitNoiseArg {
    Map,
    MapTotal,
    Recipe,
}

impl ObservationArgs {
    fn source(&self) -> anyhow::Result<ObservationSource> {
        for (flag, value) in [("--psf-fwhm", self.psf_fwhm), ("--exposure-time", self.exposure_time)] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                bail!("{flag} must be a finite number > 0, got {}", value.unwrap_or_default());
            }
        }
        let (psf_image, psf_image_scale) = match &self.psf_image {
            Some(path) => {
                let (kernel, wcs_scale) = read_psf_image(path)?;
                (Some(std::sync::Arc::new(kernel)), self.psf_image_scale.or(wcs_scale))
            }
            None => (None, self.psf_image_scale),
        };
        Ok(ObservationSource {
            psf_fwhm: self.psf_fwhm,
            psf_column: self.psf_fwhm_col.clone(),
            psf_image,
            psf_image_column: self.psf_image_col.clone(),
            psf_image_scale,
            psf_moffat_beta: self.psf_moffat_beta,
            psf_moffat_beta_column: self.psf_moffat_beta_col.clone(),
            exposure_time: self.exposure_time,
            exposure_column: self.exposure_time_col.clone(),
            zero_point: self.zero_point,
            zero_point_column: self.zero_point_col.clone(),
            noise: match self.fit_noise {
                FitNoiseArg::Map => FitNoise::Map,
                FitNoiseArg::MapTotal => FitNoise::MapTotal,
                FitNoiseArg::Recipe => FitNoise::Recipe,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TaskArg {
    Classify,
    Superres,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NanArg {
    Fail,
    Zero,
    SkipRow,
}

/// Arguments of `lensmae predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Classifier checkpoint (default: the bundled classifier of noise-free Model II
    /// lenses, `bundled:classifier`; for noisy survey cutouts `bundled:survey-classifier`,
    /// or `bundled:survey-residual-classifier`, which fits a smooth lens to each cutout
    /// first and needs its PSF and exposure: see --psf-fwhm, --exposure-time).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Super-resolution checkpoint (default: the bundled model, `bundled:superres`).
    #[arg(long)]
    sr_model: Option<PathBuf>,
    /// What runs: `classify`, `superres`, or `all` (super-resolve, then classify the result).
    #[arg(long, value_enum)]
    task: Option<TaskArg>,
    /// Output: a `.parquet` file, a `.fits` file, an Arrow IPC file (`.arrow`,
    /// `.feather`; `.arrows` for the stream format), `-` for an Arrow IPC stream on
    /// standard output, or a folder of Parquet chunk files (needed by --resume and
    /// --shard; `lensmae merge` joins them).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    overwrite: bool,
    /// Rows per chunk file (folder output).
    #[arg(long, default_value_t = 65536)]
    chunk_rows: usize,
    /// Write only chunks i, i+N, i+2N... (`i/N`, from 0) of a folder output: one
    /// array job each, then `lensmae merge`.
    #[arg(long)]
    shard: Option<Shard>,
    /// Keep the chunk files an interrupted run finished, write the rest.
    #[arg(long)]
    resume: bool,
    /// The cutouts' pixel scale in arcsec per pixel, for every cutout (default:
    /// what the input records: FITS WCS, --pixel-scale-col, a lensmae table's
    /// metadata); `model` takes them at the model's scale. Cutouts are resampled
    /// (conserving flux) to the model's scale and cropped or padded to its size;
    /// the `geometry` column says what was done, and a scale more than 1.5x from
    /// the model's is flagged `out_of_domain`.
    #[arg(long, value_name = "ARCSEC|model")]
    pixel_scale: Option<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Images with NaN/infinite pixels (a FITS flags extension's flagged pixels
    /// too): `fail`, `zero` (set them to 0; a classifier of smooth-lens residuals
    /// masks them instead, leaving them out of its fit), or `skip-row` (no
    /// prediction; the row stays, with its status).
    #[arg(long, value_enum, default_value_t = NanArg::Fail)]
    nan_policy: NanArg,
    /// Test-time augmentation: `dihedral` averages the classifier's probabilities
    /// over the 8 rotations and reflections of each cutout (8x the model's time;
    /// recorded in the output's metadata). The out-of-domain score is of the cutout
    /// as given either way.
    #[arg(long, default_value = "none", value_parser = str::parse::<TestTimeAugmentation>)]
    tta: TestTimeAugmentation,
    #[command(flatten)]
    observation: ObservationArgs,
    /// For a classifier of smooth-lens residuals: fit each cutout again this many
    /// times, moved within half a 16-bit step, answer with the probabilities
    /// averaged over the fit and the refits, and answer a row whose refits land
    /// elsewhere (chi^2 more than 4 from its fit) or answer apart (any probability
    /// more than 0.02 from the fit's, `refit_answer_spread`) with status
    /// `unstable_fit`: its answer depends on how the cutout was stored. Each refit costs one more fit
    /// (the fits are most of such a model's time); 0 reads the first fit alone and
    /// checks nothing. A cutout whose first fit leaves a chi^2 outside the model's
    /// calibrated range is not refitted: it is `out_of_domain` whatever the refits
    /// find, and such cutouts (noise, artefacts) are the slowest to fit.
    #[arg(long, default_value_t = crate::stage::DEFAULT_FIT_REFITS)]
    fit_refits: usize,
    /// Fraction of rows that may fail (unreadable or truncated inputs, a model
    /// without an answer) before the run exits with code 3; the output is written
    /// either way and names each failed row's reason. Rows skipped by
    /// `--nan-policy skip-row` are not failures.
    #[arg(long, default_value_t = 0.0)]
    max_failed_fraction: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
    /// The command line recorded in the output (a pipeline step's own).
    #[arg(skip)]
    command_line: Option<String>,
}

impl PredictArgs {
    /// Records `line` as the command that asked for the work.
    pub fn set_command_line(&mut self, line: String) {
        self.command_line = Some(line);
    }
}

/// Run `lensmae predict`.
pub fn predict_cmd(args: PredictArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.max_failed_fraction) {
        anyhow::bail!("--max-failed-fraction must be in [0, 1], got {}", args.max_failed_fraction);
    }
    if let Some(n) = args.threads {
        let n = super::threads_option(n)?;
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let task = match (args.task, &args.model, &args.sr_model) {
        (Some(TaskArg::Classify), ..) => StageTask::Classify,
        (Some(TaskArg::Superres), ..) => StageTask::Superres,
        (Some(TaskArg::All), ..) | (None, Some(_), Some(_)) => StageTask::All,
        (None, None, Some(_)) => StageTask::Superres,
        (None, ..) => StageTask::Classify,
    };
    let opts = PredictOptions {
        inputs: args.input.input.clone(),
        input: args.input.options()?,
        predictor: PredictorOptions {
            model: args.model.clone(),
            sr_model: args.sr_model.clone(),
            task,
            batch_size: args.batch_size,
            device: args.device.open()?,
            nan_policy: match args.nan_policy {
                NanArg::Fail => NanPolicy::Fail,
                NanArg::Zero => NanPolicy::Zero,
                NanArg::SkipRow => NanPolicy::SkipRow,
            },
            pixel_scale: args.pixel_scale.as_deref().map(str::parse).transpose()?.unwrap_or_default(),
            tta: args.tta,
            observation: args.observation.source()?,
            fit_refits: args.fit_refits,
        },
        out: args.out.clone(),
        overwrite: args.overwrite,
        chunk_rows: args.chunk_rows,
        shard: args.shard,
        resume: args.resume,
        cancel: crate::cli::interrupt(),
        command: Some(args.command_line.clone().unwrap_or_else(crate::cli::command_line)),
        progress: crate::progress::ProgressMode::for_stderr(false),
    };
    let summary = predict(&opts).with_context(|| format!("predict -> {}", args.out.display()))?;
    let off_centre = match summary.off_centre {
        0 => String::new(),
        n => format!(", {n} with the deflector beyond the classifier's centring search"),
    };
    let unstable = match summary.unstable_fit {
        0 => String::new(),
        n => format!(", {n} whose refits landed elsewhere or answered apart (unstable_fit)"),
    };
    eprintln!(
        "wrote {} rows ({} predicted, {} of them out of the model's domain{off_centre}{unstable}) to {} in {:.1} s ({} rows/s)",
        summary.rows,
        summary.predicted,
        summary.out_of_domain,
        match summary.out.to_str() {
            Some(crate::stage::STANDARD_STREAM) => "standard output".into(),
            _ => summary.out.display().to_string(),
        },
        summary.seconds,
        crate::progress::rate_text(summary.rows as f64 / summary.seconds.max(1e-9))
    );
    if args.model.is_none() && task != StageTask::Superres && summary.out_of_domain * 2 > summary.predicted {
        eprintln!(
            "note: most rows are unlike the images of the default classifier (bundled:classifier: noise-free \
             DeepLense Model II); for noisy survey cutouts (Euclid VIS-like) try `--model \
             bundled:survey-classifier` (models/README.md)"
        );
    }
    if summary.off_centre * 2 > summary.predicted {
        eprintln!(
            "note: most cutouts have their brightest central light more than {} pixels from the centre, where the \
             classifier cannot cancel the lens galaxy's light: cut them around the deflector's position",
            crate::model::preprocess::CENTRING_REACH
        );
    }
    if summary.psf_suspect() {
        eprintln!(
            "note: the smooth-lens fit left the deflector's core less explained than nine in ten of the \
             classifier's own lenses on {} of {} cutouts: the PSF is likely not a Gaussian of the FWHM given \
             (a survey's PSF has wings, which the classifier reads as substructure); give the PSF model with \
             --psf-image or --psf-image-col, or a Moffat profile's beta with --psf-moffat-beta(-col)",
            summary.core_unexplained, summary.fitted
        );
    }
    // With the predictions on standard output, the summary goes beside the messages.
    if args.out == std::path::Path::new(crate::stage::STANDARD_STREAM) {
        eprintln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        crate::cli::out(format_args!("{}", serde_json::to_string_pretty(&summary)?))?;
    }
    if summary.failed as f64 > args.max_failed_fraction * summary.rows as f64 {
        let mut reasons: Vec<(&String, &usize)> = summary.not_predicted.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let worst = reasons.first().map(|(r, n)| format!("; most often ({n}): {r}")).unwrap_or_default();
        return Err(crate::cli::RowsFailed(format!(
            "{} of {} rows failed (--max-failed-fraction {}){worst}; the output names each row's reason",
            summary.failed, summary.rows, args.max_failed_fraction
        ))
        .into());
    }
    Ok(())
}

/// Arguments of `lensmae inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    input: InputArgs,
}

/// Run `lensmae inspect`.
pub fn inspect_cmd(args: InspectArgs) -> anyhow::Result<()> {
    let report = inspect(&args.input.input, &args.input.options()?)?;
    crate::cli::out(format_args!("{}", serde_json::to_string_pretty(&report)?))?;
    Ok(())
}

/// Arguments of `lensmae merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// A folder written by `predict --out DIR` (all shards finished).
    dir: PathBuf,
    /// The joined file: Parquet, FITS (`.fits`) or Arrow IPC (`.arrow`, `.feather`, `.arrows`), by its name.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args, Debug)]
pub struct SrFitsArgs {
    /// A predictions table of `predict --task superres` or `--task all` (Parquet, Arrow IPC or FITS).
    input: PathBuf,
    /// The folder of FITS files to write: `<id>.fits` (an integer `id` column), else
    /// `row-<row>.fits`, each with its WCS from `sr_wcs`.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing folder.
    #[arg(long)]
    overwrite: bool,
}

/// Run `lensmae sr-fits`.
pub fn sr_fits_cmd(args: SrFitsArgs) -> anyhow::Result<()> {
    let summary = crate::stage::sr_fits::write_sr_fits(&args.input, &args.out, args.overwrite)?;
    crate::cli::out(format_args!("{}", serde_json::to_string_pretty(&summary)?))?;
    Ok(())
}

/// Run `lensmae merge`.
pub fn merge_cmd(args: MergeArgs) -> anyhow::Result<()> {
    let rows = merge(&args.dir, &args.out, args.overwrite)?;
    eprintln!("wrote {rows} rows to {}", args.out.display());
    Ok(())
}
