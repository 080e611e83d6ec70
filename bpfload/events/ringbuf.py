"""Ring buffers: :class:`RingBuffer`, the consumer of BPF_MAP_TYPE_RINGBUF maps.

A BPF program writes records with ``bpf_ringbuf_output`` or
``bpf_ringbuf_reserve``/``bpf_ringbuf_submit``/``bpf_ringbuf_discard``; this
reader maps the ring (the consumer page read-write, the producer page and
the data pages read-only, data mapped twice so no record wraps), walks the
8-byte record headers (skipping discarded records, stopping at one still
being written), hands each record to a callback and gives the space back to
the kernel.  The loop is Cython (:mod:`bpfload._core.events`).

Example::

    with bpfload.load("prog.bpf.o") as obj, bpfload.RingBuffer() as rb:
        rb.add(obj.maps["events"], lambda data: print(bytes(data)))
        while True:
            rb.poll(100)

Needs Linux 5.8 (BPF_MAP_TYPE_RINGBUF) and the rights to mmap the map
(CAP_BPF or root, as for any map fd).
"""
from __future__ import annotations

import ctypes
from typing import Callable, Iterator, Optional

from .. import errors
from .._core.events import (
    CorruptRecordError, EventConfigError, MapTypeError, ReaderBusyError, ReaderClosedError,
    RingBufferCore,
)
from ..constants import MapType
from .aio import AsyncReaderMixin

__all__ = [
    "RingBuffer", "RingStats", "ReaderClosedError", "ReaderBusyError", "MapTypeError",
    "EventConfigError", "CorruptRecordError",
]


def _map_fields(m, want: MapType, reader: str):
    """(fd, type, max_entries, name) of a :class:`bpfload.Map` or a raw map fd.

    Raises :class:`MapTypeError` when it is not a map of type *want*,
    :class:`bpfload.MapClosedError` when the Map is closed.
    """
    if isinstance(m, int) or (hasattr(m, "fileno") and not hasattr(m, "max_entries")):
        from ..maps import MapInfo, _as_fd, _fdinfo_kind
        fd = _as_fd(m)
        if _fdinfo_kind(fd) != "map":
            raise MapTypeError(f"{reader}: fd {fd} is not a BPF map")
        try:
            info = MapInfo.from_fd(fd)
        except errors.SyscallError as e:
            raise MapTypeError(f"{reader}: fd {fd} is not a BPF map ({e})") from e
        mtype, max_entries, name = info.type, info.max_entries, info.name or f"fd {fd}"
    elif hasattr(m, "max_entries") and hasattr(m, "fd"):
        fd = m.fd                         # MapClosedError when closed
        mtype, max_entries, name = m.type, m.max_entries, m.name
    else:
        raise MapTypeError(f"{reader}: expected a bpfload.Map or a map fd, "
                           f"got {type(m).__name__}")
    if int(mtype) != int(want):
        try:
            tname = MapType(int(mtype)).name
        except ValueError:
            tname = str(int(mtype))
        raise MapTypeError(f"{reader}: map {name!r} is a {tname} map, not {want.name}")
    return fd, max_entries, name


class RingStats(tuple):
    """``(size, consumer_pos, producer_pos, pending)`` of one ring, in bytes."""

    __slots__ = ()

    def __new__(cls, size: int, consumer_pos: int, producer_pos: int):
        return super().__new__(cls, (size, consumer_pos, producer_pos, producer_pos - consumer_pos))

    size = property(lambda self: self[0], doc="Data area size (the map's max_entries).")
    consumer_pos = property(lambda self: self[1], doc="Where this reader is.")
    producer_pos = property(lambda self: self[2], doc="Where the kernel has reserved up to.")
    pending = property(lambda self: self[3], doc="Bytes not consumed yet (headers included).")
    free = property(lambda self: self[0] - self[3],
                    doc="Bytes not holding unread records (backpressure): a record of n bytes "
                        "takes n + 8 rounded up to 8, and the kernel refuses it (the program "
                        "sees -EAGAIN / NULL) unless that is less than ``free``.")

    def __repr__(self) -> str:
        return (f"RingStats(size={self[0]}, consumer_pos={self[1]}, producer_pos={self[2]}, "
                f"pending={self[3]}, free={self[0] - self[3]})")


