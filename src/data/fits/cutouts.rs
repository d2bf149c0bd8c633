//! FITS cutouts: single-image files, cubes whose NAXIS3 is a stack of cutouts,
//! cubes whose NAXIS3 is the bands of one cutout (the header names them, `BAND0`,
//! `BAND1`... or `BANDS = 'grz'`, as the Legacy Surveys' cutout service writes
//! them), and multi-extension files (one named extension, or every image extension).
//!
//! cfitsio applies BSCALE/BZERO and reads every BITPIX (and `.fits.gz`) as f32;
//! integer pixels equal to BLANK become NaN, so the NaN policy sees them. A file
//! that cannot be read becomes one output row with that reason, not a failed run.
//! Files are opened per batch (a `FitsFile` cannot cross threads), so the reader
//! holds only the plan of which image lies where.
//!
//! A header's declared sizes are checked against the bytes the file holds before
//! anything is planned or allocated: a cube cut short gives its complete planes and
//! a row naming the truncation for each missing one (one row for the rest when a
//! header declares far more than could ever be there), and an image larger than
//! any cutout is refused with its size.

use super::kept::{column_array, column_type, header_value, keywords_for, KeptValue, ParamsTable};
use super::wcs::{wcs_pixel_scale, CelestialWcs};
use super::{data_bytes_in_file, fits_message, open_fits};
use crate::data::cutouts::{rows_in_batch, CutoutBatch, CutoutReader, InputDescription, InputOptions, RecordedScale};
use crate::data::flux_unit::{PhotometricKeywords, StatedFlux, ZERO_POINT_KEYWORDS};
use crate::data::schema::{DESCRIPTION_KEY, UNIT_KEY};
use crate::{Error, Result};
use arrow_array::{ArrayRef, StringArray};
use arrow_schema::{DataType, Field};
use fitsio::hdu::HduInfo;
use fitsio::FitsFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where one cutout lies.
#[derive(Debug, Clone)]
struct Plane {
    file: usize,
    hdu: usize,
    /// Index in a cube (0 for a single image).
    plane: usize,
    /// Planes in its HDU (1 for a single image).
    planes: usize,
    shape: [usize; 2],
    /// Arcsec per pixel, from the HDU's WCS.
    pixel_scale: Option<f64>,
    /// A single image's celestial WCS.
    wcs: Option<CelestialWcs>,
    /// Its `BUNIT` and photometric keywords, else the primary header's.
    flux: StatedFlux,
    /// Who the cutout is: a `PARAMS` table's `id`, the HDU's OBJ_ID, RA, DEC.
    identity: Identity,
    /// The HDUs of its noise map and flags, when the file has them.
    companions: Companions,
    /// Its values of the columns carried by name (`--keep`), in that order.
    kept: Vec<Option<KeptValue>>,
    /// Why the whole file or HDU cannot be read.
    problem: Option<String>,
}

/// What an extension beside the flux holds (Euclid MER, Rubin and HST cutouts
/// carry these beside the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompanionKind {
    /// Noise sigma per pixel (RMS, ERR, NOISE, SIGMA).
    Rms,
    /// Variance per pixel (VAR).
    Variance,
    /// Inverse variance (WHT, WEIGHT, IVAR); 0 marks no data.
    Weight,
    /// Data-quality flags (FLAG, MASK, DQ, BPM); non-zero masks the pixel.
    Flags,
}

/// The noise map and flags of one cutout's HDU.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Companions {
    noise: Option<(usize, CompanionKind)>,
    /// The flags' HDU and the bits that mask a pixel (None: any non-zero value).
    flags: Option<(usize, Option<u64>)>,
}

/// Mask planes of Rubin's and HSC's pipelines (their mask HDU names each plane's bit
/// in an `MP_<NAME>` keyword) whose pixels hold no usable value: bad or saturated
/// pixels, cosmic rays, no data, the edge, interpolated over a defect, crosstalk,
/// satellite streaks.
pub const DEFECT_MASK_PLANES: [&str; 10] =
    ["BAD", "SAT", "CR", "EDGE", "NO_DATA", "SUSPECT", "INTRP", "UNMASKEDNAN", "CROSSTALK", "STREAK"];

/// Planes of the same masks that describe good pixels (a detection footprint covers
/// the lens itself): masking them would take the cutout's subject away.
const DESCRIPTIVE_MASK_PLANES: [&str; 8] = [
    "DETECTED",
    "DETECTED_NEGATIVE",
    "INEXACT_PSF",
    "CLIPPED",
    "REJECTED",
    "SENSOR_EDGE",
    "NOT_DEBLENDED",
    "BRIGHT_OBJECT",
];

/// The bits of a flags HDU that mask a pixel: those of `planes` (`--flag-planes`),
/// each to be declared by the HDU's `MP_<NAME>` keyword; else, when the HDU declares
/// its planes so, those of [`DEFECT_MASK_PLANES`]; else None: any non-zero value
/// masks (HST, JWST and Euclid flag maps declare no planes).
fn masking_bits(
    f: &mut FitsFile,
    hdu: &fitsio::hdu::FitsHdu,
    planes: Option<&[String]>,
) -> std::result::Result<Option<u64>, String> {
    let mut bit_of = |name: &str| {
        hdu.read_key::<i64>(f, &format!("MP_{}", name.to_ascii_uppercase())).ok().filter(|bit| (0..64).contains(bit))
    };
    if let Some(planes) = planes {
        let mut bits = 0u64;
        for name in planes {
            let bit = bit_of(name).ok_or_else(|| {
                format!(
                    "--flag-planes {name}: the flags HDU declares no such plane (no MP_{name} keyword of a bit 0-63)"
                )
            })?;
            bits |= 1 << bit;
        }
        return Ok(Some(bits));
    }
    let defect: Vec<i64> = DEFECT_MASK_PLANES.iter().filter_map(|name| bit_of(name)).collect();
    let declared = !defect.is_empty() || DESCRIPTIVE_MASK_PLANES.iter().any(|name| bit_of(name).is_some());
    Ok(declared.then(|| defect.iter().fold(0u64, |bits, bit| bits | 1 << bit)))
}

