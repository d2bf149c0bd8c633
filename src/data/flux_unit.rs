//! What a cutout's stated flux unit (a FITS `BUNIT`, an Arrow field's `unit`) and
//! its header's photometric keywords say of its AB zero point: a source of AB
//! magnitude m gives 10^(-0.4 (m - zp)) units.
//!
//! Survey cutouts come in flux densities per pixel (Euclid MER in microjanskys,
//! Rubin in nanojanskys, the Legacy Surveys and SDSS in nanomaggies), whose zero
//! points the unit fixes by definition. Space telescopes state the conversion in
//! keywords instead: HST images are in electrons per second with `PHOTFLAM` and
//! `PHOTPLAM`, JWST's in MJy/sr with the pixel's solid angle `PIXAR_SR`; Rubin and
//! HSC images carry `FLUXMAG0`, ground surveys a `MAGZERO`-like keyword. A unit of
//! an instrument (electrons or counts per second, ADU) with none of these says
//! nothing: those need the zero point given.

/// The AB zero point of 1 Jy: AB magnitude 0 is 3631 Jy (m_AB = -2.5 log10 f_nu -
/// 48.60 in cgs), so 1 Jy is magnitude 2.5 log10(3631) = 8.90.
const JANSKY: f64 = 8.9;

/// A unit as written, without its spaces and quotes (FITS strings keep both).
fn compact(unit: &str) -> String {
    unit.chars().filter(|c| !c.is_whitespace() && !matches!(c, '\'' | '"')).collect()
}

/// The AB zero point of a flux-density unit per pixel: `Jy` 8.9, `mJy` 16.4, `uJy`
/// (also `µJy`, `μJy`, `microJy`) 23.9, `nJy` 31.4, `nanomaggy` 22.5, `maggy` 0;
/// optionally per pixel (`uJy/pix`, `nJy / pixel`). None for any other unit,
/// and for `MJY` / `mjy`, whose case no longer tells milli from mega.
pub fn ab_zero_point(unit: &str) -> Option<f64> {
    let unit = compact(unit);
    let per_pixel = ["/pixel", "/pix", "pixel-1", "pix-1"];
    let unit = per_pixel.iter().find_map(|suffix| strip_suffix_ignoring_case(&unit, suffix)).unwrap_or(&unit);
    let exact = match unit {
        "mJy" => Some(JANSKY + 7.5),
        "MJy" => Some(JANSKY - 15.0),
        "µJy" | "μJy" => Some(JANSKY + 15.0),
        _ => None,
    };
    exact.or_else(|| match unit.to_ascii_lowercase().as_str() {
        "jy" | "jansky" | "janskys" => Some(JANSKY),
        "millijy" | "millijansky" => Some(JANSKY + 7.5),
        "ujy" | "microjy" | "microjansky" | "mujy" => Some(JANSKY + 15.0),
        "njy" | "nanojy" | "nanojansky" => Some(JANSKY + 22.5),
        "nanomaggy" | "nanomaggies" | "nmgy" => Some(22.5),
        "maggy" | "maggies" => Some(0.0),
        _ => None,
    })
}

/// The keywords of an image's header (its own, else the primary's) that fix its AB
/// zero point where its unit alone does not. Values that are not positive finite
/// numbers are left out when read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhotometricKeywords {
    /// HST's inverse sensitivity, erg cm^-2 s^-1 Å^-1 per electron (or count) per second.
    pub photflam: Option<f64>,
    /// HST's pivot wavelength of the filter, Å.
    pub photplam: Option<f64>,
    /// JWST's solid angle of one pixel, sr.
    pub pixar_sr: Option<f64>,
    /// Rubin's and HSC's flux of a source of magnitude 0, in the image's units.
    pub fluxmag0: Option<f64>,
    /// An AB zero point stated outright, with its keyword (`MAGZERO`, `MAGZP`, `PHOTZP`).
    pub magzero: Option<(&'static str, f64)>,
    /// The exposure time, s (`EXPTIME`): an image in electrons or counts, not per
    /// second, takes PHOTFLAM's zero point 2.5 log10(EXPTIME) higher.
    pub exptime: Option<f64>,
}

