"""Time each piece of a per-element map call (docs/benchmarks.md, "Per-element calls").

    python3 benchmarks/elem_anatomy.py

Builds ``_elem_anatomy.pyx`` with pyximport (Cython must be installed) and
times ``for k in keys: m.<piece>(k)`` for each piece, thread CPU time, the
fastest of ROUNDS rounds, the pieces interleaved within each round so that
load from other processes hits them alike.  Prints ns per call and what each
piece adds to the one before it.  No map and no syscall: the C reference
pays the syscall too, so what bpfload adds is the sum of these pieces.
"""
from __future__ import annotations

import array
import os
import sys
import tempfile
import time

import pyximport

N = 200_000
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))
PIECES = ("call", "pack", "hold", "alloc", "check", "release")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
pyximport.install(language_level=3, build_dir=os.path.join(tempfile.gettempdir(), "bpfload-anatomy"))
import _elem_anatomy  # noqa: E402  (built by the line above)


class Sub(_elem_anatomy.Core):
    """bpfload's Map is a Python subclass of the Cython MapCore: called the same way."""


def main() -> None:
    keys = array.array("I", [i % 1024 for i in range(N)]).tolist()
    m = Sub()
    loops = {"loop": None}
    for name in PIECES:
        ns: dict = {"keys": keys, "m": m}
        exec(f"def f():\n    for k in keys:\n        m.{name}(k)\n", ns)
        loops[name] = ns["f"]

    def empty():
        for _ in keys:
            pass
    loops["loop"] = empty
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(ROUNDS):
        for name, f in loops.items():
            t0 = time.thread_time()
            f()
            best[name] = min(best[name], time.thread_time() - t0)
    prev = None
    for name in loops:
        ns_call = best[name] / N * 1e9
        # "release" adds the GIL release to "alloc" (it has no sole-thread test)
        base = best["alloc"] / N * 1e9 if name == "release" else prev
        added = "" if base is None else f"{ns_call - base:+7.1f}"
        print(f"{name:8s} {ns_call:7.1f} ns/call {added}")
        prev = ns_call


if __name__ == "__main__":
    main()
