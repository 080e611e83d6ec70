"""PerfBuffer: samples written by bpf/perf_event.bpf.c (XDP, run with
BPF_PROG_TEST_RUN on each CPU in turn: BPF_F_CURRENT_CPU picks the ring of
the CPU the test thread is pinned to) arrive once, in order per CPU, with
the right CPU; records that wrap the ring's end are reassembled; a full ring
surfaces the kernel's lost counts; every error path is a precise BpfError and
leaks no fd or mapping.
"""
from __future__ import annotations

import errno
import gc
import os
import struct
import threading
import time
import warnings

import pytest

import bpfload
from bpfload import MapType
from bpfload.events.perf import (
    EventConfigError, MapTypeError, PerfBuffer, ReaderBusyError, ReaderClosedError,
)
from conftest import bpf_mappings, bpf_object, on_cpu, sysfs_cpus

pytestmark = pytest.mark.kernel

KIND_OUTPUT, KIND_ALTERNATE, KIND_PKT = 1, 3, 4
EVENT = 24
SAMPLE_REC = 8 + 4 + 28        # perf header + raw size + (24 padded so that 4 + n is 8-aligned)


def event(seq: int, kind: int) -> bytes:
    return struct.pack("=II", seq, kind) + bytes((seq + i) & 0xFF for i in range(16))


def pkt(seq: int, count: int = 0) -> bytes:
    return struct.pack("<II", seq, count) + bytes(range(8, 20))     # 20 bytes >= 14


