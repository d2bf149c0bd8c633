"""What a limit on `fit_core_chi2` would keep of a residual classifier's predictions:
for each limit, the rows at or below it (the others flagged), their macro AUC, and the
share of their `no_sub` lenses called substructure; and the quantiles of `fit_core_chi2`.

    python bench/core_chi2_effect.py PREDICTIONS.parquet DATASET.parquet [LIMIT ...]

DATASET holds the `label` of each row in the same order (as `predict` keeps it).
Limits default to 10.13 (infer::residuals::CORE_CHI2_TYPICAL), 27.856 (chi^2 of 6 degrees
of freedom at p = 1e-4), 116 (the 0.995 quantile of the classifier's calibration lenses)
and none. Needs numpy, pyarrow
and scikit-learn.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

CLASSES = ["axion", "cdm", "no_sub"]


def main():
    predictions, dataset = sys.argv[1], sys.argv[2]
    limits = [float(v) for v in sys.argv[3:]] or [10.13, 27.856, 116.0, float("inf")]
    p = pq.read_table(predictions).to_pydict()
    labels = np.array(pq.read_table(dataset, columns=["label"]).column("label").to_pylist())
    y = np.array([CLASSES.index(label) for label in labels])
    nan = lambda column: np.array([np.nan if v is None else v for v in column], dtype=float)
    core = nan(p["fit_core_chi2"])
    probs = np.stack([nan(p["p_" + c]) for c in CLASSES], axis=1)
    answered = np.isfinite(probs).all(axis=1) & np.isfinite(core)
    out = {"rows": len(y), "answered": int(answered.sum()),
           "fit_core_chi2_quantiles": {q: round(float(np.nanquantile(core, q)), 1) for q in [0.1, 0.5, 0.9, 0.99]}}
    for limit in limits:
        kept = answered & (core <= limit)
        no_sub = kept & (y == 2)
        out["limit %g" % limit] = {
            "flagged": round(float(np.mean(answered & (core > limit))), 4),
            "kept": int(kept.sum()),
            "macro_auc": round(float(np.mean([roc_auc_score(y[kept] == k, probs[kept, k]) for k in range(3)])), 4),
            "no_sub_called_substructure": round(float(np.mean(probs[no_sub].argmax(axis=1) != 2)), 3),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
