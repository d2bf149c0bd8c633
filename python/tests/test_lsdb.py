"""lensmae.lsdb.predict_catalog on a Dask cluster of 2 worker processes, against the CLI."""
import pyarrow.dataset as ds
import pytest

lsdb = pytest.importorskip("lsdb")
distributed = pytest.importorskip("dask.distributed")

import lensmae  # noqa: E402
import lensmae.lsdb  # noqa: E402
from conftest import run_readme_example  # noqa: E402



@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def by_id(frame):
    return frame.sort_values("id").reset_index(drop=True)


def test_predictions_on_workers_equal_the_cli_and_join_back(client, fixtures, lensmae_cli, tmp_path):
    hats = fixtures / "hats-cutouts"
    lensmae_cli("predict", "--input", hats, "--task", "all", "--shape", "16,16", "--out", tmp_path / "cli")
    cli = by_id(ds.dataset(tmp_path / "cli" / "dataset", format="parquet").to_table().to_pandas())

    catalog = lsdb.read_hats(hats)
    model = lensmae.load_model("bundled:classifier", sr_model="bundled:superres")
    predicted = lensmae.lsdb.predict_catalog(catalog, model, shape=(16, 16))
    assert predicted.npartitions == catalog.npartitions  # lazy, one partition per HATS pixel
    got = by_id(predicted.compute())
    assert len(got) == len(cli) == 40
    assert len(client.scheduler_info()["workers"]) == 2
    # The same values bit for bit: each worker sees the batches the CLI made.
    # (`row` counts within each partition here, over the catalogue in the CLI.)
    for column in ["id", "p_axion", "p_cdm", "p_no_sub", "pred_class", "ood_score", "status"]:
        assert got[column].tolist() == cli[column].tolist(), column

    # It joins back to the input catalogue on the carried id.
    # Suffixes on the overlapping columns only, said explicitly: LSDB's default is to
    # change from suffixing every column (a FutureWarning since 0.11).
    joined = catalog.join(
        predicted, left_on="id", right_on="id", suffixes=("", "_pred"), suffix_method="overlapping_columns"
    ).compute()
    assert len(joined) == 40 and (joined["ra"] == joined["ra_pred"]).all()


def test_empty_and_one_row_partitions(client, fixtures):
    catalog = lsdb.read_hats(fixtures / "hats-cutouts").query("id == 7")
    model = lensmae.load_model("bundled:classifier", sr_model="bundled:superres")
    got = lensmae.lsdb.predict_catalog(catalog, model, shape=(16, 16)).compute()
    assert got["id"].tolist() == [7]
    assert got["status"].tolist()[0] in ("ok", "out_of_domain")


def test_the_readme_example_runs(client, tmp_path, monkeypatch):
    out = tmp_path / "predictions"
    namespace = run_readme_example("python example", "predictions/", out, monkeypatch)
    namespace["client"].close()
    written = lsdb.read_hats(out)
    assert written.npartitions == 11
    assert "p_cdm" in written.columns and len(written.compute()) == 40


def test_the_cli_catalogue_is_a_valid_hats_catalogue(fixtures, lensmae_cli, tmp_path, caplog):
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq
    from hats.io.validation import is_valid_catalog

    out = tmp_path / "cli"
    lensmae_cli("predict", "--input", fixtures / "hats-cutouts", "--task", "all", "--shape", "16,16", "--out", out)
    with caplog.at_level(logging.WARNING):
        assert is_valid_catalog(out, strict=True, verbose=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    props = dict(line.split("=", 1) for line in (out / "hats.properties").read_text().splitlines() if "=" in line)
    assert props["obs_collection"] == "cutouts"  # the input's name, kept
    assert pq.read_metadata(out / "dataset" / "_metadata").num_rows == 40
    # Tensors as plain fixed-size lists with their shape: astropy's Table.read takes them.
    partition = next((out / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
    field = pq.read_schema(partition).field("sr_image")
    assert field.type == pa.list_(pa.float32(), 64 * 64) and field.metadata[b"lensmae:shape"] == b"[64,64]"


def test_astropy_reads_a_cli_partition_with_units_and_descriptions(fixtures, lensmae_cli, tmp_path):
    table = pytest.importorskip("astropy.table")
    out = tmp_path / "cli"
    lensmae_cli("predict", "--input", fixtures / "hats-cutouts", "--task", "all", "--shape", "16,16", "--out", out)
    partition = next((out / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
    t = table.Table.read(partition)
    assert str(t["pixel_scale"].unit) == "arcsec / pix"
    assert t["p_cdm"].description == "calibrated probability that the lens is `cdm`"
    assert t["sr_image"].shape[1:] == (64 * 64,)
    assert set(t["geometry"]) == {"as is"}


def test_the_cli_reads_folders_dask_and_polars_wrote(fixtures, lensmae_cli, tmp_path):
    # Dask: part.0.parquet ... part.11.parquet beside _metadata-style files (row order
    # across part.2 / part.10 is natural, not lexicographic); polars: hive folders.
    import dask.dataframe as dd
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    table = pq.read_table(source, columns=["id", "label", "image"])
    images = table.column("image").combine_chunks().to_numpy_ndarray().reshape(12, -1)
    import pyarrow as pa

    # Arrow-typed, as Dask would otherwise turn a column of arrays into strings.
    pixels = pd.Series(list(images), dtype=pd.ArrowDtype(pa.list_(pa.float32())))
    frame = pd.DataFrame({"id": table.column("id").to_pylist(), "label": table.column("label").to_pylist(),
                          "image": pixels})
    dd.from_pandas(frame, npartitions=12, sort=False).to_parquet(tmp_path / "dask", write_index=False)
    assert (tmp_path / "dask" / "part.10.parquet").exists()
    lensmae_cli("predict", "--input", tmp_path / "dask", "--pixel-scale", "0.101", "--out", tmp_path / "d.parquet")
    got = pq.read_table(tmp_path / "d.parquet")
    assert got.column("id").to_pylist() == frame["id"].tolist()  # in the partitions' order
    assert got.column("status").to_pylist() == ["ok"] * 12

    pl.DataFrame({"id": frame["id"], "label": frame["label"], "image": images}).write_parquet(
        tmp_path / "polars", partition_by="label")
    lensmae_cli("predict", "--input", tmp_path / "polars", "--keep", "label", "--pixel-scale", "0.101",
                "--out", tmp_path / "p.parquet")
    got = pq.read_table(tmp_path / "p.parquet").sort_by("id")
    assert got.column("label").to_pylist() == frame["label"].tolist()
    assert got.column("status").to_pylist() == ["ok"] * 12
