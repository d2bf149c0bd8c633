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
    system: RaDecSystem,
}

/// The reference system of right ascension and declination (positions are
/// given in the header's own system: nothing is precessed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RaDecSystem {
    /// ICRS (also what a header without RADESYS and EQUINOX means).
    Icrs,
    /// FK5.
    Fk5 {
        /// The equinox, Julian years (2000 unless the header says another).
        equinox: f64,
    },
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
        let equinox = number(f, hdu, "EQUINOX");
        let system = match text(f, hdu, "RADESYS").or_else(|| text(f, hdu, "RADECSYS")).as_deref() {
            Some("ICRS") => Some(RaDecSystem::Icrs),
            Some("FK5") => Some(RaDecSystem::Fk5 { equinox: equinox.unwrap_or(2000.0) }),
            None => match equinox {
                None => Some(RaDecSystem::Icrs),
                Some(e) if e >= 1984.0 => Some(RaDecSystem::Fk5 { equinox: e }),
                Some(_) => None,
            },
            Some(_) => None,
        }?;
        let degrees = ["CUNIT1", "CUNIT2"].iter().all(|k| text(f, hdu, k).is_none_or(|u| u == "DEG" || u.is_empty()));
        if !(pv_free && lonpole_default && degrees) {
            return None;
        }
        let linear = LinearWcs::read(f, hdu, 1.0)?;
        let crval = [number(f, hdu, "CRVAL1")?, number(f, hdu, "CRVAL2")?];
        if crval[1].abs() > 90.0 {
            return None;
        }
        let sip = if distortion { Some(Sip::read(f, hdu)?) } else { None };
        Some(CelestialWcs { linear, crval, projection, sip, system })
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

    /// The orientation on the sky, degrees east of north in [0, 180), of an axis
    /// through the 1-based pixel position (`x`, `y`) that runs `angle` degrees
    /// counter-clockwise from the image's +x axis (NAXIS1) towards +y (NAXIS2): the
    /// bearing from that position to one half a pixel along the axis, so any CD
    /// matrix (rotated, mirrored) and distortion is taken as it is there.
    pub fn sky_orientation(&self, x: f64, y: f64, angle: f64) -> Option<f64> {
        let (ra, dec) = self.sky_position(x, y)?;
        let (sin, cos) = angle.to_radians().sin_cos();
        let (ra_along, dec_along) = self.sky_position(x + 0.5 * cos, y + 0.5 * sin)?;
        let (d1, d2, delta_ra) = (dec.to_radians(), dec_along.to_radians(), (ra_along - ra).to_radians());
        let east = delta_ra.sin() * d2.cos();
        let north = d1.cos() * d2.sin() - d1.sin() * d2.cos() * delta_ra.cos();
        let bearing = east.atan2(north).to_degrees().rem_euclid(180.0);
        bearing.is_finite().then_some(if bearing >= 180.0 { 0.0 } else { bearing })
    }

    /// The WCS of a grid laid over the image of this one, whose pixel edges at
    /// 0-based position `o` lie at the image's positions `origin + o * ratio`
    /// (`origin` as `[x, y]`: along NAXIS1, then NAXIS2; `ratio` its pixels' width
    /// in the image's pixels). Exact, projection and distortion included: the
    /// reference pixel moves with the grid, so the offsets from it scale by
    /// `ratio`, the CD matrix by `ratio`, and SIP's `A_p_q` by `ratio^(p+q-1)`.
    pub fn regridded(&self, origin: [f64; 2], ratio: f64) -> CelestialWcs {
        let linear = LinearWcs {
            crpix: [0, 1].map(|i| (self.linear.crpix[i] - 0.5 - origin[i]) / ratio + 0.5),
            cd: self.linear.cd.map(|row| row.map(|v| v * ratio)),
        };
        let sip = self.sip.as_ref().map(|sip| {
            let scale = |c: &[Vec<f64>]| -> Vec<Vec<f64>> {
                c.iter()
                    .enumerate()
                    .map(|(p, row)| row.iter().enumerate().map(|(q, &k)| k * ratio.powi((p + q) as i32 - 1)).collect())
                    .collect()
            };
            Sip { a: scale(&sip.a), b: scale(&sip.b) }
        });
        CelestialWcs { linear, sip, ..self.clone() }
    }

    /// The WCS of the image `factor` times as finely sampled (super-resolved):
    /// CD / factor, CRPIX' = factor (CRPIX - 0.5) + 0.5.
    pub fn upsampled(&self, factor: f64) -> CelestialWcs {
        self.regridded([0.0, 0.0], 1.0 / factor)
    }

    /// The WCS as FITS header cards, 80 characters each without separators and
    /// without END (what astropy's `WCS(text)` and `Header.fromstring(text)` read);
    /// None when a value is not finite (a hostile header's scale carried far).
    pub fn header_cards(&self) -> Option<String> {
        let sip = self.sip.iter().flat_map(|s| s.a.iter().chain(&s.b)).flatten();
        let linear = self.linear.crpix.iter().chain(self.linear.cd.iter().flatten()).chain(&self.crval);
        if !linear.chain(sip).all(|v| v.is_finite()) {
            return None;
        }
        let code = match self.projection {
            Zenithal::Tan => "TAN",
            Zenithal::Sin => "SIN",
            Zenithal::Arc => "ARC",
            Zenithal::Zea => "ZEA",
            Zenithal::Stg => "STG",
        };
        let code = if self.sip.is_some() { format!("{code}-SIP") } else { code.to_string() };
        let mut cards = vec![
            card("WCSAXES", "2"),
            card("CTYPE1", &quoted(&format!("RA---{code}"))),
            card("CTYPE2", &quoted(&format!("DEC--{code}"))),
            card("CUNIT1", &quoted("deg")),
            card("CUNIT2", &quoted("deg")),
            card("CRPIX1", &fits_real(self.linear.crpix[0])),
            card("CRPIX2", &fits_real(self.linear.crpix[1])),
            card("CRVAL1", &fits_real(self.crval[0])),
            card("CRVAL2", &fits_real(self.crval[1])),
        ];
        for (i, row) in self.linear.cd.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                cards.push(card(&format!("CD{}_{}", i + 1, j + 1), &fits_real(*v)));
            }
        }
        match self.system {
            RaDecSystem::Icrs => cards.push(card("RADESYS", &quoted("ICRS"))),
            RaDecSystem::Fk5 { equinox } => {
                cards.push(card("RADESYS", &quoted("FK5")));
                cards.push(card("EQUINOX", &fits_real(equinox)));
            }
        }
        if let Some(sip) = &self.sip {
            for (axis, c) in [("A", &sip.a), ("B", &sip.b)] {
                cards.push(card(&format!("{axis}_ORDER"), &(c.len() - 1).to_string()));
                for (p, row) in c.iter().enumerate() {
                    for (q, &k) in row.iter().enumerate().filter(|(_, &k)| k != 0.0) {
                        cards.push(card(&format!("{axis}_{p}_{q}"), &fits_real(k)));
                    }
                }
            }
        }
        Some(cards.concat())
    }
}

