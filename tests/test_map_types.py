"""Every map type: created, exercised with the operations it supports, and
refusing the ones it does not with an error naming the map and the command.

Values are always read back from the kernel; ids are checked against the
kernel's own ``info()`` of the stored object.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

import pytest

import bpfload
from bpfload import BPF_EXIST, AttachType, Map, MapFlags, MapType, ProgType
from bpfload._core import syscall as _sys
from conftest import sysfs_cpus, unavailable

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder
NCPU = len(sysfs_cpus("possible"))
RET0 = b"\xb7\x00\x00\x00\x00\x00\x00\x00" + b"\x95\x00\x00\x00\x00\x00\x00\x00"  # r0 = 0; exit
ENOTSUPP = 524
SO_COOKIE = 57


def u32(v: int) -> bytes:
    return v.to_bytes(4, NATIVE)


def u64(v: int) -> bytes:
    return v.to_bytes(8, NATIVE)


def load_prog(prog_type=ProgType.SOCKET_FILTER, name="trivial", **kw) -> _sys.FD:
    ret = _sys.prog_load(prog_type, RET0, "GPL", name, **kw)
    assert ret > 0, f"BPF_PROG_LOAD failed: {os.strerror(-ret)}"
    return _sys.FD(ret, f"prog {name}")


def prog_id(fd) -> int:
    """The kernel id of a program fd (``struct bpf_prog_info``: type, id)."""
    return struct.unpack_from("=II", _sys.obj_get_info(int(fd), 8))[1]


def assert_refused(excinfo, cls, command, name):
    e = excinfo.value
    assert isinstance(e, cls), f"{type(e).__name__} is not {cls.__name__}: {e}"
    assert e.command == command and e.target == name
    assert command in str(e) and repr(name) in str(e)


# -- perf events and cgroups for the fd-valued arrays ------------------------------

class _PerfEventAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
                ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241}.get(os.uname().machine)
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_BPF_OUTPUT, PERF_SAMPLE_RAW = 1, 10, 1 << 10
PERF_FLAG_FD_CLOEXEC = 8


def perf_event_bpf_output(cpu: int = 0) -> int:
    """A PERF_COUNT_SW_BPF_OUTPUT event on *cpu*: what a PERF_EVENT_ARRAY slot holds."""
    if _NR_PERF_EVENT_OPEN is None:
        unavailable(f"perf_event_open syscall number unknown for {os.uname().machine}")
    attr = _PerfEventAttr(type=PERF_TYPE_SOFTWARE, size=ctypes.sizeof(_PerfEventAttr),
                          config=PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                          sample_type=PERF_SAMPLE_RAW, wakeup_events=1)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, ctypes.byref(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open: {os.strerror(err)}")
    return fd


def cgroup_dir() -> str:
    """/sys/fs/cgroup when it is a cgroup mount, else the first cgroup2 (then v1) mount."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mounts.setdefault(right.split()[0], []).append(left.split()[4])
    for fstype in ("cgroup2", "cgroup"):
        if "/sys/fs/cgroup" in mounts.get(fstype, []):
            return "/sys/fs/cgroup"
    for fstype in ("cgroup2", "cgroup"):
        if mounts.get(fstype):
            return mounts[fstype][0]
    unavailable("no cgroup filesystem mounted")


# -- arrays ----------------------------------------------------------------------------

def test_array():
    with Map.create(MapType.ARRAY, 4, 8, 4, name="arr") as m:
        assert m.info().type == MapType.ARRAY
        assert [m[i] for i in range(4)] == [bytes(8)] * 4  # preallocated, zeroed
        m[2] = 0xDEADBEEF
        assert m[2] == u64(0xDEADBEEF)
        assert m.lookup(4) is None  # beyond max_entries
        assert sorted(k for k, _ in m.items()) == [u32(i) for i in range(4)]
        with pytest.raises(bpfload.MapError) as ei:
            m.delete(2)
        assert_refused(ei, bpfload.MapError, "BPF_MAP_DELETE_ELEM", "arr")
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(bpfload.NotSupportedError) as ei:
            m.lookup_and_delete(2)
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "arr")
        with pytest.raises(bpfload.MapIndexError) as ei:
            m[4] = 1
        assert_refused(ei, bpfload.MapIndexError, "BPF_MAP_UPDATE_ELEM", "arr")
        assert ei.value.errno == errno.E2BIG and isinstance(ei.value, IndexError)
        assert "index beyond max_entries 4" in str(ei.value)
        with pytest.raises(bpfload.MapError) as ei:
            m.update(0, 1, bpfload.BPF_NOEXIST)  # every index always exists
        assert ei.value.errno == errno.EEXIST
        assert m[2] == u64(0xDEADBEEF)


