"""Regression (issue 10, High 3): MapPoller.snapshot()/poll() racing close() in another thread.

close() used to drop the buffers while the snapshot's batch lookup ran with the
GIL released; the conversion then read freed memory (segfault) or the snapshot
failed with a TypeError.  The racing call must raise ReaderClosedError (or
complete), never crash.  The race runs in a child process, bounded in time, so
that a segfault fails this test instead of killing pytest.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.kernel

CHILD = textwrap.dedent("""
    import random, sys, threading, time
    import bpfload
    from bpfload import MapType, MapPoller, ReaderClosedError

    method = sys.argv[1]
    n = 50_000
    m = bpfload.Map.create(MapType.PERCPU_HASH, 4, 8, n, name="race_poll")
    import array
    keys = array.array("I", range(n))
    vals = bytes(m.value_stride) * n
    m.update_batch(keys, vals)
    deadline = time.monotonic() + float(sys.argv[2])
    rounds = raced = completed = 0
    bad = []
    while time.monotonic() < deadline:
        p = MapPoller(m, interval=0.0005)

        def run():
            global raced, completed
            try:
                while True:
                    (p.snapshot if method == "snapshot" else p.poll)()
                    completed += 1
            except ReaderClosedError:
                raced += 1
            except BaseException as e:
                bad.append(repr(e))

        t = threading.Thread(target=run)
        t.start()
        time.sleep(random.uniform(0, 0.004))
        p.close()
        t.join(10)
        if t.is_alive():
            bad.append("snapshot thread did not end after close()")
            break
        rounds += 1
    m.close()
    print(f"rounds={rounds} raced={raced} completed={completed} bad={bad[:3]}")
    sys.exit(1 if bad else 0)
""")


@pytest.mark.parametrize("method", ["snapshot", "poll"])
def test_close_during_snapshot_raises_reader_closed(method):
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    r = subprocess.run([sys.executable, "-c", CHILD, method, "3"], capture_output=True, text=True,
                       timeout=60, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"child exited with {r.returncode}:\n{out[-3000:]}"
    stats = dict(kv.split("=", 1) for kv in r.stdout.split("bad=")[0].split())
    assert int(stats["rounds"]) >= 5, out
    assert int(stats["raced"]) == int(stats["rounds"]), out
