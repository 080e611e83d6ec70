"""A program on a perf event: the common step of tracepoints, kprobes, uprobes and perf events.

:func:`attach_perf_fd` attaches a loaded program to an open perf event fd:
a ``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT`` (Linux 5.15+: a real link,
pinnable, listed by ``bpfload.links()``), or on older kernels
``PERF_EVENT_IOC_SET_BPF`` + ``PERF_EVENT_IOC_ENABLE`` (a
:class:`~bpfload.Link` without a link fd, undone by closing the event).
"""
from __future__ import annotations

import errno as _errno
from typing import Any, Sequence

from .. import errors
from .._core import perf as _perf
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType
from .link import Link

__all__ = ["attach_perf_fd"]

#: errnos with which a kernel without perf-event links refuses BPF_LINK_CREATE
_NO_PERF_LINK = frozenset({_errno.EINVAL, _errno.EOPNOTSUPP, 524})


def attach_perf_fd(prog: Any, pfd: FD, *, hook: str, family: str = "*", cookie: int = 0,
                   use_ioctl: bool = False, holds: Sequence[Any] = ()) -> Link:
    """Attach *prog* to the perf event *pfd* and return the :class:`Link` that owns both.

    *pfd* is taken over: closed on failure, closed by the link on success.
    *hook* describes the event in messages, *family* selects the error
    hints (``"tracepoint"``, ``"kprobe"``, ``"uprobe"``, ``"perf_event"``).
    *cookie* is the BPF cookie (``bpf_get_attach_cookie()``; needs a perf
    link).  *use_ioctl* skips the link and uses the ioctl path (tested
    explicitly; chosen automatically when the kernel has no perf links).
    *holds*: more resources the Link owns, released after the perf event is
    closed (a tracefs probe event, which the kernel keeps while it is open);
    on failure they stay the caller's.

    Raises :class:`bpfload.AttachError`.
    """
    try:
        if not use_ioctl:
            try:
                lfd = _sys.link_create(prog.fd, pfd.fileno(), AttachType.PERF_EVENT,
                                       perf_cookie=cookie, target=prog.name)
                return Link(lfd, program=prog.name, type=LinkType.PERF_EVENT, hook=hook,
                            holds=[*holds, pfd])
            except errors.SyscallError as e:
                if e.errno not in _NO_PERF_LINK or cookie:
                    raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                              family=family) from e
        try:
            _perf.perf_set_bpf(pfd.fileno(), prog.fd, prog.name)
            _perf.perf_enable(pfd.fileno(), prog.name)
        except errors.SyscallError as e:
            raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                      family=family) from e
    except BaseException:
        pfd.close()
        raise

    name = prog.name

    def detach() -> None:
        if not pfd.closed:
            try:
                _perf.perf_disable(pfd.fileno(), name)
            finally:
                pfd.close()

    return Link(None, program=prog.name, type=LinkType.PERF_EVENT_IOCTL, hook=hook,
                detach=detach, holds=[*holds, pfd])