def test_percpu_array():
    with Map.create(MapType.PERCPU_ARRAY, 4, 4, 2, name="pcarr") as m:
        assert m.percpu and m.ncpus == NCPU
        assert m[0] == [bytes(4)] * NCPU
        m[1] = [u32(10 + c) for c in range(NCPU)]
        assert m[1] == [u32(10 + c) for c in range(NCPU)]
        assert m.sum(1) == sum(10 + c for c in range(NCPU))
        with pytest.raises(bpfload.MapError) as ei:
            m.delete(1)
        assert_refused(ei, bpfload.MapError, "BPF_MAP_DELETE_ELEM", "pcarr")


def test_prog_array_stores_programs_and_reads_back_ids():
    with Map.create(MapType.PROG_ARRAY, 4, 4, 4, name="progs") as m, \
            load_prog(name="tail_a") as a, load_prog(name="tail_b") as b:
        assert m.lookup(0) is None
        m[0] = a              # an FD owner
        m[1] = int(b)         # a plain fd number
        assert m[0] == prog_id(a) and m[1] == prog_id(b) and m[0] != m[1]
        assert sorted(m.items()) == sorted([(u32(0), prog_id(a)), (u32(1), prog_id(b))])
        del m[0]
        assert m.lookup(0) is None and 0 not in m and 1 in m
        with pytest.raises(bpfload.MapKeyError):
            del m[0]


def test_prog_array_refuses_a_map_fd():
    with Map.create(MapType.PROG_ARRAY, 4, 4, 1, name="progs") as m, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="notprog") as other:
        with pytest.raises(bpfload.MapError) as ei:
            m[0] = other
        assert_refused(ei, bpfload.MapError, "BPF_MAP_UPDATE_ELEM", "progs")
        assert ei.value.errno == errno.EINVAL
        assert m.lookup(0) is None


def test_perf_event_array():
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, 0, name="pe0")
    assert ei.value.errno == errno.EINVAL  # the kernel wants max_entries (one slot per CPU)
    ev = perf_event_bpf_output(0)
    try:
        with Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, NCPU, name="events") as m:
            m[0] = ev
            # the kernel keeps the event, but gives nothing back to user space
            with pytest.raises(bpfload.NotSupportedError) as ei:
                m[0]
            assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_ELEM", "events")
            assert ei.value.errno == ENOTSUPP
            m.delete(0)  # the slot was filled: delete succeeds once ...
            with pytest.raises(bpfload.MapKeyError):
                m.delete(0)  # ... and finds it empty the second time
            r, w = os.pipe()
            try:
                with pytest.raises(bpfload.MapError) as ei:
                    m[0] = r
                assert ei.value.errno == errno.EBADF
            finally:
                os.close(r)
                os.close(w)
    finally:
        os.close(ev)


def test_cgroup_array():
    with Map.create(MapType.CGROUP_ARRAY, 4, 4, 2, name="cgroups") as m:
        cg = os.open(cgroup_dir(), os.O_RDONLY | os.O_DIRECTORY)
        try:
            m[0] = cg
        finally:
            os.close(cg)
        with pytest.raises(bpfload.NotSupportedError) as ei:
            m.lookup(0)
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_ELEM", "cgroups")
        m.delete(0)  # the map held the cgroup after our fd was closed
        with pytest.raises(bpfload.MapKeyError):
            m.delete(0)
        d = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(bpfload.MapError) as ei:
                m[1] = d  # a directory that is not a cgroup
            assert ei.value.errno == errno.EBADF
        finally:
            os.close(d)


