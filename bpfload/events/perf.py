"""Perf buffers: :class:`PerfBuffer`, the reader of a BPF_MAP_TYPE_PERF_EVENT_ARRAY.

For each CPU, a ``PERF_COUNT_SW_BPF_OUTPUT`` perf event is opened
(perf_event_open(2)), its ring mapped (``page_count`` data pages plus the
control page), and its fd stored in the map at that CPU's index, where
``bpf_perf_event_output(ctx, &map, BPF_F_CURRENT_CPU, ...)`` finds it.  One
epoll set covers every CPU's ring.  Samples reach a callback as
``(cpu, data)``; when a ring was full, the kernel later writes a lost record
and the count goes to a second callback.  The consume loop is Cython
(:mod:`bpfload._core.events`); records that wrap the ring's end are
reassembled.

Example::

    def on_sample(cpu, data):
        print(cpu, bytes(data))

    with bpfload.load("prog.bpf.o") as obj, \\
            bpfload.PerfBuffer(obj.maps["events"], on_sample) as pb:
        while True:
            pb.poll(100)

Needs perf_event_open(2) rights (CAP_PERFMON, CAP_SYS_ADMIN or root, or a
permissive ``kernel.perf_event_paranoid``) and Linux 4.4 (BPF output events).
"""
from __future__ import annotations

import collections
import warnings
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from .. import errors
from .._core.events import (
    CorruptRecordError, EventConfigError, MapTypeError, PerfBufferCore, ReaderBusyError,
    ReaderClosedError,
)
from .._core.syscall import parse_cpu_list
from ..constants import MapType
from .aio import AsyncReaderMixin
from .ringbuf import _map_fields

__all__ = [
    "PerfBuffer", "online_cpus", "ReaderClosedError", "ReaderBusyError", "MapTypeError",
    "EventConfigError", "CorruptRecordError",
]


def online_cpus() -> List[int]:
    """Ids of the online CPUs (``/sys/devices/system/cpu/online``).

    Raises OSError when sysfs is not mounted.
    """
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


