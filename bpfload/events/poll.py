"""Map polling: :class:`MapPoller` snapshots a whole map at a fixed interval.

Each snapshot is one batch lookup of the map into preallocated buffers
(per-element lookups where the kernel lacks the batch command), per-CPU
values summed (or kept per CPU), and per-key deltas and rates against the
previous snapshot, all computed in Cython (:mod:`bpfload._core.poll`)
without a Python object per key.  A :class:`Snapshot` exposes the buffers
as memoryviews, as NumPy arrays (:meth:`Snapshot.numpy`, when NumPy is
installed) or, when asked, as a dict (:meth:`Snapshot.to_dict`).

Example::

    with bpfload.MapPoller(obj.maps["pkt_count"], interval=1.0) as p:
        for snap in p:                       # one per second
            for key, s in snap.to_dict().items():
                print(key, s.value, s.rate)

Needs Linux 5.6 for BPF_MAP_LOOKUP_BATCH (older kernels, and map types
without it, use the per-element path).
"""
from __future__ import annotations

import time
from typing import Dict, Iterator, NamedTuple, Optional

from .. import errors
from .._core.events import EventConfigError, MapTypeError, ReaderClosedError
from .._core.poll import PollerCore, monotonic_ns, to_dict as _to_dict
from ..constants import MapType
from .aio import AsyncPollerMixin

__all__ = ["MapPoller", "Snapshot", "SnapshotArrays", "Sample", "StaleSnapshotError",
           "MapTypeError", "EventConfigError", "ReaderClosedError"]

#: Map types whose entries are counters a poller can snapshot.
POLLABLE_TYPES = frozenset({
    MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
    MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE,
})


class StaleSnapshotError(errors.BpfError, ValueError):
    """A :class:`Snapshot` read after its poller took a newer one (its buffers were reused).

    Call :meth:`Snapshot.copy` to keep a snapshot past the next poll.
    """


class Sample(NamedTuple):
    """One key's counter(s) in :meth:`Snapshot.to_dict`: value, delta since the
    previous snapshot, and rate per second (tuples when a value has several counters)."""

    value: object
    delta: object
    rate: object


class SnapshotArrays(NamedTuple):
    """NumPy views of a snapshot (see :meth:`Snapshot.numpy`)."""

    keys: object
    values: object
    deltas: object
    rates: object


