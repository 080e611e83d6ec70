# cython: language_level=3
"""Event readers: the BPF ring buffer consumer and the perf buffer reader.

Neither calls bpf(2): a ring buffer is read through mmap(2) of the map fd
and woken through epoll(7); a perf buffer through perf_event_open(2), mmap
and epoll (putting the event fds into the PERF_EVENT_ARRAY is a map update,
done by :mod:`bpfload.events.perf` through :class:`bpfload.Map`).  The C helpers
(atomics, perf_event_open, mmap) are in ``csrc/events.h``.

The consume loops run here, in Cython, with the GIL held (they call Python
callbacks).  A record reaches a Python callback as a read-only
``memoryview`` straight over the mapped ring (no copy); the memoryview object
itself is reused from one record to the next when the callback did not keep
it, so a record costs no allocation.  A view the callback keeps stays safe:
views pin the mapping, and :meth:`close` swaps a still-viewed range for
private zero pages instead of unmapping it under them.  Positions are
committed back to the kernel in batches (every quarter ring and at the end
of each pass), not once per record.

Python-level classes (:class:`bpfload.RingBuffer`, :class:`bpfload.PerfBuffer`)
subclass the cores here, so ``poll()``/``consume()`` are direct Cython calls.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.exc cimport PyErr_CheckSignals
from cpython.long cimport PyLong_FromLong
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from bpfload._core.common cimport now_ns

import warnings as _warnings

from bpfload import errors as _errors

cdef extern from "Python.h":
    ctypedef struct PyMemoryViewObject:
        Py_hash_t hash
        int flags
        Py_ssize_t exports
    Py_buffer *PyMemoryView_GET_BUFFER(PyObject *mview)
    Py_ssize_t _refcnt "Py_REFCNT"(PyObject *o)
    object PyMemoryView_FromObject(object obj)
    PyObject *PyObject_CallOneArg(PyObject *callable, PyObject *arg)
    PyObject *PyObject_Vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
    void Py_DECREF(PyObject *o)
    bint PyLong_Check(PyObject *o)
    long PyLong_AsLongAndOverflow(PyObject *o, int *overflow)
    PyObject *Py_None
    enum:
        _Py_MEMORYVIEW_RELEASED

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    long sysconf(int name)
    ssize_t write(int fd, const void *buf, size_t n)
    enum:
        _SC_PAGESIZE

cdef extern from "<sys/mman.h>" nogil:
    enum:
        PROT_READ
        PROT_WRITE

cdef extern from "<linux/bpf.h>":
    enum:
        BPF_RINGBUF_BUSY_BIT
        BPF_RINGBUF_DISCARD_BIT
        BPF_RINGBUF_HDR_SZ

cdef extern from "<linux/perf_event.h>":
    struct perf_event_mmap_page:
        uint64_t data_head
        uint64_t data_tail
        uint64_t data_offset
        uint64_t data_size
    struct perf_event_header:
        uint32_t type
        uint16_t misc
        uint16_t size
    enum:
        PERF_RECORD_SAMPLE
        PERF_RECORD_LOST

cdef extern from "events.h" nogil:
    struct epoll_event:
        pass
    unsigned long ev_load_acquire_ul(const unsigned long *p)
    void ev_store_release_ul(unsigned long *p, unsigned long v)
    uint32_t ev_load_acquire_u32(const uint32_t *p)
    uint64_t ev_load_acquire_u64(const uint64_t *p)
    void ev_store_release_u64(uint64_t *p, uint64_t v)
    void ev_full_fence()
    int bl_fd_above_stdio(int fd)
    int ev_dup(int fd)
    int ev_epoll_create()
    int ev_eventfd()
    int ev_epoll_add(int epfd, int fd, uint32_t index)
    int ev_epoll_wait(int epfd, epoll_event *evs, int max, int timeout_ms)
    void *ev_mmap(size_t len, int prot, int fd, long offset, int *err)
    int ev_mmap_detach(void *addr, size_t length)
    int ev_munmap(void *addr, size_t length)
    int ev_perf_event_open_bpf_output(int cpu, uint32_t wakeup_events)
    int ev_perf_event_enable(int fd)
    int ev_perf_event_disable(int fd)

cdef extern from "bl_fault.h" nogil:
    void bl_fault_attach(void *state)

cdef extern from *:
    """
    #ifndef BPFLOAD_DEBUG
    #define BPFLOAD_DEBUG 0
    #endif
    typedef int (*bl_sample_fn)(void *ctx, void *data, size_t size);
    static inline int bl_call_sample_fn(void *fn, void *ctx, void *data, size_t size)
    {
        return ((bl_sample_fn)fn)(ctx, data, size);
    }
    """
    int BPFLOAD_DEBUG
    int bl_call_sample_fn(void *fn, void *ctx, void *data, size_t size)

cdef enum:
    EINTR_ = 4
    WAKE_INDEX = 0xFFFFFFFF
    MAX_EVENTS = 64
    CB_PYTHON = 0
    CB_C = 1
    CB_NONE = 2

# --------------------------------------------------------------------------
# one fault door with bpf(2): count and fail this module's calls in the state
# bpfload._core.syscall owns (csrc/bl_fault.h)

from cpython.pycapsule cimport PyCapsule_GetPointer
from bpfload._core.syscall import _fault_state

bl_fault_attach(PyCapsule_GetPointer(_fault_state(), b"bpfload._core.bl_fault"))

# --------------------------------------------------------------------------
# errors raised by the readers (defined in bpfload.errors)

from bpfload.errors import (CorruptRecordError, EventConfigError, MapTypeError,
                            ReaderBusyError, ReaderClosedError)


cdef int _raise_errno(str command, int err, object target, object detail=None) except -1:
    """The one place an errno from mmap/epoll/perf_event_open becomes an exception."""
    raise _errors.from_errno(command, err, target, detail)


cdef long _page_size = 0

cdef long page_size():
    global _page_size
    if _page_size == 0:
        _page_size = sysconf(_SC_PAGESIZE)
    return _page_size


def system_page_size():
    """The page size the readers map rings with (``sysconf(_SC_PAGESIZE)``)."""
    return page_size()


# --------------------------------------------------------------------------
# one mapping, and the buffer callbacks see it through

cdef class _Region:
    """Owns one mmap(2) range; exports a read-only window of it as a buffer.

    Views handed to callbacks are memoryviews of this object, so they keep it
    alive.  :meth:`release` unmaps at once when no view is left; otherwise it
    replaces the range by private zero pages (releasing the kernel object) and
    the last view's release unmaps it.
    """
    cdef char *addr
    cdef size_t length
    cdef Py_ssize_t win_off, win_len
    cdef Py_ssize_t exports
    cdef bint detached

    cdef int map(self, size_t length, int prot, int fd, long offset, str what, object target) except -1:
        cdef int err = 0
        cdef void *p
        with nogil:
            p = ev_mmap(length, prot, fd, offset, &err)
        if p == NULL:
            _raise_errno("mmap", err, target, f"{what}: {length} bytes at offset {offset}")
        self.addr = <char *>p
        self.length = length
        return 0

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.addr == NULL:
            raise ReaderClosedError("the mapping is closed")
        PyBuffer_FillInfo(buffer, self, self.addr + self.win_off, self.win_len, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self.detached:
            self._unmap()

    cdef void _unmap(self) noexcept:
        if self.addr != NULL:
            ev_munmap(self.addr, self.length)
            self.addr = NULL
        self.detached = False

    cdef void release(self) noexcept:
        if self.addr == NULL or self.detached:
            return
        if self.exports == 0:
            self._unmap()
        elif ev_mmap_detach(self.addr, self.length) == 0:
            self.detached = True
        else:  # cannot swap the pages: keep the mapping until the last view goes
            self.detached = True

    def __dealloc__(self):
        if self.addr != NULL:
            ev_munmap(self.addr, self.length)
            self.addr = NULL


cdef inline bint _view_reusable(PyObject *v) noexcept:
    """True when nobody but the reader holds this memoryview and it is not released."""
    cdef PyMemoryViewObject *m = <PyMemoryViewObject *>v
    return _refcnt(v) == 1 and m.exports == 0 and not (m.flags & _Py_MEMORYVIEW_RELEASED)


cdef inline void _point_view(PyObject *v, const char *p, Py_ssize_t n) noexcept:
    """Re-aim a 1-D unsigned-byte memoryview at [p, p + n) inside its exporter's window."""
    cdef Py_buffer *b = PyMemoryView_GET_BUFFER(v)
    b.buf = <void *>p
    b.len = n
    b.shape[0] = n
    (<PyMemoryViewObject *>v).hash = -1


