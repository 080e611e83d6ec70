"""The generic Map API: construction, attributes, lifetime, element access, dict protocol.

Every assertion is checked against what the kernel reports (``info()``,
/proc/self/fdinfo, values read back through a second fd), never against
what bpfload remembers.
"""
from __future__ import annotations

import array
import ctypes
import errno
import gc
import os
import struct
import subprocess
import sys
import threading
import time

import pytest

import bpfload
from bpfload import BPF_EXIST, BPF_NOEXIST, Map, MapFlags, MapType
from bpfload._core import syscall as _sys
from conftest import sysfs_cpus

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder


def fdinfo(fd: int) -> dict:
    """/proc/self/fdinfo of *fd* as a dict of strings (the kernel's own view)."""
    out = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as e:
        assert e.errno == errno.EBADF
        return False
    return True


def nfds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def hmap():
    with Map.create(MapType.HASH, 4, 8, 16, name="test_hash") as m:
        yield m


# -- construction and attributes --------------------------------------------------

def test_create_attributes_match_kernel_info():
    with Map.create(MapType.HASH, 4, 8, 32, flags=MapFlags.NO_PREALLOC, name="attrs") as m:
        info = m.info()
        kinfo = fdinfo(m.fd)
        assert isinstance(m.type, MapType) and m.type is MapType.HASH
        assert info.type == MapType.HASH and int(kinfo["map_type"]) == MapType.HASH
        assert m.id == info.id == int(kinfo["map_id"]) and m.id > 0
        assert (m.key_size, m.value_size, m.max_entries) == (4, 8, 32)
        assert (info.key_size, info.value_size, info.max_entries) == (4, 8, 32)
        assert int(kinfo["key_size"]) == 4 and int(kinfo["value_size"]) == 8
        assert m.flags == info.flags == MapFlags.NO_PREALLOC
        assert int(kinfo["map_flags"], 16) == MapFlags.NO_PREALLOC
        assert m.name == info.name == "attrs"
        assert m.fd > 2 and m.fileno() == m.fd
        assert not m.closed


def test_two_maps_get_distinct_ids_and_fds():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="a") as a, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="b") as b:
        assert a.id != b.id and a.fd != b.fd
        a[0] = 1
        assert b[0] == bytes(4)  # a write to one is not visible in the other


def test_name_is_sanitized_and_truncated_for_the_kernel():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="my-map.with-a-long-name") as m:
        assert m.info().name == "my_map.with_a_l"  # [A-Za-z0-9_.], 15 bytes
        assert m.name == "my-map.with-a-long-name"  # the Python name is kept for messages


def test_create_without_name():
    with Map.create(MapType.ARRAY, 4, 4, 1) as m:
        assert m.info().name == ""
        m[0] = 5
        assert m[0] == (5).to_bytes(4, NATIVE)


def test_numa_node_sets_the_flag():
    with Map.create(MapType.HASH, 4, 4, 4, name="numa", numa_node=0) as m:
        assert m.info().flags & MapFlags.NUMA_NODE
        assert int(fdinfo(m.fd)["map_flags"], 16) & MapFlags.NUMA_NODE


def test_create_refused_by_kernel_raises_map_error():
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.HASH, 0, 4, 4, name="zero_key")
    e = ei.value
    assert e.command == "BPF_MAP_CREATE" and e.errno == errno.EINVAL
    assert e.target == "zero_key"
    assert "zero_key" in str(e) and "BPF_MAP_CREATE" in str(e)


def test_map_cannot_be_constructed_directly():
    with pytest.raises(TypeError, match="Map.create"):
        Map(1)


def test_from_fd_duplicates():
    with Map.create(MapType.HASH, 4, 4, 4, name="orig") as m:
        before = nfds()
        m2 = Map.from_fd(m.fd)
        try:
            assert nfds() == before + 1
            assert m2.fd != m.fd
            assert m2.id == m.id == int(fdinfo(m2.fd)["map_id"])
            assert (m2.type, m2.key_size, m2.value_size, m2.max_entries) == \
                (MapType.HASH, 4, 4, 4)
            assert m2.name == "orig"
            assert os.get_inheritable(m2.fd) is False  # O_CLOEXEC
            m[1] = 11
            assert m2[1] == (11).to_bytes(4, NATIVE)
        finally:
            m2.close()
        assert nfds() == before
        # closing the duplicate leaves the caller's fd working
        assert m[1] == (11).to_bytes(4, NATIVE)


