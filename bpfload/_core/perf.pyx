# cython: language_level=3
"""perf_event_open(2), the perf ioctls and tracefs mounts: the tracing door besides bpf(2).

The attr is filled in C (``csrc/perf_sys.h``) from keyword options;
:func:`build_perf_event_attr` returns the bytes it would pass, without a
syscall, so the attr for a hook this kernel lacks (kprobes) can still be
tested.  Errors come out through :func:`bpfload.errors.from_errno` as
:class:`bpfload.SyscallError` with the call's name.
"""
import os as _os

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

from bpfload import errors as _errors
from bpfload._core.syscall import FD

cdef extern from "<linux/perf_event.h>":
    cdef struct perf_event_attr:
        pass

cdef extern from "perf_sys.h" nogil:
    struct bl_perf_opts:
        uint32_t type
        uint64_t config, config1, config2
        const char *name
        uint64_t sample
        uint32_t freq
        uint64_t sample_type
        uint32_t wakeup_events
        uint32_t disabled

    void bl_perf_attr_fill(perf_event_attr *attr, const bl_perf_opts *o)
    int bl_perf_event_open(const bl_perf_opts *o, int pid, int cpu, int group_fd)
    int bl_perf_set_bpf(int pfd, int prog_fd)
    int bl_perf_enable(int pfd)
    int bl_perf_disable(int pfd)
    int bl_mount(const char *source, const char *target, const char *fstype, unsigned long flags)
    int bl_umount(const char *target, int flags)


cdef extern from "bl_fault.h" nogil:
    void bl_fault_attach(void *state)

# one fault door with bpf(2) and the event readers (csrc/bl_fault.h): the state
# bpfload._core.syscall owns
from cpython.pycapsule cimport PyCapsule_GetPointer
from bpfload._core.syscall import _fault_state
bl_fault_attach(PyCapsule_GetPointer(_fault_state(), b"bpfload._core.bl_fault"))


cdef int _raise(str call, int ret, object target, object detail=None) except -1:
    raise _errors.from_errno(call, -ret, target, detail)


cdef void _opts(bl_perf_opts *o, uint32_t type, uint64_t config, uint64_t config1,
                uint64_t config2, const char *name, uint64_t sample_period,
                uint64_t sample_freq, uint64_t sample_type, uint32_t wakeup_events,
                bint disabled):
    memset(o, 0, sizeof(o[0]))
    o.type = type
    o.config = config
    o.config1 = config1
    o.config2 = config2
    o.name = name
    if sample_freq:
        o.sample = sample_freq
        o.freq = 1
    else:
        o.sample = sample_period
    o.sample_type = sample_type
    o.wakeup_events = wakeup_events
    o.disabled = disabled


def build_perf_event_attr(uint32_t type, uint64_t config=0, *, uint64_t config1=0, uint64_t config2=0,
                    name=None, uint64_t sample_period=0, uint64_t sample_freq=0,
                    uint64_t sample_type=0, uint32_t wakeup_events=0, bint disabled=False):
    """The ``struct perf_event_attr`` bytes :func:`perf_event_open` would pass (no syscall).

    With *name*, ``config1`` holds a pointer to it (kprobe_func /
    uprobe_path), valid only during the call: compare it as "non-zero".
    """
    cdef bl_perf_opts o
    cdef perf_event_attr attr
    cdef bytes bname = _os.fsencode(name) if name is not None else None
    _opts(&o, type, config, config1, config2, <const char *>bname if bname is not None else NULL,
          sample_period, sample_freq, sample_type, wakeup_events, disabled)
    bl_perf_attr_fill(&attr, &o)
    return (<char *>&attr)[:sizeof(attr)]


def perf_event_open(uint32_t type, uint64_t config=0, *, int pid=-1, int cpu=-1,
                    int group_fd=-1, uint64_t config1=0, uint64_t config2=0, name=None,
                    uint64_t sample_period=0, uint64_t sample_freq=0, uint64_t sample_type=0,
                    uint32_t wakeup_events=0, bint disabled=False, target=None, what=None):
    """perf_event_open(2) -> :class:`bpfload._core.syscall.FD` (O_CLOEXEC, above stdio).

    Options as in :func:`build_perf_event_attr`.  *target* names the program in
    errors, *what* describes the event in the FD's repr and warnings.
    """
    cdef bl_perf_opts o
    cdef bytes bname = _os.fsencode(name) if name is not None else None
    cdef int ret
    _opts(&o, type, config, config1, config2, <const char *>bname if bname is not None else NULL,
          sample_period, sample_freq, sample_type, wakeup_events, disabled)
    with nogil:
        ret = bl_perf_event_open(&o, pid, cpu, group_fd)
    if ret < 0:
        _raise("perf_event_open", ret, target, what)
    return FD(ret, what or "perf event")


def perf_set_bpf(int pfd, int prog_fd, target=None):
    """PERF_EVENT_IOC_SET_BPF: attach *prog_fd* to the perf event *pfd*."""
    cdef int ret
    with nogil:
        ret = bl_perf_set_bpf(pfd, prog_fd)
    if ret < 0:
        _raise("PERF_EVENT_IOC_SET_BPF", ret, target)


ctypedef int (*_pfd_ioctl)(int pfd) noexcept nogil


cdef int _ioctl(_pfd_ioctl fn, int pfd, str name, object target) except -1:
    cdef int ret
    with nogil:
        ret = fn(pfd)
    if ret < 0:
        _raise(name, ret, target)
    return 0


def perf_enable(int pfd, target=None):
    """PERF_EVENT_IOC_ENABLE."""
    _ioctl(bl_perf_enable, pfd, "PERF_EVENT_IOC_ENABLE", target)


def perf_disable(int pfd, target=None):
    """PERF_EVENT_IOC_DISABLE."""
    _ioctl(bl_perf_disable, pfd, "PERF_EVENT_IOC_DISABLE", target)


def mount(source, target, fstype, unsigned long flags=0):
    """mount(2) without data (a private tracefs mount); raises SyscallError("mount", errno)."""
    cdef bytes s = _os.fsencode(source), t = _os.fsencode(target), f = _os.fsencode(fstype)
    cdef const char *cs = s
    cdef const char *ct = t
    cdef const char *cf = f
    cdef int ret
    with nogil:
        ret = bl_mount(cs, ct, cf, flags)
    if ret < 0:
        _raise("mount", ret, None, f"{fstype} at {_os.fsdecode(t)}")


def umount(target, int flags=0):
    """umount2(2) (flags: MNT_DETACH = 2 for a lazy unmount)."""
    cdef bytes t = _os.fsencode(target)
    cdef const char *ct = t
    cdef int ret
    with nogil:
        ret = bl_umount(ct, flags)
    if ret < 0:
        _raise("umount", ret, None, _os.fsdecode(t))