class PerfBuffer(AsyncReaderMixin, PerfBufferCore):
    """Reads the per-CPU perf rings behind one PERF_EVENT_ARRAY map.

    ``PerfBuffer(perf_map, callback, lost_callback=None, page_count=8)``
    opens one BPF output event per online CPU (or per CPU in *cpus*), maps
    ``page_count`` pages of ring for each (a power of two), stores the
    event fds in *perf_map* at the CPU's index, and enables them.
    :meth:`poll` waits and handles samples, :meth:`consume` handles what is
    there now; both return the number of samples handled.  :meth:`close` (or
    the end of a ``with`` block) clears the map slots it filled, then closes
    the events and unmaps the rings.  The reader keeps its own dup of the
    map fd, so closing the :class:`bpfload.Map` first is fine.

    *callback(cpu, data)*: *data* is a read-only ``memoryview`` over the
    ring (no copy), valid while the callback runs (keep ``bytes(data)`` to
    hold on to it); a sample that wraps the ring's end arrives as ``bytes``.
    The kernel pads raw samples to 8 bytes with the 4-byte size in front,
    so *data* may carry up to 7 bytes after what the program wrote (as in
    libbpf).  Returning a negative int stops the current poll/consume.
    *lost_callback(cpu, count)*: the kernel dropped *count* samples on *cpu*
    because its ring was full; :attr:`lost` keeps the running total.
    Exceptions from either callback propagate out of poll/consume.

    *callback* None: samples are read as ``(cpu, bytes)`` pairs with
    :meth:`records` or, in a coroutine, ``async for cpu, data in
    pb.records_async()`` (each consume then takes one sample and commits
    its space; see docs/asyncio.md).  ``await pb.poll_async()`` works with
    a callback too.

    *wakeup_events*: samples per wake-up (1 wakes on every sample, like
    libbpf's default; larger values trade latency for fewer wake-ups).

    Raises :class:`MapTypeError` (not a PERF_EVENT_ARRAY),
    :class:`EventConfigError` (``page_count`` not a power of two, a CPU
    beyond the map's ``max_entries``, no CPU), TypeError (callbacks not
    callable), :class:`bpfload.PermissionDeniedError` (perf_event_open
    refused) and :class:`bpfload.SyscallError` (mmap, epoll, map update);
    on any failure everything opened so far is closed again.
    """

    def __init__(self, map, callback: Optional[Callable] = None, lost_callback: Optional[Callable] = None,
                 page_count: int = 8, *, cpus: Optional[Iterable[int]] = None,
                 wakeup_events: int = 1):
        self._map = None
        self._slots: List[int] = []
        fd, max_entries, name = _map_fields(map, MapType.PERF_EVENT_ARRAY, "PerfBuffer")
        self._pending = None
        if callback is None:
            # no callback: each consume takes one sample into _pending and stops
            # there, so records()/records_async() hand over exactly what was read
            pending = self._pending = collections.deque()

            def callback(cpu, data):
                pending.append((cpu, bytes(data)))
                return -1
        elif not callable(callback):
            raise TypeError(f"PerfBuffer: callback must be callable, not {type(callback).__name__}")
        if lost_callback is not None and not callable(lost_callback):
            raise TypeError("PerfBuffer: lost_callback must be callable or None, "
                            f"not {type(lost_callback).__name__}")
        if (not isinstance(page_count, int) or isinstance(page_count, bool) or page_count < 1
                or page_count & (page_count - 1) or page_count > 1 << 20):
            raise EventConfigError(f"PerfBuffer: page_count must be a power of two "
                                   f"(1 .. 2**20), got {page_count!r}")
        if not isinstance(wakeup_events, int) or not 1 <= wakeup_events < 1 << 32:
            raise EventConfigError(f"PerfBuffer: wakeup_events must be >= 1, got {wakeup_events!r}")
        cpu_list = online_cpus() if cpus is None else sorted(set(int(c) for c in cpus))
        if not cpu_list:
            raise EventConfigError("PerfBuffer: no CPU to read from")
        bad = [c for c in cpu_list if c < 0 or c >= max_entries]
        if bad:
            raise EventConfigError(
                f"PerfBuffer: map {name!r} has max_entries {max_entries}, so it has no slot for "
                f"cpu {bad[0]}: size the map to at least the number of possible CPUs, or pass cpus=")
        self.name = name
        from ..maps import Map
        self._map = Map.from_fd(fd, name=name)
        try:
            self._setup(callback, lost_callback, page_count, wakeup_events)
            for cpu in cpu_list:
                efd = self._open_cpu(cpu, name)
                self._map.update(cpu, efd)
                self._slots.append(cpu)
        except BaseException:
            self.close()
            raise

    def _aio_next(self) -> Optional[Tuple[int, bytes]]:
        q = self._pending
        if q is None:
            raise TypeError("PerfBuffer: records_async()/records() need a PerfBuffer made with "
                            "callback=None (with a callback, use poll_async())")
        if not q:
            self.consume()
        return q.popleft() if q else None

    def records(self, timeout_ms: int = -1) -> Iterator[Tuple[int, bytes]]:
        """Yield ``(cpu, data)`` for every sample (a copy), waiting up to *timeout_ms*
        (-1: forever) whenever the rings are empty; ends on a timed-out wait or close.

        Only for a PerfBuffer made with ``callback=None``: raises TypeError
        otherwise, :class:`ReaderClosedError` when started on a closed
        reader.  Lost samples are counted in :attr:`lost`.
        """
        if self.closed:
            raise ReaderClosedError("perf buffer is closed")
        while not self.closed:
            rec = self._aio_next()
            if rec is None:
                if self.poll(timeout_ms) == 0:
                    return
                rec = self._pending.popleft() if self._pending else None
                if rec is None:
                    continue
            yield rec

    def stats(self) -> List[Tuple[int, int]]:
        """``[(cpu, pending_bytes), ...]``: bytes not read yet in each CPU's ring (of
        ``page_count`` pages); with :attr:`lost`, what a slow consumer looks at.

        Raises :class:`ReaderClosedError` after close.
        """
        out = []
        for i, cpu in enumerate(self.cpus):
            size, tail, head = self._ring_stats(i)
            out.append((cpu, head - tail))
        return out

    def close(self) -> None:
        """Empty the map slots this reader filled, close its events and unmap the rings.

        Idempotent.  From a callback (or another thread during :meth:`poll`)
        the rings are released when that poll returns.  Raises nothing: a
        slot that cannot be cleared (the map is gone) is skipped.
        """
        m, self._map = getattr(self, "_map", None), None
        if m is not None:
            for cpu in getattr(self, "_slots", None) or ():
                try:
                    m.delete(cpu)
                except errors.BpfError:   # slot gone, map closed (at collection), ...
                    pass
            self._slots = []
            m.close()
        super().close()

    def __del__(self):
        # Also runs on a reader whose __init__ failed part-way, and at garbage
        # collection of a cycle, where the map may be closed already: warn
        # and release what is left, never raise.
        try:
            unclosed = not self.closed and getattr(self, "_map", None) is not None
        except Exception:
            return
        if unclosed:
            try:
                warnings.warn(f"unclosed {self!r}", ResourceWarning)
            except Exception:
                pass
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} cpu ring(s) x {self.page_count} pages"
        return f"<PerfBuffer {getattr(self, 'name', None)!r} {state}, lost={self.lost}>"
