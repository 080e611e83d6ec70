"""Event readers and the map poller against C references, in the same run.

Ring buffer consumption
    1,000,000 records (24-byte payload, 32 bytes in the ring) are put in a
    64 MiB ring by ``rb_one`` of bpf/ringbuf_bench.bpf.o (XDP, test_run
    repeat=N; untimed) before every round; a round is one consumer emptying
    the ring, calling a callback per record.  Three consumers of the same
    map fd and the same records:

    * ``bpfload``: :class:`bpfload.RingBuffer` ``poll(0)``;
    * ``libbpf``: ``ring_buffer__poll(rb, 0)`` (Debian's libbpf-dev, linked
      into the reference .so with -lbpf);
    * ``c-loop``: a plain C consumer loop over the same mmap layout
      (c_ringbuf_ref.c), committing once per pass.

    Two callbacks: ``c-noop``, the C function ``crb_noop`` (libbpf's
    ring_buffer_sample_fn signature; bpfload calls it through its C-callback
    path), and ``py-noop``, a Python function returning None (bpfload hands
    it its reused zero-copy memoryview; each C reference runs twice, calling
    it through the C API with a new zero-copy memoryview per record and with
    a bytes copy per record - what a hand-written binding would do - and the
    faster of the two in each round is the reference).

Map polling
    One snapshot per round (batch lookup of the whole map + per-CPU sum +
    per-key delta and rate) of a full 1,000,000-entry HASH (u32 -> u64) and
    a 1,000,000-entry PERCPU_ARRAY (u64): :meth:`bpfload.MapPoller.snapshot`
    against ``cpoll_snapshot`` (c_poll_ref.c) doing the same.

Every bpfload round is preceded by one round of each reference (interleaved
on the same records/map), so machine noise hits all sides alike.  Each
bpfload benchmark's ``extra_info`` holds records (keys) per second for every
side and the ratios ``ratio_paired`` (median over rounds of bpfload / the
reference round run just before it: the verdict, robust to the load of this
shared machine, which comes and goes over seconds) and ``ratio_min`` (min
bpfload round / min reference round); ratios < 1 mean bpfload is faster.

Run: ``python3 -m pytest benchmarks/bench_events.py --benchmark-only``
(``BPFLOAD_BENCH_ROUNDS`` sets rounds, default 15).
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import statistics
import struct
import sysconfig
import time

import pytest

import bpfload
from bpfload import Map, MapType, possible_cpus
from bpfload.events.poll import MapPoller
from bpfload.events.ringbuf import RingBuffer

from .conftest import HERE, build_c

REPO = HERE.parent
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))

N_RECORDS = 1_000_000
RING_BYTES = 64 << 20
N_POLL = 1_000_000

TARGET_RINGBUF = 1.0      # bpfload time / libbpf time
TARGET_POLL = 1.1         # bpfload time / C reference time

CB_C, CB_PY_VIEW, CB_PY_BYTES = 0, 1, 2

pytestmark = pytest.mark.usefixtures("kernel")


# --------------------------------------------------------------------------
# the C references: built by this run with cc, loaded with ctypes.PyDLL

def _build() -> pathlib.Path:
    return build_c("c_events_ref.so", [HERE / "c_ringbuf_ref.c", HERE / "c_poll_ref.c"],
                   ["-shared", "-fPIC", "-Wextra", "-Wno-unused-parameter",
                    f"-I{sysconfig.get_paths()['include']}"], ["-lbpf"], what="the C references")


@pytest.fixture(scope="module")
def cev():
    lib = ctypes.PyDLL(str(_build()))   # PyDLL: the GIL stays held (Python callbacks)
    sig = {
        "crb_new": (ctypes.c_void_p, [ctypes.c_int, ctypes.c_uint32, ctypes.c_int, ctypes.py_object]),
        "crb_consume": (ctypes.c_long, [ctypes.c_void_p]),
        "crb_free": (None, [ctypes.c_void_p]),
        "crb_libbpf_new": (ctypes.c_void_p, [ctypes.c_int, ctypes.c_int, ctypes.py_object]),
        "crb_libbpf_poll": (ctypes.c_long, [ctypes.c_void_p, ctypes.c_int]),
        "crb_libbpf_free": (None, [ctypes.c_void_p]),
        "cpoll_new": (ctypes.c_void_p, [ctypes.c_int, ctypes.c_uint32, ctypes.c_uint32,
                                        ctypes.c_uint32, ctypes.c_size_t]),
        "cpoll_snapshot": (ctypes.c_long, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]),
        "cpoll_free": (None, [ctypes.c_void_p]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _check(ret, what):
    if ret is None or (isinstance(ret, int) and ret < 0):
        raise OSError(-(ret or 0), f"C reference {what} failed")
    return ret


# --------------------------------------------------------------------------
# ring buffer

@pytest.fixture(scope="module")
def ring():
    obj = bpfload.BpfObject.open(REPO / "bpf" / "ringbuf_bench.bpf.o")
    obj.maps["rb"].max_entries = RING_BYTES
    obj.load()
    yield obj
    obj.close()


class Producer:
    """Puts N records in the ring (untimed) and checks none was dropped."""

    def __init__(self, obj):
        self.prog = obj.programs["rb_one"]
        self.state = obj.maps["state"]
        self.pkt = bytes(64)

    def __call__(self, n=N_RECORDS):
        self.state[0] = struct.pack("=I", 0)
        self.prog.test_run(self.pkt, repeat=n)
        dropped = struct.unpack("=I", self.state[1])[0]
        assert dropped == 0, f"{dropped} records did not fit the ring"


def _py_noop(data):
    return None


class Side:
    """One consumer: ``round()`` consumes everything and returns the count."""

    def __init__(self, name, round_fn, close_fn):
        self.name, self.round, self.close = name, round_fn, close_fn
        self.times = []


def _sides(cev, rb_map, cb_kind):
    """The consumers of one group: the references first, bpfload last."""
    fd = rb_map.fd
    pycb = _py_noop
    modes = [("", CB_C)] if cb_kind == "c-noop" else [("", CB_PY_VIEW), ("-bytes", CB_PY_BYTES)]
    sides = {}
    for suffix, mode in modes:
        h = _check(cev.crb_libbpf_new(fd, mode, pycb), "crb_libbpf_new")
        sides["libbpf" + suffix] = Side("libbpf" + suffix, lambda h=h: cev.crb_libbpf_poll(h, 0),
                                        lambda h=h: cev.crb_libbpf_free(h))
    for suffix, mode in modes:
        h = _check(cev.crb_new(fd, RING_BYTES, mode, pycb), "crb_new")
        sides["c-loop" + suffix] = Side("c-loop" + suffix, lambda h=h: cev.crb_consume(h),
                                        lambda h=h: cev.crb_free(h))
    if cb_kind == "c-noop":
        callback = ctypes.cast(cev.crb_noop, ctypes.c_void_p).value   # the same C function
    else:
        callback = pycb
    rb = RingBuffer(rb_map, callback)
    sides["bpfload"] = Side("bpfload", lambda: rb.poll(0), rb.close)
    return sides


def _best(sides, prefix):
    """Per round, the fastest of the references named prefix* (the strictest comparison)."""
    group = [s.times for name, s in sides.items() if name.startswith(prefix)]
    return [min(ts) for ts in zip(*group)]


def _timed(fn):
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def _ratios(py_times, ref_times):
    return (min(py_times) / min(ref_times),
            statistics.median(p / r for p, r in zip(py_times, ref_times)))


@pytest.mark.parametrize("cb_kind", ["c-noop", "py-noop"])
def test_ringbuf_consume(benchmark, cev, ring, cb_kind):
    produce = Producer(ring)
    rb_map = ring.maps["rb"]
    sides = _sides(cev, rb_map, cb_kind)
    refs = [s for name, s in sides.items() if name != "bpfload"]
    bp = sides["bpfload"]
    try:
        # drain anything left, then one warm-up round per side
        for s in sides.values():
            s.round()
        for s in sides.values():
            produce()
            assert s.round() == N_RECORDS, s.name

        def setup():
            for s in refs:
                produce()
                dt, n = _timed(s.round)
                assert n == N_RECORDS, (s.name, n)
                s.times.append(dt)
            produce()

        counts = []

        def bpfload_round():
            counts.append(bp.round())

        benchmark.group = f"ringbuf consume, {cb_kind} callback"
        benchmark.pedantic(bpfload_round, setup=setup, rounds=ROUNDS, iterations=1)
        assert counts == [N_RECORDS] * len(counts)
    finally:
        for s in sides.values():
            s.close()
    if benchmark.stats is None:
        return
    bp.times = list(benchmark.stats.stats.data)
    info = benchmark.extra_info
    info["records"] = N_RECORDS
    info["callback"] = cb_kind
    for s in (bp, *refs):
        info[f"{s.name}_records_per_s"] = round(N_RECORDS / min(s.times))
        info[f"{s.name}_ns_per_record"] = round(min(s.times) * 1e9 / N_RECORDS, 2)
    for ref in ("libbpf", "c-loop"):
        times = _best(sides, ref)
        rmin, rpaired = _ratios(bp.times, times)
        info[f"ratio_min_vs_{ref}"] = round(rmin, 3)
        info[f"ratio_paired_vs_{ref}"] = round(rpaired, 3)
    info["target_vs_libbpf"] = TARGET_RINGBUF
    info["met_vs_libbpf"] = info["ratio_paired_vs_libbpf"] <= TARGET_RINGBUF


# --------------------------------------------------------------------------
# map polling

def _fill_hash(m, n):
    keys = struct.pack(f"={n}I", *range(n))
    vals = struct.pack(f"={n}Q", *range(n))
    m.update_batch(keys, vals)


def _fill_percpu(m, n):
    ncpu = len(possible_cpus())
    vals = struct.pack(f"={n * ncpu}Q", *range(n * ncpu))
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        m.update_batch(struct.pack(f"={hi - lo}I", *range(lo, hi)),
                       vals[lo * ncpu * 8:hi * ncpu * 8])


@pytest.fixture(scope="module")
def poll_maps():
    h = Map.create(MapType.HASH, 4, 8, N_POLL, name="bench_poll_h")
    a = Map.create(MapType.PERCPU_ARRAY, 4, 8, N_POLL, name="bench_poll_pa")
    try:
        _fill_hash(h, N_POLL)
        _fill_percpu(a, N_POLL)
        yield {"hash": h, "percpu_array": a}
    finally:
        h.close()
        a.close()


@pytest.mark.parametrize("kind", ["hash", "percpu_array"])
def test_poll_snapshot(benchmark, cev, poll_maps, kind):
    m = poll_maps[kind]
    poller = MapPoller(m, interval=1.0, sum_cpus=True)
    h = _check(cev.cpoll_new(m.fd, m.key_size, m.value_size, m.ncpus, m.max_entries), "cpoll_new")
    csum = ctypes.c_uint64()
    ctimes = []
    try:
        assert cev.cpoll_snapshot(h, ctypes.byref(csum)) == N_POLL   # the C side's baseline
        snap = poller.snapshot()                                     # warm-up
        assert snap.count == N_POLL

        def setup():
            dt, n = _timed(lambda: cev.cpoll_snapshot(h, ctypes.byref(csum)))
            assert n == N_POLL
            ctimes.append(dt)

        snaps = []

        def bpfload_round():
            snaps.append(poller.snapshot().count)

        benchmark.group = f"poll 1M-entry {kind}"
        benchmark.pedantic(bpfload_round, setup=setup, rounds=ROUNDS, iterations=1)
        assert snaps == [N_POLL] * len(snaps)
        # the same work: same total, zero deltas on an idle map
        arr = poller.snapshot()
        assert sum(arr.values) == csum.value
        assert not any(arr.deltas)
    finally:
        cev.cpoll_free(h)
        poller.close()
    if benchmark.stats is None:
        return
    ptimes = list(benchmark.stats.stats.data)
    info = benchmark.extra_info
    rmin, rpaired = _ratios(ptimes, ctimes)
    info.update(entries=N_POLL, map=kind, ncpus=m.ncpus,
                bpfload_keys_per_s=round(N_POLL / min(ptimes)),
                c_keys_per_s=round(N_POLL / min(ctimes)),
                ratio_min=round(rmin, 3), ratio_paired=round(rpaired, 3),
                target=TARGET_POLL, met=rpaired <= TARGET_POLL)
