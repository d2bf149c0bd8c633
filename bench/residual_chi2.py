"""How well one number, the chi^2 left by a smooth-lens fit, tells lenses with
substructure from lenses without: the detection AUC (`axion` / `cdm` against every
`no_sub`) of `chi2_fit` from `examples/residual_probe.rs`'s fits.csv, over all lenses
and over the issue's goal subset (`sub_snr` >= 10), beside `chi2_truth` (the chi^2
against the drawn smooth lens, which no observer has) and, optionally, the same
lenses' detection AUC from a classifier's predictions (1 - p(no_sub), joined by id).
With --against REFERENCE_FITS.csv (fits of the same lenses from another start), how
often this fit ends above or below the reference's chi^2, and the renders it took.

    python bench/residual_chi2.py FITS.csv [NAME=PREDICTIONS.parquet ...] [--against REFERENCE_FITS.csv]

Needs numpy, pyarrow and scikit-learn.
"""
import csv
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from paired_auc import probabilities


def against(rows, reference_path):
    reference = {r["id"]: float(r["chi2_fit"]) for r in csv.DictReader(open(reference_path))}
    cls = np.array([r["class"] for r in rows])
    excess = np.array([float(r["chi2_fit"]) - reference[r["id"]] for r in rows])
    renders = np.array([int(r["renders"]) for r in rows])
    print(f"  chi2_fit minus {reference_path}'s, and renders a fit:")
    for k in ["axion", "cdm", "no_sub", None]:
        m = cls == k if k else np.ones(len(cls), bool)
        print(f"    {k or 'all'}: median {np.median(excess[m]):+.1f}, > +100 {np.mean(excess[m] > 100):.3f}, "
              f"> +25 {np.mean(excess[m] > 25):.3f}, < -25 {np.mean(excess[m] < -25):.3f}; renders median "
              f"{np.median(renders[m]):.0f}, mean {renders[m].mean():.0f}, 90th percentile {np.percentile(renders[m], 90):.0f}")


def main(path, predictions):
    reference = None
    if "--against" in predictions:
        i = predictions.index("--against")
        reference = predictions[i + 1]
        predictions = predictions[:i] + predictions[i + 2:]
    rows = list(csv.DictReader(open(path)))
    ids = np.array([int(r["id"]) for r in rows])
    cls = np.array([r["class"] for r in rows])
    sub_snr = np.array([float(r["sub_snr"]) for r in rows])
    scores = {
        "chi2_fit": np.array([float(r["chi2_fit"]) for r in rows]),
        "chi2_truth": np.array([float(r["chi2_truth"]) for r in rows]),
    }
    # Another simulator's lenses have no truth here (chi2_truth NaN): left out.
    scores = {n: s for n, s in scores.items() if np.isfinite(s).all()}
    for spec in predictions:
        name, file = spec.split("=", 1)
        scores[name] = 1.0 - probabilities(file, [int(i) for i in ids], ["no_sub"])[:, 0]
    no_sub = cls == "no_sub"
    print(f"{path}: {no_sub.sum()} no_sub lenses; no_sub chi2_fit mean {scores['chi2_fit'][no_sub].mean():.1f}, "
          f"sd {scores['chi2_fit'][no_sub].std():.1f}")
    for k in ["axion", "cdm"]:
        for subset, label in [(np.ones(len(cls), bool), "all"), (sub_snr >= 10, "sub_snr >= 10")]:
            mask = ((cls == k) & subset) | no_sub
            aucs = ", ".join(f"{n} {roc_auc_score(cls[mask] == k, s[mask]):.3f}" for n, s in scores.items())
            print(f"  {k} ({label}, {((cls == k) & subset).sum()} lenses) against no_sub: detection AUC {aucs}")
    if reference:
        against(rows, reference)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