cdef inline bint _negative_int(PyObject *o) noexcept:
    """A callback's "stop" answer: an int below zero (never raises, even for huge ints)."""
    cdef int overflow = 0
    cdef long v
    if not PyLong_Check(o):
        return False
    v = PyLong_AsLongAndOverflow(o, &overflow)
    return overflow < 0 or (overflow == 0 and v < 0)





cdef class _Waiter:
    """The epoll set of a reader plus an eventfd that :meth:`wake` signals."""
    cdef int epfd
    cdef int wakefd
    cdef epoll_event *events

    def __cinit__(self):
        self.epfd = -1
        self.wakefd = -1
        self.events = <epoll_event *>malloc(sizeof(epoll_event) * MAX_EVENTS)
        if self.events == NULL:
            raise MemoryError()

    cdef int open(self, object target) except -1:
        cdef int fd, ret
        fd = ev_epoll_create()
        if fd < 0:
            _raise_errno("epoll_create1", -fd, target)
        self.epfd = fd
        fd = ev_eventfd()
        if fd < 0:
            _raise_errno("eventfd", -fd, target)
        self.wakefd = fd
        ret = ev_epoll_add(self.epfd, self.wakefd, WAKE_INDEX)
        if ret < 0:
            _raise_errno("epoll_ctl", -ret, target)
        return 0

    cdef int add(self, int fd, uint32_t index, object target) except -1:
        cdef int ret = ev_epoll_add(self.epfd, fd, index)
        if ret < 0:
            _raise_errno("epoll_ctl", -ret, target, f"fd {fd}")
        return 0

    cdef int wait(self, int timeout_ms) except -2:
        """Block up to timeout_ms (-1: forever) with the GIL released; EINTR
        runs signal handlers (which may raise) and retries with the time left.
        Returns the number of ready fds (0 on timeout)."""
        cdef int n, epfd = self.epfd
        cdef int64_t deadline = 0, left
        if timeout_ms > 0:
            deadline = now_ns() + <int64_t>timeout_ms * 1000000
        while True:
            with nogil:
                n = ev_epoll_wait(epfd, self.events, MAX_EVENTS, timeout_ms)
            if n != -EINTR_:
                break
            PyErr_CheckSignals()
            if timeout_ms > 0:
                left = deadline - now_ns()
                if left <= 0:
                    return 0
                timeout_ms = <int>((left + 999999) // 1000000)
        if n < 0:
            _raise_errno("epoll_wait", -n, None)
        return n

    cdef void wake(self) noexcept:
        cdef uint64_t one = 1
        if self.wakefd >= 0:
            write(self.wakefd, &one, 8)

    cdef void close(self) noexcept:
        if self.wakefd >= 0:
            close(self.wakefd)
            self.wakefd = -1
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    def __dealloc__(self):
        self.close()
        free(self.events)


# --------------------------------------------------------------------------
# shared reader state: busy / closing / closed

cdef class _RingBase:
    """One mapped ring of a reader; :meth:`release` commits and unmaps it (idempotent)."""

    cdef void release(self) noexcept:
        pass


cdef class _ReaderBase:
    cdef list _rings          # _RingBase subclasses, in add order
    cdef Py_ssize_t _nrings
    cdef _Waiter _waiter
    cdef bint _closed
    cdef bint _closing        # close() asked while a consume/poll was running
    cdef int _busy
    cdef public str _what

    def __cinit__(self, *args, **kwargs):
        self._rings = []
        self._waiter = _Waiter()
        self._what = "reader"

    def __len__(self):
        """Number of rings (maps added, or per-CPU rings)."""
        return self._nrings

    cdef void _release_rings(self) noexcept:
        """Release every ring and the epoll set; silent in any partial state.

        Runs from close() and from __dealloc__, where the garbage collector
        may already have cleared ``_rings`` and ``_waiter`` (tp_clear sets
        them to None when the reader was part of a reference cycle, e.g. a
        callback that refers back to it): what is gone was released by its
        own deallocation, what is left is released here.
        """
        cdef object rings = self._rings
        cdef object r
        self._nrings = 0
        if rings is not None:
            # empty first: a finalizer run by a release (a dropped callback)
            # that calls back into the reader finds no rings, not a half list
            self._rings = []
            try:
                for r in rings:
                    if isinstance(r, _RingBase):
                        (<_RingBase>r).release()
            except BaseException:   # the rings' own deallocation releases
                pass                # whatever is left
        if self._waiter is not None:
            self._waiter.close()

    def __dealloc__(self):
        if not self._closed:
            if self._nrings > 0:    # _rings may be cleared by the collector already
                self._warn_unclosed()
            self._release_rings()

    cdef int _enter(self) except -1:
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        if self._busy:
            raise ReaderBusyError(f"{self._what}: poll()/consume() is already running "
                                  "(called from a callback, or from two threads at once)")
        self._busy = 1
        return 0

    cdef int _leave(self) except -1:
        self._busy = 0
        if self._closing:
            self._closing = False
            self._do_close()
        return 0

    cdef void _do_close(self) noexcept:
        pass

    cdef Py_ssize_t _consume_all(self) except -1:
        raise NotImplementedError

    def consume(self):
        """Handle every record available now, without waiting.

        Returns how many records were handed to the (sample) callback:
        discarded ring buffer records and perf lost-sample records are not
        counted.  An exception from a callback propagates (that record counts
        as consumed; the rest wait for the next call).  Raises
        :class:`ReaderClosedError` after :meth:`close`,
        :class:`ReaderBusyError` when re-entered, :class:`CorruptRecordError`
        for an impossible record header.
        """
        cdef Py_ssize_t n
        self._enter()
        try:
            n = self._consume_all()
        finally:
            self._leave()
        return n

    def poll(self, int timeout_ms=-1):
        """Wait up to *timeout_ms* (-1: forever, 0: not at all) for records, then handle them.

        Returns how many records were handled (0 on timeout, or when woken by
        :meth:`close` from another thread).  The wait releases the GIL; a
        signal handler that raises (KeyboardInterrupt) ends it.  Raises as
        :meth:`consume`, plus :class:`bpfload.SyscallError` if epoll_wait fails.
        """
        cdef Py_ssize_t n
        self._enter()
        try:
            n = self._consume_all()
            if n == 0 and timeout_ms != 0 and not self._closing:
                if self._waiter.wait(timeout_ms) > 0 and not self._closing:
                    n = self._consume_all()
        finally:
            self._leave()
        return n

    @property
    def closed(self):
        """True once :meth:`close` ran (or was requested during a poll)."""
        return self._closed or self._closing

    def close(self):
        """Release every fd and mapping (idempotent).

        Called from a callback or from another thread while ``poll()`` runs,
        the release happens as soon as that ``poll()`` returns (a blocked
        ``poll()`` is woken).  Records already handed to callbacks stay
        readable (they read zeros once the ring is gone).  Raises nothing.
        """
        if self._closed:
            return
        if self._busy:
            self._closing = True
            self._waiter.wake()
            return
        self._do_close()

    def fileno(self):
        """The epoll fd: readable when some ring has data (for selectors/asyncio).

        Raises :class:`ReaderClosedError` once closed.
        """
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        return self._waiter.epfd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef void _warn_unclosed(self) noexcept:
        # No source=self: called from __dealloc__, where a reference kept by a
        # warnings filter/recorder would outlive the object.
        try:
            _warnings.warn(f"unclosed {self._what}", ResourceWarning)
        except Exception:
            pass


# --------------------------------------------------------------------------
# BPF ring buffer

cdef class _Ring(_RingBase):
    cdef unsigned long *cons_pos       # consumer page (ours, read-write)
    cdef const unsigned long *prod_pos # producer page (kernel's, read-only)
    cdef const char *data              # data pages, mapped twice back to back
    cdef unsigned long mask
    cdef unsigned long size
    cdef unsigned long cons            # our position (may run ahead of *cons_pos)
    cdef unsigned long committed       # what *cons_pos holds
    cdef unsigned long commit_bytes
    cdef int fd                        # our own dup of the map fd
    cdef int cb_kind
    cdef void *cfn
    cdef void *cctx
    cdef object callback
    cdef object view                   # reusable memoryview over prod_region
    cdef _Region cons_region, prod_region
    cdef object name
    cdef object cfn_keepalive

    def __cinit__(self):
        self.fd = -1

    cdef void release(self) noexcept:
        if self.cons_region is not None and self.cons_region.addr != NULL and self.cons != self.committed:
            ev_store_release_ul(self.cons_pos, self.cons)
            self.committed = self.cons
        self.view = None
        self.callback = None
        self.cfn_keepalive = None
        if self.cons_region is not None:
            self.cons_region.release()
        if self.prod_region is not None:
            self.prod_region.release()
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)