/// What an extension's name says it holds: a companion of the flux, another
/// product that is not a cutout (PSF, background, model), or the flux itself.
fn extension_role(extname: &str, opts: &InputOptions) -> Option<Option<CompanionKind>> {
    let name = extname.trim();
    let given = |option: &Option<String>| option.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(name));
    if given(&opts.rms_hdu) {
        return Some(Some(CompanionKind::Rms));
    }
    if given(&opts.weight_hdu) {
        return Some(Some(CompanionKind::Weight));
    }
    if given(&opts.flag_hdu) {
        return Some(Some(CompanionKind::Flags));
    }
    // The last word: `VIS_RMS`, `SCI`, `WHT`, `MER_FLAG`.
    let word = name.rsplit(['_', '-', ' ']).next().unwrap_or(name).to_ascii_uppercase();
    match word.as_str() {
        "RMS" | "ERR" | "ERROR" | "NOISE" | "SIGMA" | "STD" | "STDEV" => Some(Some(CompanionKind::Rms)),
        "VAR" | "VARIANCE" => Some(Some(CompanionKind::Variance)),
        "WHT" | "WEIGHT" | "IVAR" | "INVVAR" => Some(Some(CompanionKind::Weight)),
        "FLAG" | "FLAGS" | "MASK" | "DQ" | "BPM" => Some(Some(CompanionKind::Flags)),
        "PSF" | "BKG" | "BACKGROUND" | "MODEL" | "EXPOSURE" | "EXP" => Some(None),
        _ => None,
    }
}

/// What a FITS file says of who a cutout is.
#[derive(Debug, Clone, Default, PartialEq)]
struct Identity {
    id: Option<i64>,
    ra: Option<f64>,
    dec: Option<f64>,
    object_id: Option<String>,
    /// The band or filter the cutout was taken in.
    band: Option<String>,
}

/// An image HDU's own identity keywords (survey cutout services write these); the
/// position is the object's (`RA_OBJ`/`DEC_OBJ`, `RA`/`DEC`), else `centre` (a
/// single image's centre pixel by its celestial WCS); with `with_id` (`--keep id`)
/// an integer `ID` keyword too.
fn header_identity(
    f: &mut FitsFile,
    hdu: &fitsio::hdu::FitsHdu,
    centre: Option<(f64, f64)>,
    with_id: bool,
) -> Identity {
    let number = |f: &mut FitsFile, keys: &[&str]| {
        keys.iter().find_map(|k| hdu.read_key::<f64>(f, k).ok()).filter(|v| v.is_finite())
    };
    let object_id = ["OBJ_ID", "OBJECTID", "OBJID"]
        .iter()
        .find_map(|k| hdu.read_key::<String>(f, k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
    let position = match (number(f, &["RA_OBJ", "RA"]), number(f, &["DEC_OBJ", "DEC"])) {
        (Some(ra), Some(dec)) => Some((ra, dec)),
        _ => centre,
    };
    let id = if with_id { integer_id(f, hdu) } else { None };
    Identity { id, ra: position.map(|p| p.0), dec: position.map(|p| p.1), object_id, band: None }
}

/// Keeps the cutouts of `band` (the planes of that band in band cubes, the files
/// of that `FILTER`): a cutout whose file names no band becomes a row saying so
/// (it may be of that band; it is not dropped unsaid). Refused when no cutout is of
/// `band`, naming the bands the files hold.
fn select_band(plan: &mut Vec<Plane>, band: &str, files: &[PathBuf]) -> Result<()> {
    let mut seen: Vec<String> = plan.iter().filter_map(|p| p.identity.band.clone()).collect();
    seen.sort();
    seen.dedup();
    plan.retain(|p| p.identity.band.as_deref().is_none_or(|b| b == band));
    if !plan.iter().any(|p| p.identity.band.is_some()) {
        let held = match seen.is_empty() {
            true => "no file names its bands (keywords BAND0, BAND1... or BANDS; FILTER or BAND)".to_string(),
            false => format!("the files hold {}", seen.join(", ")),
        };
        return Err(fits_error(&files[0], format!("--band {band}: no cutout of that band: {held}")));
    }
    for p in plan.iter_mut().filter(|p| p.identity.band.is_none() && p.problem.is_none()) {
        p.problem = Some(format!(
            "no band named (keywords BAND0, BAND1... or BANDS; FILTER or BAND): not known to be of --band {band}"
        ));
    }
    Ok(())
}

/// The bands of the `planes` planes of an image HDU, where its header names one
/// for each: `BAND0`, `BAND1`... (or from 1), else `BANDS` of one letter a plane
/// (`'grz'`): the Legacy Surveys' cutout service writes both for its cubes.
fn band_names(f: &mut FitsFile, hdu: &fitsio::hdu::FitsHdu, planes: usize) -> Option<Vec<String>> {
    let text = |f: &mut FitsFile, key: &str| {
        hdu.read_key::<String>(f, key).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    };
    for first in [0, 1] {
        let named: Option<Vec<String>> = (first..first + planes).map(|i| text(f, &format!("BAND{i}"))).collect();
        if named.is_some() {
            return named;
        }
    }
    text(f, "BANDS").filter(|b| b.chars().count() == planes).map(|bands| bands.chars().map(String::from).collect())
}

/// The one band of every plane of an image HDU: its `FILTER` (Euclid, HSC, HST,
/// JWST) or `BAND` keyword.
fn common_band(f: &mut FitsFile, hdu: &fitsio::hdu::FitsHdu) -> Option<String> {
    ["FILTER", "BAND"]
        .iter()
        .find_map(|key| hdu.read_key::<String>(f, key).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()))
}

/// A header's `ID` keyword, where it holds an integer.
fn integer_id(f: &mut FitsFile, hdu: &fitsio::hdu::FitsHdu) -> Option<i64> {
    hdu.read_key::<String>(f, "ID").ok().and_then(|v| v.trim().parse::<i64>().ok())
}

/// Whether `--keep` asks for the `id` column.
fn keeps_id(opts: &InputOptions) -> bool {
    opts.keep.iter().any(|k| k == "id")
}

/// An HDU's `BUNIT`, where it says one.
fn flux_unit(f: &mut FitsFile, hdu: &fitsio::hdu::FitsHdu) -> Option<String> {
    hdu.read_key::<String>(f, "BUNIT").ok().map(|unit| unit.trim().to_string()).filter(|unit| !unit.is_empty())
}

/// An HDU's keywords that may fix the zero point of its flux.
fn photometric_keywords(f: &mut FitsFile, hdu: &fitsio::hdu::FitsHdu) -> PhotometricKeywords {
    let number = |f: &mut FitsFile, key: &str| hdu.read_key::<f64>(f, key).ok().filter(|v| v.is_finite());
    let positive = |f: &mut FitsFile, key: &str| number(f, key).filter(|&v| v > 0.0);
    PhotometricKeywords {
        photflam: positive(f, "PHOTFLAM"),
        photplam: positive(f, "PHOTPLAM"),
        pixar_sr: positive(f, "PIXAR_SR"),
        fluxmag0: positive(f, "FLUXMAG0"),
        magzero: ZERO_POINT_KEYWORDS.into_iter().find_map(|key| number(f, key).map(|zp| (key, zp))),
        exptime: positive(f, "EXPTIME"),
    }
}

/// Largest image lensmae reads as one cutout: 8192 x 8192 pixels.
pub const MAX_CUTOUT_PIXELS: usize = 8192 * 8192;

/// Missing planes of a truncated cube that get a row each; beyond this the rest of
/// the HDU is one row, so a hostile header cannot make the output unbounded.
const MAX_MISSING_ROWS: usize = 100_000;

/// An image HDU to read: its index, axes (NAXISn, slowest first), bytes per
/// stored pixel, and the bytes of data the file holds after its header (None when
/// unknown, as inside a gzipped file).
struct ImageHdu {
    index: usize,
    dims: Vec<usize>,
    pixel_bytes: usize,
    available: Option<u64>,
    pixel_scale: Option<f64>,
    wcs: Option<CelestialWcs>,
    /// Its header's `BUNIT`.
    flux_unit: Option<String>,
    /// Its header's photometric keywords.
    photometry: PhotometricKeywords,
    identity: Identity,
    /// A cube's band of each plane, where its header names them (its planes are then
    /// one cutout in several bands, not several cutouts).
    bands: Option<Vec<String>>,
    companions: Companions,
    /// Its header's values of the columns carried by name.
    kept: Vec<Option<KeptValue>>,
}

/// Columns a FITS input always carries when its files say them: where each
/// cutout comes from, and who it is.
const IDENTITY_COLUMNS: [&str; 6] = ["source", "id", "ra", "dec", "object_id", "band"];

/// FITS files read as one stream of cutouts.
pub struct FitsCutouts {
    files: Vec<PathBuf>,
    plan: Vec<Plane>,
    next: usize,
    desc: InputDescription,
    /// Some cutout has a noise map (every batch then carries one).
    noise: bool,
    /// The columns carried by name, with their types.
    kept: Vec<(String, DataType)>,
}

fn fits_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Fits { path: path.to_path_buf(), message: message.into() }
}