class Snapshot:
    """One whole-map snapshot with deltas and rates against the previous one.

    Attributes: ``count`` (entries), ``timestamp_ns`` (CLOCK_MONOTONIC when
    the read started), ``elapsed`` (seconds since the previous snapshot),
    ``new_keys`` (keys absent from the previous snapshot: their delta counts
    from zero), ``removed_keys`` (keys gone since), ``fields`` (counters per
    key: 1 for a 1/2/4/8-byte value, ``value_size // 8`` for u64 fields,
    times ``ncpus`` for an unsummed per-CPU map) and ``generation``.

    The buffer properties (``keys``, ``values``, ``deltas``, ``rates``: flat
    memoryviews, ``fields`` counters per key) and :meth:`numpy` (shaped
    arrays) are views of the poller's buffers, valid until its next
    snapshot; afterwards they raise :class:`StaleSnapshotError` (views
    already taken read the newer data).  :meth:`copy` detaches a snapshot.
    """

    __slots__ = ("_poller", "_bufs", "generation", "count", "timestamp_ns", "elapsed",
                 "new_keys", "removed_keys", "key_size", "fields", "__weakref__")

    def __init__(self, poller: Optional["MapPoller"], bufs, generation: int, count: int,
                 timestamp_ns: int, elapsed: float, new_keys: int, removed_keys: int,
                 key_size: int, fields: int):
        self._poller = poller
        self._bufs = bufs          # (keys, values, deltas, rates) bytes-like
        self.generation = generation
        self.count = count
        self.timestamp_ns = timestamp_ns
        self.elapsed = elapsed
        self.new_keys = new_keys
        self.removed_keys = removed_keys
        self.key_size = key_size
        self.fields = fields

    def _check(self):
        p = self._poller
        if p is not None and (p.closed or p.generation != self.generation):
            raise StaleSnapshotError(
                f"snapshot {self.generation} was overwritten by snapshot {p.generation}"
                if not p.closed else "the poller of this snapshot is closed")
        return self._bufs

    def _view(self, i: int, fmt: str, nbytes: int):
        mv = memoryview(self._check()[i])[:nbytes]
        return mv if fmt == "B" else mv.cast(fmt)

    @property
    def keys(self) -> memoryview:
        """Keys back to back: ``count * key_size`` bytes (key i at ``[i * key_size:]``)."""
        return self._view(0, "B", self.count * self.key_size)

    @property
    def values(self) -> memoryview:
        """Counters (u64), ``count * fields`` of them: key i's at ``[i * fields:(i + 1) * fields]``."""
        return self._view(1, "Q", self.count * self.fields * 8)

    @property
    def deltas(self) -> memoryview:
        """Change since the previous snapshot (int64), laid out like :attr:`values`."""
        return self._view(2, "q", self.count * self.fields * 8)

    @property
    def rates(self) -> memoryview:
        """Deltas per second (float64), laid out like :attr:`values`."""
        return self._view(3, "d", self.count * self.fields * 8)

    def key(self, i: int) -> bytes:
        """Key *i* as bytes.  Raises IndexError, :class:`StaleSnapshotError`."""
        if not 0 <= i < self.count:
            raise IndexError(f"key index {i} out of range ({self.count} keys)")
        ks = self.key_size
        return bytes(self._check()[0][i * ks:(i + 1) * ks])

    def to_dict(self, *, int_keys: Optional[bool] = None) -> Dict[object, Sample]:
        """``{key: Sample(value, delta, rate)}``: one Python object per key, built in C.

        Keys are native-endian unsigned ints when *int_keys* (default: when
        ``key_size`` is 1, 2, 4 or 8), else bytes.  Raises
        :class:`StaleSnapshotError` when the poller moved on.
        """
        k, v, d, r = self._check()
        if int_keys is None:
            int_keys = self.key_size in (1, 2, 4, 8)
        elif int_keys and self.key_size not in (1, 2, 4, 8):
            raise ValueError(f"keys of {self.key_size} bytes cannot be ints")
        return _to_dict(k, v, d, r, self.count, self.key_size, self.fields, int_keys, Sample)

    def numpy(self) -> SnapshotArrays:
        """Read-only NumPy arrays over the snapshot buffers (no copy).

        ``keys``: ``uint8/16/32/64`` of shape ``(count,)`` for 1/2/4/8-byte
        keys, else ``uint8`` of shape ``(count, key_size)``; ``values``
        ``uint64``, ``deltas`` ``int64``, ``rates`` ``float64``, of shape
        ``(count,)`` or ``(count, fields)``.  Raises ModuleNotFoundError when
        NumPy is not installed, :class:`StaleSnapshotError` when the poller
        moved on.
        """
        try:
            import numpy as np
        except ImportError as e:
            raise ModuleNotFoundError("Snapshot.numpy() needs NumPy (pip install numpy); "
                                      "the memoryview properties work without it") from e
        k, v, d, r = self._check()
        n, ks, F = self.count, self.key_size, self.fields

        def arr(buf, dtype, count, shape):
            a = np.frombuffer(buf, dtype=dtype, count=count)
            a = a.reshape(shape)
            a.flags.writeable = False
            return a

        if ks in (1, 2, 4, 8):
            keys = arr(k, np.dtype(f"=u{ks}"), n, (n,))
        else:
            keys = arr(k, np.uint8, n * ks, (n, ks))
        shape = (n,) if F == 1 else (n, F)
        return SnapshotArrays(keys, arr(v, np.uint64, n * F, shape), arr(d, np.int64, n * F, shape),
                              arr(r, np.float64, n * F, shape))

    def copy(self) -> "Snapshot":
        """A snapshot with its own copy of the buffers (never goes stale)."""
        k, v, d, r = self._check()
        n, ks, F = self.count, self.key_size, self.fields
        bufs = (bytes(k[:n * ks]), bytes(v[:n * F * 8]), bytes(d[:n * F * 8]), bytes(r[:n * F * 8]))
        return Snapshot(None, bufs, self.generation, n, self.timestamp_ns, self.elapsed,
                        self.new_keys, self.removed_keys, ks, F)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"<Snapshot {self.generation}: {self.count} keys, {self.new_keys} new, "
                f"{self.removed_keys} removed, elapsed {self.elapsed:.3f}s>")


