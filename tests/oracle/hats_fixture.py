"""A small HATS catalogue of 16x16 cutouts written by LSDB itself, for lensmae's
stage tests (fixtures/hats-cutouts), and a check that LSDB opens and joins what
`lensmae predict` writes from it.

    python tests/oracle/hats_fixture.py make                # -> fixtures/hats-cutouts
    python tests/oracle/hats_fixture.py check PREDICTIONS   # a predict --out folder

Needs lsdb (0.11.1 was used): pip install lsdb.
"""
import os
import shutil
import sys
import tempfile

import lsdb
import numpy as np
import pandas as pd

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FIXTURE = os.path.join(ROOT, "fixtures", "hats-cutouts")


def make():
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"id": np.arange(n, dtype=np.int64), "ra": rng.uniform(0, 360, n),
                       "dec": rng.uniform(-60, 60, n)})
    df["image"] = list(rng.random((n, 256), dtype=np.float32))
    cat = lsdb.from_dataframe(df, catalog_name="cutouts", ra_column="ra", dec_column="dec",
                              lowest_order=0, highest_order=2, partition_rows=12)
    with tempfile.TemporaryDirectory() as tmp:
        cat.to_hats(os.path.join(tmp, "out"), catalog_name="cutouts")
        src = os.path.join(tmp, "out", "cutouts")
        shutil.rmtree(FIXTURE, ignore_errors=True)
        # The catalogue without the sky maps (not needed to read it).
        shutil.copytree(src, FIXTURE, ignore=shutil.ignore_patterns("*.fits", "per_partition_statistics.parquet"))
    print("wrote", FIXTURE, len(cat.get_healpix_pixels()), "partitions")


def check(predictions):
    cutouts = lsdb.open_catalog(FIXTURE)
    pred = lsdb.open_catalog(predictions)
    same = pred.get_healpix_pixels() == cutouts.get_healpix_pixels()
    joined = cutouts.join(pred, left_on="id", right_on="id", suffixes=("", "_pred")).compute()
    ok = same and len(joined) == len(cutouts.compute()) and bool((joined["ra"] == joined["ra_pred"]).all())
    print({"same_partitions": same, "joined_rows": len(joined), "ok": ok})
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    make() if sys.argv[1] == "make" else check(sys.argv[2])
