"""Did a change of the simulator change its output? Column by column, the cells in
which two `lensmae simulate` Parquet datasets of the same recipe, seed and size differ.

    python bench/compare_datasets.py NEW.parquet OLD.parquet

For each column that differs: how many cells, the largest absolute and relative
difference (image columns cell by cell, as float32). Silent for equal columns; the
last line counts the rows compared. Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow.parquet as pq


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    new, old = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
    if new.column_names != old.column_names or new.num_rows != old.num_rows:
        sys.exit(f"not the same layout: {new.num_rows} rows {new.column_names} / {old.num_rows} rows {old.column_names}")
    for name in new.column_names:
        a, b = new.column(name), old.column(name)
        if a.equals(b):
            continue
        try:
            x = np.array(a.to_pylist(), dtype=float)
            y = np.array(b.to_pylist(), dtype=float)
        except (TypeError, ValueError):
            print(f"{name} differs (not numeric)")
            continue
        diff = np.abs(x - y)
        relative = diff / np.maximum(np.abs(y), 1e-30)
        print(f"{name} differs: cells {int((diff > 0).sum())} of {diff.size}, "
              f"max abs {np.nanmax(diff):.3g}, max rel {np.nanmax(relative):.3g}")
    print(f"compared {new.num_rows} rows")


if __name__ == "__main__":
    main()
