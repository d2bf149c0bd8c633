//! What a cutout's stated flux unit (a FITS `BUNIT`, an Arrow field's `unit`) says
//! of its photometric zero point. Survey cutouts come in flux densities per pixel
//! (Euclid MER in microjanskys, Rubin in nanojanskys, the Legacy Surveys and SDSS in
//! nanomaggies), whose AB zero points are fixed by definition: a source of AB
//! magnitude m gives 10^(-0.4 (m - zp)) units. Units that depend on an instrument
//! (electrons or counts per second, ADU) or on the pixel's solid angle (MJy/sr) say
//! nothing here: those need the zero point given.

/// The AB zero point of a flux-density unit per pixel: `Jy` 8.9, `mJy` 16.4, `uJy`
/// (also `µJy`, `μJy`, `microJy`) 23.9, `nJy` 31.4, `nanomaggy` 22.5, `maggy` 0;
/// optionally per pixel (`uJy/pix`, `nJy / pixel`). None for any other unit,
/// and for `MJY` / `mjy`, whose case no longer tells milli from mega.
pub fn ab_zero_point(unit: &str) -> Option<f64> {
    let unit: String = unit.chars().filter(|c| !c.is_whitespace() && !matches!(c, '\'' | '"')).collect();
    let per_pixel = ["/pixel", "/pix", "pixel-1", "pix-1"];
    let unit = per_pixel.iter().find_map(|suffix| strip_suffix_ignoring_case(&unit, suffix)).unwrap_or(&unit);
    // AB: 3631 Jy at magnitude 0, so 1 Jy is magnitude 2.5 log10(3631) = 8.90.
    const JANSKY: f64 = 8.9;
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
    fn units_of_an_instrument_or_a_solid_angle_say_no_zero_point() {
        for unit in ["electron/s", "e-/s", "ELECTRONS/S", "counts", "ADU", "DN/s", "MJy/sr", "MJY", "mjy", "", "mag"] {
            assert_eq!(ab_zero_point(unit), None, "{unit}");
        }
    }
}
