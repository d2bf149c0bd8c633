"""How well the smooth-lens fit of a classifier of smooth-lens residuals recovers the
lens that was drawn: per class, the median offset and the robust scatter (1.4826 x the
median absolute deviation) of each `fit_*` column of `lensmae predict` from the truth
columns of the simulated cutouts it read.

    python bench/lens_model_recovery.py DATASET.parquet PREDICTIONS.parquet

DATASET: `lensmae simulate --preset survey ...` (its truth columns); PREDICTIONS:
`lensmae predict --input DATASET --model bundled:survey-residual-classifier --keep id`.
Rows are joined on `id`; only rows answered `ok` count. Position angles are compared
where the drawn axis ratio is below 0.9 and shear angles where the drawn shear is above
0.03 (elsewhere an orientation means little), both modulo 180 degrees.
Where the predictions carry the fit's errors (`fit_*_err`), a second table gives the
pulls, (fit - drawn) / error: their median, robust scatter (1 where the errors are
right) and the fraction within one error (0.683 for a Gaussian).
Needs numpy and pyarrow. Prints Markdown tables and a JSON line.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def ellipse(e1, e2):
    c = np.minimum(np.hypot(e1, e2), 0.9999)
    return (1 - c) / (1 + c), np.degrees(np.arctan2(e2, e1) / 2)


def angle_difference(a, b):
    return (a - b + 90.0) % 180.0 - 90.0


def robust(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    median = float(np.median(values))
    return {
        "n": int(len(values)),
        "median": median,
        "scatter": float(1.4826 * np.median(np.abs(values - median))),
        "abs_q90": float(np.quantile(np.abs(values), 0.9)),
    }


def main(dataset, predictions):
    truth = pq.read_table(dataset).drop_columns(["image"]).to_pydict()
    predicted = pq.read_table(predictions).to_pydict()
    by_id = {i: r for r, i in enumerate(truth["id"])}
    rows = [(by_id[i], r) for r, i in enumerate(predicted["id"]) if predicted["status"][r] == "ok"]
    t = {k: np.array([truth[k][a] for a, _ in rows], dtype=object) for k in truth}
    p = {k: np.array([predicted[k][b] for _, b in rows], dtype=object) for k in predicted}
    num = lambda column: np.array([np.nan if v is None else v for v in column], dtype=float)  # noqa: E731
    q_true, pa_true = ellipse(num(t["lens_e1"]), num(t["lens_e2"]))
    shear_true = np.hypot(num(t["shear_gamma1"]), num(t["shear_gamma2"]))
    shear_angle_true = np.degrees(np.arctan2(num(t["shear_gamma2"]), num(t["shear_gamma1"])) / 2)
    offsets = {
        "theta_E (fit / drawn - 1)": num(p["fit_theta_e"]) / num(t["lens_theta_e"]) - 1,
        "axis ratio (fit - drawn)": num(p["fit_axis_ratio"]) - q_true,
        "position angle, drawn q < 0.9 (deg)": np.where(
            q_true < 0.9, angle_difference(num(p["fit_position_angle"]), pa_true), np.nan),
        "centre (arcsec from the drawn)": np.hypot(num(p["fit_lens_x"]) - num(t["lens_center_x"]),
                                                    num(p["fit_lens_y"]) - num(t["lens_center_y"])),
        "shear (fit - drawn)": num(p["fit_shear"]) - shear_true,
        "shear angle, drawn shear > 0.03 (deg)": np.where(
            shear_true > 0.03, angle_difference(num(p["fit_shear_angle"]), shear_angle_true), np.nan),
        "deflector light (mag, fit - drawn)": num(p["fit_lens_light_mag"]) - num(t["lens_light_magnitude"]),
        "source (mag, fit - drawn)": num(p["fit_source_mag"]) - num(t["source_magnitude"]),
    }
    labels = np.array(t["label"], dtype=str)
    classes = sorted(set(labels), key=["no_sub", "cdm", "axion"].index)
    summary = {name: {c: robust(v[labels == c]) for c in classes} for name, v in offsets.items()}
    answered = {c: int((labels == c).sum()) for c in classes}
    total = {c: truth["label"].count(c) for c in classes}
    print("| quantity | " + " | ".join(f"`{c}` ({answered[c]} of {total[c]} `ok`)" for c in classes) + " |")
    print("|---|" + "---|" * len(classes))
    for name, per_class in summary.items():
        cells = []
        for c in classes:
            s = per_class[c]
            cells.append("-" if s is None else f"{s['median']:+.4f} +- {s['scatter']:.4f} (90% within {s['abs_q90']:.4f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    report = {"answered_ok": answered, "rows": total, "offsets": summary}
    if "fit_theta_e_err" in p:
        err = lambda name: num(p[name + "_err"])  # noqa: E731
        differences = {
            "theta_E": (num(p["fit_theta_e"]) - num(t["lens_theta_e"]), err("fit_theta_e")),
            "axis ratio": (offsets["axis ratio (fit - drawn)"], err("fit_axis_ratio")),
            "position angle, drawn q < 0.9": (offsets["position angle, drawn q < 0.9 (deg)"], err("fit_position_angle")),
            "centre x": (num(p["fit_lens_x"]) - num(t["lens_center_x"]), err("fit_lens_x")),
            "centre y": (num(p["fit_lens_y"]) - num(t["lens_center_y"]), err("fit_lens_y")),
            "shear": (offsets["shear (fit - drawn)"], err("fit_shear")),
            "shear angle, drawn shear > 0.03": (offsets["shear angle, drawn shear > 0.03 (deg)"], err("fit_shear_angle")),
            "deflector light (mag)": (offsets["deflector light (mag, fit - drawn)"], err("fit_lens_light_mag")),
            "source (mag)": (offsets["source (mag, fit - drawn)"], err("fit_source_mag")),
        }
        pulls = {}
        print()
        print("| pull, (fit - drawn) / error | " + " | ".join(f"`{c}`" for c in classes) + " |")
        print("|---|" + "---|" * len(classes))
        for name, (difference, error) in differences.items():
            cells, pulls[name] = [], {}
            for c in classes:
                d, e = difference[labels == c], error[labels == c]
                keep = np.isfinite(d) & np.isfinite(e) & (e > 0)
                pull = d[keep] / e[keep]
                s = robust(pull)
                if s is None:
                    cells.append("-")
                    continue
                s["within_1"] = float(np.mean(np.abs(pull) < 1))
                s["median_error"] = float(np.median(e[keep]))
                s["with_error"] = int(keep.sum())
                pulls[name][c] = s
                cells.append(f"{s['median']:+.2f}, scatter {s['scatter']:.2f}, {s['within_1']:.2f} within 1 "
                             f"(error {s['median_error']:.2g}, {s['with_error']} rows)")
            print(f"| {name} | " + " | ".join(cells) + " |")
        report["pulls"] = pulls
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
