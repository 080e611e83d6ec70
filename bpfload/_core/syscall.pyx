# cython: language_level=3
"""The only code in bpfload that calls bpf(2).

Three layers, thinnest first:

* C helpers in ``csrc/bpf_sys.h`` fill ``union bpf_attr`` for one command
  each and return ``-errno``; this module declares only what it uses.
* Module functions here wrap one command each, release the GIL around the
  call, and turn a negative return into the right :mod:`bpfload.errors`
  exception through :func:`_raise`.
* :class:`MapCore` is the per-element and bulk map fast path that
  :class:`bpfload.Map` builds on: key/value packing, per-CPU layout,
  batch commands with a per-element fallback, all without a Python object
  per element unless asked.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from cpython.long cimport PyLong_FromUnsignedLong, PyLong_FromUnsignedLongLong
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE,
                             PyObject_CheckBuffer)
from cpython.number cimport PyIndex_Check
from cpython.pycapsule cimport PyCapsule_New
from cpython.bytearray cimport PyByteArray_AS_STRING
cimport cython
from libc.errno cimport errno
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from bpfload._core.common cimport load_uint

import operator as _operator
import os as _os
import sys as _sys
import _warnings   # warnings' C half, the same warn() and filters (warnings.py: 0.3 ms of a start)

from bpfload import errors as _errors


class _NumbersOnFirstUse:
    """Stands for the numbers module until index_int first meets a NumPy-style integer scalar
    (numbers' ABCs cost every load 0.4 ms to import); then puts the module in its place."""

    def __getattr__(self, name):
        import numbers
        globals()["_numbers"] = numbers
        return getattr(numbers, name)


_numbers = _NumbersOnFirstUse()

cdef extern from "<linux/bpf.h>":
    enum:
        BPF_MAP_LOOKUP_ELEM
        BPF_MAP_UPDATE_ELEM
        BPF_MAP_DELETE_ELEM
        BPF_MAP_LOOKUP_AND_DELETE_ELEM
        BPF_MAP_LOOKUP_BATCH
        BPF_MAP_LOOKUP_AND_DELETE_BATCH
        BPF_MAP_UPDATE_BATCH
        BPF_MAP_DELETE_BATCH
        BPF_MAP_GET_FD_BY_ID
        BPF_PROG_GET_FD_BY_ID
        BPF_BTF_GET_FD_BY_ID
        BPF_LINK_GET_FD_BY_ID
        BPF_PROG_GET_NEXT_ID
        BPF_MAP_GET_NEXT_ID
        BPF_BTF_GET_NEXT_ID
        BPF_LINK_GET_NEXT_ID
        BPF_OBJ_NAME_LEN

cdef extern from "bl_fault.h" nogil:
    struct bl_fault_state:
        long fail_at
        int fail_cmd
        int fail_errno
        unsigned long bpf_calls
        unsigned long calls[1]          # BL_OP_END entries (C indexes it, unchecked)
    bl_fault_state *bl_fault
    enum:
        BL_MAX_CMD
        BL_OP_PERF_EVENT_OPEN
        BL_OP_MMAP
        BL_OP_EPOLL_CREATE
        BL_OP_EPOLL_CTL
        BL_OP_EVENTFD
        BL_OP_DUP
        BL_OP_IOCTL
        BL_OP_END

cdef extern from "bpf_sys.h" nogil:

    struct bl_map_create_opts:
        uint32_t map_type, key_size, value_size, max_entries, map_flags
        const char *name
        uint32_t inner_map_fd, numa_node
        uint32_t btf_fd, btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id
        uint64_t map_extra

    struct bl_prog_load_opts:
        uint32_t prog_type, expected_attach_type, prog_flags, kern_version
        const void *insns
        uint32_t insn_cnt
        const char *license
        const char *name
        uint32_t log_level, log_size
        char *log_buf
        uint32_t prog_btf_fd
        const void *func_info
        uint32_t func_info_rec_size, func_info_cnt
        const void *line_info
        uint32_t line_info_rec_size, line_info_cnt
        uint32_t attach_btf_id, attach_btf_obj_fd, attach_prog_fd
        const int *fd_array
        uint32_t prog_ifindex
        uint32_t log_true_size

    struct bl_test_run_opts:
        int prog_fd
        uint32_t repeat, flags, cpu, batch_size
        const void *data_in
        uint32_t data_size_in
        void *data_out
        uint32_t data_size_out
        const void *ctx_in
        uint32_t ctx_size_in
        void *ctx_out
        uint32_t ctx_size_out
        uint32_t retval, duration

    int bl_map_create(const bl_map_create_opts *o)
    int bl_map_lookup(int fd, const void *key, void *value, uint64_t flags)
    int bl_map_update(int fd, const void *key, const void *value, uint64_t flags)
    int bl_map_delete(int fd, const void *key)
    int bl_map_lookup_and_delete(int fd, const void *key, void *value, uint64_t flags)
    int bl_map_get_next_key(int fd, const void *key, void *next_key)
    int bl_map_freeze(int fd)
    int bl_prog_bind_map(int prog_fd, int map_fd)
    int bl_map_batch(int cmd, int fd, void *in_batch, void *out_batch, void *keys,
                     void *values, uint32_t *count, uint64_t elem_flags)
    int bl_obj_pin(int fd, const char *path)
    int bl_obj_get(const char *path, uint32_t file_flags)
    int bl_get_fd_by_id(int cmd, uint32_t id)
    int bl_obj_get_info_by_fd(int fd, void *info, uint32_t *info_len)
    int bl_prog_load(bl_prog_load_opts *o)
    int bl_prog_test_run(bl_test_run_opts *o)
    int bl_btf_load(const void *btf, uint32_t size, char *log_buf, uint32_t log_size, uint32_t log_level)
    struct bl_link_create_opts:
        uint32_t prog_fd, target_fd, attach_type, flags
        uint32_t kind
        uint32_t target_btf_id
        const void *iter_info
        uint32_t iter_info_len
        uint64_t cookie
        uint32_t nf_pf, nf_hooknum, nf_flags
        int32_t nf_priority
        uint32_t relative_fd_or_id
        uint64_t expected_revision
        const void *um_path
        const void *um_offsets
        const void *um_ref_ctr_offsets
        const void *um_cookies
        uint32_t um_cnt, um_flags, um_pid

    enum:
        BL_LINK_PLAIN
        BL_LINK_ITER
        BL_LINK_PERF_EVENT
        BL_LINK_TRACING
        BL_LINK_NETFILTER
        BL_LINK_TCX
        BL_LINK_UPROBE_MULTI

    int bl_link_create_ex(const bl_link_create_opts *o)
    int bl_link_update(int link_fd, int new_prog_fd, uint32_t flags, int old_prog_fd)
    int bl_link_detach(int link_fd)
    int bl_prog_attach(int target_fd, int prog_fd, uint32_t attach_type, uint32_t attach_flags,
                       int replace_prog_fd)
    int bl_prog_detach(int target_fd, int prog_fd, uint32_t attach_type)
    int bl_iter_create(int link_fd, uint32_t flags)
    int bl_get_next_id(int cmd, uint32_t start_id, uint32_t *next_id)
    int bl_prog_query(int target_fd, uint32_t attach_type, uint32_t query_flags,
                      uint32_t *attach_flags, uint32_t *prog_ids, uint32_t *prog_cnt)
    int bl_raw_tracepoint_open(const char *name, int prog_fd)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)
    dict _PyDict_NewPresized(Py_ssize_t minused)

cdef enum:
    E2BIG_ = 7
    ENOENT_ = 2
    EINVAL_ = 22
    ENOSPC_ = 28
    ENOTSUPP_ = 524
    EOPNOTSUPP_ = 95
    KIND_PLAIN = 0
    KIND_PERCPU = 1
    KIND_FDVALUE = 2
    KIND_KEYLESS = 3
    TMP_KEY = 256
    HASH_ORDER_MIN = 65536   # to_dict() inserts dumps this big in slot order (bl_slot_order)

# Map types by number (mirrors bpfload.constants; _core imports nothing else).
cdef enum:
    T_HASH = 1
    T_PROG_ARRAY = 3
    T_PERCPU_HASH = 5
    T_PERCPU_ARRAY = 6
    T_LRU_HASH = 9
    T_LRU_PERCPU_HASH = 10
    T_ARRAY_OF_MAPS = 12
    T_HASH_OF_MAPS = 13
    T_PERCPU_CGROUP_STORAGE = 21
    T_QUEUE = 22
    T_STACK = 23
    T_BLOOM_FILTER = 30

_COMMANDS = {
    BPF_MAP_LOOKUP_ELEM: "BPF_MAP_LOOKUP_ELEM",
    BPF_MAP_UPDATE_ELEM: "BPF_MAP_UPDATE_ELEM",
    BPF_MAP_DELETE_ELEM: "BPF_MAP_DELETE_ELEM",
    BPF_MAP_LOOKUP_AND_DELETE_ELEM: "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
    BPF_MAP_LOOKUP_BATCH: "BPF_MAP_LOOKUP_BATCH",
    BPF_MAP_LOOKUP_AND_DELETE_BATCH: "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
    BPF_MAP_UPDATE_BATCH: "BPF_MAP_UPDATE_BATCH",
    BPF_MAP_DELETE_BATCH: "BPF_MAP_DELETE_BATCH",
}

_BYTEORDER = _sys.byteorder

#: Map types addressed by an index below max_entries (E2BIG on update: index too big).
_INDEXED_TYPES = frozenset({2, 3, 4, 6, 8, 12, 14, 16, 17})  # ARRAY ... XSKMAP


cdef int _raise(str command, int ret, object target=None, bint is_map=False, object detail=None) except -1:
    """The one place a negative return becomes an exception."""
    raise _errors.from_errno(command, -ret, target, detail, is_map=is_map)


# --------------------------------------------------------------------------
# fault injection (rollback tests) and call counting

#: The event readers' calls (csrc/events.h) that share bpf(2)'s fault door, by name.
FAULT_OPS = {
    "perf_event_open": BL_OP_PERF_EVENT_OPEN,
    "mmap": BL_OP_MMAP,
    "epoll_create": BL_OP_EPOLL_CREATE,
    "epoll_ctl": BL_OP_EPOLL_CTL,
    "eventfd": BL_OP_EVENTFD,
    "dup": BL_OP_DUP,
    "ioctl": BL_OP_IOCTL,
}


cdef int _fault_op(object command) except -2:
    """-1 for None, a bpf command number (0..63), or a FAULT_OPS name's number."""
    if command is None:
        return -1
    if isinstance(command, str):
        try:
            return FAULT_OPS[command]
        except KeyError:
            raise ValueError(f"unknown call {command!r}; known: bpf command numbers and "
                             f"{', '.join(FAULT_OPS)}") from None
    if not 0 <= command < BL_MAX_CMD:
        raise ValueError(f"bpf command {command} out of range")
    return <int>command


def inject_fault(long nth, int err, command=None):
    """Make the *nth* call from now fail with *err* without entering the kernel.

    Calls are bpf(2) commands and the event readers' perf_event_open, mmap,
    epoll_create1, epoll_ctl, eventfd, dup (fcntl) and enable ioctl, counted
    together through one door (``csrc/bl_fault.h``).  *command* restricts the
    count to one of them: an int ``enum bpf_cmd`` value or a name from
    :data:`FAULT_OPS`.  ``inject_fault(0, 0)`` disarms.  Raises ValueError
    for an unknown *command*.  For rollback tests only.
    """
    cdef int op = _fault_op(command)
    bl_fault.fail_at = nth
    bl_fault.fail_cmd = op
    bl_fault.fail_errno = err


def fault_pending():
    """True while an injected fault has not fired yet."""
    return bl_fault.fail_at > 0


def syscall_count(command=None):
    """How many bpf(2) calls this process made through bpfload (a counter for tests).

    With *command* (an int ``enum bpf_cmd`` value, or a :data:`FAULT_OPS`
    name for an event reader call), the calls of that command only.
    Injected faults count as calls.  Raises ValueError for an unknown
    *command*.
    """
    if command is None:
        return bl_fault.bpf_calls
    return bl_fault.calls[_fault_op(command)]


def _fault_state():
    """The fault door's state as a capsule, for the other _core modules (one state per process)."""
    return PyCapsule_New(<void *>bl_fault, b"bpfload._core.bl_fault", NULL)


# --------------------------------------------------------------------------
# possible CPUs

cdef list _possible = None


def parse_cpu_list(str text):
    """Parse a kernel CPU list such as ``"0-3,8,10-11"`` into sorted CPU ids."""
    cdef list out = []
    text = text.strip()
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return sorted(set(out))


def possible_cpus():
    """Ids of the possible CPUs (``/sys/devices/system/cpu/possible``), cached.

    Per-CPU map values hold one slot per *possible* CPU, in this order.
    """
    global _possible
    if _possible is None:
        with open("/sys/devices/system/cpu/possible") as f:
            _possible = parse_cpu_list(f.read())
    return list(_possible)


