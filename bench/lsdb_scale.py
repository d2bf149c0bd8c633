"""Rows/s and peak memory of lensmae over a HATS catalogue: the CLI, and
lensmae.lsdb.predict_catalog on a Dask LocalCluster of 1 and 2 worker processes.

    python bench/lsdb_scale.py [ROWS] [WORKDIR] [partition]

Builds (once) a HATS catalogue of ROWS (default 100,000) 64x64 cutouts: the 12
DeepLense Model II images of fixtures/catalog with a little noise, at random sky
positions, ~10,000 rows per partition. Then times, each writing a HATS catalogue of
predictions with the bundled classifier: `lensmae predict` (peak RSS from
/usr/bin/time), and predict_catalog + write_catalog with 1 and 2 workers of one
thread each, and with 1 worker of 2 Dask threads sharing the model's one compute
thread (peak RSS per worker from VmHWM). Prints one JSON line per run.
With `partition`, times only lensmae's share of one partition instead: Model.predict
on its Arrow table, and lensmae.lsdb.predict_frame on its pandas frame.
Needs lensmae (pip install ./python[lsdb]) and the release CLI (cargo build --release).
"""
import json
import pathlib
import resource
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cli_timing import timed_predict

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
WORK = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "target" / "lsdb-scale")


def build_catalogue(path):
    import lsdb

    if (path / "hats.properties").exists() or (path / "collection.properties").exists():
        return
    images = pq.read_table(ROOT / "fixtures/catalog/deeplense-model2-12.parquet", columns=["image"])
    base = images.column("image").combine_chunks().to_numpy_ndarray().reshape(12, -1)
    rng = np.random.default_rng(1)
    pixels = base[np.arange(ROWS) % 12] + rng.normal(0, 1e-3, (ROWS, base.shape[1])).astype(np.float32)
    frame = pd.DataFrame({
        "id": np.arange(ROWS, dtype=np.int64),
        "ra": rng.uniform(0, 360, ROWS),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, ROWS))),
        "image": pd.Series(list(pixels.astype(np.float32)), dtype=pd.ArrowDtype(pa.list_(pa.float32()))),
    })
    catalog = lsdb.from_dataframe(frame, catalog_name="cutouts", lowest_order=0, highest_order=5,
                                  partition_rows=10_000)
    catalog.write_catalog(path, as_collection=False)


def run_cli(catalogue, out, threads):
    env = dict(__import__("os").environ, RAYON_NUM_THREADS=str(threads))
    seconds, peak_mb = timed_predict(catalogue, out, env)
    return {"run": f"cli {threads} thread(s)", "rows": ROWS, "seconds": round(seconds, 2), "rows_per_s": round(ROWS / seconds, 1),
            "peak_rss_mb": round(peak_mb, 1)}


def peak_rss_mb():
    # VmHWM: this process's peak resident set (getrusage's ru_maxrss would count a
    # forked worker's parent too).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_lsdb(catalogue, out, workers, dask_threads=1):
    import lsdb
    from dask.distributed import Client, LocalCluster

    import lensmae
    import lensmae.lsdb

    with LocalCluster(n_workers=workers, threads_per_worker=dask_threads, processes=True, dashboard_address=None,
                      memory_limit="8GiB") as cluster, Client(cluster) as client:
        # One compute thread per worker (the model's own pool: with two Dask threads,
        # one reads the next partition while the other waits on that one thread, the
        # CLI's shape of one compute thread and a reader); the load is not timed, as in
        # a warm pipeline.
        client.run(lambda: __import__("lensmae").load_model(threads=1))
        started = time.perf_counter()
        catalog = lsdb.read_hats(catalogue)
        predicted = lensmae.lsdb.predict_catalog(catalog, lensmae.load_model(threads=1), shape=(64, 64))
        predicted.write_catalog(out, overwrite=True, as_collection=False, progress_bar=False)
        seconds = time.perf_counter() - started
        peaks = client.run(peak_rss_mb)
    return {"run": f"lsdb+dask {workers} worker(s) x {dask_threads} dask thread(s)", "rows": ROWS, "seconds": round(seconds, 2),
            "rows_per_s": round(ROWS / seconds, 1), "peak_rss_mb_per_worker": [round(v, 1) for v in peaks.values()]}


def time_one_partition(catalogue):
    import lensmae
    import lensmae.lsdb

    first = sorted((catalogue / "dataset").rglob("*.parquet"))[0]
    table = pq.read_table(first)
    model = lensmae.load_model(threads=1)
    started = time.perf_counter()
    model.predict(table, shape=(64, 64))
    predict = time.perf_counter() - started
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    started = time.perf_counter()
    lensmae.lsdb.predict_frame(frame, model, shape=(64, 64))
    frame_seconds = time.perf_counter() - started
    n = table.num_rows
    return {"run": "one partition, 1 thread", "rows": n, "Model.predict_rows_per_s": round(n / predict, 1),
            "predict_frame_rows_per_s": round(n / frame_seconds, 1)}


if __name__ == "__main__":
    WORK.mkdir(parents=True, exist_ok=True)
    catalogue = WORK / "cutouts"
    build_catalogue(catalogue)
    if sys.argv[3:] == ["partition"]:
        print(json.dumps(time_one_partition(catalogue)))
        sys.exit()
    print(json.dumps({"machine": f"{__import__('os').cpu_count()} cores", "rows": ROWS}), flush=True)
    for threads in (1, 2):
        print(json.dumps(run_cli(catalogue, WORK / f"cli-{threads}", threads)), flush=True)
    for workers, dask_threads in ((1, 1), (1, 2), (2, 1)):
        print(json.dumps(run_lsdb(catalogue, WORK / f"lsdb-{workers}", workers, dask_threads)), flush=True)