def test_from_fd_accepts_map_and_fd_objects():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="src") as m, _sys.FD(os.dup(m.fd)) as owner:
        with Map.from_fd(m) as a, Map.from_fd(owner) as b:
            assert a.id == b.id == m.id
            assert len({m.fd, a.fd, b.fd, owner.fileno()}) == 4
        assert not owner.closed


def test_from_fd_of_a_temporary_owner_dups_before_the_owner_dies():
    # Regression: from_fd dropped its only reference to the owner before
    # dup()ing, so the owner closed the number first and from_fd inspected
    # (and could have duplicated) whatever reused it.
    with Map.create(MapType.ARRAY, 4, 4, 1, name="src") as m:
        with pytest.warns(ResourceWarning, match="unclosed"):
            d = Map.from_fd(_sys.FD(os.dup(m.fd), "temp"))
        with d:
            assert d.id == m.id


def test_from_fd_keeps_working_after_original_closed():
    m = Map.create(MapType.ARRAY, 4, 4, 2, name="orig")
    m[1] = 7
    with Map.from_fd(m.fd, name="dup") as d:
        m.close()
        assert d.name == "dup"
        assert d[1] == (7).to_bytes(4, NATIVE)


def test_from_fd_refuses_non_map_fds():
    r, w = os.pipe()
    try:
        with pytest.raises(bpfload.BpfError, match="not a BPF map"):
            Map.from_fd(r)
    finally:
        os.close(r)
        os.close(w)
    insns = b"\xb7\x00\x00\x00\x00\x00\x00\x00" + b"\x95\x00\x00\x00\x00\x00\x00\x00"
    ret = _sys.prog_load(bpfload.ProgType.SOCKET_FILTER, insns, "GPL", "notamap")
    assert ret > 0
    with _sys.FD(ret) as prog:
        with pytest.raises(bpfload.BpfError, match="not a BPF map"):
            Map.from_fd(int(prog))


def test_from_id_opens_the_same_map():
    with Map.create(MapType.HASH, 4, 4, 4, name="by_id") as m:
        m[3] = 33
        with Map.from_id(m.id) as o:
            assert o.id == m.id and o.fd != m.fd
            assert o.name == "by_id" and o.type is MapType.HASH
            assert o[3] == (33).to_bytes(4, NATIVE)
            o[4] = 44
        assert m[4] == (44).to_bytes(4, NATIVE)


def test_from_id_of_missing_map():
    with pytest.raises(bpfload.MapError) as ei:
        Map.from_id(0xFFFFFFF0)
    assert ei.value.errno == errno.ENOENT
    assert ei.value.command == "BPF_MAP_GET_FD_BY_ID"


# -- lifetime ---------------------------------------------------------------------

def test_context_manager_closes_the_fd():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="cm") as m:
        fd = m.fd
        assert fd_is_open(fd)
    assert m.closed
    assert not fd_is_open(fd)


def test_close_is_idempotent():
    m = Map.create(MapType.ARRAY, 4, 4, 1, name="twice")
    fd = m.fd
    m.close()
    m.close()
    assert not fd_is_open(fd)
    assert "closed" in repr(m)


_CLOSED_OPS = {
    "fd": lambda m: m.fd,
    "lookup": lambda m: m.lookup(0),
    "update": lambda m: m.update(0, 1),
    "delete": lambda m: m.delete(0),
    "lookup_and_delete": lambda m: m.lookup_and_delete(0),
    "getitem": lambda m: m[0],
    "setitem": lambda m: m.__setitem__(0, 1),
    "delitem": lambda m: m.__delitem__(0),
    "contains": lambda m: 0 in m,
    "iter": lambda m: list(m),
    "keys": lambda m: m.keys(),
    "items": lambda m: m.items(),
    "to_dict": lambda m: m.to_dict(),
    "to_dict_int": lambda m: m.to_dict(int_keys=True, int_values=True),
    "next_key": lambda m: m.next_key(),
    "sum": lambda m: m.sum(0),
    "lookup_batch": lambda m: m.lookup_batch(),
    "update_batch": lambda m: m.update_batch(bytes(4), bytes(4)),
    "delete_batch": lambda m: m.delete_batch(bytes(4)),
    "info": lambda m: m.info(),
    "freeze": lambda m: m.freeze(),
    "pin": lambda m: m.pin("/sys/fs/bpf/never"),
    "from_fd": lambda m: Map.from_fd(m),
}