class MapPoller(AsyncPollerMixin, PollerCore):
    """Snapshots a map every *interval* seconds, with per-key deltas and rates.

    ``MapPoller(m, interval=1.0, sum_cpus=True)`` sizes every buffer for
    ``m.max_entries`` once and takes a baseline snapshot at once; each
    :meth:`poll` then waits for the next tick (ticks are ``interval`` apart
    from the baseline; a poll more than a tick late takes its snapshot at
    once and restarts the ticks from there) and returns a :class:`Snapshot`.
    ``for snap in poller`` polls forever; in a coroutine, ``async for snap in
    poller`` (or ``await poller.poll_async()``) sleeps on the running loop.  :meth:`snapshot` reads now
    without waiting.

    *m* is a :class:`bpfload.Map` of a type in :data:`POLLABLE_TYPES`
    whose value is 1, 2, 4 or 8 bytes (one counter) or a multiple of 8
    bytes (u64 counters).  *sum_cpus* (per-CPU maps): sum each counter over
    the possible CPUs, else keep ``ncpus`` counters per key (CPU-major).

    Raises :class:`MapTypeError` (a map type with no counters to poll, or
    not a Map), :class:`EventConfigError` (``interval`` not positive, a
    value size that is not counters), :class:`bpfload.MapClosedError` (the
    map is closed) and the :class:`bpfload.MapError` of the first lookup.
    """

    def __init__(self, map, interval: float = 1.0, sum_cpus: bool = True):
        if not all(hasattr(map, a) for a in ("lookup_batch", "key_size", "value_stride")):
            raise MapTypeError(f"MapPoller: expected a bpfload.Map, got {type(map).__name__}")
        try:
            mtype = MapType(int(map.type))
        except ValueError:
            mtype = int(map.type)
        if mtype not in POLLABLE_TYPES:
            tname = getattr(mtype, "name", str(mtype))
            raise MapTypeError(f"MapPoller: map {map.name!r} is a {tname} map; pollable types "
                               f"are {', '.join(sorted(t.name for t in POLLABLE_TYPES))}")
        vs = map.value_size
        if vs not in (1, 2, 4, 8) and (vs == 0 or vs % 8):
            raise EventConfigError(f"MapPoller: map {map.name!r} has {vs}-byte values; counters "
                                   "must be 1, 2, 4 or 8 bytes, or a multiple of 8 (u64 fields)")
        try:
            interval = float(interval)
        except (TypeError, ValueError):
            raise EventConfigError(f"MapPoller: interval must be a number, got {interval!r}") from None
        if not interval > 0:
            raise EventConfigError(f"MapPoller: interval must be > 0 seconds, got {interval!r}")
        map.fd  # MapClosedError now rather than at the first tick
        self.map = map
        self.interval = interval
        self._interval_ns = int(interval * 1e9)
        self._setup(map, bool(sum_cpus))
        self._take()
        self._deadline = self.timestamp_ns + self._interval_ns

    def _snap(self, taken) -> Snapshot:
        gen, keys, vals, deltas, rates = taken
        return Snapshot(self, (keys, vals, deltas, rates), gen, self.count,
                        self.timestamp_ns, self.elapsed_ns / 1e9, self.new_keys,
                        self.removed_keys, self.key_size, self.fields)

    def snapshot(self) -> Snapshot:
        """Read the map now (no waiting); deltas and rates are against the previous snapshot.

        Does not move the tick schedule.  Raises :class:`ReaderClosedError`
        after :meth:`close`, :class:`bpfload.MapClosedError` when the map was
        closed, :class:`bpfload.MapError` when the lookup fails.
        """
        if self.closed:
            raise ReaderClosedError("map poller is closed")
        return self._snap(self._take())

    def poll(self) -> Snapshot:
        """Wait for the next tick, then take and return a snapshot (see :meth:`snapshot`).

        The wait is ``time.sleep`` (the GIL is released; signals interrupt
        it).  Raises as :meth:`snapshot`.
        """
        if self.closed:
            raise ReaderClosedError("map poller is closed")
        now = monotonic_ns()
        if now < self._deadline:
            time.sleep((self._deadline - now) / 1e9)
            self._deadline += self._interval_ns
        elif now - self._deadline > self._interval_ns:
            self._deadline = now + self._interval_ns     # missed a whole tick: realign
        else:
            self._deadline += self._interval_ns
        return self.snapshot()

    def __iter__(self) -> Iterator[Snapshot]:
        """Yield :meth:`poll` forever (until :meth:`close`)."""
        while not self.closed:
            yield self.poll()

    def close(self) -> None:
        """Release the buffers (idempotent; the map stays open: the caller owns it)."""
        self._close()
        self.map = None

    def __enter__(self) -> "MapPoller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.count} keys, generation {self.generation}"
        return f"<MapPoller every {self.interval}s, {state}>"
