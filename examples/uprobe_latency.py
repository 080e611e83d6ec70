#!/usr/bin/env python3
"""uprobe_latency: how long do calls of a user-space function take?

A uprobe on entry of SYMBOL in BINARY stamps the time per thread, a
uretprobe on its return adds the elapsed time to a log2 histogram in a BPF
array (bpf/uprobe_latency.bpf.c); the histogram is printed at the end::

    sudo ./uprobe_latency.py c getaddrinfo --duration 10
    sudo ./uprobe_latency.py /usr/bin/python3 PyObject_GC_Collect --pid 1234
    sudo ./uprobe_latency.py ./myprog work -- ./myprog --iterations 100

BINARY is a path or a library name (``c`` is libc).  With a COMMAND after
``--``, the probes are attached first, the command is run, and the
histogram is printed when it exits; otherwise the tool traces for
``--duration`` seconds (or until Ctrl-C).  ``--pid`` limits the probes to one
process.  Needs root (bpf and perf_event_open) and the kernel's uprobe PMU
(Linux 4.17+).
"""
from __future__ import annotations

import argparse
import os
import signal
import struct
import subprocess
import sys
import time
from typing import List, Optional

import bpfload

DEFAULT_OBJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bpf",
                              "uprobe_latency.bpf.o")


def read_histogram(hist_map: bpfload.Map) -> List[int]:
    """The 64 buckets of the ``hist`` array: counts of calls that took [2^b, 2^(b+1)) ns."""
    return [struct.unpack("=Q", hist_map[b])[0] for b in range(64)]


def format_histogram(counts: List[int], width: int = 40) -> str:
    """A bcc-style text histogram of the non-empty bucket range (nanoseconds)."""
    used = [b for b, c in enumerate(counts) if c]
    if not used:
        return "no calls seen\n"
    top = max(counts)
    lines = [f"{'nsecs':>25} : {'count':<8} distribution"]
    for b in range(used[0], used[-1] + 1):
        lo, hi = (0 if b == 0 else 1 << b), (1 << (b + 1)) - 1
        bar = "*" * (counts[b] * width // top if top else 0)
        lines.append(f"{lo:>11} -> {hi:<11} : {counts[b]:<8} |{bar:<{width}}|")
    lines.append(f"total {sum(counts)} calls")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", help="path, or library name (c = libc)")
    ap.add_argument("symbol", help="function to time (name or name@@VERSION)")
    ap.add_argument("--pid", type=int, default=-1, help="only this process")
    ap.add_argument("--duration", type=float, default=None, help="seconds to trace (no COMMAND)")
    ap.add_argument("--object", default=DEFAULT_OBJECT, help="the compiled uprobe_latency.bpf.o")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS: run it, then report")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    with bpfload.BpfObject.open(args.object) as obj:
        obj.load()
        entry = obj.programs["lat_entry"].attach_uprobe(args.binary, args.symbol, pid=args.pid)
        with entry:
            ret = obj.programs["lat_return"].attach_uprobe(args.binary, args.symbol,
                                                           retprobe=True, pid=args.pid)
            with ret:
                print(f"tracing {ret.hook.split(' ', 1)[1]}", file=sys.stderr)
                status = 0
                if command:
                    status = subprocess.call(command)
                else:
                    try:
                        if args.duration is not None:
                            time.sleep(args.duration)
                        else:
                            signal.pause()
                    except KeyboardInterrupt:
                        pass
        # both probes are detached: the histogram no longer changes
        sys.stdout.write(format_histogram(read_histogram(obj.maps["hist"])))
        misses = obj.bss["misses"]
        if misses:
            print(f"{misses} returns without a matching entry (attached mid-call)")
    return status


if __name__ == "__main__":
    sys.exit(main())
