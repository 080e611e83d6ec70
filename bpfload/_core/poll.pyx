# cython: language_level=3
"""Map polling core: whole-map snapshots, per-CPU sums, per-key deltas and rates.

:class:`PollerCore` keeps every buffer it needs, allocated once: two
key/value snapshot buffers (current and previous, swapped each poll), the
raw lookup scratch, deltas and rates.  A snapshot is one batch lookup of the
whole map (through :meth:`bpfload._core.syscall.MapCore.lookup_batch`, which
falls back to get_next_key + lookup where the kernel has no batch command)
followed by C loops with the GIL released: widen or sum every value into
u64 counters, match each key to the previous snapshot (same position
first, a hash index of the previous keys only when the order changed),
subtract, and divide by the elapsed time.  No Python object per key is
created unless :func:`to_dict` is asked for.

Counters: a value of 1, 2, 4 or 8 bytes is one unsigned counter; a value
made of u64 fields is ``value_size // 8`` counters.  Per-CPU maps either sum
each counter over the possible CPUs (``sum_cpus``) or keep one per CPU
(CPU-major).  Deltas are signed (a counter that went down gives a negative
delta); a key that was not in the previous snapshot counts from zero.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

from bpfload._core.common cimport load_uint, now_ns

import sys as _sys

cdef enum:
    EMPTY32 = 0xFFFFFFFF

# Map types by number (mirrors bpfload.constants; _core imports nothing else).
cdef enum:
    T_PERCPU_HASH = 5
    T_PERCPU_ARRAY = 6
    T_LRU_PERCPU_HASH = 10

_BYTEORDER = _sys.byteorder


def monotonic_ns():
    """CLOCK_MONOTONIC in ns (the clock snapshots are stamped with)."""
    return now_ns()





cdef inline uint64_t hash_key(const char *k, Py_ssize_t n) noexcept nogil:
    """A 64-bit hash of n key bytes (word-at-a-time multiply-xorshift)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n, w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, k + i, 8)
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
        i += 8
    if i < n:
        w = 0
        memcpy(&w, k + i, n - i)
        h = (h ^ w) * 0x94D049BB133111EBULL
        h ^= h >> 29
    h *= 0xD6E8FEB86659FD93ULL
    return h ^ (h >> 32)


