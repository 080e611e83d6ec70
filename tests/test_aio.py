"""asyncio: RingBuffer/PerfBuffer ``records_async()``/``poll_async()`` and ``async for`` over a
MapPoller, on the standard loop and on uvloop.

Records are written by bpf/ringbuf.bpf.c and bpf/perf_event.bpf.c through
BPF_PROG_TEST_RUN from a producer task in the same loop, and read back
through ``async for``: every one arrives, once, in order.  Cancellation is
checked against the consumer page the kernel reads (mapped here with the
mmap module, independently of bpfload): after a cancelled iteration it
holds exactly the bytes of the records delivered, and a new iteration
starts at the next record.  Waits leave nothing registered with the loop
and burn no CPU.
"""
from __future__ import annotations

import asyncio
import mmap
import os
import resource
import struct

import pytest

import bpfload
from bpfload import MapType
from bpfload.events import MapPoller, PerfBuffer, RingBuffer
from bpfload.events.aio import AsyncRecords
from bpfload.events.ringbuf import ReaderBusyError, ReaderClosedError
from conftest import bpf_object, need_module, on_cpu, sysfs_cpus

pytestmark = pytest.mark.kernel

try:
    import uvloop
except ImportError:       # the uvloop cases are skipped with the reason (need_module)
    uvloop = None
else:
    # libuv opens one process-wide pipe (its signal pipe) with the first loop and keeps it:
    # open it here, outside the per-test fd-leak check
    uvloop.new_event_loop().close()

RING = 16384                 # max_entries of rb in ringbuf.bpf.c
REC = 32                     # 8-byte header + 24-byte struct event
EAGAIN = 11
ENOSPC = 28


def event(seq: int, kind: int) -> bytes:
    return struct.pack("=II", seq, kind) + bytes((seq + i) & 0xFF for i in range(16))


def rb_emit(prog, seq: int) -> int:
    """Run rb_output once; its return value (0, or -errno) as a signed int."""
    v = prog.test_run(ctx=struct.pack("=II", seq, 0)).retval
    return v - (1 << 32) if v >= 1 << 31 else v