/// The image HDUs of an open file (at `path`) to read: `--hdu NAME`, else the
/// primary if it holds an image, else every image extension that is not a
/// companion (noise map, weight, flags: paired with the flux of the same EXTVER,
/// or with every flux when the file has one of its kind) nor another product
/// (PSF, background).
fn image_hdus(
    f: &mut FitsFile,
    path: &Path,
    opts: &InputOptions,
    kept_names: &[String],
) -> std::result::Result<(Vec<ImageHdu>, Vec<String>), String> {
    let hdu_name = opts.hdu.as_deref();
    let count = f.num_hdus().map_err(|e| e.to_string())?;
    let mut found: Vec<(ImageHdu, i64)> = Vec::new();
    let mut companions: Vec<(usize, CompanionKind, i64, Vec<usize>)> = Vec::new();
    // The bits that mask a pixel, of each flags HDU.
    let mut masking: std::collections::HashMap<usize, Option<u64>> = std::collections::HashMap::new();
    let mut notes = Vec::new();
    for i in 0..count {
        let Some(hdu) = super::hdu_at(f, i)? else { continue };
        let HduInfo::ImageInfo { shape, .. } = &hdu.info else { continue };
        if shape.len() < 2 {
            continue;
        }
        let extname: String = hdu.read_key(f, "EXTNAME").unwrap_or_default();
        let extver: i64 = hdu.read_key(f, "EXTVER").unwrap_or(1);
        let role = extension_role(&extname, opts);
        let asked_for = hdu_name.map(|name| extname.trim().eq_ignore_ascii_case(name));
        // A companion of the flux (noise, weights, flags) is paired with it below,
        // never read as a cutout, unless it is the extension asked for.
        if let (Some(Some(kind)), false) = (role, asked_for == Some(true)) {
            if kind == CompanionKind::Flags {
                masking.insert(i, masking_bits(f, &hdu, opts.flag_planes.as_deref())?);
            }
            companions.push((i, kind, extver, shape.clone()));
            notes.push(format!("`{}` as {kind:?}", extname.trim()));
            continue;
        }
        match (asked_for, role) {
            (Some(false), _) | (None, Some(None)) => continue,
            (None, None) if i > 0 && found.first().is_some_and(|(h, _)| h.index == 0) => continue,
            _ => {}
        }
        let bitpix: i64 = hdu.read_key(f, "BITPIX").map_err(|e| e.to_string())?;
        let available = data_bytes_in_file(f, path);
        let planes = match shape.as_slice() {
            [n, _, _] | [1, n, _, _] => *n,
            _ => 1,
        };
        let mut bands = band_names(f, &hdu, planes);
        // A single image's WCS places it on the sky, a band cube's too (its planes are
        // one object); a stack's planes are other objects.
        let one_object = match shape.as_slice() {
            [rows, columns] | [1, rows, columns] => Some((*rows, *columns)),
            [_, rows, columns] if bands.is_some() => Some((*rows, *columns)),
            _ => None,
        };
        let (wcs, centre) = match one_object {
            Some((rows, columns)) => {
                let wcs = CelestialWcs::read(f, &hdu);
                let centre =
                    wcs.as_ref().and_then(|w| w.sky_position((columns as f64 + 1.0) / 2.0, (rows as f64 + 1.0) / 2.0));
                (wcs, centre)
            }
            None => (None, None),
        };
        let mut identity = header_identity(f, &hdu, centre, keeps_id(opts));
        identity.band = match bands.as_deref() {
            Some([_]) => bands.take().and_then(|mut b| b.pop()),
            Some(_) => None,
            None => common_band(f, &hdu),
        };
        found.push((
            ImageHdu {
                index: i,
                dims: shape.clone(),
                pixel_bytes: (bitpix.unsigned_abs() / 8) as usize,
                available,
                pixel_scale: wcs_pixel_scale(f, &hdu),
                identity,
                bands,
                wcs,
                flux_unit: flux_unit(f, &hdu),
                photometry: photometric_keywords(f, &hdu),
                companions: Companions::default(),
                kept: kept_names.iter().map(|name| header_value(f, &hdu, name)).collect(),
            },
            extver,
        ));
    }
    if found.is_empty() {
        return Err(match hdu_name {
            Some(name) => format!("no image extension named `{name}`"),
            None => "no image HDU".to_string(),
        });
    }
    // Pair each flux with its companions: the same EXTVER, else the only one of its kind.
    let pick = |kinds: &[CompanionKind], extver: i64| -> Option<(usize, CompanionKind)> {
        let of_kind: Vec<&(usize, CompanionKind, i64, Vec<usize>)> =
            companions.iter().filter(|c| kinds.contains(&c.1)).collect();
        of_kind.iter().find(|c| c.2 == extver).or_else(|| (of_kind.len() == 1).then(|| &of_kind[0])).map(|c| (c.0, c.1))
    };
    let sigma_kinds = [CompanionKind::Rms, CompanionKind::Variance, CompanionKind::Weight];
    let hdus = found
        .into_iter()
        .map(|(mut hdu, extver)| {
            hdu.companions = Companions {
                noise: pick(&sigma_kinds, extver),
                flags: pick(&[CompanionKind::Flags], extver).map(|c| (c.0, masking.get(&c.0).copied().flatten())),
            };
            hdu
        })
        .collect();
    Ok((hdus, notes))
}

