//! Where a classifier of smooth-lens residuals gets what it fits each cutout with
//! (its PSF and exposure time: one value for all, or the input's columns; and the
//! photometric zero point of its pixels when they are not in the recipe's units),
//! and the fit of a batch's rows before the model sees them.

use super::CutoutBatch;
use crate::infer::residuals::{FitWatch, FittedCutout, FittedLens, ResidualFitter};
use crate::sim::fit::Observation;
use crate::sim::psf::PsfKernel;
use crate::{Error, Result};
use std::sync::Arc;

/// Where each cutout's PSF FWHM and exposure time come from, for a classifier that
/// fits a smooth lens to every cutout: one value for all, else a column of the
/// input (carried into the output).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationSource {
    /// The PSF FWHM of every cutout, arcsec (else the column `psf_column`).
    pub psf_fwhm: Option<f64>,
    /// The column of per-cutout PSF FWHMs, arcsec.
    pub psf_column: String,
    /// The PSF image of every cutout, at the input's pixels (a survey's PSF model:
    /// Euclid VIS's has wings no Gaussian has): the fit renders with it, resampled
    /// as the cutout is, in place of a Gaussian of a FWHM.
    pub psf_image: Option<Arc<PsfKernel>>,
    /// The column of per-cutout PSF images (square lists of values, or lists of
    /// rows, at the input's pixels), in place of a FWHM.
    pub psf_image_column: Option<String>,
    /// Arcsec per pixel of the PSF images, where they are not sampled at the
    /// cutouts' pixels (PSF models are often finer: PSFEx's, a survey's oversampled
    /// stamps): they are resampled to the model's pixels from this scale
    /// ([`PsfKernel::resampled`]: exactly for an odd oversampling, whose pixels sum to
    /// whole model pixels).
    pub psf_image_scale: Option<f64>,
    /// The beta of every cutout's PSF, a Moffat profile of the FWHM given (else the
    /// column `psf_moffat_beta_column`, else the PSF is the Gaussian of that FWHM):
    /// the fit renders with its kernel at the model's pixels.
    pub psf_moffat_beta: Option<f64>,
    /// The column of per-cutout Moffat betas (`lensmae simulate` writes `psf_beta`
    /// for a Moffat recipe).
    pub psf_moffat_beta_column: Option<String>,
    /// The exposure time of every cutout, s (else the column `exposure_column`).
    pub exposure_time: Option<f64>,
    /// The column of per-cutout exposure times, s.
    pub exposure_column: String,
    /// The AB zero point of every cutout's pixel values (the magnitude of a source
    /// of one unit of flux), else the column `zero_point_column`, else the one each
    /// cutout's stated flux unit or photometric keywords fix (a FITS `BUNIT` of `uJy`:
    /// 23.9; HST's `PHOTFLAM`, JWST's MJy/sr with `PIXAR_SR`...), else none:
    /// the pixels are taken in the recipe's units (its instrument's electrons per
    /// second).
    pub zero_point: Option<f64>,
    /// The column of per-cutout zero points (AB magnitudes).
    pub zero_point_column: Option<String>,
    /// Where the fit takes each pixel's background noise from.
    pub noise: FitNoise,
}

/// Where a smooth-lens fit takes each pixel's background noise (sky and read noise)
/// from; the source's own Poisson noise is always the recipe's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FitNoise {
    /// The cutout's noise map (FITS RMS, variance or weight extension, a table's noise
    /// column) as the background where it has one and the map is finite, the
    /// source's Poisson noise added from the recipe; else the recipe's at the
    /// cutout's exposure time.
    #[default]
    Map,
    /// The same, for maps that hold all of each pixel's noise, the source's Poisson
    /// noise included (HST's and JWST's `ERR` extensions): the map's alone.
    MapTotal,
    /// The recipe's at the cutout's exposure time, whatever maps the input has.
    Recipe,
}

impl FitNoise {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FitNoise::Map => "map",
            FitNoise::MapTotal => "map-total",
            FitNoise::Recipe => "recipe",
        }
    }
}

/// An input column an [`ObservationSource`] reads, with the flag that gives one
/// value for every cutout instead and what the column holds.
struct ReadColumn {
    name: String,
    flag: &'static str,
    what: &'static str,
}

/// What one cutout's fit needs to know of how it was observed.
#[derive(Debug, Clone, PartialEq)]
struct RowObservation {
    psf: RowPsf,
    exposure_time: f64,
    /// The AB zero point of its pixel values, when not the recipe's.
    zero_point: Option<f64>,
}