@pytest.mark.parametrize("op", sorted(_CLOSED_OPS))
def test_use_after_close_never_touches_a_recycled_fd(op):
    m = Map.create(MapType.HASH, 4, 4, 4, name="gone")
    number = m.fd
    m.close()
    # The lowest free fd is reused: a different map now owns the old number.
    other = Map.create(MapType.HASH, 4, 4, 4, name="reuser")
    try:
        assert other.fd == number
        other[0] = 1234
        calls = _sys.syscall_count()
        with pytest.raises(bpfload.MapClosedError, match="gone"):
            _CLOSED_OPS[op](m)
        assert _sys.syscall_count() == calls  # no bpf(2) at all, least of all on `number`
        # the other map is untouched
        assert other.keys() == [(0).to_bytes(4, NATIVE)]
        assert other[0] == (1234).to_bytes(4, NATIVE)
        assert other.info().name == "reuser"
    finally:
        other.close()


def test_map_closed_error_is_a_value_error():
    m = Map.create(MapType.ARRAY, 4, 4, 1, name="ve")
    m.close()
    with pytest.raises(ValueError):
        m.lookup(0)


# -- element access -----------------------------------------------------------------

def test_update_lookup_delete(hmap):
    assert hmap.lookup(1) is None
    hmap.update(1, 100)
    assert hmap.lookup(1) == (100).to_bytes(8, NATIVE)
    hmap.update(1, 101)
    assert hmap.lookup(1) == (101).to_bytes(8, NATIVE)
    hmap.delete(1)
    assert hmap.lookup(1) is None
    with pytest.raises(bpfload.MapKeyError) as ei:
        hmap.delete(1)
    assert ei.value.command == "BPF_MAP_DELETE_ELEM" and ei.value.errno == errno.ENOENT


def test_ints_are_packed_native_and_twos_complement(hmap):
    hmap.update(0x01020304, -2)
    k = (0x01020304).to_bytes(4, NATIVE)
    assert hmap.keys() == [k]
    assert hmap[k] == (-2).to_bytes(8, NATIVE, signed=True)
    assert struct.unpack("=q", hmap[0x01020304])[0] == -2
    hmap[-1] = 2**64 - 1
    assert hmap[b"\xff\xff\xff\xff"] == b"\xff" * 8


def test_int_too_big_for_the_size_is_refused_before_the_kernel(hmap):
    calls = _sys.syscall_count()
    with pytest.raises(OverflowError):
        hmap.update(2**32, 1)
    with pytest.raises(OverflowError):
        hmap.update(1, 2**64)
    with pytest.raises(OverflowError):
        hmap.update(-(2**31) - 1, 1)
    assert _sys.syscall_count() == calls
    assert hmap.keys() == []


def test_odd_sized_int_keys():
    with Map.create(MapType.HASH, 3, 16, 4, name="odd") as m:
        m[0x010203] = 2**100
        assert m.keys() == [(0x010203).to_bytes(3, NATIVE)]
        assert m[0x010203] == (2**100).to_bytes(16, NATIVE)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array", "ctypes"])
def test_bytes_like_keys_and_values(hmap, kind):
    def conv(b):
        if kind == "bytes":
            return bytes(b)
        if kind == "bytearray":
            return bytearray(b)
        if kind == "memoryview":
            return memoryview(bytearray(b))
        if kind == "array":
            return array.array("B", b)
        return (ctypes.c_ubyte * len(b)).from_buffer_copy(b)
    key = b"\x01\x02\x03\x04"
    val = b"abcdefgh"
    hmap.update(conv(key), conv(val))
    assert hmap.lookup(conv(key)) == val
    assert conv(key) in hmap
    assert hmap.keys() == [key]
    hmap.delete(conv(key))
    assert hmap.lookup(key) is None