impl PhotometricKeywords {
    /// Each keyword from `self`, else from `fallback` (an image's header, else the primary's).
    pub fn or(self, fallback: PhotometricKeywords) -> PhotometricKeywords {
        PhotometricKeywords {
            photflam: self.photflam.or(fallback.photflam),
            photplam: self.photplam.or(fallback.photplam),
            pixar_sr: self.pixar_sr.or(fallback.pixar_sr),
            fluxmag0: self.fluxmag0.or(fallback.fluxmag0),
            magzero: self.magzero.or(fallback.magzero),
            exptime: self.exptime.or(fallback.exptime),
        }
    }
}

/// The keywords that state an AB zero point outright, in the order they are tried.
pub const ZERO_POINT_KEYWORDS: [&str; 3] = ["MAGZERO", "MAGZP", "PHOTZP"];

/// Zero points outside this range (AB magnitudes) are not believed: the flux units in
/// use lie between MJy (-6.1) and electrons per second of the largest telescopes
/// (~35); a header's nonsense must not scale the pixels by 10^40.
const PLAUSIBLE_ZERO_POINTS: std::ops::RangeInclusive<f64> = -20.0..=60.0;

/// The AB zero point of a cutout's pixel values and what fixed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatedZeroPoint {
    /// AB magnitude of a source of one unit of flux.
    pub ab: f64,
    /// What fixed it: `unit` (a flux density, [`ab_zero_point`]), else the header's
    /// keywords (`PHOTFLAM, PHOTPLAM`, `MJy/sr, PIXAR_SR`, `FLUXMAG0`, `MAGZERO`...).
    pub from: String,
}

/// What an input states of a cutout's flux: its unit, and the AB zero point the unit
/// or the header's photometric keywords fix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatedFlux {
    /// The unit of its pixel values (a FITS `BUNIT`, an Arrow field's `unit`).
    pub unit: Option<String>,
    /// Its AB zero point, where something stated fixes one.
    pub zero_point: Option<StatedZeroPoint>,
}

/// How a unit relates to time, for HST's PHOTFLAM (defined per electron per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitKind {
    /// Electrons, counts or DN per second.
    Rate,
    /// Electrons, counts, DN or ADU accumulated over the exposure.
    Counts,
    /// MJy/sr: a surface brightness.
    MegajanskyPerSteradian,
    /// Anything else.
    Other,
}

fn unit_kind(unit: &str) -> UnitKind {
    let unit = compact(unit).to_ascii_lowercase();
    let per_second = ["/s", "/sec", "/second", "s-1", "s**-1", "s^-1"];
    let per_steradian = ["mjy/sr", "mjysr-1", "mjy/steradian", "mjysr**-1", "mjysr^-1"];
    let counted = ["electron", "electrons", "e-", "e", "count", "counts", "dn", "adu", "photon", "photons"];
    if per_steradian.contains(&unit.as_str()) {
        // Case no longer tells milli from mega, but no survey states surface brightness in mJy/sr.
        return UnitKind::MegajanskyPerSteradian;
    }
    match per_second.iter().find_map(|suffix| unit.strip_suffix(suffix)) {
        Some(counts) if counted.contains(&counts) => UnitKind::Rate,
        Some(_) => UnitKind::Other,
        None if counted.contains(&unit.as_str()) => UnitKind::Counts,
        None => UnitKind::Other,
    }
}

impl StatedFlux {
    /// What a unit alone states (a table column's `unit`).
    pub fn of_unit(unit: Option<String>) -> StatedFlux {
        let zero_point = unit.as_deref().and_then(ab_zero_point).map(|ab| StatedZeroPoint { ab, from: "unit".into() });
        StatedFlux { unit, zero_point }
    }

