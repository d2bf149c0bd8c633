"""AUROC of `ood_score` between a model's own held-out predictions and others.

    python bench/ood_auroc.py IN_DOMAIN_PREDICTIONS.parquet NAME=PREDICTIONS.parquet ...

Prints, as JSON, for the in-domain file the fraction flagged (`in_domain` false), and
for each other file the AUROC of separating it from the in-domain rows by
`ood_score` (ties counted half, as scikit-learn's roc_auc_score) and its flagged
fraction.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def auroc(negative, positive):
    scores = np.concatenate([negative, positive])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    rank_sum = ranks[len(negative):].sum()
    return (rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))


def read(path):
    t = pq.read_table(path, columns=["ood_score", "in_domain"])
    scores = t.column("ood_score").to_numpy(zero_copy_only=False)
    # A NaN score (non-finite features) is as far out as can be.
    scores = np.where(np.isnan(scores), np.inf, scores)
    flagged = 1.0 - np.mean(t.column("in_domain").to_numpy(zero_copy_only=False).astype(float))
    return scores, flagged


def main():
    own, own_flagged = read(sys.argv[1])
    out = {"in_domain": {"file": sys.argv[1], "rows": len(own), "flagged": own_flagged,
                         "median_score": float(np.median(own))}}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        scores, flagged = read(path)
        out[name] = {"rows": len(scores), "auroc": auroc(own, scores), "flagged": flagged,
                     "median_score": float(np.median(scores))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