cdef class PollerCore:
    """Snapshots of one map into preallocated buffers (base of :class:`bpfload.MapPoller`)."""
    cdef object _map
    cdef readonly Py_ssize_t key_size
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t fields        # counters per entry in the output buffers
    cdef readonly bint sum_cpus
    cdef readonly bint percpu
    cdef readonly Py_ssize_t ncpus
    cdef Py_ssize_t _vsize                 # raw bytes per entry from the kernel
    cdef Py_ssize_t _stride                # per-CPU slot size
    cdef Py_ssize_t _value_size
    cdef Py_ssize_t _nf                    # counters per CPU slot
    cdef Py_ssize_t _fsize                 # bytes per counter (1/2/4/8)
    cdef list _keys                        # [bytearray, bytearray]
    cdef list _vals                        # [bytearray, bytearray] of u64
    cdef bytearray _scratch
    cdef readonly bytearray deltas_buf     # int64
    cdef readonly bytearray rates_buf      # double
    cdef int _cur                          # index of the newest snapshot; -1 before the first
    cdef Py_ssize_t _count[2]
    cdef int64_t _ts[2]
    cdef uint32_t *_index                  # hash index of the previous snapshot's keys
    cdef Py_ssize_t _index_cap
    cdef readonly unsigned long generation
    cdef readonly Py_ssize_t new_keys      # of the newest snapshot
    cdef readonly Py_ssize_t removed_keys
    cdef readonly Py_ssize_t reordered     # keys matched through the hash index
    cdef bint _closed
    cdef bint _busy                        # a snapshot is running (its buffers are in use)
    cdef bint _free_pending                # close() came during it: the snapshot frees them

    def __cinit__(self, *args, **kwargs):
        self._cur = -1
        self._index = NULL

    def _setup(self, map, bint sum_cpus):
        """Size the buffers for *map* (a MapCore; its type and value size validated by the caller)."""
        cdef Py_ssize_t cap = map.max_entries
        self._map = map
        self.key_size = map.key_size
        self.capacity = cap
        self._value_size = map.value_size
        self._vsize = map.value_stride
        self.percpu = map.type in (T_PERCPU_HASH, T_PERCPU_ARRAY, T_LRU_PERCPU_HASH)
        self.ncpus = map.ncpus if self.percpu else 1
        self._stride = self._vsize // self.ncpus
        self.sum_cpus = sum_cpus or not self.percpu
        if self._value_size in (1, 2, 4, 8):
            self._nf = 1
            self._fsize = self._value_size
        else:
            self._nf = self._value_size // 8
            self._fsize = 8
        self.fields = self._nf if self.sum_cpus else self._nf * self.ncpus
        self._keys = [bytearray(cap * self.key_size), bytearray(cap * self.key_size)]
        self._vals = [bytearray(cap * self.fields * 8), bytearray(cap * self.fields * 8)]
        self._scratch = bytearray(cap * self._vsize)
        self.deltas_buf = bytearray(cap * self.fields * 8)
        self.rates_buf = bytearray(cap * self.fields * 8)

    def _buffers(self):
        """(keys, values) bytearrays of the newest snapshot."""
        if self._closed:
            from bpfload._core.events import ReaderClosedError
            raise ReaderClosedError("map poller is closed")
        return self._keys[self._cur], self._vals[self._cur]

    @property
    def count(self):
        """Entries in the newest snapshot (0 before the first)."""
        return self._count[self._cur] if self._cur >= 0 else 0

    @property
    def timestamp_ns(self):
        """CLOCK_MONOTONIC time of the newest snapshot, in ns."""
        return self._ts[self._cur] if self._cur >= 0 else 0

    @property
    def elapsed_ns(self):
        """Time between the two newest snapshots, in ns (0 before the second)."""
        if self._cur < 0 or self.generation < 2:
            return 0
        return self._ts[self._cur] - self._ts[1 - self._cur]

    # -- one snapshot ---------------------------------------------------------
    def _take(self):
        """Read the whole map now and compute counters, deltas and rates.

        Returns ``(generation, keys, values, deltas, rates)``: the number of the
        new snapshot and its buffers, read together.  Raises
        ``ReaderClosedError`` when closed, also when :meth:`_close` ran in
        another thread while this snapshot was being taken (the buffers are
        then freed here, once nothing uses them); ``ReaderBusyError`` when
        another thread is taking a snapshot of this poller.
        """
        from bpfload._core.events import ReaderBusyError, ReaderClosedError
        cdef tuple out
        if self._closed:
            raise ReaderClosedError("map poller is closed")
        if self._busy:
            raise ReaderBusyError("map poller: another thread is taking a snapshot")
        self._busy = True
        try:
            gen = self._take_locked()
            out = (gen, self._keys[self._cur], self._vals[self._cur], self.deltas_buf,
                   self.rates_buf)
        finally:
            self._busy = False
            if self._free_pending:
                self._free()
        if self._closed:
            raise ReaderClosedError("map poller was closed during the snapshot")
        return out

    cdef object _take_locked(self):
        cdef int nxt = 0 if self._cur < 0 else 1 - self._cur
        cdef int prv = self._cur
        cdef bytearray kb = self._keys[nxt]
        cdef bytearray vb = self._vals[nxt]
        cdef int64_t t0
        cdef Py_ssize_t n
        t0 = now_ns()
        _, _, n = self._map.lookup_batch(kb, self._scratch)
        self._convert(n, <uint64_t *>PyByteArray_AS_STRING(vb))
        self._count[nxt] = n
        self._ts[nxt] = t0
        if prv >= 0:
            self._diff(nxt, prv)
        else:
            memset(PyByteArray_AS_STRING(self.deltas_buf), 0, len(self.deltas_buf))
            memset(PyByteArray_AS_STRING(self.rates_buf), 0, len(self.rates_buf))
            self.new_keys = n
            self.removed_keys = 0
            self.reordered = 0
        self._cur = nxt
        self.generation += 1
        return self.generation

    cdef void _convert(self, Py_ssize_t n, uint64_t *out) noexcept:
        """Raw lookup values (scratch) -> u64 counters, summed over CPUs when asked."""
        cdef const char *raw = PyByteArray_AS_STRING(self._scratch)
        cdef Py_ssize_t i, c, f, vsize = self._vsize, stride = self._stride
        cdef Py_ssize_t nf = self._nf, fsize = self._fsize, ncpu = self.ncpus
        cdef Py_ssize_t F = self.fields
        cdef const char *e
        cdef uint64_t acc
        with nogil:
            if ncpu == 1:
                if nf == 1 and fsize != 8:
                    for i in range(n):
                        out[i] = load_uint(raw + i * vsize, fsize)
                else:               # u64 counters, laid out as the kernel gave them
                    memcpy(out, raw, n * nf * 8)
            elif self.sum_cpus:
                if nf == 1:
                    for i in range(n):
                        e = raw + i * vsize
                        acc = 0
                        for c in range(ncpu):
                            acc += load_uint(e + c * stride, fsize)
                        out[i] = acc
                else:
                    for i in range(n):
                        e = raw + i * vsize
                        for f in range(nf):
                            acc = 0
                            for c in range(ncpu):
                                acc += (<const uint64_t *>(e + c * stride))[f]
                            out[i * nf + f] = acc
            else:
                for i in range(n):
                    e = raw + i * vsize
                    for c in range(ncpu):
                        for f in range(nf):
                            out[i * F + c * nf + f] = load_uint(e + c * stride + f * fsize, fsize)

    cdef int _build_index(self, const char *keys, Py_ssize_t n) except -1:
        """Hash index (open addressing, linear probing) of n keys -> their positions."""
        cdef Py_ssize_t cap = 16, i, ks = self.key_size
        cdef uint64_t slot, mask
        while cap < 2 * n:
            cap <<= 1
        if cap > self._index_cap:
            free(self._index)
            self._index = <uint32_t *>malloc(cap * sizeof(uint32_t))
            if self._index == NULL:
                self._index_cap = 0
                raise MemoryError()
            self._index_cap = cap
        mask = cap - 1
        with nogil:
            memset(self._index, 0xFF, cap * sizeof(uint32_t))
            for i in range(n):
                slot = hash_key(keys + i * ks, ks) & mask
                while self._index[slot] != EMPTY32:
                    slot = (slot + 1) & mask
                self._index[slot] = <uint32_t>i
        return cap

    cdef int _diff(self, int cur, int prv) except -1:
        cdef Py_ssize_t n = self._count[cur], pn = self._count[prv]
        cdef const char *ck = PyByteArray_AS_STRING(self._keys[cur])
        cdef const char *pk = PyByteArray_AS_STRING(self._keys[prv])
        cdef const uint64_t *cv = <const uint64_t *>PyByteArray_AS_STRING(self._vals[cur])
        cdef const uint64_t *pv = <const uint64_t *>PyByteArray_AS_STRING(self._vals[prv])
        cdef int64_t *dp = <int64_t *>PyByteArray_AS_STRING(self.deltas_buf)
        cdef double *rp = <double *>PyByteArray_AS_STRING(self.rates_buf)
        cdef Py_ssize_t ks = self.key_size, F = self.fields, i, f, j
        cdef Py_ssize_t matched = 0, fresh = 0, moved = 0
        cdef int64_t dt = self._ts[cur] - self._ts[prv]
        cdef double per_s = 1e9 / <double>(dt if dt > 0 else 1)
        cdef Py_ssize_t icap = 0
        cdef uint64_t slot, mask = 0
        cdef uint32_t hit
        i = 0
        while i < n:
            # positional run: same key at the same place (arrays, unchanged hashes)
            with nogil:
                while i < n:
                    if i < pn and memcmp(ck + i * ks, pk + i * ks, ks) == 0:
                        j = i
                    else:
                        break
                    for f in range(F):
                        dp[i * F + f] = <int64_t>(cv[i * F + f] - pv[j * F + f])
                        rp[i * F + f] = <double>dp[i * F + f] * per_s
                    matched += 1
                    i += 1
            if i >= n:
                break
            if icap == 0:
                icap = self._build_index(pk, pn)
                mask = icap - 1
            with nogil:
                slot = hash_key(ck + i * ks, ks) & mask
                j = -1
                while True:
                    hit = self._index[slot]
                    if hit == EMPTY32:
                        break
                    if memcmp(ck + i * ks, pk + <Py_ssize_t>hit * ks, ks) == 0:
                        j = hit
                        break
                    slot = (slot + 1) & mask
                if j >= 0:
                    for f in range(F):
                        dp[i * F + f] = <int64_t>(cv[i * F + f] - pv[j * F + f])
                        rp[i * F + f] = <double>dp[i * F + f] * per_s
                    matched += 1
                    moved += 1
                else:
                    for f in range(F):
                        dp[i * F + f] = <int64_t>cv[i * F + f]
                        rp[i * F + f] = <double>dp[i * F + f] * per_s
                    fresh += 1
                i += 1
        self.new_keys = fresh
        self.removed_keys = pn - matched
        self.reordered = moved
        return 0

    def _close(self):
        """Drop the buffers (idempotent).

        While a snapshot runs in another thread (the GIL released in its
        lookup), the buffers are kept until it ends: it then frees them and
        raises ``ReaderClosedError``.
        """
        self._closed = True
        if self._busy:
            self._free_pending = True
            return
        self._free()

    cdef void _free(self) noexcept:
        self._free_pending = False
        self._map = None
        self._keys = self._vals = None
        self._scratch = self.deltas_buf = self.rates_buf = None
        free(self._index)
        self._index = NULL
        self._index_cap = 0

    @property
    def closed(self):
        return self._closed

    def __dealloc__(self):
        free(self._index)