    /// What a FITS image states: its `BUNIT`, else its header's keywords, tried in this
    /// order: a flux density per pixel ([`ab_zero_point`]); MJy/sr with `PIXAR_SR`, else
    /// with the pixel area of its WCS (`arcsec_per_pixel`); `PHOTFLAM` and `PHOTPLAM`
    /// for pixels in electrons or counts per second, or no `BUNIT` (HST's definition),
    /// and for electrons or counts with `EXPTIME`; `FLUXMAG0`; a zero point stated
    /// outright ([`ZERO_POINT_KEYWORDS`], taken as AB).
    pub fn from_header(
        unit: Option<String>,
        keywords: &PhotometricKeywords,
        arcsec_per_pixel: Option<f64>,
    ) -> StatedFlux {
        let by_unit = StatedFlux::of_unit(unit);
        if by_unit.zero_point.is_some() {
            return by_unit;
        }
        let kind = by_unit.unit.as_deref().map(unit_kind);
        // AB: 3631 Jy at magnitude 0; a pixel of v MJy/sr holds v 1e6 Omega Jy.
        const ARCSEC_IN_RADIANS: f64 = std::f64::consts::PI / (180.0 * 3600.0);
        let by_keywords: Option<(f64, String)> = match kind {
            Some(UnitKind::MegajanskyPerSteradian) => {
                let area = match (keywords.pixar_sr, arcsec_per_pixel) {
                    (Some(sr), _) => Some((sr, "PIXAR_SR")),
                    (None, Some(scale)) => Some(((scale * ARCSEC_IN_RADIANS).powi(2), "the WCS pixel area")),
                    (None, None) => None,
                };
                area.map(|(sr, from)| (JANSKY - 2.5 * (1e6 * sr).log10(), format!("MJy/sr, {from}")))
            }
            Some(UnitKind::Other) => None,
            Some(UnitKind::Rate | UnitKind::Counts) | None => {
                let hst = match (keywords.photflam, keywords.photplam) {
                    // f_nu = PHOTFLAM PHOTPLAM^2 / c per electron per second, and m_AB =
                    // -2.5 log10 f_nu - 48.60 (cgs): STScI's ABMAG_ZPT, whose -2.408 is
                    // this constant rounded.
                    (Some(flam), Some(plam)) => {
                        const SPEED_OF_LIGHT_ANGSTROM_PER_S: f64 = 2.99792458e18;
                        let constant = 2.5 * SPEED_OF_LIGHT_ANGSTROM_PER_S.log10() - 48.60;
                        let per_second = -2.5 * flam.log10() - 5.0 * plam.log10() + constant;
                        match (kind, keywords.exptime) {
                            (Some(UnitKind::Counts), Some(t)) => {
                                Some((per_second + 2.5 * t.log10(), "PHOTFLAM, PHOTPLAM, EXPTIME".to_string()))
                            }
                            (Some(UnitKind::Counts), None) => None,
                            _ => Some((per_second, "PHOTFLAM, PHOTPLAM".to_string())),
                        }
                    }
                    _ => None,
                };
                hst.or_else(|| keywords.fluxmag0.map(|f0| (2.5 * f0.log10(), "FLUXMAG0".to_string())))
                    .or_else(|| keywords.magzero.map(|(key, zp)| (zp, key.to_string())))
            }
        };
        let zero_point = by_keywords
            .filter(|(ab, _)| PLAUSIBLE_ZERO_POINTS.contains(ab))
            .map(|(ab, from)| StatedZeroPoint { ab, from });
        StatedFlux { zero_point, ..by_unit }
    }

    /// Its AB zero point, where one is stated.
    pub fn ab_zero_point(&self) -> Option<f64> {
        self.zero_point.as_ref().map(|z| z.ab)
    }