/// The length of the longest [`CelestialWcs::header_cards`] with a SIP distortion of
/// at most `sip_order`: 15 cards of the linear WCS and its frame, and for SIP two
/// orders and every coefficient of both polynomials.
pub fn longest_header_cards(sip_order: usize) -> usize {
    80 * (15 + 2 + (sip_order + 1) * (sip_order + 2))
}

/// One header card: the keyword, `= `, the value right-aligned to column 30 (as
/// FITS's fixed format has it) when it fits, padded to 80 characters.
fn card(key: &str, value: &str) -> String {
    format!("{:<80}", format!("{key:<8}= {value:>20}"))
}

fn quoted(text: &str) -> String {
    format!("{:<20}", format!("'{text:<8}'"))
}

/// A real number as FITS writes it: every digit needed to read back the same
/// double, an exponent with a capital E.
fn fits_real(v: f64) -> String {
    if v == 0.0 || (1e-3..1e15).contains(&v.abs()) {
        format!("{v:?}")
    } else {
        format!("{v:E}")
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
        let linear = LinearWcs { crpix: [50.5, 50.5], cd };
        CelestialWcs { linear, crval, projection: Zenithal::Tan, sip, system: RaDecSystem::Icrs }
    }

    /// A rotated 0.1"/px WCS with its reference pixel far from the cutout, as a
    /// cutout of a survey tile has it; `sip` adds a third-order distortion.
    fn survey_like(projection: Zenithal, sip: bool, system: RaDecSystem) -> CelestialWcs {
        let (sin, cos) = 33f64.to_radians().sin_cos();
        let s = 0.1 / 3600.0;
        let mut a = vec![vec![0.0; 4]; 4];
        let mut b = vec![vec![0.0; 4]; 4];
        (a[2][0], a[1][1], a[0][3], b[0][2], b[2][1]) = (2e-6, -1e-6, 4e-10, 1.5e-6, 3e-10);
        CelestialWcs {
            linear: LinearWcs { crpix: [-1200.0, 3400.5], cd: [[-s * cos, s * sin], [s * sin, s * cos]] },
            crval: [150.1, 2.2],
            projection,
            sip: sip.then_some(Sip { a, b }),
            system,
        }
    }

    #[test]
    fn image_angles_become_bearings_east_of_north() {
        let s = 0.1 / 3600.0;
        // North up, east left (RA falls with x): the +y axis points north, -x east.
        let standard = tan([150.0, 2.0], [[-s, 0.0], [0.0, s]], None);
        for (angle, bearing) in [(90.0, 0.0), (180.0, 90.0), (0.0, 90.0), (135.0, 45.0), (30.0, 120.0)] {
            let got = standard.sky_orientation(50.5, 50.5, angle).unwrap();
            assert!((got - bearing).abs() < 1e-6, "{angle}: {got} vs {bearing}");
        }
        // Mirrored (east right): angles run the other way.
        let mirrored = tan([150.0, 2.0], [[s, 0.0], [0.0, s]], None);
        let got = mirrored.sky_orientation(50.5, 50.5, 30.0).unwrap();
        assert!((got - 60.0).abs() < 1e-6, "{got}");
        // Rotated by 33 degrees and distorted: the bearing of the two positions it joins.
        let wcs = survey_like(Zenithal::Tan, true, RaDecSystem::Icrs);
        let got = wcs.sky_orientation(20.0, 30.0, 10.0).unwrap();
        let (a, d) = wcs.sky_position(20.0, 30.0).unwrap();
        let (sin, cos) = 10f64.to_radians().sin_cos();
        let (a2, d2) = wcs.sky_position(20.0 + 50.0 * cos, 30.0 + 50.0 * sin).unwrap();
        let flat = ((a2 - a) * d.to_radians().cos()).atan2(d2 - d).to_degrees().rem_euclid(180.0);
        assert!((got - flat).abs() < 0.05, "{got} vs {flat}");
    }

    #[test]
    fn a_regridded_wcs_puts_every_pixel_where_the_original_put_it() {
        for wcs in [
            survey_like(Zenithal::Tan, true, RaDecSystem::Icrs),
            survey_like(Zenithal::Sin, false, RaDecSystem::Fk5 { equinox: 2000.0 }),
            survey_like(Zenithal::Zea, true, RaDecSystem::Icrs),
        ] {
            for (origin, ratio) in [([3.25, -1.5], 0.37), ([0.0, 0.0], 1.0), ([-7.0, 12.5], 2.5)] {
                let grid = wcs.regridded(origin, ratio);
                for (x, y) in [(1.0, 1.0), (64.0, 1.0), (17.5, 40.25), (64.0, 64.0), (-3.0, 70.0)] {
                    // 1-based pixel x of the grid is at 0-based edge coordinate x - 0.5.
                    let on_image = |p: f64, i: usize| origin[i] + (p - 0.5) * ratio + 0.5;
                    let (ra, dec) = grid.sky_position(x, y).unwrap();
                    let (want_ra, want_dec) = wcs.sky_position(on_image(x, 0), on_image(y, 1)).unwrap();
                    // 1e-10 degrees is 0.4 micro-arcseconds.
                    assert!(
                        (ra - want_ra).abs() < 1e-10 && (dec - want_dec).abs() < 1e-10,
                        "{wcs:?} {ratio} ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_super_resolved_wcs_follows_the_survey_convention() {
        let wcs = survey_like(Zenithal::Tan, false, RaDecSystem::Icrs);
        let sr = wcs.upsampled(4.0);
        for i in 0..2 {
            assert!((sr.linear.crpix[i] - (4.0 * (wcs.linear.crpix[i] - 0.5) + 0.5)).abs() < 1e-9);
            for j in 0..2 {
                assert!((sr.linear.cd[i][j] - wcs.linear.cd[i][j] / 4.0).abs() < 1e-20);
            }
        }
        // The centre of a 16x16 cutout is the centre of its 64x64 super-resolution.
        let (a, b) = (wcs.sky_position(8.5, 8.5).unwrap(), sr.sky_position(32.5, 32.5).unwrap());
        assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12, "{a:?} {b:?}");
    }

    #[test]
    fn header_cards_read_back_as_the_same_wcs() {
        let dir = tempfile::tempdir().unwrap();
        for (n, wcs) in [
            survey_like(Zenithal::Tan, true, RaDecSystem::Icrs),
            survey_like(Zenithal::Stg, false, RaDecSystem::Fk5 { equinox: 2010.5 }),
            survey_like(Zenithal::Arc, false, RaDecSystem::Icrs).regridded([1.0, 2.0], 0.3),
        ]
        .into_iter()
        .enumerate()
        {
            let cards = wcs.header_cards().unwrap();
            assert_eq!(cards.len() % 80, 0);
            assert!(cards.is_ascii());
            let header =
                ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0"]
                    .iter()
                    .map(|c| format!("{c:<80}"))
                    .collect::<String>()
                    + &cards
                    + &format!("{:<80}", "END");
            let mut bytes = header.into_bytes();
            bytes.resize(bytes.len().div_ceil(2880) * 2880, b' ');
            let path = dir.path().join(format!("{n}.fits"));
            std::fs::write(&path, bytes).unwrap();
            let mut f = FitsFile::open(&path).unwrap();
            let hdu = f.primary_hdu().unwrap();
            // Every value is written with the digits that read back the same double.
            assert_eq!(CelestialWcs::read(&mut f, &hdu), Some(wcs));
        }
    }

    #[test]
    fn the_longest_header_of_a_sip_order_is_as_long_as_said() {
        let full = |order: usize| vec![vec![1e-7; order + 1]; order + 1];
        // Every coefficient p + q <= order given, in FK5 (its EQUINOX card).
        let longest = |order| {
            let mut a = full(order);
            for (p, row) in a.iter_mut().enumerate() {
                row.truncate(order + 1 - p);
            }
            let mut wcs = survey_like(Zenithal::Tan, false, RaDecSystem::Fk5 { equinox: 2000.0 });
            wcs.sip = Some(Sip { a: a.clone(), b: a });
            wcs.header_cards().unwrap().len()
        };
        for order in [2, 5] {
            assert_eq!(longest(order), longest_header_cards(order));
        }
    }

    #[test]
    fn a_wcs_carried_beyond_finite_numbers_writes_no_header() {
        // A SIP term of order 9 scaled by a ratio of 1e40 overflows.
        let mut a = vec![vec![0.0; 10]; 10];
        a[9][0] = 1e-30;
        let mut wcs = survey_like(Zenithal::Tan, false, RaDecSystem::Icrs);
        wcs.sip = Some(Sip { a: a.clone(), b: a });
        assert!(wcs.header_cards().is_some());
        assert_eq!(wcs.regridded([0.0, 0.0], 1e40).header_cards(), None);
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