def test_update_flags(hmap):
    hmap.update(1, 1, BPF_NOEXIST)
    with pytest.raises(bpfload.MapError) as ei:
        hmap.update(1, 2, BPF_NOEXIST)
    assert ei.value.errno == errno.EEXIST and ei.value.command == "BPF_MAP_UPDATE_ELEM"
    assert hmap[1] == (1).to_bytes(8, NATIVE)
    hmap.update(1, 3, BPF_EXIST)
    assert hmap[1] == (3).to_bytes(8, NATIVE)
    with pytest.raises(bpfload.MapError) as ei:
        hmap.update(2, 3, BPF_EXIST)
    assert ei.value.errno == errno.ENOENT
    assert hmap.lookup(2) is None


def test_lookup_and_delete(hmap):
    hmap[5] = 55
    assert hmap.lookup_and_delete(5) == (55).to_bytes(8, NATIVE)
    assert hmap.lookup(5) is None
    with pytest.raises(bpfload.MapKeyError) as ei:
        hmap.lookup_and_delete(5)
    assert ei.value.command == "BPF_MAP_LOOKUP_AND_DELETE_ELEM"


def test_next_key_walks_every_key(hmap):
    for k in (3, 1, 2):
        hmap[k] = k
    seen = []
    k = hmap.next_key()
    while k is not None:
        seen.append(int.from_bytes(k, NATIVE))
        k = hmap.next_key(k)
    assert sorted(seen) == [1, 2, 3]


def test_hash_full_raises_map_full_error():
    with Map.create(MapType.HASH, 4, 4, 2, name="small") as m:
        m[1] = 1
        m[2] = 2
        with pytest.raises(bpfload.MapFullError) as ei:
            m[3] = 3
        assert ei.value.errno == errno.E2BIG and "small" in str(ei.value)
        m[2] = 22  # replacing an existing key needs no room
        assert sorted(m.keys()) == [(1).to_bytes(4, NATIVE), (2).to_bytes(4, NATIVE)]


def test_freeze_makes_the_map_read_only_for_user_space():
    with Map.create(MapType.ARRAY, 4, 4, 2, name="ro") as m:
        m[0] = 9
        assert int(fdinfo(m.fd)["frozen"]) == 0
        m.freeze()
        assert int(fdinfo(m.fd)["frozen"]) == 1
        with pytest.raises(bpfload.PermissionDeniedError) as ei:
            m[0] = 10
        e = ei.value
        assert e.command == "BPF_MAP_UPDATE_ELEM" and e.errno == errno.EPERM and e.target == "ro"
        assert isinstance(e, PermissionError)
        assert m[0] == (9).to_bytes(4, NATIVE)  # reads still work
        # a frozen map has lost write permission, so a second freeze is EPERM too
        with pytest.raises(bpfload.PermissionDeniedError) as ei:
            m.freeze()
        assert ei.value.command == "BPF_MAP_FREEZE" and ei.value.errno == errno.EPERM


# -- dict protocol --------------------------------------------------------------------

def test_dict_protocol(hmap):
    hmap[1] = 10
    hmap[b"\x02\x00\x00\x00" if NATIVE == "little" else b"\x00\x00\x00\x02"] = 20
    assert hmap[1] == (10).to_bytes(8, NATIVE)
    assert hmap[2] == (20).to_bytes(8, NATIVE)
    assert 1 in hmap and 2 in hmap and 3 not in hmap
    assert sorted(int.from_bytes(k, NATIVE) for k in hmap) == [1, 2]
    assert sorted((int.from_bytes(k, NATIVE), int.from_bytes(v, NATIVE))
                  for k, v in hmap.items()) == [(1, 10), (2, 20)]
    del hmap[1]
    assert 1 not in hmap and hmap.lookup(1) is None
    with pytest.raises(KeyError):
        hmap[1]
    with pytest.raises(bpfload.MapKeyError) as ei:
        del hmap[1]
    assert ei.value.command == "BPF_MAP_DELETE_ELEM"
    assert [int.from_bytes(k, NATIVE) for k in hmap.keys()] == [2]


def test_getitem_missing_raises_map_key_error(hmap):
    with pytest.raises(bpfload.MapKeyError) as ei:
        hmap[42]
    assert isinstance(ei.value, KeyError)
    assert ei.value.command == "BPF_MAP_LOOKUP_ELEM" and ei.value.errno == errno.ENOENT
    assert "test_hash" in str(ei.value)


