//! The predictions table (schema: `schemas/predictions.json`), written to a hidden
//! temporary file batch by batch and renamed into place when complete: Parquet,
//! Arrow IPC (`--out x.arrow`, `.feather`, `.arrows`), or FITS (`--out x.fits`, for
//! astropy, TOPCAT and DS9) with the table as the `PREDICTIONS` extension and the
//! super-resolved cutouts as the primary cube.
//!
//! Columns: `row` (the input's row number, from 0 over all inputs), the carried
//! columns as read, `p_<class>` for each class of the classifier, `pred_class`,
//! `max_prob`, `entropy` (nats), `ood_score` (the Mahalanobis distance of the
//! image's encoder features from the classifier's training domain) and `in_domain`
//! (null for an uncalibrated classifier), for a classifier of smooth-lens residuals
//! `fit_chi2`, `fit_core_chi2`, `fit_theta_e` and the rest of the fitted lens model (what the fit of
//! the cutout found), `fit_zero_point`
//! (the zero point its pixels were converted from), `fit_noise_map` (whether its
//! noise map weighted the fit) and `fit_refit_spread`
//! (how far refits of the cutout moved in its last bits land), `sr_image` (a
//! fixed-shape tensor, when a super-resolution model ran) with `sr_wcs` (its
//! celestial WCS as FITS header cards, when the input had one) and `status` (`ok`;
//! `out_of_domain` when the model answered but the image is unlike its training
//! data; `unstable_fit` when it answered but its fit does not come back; or why the
//! row has no prediction). Rows without a prediction hold nulls, never a made-up value.

use crate::data::fits::table_writer::FitsTableWriter;
use crate::data::ipc::table_writer::{IpcTableWriter, STANDARD_STREAM};
use crate::data::ipc::IpcFormat;
use crate::data::parquet::table_writer::TableWriter;
use crate::data::parquet::tensor_field;
use crate::data::predictions::PREDICTIONS_FITS;
use crate::data::schema::{DESCRIPTION_KEY, UNIT_KEY};
use crate::infer::residuals::{CORE_ANNULI, CORE_CHI2_TYPICAL, UNSTABLE_ANSWER, UNSTABLE_FIT_CHI2};
use crate::Result;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Version of the predictions table's layout (file metadata `lensmae:schema_version`).
pub const PREDICTIONS_SCHEMA_VERSION: &str = "1";

/// The highest SIP order whose `sr_wcs` astropy's Parquet reader reads whole.
const ASTROPY_SIP_ORDER: usize = 5;

/// `field` with its description and, when it has one, its unit.
fn described(field: Field, description: &str, unit: Option<&str>) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(DESCRIPTION_KEY.to_string(), description.to_string());
    if let Some(unit) = unit {
        metadata.insert(UNIT_KEY.to_string(), unit.to_string());
    }
    field.with_metadata(metadata)
}

