"""Logistic-regression baseline on min-max-normalised pixels (scikit-learn), on
exactly the train/test rows of a lensmae fine-tuning run (its `.split.json`).

    python bench/baseline_logreg.py runs/x/data/dataset.parquet runs/x/scratch.split.json

Prints macro one-vs-rest AUC, accuracy and macro F1 on the test rows as JSON, for
two inputs: the min-max pixels as they are, and the min-max pixels standardised per
pixel over the training rows (what `lensmae finetune --standardise-pixels` does; in
noise-free recipes the faint wings far from the ring carry the class signal, and
standardising is what lets a linear model weigh them).
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

table = pq.read_table(sys.argv[1])
split = json.load(open(sys.argv[2]))
assert isinstance(split["data"], str), "a split of datasets joined (finetune --data a b) is not read here"
images = table.column("image").combine_chunks().to_numpy_ndarray().reshape(table.num_rows, -1).astype(np.float64)
lo, hi = images.min(1, keepdims=True), images.max(1, keepdims=True)
x = (images - lo) / np.where(hi > lo, hi - lo, 1.0)
y = np.asarray(table.column("label_idx").to_pylist())
row = {int(i): k for k, i in enumerate(table.column("id").to_pylist())}
train = [row[i] for i in split["train"] + split["validation"]]
test = [row[i] for i in split["test"]]
mean, std = x[train].mean(0), x[train].std(0)
inputs = {"min-max pixels": x, "min-max pixels, standardised per pixel": (x - mean) / np.maximum(std, 1e-10)}
results = {}
for name, features in inputs.items():
    p = LogisticRegression(max_iter=3000).fit(features[train], y[train]).predict_proba(features[test])
    results[name] = {"macro_auc": roc_auc_score(y[test], p, multi_class="ovr", average="macro"),
                     "accuracy": accuracy_score(y[test], p.argmax(1)),
                     "macro_f1": f1_score(y[test], p.argmax(1), average="macro")}
print(json.dumps({"model": "logistic regression (sklearn, C=1, lbfgs)", "train_rows": len(train), "test_rows": len(test),
                  "results": results}, indent=1))
