"""MapPoller: whole-map snapshots, per-CPU sums, per-key deltas and rates.

The Cython poller is checked against a plain-Python reference (dicts built
from per-element lookups) over random inserts, updates and deletes, on the
batch path and on the per-element fallback (forced by an injected ENOTSUPP,
and natural on an LPM trie).
"""
from __future__ import annotations

import random
import struct
import sys
import time

import pytest

import bpfload
from bpfload import MapType
from bpfload._core import syscall as _sys
from bpfload.events.poll import (
    EventConfigError, MapPoller, MapTypeError, ReaderClosedError, Sample, Snapshot,
    StaleSnapshotError,
)
from conftest import need_module, sysfs_cpus

pytestmark = pytest.mark.kernel

NCPU = len(sysfs_cpus("possible"))
BPF_MAP_LOOKUP_BATCH = 24
ENOTSUPP = 524
BPF_F_NO_PREALLOC = 1


def u32(k: int) -> bytes:
    return struct.pack("=I", k)


def reference(m, sum_cpus=True) -> dict:
    """The slow reference: {key bytes: tuple of counters} from get_next_key + lookup."""
    out = {}
    k = m.next_key()
    vs = m.value_size
    nf = 1 if vs in (1, 2, 4, 8) else vs // 8
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[vs if nf == 1 else 8]
    while k is not None:
        v = m.lookup(k)
        slots = v if isinstance(v, list) else [v]
        per = [struct.unpack(f"={nf}{fmt}", s[:nf * struct.calcsize(fmt)]) for s in slots]
        if sum_cpus:
            out[bytes(k)] = tuple(sum(p[f] for p in per) for f in range(nf))
        else:
            out[bytes(k)] = tuple(x for p in per for x in p)
        k = m.next_key(k)
    return out


def snap_dict(snap: Snapshot) -> dict:
    """{key: (counters, deltas)} from the flat memoryviews."""
    keys, vals, deltas = snap.keys, snap.values, snap.deltas
    ks, F = snap.key_size, snap.fields
    assert len(keys) == snap.count * ks and len(vals) == len(deltas) == snap.count * F
    return {bytes(keys[i * ks:(i + 1) * ks]): (tuple(vals[i * F:(i + 1) * F]),
                                               tuple(deltas[i * F:(i + 1) * F]))
            for i in range(snap.count)}


def expected_deltas(prev: dict, cur: dict) -> dict:
    def wrap(x):
        x &= (1 << 64) - 1
        return x - (1 << 64) if x >> 63 else x
    return {k: (v, tuple(wrap(a - b) for a, b in zip(v, prev.get(k, (0,) * len(v)))))
            for k, v in cur.items()}


# --------------------------------------------------------------------------
# values, deltas, rates

def test_hash_deltas_rates_new_and_removed_keys():
    with bpfload.Map.create(MapType.HASH, 4, 8, 64, name="ph") as m:
        for k in range(10):
            m[k] = k * 100
        with MapPoller(m, interval=0.05) as p:
            assert p.count == 10 and p.generation == 1
            for k in range(10):
                m[k] = k * 100 + k            # +k
            del m[3]
            m[40] = 7                         # new: counts from zero
            t0 = time.monotonic()
            snap = p.poll()
            assert time.monotonic() - t0 < 1
            assert snap.count == 10 and len(snap) == 10
            assert snap.new_keys == 1 and snap.removed_keys == 1
            d = snap.to_dict()
            assert d[40] == Sample(7, 7, pytest.approx(7 / snap.elapsed))
            for k in (0, 1, 2, 4, 9):
                assert d[k].value == k * 101 and d[k].delta == k
                assert d[k].rate == pytest.approx(k / snap.elapsed)
            assert 3 not in d
            assert 0.03 < snap.elapsed < 1
            # a counter that went down gives a negative delta
            m[5] = 0
            assert p.snapshot().to_dict()[5].delta == -505


@pytest.mark.parametrize("value_size", [1, 2, 4, 8, 16, 24])
def test_value_sizes(value_size):
    nf = 1 if value_size <= 8 else value_size // 8
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[min(value_size, 8)]
    with bpfload.Map.create(MapType.ARRAY, 4, value_size, 8, name="pv") as m:
        def put(k, base):
            m[k] = struct.pack(f"={nf}{fmt}", *[(base + f) % 200 for f in range(nf)])
        for k in range(8):
            put(k, k)
        p = MapPoller(m, interval=1)
        assert p.fields == nf
        for k in range(8):
            put(k, k + 3)
        snap = p.snapshot()
        got = snap_dict(snap)
        assert {k: v for k, (v, _) in got.items()} == reference(m)
        assert all(d == (3,) * nf for _, d in got.values())
        assert snap.key(7) == bytes(snap.keys[28:32])
        assert snap.new_keys == snap.removed_keys == 0
        p.close()


