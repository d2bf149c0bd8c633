//! One cutout as a FITS file of its own: the image in the primary HDU, placed on
//! the sky by its celestial WCS, with keywords saying what it is. DS9, astropy and
//! every survey viewer open such a file; a table of cutouts they cannot.

use super::fits_message;
use crate::{Error, Result};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::FitsFile;
use std::path::Path;

/// A header keyword's value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
}

/// The keywords a celestial WCS is written with (`CelestialWcs::header_cards`):
/// nothing else may come from a WCS text, so that a table's text cannot put
/// `NAXIS`, `END` or `SIMPLE` into the header.
fn is_wcs_keyword(key: &str) -> bool {
    let indexed = |prefix: &str| key.strip_prefix(prefix).is_some_and(|i| matches!(i, "1" | "2"));
    let sip = |axis: char| {
        key.strip_prefix(axis).and_then(|k| k.strip_prefix('_')).is_some_and(|rest| {
            rest == "ORDER"
                || rest.split_once('_').is_some_and(|(p, q)| p.parse::<u8>().is_ok() && q.parse::<u8>().is_ok())
        })
    };
    matches!(key, "WCSAXES" | "RADESYS" | "EQUINOX" | "CD1_1" | "CD1_2" | "CD2_1" | "CD2_2")
        || ["CTYPE", "CUNIT", "CRPIX", "CRVAL"].iter().any(|p| indexed(p))
        || sip('A')
        || sip('B')
}

/// The 80-character cards of a WCS text (`sr_wcs`), each checked to be a WCS
/// keyword's; an error says which is not. The last card may have lost its trailing
/// blanks (a FITS table's text column does not keep them).
pub fn wcs_cards(text: &str) -> std::result::Result<Vec<String>, String> {
    if !text.is_ascii() {
        return Err("not FITS header cards (80 ASCII characters each)".into());
    }
    let padded = format!("{text:<width$}", width = text.len().div_ceil(80) * 80);
    (0..padded.len() / 80)
        .map(|i| &padded[i * 80..(i + 1) * 80])
        .filter(|card| !card.trim().is_empty())
        .map(|card| {
            let key = card[..8].trim_end();
            if is_wcs_keyword(key) && &card[8..10] == "= " {
                Ok(card.to_string())
            } else {
                Err(format!("card `{}` is not a celestial WCS keyword's", card.trim_end()))
            }
        })
        .collect()
}

/// Writes `pixels` (`[height, width]`, row-major) to a new FITS file at `path` with
/// the header `cards` (checked by [`wcs_cards`]) and `keys` (keyword, value, comment).
pub fn write_cutout_file(
    path: &Path,
    shape: [usize; 2],
    pixels: &[f32],
    cards: &[String],
    keys: &[(&str, KeyValue, &str)],
) -> Result<()> {
    let err = |e: fitsio::errors::Error| Error::Fits { path: path.to_path_buf(), message: fits_message(&e) };
    let description = ImageDescription { data_type: ImageType::Float, dimensions: &shape };
    let mut file = FitsFile::create(path).with_custom_primary(&description).open().map_err(err)?;
    let hdu = file.primary_hdu().map_err(err)?;
    hdu.write_image(&mut file, pixels).map_err(err)?;
    // fitsio names a primary image it creates `_PRIMARY`, which no reader expects.
    let mut status = 0;
    // SAFETY: as below; the keyword is a NUL-terminated literal.
    unsafe { fitsio::sys::ffdkey(file.as_raw(), c"EXTNAME".as_ptr(), &mut status) };
    fitsio::errors::check_status(status).map_err(err)?;
    for card in cards {
        let card = std::ffi::CString::new(card.as_str())
            .map_err(|e| Error::Fits { path: path.to_path_buf(), message: e.to_string() })?;
        let mut status = 0;
        // SAFETY: the file is open for the call and the card a NUL-terminated string
        // that lives until it returns.
        unsafe { fitsio::sys::ffprec(file.as_raw(), card.as_ptr(), &mut status) };
        fitsio::errors::check_status(status).map_err(err)?;
    }
    for (key, value, comment) in keys {
        let result = match value {
            KeyValue::Text(text) => {
                // Header text is printable ASCII (a status may name a path that is not).
                let text: String =
                    text.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
                hdu.write_key(&mut file, key, (text.as_str(), *comment))
            }
            KeyValue::Integer(v) => hdu.write_key(&mut file, key, (*v, *comment)),
            KeyValue::Real(v) => hdu.write_key(&mut file, key, (*v, *comment)),
        };
        result.map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wcs_keywords_come_from_a_wcs_text() {
        let card = |text: &str| format!("{text:<80}");
        let good = [card("CTYPE1  = 'RA---TAN'"), card("CD1_2   =                  0.0"), card("A_2_0   =  1e-7")];
        assert_eq!(wcs_cards(&good.concat()).unwrap().len(), 3);
        for bad in ["NAXIS1  =                  64", "END", "SIMPLE  =                    T", "CTYPE3  = 'ROW'"] {
            let text = good[0].clone() + &card(bad);
            assert!(wcs_cards(&text).is_err(), "{bad}");
        }
        // A FITS text column drops the last card's trailing blanks.
        assert_eq!(wcs_cards("CTYPE1  = 'RA---TAN'").unwrap(), [card("CTYPE1  = 'RA---TAN'")]);
        assert!(wcs_cards("CTYPE1  = 'RA---TAN\u{e9}'").is_err(), "not ASCII");
    }
}
