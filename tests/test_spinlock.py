"""struct bpf_spin_lock and struct bpf_timer in map values (bpf/spinlock.bpf.c).

The kernel finds both fields through the map's BTF value type, so these
tests pass only if the loader creates the maps with the object's BTF.  Two
writers share one value: user space with BPF_F_LOCK (whole values, raw and
typed) and a program with bpf_spin_lock/unlock (run through
BPF_PROG_TEST_RUN); every locked read sees the invariant b == 2a, c == 3a
that both keep, and the totals add up exactly.
"""
from __future__ import annotations

import errno
import struct
import threading
import time

import pytest

import bpfload
from bpfload import BPF_EXIST, BPF_F_LOCK

from conftest import bpf_object

pytestmark = pytest.mark.kernel

# struct locked_val { u64 a; struct bpf_spin_lock lock; u64 b; u64 c; u32 bumps; u32 tag; }
VAL = struct.Struct("<Q I 4x Q Q I I")
assert VAL.size == 40
LOCK_OFF = 8


def val(a: int, bumps: int = 0, tag: int = 0, lock: int = 0) -> bytes:
    return VAL.pack(a, lock, 2 * a, 3 * a, bumps, tag)


def unpack(raw: bytes):
    a, lock, b, c, bumps, tag = VAL.unpack(raw)
    return a, b, c, bumps, tag


def pkt(key: int, array: bool) -> bytes:
    return struct.pack("<IB", key, 1 if array else 0) + bytes(59)


@pytest.fixture
def obj():
    with bpfload.load(bpf_object("spinlock")) as obj:
        yield obj


MAPS = [("locked", False), ("locked_arr", True)]


def test_maps_are_created_with_their_btf_value_types(obj):
    for name in ("locked", "locked_arr", "timers"):
        info = obj.maps[name].info()
        ms = obj.spec.maps[name]
        assert info.btf_id and info.btf_value_type_id == ms.btf_value_type_id != 0
        assert info.btf_key_type_id == ms.btf_key_type_id != 0


@pytest.mark.parametrize("name, array", MAPS)
def test_user_and_program_writers_agree(obj, name, array):
    m = obj.maps[name]
    bump = obj.programs["lock_bump"]
    m.update(1, val(1000, tag=7), BPF_F_LOCK)
    assert bump.test_run(pkt(1, array), repeat=5000).retval == 2  # XDP_PASS
    a, b, c, bumps, tag = unpack(m.lookup(1, BPF_F_LOCK))
    assert (a, b, c, bumps, tag) == (6000, 12000, 18000, 5000, 7)
    # the lock word user space writes is not the kernel's lock: the program still locks
    m.update(1, val(10, lock=0xFFFFFFFF), BPF_F_LOCK | BPF_EXIST)
    assert VAL.unpack(m.lookup(1, BPF_F_LOCK))[1] == 0
    assert bump.test_run(pkt(1, array)).retval == 2
    assert unpack(m.lookup(1, BPF_F_LOCK))[:4] == (11, 22, 33, 1)
    assert obj.programs["lock_check"].test_run(pkt(1, array)).retval == 1


