"""lensmae.ray.predict_dataset on a local Ray cluster (2 CPUs, worker processes), against Model.predict."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")
np = pytest.importorskip("numpy")

from conftest import PREDICTED, run_readme_example  # noqa: E402
import lensmae  # noqa: E402
import lensmae.ray  # noqa: E402



@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def collected(dataset, order_by):
    return pa.concat_tables(ray.get(dataset.to_arrow_refs())).sort_by(order_by)


def test_predictions_on_ray_workers_equal_model_predict(cluster, fixtures):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    model = lensmae.load_model(threads=1)
    cutouts = ray.data.read_parquet(str(source)).select_columns(["id", "image"])
    predicted = lensmae.ray.predict_dataset(cutouts, model, batch_size=5)
    got = collected(predicted, "id")
    want = model.predict(pq.read_table(source))
    assert got.column("id").to_pylist() == list(range(12))
    for name in PREDICTED:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert max(got.column("row").to_pylist()) <= 4  # counted within each batch of five

    # Ray's own tensor columns, as from numpy arrays, are read as images too.
    images = pq.read_table(source, columns=["image"]).column("image").combine_chunks().to_numpy_ndarray()
    from_numpy = ray.data.from_items([{"id": i, "image": image} for i, image in enumerate(images)])
    got = collected(lensmae.ray.predict_dataset(from_numpy, model, batch_size=5), "id")
    for name in PREDICTED:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_bad_rows_come_back_reported(cluster, fixtures):
    images = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet", columns=["image"])
    images = images.column("image").combine_chunks().to_numpy_ndarray()[:3].copy()
    images[1, 5, 7] = np.nan
    model = lensmae.load_model(threads=1, nan_policy="skip-row")
    dataset = ray.data.from_items([{"id": i, "image": image} for i, image in enumerate(images)])
    got = collected(lensmae.ray.predict_dataset(dataset, model), "id")
    status = got.column("status").to_pylist()
    assert status[1].startswith("skipped") and "1 non-finite pixels" in status[1]
    assert status[0] == status[2] == "ok"
    assert got.column("p_axion").to_pylist()[1] is None
    # Without an id, rows that `row` cannot name (it counts within each batch).
    anonymous = ray.data.from_items([{"image": image} for image in images])
    with pytest.raises(Exception, match="no column to join the predictions back on"):
        lensmae.ray.predict_dataset(anonymous, model).materialize()


def test_super_resolved_cutouts_come_back_as_tensors(cluster, fixtures):
    source = fixtures / "stage" / "stamps.parquet"
    model = lensmae.load_model("bundled:superres", threads=1)
    stamps = ray.data.read_parquet(str(source)).select_columns(["objectId", "tensor"])
    got = collected(lensmae.ray.predict_dataset(stamps, model, image_col="tensor", id_col="objectId"), "objectId")
    want = model.predict(pq.read_table(source), image_col="tensor", id_col="objectId").sort_by("objectId")
    got_sr = got.column("sr_image").combine_chunks().to_numpy_ndarray()
    want_sr = want.column("sr_image").combine_chunks().to_numpy_ndarray()
    assert got_sr.shape == want_sr.shape == (len(want), 64, 64)
    assert np.array_equal(got_sr, want_sr)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    out = tmp_path / "predictions"
    ray.shutdown()  # the example starts its own
    try:
        run_readme_example("ray example", "ray-predictions/", out, monkeypatch)
    finally:
        ray.shutdown()
    written = pq.read_table(out)
    assert written.num_rows == 12 and set(PREDICTED) <= set(written.column_names)
    assert written.column("status").to_pylist() == ["ok"] * 12
