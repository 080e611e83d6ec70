# cython: language_level=3
"""Shared mappings of BPF maps: global data and arenas read and written with no bpf(2) call.

:func:`map_mmap` maps a BPF_F_MMAPABLE ARRAY (``.data``, ``.bss``,
``.rodata``, ``.kconfig``) or an ARENA map into this process; the returned
:class:`MapMapping` exports the range through the buffer protocol
(``memoryview(m)``), so Python reads and writes the map's memory directly,
as a libbpf skeleton's ``skel->bss->counter`` does.

Lifetime: a mapping holds its own reference on the map (the kernel's), so it
stays valid after the map fd is closed, until :meth:`MapMapping.close`.
``close()`` unmaps at once when no view of the range is left; while views
exist it replaces the range by private zero pages (the map is released
now; the views stay valid memory and read zeros) and the last view's
release unmaps it.  A Python view can never point at unmapped memory.
"""
from cpython.buffer cimport PyBuffer_FillInfo
from libc.string cimport memcpy

from bpfload import errors as _errors
from bpfload._core.syscall import _fault_state

cdef extern from "Python.h":
    void *PyCapsule_GetPointer(object capsule, const char *name) except? NULL

cdef extern from "mapping.h" nogil:
    void bl_fault_attach(void *state)
    void *bl_map_mmap(int fd, size_t length, int writable, void *at, int *err)
    int bl_map_detach(void *addr, size_t length, int writable)
    int bl_map_munmap(void *addr, size_t length)

cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    enum:
        _SC_PAGESIZE

bl_fault_attach(PyCapsule_GetPointer(_fault_state(), b"bpfload._core.bl_fault"))


def page_size():
    """The system page size (``sysconf(_SC_PAGESIZE)``); mappings are whole pages."""
    return sysconf(_SC_PAGESIZE)


cdef class MapMapping:
    """One shared mmap(2) range of a BPF map, exported as a (read-only or writable) buffer.

    ``memoryview(mapping)`` is a view of the whole range; :meth:`read` and
    :meth:`write` copy bytes at an offset (bounds-checked).  ``address`` is
    the range's start in this process (an arena's user address).  Made by
    :func:`map_mmap`; released by :meth:`close` (see the module doc).
    """
    cdef char *addr
    cdef readonly size_t length
    cdef readonly bint writable
    cdef Py_ssize_t exports
    cdef bint detached
    cdef public object what

    def __cinit__(self):
        self.addr = NULL

    @property
    def address(self):
        """The start of the range in this process (0 once closed)."""
        return 0 if self.addr == NULL or self.detached else <size_t>self.addr

    @property
    def closed(self):
        """True once :meth:`close` was called (views may still hold the detached range)."""
        return self.addr == NULL or self.detached

    @property
    def exports(self):
        """How many buffer views of the range exist now."""
        return self.exports

    cdef int _check(self, Py_ssize_t offset, Py_ssize_t size) except -1:
        if self.addr == NULL or self.detached:
            raise _errors.MapClosedError(f"{self.what or 'map'}: the mapping is closed")
        if offset < 0 or size < 0 or <size_t>offset > self.length or <size_t>size > self.length - offset:
            raise IndexError(f"{self.what or 'map'}: bytes {offset}..{offset + size} are outside "
                             f"the {self.length}-byte mapping")
        return 0

    def read(self, Py_ssize_t offset, Py_ssize_t size):
        """A copy of *size* bytes at *offset*.  IndexError outside the range,
        :class:`bpfload.MapClosedError` once closed."""
        self._check(offset, size)
        return (self.addr + offset)[:size]

    def write(self, Py_ssize_t offset, data):
        """Copy the bytes-like *data* to *offset*.  IndexError outside the range,
        :class:`bpfload.MapClosedError` once closed, 
        :class:`bpfload.ReadOnlyError` (a PermissionError) on a read-only mapping."""
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        cdef Py_ssize_t n = src.shape[0]
        self._check(offset, n)
        if not self.writable:
            raise _errors.ReadOnlyError(f"{self.what or 'map'}: the mapping is read-only")
        if n:
            memcpy(self.addr + offset, &src[0], n)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.addr == NULL or self.detached:
            raise _errors.MapClosedError(f"{self.what or 'map'}: the mapping is closed")
        PyBuffer_FillInfo(buffer, self, self.addr, self.length, not self.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self.detached:
            self._unmap()

    cdef void _unmap(self) noexcept:
        if self.addr != NULL:
            bl_map_munmap(self.addr, self.length)
            self.addr = NULL
        self.detached = False

    def close(self):
        """Release the mapping (and its reference on the map).  Idempotent; never raises.

        With no view left the range is unmapped now; otherwise it is
        replaced by private zero pages and unmapped when the last view goes.
        """
        if self.addr == NULL or self.detached:
            return
        if self.exports == 0:
            self._unmap()
        else:
            bl_map_detach(self.addr, self.length, self.writable)   # on failure: kept until the last view
            self.detached = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.addr != NULL:
            bl_map_munmap(self.addr, self.length)
            self.addr = NULL

    def __repr__(self):
        state = "closed" if self.closed else f"at {<size_t>self.addr:#x}"
        return (f"<MapMapping {self.what or ''} {self.length} bytes "
                f"{'rw' if self.writable else 'ro'} {state}>")


def map_mmap(int fd, size_t length, bint writable, size_t address=0, what=None):
    """Map *length* bytes of the BPF map *fd* shared into this process; a :class:`MapMapping`.

    *writable*: PROT_READ|PROT_WRITE, else PROT_READ.  *address*: the exact
    address wanted (an arena created with ``map_extra``), 0 to let the
    kernel choose; a range already in use there fails with EEXIST (never
    replaced).  Raises :class:`bpfload.SyscallError` (command ``mmap``,
    errno: EINVAL for a map without BPF_F_MMAPABLE or a length over the
    map's, EPERM for a writable mapping of a frozen map) naming *what*.
    Needs Linux 5.5 (mmapable arrays), 6.9 (arenas).
    """
    cdef int err = 0
    cdef void *p
    if length == 0:
        raise ValueError(f"{what or 'map'}: nothing to map (length 0)")
    with nogil:
        p = bl_map_mmap(fd, length, writable, <void *>address, &err)
    if p == NULL:
        raise _errors.from_errno("mmap", err, what, f"{length} bytes, "
                                 f"{'read-write' if writable else 'read-only'}"
                                 + (f" at {address:#x}" if address else ""))
    cdef MapMapping m = MapMapping.__new__(MapMapping)
    m.addr = <char *>p
    m.length = length
    m.writable = writable
    m.what = what
    return m
