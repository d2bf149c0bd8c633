"""lensmae in Spark: `DataFrame.mapInArrow` over the cutouts of a HATS catalogue
(pyspark local mode, one Python worker per core), timed once.

    python bench/spark_mapinarrow.py [CATALOGUE] [CORES]

CATALOGUE defaults to target/lsdb-scale/cutouts (made by bench/lsdb_scale.py).
Each Arrow batch Spark hands over goes through Model.predict and comes back as
Arrow; the output (id and the prediction columns) is written as Parquet. Needs
pyspark and Java 17; prints one JSON line.
"""
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CATALOGUE = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target/lsdb-scale/cutouts")
CORES = int(sys.argv[2]) if len(sys.argv) > 2 else 2

OUTPUT_SCHEMA = ("row long, id long, ra double, dec double, p_axion float, p_cdm float, p_no_sub float, "
                 "pred_class string, max_prob float, entropy float, ood_score float, in_domain boolean, "
                 "status string")


def predict_batches(batches):
    import lensmae

    model = lensmae.load_model(threads=1)  # loaded once per Python worker (cached)
    for batch in batches:
        table = model.predict(batch, shape=(64, 64))
        yield from table.to_batches()


if __name__ == "__main__":
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{CORES}]").appName("lensmae")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4096")
             .config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    files = sorted(str(p) for p in (CATALOGUE / "dataset").rglob("*.parquet"))
    frame = spark.read.parquet(*files).select("id", "ra", "dec", "image")
    rows = frame.count()
    out = ROOT / "target" / "spark-predictions"
    started = time.perf_counter()
    frame.mapInArrow(predict_batches, OUTPUT_SCHEMA).write.mode("overwrite").parquet(str(out))
    seconds = time.perf_counter() - started
    written = spark.read.parquet(str(out))
    summary = {"run": f"spark mapInArrow local[{CORES}]", "rows": rows, "written": written.count(),
               "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1),
               "statuses": {r["status"]: r["count"] for r in written.groupBy("status").count().collect()}}
    print(json.dumps(summary), flush=True)
    spark.stop()
