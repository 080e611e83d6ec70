"""Test issue: the event readers' syscalls go through the same fault door as bpf(2).

``inject_fault(n, err)`` counts bpf(2) commands and the readers' perf_event_open,
mmap, epoll_create1, epoll_ctl, eventfd, fd dup and enable ioctl together
(csrc/bl_fault.h, one state shared by the _core modules).  For a RingBuffer, a
PerfBuffer (one event per online CPU) and a MapPoller, every call of the
constructor is failed in turn, with several errnos: each failure must come out
as a BpfError carrying that errno, with no fd and no BPF/perf mapping left --
checked while the exception is still alive, so nothing waits for the collector.
The number of faults needed to get through equals the calls a clean
construction makes (per-call counters), and with no fault each reader works:
records written by a BPF program, samples, and deltas arrive.
"""
from __future__ import annotations

import errno
import struct

import pytest

import bpfload
from bpfload import Map, MapType
from bpfload._core import syscall as _sys
from conftest import _new_fds, _open_fds, bpf_mappings, bpf_object

pytestmark = pytest.mark.kernel

ERRNOS = [errno.ENOMEM, errno.EPERM, errno.EINVAL]
READER_CALLS = ("perf_event_open", "mmap", "epoll_create", "epoll_ctl", "eventfd", "dup",
                "ioctl")


@pytest.fixture(autouse=True)
def _disarm():
    _sys.inject_fault(0, 0)
    yield
    _sys.inject_fault(0, 0)


def all_calls() -> dict:
    out = {name: _sys.syscall_count(name) for name in READER_CALLS}
    out["bpf"] = _sys.syscall_count()
    return out


def calls_of(build) -> dict:
    """The calls one clean build() makes, by kind."""
    before = all_calls()
    reader = build()
    after = all_calls()
    reader.close()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def sweep(build, err: int) -> list:
    """Fail call 1, 2, ... of build() with *err* until it gets through; the failed commands."""
    failed = []
    fds, mappings = _open_fds(), bpf_mappings()
    for n in range(1, 500):
        _sys.inject_fault(n, err)
        try:
            reader = build()
        except bpfload.BpfError as e:
            assert not _sys.fault_pending(), f"call {n}: {e!r} but the fault did not fire"
            assert getattr(e, "errno", err) == err, f"call {n}: {e!r}"
            # while the exception (and its frames) are alive: nothing left behind
            assert _new_fds(fds) == {}, f"call {n} ({e.command}): fds left"
            assert bpf_mappings() == mappings, f"call {n} ({e.command}): mappings left"
            failed.append(getattr(e, "command", type(e).__name__))
            continue
        pending = _sys.fault_pending()
        _sys.inject_fault(0, 0)
        reader.close()
        assert pending, f"call {n} failed with no error coming out of the constructor"
        assert _new_fds(fds) == {} and bpf_mappings() == mappings
        return failed
    pytest.fail("the constructor never got through")


@pytest.mark.parametrize("err", ERRNOS)
def test_every_ring_buffer_setup_call_can_fail_cleanly(err):
    with bpfload.load(bpf_object("ringbuf")) as obj:
        rb_map = obj.maps["rb"]

        def build():
            return bpfload.RingBuffer(rb_map, lambda data: None)

        made = calls_of(build)
        assert {"epoll_create", "eventfd", "epoll_ctl", "dup", "mmap"} <= set(made)
        failed = sweep(build, err)
        assert len(failed) == sum(made.values())
        assert {"epoll_create1", "eventfd", "epoll_ctl", "fcntl(F_DUPFD_CLOEXEC)", "mmap"} \
            <= set(failed), failed
        assert failed.count("mmap") == 2 and failed.count("epoll_ctl") == 2

        # and with no fault it works: records a program writes arrive
        got = []
        with bpfload.RingBuffer(rb_map, lambda data: got.append(bytes(data[:8]))) as rb:
            for seq in (7, 8, 9):
                assert obj.programs["rb_output"].test_run(ctx=struct.pack("=II", seq, 0)).retval == 0
            assert rb.poll(1000) == 3
        assert got == [struct.pack("=II", seq, 1) for seq in (7, 8, 9)]


