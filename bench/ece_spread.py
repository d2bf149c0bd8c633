"""How far an expected calibration error (ECE) is from what its sample resolves.

    python bench/ece_spread.py LABELLED.parquet NAME=PRED.parquet [NAME_B=PRED_B.parquet]
        [--reps 2000] [--seed 0] [--goal]

LABELLED, PRED and --goal as for bench/paired_auc.py (`id`, `label_idx` and the class list in
the metadata; `id` and `p_<class>` per row). The ECE is `lensmae evaluate`'s: the top
class's probability in 15 equal-width bins over [0, 1], the count-weighted mean of
|accuracy - confidence|. For each table prints its ECE, the 95% interval of a bootstrap
over the lenses, and the ECE a perfectly calibrated model with the same probabilities
would show on this many lenses (labels drawn from its own probabilities: the median and
the 95th percentile over the draws): a finite sample puts a floor under the ECE. With a
second table, the paired bootstrap of the difference A - B. Prints JSON.
Needs numpy, pyarrow (and scikit-learn, through paired_auc).
"""
import json
import sys

import numpy as np

from paired_auc import labelled_rows, parse_args, probabilities

BINS = 15


def ece(labels, p):
    predicted = p.argmax(1)
    confidence = p[np.arange(len(p)), predicted]
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    correct = (predicted == labels).astype(float)
    total = 0.0
    for b in range(BINS):
        m = bins == b
        if m.any():
            total += m.sum() / len(p) * abs(correct[m].mean() - confidence[m].mean())
    return total


def calibrated_floor(p, rng, reps):
    cumulative = p.cumsum(1) / p.sum(1, keepdims=True)
    draws = []
    for _ in range(reps):
        labels = (rng.random((len(p), 1)) > cumulative).sum(1)
        draws.append(ece(labels, p))
    return float(np.median(draws)), float(np.percentile(draws, 95))


def main(argv):
    labelled, named, reps, seed, goal = parse_args(argv)
    if labelled is None or len(named) not in (1, 2):
        sys.exit(__doc__)
    classes, ids, labels = labelled_rows(labelled, goal)
    tables = [(name, probabilities(path, ids, classes)) for name, path in named]
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(ids), len(ids)) for _ in range(reps)]
    out = {"lenses": len(ids), "reps": reps, "seed": seed, "bins": BINS, "goal": goal}
    boot = {}
    for name, p in tables:
        boot[name] = np.array([ece(labels[k], p[k]) for k in resamples])
        median, p95 = calibrated_floor(p, rng, reps)
        out[name] = {
            "ece": round(ece(labels, p), 4),
            "ece_95": [round(float(np.percentile(boot[name], q)), 4) for q in (2.5, 97.5)],
            "calibrated_floor_median": round(median, 4),
            "calibrated_floor_95th": round(p95, 4),
        }
    if len(tables) == 2:
        (a, _), (b, _) = tables
        d = boot[a] - boot[b]
        out["difference"] = round(out[a]["ece"] - out[b]["ece"], 4)
        out["difference_95"] = [round(float(np.percentile(d, q)), 4) for q in (2.5, 97.5)]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