/// A cutout's PSF as the input gives it.
#[derive(Debug, Clone, PartialEq)]
enum RowPsf {
    /// A Gaussian of this FWHM, arcsec.
    Fwhm(f64),
    /// An image at the input's pixels, or at `scale` arcsec per pixel where given.
    Image { kernel: Arc<PsfKernel>, scale: Option<f64> },
    /// A Moffat profile of this FWHM, arcsec, and beta.
    Moffat { fwhm: f64, beta: f64 },
}

impl RowObservation {
    /// How the cutout was observed, on the model's grid: its pixels `model_scale`
    /// arcsec wide and `scale_ratio` times the input's (a PSF image resampled from
    /// its own scale where it has one, else as the cutout was; flux-conserving, and
    /// normalised again).
    fn on_model_grid(&self, scale_ratio: f64, model_scale: f64) -> std::result::Result<Observation, String> {
        let exposure_time = Some(self.exposure_time);
        Ok(match &self.psf {
            RowPsf::Fwhm(psf_fwhm) => Observation { psf_fwhm: *psf_fwhm, psf_kernel: None, exposure_time },
            RowPsf::Moffat { fwhm, beta } => {
                let kernel = PsfKernel::moffat_enclosing(fwhm / model_scale, *beta).map_err(|e| format!("PSF: {e}"))?;
                let psf_fwhm = kernel.gaussian_equivalent_fwhm() * model_scale;
                Observation { psf_fwhm, psf_kernel: Some(Arc::new(kernel)), exposure_time }
            }
            RowPsf::Image { kernel, scale } => {
                // From the PSF's own scale where it has one (a PSF model finer than the
                // cutouts), else as the cutout was resampled.
                let kernel = match scale.map(|psf_scale| model_scale / psf_scale) {
                    Some(ratio) if ratio != 1.0 => {
                        Arc::new(kernel.resampled(ratio).map_err(|e| format!("PSF image resampled: {e}"))?)
                    }
                    Some(_) => kernel.clone(),
                    None if scale_ratio == 1.0 => kernel.clone(),
                    None => Arc::new(resampled_as_the_cutout(kernel, scale_ratio)?),
                };
                let psf_fwhm = kernel.gaussian_equivalent_fwhm() * model_scale;
                Observation { psf_fwhm, psf_kernel: Some(kernel), exposure_time }
            }
        })
    }
}

/// The column of each cutout's Moffat beta that a classifier of residuals of
/// Moffat PSFs reads by default (what `simulate` writes for a Moffat recipe).
pub const MOFFAT_BETA_COLUMN: &str = "psf_beta";

impl Default for ObservationSource {
    /// The columns `lensmae simulate` writes.
    fn default() -> Self {
        ObservationSource {
            psf_fwhm: None,
            psf_column: "psf_fwhm".into(),
            psf_image: None,
            psf_image_column: None,
            psf_image_scale: None,
            psf_moffat_beta: None,
            psf_moffat_beta_column: None,
            exposure_time: None,
            exposure_column: "exposure_time".into(),
            zero_point: None,
            zero_point_column: None,
            noise: FitNoise::Map,
        }
    }
}

impl ObservationSource {
    /// This source for a classifier of residuals of the recipe PSF `psf`: one trained
    /// on Moffat PSFs fits each cutout with its own Moffat, its beta from the column
    /// `simulate` writes ([`MOFFAT_BETA_COLUMN`]) unless the PSF is given otherwise (a
    /// Gaussian of the FWHM would leave the wings).
    pub fn for_recipe_psf(mut self, psf: &crate::sim::config::PsfConfig) -> ObservationSource {
        let psf_given = self.psf_image.is_some()
            || self.psf_image_column.is_some()
            || self.psf_moffat_beta.is_some()
            || self.psf_moffat_beta_column.is_some();
        if matches!(psf, crate::sim::config::PsfConfig::Moffat { .. }) && !psf_given {
            self.psf_moffat_beta_column = Some(MOFFAT_BETA_COLUMN.into());
        }
        self
    }

    /// The input columns it reads (those for which no single value is given).
    pub fn columns(&self) -> Vec<String> {
        self.read_columns().into_iter().map(|column| column.name).collect()
    }

