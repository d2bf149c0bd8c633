"""Catalogues in object storage: `lensmae predict s3://...` against moto's S3
server (started here, credentials and endpoint from the usual AWS variables)
gives the rows a read from disk gives. HTTP(S) is tested in Rust
(tests/it/remote.rs) against a range-capable web server."""
import pathlib
import subprocess

import boto3
import pyarrow.dataset as ds
import pytest
from moto.server import ThreadedMotoServer

from conftest import ROOT

BUCKET = "survey-cutouts"


@pytest.fixture
def s3(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def upload(client, folder: pathlib.Path, prefix: str):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


def rows_by_id(folder):
    table = ds.dataset(folder / "dataset", format="parquet").to_table().to_pandas()
    return table.sort_values("id").reset_index(drop=True)


def lensmae_run(*args):
    binary = ROOT / "target" / "release" / "lensmae"
    return subprocess.run([str(binary), *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def test_a_hats_catalogue_in_s3_gives_the_rows_it_gives_on_disk(s3, fixtures, lensmae_cli, tmp_path):
    hats = fixtures / "hats-cutouts"
    upload(s3, hats, "euclid/hats-cutouts")
    common = ["--task", "all", "--shape", "16,16"]
    lensmae_cli("predict", "--input", hats, *common, "--out", tmp_path / "local")
    lensmae_cli("predict", "--input", f"s3://{BUCKET}/euclid/hats-cutouts", *common, "--out", tmp_path / "s3")
    local, remote = rows_by_id(tmp_path / "local"), rows_by_id(tmp_path / "s3")
    assert len(remote) == len(local) == 40
    assert local.equals(remote)
    # The output is a sibling catalogue on disk, with every partition of the input.
    partitions = sorted(p.relative_to(tmp_path / "s3") for p in (tmp_path / "s3").glob("dataset/Norder=*/Dir=*/*.parquet"))
    assert partitions == sorted(p.relative_to(hats) for p in hats.glob("dataset/Norder=*/Dir=*/*.parquet"))


def test_a_parquet_file_in_s3_and_a_missing_one(s3, fixtures, lensmae_cli, tmp_path):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    s3.upload_file(str(source), BUCKET, "tables/model2.parquet")
    lensmae_cli("predict", "--input", source, "--out", tmp_path / "local.parquet")
    lensmae_cli("predict", "--input", f"s3://{BUCKET}/tables/model2.parquet", "--out", tmp_path / "s3.parquet")
    import pyarrow.parquet as pq

    local, remote = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "s3.parquet")
    assert remote.num_rows == 12
    for name in local.column_names:
        assert remote.column(name).equals(local.column(name)), name
    missing = lensmae_run("predict", "--input", f"s3://{BUCKET}/tables/nothing.parquet", "--out", tmp_path / "x.parquet")
    assert missing.returncode == 2
    assert f"s3://{BUCKET}/tables/nothing.parquet" in missing.stderr and "not found" in missing.stderr


def test_resuming_after_an_object_was_replaced_is_refused(s3, fixtures, lensmae_cli, tmp_path):
    hats = fixtures / "hats-cutouts"
    upload(s3, hats, "cat")
    url = f"s3://{BUCKET}/cat"
    common = ["--task", "all", "--shape", "16,16", "--out", tmp_path / "out"]
    lensmae_cli("predict", "--input", url, *common, "--shard", "0/2")
    # Another version of one partition, same key: the second shard must not mix them.
    first = "cat/dataset/Norder=0/Dir=0/Npix=1.parquet"
    other = hats / "dataset" / "Norder=0" / "Dir=0" / "Npix=2.parquet"
    s3.upload_file(str(other), BUCKET, first)
    run = lensmae_run("predict", "--input", url, *common, "--shard", "1/2")
    assert run.returncode == 2, run.stderr
    assert "Npix=1.parquet changed" in run.stderr, run.stderr


def test_a_folder_of_parquet_files_under_an_s3_prefix(s3, fixtures, lensmae_cli, tmp_path):
    # As a Spark job writes to S3: part files under label=... prefixes, _SUCCESS,
    # and a _temporary/ prefix an interrupted attempt left (not read).
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.read_table(fixtures / "catalog" / "deeplense-model2-12.parquet", columns=["id", "label", "image"])
    for label in ["axion", "cdm", "no_sub"]:
        rows = source.filter(pc.equal(source["label"], label))
        for k, start in enumerate(range(0, rows.num_rows, 3)):
            local = tmp_path / f"{label}-{k}.parquet"
            pq.write_table(rows.slice(start, 3).drop_columns(["label"]), local)
            s3.upload_file(str(local), BUCKET, f"run-7/label={label}/part-{k:05d}.snappy.parquet")
    s3.put_object(Bucket=BUCKET, Key="run-7/_SUCCESS", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="run-7/_temporary/0/part-00099.parquet", Body=b"not parquet")
    out = tmp_path / "s3.parquet"
    lensmae_cli("predict", "--input", f"s3://{BUCKET}/run-7", "--keep", "label", "--pixel-scale", "0.101",
                "--out", out)
    got = pq.read_table(out).sort_by("id")
    assert got.column("id").to_pylist() == source.column("id").to_pylist()
    assert got.column("label").to_pylist() == source.column("label").to_pylist()
    assert got.column("status").to_pylist() == ["ok"] * 12

    # A plain file's URL is still a file, and a prefix with nothing under it a missing file.
    missing = lensmae_run("predict", "--input", f"s3://{BUCKET}/run-8", "--out", tmp_path / "x.parquet")
    assert missing.returncode == 2 and "not found" in missing.stderr, missing.stderr
