"""examples/execsnoop.py: every exec the test makes shows up, with its pid, parent and filename."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.kernel

EXAMPLE = REPO / "examples" / "execsnoop.py"


def test_execsnoop_reports_the_execs_the_test_makes():
    p = subprocess.Popen([sys.executable, str(EXAMPLE), "--json", "--duration", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r, _, _ = select.select([p.stdout], [], [], 30)
        assert r, "execsnoop printed nothing"
        assert json.loads(p.stdout.readline())["ready"] is True
        pids = []
        for _ in range(4):
            c = subprocess.Popen(["/bin/true"])
            c.wait()
            pids.append(c.pid)
        # read the rest through the same file object as the first line: lines already in its
        # buffer (an exec elsewhere right after "ready") would be missed by communicate()
        out = p.stdout.read()
        err = p.stderr.read()
        assert p.wait(timeout=30) == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    lines = [json.loads(x) for x in out.splitlines()]
    events = [e for e in lines if "comm" in e]
    by_pid = {e["pid"]: e for e in events}
    for pid in pids:
        e = by_pid[pid]
        assert e["filename"] == "/bin/true" and e["comm"] == "true"
        assert e["ppid"] == os.getpid() and e["uid"] == os.getuid()
    summary = lines[-1]["summary"]
    assert summary["seen"] == len(events) >= len(pids)
    assert summary["dropped"] == 0 and summary["stopped_by"] == "duration"