def signed(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v




def cpus():
    return sorted(os.sched_getaffinity(0) & set(sysfs_cpus("online")))




@pytest.fixture
def obj():
    with bpfload.load(bpf_object("perf_event")) as o:
        yield o


class Collect:
    def __init__(self):
        self.samples = []
        self.lost = []

    def sample(self, cpu, data):
        self.samples.append((cpu, bytes(data)))

    def on_lost(self, cpu, n):
        self.lost.append((cpu, n))

    def by_cpu(self):
        out = {}
        for cpu, data in self.samples:
            out.setdefault(cpu, []).append(data)
        return out


def test_every_sample_once_in_order_per_cpu(obj):
    c = Collect()
    prog = obj.programs["pe_output"]
    expected = {}
    with PerfBuffer(obj.maps["events"], c.sample, c.on_lost) as pb:
        assert pb.cpus == sysfs_cpus("online")
        seq = 0
        for rnd in range(3):
            for cpu in cpus():
                with on_cpu(cpu):
                    for _ in range(10):
                        assert prog.test_run(pkt(seq)).retval == 0
                        expected.setdefault(cpu, []).append(seq)
                        seq += 1
        assert pb.poll(1000) == seq
        assert pb.consume() == 0
    got = c.by_cpu()
    assert set(got) == set(expected)
    for cpu, seqs in expected.items():
        # raw samples are padded to 8 bytes with the u32 size: 24 -> 28 bytes,
        # the padding is whatever the kernel had there
        assert [len(d) for d in got[cpu]] == [28] * len(seqs)
        assert [d[:EVENT] for d in got[cpu]] == [event(s, KIND_OUTPUT) for s in seqs]
    assert c.lost == [] and pb.lost == 0


def test_sample_with_packet_bytes_and_skips(obj):
    c = Collect()
    cpu = cpus()[0]
    with PerfBuffer(obj.maps["events"], c.sample) as pb, on_cpu(cpu):
        assert obj.programs["pe_with_pkt"].test_run(pkt(5)).retval == 0
        assert obj.programs["pe_alternate"].test_run(pkt(10, 9)).retval == 5   # 10,12,14,16,18
        assert pb.consume() == 6
    (c0, first), *rest = c.samples
    assert c0 == cpu
    assert first[:EVENT + 14] == event(5, KIND_PKT) + pkt(5)[:14]
    assert len(first) - (EVENT + 14) < 8                                   # kernel padding only
    assert [d[:EVENT] for _, d in rest] == [event(s, KIND_ALTERNATE) for s in range(10, 20, 2)]


def test_records_wrapping_the_ring_end(obj):
    """40- and 48-byte records in a one-page ring: many of them straddle the end."""
    c = Collect()
    cpu = cpus()[-1]
    expected = []
    kinds = set()

    def sample(cpu, data):
        kinds.add(type(data))
        c.sample(cpu, data)

    with PerfBuffer(obj.maps["events"], sample, page_count=1, cpus=[cpu]) as pb, on_cpu(cpu):
        seq = 0
        for rnd in range(12):
            for _ in range(30):
                prog = obj.programs["pe_with_pkt" if seq % 3 == 0 else "pe_output"]
                assert prog.test_run(pkt(seq)).retval == 0
                expected.append((seq, seq % 3 == 0))
                seq += 1
            assert pb.consume() == 30
        assert pb.lost == 0
    assert len(c.samples) == len(expected)
    for (cpu_got, data), (s, with_pkt) in zip(c.samples, expected):
        assert cpu_got == cpu
        if with_pkt:
            assert data[:EVENT + 14] == event(s, KIND_PKT) + pkt(s)[:14]
        else:
            assert data[:EVENT] == event(s, KIND_OUTPUT) and len(data) == 28
    # some records did wrap (reassembled: they arrive as bytes, the others as views)
    assert kinds == {bytes, memoryview}


def test_lost_samples_are_surfaced(obj):
    c = Collect()
    cpu = cpus()[0]
    with PerfBuffer(obj.maps["events"], c.sample, c.on_lost, page_count=1, cpus=[cpu]) as pb, \
            on_cpu(cpu):
        out = obj.programs["pe_output"]
        accepted = failed = 0
        for seq in range(200):
            r = signed(out.test_run(pkt(seq)).retval)
            if r == 0:
                accepted += 1
            else:
                assert r == -errno.ENOSPC
                failed += 1
        assert accepted == 4096 // SAMPLE_REC and failed == 200 - accepted
        assert pb.consume() == accepted
        assert c.lost == []                       # the kernel reports the loss with the next record
        assert out.test_run(pkt(1000)).retval == 0
        assert pb.consume() == 1
        assert c.lost == [(cpu, failed)] and pb.lost == failed
        assert c.samples[-1][0] == cpu and c.samples[-1][1][:EVENT] == event(1000, KIND_OUTPUT)


def test_lost_counted_without_a_lost_callback(obj):
    cpu = cpus()[0]
    with PerfBuffer(obj.maps["events"], lambda c, d: None, page_count=1, cpus=[cpu]) as pb, \
            on_cpu(cpu):
        for seq in range(120):
            obj.programs["pe_output"].test_run(pkt(seq))
        pb.consume()
        obj.programs["pe_output"].test_run(pkt(0))
        pb.consume()
        assert pb.lost == 120 - 4096 // SAMPLE_REC


def test_poll_waits_for_a_sample(obj):
    c = Collect()
    cpu = cpus()[0]

    def produce():
        with on_cpu(cpu):
            obj.programs["pe_output"].test_run(pkt(3))

    with PerfBuffer(obj.maps["events"], c.sample) as pb:
        t0 = time.monotonic()
        assert pb.poll(30) == 0 and time.monotonic() - t0 >= 0.02
        t = threading.Timer(0.05, produce)
        t.start()
        assert pb.poll(5000) == 1
        t.join()
    assert [(c_, d[:EVENT]) for c_, d in c.samples] == [(cpu, event(3, KIND_OUTPUT))]


def test_callbacks_errors_propagate(obj):
    cpu = cpus()[0]
    seen = []

    def cb(c, data):
        seen.append(struct.unpack_from("=I", data)[0])
        if len(seen) == 2:
            raise ValueError("stop")

    with PerfBuffer(obj.maps["events"], cb, cpus=[cpu]) as pb, on_cpu(cpu):
        for s in range(4):
            obj.programs["pe_output"].test_run(pkt(s))
        with pytest.raises(ValueError, match="stop"):
            pb.consume()
        assert pb.consume() == 2 and seen == [0, 1, 2, 3]


def test_close_clears_the_map_slots(obj):
    cpu = cpus()[0]
    pb = PerfBuffer(obj.maps["events"], lambda c, d: None, cpus=[cpu])
    with on_cpu(cpu):
        assert obj.programs["pe_output"].test_run(pkt(1)).retval == 0
        pb.close()
        pb.close()
        assert pb.closed
        # no perf event in the slot any more: the helper says ENOENT
        assert signed(obj.programs["pe_output"].test_run(pkt(2)).retval) == -errno.ENOENT
    with pytest.raises(ReaderClosedError):
        pb.poll(0)
    with pytest.raises(ReaderClosedError):
        pb.consume()


def test_close_from_a_callback(obj):
    cpu = cpus()[0]

    def cb(c, d):
        pb.close()

    pb = PerfBuffer(obj.maps["events"], cb, cpus=[cpu])
    with on_cpu(cpu):
        for s in range(3):
            obj.programs["pe_output"].test_run(pkt(s))
    assert pb.consume() == 1 and pb.closed


def test_reentrant_consume_is_refused(obj):
    cpu = cpus()[0]
    errs = []

    def cb(c, d):
        try:
            pb.consume()
        except ReaderBusyError as e:
            errs.append(e)

    with PerfBuffer(obj.maps["events"], cb, cpus=[cpu]) as pb, on_cpu(cpu):
        obj.programs["pe_output"].test_run(pkt(0))
        assert pb.consume() == 1 and len(errs) == 1


# --------------------------------------------------------------------------
# errors and resources

@pytest.mark.parametrize("page_count", [0, 3, 6, -8, 2.0, True, "8"])
def test_page_count_must_be_a_power_of_two(obj, page_count):
    before = bpf_mappings()
    with pytest.raises(EventConfigError, match="power of two") as ei:
        PerfBuffer(obj.maps["events"], lambda c, d: None, page_count=page_count)
    assert isinstance(ei.value, bpfload.BpfError) and isinstance(ei.value, ValueError)
    assert bpf_mappings() == before


def test_constructor_errors(obj):
    before = bpf_mappings()
    with bpfload.Map.create(MapType.ARRAY, 4, 4, 4, name="arr") as a:
        with pytest.raises(MapTypeError, match="ARRAY map, not PERF_EVENT_ARRAY"):
            PerfBuffer(a, lambda c, d: None)
    with pytest.raises(TypeError, match="callable"):
        PerfBuffer(obj.maps["events"], 5)      # None is allowed: records()/records_async()
    with pytest.raises(TypeError, match="lost_callback"):
        PerfBuffer(obj.maps["events"], lambda c, d: None, lost_callback=5)
    with pytest.raises(EventConfigError, match="wakeup_events"):
        PerfBuffer(obj.maps["events"], lambda c, d: None, wakeup_events=0)
    with pytest.raises(EventConfigError, match="no CPU"):
        PerfBuffer(obj.maps["events"], lambda c, d: None, cpus=[])
    with bpfload.Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, 1, name="tiny") as tiny:
        with pytest.raises(EventConfigError, match="no slot for cpu 1"):
            PerfBuffer(tiny, lambda c, d: None, cpus=[0, 1])
    assert bpf_mappings() == before