@pytest.mark.parametrize("err", ERRNOS)
def test_every_perf_buffer_setup_call_can_fail_cleanly(err):
    with bpfload.load(bpf_object("perf_event")) as obj:
        pe_map = obj.maps["events"]

        def build():
            return bpfload.PerfBuffer(pe_map, lambda cpu, data: None, page_count=1)

        ncpu = len(build_and_count_cpus(build))
        made = calls_of(build)
        assert made["perf_event_open"] == made["ioctl"] == ncpu and made["mmap"] == ncpu
        failed = sweep(build, err)
        assert len(failed) == sum(made.values())
        assert failed.count("perf_event_open") == ncpu
        assert failed.count("mmap") == ncpu
        assert failed.count("ioctl(PERF_EVENT_IOC_ENABLE)") == ncpu
        assert failed.count("epoll_ctl") == ncpu + 1            # the wake-up eventfd, each CPU
        assert {"epoll_create1", "eventfd", "BPF_MAP_UPDATE_ELEM"} <= set(failed), failed
        # a failure after some CPUs were stored in the map cleared their slots again
        # (deleting an empty PERF_EVENT_ARRAY slot is ENOENT)
        for cpu in range(ncpu):
            with pytest.raises(bpfload.MapKeyError):
                pe_map.delete(cpu)

        samples = []
        with bpfload.PerfBuffer(pe_map, lambda cpu, data: samples.append(bytes(data[:4])),
                                page_count=1) as pb:
            pkt = struct.pack("<II", 41, 0) + bytes(range(8, 20))
            assert obj.programs["pe_output"].test_run(pkt).retval == 0
            assert pb.poll(1000) == 1
        assert samples == [struct.pack("=I", 41)]


def build_and_count_cpus(build) -> list:
    r = build()
    try:
        return list(r.cpus)
    finally:
        r.close()


# EINVAL from a first BPF_MAP_LOOKUP_BATCH means "no batch command here": the
# snapshot falls back to get_next_key + lookup by design, so it is not an error.
@pytest.mark.parametrize("err", [errno.ENOMEM, errno.EPERM, errno.EIO])
def test_every_map_poller_setup_call_can_fail_cleanly(err):
    with Map.create(MapType.HASH, 4, 8, 16, name="faultpoll") as m:
        for k in range(5):
            m[k] = k

        def build():
            return bpfload.MapPoller(m, interval=0.01)

        made = calls_of(build)
        failed = sweep(build, err)
        assert len(failed) == sum(made.values()) >= 1
        assert set(failed) == {"BPF_MAP_LOOKUP_BATCH"}, failed

        with bpfload.MapPoller(m, interval=0.01) as p:
            for k in range(5):
                m[k] = k + 10 * k
            snap = p.snapshot()
            assert {k: s.delta for k, s in snap.to_dict().items()} == {k: 10 * k for k in range(5)}


def test_a_fault_can_target_one_reader_call():
    # command= names a reader call: only that call is counted and failed
    with bpfload.load(bpf_object("ringbuf")) as obj:
        fds = _open_fds()
        _sys.inject_fault(2, errno.ENOMEM, "mmap")          # the producer page + data
        with pytest.raises(bpfload.SyscallError) as ei:
            bpfload.RingBuffer(obj.maps["rb"], print)
        assert ei.value.command == "mmap" and "producer" in str(ei.value)
        assert _new_fds(fds) == {}
        with pytest.raises(ValueError, match="unknown call"):
            _sys.inject_fault(1, errno.ENOMEM, "munmap")
        with pytest.raises(ValueError):
            _sys.syscall_count(64)
