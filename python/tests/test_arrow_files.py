"""Arrow IPC (Feather) files as pyarrow, polars and pandas write them, through the CLI,
and the CLI's Arrow IPC outputs as they read them."""
import json
import subprocess

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import lensmae
from conftest import PREDICTED, ROOT


def test_feather_files_of_pyarrow_polars_and_pandas_go_in_and_come_out(lensmae_cli, fixtures, tmp_path):
    pl = pytest.importorskip("polars")
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    table = pq.read_table(source, columns=["id", "label", "image"])
    want = lensmae.load_model().predict(table)
    # pyarrow's Feather (LZ4 frames by default), in batches of 5; polars' IPC file
    # and stream; pandas' Feather with the label as a categorical.
    feather.write_feather(table, tmp_path / "pyarrow.feather", chunksize=5)
    frame = pl.read_parquet(source, columns=["id", "label", "image"])
    frame.write_ipc(tmp_path / "polars.arrow", compression="zstd")
    frame.write_ipc_stream(tmp_path / "polars.arrows")
    panda = table.to_pandas()
    panda["label"] = panda["label"].astype("category")
    panda.to_feather(tmp_path / "pandas.feather")
    for name in ["pyarrow.feather", "polars.arrow", "polars.arrows", "pandas.feather"]:
        out = tmp_path / f"{name}.out.arrow"
        lensmae_cli("predict", "--input", tmp_path / name, "--keep", "label", "--pixel-scale", "0.101", "--out", out)
        # Uncompressed, so it memory-maps; polars reads it too.
        got = ipc.open_file(pa.memory_map(str(out))).read_all()
        assert got.column("label").to_pylist() == table.column("label").to_pylist(), name
        for column in ["id"] + PREDICTED:
            assert got.column(column).to_pylist() == want.column(column).to_pylist(), f"{name}: {column}"
        assert pl.read_ipc(out).height == 12
        assert got.schema.field("p_cdm").metadata[b"description"].startswith(b"calibrated probability")
        assert got.schema.metadata[b"lensmae:model"] == b"bundled:classifier"
    # The stream format, by the output's name.
    out = tmp_path / "pred.arrows"
    lensmae_cli("predict", "--input", source, "--out", out)
    with ipc.open_stream(out) as reader:
        assert reader.read_all().column("p_axion").to_pylist() == want.column("p_axion").to_pylist()


def test_evaluate_scores_a_feather_file_and_arrow_predictions(lensmae_cli, fixtures, tmp_path):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    feather.write_feather(pq.read_table(source), tmp_path / "lenses.feather", compression="zstd")
    binary = ROOT / "target" / "release" / "lensmae"
    reports = {}
    for name, args in {
        "parquet": ["--model", "bundled:classifier", "--input", source],
        "feather": ["--model", "bundled:classifier", "--input", tmp_path / "lenses.feather"],
    }.items():
        report = tmp_path / f"{name}.json"
        lensmae_cli("evaluate", *args, "--report", report)
        reports[name] = json.loads(report.read_text())["report"]["metrics"]
    lensmae_cli("predict", "--input", tmp_path / "lenses.feather", "--out", tmp_path / "pred.arrow")
    lensmae_cli("evaluate", "--predictions", tmp_path / "pred.arrow", "--input", tmp_path / "lenses.feather",
                "--report", tmp_path / "predictions.json")
    reports["predictions"] = json.loads((tmp_path / "predictions.json").read_text())["report"]["metrics"]
    assert reports["feather"] == reports["parquet"] == reports["predictions"]
    # A Feather file cut short is refused by name, with the exit code of a failed run.
    data = (tmp_path / "lenses.feather").read_bytes()
    (tmp_path / "cut.feather").write_bytes(data[: len(data) // 2])
    done = subprocess.run([binary, "predict", "--input", tmp_path / "cut.feather", "--out", tmp_path / "cut.parquet"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "cut.feather" in done.stderr and "ARROW1" in done.stderr, done.stderr
    assert not (tmp_path / "cut.parquet").exists()


def test_a_pipe_of_arrow_streams_from_and_to_python(fixtures):
    source = fixtures / "catalog" / "deeplense-model2-12.parquet"
    table = pq.read_table(source, columns=["id", "image"])
    want = lensmae.load_model().predict(table)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=5)
    binary = ROOT / "target" / "release" / "lensmae"
    done = subprocess.run([binary, "predict", "--input", "-", "--out", "-"], input=sink.getvalue().to_pybytes(),
                          capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    got = ipc.open_stream(pa.py_buffer(done.stdout)).read_all()
    for column in ["id"] + PREDICTED:
        assert got.column(column).to_pylist() == want.column(column).to_pylist(), column
    assert b'"rows": 12' in done.stderr
