"""How far apart a residual classifier's answers on a cutout's fit and refits lie
(`refit_answer_spread`, `lensmae predict --fit-refits N`), and how many rows each
threshold on it would add to those whose refits already land elsewhere in chi^2
(`fit_refit_spread` above 4).

    python bench/refit_answer_spread.py PREDICTIONS.parquet [...]

Prints, per table: the statuses, the 50/90/95/99th percentiles and the largest
answer spread, the same over the rows whose refits land within 4 in chi^2, and, for
thresholds 0.005, 0.01 and 0.02, how many rows lie above (all, and of those within 4
in chi^2: the rows the answer check adds). Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow.parquet as pq


def values(table, name):
    return np.array([np.nan if v is None else v for v in table[name]], dtype=float)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        table = pq.read_table(path).to_pydict()
        answers, chi2 = values(table, "refit_answer_spread"), values(table, "fit_refit_spread")
        status = np.array(table["status"])
        together = chi2 <= 4
        quantiles = [50, 90, 95, 99, 100]
        print(f"{path}: {len(answers)} rows, {int(np.isfinite(answers).sum())} with refits; statuses",
              {str(s): int((status == s).sum()) for s in sorted(set(status))})
        print("  answer spread, percentiles 50/90/95/99/max:", np.nanpercentile(answers, quantiles).round(4).tolist())
        print("  where the refits land within 4 in chi^2:  ",
              np.nanpercentile(answers[together], quantiles).round(4).tolist())
        for threshold in [0.005, 0.01, 0.02]:
            above = answers > threshold
            print(f"  above {threshold}: {int(above.sum())} rows, {int((above & together).sum())} of them within 4 in chi^2")


if __name__ == "__main__":
    main()
