"""Open + load + close, bpfload beside libbpf, in one process, paired rounds.

For each object a round is one open + load + close.  The libbpf round (a
small C library over libbpf-dev, ``c_libbpf_load.c``, built by the run) and
the bpfload round alternate; both are timed in thread CPU time (user and
kernel time of this thread: the verifier runs inside our bpf(2) call; time
spent asleep -- an RCU grace period -- counts on neither side).  The ratio
table at the end (benchmarks/conftest.py) reports the median of bpfload /
the libbpf round just before it.  Warm process: kernel BTF parsed and
caches filled by a first load, as in a long-running agent.

Objects: ``globals`` (minimal: two small programs and global data),
``core_task`` (CO-RE tracing programs against vmlinux BTF), ``demo``
(map-heavy: per-CPU, hash, ring buffer, map-in-map with prepopulated slots,
.rodata), ``large`` (48 programs, 16 maps).  None pins maps by name, so
neither side touches a bpffs.

Run: ``python3 -m pytest benchmarks/bench_libbpf_load.py --benchmark-only``.
Needs a C compiler and libbpf-dev (the reference only; bpfload never links it).
"""
from __future__ import annotations

import ctypes
import os
import shlex
import subprocess
import time

import pytest

import bpfload

from .conftest import BUILD, HERE

BPF = HERE.parent / "bpf"
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))
#: object -> target ratio bpfload / libbpf (the speed issue's targets)
OBJECTS = {"globals": 1.5, "core_task": 1.0, "demo": 1.5, "large": 1.5}
_PER_ROUND = {"globals": 20, "core_task": 4, "demo": 10, "large": 2}


@pytest.fixture(scope="module")
def libbpf_ref():
    if not os.path.exists("/usr/include/bpf/libbpf.h"):
        pytest.skip("libbpf-dev is not installed (the reference only)")
    BUILD.mkdir(exist_ok=True)
    out = BUILD / "c_libbpf_load.so"
    tmp = BUILD / f"c_libbpf_load.{os.getpid()}.so"
    cmd = shlex.split(os.environ.get("CC", "cc")) + [
        "-O2", "-shared", "-fPIC", "-Wall", "-o", str(tmp), str(HERE / "c_libbpf_load.c"), "-lbpf"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        pytest.fail(f"building the libbpf reference failed: {p.stderr}", pytrace=False)
    os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    lib.cref_libbpf_load.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.cref_libbpf_load.restype = ctypes.c_long
    return lib


def _bpfload_round(path: str, n: int) -> float:
    t0 = time.thread_time()
    for _ in range(n):
        bpfload.load(path).close()
    return time.thread_time() - t0


def _libbpf_round(lib, path: str, n: int) -> float:
    ns = lib.cref_libbpf_load(path.encode(), n)
    if ns < 0:
        pytest.fail(f"libbpf could not load {path}: errno {-ns}")
    return ns / 1e9


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_load_vs_libbpf(benchmark, name, libbpf_ref, pairs, kernel):
    path = str(BPF / f"{name}.bpf.o")
    n = _PER_ROUND[name]
    pair = pairs.get_pair(f"load {name}", n, "load", OBJECTS[name])
    _bpfload_round(path, 1)          # warm: kernel BTF, imports, caches
    _libbpf_round(libbpf_ref, path, 1)

    def one():
        c = _libbpf_round(libbpf_ref, path, n)
        py = _bpfload_round(path, n)
        pair.c.append(c)
        pair.c_twin.append(c)
        pair.py.append(py)
    benchmark.group = "load-vs-libbpf"
    benchmark.pedantic(one, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["ratio"] = pair.ratio()
