"""asyncio faces of the event readers: ``await rb.poll_async()``, ``async for rec in
rb.records_async()``, ``async for snap in poller``.

A reader's epoll fd (:meth:`RingBuffer.fileno`) is readable while one of its
rings holds data.  Each wait here registers that fd with the running loop
(``loop.add_reader``), suspends on a future the loop resolves when the fd is
readable, and unregisters the fd again before anything is read: no thread,
no timer, no busy loop (a reader that stayed registered while records are
being handled would make a level-triggered loop spin).  Records are taken
one at a time from the ring between waits, and the consumer position is
stored on the ring's consumer page after each one, so whatever stops an
``async for`` (``break``, an exception, task cancellation) leaves the
kernel's view exactly at "everything delivered so far": nothing is
delivered twice and nothing delivered is still held back from the producer.

The same code runs on the standard loop and on uvloop (any loop with
``add_reader``/``remove_reader``).  A reader is driven by one loop at a time,
and :meth:`close` must be called from that loop's thread (it unregisters the
fd before closing it).

:class:`AsyncReaderMixin` is a base of :class:`bpfload.RingBuffer` and
:class:`bpfload.PerfBuffer`, :class:`AsyncPollerMixin` of
:class:`bpfload.MapPoller`.  This module imports asyncio only when a
coroutine runs.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Optional

from .._core.events import ReaderBusyError, ReaderClosedError
from .._core.poll import monotonic_ns

__all__ = ["AsyncReaderMixin", "AsyncPollerMixin", "AsyncRecords"]


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    timeout = float(timeout)
    if timeout < 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    return timeout


class AsyncRecords:
    """The async iterator returned by ``records_async()`` (ends on timeout or close).

    Each ``__anext__`` returns a record that is already in the reader (no
    wait), or waits on the loop until the reader's epoll fd is readable.
    A wait longer than *timeout* seconds (None: no limit) or a
    :meth:`close` of the reader ends the iteration.
    """

    __slots__ = ("_reader", "_timeout")

    def __init__(self, reader, timeout: Optional[float]):
        self._reader = reader
        self._timeout = timeout

    def __aiter__(self) -> "AsyncRecords":
        return self

    async def __anext__(self):
        r = self._reader
        while True:
            if r.closed:
                raise StopAsyncIteration
            rec = r._aio_next()
            if rec is not None:
                return rec
            if not await r._aio_readable(self._timeout):
                raise StopAsyncIteration


class AsyncReaderMixin:
    """``poll_async()``, ``records_async()`` and ``wait_readable_async()`` for a reader
    with ``fileno()``, ``consume()``, ``closed`` and ``close()``.

    Subclasses provide ``_aio_next()``: the next record without waiting, or None.
    """

    _aio_wait = None        # (loop, fd, future) while a coroutine waits

    async def _aio_readable(self, timeout: Optional[float]) -> bool:
        """Wait until the epoll fd is readable: True; False on timeout or close."""
        import asyncio
        if self._aio_wait is not None:
            raise ReaderBusyError(f"{self!r}: another coroutine is already waiting on this reader")
        if timeout == 0:
            return False
        fd = self.fileno()                   # ReaderClosedError when closed
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def end(readable: bool) -> None:
            # Unregister at once: the fd stays readable until the records are
            # read, which happens only after the waiting task resumes.
            if self._aio_wait is wait:
                self._aio_wait = None
                loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(readable)

        wait = (loop, fd, fut)
        self._aio_wait = wait
        loop.add_reader(fd, end, True)
        timer = loop.call_later(timeout, end, False) if timeout is not None else None
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            if self._aio_wait is wait:       # cancelled: leave the loop as we found it
                self._aio_wait = None
                loop.remove_reader(fd)

    def _aio_cancel_wait(self) -> None:
        w, self._aio_wait = self._aio_wait, None
        if w is not None:
            loop, fd, fut = w
            try:
                loop.remove_reader(fd)
            except Exception:                # the loop is closed already
                pass
            if not fut.done():
                fut.set_result(False)

    async def wait_readable_async(self, timeout: Optional[float] = None) -> bool:
        """Wait on the running loop until some ring has data (True), or *timeout* seconds
        pass / the reader is closed (False).  Reads nothing.

        Raises :class:`ReaderClosedError` when called on a closed reader,
        :class:`ReaderBusyError` when another coroutine waits on this reader,
        RuntimeError outside a running loop.
        """
        return await self._aio_readable(_check_timeout(timeout))

    async def poll_async(self, timeout: Optional[float] = None) -> int:
        """Handle the records there are now; if none, wait on the loop (up to *timeout*
        seconds, None: no limit) and handle what arrived.

        The asyncio form of ``poll()``: callbacks run in the loop's thread.
        Returns the number of records handled (0 on timeout or close).
        Raises as ``consume()`` and :meth:`wait_readable_async`.
        """
        timeout = _check_timeout(timeout)
        if self.closed:
            raise ReaderClosedError(f"{self!r} is closed")
        n = self.consume()
        if n or timeout == 0:
            return n
        if not await self._aio_readable(timeout) or self.closed:
            return 0
        return self.consume()

    def records_async(self, timeout: Optional[float] = None) -> AsyncIterator[Any]:
        """``async for rec in reader.records_async()``: every record, waiting on the loop.

        The iteration ends when a wait lasts *timeout* seconds (None: never)
        or the reader is closed.  The consumer position is committed after
        every record, so stopping the iteration at any point (``break``,
        cancellation of the task) neither loses nor repeats a record: a new
        ``records_async()`` (or ``poll()``) starts at the next one.  Raises
        (from ``__anext__``) :class:`ReaderBusyError` when two coroutines
        iterate one reader at once, and what the reader's consume raises.
        """
        if self.closed:
            raise ReaderClosedError(f"{self!r} is closed")
        return AsyncRecords(self, _check_timeout(timeout))

    def close(self) -> None:
        """Release the reader; a coroutine waiting on it wakes up (its iteration ends,
        ``poll_async()`` returns 0).  Call it from the loop's thread.  Raises nothing."""
        self._aio_cancel_wait()
        super().close()


class AsyncPollerMixin:
    """``await poller.poll_async()`` and ``async for snap in poller`` for :class:`MapPoller`."""

    async def poll_async(self):
        """Sleep on the running loop until the next tick, then return a snapshot.

        Ticks are kept as in ``poll()`` (``interval`` apart from the
        baseline; a whole missed tick realigns).  A cancelled sleep leaves
        the schedule untouched, so the next ``poll_async()`` waits for the
        same tick.  Raises :class:`ReaderClosedError` when the poller is (or
        becomes, during the sleep) closed, and what ``snapshot()`` raises.
        """
        import asyncio
        if self.closed:
            raise ReaderClosedError("map poller is closed")
        step = self._interval_ns
        due = self._deadline
        now = monotonic_ns()
        if now < due:
            await asyncio.sleep((due - now) / 1e9)
            if self.closed:
                raise ReaderClosedError("map poller is closed")
            self._deadline = due + step
        elif now - due > step:
            self._deadline = now + step              # missed a whole tick: realign
        else:
            self._deadline = due + step
        return self.snapshot()

    async def __aiter__(self):
        """``async for snap in poller``: :meth:`poll_async` until :meth:`close`."""
        while not self.closed:
            try:
                snap = await self.poll_async()
            except ReaderClosedError:
                return
            yield snap
