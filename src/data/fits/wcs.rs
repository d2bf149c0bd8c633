//! An image HDU's celestial WCS: its pixel scale, and the sky position of a pixel
//! (the cutout's centre goes into the predictions' `ra`/`dec` when the header names
//! no object position).
//!
//! The zenithal deprojections are mapproj's (CDS, Aladin's). Its SIP polynomials
//! are not used: mapproj 0.4 raises `u` and `v` by repeated squaring, so from the
//! third order on it evaluates other terms than the standard's; the forward SIP
//! polynomial is a plain double sum here.

use fitsio::hdu::FitsHdu;
use fitsio::FitsFile;
use mapproj::img2celestial::Img2Celestial;
use mapproj::img2proj::WcsImgXY2ProjXY;
use mapproj::zenithal::{arc::Arc, sin::Sin, stg::Stg, tan::Tan, zea::Zea};
use mapproj::{CanonicalProjection, CenteredProjection, ImgXY, LonLat};

/// Highest SIP order read; survey headers use 2-5.
const MAX_SIP_ORDER: usize = 9;

/// The linear part of a WCS: reference pixel and the CD matrix in degrees per
/// pixel, from CDi_j, else CDELTi with PCi_j, else CDELTi with CROTA2.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LinearWcs {
    crpix: [f64; 2],
    cd: [[f64; 2]; 2],
}

/// Zenithal projections without PV parameters: what cutout services write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zenithal {
    Tan,
    Sin,
    Arc,
    Zea,
    Stg,
}

/// A forward SIP distortion: `A_p_q`, `B_p_q` as `[p][q]`.
#[derive(Debug, Clone, PartialEq)]
struct Sip {
    a: Vec<Vec<f64>>,
    b: Vec<Vec<f64>>,
}

/// An equatorial (RA, Dec) WCS of a two-axis image.
#[derive(Debug, Clone, PartialEq)]
pub struct CelestialWcs {
    linear: LinearWcs,
    crval: [f64; 2],
    projection: Zenithal,
    sip: Option<Sip>,
}

fn number(f: &mut FitsFile, hdu: &FitsHdu, name: &str) -> Option<f64> {
    hdu.read_key::<f64>(f, name).ok().filter(|v| v.is_finite())
}

fn text(f: &mut FitsFile, hdu: &FitsHdu, name: &str) -> Option<String> {
    hdu.read_key::<String>(f, name).ok().map(|t| t.trim().to_ascii_uppercase())
}

impl LinearWcs {
    /// `degrees_per_unit` converts CDELT/CD from CUNITn to degrees.
    fn read(f: &mut FitsFile, hdu: &FitsHdu, degrees_per_unit: f64) -> Option<LinearWcs> {
        let crpix = [number(f, hdu, "CRPIX1").unwrap_or(0.0), number(f, hdu, "CRPIX2").unwrap_or(0.0)];
        let cd = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"].map(|k| number(f, hdu, k));
        let cdelt = [number(f, hdu, "CDELT1"), number(f, hdu, "CDELT2")];
        let matrix = if cd.iter().any(Option::is_some) {
            let [a, b, c, d] = cd.map(|v| v.unwrap_or(0.0));
            [[a, b], [c, d]]
        } else if let [Some(d1), Some(d2)] = cdelt {
            let pc = ["PC1_1", "PC1_2", "PC2_1", "PC2_2"].map(|k| number(f, hdu, k));
            if pc.iter().any(Option::is_some) {
                let [a, b, c, d] =
                    [pc[0].unwrap_or(1.0), pc[1].unwrap_or(0.0), pc[2].unwrap_or(0.0), pc[3].unwrap_or(1.0)];
                [[d1 * a, d1 * b], [d2 * c, d2 * d]]
            } else {
                let (sin, cos) = number(f, hdu, "CROTA2").unwrap_or(0.0).to_radians().sin_cos();
                [[d1 * cos, -d2 * sin], [d1 * sin, d2 * cos]]
            }
        } else {
            return None;
        };
        let cd = matrix.map(|row| row.map(|v| v * degrees_per_unit));
        let det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
        (det.is_finite() && det != 0.0).then_some(LinearWcs { crpix, cd })
    }

    fn arcsec_per_pixel(&self) -> f64 {
        let det = self.cd[0][0] * self.cd[1][1] - self.cd[0][1] * self.cd[1][0];
        det.abs().sqrt() * 3600.0
    }
}