    /// Whether the input states anything of the flux.
    pub fn is_stated(&self) -> bool {
        self.unit.is_some() || self.zero_point.is_some()
    }

    /// As people are told of it, `unit_source` naming where the unit was read
    /// (`BUNIT`): "uJy, AB zero point 23.9 (BUNIT)", "ELECTRONS/S (BUNIT), AB zero
    /// point 26.108 from PHOTFLAM, PHOTPLAM".
    pub fn described(&self, unit_source: &str) -> String {
        let unit = self.unit.as_deref().map(|unit| format!("{} ({unit_source})", described(unit)));
        match (unit, &self.zero_point) {
            (Some(unit), Some(zp)) if zp.from != "unit" => {
                format!("{unit}, AB zero point {:.3} from {}", zp.ab, zp.from)
            }
            (Some(unit), _) => unit,
            (None, Some(zp)) => format!("AB zero point {:.3} from {}", zp.ab, zp.from),
            (None, None) => "no stated unit".to_string(),
        }
    }
}

/// A flux unit as people are told of it: with its AB zero point where the unit
/// fixes one.
pub fn described(unit: &str) -> String {
    match ab_zero_point(unit) {
        Some(zero_point) => format!("{unit}, AB zero point {zero_point:.1}"),
        None => unit.to_string(),
    }
}

