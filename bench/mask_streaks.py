"""Flagged pixels on a lens's arc, and what they do to a residual classifier's answers.

    python bench/mask_streaks.py write DATASET.parquet MASKED.parquet
    python bench/mask_streaks.py compare ORIGINAL_PREDICTIONS.parquet MASKED_PREDICTIONS.parquet

`write` copies a `lensmae simulate` table with a 3 x 7 streak of NaN pixels (what
`--nan-policy zero` makes of a survey's flagged cosmic ray or bad column) centred on
each image's brightest pixel 6-20 pixels from the centre, its arc; the test
`flagged_pixels_are_left_out_of_the_fit_and_the_answers_hold` masks the same way.
`compare` matches rows by `id` and prints JSON: each table's statuses, and the largest
and median per-row max |dp| over the `p_*` columns, over all rows and over the rows
that both tables answered in domain (a status starting with `ok`). Needs numpy and pyarrow.
"""
import json
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def streak_mask(image):
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    centre = (image.shape[0] - 1) / 2
    radius = np.hypot(rows - centre, cols - centre)
    on_arc = np.where((radius > 6) & (radius < 20), image, -np.inf)
    row, col = np.unravel_index(np.argmax(on_arc), image.shape)
    mask = np.zeros(image.shape, bool)
    mask[max(row - 1, 0) : row + 2, max(col - 3, 0) : col + 4] = True
    return mask


def write(dataset, out):
    table = pq.read_table(dataset)
    column = table.column("image").combine_chunks()
    storage = column.storage if hasattr(column, "storage") else column
    side = int(round(np.sqrt(storage.type.list_size)))
    images = storage.flatten().to_numpy(zero_copy_only=False).reshape(-1, side, side).copy()
    for image in images:
        image[streak_mask(image)] = np.nan
    flat = pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1), pa.float32()), side * side)
    index = table.schema.get_field_index("image")
    pq.write_table(table.set_column(index, pa.field("image", flat.type), flat), out)
    print(f"{len(images)} images, {int(np.isnan(images).sum())} pixels masked")


def read(path):
    table = pq.read_table(path).to_pydict()
    order = np.argsort(table["id"])
    return {k: np.asarray(v, dtype=object)[order] for k, v in table.items()}


def compare(original, masked):
    a, b = read(original), read(masked)
    if not np.array_equal(a["id"], b["id"]):
        sys.exit("the two tables hold other rows")
    classes = sorted(k for k in a if k.startswith("p_"))

    def dp(rows):
        moved = [max(abs(float(a[c][r]) - float(b[c][r])) for c in classes) for r in rows]
        return {"rows": len(rows), "max": round(max(moved, default=0.0), 4), "median": round(float(np.median(moved)) if moved else 0.0, 4)}

    answered = [r for r in range(len(a["id"])) if all(a[c][r] is not None and b[c][r] is not None for c in classes)]
    in_domain = [r for r in answered if a["status"][r].startswith("ok") and b["status"][r].startswith("ok")]
    print(json.dumps({
        "status_original": dict(Counter(a["status"])),
        "status_masked": dict(Counter(b["status"])),
        "answered_both": dp(answered),
        "ok_both": dp(in_domain),
        "fit_chi2_median": [round(float(np.median([x for x in t["fit_chi2"] if x is not None])), 3) for t in (a, b)],
    }, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("write", "compare"):
        sys.exit(__doc__)
    (write if sys.argv[1] == "write" else compare)(sys.argv[2], sys.argv[3])
