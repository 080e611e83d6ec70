"""Regression (issue 10, Medium 5): verifier-log retries are bounded.

A log that does not fit the first buffer is retried once, with the size the
kernel reports (log_true_size, Linux 6.4+), instead of growing 64 KiB -> 256 KiB
-> 1 MiB ...; a failure with a complete log is not retried, and E2BIG
("program too large/complex") is not retried at all.  Counted with
bpf(2) call deltas (``syscall_count()``): load_program makes no other call.
"""
from __future__ import annotations

import struct

import pytest

import bpfload
from bpfload._core import syscall as _sys
from bpfload.programs import load_program

pytestmark = pytest.mark.kernel


def _mov_imm(dst: int, imm: int) -> bytes:
    return struct.pack("<BBhi", 0xB7, dst, 0, imm)          # BPF_ALU64 | BPF_MOV | BPF_K


def _mov_reg(dst: int, src: int) -> bytes:
    return struct.pack("<BBhi", 0xBF, dst | (src << 4), 0, 0)  # BPF_ALU64 | BPF_MOV | BPF_X


EXIT = struct.pack("<BBhi", 0x95, 0, 0, 0)

#: 20,000 instructions, then a read of the uninitialized r2: the verifier refuses it
#: (EACCES, "R2 !read_ok") with a level-1 log of several hundred KiB (it replays
#: the path), far beyond the first 64 KiB buffer and beyond 256 KiB.
LONG = _mov_imm(0, 0) * 20_000 + _mov_reg(0, 2) + EXIT
#: the same refusal with a short log
SHORT = _mov_imm(0, 0) + _mov_reg(0, 2) + EXIT


def _calls(insns, **kw):
    before = _sys.syscall_count()
    with pytest.raises(bpfload.LoadError) as ei:
        load_program(bpfload.ProgType.SOCKET_FILTER, insns, name="refused", **kw)
    return _sys.syscall_count() - before, ei.value


def test_long_log_is_fetched_with_one_exact_retry():
    n, e = _calls(LONG, log_level=1)
    assert e.errno == 13 and "R2 !read_ok" in e.log, e
    assert len(e.log) > 256 * 1024, len(e.log)   # before: 64K, 256K, 1M: 3 calls
    assert n == 2, f"{n} BPF_PROG_LOAD calls (one with 64 KiB, one with log_true_size expected)"


def test_long_log_without_log_level():
    n, e = _calls(LONG)
    assert e.errno == 13 and "R2 !read_ok" in e.log
    assert n == 3, f"{n} calls: expected plain, 64 KiB log, exact-size log"


def test_complete_log_not_retried():
    n, e = _calls(SHORT, log_level=1)
    assert e.errno == 13 and "R2 !read_ok" in e.log
    assert n == 1
    n, _ = _calls(SHORT)
    assert n == 2   # plain, then once with a log


def test_too_large_not_retried_and_hint():
    big = _mov_imm(0, 0) * 1_000_001 + EXIT   # beyond BPF_COMPLEXITY_LIMIT_INSNS
    n, e = _calls(big)
    assert e.errno == 7
    assert n == 1, f"{n} calls: E2BIG must not be retried with a log"
    assert "program too large/complex" in e.hint and "max_entries" not in e.hint
    assert "program too large/complex" in str(e)
