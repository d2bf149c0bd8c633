"""Golden sky positions of cutout centres for lensmae's `data::fits::wcs` (the
`ra`/`dec` that `predict` writes for a FITS cutout whose header names no object
position): astropy's `WCS.pixel_to_world_values` at the centre pixel of each header,
and the headers for which lensmae must leave the position unknown.

Writes fixtures/oracle/wcs_centres.json: per case the header cards (as FITS writes
them), the image size, and the expected (ra, dec) in degrees or null.
Run from the repository root: python tests/oracle/wcs_oracle.py
(astropy 8.0.2 was used on 2026-12-04.)
"""
import json

import astropy
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def cards(header):
    return [card.image for card in header.cards]


def tan(crval, crpix, cd=None, cdelt=None, pc=None, crota2=None, ctype=("RA---TAN", "DEC--TAN"), extra=()):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = ctype
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CRPIX1"], h["CRPIX2"] = crpix
    if cd is not None:
        for (i, j), v in np.ndenumerate(np.asarray(cd)):
            h[f"CD{i + 1}_{j + 1}"] = v
    if cdelt is not None:
        h["CDELT1"], h["CDELT2"] = cdelt
    if pc is not None:
        for (i, j), v in np.ndenumerate(np.asarray(pc)):
            h[f"PC{i + 1}_{j + 1}"] = v
    if crota2 is not None:
        h["CROTA2"] = crota2
    for key, value in extra:
        h[key] = value
    return h


scale = 0.101 / 3600
rot = np.radians(33.0)
rotated_cd = scale * np.array([[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
sip = [("A_ORDER", 3), ("B_ORDER", 3), ("A_2_0", 2e-5), ("A_1_1", -1e-5), ("A_0_2", 3e-6), ("A_3_0", 4e-8),
       ("A_1_2", -2e-8), ("B_2_0", -6e-6), ("B_0_2", 1.5e-5), ("B_2_1", 3e-8), ("B_0_3", -1e-8)]
# (name, header, rows, columns): the centre is ((columns + 1) / 2, (rows + 1) / 2), 1-based.
cases = [
    ("tan-cd-reference-off-centre", tan([150.1, 2.2], [10.0, 80.0], cd=[[-scale, 0], [0, scale]]), 101, 101),
    ("tan-cd-rotated", tan([53.16, -27.79], [40.5, 20.0], cd=rotated_cd), 64, 80),
    ("tan-cdelt-pc", tan([210.8, 54.35], [1.0, 1.0], cdelt=[-scale, scale],
                          pc=[[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]), 64, 64),
    ("tan-cdelt-crota2", tan([10.68, 41.27], [-20.0, 5.0], cdelt=[-2 * scale, 2 * scale], crota2=-71.0), 51, 49),
    ("tan-near-the-pole", tan([75.0, 89.99], [1.0, 1.0], cd=[[-0.2 / 3600, 0], [0, 0.2 / 3600]]), 201, 201),
    ("tan-ra-wraps", tan([0.0001, -30.0], [10.0, 32.5], cd=[[-scale, 0], [0, scale]]), 64, 64),
    ("tan-sip", tan([150.3, 2.4], [-300.0, 1200.0], cd=[[-scale, 0], [0, scale]],
                    ctype=("RA---TAN-SIP", "DEC--TAN-SIP"), extra=sip), 100, 100),
    ("sin", tan([83.8, -5.4], [5.0, 90.0], cd=[[-scale, 0], [0, scale]], ctype=("RA---SIN", "DEC--SIN")), 64, 64),
    ("zea", tan([266.4, -29.0], [100.0, -40.0], cd=rotated_cd, ctype=("RA---ZEA", "DEC--ZEA")), 64, 64),
    ("arc", tan([12.0, 60.0], [-100.0, 0.0], cd=[[-scale, 0], [0, scale]], ctype=("RA---ARC", "DEC--ARC")), 64, 64),
    ("stg", tan([300.0, 10.0], [32.5, 32.5], cd=[[-1e-3, 0], [0, 1e-3]], ctype=("RA---STG", "DEC--STG")), 64, 64),
    ("fk5-equinox-2000", tan([150.1, 2.2], [1.0, 1.0], cd=[[-scale, 0], [0, scale]],
                             extra=[("RADESYS", "FK5"), ("EQUINOX", 2000.0)]), 64, 64),
]
# Headers whose position lensmae leaves unknown (null): another frame or axes,
# parameters it does not read, a distortion it does not apply.
unknown = [
    ("galactic", tan([120.0, 5.0], [1.0, 1.0], cd=[[-scale, 0], [0, scale]], ctype=("GLON-TAN", "GLAT-TAN")), 64, 64),
    ("fk4", tan([150.1, 2.2], [1.0, 1.0], cd=[[-scale, 0], [0, scale]],
                extra=[("RADESYS", "FK4"), ("EQUINOX", 1950.0)]), 64, 64),
    ("tpv", tan([150.1, 2.2], [1.0, 1.0], cd=[[-scale, 0], [0, scale]], ctype=("RA---TPV", "DEC--TPV"),
                extra=[("PV1_1", 1.0), ("PV2_1", 1.0), ("PV1_4", 1e-3)]), 64, 64),
    ("lonpole", tan([150.1, 2.2], [1.0, 1.0], cd=[[-scale, 0], [0, scale]], extra=[("LONPOLE", 90.0)]), 64, 64),
    ("swapped-axes", tan([2.2, 150.1], [1.0, 1.0], cd=[[0, scale], [-scale, 0]], ctype=("DEC--TAN", "RA---TAN")), 64, 64),
    ("no-projection", tan([150.1, 2.2], [1.0, 1.0], cd=[[-scale, 0], [0, scale]], ctype=("RA", "DEC")), 64, 64),
]

out = []
for name, header, rows, columns in cases:
    ra, dec = WCS(header).pixel_to_world_values((columns + 1) / 2 - 1, (rows + 1) / 2 - 1)
    out.append({"name": name, "rows": rows, "columns": columns, "cards": cards(header),
                "ra": float(ra) % 360.0, "dec": float(dec)})
for name, header, rows, columns in unknown:
    out.append({"name": name, "rows": rows, "columns": columns, "cards": cards(header), "ra": None, "dec": None})
with open("fixtures/oracle/wcs_centres.json", "w") as f:
    json.dump({"astropy": astropy.__version__, "cases": out}, f, indent=1)
print(f"wrote {len(out)} cases (astropy {astropy.__version__})")
for case in out:
    print(case["name"], case["ra"], case["dec"])
