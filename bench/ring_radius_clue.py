"""How much of a classifier's `axion` signal is the ring's size?

A vortex adds mass, so `axion` rings are a little larger on average. This prints, on
the `axion` and `no_sub` rows of a labelled dataset, the AUC of the ring radius that
`theta_e_rescale.blind_frame` measures on each cutout, that of a classifier's
log(p_axion / p_no_sub) from a `lensmae predict --keep id` table, and that of a
logistic regression on both (10-fold cross-validated): if the last is no higher than
the classifier's, the classifier already uses the ring's size.

    python bench/ring_radius_clue.py DATASET.parquet PREDICTIONS.parquet
"""
import sys

import numpy as np
import pyarrow.parquet as pq
from lens_images import read_images
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from theta_e_rescale import blind_frame


def main():
    table = pq.read_table(sys.argv[1])
    predictions = pq.read_table(sys.argv[2]).to_pandas().set_index("id")
    pixel_scale = float(table.schema.metadata[b"lensmae:pixel_scale"])
    images = read_images(table)
    label = table.column("label").to_numpy(zero_copy_only=False)
    rows = predictions.loc[table.column("id").to_numpy()]
    radius = np.array([blind_frame(image)[1] for image in images]) * pixel_scale
    pair = np.isin(label, ["axion", "no_sub"]) & np.isfinite(radius)
    is_axion = label[pair] == "axion"
    score = np.log(rows["p_axion"].to_numpy()[pair]) - np.log(rows["p_no_sub"].to_numpy()[pair])
    both = cross_val_predict(
        LogisticRegression(), np.column_stack([score, radius[pair]]), is_axion, cv=10, method="decision_function"
    )
    print(f"{pair.sum()} axion and no_sub rows ({(~np.isfinite(radius)).sum()} without a ring radius left out)")
    print(f"AUC axion vs no_sub: ring radius {roc_auc_score(is_axion, radius[pair]):.4f}, "
          f"classifier {roc_auc_score(is_axion, score):.4f}, both (logistic, 10-fold) {roc_auc_score(is_axion, both):.4f}; "
          f"correlation of the two {np.corrcoef(score, radius[pair])[0, 1]:.3f}")


if __name__ == "__main__":
    main()