def test_array_of_maps():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmpl") as tmpl, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="inner1") as in1, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="inner2") as in2, \
            Map.create(MapType.ARRAY_OF_MAPS, 4, 4, 3, name="outer", inner_map=tmpl) as outer:
        assert outer.inner_map_id == tmpl.info().id
        assert outer.lookup(0) is None
        in1[0] = 111
        outer[0] = in1          # a Map
        outer[2] = in2.fd       # an fd number
        assert outer[0] == in1.info().id and outer[2] == in2.info().id
        assert outer.lookup(1) is None
        with Map.from_id(outer[0]) as opened:
            assert opened.info().name == "inner1"
            assert opened[0] == u32(111)
            opened[0] = 112
        assert in1[0] == u32(112)
        assert sorted(outer.items()) == [(u32(0), in1.id), (u32(2), in2.id)]
        del outer[0]
        assert outer.lookup(0) is None


def test_map_in_map_refuses_an_incompatible_inner_map():
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmpl") as tmpl, \
            Map.create(MapType.HASH, 4, 4, 1, name="wrongtype") as wrong, \
            Map.create(MapType.ARRAY, 4, 8, 1, name="wrongsize") as wrong2, \
            Map.create(MapType.HASH_OF_MAPS, 4, 4, 2, name="outer", inner_map=tmpl) as outer:
        for bad in (wrong, wrong2):
            with pytest.raises(bpfload.MapError) as ei:
                outer[1] = bad
            assert_refused(ei, bpfload.MapError, "BPF_MAP_UPDATE_ELEM", "outer")
            assert ei.value.errno == errno.EINVAL
        assert outer.keys() == []


def test_map_in_map_needs_a_template():
    calls = _sys.syscall_count()
    with pytest.raises(ValueError, match="inner_map"):
        Map.create(MapType.HASH_OF_MAPS, 4, 4, 1, name="outer")
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmpl") as tmpl:
        calls = _sys.syscall_count()
        with pytest.raises(ValueError, match="inner_map"):
            Map.create(MapType.HASH, 4, 4, 1, name="plain", inner_map=tmpl)
        assert _sys.syscall_count() == calls


def test_hash_of_maps():
    with Map.create(MapType.HASH, 4, 4, 4, name="tmpl") as tmpl, \
            Map.create(MapType.HASH, 4, 4, 4, name="inner") as inner, \
            Map.create(MapType.HASH_OF_MAPS, 8, 4, 2, name="outer", inner_map=tmpl) as outer:
        inner[7] = 70
        outer[u64(1 << 40)] = inner
        assert outer[1 << 40] == inner.info().id
        assert outer.lookup(1) is None
        with Map.from_id(outer[1 << 40]) as opened:
            assert opened[7] == u32(70)
        assert outer.items() == [(u64(1 << 40), inner.id)]
        with pytest.raises(bpfload.NotSupportedError) as ei:
            outer.lookup_and_delete(1 << 40)
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "outer")
        del outer[1 << 40]
        assert outer.keys() == []
        assert inner[7] == u32(70)  # the inner map outlives its slot


# -- hashes --------------------------------------------------------------------------

def test_hash():
    with Map.create(MapType.HASH, 8, 4, 3, name="h") as m:
        for k in (1, 2, 3):
            m[k] = k * 10
        assert sorted((int.from_bytes(k, NATIVE), int.from_bytes(v, NATIVE))
                      for k, v in m.items()) == [(1, 10), (2, 20), (3, 30)]
        with pytest.raises(bpfload.MapFullError) as ei:
            m[4] = 40
        assert_refused(ei, bpfload.MapFullError, "BPF_MAP_UPDATE_ELEM", "h")
        assert m.lookup_and_delete(2) == u32(20)
        m[4] = 40
        assert sorted(int.from_bytes(k, NATIVE) for k in m) == [1, 3, 4]


def test_percpu_hash():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 4, name="pch") as m:
        m[1] = [c + 1 for c in range(NCPU)]
        m[2] = 5  # one value for every CPU
        assert m[1] == [u64(c + 1) for c in range(NCPU)]
        assert m[2] == [u64(5)] * NCPU
        assert m.sum(2) == 5 * NCPU
        assert m.lookup_and_delete(1) == [u64(c + 1) for c in range(NCPU)]
        assert m.keys() == [u32(2)]


