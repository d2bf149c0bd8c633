"""Why a residual classifier's rows were flagged `out_of_domain`: each flagged row of
a `lensmae predict` table is put under the first check it fails, in the order
`predict` applies none in particular: its `ood_score` above the checkpoint's
threshold, its `fit_chi2` outside the calibrated chi^2 range, a fit on the edge of the
galaxy-scale lenses (`sim::fit::lens_clear_of_envelope`: theta_E within 1%
of one pixel or of the cutout's side, a mass ellipticity within 1% of 0.9, a shear
within 1% of 0.5), and the rest: the residual's noise level outside its range (the
table does not carry that level) or the pixel scale.

    python bench/domain_flag_reasons.py PREDICTIONS.parquet MODEL.safetensors [PIXEL_SCALE] [SIZE]

PIXEL_SCALE (arcsec, default 0.101) and SIZE (pixels, default 64): the model's grid.
Prints JSON. Needs pyarrow.
"""

import json
import struct
import sys

import pyarrow.parquet as pq


def checkpoint_metadata(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return json.loads(header["__metadata__"]["lensmae"])


def on_the_edge(theta_e, axis_ratio, shear, pixel_scale, size):
    ellipticity = (1.0 - axis_ratio) / (1.0 + axis_ratio)
    return not (
        pixel_scale * 1.01 <= theta_e <= pixel_scale * size * 0.99
        and ellipticity <= 0.9 * 0.99
        and shear <= 0.5 * 0.99
    )


def main():
    predictions, model = sys.argv[1], sys.argv[2]
    pixel_scale = float(sys.argv[3]) if len(sys.argv) > 3 else 0.101
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    calibration = checkpoint_metadata(model)["calibration"]
    threshold = calibration["ood_threshold"]
    low, high = calibration["residual_chi2_range"]
    t = pq.read_table(predictions).to_pydict()
    reasons = {"ood_score": 0, "fit_chi2": 0, "envelope edge": 0, "noise level or pixel scale": 0}
    for i, in_domain in enumerate(t["in_domain"]):
        if in_domain is not False:
            continue
        if t["ood_score"][i] > threshold:
            reasons["ood_score"] += 1
        elif not low <= t["fit_chi2"][i] <= high:
            reasons["fit_chi2"] += 1
        elif on_the_edge(t["fit_theta_e"][i], t["fit_axis_ratio"][i], t["fit_shear"][i], pixel_scale, size):
            reasons["envelope edge"] += 1
        else:
            reasons["noise level or pixel scale"] += 1
    rows = len(t["in_domain"])
    flagged = sum(reasons.values())
    print(json.dumps({"rows": rows, "flagged": flagged, "fraction": round(flagged / rows, 4), "by_first_reason": reasons}))


if __name__ == "__main__":
    main()