    /// The input columns it reads, each with the flag that gives one value instead
    /// and what it holds.
    fn read_columns(&self) -> Vec<ReadColumn> {
        let read = |name: &String, flag, what| ReadColumn { name: name.clone(), flag, what };
        let mut columns = Vec::new();
        match (&self.psf_image, &self.psf_image_column, self.psf_fwhm) {
            (Some(_), _, _) | (None, None, Some(_)) => {}
            (None, Some(column), _) => columns.push(read(column, "--psf-image", "PSF image")),
            (None, None, None) => columns.push(read(&self.psf_column, "--psf-fwhm", "PSF FWHM (arcsec)")),
        }
        if let (None, Some(column)) = (self.psf_moffat_beta, &self.psf_moffat_beta_column) {
            columns.push(read(column, "--psf-moffat-beta", "Moffat PSF beta"));
        }
        if self.exposure_time.is_none() {
            columns.push(read(&self.exposure_column, "--exposure-time", "exposure time (s)"));
        }
        if let (None, Some(column)) = (self.zero_point, &self.zero_point_column) {
            columns.push(read(column, "--zero-point", "photometric zero point (AB mag)"));
        }
        columns
    }

    /// `Err` naming every column it reads that `batch` lacks, each with its flag and
    /// keywords, so that a user learns of them all in one run.
    fn check_columns(&self, batch: &CutoutBatch) -> Result<()> {
        let missing: Vec<ReadColumn> = (self.read_columns().into_iter())
            .filter(|column| batch.carried.iter().all(|(field, _)| field.name() != &column.name))
            .collect();
        let Some(first) = missing.first() else { return Ok(()) };
        let each: Vec<String> = (missing.iter())
            .map(|ReadColumn { name, flag, what }| {
                let keywords = crate::data::fits::keywords_for(name).join(" or ");
                format!(
                    "its {what}: no column `{name}` (FITS files: no PARAMS table column of that name, no header \
                     keyword {keywords}); give one value with {flag}, or name the column with {flag}-col"
                )
            })
            .collect();
        let needs = if each.len() == 1 { "needs" } else { "needs, of each cutout," };
        Err(Error::config(
            first.flag,
            format!("the classifier fits a smooth lens to every cutout and {needs} {}", each.join("; and ")),
        ))
    }

    /// Refuses a zero point that is not a number, a zero point or PSF given two
    /// ways at once.
    pub fn check(&self) -> Result<()> {
        let psf_ways = [self.psf_fwhm.is_some(), self.psf_image.is_some(), self.psf_image_column.is_some()];
        Error::check(
            psf_ways.iter().filter(|&&given| given).count() <= 1,
            "--psf-image",
            "give one of --psf-fwhm, --psf-image and --psf-image-col",
        )?;
        let moffat = self.psf_moffat_beta.is_some() || self.psf_moffat_beta_column.is_some();
        Error::check(
            !(moffat && (self.psf_image.is_some() || self.psf_image_column.is_some())),
            "--psf-moffat-beta",
            "a Moffat PSF is of a FWHM (--psf-fwhm or its column), not of a PSF image",
        )?;
        Error::check(
            self.psf_moffat_beta.is_none() || self.psf_moffat_beta_column.is_none(),
            "--psf-moffat-beta",
            "give --psf-moffat-beta (every cutout) or --psf-moffat-beta-col (a column), not both",
        )?;
        if let Some(scale) = self.psf_image_scale {
            Error::check(
                scale.is_finite() && scale > 0.0,
                "--psf-image-scale",
                format!("{scale}: must be a finite number of arcsec per pixel > 0"),
            )?;
            Error::check(
                self.psf_image.is_some() || self.psf_image_column.is_some(),
                "--psf-image-scale",
                "is the scale of a PSF image: give --psf-image or --psf-image-col",
            )?;
        }
        if let Some(beta) = self.psf_moffat_beta.filter(|b| !(b.is_finite() && *b > 1.0)) {
            return Err(Error::config("--psf-moffat-beta", format!("{beta}: a Moffat PSF needs beta > 1")));
        }
        if let Some(zp) = self.zero_point.filter(|v| !v.is_finite()) {
            return Err(Error::config("--zero-point", format!("{zp}: must be a finite AB magnitude")));
        }
        Error::check(
            self.zero_point.is_none() || self.zero_point_column.is_none(),
            "--zero-point",
            "give --zero-point (every cutout) or --zero-point-col (a column), not both",
        )
    }

