//! Cutouts brought to a model's pixel grid: its pixel scale (flux-conserving
//! resampling, [`crate::data::regrid`]) and its size (a centred crop or pad).
//!
//! The input's pixel scale comes from what it records (FITS WCS, a table's
//! column or metadata) unless the caller gives one ([`PixelScale`]). Every row's
//! output says the scale used and what was done to its cutout; a cutout whose
//! scale is far from the model's is flagged `out_of_domain` even after
//! resampling (its PSF and noise in pixels are not what the model learnt).

use crate::data::cutouts::CutoutBatch;
use crate::data::regrid::Regrid;
use crate::{Error, Result};
use std::collections::HashMap;

/// Where the cutouts' pixel scale comes from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum PixelScale {
    /// What the input records: a FITS WCS (CD, CDELT, PIXSCALE), a table's
    /// `--pixel-scale-col` column or `lensmae:pixel_scale` metadata.
    #[default]
    Recorded,
    /// Arcsec per pixel, given for every cutout.
    Arcsec(f64),
    /// The model's own: cutouts of another size are cropped or padded, never resampled.
    Model,
}

impl std::str::FromStr for PixelScale {
    type Err = Error;
    fn from_str(s: &str) -> Result<PixelScale> {
        match s.trim() {
            "model" => Ok(PixelScale::Model),
            "recorded" => Ok(PixelScale::Recorded),
            number => match number.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(PixelScale::Arcsec(v)),
                _ => Err(Error::config(
                    "--pixel-scale",
                    format!("`{s}` is not a pixel scale: give arcsec per pixel (e.g. 0.1), `model` or `recorded`"),
                )),
            },
        }
    }
}

impl std::fmt::Display for PixelScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PixelScale::Recorded => f.write_str("recorded"),
            PixelScale::Arcsec(v) => write!(f, "{v}"),
            PixelScale::Model => f.write_str("model"),
        }
    }
}

/// The `geometry` of a cutout the model took as it was.
pub const AS_IS: &str = "as is";

/// How the `geometry` note of a cutout whose pixel scale is too far from the
/// model's begins.
pub const FAR_SCALE: &str = "pixel scale";

/// A cutout whose pixel scale differs from the model's by more than this factor
/// (either way) is out of the model's domain.
pub const MAX_SCALE_FACTOR: f64 = 1.5;

/// Scales within this relative difference are the same (no resampling blur for
/// a WCS rounded in its last digits).
const SAME_SCALE: f64 = 1e-4;

/// What was done to one row's cutout.
#[derive(Debug, Clone, PartialEq)]
pub struct RowGeometry {
    /// The input's pixel scale used, arcsec per pixel.
    pub pixel_scale: Option<f64>,
    /// Resampled, cropped or padded, and from what; `None` when used as it is
    /// (the output says `as is`).
    pub note: Option<String>,
    /// The scale is too far from the model's (see [`MAX_SCALE_FACTOR`]).
    pub out_of_domain: bool,
    /// The model's pixel over the input's, as resampled (1: not resampled).
    pub scale_ratio: f64,
    /// Why the cutout cannot be brought to the model's grid.
    pub problem: Option<String>,
}

impl Default for RowGeometry {
    /// Used as it is.
    fn default() -> Self {
        RowGeometry { pixel_scale: None, note: None, out_of_domain: false, scale_ratio: 1.0, problem: None }
    }
}

/// Brings every cutout of an input to a model's grid.
#[derive(Debug)]
pub struct Geometry {
    input: [usize; 2],
    size: usize,
    model_scale: Option<f64>,
    policy: PixelScale,
}

impl Geometry {
    /// For cutouts of `input` shape and a model taking `size x size` pixels at
    /// `model_scale` (when its checkpoint records one). Refuses what cannot work
    /// for any row: another size at an unknown scale, a scale for a model that
    /// records none. `recorded` says whether the input records its cutouts' scale
    /// (a WCS, a column, metadata).
    pub fn new(
        input: [usize; 2],
        size: usize,
        model_scale: Option<f64>,
        policy: PixelScale,
        recorded: bool,
        model_name: &str,
    ) -> std::result::Result<Geometry, String> {
        let [h, w] = input;
        let same_size = input == [size, size];
        match (policy, model_scale) {
            (PixelScale::Arcsec(_), None) => {
                return Err(format!(
                    "{model_name} records no pixel scale, so cutouts cannot be resampled to it; \
                     `--pixel-scale model` crops or pads them at their own scale"
                ))
            }
            (PixelScale::Recorded, _) if !same_size && !recorded => {
                let at = model_scale.map(|s| format!(" at {s} arcsec/px")).unwrap_or_default();
                return Err(format!(
                    "cutouts are {h}x{w}, {model_name} takes {size}x{size}{at}, and the input records no pixel \
                     scale (no WCS or pixel-scale column): give `--pixel-scale ARCSEC` to resample them, or \
                     `--pixel-scale model` to crop or pad them as they are"
                ));
            }
            _ => {}
        }
        Ok(Geometry { input, size, model_scale, policy })
    }

