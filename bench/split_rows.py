"""The rows of one split of a `finetune` run, as a dataset of their own (schema
metadata kept), e.g. to calibrate or score a checkpoint on its own validation images.

    python bench/split_rows.py CHECKPOINT.split.json validation|test|train OUT.parquet [N]

N keeps the split's first N rows. A run on several datasets joined (`--data a b`)
names each row `[dataset index, id]`; its rows are taken from each dataset in turn.
Ids are row numbers, as `lensmae simulate` writes them. Needs pyarrow.
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    split = json.load(open(sys.argv[1]))
    rows = split[sys.argv[2]]
    if len(sys.argv) > 4:
        rows = rows[:int(sys.argv[4])]
    if isinstance(split["data"], str):
        taken = pq.read_table(split["data"]).take(rows)
    else:
        tables = [pq.read_table(path) for path in split["data"]]
        # The first dataset's metadata, as `finetune` records the first's recipe.
        taken = pa.concat_tables(
            [tables[part].take([row]) for part, row in rows], promote_options="none"
        ).replace_schema_metadata(tables[0].schema.metadata)
    pq.write_table(taken, sys.argv[3])
    print(json.dumps({"data": split["data"], "split": sys.argv[2], "rows": len(rows), "out": sys.argv[3]}))


if __name__ == "__main__":
    main()