def to_dict(const unsigned char[::1] keys, const unsigned char[::1] values,
            const unsigned char[::1] deltas, const unsigned char[::1] rates,
            Py_ssize_t count, Py_ssize_t key_size, Py_ssize_t fields, bint int_keys, factory):
    """``{key: factory(value, delta, rate)}`` for *count* entries of snapshot buffers.

    Keys are native unsigned ints when *int_keys* (key_size 1/2/4/8), else
    bytes; value/delta/rate are scalars when *fields* is 1, else tuples.
    """
    cdef dict out = {}
    cdef Py_ssize_t i, f
    cdef const char *kp = <const char *>&keys[0] if keys.shape[0] else NULL
    cdef const uint64_t *vp = <const uint64_t *>&values[0] if values.shape[0] else NULL
    cdef const int64_t *dp = <const int64_t *>&deltas[0] if deltas.shape[0] else NULL
    cdef const double *rp = <const double *>&rates[0] if rates.shape[0] else NULL
    if count * key_size > keys.shape[0] or count * fields * 8 > min(values.shape[0], deltas.shape[0], rates.shape[0]):
        raise ValueError("snapshot buffers are smaller than count says")
    for i in range(count):
        if int_keys:
            k = load_uint(kp + i * key_size, key_size)
        else:
            k = PyBytes_FromStringAndSize(kp + i * key_size, key_size)
        if fields == 1:
            out[k] = factory(vp[i], dp[i], rp[i])
        else:
            out[k] = factory(tuple([vp[i * fields + f] for f in range(fields)]),
                             tuple([dp[i * fields + f] for f in range(fields)]),
                             tuple([rp[i * fields + f] for f in range(fields)]))
    return out
