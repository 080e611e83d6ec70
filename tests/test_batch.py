"""Bulk access: lookup/update/delete/lookup_and_delete batches into contiguous
buffers, on the kernel's batch commands and on the per-element fallback.

Every bulk result is compared with a slow reference read element by element
(BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM issued by the test itself through
ctypes, not through bpfload), and the syscall counter tells which path ran.
"""
from __future__ import annotations

import array
import ctypes
import errno
import os
import socket
import struct
import sys
import threading

import pytest

import bpfload
from bpfload import Map, MapFlags, MapType
from bpfload._core import syscall as _sys
from conftest import sysfs_cpus

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder
ENOTSUPP = 524
# enum bpf_cmd
BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_AND_DELETE_BATCH = 24, 25
BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH = 26, 27


_libc = ctypes.CDLL(None, use_errno=True)
_NR_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
_GET_NEXT_KEY, _LOOKUP_ELEM = 4, 1
_PERCPU_TYPES = {5, 6, 10, 21}         # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, ...STORAGE


class _ElemAttr(ctypes.Structure):     # the BPF_MAP_*_ELEM / GET_NEXT_KEY part of union bpf_attr
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def _bpf(cmd: int, attr: _ElemAttr) -> int:
    ret = _libc.syscall(_NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    return 0 if ret == 0 else ctypes.get_errno()


def reference(m) -> dict:
    """The map's content read one element at a time by raw bpf(2) calls of the test's
    own (the slow, independent reference): key bytes -> value bytes (per-CPU maps: a
    list of one value per possible CPU)."""
    fd, ks, vs = m.fd, m.key_size, m.value_size
    percpu = int(m.type) in _PERCPU_TYPES
    ncpu = len(sysfs_cpus("possible"))
    stride = (vs + 7) // 8 * 8
    key, nxt = ctypes.create_string_buffer(ks), ctypes.create_string_buffer(ks)
    val = ctypes.create_string_buffer(stride * ncpu if percpu else vs)
    out: dict = {}
    first = True
    while True:
        a = _ElemAttr(map_fd=fd, key=0 if first else ctypes.addressof(key),
                      value=ctypes.addressof(nxt))
        err = _bpf(_GET_NEXT_KEY, a)
        if err == errno.ENOENT:
            return out
        assert err == 0, os.strerror(err)
        first = False
        ctypes.memmove(key, nxt, ks)
        err = _bpf(_LOOKUP_ELEM, _ElemAttr(map_fd=fd, key=ctypes.addressof(key),
                                          value=ctypes.addressof(val)))
        if err == errno.ENOENT:            # deleted meanwhile
            continue
        assert err == 0, os.strerror(err)
        raw = val.raw
        out[key.raw] = [raw[i * stride:i * stride + vs] for i in range(ncpu)] if percpu \
            else raw[:vs]


def split(m, keys, values, n) -> dict:
    ks, vs = m.key_size, m.value_stride
    assert len(keys) >= n * ks and len(values) >= n * vs
    kb, vb = bytes(keys), bytes(values)
    out = {kb[i * ks:(i + 1) * ks]: vb[i * vs:(i + 1) * vs] for i in range(n)}
    assert len(out) == n, "a key was returned twice"
    return out


def u32s(*vals) -> bytes:
    return array.array("I", vals).tobytes()


def bounded(fn, seconds: float = 10.0):
    """fn() in a daemon thread: a fallback loop that spins (GIL released) fails
    the test instead of hanging the run."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the test thread
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


class Calls:
    """Counts bpf(2) calls made inside a with block."""

    def __enter__(self):
        self.start = _sys.syscall_count()
        return self

    def __exit__(self, *exc):
        self.n = _sys.syscall_count() - self.start


@pytest.fixture
def filled():
    with Map.create(MapType.HASH, 4, 8, 64, name="bulk") as m:
        for k in range(40):
            m[k] = k * 1000 + 7
        yield m


@pytest.fixture(autouse=True)
def _no_fault_left_armed():
    yield
    assert not _sys.fault_pending()
    _sys.inject_fault(0, 0)


# -- lookup_batch ---------------------------------------------------------------------

def test_lookup_batch_returns_the_whole_map_in_one_call(filled):
    ref = reference(filled)
    assert len(ref) == 40
    with Calls() as c:
        keys, values, n = filled.lookup_batch()
    assert c.n == 1
    assert n == 40 and isinstance(keys, bytearray) and isinstance(values, bytearray)
    assert len(keys) == 40 * 4 and len(values) == 40 * 8  # trimmed to count
    assert split(filled, keys, values, n) == ref


def test_lookup_batch_of_an_empty_map():
    with Map.create(MapType.HASH, 4, 4, 8, name="empty") as m:
        with Calls() as c:
            assert m.lookup_batch() == (bytearray(), bytearray(), 0)
        assert c.n == 1


@pytest.mark.parametrize("chunk", [1, 3, 16, 40, 1000])
def test_chunked_lookup_batch(filled, chunk):
    with Calls() as c:
        keys, values, n = filled.lookup_batch(chunk=chunk)
    assert n == 40 and split(filled, keys, values, n) == reference(filled)
    if chunk < 40:
        assert c.n > 1


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "array"])
def test_lookup_batch_into_preallocated_buffers(filled, kind):
    if kind == "bytearray":
        kout, vout = bytearray(64 * 4), bytearray(64 * 8)
    elif kind == "memoryview":
        kout, vout = memoryview(bytearray(64 * 4)), memoryview(bytearray(64 * 8))
    else:
        kout, vout = array.array("I", [0] * 64), array.array("Q", [0] * 64)
    keys, values, n = filled.lookup_batch(kout, vout)
    assert keys is kout and values is vout and n == 40
    got = split(filled, memoryview(kout).cast("B"), memoryview(vout).cast("B"), n)
    assert got == reference(filled)
    if kind == "array":
        pairs = {kout[i]: vout[i] for i in range(n)}
        assert pairs == {k: k * 1000 + 7 for k in range(40)}
    # polling again into the same buffers sees changes
    filled[3] = 5
    del filled[4]
    _, _, n = filled.lookup_batch(kout, vout)
    assert n == 39
    assert split(filled, memoryview(kout).cast("B"), memoryview(vout).cast("B"), n) == \
        reference(filled)


def test_lookup_batch_buffer_errors(filled):
    with Calls() as c:
        with pytest.raises(ValueError, match="values_out"):
            filled.lookup_batch(bytearray(64 * 4))
        with pytest.raises(ValueError, match="keys_out"):
            filled.lookup_batch(values_out=bytearray(64 * 8))  # was silently ignored
        with pytest.raises(BufferError):
            filled.lookup_batch(bytes(64 * 4), bytearray(64 * 8))  # read-only
    assert c.n == 0


def test_lookup_batch_of_an_array_in_chunks():
    with Map.create(MapType.ARRAY, 4, 4, 10, name="arrbulk") as m:
        for i in range(10):
            m[i] = i * i
        keys, values, n = m.lookup_batch(chunk=4)
        assert n == 10
        assert list(array.array("I", bytes(keys))) == list(range(10))
        assert list(array.array("I", bytes(values))) == [i * i for i in range(10)]


# -- update / delete -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array"])
def test_update_batch_from_contiguous_buffers(kind):
    raw_k = u32s(*range(10, 20))
    raw_v = array.array("Q", [k * 3 for k in range(10, 20)]).tobytes()
    conv = {"bytes": bytes, "bytearray": bytearray,
            "memoryview": lambda b: memoryview(b),
            "array": lambda b: array.array("B", b)}[kind]
    with Map.create(MapType.HASH, 4, 8, 16, name="ub") as m:
        with Calls() as c:
            assert m.update_batch(conv(raw_k), conv(raw_v)) == 10
        assert c.n == 1
        assert reference(m) == {k.to_bytes(4, NATIVE): (k * 3).to_bytes(8, NATIVE)
                                for k in range(10, 20)}
        assert m.update_batch(b"", b"") == 0


def test_update_batch_typed_arrays():
    with Map.create(MapType.HASH, 4, 4, 8, name="typed") as m:
        m.update_batch(array.array("I", [1, 2, 3]), array.array("i", [-1, -2, -3]))
        assert {int.from_bytes(k, NATIVE): int.from_bytes(v, NATIVE, signed=True)
                for k, v in reference(m).items()} == {1: -1, 2: -2, 3: -3}


def test_update_batch_full_map_says_how_many_were_written():
    with Map.create(MapType.HASH, 4, 4, 3, name="tight") as m:
        with pytest.raises(bpfload.MapFullError) as ei:
            m.update_batch(u32s(1, 2, 3, 4, 5), u32s(1, 2, 3, 4, 5))
        e = ei.value
        assert e.command == "BPF_MAP_UPDATE_BATCH" and e.errno == errno.E2BIG
        assert "3 of 5" in str(e) and "'tight'" in str(e)
        assert len(reference(m)) == 3


def test_update_batch_with_exist_flags_goes_per_element():
    # The UAPI documents BPF_NOEXIST/BPF_EXIST for BPF_MAP_UPDATE_BATCH, but the
    # kernel refuses any elem_flags other than BPF_F_LOCK: bpfload writes those
    # element by element, with the flag's meaning kept.
    with Map.create(MapType.HASH, 4, 4, 8, name="flags") as m:
        m.update_batch(u32s(1, 2), u32s(1, 1))
        with Calls() as c:
            assert m.update_batch(u32s(1, 2), u32s(5, 5), bpfload.BPF_EXIST) == 2
        assert c.n == 2                                    # two UPDATE_ELEM, no batch call
        assert set(reference(m).values()) == {u32s(5)}
        with pytest.raises(bpfload.MapError) as ei:
            m.update_batch(u32s(3, 1), u32s(7, 7), bpfload.BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        assert "1 of 2" in str(ei.value)                   # key 3 written, key 1 refused
        assert reference(m)[u32s(3)] == u32s(7) and reference(m)[u32s(1)] == u32s(5)
        with pytest.raises(bpfload.MapError) as ei:
            m.update_batch(u32s(9), u32s(1), bpfload.BPF_EXIST)
        assert ei.value.errno == errno.ENOENT and "0 of 1" in str(ei.value)


def test_delete_batch(filled):
    with Calls() as c:
        assert filled.delete_batch(u32s(*range(0, 40, 2))) == 20
    assert c.n == 1
    assert sorted(int.from_bytes(k, NATIVE) for k in reference(filled)) == list(range(1, 40, 2))
    assert filled.delete_batch(array.array("I")) == 0


def test_delete_batch_stops_at_an_absent_key(filled):
    with pytest.raises(bpfload.MapKeyError) as ei:
        filled.delete_batch(u32s(1, 2, 999, 3))
    e = ei.value
    assert isinstance(e, KeyError)
    assert e.command == "BPF_MAP_DELETE_BATCH" and e.errno == errno.ENOENT
    assert "2 of 4" in str(e)
    left = {int.from_bytes(k, NATIVE) for k in reference(filled)}
    assert 1 not in left and 2 not in left and 3 in left and len(left) == 38


def test_lookup_and_delete_batch_drains(filled):
    ref = reference(filled)
    with Calls() as c:
        keys, values, n = filled.lookup_and_delete_batch()
    assert c.n == 1
    assert n == 40 and split(filled, keys, values, n) == ref
    assert reference(filled) == {}
    assert filled.lookup_and_delete_batch()[2] == 0


def test_lookup_and_delete_batch_in_chunks(filled):
    ref = reference(filled)
    keys, values, n = filled.lookup_and_delete_batch(chunk=7)
    assert n == 40 and split(filled, keys, values, n) == ref
    assert reference(filled) == {}


def test_keyless_maps_have_nothing_to_batch():
    with Map.create(MapType.QUEUE, 0, 4, 4, name="qb") as q:
        q.push(1)
        for op, cmd in ((q.lookup_batch, "BPF_MAP_LOOKUP_BATCH"),
                        (q.lookup_and_delete_batch, "BPF_MAP_LOOKUP_AND_DELETE_BATCH")):
            with Calls() as c:
                with pytest.raises(bpfload.NotSupportedError) as ei:
                    op()
            assert c.n == 0
            assert ei.value.command == cmd and "'qb'" in str(ei.value)
        with pytest.raises(ValueError, match="qb"):
            q.update_batch(u32s(1), u32s(1))
        assert q.pop() == u32s(1)


def test_map_in_map_batch_takes_fds_and_returns_ids():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmpl") as tmpl, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="i1") as i1, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="i2") as i2, \
            Map.create(MapType.HASH_OF_MAPS, 4, 4, 4, name="outer", inner_map=tmpl) as outer:
        assert outer.update_batch(u32s(10, 20), array.array("i", [i1.fd, i2.fd])) == 2
        keys, values, n = outer.lookup_batch()
        got = dict(zip(array.array("I", bytes(keys)), array.array("I", bytes(values))))
        assert got == {10: i1.info().id, 20: i2.info().id}
        assert dict(outer.items()) == {u32s(10): i1.id, u32s(20): i2.id}


# -- the per-element fallback --------------------------------------------------------------

def test_fallback_on_a_map_type_without_batch_commands():
    # DEVMAP_HASH has no batch commands: every bulk call falls back to one
    # syscall per element and must give what the batch path gives on a HASH.
    keys = u32s(5, 6, 7, 9)
    values = u32s(1, 1, 1, 1)  # ifindex 1 (lo)
    with Map.create(MapType.DEVMAP_HASH, 4, 4, 8, name="devh") as d, \
            Map.create(MapType.HASH, 4, 4, 8, name="plainh") as h:
        with Calls() as cd:
            assert d.update_batch(keys, values) == 4
        with Calls() as ch:
            assert h.update_batch(keys, values) == 4
        assert ch.n == 1 and cd.n == 1 + 4
        assert reference(d) == reference(h) and len(reference(d)) == 4

        with Calls() as cd:
            kd, vd, nd = d.lookup_batch()
        kh, vh, nh = h.lookup_batch()
        assert cd.n > 4 and nd == nh == 4
        assert split(d, kd, vd, nd) == split(h, kh, vh, nh) == reference(h)

        with Calls() as cd:
            assert d.delete_batch(u32s(6, 9)) == 2
        h.delete_batch(u32s(6, 9))
        assert cd.n == 1 + 2
        assert reference(d) == reference(h) and len(reference(d)) == 2

        for m in (d, h):  # 6 is gone: the fallback fails as the batch command does
            with pytest.raises(bpfload.MapKeyError) as ei:
                m.delete_batch(u32s(5, 6))
            assert ei.value.command == "BPF_MAP_DELETE_BATCH" and "1 of 2" in str(ei.value)
        assert reference(d) == reference(h) and len(reference(d)) == 1

        d.update_batch(u32s(1, 2), u32s(1, 1))
        h.update_batch(u32s(1, 2), u32s(1, 1))
        kd, vd, nd = d.lookup_and_delete_batch()
        kh, vh, nh = h.lookup_and_delete_batch()
        assert nd == nh == 3
        assert split(d, kd, vd, nd) == split(h, kh, vh, nh)
        assert reference(d) == reference(h) == {}


def lpm_key(prefixlen: int, addr: str) -> bytes:
    return struct.pack("=I", prefixlen) + socket.inet_aton(addr)


def test_lpm_trie_drain_falls_back_with_the_same_result():
    # 6.18's LPM trie has LOOKUP_BATCH but no LOOKUP_AND_DELETE_BATCH.
    routes = {lpm_key(8, "10.0.0.0"): 8, lpm_key(16, "10.1.0.0"): 16,
              lpm_key(24, "10.1.2.0"): 24, lpm_key(32, "10.1.2.3"): 32}
    keys = b"".join(routes)
    values = u32s(*routes.values())
    with Map.create(MapType.LPM_TRIE, 8, 4, 16, flags=MapFlags.NO_PREALLOC, name="lpm") as t, \
            Map.create(MapType.HASH, 8, 4, 16, name="lpmref") as h:
        t.update_batch(keys, values)
        h.update_batch(keys, values)
        expect = {k: v.to_bytes(4, NATIVE) for k, v in routes.items()}
        assert reference(t) == expect
        kt, vt, nt = t.lookup_batch()
        assert split(t, kt, vt, nt) == expect
        with Calls() as ct:
            kt, vt, nt = t.lookup_and_delete_batch()
        with Calls() as ch:
            kh, vh, nh = h.lookup_and_delete_batch()
        assert ch.n == 1 and ct.n > 4  # per element on the trie
        assert split(t, kt, vt, nt) == split(h, kh, vh, nh) == expect
        assert reference(t) == {} and t.lookup(lpm_key(32, "10.1.2.3")) is None


@pytest.mark.parametrize("mtype,vsize,fill", [
    (MapType.DEVMAP, 4, {1: u32s(1), 3: u32s(1)}),
    (MapType.PROG_ARRAY, 4, {}),
    (MapType.SOCKMAP, 8, {}),
], ids=lambda p: getattr(p, "name", None))
def test_fallback_drain_of_array_like_maps_with_empty_slots(mtype, vsize, fill):
    # Regression: the per-element drain restarted from the first key after
    # every element, and an empty slot 0 of an array-like map made it spin
    # forever (with the GIL released).
    with Map.create(mtype, 4, vsize, 4, name="slots") as m:
        for k, v in fill.items():
            m[k] = v
        keys, values, n = bounded(m.lookup_and_delete_batch)
        assert n == len(fill)
        assert split(m, keys, values, n) == {k.to_bytes(4, NATIVE): v for k, v in fill.items()}
        assert reference(m) == {}


BATCH_COMMANDS = {
    "lookup": BPF_MAP_LOOKUP_BATCH,
    "lookup_and_delete": BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    "update": BPF_MAP_UPDATE_BATCH,
    "delete": BPF_MAP_DELETE_BATCH,
}


@pytest.mark.parametrize("op", sorted(BATCH_COMMANDS))
@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.PERCPU_HASH], ids=lambda t: t.name)
def test_fast_path_and_fallback_agree_on_the_same_map(op, mtype):
    """Run each bulk call twice on identical maps: once on the batch command,
    once with that command failing ENOTSUPP (injected) so the per-element
    fallback runs, and compare what the kernel ends up holding."""
    def build(name):
        m = Map.create(mtype, 4, 8, 32, name=name)
        m.update_batch(u32s(*range(20)), b"".join(bytes([k + 1]) * m.value_stride
                                                  for k in range(20)))
        return m
    with build("fast") as fast, build("slow") as slow:
        assert reference(fast) == reference(slow) != {}
        args = {"lookup": (), "lookup_and_delete": (),
                "update": (u32s(3, 30, 31), b"\xaa" * 3 * fast.value_stride),
                "delete": (u32s(0, 5, 19),)}[op]
        call = getattr(fast, f"{op}_batch")
        with Calls() as cf:
            rf = call(*args)
        _sys.inject_fault(1, ENOTSUPP, BATCH_COMMANDS[op])
        with Calls() as cs:
            rs = getattr(slow, f"{op}_batch")(*args)
        assert not _sys.fault_pending()
        assert cf.n == 1 and cs.n > 2
        if op in ("lookup", "lookup_and_delete"):
            assert rf[2] == rs[2] == 20
            assert split(fast, *rf) == split(slow, *rs)
        else:
            assert rf == rs == 3
        assert reference(fast) == reference(slow)
