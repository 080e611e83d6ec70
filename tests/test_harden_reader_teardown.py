"""Hardening issue, 15: reader teardown is silent in every partially torn-down state.

A RingBuffer left unclosed when an exception unwound through asyncio.run() printed
``Exception ignored in: '_ReaderBase._release_rings' ... TypeError: 'NoneType' object
is not iterable`` when the collector broke the reference cycle it was in (tp_clear had
set its ring list to None before __dealloc__ ran).  Each scenario runs in a child
process with ``-X dev -W always`` (every warning and unraisable exception printed) and
checks that stderr holds no "Exception ignored" and no traceback, that every fd and
BPF/perf mapping the readers made is gone after collection, and that an unclosed
reader still says so with a ResourceWarning.  Readers whose constructor fails part-way
(a wrong map type, a bad page_count, a map update failing after some CPUs' rings were
set up) leave no fd and print nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.kernel

PRELUDE = textwrap.dedent("""
    import asyncio, errno, gc, json, os, sys
    import bpfload
    from bpfload import Map, MapType
    from bpfload._core import syscall as _sys

    def fds():
        return set(os.listdir("/proc/self/fd"))

    def mappings():
        with open("/proc/self/maps") as f:
            return sum(1 for line in f
                       if "anon_inode:bpf" in line or "anon_inode:[perf_event]" in line)

    rbmap = Map.create(MapType.RINGBUF, 0, 0, 4 * 4096, name="tdrb")
    pemap = Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, os.cpu_count() or 1, name="tdpe")
    counters = Map.create(MapType.HASH, 4, 8, 16, name="tdcnt")
    for k in range(4):
        counters[k] = k
    before_fds, before_maps = fds(), mappings()
""")

EPILOGUE = textwrap.dedent("""
    gc.collect(); gc.collect()
    leaked = []
    for f in sorted(fds() - before_fds, key=int):
        try:                 # the fd listdir() itself used is gone by now
            leaked.append(os.readlink(f"/proc/self/fd/{f}"))
        except OSError:
            pass
    out = {"fds": leaked, "maps": mappings() - before_maps}
    for m in (rbmap, pemap, counters):
        m.close()
    print(json.dumps(out))
""")

SCENARIOS = {
    # The reported case: a ring buffer in a coroutine that raises, with asyncio
    # watching its fd and a callback whose state refers back to the reader (a
    # cycle the collector breaks by clearing the reader first: it is the oldest).
    "ringbuf_asyncio": """
        async def main():
            rb = bpfload.RingBuffer()
            state = {"reader": rb}
            rb.add(rbmap, lambda data, state=state: state)
            asyncio.get_running_loop().add_reader(rb.fileno(), rb.consume)
            raise RuntimeError("boom")
        try:
            asyncio.run(main())
        except RuntimeError:
            pass
    """,
    # The cycle through a bound method of a subclass: the collector clears the
    # reader itself before its deallocation.
    "ringbuf_bound_method_cycle": """
        class R(bpfload.RingBuffer):
            def on(self, data):
                pass
        for _ in range(3):
            rb = R()
            rb.add(rbmap, rb.on)
            del rb
            gc.collect()
    """,
    "perfbuf_asyncio": """
        async def main():
            holder = {}
            pb = bpfload.PerfBuffer(pemap, lambda cpu, data, holder=holder: holder, page_count=1)
            holder["pb"] = pb
            asyncio.get_running_loop().add_reader(pb.fileno(), pb.consume)
            raise RuntimeError("boom")
        try:
            asyncio.run(main())
        except RuntimeError:
            pass
    """,
    "poller_asyncio": """
        async def main():
            p = bpfload.MapPoller(counters, interval=0.01)
            p.me = p
            await asyncio.sleep(0)
            p.snapshot()
            raise RuntimeError("boom")
        try:
            asyncio.run(main())
        except RuntimeError:
            pass
    """,
    # Constructors that fail part-way: nothing may be left, nothing printed.
    "partial_constructors": """
        import warnings
        def expect(exc, fn):
            try:
                fn()
            except exc:
                return
            raise AssertionError(f"{fn} did not raise {exc}")
        expect(bpfload.MapTypeError, lambda: bpfload.RingBuffer(counters, print))
        expect(bpfload.MapTypeError, lambda: bpfload.PerfBuffer(rbmap, print))
        expect(bpfload.EventConfigError, lambda: bpfload.PerfBuffer(pemap, print, page_count=3))
        expect(bpfload.EventConfigError,
               lambda: bpfload.PerfBuffer(pemap, print, cpus=[0, pemap.max_entries]))
        expect(bpfload.MapTypeError, lambda: bpfload.MapPoller(rbmap))
        expect(bpfload.EventConfigError, lambda: bpfload.MapPoller(counters, interval=0))
        # after the first CPU's ring is set up and stored, the second CPU's map
        # update fails (BPF_MAP_UPDATE_ELEM = 2)
        cpus = [0, 1] if pemap.max_entries > 1 else [0]
        _sys.inject_fault(len(cpus), errno.ENOMEM, command=2)
        expect(bpfload.BpfError, lambda: bpfload.PerfBuffer(pemap, print, cpus=cpus))
        assert not _sys.fault_pending()
        # a ring buffer whose epoll registration fails would need a fault door
        # in epoll_ctl: see test_harden_reader_faults.py
        assert counters.lookup(0) is not None
        with warnings.catch_warnings():
            warnings.simplefilter("error")      # a ResourceWarning here would be a leak
            gc.collect()
    """,
}


def run_child(body: str) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body) + EPILOGUE
    return subprocess.run([sys.executable, "-X", "dev", "-W", "always", "-c", code],
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_reader_teardown_is_silent_and_complete(scenario):
    proc = run_child(SCENARIOS[scenario])
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"fds": [], "maps": 0}, (result, proc.stderr)
    if scenario.startswith(("ringbuf", "perfbuf")):
        # the reader was left unclosed: the collector released it, and said so
        what = "unclosed ring buffer" if scenario.startswith("ringbuf") else "unclosed <PerfBuffer"
        assert what in proc.stderr and "ResourceWarning" in proc.stderr, proc.stderr
    else:
        assert "ResourceWarning" not in proc.stderr, proc.stderr