def test_lru_hash_evicts_instead_of_failing():
    with Map.create(MapType.LRU_HASH, 4, 4, 8, name="lru") as m:
        for k in range(64):
            m[k] = k  # never MapFullError
        keys = {int.from_bytes(k, NATIVE) for k in m.keys()}
        assert 0 < len(keys) <= 8
        assert 63 in keys and 0 not in keys  # the newest stays, the oldest went
        assert all(m[k] == u32(k) for k in keys)
    with Map.create(MapType.HASH, 4, 4, 8, name="nolru") as h:  # contrast
        for k in range(8):
            h[k] = k
        with pytest.raises(bpfload.MapFullError):
            h[8] = 8


def test_lru_percpu_hash():
    with Map.create(MapType.LRU_PERCPU_HASH, 4, 4, 8, name="lrupc") as m:
        assert m.percpu and m.value_stride == 8 * NCPU
        for k in range(64):
            m[k] = [k + c for c in range(NCPU)]
        keys = {int.from_bytes(k, NATIVE) for k in m.keys()}
        assert 0 < len(keys) <= 8 and 63 in keys and 0 not in keys
        assert m[63] == [u32(63 + c) for c in range(NCPU)]
        assert m.sum(63) == sum(63 + c for c in range(NCPU))


# -- stack traces, tries -------------------------------------------------------------

def test_stack_trace():
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.STACK_TRACE, 4, 12, 8, name="st_bad")  # value not n * 8
    assert ei.value.errno == errno.EINVAL
    with Map.create(MapType.STACK_TRACE, 4, 8 * 16, 8, name="stacks") as m:
        assert m.info().value_size == 128
        assert m.lookup(0) is None and m.lookup(7) is None
        assert m.keys() == [] and m.items() == []
        with pytest.raises(bpfload.MapError) as ei:
            m[0] = bytes(128)  # only programs add stacks
        assert_refused(ei, bpfload.MapError, "BPF_MAP_UPDATE_ELEM", "stacks")
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(bpfload.MapKeyError):
            del m[0]


def lpm_key(prefixlen: int, addr: str) -> bytes:
    return struct.pack("=I", prefixlen) + socket.inet_aton(addr)


def test_lpm_trie_longest_prefix_match():
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.LPM_TRIE, 8, 4, 16, name="lpm_prealloc")
    assert ei.value.errno == errno.EINVAL  # an LPM trie needs BPF_F_NO_PREALLOC
    with Map.create(MapType.LPM_TRIE, 8, 4, 16, flags=MapFlags.NO_PREALLOC, name="routes") as m:
        m[lpm_key(8, "10.0.0.0")] = 8
        m[lpm_key(16, "10.1.0.0")] = 16
        m[lpm_key(24, "10.1.2.0")] = 24
        m[lpm_key(0, "0.0.0.0")] = 0

        def route(ip):
            v = m.lookup(lpm_key(32, ip))
            return None if v is None else int.from_bytes(v, NATIVE)
        assert route("10.1.2.3") == 24
        assert route("10.1.3.3") == 16
        assert route("10.200.0.1") == 8
        assert route("192.168.0.1") == 0
        del m[lpm_key(16, "10.1.0.0")]
        assert route("10.1.3.3") == 8 and route("10.1.2.3") == 24
        with pytest.raises(bpfload.MapKeyError):
            del m[lpm_key(16, "10.1.0.0")]  # delete wants the exact prefix
        assert sorted(m.keys()) == sorted([lpm_key(0, "0.0.0.0"), lpm_key(8, "10.0.0.0"),
                                           lpm_key(24, "10.1.2.0")])
        with pytest.raises(bpfload.MapError) as ei:
            m[lpm_key(33, "10.0.0.0")] = 1  # prefixlen beyond the data
        assert ei.value.errno == errno.EINVAL


# -- sockets and devices -------------------------------------------------------------

@pytest.fixture
def tcp_pair():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli = socket.create_connection(srv.getsockname())
        acc, _ = srv.accept()
        yield cli, acc
        cli.close()
        acc.close()
    finally:
        srv.close()


def cookie(sock) -> int:
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), NATIVE)


