"""What holding the smooth-lens fit among galaxy-scale lenses changed: for the same
labelled lenses predicted before and after (`lensmae predict --keep id` with a
classifier of smooth-lens residuals), how many fits ended beyond the envelope before
(an Einstein radius below one pixel or beyond the cutout's side, a shear above 0.5, the
mass's axis ratio at the parametrisation's cap), how many fits moved and which way, how
the answers on the runaway fits fared, and the rows whose fit now ends on the envelope's
edge (flagged `out_of_domain`) with their accuracy.

    python bench/fit_envelope_summary.py DATASET.parquet BEFORE.parquet AFTER.parquet
        [PIXEL_SCALE] [SIZE]

PIXEL_SCALE (0.1) and SIZE (64): the recipe's grid. Needs numpy and pyarrow. Prints JSON.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq

CLASSES = ["axion", "cdm", "no_sub"]


def load(path):
    table = pq.read_table(path).to_pydict()
    return {i: {k: table[k][r] for k in table} for r, i in enumerate(table["id"])}


def main(dataset, before_path, after_path, pixel_scale=0.1, size=64):
    pixel_scale, size = float(pixel_scale), int(size)
    drawn = pq.read_table(dataset, columns=["id", "label", "lens_theta_e", "source_magnitude"]).to_pydict()
    truth = dict(zip(drawn["id"], drawn["label"]))
    theta_e = dict(zip(drawn["id"], drawn["lens_theta_e"]))
    source_magnitude = dict(zip(drawn["id"], drawn["source_magnitude"]))
    before, after = load(before_path), load(after_path)
    ids = sorted(before)

    def correct(row, i):
        p = [row[f"p_{c}"] for c in CLASSES]
        return None if None in p else CLASSES[int(np.argmax(p))] == truth[i]

    def accuracy(rows):
        answers = [c for c in rows if c is not None]
        return round(float(np.mean(answers)), 4) if answers else None

    q_cap = (1 - 0.9) / (1 + 0.9)
    beyond = [i for i in ids if not (pixel_scale <= (before[i]["fit_theta_e"] or 0) <= pixel_scale * size)
              or (before[i]["fit_shear"] or 0) > 0.5 or (before[i]["fit_axis_ratio"] or 1) <= q_cap + 1e-9]
    chi2 = np.array([[before[i]["fit_chi2"] or np.nan, after[i]["fit_chi2"] or np.nan] for i in ids])
    moved = np.abs(chi2[:, 1] / chi2[:, 0] - 1) > 1e-6
    edge_margin = 0.01
    edge = [i for i in ids if after[i]["fit_theta_e"] is not None and not (
        pixel_scale * (1 + edge_margin) <= after[i]["fit_theta_e"] <= pixel_scale * size * (1 - edge_margin)
        and after[i]["fit_shear"] < 0.5 * (1 - edge_margin)
        and after[i]["fit_axis_ratio"] > (1 - 0.9 * (1 - edge_margin)) / (1 + 0.9 * (1 - edge_margin)))]
    others = [i for i in ids if i not in set(edge)]
    print(json.dumps({
        "lenses": len(ids),
        "fits_beyond_the_envelope_before": len(beyond),
        "of_them_answered_ok_before": sum(before[i]["status"] == "ok" for i in beyond),
        "their_accuracy_before_after": [accuracy(correct(before[i], i) for i in beyond),
                                        accuracy(correct(after[i], i) for i in beyond)],
        "their_median_fit_chi2_before_after": [float(np.median([before[i]["fit_chi2"] for i in beyond])),
                                               float(np.median([after[i]["fit_chi2"] for i in beyond]))],
        "their_fit_chi2_range_before": [float(min(before[i]["fit_chi2"] for i in beyond)),
                                        float(max(before[i]["fit_chi2"] for i in beyond))],
        "their_theta_e_range_before": [min(before[i]["fit_theta_e"] for i in beyond),
                                       max(before[i]["fit_theta_e"] for i in beyond)],
        "their_largest_shear_before": max(before[i]["fit_shear"] for i in beyond),
        "their_median_source_magnitude": float(np.median([source_magnitude[i] for i in beyond])),
        "each_before_after": {i: {"label": truth[i], "drawn_theta_e": round(theta_e[i], 3),
                                  "theta_e": [float(f"{r[i]['fit_theta_e']:.3g}") for r in (before, after)],
                                  "shear": [float(f"{r[i]['fit_shear']:.3g}") for r in (before, after)],
                                  "fit_chi2": [round(r[i]["fit_chi2"], 2) for r in (before, after)]} for i in beyond},
        "their_theta_e_within_5pct_before_after": [
            sum(abs(r[i]["fit_theta_e"] / theta_e[i] - 1) < 0.05 for i in beyond) for r in (before, after)],
        "fits_moved": int(moved.sum()),
        "moved_lower_higher": [int((moved & (chi2[:, 1] < chi2[:, 0])).sum()),
                               int((moved & (chi2[:, 1] > chi2[:, 0])).sum())],
        "on_the_edge_after": len(edge),
        "edge_status_after": sorted({after[i]["status"] for i in edge}),
        "edge_accuracy": accuracy(correct(after[i], i) for i in edge),
        "accuracy_of_the_rest": accuracy(correct(after[i], i) for i in others),
        "status_before": {s: sum(before[i]["status"] == s for i in ids) for s in sorted({before[i]["status"] for i in ids})},
        "status_after": {s: sum(after[i]["status"] == s for i in ids) for s in sorted({after[i]["status"] for i in ids})},
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