cdef int _ncpus() except -1:
    if _possible is None:
        possible_cpus()
    return len(_possible)


# --------------------------------------------------------------------------
# fd owner

# The collector must not clear `what` before __dealloc__ uses it in the ResourceWarning
# of a leaked fd held in a reference cycle.
@cython.no_gc_clear
cdef class FD:
    """Owns one file descriptor: closes it once, warns if it is leaked.

    ``int(fd)`` and ``fd.fileno()`` give the number; after :meth:`close` they
    raise :class:`bpfload.MapClosedError` instead of handing out a number the
    process may have reused.  :meth:`detach` hands ownership to the caller.

    Calls that use the number with the GIL released (a bpf(2) call in one
    thread while another may call :meth:`close`) hold it with a use count
    taken under the GIL (:meth:`hold` / ``_acquire``) and dropped after
    (:meth:`release` / ``_release``).  :meth:`close` makes new uses fail at
    once; the number itself is closed by the last user, so the kernel cannot
    hand it to a new object while a call made for this one is in flight.
    """
    cdef int _fd          # the number for new uses; -1 once closed or detached
    cdef int _pending     # closed while in use: the last user closes this number
    cdef int _users       # calls in flight with the GIL released
    cdef public object what

    def __cinit__(self, int fd, what=None):
        if fd < 0:
            raise ValueError(f"invalid fd {fd}")
        self._fd = fd
        self._pending = -1
        self._users = 0
        self.what = what

    @property
    def closed(self):
        return self._fd < 0

    cpdef int fileno(self) except -1:
        if self._fd < 0:
            raise _errors.MapClosedError(f"{self.what or 'fd'} is closed")
        return self._fd

    cdef inline int _acquire(self) except -1:
        """The number, held until _release (GIL held); MapClosedError once closed."""
        if self._fd < 0:
            raise _errors.MapClosedError(f"{self.what or 'fd'} is closed")
        self._users += 1
        return self._fd

    cdef inline void _release(self) noexcept:
        """Drop one use (GIL held); the last user of a closed FD closes the number."""
        self._users -= 1
        if self._users == 0 and self._pending >= 0:
            close(self._pending)
            self._pending = -1

    def hold(self):
        """Take a use of the number for a call made with the GIL released -> the number.

        Pair with :meth:`release` (in a ``finally``).  Raises
        :class:`bpfload.MapClosedError` once closed.
        """
        return self._acquire()

    def release(self):
        """Drop a use taken with :meth:`hold`."""
        if self._users <= 0:
            raise RuntimeError("FD.release() without hold()")
        self._release()

    @property
    def users(self):
        """Uses in flight (calls holding the number)."""
        return self._users

    def __int__(self):
        return self.fileno()

    def __index__(self):
        return self.fileno()

    cpdef close(self):
        cdef int fd = self._fd
        if fd >= 0:
            self._fd = -1
            if self._users > 0:
                self._pending = fd   # the last user closes it
            else:
                close(fd)

    def detach(self):
        """Give up ownership and return the raw fd; this object will not close it.

        Raises :class:`bpfload.BpfError` while a call is using the number.
        """
        cdef int fd = self.fileno()
        if self._users > 0:
            raise _errors.BpfError(f"{self.what or 'fd'} is in use by another thread")
        self._fd = -1
        return fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<FD {self._fd if self._fd >= 0 else 'closed'} {self.what or ''}>".replace(" >", ">")

    def __dealloc__(self):
        if self._pending >= 0:   # cannot happen while users hold a reference; be safe
            close(self._pending)
            self._pending = -1
        if self._fd >= 0:
            try:
                # No source=self: a warnings recorder (pytest records every test)
                # would keep a reference to this object past its deallocation.
                _warnings.warn(f"unclosed {self.what or 'bpf fd'} (fd {self._fd})", ResourceWarning)
            except Exception:
                pass
            close(self._fd)
            self._fd = -1


cdef inline int _held(object fd, void **owner) except? -1:
    """The number to pass the kernel for *fd*, an int or an :class:`FD`.

    An FD's use is taken (MapClosedError once closed) and *owner* set to it
    until :func:`_unheld`; an int is its own number (*owner* NULL).  The
    caller's argument keeps the FD alive, so *owner* borrows it.  Between
    the two, a wrapper makes its call with the GIL released, which cannot
    raise: no ``try`` is needed unless something else can.
    """
    owner[0] = NULL
    if type(fd) is FD:
        (<FD>fd)._acquire()
        owner[0] = <void *>fd
        return (<FD>fd)._fd
    return fd


cdef inline void _unheld(void *owner) noexcept:
    """Drop the use :func:`_held` took (nothing for an int)."""
    if owner != NULL:
        (<FD>owner)._release()


cdef FD _new_fd(int ret, str command, object target, object what, bint is_map=False):
    if ret < 0:
        _raise(command, ret, target, is_map)
    return FD(ret, what)


# --------------------------------------------------------------------------
# one wrapper per command

def map_create(uint32_t map_type, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
               uint32_t flags=0, name=None, int inner_map_fd=0, numa_node=None, int btf_fd=0,
               uint32_t btf_key_type_id=0, uint32_t btf_value_type_id=0,
               uint32_t btf_vmlinux_value_type_id=0, uint64_t map_extra=0):
    """BPF_MAP_CREATE -> :class:`FD`.  ``numa_node`` sets BPF_F_NUMA_NODE."""
    cdef bl_map_create_opts o
    cdef bytes bname = (name or "").encode()[:BPF_OBJ_NAME_LEN - 1]
    cdef int ret
    memset(&o, 0, sizeof(o))
    o.map_type = map_type
    o.key_size = key_size
    o.value_size = value_size
    o.max_entries = max_entries
    o.map_flags = flags
    o.name = bname
    o.inner_map_fd = inner_map_fd
    if numa_node is not None:
        o.numa_node = numa_node
        o.map_flags |= 4  # BPF_F_NUMA_NODE
    o.btf_fd = btf_fd
    o.btf_key_type_id = btf_key_type_id
    o.btf_value_type_id = btf_value_type_id
    o.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
    o.map_extra = map_extra
    with nogil:
        ret = bl_map_create(&o)
    return _new_fd(ret, "BPF_MAP_CREATE", name, f"map {name!r}" if name else "map", True)


def map_freeze(fd, target=None):
    """BPF_MAP_FREEZE: no more writes from user space.  *fd*: an int or an :class:`FD` (held)."""
    cdef int ret
    cdef void *held
    cdef int cfd = _held(fd, &held)
    with nogil:
        ret = bl_map_freeze(cfd)
    _unheld(held)
    if ret < 0:
        _raise("BPF_MAP_FREEZE", ret, target, True)


def prog_bind_map(int prog_fd, int map_fd, target=None, detail=None):
    """BPF_PROG_BIND_MAP: make the program hold *map_fd* (listed in its map ids).

    Raises :class:`bpfload.SyscallError` naming *target* (the program) with
    *detail* (EINVAL before Linux 5.10, which lacks the command).
    """
    cdef int ret
    with nogil:
        ret = bl_prog_bind_map(prog_fd, map_fd)
    if ret < 0:
        _raise("BPF_PROG_BIND_MAP", ret, target, False, detail)


def obj_pin(fd, path, target=None):
    """BPF_OBJ_PIN *fd* (an int or an :class:`FD`, held) at *path* (in a bpffs mount)."""
    cdef bytes p = _os.fsencode(path)
    cdef const char *cp = p
    cdef int ret
    cdef void *held
    cdef int cfd
    if b"\0" in p:
        raise ValueError("embedded null byte in pin path")
    cfd = _held(fd, &held)
    with nogil:
        ret = bl_obj_pin(cfd, cp)
    _unheld(held)
    if ret < 0:
        _raise("BPF_OBJ_PIN", ret, target, False, f"path {_os.fsdecode(p)}")


def obj_get(path, uint32_t file_flags=0):
    """BPF_OBJ_GET: open a pinned object -> :class:`FD`.  ValueError for a NUL in *path*."""
    cdef bytes p = _os.fsencode(path)
    cdef const char *cp = p
    cdef int ret
    if b"\0" in p:
        raise ValueError("embedded null byte in pin path")
    with nogil:
        ret = bl_obj_get(cp, file_flags)
    return _new_fd(ret, "BPF_OBJ_GET", None, f"pin {_os.fsdecode(p)}", False) if ret >= 0 else \
        _raise("BPF_OBJ_GET", ret, None, False, f"path {_os.fsdecode(p)}")


_ID_COMMANDS = {
    "map": (BPF_MAP_GET_FD_BY_ID, "BPF_MAP_GET_FD_BY_ID"),
    "prog": (BPF_PROG_GET_FD_BY_ID, "BPF_PROG_GET_FD_BY_ID"),
    "btf": (BPF_BTF_GET_FD_BY_ID, "BPF_BTF_GET_FD_BY_ID"),
    "link": (BPF_LINK_GET_FD_BY_ID, "BPF_LINK_GET_FD_BY_ID"),
}


def get_fd_by_id(str kind, uint32_t obj_id):
    """BPF_{MAP,PROG,BTF,LINK}_GET_FD_BY_ID -> :class:`FD`."""
    cmd, name = _ID_COMMANDS[kind]
    cdef int c = cmd
    cdef int ret
    with nogil:
        ret = bl_get_fd_by_id(c, obj_id)
    return _new_fd(ret, name, f"{kind} id {obj_id}", f"{kind} id {obj_id}", kind == "map")


def obj_get_info(fd, uint32_t size, target=None, bytes prefill=None):
    """BPF_OBJ_GET_INFO_BY_FD with an info buffer of *size* bytes -> bytes.

    *fd*: an int or an :class:`FD` (held for the call).  *prefill* seeds the
    buffer (prog/btf info take user pointers in it).
    """
    cdef bytearray buf = bytearray(size)
    cdef uint32_t n = size
    if prefill:
        buf[:len(prefill)] = prefill
    _get_info(fd, PyByteArray_AS_STRING(buf), &n, target)
    return bytes(buf[:n])


cdef int _get_info(object fd, char *p, uint32_t *n, object target) except -1:
    """BPF_OBJ_GET_INFO_BY_FD into *p* (*n* in/out), *fd* held for the call when an FD."""
    cdef void *held
    cdef int cfd = _held(fd, &held)
    cdef int ret
    with nogil:
        ret = bl_obj_get_info_by_fd(cfd, p, n)
    _unheld(held)
    if ret < 0:
        _raise("BPF_OBJ_GET_INFO_BY_FD", ret, target)
    return 0


cdef class _View:
    """A held contiguous read-only buffer (bytes, bytearray, memoryview, array)."""
    cdef Py_buffer view
    cdef bint held

    def __cinit__(self, obj, bint writable=False, str what=None):
        try:
            PyObject_GetBuffer(obj, &self.view, PyBUF_SIMPLE | (PyBUF_WRITABLE if writable else 0))
        except BufferError as e:     # non-contiguous, or read-only where it is written
            raise BufferError(f"{what or 'buffer argument'}: {e} (pass a C-contiguous"
                              f"{' writable' if writable else ''} bytes-like object)") from None
        self.held = True

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef inline const void *_ptr_or_null(_View v):
    return NULL if v is None else v.view.buf