    /// The side of the images the model takes (every row's after [`Geometry::apply`]).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Regrids every cutout of `batch` in place (its pixels become `size x size`
    /// each) and says what was done to each.
    pub fn apply(&self, batch: &mut CutoutBatch) -> Vec<RowGeometry> {
        let n = batch.len();
        let [h, w] = self.input;
        let same_size = self.input == [self.size, self.size];
        // Each row's scale and the ratio of the model's pixels to its pixels.
        let mut rows = Vec::with_capacity(n);
        let mut ratios = Vec::with_capacity(n);
        for r in 0..n {
            let scale = match self.policy {
                PixelScale::Recorded => batch.pixel_scales.get(r).copied().flatten(),
                PixelScale::Arcsec(v) => Some(v),
                PixelScale::Model => self.model_scale,
            };
            let mut row = RowGeometry { pixel_scale: scale, ..Default::default() };
            ratios.push(match (scale, self.model_scale) {
                (Some(s), Some(m)) if ((m / s) - 1.0).abs() > SAME_SCALE => m / s,
                (None, _) if !same_size && self.policy != PixelScale::Model => {
                    row.problem = Some(format!(
                        "{h}x{w} cutout with no recorded pixel scale (give --pixel-scale ARCSEC or model)"
                    ));
                    1.0
                }
                _ => 1.0,
            });
            if let (Some(s), Some(m)) = (scale, self.model_scale) {
                row.out_of_domain = !(1.0 / MAX_SCALE_FACTOR..=MAX_SCALE_FACTOR).contains(&(s / m));
            }
            row.scale_ratio = *ratios.last().expect("pushed above");
            rows.push(row);
        }
        // Cutouts already on the model's grid (the usual case) are not copied.
        if !(same_size && ratios.iter().all(|&r| r == 1.0)) {
            let out_len = self.size * self.size;
            let mut pixels = vec![0f32; n * out_len];
            let mut noise = batch.noise.as_ref().map(|_| vec![f32::NAN; n * out_len]);
            // One regridding per distinct scale in the batch (usually one in all).
            let mut regrids: HashMap<u64, Regrid> = HashMap::new();
            for (r, row) in rows.iter_mut().enumerate() {
                if batch.problems[r].is_some() || row.problem.is_some() {
                    continue;
                }
                let (src, dst) = (r * h * w..(r + 1) * h * w, r * out_len..(r + 1) * out_len);
                let ratio = ratios[r];
                let regrid =
                    regrids.entry(ratio.to_bits()).or_insert_with(|| Regrid::centred(self.input, self.size, ratio));
                regrid.apply(&batch.pixels[src.clone()], &mut pixels[dst.clone()]);
                if let Some(wcs) = batch.wcs.get_mut(r).and_then(Option::as_mut) {
                    let (origin, ratio) = regrid.placement();
                    *wcs = wcs.regridded(origin, ratio);
                }
                if let (Some(sigma), Some(out)) = (&batch.noise, noise.as_mut()) {
                    regrid.apply_to_sigma(&sigma[src], &mut out[dst]);
                }
                row.note = describe(self.input, self.size, ratio, row.pixel_scale, self.model_scale, regrid.coverage());
            }
            batch.pixels = pixels;
            if noise.is_some() {
                batch.noise = noise;
            }
        }
        for row in rows.iter_mut().filter(|row| row.out_of_domain) {
            let (s, m) = (row.pixel_scale.unwrap_or(f64::NAN), self.model_scale.unwrap_or(f64::NAN));
            let flag = format!(
                "{FAR_SCALE} {} arcsec/px is {:.2}x the model's {}: out of its domain",
                short(s),
                s / m,
                short(m)
            );
            row.note = Some(match row.note.take() {
                Some(note) => format!("{note}; {flag}"),
                None => flag,
            });
        }
        rows
    }
}