_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class RingBuffer(AsyncReaderMixin, RingBufferCore):
    """A consumer of one or more BPF ring buffer maps, woken through one epoll set.

    ``RingBuffer()`` is empty; :meth:`add` a ring buffer map with a callback
    (``RingBuffer(map, callback)`` is a shorthand for one).  :meth:`poll`
    waits and handles records, :meth:`consume` handles what is there now;
    both return how many records were handled.  ``for data in rb`` (or
    :meth:`records`) yields copies of records instead of calling callbacks.
    In a coroutine, ``await rb.poll_async()`` and ``async for data in
    rb.records_async()`` wait on the running loop (docs/asyncio.md).
    Close with :meth:`close` or a ``with`` block; the reader owns a dup of
    each map fd, so closing the :class:`bpfload.Map` first is fine.

    **Callbacks** get one record as a read-only ``memoryview`` straight over
    the ring: no copy.  It is valid while the callback runs; afterwards the
    kernel may reuse that space, so keep ``bytes(data)`` if you need the
    record later (a view kept anyway never faults: it reads newer data, or
    zeros after :meth:`close`).  Returning a negative int stops the current
    ``poll()``/``consume()`` after this record; an exception propagates
    out of it (the record counts as consumed, later ones stay in the ring).

    Raises :class:`bpfload.SyscallError` when epoll or eventfd cannot be
    created.
    """

    def __init__(self, map=None, callback: Optional[Callable] = None):
        if map is not None:
            try:
                self.add(map, callback)
            except BaseException:
                self.close()      # the epoll set and eventfd now, not at collection
                raise
        elif callback is not None:
            raise TypeError("RingBuffer(callback=...) needs a map")

    def add(self, map, callback: Optional[Callable] = None, *, ctx: int = 0) -> int:
        """Consume ring buffer *map* (a :class:`bpfload.Map` or a map fd) with *callback*.

        *callback* is called as ``callback(data)`` per record.  It may also be
        a C function with libbpf's ``ring_buffer_sample_fn`` signature,
        ``int (*)(void *ctx, void *data, size_t size)``, as a ctypes function
        pointer (``ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)``)
        or a plain address (an int, e.g. a numba ``cfunc.address``): the loop
        then calls it directly, passing *ctx*, with no Python per record.
        *callback* None means the records of this map are only read by
        iterating (:meth:`records`); ``poll()``/``consume()`` skip them.

        Returns the ring's index (order of :meth:`add` calls).  Raises
        :class:`MapTypeError` when *map* is not a RINGBUF map,
        :class:`EventConfigError` for an impossible ring size,
        :class:`ReaderClosedError` after :meth:`close`,
        :class:`bpfload.MapClosedError` for a closed Map, and
        :class:`bpfload.SyscallError` when mmap/epoll fail.
        """
        fd, max_entries, name = _map_fields(map, MapType.RINGBUF, "RingBuffer.add")
        cfn, keep = 0, None
        if isinstance(callback, ctypes._CFuncPtr):
            cfn = ctypes.cast(callback, ctypes.c_void_p).value or 0
            keep = callback
            if not cfn:
                raise TypeError("RingBuffer.add: NULL C callback")
        elif isinstance(callback, int) and not isinstance(callback, bool):
            if callback == 0:
                raise TypeError("RingBuffer.add: NULL C callback address")
            cfn = callback
        elif callback is None:
            pass
        elif not callable(callback):
            raise TypeError(f"RingBuffer.add: callback must be callable, "
                            f"not {type(callback).__name__}")
        return self._add_ring(fd, max_entries, callback, name, cfn, ctx, keep)

    def records(self, timeout_ms: int = -1) -> Iterator[bytes]:
        """Yield every record (as ``bytes``, a copy) from all rings, in ring order.

        Waits up to *timeout_ms* for more whenever the rings are empty
        (-1: forever) and ends when a wait times out or the reader is
        closed.  Callbacks are not called for iterated records.  The
        consumer position is committed in batches and whenever the reader
        waits.  Raises :class:`ReaderClosedError` when started on a closed
        reader, :class:`ReaderBusyError` while a ``poll()`` runs.
        """
        if self.closed:
            raise ReaderClosedError("ring buffer is closed")
        step = self._iter_next
        while True:
            rec = step(timeout_ms)
            if rec is None:
                return
            yield rec
            if self.closed:
                return

    def _aio_next(self) -> Optional[bytes]:
        # records_async(): one record, its space given back to the kernel at once
        rec = self._iter_next(0)
        if rec is not None:
            self._commit()
        return rec

    def __iter__(self) -> Iterator[bytes]:
        """``for data in rb``: :meth:`records` with no timeout (ends on :meth:`close`)."""
        return self.records(-1)

    def stats(self, index: int = 0) -> RingStats:
        """Positions of ring *index* (:class:`RingStats`); ``pending`` is bytes left to read.

        Raises :class:`ReaderClosedError` after close, IndexError for a bad index.
        """
        return RingStats(*self._ring_stats(index))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} ring(s)"
        return f"<RingBuffer {state}>"


SampleFunction = _SAMPLE_FN
"""``ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)``: a C callback type for :meth:`RingBuffer.add`."""
