#!/usr/bin/env python3
"""syscount: count how often one process hits a tracepoint, for a few seconds.

    sudo python3 examples/syscount.py -p PID [-d SECONDS] [-t CATEGORY/NAME]

Loads bpf/attach_trace.bpf.o with ``target_tgid`` set to PID, attaches its
tracepoint counter to CATEGORY/NAME (default syscalls/sys_enter_getppid),
sleeps, and prints ``CATEGORY/NAME pid PID: COUNT``.  Prints one
``counting ...`` line as soon as the counter is attached.  Needs root (or
CAP_BPF + CAP_PERFMON); tracefs is mounted privately for the tracepoint id
lookup when it is not mounted.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from typing import List, Optional

import bpfload

OBJECT = pathlib.Path(__file__).resolve().parent.parent / "bpf" / "attach_trace.bpf.o"
SLOT = 0   # counts[0]: the tracepoint program's counter


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-p", "--pid", type=int, default=os.getpid(),
                    help="process (tgid) to count (default: this one)")
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds to count")
    ap.add_argument("-t", "--tracepoint", default="syscalls/sys_enter_getppid",
                    help="CATEGORY/NAME (default: %(default)s)")
    args = ap.parse_args(argv)
    category, _, name = args.tracepoint.partition("/")

    obj = bpfload.BpfObject.open(OBJECT)
    for prog in obj.spec.programs:     # only the tracepoint counter is needed
        obj.spec.programs[prog].autoload = prog == "tp_getppid"
    obj.rodata["target_tgid"] = args.pid
    try:
        with obj.load():
            counts = obj.maps["counts"]
            with obj.programs["tp_getppid"].attach_tracepoint(category, name):
                print(f"counting {args.tracepoint} for pid {args.pid} for {args.duration} s",
                      flush=True)
                time.sleep(args.duration)
            total = int.from_bytes(counts[SLOT], "little")
    except bpfload.BpfError as e:
        print(f"syscount: {e}", file=sys.stderr)
        return 1
    print(f"{args.tracepoint} pid {args.pid}: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
