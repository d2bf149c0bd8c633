"""Where one LSDB worker's time goes: each partition's `lensmae.lsdb.predict_frame`
timed inside the worker (start, end, rows), and one partition timed in this process
(LSDB's read of it, `pyarrow.parquet.read_table` of its file, `Model.predict` and
`predict_frame`), with `MALLOC_TRIM_THRESHOLD_` as the environment sets it (Dask's
nanny sets 65536 for its workers: run this with and without it).

    python bench/lsdb_worker_timing.py [CATALOGUE]   (default target/lsdb-scale/cutouts)

Prints one JSON line for the worker run (seconds in all, per-call seconds and the gaps
between calls) and one for the single partition. Needs the catalogue of
bench/lsdb_scale.py and lensmae (pip install ./python[lsdb]).
"""
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import lsdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import lensmae
import lensmae.lsdb

ROOT = pathlib.Path(__file__).resolve().parents[1]
CATALOGUE = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "lsdb-scale" / "cutouts")
CALLS = pathlib.Path(tempfile.gettempdir()) / "lensmae-worker-calls.txt"

_predict_frame = lensmae.lsdb.predict_frame


def timed_predict_frame(frame, model, **options):
    started = time.time()
    result = _predict_frame(frame, model, **options)
    with open(CALLS, "a") as f:
        f.write(f"{started:.3f} {time.time():.3f} {len(frame)}\n")
    return result


lensmae.lsdb.predict_frame = timed_predict_frame


def worker_run():
    from dask.distributed import Client, LocalCluster

    CALLS.unlink(missing_ok=True)
    out = pathlib.Path(tempfile.mkdtemp()) / "predictions"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        started = time.time()
        catalog = lsdb.read_hats(CATALOGUE)
        predicted = lensmae.lsdb.predict_catalog(catalog, lensmae.load_model(threads=1), shape=(64, 64))
        predicted.write_catalog(out, as_collection=False, progress_bar=False)
        seconds = time.time() - started
    shutil.rmtree(out.parent, ignore_errors=True)
    calls = [tuple(map(float, line.split())) for line in CALLS.read_text().splitlines()]
    calls = sorted(c for c in calls if c[2] > 0)  # the empty frame LSDB passes for its schema
    gaps = [round(b[0] - a[1], 2) for a, b in zip(calls, calls[1:])]
    return {"run": "1 worker x 1 dask thread", "seconds": round(seconds, 2),
            "before_first_call": round(calls[0][0] - started, 2),
            "predict_frame_seconds": [round(c[1] - c[0], 2) for c in calls],
            "predict_frame_total": round(sum(c[1] - c[0] for c in calls), 2), "gaps": gaps,
            "gaps_total": round(sum(gaps), 2)}


def one_partition():
    catalog = lsdb.read_hats(CATALOGUE)
    started = time.perf_counter()
    frame = catalog.partitions[0].compute()
    lsdb_read = time.perf_counter() - started
    path = sorted((CATALOGUE / "dataset").rglob("Npix=*.parquet"))[0]
    started = time.perf_counter()
    pq.read_table(path)
    read_table = time.perf_counter() - started
    model = lensmae.load_model(threads=1)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    started = time.perf_counter()
    model.predict(table, shape=(64, 64))
    predict = time.perf_counter() - started
    started = time.perf_counter()
    _predict_frame(frame, model, shape=(64, 64))
    frame_seconds = time.perf_counter() - started
    return {"run": "one partition in this process", "rows": len(frame),
            "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "lsdb_read_s": round(lsdb_read, 2), "pq_read_table_s": round(read_table, 2),
            "Model.predict_s": round(predict, 2), "predict_frame_s": round(frame_seconds, 2)}


if __name__ == "__main__":
    print(json.dumps(worker_run()), flush=True)
    print(json.dumps(one_partition()), flush=True)