def test_sockmap(tcp_pair):
    cli, acc = tcp_pair
    a, b = socket.socketpair()
    try:
        with Map.create(MapType.SOCKMAP, 4, 8, 4, name="socks") as m:
            m[0] = cli.fileno()
            m[1] = a.fileno()
            # user space reads back the socket cookie (value_size 8)
            assert m[0] == u64(cookie(cli)) and m[1] == u64(cookie(a))
            assert m[0] != m[1]
            assert m.lookup(2) is None
            assert sorted(k for k, _ in m.items()) == [u32(0), u32(1)]
            del m[0]
            assert m.lookup(0) is None
            r, w = os.pipe()
            try:
                with pytest.raises(bpfload.MapError) as ei:
                    m[2] = r  # not a socket
            finally:
                os.close(r)
                os.close(w)
            assert_refused(ei, bpfload.MapError, "BPF_MAP_UPDATE_ELEM", "socks")
            assert ei.value.errno == errno.ENOTSOCK
            a.close()  # closing a socket removes it from the map
            assert m.lookup(1) is None
    finally:
        a.close()
        b.close()


def test_sockmap_with_4_byte_values_cannot_be_read_back(tcp_pair):
    cli, _ = tcp_pair
    with Map.create(MapType.SOCKMAP, 4, 4, 1, name="socks4") as m:
        m[0] = cli.fileno()
        with pytest.raises(bpfload.MapError) as ei:
            m[0]
        assert_refused(ei, bpfload.MapError, "BPF_MAP_LOOKUP_ELEM", "socks4")
        assert ei.value.errno == errno.ENOSPC  # the cookie needs 8 bytes


def test_devmap():
    with Map.create(MapType.DEVMAP, 4, 4, 4, name="devs") as m:
        assert m.lookup(0) is None
        m[0] = 1  # ifindex 1: lo
        assert m[0] == u32(1)
        assert m.items() == [(u32(0), u32(1))]
        with pytest.raises(bpfload.MapError) as ei:
            m[1] = 0x7FFFFFF0  # no such interface
        assert_refused(ei, bpfload.MapError, "BPF_MAP_UPDATE_ELEM", "devs")
        assert ei.value.errno == errno.EINVAL
        del m[0]
        assert m.lookup(0) is None


def test_devmap_with_program():
    with Map.create(MapType.DEVMAP, 4, 8, 2, name="devprog") as m, \
            load_prog(ProgType.XDP, "devmap_prog",
                      expected_attach_type=AttachType.XDP_DEVMAP) as p:
        m[1] = struct.pack("=Ii", 1, int(p))  # struct bpf_devmap_val {ifindex; prog fd}
        assert struct.unpack("=II", m[1]) == (1, prog_id(p))  # fd in, id out


def test_cpumap():
    last = sysfs_cpus("possible")[-1]  # CPUMAP keys are CPU ids
    with Map.create(MapType.CPUMAP, 4, 8, last + 1, name="cpus") as m, \
            load_prog(ProgType.XDP, "cpumap_prog",
                      expected_attach_type=AttachType.XDP_CPUMAP) as p:
        assert m.lookup(0) is None
        m[0] = struct.pack("=II", 192, 0)  # struct bpf_cpumap_val {qsize; prog fd (0: none)}
        assert struct.unpack("=II", m[0]) == (192, 0)
        m[last] = struct.pack("=Ii", 256, int(p))
        assert struct.unpack("=II", m[last]) == (256, prog_id(p))
        with pytest.raises(bpfload.MapIndexError) as ei:
            m[last + 1] = struct.pack("=II", 192, 0)  # beyond max_entries
        assert_refused(ei, bpfload.MapIndexError, "BPF_MAP_UPDATE_ELEM", "cpus")
        assert ei.value.errno == errno.E2BIG
        del m[0]
        assert m.lookup(0) is None


# -- keyless maps ----------------------------------------------------------------------

def test_queue_is_fifo():
    with Map.create(MapType.QUEUE, 0, 4, 3, name="q") as q:
        assert q.peek() is None and q.pop() is None
        for v in (1, 2, 3):
            q.push(v)
        assert q.peek() == u32(1)
        with pytest.raises(bpfload.MapFullError) as ei:
            q.push(4)
        assert_refused(ei, bpfload.MapFullError, "BPF_MAP_UPDATE_ELEM", "q")
        q.push(4, BPF_EXIST)  # a full queue drops its oldest
        assert [q.pop() for _ in range(4)] == [u32(2), u32(3), u32(4), None]


