"""What storage in 16 bits does to the pixel levels a min-max model reads, and how the
bundled classifier answers float16 copies without and with its floor on distinct
pixel values (RESULTS.md, "float16 storage, and a floor on distinct pixel values").

    python bench/distinct_pixels.py [LENSMAE_BINARY]

1. For 300 images a class of each DeepLense preset (seed 15, as the bundled
   classifier's calibration): the fraction of each image's pixels holding distinct
   values, as float32, as float16 and as uint16 over the image's range.
2. The fixture's 12 Model II images stored as a float16 list column, through
   `lensmae predict` with `bundled:classifier`: per row the `ood_score` against the
   checkpoint's threshold (what the threshold alone would have said), the class
   called and its probability against the label, and the status given.
Needs numpy and pyarrow.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
LENSMAE = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/lensmae")


def fractions(images):
    flat = images.reshape(len(images), -1)
    return np.array([len(np.unique(image)) / image.size for image in flat])


def uint16_copy(images):
    low = images.min(axis=(1, 2), keepdims=True)
    span = np.ptp(images, axis=(1, 2), keepdims=True)
    return np.round((images - low) / span * 65535)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ["deeplense-model1", "deeplense-model2", "deeplense-model3"]:
            out = Path(tmp) / preset
            subprocess.run([LENSMAE, "simulate", "--preset", preset, "--n-per-class", "300", "--seed", "15",
                            "--out", str(out), "--quiet"], check=True)
            images = pq.read_table(out / "dataset.parquet").column("image").combine_chunks().to_numpy_ndarray()
            f32, f16, u16 = fractions(images), fractions(images.astype(np.float16)), fractions(uint16_copy(images))
            print(json.dumps({"preset": preset, "images": len(images),
                              "float32": [round(float(f32.min()), 4), round(float(f32.max()), 4)],
                              "float32_q001": round(float(np.quantile(f32, 0.001)), 4),
                              "float16_max": round(float(f16.max()), 4), "uint16_max": round(float(u16.max()), 4)}))

        source = pq.read_table(ROOT / "fixtures/catalog/deeplense-model2-12.parquet")
        images = source.column("image").combine_chunks().to_numpy_ndarray()
        column = pa.FixedSizeListArray.from_arrays(pa.array(images.astype(np.float16).ravel()), 4096)
        table = Path(tmp) / "float16.parquet"
        pq.write_table(pa.table({"id": source.column("id"), "image": column}), table)
        predictions = Path(tmp) / "predictions.parquet"
        subprocess.run([LENSMAE, "predict", "--input", str(table), "--out", str(predictions)], check=True,
                       capture_output=True)
        info = json.loads(subprocess.run([LENSMAE, "model", "info", "bundled:classifier"], check=True,
                                         capture_output=True, text=True).stdout)
        threshold = info["calibration"]["ood_threshold"]
        rows = pq.read_table(predictions).to_pylist()
        labels = source.column("label").to_pylist()
        for row, label in zip(rows, labels):
            print(json.dumps({"row": row["row"], "label": label, "pred_class": row["pred_class"],
                              "max_prob": round(row["max_prob"], 4), "ood_score": round(row["ood_score"], 3),
                              "under_threshold": row["ood_score"] <= threshold, "status": row["status"]}))
        passing = sum(row["ood_score"] <= threshold for row in rows)
        wrong = sum(row["ood_score"] <= threshold and row["pred_class"] != label for row, label in zip(rows, labels))
        print(json.dumps({"threshold": threshold, "rows": len(rows), "under_threshold": passing,
                          "under_threshold_and_wrong": wrong,
                          "flagged": sum(row["status"] == "out_of_domain" for row in rows)}))


if __name__ == "__main__":
    main()
