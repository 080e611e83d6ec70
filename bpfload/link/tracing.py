"""Tracing hooks: tracepoints, raw tracepoints, BTF-typed tracing (tp_btf, fentry,
fexit, fmod_ret, lsm), kprobes and perf events.

Each function takes a loaded :class:`bpfload.Program` and returns the
:class:`bpfload.Link` that owns the attachment; each raises
:class:`bpfload.AttachError` naming the program and the hook.
"""
from __future__ import annotations

import errno as _errno
from typing import Any

from .. import errors
from .._core import syscall as _sys
from ..constants import AttachType, LinkType, ProgType
from .link import Link

__all__ = ["attach_raw_tracepoint", "attach_trace"]

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


def _type_name(prog: Any) -> str:
    return getattr(prog.type, "name", str(prog.type))