def test_array_keys_always_exist():
    with Map.create(MapType.ARRAY, 4, 4, 3, name="arr") as m:
        assert [int.from_bytes(k, NATIVE) for k in m] == [0, 1, 2]
        assert 2 in m and 3 not in m
        assert m[1] == bytes(4)
        m[1] = 7
        assert [v for _, v in m.items()] == [bytes(4), (7).to_bytes(4, NATIVE), bytes(4)]


def test_repr_names_the_map(hmap):
    r = repr(hmap)
    assert "test_hash" in r and "HASH" in r and f"fd={hmap.fd}" in r


def test_a_leaked_map_warns_and_closes_its_fd():
    m = Map.create(MapType.ARRAY, 4, 4, 1, name="leaky")
    fd = m.fd
    with pytest.warns(ResourceWarning, match="leaky"):
        del m
        gc.collect()
    assert not fd_is_open(fd)


def test_unclosed_fd_warning_holds_no_reference_to_the_dead_owner():
    # Regression: FD.__dealloc__ warned with source=self, so a warnings
    # recorder (pytest records every test) kept a pointer to freed memory.
    code = (
        "import gc, os, warnings\n"
        "from bpfload._core.syscall import FD\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    FD(os.dup(1), 'leaked')\n"
        "    junk = [bytearray(64) for _ in range(10000)]\n"
        "    assert w[0].source is None, repr(w[0].source)\n"
        "    print(w[0].message)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "unclosed leaked" in r.stdout


# -- the GIL ----------------------------------------------------------------------------

def _releases_the_gil(op, deadline_s: float = 5.0) -> bool:
    """Does calling op() in a loop let another Python thread run?

    With a switch interval of 100 s the interpreter never takes the GIL away
    from this thread: another thread runs only while this one has released
    it voluntarily (Py_BEGIN_ALLOW_THREADS).  The helper thread counts and
    releases the GIL itself right away (time.sleep(0)), so control comes back.
    """
    count = 0
    stop = False

    def other():
        nonlocal count
        while not stop:
            count += 1
            time.sleep(0)

    old = sys.getswitchinterval()
    t = threading.Thread(target=other, daemon=True)
    t.start()
    try:
        sys.setswitchinterval(100.0)
        time.sleep(0.01)  # let the helper reach its GIL wait
        start = count
        end = time.monotonic() + deadline_s
        while count == start and time.monotonic() < end:
            for _ in range(100):
                op()
        return count != start
    finally:
        sys.setswitchinterval(old)
        stop = True
        t.join()


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH,
                                   MapType.LRU_HASH], ids=lambda t: t.name)
def test_element_syscalls_release_the_gil(mtype):
    # "The GIL is released around syscalls" whenever another Python thread
    # exists: lookup/update/delete included, on every map type.  (A sole
    # thread keeps it: see test_sole_thread_is_detected.)
    with Map.create(mtype, 4, 8, 8, name="gil") as m:
        m.update(1, 1)
        assert _releases_the_gil(lambda: m.lookup(1))
        assert _releases_the_gil(lambda: m.update(1, 2))
        if mtype is not MapType.ARRAY:
            def delete():
                m.update(2, 2)
                m.delete(2)
            assert _releases_the_gil(delete)
        # control: a loop that makes no syscall never lets the other thread in
        assert not _releases_the_gil(lambda: m.key_size, deadline_s=0.2)