def pkt(seq: int) -> bytes:
    return struct.pack("<II", seq, 0) + bytes(range(8, 20))


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a coroutine to completion on a fresh loop of the given kind."""
    if request.param == "uvloop":
        factory = need_module("uvloop").new_event_loop
    else:
        factory = asyncio.new_event_loop

    def runner(coro):
        loop = factory()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return runner


@pytest.fixture
def ring_obj():
    with bpfload.load(bpf_object("ringbuf")) as o:
        yield o


def consumer_pos(m) -> int:
    """The consumer position the kernel sees, read from the map's first page (our own mmap)."""
    page = mmap.mmap(m.fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
    try:
        return struct.unpack_from("=Q", page, 0)[0]
    finally:
        page.close()


def not_registered(loop, fd) -> bool:
    """True when no epoll set of this process watches *fd* (the kernel's view, read from
    /proc/self/fdinfo, so it holds for any loop: asyncio's selector and uvloop's libuv)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{name}") as f:
                text = f.read()
        except OSError:
            continue
        if any(line.split()[:2] == ["tfd:", str(fd)] for line in text.splitlines()):
            return False
    return True


async def produce(prog, seqs, every: int = 7):
    """Emit *seqs* with rb_output, yielding to the loop every few records and whenever the
    ring is full (-EAGAIN) until the consumer made room.  Returns how often it was full."""
    full = 0
    for i, seq in enumerate(seqs):
        while True:
            ret = rb_emit(prog, seq)
            if ret == 0:
                break
            assert ret == -EAGAIN, ret
            full += 1
            await asyncio.sleep(0.001)
        if i % every == 0:
            await asyncio.sleep(0)
    return full


def test_ringbuf_k_records_in_order_from_another_task(ring_obj, run):
    K = 3000                         # about 6 ring-fulls: the producer must wait for the consumer
    prog = ring_obj.programs["rb_output"]

    async def main():
        loop = asyncio.get_running_loop()
        with RingBuffer(ring_obj.maps["rb"]) as rb:
            fd = rb.fileno()
            producer = asyncio.ensure_future(produce(prog, range(K)))
            got = []
            async for data in rb.records_async(timeout=5):
                got.append(data)
                if len(got) == K:
                    break
            await producer
            assert not_registered(loop, fd)
            assert consumer_pos(ring_obj.maps["rb"]) == K * REC
            assert rb.stats().free == RING
        return got

    got = run(main())
    assert len(got) == K
    assert got == [event(s, 1) for s in range(K)]


def test_ringbuf_wait_is_idle_and_times_out(ring_obj, run):
    async def main():
        loop = asyncio.get_running_loop()
        with RingBuffer(ring_obj.maps["rb"]) as rb:
            t0 = resource.getrusage(resource.RUSAGE_SELF)
            got = [d async for d in rb.records_async(timeout=0.3)]
            t1 = resource.getrusage(resource.RUSAGE_SELF)
            assert not_registered(loop, rb.fileno())
            assert await rb.poll_async(timeout=0.05) == 0
            assert await rb.wait_readable_async(timeout=0) is False
        cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
        return got, cpu

    got, cpu = run(main())
    assert got == []
    # a loop spinning on a readable fd would burn the whole 0.3 s
    assert cpu < 0.15, f"{cpu:.3f}s of CPU during a 0.3 s idle wait"


def test_ringbuf_cancel_mid_stream_commits_what_was_delivered(ring_obj, run):
    N = 100
    prog = ring_obj.programs["rb_output"]
    m = ring_obj.maps["rb"]

    async def main():
        with RingBuffer(m) as rb:
            for s in range(N):
                assert rb_emit(prog, s) == 0
            got = []
            forty = asyncio.Event()

            async def consume():
                async for data in rb.records_async():
                    got.append(data)
                    if len(got) == 40:
                        forty.set()
                    await asyncio.sleep(0)       # cancellation lands here, in the body

            task = asyncio.ensure_future(consume())
            await forty.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            delivered = len(got)
            assert 40 <= delivered < N
            # the kernel's consumer page: exactly the delivered records, no more, no less
            assert consumer_pos(m) == delivered * REC
            assert rb.stats().pending == (N - delivered) * REC

            # a new iteration starts at the next record
            rest = [d async for d in rb.records_async(timeout=0.05)]
            assert consumer_pos(m) == N * REC
        return got, rest

    got, rest = run(main())
    assert got + rest == [event(s, 1) for s in range(N)]


def test_ringbuf_cancel_while_waiting_unregisters(ring_obj, run):
    prog = ring_obj.programs["rb_output"]

    async def main():
        loop = asyncio.get_running_loop()
        with RingBuffer(ring_obj.maps["rb"]) as rb:
            fd = rb.fileno()
            task = asyncio.ensure_future(rb.records_async().__anext__())
            await asyncio.sleep(0.02)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not_registered(loop, fd)
            assert rb_emit(prog, 7) == 0
            it = rb.records_async(timeout=1)
            assert isinstance(it, AsyncRecords)
            assert await it.__anext__() == event(7, 1)

    run(main())


def test_two_readers_in_one_loop(run):
    K = 400
    with bpfload.load(bpf_object("ringbuf")) as a, bpfload.load(bpf_object("ringbuf")) as b:
        async def reader(rb, n):
            out = []
            async for data in rb.records_async(timeout=5):
                out.append(struct.unpack_from("=I", data)[0])
                if len(out) == n:
                    break
            return out

        async def main():
            with RingBuffer(a.maps["rb"]) as ra, RingBuffer(b.maps["rb"]) as rb:
                results = await asyncio.gather(
                    reader(ra, K), reader(rb, K),
                    produce(a.programs["rb_output"], range(K), every=3),
                    produce(b.programs["rb_output"], range(1000, 1000 + K), every=5))
            return results[:2]

        got_a, got_b = run(main())
    assert got_a == list(range(K))
    assert got_b == list(range(1000, 1000 + K))


def test_one_reader_two_iterators_is_busy(ring_obj, run):
    async def main():
        with RingBuffer(ring_obj.maps["rb"]) as rb:
            first = asyncio.ensure_future(rb.records_async().__anext__())
            await asyncio.sleep(0.01)
            with pytest.raises(ReaderBusyError):
                await rb.records_async(timeout=1).__anext__()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first

    run(main())


def test_close_wakes_the_waiting_coroutine(ring_obj, run):
    async def main():
        loop = asyncio.get_running_loop()
        rb = RingBuffer(ring_obj.maps["rb"])
        rb2 = RingBuffer(ring_obj.maps["rb"])
        fd, fd2 = rb.fileno(), rb2.fileno()

        async def collect():
            return [d async for d in rb.records_async()]

        task = asyncio.ensure_future(collect())
        poller = asyncio.ensure_future(rb2.poll_async())
        await asyncio.sleep(0.02)
        assert not task.done() and not poller.done()
        rb.close()
        rb2.close()
        assert await asyncio.wait_for(task, 2) == []
        assert await asyncio.wait_for(poller, 2) == 0
        assert not_registered(loop, fd) and not_registered(loop, fd2)
        with pytest.raises(ReaderClosedError):
            rb.records_async()
        with pytest.raises(ReaderClosedError):
            await rb2.poll_async()

    run(main())


def test_poll_async_with_callbacks_and_backpressure(ring_obj, run):
    prog = ring_obj.programs["rb_output"]
    seen = []

    async def main():
        with RingBuffer(ring_obj.maps["rb"], lambda d: seen.append(bytes(d))) as rb:
            # fill the ring: the producer is refused, the reader shows no free space
            n = 0
            while rb_emit(prog, n) == 0:
                n += 1
            # the kernel refuses a reservation that would fill the ring to the last byte
            assert n == RING // REC - 1
            assert rb.stats().free == REC and rb.stats().pending == n * REC
            assert await rb.poll_async(timeout=1) == n
            assert rb.stats().free == RING

            async def later():
                await asyncio.sleep(0.05)
                assert rb_emit(prog, 999) == 0

            t = asyncio.ensure_future(later())
            assert await rb.poll_async(timeout=2) == 1
            await t
            return n

    n = run(main())
    assert seen == [event(s, 1) for s in range(n)] + [event(999, 1)]


def test_perfbuffer_records_async_in_order_and_lost(run):
    cpu = sorted(os.sched_getaffinity(0) & set(sysfs_cpus("online")))[0]
    K = 500
    with bpfload.load(bpf_object("perf_event")) as obj, on_cpu(cpu):
        prog = obj.programs["pe_output"]

        async def main():
            loop = asyncio.get_running_loop()
            with PerfBuffer(obj.maps["events"], cpus=[cpu], page_count=4) as pb:
                async def producer():
                    for s in range(K):
                        assert prog.test_run(pkt(s)).retval == 0
                        if s % 5 == 0:
                            await asyncio.sleep(0)

                t = asyncio.ensure_future(producer())
                got = []
                async for c, data in pb.records_async(timeout=5):
                    assert c == cpu
                    got.append(data[:24])
                    if len(got) == K:
                        break
                await t
                assert not_registered(loop, pb.fileno())
                assert pb.lost == 0

                # backpressure: nobody reads while 400 samples go into one page (~100 fit)
                with PerfBuffer(obj.maps["events"], cpus=[cpu], page_count=1) as small:
                    refused = 0
                    for s in range(400):
                        ret = prog.test_run(pkt(10000 + s)).retval
                        assert ret in (0, (1 << 32) - ENOSPC)
                        refused += ret != 0
                    assert small.stats()[0][0] == cpu and small.stats()[0][1] > 0
                    kept = [struct.unpack_from("=I", d)[0]
                            async for _, d in small.records_async(timeout=0.05)]
                    # the kernel writes its lost record before the next sample that fits
                    assert prog.test_run(pkt(20000)).retval == 0
                    kept += [struct.unpack_from("=I", d)[0]
                             async for _, d in small.records_async(timeout=0.05)]
                    lost = small.lost
            return got, kept, lost, refused

        got, kept, lost, refused = run(main())
    assert got == [event(s, 1) for s in range(K)]
    assert refused > 0
    assert lost == refused            # every refused sample is reported lost, none silently
    assert len(kept) - 1 + lost == 400
    assert kept == list(range(10000, 10000 + len(kept) - 1)) + [20000]


def test_perfbuffer_with_callback_poll_async_not_records(run):
    cpu = sorted(os.sched_getaffinity(0) & set(sysfs_cpus("online")))[0]
    with bpfload.load(bpf_object("perf_event")) as obj, on_cpu(cpu):
        seen = []

        async def main():
            with PerfBuffer(obj.maps["events"], lambda c, d: seen.append(bytes(d[:24])),
                            cpus=[cpu]) as pb:
                with pytest.raises(TypeError, match="callback=None"):
                    await pb.records_async().__anext__()
                for s in range(3):
                    assert obj.programs["pe_output"].test_run(pkt(s)).retval == 0
                assert await pb.poll_async(timeout=1) == 3

        run(main())
    assert seen == [event(s, 1) for s in range(3)]


def test_perfbuffer_sync_records_without_callback():
    cpu = sorted(os.sched_getaffinity(0) & set(sysfs_cpus("online")))[0]
    with bpfload.load(bpf_object("perf_event")) as obj, on_cpu(cpu):
        with PerfBuffer(obj.maps["events"], cpus=[cpu]) as pb:
            for s in range(5):
                assert obj.programs["pe_output"].test_run(pkt(s)).retval == 0
            got = [(c, d[:24]) for c, d in pb.records(timeout_ms=10)]
    assert got == [(cpu, event(s, 1)) for s in range(5)]


def test_map_poller_async_for(run):
    with bpfload.Map.create(MapType.HASH, 4, 8, 16, name="aio_cnt") as m:
        m.update(struct.pack("=I", 1), struct.pack("=Q", 10))

        async def main():
            loop = asyncio.get_running_loop()
            snaps = []
            with MapPoller(m, interval=0.05) as p:
                t0 = loop.time()
                n = 0
                async for snap in p:
                    n += 1
                    snaps.append(snap.copy().to_dict())
                    m.update(struct.pack("=I", 1), struct.pack("=Q", 10 + 5 * n))
                    m.update(struct.pack("=I", 2 + n), struct.pack("=Q", n))
                    if n == 4:
                        break
                elapsed = loop.time() - t0
                # a cancelled sleep leaves the tick schedule alone
                due = p._deadline
                task = asyncio.ensure_future(p.poll_async())
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert p._deadline == due
                snap = await p.poll_async()
                assert snap.to_dict()[1].delta == 5
            with pytest.raises(ReaderClosedError):
                await p.poll_async()
            return snaps, elapsed

        snaps, elapsed = run(main())
    assert [s[1].value for s in snaps] == [10, 15, 20, 25]
    assert [s[1].delta for s in snaps] == [0, 5, 5, 5]
    assert sorted(snaps[3]) == [1, 3, 4, 5]
    assert elapsed >= 4 * 0.05 * 0.9      # the loop kept the interval: four ticks
