"""lensmae.spark.predict_dataframe on a local Spark session (2 cores, Python workers), against Model.predict."""
import os
import sys
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pyspark = pytest.importorskip("pyspark")
from pyspark.sql import SparkSession  # noqa: E402

from conftest import PREDICTED, run_readme_example  # noqa: E402
import lensmae  # noqa: E402
import lensmae.spark  # noqa: E402



@pytest.fixture(scope="module")
def spark():
    # The workers run this interpreter (the one lensmae is installed in), five rows to
    # an Arrow batch so that a partition is predicted in several batches.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "5")
        .getOrCreate()
    )
    yield session
    session.stop()


def collected(df, order_by):
    df = df.orderBy(order_by)
    if hasattr(df, "toArrow"):  # Spark 4
        return df.toArrow()
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)


def test_predictions_on_spark_workers_equal_model_predict(spark, fixtures):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    # Spark reads the fixed_shape_tensor column as array<float>; the table's pixel-scale
    # metadata does not come through, so the model's scale is given.
    cutouts = spark.read.parquet(str(source)).select("id", "image").repartition(2)
    assert dict(cutouts.dtypes)["image"] == "array<float>"
    model = lensmae.load_model(threads=1, pixel_scale=0.101)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted = lensmae.spark.predict_dataframe(cutouts, model)
    # PySpark's warning on pandas 3 concerns pandas conversions, which this path has none of.
    assert not [w for w in caught if "pandas" in str(w.message)], [str(w.message) for w in caught]
    assert predicted.columns[:2] == ["row", "id"]
    assert dict(predicted.dtypes)["p_axion"] == "float"
    got = collected(predicted, "id")
    want = lensmae.load_model().predict(pq.read_table(source))
    assert got.num_rows == 12 and got.column("id").to_pylist() == list(range(12))
    for name in PREDICTED:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    # `row` counts within each Arrow batch of at most five rows.
    assert max(got.column("row").to_pylist()) <= 4


def test_bad_rows_come_back_reported_and_bad_columns_are_refused_on_the_driver(spark, fixtures):
    images = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet", columns=["image"])
    pixels = images.column("image").combine_chunks().storage.flatten().to_pylist()
    rows = [(i, pixels[i * 4096:(i + 1) * 4096]) for i in range(3)]
    rows[1][1][7] = float("nan")  # a NaN pixel: skipped, and said so
    rows.append((3, [0.5] * 4000))  # a cutout of another size than the first
    rows.append((4, None))  # no cutout at all
    df = spark.createDataFrame(rows, "id long, image array<float>")
    model = lensmae.load_model(threads=1, nan_policy="skip-row", pixel_scale=0.101)
    got = collected(lensmae.spark.predict_dataframe(df, model, shape=(64, 64)), "id")
    status = got.column("status").to_pylist()
    assert got.column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert status[4] == "skipped: null image"
    assert status[0] == status[2] == "ok"
    assert status[1].startswith("skipped") and "1 non-finite pixels" in status[1]
    assert status[3].startswith("skipped") and "4000" in status[3], status[3]
    assert got.column("p_axion").to_pylist()[1] is None and got.column("p_axion").to_pylist()[3] is None

    with pytest.raises(lensmae.LensmaeError, match="nope"):
        lensmae.spark.predict_dataframe(df, model, image_col="nope")
    # Without an id, rows that `row` cannot name (it counts within each batch).
    with pytest.raises(lensmae.LensmaeError, match="no column to join the predictions back on"):
        lensmae.spark.predict_dataframe(df.select("image"), model, shape=(64, 64))
    # Nor do the PSF and exposure a residual classifier carries: many cutouts share them.
    lenses = lensmae.simulate("survey", n_per_class=1, seed=5).drop_columns(["id"])
    residual = lensmae.load_model("bundled:survey-residual-classifier", threads=1)
    frame = spark.createDataFrame(lenses.select(["psf_fwhm", "exposure_time"]).to_pandas().assign(
        image=[row.ravel().tolist() for row in lenses.column("image").combine_chunks().to_numpy_ndarray()]))
    with pytest.raises(lensmae.LensmaeError, match="no column to join the predictions back on"):
        lensmae.spark.predict_dataframe(frame, residual)


def test_super_resolved_cutouts_come_back_as_arrays(spark, fixtures):
    source = fixtures / "stage" / "stamps.parquet"
    stamps = spark.read.parquet(str(source)).select("objectId", "tensor")
    model = lensmae.load_model("bundled:superres", threads=1)
    predicted = lensmae.spark.predict_dataframe(stamps, model, image_col="tensor", id_col="objectId")
    assert dict(predicted.dtypes)["sr_image"] == "array<float>"
    got = collected(predicted, "objectId")
    want = model.predict(pq.read_table(source), image_col="tensor", id_col="objectId")
    want = want.sort_by("objectId")
    assert got.column("objectId").to_pylist() == want.column("objectId").to_pylist()
    sr = want.column("sr_image").combine_chunks()
    assert sr.type.shape == [64, 64]
    assert got.column("sr_image").to_pylist() == [list(v) for v in sr.storage.to_pylist()]
    assert got.column("status").to_pylist() == want.column("status").to_pylist()


def test_the_readme_example_runs(spark, tmp_path, monkeypatch):
    out = tmp_path / "predictions"
    run_readme_example("spark example", "spark-predictions/", out, monkeypatch)
    written = pq.read_table(out)
    assert written.num_rows == 12 and set(PREDICTED) <= set(written.column_names)
    assert written.column("status").to_pylist() == ["ok"] * 12


def test_the_cli_reads_a_folder_spark_wrote(spark, fixtures, lensmae_cli, tmp_path):
    # part-*.snappy.parquet files, _SUCCESS and .crc files, label=.../ folders.
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    written = tmp_path / "by-label"
    spark.read.parquet(str(source)).select("id", "label", "image").repartition(3).write.partitionBy("label").parquet(
        str(written)
    )
    assert (written / "_SUCCESS").exists() and (written / "label=cdm").is_dir()
    out = tmp_path / "cli.parquet"
    lensmae_cli("predict", "--input", written, "--keep", "label", "--pixel-scale", "0.101", "--out", out)
    got = pq.read_table(out).sort_by("id")
    want = pq.read_table(source)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert got.column("label").to_pylist() == want.column("label").to_pylist()
    assert got.column("status").to_pylist() == ["ok"] * 12
    # The same folder as a labelled set: its labels from the folder names.
    import json

    lensmae_cli("evaluate", "--input", written, "--model", "bundled:classifier", "--report", tmp_path / "r.json")
    folder_report = json.loads((tmp_path / "r.json").read_text())
    lensmae_cli("evaluate", "--input", source, "--model", "bundled:classifier", "--report", tmp_path / "f.json")
    file_report = json.loads((tmp_path / "f.json").read_text())
    assert folder_report["report"]["n"] == 12
    assert folder_report["report"]["metrics"] == file_report["report"]["metrics"]