cdef inline void _ring_commit(_Ring r) noexcept:
    if r.cons != r.committed:
        ev_store_release_ul(r.cons_pos, r.cons)
        r.committed = r.cons


cdef inline void _ring_sync(_Ring r) noexcept:
    # Nothing pending locally: take the position from the page, where another
    # consumer of the same map (used before this one, not concurrently) may
    # have moved it.
    if r.cons == r.committed:
        r.cons = ev_load_acquire_ul(r.cons_pos)
        r.committed = r.cons


cdef class RingBufferCore(_ReaderBase):
    """Consumer of one or more BPF_MAP_TYPE_RINGBUF maps (see :class:`bpfload.RingBuffer`)."""

    def __cinit__(self, *args, **kwargs):
        self._what = "ring buffer"
        self._waiter.open(None)

    # -- setup ----------------------------------------------------------------
    def _add_ring(self, int map_fd, unsigned long max_entries, callback, name=None,
                  Py_ssize_t c_function=0, Py_ssize_t c_context=0, keepalive=None):
        """Map one ring (validated by the caller) and register it; returns its index."""
        cdef _Ring r = _Ring()
        cdef long page = page_size()
        cdef int fd
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        if self._busy:
            raise ReaderBusyError(f"{self._what}: cannot add a map during poll()")
        if max_entries == 0 or (max_entries & (max_entries - 1)) or max_entries % page:
            raise EventConfigError(f"ring buffer map {name!r}: max_entries {max_entries} is not a "
                                   f"power-of-two multiple of the page size {page}")
        if <uint64_t>page + 2 * <uint64_t>max_entries > <uint64_t>(<size_t>-1) // 2:
            raise EventConfigError(f"ring buffer map {name!r}: {max_entries} bytes cannot be mapped")
        fd = ev_dup(map_fd)
        if fd < 0:
            _raise_errno("fcntl(F_DUPFD_CLOEXEC)", -fd, name)
        r.fd = fd
        r.name = name
        try:
            r.cons_region = _Region()
            r.cons_region.map(page, PROT_READ | PROT_WRITE, fd, 0, "ring buffer consumer page", name)
            r.prod_region = _Region()
            r.prod_region.map(page + 2 * max_entries, PROT_READ, fd, page,
                              "ring buffer producer page and data", name)
            r.prod_region.win_off = page
            r.prod_region.win_len = 2 * max_entries
            r.cons_pos = <unsigned long *>r.cons_region.addr
            r.prod_pos = <const unsigned long *>r.prod_region.addr
            r.data = r.prod_region.addr + page
            r.size = max_entries
            r.mask = max_entries - 1
            r.commit_bytes = max_entries // 4
            r.cons = ev_load_acquire_ul(r.cons_pos)
            r.committed = r.cons
            if callback is None and not c_function:
                r.cb_kind = CB_NONE
            elif c_function:
                r.cb_kind = CB_C
                r.cfn = <void *>c_function
                r.cctx = <void *>c_context
                r.cfn_keepalive = keepalive
            else:
                r.cb_kind = CB_PYTHON
                r.callback = callback
            self._waiter.add(fd, <uint32_t>len(self._rings), name)
        except BaseException:
            r.release()
            raise
        self._rings.append(r)
        self._nrings = len(self._rings)
        return self._nrings - 1

    # -- the consume loop -----------------------------------------------------
    cdef Py_ssize_t _consume_ring(self, _Ring r, bint *stop) except -1:
        cdef unsigned long cons, prod
        cdef uint32_t hdr, length
        cdef const char *rec
        cdef Py_ssize_t n = 0
        cdef bint got
        cdef PyObject *res
        cdef PyObject *cb = <PyObject *>r.callback
        cdef int cret
        cdef unsigned long limit = r.size - BPF_RINGBUF_HDR_SZ
        _ring_sync(r)
        cons = r.cons
        while True:
            got = False
            prod = ev_load_acquire_ul(r.prod_pos)
            while cons < prod:
                rec = r.data + (cons & r.mask)
                hdr = ev_load_acquire_u32(<const uint32_t *>rec)
                if hdr & BPF_RINGBUF_BUSY_BIT:
                    break          # reserved, not yet committed: stop here for now
                length = hdr & ~(<uint32_t>(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT))
                if length > limit:
                    r.cons = cons
                    _ring_commit(r)
                    raise CorruptRecordError(f"ring buffer {r.name!r}: record of {length} bytes "
                                             f"at position {cons} in a {r.size}-byte ring")
                cons += (length + BPF_RINGBUF_HDR_SZ + 7) & ~(<unsigned long>7)
                got = True
                if not (hdr & BPF_RINGBUF_DISCARD_BIT):
                    n += 1
                    if r.cb_kind == CB_C:
                        cret = bl_call_sample_fn(r.cfn, r.cctx, <void *>(rec + BPF_RINGBUF_HDR_SZ), length)
                        if cret < 0:
                            stop[0] = True
                    else:
                        if r.view is None or not _view_reusable(<PyObject *>r.view):
                            r.view = PyMemoryView_FromObject(r.prod_region)
                        _point_view(<PyObject *>r.view, rec + BPF_RINGBUF_HDR_SZ, length)
                        res = PyObject_CallOneArg(cb, <PyObject *>r.view)
                        if res == NULL:
                            r.cons = cons   # the record that raised counts as consumed
                            _ring_commit(r)
                            return -1
                        if res != Py_None and _negative_int(res):
                            stop[0] = True
                        Py_DECREF(res)
                        if self._closing:
                            stop[0] = True
                    if stop[0]:
                        r.cons = cons
                        _ring_commit(r)
                        return n
                if cons - r.committed >= r.commit_bytes:
                    r.cons = cons
                    _ring_commit(r)
            r.cons = cons
            _ring_commit(r)
            if not got or cons < prod:   # nothing new, or stopped at a busy record
                return n
            ev_full_fence()

    cdef Py_ssize_t _consume_all(self) except -1:
        cdef Py_ssize_t total = 0, i
        cdef bint stop = False
        cdef _Ring r
        for i in range(self._nrings):
            r = <_Ring>self._rings[i]
            if r.cb_kind == CB_NONE:
                continue
            total += self._consume_ring(r, &stop)
            if stop:
                break
        return total

    # -- iteration ------------------------------------------------------------
    cdef object _next_record(self):
        """The next record as bytes (a copy), or None when every ring is empty."""
        cdef Py_ssize_t i
        cdef _Ring r
        cdef unsigned long cons, prod
        cdef uint32_t hdr, length
        cdef const char *rec
        for i in range(self._nrings):
            r = <_Ring>self._rings[i]
            _ring_sync(r)
            cons = r.cons
            prod = ev_load_acquire_ul(r.prod_pos)
            while cons < prod:
                rec = r.data + (cons & r.mask)
                hdr = ev_load_acquire_u32(<const uint32_t *>rec)
                if hdr & BPF_RINGBUF_BUSY_BIT:
                    break
                length = hdr & ~(<uint32_t>(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT))
                if length > r.size - BPF_RINGBUF_HDR_SZ:
                    r.cons = cons
                    _ring_commit(r)
                    raise CorruptRecordError(f"ring buffer {r.name!r}: record of {length} bytes "
                                             f"at position {cons} in a {r.size}-byte ring")
                cons += (length + BPF_RINGBUF_HDR_SZ + 7) & ~(<unsigned long>7)
                if hdr & BPF_RINGBUF_DISCARD_BIT:
                    continue
                out = PyBytes_FromStringAndSize(rec + BPF_RINGBUF_HDR_SZ, length)
                r.cons = cons
                if cons - r.committed >= r.commit_bytes:
                    _ring_commit(r)
                return out
            r.cons = cons
            _ring_commit(r)
        return None

    def _iter_next(self, int timeout_ms):
        """One step of iteration: a record (bytes), or None once a wait timed out."""
        cdef object rec
        self._enter()
        try:
            while True:
                rec = self._next_record()
                if rec is None:
                    ev_full_fence()      # our commit is visible before we look again and sleep
                    rec = self._next_record()
                if rec is not None:
                    return rec
                if timeout_ms == 0 or self._closing:
                    return None
                if self._waiter.wait(timeout_ms) == 0:
                    return self._next_record()   # timed out: one last look, None ends iteration
                if self._closing:
                    return None
        finally:
            self._leave()

    def _commit(self):
        """Store every ring's read position on its consumer page (what was read goes back
        to the kernel now, not at the next batch boundary).  No-op once closed."""
        cdef Py_ssize_t i
        if self._closed:
            return
        for i in range(self._nrings):
            _ring_commit(<_Ring>self._rings[i])

    # -- state ----------------------------------------------------------------
    def _ring_stats(self, Py_ssize_t index):
        """(size, consumer position, producer position) of ring *index*."""
        cdef _Ring r
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        r = <_Ring>self._rings[index]
        return r.size, r.cons, ev_load_acquire_ul(r.prod_pos)

    cdef void _do_close(self) noexcept:
        self._release_rings()
        self._closed = True


