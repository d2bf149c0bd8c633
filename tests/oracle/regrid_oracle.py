"""Golden flux-conserving regridding for lensmae's `data::regrid` (the stage's
`--pixel-scale` geometry): reproject's `reproject_exact` (exact spherical-polygon
overlap) between two TAN grids that share their centre and orientation and differ
in pixel scale and size. reproject_exact conserves surface brightness; times the
ratio of pixel areas it gives the flux per output pixel, which lensmae computes.

Writes fixtures/oracle/regrid_input.npy (float32 [101, 101]: a lens-like ring on a
sloped background with noise), fixtures/oracle/regrid_expected.npy (float32
[cases, 64, 64]) and fixtures/oracle/regrid_cases.json (each case's input rows and
columns, taken from the top-left of the input, and pixel scales).
Run from the repository root: python tests/oracle/regrid_oracle.py
(reproject 0.21.0, astropy 8.0.2 were used on 2026-12-03.)
"""
import json

import numpy as np
import reproject
from astropy.wcs import WCS
from reproject import reproject_exact

rng = np.random.default_rng(5)
n_in, n_out, model_scale = 101, 64, 0.101
yy, xx = np.mgrid[0:n_in, 0:n_in] - (n_in - 1) / 2
r = np.hypot(xx - 3, 0.8 * yy)
image = 50 * np.exp(-((r - 20) ** 2) / 18) + 200 * np.exp(-(r**2) / 30) + 0.05 * xx + rng.normal(0, 1, r.shape)
image = image.astype(np.float32)


def tan_wcs(height, width, scale):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    w.wcs.cdelt = [-scale / 3600, scale / 3600]
    return w


# (rows, columns, input pixel scale): downsampling (a finer survey), upsampling with
# padding (a coarser one), non-square inputs, the model's own scale with a fractional shift.
cases = [(101, 101, 0.1), (48, 48, 0.2), (90, 70, 0.05), (64, 64, 0.101 * 1.1), (80, 101, 0.13)]
expected = []
for h, w, scale in cases:
    cut = image[:h, :w].astype(np.float64)
    out, footprint = reproject_exact((cut, tan_wcs(h, w, scale)), tan_wcs(n_out, n_out, model_scale),
                                     shape_out=(n_out, n_out))
    out = np.where(footprint > 0, out * footprint, 0.0) * (model_scale / scale) ** 2
    expected.append(out.astype(np.float32))

np.save("fixtures/oracle/regrid_input.npy", image)
np.save("fixtures/oracle/regrid_expected.npy", np.stack(expected))
with open("fixtures/oracle/regrid_cases.json", "w") as f:
    json.dump({"reproject": reproject.__version__, "output_size": n_out, "model_pixel_scale": model_scale,
               "cases": [{"rows": h, "columns": w, "pixel_scale": s} for h, w, s in cases]}, f, indent=1)
print("wrote", len(cases), "cases")
