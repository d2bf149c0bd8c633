"""Out-of-domain test sets for a classifier trained on one simulated domain.

    python bench/ood_sets.py HELDOUT.parquet OUT_DIR [SEED]

From HELDOUT (a labelled dataset of the model's own domain, not used in training or
calibration) writes into OUT_DIR, as Parquet files with an `image` tensor column:
- `uint16.parquet`, `int16.parquet`: the same images stored as 16-bit integers over
  each image's range (uint16; int16 with BSCALE/BZERO), read back as floats, the way
  many survey products store float images, with HELDOUT's `psf_fwhm` and
  `exposure_time` columns when it has them (the same lenses, observed the same way);
- `float16.parquet`: the same images in a float16 list column (11 significant bits),
  with the same columns;
- `uniform-noise.parquet`: uniform noise in [0, 1);
- `constant.parquet`: constant images of varied levels;
- `gaussian-noise.parquet`: Gaussian noise around a random level.
Each has as many rows as HELDOUT. `bench/ood_check.sh` runs a model over them.
"""
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


# What a survey knows of each cutout besides its pixels; a residual classifier fits with them.
OBSERVATION_COLUMNS = ["psf_fwhm", "exposure_time"]


def write(images, path, extra=None):
    n, h, w = images.shape
    field = pa.field("image", pa.list_(pa.field("item", pa.float32()), h * w), nullable=False,
                     metadata={"ARROW:extension:name": "arrow.fixed_shape_tensor",
                               "ARROW:extension:metadata": json.dumps({"shape": [h, w]})})
    column = pa.FixedSizeListArray.from_arrays(pa.array(images.astype(np.float32).ravel()), h * w)
    fields, columns = [pa.field("id", pa.int64()), field], [pa.array(np.arange(n, dtype=np.int64)), column]
    for name, values in (extra or {}).items():
        fields.append(pa.field(name, values.type))
        columns.append(values)
    pq.write_table(pa.table(columns, schema=pa.schema(fields)), path)


def write_float16(images, path, extra=None):
    n, h, w = images.shape
    column = pa.FixedSizeListArray.from_arrays(pa.array(images.astype(np.float16).ravel()), h * w)
    columns = {"id": pa.array(np.arange(n, dtype=np.int64)), "image": column, **(extra or {})}
    pq.write_table(pa.table(columns), path)


def quantised(images, signed):
    lo = images.min(axis=(1, 2), keepdims=True)
    hi = images.max(axis=(1, 2), keepdims=True)
    bscale = (hi - lo) / 65535.0
    bzero = lo + (32768.0 * bscale if signed else 0.0)
    stored = np.round((images - bzero) / bscale)
    return (bzero + stored * bscale).astype(np.float32)


def main():
    heldout, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    table = pq.read_table(heldout)
    images = table.column("image").combine_chunks().to_numpy_ndarray().astype(np.float64)
    observed = {c: table.column(c).combine_chunks() for c in OBSERVATION_COLUMNS if c in table.column_names}
    n, h, w = images.shape
    write(quantised(images, signed=False), f"{out}/uint16.parquet", observed)
    write(quantised(images, signed=True), f"{out}/int16.parquet", observed)
    write_float16(images, f"{out}/float16.parquet", observed)
    write(rng.uniform(0, 1, (n, h, w)), f"{out}/uniform-noise.parquet")
    write(np.ones((n, h, w)) * rng.uniform(-1, 10, (n, 1, 1)), f"{out}/constant.parquet")
    write(rng.normal(rng.uniform(0, 5, (n, 1, 1)), 1.0, (n, h, w)), f"{out}/gaussian-noise.parquet")
    print(json.dumps({"rows": n, "out": out}))


if __name__ == "__main__":
    main()