@pytest.mark.parametrize("map_type", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH,
                                      MapType.LRU_PERCPU_HASH])
def test_percpu_summed_and_per_cpu(map_type):
    with bpfload.Map.create(map_type, 4, 8, 16, name="pp") as m:
        for k in range(16):
            m[k] = [k * 10 + c for c in range(NCPU)]
        summed = MapPoller(m, interval=1, sum_cpus=True)
        per_cpu = MapPoller(m, interval=1, sum_cpus=False)
        assert summed.fields == 1 and per_cpu.fields == NCPU
        for k in range(16):
            m[k] = [k * 10 + c + (c + 1) for c in range(NCPU)]   # CPU c gains c + 1
        s1, s2 = summed.snapshot(), per_cpu.snapshot()
        d1, d2 = s1.to_dict(), s2.to_dict()
        for k in range(16):
            assert d1[k].value == sum(k * 10 + 2 * c + 1 for c in range(NCPU))
            assert d1[k].delta == sum(c + 1 for c in range(NCPU))
            if NCPU > 1:
                assert d2[k].value == tuple(k * 10 + 2 * c + 1 for c in range(NCPU))
                assert d2[k].delta == tuple(c + 1 for c in range(NCPU))
        assert {k: v for k, (v, _) in snap_dict(s1).items()} == reference(m, sum_cpus=True)
        assert {k: v for k, (v, _) in snap_dict(s2).items()} == reference(m, sum_cpus=False)
        summed.close()
        per_cpu.close()


def _random_ops(m, rng, live, nkeys):
    for _ in range(rng.randrange(1, 40)):
        op = rng.random()
        k = rng.randrange(nkeys)
        if op < 0.6:
            if m.percpu:
                m[k] = [rng.randrange(1 << 40) for _ in range(NCPU)]
            else:
                m[k] = rng.randrange(1 << 40)
            live.add(k)
        elif k in live:
            del m[k]
            live.discard(k)


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH])
@pytest.mark.parametrize("path", ["batch", "per-element"])
def test_against_python_reference(map_type, path):
    """Random inserts/updates/deletes between snapshots: every delta and count
    matches the plain-Python reference, also when the key order changes."""
    rng = random.Random(1234)
    nkeys = 200
    with bpfload.Map.create(map_type, 4, 8, 256, name="pr") as m:
        live: set = set()
        _random_ops(m, rng, live, nkeys)
        with MapPoller(m, interval=1) as p:
            prev = reference(m)
            reordered = 0
            for _ in range(25):
                _random_ops(m, rng, live, nkeys)
                if path == "per-element":
                    _sys.inject_fault(1, ENOTSUPP, BPF_MAP_LOOKUP_BATCH)
                snap = p.snapshot()
                assert not _sys.fault_pending()
                cur = reference(m)
                assert snap_dict(snap) == expected_deltas(prev, cur)
                assert snap.new_keys == len(cur.keys() - prev.keys())
                assert snap.removed_keys == len(prev.keys() - cur.keys())
                reordered += p.reordered
                prev = cur
            assert reordered > 0       # the hash index path was exercised


def test_lpm_trie_uses_the_per_element_path():
    """LPM tries have no batch lookup: the fallback gives the same snapshot."""
    with bpfload.Map.create(MapType.LPM_TRIE, 8, 8, 16, flags=BPF_F_NO_PREALLOC, name="lpm") as m:
        def key(plen, a):
            return struct.pack("=I4B", plen, *a)
        m[key(24, (10, 0, 0, 0))] = 1
        m[key(16, (10, 1, 0, 0))] = 2
        with MapPoller(m, interval=1) as p:
            m[key(24, (10, 0, 0, 0))] = 11
            snap = p.snapshot()
            d = snap.to_dict(int_keys=False)
            assert d[key(24, (10, 0, 0, 0))] == (11, 10, pytest.approx(10 / snap.elapsed))
            assert d[key(16, (10, 1, 0, 0))].delta == 0
            assert snap.count == 2


def test_empty_and_full_maps():
    with bpfload.Map.create(MapType.HASH, 4, 8, 4, name="pe") as m, MapPoller(m, interval=1) as p:
        snap = p.snapshot()
        assert snap.count == 0 and snap.to_dict() == {} and snap.values.tolist() == []
        for k in range(4):
            m[k] = k
        snap = p.snapshot()
        assert snap.count == 4 and snap.new_keys == 4


# --------------------------------------------------------------------------
# views, NumPy, staleness, timing

