"""The mean of two or more models' class probabilities on the same rows: a plain
ensemble, to pair against one of its members with bench/paired_auc.py.

    python bench/mean_predictions.py OUT.parquet PRED_A.parquet PRED_B.parquet [...]

Each PRED is a `lensmae predict --keep id` table (or bench/resnet18_baseline.py's
PREDICTIONS); they must hold the same ids in the same order. OUT gets `id` and the
mean `p_<class>` of every class column the first table has. Needs numpy, pyarrow.
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    if len(paths) < 2:
        sys.exit(__doc__)
    tables = [pq.read_table(path) for path in paths]
    ids = tables[0].column("id").to_pylist()
    for path, table in zip(paths[1:], tables[1:]):
        if table.column("id").to_pylist() != ids:
            sys.exit(f"{path}: not the rows of {paths[0]} in the same order")
    classes = [name for name in tables[0].column_names if name.startswith("p_")]
    columns = {"id": tables[0].column("id")}
    for name in classes:
        mean = np.mean([table.column(name).to_numpy() for table in tables], axis=0)
        columns[name] = pa.array(mean.astype(np.float32))
    pq.write_table(pa.table(columns), out)


if __name__ == "__main__":
    main()