# --------------------------------------------------------------------------
# perf event array

cdef class _PerfRing(_RingBase):
    cdef perf_event_mmap_page *page
    cdef const char *data
    cdef uint64_t size
    cdef uint64_t mask
    cdef uint64_t tail
    cdef uint64_t committed
    cdef uint64_t commit_bytes
    cdef int fd
    cdef int cpu
    cdef object cpu_obj
    cdef object view
    cdef _Region region
    cdef char *scratch
    cdef size_t scratch_len

    def __cinit__(self):
        self.fd = -1

    cdef void release(self) noexcept:
        if self.region is not None and self.region.addr != NULL and self.tail != self.committed:
            ev_store_release_u64(&self.page.data_tail, self.tail)
            self.committed = self.tail
        self.view = None
        if self.fd >= 0:
            ev_perf_event_disable(self.fd)
        if self.region is not None:
            self.region.release()
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        free(self.scratch)
        self.scratch = NULL
        self.scratch_len = 0

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        free(self.scratch)


cdef inline void _perf_commit(_PerfRing r) noexcept:
    if r.tail != r.committed:
        ev_store_release_u64(&r.page.data_tail, r.tail)
        r.committed = r.tail


cdef inline void _perf_sync(_PerfRing r) noexcept:
    if r.tail == r.committed:
        r.tail = r.page.data_tail
        r.committed = r.tail


