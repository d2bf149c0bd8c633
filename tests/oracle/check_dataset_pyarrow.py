"""Read a lensmae dataset with pyarrow, as a survey user would, and check it.

    lensmae simulate --preset deeplense-model2 --n-per-class 1000 --seed 1 --out d
    python tests/oracle/check_dataset_pyarrow.py d/dataset.parquet

Checks that the image column is a fixed-shape tensor pyarrow understands, that
the classes are balanced, and reports the Einstein-ring radius of the mean image of
each class (the peak of the azimuthally averaged profile, in pixels).
"""
import collections
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

path = sys.argv[1]
table = pq.read_table(path)
column = table.column("image").combine_chunks()
assert isinstance(column.type, pa.FixedShapeTensorType), column.type
images = column.to_numpy_ndarray()
labels = np.array(table.column("label").to_pylist())
size = images.shape[1]
yy, xx = np.indices((size, size))
radius = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2)
rings = {}
for label in sorted(set(labels)):
    mean = images[labels == label].mean(0)
    profile = [mean[(radius >= r) & (radius < r + 1)].mean() for r in range(size // 2)]
    rings[label] = int(np.argmax(profile))
meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items() if k != b"lensmae:config"}
print(json.dumps({"pyarrow": pa.__version__, "rows": table.num_rows, "image_type": str(column.type),
                  "tensor_shape": list(images.shape), "dtype": str(images.dtype),
                  "class_counts": dict(collections.Counter(labels.tolist())), "ring_radius_px": rings,
                  "metadata": meta}, indent=1))
