# cython: language_level=3
"""Small inline helpers shared by the Cython modules (cimported, no module of its own)."""
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    enum:
        CLOCK_MONOTONIC


cdef inline uint64_t load_uint(const char *p, Py_ssize_t size) noexcept nogil:
    """A native-endian unsigned integer of 1, 2, 4 or 8 bytes at *p*."""
    if size == 8:
        return (<const uint64_t *>p)[0]
    if size == 4:
        return (<const uint32_t *>p)[0]
    if size == 2:
        return (<const uint16_t *>p)[0]
    return (<const uint8_t *>p)[0]


cdef inline int64_t now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
