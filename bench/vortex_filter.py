"""Score the vortex matched filter of `examples/vortex_probe.rs`, alone and beside a
residual classifier's answers on the same lenses.

    python bench/vortex_filter.py PROBE.csv [PREDICTIONS.parquet]

PROBE.csv: the probe's lines (id, class, sub_snr, delta_chi2, ...). PREDICTIONS: the
residual classifier's `predict` table on the same lenses (same `id`), e.g.
`lensmae predict --model bundled:survey-residual-classifier --input
HELDOUT-RESIDUALS.parquet --out P.parquet`.

Prints:
- the AUC of `delta_chi2` (how much a vortex lowers chi^2 below the best smooth
  lens) for `axion` against `no_sub` and against the rest, on all lenses and on the
  issue's goal subset (`sub_snr` >= 10, and every `no_sub`);
- with PREDICTIONS: the classifier's macro AUC on the same rows, and that of a
  multinomial logistic regression on the classifier's log-probabilities and
  log(1 + delta_chi2), by 5-fold cross-validation (each lens scored by a model
  fitted on the other folds, stratified by class, seed 0), with a paired bootstrap
  of the difference (2,000 resamples of lenses, seed 0).
"""
import csv
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

CLASSES = ["axion", "cdm", "no_sub"]


def read_probe(path):
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            truth = r.get("delta_chi2_truth_start") or r["delta_chi2"]
            rows[int(r["id"])] = (r["class"], float(r["sub_snr"]), max(float(r["delta_chi2"]), 0.0), float(truth))
    return rows


def macro_auc(labels, probs):
    return float(np.mean([roc_auc_score(labels == k, probs[:, k]) for k in range(len(CLASSES))]))


def main():
    probe = read_probe(sys.argv[1])
    ids = np.array(sorted(probe))
    cls = np.array([probe[i][0] for i in ids])
    snr = np.array([probe[i][1] for i in ids])
    dchi2 = np.array([probe[i][2] for i in ids])
    # The `axion` lenses' statistic when the fit is also started at the drawn vortex
    # (the probe's TRUTH_START=1; the others keep the search's).
    dchi2_truth = np.array([probe[i][3] for i in ids])
    goal = (cls == "no_sub") | (snr >= 10)
    print(f"lenses: {len(ids)} ({', '.join(f'{c} {np.sum(cls == c)}' for c in CLASSES)}); goal subset {goal.sum()}")
    for name, rows in [("all", np.ones(len(ids), bool)), ("goal subset", goal)]:
        axion = cls[rows] == "axion"
        vs_no_sub = rows & ((cls == "axion") | (cls == "no_sub"))
        print(
            f"delta_chi2, {name}: axion vs no_sub AUC {roc_auc_score(cls[vs_no_sub] == 'axion', dchi2[vs_no_sub]):.3f}, "
            f"axion vs rest {roc_auc_score(axion, dchi2[rows]):.3f}; with the axion fits also started at the "
            f"drawn vortex {roc_auc_score(cls[vs_no_sub] == 'axion', dchi2_truth[vs_no_sub]):.3f}, "
            f"{roc_auc_score(axion, dchi2_truth[rows]):.3f}"
        )
    for c in CLASSES:
        q = np.percentile(dchi2[cls == c], [10, 50, 90])
        print(f"  {c}: delta_chi2 10th/50th/90th percentile {q[0]:.1f} / {q[1]:.1f} / {q[2]:.1f}", end="")
        q = np.percentile(dchi2_truth[cls == c], [10, 50, 90])
        print(f"; with the truth start {q[0]:.1f} / {q[1]:.1f} / {q[2]:.1f}" if c == "axion" else "")
    if len(sys.argv) < 3:
        return

    import pyarrow.parquet as pq

    table = pq.read_table(sys.argv[2]).to_pydict()
    by_id = {i: k for k, i in enumerate(table["id"])}
    missing = [i for i in ids if i not in by_id]
    if missing:
        sys.exit(f"{len(missing)} probe lenses are not in the predictions (first: {missing[0]})")
    k = np.array([by_id[i] for i in ids])
    probs = np.stack([np.asarray(table[f"p_{c}"], dtype=float)[k] for c in CLASSES], axis=1)
    labels = np.array([CLASSES.index(c) for c in cls])
    for statistic, values in [("delta_chi2", dchi2), ("delta_chi2 with the truth start", dchi2_truth)]:
        features = np.column_stack([np.log(np.clip(probs, 1e-6, 1.0)), np.log1p(values)])
        stacked = np.zeros_like(probs)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(features, labels):
            model = LogisticRegression(max_iter=2000).fit(features[train], labels[train])
            stacked[test] = model.predict_proba(features[test])
        rng = np.random.default_rng(0)
        for name, rows in [("all", np.ones(len(ids), bool)), ("goal subset", goal)]:
            y, a, b = labels[rows], probs[rows], stacked[rows]
            base, both = macro_auc(y, a), macro_auc(y, b)
            diffs = []
            for _ in range(2000):
                s = rng.integers(0, len(y), len(y))
                if len(set(y[s])) == len(CLASSES):
                    diffs.append(macro_auc(y[s], b[s]) - macro_auc(y[s], a[s]))
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            per_class = lambda p: ", ".join(f"{c} {roc_auc_score(y == j, p[:, j]):.3f}" for j, c in enumerate(CLASSES))
            print(
                f"{name}: classifier macro AUC {base:.3f} ({per_class(a)}); with {statistic} {both:.3f} "
                f"({per_class(b)}); difference {both - base:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            )


if __name__ == "__main__":
    main()
