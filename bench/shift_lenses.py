"""Move every cutout of a lensmae survey dataset by whole pixels, as a survey cutout
centred a pixel or two off its deflector is: rows and columns rolled (the strip that
wraps round is sky far from the lens), every other column kept.

    python bench/shift_lenses.py DATASET.parquet OUT.parquet DX DY

DX: columns to the right; DY: rows down. Needs numpy and pyarrow.
"""
import sys

import numpy as np
import pyarrow.parquet as pq
from lens_images import read_images, with_images


def main(src, out, dx, dy):
    table = pq.read_table(src)
    moved = np.roll(read_images(table), (int(dy), int(dx)), axis=(1, 2))
    pq.write_table(with_images(table, moved), out)


if __name__ == "__main__":
    main(*sys.argv[1:])