/// Per pixel of one cutout: its noise sigma (NaN where unknown: a negative weight, a
/// non-finite map), and its pixels set to NaN where its flags are non-zero or its
/// weight is 0 (no data there: a coadd's gap or edge), so that the NaN policy decides.
fn read_companions(
    f: &mut FitsFile,
    p: &Plane,
    pixels: &mut [f32],
    sigma: &mut [f32],
) -> std::result::Result<(), String> {
    let n = p.shape[0] * p.shape[1];
    let range = p.plane * n..(p.plane + 1) * n;
    if let Some((hdu, kind)) = p.companions.noise {
        let values = read_pixels(f, hdu, range.clone()).map_err(|e| format!("noise map (HDU {hdu}): {e}"))?;
        for ((s, v), pixel) in sigma.iter_mut().zip(values).zip(pixels.iter_mut()) {
            if kind == CompanionKind::Weight && v == 0.0 {
                *pixel = f32::NAN;
            }
            *s = match kind {
                CompanionKind::Rms => v,
                CompanionKind::Variance => v.sqrt(),
                CompanionKind::Weight if v > 0.0 => 1.0 / v.sqrt(),
                _ => f32::NAN,
            };
            if !(s.is_finite() && *s > 0.0) {
                *s = f32::NAN;
            }
        }
    }
    if let Some((hdu, bits)) = p.companions.flags {
        let masked = read_flags(f, hdu, range, bits).map_err(|e| format!("flags (HDU {hdu}): {e}"))?;
        for (v, masked) in pixels.iter_mut().zip(masked) {
            if masked {
                *v = f32::NAN;
            }
        }
    }
    Ok(())
}