    /// The single values given for every cutout, as `--flag value` (for a run's
    /// identity: chunks fitted with other values must not be mixed).
    pub fn given_values(&self) -> String {
        let psf_image = self.psf_image.as_ref().map(|kernel| {
            use sha2::{Digest, Sha256};
            let mut hash = Sha256::new();
            kernel.weights().iter().for_each(|w| hash.update(w.to_le_bytes()));
            let digest: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("--psf-image {}x{} sha256:{digest}", kernel.side(), kernel.side())
        });
        [
            ("--psf-fwhm", self.psf_fwhm),
            ("--psf-image-scale", self.psf_image_scale),
            ("--psf-moffat-beta", self.psf_moffat_beta),
            ("--exposure-time", self.exposure_time),
            ("--zero-point", self.zero_point),
        ]
        .iter()
        .filter_map(|(flag, value)| value.map(|v| format!("{flag} {v}")))
        .chain(psf_image)
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Each row's observation: `Err` (for the whole batch) when columns it needs
    /// were not carried (naming all of them) or one is not numeric, a row's reason when its value is null.
    /// With `from_units`, a row with no zero point given takes the one its flux unit
    /// fixes, if any.
    fn of_rows(
        &self,
        batch: &CutoutBatch,
        from_units: bool,
    ) -> Result<Vec<std::result::Result<RowObservation, String>>> {
        self.check_columns(batch)?;
        let column = |name: &str, flag: &str| -> Result<Vec<Option<f64>>> {
            use arrow_array::cast::AsArray;
            use arrow_array::types::Float64Type;
            let (_, values) =
                batch.carried.iter().find(|(f, _)| f.name() == name).expect("check_columns found every column");
            if !values.data_type().is_numeric() {
                let other = values.data_type();
                return Err(Error::config(flag, format!("column `{name}` is {other}, a numeric column is needed")));
            }
            let values = arrow_cast::cast(values, &arrow_schema::DataType::Float64)
                .map_err(|e| Error::config(flag, format!("column `{name}`: {e}")))?;
            Ok(values.as_primitive::<Float64Type>().iter().collect())
        };
        let n = batch.len();
        let psf: Vec<std::result::Result<RowPsf, String>> = match (&self.psf_image, &self.psf_image_column) {
            (Some(kernel), _) => vec![Ok(RowPsf::Image { kernel: kernel.clone(), scale: self.psf_image_scale }); n],
            (None, Some(name)) => self.psf_images(batch, name)?,
            (None, None) => match self.psf_fwhm {
                Some(v) => vec![Ok(RowPsf::Fwhm(v)); n],
                None => column(&self.psf_column, "--psf-fwhm")?
                    .into_iter()
                    .map(|v| v.map(RowPsf::Fwhm).ok_or_else(|| format!("no PSF FWHM (`{}` is null)", self.psf_column)))
                    .collect(),
            },
        };
        let betas: Option<Vec<Option<f64>>> = match (self.psf_moffat_beta, &self.psf_moffat_beta_column) {
            (Some(v), _) => Some(vec![Some(v); n]),
            (None, Some(name)) => Some(column(name, "--psf-moffat-beta")?),
            (None, None) => None,
        };
        let beta_name = self.psf_moffat_beta_column.as_deref().unwrap_or("--psf-moffat-beta");
        let psf: Vec<std::result::Result<RowPsf, String>> = match betas {
            None => psf,
            Some(betas) => (psf.into_iter().zip(betas))
                .map(|(psf, beta)| match (psf?, beta) {
                    (RowPsf::Fwhm(fwhm), Some(beta)) if beta.is_finite() && beta > 1.0 => {
                        Ok(RowPsf::Moffat { fwhm, beta })
                    }
                    (_, Some(beta)) => Err(format!("Moffat PSF beta {beta} (`{beta_name}`): must be > 1")),
                    (_, None) => Err(format!("no Moffat PSF beta (`{beta_name}` is null)")),
                })
                .collect(),
        };
        let exposure = match self.exposure_time {
            Some(v) => vec![Some(v); n],
            None => column(&self.exposure_column, "--exposure-time")?,
        };
        // No zero point at all: the pixels are in the recipe's units.
        let zero_points: Vec<std::result::Result<Option<f64>, String>> =
            match (self.zero_point, &self.zero_point_column) {
                (Some(v), _) => vec![Ok(Some(v)); n],
                (None, Some(name)) => column(name, "--zero-point")?
                    .into_iter()
                    .map(|value| match value {
                        Some(zp) if zp.is_finite() => Ok(Some(zp)),
                        Some(zp) => Err(format!("zero point {zp} (`{name}`): must be a finite AB magnitude")),
                        None => Err(format!("no zero point (`{name}` is null)")),
                    })
                    .collect(),
                (None, None) if from_units => batch.flux.iter().map(|flux| Ok(flux.ab_zero_point())).collect(),
                (None, None) => vec![Ok(None); n],
            };
        Ok(psf
            .into_iter()
            .zip(exposure)
            .zip(zero_points)
            .map(|((psf, exposure), zero_point)| {
                let exposure_time =
                    exposure.ok_or_else(|| format!("no exposure time (`{}` is null)", self.exposure_column))?;
                Ok(RowObservation { psf: psf?, exposure_time, zero_point: zero_point? })
            })
            .collect())
    }

    /// Each row's PSF image from the list column `name` (carried: [`Self::check_columns`]):
    /// `Err` for the batch when it holds no lists of numbers, a row's reason when
    /// its image is null or cannot be a PSF.
    fn psf_images(&self, batch: &CutoutBatch, name: &str) -> Result<Vec<std::result::Result<RowPsf, String>>> {
        let (_, values) =
            batch.carried.iter().find(|(f, _)| f.name() == name).expect("check_columns found every column");
        let most = crate::sim::psf::MAX_KERNEL_SIDE * crate::sim::psf::MAX_KERNEL_SIDE;
        let rows = crate::data::parquet::cutouts::square_image_rows(values, most)
            .map_err(|e| Error::config("--psf-image-col", format!("column `{name}`: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|row| match row {
                None => Err(format!("no PSF image (`{name}` is null)")),
                Some(values) => values
                    .and_then(|v| PsfKernel::from_square(&v))
                    .map(|kernel| RowPsf::Image { kernel: Arc::new(kernel), scale: self.psf_image_scale })
                    .map_err(|e| format!("PSF image (`{name}`): {e}")),
            })
            .collect())
    }
}

/// A PSF image from a FITS file (its first image HDU, gzipped or not): odd sides,
/// centred; with its pixel scale, arcsec, where its header has a WCS (else it is
/// taken at the cutouts' pixels).
pub fn read_psf_image(path: &std::path::Path) -> Result<(PsfKernel, Option<f64>)> {
    let bad = |why: String| Error::config("--psf-image", format!("{}: {why}", path.display()));
    // cfitsio's own message for a missing file says less than the OS's.
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let max_side = crate::sim::psf::MAX_KERNEL_SIDE;
    let stamp = crate::data::fits::cutouts::read_fits_image(path, "PSF image", max_side).map_err(bad)?;
    let [h, w] = stamp.shape;
    if h != w {
        return Err(bad(format!("a {h}x{w} image: a PSF image must be square")));
    }
    let values: Vec<f64> = stamp.pixels.iter().map(|&v| f64::from(v)).collect();
    Ok((PsfKernel::new(h, &values).map_err(bad)?, stamp.pixel_scale))
}

/// `kernel` on pixels `ratio` times its own as a cutout is resampled (area-weighted,
/// flux-conserving; normalised again), on the odd side that holds what it covered
/// (at least 3 pixels).
fn resampled_as_the_cutout(kernel: &PsfKernel, ratio: f64) -> std::result::Result<PsfKernel, String> {
    let side = kernel.side();
    let out_side = crate::sim::psf::resampled_side(side, ratio);
    let regrid = crate::data::regrid::Regrid::centred([side, side], out_side, ratio);
    let values: Vec<f32> = kernel.weights().iter().map(|&w| w as f32).collect();
    let mut resampled = vec![0f32; out_side * out_side];
    regrid.apply(&values, &mut resampled);
    let resampled: Vec<f64> = resampled.iter().map(|&v| f64::from(v)).collect();
    PsfKernel::new(out_side, &resampled).map_err(|e| format!("PSF image resampled: {e}"))
}

/// What the fits of a batch's rows found, row by row (None for rows not fitted).
pub(super) struct FittedRows {
    /// What each row's fit found.
    pub cutouts: Vec<Option<FittedCutout>>,
    /// The AB zero point each fitted row's pixels were converted from (None: taken
    /// in the recipe's units).
    pub zero_points: Vec<Option<f64>>,
    /// Where each fitted row's lens lies on the sky (None: not fitted, or no
    /// celestial WCS).
    pub on_sky: Vec<Option<LensOnSky>>,
}

/// Fits the smooth lens to every usable row of `batch` (its pixels on the model's
/// grid, each row's `scale_ratios[r]` times larger than the input's) and puts the
/// residual in place of its pixels; a row that cannot be fitted gets `failed: ...`
/// as its status. `watch` hears of each row fitted and can stop the fits not yet
/// started.
pub(super) fn fit_rows(
    fitter: &ResidualFitter,
    options: &super::PredictorOptions,
    batch: &mut CutoutBatch,
    status: &mut [String],
    image_len: usize,
    scale_ratios: &[f64],
    watch: FitWatch,
) -> Result<FittedRows> {
    let recipe_zero_point = fitter.zero_point();
    // A recipe in arbitrary units has nothing to convert a stated unit to: its
    // cutouts are taken as they are (and a zero point given is refused below).
    let observations = options.observation.of_rows(batch, recipe_zero_point.is_some())?;
    if recipe_zero_point.is_none() && observations.iter().flatten().any(|o| o.zero_point.is_some()) {
        return Err(Error::config(
            "--zero-point",
            "the classifier's smooth-lens recipe has no instrument zero point to convert the cutouts' flux to",
        ));
    }
    let model_scale = fitter.grid().pixel_scale;
    let mut todo = Vec::new();
    let mut observed = Vec::new();
    for (r, row) in observations.into_iter().enumerate() {
        if !status[r].starts_with("ok") {
            continue;
        }
        match row.and_then(|row| Ok((row.on_model_grid(scale_ratios[r], model_scale)?, row.zero_point))) {
            Ok((observation, zero_point)) => {
                todo.push((r, zero_point));
                observed.push(observation);
            }
            Err(why) => status[r] = format!("failed: smooth-lens fit: {why}"),
        }
    }
    let pixels: Vec<f32> = todo
        .iter()
        .flat_map(|&(r, zero_point)| {
            let to_recipe = to_recipe_units(zero_point, recipe_zero_point);
            batch.pixels[r * image_len..(r + 1) * image_len].iter().map(move |&v| (f64::from(v) * to_recipe) as f32)
        })
        .collect();
    // Noise maps are in the cutouts' units, and are converted with them.
    let noise: Option<Vec<f32>> = match (&batch.noise, options.observation.noise) {
        (Some(sigma), FitNoise::Map | FitNoise::MapTotal) => Some(
            todo.iter()
                .flat_map(|&(r, zero_point)| {
                    let to_recipe = to_recipe_units(zero_point, recipe_zero_point);
                    sigma[r * image_len..(r + 1) * image_len].iter().map(move |&s| (f64::from(s) * to_recipe) as f32)
                })
                .collect(),
        ),
        _ => None,
    };
    let n = batch.len();
    let mut fitted = FittedRows { cutouts: vec![None; n], zero_points: vec![None; n], on_sky: vec![None; n] };
    let includes_source = options.observation.noise == FitNoise::MapTotal;
    let outcomes = fitter.fit(&pixels, &observed, noise.as_deref(), includes_source, options.fit_refits, watch);
    for ((r, zero_point), outcome) in todo.into_iter().zip(outcomes) {
        match outcome {
            Ok(fit) => {
                batch.pixels[r * image_len..(r + 1) * image_len].copy_from_slice(&fit.residual);
                fitted.on_sky[r] = batch.wcs[r].as_ref().and_then(|wcs| lens_on_sky(fitter.grid(), &fit.lens, wcs));
                fitted.cutouts[r] = Some(fit);
                fitted.zero_points[r] = zero_point;
            }
            Err(why) => status[r] = format!("failed: smooth-lens fit: {why}"),
        }
    }
    Ok(fitted)
}

/// Where a fitted lens lies on the sky and how it is oriented there, for a cutout with a
/// celestial WCS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LensOnSky {
    /// Right ascension and declination of the mass's centre, degrees.
    pub ra: f64,
    pub dec: f64,
    /// The mass's major axis and the shear's orientation, degrees east of north in [0, 180).
    pub position_angle: Option<f64>,
    pub shear_angle: Option<f64>,
}

