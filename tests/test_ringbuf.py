"""RingBuffer: records written by bpf/ringbuf.bpf.c (run with BPF_PROG_TEST_RUN)
arrive once, in order, with discards honored, through callbacks, C callbacks
and iteration; every error path is a precise BpfError and leaks nothing.

A pure-Python reader of the same mmap layout (:class:`PyRingPeek`, the slow
reference) reads the records without consuming them, and the Cython consumer
must hand over exactly the same ones.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import mmap
import os
import select
import struct
import threading
import time
import warnings

import pytest

import bpfload
from bpfload import MapType
from bpfload.events.ringbuf import (
    EventConfigError, MapTypeError, ReaderBusyError, ReaderClosedError, RingBuffer, SampleFunction,
)
from conftest import bpf_mappings, bpf_object, on_cpu

pytestmark = pytest.mark.kernel

RING = 16384                      # max_entries of rb in ringbuf.bpf.c
REC = 32                          # 8-byte header + 24-byte struct event
KIND_OUTPUT, KIND_RESERVE, KIND_ALTERNATE = 1, 2, 3
BUSY, DISCARD = 1 << 31, 1 << 30


def event(seq: int, kind: int) -> bytes:
    """The struct event the programs write."""
    return struct.pack("=II", seq, kind) + bytes((seq + i) & 0xFF for i in range(16))


def signed(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def run(prog, seq: int, count: int = 0) -> int:
    return signed(prog.test_run(ctx=struct.pack("=II", seq, count)).retval)






@pytest.fixture
def obj():
    with bpfload.load(bpf_object("ringbuf")) as o:
        yield o


class PyRingPeek:
    """The slow reference: the kernel's ring layout read with the mmap module, no commit."""

    def __init__(self, m):
        page = mmap.PAGESIZE
        self.page, self.size = page, m.max_entries
        self.cons = mmap.mmap(m.fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self.prod = mmap.mmap(m.fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=page)

    @property
    def consumer_pos(self) -> int:
        return struct.unpack_from("=Q", self.cons, 0)[0]

    def records(self) -> list:
        cons = self.consumer_pos
        prod = struct.unpack_from("=Q", self.prod, 0)[0]
        out = []
        while cons < prod:
            off = self.page + (cons & (self.size - 1))
            hdr = struct.unpack_from("=I", self.prod, off)[0]
            if hdr & BUSY:
                break
            n = hdr & ~(BUSY | DISCARD)
            if not hdr & DISCARD:
                out.append(bytes(self.prod[off + 8:off + 8 + n]))
            cons += (n + 8 + 7) & ~7
        return out

    def close(self):
        self.cons.close()
        self.prod.close()


@pytest.fixture
def peek(obj):
    p = PyRingPeek(obj.maps["rb"])
    yield p
    p.close()


# --------------------------------------------------------------------------
# delivery

def test_every_record_once_in_order_on_every_cpu(obj, peek):
    got = []
    expected = []
    out, res = obj.programs["rb_output"], obj.programs["rb_reserve"]
    with RingBuffer(obj.maps["rb"], lambda d: got.append(bytes(d))) as rb:
        seq = 0
        for cpu in sorted(os.sched_getaffinity(0)):
            with on_cpu(cpu):
                for _ in range(20):
                    assert run(out, seq) == 0
                    expected.append(event(seq, KIND_OUTPUT))
                    assert run(res, seq + 1) == 0
                    expected.append(event(seq + 1, KIND_RESERVE))
                    seq += 2
        assert peek.records() == expected          # the reference sees them, unconsumed
        assert rb.poll(1000) == len(expected)
        assert got == expected
        assert rb.poll(0) == 0 and rb.consume() == 0
        assert peek.records() == [] and peek.consumer_pos == rb.stats().producer_pos


def test_discarded_records_are_skipped(obj, peek):
    got = []
    with RingBuffer(obj.maps["rb"], lambda d: got.append(bytes(d))) as rb:
        assert run(obj.programs["rb_alternate"], 10, 64) == 32
        assert run(obj.programs["rb_alternate"], 101, 5) == 2       # 102, 104
        assert rb.stats().pending == (64 + 5) * REC                 # discarded space counts
        expected = [event(s, KIND_ALTERNATE) for s in range(10, 74, 2)] + \
                   [event(s, KIND_ALTERNATE) for s in (102, 104)]
        assert peek.records() == expected
        assert rb.consume() == 34
        assert got == expected
        assert rb.stats().pending == 0


def test_full_ring_drops_are_what_the_programs_report(obj):
    """A full ring refuses records (the programs' return codes count them);
    everything that was accepted arrives, and the ring accepts again after."""
    out, res = obj.programs["rb_output"], obj.programs["rb_reserve"]
    got = []
    with RingBuffer(obj.maps["rb"], lambda d: got.append(struct.unpack_from("=I", d)[0])) as rb:
        accepted, dropped = [], 0
        for seq in range(600):
            if seq % 2:
                r = run(res, seq)
                assert r in (0, 1)
                ok = r == 0
            else:
                r = run(out, seq)
                assert r in (0, -errno.EAGAIN)
                ok = r == 0
            if ok:
                accepted.append(seq)
            else:
                dropped += 1
        # the kernel keeps the ring from filling completely: at most size - 1 bytes
        assert len(accepted) == (RING - 1) // REC == 511
        assert dropped == 600 - 511
        assert rb.stats().pending == 511 * REC
        assert rb.consume() == 511
        assert got == accepted
        assert run(out, 1000) == 0 and rb.consume() == 1 and got[-1] == 1000


def test_consumer_position_is_committed_in_batches(obj, peek):
    """The kernel-visible consumer position moves a few times per ring, not per record."""
    seen = []
    with RingBuffer(obj.maps["rb"], lambda d: seen.append(peek.consumer_pos)) as rb:
        for seq in range(511):
            assert run(obj.programs["rb_output"], seq) == 0
        assert rb.consume() == 511
        assert len(set(seen)) <= 4                     # every quarter ring at most
        assert seen[0] == 0 and seen == sorted(seen)
        assert peek.consumer_pos == 511 * REC          # and all of it at the end


def test_several_maps_one_reader():
    a_got, b_got = [], []
    with bpfload.load(bpf_object("ringbuf")) as a, bpfload.load(bpf_object("ringbuf")) as b, \
            RingBuffer() as rb:
        assert rb.add(a.maps["rb"], lambda d: a_got.append(bytes(d))) == 0
        assert rb.add(b.maps["rb"], lambda d: b_got.append(bytes(d))) == 1
        assert len(rb) == 2
        for s in range(5):
            run(a.programs["rb_output"], s)
        for s in range(100, 103):
            run(b.programs["rb_reserve"], s)
        assert rb.poll(100) == 8
        assert a_got == [event(s, KIND_OUTPUT) for s in range(5)]
        assert b_got == [event(s, KIND_RESERVE) for s in range(100, 103)]


def test_records_are_zero_copy_read_only_views(obj):
    views, kept = [], []

    def cb(data):
        views.append((type(data), data.readonly, data.nbytes, bytes(data)))
        if len(kept) < 2:
            kept.append(data)      # keeping a view: the reader must not re-aim it

    with RingBuffer(obj.maps["rb"], cb) as rb:
        for s in range(4):
            run(obj.programs["rb_output"], s)
        assert rb.consume() == 4
        assert all(v[:3] == (memoryview, True, 24) for v in views)
        assert [v[3] for v in views] == [event(s, KIND_OUTPUT) for s in range(4)]
        assert bytes(kept[0]) == event(0, KIND_OUTPUT) and bytes(kept[1]) == event(1, KIND_OUTPUT)
        with pytest.raises(TypeError):
            kept[0][0] = 1
    # after close the kept views stay readable (zeros), never a fault
    assert bytes(kept[0]) == bytes(24)
    del kept[:]


def test_iteration_yields_copies(obj):
    with RingBuffer() as rb:
        rb.add(obj.maps["rb"])                 # no callback: iteration only
        for s in range(3):
            run(obj.programs["rb_output"], s)
        assert rb.consume() == 0                # poll/consume skip callback-less maps
        recs = list(rb.records(timeout_ms=0))
        assert recs == [event(s, KIND_OUTPUT) for s in range(3)]
        assert all(type(r) is bytes for r in recs)
        assert list(rb.records(timeout_ms=0)) == []
        # blocking form: a record produced by another thread ends the wait
        t = threading.Timer(0.05, run, (obj.programs["rb_output"], 7))
        t.start()
        it = iter(rb)
        assert next(it) == event(7, KIND_OUTPUT)
        t.join()
        rb.close()
        assert list(it) == []


def test_c_function_callback(obj):
    sizes = []

    @SampleFunction
    def count(ctx, data, size):
        sizes.append((ctx, size, ctypes.string_at(data, size)))
        return -1 if len(sizes) == 2 else 0       # negative: stop after this record

    with RingBuffer() as rb:
        rb.add(obj.maps["rb"], count, ctx=77)
        for s in range(3):
            run(obj.programs["rb_output"], s)
        assert rb.consume() == 2
        assert rb.consume() == 1
    assert sizes == [(77, 24, event(s, KIND_OUTPUT)) for s in range(3)]


def test_callback_exception_and_stop(obj):
    seen = []

    def cb(data):
        seq = struct.unpack_from("=I", data)[0]
        seen.append(seq)
        if seq == 2:
            raise KeyError("boom")
        if seq == 4:
            return -1

    with RingBuffer(obj.maps["rb"], cb) as rb:
        for s in range(7):
            run(obj.programs["rb_output"], s)
        with pytest.raises(KeyError, match="boom"):
            rb.poll(0)
        assert seen == [0, 1, 2]                        # the raising record is consumed
        assert rb.poll(0) == 2 and seen[-1] == 4        # stopped after seq 4
        assert rb.poll(0) == 2 and seen[-2:] == [5, 6]


# --------------------------------------------------------------------------
# waiting

def test_poll_times_out_and_wakes(obj):
    with RingBuffer(obj.maps["rb"], lambda d: None) as rb:
        t0 = time.monotonic()
        assert rb.poll(50) == 0
        assert 0.04 <= time.monotonic() - t0 < 2
        t = threading.Timer(0.05, run, (obj.programs["rb_output"], 1))
        t.start()
        t0 = time.monotonic()
        assert rb.poll(5000) == 1
        assert time.monotonic() - t0 < 2
        t.join()
        # the epoll fd works with select()
        run(obj.programs["rb_output"], 2)
        r, _, _ = select.select([rb], [], [], 1)
        assert r == [rb] and rb.consume() == 1


def test_close_from_another_thread_wakes_poll(obj):
    rb = RingBuffer(obj.maps["rb"], lambda d: None)
    result = []
    t = threading.Thread(target=lambda: result.append(rb.poll(-1)))
    t.start()
    time.sleep(0.05)
    rb.close()
    t.join(5)
    assert not t.is_alive() and result == [0] and rb.closed
    with pytest.raises(ReaderClosedError):
        rb.poll(0)


def test_close_from_callback(obj):
    calls = []

    def cb(data):
        calls.append(1)
        rb.close()

    rb = RingBuffer(obj.maps["rb"], cb)
    for s in range(3):
        run(obj.programs["rb_output"], s)
    assert rb.consume() == 1 and calls == [1] and rb.closed
    rb.close()


# --------------------------------------------------------------------------
# errors and resources

def test_errors():
    with bpfload.Map.create(MapType.HASH, 4, 4, 8, name="not_rb") as h, RingBuffer() as rb:
        with pytest.raises(MapTypeError, match="HASH map, not RINGBUF") as ei:
            rb.add(h, lambda d: None)
        assert isinstance(ei.value, bpfload.BpfError) and isinstance(ei.value, TypeError)
        with pytest.raises(MapTypeError):
            rb.add(h.fd, lambda d: None)             # a raw fd is checked too
        r, w = os.pipe()
        try:
            with pytest.raises(MapTypeError, match="not a BPF map"):
                rb.add(r, lambda d: None)
        finally:
            os.close(r)
            os.close(w)
        with pytest.raises(MapTypeError):
            rb.add("rb", lambda d: None)
        with bpfload.load(bpf_object("ringbuf")) as o, pytest.raises(MapTypeError, match="not a BPF map"):
            rb.add(o.programs["rb_output"], lambda d: None)      # a program fd is no map
        with pytest.raises(MapTypeError, match="USER_RINGBUF"):
            with bpfload.Map.create(MapType.USER_RINGBUF, 0, 0, 4096, name="urb") as u:
                rb.add(u, lambda d: None)
    with bpfload.Map.create(MapType.RINGBUF, 0, 0, 4096, name="rb2") as m:
        with RingBuffer() as rb:
            with pytest.raises(TypeError, match="callable"):
                rb.add(m, "not callable")
            with pytest.raises(TypeError, match="NULL"):
                rb.add(m, 0)
            assert len(rb) == 0
        with pytest.raises(ReaderClosedError):
            rb.add(m, lambda d: None)
        with pytest.raises(ReaderClosedError):
            rb.consume()
        with pytest.raises(ReaderClosedError):
            list(rb.records(0))
        with pytest.raises(ReaderClosedError):
            rb.fileno()
        assert isinstance(ReaderClosedError("x"), (bpfload.BpfError, ValueError))
        rb.close()                                   # idempotent
    m.close()
    with RingBuffer() as rb, pytest.raises(bpfload.MapClosedError):
        rb.add(m, lambda d: None)
    assert issubclass(EventConfigError, bpfload.BpfError)


def test_reentrant_poll_is_refused(obj):
    errs = []

    def cb(data):
        try:
            rb.poll(0)
        except ReaderBusyError as e:
            errs.append(e)

    with RingBuffer(obj.maps["rb"], cb) as rb:
        run(obj.programs["rb_output"], 0)
        assert rb.consume() == 1
        assert len(errs) == 1 and isinstance(errs[0], RuntimeError)


def test_reader_outlives_the_map_object(obj):
    got = []
    m = bpfload.Map.from_fd(obj.maps["rb"].fd)
    rb = RingBuffer(m, lambda d: got.append(bytes(d)))
    m.close()                                   # the reader holds its own dup
    run(obj.programs["rb_output"], 5)
    assert rb.poll(100) == 1 and got == [event(5, KIND_OUTPUT)]
    rb.close()


def test_no_fd_or_mapping_left_behind():
    before = bpf_mappings()
    with bpfload.load(bpf_object("ringbuf")) as o:
        rb = RingBuffer(o.maps["rb"], lambda d: None)
        assert bpf_mappings() >= before + 2           # consumer page + producer/data
        rb.close()
        rb.close()
        assert bpf_mappings() == before
        # a failed add leaves nothing either
        with RingBuffer() as rb2, bpfload.Map.create(MapType.ARRAY, 4, 4, 1) as a:
            with pytest.raises(MapTypeError):
                rb2.add(a, lambda d: None)
    assert bpf_mappings() == before


def test_unclosed_reader_warns_and_cleans_up():
    before = bpf_mappings()
    with bpfload.load(bpf_object("ringbuf")) as o:
        rb = RingBuffer(o.maps["rb"], lambda d: None)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            del rb
            gc.collect()
        assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert bpf_mappings() == before


def test_bad_ring_size_from_the_kernel_is_refused():
    with RingBuffer() as rb:
        with pytest.raises(EventConfigError, match="power-of-two"):
            rb._add_ring(0, 4096 * 3, lambda d: None, "fake")
