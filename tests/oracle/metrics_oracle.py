"""Golden classification metrics from scikit-learn for lensmae's eval module.

Cases with continuous scores, heavily tied scores (rounded to 0.1) and a
near-perfect classifier, and weighted binary AUCs; writes fixtures/oracle/classification_metrics.json.
Run from the repository root: python tests/oracle/metrics_oracle.py
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

rng = np.random.default_rng(3)
cases = []
for name, n, k, sharpness, rounding in [("continuous", 300, 3, 1.0, None), ("ties", 200, 3, 1.0, 1),
                                         ("near_perfect", 150, 3, 6.0, None), ("four_classes", 240, 4, 0.7, 2)]:
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + sharpness * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if rounding is not None:
        probs = np.round(probs, rounding)
        probs = probs / probs.sum(1, keepdims=True)
    # Models output float32: compute the goldens on exactly those values (ties included).
    probs = probs.astype(np.float32)
    pred = probs.argmax(1)
    cases.append({
        "name": name, "num_classes": k, "labels": labels.tolist(), "probs": probs.tolist(),
        "macro_auc": roc_auc_score(labels, probs, average="macro", multi_class="ovr"),
        "per_class_auc": [roc_auc_score(labels == c, probs[:, c]) for c in range(k)],
        "accuracy": accuracy_score(labels, pred),
        "macro_f1": f1_score(labels, pred, average="macro", zero_division=0),
        "confusion": confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
    })
# Weighted binary AUCs (what `evaluate` reweights the reference class with):
# continuous and tied scores, weights with zeros.
weighted = []
rng = np.random.default_rng(4)
for name, n, rounding in [("weighted_continuous", 200, None), ("weighted_ties", 150, 1)]:
    positive = rng.random(n) < 0.4
    scores = rng.normal(size=n) + 0.8 * positive
    if rounding is not None:
        scores = np.round(scores, rounding)
    weights = rng.exponential(size=n) * (rng.random(n) > 0.1)
    weighted.append({"name": name, "scores": scores.tolist(), "positive": positive.tolist(),
                     "weights": weights.tolist(),
                     "auc": roc_auc_score(positive, scores, sample_weight=weights)})
os.makedirs(os.path.join("fixtures", "oracle"), exist_ok=True)
with open(os.path.join("fixtures", "oracle", "classification_metrics.json"), "w") as f:
    json.dump({"sklearn": sklearn.__version__, "cases": cases, "weighted_binary": weighted}, f)
print("wrote", len(cases), "cases with scikit-learn", sklearn.__version__)
