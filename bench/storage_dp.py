"""How much a model's answers move between two tables of predictions of the same
cutouts stored two ways (float32 against a uint16 / int16 copy, `bench/ood_sets.py`).

    python bench/storage_dp.py PREDICTIONS_A.parquet PREDICTIONS_B.parquet [--rows]

Rows are matched by `id`. Prints JSON: the largest and median per-row max |dp| over
the `p_*` columns, the fraction of rows above the issue's 0.02, and, when both tables
carry `fit_chi2` (a classifier of smooth-lens residuals), how far the fits' chi^2 per
pixel moved. When both tables carry `fit_refit_spread` (`predict --fit-refits N`), it
also splits the rows by `status`: how many each table answered `unstable_fit`, how many
of the rows above 0.02 either table flagged so, the largest |dp| of the rows both
answered `ok` (and how many above 0.02 one of them answered `ok`), and the 50/90/95% quantiles of A's refit spreads (given one table twice,
those of that table alone). `--rows` then lists the rows above 0.02, one a line: id,
max |dp| and, for residual classifiers, each table's `fit_chi2` (and `fit_refit_spread`,
`refit_answer_spread` and status when checked). Needs numpy and pyarrow.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def read(path):
    table = pq.read_table(path).to_pydict()
    order = np.argsort(table["id"])
    return {k: np.asarray(v)[order] for k, v in table.items()}


def number(value, decimals):
    """A value of a nullable column (null where no refits ran), as text."""
    return "null" if value is None else f"{value:.{decimals}f}"


def main():
    args = [a for a in sys.argv[1:] if a != "--rows"]
    if len(args) != 2:
        sys.exit(__doc__)
    a, b = read(args[0]), read(args[1])
    if not np.array_equal(a["id"], b["id"]):
        sys.exit("the two tables do not hold the same ids")
    classes = sorted(k for k in a if k.startswith("p_"))
    dp = np.max(np.abs(np.stack([a[c].astype(float) - b[c].astype(float) for c in classes])), axis=0)
    out = {"rows": len(dp), "max_dp": float(dp.max()), "median_dp": float(np.median(dp)),
           "fraction_over_0.02": float(np.mean(dp > 0.02))}
    has_fits = "fit_chi2" in a and "fit_chi2" in b
    if has_fits:
        moved = np.abs(a["fit_chi2"].astype(float) - b["fit_chi2"].astype(float))
        out.update({"fit_chi2_moved_median": float(np.median(moved)), "fit_chi2_moved_max": float(moved.max()),
                    "fit_chi2_moved_over_0.05": float(np.mean(moved > 0.05))})
    # `predict --fit-refits 0` writes the column with nulls only.
    checked = has_fits and all(any(v is not None for v in t.get("fit_refit_spread", [])) for t in (a, b))
    if checked:
        unstable = (a["status"] == "unstable_fit") | (b["status"] == "unstable_fit")
        both_ok = (a["status"] == "ok") & (b["status"] == "ok")
        over = dp > 0.02
        out.update({"unstable_fit_a": int(np.sum(a["status"] == "unstable_fit")),
                    "unstable_fit_b": int(np.sum(b["status"] == "unstable_fit")),
                    "unstable_fit_either": int(np.sum(unstable)),
                    "over_0.02": int(np.sum(over)), "over_0.02_flagged_unstable": int(np.sum(over & unstable)),
                    "both_ok": int(np.sum(both_ok)),
                    "max_dp_both_ok": float(dp[both_ok].max()) if both_ok.any() else None,
                    "over_0.02_both_ok": int(np.sum(over & both_ok)),
                    # A user holding only one of the copies sees its status alone.
                    "over_0.02_either_ok": int(np.sum(over & ((a["status"] == "ok") | (b["status"] == "ok")))),
                    "refit_spread_a_quantiles_50_90_95": np.nanpercentile(
                        a["fit_refit_spread"].astype(float), [50, 90, 95]).round(2).tolist()})
    print(json.dumps(out))
    if "--rows" in sys.argv[1:]:
        for k in np.flatnonzero(dp > 0.02):
            fits = f" {a['fit_chi2'][k]:.3f} {b['fit_chi2'][k]:.3f}" if has_fits else ""
            if checked:
                fits += f" spread {number(a['fit_refit_spread'][k], 1)} {number(b['fit_refit_spread'][k], 1)}"
                if "refit_answer_spread" in a and "refit_answer_spread" in b:
                    fits += (f" answers {number(a['refit_answer_spread'][k], 4)}"
                             f" {number(b['refit_answer_spread'][k], 4)}")
                fits += f" {a['status'][k]} {b['status'][k]}"
            print(f"{a['id'][k]} {dp[k]:.3f}{fits}")


if __name__ == "__main__":
    main()
