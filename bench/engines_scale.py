"""Rows/s of lensmae over a folder of Parquet files: the CLI, Spark's mapInArrow
through lensmae.spark, and Ray Data's map_batches through lensmae.ray, on this
machine's cores, each writing Parquet predictions with the bundled classifier.

    python bench/engines_scale.py [ROWS] [WORKDIR] [CORES]

Builds (once) WORKDIR/cutouts (default target/engines-scale): ROWS (default 100,000)
64x64 cutouts as `lsdb_scale.py` makes them (the 12 Model II fixture images plus 1e-3
Gaussian noise, seed 1), written as a dataset of ~10,000-row `part-K.parquet` files, as
Spark and pyarrow write them. Then: `lensmae predict --input WORKDIR/cutouts` with CORES
threads (peak RSS from /usr/bin/time); Spark `local[CORES]`, one task per core, the model
with `threads=1` (4,096 rows per Arrow batch); Ray with `num_cpus=CORES`, tasks of one
CPU, the model with `threads=1` (batches of 4,096 rows). The engines' start-up and model
loads are not timed (each runs a warm-up over 12 rows first), the reading of the input
and the writing of the output are. Needs lensmae with its `[spark,ray]` extras, Java 17
and the release CLI. Prints one JSON line per run. (Until 2026-12-07 this script was
`bench/spark_mapinarrow.py`, the Spark run alone with its own mapInArrow function.)
"""
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cli_timing import timed_predict

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
WORK = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "target" / "engines-scale")
CORES = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count()
FIXTURE = ROOT / "fixtures/catalog/deeplense-model2-12.parquet"
PER_FILE = 10_000


def build_dataset(folder):
    if folder.exists():
        return
    images = pq.read_table(FIXTURE, columns=["image"]).column("image").combine_chunks().to_numpy_ndarray()
    base = images.reshape(12, -1)
    rng = np.random.default_rng(1)
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, ROWS, PER_FILE)):
        n = min(PER_FILE, ROWS - start)
        pixels = base[np.arange(start, start + n) % 12] + rng.normal(0, 1e-3, (n, base.shape[1]))
        image = pa.FixedSizeListArray.from_arrays(pa.array(pixels.astype(np.float32).ravel()), base.shape[1])
        table = pa.table({"id": np.arange(start, start + n, dtype=np.int64), "image": image})
        pq.write_table(table, tmp / f"part-{k}.parquet")
    tmp.rename(folder)


def result(run, seconds, written, **more):
    return {"run": run, "rows": ROWS, "written": written, "seconds": round(seconds, 2),
            "rows_per_s": round(ROWS / seconds, 1), **more}


def run_cli(folder, out):
    seconds, peak_mb = timed_predict(folder, out, dict(os.environ, RAYON_NUM_THREADS=str(CORES)))
    return result(f"lensmae predict, {CORES} threads", seconds, pq.read_metadata(out).num_rows,
                  peak_rss_mb=round(peak_mb, 1))


def run_spark(folder, out):
    from pyspark.sql import SparkSession

    import lensmae
    import lensmae.spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master(f"local[{CORES}]").appName("lensmae")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4096")
             .config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    model = lensmae.load_model(threads=1)
    warm = spark.read.parquet(str(FIXTURE)).select("id", "image").repartition(CORES)
    lensmae.spark.predict_dataframe(warm, model, shape=(64, 64)).count()
    started = time.perf_counter()
    cutouts = spark.read.parquet(str(folder))
    lensmae.spark.predict_dataframe(cutouts, model, shape=(64, 64)).write.mode("overwrite").parquet(str(out))
    seconds = time.perf_counter() - started
    written = spark.read.parquet(str(out)).count()
    spark.stop()
    return result(f"Spark local[{CORES}], lensmae.spark.predict_dataframe", seconds, written)


def run_ray(folder, out):
    import ray

    import lensmae
    import lensmae.ray

    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    model = lensmae.load_model(threads=1)
    warm = ray.data.read_parquet(str(FIXTURE)).select_columns(["id", "image"])
    lensmae.ray.predict_dataset(warm, model, shape=(64, 64), batch_size=4096).materialize()
    shutil.rmtree(out, ignore_errors=True)  # Ray adds files to a folder that exists
    started = time.perf_counter()
    cutouts = ray.data.read_parquet(str(folder))
    lensmae.ray.predict_dataset(cutouts, model, shape=(64, 64), batch_size=4096).write_parquet(str(out))
    seconds = time.perf_counter() - started
    written = sum(pq.read_metadata(p).num_rows for p in pathlib.Path(out).glob("*.parquet"))
    ray.shutdown()
    return result(f"Ray num_cpus={CORES}, lensmae.ray.predict_dataset", seconds, written)


if __name__ == "__main__":
    folder = WORK / "cutouts"
    build_dataset(folder)
    print(json.dumps({"machine": f"{os.cpu_count()} cores", "cores_used": CORES, "rows": ROWS}), flush=True)
    print(json.dumps(run_cli(folder, WORK / "cli.parquet")), flush=True)
    print(json.dumps(run_spark(folder, WORK / "spark")), flush=True)
    print(json.dumps(run_ray(folder, WORK / "ray")), flush=True)