impl Sip {
    fn read(f: &mut FitsFile, hdu: &FitsHdu) -> Option<Sip> {
        let mut coefficients = |axis: &str| -> Option<Vec<Vec<f64>>> {
            let order = hdu.read_key::<i64>(f, &format!("{axis}_ORDER")).ok()?;
            let order = usize::try_from(order).ok().filter(|&o| o <= MAX_SIP_ORDER)?;
            let mut c = vec![vec![0.0; order + 1]; order + 1];
            for (p, row) in c.iter_mut().enumerate() {
                for (q, value) in row.iter_mut().enumerate().take(order + 1 - p) {
                    *value = number(f, hdu, &format!("{axis}_{p}_{q}")).unwrap_or(0.0);
                }
            }
            Some(c)
        };
        Some(Sip { a: coefficients("A")?, b: coefficients("B")? })
    }

    /// The pixel offsets from CRPIX with the distortion added.
    fn distort(&self, u: f64, v: f64) -> (f64, f64) {
        let poly = |c: &[Vec<f64>]| {
            c.iter()
                .enumerate()
                .map(|(p, row)| row.iter().rev().fold(0.0, |acc, &k| acc * v + k) * u.powi(p as i32))
                .sum::<f64>()
        };
        (u + poly(&self.a), v + poly(&self.b))
    }
}

/// The pixel scale of image HDU `hdu`, arcsec per pixel, from its WCS: the CD
/// matrix, else CDELTn (with a PCi_j matrix or CROTA2), in CUNITn (degrees unless
/// `arcsec`/`arcmin`), taken when CTYPE1 names a celestial axis; else a
/// `PIXSCALE`, `PIXSCAL1` or `SECPIX` keyword in arcsec. Non-square pixels give the
/// square root of the pixel area. `None` when none is there or the value is not a
/// positive finite number.
pub fn wcs_pixel_scale(f: &mut FitsFile, hdu: &FitsHdu) -> Option<f64> {
    let celestial = text(f, hdu, "CTYPE1")
        .is_some_and(|t| ["RA", "DEC", "GLON", "GLAT", "ELON", "ELAT"].iter().any(|axis| t.starts_with(axis)));
    let degrees_per_unit = match text(f, hdu, "CUNIT1").as_deref() {
        Some("ARCSEC") => 1.0 / 3600.0,
        Some("ARCMIN") => 1.0 / 60.0,
        _ => 1.0,
    };
    let scale = match celestial.then(|| LinearWcs::read(f, hdu, degrees_per_unit)).flatten() {
        Some(linear) => linear.arcsec_per_pixel(),
        None => ["PIXSCALE", "PIXSCAL1", "SECPIX"].iter().find_map(|k| number(f, hdu, k))?,
    };
    (scale.is_finite() && scale > 0.0).then_some(scale)
}

impl CelestialWcs {
    /// The WCS of `hdu` when it maps pixels to ICRS/FK5 right ascension and
    /// declination (CTYPE1 `RA---xxx`, CTYPE2 `DEC--xxx`) through TAN (also with
    /// `-SIP`), SIN, ARC, ZEA or STG, in degrees, with LONPOLE at its default;
    /// `None` for anything else (galactic axes, FK4, TPV, projections with PV
    /// parameters), which leaves `ra`/`dec` unknown rather than wrong.
    pub fn read(f: &mut FitsFile, hdu: &FitsHdu) -> Option<CelestialWcs> {
        let (x, y) = (text(f, hdu, "CTYPE1")?, text(f, hdu, "CTYPE2")?);
        let (x_axis, x_code) = x.split_at_checked(4)?;
        let (y_axis, y_code) = y.split_at_checked(4)?;
        if x_axis != "RA--" || y_axis != "DEC-" || x_code != y_code {
            return None;
        }
        let (code, distortion) = match x_code.trim_start_matches('-').split_once('-') {
            Some((code, "SIP")) => (code, true),
            Some(_) => return None,
            None => (x_code.trim_start_matches('-'), false),
        };
        let projection = match code {
            "TAN" => Zenithal::Tan,
            "SIN" => Zenithal::Sin,
            "ARC" => Zenithal::Arc,
            "ZEA" => Zenithal::Zea,
            "STG" => Zenithal::Stg,
            _ => return None,
        };
        let pv_free = ["PV2_1", "PV2_2"].iter().all(|k| number(f, hdu, k).is_none_or(|v| v == 0.0));
        let lonpole_default = number(f, hdu, "LONPOLE").is_none_or(|v| v == 180.0);
        // Without RADESYS the frame follows EQUINOX: FK5 from 1984 on, FK4 before.
        let equatorial = match text(f, hdu, "RADESYS").or_else(|| text(f, hdu, "RADECSYS")).as_deref() {
            Some("ICRS") | Some("FK5") => true,
            None => number(f, hdu, "EQUINOX").is_none_or(|e| e >= 1984.0),
            Some(_) => false,
        };
        let degrees = ["CUNIT1", "CUNIT2"].iter().all(|k| text(f, hdu, k).is_none_or(|u| u == "DEG" || u.is_empty()));
        if !(pv_free && lonpole_default && equatorial && degrees) {
            return None;
        }
        let linear = LinearWcs::read(f, hdu, 1.0)?;
        let crval = [number(f, hdu, "CRVAL1")?, number(f, hdu, "CRVAL2")?];
        if crval[1].abs() > 90.0 {
            return None;
        }
        let sip = if distortion { Some(Sip::read(f, hdu)?) } else { None };
        Some(CelestialWcs { linear, crval, projection, sip })
    }