def test_views_numpy_copy_and_staleness():
    np = need_module("numpy")
    with bpfload.Map.create(MapType.PERCPU_HASH, 4, 16, 8, name="pn") as m:
        for k in range(5):
            m[k] = [struct.pack("=QQ", k, 2 * k)] * NCPU
        p = MapPoller(m, interval=1)
        for k in range(5):
            m[k] = [struct.pack("=QQ", k + 1, 2 * k + 2)] * NCPU
        snap = p.snapshot()
        assert snap.fields == 2
        assert snap.keys.nbytes == 5 * 4 and snap.values.shape == (10,)
        assert snap.values.format == "Q" and snap.deltas.format == "q" and snap.rates.format == "d"
        arr = snap.numpy()
        assert arr.keys.dtype == np.uint32 and arr.keys.shape == (5,)
        assert arr.values.dtype == np.uint64 and arr.values.shape == (5, 2)
        order = np.argsort(arr.keys)
        assert arr.keys[order].tolist() == list(range(5))
        assert arr.values[order].tolist() == [[(k + 1) * NCPU, (2 * k + 2) * NCPU] for k in range(5)]
        assert (arr.deltas == np.array([[NCPU, 2 * NCPU]])).all()
        assert np.allclose(arr.rates, arr.deltas / snap.elapsed)
        assert not arr.values.flags.writeable
        assert np.shares_memory(arr.values, np.frombuffer(p._buffers()[1], dtype=np.uint64))
        kept = snap.copy()
        d_before = kept.to_dict()
        p.snapshot()
        with pytest.raises(StaleSnapshotError):
            snap.values
        with pytest.raises(StaleSnapshotError):
            snap.numpy()
        with pytest.raises(StaleSnapshotError):
            snap.to_dict()
        assert kept.to_dict() == d_before          # a copy never goes stale
        assert kept.numpy().keys.shape == (5,)
        p.close()
        with pytest.raises(StaleSnapshotError, match="closed"):
            snap.keys
        assert kept.to_dict() == d_before          # copies survive close too


def test_numpy_missing(monkeypatch):
    with bpfload.Map.create(MapType.ARRAY, 4, 8, 2, name="pm") as m, MapPoller(m) as p:
        snap = p.snapshot()
        monkeypatch.setitem(sys.modules, "numpy", None)
        with pytest.raises(ModuleNotFoundError, match="needs NumPy"):
            snap.numpy()
        assert snap.values.tolist() == [0, 0]          # the memoryviews need nothing


def test_poll_keeps_the_interval():
    with bpfload.Map.create(MapType.ARRAY, 4, 8, 4, name="pt") as m:
        with MapPoller(m, interval=0.05) as p:
            t0 = time.monotonic()
            gens = []
            for snap in p:
                gens.append(snap.generation)
                if len(gens) == 4:
                    break
            assert gens == [2, 3, 4, 5]
            assert 0.15 <= time.monotonic() - t0 < 5
        with MapPoller(m, interval=0.1) as p:
            t0 = time.monotonic()
            p.snapshot()                                # no waiting
            assert time.monotonic() - t0 < 0.09
            # late by several ticks: one snapshot at once, then the ticks restart
            # from there (no burst of catch-up snapshots)
            time.sleep(0.35)
            p.poll()
            t0 = time.monotonic()
            p.poll()
            assert time.monotonic() - t0 >= 0.05


def test_dict_keys_forms():
    with bpfload.Map.create(MapType.HASH, 6, 4, 4, name="pk") as m, MapPoller(m) as p:
        m[b"abcdef"] = 5
        d = p.snapshot().to_dict()
        assert list(d) == [b"abcdef"]
        with pytest.raises(ValueError):
            p.snapshot().to_dict(int_keys=True)
        assert p.snapshot().numpy().keys.shape == (1, 6)


# --------------------------------------------------------------------------
# errors

def test_errors():
    with bpfload.Map.create(MapType.RINGBUF, 0, 0, 4096, name="prb") as rb:
        with pytest.raises(MapTypeError, match="RINGBUF map") as ei:
            MapPoller(rb)
        assert isinstance(ei.value, bpfload.BpfError) and isinstance(ei.value, TypeError)
    with bpfload.Map.create(MapType.QUEUE, 0, 8, 4, name="pq") as q:
        with pytest.raises(MapTypeError):
            MapPoller(q)
    with pytest.raises(MapTypeError, match="expected a bpfload.Map"):
        MapPoller(42)
    with bpfload.Map.create(MapType.HASH, 4, 12, 4, name="p12") as m:
        with pytest.raises(EventConfigError, match="12-byte values"):
            MapPoller(m)
    with bpfload.Map.create(MapType.HASH, 4, 8, 4, name="pi") as m:
        for bad in (0, -1, float("nan"), "soon", None):
            with pytest.raises(EventConfigError, match="interval"):
                MapPoller(m, interval=bad)
        p = MapPoller(m, interval=1)
        p.close()
        p.close()
        assert p.closed
        with pytest.raises(ReaderClosedError):
            p.poll()
        with pytest.raises(ReaderClosedError):
            p.snapshot()
        assert list(p) == []
        q = MapPoller(m, interval=1)
    with pytest.raises(bpfload.MapClosedError):
        q.snapshot()
    q.close()
    with pytest.raises(bpfload.MapClosedError):
        MapPoller(m)
