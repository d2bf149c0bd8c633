"""Move every cutout of a lensmae survey dataset by whole pixels, as a survey cutout
centred a pixel or two off its deflector is: rows and columns rolled (the strip that
wraps round is sky far from the lens), every other column kept.

    python bench/shift_lenses.py DATASET.parquet OUT.parquet DX DY

DX: columns to the right; DY: rows down. Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main(src, out, dx, dy):
    table = pq.read_table(src)
    index = table.schema.get_field_index("image")
    tensor = table.column(index).combine_chunks()
    side = tensor.type.shape[0]
    images = tensor.storage.flatten().to_numpy().reshape(-1, side, side)
    moved = np.roll(images, (int(dy), int(dx)), axis=(1, 2)).astype(np.float32)
    storage = pa.FixedSizeListArray.from_arrays(pa.array(moved.reshape(-1)), side * side)
    column = pa.ExtensionArray.from_storage(tensor.type, storage)
    pq.write_table(table.set_column(index, table.schema.field(index), column), out)


if __name__ == "__main__":
    main(*sys.argv[1:])