def prog_load(uint32_t prog_type, insns, license, name=None, *, uint32_t expected_attach_type=0,
              uint32_t prog_flags=0, uint32_t kern_version=0, uint32_t log_level=0,
              log_buf=None, int prog_btf_fd=0, func_info=None, uint32_t func_info_rec_size=0,
              line_info=None, uint32_t line_info_rec_size=0, uint32_t attach_btf_id=0,
              int attach_btf_obj_fd=0, int attach_prog_fd=0, fd_array=None, uint32_t prog_ifindex=0,
              bint with_log_true_size=False):
    """BPF_PROG_LOAD -> fd or -errno; ``(fd or -errno, log_true_size)`` with *with_log_true_size*.

    Returns the raw result so the caller (which knows the program name and
    owns log-buffer growth) builds the :class:`bpfload.LoadError`.
    *log_buf* is a writable buffer (bytearray) or None.  *log_true_size* is
    what the kernel reports the whole log needs, NUL included (Linux 6.4+;
    0 on older kernels or without a log).
    """
    cdef bl_prog_load_opts o
    cdef _View vi = _View(insns)
    cdef _View vlog = _View(log_buf, True) if log_buf is not None else None
    cdef _View vfi = _View(func_info) if func_info is not None else None
    cdef _View vli = _View(line_info) if line_info is not None else None
    cdef _View vfd = _View(fd_array) if fd_array is not None else None
    cdef bytes lic = (license or "").encode() if isinstance(license, str) else bytes(license or b"")
    cdef bytes bname = (name or "").encode()[:BPF_OBJ_NAME_LEN - 1]
    cdef int ret
    if vi.view.len % 8:
        raise ValueError("instruction buffer length is not a multiple of 8")
    memset(&o, 0, sizeof(o))
    o.prog_type = prog_type
    o.expected_attach_type = expected_attach_type
    o.prog_flags = prog_flags
    o.kern_version = kern_version
    o.insns = vi.view.buf
    o.insn_cnt = <uint32_t>(vi.view.len // 8)
    o.license = lic
    o.name = bname
    if vlog is not None and vlog.view.len > 0:
        o.log_level = log_level
        o.log_size = <uint32_t>vlog.view.len
        o.log_buf = <char *>vlog.view.buf
        (<char *>vlog.view.buf)[0] = 0
    o.prog_btf_fd = prog_btf_fd
    if vfi is not None and func_info_rec_size:
        o.func_info = vfi.view.buf
        o.func_info_rec_size = func_info_rec_size
        o.func_info_cnt = <uint32_t>(vfi.view.len // func_info_rec_size)
    if vli is not None and line_info_rec_size:
        o.line_info = vli.view.buf
        o.line_info_rec_size = line_info_rec_size
        o.line_info_cnt = <uint32_t>(vli.view.len // line_info_rec_size)
    o.attach_btf_id = attach_btf_id
    o.attach_btf_obj_fd = attach_btf_obj_fd
    o.attach_prog_fd = attach_prog_fd
    o.fd_array = <const int *>_ptr_or_null(vfd)
    o.prog_ifindex = prog_ifindex
    with nogil:
        ret = bl_prog_load(&o)
    if with_log_true_size:
        return ret, o.log_true_size
    return ret


def btf_load(data, log_buf=None, uint32_t log_level=0):
    """BPF_BTF_LOAD -> fd or -errno (the caller builds the error with the log)."""
    cdef _View v = _View(data)
    cdef _View vlog = _View(log_buf, True) if log_buf is not None else None
    cdef char *lb = NULL
    cdef uint32_t ls = 0
    cdef int ret
    if vlog is not None and vlog.view.len > 0:
        lb = <char *>vlog.view.buf
        ls = <uint32_t>vlog.view.len
        lb[0] = 0
    else:
        log_level = 0
    with nogil:
        ret = bl_btf_load(v.view.buf, <uint32_t>v.view.len, lb, ls, log_level)
    return ret


def prog_test_run(prog_fd, data=None, ctx=None, *, uint32_t repeat=1, uint32_t flags=0,
                  uint32_t cpu=0, Py_ssize_t data_out_size=-1, Py_ssize_t ctx_out_size=-1,
                  target=None):
    """BPF_PROG_TEST_RUN -> (retval, duration_ns, data_out bytes or None, ctx_out bytes or None).

    *prog_fd*: an int or an :class:`FD` (held for the call, so a concurrent
    close cannot hand the number to another object mid-run).
    """
    cdef bl_test_run_opts o
    cdef void *held
    cdef _View vd = _View(data) if data is not None else None
    cdef _View vc = _View(ctx) if ctx is not None else None
    cdef bytearray dout = None
    cdef bytearray cout = None
    cdef int ret
    memset(&o, 0, sizeof(o))
    o.repeat = repeat
    o.flags = flags
    o.cpu = cpu
    if vd is not None:
        o.data_in = vd.view.buf
        o.data_size_in = <uint32_t>vd.view.len
        if data_out_size < 0:
            data_out_size = vd.view.len + 512
        if data_out_size > 0:
            dout = bytearray(data_out_size)
            o.data_out = PyByteArray_AS_STRING(dout)
            o.data_size_out = <uint32_t>data_out_size
    if vc is not None:
        o.ctx_in = vc.view.buf
        o.ctx_size_in = <uint32_t>vc.view.len
        if ctx_out_size < 0:
            ctx_out_size = vc.view.len
        if ctx_out_size > 0:
            cout = bytearray(ctx_out_size)
            o.ctx_out = PyByteArray_AS_STRING(cout)
            o.ctx_size_out = <uint32_t>ctx_out_size
    o.prog_fd = _held(prog_fd, &held)
    with nogil:
        ret = bl_prog_test_run(&o)
    _unheld(held)
    if ret < 0:
        _raise("BPF_PROG_TEST_RUN", ret, target)
    return (o.retval, o.duration,
            bytes(dout[:o.data_size_out]) if dout is not None else None,
            bytes(cout[:o.ctx_size_out]) if cout is not None else None)


def link_create(int prog_fd, int target_fd, uint32_t attach_type, uint32_t flags=0,
                uint32_t target_btf_id=0, target=None, *, iter_info=None, perf_cookie=None,
                tracing_cookie=None, netfilter=None, tcx_relative=None,
                uint64_t expected_revision=0, uprobe_multi=None):
    """BPF_LINK_CREATE -> :class:`FD` of the new link.

    *target_fd* is the hook: a cgroup fd, a perf event fd, an ifindex (XDP,
    tcx) or 0.  One of the keyword groups selects the per-kind part of the
    attr: *iter_info* (bytes of ``union bpf_iter_link_info``), *perf_cookie*
    (``BPF_PERF_EVENT``), *tracing_cookie* (fentry/fexit/tp_btf with a
    cookie), *netfilter* (``(pf, hooknum, priority, flags)``), *tcx_relative*
    (an fd or id with ``BPF_F_BEFORE``/``BPF_F_AFTER`` in *flags*) with
    *expected_revision*, *uprobe_multi* (``(path, offsets, ref_ctr_offsets,
    cookies, flags, pid)`` for ``BPF_TRACE_UPROBE_MULTI``, Linux 6.6+: the
    path as bytes, the three arrays as packed native u64 bytes of the same
    count, ref_ctr_offsets and cookies may be None).  *target* names the
    program in errors.
    """
    cdef bl_link_create_opts o
    cdef bytes info
    cdef bytes um_path, um_offs, um_refs = None, um_cookies = None
    cdef int ret
    memset(&o, 0, sizeof(o))
    o.prog_fd = prog_fd
    o.target_fd = target_fd
    o.attach_type = attach_type
    o.flags = flags
    o.target_btf_id = target_btf_id
    o.kind = BL_LINK_PLAIN
    if iter_info is not None:
        info = bytes(iter_info)
        o.kind = BL_LINK_ITER
        o.iter_info = <const char *>info
        o.iter_info_len = len(info)
    elif perf_cookie is not None:
        o.kind = BL_LINK_PERF_EVENT
        o.cookie = perf_cookie
    elif tracing_cookie is not None:
        o.kind = BL_LINK_TRACING
        o.cookie = tracing_cookie
    elif netfilter is not None:
        o.kind = BL_LINK_NETFILTER
        o.nf_pf, o.nf_hooknum, o.nf_priority, o.nf_flags = netfilter
    elif tcx_relative is not None or expected_revision:
        o.kind = BL_LINK_TCX
        o.relative_fd_or_id = tcx_relative or 0
        o.expected_revision = expected_revision
    elif uprobe_multi is not None:
        path, offs, refs, cookies, um_flags, um_pid = uprobe_multi
        um_path = bytes(path)
        if b"\0" in um_path:
            raise ValueError("uprobe_multi path contains a NUL byte")
        um_offs = bytes(offs)
        if not um_offs or len(um_offs) % 8:
            raise ValueError("uprobe_multi offsets: a non-empty packed u64 array")
        o.kind = BL_LINK_UPROBE_MULTI
        o.um_cnt = <uint32_t>(len(um_offs) // 8)
        for arr in (refs, cookies):
            if arr is not None and len(arr) != len(um_offs):
                raise ValueError("uprobe_multi arrays differ in length")
        o.um_path = <const char *>um_path
        o.um_offsets = <const char *>um_offs
        if refs is not None:
            um_refs = bytes(refs)
            o.um_ref_ctr_offsets = <const char *>um_refs
        if cookies is not None:
            um_cookies = bytes(cookies)
            o.um_cookies = <const char *>um_cookies
        o.um_flags = um_flags
        o.um_pid = um_pid
    with nogil:
        ret = bl_link_create_ex(&o)
    return _new_fd(ret, "BPF_LINK_CREATE", target, f"link {target or ''}".strip())


def link_update(link_fd, new_prog_fd, uint32_t flags=0, old_prog_fd=0, target=None):
    """BPF_LINK_UPDATE: swap the link's program for *new_prog_fd*.

    Each fd is an int or an :class:`FD` (held for the call: a concurrent
    close cannot hand its number to another object mid-call).
    """
    cdef int ret
    cdef void *hl = NULL
    cdef void *hn = NULL
    cdef void *ho = NULL
    cdef int cl, cn, co
    try:  # a later fd may be closed or not an int: give back the uses taken
        cl = _held(link_fd, &hl)
        cn = _held(new_prog_fd, &hn)
        co = _held(old_prog_fd, &ho)
        with nogil:
            ret = bl_link_update(cl, cn, flags, co)
    finally:
        _unheld(hl)
        _unheld(hn)
        _unheld(ho)
    if ret < 0:
        _raise("BPF_LINK_UPDATE", ret, target)


def link_detach(link_fd, target=None):
    """BPF_LINK_DETACH: release the program from its hook; the link fd stays valid.

    *link_fd*: an int or an :class:`FD` (held for the call)."""
    cdef int ret
    cdef void *held
    cdef int cfd = _held(link_fd, &held)
    with nogil:
        ret = bl_link_detach(cfd)
    _unheld(held)
    if ret < 0:
        _raise("BPF_LINK_DETACH", ret, target)


def prog_attach(int target_fd, int prog_fd, uint32_t attach_type, uint32_t attach_flags=0,
                int replace_prog_fd=0, target=None):
    """BPF_PROG_ATTACH *prog_fd* at (*target_fd*, *attach_type*)."""
    cdef int ret
    with nogil:
        ret = bl_prog_attach(target_fd, prog_fd, attach_type, attach_flags, replace_prog_fd)
    if ret < 0:
        _raise("BPF_PROG_ATTACH", ret, target)


def prog_detach(int target_fd, int prog_fd, uint32_t attach_type, target=None):
    """BPF_PROG_DETACH *prog_fd* (0: whatever is attached) from (*target_fd*, *attach_type*)."""
    cdef int ret
    with nogil:
        ret = bl_prog_detach(target_fd, prog_fd, attach_type)
    if ret < 0:
        _raise("BPF_PROG_DETACH", ret, target)


def prog_query(int target_fd, uint32_t attach_type, uint32_t query_flags=0, uint32_t max_progs=64,
               target=None):
    """BPF_PROG_QUERY -> ``(attach_flags, [prog ids])`` at (*target_fd*, *attach_type*)."""
    cdef bytearray ids = bytearray(4 * max_progs)
    cdef uint32_t cnt = max_progs, aflags = 0
    cdef uint32_t *p = <uint32_t *>PyByteArray_AS_STRING(ids)
    cdef int ret
    with nogil:
        ret = bl_prog_query(target_fd, attach_type, query_flags, &aflags, p, &cnt)
    if ret < 0:
        _raise("BPF_PROG_QUERY", ret, target)
    return aflags, [p[i] for i in range(min(cnt, max_progs))]


def iter_create(link_fd, uint32_t flags=0, target=None):
    """BPF_ITER_CREATE -> :class:`FD` to read one pass of an iterator link's output.

    *link_fd*: an int or an :class:`FD` (held for the call)."""
    cdef int ret
    cdef void *held
    cdef int cfd = _held(link_fd, &held)
    with nogil:
        ret = bl_iter_create(cfd, flags)
    _unheld(held)
    return _new_fd(ret, "BPF_ITER_CREATE", target, f"iterator {target or ''}".strip())


_NEXT_ID_COMMANDS = {
    "prog": (BPF_PROG_GET_NEXT_ID, "BPF_PROG_GET_NEXT_ID"),
    "map": (BPF_MAP_GET_NEXT_ID, "BPF_MAP_GET_NEXT_ID"),
    "btf": (BPF_BTF_GET_NEXT_ID, "BPF_BTF_GET_NEXT_ID"),
    "link": (BPF_LINK_GET_NEXT_ID, "BPF_LINK_GET_NEXT_ID"),
}


def get_next_id(str kind, uint32_t start_id=0):
    """BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID -> the next id after *start_id*, or 0 at the end."""
    cmd, name = _NEXT_ID_COMMANDS[kind]
    cdef int c = cmd
    cdef uint32_t nxt = 0
    cdef int ret
    with nogil:
        ret = bl_get_next_id(c, start_id, &nxt)
    if ret == -ENOENT_:
        return 0
    if ret < 0:
        _raise(name, ret, None)
    return nxt


def obj_get_info_names(fd, uint32_t size, list name_slots, target=None):
    """BPF_OBJ_GET_INFO_BY_FD for info structs that point at name buffers (link info).

    One call: for each ``(ptr_offset, len_offset, capacity)`` in *name_slots*
    a buffer is provided in the info (the caller learns which slots a kind
    has from a first call with none: see :func:`bpfload.link.link_info`).
    Returns ``(info bytes, [names as bytes])``; the lengths in the info are
    what the kernel wrote.
    *fd*: an int or an :class:`FD` (held for the call).
    """
    cdef bytearray buf = bytearray(size)
    cdef uint32_t n = size
    cdef char *p = PyByteArray_AS_STRING(buf)
    cdef list names = []
    cdef bytearray nb
    if name_slots:
        for ptr_off, len_off, cap in name_slots:
            nb = bytearray(cap)
            names.append(nb)
            (<uint64_t *>(p + <Py_ssize_t>ptr_off))[0] = <uint64_t><uintptr_t>PyByteArray_AS_STRING(nb)
            (<uint32_t *>(p + <Py_ssize_t>len_off))[0] = cap
    _get_info(fd, p, &n, target)
    return bytes(buf[:n]), [bytes(x) for x in names]


def raw_tracepoint_open(name, int prog_fd, target=None):
    """BPF_RAW_TRACEPOINT_OPEN -> :class:`FD` (a link-like fd; close detaches)."""
    cdef bytes bname = name.encode() if name is not None else None
    cdef const char *cn = NULL if bname is None else <const char *>bname
    cdef int ret
    with nogil:
        ret = bl_raw_tracepoint_open(cn, prog_fd)
    return _new_fd(ret, "BPF_RAW_TRACEPOINT_OPEN", target, f"raw_tracepoint {name}")


# --------------------------------------------------------------------------
# the map fast path

cdef extern from *:
    """
    /* The common case of MapCore._buf, inlined into lookup/update/delete: an
     * exact bytes object of the right size (its own buffer), or an exact int
     * that fits in one PyLong digit, packed into tmp for sizes 1/2/4/8 (native
     * order, two's complement, as _pack_int).  NULL: not handled here (other
     * types, wrong size, bigger or out-of-range ints); MapCore._buf then does
     * the general conversion and raises the errors.  Python-level API only:
     * no call, no allocation, no refcount change. */
    static inline const char *bl_fast_buf(PyObject *o, Py_ssize_t size, char *tmp)
    {
        long v;
        if (PyBytes_CheckExact(o))
            return PyBytes_GET_SIZE(o) == size ? PyBytes_AS_STRING(o) : NULL;
        if (!PyLong_CheckExact(o))
            return NULL;
    #if PY_VERSION_HEX >= 0x030C0000
        if (!PyUnstable_Long_IsCompact((PyLongObject *)o))
            return NULL;
        v = (long)PyUnstable_Long_CompactValue((PyLongObject *)o);
    #else
        switch (Py_SIZE(o)) {
        case 0: v = 0; break;
        case 1: v = (long)((PyLongObject *)o)->ob_digit[0]; break;
        case -1: v = -(long)((PyLongObject *)o)->ob_digit[0]; break;
        default: return NULL;
        }
    #endif
        switch (size) {
        case 4: {
            uint32_t x = (uint32_t)v;
            if (v < -2147483648L || v > 4294967295L)
                return NULL;
            memcpy(tmp, &x, 4);
            return tmp;
        }
        case 8: {
            uint64_t x = (uint64_t)(int64_t)v;
            memcpy(tmp, &x, 8);
            return tmp;
        }
        case 2: {
            uint16_t x = (uint16_t)v;
            if (v < -32768 || v > 65535)
                return NULL;
            memcpy(tmp, &x, 2);
            return tmp;
        }
        case 1:
            if (v < -128 || v > 255)
                return NULL;
            tmp[0] = (char)(uint8_t)v;
            return tmp;
        }
        return NULL;
    }

    /* True when the calling thread is the only Python thread (of the only
     * interpreter).  Releasing the GIL then lets nothing else run and costs
     * 20-40 ns here (drop_gil + take_gil: two mutexes and a condition
     * variable, ~400 instructions), the largest share of bpfload's own time
     * in an element call.  A thread state is alone in its interpreter's
     * doubly linked list when it has neither prev nor next.  The lists are
     * read without the runtime's lock: a thread state a C thread creates
     * meanwhile (PyGILState_Ensure) waits for the GIL until this one call
     * returns, as it would had it come a moment later.  A free-threaded
     * build always detaches (it has no GIL to keep). */
    static inline int bl_sole_thread(void)
    {
    #ifdef Py_GIL_DISABLED
        return 0;
    #else
        PyThreadState *ts = PyThreadState_Get();
        return ts->prev == NULL && ts->next == NULL
            && PyInterpreterState_Next(PyInterpreterState_Head()) == NULL;
    #endif
    }

    /* One BPF_MAP_*_ELEM command on a held fd (GIL held on entry and on
     * return): the GIL is released around the syscall whenever another
     * Python thread exists, kept when none does (bl_sole_thread). */
    static inline int bl_map_elem_call(int cmd, int fd, const void *key, void *value, __u64 flags)
    {
        int ret;
        if (bl_sole_thread())
            return bl_map_elem(cmd, fd, key, value, flags);
        Py_BEGIN_ALLOW_THREADS
        ret = bl_map_elem(cmd, fd, key, value, flags);
        Py_END_ALLOW_THREADS
        return ret;
    }

    /* to_dict() of a big map, in the order of the dict's own slots.
     *
     * A dump comes in the kernel's order, so each insertion into the new
     * dict's index (8 MB for a million entries) is a random cache and TLB
     * miss.  bl_slot_order() permutes the dump in place (keys, values and,
     * for bytes keys, their hashes: an American flag sort, no second copy of
     * the dump) into the order of the index slots the keys will take, by the
     * top 8 bits of the slot (hash & (2^bits - 1)): the insertions of one
     * bucket stay within 2^(bits - 8) consecutive slots (32 KB of the index
     * for bits = 21), and the permutation writes to 256 places at a time
     * (2,048 places, 11 bits, measured no better: 6 to 11 bits are alike
     * within the noise, 8 lowest in user time).  The hash is CPython's: an unsigned int key is its own
     * value modulo _PyHASH_MODULUS; a bytes key's is _Py_HashBytes (CPython
     * < 3.13 only, BL_BYTES_HASH), computed once here into hs[] (n entries,
     * the caller's) -- the dict gets it through _PyDict_SetItem_KnownHash and
     * does not hash the key again.  -> 1 when permuted, 0 when the dump is
     * in slot order already (an array dumps ascending int keys), -1 when out
     * of memory (the dump is untouched: the caller inserts in dump order). */
    #if PY_VERSION_HEX < 0x030D0000
    #define BL_BYTES_HASH 1
    #define bl_dict_set_hashed(d, k, v, h) _PyDict_SetItem_KnownHash((d), (k), (v), (Py_hash_t)(h))
    #else
    #define BL_BYTES_HASH 0
    #define bl_dict_set_hashed(d, k, v, h) PyDict_SetItem((d), (k), (v))
    #endif

    static inline uint64_t bl_int_hash(const char *p, Py_ssize_t ks)
    {
        uint64_t v;
        switch (ks) {
        case 1: v = *(const uint8_t *)p; break;
        case 2: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
        case 4: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
        default: memcpy(&v, p, 8); break;
        }
        return v % (uint64_t)_PyHASH_MODULUS;
    }

    /* memcpy with the common sizes inlined (the permutation moves each entry once) */
    static inline void bl_copy(char *d, const char *s, Py_ssize_t size)
    {
        switch (size) {
        case 4: memcpy(d, s, 4); break;
        case 8: memcpy(d, s, 8); break;
        case 16: memcpy(d, s, 16); break;
        default: memcpy(d, s, (size_t)size); break;
        }
    }

    #define BL_ORDER_BITS 8
    #define BL_NB (1 << BL_ORDER_BITS)
    static int bl_slot_order(char *kb, char *vb, uint64_t *hs, Py_ssize_t n, Py_ssize_t ks,
                             Py_ssize_t vs, int bits, int by_bytes)
    {
        Py_ssize_t i, j, b, c, t = 0, prev = 0;
        int sh = bits > BL_ORDER_BITS ? bits - BL_ORDER_BITS : 0, ordered = 1;
        uint64_t mask = ((uint64_t)1 << bits) - 1, th = 0, xh;
        /* each bucket's next unplaced entry and end */
        Py_ssize_t *next = calloc(2 * BL_NB, sizeof(Py_ssize_t)), *end = next + BL_NB;
        char *tmp = malloc((size_t)(2 * (ks + vs)) + 1), *tk, *tv, *xk, *xv, *sw;

        if (next == NULL || tmp == NULL) {
            free(next);
            free(tmp);
            return -1;
        }
        tk = tmp;
        tv = tk + ks;
        xk = tv + vs;
        xv = xk + ks;
    #if BL_BYTES_HASH
        if (by_bytes)
            for (i = 0; i < n; i++)
                hs[i] = (uint64_t)_Py_HashBytes(kb + i * ks, ks);
    #endif
    #define BL_BUCKET(h) ((Py_ssize_t)(((h) & mask) >> sh))
    #define BL_HASH_AT(i) (by_bytes ? hs[i] : bl_int_hash(kb + (i) * ks, ks))
        for (i = 0; i < n; i++) {
            c = BL_BUCKET(BL_HASH_AT(i));
            end[c]++;
            ordered &= c >= prev;
            prev = c;
        }
        if (ordered) {
            free(next);
            free(tmp);
            return 0;
        }
        for (b = 0; b < BL_NB; b++) {
            next[b] = t;
            t += end[b];
            end[b] = t;
        }
        for (b = 0; b < BL_NB; b++) {
            while (next[b] < end[b]) {
                i = next[b];
                c = BL_BUCKET(BL_HASH_AT(i));
                if (c == b) {
                    next[b]++;
                    continue;
                }
                /* carry entry i along its cycle (each step puts the carried entry in
                 * its bucket and picks up the one it displaces) until an entry of
                 * bucket b comes round: it goes back into slot i */
                bl_copy(tk, kb + i * ks, ks);
                bl_copy(tv, vb + i * vs, vs);
                if (by_bytes)
                    th = hs[i];
                for (;;) {
                    j = next[c]++;
                    if (j == i)
                        break;
                    bl_copy(xk, kb + j * ks, ks);
                    bl_copy(xv, vb + j * vs, vs);
                    bl_copy(kb + j * ks, tk, ks);
                    bl_copy(vb + j * vs, tv, vs);
                    sw = tk; tk = xk; xk = sw;
                    sw = tv; tv = xv; xv = sw;
                    if (by_bytes) {
                        xh = hs[j];
                        hs[j] = th;
                        th = xh;
                    }
                    c = BL_BUCKET(by_bytes ? th : bl_int_hash(tk, ks));
                }
                bl_copy(kb + i * ks, tk, ks);
                bl_copy(vb + i * vs, tv, vs);
                if (by_bytes)
                    hs[i] = th;
            }
        }
    #undef BL_BUCKET
    #undef BL_HASH_AT
        free(next);
        free(tmp);
        return 1;
    }

    /* A new dict whose table holds n entries without a resize.
     * _PyDict_NewPresized() stops at 2^17 slots, so a million entries would
     * still go through four resizes, each a new table (fresh, page-faulted
     * memory) and a re-insertion of every entry so far.  dict_merge() (behind
     * PyDict_Update) sizes its target once for other->ma_used entries before
     * copying other's live entries: a private dict with no live entry (one
     * int key inserted and deleted, so that its table is a general one) that
     * claims n of them gets the table built and copies nothing.  Checked on
     * CPython 3.9-3.13; elsewhere (and on the free-threaded build) the
     * capped presize. */
    static PyObject *bl_dict_sized(Py_ssize_t n)
    {
    #if PY_VERSION_HEX >= 0x03090000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
        PyObject *d, *tmp, *zero;
        int r;
        if (n <= 87381)     /* the presize's own limit: 2/3 of 2^17 slots */
            return _PyDict_NewPresized(n);
        d = PyDict_New();
        tmp = PyDict_New();
        zero = PyLong_FromLong(0);
        r = (d && tmp && zero) ? PyDict_SetItem(tmp, zero, Py_None) : -1;
        if (r == 0)
            r = PyDict_DelItem(tmp, zero);
        if (r == 0) {
            ((PyDictObject *)tmp)->ma_used = n;
            r = PyDict_Update(d, tmp);
            ((PyDictObject *)tmp)->ma_used = 0;
        }
        Py_XDECREF(tmp);
        Py_XDECREF(zero);
        if (r < 0)
            Py_CLEAR(d);
        return d;
    #else
        return _PyDict_NewPresized(n);
    #endif
    }
    """
    int BL_BYTES_HASH
    int bl_slot_order(char *kb, char *vb, uint64_t *hs, Py_ssize_t n, Py_ssize_t ks,
                      Py_ssize_t vs, int bits, int by_bytes) nogil
    uint64_t bl_int_hash(const char *p, Py_ssize_t ks) nogil
    dict bl_dict_sized(Py_ssize_t n)
    int bl_dict_set_hashed(dict d, object k, object v, uint64_t h) except -1
    const char *bl_fast_buf(object o, Py_ssize_t size, char *tmp)
    int bl_sole_thread()
    int bl_map_elem_call(int cmd, int fd, const void *key, void *value, uint64_t flags)


def _sole_thread():
    """True when the caller is the only Python thread, so that the element calls
    (lookup/update/delete) keep the GIL around their syscall (tests, diagnostics)."""
    return bool(bl_sole_thread())


cpdef object index_int(object obj):
    """*obj* as a Python int when it is an integer, else None.

    An int, or anything with ``__index__`` that is not a byte buffer; NumPy
    integer scalars, which are both, count as integers (``bytes(v)`` of
    one would be v zero bytes, its buffer the wrong size for a smaller key).
    """
    if isinstance(obj, int):
        return obj
    if PyIndex_Check(obj) and (not PyObject_CheckBuffer(obj) or isinstance(obj, _numbers.Integral)):
        return _operator.index(obj)
    return None


cdef inline int _pack_int(object value, Py_ssize_t size, char *out) except -1:
    """Pack a Python int into *size* bytes, native byte order, two's complement."""
    cdef uint64_t u
    cdef int64_t s
    if size == 4 or size == 8 or size == 2 or size == 1:
        if value < 0:
            s = value
            u = <uint64_t>s
            if size < 8 and s < -(<int64_t>1 << (size * 8 - 1)):
                raise OverflowError(f"{value} does not fit in {size} bytes")
        else:
            u = value
            if size < 8 and u >> (size * 8):
                raise OverflowError(f"{value} does not fit in {size} bytes")
        if size == 8:
            memcpy(out, &u, 8)
        elif size == 4:
            (<uint32_t *>out)[0] = <uint32_t>u
        elif size == 2:
            (<uint16_t *>out)[0] = <uint16_t>u
        else:
            (<uint8_t *>out)[0] = <uint8_t>u
        return 0
    if size > TMP_KEY:
        raise ValueError(f"an int cannot be packed into {size} bytes here; pass bytes")
    b = value.to_bytes(size, _BYTEORDER, signed=value < 0)
    memcpy(out, PyBytes_AS_STRING(b), size)
    return 0





cdef class MapCore:
    """Fast per-element and bulk access to one map fd (base of :class:`bpfload.Map`).

    Keys and values are bytes-like objects of exactly ``key_size`` /
    ``value_size`` bytes, or ints packed to that size in native byte order.
    Per-CPU maps read as a list of one value per possible CPU; map-in-map
    and program-array maps take an fd (or an object with ``fd``) on update
    and give the kernel object id on lookup.
    """
    cdef readonly FD _fdobj      # the fd owner; calls hold a use of it around bpf(2)
    cdef readonly unsigned int type
    cdef readonly unsigned int key_size
    cdef readonly unsigned int value_size
    cdef readonly unsigned int max_entries
    cdef readonly unsigned int flags
    cdef public object name
    cdef int _kind
    cdef int _ncpu
    cdef Py_ssize_t _stride      # per-CPU slot size: round_up(value_size, 8)
    cdef Py_ssize_t _vsize       # bytes the kernel reads/writes for one value

    def _init_core(self, FD fdobj, unsigned int map_type, unsigned int key_size,
                   unsigned int value_size, unsigned int max_entries, unsigned int flags, name):
        fdobj.fileno()
        self._fdobj = fdobj
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self._ncpu = 1
        self._stride = value_size
        self._vsize = value_size
        if map_type in (T_PERCPU_HASH, T_PERCPU_ARRAY, T_LRU_PERCPU_HASH, T_PERCPU_CGROUP_STORAGE):
            self._kind = KIND_PERCPU
            self._ncpu = _ncpus()
            self._stride = (value_size + 7) & ~7
            self._vsize = self._stride * self._ncpu
        elif map_type in (T_ARRAY_OF_MAPS, T_HASH_OF_MAPS, T_PROG_ARRAY):
            self._kind = KIND_FDVALUE
        elif map_type in (T_QUEUE, T_STACK, T_BLOOM_FILTER):
            self._kind = KIND_KEYLESS
        else:
            self._kind = KIND_PLAIN

    # -- state --------------------------------------------------------------
    @property
    def fd(self):
        """The map's fd number (raises :class:`bpfload.MapClosedError` once closed)."""
        self._check()
        return self._fdobj._fd

    @property
    def closed(self):
        return self._fdobj is None or self._fdobj._fd < 0

    @property
    def percpu(self):
        """True for per-CPU maps (values are one slot per possible CPU)."""
        return self._kind == KIND_PERCPU

    @property
    def ncpus(self):
        """Number of per-CPU slots in a value (1 for other maps)."""
        return self._ncpu

    @property
    def value_stride(self):
        """Bytes one value occupies in a bulk buffer (per-CPU: ncpus * round_up(value_size, 8))."""
        return self._vsize

    def close(self):
        """Close the map (idempotent).

        New calls raise :class:`bpfload.MapClosedError` at once; calls already
        in flight in other threads finish on this map, and the last of them
        releases the fd number (see :class:`FD`).
        """
        if self._fdobj is not None:
            self._fdobj.close()

    cdef int _closed(self) except -1:
        raise _errors.MapClosedError(f"map {self.name!r} is closed")

    cdef inline int _check(self) except -1:
        if self._fdobj is None or self._fdobj._fd < 0:
            self._closed()
        return 0

    cdef inline int _use(self) except -1:
        """The fd number, held (use count) until :meth:`_done`; GIL held.

        Taken after every conversion that could run Python code, right before
        the GIL is released, so that a concurrent close() cannot free the
        number (and the kernel hand it to another object) under the call.
        """
        cdef FD f = self._fdobj
        if f is None or f._fd < 0:
            self._closed()
        f._users += 1
        return f._fd

    cdef inline int _hold(self) noexcept:
        """As :meth:`_use` without raising: -1 (nothing taken) once closed.

        For the element calls, which must give back a key's buffer before
        raising (no ``try`` on their common path: its exception-state save
        and restore cost more than the rest of the hold).
        """
        cdef FD f = self._fdobj
        if f is None or f._fd < 0:
            return -1
        f._users += 1
        return f._fd

    cdef inline void _done(self) noexcept:
        self._fdobj._release()

    # -- packing ------------------------------------------------------------
    cdef const char *_buf(self, object obj, Py_ssize_t size, char *tmp, Py_buffer *view,
                          bint *release, str what) except NULL:
        release[0] = False
        if type(obj) is bytes:
            if PyBytes_GET_SIZE(obj) != size:
                raise ValueError(f"map {self.name!r}: {what} is {PyBytes_GET_SIZE(obj)} bytes, "
                                 f"expected {size}")
            return PyBytes_AS_STRING(obj)
        iv = index_int(obj)
        if iv is not None:
            if size > TMP_KEY or size == 0:
                raise ValueError(f"map {self.name!r}: {what} of {size} bytes cannot be an int")
            try:
                _pack_int(iv, size, tmp)
            except OverflowError:
                raise _errors.IntRangeError(f"map {self.name!r}: {what} {iv} does not fit in the "
                                 f"{what} size of {size} bytes") from None
            return tmp
        try:
            PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
        except TypeError:
            raise TypeError(f"map {self.name!r}: {what} must be bytes-like or int, "
                            f"not {type(obj).__name__}") from None
        except BufferError as e:
            raise BufferError(f"map {self.name!r}: {what}: {e} (pass a C-contiguous "
                              "bytes-like object)") from None
        release[0] = True
        if view.len != size:
            PyBuffer_Release(view)
            release[0] = False
            raise ValueError(f"map {self.name!r}: {what} is {view.len} bytes, expected {size}")
        return <const char *>view.buf

    cdef const char *_value_buf(self, object value, char *tmp, Py_buffer *view, bint *release,
                                Py_buffer *kview, bint krel) except NULL:
        """update()'s general value conversion: releases the key's buffer if it fails."""
        try:
            return self._buf(value, self._vsize, tmp, view, release, "value")
        except BaseException:
            if krel:
                PyBuffer_Release(kview)
            raise

    cdef object _encode_value(self, object value):
        """A value object -> bytes of _vsize (per-CPU lists, fd values)."""
        cdef bytearray out
        cdef Py_ssize_t i
        if self._kind == KIND_FDVALUE:
            if index_int(value) is not None:
                value = index_int(value)
            if not isinstance(value, int):
                value = getattr(value, "fd", value)
            if not isinstance(value, int) and hasattr(value, "fileno"):
                value = value.fileno()   # an FD owner (program fds are FD objects)
            if not isinstance(value, int):
                raise TypeError(f"map {self.name!r}: value must be a map/program or an fd")
            if not -2**31 <= value < 2**31:
                raise _errors.IntRangeError(f"map {self.name!r}: value {value} is not a file descriptor")
            return (<int>value).to_bytes(4, _BYTEORDER, signed=True)
        if self._kind == KIND_PERCPU:
            out = bytearray(self._vsize)
            if isinstance(value, (list, tuple)):
                if len(value) != self._ncpu:
                    raise ValueError(f"map {self.name!r}: per-CPU value needs {self._ncpu} "
                                     f"entries (possible CPUs), got {len(value)}")
                for i in range(self._ncpu):
                    out[i * self._stride:i * self._stride + self.value_size] = \
                        self._one_value(value[i])
            else:
                one = self._one_value(value)
                for i in range(self._ncpu):
                    out[i * self._stride:i * self._stride + self.value_size] = one
            return out
        return value

    cdef bytes _one_value(self, object v):
        cdef char tmp[TMP_KEY]
        iv = index_int(v)
        if iv is not None:
            if self.value_size > TMP_KEY:
                raise ValueError(f"map {self.name!r}: value of {self.value_size} bytes cannot be an int")
            try:
                _pack_int(iv, self.value_size, tmp)
            except OverflowError:
                raise _errors.IntRangeError(f"map {self.name!r}: value {iv} does not fit in the value size "
                                 f"of {self.value_size} bytes") from None
            return PyBytes_FromStringAndSize(tmp, self.value_size)
        try:
            b = bytes(memoryview(v))   # not bytes(v): an object with __index__ gives v zero bytes
        except TypeError:
            raise TypeError(f"map {self.name!r}: value must be bytes-like or int, "
                            f"not {type(v).__name__}") from None
        if len(b) != self.value_size:
            raise ValueError(f"map {self.name!r}: value is {len(b)} bytes, expected {self.value_size}")
        return b

    cdef object _decode_value(self, bytes raw):
        cdef Py_ssize_t i
        cdef const char *p
        if self._kind == KIND_PERCPU:
            p = PyBytes_AS_STRING(raw)
            return [PyBytes_FromStringAndSize(p + i * self._stride, self.value_size)
                    for i in range(self._ncpu)]
        if self._kind == KIND_FDVALUE:
            return (<const uint32_t *>PyBytes_AS_STRING(raw))[0]
        return raw

    # -- single element -------------------------------------------------------
    def lookup(self, key, uint64_t flags=0):
        """Value for *key*, or None when absent.

        Per-CPU maps: a list of one bytes value per possible CPU.  Map-in-map
        and program arrays: the id of the stored map/program (an int).
        *flags*: ``BPF_F_LOCK`` to read a spin-locked value consistently.
        """
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release = False
        cdef const char *k
        cdef int ret
        cdef int fd
        cdef bytes out
        cdef char *v
        self._check()
        if self._kind == KIND_KEYLESS:
            raise TypeError(f"map {self.name!r} has no keys: use peek()/pop()/push()")
        k = bl_fast_buf(key, self.key_size, tmp)
        if k == NULL:
            k = self._buf(key, self.key_size, tmp, &view, &release, "key")
        if self.key_size == 0:
            k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        out = PyBytes_FromStringAndSize(NULL, self._vsize)
        v = PyBytes_AS_STRING(out)
        fd = self._hold()
        if fd < 0:
            if release:
                PyBuffer_Release(&view)
            self._closed()
        ret = bl_map_elem_call(BPF_MAP_LOOKUP_ELEM, fd, k, v, flags)  # GIL: see bl_sole_thread
        self._done()
        if release:
            PyBuffer_Release(&view)
        if ret < 0:
            if ret == -ENOENT_:
                return None
            _raise("BPF_MAP_LOOKUP_ELEM", ret, self.name, True)
        if self._kind == KIND_PLAIN:
            return out
        return self._decode_value(out)

    def update(self, key, value, uint64_t flags=0):
        """Set *key* to *value*; *flags*: ``BPF_ANY`` (0), ``BPF_NOEXIST``, ``BPF_EXIST``, ``BPF_F_LOCK``."""
        cdef char ktmp[TMP_KEY]
        cdef char vtmp[TMP_KEY]
        cdef Py_buffer kview, vview
        cdef bint krel = False, vrel = False
        cdef const char *k
        cdef const char *v
        cdef int ret
        cdef int fd
        self._check()
        if self._kind != KIND_PLAIN:
            if self._kind == KIND_KEYLESS:
                raise TypeError(f"map {self.name!r} has no keys: use push()")
            value = self._encode_value(value)
        k = bl_fast_buf(key, self.key_size, ktmp)
        if k == NULL:
            k = self._buf(key, self.key_size, ktmp, &kview, &krel, "key")
        if self.key_size == 0:
            k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        v = bl_fast_buf(value, self._vsize, vtmp)
        if v == NULL:
            v = self._value_buf(value, vtmp, &vview, &vrel, &kview, krel)
        fd = self._hold()
        if fd < 0:
            if krel:
                PyBuffer_Release(&kview)
            if vrel:
                PyBuffer_Release(&vview)
            self._closed()
        ret = bl_map_elem_call(BPF_MAP_UPDATE_ELEM, fd, k, <void *>v, flags)  # GIL: bl_sole_thread
        self._done()
        if krel:
            PyBuffer_Release(&kview)
        if vrel:
            PyBuffer_Release(&vview)
        if ret < 0:
            if ret == -E2BIG_ and self.type in _INDEXED_TYPES:
                raise _errors.MapIndexError("BPF_MAP_UPDATE_ELEM", E2BIG_, self.name,
                                            f"index beyond max_entries {self.max_entries}")
            _raise("BPF_MAP_UPDATE_ELEM", ret, self.name, True)

    def delete(self, key):
        """Delete *key*; :class:`bpfload.MapKeyError` (a KeyError) when absent."""
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release = False
        cdef const char *k
        cdef int ret
        cdef int fd
        self._check()
        if self._kind == KIND_KEYLESS:
            raise TypeError(f"map {self.name!r} has no keys: use pop()")
        k = bl_fast_buf(key, self.key_size, tmp)
        if k == NULL:
            k = self._buf(key, self.key_size, tmp, &view, &release, "key")
        if self.key_size == 0:
            k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        fd = self._hold()
        if fd < 0:
            if release:
                PyBuffer_Release(&view)
            self._closed()
        ret = bl_map_elem_call(BPF_MAP_DELETE_ELEM, fd, k, NULL, 0)  # GIL: see bl_sole_thread
        self._done()
        if release:
            PyBuffer_Release(&view)
        if ret < 0:
            _raise("BPF_MAP_DELETE_ELEM", ret, self.name, True)

    def lookup_and_delete(self, key, uint64_t flags=0):
        """Atomically read and remove *key* (hash maps; queue/stack use :meth:`pop`).

        Raises :class:`bpfload.MapKeyError` when absent.
        """
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release = False
        cdef const char *k = NULL
        cdef int ret
        cdef bytes out
        cdef char *v
        cdef int fd
        self._check()
        if self._kind != KIND_KEYLESS:
            k = self._buf(key, self.key_size, tmp, &view, &release, "key")
            if self.key_size == 0:
                k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        out = PyBytes_FromStringAndSize(NULL, self._vsize)
        v = PyBytes_AS_STRING(out)
        try:
            fd = self._use()
        except BaseException:
            if release:
                PyBuffer_Release(&view)
            raise
        with nogil:
            ret = bl_map_lookup_and_delete(fd, k, v, flags)
        self._done()
        if release:
            PyBuffer_Release(&view)
        if ret < 0:
            _raise("BPF_MAP_LOOKUP_AND_DELETE_ELEM", ret, self.name, True)
        return out if self._kind == KIND_PLAIN or self._kind == KIND_KEYLESS else self._decode_value(out)

    def _keyless(self, int cmd, value, uint64_t flags):
        """Queue/stack/bloom: cmd 0 = peek/lookup(value), 1 = push, 2 = pop."""
        cdef bytes out
        cdef char *v
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release = False
        cdef const char *cv
        cdef int ret
        cdef int fd
        self._check()
        if self._kind != KIND_KEYLESS:
            raise TypeError(f"map {self.name!r} has keys: push()/pop()/peek() are for "
                            "queue, stack and bloom filter maps")
        if cmd == 0 and (value is None) == (self.type == T_BLOOM_FILTER):
            # A queue/stack lookup writes the head into the value buffer (the
            # caller's bytes); a bloom lookup reads it (peek() would test garbage).
            raise TypeError(f"map {self.name!r}: " + ("a bloom filter has no peek(): test "
                            "membership with `value in map`" if value is None else
                            "`value in map` is for bloom filters: use peek()"))
        if cmd == 0 and value is None:
            out = PyBytes_FromStringAndSize(NULL, self._vsize)
            v = PyBytes_AS_STRING(out)
            fd = self._use()
            with nogil:
                ret = bl_map_lookup(fd, NULL, v, flags)
            self._done()
            if ret == -ENOENT_:
                return None
            if ret < 0:
                _raise("BPF_MAP_LOOKUP_ELEM", ret, self.name, True)
            return out
        if cmd == 2:
            out = PyBytes_FromStringAndSize(NULL, self._vsize)
            v = PyBytes_AS_STRING(out)
            fd = self._use()
            with nogil:
                ret = bl_map_lookup_and_delete(fd, NULL, v, flags)
            self._done()
            if ret == -ENOENT_:
                return None
            if ret < 0:
                _raise("BPF_MAP_LOOKUP_AND_DELETE_ELEM", ret, self.name, True)
            return out
        cv = self._buf(value, self._vsize, tmp, &view, &release, "value")
        try:
            fd = self._use()
        except BaseException:
            if release:
                PyBuffer_Release(&view)
            raise
        with nogil:
            if cmd == 0:  # bloom filter membership: value in the value field
                ret = bl_map_lookup(fd, NULL, <void *>cv, flags)
            else:
                ret = bl_map_update(fd, NULL, cv, flags)
        self._done()
        if release:
            PyBuffer_Release(&view)
        if cmd == 0:
            if ret == -ENOENT_:
                return False
            if ret < 0:
                _raise("BPF_MAP_LOOKUP_ELEM", ret, self.name, True)
            return True
        if ret < 0:
            _raise("BPF_MAP_UPDATE_ELEM", ret, self.name, True)

    def next_key(self, key=None):
        """BPF_MAP_GET_NEXT_KEY: the key after *key* (the first key for None), or None at the end."""
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release = False
        cdef const char *k = NULL
        cdef bytes out
        cdef int ret
        cdef char *nk
        cdef int fd
        self._check()
        if key is not None:
            k = self._buf(key, self.key_size, tmp, &view, &release, "key")
            if self.key_size == 0:
                k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        out = PyBytes_FromStringAndSize(NULL, self.key_size)
        nk = PyBytes_AS_STRING(out)
        try:
            fd = self._use()
        except BaseException:
            if release:
                PyBuffer_Release(&view)
            raise
        with nogil:
            ret = bl_map_get_next_key(fd, k, nk)
        self._done()
        if release:
            PyBuffer_Release(&view)
        if ret == -ENOENT_:
            return None
        if ret < 0:
            _raise("BPF_MAP_GET_NEXT_KEY", ret, self.name, True)
        return out

    def sum(self, key):
        """Sum a per-CPU counter across CPUs in one call.

        For ``value_size`` 1/2/4/8 returns an int (unsigned); for larger
        values made of u64 fields returns a tuple with one sum per field.
        Also works on non-per-CPU maps (the value itself).  None when absent.
        """
        cdef char tmp[TMP_KEY]
        cdef Py_buffer view
        cdef bint release
        cdef const char *k
        cdef int ret
        cdef char *v
        cdef uint64_t acc
        cdef Py_ssize_t i, f, nf
        cdef int fd
        self._check()
        k = self._buf(key, self.key_size, tmp, &view, &release, "key")
        if self.key_size == 0:
            k = NULL  # the UAPI wants no key pointer when key_size is 0 (ringbuf)
        v = <char *>malloc(self._vsize)
        if v == NULL:
            if release:
                PyBuffer_Release(&view)
            raise MemoryError()
        try:
            try:
                fd = self._use()
            except BaseException:
                if release:
                    PyBuffer_Release(&view)
                raise
            with nogil:
                ret = bl_map_lookup(fd, k, v, 0)
            self._done()
            if release:
                PyBuffer_Release(&view)
            if ret == -ENOENT_:
                return None
            if ret < 0:
                _raise("BPF_MAP_LOOKUP_ELEM", ret, self.name, True)
            if self.value_size in (1, 2, 4, 8):
                acc = 0
                for i in range(self._ncpu):
                    acc += load_uint(v + i * self._stride, self.value_size)
                return acc
            if self.value_size % 8:
                raise ValueError(f"map {self.name!r}: sum() needs a value of 1, 2, 4 or 8 bytes, "
                                 f"or of u64 fields; value_size is {self.value_size}")
            nf = self.value_size // 8
            out = []
            for f in range(nf):
                acc = 0
                for i in range(self._ncpu):
                    acc += (<uint64_t *>(v + i * self._stride))[f]
                out.append(acc)
            return tuple(out)
        finally:
            free(v)

    # -- bulk -----------------------------------------------------------------
    cdef int _dump(self, int cmd, char *keys, char *values, Py_ssize_t capacity,
                   Py_ssize_t chunk, Py_ssize_t *total) except -1:
        """Fill keys/values (capacity entries) with batch lookups; ret 1 if batch unsupported."""
        cdef Py_ssize_t tok_size = max(self.key_size, 8)
        cdef char *tokens = <char *>malloc(tok_size * 2)
        cdef char *in_tok = NULL
        cdef char *out_tok
        cdef uint32_t n
        cdef int ret
        cdef bint first = True
        cdef int fd
        if tokens == NULL:
            raise MemoryError()
        total[0] = 0
        try:
            fd = self._use()
        except BaseException:
            free(tokens)
            raise
        try:
            while total[0] < capacity:
                n = <uint32_t>min(chunk, capacity - total[0])
                out_tok = tokens + (tok_size if in_tok == tokens else 0)
                with nogil:
                    ret = bl_map_batch(cmd, fd, in_tok, out_tok,
                                       keys + total[0] * self.key_size,
                                       values + total[0] * self._vsize, &n, 0)
                if ret < 0 and ret != -ENOENT_:
                    if first and (ret == -ENOTSUPP_ or ret == -EOPNOTSUPP_ or ret == -EINVAL_):
                        return 1
                    if ret == -ENOSPC_ and chunk < capacity - total[0]:
                        chunk = min(chunk * 2, capacity)  # a bucket larger than the chunk
                        continue
                    _raise(_COMMANDS[cmd], ret, self.name, True)
                first = False
                total[0] += n
                if ret == -ENOENT_:
                    break
                in_tok = out_tok
            return 0
        finally:
            self._done()
            free(tokens)

    cdef int _dump_slow(self, bint delete, char *keys, char *values, Py_ssize_t capacity,
                        Py_ssize_t *total) except -1:
        """Per-element fallback: get_next_key + lookup (+ delete), GIL released."""
        cdef int ret = 0
        cdef char *prev = NULL
        cdef char *cur
        cdef Py_ssize_t i = 0
        cdef int fd = self._use()
        cdef Py_ssize_t ks = self.key_size, vs = self._vsize
        with nogil:
            while i < capacity:
                cur = keys + i * ks
                # Continue after the previous key even when it was just deleted: a
                # hash restarts from its first key, an array goes on to the next
                # index (restarting from NULL would spin forever on an empty slot 0).
                ret = bl_map_get_next_key(fd, prev, cur)
                if ret < 0:
                    break
                if delete:
                    ret = bl_map_lookup_and_delete(fd, cur, values + i * vs, 0)
                    if ret == -ENOTSUPP_ or ret == -EOPNOTSUPP_ or ret == -EINVAL_:
                        ret = bl_map_lookup(fd, cur, values + i * vs, 0)
                        if ret >= 0:
                            ret = bl_map_delete(fd, cur)
                else:
                    ret = bl_map_lookup(fd, cur, values + i * vs, 0)
                if ret == -ENOENT_:      # empty slot, or deleted under us: skip it
                    prev = cur
                    continue
                if ret < 0:
                    break
                prev = cur
                i += 1
        self._done()
        total[0] = i
        if ret < 0 and ret != -ENOENT_:
            _raise("BPF_MAP_LOOKUP_ELEM" if not delete else "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
                   ret, self.name, True)
        return 0

    def lookup_batch(self, keys_out=None, values_out=None, *, Py_ssize_t chunk=0,
                     bint delete=False):
        """Read the whole map with BPF_MAP_LOOKUP_BATCH into contiguous buffers.

        Returns ``(keys, values, count)``: *count* entries of ``key_size``
        bytes in *keys* and ``value_stride`` bytes in *values*.  Pass
        preallocated writable buffers (``keys_out``/``values_out``, at least
        ``max_entries`` entries each) to avoid allocation when polling;
        otherwise new bytearrays are returned, trimmed to *count*.  *chunk*
        is the batch size per syscall (default: the whole map).  With
        ``delete=True`` this is BPF_MAP_LOOKUP_AND_DELETE_BATCH.  Map types
        without batch support fall back to a per-element loop with the same
        result.

        A result is never partial: when buffers smaller than ``max_entries``
        fill up while the map holds more entries, :class:`bpfload.MapError`
        (errno ENOSPC) is raised, its ``count`` attribute saying how many
        entries the buffers hold (with ``delete=True`` those are already
        deleted from the map).  Raises :class:`bpfload.MapClosedError`
        when closed, :class:`bpfload.NotSupportedError` for maps without
        keys, ValueError for a missing buffer, and the
        :class:`bpfload.MapError` of a failing lookup.  Needs Linux 5.6 for
        the batch commands (older kernels take the per-element path).
        """
        cdef Py_ssize_t cap = self.max_entries
        cdef Py_ssize_t total = 0
        cdef _View kv, vv
        cdef bint own = keys_out is None
        cdef int cmd = BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else BPF_MAP_LOOKUP_BATCH
        self._check()
        if self._kind == KIND_KEYLESS or self.key_size == 0:
            raise _errors.NotSupportedError(_COMMANDS[cmd], ENOTSUPP_, self.name,
                                            "maps without keys (queue/stack/bloom/ringbuf) "
                                            "have nothing to batch over")
        if own and values_out is not None:
            raise ValueError("keys_out is required with values_out")
        if own:
            keys_out = bytearray(cap * self.key_size)
            values_out = bytearray(cap * self._vsize)
        elif values_out is None:
            raise ValueError("values_out is required with keys_out")
        kv = _View(keys_out, True, f"map {self.name!r}: keys_out")
        vv = _View(values_out, True, f"map {self.name!r}: values_out")
        cap = min(kv.view.len // self.key_size if self.key_size else 0, vv.view.len // self._vsize)
        if chunk <= 0:
            chunk = cap if cap > 0 else 1
        try:
            if cap > 0 and self._dump(cmd, <char *>kv.view.buf, <char *>vv.view.buf, cap, chunk,
                                      &total) == 1:
                self._dump_slow(delete, <char *>kv.view.buf, <char *>vv.view.buf, cap, &total)
        except _errors.MapError as e:
            if e.errno != ENOSPC_:
                raise
            # the kernel's ENOSPC: the next hash bucket is larger than the room left
            self._raise_partial(cmd, total, e)
        if total == cap and cap < self.max_entries:
            self._check_drained(cmd, <char *>kv.view.buf, total, own)
        del kv, vv
        if own:
            del keys_out[total * self.key_size:]
            del values_out[total * self._vsize:]
        return keys_out, values_out, total

    cdef int _check_drained(self, int cmd, char *keys, Py_ssize_t total, bint own) except -1:
        """Raise when buffers of *total* entries filled up and the map holds a key after them.

        One BPF_MAP_GET_NEXT_KEY after the last key returned (from the start
        when nothing fit): a hash restarts from its first key when that key
        was deleted (drain), so any key left in the map counts as "more".
        """
        cdef int ret, fd
        cdef char *nxt = <char *>malloc(self.key_size)
        if nxt == NULL:
            raise MemoryError()
        try:
            fd = self._use()
            with nogil:
                ret = bl_map_get_next_key(fd, keys + (total - 1) * self.key_size if total else NULL,
                                          nxt)
            self._done()
        finally:
            free(nxt)
        if ret == -ENOENT_:
            return 0
        if ret < 0:
            _raise("BPF_MAP_GET_NEXT_KEY", ret, self.name, True)
        self._raise_partial(cmd, total, None)

    cdef int _raise_partial(self, int cmd, Py_ssize_t total, object cause) except -1:
        """MapError (ENOSPC) for buffers that filled up before the map was read whole."""
        e = _errors.from_errno(
            _COMMANDS[cmd], ENOSPC_, self.name,
            f"the buffers hold {total} entries and the map has more (max_entries "
            f"{self.max_entries}): pass buffers of max_entries entries"
            + ("; the entries read are in the buffers and deleted from the map"
               if cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH else ""), is_map=True)
        e.count = total
        raise e from cause

    def lookup_and_delete_batch(self, keys_out=None, values_out=None, *, Py_ssize_t chunk=0):
        """Drain the map: :meth:`lookup_batch` with ``delete=True``."""
        return self.lookup_batch(keys_out, values_out, chunk=chunk, delete=True)

    def update_batch(self, keys, values, uint64_t flags=0):
        """BPF_MAP_UPDATE_BATCH from contiguous buffers.

        *keys*: n * ``key_size`` bytes; *values*: n * ``value_stride`` bytes
        (per-CPU: every CPU's slot; map-in-map/prog arrays: n native ints,
        fds).  Returns n.  Falls back to a per-element loop where the kernel
        lacks the batch command, and for ``BPF_NOEXIST``/``BPF_EXIST``
        (which the kernel's batch update refuses).  Stops at the first
        element the kernel refuses and raises saying how many were written.
        """
        cdef _View kv, vv
        cdef uint32_t n, done
        cdef Py_ssize_t count, i
        cdef int ret
        cdef int fd
        cdef char *kp
        cdef char *vp
        self._check()
        kv = _View(keys, False, f"map {self.name!r}: keys")
        vv = _View(values, False, f"map {self.name!r}: values")
        if self.key_size == 0 or kv.view.len % self.key_size:
            raise ValueError(f"map {self.name!r}: keys buffer of {kv.view.len} bytes is not a "
                             f"multiple of key_size {self.key_size}")
        count = kv.view.len // self.key_size
        if vv.view.len != count * self._vsize:
            raise ValueError(f"map {self.name!r}: {count} keys need {count * self._vsize} value "
                             f"bytes ({self._vsize} each), got {vv.view.len}")
        if count == 0:
            return 0
        n = <uint32_t>count
        kp = <char *>kv.view.buf
        vp = <char *>vv.view.buf
        ret = -EOPNOTSUPP_
        fd = self._use()
        try:
            ret = self._update_batch(fd, kp, vp, count, &n, flags)
        finally:
            self._done()
        if ret < 0 and n >= count:
            n = 0  # refused before the first element: the kernel left count as it was
        if ret < 0:
            _raise("BPF_MAP_UPDATE_BATCH", ret, self.name, True,
                   f"{n} of {count} elements were written before the failure")
        return count

    cdef int _update_batch(self, int fd, char *kp, char *vp, Py_ssize_t count, uint32_t *np,
                           uint64_t flags) noexcept:
        """update_batch's syscalls on a held *fd* -> ret (count written in *np)."""
        cdef int ret = -EOPNOTSUPP_
        cdef uint32_t n = np[0]
        cdef Py_ssize_t i
        if not (flags & ~(<uint64_t>4)):
            # the kernel's batch update takes no elem_flags but BPF_F_LOCK (4),
            # although the UAPI documents BPF_NOEXIST/BPF_EXIST: those go
            # straight to the per-element loop below
            with nogil:
                ret = bl_map_batch(BPF_MAP_UPDATE_BATCH, fd, NULL, NULL, kp, vp, &n, flags)
        if ret == -ENOTSUPP_ or ret == -EOPNOTSUPP_ or (ret == -EINVAL_ and n == 0 and flags == 0):
            i = 0
            with nogil:
                while i < count:
                    ret = bl_map_update(fd, kp + i * self.key_size, vp + i * self._vsize, flags)
                    if ret < 0:
                        break
                    i += 1
            n = <uint32_t>i
        np[0] = n
        return ret

    def delete_batch(self, keys):
        """BPF_MAP_DELETE_BATCH for n * ``key_size`` bytes of keys; returns n.

        Stops at the first key that is absent and raises
        :class:`bpfload.MapKeyError` saying how many were deleted.
        """
        cdef _View kv
        cdef uint32_t n
        cdef Py_ssize_t count, i
        cdef int ret
        cdef int fd
        cdef char *kp
        self._check()
        kv = _View(keys, False, f"map {self.name!r}: keys")
        if self.key_size == 0 or kv.view.len % self.key_size:
            raise ValueError(f"map {self.name!r}: keys buffer of {kv.view.len} bytes is not a "
                             f"multiple of key_size {self.key_size}")
        count = kv.view.len // self.key_size
        if count == 0:
            return 0
        n = <uint32_t>count
        kp = <char *>kv.view.buf
        fd = self._use()
        with nogil:
            ret = bl_map_batch(BPF_MAP_DELETE_BATCH, fd, NULL, NULL, kp, NULL, &n, 0)
            if ret == -ENOTSUPP_ or ret == -EOPNOTSUPP_:
                i = 0
                while i < count:
                    ret = bl_map_delete(fd, kp + i * self.key_size)
                    if ret < 0:
                        break
                    i += 1
                n = <uint32_t>i
        self._done()
        if ret < 0 and n >= count:
            n = 0  # refused before the first key: the kernel left count as it was
        if ret == -ENOENT_:  # documented above; errors.from_errno maps only *_ELEM to it
            raise _errors.MapKeyError("BPF_MAP_DELETE_BATCH", ENOENT_, self.name,
                                      f"{n} of {count} keys were deleted before an absent one")
        if ret < 0:
            _raise("BPF_MAP_DELETE_BATCH", ret, self.name, True,
                   f"{n} of {count} keys were deleted before the failure")
        return count

    cdef Py_ssize_t _dump_raw(self, char **keys, char **values) except -1:
        """The whole map into two new malloc'd buffers (the caller frees both).

        What :meth:`lookup_batch` does without Python buffers: no zero-filled
        bytearrays to allocate and trim, one BPF_MAP_LOOKUP_BATCH of the whole
        map (``_dump``), the per-element loop where the kernel has no batch
        command (``_dump_slow``).  Returns the number of entries.
        """
        cdef Py_ssize_t cap = self.max_entries
        cdef Py_ssize_t total = 0
        cdef char *kp
        cdef char *vp
        self._check()
        if self._kind == KIND_KEYLESS or self.key_size == 0:
            raise _errors.NotSupportedError("BPF_MAP_LOOKUP_BATCH", ENOTSUPP_, self.name,
                                            "maps without keys (queue/stack/bloom/ringbuf) "
                                            "have nothing to batch over")
        kp = <char *>malloc(max(cap * self.key_size, 1))
        vp = <char *>malloc(max(cap * self._vsize, 1))
        if kp == NULL or vp == NULL:
            free(kp)
            free(vp)
            raise MemoryError()
        try:
            if cap > 0 and self._dump(BPF_MAP_LOOKUP_BATCH, kp, vp, cap, cap, &total) == 1:
                self._dump_slow(False, kp, vp, cap, &total)
        except BaseException:
            free(kp)
            free(vp)
            raise
        keys[0] = kp
        values[0] = vp
        return total

    cdef object _value_at(self, const char *p, bint as_int):
        """One value of a dump buffer as :meth:`lookup` returns it (ints: unsigned native)."""
        cdef list out
        cdef Py_ssize_t c
        if self._kind == KIND_FDVALUE:
            return PyLong_FromUnsignedLong((<const uint32_t *>p)[0])
        if self._kind == KIND_PERCPU:
            out = [None] * self._ncpu
            for c in range(self._ncpu):
                out[c] = (PyLong_FromUnsignedLongLong(load_uint(p + c * self._stride, self.value_size))
                          if as_int else PyBytes_FromStringAndSize(p + c * self._stride, self.value_size))
            return out
        if as_int:
            return PyLong_FromUnsignedLongLong(load_uint(p, self.value_size))
        return PyBytes_FromStringAndSize(p, self._vsize)

    def items(self):
        """Every ``(key, value)`` pair, read with batch lookups (one list, built in C).

        Values are decoded as by :meth:`lookup` (per-CPU lists, ids for
        map-in-map).  For a dict, :meth:`to_dict` is faster than
        ``dict(m.items())``.
        """
        cdef char *kb = NULL
        cdef char *vb = NULL
        cdef Py_ssize_t n, i
        cdef Py_ssize_t ks = self.key_size, vs = self._vsize
        cdef const char *kp
        cdef const char *vp
        cdef list out
        n = self._dump_raw(&kb, &vb)
        kp = kb
        vp = vb
        try:
            out = [None] * n
            if self._kind == KIND_PLAIN:
                for i in range(n):
                    t = (PyBytes_FromStringAndSize(kp, ks), PyBytes_FromStringAndSize(vp, vs))
                    # A tuple of two bytes cannot be in a cycle: untrack it now (the
                    # collector would at its next pass) so that a big dump does not
                    # run the collector over a million fresh tuples.
                    PyObject_GC_UnTrack(<void *>t)
                    out[i] = t
                    kp += ks
                    vp += vs
            else:
                for i in range(n):
                    out[i] = (PyBytes_FromStringAndSize(kp, ks), self._value_at(vp, False))
                    kp += ks
                    vp += vs
            return out
        finally:
            free(kb)
            free(vb)

    def to_dict(self, *, bint int_keys=False, bint int_values=False):
        """The whole map as a new dict ``{key: value}``, built in C from one batch dump.

        Equal to ``dict(m.items())``, without the list of tuples: one
        BPF_MAP_LOOKUP_BATCH of the whole map (the per-element loop where the
        kernel has none), then a dict presized to the entry count, filled
        directly.  Keys and values are bytes, values decoded as by
        :meth:`lookup` (per-CPU lists, ids for map-in-map and program
        arrays).  *int_keys* / *int_values*: unsigned native-endian ints
        instead of bytes (cheaper to create and hash), for a ``key_size`` /
        ``value_size`` of 1, 2, 4 or 8 (else ValueError); per-CPU values
        become lists of ints.  The dict's order is the kernel's (as
        :meth:`items`), except on a dump of 65,536 entries or more with
        *int_keys*, or with bytes keys on a HASH or LRU_HASH map (CPython
        3.12 and older): there the entries are inserted grouped by the
        dict slot each key takes (the low bits of its hash), which saves a
        cache miss per entry; an array's int keys, ascending, keep the index
        order.  Raises
        :class:`bpfload.MapClosedError` once closed,
        :class:`bpfload.NotSupportedError` for maps without keys (queue,
        stack, bloom filter).
        """
        cdef char *kb = NULL
        cdef char *vb = NULL
        cdef Py_ssize_t n, i
        cdef Py_ssize_t ks = self.key_size, vs = self._vsize
        cdef const char *kp
        cdef const char *vp
        cdef dict d
        cdef uint64_t *hs = NULL
        cdef int bits = 1
        cdef int order = -1
        cdef bint by_bytes = not int_keys
        self._check()
        if int_keys and ks not in (1, 2, 4, 8):
            raise ValueError(f"map {self.name!r}: keys of {ks} bytes cannot be ints "
                             "(int_keys needs a key_size of 1, 2, 4 or 8)")
        if int_values and self._kind != KIND_FDVALUE and self.value_size not in (1, 2, 4, 8):
            raise ValueError(f"map {self.name!r}: values of {self.value_size} bytes cannot be "
                             "ints (int_values needs a value_size of 1, 2, 4 or 8)")
        n = self._dump_raw(&kb, &vb)
        kp = kb
        vp = vb
        try:
            # Slot order (bl_slot_order) for a big dump of plain values: int keys on
            # any map (an array's ascending keys are in slot order already), bytes
            # keys on hash maps only, whose dump order means nothing (an array's
            # bytes keys keep the index order).
            if (self._kind == KIND_PLAIN and n >= HASH_ORDER_MIN
                    and (int_keys or (BL_BYTES_HASH and self.type in (T_HASH, T_LRU_HASH)))):
                while (<Py_ssize_t>1 << bits) * 2 < n * 3:   # the dict's table: 2/3 usable
                    bits += 1
                if by_bytes:
                    hs = <uint64_t *>malloc(n * sizeof(uint64_t))
                if not by_bytes or hs != NULL:   # else (no memory for it): in dump order
                    with nogil:
                        order = bl_slot_order(kb, vb, hs, n, ks, vs, bits, by_bytes)
            d = bl_dict_sized(n)
            if self._kind == KIND_PLAIN:
                # One loop per combination: nothing in the loop but the two new
                # objects and the insertion.  Int keys and (once computed for the
                # slot order) bytes keys come with their hash: the dict does not
                # hash them again.
                if int_keys and int_values:
                    for i in range(n):
                        bl_dict_set_hashed(d, PyLong_FromUnsignedLongLong(load_uint(kp, ks)),
                                           PyLong_FromUnsignedLongLong(load_uint(vp, vs)),
                                           bl_int_hash(kp, ks))
                        kp += ks
                        vp += vs
                elif int_keys:
                    for i in range(n):
                        bl_dict_set_hashed(d, PyLong_FromUnsignedLongLong(load_uint(kp, ks)),
                                           PyBytes_FromStringAndSize(vp, vs), bl_int_hash(kp, ks))
                        kp += ks
                        vp += vs
                elif order == 1 and int_values:
                    for i in range(n):
                        bl_dict_set_hashed(d, PyBytes_FromStringAndSize(kp, ks),
                                           PyLong_FromUnsignedLongLong(load_uint(vp, vs)), hs[i])
                        kp += ks
                        vp += vs
                elif order == 1:
                    for i in range(n):
                        bl_dict_set_hashed(d, PyBytes_FromStringAndSize(kp, ks),
                                           PyBytes_FromStringAndSize(vp, vs), hs[i])
                        kp += ks
                        vp += vs
                elif int_values:
                    for i in range(n):
                        PyDict_SetItem(d, PyBytes_FromStringAndSize(kp, ks),
                                       PyLong_FromUnsignedLongLong(load_uint(vp, vs)))
                        kp += ks
                        vp += vs
                else:
                    for i in range(n):
                        PyDict_SetItem(d, PyBytes_FromStringAndSize(kp, ks),
                                       PyBytes_FromStringAndSize(vp, vs))
                        kp += ks
                        vp += vs
            else:
                for i in range(n):
                    PyDict_SetItem(d, PyLong_FromUnsignedLongLong(load_uint(kp, ks)) if int_keys
                                   else PyBytes_FromStringAndSize(kp, ks),
                                   self._value_at(vp, int_values))
                    kp += ks
                    vp += vs
            return d
        finally:
            free(kb)
            free(vb)
            free(hs)

    def keys(self):
        """Every key as bytes (batch lookup; get_next_key where batch is missing).

        Maps whose values user space cannot read (PERF_EVENT_ARRAY,
        CGROUP_ARRAY ...) are walked with BPF_MAP_GET_NEXT_KEY alone.
        """
        cdef char *kb = NULL
        cdef char *vb = NULL
        cdef Py_ssize_t n, i
        cdef Py_ssize_t ks = self.key_size
        try:
            n = self._dump_raw(&kb, &vb)
        except _errors.NotSupportedError as e:
            if e.command != "BPF_MAP_LOOKUP_ELEM" or self._kind == KIND_KEYLESS or ks == 0:
                raise
            out = []
            k = self.next_key()
            while k is not None:
                out.append(k)
                k = self.next_key(k)
            return out
        try:
            return [PyBytes_FromStringAndSize(kb + i * ks, ks) for i in range(n)]
        finally:
            free(kb)
            free(vb)

    def sum_batch(self, keys_out=None, sums_out=None, scratch=None):
        """Read the whole map and sum every value across CPUs, in C.

        Returns ``(keys, sums, count)``: *sums* holds one native u64 per
        entry (for ``value_size`` 1/2/4/8) or one u64 per 8-byte field
        (``value_size // 8`` per entry).  Preallocated *keys_out*,
        *sums_out* and *scratch* (``max_entries * value_stride`` bytes)
        make repeated polls allocation-free.  As :meth:`lookup_batch`, never
        partial: buffers too small for what the map holds raise
        :class:`bpfload.MapError` (errno ENOSPC, ``count`` = entries read);
        *sums_out* too small raises ValueError.
        """
        cdef Py_ssize_t nf = 1 if self.value_size in (1, 2, 4, 8) else self.value_size // 8
        cdef Py_ssize_t n, i, c, f
        cdef _View sv, scv
        cdef uint64_t *sp
        cdef const char *vp
        cdef uint64_t acc
        cdef Py_ssize_t stride = self._stride, vsize = self._vsize, ncpu = self._ncpu
        cdef unsigned int value_size = self.value_size
        if nf != 1 and self.value_size % 8:
            raise ValueError(f"map {self.name!r}: sum_batch() needs a value of 1, 2, 4 or 8 bytes, "
                             f"or of u64 fields; value_size is {self.value_size}")
        if keys_out is None:
            keys_out = bytearray(self.max_entries * self.key_size)
        if scratch is None:
            scratch = bytearray(self.max_entries * self._vsize)
        keys_out, scratch, n = self.lookup_batch(keys_out, scratch)
        if sums_out is None:
            sums_out = bytearray(n * nf * 8)
        sv = _View(sums_out, True, f"map {self.name!r}: sums_out")
        if sv.view.len < n * nf * 8:
            raise ValueError(f"sums_out needs {n * nf * 8} bytes")
        scv = _View(scratch, False, f"map {self.name!r}: scratch")
        sp = <uint64_t *>sv.view.buf
        vp = <const char *>scv.view.buf
        with nogil:
            if nf == 1:
                for i in range(n):
                    acc = 0
                    for c in range(ncpu):
                        acc += load_uint(vp + i * vsize + c * stride, value_size)
                    sp[i] = acc
            else:
                for i in range(n):
                    for f in range(nf):
                        acc = 0
                        for c in range(ncpu):
                            acc += (<const uint64_t *>(vp + i * vsize + c * stride))[f]
                        sp[i * nf + f] = acc
        return keys_out, sums_out, n

    # -- dict protocol --------------------------------------------------------
    def __getitem__(self, key):
        v = self.lookup(key)
        if v is None:
            raise _errors.MapKeyError("BPF_MAP_LOOKUP_ELEM", ENOENT_, self.name,
                                      f"key {key!r}")
        return v

    def __setitem__(self, key, value):
        self.update(key, value)

    def __delitem__(self, key):
        self.delete(key)

    def __contains__(self, key):
        if self._kind == KIND_KEYLESS:
            return self._keyless(0, key, 0)
        return self.lookup(key) is not None

    def __iter__(self):
        return iter(self.keys())


def prog_map_ids(fd, uint32_t count):
    """The ids of the maps a loaded program uses (bpf_prog_info.map_ids).

    *fd*: an int or an :class:`FD` (held for the call).
    """
    cdef uint32_t *ids = <uint32_t *>malloc(max(count, 1) * 4)
    cdef char info[232]
    cdef uint32_t n = 232
    cdef int ret
    cdef void *held
    cdef int cfd
    if ids == NULL:
        raise MemoryError()
    try:
        memset(info, 0, 232)
        (<uint32_t *>(info + 52))[0] = count
        (<uint64_t *>(info + 56))[0] = <uint64_t><size_t>ids
        cfd = _held(fd, &held)
        with nogil:
            ret = bl_obj_get_info_by_fd(cfd, info, &n)
        _unheld(held)
        if ret < 0:
            _raise("BPF_OBJ_GET_INFO_BY_FD", ret, None)
        count = min(count, (<uint32_t *>(info + 52))[0])
        return [ids[i] for i in range(count)]
    finally:
        free(ids)


def prog_xlated_insns(int fd, uint32_t size):
    """The kernel's translated instructions of a program (bpf_prog_info.xlated_prog_insns)."""
    cdef bytearray out = bytearray(size)
    cdef char info[232]
    cdef uint32_t n = 232
    cdef int ret
    memset(info, 0, 232)
    (<uint32_t *>(info + 20))[0] = size
    (<uint64_t *>(info + 32))[0] = <uint64_t><size_t>PyByteArray_AS_STRING(out)
    with nogil:
        ret = bl_obj_get_info_by_fd(fd, info, &n)
    if ret < 0:
        _raise("BPF_OBJ_GET_INFO_BY_FD", ret, None)
    return bytes(out[:(<uint32_t *>(info + 20))[0]])


def btf_info(int fd, target=None):
    """BPF_OBJ_GET_INFO_BY_FD on a BTF fd -> ``(id, data, name, kernel_btf)``.

    *data* is the raw BTF blob (what BPF_BTF_LOAD was given, or the kernel's
    own for vmlinux and modules), *name* the kernel's name for it ("" for
    loaded BTF), *kernel_btf* True for vmlinux/module BTF.  Two calls: the
    first learns the sizes (``struct bpf_btf_info``: btf, btf_size, id,
    name, name_len, kernel_btf), the second copies.
    """
    cdef char info[32]
    cdef uint32_t n = 32
    cdef uint32_t size, name_len
    cdef bytearray data, name
    cdef int ret
    memset(info, 0, 32)
    with nogil:
        ret = bl_obj_get_info_by_fd(fd, info, &n)
    if ret < 0:
        _raise("BPF_OBJ_GET_INFO_BY_FD", ret, target)
    size = (<uint32_t *>(info + 8))[0]
    name_len = (<uint32_t *>(info + 24))[0] + 1
    data = bytearray(size)
    name = bytearray(name_len)
    memset(info, 0, 32)
    n = 32
    (<uint64_t *>(info + 0))[0] = <uint64_t><size_t>PyByteArray_AS_STRING(data)
    (<uint32_t *>(info + 8))[0] = size
    (<uint64_t *>(info + 16))[0] = <uint64_t><size_t>PyByteArray_AS_STRING(name)
    (<uint32_t *>(info + 24))[0] = name_len
    with nogil:
        ret = bl_obj_get_info_by_fd(fd, info, &n)
    if ret < 0:
        _raise("BPF_OBJ_GET_INFO_BY_FD", ret, target)
    size = min(size, (<uint32_t *>(info + 8))[0])
    return ((<uint32_t *>(info + 12))[0], bytes(data[:size]),
            bytes(name).split(b"\0", 1)[0].decode(errors="replace"),
            bool((<uint32_t *>(info + 28))[0]))