/// The output columns for these carried columns, classes and SR image shape,
/// each described (and with its unit) in its field metadata.
pub fn predictions_schema(
    carried: &[Field],
    class_names: &[String],
    smooth_lens_fit: bool,
    sr_shape: Option<[usize; 2]>,
    metadata: HashMap<String, String>,
) -> SchemaRef {
    let float = |name: &str| Field::new(name, DataType::Float32, true);
    let mut fields = vec![described(
        Field::new("row", DataType::Int64, false),
        "the input row's number, from 0 over all inputs",
        None,
    )];
    fields.extend(carried.iter().cloned());
    fields.extend(
        class_names.iter().map(|c| {
            described(float(&format!("p_{c}")), &format!("calibrated probability that the lens is `{c}`"), None)
        }),
    );
    if !class_names.is_empty() {
        fields.push(described(Field::new("pred_class", DataType::Utf8, true), "the most probable class", None));
        fields.push(described(float("max_prob"), "the probability of pred_class", None));
        fields.push(described(float("entropy"), "entropy of the class probabilities, in nats", None));
        fields.push(described(
            float("ood_score"),
            "Mahalanobis distance of the cutout's encoder features from the classifier's training data",
            None,
        ));
        fields.push(described(
            Field::new("in_domain", DataType::Boolean, true),
            "the cutout is within the classifier's domain: ood_score within the threshold fitted on validation data, the pixel scale near the model's, the deflector within the centring search, for a min-max classifier its pixels stored finely enough (distinct values), and for a classifier of smooth-lens residuals a fit that found a galaxy-scale lens (an Einstein radius from one pixel to the cutout's side, an axis ratio above 0.053, a shear below 0.5, each clear of the bound by 1%; null: an uncalibrated classifier whose fit found one)",
            None,
        ));
    }
    if smooth_lens_fit {
        let float64 = |name: &str| Field::new(name, DataType::Float64, true);
        fields.push(described(
            float64("fit_chi2"),
            "chi^2 per pixel of the smooth-lens fit the classifier read the residual of (about 1: the smooth lens explains the cutout to the noise)",
            None,
        ));
        fields.push(described(
            float64("fit_core_chi2"),
            &format!("chi^2 of the residual's azimuthal means in {CORE_ANNULI} one-pixel annuli about the fitted deflector's light (about 4 on the classifier's own lenses, at most {CORE_CHI2_TYPICAL} for nine in ten; a run in which most rows lie above {CORE_CHI2_TYPICAL} is not of the PSF the fit assumed, as a PSF with wings given as a FWHM: give --psf-image or --psf-moffat-beta)"),
            None,
        ));
        fields.push(described(float64("fit_theta_e"), "the fitted Einstein radius", Some("arcsec")));
        // The rest of the fitted lens model (infer::residuals::FittedLens).
        const AXES: &str = "counter-clockwise from the cutout's +x axis (its columns) towards +y (its rows as FITS stores them, up in DS9), in (-90, 90]";
        for (name, description, unit) in [
            ("fit_axis_ratio", "minor/major axis ratio of the fitted SIE mass".to_string(), None),
            ("fit_position_angle", format!("orientation of the fitted mass's major axis, {AXES}"), Some("deg")),
            ("fit_lens_x", "centre of the fitted mass along the cutout's x axis (columns), from the cutout's centre".to_string(), Some("arcsec")),
            ("fit_lens_y", "centre of the fitted mass along the cutout's y axis (rows), from the cutout's centre".to_string(), Some("arcsec")),
            ("fit_shear", "strength of the fitted external shear".to_string(), None),
            ("fit_shear_angle", format!("orientation of the fitted external shear, {AXES}"), Some("deg")),
            ("fit_lens_light_mag", "AB magnitude of the fitted deflector light (Sersic), through the recipe's instrument zero point after the pixels' conversion (fit_zero_point)".to_string(), Some("mag")),
            ("fit_source_mag", "AB magnitude of the fitted source (Sersic) before lensing, through the recipe's instrument zero point after the pixels' conversion (fit_zero_point)".to_string(), Some("mag")),
        ] {
            fields.push(described(float64(name), &description, unit));
        }
        // One standard deviation of each, from the noise alone (infer::residuals::FittedLensErrors).
        const ERROR: &str = "one standard deviation of the noise's error in";
        const NOISE_ONLY: &str = "the fit's parameter covariance (J^T J)^-1 propagated linearly; the noise's error only: a lens with substructure is off by more; null: the cutout does not constrain every parameter of the fit";
        for (name, quantity, unit) in [
            ("fit_theta_e_err", "fit_theta_e", Some("arcsec")),
            ("fit_axis_ratio_err", "fit_axis_ratio", None),
            ("fit_position_angle_err", "fit_position_angle (and fit_position_angle_sky)", Some("deg")),
            ("fit_lens_x_err", "fit_lens_x", Some("arcsec")),
            ("fit_lens_y_err", "fit_lens_y", Some("arcsec")),
            ("fit_shear_err", "fit_shear", None),
            ("fit_shear_angle_err", "fit_shear_angle (and fit_shear_angle_sky)", Some("deg")),
            ("fit_lens_light_mag_err", "fit_lens_light_mag", Some("mag")),
            ("fit_source_mag_err", "fit_source_mag", Some("mag")),
        ] {
            fields.push(described(float64(name), &format!("{ERROR} {quantity}: {NOISE_ONLY}"), unit));
        }
        for (name, description, unit) in [
            (
                "fit_lens_ra",
                "right ascension of the fitted mass's centre, by the cutout's celestial WCS (null: no WCS)".to_string(),
                Some("deg"),
            ),
            (
                "fit_lens_dec",
                "declination of the fitted mass's centre, by the cutout's celestial WCS (null: no WCS)".to_string(),
                Some("deg"),
            ),
            (
                "fit_position_angle_sky",
                "orientation of the fitted mass's major axis on the sky, east of north, in [0, 180) (null: no WCS)"
                    .to_string(),
                Some("deg"),
            ),
            (
                "fit_shear_angle_sky",
                "orientation of the fitted external shear on the sky, east of north, in [0, 180) (null: no WCS)"
                    .to_string(),
                Some("deg"),
            ),
        ] {
            fields.push(described(float64(name), &description, unit));
        }
        fields.push(described(
            float64("fit_zero_point"),
            "the AB zero point the cutout's pixel values were converted from before the fit (--zero-point, --zero-point-col, or the one its flux unit or header fixes: BUNIT uJy 23.9, nJy 31.4, nanomaggy 22.5; HST PHOTFLAM and PHOTPLAM, JWST MJy/sr with PIXAR_SR, FLUXMAG0, MAGZERO); null: taken in the recipe's units, its instrument's electrons per second",
            Some("mag"),
        ));
        fields.push(described(
            Field::new("fit_noise_map", DataType::Boolean, true),
            "the cutout's noise map (an RMS, variance or weight extension, --noise-col) gave the fit and its residual their background noise wherever the map is finite (all of it with --fit-noise map-total); false: the recipe's sky and read noise at the cutout's exposure time (no map, or --fit-noise recipe)",
            None,
        ));
        fields.push(described(
            float64("fit_refit_spread"),
            &format!("the largest chi^2 difference between the fit and refits of the cutout moved within half a 16-bit step (above {UNSTABLE_FIT_CHI2}: status unstable_fit; null: not checked, --fit-refits 0 or a first fit whose chi^2 is outside the classifier's calibrated range, which makes the row out_of_domain)"),
            None,
        ));
        fields.push(described(
            float("refit_answer_spread"),
            &format!("the largest difference in any class's probability between the answers on the residuals of the fit and of its refits (above {UNSTABLE_ANSWER}: status unstable_fit; null where fit_refit_spread is, or the row has no answer)"),
            None,
        ));
    }
    if let Some([h, w]) = sr_shape {
        fields.push(described(
            tensor_field("sr_image", h, w).with_nullable(true),
            "the super-resolved cutout, in the input cutout's flux units per pixel",
            None,
        ));
        fields.push(described(
            Field::new("sr_wcs", DataType::Utf8, true),
            "where sr_image lies on the sky: its celestial WCS (RA---TAN/DEC--TAN, CD matrix, RADESYS) as FITS header cards of 80 characters each, which astropy's WCS(text) reads; the input cutout's WCS carried through its regridding and the super-resolution (null: the input has no celestial WCS, or the row no sr_image)",
            None,
        ));
    }
    fields.push(described(
        Field::new("pixel_scale", DataType::Float64, true),
        "the input cutout's pixel scale used (null: unknown)",
        Some("arcsec/pixel"),
    ));
    fields.push(described(
        Field::new("geometry", DataType::Utf8, false),
        "how the cutout was brought to the model's grid (`as is`: unchanged; `deflector centred from column +c, row +r`: moved by whole pixels to put the lens galaxy's light at the centre; `deflector more than 5 pixels off the centre ...`: the classifier could not reach it, and the row is out of its domain)",
        None,
    ));
    fields.push(described(
        Field::new("nonfinite_pixels", DataType::Int32, true),
        "pixels of the cutout on the model's grid that held no finite value (NaN or infinity in the data, BLANK, flagged or of weight 0 in the file), whatever --nan-policy did with them and whatever the row's status (null: the row has no image)",
        None,
    ));
    fields.push(described(
        Field::new("status", DataType::Utf8, false),
        "ok; out_of_domain (answered, unlike the training data); unstable_fit (answered, but the smooth-lens fit the answer rests on lands elsewhere when the cutout is stored another way); or why the row has no prediction",
        None,
    ));
    let mut metadata = metadata;
    // astropy's `Table.read` takes column units and descriptions from this key
    // (YAML; JSON is YAML); every column must be listed.
    let columns: Vec<serde_json::Value> = fields
        .iter()
        .map(|f| {
            let mut column = serde_json::json!({ "name": f.name() });
            for key in [DESCRIPTION_KEY, UNIT_KEY] {
                if let Some(value) = f.metadata().get(key) {
                    column[key] = serde_json::Value::String(value.clone());
                }
            }
            column
        })
        .collect();
    metadata.insert("table_meta_yaml".to_string(), serde_json::json!({ "datatype": columns }).to_string());
    if let Some(longest) = class_names.iter().map(|c| c.chars().count()).max() {
        // astropy's Parquet reader sizes string columns by these keys and cannot
        // measure a column with nulls itself (pred_class is null without a prediction).
        metadata.insert("table::len::pred_class".to_string(), longest.to_string());
    }
    if sr_shape.is_some() {
        // sr_wcs is null without a WCS; its width for astropy is that of the longest
        // WCS up to a SIP distortion of order 5 (astropy cuts longer ones there).
        let longest = crate::data::fits::wcs::longest_header_cards(ASTROPY_SIP_ORDER);
        metadata.insert("table::len::sr_wcs".to_string(), longest.to_string());
    }
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// When and with what a file was written: `lensmae:created` (UTC, ISO 8601),
/// `lensmae:build` (the commit lensmae was built from) and, when given,
/// `lensmae:command` (the full command line). Kept out of a run's identity: two
/// shards of one run differ only here.
pub fn provenance(command: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::from([
        ("lensmae:created".to_string(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ("lensmae:build".to_string(), env!("LENSMAE_BUILD").to_string()),
    ]);
    if let Some(command) = command {
        m.insert("lensmae:command".to_string(), command.to_string());
    }
    m
}

/// Where predictions go, batch by batch; the file appears only when finished.
pub trait PredictionSink {
    /// Appends one batch.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Completes the file and moves it into place; returns the rows written.
    fn finish(self: Box<Self>) -> Result<usize>;
}

/// The writer for `target` by its extension: a FITS file (`.fits`, `.fit`) of
/// `rows` rows, an Arrow IPC file (`.arrow`, `.feather`, `.ipc`) or stream
/// (`.arrows`; `-`: standard output), else Parquet.
pub fn create_sink(target: &Path, schema: SchemaRef, rows: usize, overwrite: bool) -> Result<Box<dyn PredictionSink>> {
    if let Some(format) =
        IpcFormat::for_name(target).or((target == Path::new(STANDARD_STREAM)).then_some(IpcFormat::Stream))
    {
        return Ok(Box::new(IpcTableWriter::create(target, schema, format, overwrite)?));
    }
    let ext = target.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    Ok(match ext.as_str() {
        "fits" | "fit" => Box::new(FitsTableWriter::create(target, schema, PREDICTIONS_FITS, rows, overwrite)?),
        _ => Box::new(TableWriter::create(target, schema, overwrite)?),
    })
}

impl PredictionSink for TableWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        TableWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<usize> {
        TableWriter::finish(*self)
    }
}

impl PredictionSink for FitsTableWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        FitsTableWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<usize> {
        FitsTableWriter::finish(*self)
    }
}

impl PredictionSink for IpcTableWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        IpcTableWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<usize> {
        IpcTableWriter::finish(*self)
    }
}
