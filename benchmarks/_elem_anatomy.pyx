# cython: language_level=3
"""MapCore.lookup() taken apart: each method adds one piece of it to the one before.

Built and timed by ``elem_anatomy.py`` (pyximport; not part of the package).
The pieces copy bpfload/_core/syscall.pyx's own code: the int key packing of
bl_fast_buf (4-byte keys only), the FD use count, the bytes result, the
sole-thread test of bl_sole_thread and the GIL release; the syscall itself is
left out (the C reference pays it too).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    static inline const char *an_fast_buf(PyObject *o, Py_ssize_t size, char *tmp)
    {
        long v;
        if (!PyLong_CheckExact(o)) return NULL;
        switch (Py_SIZE(o)) {
        case 0: v = 0; break;
        case 1: v = (long)((PyLongObject *)o)->ob_digit[0]; break;
        default: return NULL;
        }
        if (size == 4) { unsigned int x = (unsigned int)v; memcpy(tmp, &x, 4); return tmp; }
        return NULL;
    }
    static inline int an_sole_thread(void)
    {
        PyThreadState *ts = PyThreadState_Get();
        return ts->prev == NULL && ts->next == NULL
            && PyInterpreterState_Next(PyInterpreterState_Head()) == NULL;
    }
    static volatile int an_sink;
    static inline void an_nothing(const char *k, char *v) { an_sink = k[0]; v[0] = 0; }
    """
    const char *an_fast_buf(object o, Py_ssize_t size, char *tmp)
    int an_sole_thread()
    void an_nothing(const char *k, char *v) nogil

cdef class Holder:
    cdef int fd, users

cdef class Core:
    cdef Holder h
    cdef unsigned int key_size
    cdef Py_ssize_t vsize

    def __cinit__(self):
        self.h = Holder()
        self.key_size = 4
        self.vsize = 8

    def call(self, key, uint64_t flags=0):
        """1: the call and argument parsing only."""
        return None

    def pack(self, key, uint64_t flags=0):
        """2: + the key packed (exact int, 4 bytes)."""
        cdef char tmp[256]
        if an_fast_buf(key, self.key_size, tmp) == NULL:
            raise TypeError
        return None

    def hold(self, key, uint64_t flags=0):
        """3: + the fd use count taken and dropped."""
        cdef char tmp[256]
        cdef Holder h = self.h
        if an_fast_buf(key, self.key_size, tmp) == NULL:
            raise TypeError
        h.users += 1
        h.users -= 1
        return None

    def alloc(self, key, uint64_t flags=0):
        """4: + the bytes result allocated (and freed by the caller's POP_TOP)."""
        cdef char tmp[256]
        cdef Holder h = self.h
        cdef const char *k = an_fast_buf(key, self.key_size, tmp)
        if k == NULL:
            raise TypeError
        out = PyBytes_FromStringAndSize(NULL, self.vsize)
        h.users += 1
        an_nothing(k, PyBytes_AS_STRING(out))
        h.users -= 1
        return out

    def check(self, key, uint64_t flags=0):
        """5: + the sole-thread test (GIL kept)."""
        cdef char tmp[256]
        cdef Holder h = self.h
        cdef const char *k = an_fast_buf(key, self.key_size, tmp)
        if k == NULL:
            raise TypeError
        out = PyBytes_FromStringAndSize(NULL, self.vsize)
        h.users += 1
        if an_sole_thread():
            an_nothing(k, PyBytes_AS_STRING(out))
        h.users -= 1
        return out

    def release(self, key, uint64_t flags=0):
        """6: as 4, with the GIL released and retaken around the (empty) call
        (what every element call did before, and still does when other threads exist)."""
        cdef char tmp[256]
        cdef Holder h = self.h
        cdef const char *k = an_fast_buf(key, self.key_size, tmp)
        cdef char *v
        if k == NULL:
            raise TypeError
        out = PyBytes_FromStringAndSize(NULL, self.vsize)
        v = PyBytes_AS_STRING(out)
        h.users += 1
        with nogil:
            an_nothing(k, v)
        h.users -= 1
        return out