impl FitsCutouts {
    /// Reads every file's headers and plans the cutouts.
    pub fn open(files: &[PathBuf], opts: &InputOptions) -> Result<FitsCutouts> {
        let mut kept_names: Vec<String> = Vec::new();
        for name in opts.keep.iter().chain(&opts.carry_if_present) {
            if !IDENTITY_COLUMNS.contains(&name.as_str()) && !kept_names.contains(name) {
                kept_names.push(name.clone());
            }
        }
        let mut plan = Vec::new();
        let mut shape: Option<[usize; 2]> = None;
        let mut companion_notes: Vec<String> = Vec::new();
        let mut table_notes: Vec<String> = Vec::new();
        // The bands of each band cube, as `g, r, z` (each set once).
        let mut band_sets: Vec<String> = Vec::new();
        for (file, path) in files.iter().enumerate() {
            let broken = |problem: String| Plane {
                file,
                hdu: 0,
                plane: 0,
                planes: 1,
                shape: [0, 0],
                pixel_scale: None,
                wcs: None,
                flux: StatedFlux::default(),
                identity: Identity::default(),
                companions: Companions::default(),
                kept: vec![None; kept_names.len()],
                problem: Some(problem),
            };
            let mut f = match open_fits(path) {
                Ok(f) => f,
                Err(e) => {
                    plan.push(broken(format!("unreadable FITS file: {e}")));
                    continue;
                }
            };
            let hdus = match image_hdus(&mut f, path, opts, &kept_names) {
                Ok((h, notes)) => {
                    companion_notes.extend(notes);
                    h
                }
                Err(e) => {
                    plan.push(broken(e));
                    continue;
                }
            };
            let params = match ParamsTable::read(&mut f, path, &kept_names) {
                Ok(params) => params,
                Err(why) => {
                    table_notes.push(format!("{}: {why}, not read", path.display()));
                    None
                }
            };
            let (primary, primary_unit, primary_photometry, primary_id, primary_band): (
                Vec<Option<KeptValue>>,
                _,
                _,
                _,
                _,
            ) = match super::hdu_at(&mut f, 0) {
                Ok(Some(primary)) => (
                    kept_names.iter().map(|name| header_value(&mut f, &primary, name)).collect(),
                    flux_unit(&mut f, &primary),
                    photometric_keywords(&mut f, &primary),
                    if keeps_id(opts) { integer_id(&mut f, &primary) } else { None },
                    common_band(&mut f, &primary),
                ),
                _ => (vec![None; kept_names.len()], None, PhotometricKeywords::default(), None, None),
            };
            for ImageHdu {
                index: hdu,
                dims,
                pixel_bytes,
                available,
                pixel_scale,
                wcs,
                flux_unit: unit,
                photometry,
                identity,
                bands,
                companions,
                kept,
            } in hdus
            {
                // Euclid and Rubin cutout files may say the unit once, in the primary
                // header; HST and JWST files keep their photometry in either.
                let unit = unit.or_else(|| primary_unit.clone());
                let flux = StatedFlux::from_header(unit, &photometry.or(primary_photometry), pixel_scale);
                let (planes, hw) = match dims.as_slice() {
                    [h, w] => (1, [*h, *w]),
                    [n, h, w] => (*n, [*h, *w]),
                    [1, n, h, w] => (*n, [*h, *w]),
                    other => {
                        plan.push(Plane { hdu, ..broken(format!("HDU {hdu} is {other:?}, not an image or a cube")) });
                        continue;
                    }
                };
                let pixels = hw[0].checked_mul(hw[1]).filter(|&n| n <= MAX_CUTOUT_PIXELS);
                let Some(pixels) = pixels else {
                    let too_big =
                        format!("HDU {hdu}: a {}x{} image is larger than any cutout (at most 8192x8192)", hw[0], hw[1]);
                    plan.push(Plane { hdu, ..broken(too_big) });
                    continue;
                };
                shape.get_or_insert(hw);
                if let Some(bands) = bands.as_ref().map(|b| b.join(", ")).filter(|b| !band_sets.contains(b)) {
                    band_sets.push(bands);
                }
                // Planes the file holds in full; the rest are missing.
                let complete = match available {
                    Some(bytes) => planes.min((bytes / (pixels * pixel_bytes).max(1) as u64) as usize),
                    None => planes,
                };
                // A PARAMS table of as many rows as the cube describes each plane;
                // a keyword of the image's header, else of the primary, every plane.
                let table = params.as_ref().filter(|t| t.rows == planes);
                // A single image's own `ID` (its header's, else the primary's) names it
                // where no table does, and every band of a band cube; a stack's planes
                // need a table's.
                let header_id = if planes == 1 || bands.is_some() { identity.id.or(primary_id) } else { None };
                let band_of = |plane: usize| {
                    let named = bands.as_ref().map(|bands| bands[plane].clone());
                    named.or_else(|| identity.band.clone()).or_else(|| primary_band.clone())
                };
                let id_of = |plane: usize| table.and_then(|t| t.ids.as_ref()).map(|ids| ids[plane]).or(header_id);
                let kept_of = |plane: usize| -> Vec<Option<KeptValue>> {
                    (0..kept_names.len())
                        .map(|k| {
                            table
                                .and_then(|t| t.value(k, plane))
                                .or_else(|| kept[k].clone())
                                .or_else(|| primary[k].clone())
                        })
                        .collect()
                };
                let planned = |plane: usize, problem: Option<String>| Plane {
                    file,
                    hdu,
                    plane,
                    planes,
                    shape: hw,
                    pixel_scale,
                    wcs: wcs.clone(),
                    flux: flux.clone(),
                    identity: Identity { id: id_of(plane), band: band_of(plane), ..identity.clone() },
                    companions,
                    kept: kept_of(plane),
                    problem,
                };
                plan.extend((0..complete).map(|plane| planned(plane, None)));
                let missing = planes - complete;
                let truncated = |plane: usize| {
                    let why = format!(
                        "truncated file: HDU {hdu} declares {planes} planes of {}x{}, the file ends after {complete}",
                        hw[0], hw[1]
                    );
                    planned(plane, Some(why))
                };
                if missing <= MAX_MISSING_ROWS {
                    plan.extend((complete..planes).map(truncated));
                } else if missing > 0 {
                    plan.push(truncated(complete)); // one row for the rest: the header is not to be believed
                }
            }
        }
        if let Some(band) = &opts.band {
            select_band(&mut plan, band, files)?;
        }
        if let Some(planes) = opts.flag_planes.as_ref().filter(|_| plan.iter().all(|p| p.companions.flags.is_none())) {
            return Err(fits_error(
                &files[0],
                format!(
                    "--flag-planes {}: no input has a flags extension (FLAG, MASK, DQ, BPM, or --flag-hdu) to read them from",
                    planes.join(",")
                ),
            ));
        }
        let image_shape = shape.ok_or_else(|| {
            // Every file was unreadable: say why (the first file's reason), not just that.
            let first = plan.iter().find_map(|p| p.problem.as_ref().map(|problem| (p.file, problem.clone())));
            match first {
                Some((file, problem)) if files.len() == 1 => fits_error(&files[file], problem),
                Some((file, problem)) => fits_error(
                    &files[file],
                    format!("{problem} (and no readable image in any of the {} input files)", files.len()),
                ),
                None => fits_error(&files[0], "no readable image in any input file"),
            }
        })?;
        let mut carried = vec!["source".to_string()];
        let any = |has: fn(&Identity) -> bool| plan.iter().any(|p| has(&p.identity));
        for (name, has) in [
            ("id", (|i: &Identity| i.id.is_some()) as fn(&Identity) -> bool),
            ("ra", |i| i.ra.is_some()),
            ("dec", |i| i.dec.is_some()),
            ("object_id", |i| i.object_id.is_some()),
            ("band", |i| i.band.is_some()),
        ] {
            if any(has) {
                carried.push(name.to_string());
            }
        }
        let mut kept = Vec::with_capacity(kept_names.len());
        let mut absent = Vec::new();
        for (k, name) in kept_names.iter().enumerate() {
            let Some(data_type) = column_type(plan.iter().filter_map(|p| p.kept[k].as_ref())) else {
                if !opts.keep.contains(name) {
                    absent.push(k);
                    continue;
                }
                let keywords = keywords_for(name).join(" or ");
                let message = format!(
                    "no cutout has a column `{name}` (--keep): no PARAMS table column of that name, no header keyword {keywords}"
                );
                return Err(match files.len() {
                    1 => fits_error(&files[0], message),
                    n => fits_error(&files[0], format!("{message}, in any of the {n} input files")),
                });
            };
            carried.push(name.clone());
            kept.push((name.clone(), data_type));
        }
        for planned in &mut plan {
            absent.iter().rev().for_each(|&k| drop(planned.kept.remove(k)));
        }
        let stacks = plan.iter().any(|p| p.planes > 1) && band_sets.is_empty();
        let mut layout = match (&opts.hdu, stacks) {
            (Some(name), _) => format!("extension `{name}` of each file"),
            (None, true) => "image cubes (NAXIS3 = cutouts)".to_string(),
            (None, false) if band_sets.is_empty() => "one image per HDU".to_string(),
            (None, false) => "one image or band cube per HDU".to_string(),
        };
        if !band_sets.is_empty() {
            let sets: Vec<String> = band_sets.iter().take(3).map(|set| format!("({set})")).collect();
            let more = band_sets.len().saturating_sub(3);
            let more = if more > 0 { format!(" and {more} other sets") } else { String::new() };
            layout.push_str(&format!("; cubes of bands {}{more}: ", sets.join(", ")));
            layout.push_str(match &opts.band {
                Some(_) => "a row for the band asked for",
                None => "a row per band (`band`); --band picks one",
            });
        }
        companion_notes.sort();
        companion_notes.dedup();
        if !companion_notes.is_empty() {
            layout.push_str(&format!("; beside the flux: {}", companion_notes.join(", ")));
        }
        for note in table_notes {
            layout.push_str(&format!("; {note}"));
        }
        // What super-resolution can place on the sky (`sr_wcs`).
        let placed = plan.iter().filter(|p| p.wcs.is_some()).count();
        if placed > 0 {
            layout.push_str(&format!("; a celestial WCS on {placed} of {} cutouts", plan.len()));
        }
        // The units and zero points the headers state (a few named, the rest counted:
        // each file may say another).
        let mut units = std::collections::BTreeMap::<String, usize>::new();
        for flux in plan.iter().map(|p| &p.flux).filter(|flux| flux.is_stated()) {
            *units.entry(flux.described("BUNIT")).or_default() += 1;
        }
        for (unit, cutouts) in units.iter().take(3) {
            layout.push_str(&format!("; flux in {unit} on {cutouts} of {} cutouts", plan.len()));
        }
        if units.len() > 3 {
            layout.push_str(&format!("; {} other units or zero points", units.len() - 3));
        }
        let noise = plan.iter().any(|p| p.companions.noise.is_some());
        let pixel_scale = plan.iter().find(|p| p.problem.is_none()).and_then(|p| p.pixel_scale).map(|scale| {
            let first = plan.iter().find(|p| p.problem.is_none()).expect("found above");
            RecordedScale {
                arcsec_per_pixel: Some(scale),
                source: format!("the WCS of {}[{}]", files[first.file].display(), first.hdu),
            }
        });
        Ok(FitsCutouts {
            files: files.to_vec(),
            desc: InputDescription {
                format: "fits".into(),
                files: files.to_vec(),
                rows: plan.len(),
                image_shape,
                pixel_scale,
                layout,
                carried_columns: carried,
                natural_chunks: vec![],
                hats_properties: None,
            },
            plan,
            next: 0,
            noise,
            kept,
        })
    }

