"""The kernel gate itself: without bpf(2) permission, kernel tests skip with the reason;
with BPFLOAD_REQUIRE_KERNEL=1 (as .ci/run sets) the same run fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                                reason="needs root and util-linux setpriv to drop capabilities")

DROP = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def run_unprivileged(require: bool):
    env = dict(os.environ)
    env.pop("BPFLOAD_REQUIRE_KERNEL", None)
    if require:
        env["BPFLOAD_REQUIRE_KERNEL"] = "1"
    return subprocess.run(DROP + [sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                                  "no:cacheprovider",
                                  "tests/test_sharing.py::test_explicit_reuse_of_a_map"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_unprivileged_run_skips_with_the_reason():
    p = run_unprivileged(require=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 skipped" in p.stdout and "bpf(2) not permitted here" in p.stdout


def test_required_kernel_turns_the_skip_into_a_failure():
    p = run_unprivileged(require=True)
    assert p.returncode != 0
    assert "BPFLOAD_REQUIRE_KERNEL=1 but bpf(2) not permitted here" in p.stdout
