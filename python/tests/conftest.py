"""Shared paths: the repository's fixtures and the `lensmae` binary built by cargo."""
import pathlib
import re
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


#: The columns each classified row holds, as the engines' tests compare them.
PREDICTED = ["p_axion", "p_cdm", "p_no_sub", "pred_class", "max_prob", "entropy", "ood_score", "in_domain", "status"]


def run_readme_example(marker, output, out, monkeypatch, inputs=None):
    """Runs README.md's Python example under ``<!-- marker -->`` from the repository
    root, its ``output`` path replaced by ``out`` (and each path of ``inputs``, a dict,
    by its value); returns its namespace."""
    text = (ROOT / "README.md").read_text()
    example = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    for path, replacement in {output: out, **(inputs or {})}.items():
        example = example.replace(f'"{path}"', repr(str(replacement)))
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    return namespace