fn strip_suffix_ignoring_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(cut) && text[cut..].eq_ignore_ascii_case(suffix)).then(|| &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::ab_zero_point;

    #[test]
    fn flux_densities_per_pixel_have_their_ab_zero_points() {
        for (unit, zero_point) in [
            ("Jy", 8.9),
            ("mJy", 16.4),
            ("uJy", 23.9),
            ("µJy", 23.9),
            ("μJy", 23.9),
            ("microJy", 23.9),
            ("UJY", 23.9),
            ("nJy", 31.4),
            ("NJY", 31.4),
            ("nanomaggy", 22.5),
            ("nanomaggies", 22.5),
            ("maggy", 0.0),
            ("MJy", -6.1),
            ("uJy/pix", 23.9),
            ("nJy / pixel", 31.4),
            ("  'uJy'  ", 23.9),
            ("nJy pix-1", 31.4),
            ("uJy/PIXEL", 23.9),
        ] {
            let got = ab_zero_point(unit);
            assert!(got.is_some_and(|z| (z - zero_point).abs() < 1e-12), "{unit}: {got:?}");
        }
        // 1 uJy at 23.9 is 3631 Jy at 0, the definition of AB magnitudes.
        assert!((10f64.powf(0.4 * ab_zero_point("uJy").unwrap()) * 1e-6 - 3631.0).abs() < 0.5);
    }

    #[test]
    fn header_keywords_fix_the_zero_points_of_space_telescopes_and_surveys() {
        use super::{PhotometricKeywords, StatedFlux};
        let zp = |unit: Option<&str>, keywords: PhotometricKeywords, scale: Option<f64>| {
            let stated = StatedFlux::from_header(unit.map(String::from), &keywords, scale);
            stated.zero_point.map(|z| (z.ab, z.from))
        };
        // A WFC3/UVIS F606W-like header. By the definitions: f_nu = PHOTFLAM lambda^2 / c
        // per electron per second, m_AB = -2.5 log10(f_nu) - 48.60 (cgs, c in A/s).
        let (flam, plam) = (1.1502e-19, 5889.2);
        let wfc3 = PhotometricKeywords { photflam: Some(flam), photplam: Some(plam), ..Default::default() };
        let (ab, from) = zp(Some("ELECTRONS/S"), wfc3, None).unwrap();
        let by_definition = -2.5 * (flam * plam * plam / 2.99792458e18f64).log10() - 48.60;
        assert!((ab - by_definition).abs() < 1e-9 && from == "PHOTFLAM, PHOTPLAM", "{ab} {by_definition} {from}");
        assert!((ab - 26.09).abs() < 0.01, "F606W's zero point is about 26.09: {ab}");
        assert_eq!(zp(None, wfc3, None).map(|z| z.0), Some(ab), "no BUNIT: PHOTFLAM's own definition, a rate");
        assert_eq!(zp(Some("counts/s"), wfc3, None).map(|z| z.0), Some(ab));
        // Electrons over 600 s: a source gives 600 times more, its zero point 2.5 log10(600) higher.
        let exposed = PhotometricKeywords { exptime: Some(600.0), ..wfc3 };
        let (counted, _) = zp(Some("ELECTRONS"), exposed, None).unwrap();
        assert!((counted - ab - 2.5 * 600f64.log10()).abs() < 1e-12);
        assert_eq!(zp(Some("ELECTRONS"), wfc3, None), None, "counts without an exposure time");
        // NIRCam short wavelength: PIXAR_SR 2.29e-14 sr (0.0312"), AB 8.9 - 2.5 log10(1e6 Omega) = 28.0.
        let nircam = PhotometricKeywords { pixar_sr: Some(2.29e-14), ..Default::default() };
        let (jwst, from) = zp(Some("MJy/sr"), nircam, Some(0.5)).unwrap();
        assert!((jwst - 28.000).abs() < 0.002 && from == "MJy/sr, PIXAR_SR", "{jwst} {from}");
        // Without PIXAR_SR, the WCS's pixel: (0.0312")^2 in steradians is 2.288e-14.
        let (from_wcs, from) = zp(Some("MJY/SR"), PhotometricKeywords::default(), Some(0.0312)).unwrap();
        assert!((from_wcs - 28.001).abs() < 0.002 && from == "MJy/sr, the WCS pixel area", "{from_wcs}");
        assert_eq!(zp(Some("MJy/sr"), PhotometricKeywords::default(), None), None, "no pixel area");
        // HSC and Rubin: FLUXMAG0 of 10^(0.4 x 27) is zero point 27.
        let hsc = PhotometricKeywords { fluxmag0: Some(10f64.powf(0.4 * 27.0)), ..Default::default() };
        assert!((zp(None, hsc, None).unwrap().0 - 27.0).abs() < 1e-9);
        let des = PhotometricKeywords { magzero: Some(("MAGZERO", 30.0)), ..Default::default() };
        assert_eq!(zp(Some("counts/s"), des, None), Some((30.0, "MAGZERO".to_string())));
        // The unit comes first; keywords do not make an unrelated unit a flux.
        let everything = PhotometricKeywords { magzero: Some(("MAGZP", 30.0)), ..hsc };
        assert_eq!(zp(Some("uJy"), everything, None), Some((23.9, "unit".to_string())));
        assert_eq!(zp(Some("arbitrary"), everything, None), None);
        assert_eq!(zp(Some("mag/arcsec2"), wfc3, None), None);
        // A header's nonsense is not believed.
        let absurd = PhotometricKeywords { photflam: Some(1e-300), photplam: Some(5000.0), ..Default::default() };
        assert_eq!(zp(Some("ELECTRONS/S"), absurd, None), None);
        let described = StatedFlux::from_header(Some("ELECTRONS/S".into()), &wfc3, None).described("BUNIT");
        assert_eq!(described, format!("ELECTRONS/S (BUNIT), AB zero point {ab:.3} from PHOTFLAM, PHOTPLAM"));
        assert_eq!(StatedFlux::of_unit(Some("uJy".into())).described("BUNIT"), "uJy, AB zero point 23.9 (BUNIT)");
    }

    #[test]
    fn units_of_an_instrument_or_a_solid_angle_say_no_zero_point() {
        for unit in ["electron/s", "e-/s", "ELECTRONS/S", "counts", "ADU", "DN/s", "MJy/sr", "MJY", "mjy", "", "mag"] {
            assert_eq!(ab_zero_point(unit), None, "{unit}");
        }
    }
}
