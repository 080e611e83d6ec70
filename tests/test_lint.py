"""Lint runs as a test: pyflakes/pycodestyle errors (ruff, configured in pyproject.toml)."""
import shutil
import subprocess

import pytest

from conftest import REPO


def test_ruff_clean():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (it is in the [test] extra)")
    p = subprocess.run(["ruff", "check", "--output-format", "concise", "bpfload", "tests",
                        "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
