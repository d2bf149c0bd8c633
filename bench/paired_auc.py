"""Is one model ahead of another on the same lenses? A paired bootstrap of the
macro AUC difference between two tables of predictions of the same labelled rows.

    python bench/paired_auc.py LABELLED.parquet NAME_A=PRED_A.parquet NAME_B=PRED_B.parquet
        [--reps 2000] [--seed 0] [--goal]

LABELLED: a `lensmae simulate` dataset (`id`, `label_idx`, the class list in the
`lensmae:class_names` metadata); each PRED: a table with `id` and `p_<class>` per
row (`lensmae predict --keep id`, or `bench/resnet18_baseline.py`'s PREDICTIONS).
Every labelled row must be predicted by both. The macro AUC is one-vs-rest, as
scikit-learn's `roc_auc_score(..., multi_class="ovr", average="macro")`; the lenses
are resampled with replacement, the same resample for both models, REPS times.
Prints JSON: each model's AUC, the difference A - B, its 95% percentile interval,
and the fraction of resamples in which A is ahead. `--goal` keeps only the issue's goal
subset of the labelled rows: substructure with `sub_snr` >= 10, and every `no_sub`.
Needs numpy, pyarrow, scikit-learn.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score


def probabilities(path, ids, classes):
    table = pq.read_table(path, columns=["id"] + ["p_" + c for c in classes]).to_pydict()
    row_of = {i: k for k, i in enumerate(table["id"])}
    missing = [i for i in ids if i not in row_of]
    if missing:
        sys.exit(f"{path}: {len(missing)} labelled ids have no prediction (first {missing[0]})")
    rows = [row_of[i] for i in ids]
    p = np.array([[table["p_" + c][r] for c in classes] for r in rows], dtype=float)
    if not np.isfinite(p).all():
        sys.exit(f"{path}: null or non-finite probabilities")
    return p


def macro_auc(labels, p):
    return roc_auc_score(labels, p, multi_class="ovr", average="macro", labels=list(range(p.shape[1])))


def parse_args(argv):
    """LABELLED, then NAME=PATH pairs and --reps / --seed / --goal, in any order."""
    reps, seed, goal, named = 2000, 0, False, []
    args = iter(argv)
    labelled = next(args, None)
    for a in args:
        if a == "--reps":
            reps = int(next(args))
        elif a == "--seed":
            seed = int(next(args))
        elif a == "--goal":
            goal = True
        else:
            named.append(a.split("=", 1))
    return labelled, named, reps, seed, goal


def labelled_rows(labelled, goal):
    """The class list, and the ids and label indices of LABELLED's rows (with `goal`,
    only substructure with `sub_snr` >= 10 and every `no_sub`)."""
    meta = pq.read_schema(labelled).metadata or {}
    classes = json.loads(meta[b"lensmae:class_names"])
    table = pq.read_table(labelled, columns=["id", "label_idx"] + (["label", "sub_snr"] if goal else [])).to_pydict()
    keep = np.ones(len(table["id"]), bool)
    if goal:
        keep = np.array([label == "no_sub" or snr >= 10 for label, snr in zip(table["label"], table["sub_snr"])])
    ids = [i for i, k in zip(table["id"], keep) if k]
    return classes, ids, np.array(table["label_idx"])[keep]


def main(argv):
    labelled, named, reps, seed, goal = parse_args(argv)
    if labelled is None or len(named) != 2:
        sys.exit(__doc__)
    classes, ids, labels = labelled_rows(labelled, goal)
    (name_a, path_a), (name_b, path_b) = named
    pa, pb = probabilities(path_a, ids, classes), probabilities(path_b, ids, classes)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(reps):
        k = rng.integers(0, len(ids), len(ids))
        diffs.append(macro_auc(labels[k], pa[k]) - macro_auc(labels[k], pb[k]))
    diffs = np.array(diffs)
    auc_a, auc_b = macro_auc(labels, pa), macro_auc(labels, pb)
    print(json.dumps({
        "lenses": len(ids), "reps": reps, "seed": seed,
        name_a: round(auc_a, 4), name_b: round(auc_b, 4),
        "difference": round(auc_a - auc_b, 4),
        "difference_95": [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)],
        f"fraction_{name_a}_ahead": round(float((diffs > 0).mean()), 3),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
