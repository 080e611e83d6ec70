"""A signal during a repeated BPF_PROG_TEST_RUN: an error, never a silent re-run.

The kernel checks for pending signals between the runs of a repeated test run
and aborts with EINTR after however many it did; their effects on maps stay.
bpf(2) calls are retried on EINTR, but this one must not be: the retry would
run the program up to *repeat* times more, and the map counts would exceed
what the caller asked for.  Here SIGALRM (a Python handler) fires 50 ms into
a run of 200 million: the call raises SyscallError(EINTR) with a hint, and the
program's per-CPU packet counter holds fewer runs than asked.
"""
from __future__ import annotations

import errno
import signal

import pytest

import bpfload
from bpfload.cli.demo import build_traffic, demo_object_path

pytestmark = pytest.mark.kernel

REPEAT = 200_000_000        # ~5 s at 25 ns a run: the alarm comes long before the end


def test_interrupted_test_run_raises_and_is_not_rerun():
    arp = next(p for p in build_traffic() if p.name == "arp")       # proto_stats[3]
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        with bpfload.load(demo_object_path()) as obj:
            prog, stats = obj.programs["count_proto"], obj.maps["proto_stats"]
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            try:
                with pytest.raises(bpfload.SyscallError) as ei:
                    prog.test_run(arp.data, repeat=REPEAT, data_out_size=0)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            runs = stats.sum(3)[0]           # (packets, bytes) summed over CPUs
    finally:
        signal.signal(signal.SIGALRM, old)
    assert fired, "the alarm did not fire"
    e = ei.value
    assert e.errno == errno.EINTR and e.command == "BPF_PROG_TEST_RUN"
    assert "not retried" in e.hint
    assert 0 < runs < REPEAT, runs
