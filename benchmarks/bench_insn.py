"""Relocation patching throughput: compiled core vs the pure-Python twin.

A self-comparison (bpfload's Cython against bpfload's own Python twin, no C
or libbpf reference): it guards the compiled path against regressions and
shows what compiling it buys; it says nothing about bpfload against libbpf
(bench_libbpf_load.py does).

A synthetic 1,000,000-instruction program (one ld_imm64 + eight ALU
instructions per 10 slots) with 100,000 map relocations, patched by
``patch_maps`` from one prebuilt int32 record buffer, exactly as the loader
does.  Run::

    python3 -m pytest benchmarks/bench_insn.py --benchmark-columns=min,mean,ops

Each benchmark's ``extra_info`` carries ``insns_per_s`` and ``relocs_per_s``
(from the mean round); once both have run, both also carry
``cython_vs_python`` (Python mean time / Cython mean time).  See them with
``--benchmark-json=out.json`` or ``--benchmark-verbose``.
"""
from __future__ import annotations

import struct
from array import array

import pytest

import bpfload._core.insn as cinsn
import bpfload._pyinsn as pyinsn

N_INSNS = 1_000_000
N_RELOCS = 100_000
STRIDE = N_INSNS // N_RELOCS          # slots per block: ld_imm64 (2) + ALU fillers

_results: dict = {}


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


@pytest.fixture(scope="module")
def program():
    block = _insn(0x18, 1) + _insn(0) + b"".join(_insn(0x07, 2, imm=i) for i in range(STRIDE - 2))
    insns = bytes(block * N_RELOCS)
    assert len(insns) == N_INSNS * 8
    relocs = array("i")
    for i in range(N_RELOCS):
        relocs.extend((i * STRIDE, 1, 3 + i % 1000, 0))   # (insn, MAP, fd, addend)
    return insns, relocs


@pytest.mark.parametrize("impl", [cinsn, pyinsn], ids=["cython", "python"])
def test_patch_maps_throughput(benchmark, program, impl):
    insns, relocs = program
    buf = bytearray(insns)
    benchmark.group = f"patch_maps: {N_INSNS:,} insns, {N_RELOCS:,} map relocs"
    benchmark.extra_info.update(insns=N_INSNS, relocs=N_RELOCS)

    assert benchmark(impl.patch_maps, buf, relocs) == N_RELOCS

    # the work was real: every record landed, nothing else moved
    assert buf[1] == 0x11 and struct.unpack_from("<i", buf, 4)[0] == 3
    last = (N_RELOCS - 1) * STRIDE * 8
    assert struct.unpack_from("<i", buf, last + 4)[0] == 3 + (N_RELOCS - 1) % 1000
    assert buf[16:STRIDE * 8] == insns[16:STRIDE * 8]

    if benchmark.stats is None:          # --benchmark-disable
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["insns_per_s"] = round(N_INSNS / mean)
    benchmark.extra_info["relocs_per_s"] = round(N_RELOCS / mean)
    _results[impl.__name__] = (mean, benchmark.extra_info)
    if len(_results) == 2:
        (c_mean, c_info), (p_mean, p_info) = _results[cinsn.__name__], _results[pyinsn.__name__]
        for info in (c_info, p_info):
            info["cython_vs_python"] = round(p_mean / c_mean, 1)