    /// The pixels of planes `first..first + count` of one HDU, BLANK as NaN.
    fn read_planes(f: &mut FitsFile, p: &Plane, count: usize) -> std::result::Result<Vec<f32>, String> {
        let n = p.shape[0] * p.shape[1];
        read_pixels(f, p.hdu, p.plane * n..(p.plane + count) * n)
    }
}

/// Whether each pixel of `range` (flattened) of the flags HDU `hdu` is masked: an
/// integer flag with any of `bits` set (any non-zero flag without `bits`), a
/// floating-point flag that is not 0. Integers are read as such: a mask's high bits
/// do not survive a trip through f32.
fn read_flags(
    f: &mut FitsFile,
    hdu: usize,
    range: std::ops::Range<usize>,
    bits: Option<u64>,
) -> std::result::Result<Vec<bool>, String> {
    let hdu = f.hdu(hdu).map_err(|e| e.to_string())?;
    if hdu.read_key::<i64>(f, "BITPIX").is_ok_and(|b| b > 0) {
        let flags: Vec<i64> = hdu.read_section(f, range.start, range.end).map_err(|e| fits_message(&e))?;
        let masks = |flag: i64| bits.map_or(flag != 0, |bits| flag as u64 & bits != 0);
        return Ok(flags.into_iter().map(masks).collect());
    }
    let flags: Vec<f32> = hdu.read_section(f, range.start, range.end).map_err(|e| fits_message(&e))?;
    Ok(flags.into_iter().map(|flag| flag != 0.0).collect())
}