def test_stack_is_lifo():
    with Map.create(MapType.STACK, 0, 8, 4, name="s") as s:
        for v in (1, 2, 3):
            s.push(v)
        assert s.peek() == u64(3)
        assert s.lookup_and_delete(None) == u64(3)
        assert [s.pop() for _ in range(3)] == [u64(2), u64(1), None]


def test_queue_refuses_keyed_access_before_the_kernel():
    with Map.create(MapType.QUEUE, 0, 4, 2, name="q") as q:
        q.push(7)
        probe = bytes([1, 2, 3, 4])
        calls = _sys.syscall_count()
        for op in (lambda: q.lookup(0), lambda: q.update(0, 1), lambda: q.delete(0),
                   lambda: probe in q):
            with pytest.raises(TypeError, match="'q'"):
                op()
        assert _sys.syscall_count() == calls
        # regression: `x in queue` used to peek into x's own (immutable) buffer
        assert probe == bytes([1, 2, 3, 4])
        with pytest.raises(bpfload.NotSupportedError) as ei:
            q.keys()
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_BATCH", "q")
        assert q.pop() == u32(7)


def test_bloom_filter():
    with Map.create(MapType.BLOOM_FILTER, 0, 4, 64, name="bloom", map_extra=3) as b:
        assert b.info().map_extra == 3  # number of hash functions
        for v in (10, 20, 30):
            b.push(v)
        assert 10 in b and 20 in b and u32(30) in b
        absent = [v for v in range(1000, 1100) if v not in b]
        assert len(absent) > 50  # 3 elements in 64 bits: false positives are rare
        with pytest.raises(TypeError, match="bloom"):
            b.peek()
        with pytest.raises(bpfload.NotSupportedError) as ei:
            b.pop()
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "bloom")
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.BLOOM_FILTER, 0, 4, 64, name="bloom16", map_extra=16)
    assert ei.value.errno == errno.EINVAL  # at most 15 hash functions


def test_push_pop_on_a_keyed_map_is_refused():
    with Map.create(MapType.HASH, 4, 4, 1, name="keyed") as m:
        calls = _sys.syscall_count()
        for op in (lambda: m.push(1), m.pop, m.peek):
            with pytest.raises(TypeError, match="'keyed'"):
                op()
        assert _sys.syscall_count() == calls


# -- ring buffer -------------------------------------------------------------------------

def test_ringbuf_refuses_element_access():
    with pytest.raises(bpfload.MapError) as ei:
        Map.create(MapType.RINGBUF, 0, 0, 4095, name="rb_bad")  # not a page-size power of 2
    assert ei.value.errno == errno.EINVAL
    with Map.create(MapType.RINGBUF, 0, 0, 4 * 4096, name="events") as rb:
        info = rb.info()
        assert info.type == MapType.RINGBUF and info.max_entries == 4 * 4096
        for op, cmd in ((lambda: rb.lookup(b""), "BPF_MAP_LOOKUP_ELEM"),
                        (lambda: rb.update(b"", b""), "BPF_MAP_UPDATE_ELEM"),
                        (lambda: rb.delete(b""), "BPF_MAP_DELETE_ELEM")):
            with pytest.raises(bpfload.NotSupportedError) as ei:
                op()
            assert_refused(ei, bpfload.NotSupportedError, cmd, "events")
            assert ei.value.errno == ENOTSUPP
        with pytest.raises(bpfload.NotSupportedError) as ei:
            rb.keys()
        assert_refused(ei, bpfload.NotSupportedError, "BPF_MAP_LOOKUP_BATCH", "events")


@pytest.mark.parametrize("mtype", [MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY])
def test_keys_of_maps_whose_values_user_space_cannot_read(mtype):
    """Their lookups are refused (ENOTSUPP), so keys() walks BPF_MAP_GET_NEXT_KEY alone."""
    with Map.create(mtype, 4, 4, 3, name="walk") as m:
        with pytest.raises(bpfload.NotSupportedError):
            m.lookup(0)
        want = [i.to_bytes(4, sys.byteorder) for i in range(3)]
        assert m.keys() == want and list(m) == want
