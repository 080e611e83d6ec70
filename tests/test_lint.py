"""Lint runs as a test: pyflakes/pycodestyle errors (ruff, configured in pyproject.toml)."""
import subprocess


from conftest import REPO, need_tool


def test_ruff_clean():
    ruff = need_tool("ruff", "it is in the [test] extra")
    p = subprocess.run([ruff, "check", "--output-format", "concise", "bpfload", "tests",
                        "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
