"""The rows of one split of a `finetune` run, as a dataset of their own (schema
metadata kept), e.g. to calibrate or score a checkpoint on its own validation images.

    python bench/split_rows.py CHECKPOINT.split.json validation|test|train OUT.parquet [N]

N keeps the split's first N rows. Needs pyarrow.
"""
import json
import sys

import pyarrow.parquet as pq


def main():
    split = json.load(open(sys.argv[1]))
    rows = split[sys.argv[2]]
    if len(sys.argv) > 4:
        rows = rows[:int(sys.argv[4])]
    pq.write_table(pq.read_table(split["data"]).take(rows), sys.argv[3])
    print(json.dumps({"data": split["data"], "split": sys.argv[2], "rows": len(rows), "out": sys.argv[3]}))


if __name__ == "__main__":
    main()
