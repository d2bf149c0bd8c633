#!/usr/bin/env bash
# Every test: the Rust suite (release profile: some tests train), then the Python
# package built from this clone into a virtual environment under target/ and its
# pytest suite (CLI equality, pyarrow/polars/pandas inputs, LSDB on a 2-worker Dask
# cluster, Spark's mapInArrow on a local session, Ray Data on a local cluster).
# PYTHON picks the interpreter (default python3, >= 3.9); Spark needs Java 17 or later.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --release
cargo build --release --bin lensmae  # the CLI the Python tests compare against

VENV=target/venv-test
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The maturin build backend comes from PyPI; the extension reuses target/'s build.
"$VENV/bin/python" -m pip install --quiet "./python[test,lsdb,spark,ray]"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider python/tests