    /// Right ascension in [0, 360) and declination, degrees, of the 1-based pixel
    /// position (`x` along NAXIS1, `y` along NAXIS2), as FITS counts pixels.
    pub fn sky_position(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let [crpix1, crpix2] = self.linear.crpix;
        let (u, v) = (x - crpix1, y - crpix2);
        let (u, v) = self.sip.as_ref().map_or((u, v), |sip| sip.distort(u, v));
        let [[a, b], [c, d]] = self.linear.cd;
        let img2proj = WcsImgXY2ProjXY::from_cd(0.0, 0.0, a, b, c, d);
        let centre = LonLat::new(self.crval[0].to_radians(), self.crval[1].to_radians());
        let position = match self.projection {
            Zenithal::Tan => deproject(Tan, img2proj, &centre, u, v),
            Zenithal::Sin => deproject(Sin, img2proj, &centre, u, v),
            Zenithal::Arc => deproject(Arc, img2proj, &centre, u, v),
            Zenithal::Zea => deproject(Zea, img2proj, &centre, u, v),
            Zenithal::Stg => deproject(Stg, img2proj, &centre, u, v),
        }?;
        let ra = position.lon().to_degrees().rem_euclid(360.0);
        let dec = position.lat().to_degrees();
        (ra.is_finite() && dec.is_finite()).then_some((if ra >= 360.0 { 0.0 } else { ra }, dec))
    }
}

fn deproject<P: CanonicalProjection>(
    projection: P,
    img2proj: WcsImgXY2ProjXY,
    centre: &LonLat,
    u: f64,
    v: f64,
) -> Option<LonLat> {
    let mut sky = Img2Celestial::new(img2proj, CenteredProjection::new(projection));
    sky.set_proj_center_from_lonlat(centre);
    sky.img2lonlat(&ImgXY::new(u, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tan(crval: [f64; 2], cd: [[f64; 2]; 2], sip: Option<Sip>) -> CelestialWcs {
        CelestialWcs { linear: LinearWcs { crpix: [50.5, 50.5], cd }, crval, projection: Zenithal::Tan, sip }
    }

    #[test]
    fn the_reference_pixel_is_at_the_reference_value() {
        let wcs = tan([150.1, 2.2], [[-0.1 / 3600.0, 0.0], [0.0, 0.1 / 3600.0]], None);
        let (ra, dec) = wcs.sky_position(50.5, 50.5).unwrap();
        assert!((ra - 150.1).abs() < 1e-12 && (dec - 2.2).abs() < 1e-12, "{ra} {dec}");
        // One pixel along NAXIS1 with CD1_1 < 0 is west: RA falls by 0.1" / cos(dec).
        let (ra1, dec1) = wcs.sky_position(51.5, 50.5).unwrap();
        let expected = -0.1 / 3600.0 / 2.2f64.to_radians().cos();
        assert!(((ra1 - ra) - expected).abs() < 1e-10 && (dec1 - dec).abs() < 1e-9, "{} {}", ra1 - ra, dec1 - dec);
        // RA wraps into [0, 360).
        let wcs = tan([0.0, -30.0], [[-1e-3, 0.0], [0.0, 1e-3]], None);
        let (ra, _) = wcs.sky_position(60.5, 50.5).unwrap();
        assert!(ra > 359.9 && ra < 360.0, "{ra}");
    }

    #[test]
    fn sip_adds_its_polynomial_to_the_pixel_offsets() {
        // A_2_0 = 1e-4, B_0_2 = -2e-4, A_1_2 = 3e-6 (order 3).
        let mut a = vec![vec![0.0; 4]; 4];
        let mut b = vec![vec![0.0; 4]; 4];
        a[2][0] = 1e-4;
        a[1][2] = 3e-6;
        b[0][2] = -2e-4;
        let sip = Sip { a, b };
        let (u, v) = sip.distort(20.0, -10.0);
        assert!((u - (20.0 + 1e-4 * 400.0 + 3e-6 * 20.0 * 100.0)).abs() < 1e-12, "{u}");
        assert!((v - (-10.0 - 2e-4 * 100.0)).abs() < 1e-12, "{v}");
    }
}
