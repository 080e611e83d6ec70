"""Reading a ``.bss`` counter through the mapping against ``Map.lookup`` of the same value.

bpf/globaldata.bpf.o is loaded once; ``bump`` runs so ``counter`` is not 0.
Three ways to read the counter, each an operation of a round of ``N_READS``:

* reference: ``Map.lookup(0)`` of the ``.bss`` map (one BPF_MAP_LOOKUP_ELEM of
  the whole section) and ``struct.unpack_from`` of the counter: what
  bpfload did before global data was mapped;
* ``obj.bss["counter"]``: the accessor, through the mapping, no syscall;
* ``view[0]`` of ``obj.bss.view("counter")``: the polling-loop form.

Paired rounds, as the other benchmarks: before each round of a mapped
variant, one reference round runs and is timed (``time.thread_time``, CPU
time of this thread), so load from other processes hits both sides of a
pair alike; the ratio is the median over rounds of reference / variant
(how many times faster the mapping is), with its min..max spread.

Run: ``python3 -m pytest benchmarks/bench_globaldata.py --benchmark-only -s``
(the ratios are printed and kept in ``extra_info``), or
``python3 benchmarks/bench_globaldata.py`` for the table alone.
``BPFLOAD_BENCH_ROUNDS`` sets the rounds (default 15).
"""
from __future__ import annotations

import os
import pathlib
import statistics
import struct
import time

import pytest

import bpfload

OBJ = pathlib.Path(__file__).resolve().parent.parent / "bpf" / "globaldata.bpf.o"
N_READS = 50_000
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))
WARMUP = 1
TIMER = time.thread_time
_Q = struct.Struct("=Q")


def rounds_for(obj):
    """(reference round, {variant name: round}) reading the same counter N_READS times."""
    bss_map = obj.maps[".bss"]
    bss = obj.bss
    view = bss.view("counter")
    off = obj.spec.variables["counter"].offset
    want = bss["counter"]
    unpack, lookup = _Q.unpack_from, bss_map.lookup

    def reference():
        for _ in range(N_READS):
            v = unpack(lookup(0), off)[0]
        assert v == want

    def accessor():
        for _ in range(N_READS):
            v = bss["counter"]
        assert v == want

    def view_index():
        for _ in range(N_READS):
            v = view[0]
        assert v == want

    return reference, {"obj.bss[name]": accessor, "view[0]": view_index}


def paired(reference, variant, rounds: int = ROUNDS):
    """Alternate reference and variant rounds; (reference times, variant times)."""
    ref_t, var_t = [], []
    for i in range(rounds + WARMUP):
        t0 = TIMER()
        reference()
        t1 = TIMER()
        variant()
        t2 = TIMER()
        if i >= WARMUP:
            ref_t.append(t1 - t0)
            var_t.append(t2 - t1)
    return ref_t, var_t


def summary(name: str, ref_t, var_t) -> dict:
    ratios = [r / v for r, v in zip(ref_t, var_t)]
    return {"variant": name, "rounds": len(ratios),
            "lookup_ns": round(min(ref_t) * 1e9 / N_READS, 1),
            "mapped_ns": round(min(var_t) * 1e9 / N_READS, 1),
            "ratio": round(statistics.median(ratios), 1),
            "ratio_min": round(min(ratios), 1), "ratio_max": round(max(ratios), 1)}


def _line(s: dict) -> str:
    return (f"{s['variant']:<14} lookup {s['lookup_ns']:>7.1f} ns  mapped {s['mapped_ns']:>6.1f} ns  "
            f"ratio {s['ratio']:>6.1f}x (spread {s['ratio_min']}..{s['ratio_max']}, "
            f"{s['rounds']} pairs)")


@pytest.fixture(scope="module")
def loaded():
    with bpfload.load(OBJ) as obj:
        obj.programs["bump"].test_run(struct.pack("<I", 3) + bytes(60), repeat=7)
        yield obj


@pytest.mark.usefixtures("kernel")
@pytest.mark.benchmark(group="bss counter: mapping vs Map.lookup", timer=TIMER)
@pytest.mark.parametrize("variant", ["obj.bss[name]", "view[0]"])
def test_bss_counter_mapped_vs_lookup(benchmark, loaded, variant):
    reference, variants = rounds_for(loaded)
    run = variants[variant]
    ref_t: list = []

    def setup():
        t0 = TIMER()
        reference()
        ref_t.append(TIMER() - t0)
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    if benchmark.disabled:
        return
    s = summary(variant, ref_t[WARMUP:], list(benchmark.stats.stats.data))
    benchmark.extra_info.update(s)
    print("\n" + _line(s))


if __name__ == "__main__":
    with bpfload.load(OBJ) as obj:
        obj.programs["bump"].test_run(struct.pack("<I", 3) + bytes(60), repeat=7)
        reference, variants = rounds_for(obj)
        for name, run in variants.items():
            print(_line(summary(name, *paired(reference, run))))