cdef class PerfBufferCore(_ReaderBase):
    """Reader of per-CPU perf rings fed by a PERF_EVENT_ARRAY (see :class:`bpfload.PerfBuffer`)."""
    cdef object _sample_cb
    cdef object _lost_cb
    cdef readonly uint64_t lost
    cdef readonly unsigned int page_count
    cdef unsigned int _wakeup_events

    def __cinit__(self, *args, **kwargs):
        self._what = "perf buffer"

    def _setup(self, sample_callback, lost_callback, unsigned int page_count,
               unsigned int wakeup_events):
        """Store the settings (validated by the caller) and create the epoll set."""
        self._sample_cb = sample_callback
        self._lost_cb = lost_callback
        self.page_count = page_count
        self._wakeup_events = wakeup_events
        self._waiter.open(None)

    def _open_cpu(self, int cpu, name=None):
        """perf_event_open a BPF output event on *cpu*, map and enable it; returns its fd.

        The fd stays owned by this reader (closed by :meth:`close`).
        """
        cdef _PerfRing r = _PerfRing()
        cdef long page = page_size()
        cdef int fd, ret
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        with nogil:
            fd = ev_perf_event_open_bpf_output(cpu, self._wakeup_events)
        if fd < 0:
            _raise_errno("perf_event_open", -fd, name,
                         f"PERF_COUNT_SW_BPF_OUTPUT on cpu {cpu}"
                         + ("; needs CAP_PERFMON (or root), or a lower "
                            "kernel.perf_event_paranoid" if -fd in (1, 13) else ""))
        r.fd = fd
        r.cpu = cpu
        r.cpu_obj = cpu
        try:
            r.region = _Region()
            r.region.map((self.page_count + 1) * page, PROT_READ | PROT_WRITE, fd, 0,
                         f"perf ring of cpu {cpu}", name)
            r.page = <perf_event_mmap_page *>r.region.addr
            r.size = <uint64_t>self.page_count * page
            if r.page.data_offset:
                r.region.win_off = <Py_ssize_t>r.page.data_offset
            else:
                r.region.win_off = page
            if r.page.data_size:
                r.size = r.page.data_size
            r.region.win_len = <Py_ssize_t>r.size
            r.data = r.region.addr + r.region.win_off
            r.mask = r.size - 1
            r.commit_bytes = r.size // 4
            r.tail = r.page.data_tail
            r.committed = r.tail
            ret = ev_perf_event_enable(fd)
            if ret < 0:
                _raise_errno("ioctl(PERF_EVENT_IOC_ENABLE)", -ret, name, f"cpu {cpu}")
            self._waiter.add(fd, <uint32_t>len(self._rings), name)
        except BaseException:
            r.release()
            raise
        self._rings.append(r)
        self._nrings = len(self._rings)
        return fd

    cdef const char *_unwrap(self, _PerfRing r, uint64_t off, size_t size) except NULL:
        """Copy a record that wraps the ring's end into the ring's scratch buffer."""
        cdef size_t first = <size_t>(r.size - off)
        cdef char *p
        if r.scratch_len < size:
            p = <char *>realloc(r.scratch, size)
            if p == NULL:
                raise MemoryError()
            r.scratch = p
            r.scratch_len = size
        memcpy(r.scratch, r.data + off, first)
        memcpy(r.scratch + first, r.data, size - first)
        return r.scratch

    cdef Py_ssize_t _consume_ring(self, _PerfRing r, bint *stop) except -1:
        cdef uint64_t head, tail, off
        cdef const perf_event_header *eh
        cdef const char *rec
        cdef uint32_t raw
        cdef uint64_t nlost
        cdef size_t size
        cdef Py_ssize_t n = 0
        cdef bint wrapped, got
        cdef PyObject *res
        cdef PyObject *args[2]
        cdef object data
        cdef PyObject *cb = <PyObject *>self._sample_cb
        args[0] = <PyObject *>r.cpu_obj
        _perf_sync(r)
        tail = r.tail
        while True:
            got = False
            head = ev_load_acquire_u64(&r.page.data_head)
            while tail < head:
                off = tail & r.mask
                eh = <const perf_event_header *>(r.data + off)
                size = eh.size
                if size < sizeof(perf_event_header) or size > r.size or (size & 7):
                    r.tail = tail
                    _perf_commit(r)
                    raise CorruptRecordError(f"perf ring of cpu {r.cpu}: record of {size} bytes "
                                             f"at position {tail} in a {r.size}-byte ring")
                wrapped = off + size > r.size
                rec = self._unwrap(r, off, size) if wrapped else <const char *>eh
                eh = <const perf_event_header *>rec
                tail += size
                got = True
                if eh.type == PERF_RECORD_SAMPLE:
                    raw = (<const uint32_t *>(rec + 8))[0]
                    if 12 + <size_t>raw > size:
                        r.tail = tail
                        _perf_commit(r)
                        raise CorruptRecordError(f"perf ring of cpu {r.cpu}: sample of {raw} bytes "
                                                 f"in a {size}-byte record")
                    n += 1
                    if wrapped:
                        data = PyBytes_FromStringAndSize(rec + 12, raw)
                        args[1] = <PyObject *>data
                    else:
                        if r.view is None or not _view_reusable(<PyObject *>r.view):
                            r.view = PyMemoryView_FromObject(r.region)
                        _point_view(<PyObject *>r.view, rec + 12, raw)
                        args[1] = <PyObject *>r.view
                    res = PyObject_Vectorcall(cb, args, 2, NULL)
                    if res == NULL:
                        r.tail = tail
                        _perf_commit(r)
                        return -1
                    if res != Py_None and _negative_int(res):
                        stop[0] = True
                    Py_DECREF(res)
                elif eh.type == PERF_RECORD_LOST:
                    nlost = (<const uint64_t *>(rec + 16))[0]
                    self.lost += nlost
                    if self._lost_cb is not None:
                        try:
                            self._lost_cb(r.cpu_obj, nlost)
                        except BaseException:
                            r.tail = tail
                            _perf_commit(r)
                            raise
                if stop[0] or self._closing:
                    stop[0] = True
                    r.tail = tail
                    _perf_commit(r)
                    return n
                if tail - r.committed >= r.commit_bytes:
                    r.tail = tail
                    _perf_commit(r)
            r.tail = tail
            _perf_commit(r)
            if not got:
                return n
            ev_full_fence()

    cdef Py_ssize_t _consume_all(self) except -1:
        cdef Py_ssize_t total = 0, i
        cdef bint stop = False
        for i in range(self._nrings):
            total += self._consume_ring(<_PerfRing>self._rings[i], &stop)
            if stop:
                break
        return total

    @property
    def cpus(self):
        """The CPUs with an open ring, in order."""
        return [(<_PerfRing>r).cpu for r in self._rings]

    def _ring_stats(self, Py_ssize_t index):
        """(size, tail, head) of ring *index*."""
        cdef _PerfRing r
        if self._closed or self._closing:
            raise ReaderClosedError(f"{self._what} is closed")
        r = <_PerfRing>self._rings[index]
        return r.size, r.tail, ev_load_acquire_u64(&r.page.data_head)

    cdef void _do_close(self) noexcept:
        self._release_rings()
        self._sample_cb = None
        self._lost_cb = None
        self._closed = True
