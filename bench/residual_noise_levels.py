"""The noise levels of a table of smooth-lens residuals, as `lensmae model calibrate` bounds them.

    python bench/residual_noise_levels.py RESIDUALS.parquet

RESIDUALS: `lensmae simulate --smooth-lens-residuals` output (its `image` column holds
the residuals). Each residual's level is 1.4826 times the median absolute deviation from
its median (`model::domain::residual_noise`; medians of an even count are the mean of
the two middle values). Prints JSON: the levels' quantiles overall and per class, and
the rows above the 0.995 quantile with their chi^2 per pixel and class. Needs numpy and
pyarrow.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    table = pq.read_table(sys.argv[1], columns=["image", "label"])
    column = table.column("image").combine_chunks()
    storage = column.storage if hasattr(column, "storage") else column
    residuals = storage.flatten().to_numpy(zero_copy_only=False).reshape(len(table), -1).astype(np.float64)
    levels = 1.4826 * np.median(np.abs(residuals - np.median(residuals, axis=1, keepdims=True)), axis=1)
    chi2 = (residuals**2).mean(axis=1)
    labels = np.asarray(table.column("label").to_pylist())
    quantiles = [0.001, 0.01, 0.5, 0.95, 0.99, 0.995, 0.999]
    top = np.quantile(levels, 0.995)
    print(json.dumps({
        "rows": len(levels),
        "quantiles": {str(q): round(float(np.quantile(levels, q)), 4) for q in quantiles},
        "per_class": {c: {str(q): round(float(np.quantile(levels[labels == c], q)), 4) for q in (0.5, 0.99, 1.0)}
                      for c in sorted(set(labels))},
        "above_0.995": [{"level": round(float(levels[i]), 3), "chi2": round(float(chi2[i]), 2), "label": labels[i]}
                        for i in np.argsort(levels)[::-1] if levels[i] > top],
    }, indent=1))


if __name__ == "__main__":
    main()
