"""The documentation cannot rot: the site builds strictly, and every Python
example in docs/ and the README runs against the kernel as written.

Each page runs in its own process (tests/docs_runner.py) inside a private
mount namespace with a fresh bpffs on /sys/fs/bpf, from the repository root,
so examples use the paths a user would and their pins vanish with the
namespace.  A page's examples share one namespace, in page order, like a
reader typing them in.  The runner fails on an exception, on an fd left open
and on a ResourceWarning.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, need_module, need_tool
from docs_runner import blocks

DOCS = REPO / "docs"
PAGES = sorted([p for p in DOCS.glob("*.md") if any(blocks(p.read_text()))] + [REPO / "README.md"])


def test_every_page_is_in_the_nav():
    import yaml  # mkdocs depends on PyYAML

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    listed = set()

    def walk(items):
        for item in items:
            for v in item.values():
                if isinstance(v, list):
                    walk(v)
                else:
                    listed.add(v)
    walk(nav)
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(listed)


def test_mkdocs_build_strict(tmp_path):
    need_module("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "maps" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "lookup_batch" in api            # the reference is built from the docstrings


def test_runner_reports_a_failing_block(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2\n```\n")
    r = subprocess.run([sys.executable, str(REPO / "tests" / "docs_runner.py"), str(page)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{page}:10:" in r.stderr and "AssertionError" in r.stderr


def test_runner_reports_a_leaked_fd(tmp_path):
    page = tmp_path / "leak.md"
    page.write_text("```python\nimport os\nfd = os.open('/dev/null', os.O_RDONLY)\n```\n")
    r = subprocess.run([sys.executable, str(REPO / "tests" / "docs_runner.py"), str(page)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "left fds open" in r.stderr and "/dev/null" in r.stderr


@pytest.mark.kernel
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page, kernel):
    need_tool("unshare", "util-linux")
    script = ('set -e; mount -t bpf bpf /sys/fs/bpf; exec "$0" "$1" "$2"')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        sys.executable, str(REPO / "tests" / "docs_runner.py"), str(page)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "examples ran" in r.stdout