def test_failure_midway_closes_everything(obj):
    """CPU 0 opens, a CPU that does not exist fails: nothing is left open or in the map."""
    before = bpf_mappings()
    with pytest.raises(bpfload.SyscallError, match="perf_event_open"):
        PerfBuffer(obj.maps["events"], lambda c, d: None, cpus=[cpus()[0], 127])
    assert bpf_mappings() == before
    with on_cpu(cpus()[0]):
        assert signed(obj.programs["pe_output"].test_run(pkt(0)).retval) == -errno.ENOENT


def test_no_mapping_left_and_closed_map_is_fine(obj):
    before = bpf_mappings()
    m = bpfload.Map.from_fd(obj.maps["events"].fd)
    pb = PerfBuffer(m, lambda c, d: None, page_count=2)
    assert bpf_mappings() == before + len(sysfs_cpus("online"))
    m.close()                               # the reader keeps its own dup
    pb.close()
    assert bpf_mappings() == before
    m.close()
    with pytest.raises(bpfload.MapClosedError):
        PerfBuffer(m, lambda c, d: None)


def test_unclosed_perf_buffer_warns(obj):
    before = bpf_mappings()
    pb = PerfBuffer(obj.maps["events"], lambda c, d: None)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del pb
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert bpf_mappings() == before
    with on_cpu(cpus()[0]):                 # and the map slots were cleared
        assert signed(obj.programs["pe_output"].test_run(pkt(0)).retval) == -errno.ENOENT


def test_kept_views_survive_close(obj):
    cpu = cpus()[0]
    kept = []
    with PerfBuffer(obj.maps["events"], lambda c, d: kept.append(d), cpus=[cpu]) as pb, on_cpu(cpu):
        for s in range(3):
            obj.programs["pe_output"].test_run(pkt(s))
        assert pb.consume() == 3
        assert [bytes(d[:EVENT]) for d in kept] == [event(s, KIND_OUTPUT) for s in range(3)]
        assert all(d.readonly for d in kept)
    assert bytes(kept[0]) == bytes(28)          # zeros once the ring is gone, never a fault
    del kept[:]