/// Pixels `range` (flattened) of image HDU `hdu`, scaled by BSCALE/BZERO, BLANK as NaN.
fn read_pixels(f: &mut FitsFile, hdu: usize, range: std::ops::Range<usize>) -> std::result::Result<Vec<f32>, String> {
    let hdu = f.hdu(hdu).map_err(|e| e.to_string())?;
    let mut pixels: Vec<f32> = hdu.read_section(f, range.start, range.end).map_err(|e| fits_message(&e))?;
    // BITPIX itself: the image type cfitsio reports is the scaled one (float
    // for a fractional BSCALE), while BLANK applies to the stored integers.
    let integer = hdu.read_key::<i64>(f, "BITPIX").is_ok_and(|b| b > 0);
    if integer {
        if let Ok(blank) = hdu.read_key::<i64>(f, "BLANK") {
            let scale: f64 = hdu.read_key(f, "BSCALE").unwrap_or(1.0);
            let zero: f64 = hdu.read_key(f, "BZERO").unwrap_or(0.0);
            let blank = (blank as f64 * scale + zero) as f32;
            pixels.iter_mut().filter(|v| **v == blank).for_each(|v| *v = f32::NAN);
        }
    }
    Ok(pixels)
}

/// The first 2-D image of a FITS file held in memory (an alert stamp; gzipped or
/// not): its `[height, width]` and pixels. cfitsio reads files, so the bytes go
/// through a temporary file.
pub fn decode_fits_bytes(bytes: &[u8]) -> std::result::Result<DecodedStamp, String> {
    let gzipped = bytes.starts_with(&[0x1f, 0x8b]);
    let file = tempfile::Builder::new()
        .suffix(if gzipped { ".fits.gz" } else { ".fits" })
        .tempfile()
        .map_err(|e| format!("temporary file: {e}"))?;
    std::fs::write(file.path(), bytes).map_err(|e| format!("temporary file: {e}"))?;
    read_fits_image(file.path(), "cutout", 8192)
}

/// The first 2-D image of the FITS file at `path` (gzipped or not), refused before
/// its pixels are read when it holds more pixels than a `max_side` x `max_side`
/// `what` (a small image such as a PSF model is not read whole because a wrong path
/// names a large file).
pub fn read_fits_image(path: &Path, what: &str, max_side: usize) -> std::result::Result<DecodedStamp, String> {
    let mut f = open_fits(path).map_err(|e| format!("not a FITS image: {e}"))?;
    let ImageHdu { index: hdu, dims, pixel_bytes, available, pixel_scale, wcs, flux_unit, photometry, .. } =
        image_hdus(&mut f, path, &InputOptions::default(), &[])?.0.remove(0);
    let flux = StatedFlux::from_header(flux_unit, &photometry, pixel_scale);
    let shape = match dims.as_slice() {
        [h, w] | [1, h, w] => [*h, *w],
        other => return Err(format!("a {other:?} image, not a single cutout")),
    };
    let pixels = shape[0].checked_mul(shape[1]).filter(|&n| n <= max_side * max_side).ok_or_else(|| {
        format!("a {}x{} image is larger than any {what} (at most {max_side}x{max_side})", shape[0], shape[1])
    })?;
    // A gzipped image's size is only known once inflated: the pixel limit bounds it.
    if available.is_some_and(|bytes| bytes < (pixels * pixel_bytes) as u64) {
        return Err(format!("truncated: a {}x{} image needs more bytes than the stamp holds", shape[0], shape[1]));
    }
    Ok(DecodedStamp { shape, pixels: read_pixels(&mut f, hdu, 0..pixels)?, pixel_scale, wcs, flux })
}

/// An alert stamp's image.
#[derive(Debug, Clone)]
pub struct DecodedStamp {
    /// `[height, width]`.
    pub shape: [usize; 2],
    /// Pixels, row-major, BLANK as NaN.
    pub pixels: Vec<f32>,
    /// Arcsec per pixel, from its WCS.
    pub pixel_scale: Option<f64>,
    /// Its celestial WCS.
    pub wcs: Option<CelestialWcs>,
    /// Its `BUNIT` and photometric keywords.
    pub flux: StatedFlux,
}

impl CutoutReader for FitsCutouts {
    fn describe(&self) -> &InputDescription {
        &self.desc
    }