def test_sole_thread_is_detected():
    # The element calls keep the GIL only while the caller is the only Python
    # thread (nothing could run meanwhile); the test that decides it must see
    # a second thread as soon as it exists, and until it has ended.
    code = (
        "import threading\n"
        "from bpfload._core import syscall\n"
        "assert syscall._sole_thread()\n"
        "go, stop = threading.Event(), threading.Event()\n"
        "t = threading.Thread(target=lambda: (go.set(), stop.wait()))\n"
        "t.start(); go.wait()\n"
        "assert not syscall._sole_thread()\n"
        "stop.set(); t.join()\n"
        "assert syscall._sole_thread()\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


# -- key and value packing (the inlined fast path and the general one agree) ------------

@pytest.mark.parametrize("size, values", [
    (1, [0, 1, 127, 128, 255, -1, -128]),
    (2, [0, 255, 256, 32767, 65535, -1, -32768]),
    (4, [0, 1, 2**30 - 1, 2**30, 2**31, 2**32 - 1, -1, -(2**30), -(2**31)]),
    (8, [0, 2**30 - 1, 2**30, 2**63, 2**64 - 1, -1, -(2**31), -(2**63)]),
], ids=["u8", "u16", "u32", "u64"])
def test_int_keys_and_values_pack_as_twos_complement(size, values):
    with Map.create(MapType.HASH, size, size, 16, name="pack") as m:
        for v in values:
            m.update(v, v)
            raw = v.to_bytes(size, NATIVE, signed=v < 0)
            assert m.lookup(v) == raw and m.lookup(raw) == raw
            assert m.to_dict()[raw] == raw
        assert m.to_dict(int_keys=True, int_values=True) == \
            {v % 2**(8 * size): v % 2**(8 * size) for v in values}
        # one int per distinct key (255 and -1 are the same u8), negative ones included
        for v in {v.to_bytes(size, NATIVE, signed=v < 0): v for v in values}.values():
            m.delete(v)
        assert m.to_dict() == {}


@pytest.mark.parametrize("size, bad", [(1, 256), (1, -129), (2, 65536), (2, -32769),
                                       (4, 2**32), (4, -(2**31) - 1), (8, 2**64),
                                       (8, -(2**63) - 1)])
def test_int_out_of_range_is_refused_before_the_kernel(size, bad):
    with Map.create(MapType.HASH, size, size, 4, name="range") as m:
        calls = _sys.syscall_count()
        with pytest.raises(OverflowError):
            m.update(bad, 0)
        with pytest.raises(OverflowError):
            m.update(0, bad)
        with pytest.raises(OverflowError):
            m.lookup(bad)
        with pytest.raises(OverflowError):
            m.delete(bad)
        assert _sys.syscall_count() == calls


def test_keys_of_other_types_take_the_general_path(hmap):
    hmap.update(True, 7)                  # a bool is an int, not an exact one
    assert hmap.lookup(1) == (7).to_bytes(8, NATIVE)
    hmap.update(bytearray((2).to_bytes(4, NATIVE)), memoryview((8).to_bytes(8, NATIVE)))
    assert hmap[2] == (8).to_bytes(8, NATIVE)
    with pytest.raises(ValueError, match="key is 3 bytes, expected 4"):
        hmap.lookup(b"abc")
    with pytest.raises(ValueError, match="value is 4 bytes, expected 8"):
        hmap.update(1, b"abcd")
    with pytest.raises(TypeError, match="bytes-like or int"):
        hmap.lookup(1.0)


# -- to_dict --------------------------------------------------------------------------------

def _u(b: bytes) -> int:
    return int.from_bytes(b, NATIVE)


def test_to_dict_of_a_hash_equals_dict_of_items():
    with Map.create(MapType.HASH, 4, 8, 1000, name="td_hash") as m:
        assert m.to_dict() == {} and m.to_dict(int_keys=True, int_values=True) == {}
        keys = array.array("I", range(0, 3000, 3))
        m.update_batch(keys, array.array("Q", (k * 7 + 2**40 for k in keys)))
        d = m.to_dict()
        assert type(d) is dict and len(d) == 1000
        assert d == dict(m.items())
        assert all(type(k) is bytes and len(k) == 4 and type(v) is bytes and len(v) == 8
                   for k, v in d.items())
        assert list(d) == [k for k, _ in m.items()]  # the kernel's order, as items()
        ints = m.to_dict(int_keys=True, int_values=True)
        assert ints == {k: k * 7 + 2**40 for k in keys}
        assert all(type(k) is int and type(v) is int for k, v in ints.items())
        assert m.to_dict(int_keys=True) == {_u(k): v for k, v in d.items()}
        assert m.to_dict(int_values=True) == {k: _u(v) for k, v in d.items()}


@pytest.mark.parametrize("key_size, keys", [
    (2, list(range(2**16))),                                    # every u16: 65,536 entries
    (4, [(k * 2654435761) % 2**32 for k in range(70_000)]),     # u32 spread over the range
    (8, [2**64 - 1 - k for k in range(40_000)]                  # above 2^61 - 1: hash = k mod it
        + [2**61 - 1 + k for k in range(-20_000, 20_000)]       # around the hash modulus
        + [k << 40 for k in range(1, 10_001)]),                 # equal low bits
], ids=["u16", "u32", "u64"])
def test_to_dict_int_keys_of_a_big_map_in_hash_order(key_size, keys):
    # to_dict(int_keys=True) of 65,536 entries or more inserts them in the order
    # of the dict's slots (bl_slot_order): every entry, once, with its own
    # value, whatever the key's size or place around 2^61 - 1.
    code = {2: "H", 4: "I", 8: "Q"}[key_size]
    with Map.create(MapType.HASH, key_size, 8, len(keys), name="td_big") as m:
        m.update_batch(array.array(code, keys), array.array("Q", (k ^ 0x5A5A for k in keys)))
        want = {k: k ^ 0x5A5A for k in keys}
        ints = m.to_dict(int_keys=True, int_values=True)
        assert len(ints) == len(keys) and ints == want
        assert m.to_dict(int_keys=True) == {k: v.to_bytes(8, NATIVE) for k, v in want.items()}
        # grouped by the top 8 bits of the slot: the low bits of hash(k) (k mod 2^61 - 1)
        # for a table of 2^bits slots, 2/3 of them usable
        assert _slot_buckets(ints, len(keys)) == sorted(_slot_buckets(ints, len(keys)))
        assert list(ints) != list(want)   # not the kernel's order any more


def _slot_buckets(d: dict, n: int) -> list:
    """The bucket bl_slot_order() puts each key of *d* in, in the dict's order."""
    bits = next(b for b in range(1, 40) if 2 * 2**b >= 3 * n)
    return [(hash(k) & (2**bits - 1)) >> (bits - 8) for k in d]


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.LRU_HASH], ids=lambda t: t.name)
@pytest.mark.parametrize("key_size, value_size", [(4, 8), (12, 20)], ids=["k4v8", "k12v20"])
def test_to_dict_bytes_keys_of_a_big_hash_map(mtype, key_size, value_size):
    # bytes keys of a hash map (65,536 entries or more) go in slot order as well,
    # by the bytes' own hash, where CPython lets the dict take a known hash
    # (3.12 and older); the dict is dict(m.items()) either way
    n = 70_000
    keys = [struct.pack("=IQ", k * 2654435761 % 2**32, k)[:key_size] for k in range(n)]
    values = [(k * 7).to_bytes(8, NATIVE) * 3 for k in range(n)]
    with Map.create(mtype, key_size, value_size, 2 * n, name="td_bytes") as m:  # LRU: no eviction
        m.update_batch(b"".join(keys), b"".join(v[:value_size] for v in values))
        items = m.items()
        want = dict(items)
        assert len(want) == n
        d = m.to_dict()
        assert d == want and all(type(k) is bytes and type(v) is bytes for k, v in d.items())
        if value_size == 8:
            assert m.to_dict(int_values=True) == {k: _u(v) for k, v in want.items()}
        if sys.version_info < (3, 13):
            assert _slot_buckets(d, n) == sorted(_slot_buckets(d, n))
            assert list(d) != [k for k, _ in items]
        else:
            assert list(d) == [k for k, _ in items]
        for k in keys[:: n // 50]:
            assert m.lookup(k) == d[k]


def test_to_dict_of_a_big_array_keeps_the_index_order():
    # an array dumps ascending indices: already in slot order for int keys (not
    # permuted), and its bytes keys are never reordered
    n = 100_000
    with Map.create(MapType.ARRAY, 4, 8, n, name="td_bigarr") as m:
        m.update_batch(array.array("I", range(n)), array.array("Q", (k * 3 for k in range(n))))
        assert list(m.to_dict(int_keys=True, int_values=True).items()) == [(k, k * 3) for k in range(n)]
        assert list(m.to_dict()) == [k.to_bytes(4, NATIVE) for k in range(n)]


def test_to_dict_of_an_array_has_every_index():
    with Map.create(MapType.ARRAY, 4, 4, 5, name="td_arr") as m:
        m[3] = 0xFFFFFFFF
        assert m.to_dict() == dict(m.items())
        assert m.to_dict(int_keys=True, int_values=True) == {0: 0, 1: 0, 2: 0, 3: 2**32 - 1, 4: 0}


@pytest.mark.parametrize("mtype", [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                                   MapType.LRU_PERCPU_HASH], ids=lambda t: t.name)
def test_to_dict_of_a_percpu_map_has_a_list_per_key(mtype):
    ncpu = len(sysfs_cpus("possible"))
    with Map.create(mtype, 4, 8, 4, name="td_pcpu") as m:
        for k in range(4):
            m[k] = [k * 100 + c for c in range(ncpu)]
        d = m.to_dict()
        assert d == dict(m.items()) and len(d) == 4
        assert d[(2).to_bytes(4, NATIVE)] == m.lookup(2) == \
            [(200 + c).to_bytes(8, NATIVE) for c in range(ncpu)]
        assert m.to_dict(int_keys=True, int_values=True) == \
            {k: [k * 100 + c for c in range(ncpu)] for k in range(4)}


def test_to_dict_of_a_percpu_map_with_odd_value_size():
    # per-CPU slots are 8-byte aligned: value_size 4 reads each CPU's first 4 bytes
    ncpu = len(sysfs_cpus("possible"))
    with Map.create(MapType.PERCPU_ARRAY, 4, 4, 2, name="td_pc4") as m:
        m[1] = [0xABCD0000 + c for c in range(ncpu)]
        assert m.to_dict() == dict(m.items())
        assert m.to_dict(int_values=True)[(1).to_bytes(4, NATIVE)] == \
            [0xABCD0000 + c for c in range(ncpu)]


@pytest.mark.parametrize("outer_type", [MapType.HASH_OF_MAPS, MapType.ARRAY_OF_MAPS],
                         ids=lambda t: t.name)
def test_to_dict_of_a_map_in_map_gives_inner_ids(outer_type):
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmpl") as tmpl, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="in1") as i1, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="in2") as i2, \
            Map.create(outer_type, 4, 4, 4, name="outer", inner_map=tmpl) as outer:
        outer[1] = i1
        outer[3] = i2
        d = outer.to_dict()
        assert d == dict(outer.items()) == {(1).to_bytes(4, NATIVE): i1.id,
                                            (3).to_bytes(4, NATIVE): i2.id}
        assert outer.to_dict(int_keys=True) == outer.to_dict(int_keys=True, int_values=True) \
            == {1: i1.id, 3: i2.id}


def test_to_dict_falls_back_where_the_kernel_has_no_batch_lookup():
    # DEVMAP_HASH has no batch commands: the per-element loop gives the same dict
    with Map.create(MapType.DEVMAP_HASH, 4, 4, 8, name="td_devh") as m:
        for k in (5, 6, 9):
            m[k] = 1  # ifindex 1 (lo)
        assert m.to_dict() == dict(m.items())
        assert m.to_dict(int_keys=True, int_values=True) == {5: 1, 6: 1, 9: 1}


@pytest.mark.parametrize("key_size, value_size, kw", [
    (3, 8, {"int_keys": True}),
    (16, 8, {"int_keys": True}),
    (4, 3, {"int_values": True}),
    (4, 16, {"int_values": True, "int_keys": True}),
])
def test_to_dict_refuses_ints_of_other_sizes_before_the_kernel(key_size, value_size, kw):
    with Map.create(MapType.HASH, key_size, value_size, 4, name="td_odd") as m:
        m[1] = 1
        calls = _sys.syscall_count()
        with pytest.raises(ValueError, match="td_odd.*1, 2, 4 or 8"):
            m.to_dict(**kw)
        assert _sys.syscall_count() == calls
        assert m.to_dict() == dict(m.items()) and len(m.to_dict()) == 1


def test_to_dict_flags_are_keyword_only(hmap):
    with pytest.raises(TypeError):
        hmap.to_dict(True)


def test_to_dict_of_a_closed_map_raises_map_closed_error():
    m = Map.create(MapType.HASH, 4, 8, 4, name="td_closed")
    m[1] = 1
    m.close()
    calls = _sys.syscall_count()
    with pytest.raises(bpfload.MapClosedError, match="td_closed"):
        m.to_dict()
    with pytest.raises(bpfload.MapClosedError):
        m.to_dict(int_keys=True, int_values=True)
    with pytest.raises(bpfload.MapClosedError):
        m.to_dict(int_keys=True)  # closed is checked before the arguments
    assert _sys.syscall_count() == calls


def test_to_dict_of_a_keyless_map_is_not_supported():
    with Map.create(MapType.QUEUE, 0, 4, 4, name="td_q") as q:
        q.push(1)
        with pytest.raises(bpfload.NotSupportedError, match="td_q"):
            q.to_dict()
        assert q.pop() == (1).to_bytes(4, NATIVE)
