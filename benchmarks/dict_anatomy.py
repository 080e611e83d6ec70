"""Where the time of a million-entry dict dump goes (docs/benchmarks.md, case 6).

    python3 benchmarks/dict_anatomy.py          # BPFLOAD_BENCH_ROUNDS rounds (default 15)

The map of bench_maps.py group 6 (HASH u32 -> u64, 1,000,000 entries).  Each
round times, thread CPU time and page faults (``RUSAGE_THREAD``), one after
the other so that the machine's load hits them alike:

* ``C dump``: c_ref.c's raw BPF_MAP_LOOKUP_BATCH of the whole map (the
  reference of every group-6 row);
* the CPython work any C code building the same dict must do, built by
  ``_dict_anatomy.pyx`` (pyximport): ``objects`` (a key and a value object
  per entry, ints or bytes), ``bytes hash`` (SipHash of every 4-byte key, as
  the dict hashes a bytes key), ``table`` (an empty dict with one table for
  a million entries), ``insert`` (the entries into that table with their
  hash known, in the dict's slot order, and in the kernel's order);
* bpfload's ``to_dict`` and ``dict(m.items())``.

Prints per entry the median ns and faults of each piece and of (piece / C
dump), and the floor: (C dump + objects [+ bytes hash] + table + insert in
slot order) / C dump, what no implementation in C can go under while CPython
builds the dict.  What a row costs above the floor is bpfload's own.
"""
from __future__ import annotations

import array
import ctypes
import os
import resource
import statistics
import sys
import tempfile
import time

import pyximport

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
pyximport.install(language_level=3, build_dir=os.path.join(tempfile.gettempdir(), "bpfload-anatomy"))
import _dict_anatomy as A  # noqa: E402  (built by the line above)

from bpfload import Map, MapType  # noqa: E402

N = 1_000_000
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))


def c_reference():
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.conftest import _SIGNATURES, build_c_ref
    lib = ctypes.CDLL(str(build_c_ref()))
    fn = lib.cref_lookup_batch
    fn.argtypes, fn.restype = _SIGNATURES["cref_lookup_batch"], ctypes.c_long
    return fn


def measure(f):
    """(thread CPU seconds, minor faults) of f(); f's result is dropped after both."""
    r0 = resource.getrusage(resource.RUSAGE_THREAD)
    t0 = time.thread_time()
    out = f()
    t = time.thread_time() - t0
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - r0.ru_minflt
    del out
    return t, faults


def main() -> None:
    lookup_batch = c_reference()
    m = Map.create(MapType.HASH, 4, 8, N, name="anat_dict")
    try:
        keys = array.array("I", range(N))
        m.update_batch(keys, array.array("Q", keys))
        kb, vb = bytearray(N * 4), bytearray(N * 8)
        kaddr = ctypes.addressof((ctypes.c_char * len(kb)).from_buffer(kb))
        vaddr = ctypes.addressof((ctypes.c_char * len(vb)).from_buffer(vb))
        fd = m.fd

        def c_dump():
            assert lookup_batch(fd, kaddr, vaddr, 4, 8, N, N) == N
        c_dump()
        # the dump in the kernel's order and in the dict's slot order, with each key's hash
        pairs = list(zip(array.array("I", kb), array.array("Q", vb)))
        bits = next(b for b in range(1, 40) if 2 * 2**b >= 3 * N)
        hashes = {"int": [hash(k) for k, _ in pairs],
                  "bytes": [hash(k.to_bytes(4, sys.byteorder)) for k, _ in pairs]}
        dumps: dict = {"kernel": {}, "slot": {}}
        for kind, hs in hashes.items():
            for order in dumps:
                idx = (sorted(range(N), key=lambda i: hs[i] & (2**bits - 1)) if order == "slot"
                       else range(N))
                dumps[order][kind] = (array.array("I", (pairs[i][0] for i in idx)).tobytes(),
                                      array.array("Q", (pairs[i][1] for i in idx)).tobytes(),
                                      array.array("q", (hs[i] for i in idx)).tobytes())
        del pairs, hashes

        def objects(kind, order="slot"):
            kbytes, vbytes, _ = dumps[order][kind]
            o = A.Objs(N)
            (A.make_ints if kind == "int" else A.make_bytes)(o, kbytes, vbytes, N)
            return o

        def insert(kind, order):
            """Time the insertion alone: objects and table made (and faulted) beforehand."""
            o, d = objects(kind, order), A.sized_dict(N)
            t = measure(lambda: A.insert(d, o, dumps[order][kind][2]))
            return t

        pieces = {
            "int objects": lambda: measure(lambda: objects("int")),
            "bytes objects": lambda: measure(lambda: objects("bytes")),
            "bytes hash": lambda: measure(lambda: A.hash_bytes(dumps["kernel"]["bytes"][0], N)),
            "table": lambda: measure(lambda: A.sized_dict(N)),
            "int insert, slot order": lambda: insert("int", "slot"),
            "int insert, kernel order": lambda: insert("int", "kernel"),
            "bytes insert, slot order": lambda: insert("bytes", "slot"),
            "bytes insert, kernel order": lambda: insert("bytes", "kernel"),
            "to_dict int k/v": lambda: measure(lambda: m.to_dict(int_keys=True, int_values=True)),
            "to_dict bytes": lambda: measure(m.to_dict),
            "dict(m.items())": lambda: measure(lambda: dict(m.items())),
        }
        res: dict = {name: [] for name in ["C dump", *pieces]}
        for r in range(ROUNDS + 1):
            for name, f in pieces.items():
                c = measure(c_dump)
                p = f()
                if r:   # the first round warms up
                    res["C dump"].append((c[0], c[1], 1.0))
                    res[name].append((p[0], p[1], p[0] / c[0]))
        med = {name: (statistics.median(x[0] for x in v) * 1e9 / N, statistics.median(x[1] for x in v),
                      statistics.median(x[2] for x in v)) for name, v in res.items()}
        print(f"{'piece':28s} {'ns/entry':>9s} {'faults':>8s} {'/C dump':>8s}   (median of {ROUNDS})")
        for name, (ns, faults, ratio) in med.items():
            print(f"{name:28s} {ns:9.1f} {faults:8.0f} {ratio:8.3f}")
        for kind, parts in (("int", ("int objects", "table", "int insert, slot order")),
                            ("bytes", ("bytes objects", "bytes hash", "table", "bytes insert, slot order"))):
            floor = 1 + sum(med[p][2] for p in parts)
            print(f"floor for {kind} keys and values: C dump + {' + '.join(parts)} "
                  f"= {floor:.3f}x the C dump")
    finally:
        m.close()


if __name__ == "__main__":
    main()
