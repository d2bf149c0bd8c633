"""Did a change of the simulator change its output? Column by column, the cells in
which two `lensmae simulate` Parquet datasets of the same recipe, seed and size differ.
Also for two `lensmae predict` tables of the same rows.

    python bench/compare_datasets.py NEW.parquet OLD.parquet [--shared]

`--shared`: compare the columns both tables have (one written by a build with more
columns), and name those only one has.

For each column that differs: how many cells, the largest absolute and relative
difference (image columns cell by cell, as float32). Silent for equal columns; the
last line counts the rows compared. Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow.parquet as pq


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--shared"]):
        sys.exit(__doc__)
    new, old = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
    shared = [name for name in new.column_names if name in old.column_names]
    if sys.argv[3:] == ["--shared"] and new.num_rows == old.num_rows:
        for side, table in (("new", new), ("old", old)):
            only = [name for name in table.column_names if name not in shared]
            if only:
                print(f"only in the {side} table: {', '.join(only)}")
    elif new.column_names != old.column_names or new.num_rows != old.num_rows:
        sys.exit(f"not the same layout: {new.num_rows} rows {new.column_names} / {old.num_rows} rows {old.column_names}")
    for name in shared:
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
    print(f"compared {len(shared)} columns of {new.num_rows} rows")


if __name__ == "__main__":
    main()
