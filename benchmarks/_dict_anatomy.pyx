# cython: language_level=3, boundscheck=False, wraparound=False
"""The CPython work in ``Map.to_dict()`` taken apart (built by ``dict_anatomy.py``).

Each piece is what any C code building the same dict must do, whatever reads
the map: create the key and value objects, allocate the dict's table for
*n* entries, insert the entries (hash known, in slot order or in the
kernel's order).  ``sized_dict`` repeats bpfload/_core/syscall.pyx's
``bl_dict_sized`` (the one-shot table); not part of the package.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free

cdef extern from "Python.h":
    ctypedef struct PyDictObject:
        Py_ssize_t ma_used
    int _PyDict_SetItem_KnownHash(object d, PyObject *k, PyObject *v, Py_ssize_t h) except -1
    Py_ssize_t _Py_HashBytes(const void *p, Py_ssize_t n)


cdef class Objs:
    """2n new objects (key, value, key, value ...), released with the holder."""
    cdef PyObject **p
    cdef Py_ssize_t n

    def __cinit__(self, Py_ssize_t n):
        # calloc'd and touched here, outside the timed pieces
        self.p = <PyObject **>calloc(2 * n + 1, sizeof(PyObject *))
        if self.p == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            Py_DECREF(<object>self.p[i])
        free(self.p)


def make_ints(Objs o, const unsigned char[::1] kb, const unsigned char[::1] vb, Py_ssize_t n):
    """2n ints: u32 keys, u64 values."""
    cdef Py_ssize_t i
    cdef const uint32_t *k = <const uint32_t *>&kb[0]
    cdef const uint64_t *v = <const uint64_t *>&vb[0]
    cdef object a, b
    for i in range(n):
        a = PyLong_FromUnsignedLongLong(k[i])
        b = PyLong_FromUnsignedLongLong(v[i])
        o.p[2 * i] = <PyObject *>a
        o.p[2 * i + 1] = <PyObject *>b
        Py_INCREF(a)   # the array's own references (released by Objs.__dealloc__)
        Py_INCREF(b)
    o.n = 2 * n


def make_bytes(Objs o, const unsigned char[::1] kb, const unsigned char[::1] vb, Py_ssize_t n):
    """2n bytes: 4-byte keys, 8-byte values."""
    cdef Py_ssize_t i
    cdef const char *k = <const char *>&kb[0]
    cdef const char *v = <const char *>&vb[0]
    cdef object a, b
    for i in range(n):
        a = PyBytes_FromStringAndSize(k + 4 * i, 4)
        b = PyBytes_FromStringAndSize(v + 8 * i, 8)
        o.p[2 * i] = <PyObject *>a
        o.p[2 * i + 1] = <PyObject *>b
        Py_INCREF(a)
        Py_INCREF(b)
    o.n = 2 * n


def hash_bytes(const unsigned char[::1] kb, Py_ssize_t n):
    """The hash CPython gives each 4-byte key as a bytes object (SipHash), into a list."""
    cdef Py_ssize_t i
    cdef const char *k = <const char *>&kb[0]
    cdef Py_ssize_t acc = 0
    for i in range(n):
        acc ^= _Py_HashBytes(k + 4 * i, 4)
    return acc


def sized_dict(Py_ssize_t n):
    """An empty dict with one table for n entries (as bl_dict_sized)."""
    d = {}
    tmp = {0: None}
    del tmp[0]
    (<PyDictObject *>tmp).ma_used = n
    try:
        d.update(tmp)
    finally:
        (<PyDictObject *>tmp).ma_used = 0
    return d


def insert(dict d, Objs o, const unsigned char[::1] hashes):
    """Every (key, value) of o into d, with its known hash."""
    cdef Py_ssize_t i
    cdef const Py_ssize_t *h = <const Py_ssize_t *>&hashes[0]
    for i in range(0, o.n, 2):
        _PyDict_SetItem_KnownHash(d, o.p[i], o.p[i + 1], h[i // 2])
    return d
