"""How much a model's answers move between two tables of predictions of the same
cutouts stored two ways (float32 against a uint16 / int16 copy, `bench/ood_sets.py`).

    python bench/storage_dp.py PREDICTIONS_A.parquet PREDICTIONS_B.parquet

Rows are matched by `id`. Prints JSON: the largest and median per-row max |dp| over
the `p_*` columns, the fraction of rows above the issue's 0.02, and, when both tables
carry `fit_chi2` (a classifier of smooth-lens residuals), how far the fits' chi^2 per
pixel moved. Needs numpy and pyarrow.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def read(path):
    table = pq.read_table(path).to_pydict()
    order = np.argsort(table["id"])
    return {k: np.asarray(v)[order] for k, v in table.items()}


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    if not np.array_equal(a["id"], b["id"]):
        sys.exit("the two tables do not hold the same ids")
    classes = sorted(k for k in a if k.startswith("p_"))
    dp = np.max(np.abs(np.stack([a[c].astype(float) - b[c].astype(float) for c in classes])), axis=0)
    out = {"rows": len(dp), "max_dp": float(dp.max()), "median_dp": float(np.median(dp)),
           "fraction_over_0.02": float(np.mean(dp > 0.02))}
    if "fit_chi2" in a and "fit_chi2" in b:
        moved = np.abs(a["fit_chi2"].astype(float) - b["fit_chi2"].astype(float))
        out.update({"fit_chi2_moved_median": float(np.median(moved)), "fit_chi2_moved_max": float(moved.max()),
                    "fit_chi2_moved_over_0.05": float(np.mean(moved > 0.05))})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