@pytest.mark.parametrize("name, array", MAPS)
def test_concurrent_writers_keep_the_invariant(obj, name, array):
    """A program bumps under the lock on other threads while user space
    rewrites and reads whole values with BPF_F_LOCK: no reader ever sees a
    half-written value, and the final totals add up."""
    m = obj.maps[name]
    bump = obj.programs["lock_bump"]
    check = obj.programs["lock_check"]
    m.update(2, val(0), BPF_F_LOCK)
    stop = threading.Event()
    errors: list = []
    runs = [0, 0]

    def bumper(i):
        try:
            while not stop.is_set():
                assert bump.test_run(pkt(2, array), repeat=2000).retval == 2
                runs[i] += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def checker():
        try:
            while not stop.is_set():
                assert check.test_run(pkt(2, array), repeat=500).retval == 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=bumper, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=checker))
    for t in threads:
        t.start()
    seen = set()
    deadline = time.monotonic() + 1.0
    writes = reads = 0
    try:
        while time.monotonic() < deadline or min(runs) < 3:
            writes += 1
            m.update(2, val(writes * 1_000_000, tag=writes), BPF_F_LOCK)
            for _ in range(4):
                a, b, c, bumps, tag = unpack(m.lookup(2, BPF_F_LOCK))
                reads += 1
                assert b == 2 * a and c == 3 * a, (a, b, c)
                # a is the last user write plus the program's bumps since
                assert a == tag * 1_000_000 + bumps
                seen.add(bumps > 0)
            if time.monotonic() > deadline + 20:
                pytest.fail(f"the program threads made no progress: {runs}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert True in seen, "no read saw the program's bumps on top of a user write"
    assert writes > 1 and reads == 4 * writes
    # after the race: one more user write and a known number of bumps
    m.update(2, val(77, tag=1), BPF_F_LOCK)
    bump.test_run(pkt(2, array), repeat=1234)
    assert unpack(m.lookup(2, BPF_F_LOCK)) == (77 + 1234, 2 * (77 + 1234), 3 * (77 + 1234),
                                               1234, 1)


def test_typed_view_hides_the_lock(obj):
    tv = obj.maps["locked"].typed()
    tv.update(3, {"a": 5, "b": 10, "c": 15, "tag": 9}, BPF_F_LOCK)
    obj.programs["lock_bump"].test_run(pkt(3, False), repeat=10)
    got = tv.lookup(3, BPF_F_LOCK)
    assert got == {"a": 15, "b": 30, "c": 45, "bumps": 10, "tag": 9}
    with pytest.raises(bpfload.TypedValueError,
                       match="'lock' is a struct bpf_spin_lock that the kernel manages"):
        tv.update(3, {"a": 1, "lock": {"val": 1}}, BPF_F_LOCK)
    assert tv.items() == [(3, got)]


def test_f_lock_needs_a_lock_in_the_value(obj):
    with bpfload.Map.create(bpfload.MapType.HASH, 4, 8, 1, name="nolock") as m:
        with pytest.raises(bpfload.SyscallError) as ei:
            m.update(1, 2, BPF_F_LOCK)
        assert ei.value.errno == errno.EINVAL
        assert ei.value.command == "BPF_MAP_UPDATE_ELEM" and ei.value.target == "nolock"
        m.update(1, 2)
        with pytest.raises(bpfload.SyscallError) as ei:
            m.lookup(1, BPF_F_LOCK)
        assert ei.value.errno == errno.EINVAL


def test_timer_fires(obj):
    timers = obj.maps["timers"]
    tv = timers.typed()
    assert tv[0] == {"fired": 0, "runs": 0}   # the bpf_timer member is left out
    ret = obj.programs["timer_arm"].test_run().retval
    assert ret == 0, f"timer_arm returned {ret - (1 << 32) if ret >> 31 else ret}"
    deadline = time.monotonic() + 5
    while tv[0]["fired"] == 0:
        assert time.monotonic() < deadline, "the timer callback never ran"
        time.sleep(0.002)
    assert tv[0]["runs"] >= 1
    # user-space writes leave the kernel's timer alone: it can be started again
    tv[0] = {"fired": 0, "runs": 100}
    assert obj.programs["timer_arm"].test_run().retval == 0
    while tv[0]["fired"] == 0:
        assert time.monotonic() < deadline, "the re-armed timer never ran"
        time.sleep(0.002)
    assert tv[0]["runs"] == 101


@pytest.mark.parametrize("map_name, prog, helper", [
    ("locked", "lock_bump", "bpf_spin_lock"),
    ("timers", "timer_arm", "bpf_timer"),
])
def test_without_btf_the_verifier_refuses(map_name, prog, helper):
    """The kernel finds the lock/timer only through BTF: a map created without
    it makes the program that uses the field fail to load."""
    o = bpfload.BpfObject.open(bpf_object("spinlock"))
    o.maps[map_name].btf_value_type_id = 0
    o.maps[map_name].btf_key_type_id = 0
    with pytest.raises(bpfload.LoadError) as ei:
        o.load()
    assert ei.value.errno == errno.EINVAL
    assert f"map '{map_name}' has to have BTF in order to use {helper}" in ei.value.log
    assert ei.value.program == prog