/// What a regridding did, for the output's `geometry` column.
fn describe(
    input: [usize; 2],
    size: usize,
    ratio: f64,
    scale: Option<f64>,
    model_scale: Option<f64>,
    coverage: f64,
) -> Option<String> {
    let [h, w] = input;
    let mut parts = Vec::new();
    if ratio != 1.0 {
        let (s, m) = (scale.unwrap_or(f64::NAN), model_scale.unwrap_or(f64::NAN));
        parts.push(format!("resampled {h}x{w} at {} to {} arcsec/px", short(s), short(m)));
    }
    // The input's extent in output pixels, per axis.
    let (extent_h, extent_w) = (h as f64 / ratio, w as f64 / ratio);
    let size_f = size as f64;
    if extent_h > size_f + 1e-9 || extent_w > size_f + 1e-9 {
        parts.push(format!("cropped to {size}x{size}"));
    }
    if coverage < 1.0 - 1e-9 {
        parts.push(format!("padded to {size}x{size} with zeros ({:.1}% of it is the cutout)", 100.0 * coverage));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A pixel scale in at most six decimals (a WCS in degrees gives 0.05050000000000008).
fn short(arcsec: f64) -> String {
    let text = format!("{arcsec:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pixels: Vec<f32>, scales: Vec<Option<f64>>) -> CutoutBatch {
        let n = scales.len();
        CutoutBatch {
            pixels,
            problems: vec![None; n],
            carried: vec![],
            pixel_scales: scales,
            wcs: vec![None; n],
            flux: vec![Default::default(); n],
            noise: None,
        }
    }

    #[test]
    fn pixel_scales_parse_and_refuse_nonsense() {
        assert_eq!("0.1".parse::<PixelScale>().unwrap(), PixelScale::Arcsec(0.1));
        assert_eq!("model".parse::<PixelScale>().unwrap(), PixelScale::Model);
        for bad in ["0", "-1", "nan", "fast"] {
            assert!(bad.parse::<PixelScale>().unwrap_err().to_string().contains("not a pixel scale"), "{bad}");
        }
    }

    #[test]
    fn another_size_at_an_unknown_scale_is_refused_before_any_row() {
        let e = Geometry::new([101, 101], 64, Some(0.101), PixelScale::Recorded, false, "bundled:classifier");
        let e = e.unwrap_err();
        assert!(
            e.contains("101x101") && e.contains("--pixel-scale ARCSEC") && e.contains("--pixel-scale model"),
            "{e}"
        );
        assert!(Geometry::new([64, 64], 64, None, PixelScale::Arcsec(0.1), false, "m").is_err());
    }

    #[test]
    fn each_row_says_what_was_done_and_far_scales_are_flagged() {
        let g = Geometry::new([8, 8], 4, Some(0.1), PixelScale::Recorded, true, "m").unwrap();
        let mut b = batch(vec![1.0; 3 * 64], vec![Some(0.05), Some(0.1), Some(0.101)]);
        let rows = g.apply(&mut b);
        assert_eq!(b.pixels.len(), 3 * 16);
        // 2x finer: each output pixel sums 4 input pixels.
        assert!(b.pixels[..16].iter().all(|&v| (v - 4.0).abs() < 1e-6));
        assert!(rows[0].out_of_domain, "{rows:?}");
        assert!(rows[0].note.as_deref().unwrap().contains("resampled 8x8 at 0.05 to 0.1 arcsec/px"));
        // The model's scale: a crop only.
        assert!(!rows[1].out_of_domain);
        assert_eq!(rows[1].note.as_deref(), Some("cropped to 4x4"));
        assert!(b.pixels[16..32].iter().all(|&v| v == 1.0));
        // Within 1e-4 of it (a rounded WCS): the same.
        assert!(rows[2].note.as_deref().unwrap().starts_with("resampled"), "1% off is resampled: {rows:?}");
    }

    #[test]
    fn cutouts_of_the_model_size_at_an_unknown_scale_pass_as_they_are() {
        let g = Geometry::new([4, 4], 4, Some(0.1), PixelScale::Recorded, false, "m").unwrap();
        let mut b = batch((0..16).map(|v| v as f32).collect(), vec![None]);
        let rows = g.apply(&mut b);
        assert_eq!(rows[0], RowGeometry::default());
        assert_eq!(b.pixels, (0..16).map(|v| v as f32).collect::<Vec<_>>());
    }
}
