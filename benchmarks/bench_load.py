"""Open + load time of a large object, split into parse, relocate and verifier parts.

``bpf/large.bpf.o``: 48 xdp programs, 16 maps, two shared subprograms, 64
map references a program.  Each part is timed on its own so a regression
shows where it is:

* parse: ``BpfObject.open`` (ELF + BTF into an ObjectSpec, no syscalls);
* relocate: link every program and patch its map references, Cython and the
  pure-Python twin side by side (fds are fake: no syscalls);
* verifier: BPF_PROG_LOAD of the relocated programs (kernel time);
* full: open + load + close.

No reference here: the relocate group is a self-comparison (Cython vs the
pure-Python twin) and the other groups are absolute times that move with
host load.  Loading against libbpf, side by side, is bench_libbpf_load.py.

Run: ``python3 -m pytest benchmarks/bench_load.py --benchmark-only``.
"""
from __future__ import annotations

import pathlib

import pytest

import bpfload
from bpfload import _pyinsn
from bpfload._core import insn as cinsn
from bpfload.programs import load_program

LARGE = pathlib.Path(__file__).resolve().parent.parent / "bpf" / "large.bpf.o"


@pytest.fixture(scope="module")
def spec():
    return bpfload.BpfObject.open(LARGE).spec


@pytest.mark.benchmark(group="load-parse")
def test_parse(benchmark):
    s = benchmark(lambda: bpfload.BpfObject.open(LARGE).spec)
    benchmark.extra_info["programs"] = len(s.programs)
    benchmark.extra_info["insns"] = sum(p.insn_count for p in s.programs.values())


def _relocate_all(mod, spec):
    fds = {name: 100 + i for i, name in enumerate(spec.maps)}
    n = 0
    for name in spec.programs:
        linked = mod.link(name, spec.functions)
        mod.apply(linked, fds)
        n += linked.insn_count
    return n


@pytest.mark.benchmark(group="load-relocate")
@pytest.mark.parametrize("impl", ["cython", "python"])
def test_relocate(benchmark, spec, impl):
    mod = cinsn if impl == "cython" else _pyinsn
    n = benchmark(_relocate_all, mod, spec)
    benchmark.extra_info["linked_insns"] = n
    benchmark.extra_info["insns_per_s"] = n / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="load-verifier")
def test_verifier(benchmark, spec):
    with bpfload.load(LARGE) as obj:
        fds = {name: m.fd for name, m in obj.maps.items()}
        linked = []
        for name, ps in spec.programs.items():
            lp = cinsn.link(name, spec.functions)
            cinsn.apply(lp, fds)
            linked.append((ps, lp))

        def verify_all():
            for ps, lp in linked:
                load_program(ps.type, lp.insns, name=ps.name, license="GPL").close()

        benchmark.pedantic(verify_all, rounds=5, iterations=1)


@pytest.mark.benchmark(group="load-full")
def test_open_load_close(benchmark):
    def full():
        with bpfload.load(LARGE) as obj:
            return len(obj.programs)
    assert benchmark.pedantic(full, rounds=5, iterations=1) == 48