    fn carried_fields(&self) -> Vec<Field> {
        self.desc
            .carried_columns
            .iter()
            .map(|name| match name.as_str() {
                "source" => Field::new("source", DataType::Utf8, false),
                "id" => Field::new("id", DataType::Int64, true),
                _ if !IDENTITY_COLUMNS.contains(&name.as_str()) => {
                    let data_type = self.kept.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
                    Field::new(name, data_type.expect("a kept column has its type"), true).with_metadata(
                        std::collections::HashMap::from([(
                            DESCRIPTION_KEY.to_string(),
                            "from each cutout's PARAMS table row, image header or primary header".to_string(),
                        )]),
                    )
                }
                "ra" | "dec" => {
                    let what = if name == "ra" { "right ascension" } else { "declination" };
                    Field::new(name, DataType::Float64, true).with_metadata(std::collections::HashMap::from([
                        (UNIT_KEY.to_string(), "deg".to_string()),
                        (
                            DESCRIPTION_KEY.to_string(),
                            format!("{what} of the object (header keywords) or the cutout centre (WCS)"),
                        ),
                    ]))
                }
                "band" => Field::new(name, DataType::Utf8, true).with_metadata(std::collections::HashMap::from([(
                    DESCRIPTION_KEY.to_string(),
                    "the cutout's band: its plane's BANDn (or BANDS letter) in a band cube, else the header's FILTER \
                     or BAND"
                        .to_string(),
                )])),
                _ => Field::new(name, DataType::Utf8, true),
            })
            .collect()
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<CutoutBatch>> {
        let [h, w] = self.desc.image_shape;
        let n = h * w;
        // Large cutouts come in fewer rows, so a batch of them (or of the planes a
        // hostile header declares) cannot outgrow memory.
        if self.next >= self.plan.len() {
            return Ok(None);
        }
        // Rows the header declares and the file lacks have no pixels to hold: a run
        // of them is one batch of the rows asked for, with none (zero-filling the
        // 60,000 planes of 4096x4096 a 5.7 KB file declared took a minute).
        let missing = self.plan[self.next..].iter().take(max_rows.max(1)).take_while(|p| p.problem.is_some()).count();
        let max_rows = rows_in_batch(max_rows, [h, w]);
        let end = match missing {
            0 => (self.next + max_rows).min(self.plan.len()),
            _ => self.next + missing,
        };
        let rows = end - self.next;
        let mut pixels = match missing {
            0 => vec![0f32; rows * n],
            _ => Vec::new(),
        };
        let mut problems = vec![None; rows];
        let mut sources = Vec::with_capacity(rows);
        let pixel_scales = self.plan[self.next..end].iter().map(|p| p.pixel_scale).collect();
        let wcs = self.plan[self.next..end].iter().map(|p| p.wcs.clone()).collect();
        let flux = self.plan[self.next..end].iter().map(|p| p.flux.clone()).collect();
        let mut open: Option<(usize, FitsFile)> = None;
        let mut i = self.next;
        while i < end {
            let p = self.plan[i].clone();
            let path = &self.files[p.file];
            // Planes of the same HDU in this batch are read in one call.
            let mut count = 1;
            // (A plane planned as missing is a row of its own.)
            while i + count < end
                && p.problem.is_none()
                && self.plan[i + count].problem.is_none()
                && self.plan[i + count].file == p.file
                && self.plan[i + count].hdu == p.hdu
            {
                count += 1;
            }
            for k in 0..count {
                sources.push(match p.planes {
                    1 => format!("{}[{}]", path.display(), p.hdu),
                    _ => format!("{}[{}][{}]", path.display(), p.hdu, p.plane + k),
                });
            }
            let row = i - self.next;
            let result = if let Some(problem) = &p.problem {
                Err(problem.clone())
            } else if p.shape != [h, w] {
                Err(format!("image is {}x{}, expected {h}x{w}", p.shape[0], p.shape[1]))
            } else {
                if open.as_ref().is_none_or(|(file, _)| *file != p.file) {
                    let f = open_fits(path).map_err(|e| fits_error(path, e))?;
                    open = Some((p.file, f));
                }
                Self::read_planes(&mut open.as_mut().expect("opened").1, &p, count)
            };
            match result {
                Ok(values) => pixels[row * n..(row + count) * n].copy_from_slice(&values),
                // A group that fails may hold readable planes: each on its own.
                Err(_) if count > 1 && p.problem.is_none() && p.shape == [h, w] => {
                    let f = &mut open.as_mut().expect("opened").1;
                    for k in 0..count {
                        let one = Plane { plane: p.plane + k, ..p.clone() };
                        match Self::read_planes(f, &one, 1) {
                            Ok(values) => pixels[(row + k) * n..(row + k + 1) * n].copy_from_slice(&values),
                            Err(problem) => problems[row + k] = Some(problem),
                        }
                    }
                }
                Err(problem) => problems[row..row + count].iter_mut().for_each(|q| *q = Some(problem.clone())),
            }
            i += count;
        }
        // Noise maps and flags beside the flux, row by row.
        let mut noise = (self.noise && missing == 0).then(|| vec![f32::NAN; rows * n]);
        for r in 0..rows {
            let p = &self.plan[self.next + r];
            if problems[r].is_some() || p.companions == Companions::default() {
                continue;
            }
            if open.as_ref().is_none_or(|(file, _)| *file != p.file) {
                let path = &self.files[p.file];
                open = Some((p.file, open_fits(path).map_err(|e| fits_error(path, e))?));
            }
            let f = &mut open.as_mut().expect("opened").1;
            let mut unused = Vec::new();
            let sigma = match noise.as_mut() {
                Some(sigma) => &mut sigma[r * n..(r + 1) * n],
                None => &mut unused[..],
            };
            if let Err(problem) = read_companions(f, p, &mut pixels[r * n..(r + 1) * n], sigma) {
                problems[r] = Some(problem);
            }
        }
        self.next = end;
        let planned = &self.plan[end - rows..end];
        let carried = self
            .carried_fields()
            .into_iter()
            .map(|field| {
                let column: ArrayRef = match field.name().as_str() {
                    "source" => Arc::new(StringArray::from(sources.clone())),
                    "id" => Arc::new(arrow_array::Int64Array::from_iter(planned.iter().map(|p| p.identity.id))),
                    "ra" => Arc::new(arrow_array::Float64Array::from_iter(planned.iter().map(|p| p.identity.ra))),
                    "dec" => Arc::new(arrow_array::Float64Array::from_iter(planned.iter().map(|p| p.identity.dec))),
                    "object_id" => {
                        Arc::new(StringArray::from_iter(planned.iter().map(|p| p.identity.object_id.clone())))
                    }
                    "band" => Arc::new(StringArray::from_iter(planned.iter().map(|p| p.identity.band.clone()))),
                    name => {
                        let k = self.kept.iter().position(|(n, _)| n == name).expect("a kept column");
                        column_array(field.data_type(), planned.iter().map(|p| p.kept[k].as_ref()))
                    }
                };
                (field, column)
            })
            .collect();
        Ok(Some(CutoutBatch { pixels, problems, carried, pixel_scales, wcs, flux, noise }))
    }

    fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.next = (self.next + n).min(self.plan.len());
        Ok(())
    }
}
