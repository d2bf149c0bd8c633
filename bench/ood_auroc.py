"""AUROC of `ood_score` between a model's own held-out predictions and others.

    python bench/ood_auroc.py IN_DOMAIN_PREDICTIONS.parquet NAME=PREDICTIONS.parquet ...

Prints, as JSON, for the in-domain file the fraction flagged (`in_domain` false), and
for each other file the AUROC of separating it from the in-domain rows by
`ood_score` (ties counted half, as scikit-learn's roc_auc_score) and its flagged
fraction. A row `predict` could not answer (a failed fit: no score, `in_domain` null)
counts as flagged and as far out as can be; `failed` says how many there were.
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
    scores = t.column("ood_score").to_numpy(zero_copy_only=False).astype(float)
    # A NaN or missing score (non-finite features, a failed fit) is as far out as can be.
    scores = np.where(np.isnan(scores), np.inf, scores)
    in_domain = t.column("in_domain").fill_null(False).to_numpy(zero_copy_only=False).astype(float)
    failed = t.column("in_domain").null_count
    return scores, 1.0 - np.mean(in_domain), failed


def main():
    own, own_flagged, own_failed = read(sys.argv[1])
    out = {"in_domain": {"file": sys.argv[1], "rows": len(own), "flagged": own_flagged, "failed": own_failed,
                         "median_score": float(np.median(own))}}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        scores, flagged, failed = read(path)
        out[name] = {"rows": len(scores), "auroc": auroc(own, scores), "flagged": flagged, "failed": failed,
                     "median_score": float(np.median(scores))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
