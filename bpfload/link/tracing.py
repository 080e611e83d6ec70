"""Tracing hooks: tracepoints, raw tracepoints, BTF-typed tracing (tp_btf, fentry,
fexit, fmod_ret, lsm), kprobes and perf events.

Each function takes a loaded :class:`bpfload.Program` and returns the
:class:`bpfload.Link` that owns the attachment; each raises
:class:`bpfload.AttachError` naming the program and the hook, and leaves no
fd, perf event or tracefs probe behind when it fails.

* :func:`attach_tracepoint`: a ``PERF_TYPE_TRACEPOINT`` perf event for the
  tracefs id of CAT/NAME (:mod:`bpfload.link.tracefs`), then a perf link
  (or ``PERF_EVENT_IOC_SET_BPF``, see :mod:`bpfload.link.perf`).
* :func:`attach_raw_tracepoint`, :func:`attach_trace`: BPF links without a
  perf event.
* :func:`attach_kprobe`: the kprobe PMU when the kernel has one, else a
  tracefs ``kprobe_events`` probe (:func:`attach_probe_event`); a kernel
  with neither gets an error naming ``CONFIG_KPROBES``.
  :func:`kprobe_perf_attr` shows the attr without a syscall.
* :func:`attach_perf_event`: one given perf event, or one event per online
  CPU owned by a single Link that is not a BPF link (see its docstring).
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Any, Dict, Optional, Union

from .. import errors
from .._core import perf as _perf
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType, ProgType
from . import tracefs as _tracefs
from .link import Link, link_group
from .perf import attach_perf_fd

__all__ = ["attach_raw_tracepoint", "attach_trace", "attach_tracepoint", "attach_kprobe",
           "attach_probe_event", "attach_perf_event", "kprobe_perf_attr"]

#: perf_event_attr.type values (include/uapi/linux/perf_event.h)
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2

#: expected attach types attach_trace() links with BPF_LINK_CREATE
_TRACE_ATTACH_TYPES = {
    AttachType.TRACE_RAW_TP: "tp_btf", AttachType.TRACE_FENTRY: "fentry",
    AttachType.TRACE_FEXIT: "fexit", AttachType.MODIFY_RETURN: "fmod_ret",
    AttachType.LSM_MAC: "lsm",
}


def attach_raw_tracepoint(prog: Any, name: str) -> Link:
    """Attach a raw_tp program to the raw tracepoint *name* (BPF_RAW_TRACEPOINT_OPEN).

    Needs Linux 4.17+.  Raises :class:`bpfload.AttachError` (ENOENT: no
    such tracepoint).
    """
    hook = f"raw tracepoint {name}"
    if prog.type not in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        raise errors.AttachError(f"a {_type_name(prog)} program cannot attach to a raw "
                                 "tracepoint", program=prog.name, hook=hook)
    try:
        fd = _sys.raw_tracepoint_open(name, prog.fd, target=prog.name)
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="tracepoint") from e
    return Link(fd, program=prog.name, type=LinkType.RAW_TRACEPOINT, hook=hook)


def attach_trace(prog: Any, *, cookie: int = 0) -> Link:
    """Attach a tp_btf/fentry/fexit/fmod_ret/lsm program where it was loaded for.

    The target is the program's ``attach_btf_id`` (resolved from the
    section at load).  BPF_LINK_CREATE (Linux 5.10+; *cookie* for
    ``bpf_get_attach_cookie()`` needs 5.19+), else BPF_RAW_TRACEPOINT_OPEN
    with no name.  Raises :class:`bpfload.AttachError`.
    """
    atype = prog.expected_attach_type
    kind = _TRACE_ATTACH_TYPES.get(atype)
    hook = f"{kind or 'trace'} {getattr(prog, 'attach_target', None) or '?'}"
    if prog.type not in (ProgType.TRACING, ProgType.LSM) or kind is None:
        raise errors.AttachError(f"attach_trace() is for tp_btf/fentry/fexit/fmod_ret/lsm "
                                 f"programs, not a {_type_name(prog)} program with attach type "
                                 f"{getattr(atype, 'name', atype)}", program=prog.name, hook=hook)
    try:
        if cookie:
            fd = _sys.link_create(prog.fd, 0, atype, tracing_cookie=cookie, target=prog.name)
        else:
            fd = _sys.link_create(prog.fd, 0, atype, target=prog.name)
    except errors.SyscallError as e:
        if e.errno != _errno.EINVAL or cookie:
            raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook) from e
        try:   # kernels before tracing links
            fd = _sys.raw_tracepoint_open(None, prog.fd, target=prog.name)
        except errors.SyscallError as e2:
            raise errors.attach_error(e2.command, e2.errno, program=prog.name,
                                      hook=hook) from e2
    ltype = LinkType.RAW_TRACEPOINT if atype == AttachType.TRACE_RAW_TP else LinkType.TRACING
    return Link(fd, program=prog.name, type=ltype, hook=hook)


def attach_tracepoint(prog: Any, category: str, name: str, *, cookie: int = 0,
                      use_ioctl: bool = False) -> Link:
    """Attach a tracepoint program to tracepoint *category*/*name* (``tracepoint/CAT/NAME``).

    Opens a ``PERF_TYPE_TRACEPOINT`` perf event for the tracepoint's id
    (read from tracefs, mounted privately for the lookup when it is not
    mounted) on CPU 0 for every process, as libbpf does (the program runs
    on every CPU), and attaches with a perf link (Linux 5.15+; *cookie*
    for ``bpf_get_attach_cookie()`` needs 5.15+), else
    ``PERF_EVENT_IOC_SET_BPF`` (Linux 4.7+).  *use_ioctl* forces the ioctl
    path: for tests and for old kernels whose perf links misbehave.

    Raises :class:`bpfload.AttachError` for a program that is not of type
    TRACEPOINT, an unknown tracepoint (naming it, with similar names), no
    tracefs, or a refusal by the kernel.
    """
    hook = f"tracepoint {category}/{name}"
    if prog.type != ProgType.TRACEPOINT:
        raise errors.AttachError(f"a {_type_name(prog)} program cannot attach to a tracepoint "
                                 "(it needs a TRACEPOINT program: SEC(\"tracepoint/CAT/NAME\"))",
                                 program=prog.name, hook=hook)
    tp_id = _tracefs.tracepoint_id(category, name, program=prog.name)
    pfd = _open_event(prog, PERF_TYPE_TRACEPOINT, tp_id, hook=hook, family="tracepoint",
                      cpu=0, sample_period=1)
    return attach_perf_fd(prog, pfd, hook=hook, family="tracepoint", cookie=cookie,
                          use_ioctl=use_ioctl)


def _open_event(prog: Any, type: int, config: int, *, hook: str, family: str, **kw: Any) -> FD:
    """perf_event_open(2) with AttachError for failures."""
    try:
        return _perf.perf_event_open(type, config, target=prog.name, what=hook, **kw)
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family=family) from e


# -- kprobes --------------------------------------------------------------------

def _kprobe_options(func: str, retprobe: bool, offset: int, sysfs: str,
                    program: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """perf_event_open options for the kprobe PMU, or None when the kernel has no such PMU."""
    pmu = _tracefs.pmu_type("kprobe", sysfs=sysfs)
    if pmu is None:
        return None
    config = 0
    if retprobe:
        bit = _tracefs.pmu_format_bit("kprobe", "retprobe", sysfs=sysfs)
        if bit is None:
            raise errors.AttachError("the kprobe PMU has no retprobe format bit",
                                     program=program, hook=f"kretprobe {func}",
                                     err=_errno.EOPNOTSUPP)
        config = 1 << bit
    return {"type": pmu, "config": config, "name": func, "config2": offset}


def kprobe_perf_attr(func: str, *, retprobe: bool = False, offset: int = 0,
                     sysfs: str = "/sys") -> bytes:
    """The ``struct perf_event_attr`` :func:`attach_kprobe` passes to the kprobe PMU (no syscall).

    type is the PMU's (``<sysfs>/bus/event_source/devices/kprobe/type``),
    config has the ``retprobe`` bit (``.../kprobe/format/retprobe``) for a
    kretprobe, config1 points at *func* (valid only during the real call:
    non-zero here), config2 is *offset*.  For tests on kernels without
    kprobes.  Raises :class:`bpfload.AttachError` when there is no kprobe
    PMU under *sysfs*.
    """
    opts = _kprobe_options(func, retprobe, offset, sysfs)
    if opts is None:
        raise errors.AttachError(f"no kprobe PMU under {sysfs}/bus/event_source/devices",
                                 hook=f"kprobe {func}", err=_errno.EOPNOTSUPP)
    t = opts.pop("type")
    return _perf.build_perf_event_attr(t, opts.pop("config"), sample_period=0, **opts)


def _has_probe_events(kind: str) -> bool:
    """True when tracefs (mounted, or mountable privately) has ``<kind>_events``."""
    try:
        with _tracefs.tracefs() as root:
            return os.path.exists(os.path.join(root, f"{kind}_events"))
    except errors.AttachError:
        return False


def attach_kprobe(prog: Any, func: str, *, retprobe: bool = False, offset: int = 0,
                  cookie: int = 0, syscall: bool = False, sysfs: str = "/sys") -> Link:
    """Attach a kprobe program to kernel function *func* (+*offset*), or its return.

    With the kprobe PMU (Linux 4.17+): a perf event of that PMU type
    (name in config1, offset in config2, the ``retprobe`` config bit for
    *retprobe*), attached with a perf link (5.15+; *cookie* likewise) or
    ``PERF_EVENT_IOC_SET_BPF``.  Without it, a legacy probe created in
    tracefs ``kprobe_events`` (see :func:`attach_probe_event`).
    *syscall* (``ksyscall/`` sections) names a system call: the arch
    wrapper is probed (``getppid`` -> ``__x64_sys_getppid`` on x86_64,
    found in /proc/kallsyms when readable).  *sysfs* is where the PMU is
    looked up (tests).

    Raises :class:`bpfload.AttachError`: not a KPROBE program, a kretprobe
    with an offset, a kernel without kprobe support (``CONFIG_KPROBES``:
    neither the PMU nor ``kprobe_events``), or a refusal by the kernel
    (ENOENT: no such function).
    """
    if syscall:
        func = _tracefs.syscall_function(func)
    kind = "kretprobe" if retprobe else "kprobe"
    hook = f"{kind} {func}" + (f"+{offset:#x}" if offset else "")
    if prog.type != ProgType.KPROBE:
        raise errors.AttachError(f"a {_type_name(prog)} program cannot attach to a {kind} "
                                 "(it needs a KPROBE program)", program=prog.name, hook=hook)
    if retprobe and offset:
        raise errors.AttachError("a kretprobe cannot have an offset", program=prog.name,
                                 hook=hook, err=_errno.EINVAL)
    opts = _kprobe_options(func, retprobe, offset, sysfs, prog.name)
    if opts is not None:
        pfd = _open_event(prog, opts.pop("type"), opts.pop("config"), hook=hook,
                          family="kprobe", cpu=0, **opts)
        return attach_perf_fd(prog, pfd, hook=hook, family="kprobe", cookie=cookie)
    if not _has_probe_events("kprobe"):
        raise errors.AttachError(
            "this kernel has no kprobe support (CONFIG_KPROBES): no kprobe PMU in "
            f"{sysfs}/bus/event_source/devices and no kprobe_events in tracefs",
            program=prog.name, hook=hook, err=_errno.EOPNOTSUPP,
            hint="attach to a tracepoint, raw_tp or tp_btf hook instead, or use a kernel "
            "built with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS")
    target = f"{func}+{offset}" if offset else func
    return attach_probe_event(prog, "kprobe", target, retprobe=retprobe, cookie=cookie)


def attach_probe_event(prog: Any, kind: str, target: str, *, retprobe: bool = False,
                       cookie: int = 0, use_ioctl: bool = False) -> Link:
    """Attach a KPROBE-type program through a tracefs probe event (the legacy path).

    Creates a :class:`bpfload.link.tracefs.ProbeEvent` (*kind*
    ``"kprobe"``: *target* ``FUNC[+OFF]``; ``"uprobe"``: ``PATH:0xOFFSET``),
    opens its tracepoint as a perf event and attaches; the returned Link
    removes the event after closing the perf event.  For kernels without
    the kprobe/uprobe PMU (before 4.17); :func:`attach_kprobe` uses it then.
    Raises :class:`bpfload.AttachError`; nothing is left behind on failure.
    """
    hook = f"{kind.replace('probe', 'retprobe') if retprobe else kind} {target} (tracefs)"
    if prog.type != ProgType.KPROBE:
        raise errors.AttachError(f"a {_type_name(prog)} program cannot attach to a {kind} "
                                 "(it needs a KPROBE program)", program=prog.name, hook=hook)
    event = _tracefs.ProbeEvent(kind, target, retprobe=retprobe, program=prog.name, hook=hook)
    try:
        pfd = _open_event(prog, PERF_TYPE_TRACEPOINT, event.id, hook=hook, family=kind,
                          cpu=0, sample_period=1)
        # the Link owns the event too, removed after the perf event is closed: the
        # kernel refuses to remove a probe event that is still open
        return attach_perf_fd(prog, pfd, hook=hook, family=kind, cookie=cookie,
                              use_ioctl=use_ioctl, holds=[event])
    except BaseException:
        event.close()
        raise


# -- perf events ----------------------------------------------------------------

def attach_perf_event(prog: Any, pfd: Union[int, FD, None] = None, *, type: Optional[int] = None,
                      config: Optional[int] = None, sample_period: Optional[int] = None,
                      sample_freq: Optional[int] = None, cpu: Optional[int] = None,
                      pid: int = -1, cookie: int = 0) -> Link:
    """Attach a perf_event program to a perf event: given, or opened here per CPU.

    With *pfd* (an int fd or an object with ``fileno()``): that one event;
    it is duplicated, so the caller keeps (and closes) its own.  Otherwise
    *type*/*config* and one of *sample_period*/*sample_freq* describe the
    event, opened for *pid* (-1: every process) on *cpu*; with *cpu* None
    and *pid* -1, one event on every online CPU, and the returned Link
    owns them all: it is not a BPF link (``fd`` -1, ``id`` 0, :meth:`Link.info`
    and :meth:`Link.pin` raise), and closing or detaching it closes every
    per-CPU link.  With one event the Link is that event's (a perf link on
    Linux 5.15+, with info; ``PERF_EVENT_IOC_SET_BPF`` before).

    Raises :class:`bpfload.AttachError`: not a PERF_EVENT program, missing
    or conflicting arguments, an fd that is not a perf event, or the
    kernel's refusal (nothing stays open on failure).
    """
    if prog.type != ProgType.PERF_EVENT:
        raise errors.AttachError(f"a {_type_name(prog)} program cannot attach to a perf event "
                                 "(it needs a PERF_EVENT program: SEC(\"perf_event\"))",
                                 program=prog.name, hook="perf event")
    if pfd is not None:
        if type is not None or config is not None or sample_period or sample_freq or \
                cpu is not None or pid != -1:
            raise errors.AttachError("pass either pfd or the event (type, config, "
                                     "sample_period/sample_freq, cpu, pid), not both",
                                     program=prog.name, hook="perf event")
        return attach_perf_fd(prog, _dup_perf_fd(prog, pfd), hook="perf event fd",
                              family="perf_event", cookie=cookie)
    if type is None or config is None or (sample_period is None) == (sample_freq is None):
        raise errors.AttachError("a perf event needs type, config and exactly one of "
                                 "sample_period and sample_freq (or pass pfd)",
                                 program=prog.name, hook="perf event")
    what = f"perf event type {type} config {config}"
    sample = {"sample_freq": sample_freq} if sample_freq is not None else \
        {"sample_period": sample_period}
    if cpu is not None or pid != -1:
        c = -1 if cpu is None else cpu
        hook = what + (f" on CPU {c}" if c >= 0 else "") + (f" pid {pid}" if pid != -1 else "")
        ev = _open_event(prog, type, config, hook=hook, family="perf_event", pid=pid, cpu=c,
                         **sample)
        return attach_perf_fd(prog, ev, hook=hook, family="perf_event", cookie=cookie)
    try:
        from ..events.perf import online_cpus
        cpus = online_cpus()
    except OSError as e:
        raise errors.AttachError("cannot read the online CPUs", program=prog.name, hook=what,
                                 err=e.errno or _errno.EIO,
                                 hint="is sysfs mounted at /sys?") from e

    def on_cpu(c: int) -> Link:
        hook = f"{what} on CPU {c}"
        ev = _open_event(prog, type, config, hook=hook, family="perf_event", pid=-1, cpu=c, **sample)
        return attach_perf_fd(prog, ev, hook=hook, family="perf_event", cookie=cookie)

    return link_group(prog.name, on_cpu, cpus, type=LinkType.PERF_EVENT,
                      hook=f"{what} on CPUs {','.join(map(str, cpus))}")


def _dup_perf_fd(prog: Any, pfd: Any) -> FD:
    from ..maps import _as_fd, dup_fd
    try:
        fd = _as_fd(pfd)
        target = os.readlink(f"/proc/self/fd/{fd}")
    except (TypeError, OSError, errors.BpfError) as e:
        raise errors.AttachError(f"pfd {pfd!r} is not an open fd", program=prog.name,
                                 hook="perf event fd", err=_errno.EBADF) from e
    if target != "anon_inode:[perf_event]":
        raise errors.AttachError(f"fd {fd} is not a perf event ({target})", program=prog.name,
                                 hook="perf event fd", err=_errno.EBADF)
    return FD(dup_fd(fd), "perf event")


def _type_name(prog: Any) -> str:
    return getattr(prog.type, "name", str(prog.type))
