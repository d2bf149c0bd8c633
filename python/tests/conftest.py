"""Shared paths: the repository's fixtures and the `lensmae` binary built by cargo."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fixtures():
    return ROOT / "fixtures"


@pytest.fixture(scope="session")
def lensmae_cli():
    """The CLI of the same source (built with `cargo build --release` if missing)."""
    binary = ROOT / "target" / "release" / "lensmae"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "lensmae"], cwd=ROOT, check=True)

    def run(*args):
        done = subprocess.run([str(binary), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"lensmae {' '.join(map(str, args))}: {done.stderr}"

    return run
