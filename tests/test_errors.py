"""Errors: the BpfError family as the kernel produces it, and what is refused
before any bpf(2) call (wrong sizes and types)."""
from __future__ import annotations

import errno
import sys

import pytest

import bpfload
from bpfload import BPF_EXIST, BPF_NOEXIST, Map, MapType
from bpfload._core import syscall as _sys
from conftest import sysfs_cpus

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder
NCPU = len(sysfs_cpus("possible"))
ENOTSUPP = 524


@pytest.fixture
def h():
    with Map.create(MapType.HASH, 4, 8, 2, name="errmap") as m:
        yield m


# -- errors the kernel produces, one per errno class --------------------------------

def _create_bad(_):
    Map.create(MapType.ARRAY, 4, 4, 0, name="errmap")  # max_entries 0


def _full(m):
    m[1] = 1
    m[2] = 2
    m[3] = 3


def _frozen(m):
    m.freeze()
    m[1] = 1


def _ringbuf(_):
    with Map.create(MapType.RINGBUF, 0, 0, 4096, name="errmap") as rb:
        rb.lookup(b"")


CASES = [
    # (operation, class, command, errno)
    (_create_bad, bpfload.MapError, "BPF_MAP_CREATE", errno.EINVAL),
    (lambda m: m.delete(5), bpfload.MapKeyError, "BPF_MAP_DELETE_ELEM", errno.ENOENT),
    (lambda m: m[5], bpfload.MapKeyError, "BPF_MAP_LOOKUP_ELEM", errno.ENOENT),
    (lambda m: m.lookup_and_delete(5), bpfload.MapKeyError, "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
     errno.ENOENT),
    (lambda m: m.update(5, 1, BPF_EXIST), bpfload.MapError, "BPF_MAP_UPDATE_ELEM", errno.ENOENT),
    (lambda m: (m.update(5, 1), m.update(5, 1, BPF_NOEXIST)), bpfload.MapError,
     "BPF_MAP_UPDATE_ELEM", errno.EEXIST),
    (lambda m: m.update(5, 1, 0x100), bpfload.MapError, "BPF_MAP_UPDATE_ELEM", errno.EINVAL),
    (_full, bpfload.MapFullError, "BPF_MAP_UPDATE_ELEM", errno.E2BIG),
    (_frozen, bpfload.PermissionDeniedError, "BPF_MAP_UPDATE_ELEM", errno.EPERM),
    (_ringbuf, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_ELEM", ENOTSUPP),
    (lambda m: m.delete_batch((5).to_bytes(4, NATIVE)), bpfload.MapKeyError,
     "BPF_MAP_DELETE_BATCH", errno.ENOENT),
]


@pytest.mark.parametrize("op,cls,command,err", CASES,
                         ids=[f"{c[2]}-{errno.errorcode.get(c[3], 'ENOTSUPP')}" for c in CASES])
def test_kernel_errors_carry_command_target_and_errno(h, op, cls, command, err):
    with pytest.raises(bpfload.BpfError) as ei:
        op(h)
    e = ei.value
    assert type(e) is cls, f"{type(e).__name__}: {e}"
    assert isinstance(e, bpfload.SyscallError) and isinstance(e, OSError)
    assert e.command == command and e.errno == err and e.target == "errmap"
    msg = str(e)
    assert command in msg and "'errmap'" in msg and f"[Errno {err}]" in msg
    assert e.hint and e.hint in msg
    assert msg.count("[Errno") == 1


def test_builtin_mixins():
    assert issubclass(bpfload.MapKeyError, KeyError)
    assert issubclass(bpfload.MapKeyError, bpfload.MapError)
    assert issubclass(bpfload.MapFullError, bpfload.MapError)
    assert issubclass(bpfload.PermissionDeniedError, PermissionError)
    assert issubclass(bpfload.MapClosedError, ValueError)
    assert issubclass(bpfload.PinError, OSError)
    for cls in (bpfload.SyscallError, bpfload.MapError, bpfload.MapClosedError,
                bpfload.PinError, bpfload.NotSupportedError):
        assert issubclass(cls, bpfload.BpfError)


def test_key_error_is_caught_as_key_error(h):
    try:
        h[99]
    except KeyError as e:
        assert isinstance(e, bpfload.MapKeyError)
    else:
        pytest.fail("no KeyError")


def test_batch_error_says_how_far_it_got():
    with Map.create(MapType.HASH, 4, 4, 4, name="partial") as m:
        m[1] = 1
        m[2] = 2
        keys = b"".join(k.to_bytes(4, NATIVE) for k in (1, 7, 2))
        with pytest.raises(bpfload.MapKeyError) as ei:
            m.delete_batch(keys)
        assert "1 of 3" in str(ei.value) and ei.value.command == "BPF_MAP_DELETE_BATCH"
        assert m.keys() == [(2).to_bytes(4, NATIVE)]  # stopped at the absent key


# -- refused before any syscall ----------------------------------------------------

def _no_syscall(fn, exc, match):
    calls = _sys.syscall_count()
    with pytest.raises(exc, match=match):
        fn()
    assert _sys.syscall_count() == calls, "a bpf(2) call was made before refusing"


WRONG_SIZE = {
    "lookup short key": lambda m: m.lookup(b"\x01\x02\x03"),
    "lookup long key": lambda m: m.lookup(b"\x00" * 5),
    "getitem": lambda m: m[b"\x00"],
    "contains": lambda m: b"\x00" in m,
    "update key": lambda m: m.update(b"\x00" * 8, b"\x00" * 8),
    "update value": lambda m: m.update(1, b"\x00" * 4),
    "update value bytearray": lambda m: m.update(1, bytearray(9)),
    "update value memoryview": lambda m: m.update(1, memoryview(b"\x00" * 7)),
    "setitem value": lambda m: m.__setitem__(1, b"x"),
    "delete": lambda m: m.delete(b"\x00" * 2),
    "delitem": lambda m: m.__delitem__(bytearray(3)),
    "lookup_and_delete": lambda m: m.lookup_and_delete(b""),
    "next_key": lambda m: m.next_key(b"\x00" * 3),
    "sum": lambda m: m.sum(b"\x00"),
    "update_batch keys": lambda m: m.update_batch(b"\x00" * 6, b"\x00" * 16),
    "update_batch values": lambda m: m.update_batch(b"\x00" * 8, b"\x00" * 8),
    "delete_batch": lambda m: m.delete_batch(b"\x00" * 5),
}


@pytest.mark.parametrize("op", sorted(WRONG_SIZE))
def test_wrong_size_is_a_value_error_before_the_kernel(h, op):
    _no_syscall(lambda: WRONG_SIZE[op](h), ValueError, "errmap")
    assert h.keys() == []


def test_size_error_message_gives_both_sizes(h):
    with pytest.raises(ValueError) as ei:
        h.update(1, b"abc")
    assert "3 bytes" in str(ei.value) and "8" in str(ei.value) and "value" in str(ei.value)
    with pytest.raises(ValueError) as ei:
        h.lookup(b"abcdef")
    assert "6 bytes" in str(ei.value) and "4" in str(ei.value) and "key" in str(ei.value)


@pytest.mark.parametrize("key", ["text", 1.5, None, [1, 2, 3, 4]])
def test_wrong_type_is_a_type_error_before_the_kernel(h, key):
    _no_syscall(lambda: h.lookup(key), TypeError, "errmap")
    _no_syscall(lambda: h.update(1, key), TypeError, "errmap")


def test_percpu_value_errors_before_the_kernel():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 2, name="pcerr") as m:
        _no_syscall(lambda: m.update(1, [1] * (NCPU + 1)), ValueError, "possible CPUs")
        _no_syscall(lambda: m.update(1, [1] * (NCPU - 1) if NCPU > 1 else []), ValueError,
                    "pcerr")
        _no_syscall(lambda: m.update(1, [b"\x00" * 4] * NCPU), ValueError, "pcerr")
        _no_syscall(lambda: m.update(1, b"\x00" * 7), ValueError, "pcerr")
        _no_syscall(lambda: m.update(b"\x00", 1), ValueError, "pcerr")
        assert m.keys() == []


def test_keyless_value_size_before_the_kernel():
    with Map.create(MapType.QUEUE, 0, 4, 2, name="qerr") as q:
        _no_syscall(lambda: q.push(b"\x00" * 3), ValueError, "qerr")
        _no_syscall(lambda: q.push(2**32), OverflowError, "does not fit")
        assert q.peek() is None


def test_int_for_a_huge_key_is_refused():
    with Map.create(MapType.HASH, 300, 4, 1, name="bigkey") as m:
        _no_syscall(lambda: m.lookup(1), ValueError, "bigkey")
        m[b"\x01" * 300] = 1
        assert m[b"\x01" * 300] == (1).to_bytes(4, NATIVE)


def test_closed_map_error_names_the_map():
    m = Map.create(MapType.HASH, 4, 4, 1, name="shut")
    m.close()
    _no_syscall(lambda: m.lookup(1), bpfload.MapClosedError, "'shut' is closed")