/// A fitted lens on the sky, by its cutout's WCS on the model's grid (after any
/// regridding), the fit's arcsec offsets being laid on the fitter's grid.
fn lens_on_sky(
    grid: crate::sim::PixelGrid,
    lens: &FittedLens,
    wcs: &crate::data::fits::wcs::CelestialWcs,
) -> Option<LensOnSky> {
    // FITS counts pixels from 1.
    let (x, y) = (grid.index_of(lens.center_x) + 1.0, grid.index_of(lens.center_y) + 1.0);
    let (ra, dec) = wcs.sky_position(x, y)?;
    Some(LensOnSky {
        ra,
        dec,
        position_angle: wcs.sky_orientation(x, y, lens.position_angle),
        shear_angle: wcs.sky_orientation(x, y, lens.shear_angle),
    })
}

/// The factor that brings flux of AB zero point `zero_point` to the recipe's units: a
/// cutout of zero point m holds 10^(0.4 (m_recipe - m)) times less per source than the
/// recipe's instrument counts (1 where either is not known: taken as they are).
fn to_recipe_units(zero_point: Option<f64>, recipe_zero_point: Option<f64>) -> f64 {
    match (zero_point, recipe_zero_point) {
        (Some(zp), Some(recipe)) => 10f64.powf(0.4 * (recipe - zp)),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Float32Array, Int64Array, StringArray};
    use arrow_schema::Field;
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> CutoutBatch {
        let rows = columns[0].1.len();
        CutoutBatch {
            pixels: vec![],
            problems: vec![None; rows],
            carried: columns
                .into_iter()
                .map(|(name, values)| (Field::new(name, values.data_type().clone(), true), values))
                .collect(),
            pixel_scales: vec![None; rows],
            wcs: vec![None; rows],
            flux: vec![Default::default(); rows],
            noise: None,
        }
    }

    #[test]
    fn observations_come_from_any_numeric_column_and_a_null_fails_its_row_alone() {
        let exposure: ArrayRef = Arc::new(Int64Array::from(vec![Some(2264), None]));
        let psf: ArrayRef = Arc::new(Float32Array::from(vec![0.25f32, 0.5]));
        let rows =
            ObservationSource::default().of_rows(&batch(vec![("psf_fwhm", psf), ("exposure_time", exposure)]), true);
        let rows = rows.unwrap();
        let row = RowObservation { psf: RowPsf::Fwhm(0.25), exposure_time: 2264.0, zero_point: None };
        assert_eq!(rows[0], Ok(row));
        assert_eq!(rows[1], Err("no exposure time (`exposure_time` is null)".to_string()));
        // Text is refused for the whole batch, naming the column; so is a missing column.
        let text: ArrayRef = Arc::new(StringArray::from(vec!["0.17"]));
        let error = ObservationSource { exposure_time: Some(1.0), ..Default::default() }
            .of_rows(&batch(vec![("psf_fwhm", text)]), true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`psf_fwhm` is Utf8"), "{error}");
        let error =
            ObservationSource::default().of_rows(&batch(vec![("id", Arc::new(Int64Array::from(vec![1])))]), true);
        let error = error.unwrap_err().to_string();
        assert!(error.contains("header keyword PSF_FWHM") && error.contains("--psf-fwhm-col"), "{error}");
    }

    #[test]
    fn psf_images_come_from_a_list_column_and_a_row_that_is_no_psf_fails_alone() {
        use arrow_array::builder::{Float64Builder, ListBuilder};
        let mut images = ListBuilder::new(Float64Builder::new());
        let moffat = PsfKernel::moffat(1.7, 3.0, 9).unwrap();
        images.values().append_slice(moffat.weights());
        images.append(true);
        images.values().append_slice(&[1.0; 8]);
        images.append(true);
        images.append(false);
        images.values().append_slice(&vec![1.0; 257 * 257]);
        images.append(true);
        let images: ArrayRef = Arc::new(images.finish());
        let source = ObservationSource {
            psf_image_column: Some("psf".into()),
            exposure_time: Some(2264.0),
            ..Default::default()
        };
        assert_eq!(source.columns(), ["psf"], "no FWHM column is needed with PSF images");
        let rows = source.of_rows(&batch(vec![("psf", images)]), false).unwrap();
        let Ok(RowObservation { psf: RowPsf::Image { kernel, .. }, .. }) = &rows[0] else { panic!("{:?}", rows[0]) };
        // Read as float32, as pixels are.
        assert!(kernel.weights().iter().zip(moffat.weights()).all(|(a, b)| (a - b).abs() < 1e-8));
        assert_eq!(rows[1], Err("PSF image (`psf`): 8 PSF values are not a square image".into()));
        assert_eq!(rows[2], Err("no PSF image (`psf` is null)".into()));
        assert_eq!(rows[3], Err("PSF image (`psf`): 66049 values: at most 65025".into()), "refused before it is read");
        // On the model's grid: as it is, or resampled as the cutout was (pixels 1% wider:
        // the PSF 1% narrower in them), its FWHM in the model's arcsec either way.
        let row = rows[0].as_ref().unwrap();
        let same = row.on_model_grid(1.0, 0.1).unwrap();
        assert_eq!(same.psf_kernel.as_ref(), Some(kernel));
        assert!((same.psf_fwhm - kernel.gaussian_equivalent_fwhm() * 0.1).abs() < 1e-15);
        let wider = row.on_model_grid(1.01, 0.101).unwrap();
        let resampled = wider.psf_kernel.as_deref().unwrap();
        let width = resampled.gaussian_equivalent_fwhm() / kernel.gaussian_equivalent_fwhm();
        assert!((width - 1.0 / 1.01).abs() < 0.01, "{width}");
        assert!((resampled.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // A list column that is not numbers is refused for the batch; so is a PSF given twice.
        let text: ArrayRef = Arc::new(StringArray::from(vec!["psf.fits"]));
        let error = source.of_rows(&batch(vec![("psf", text)]), false).unwrap_err().to_string();
        assert!(error.contains("--psf-image-col") && error.contains("lists of numbers"), "{error}");
        let twice = ObservationSource { psf_fwhm: Some(0.16), ..source };
        assert!(twice.check().unwrap_err().to_string().contains("give one of --psf-fwhm, --psf-image"));
    }

    #[test]
    fn a_psf_image_finer_than_the_cutouts_is_resampled_from_its_own_scale() {
        // A Moffat sampled at a third of the model's pixels (whole model pixels are
        // sums of 3 x 3 of its own), against the same Moffat at the model's pixels,
        // whose 5 x 5 samples across a pixel are 15 x 15 in the fine one.
        let fine = Arc::new(PsfKernel::moffat(3.0 * 1.7, 3.0, 63).unwrap());
        let at_model_pixels = PsfKernel::moffat(1.7, 3.0, 21).unwrap();
        let at_scale = |scale| {
            let psf = RowPsf::Image { kernel: fine.clone(), scale };
            let row = RowObservation { psf, exposure_time: 2264.0, zero_point: None };
            row.on_model_grid(1.0, 0.101).unwrap()
        };
        let resampled = at_scale(Some(0.101 / 3.0));
        let kernel = resampled.psf_kernel.as_deref().unwrap();
        assert_eq!(kernel.side(), 21);
        let peak = at_model_pixels.weights().iter().cloned().fold(0.0, f64::max);
        let worst =
            (kernel.weights().iter().zip(at_model_pixels.weights())).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 0.01 * peak, "{worst} of a peak {peak}");
        assert!((resampled.psf_fwhm / (at_model_pixels.gaussian_equivalent_fwhm() * 0.101) - 1.0).abs() < 0.01);
        // Taken at the cutout's pixels, the same image is a PSF three times as wide.
        let unscaled = at_scale(None);
        assert!((unscaled.psf_fwhm / resampled.psf_fwhm - 3.0).abs() < 0.1, "{}", unscaled.psf_fwhm);
        // A scale is of a PSF image, and a positive number.
        let scale_alone = ObservationSource { psf_image_scale: Some(0.05), ..Default::default() };
        assert!(scale_alone.check().unwrap_err().to_string().contains("give --psf-image"));
        let zero =
            ObservationSource { psf_image: Some(fine.clone()), psf_image_scale: Some(0.0), ..Default::default() };
        assert!(zero.check().unwrap_err().to_string().contains("--psf-image-scale"));
    }

    #[test]
    fn a_stated_flux_unit_gives_the_zero_point_none_was_given_for() {
        let mut cutouts = batch(vec![("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4])))]);
        cutouts.flux = ["uJy", "nJy", "electron/s"]
            .map(|unit| crate::data::flux_unit::StatedFlux::of_unit(Some(unit.into())))
            .into_iter()
            .chain([Default::default()])
            .collect();
        let source = ObservationSource { psf_fwhm: Some(0.16), exposure_time: Some(2264.0), ..Default::default() };
        let zero_points = |source: &ObservationSource, from_units: bool| -> Vec<Option<f64>> {
            let rows = source.of_rows(&cutouts, from_units).unwrap();
            rows.into_iter().map(|row| row.unwrap().zero_point).collect()
        };
        assert_eq!(zero_points(&source, true), [Some(23.9), Some(31.4), None, None]);
        // A recipe with no zero point takes every cutout as it is.
        assert_eq!(zero_points(&source, false), [None; 4]);
        // One given for every cutout is what the user knows: it wins over the header.
        let given = ObservationSource { zero_point: Some(25.0), ..source };
        assert_eq!(zero_points(&given, true), [Some(25.0); 4]);
    }
}
