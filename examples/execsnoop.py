#!/usr/bin/env python3
"""execsnoop: print every successful execve() on the machine, as it happens.

    sudo python3 examples/execsnoop.py [--duration S] [--json] [--object PATH]

Loads bpf/attach_execsnoop.bpf.o (a ``tp_btf/sched_process_exec`` program
writing one record per exec to a ring buffer), attaches it with
``attach_all()``, and prints one line per exec: time, pid, ppid, uid, comm
and the filename given to execve().  The records are decoded with the
object's own BTF (``struct exec_event``), so this script knows no offsets.
Stops at the end of ``--duration`` or on Ctrl-C and says how many records
were seen and how many the program dropped because the ring was full.

Needs root, Linux 5.8+ with BTF (tp_btf, ring buffers).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import List, Optional

import bpfload
from bpfload.btf import Kind
from bpfload.btf.typed import codec_for

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OBJECT = os.path.join(HERE, "..", "bpf", "attach_execsnoop.bpf.o")


def _text(b: bytes) -> str:
    return bytes(b).split(b"\0", 1)[0].decode(errors="replace")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--object", default=DEFAULT_OBJECT, help="the BPF object to load")
    args = ap.parse_args(argv)
    if args.duration is not None and not args.duration > 0:
        print("execsnoop: --duration must be > 0", file=sys.stderr)
        return 2

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append("SIGINT"))
    signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
    seen = 0
    start = time.monotonic()

    with bpfload.load(args.object) as obj:
        btf = obj.spec.btf
        codec = codec_for(btf, btf.find("exec_event", Kind.STRUCT).id)

        def on_record(data: memoryview) -> None:
            nonlocal seen
            seen += 1
            e = codec.decode(bytes(data[:codec.size]))
            rec = {"t": round(time.monotonic() - start, 6), "pid": e["pid"], "ppid": e["ppid"],
                   "uid": e["uid"], "comm": _text(e["comm"]), "filename": _text(e["filename"])}
            if args.json:
                print(json.dumps(rec), flush=True)
            else:
                print(f"{rec['t']:<10.3f} {rec['pid']:<8} {rec['ppid']:<8} {rec['uid']:<6} "
                      f"{rec['comm']:<16} {rec['filename']}", flush=True)

        obj.attach_all()
        with bpfload.RingBuffer(obj.maps["execs"], on_record) as rb:
            if args.json:
                print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
            else:
                print(f"{'TIME(s)':<10} {'PID':<8} {'PPID':<8} {'UID':<6} {'COMM':<16} FILENAME",
                      flush=True)
            deadline = None if args.duration is None else start + args.duration
            while not stop and (deadline is None or time.monotonic() < deadline):
                left = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                rb.poll(int(left * 1000) or 1)
            rb.consume()
        dropped = obj.bss["dropped"]
    summary = {"seen": seen, "dropped": dropped, "stopped_by": stop[0] if stop else "duration"}
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        print(f"{seen} execs seen, {dropped} dropped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
