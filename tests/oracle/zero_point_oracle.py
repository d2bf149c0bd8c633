"""Golden AB zero points for lensmae's `data::flux_unit` (the zero point the smooth-lens
fit converts a cutout's pixels from): astropy's units and equivalencies applied to the
flux of one unit of each cutout's pixel values, for the units and header keywords
survey and space-telescope cutouts state them with (HST PHOTFLAM/PHOTPLAM, JWST
MJy/sr with PIXAR_SR or the WCS pixel area, FLUXMAG0, MAGZERO), and the cases that must
give none.

Writes fixtures/oracle/zero_points.json: per case the BUNIT (or null), the header
keywords, the pixel scale (arcsec, or null), the header cards that say them (as astropy
writes them; a TAN WCS of that scale) and the expected zero point (or null).
Run from the repository root: python tests/oracle/zero_point_oracle.py
(astropy 8.0.2 was used on 2026-12-07.)
"""
import json

import astropy
import numpy as np
from astropy import units as u
from astropy.io import fits

AB = u.ABmag


def rate_zero_point(photflam, photplam):
    """AB magnitude of a source giving one electron per second: PHOTFLAM is its f_lambda."""
    f_lambda = photflam * u.erg / u.s / u.cm**2 / u.AA
    return f_lambda.to(AB, equivalencies=u.spectral_density(photplam * u.AA)).value


def surface_zero_point(solid_angle_sr):
    """AB magnitude of a pixel of 1 MJy/sr."""
    return (1 * u.MJy / u.sr * (solid_angle_sr * u.sr)).to(AB).value


def density_zero_point(unit):
    return (1 * unit).to(AB).value


cases = []


def header_cards(bunit, keywords, arcsec_per_pixel):
    h = fits.Header()
    if bunit is not None:
        h["BUNIT"] = bunit
    for key, value in keywords.items():
        h[key] = value
    if arcsec_per_pixel is not None:
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
        h["CRVAL1"], h["CRVAL2"] = 150.1, 2.2
        h["CRPIX1"], h["CRPIX2"] = 4.5, 4.5
        h["CDELT1"], h["CDELT2"] = -arcsec_per_pixel / 3600.0, arcsec_per_pixel / 3600.0
    return [card.image for card in h.cards]


def case(name, bunit, keywords, arcsec_per_pixel, expected):
    cases.append(
        {
            "name": name,
            "bunit": bunit,
            "keywords": keywords,
            "arcsec_per_pixel": arcsec_per_pixel,
            "cards": header_cards(bunit, keywords, arcsec_per_pixel),
            "zero_point": None if expected is None else float(expected),
        }
    )


# A maggy is the flux of AB magnitude 0 (SDSS), the unit astropy calls AB.
nanomaggy = u.def_unit("nanomaggy", 1e-9 * u.AB)
for bunit, unit in [("uJy", u.uJy), ("nJy", u.nJy), ("mJy", u.mJy), ("Jy", u.Jy), ("nanomaggy", nanomaggy)]:
    case(f"flux density {bunit}", bunit, {}, None, density_zero_point(unit))
# Filters of HST's imagers, with PHOTFLAM (erg cm^-2 s^-1 A^-1 per e-/s) and PHOTPLAM (A) of the
# size their headers carry.
for name, photflam, photplam in [
    ("ACS/WFC F435W", 3.1623e-19, 4329.2),
    ("ACS/WFC F814W", 7.0486e-20, 8045.5),
    ("WFC3/UVIS F606W", 1.1502e-19, 5889.2),
    ("WFC3/IR F160W", 1.9276e-20, 15369.2),
]:
    keywords = {"PHOTFLAM": photflam, "PHOTPLAM": photplam}
    zp = rate_zero_point(photflam, photplam)
    case(f"{name} in ELECTRONS/S", "ELECTRONS/S", keywords, 0.05, zp)
    case(f"{name}, no BUNIT", None, keywords, None, zp)
    case(f"{name} in ELECTRONS over 1200 s", "ELECTRONS", {**keywords, "EXPTIME": 1200.0}, 0.05, zp + 2.5 * np.log10(1200.0))
    case(f"{name} in ELECTRONS, no EXPTIME", "ELECTRONS", keywords, 0.05, None)
# JWST: MJy/sr, with the pixel's solid angle stated, else that of the WCS's square pixel.
for name, pixar_sr in [("NIRCam SW", 2.29e-14), ("NIRCam LW", 9.31e-14), ("MIRI", 2.84e-13)]:
    case(f"{name} MJy/sr, PIXAR_SR", "MJy/sr", {"PIXAR_SR": pixar_sr}, 0.031, surface_zero_point(pixar_sr))
for scale in [0.031, 0.063, 0.11]:
    solid_angle = (scale * u.arcsec) ** 2
    case(f"MJy/sr on the WCS's {scale}\" pixel", "MJy/sr", {}, scale, surface_zero_point(solid_angle.to(u.sr).value))
case("MJy/sr, no pixel area", "MJy/sr", {}, None, None)
# HSC and Rubin: FLUXMAG0 units for a source of magnitude 0.
for fluxmag0 in [63095734448.0193, 1.0e11, 3.2e10]:
    case(f"FLUXMAG0 {fluxmag0}", None, {"FLUXMAG0": fluxmag0}, 0.168, -2.5 * np.log10(1.0 / fluxmag0))
case("MAGZERO", "counts/s", {"MAGZERO": 30.0}, 0.263, 30.0)
case("MAGZP", None, {"MAGZP": 26.325}, 1.0, 26.325)
case("a flux density before the keywords", "uJy", {"MAGZERO": 30.0, "FLUXMAG0": 1.0e11}, 0.1, density_zero_point(u.uJy))
case("a unit of no flux", "mag/arcsec2", {"PHOTFLAM": 1.1502e-19, "PHOTPLAM": 5889.2}, 0.1, None)
case("an instrument's rate alone", "electron/s", {}, 0.1, None)

with open("fixtures/oracle/zero_points.json", "w") as out:
    json.dump({"astropy": astropy.__version__, "cases": cases}, out, indent=1)
print(f"{len(cases)} cases, astropy {astropy.__version__}")
