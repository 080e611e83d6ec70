"""BPF iterators (``iter/KIND`` programs): a link that makes text (or bytes) on demand.

:func:`attach_iter` creates the iterator link (``BPF_LINK_CREATE`` with
``BPF_TRACE_ITER``, Linux 5.8+); :meth:`IterLink.read` runs one pass of
the iterator (``BPF_ITER_CREATE`` then ``read()`` to end of file) and
returns what the program wrote with ``bpf_seq_printf``/``bpf_seq_write``.
"""
from __future__ import annotations

import io
import struct
from typing import Any, Optional, Union

from .. import errors
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType
from ..maps import _as_fd
from .cgroup import _release, open_cgroup
from .link import Link

__all__ = ["IterLink", "attach_iter", "CGROUP_ITER_ORDERS"]

#: ``enum bpf_cgroup_iter_order``: what an ``iter/cgroup`` program visits from the cgroup given
CGROUP_ITER_ORDERS = {
    "self_only": 1,         # only that cgroup
    "descendants_pre": 2,   # it and its descendants, parents before children
    "descendants_post": 3,  # it and its descendants, children before parents
    "ancestors_up": 4,      # it and its ancestors up to the root
}

_READ_CHUNK = 64 * 1024

#: iterator targets and the argument kinds they take (others: passed through unchecked)
_TARGET_ARGS = {
    "bpf_map_elem": ("map",), "bpf_sk_storage_map": ("map",), "sockmap": ("map",),
    "cgroup": ("cgroup",),
    "task": ("task", "tid", "pid_fd"), "task_file": ("task", "tid", "pid_fd"),
    "task_vma": ("task", "tid", "pid_fd"),
    "bpf_map": (), "bpf_prog": (), "bpf_link": (), "ksym": (), "tcp": (), "udp": (),
    "unix": (), "netlink": (), "ipv6_route": (),
}


class IterLink(Link):
    """An iterator link: :meth:`read` gives one pass of the program's output.

    Each :meth:`read` or :meth:`open` starts a fresh pass (a new
    ``BPF_ITER_CREATE`` fd); the link itself stays attached until closed
    and can be updated with another program of the same ``iter/KIND``.
    A pinned iterator link is read by opening its pin like a file, or
    reopened with ``Link.from_pin(path)`` / ``Link.from_id(id)``, which give
    an IterLink for an iterator link.
    """

    def read(self) -> bytes:
        """Run the iterator once and return all it wrote (``BPF_ITER_CREATE``, read to EOF).

        Raises :class:`bpfload.AttachError` when the link is closed or
        detached, or when the kernel fails the pass (e.g. E2BIG when one
        element's output does not fit the kernel's buffer).
        """
        with self.open() as f:
            chunks = []
            while True:
                try:
                    b = f.read(_READ_CHUNK)
                except OSError as e:
                    raise errors.AttachError(f"reading the iterator failed ({e.strerror})",
                                             program=self.program, hook=self.hook,
                                             command="read", err=e.errno or 0,
                                             op="read") from None
                if not b:
                    return b"".join(chunks)
                chunks.append(b)

    def open(self) -> io.FileIO:
        """Start a pass and return it as a readable binary file (an :class:`io.FileIO`).

        For streaming large outputs: read it in pieces and close it (a
        context manager).  Raises :class:`bpfload.AttachError` when the
        kernel refuses ``BPF_ITER_CREATE`` (closed or detached link).
        """
        try:
            self._check_open()
            fd = _sys.iter_create(self._fd, 0, target=self.program)
        except errors.SyscallError as e:
            raise errors.attach_error(e.command, e.errno, program=self.program, hook=self.hook,
                                      family="iter", op="read",
                                      message="cannot start a pass") from e
        return io.FileIO(fd.detach(), "rb", closefd=True)


Link._by_type[LinkType.ITER] = IterLink


def _fd_of(obj: Any, what: str) -> int:
    if isinstance(obj, bool):
        raise TypeError(f"{what} must be a map or an fd, not a bool")
    try:
        return _as_fd(obj)
    except TypeError:
        raise TypeError(f"{what} must be a map or an fd, not {type(obj).__name__}") from None


def _order(order: Union[str, int, None], prog: Any, hook: str) -> int:
    if order is None:
        return CGROUP_ITER_ORDERS["descendants_pre"]   # the kernel refuses 0 (unspec)
    if isinstance(order, str):
        try:
            return CGROUP_ITER_ORDERS[order.lower()]
        except KeyError:
            raise errors.AttachError(f"unknown cgroup iterator order {order!r} (one of "
                                     f"{', '.join(CGROUP_ITER_ORDERS)})", program=prog.name,
                                     hook=hook) from None
    return int(order)


def attach_iter(prog: Any, *, map: Any = None, cgroup: Any = None, task: Optional[int] = None,
                tid: Optional[int] = None, pid_fd: Any = None,
                order: Union[str, int, None] = None) -> IterLink:
    """Create the iterator link of an ``iter/KIND`` program -> :class:`IterLink`.

    At most one target argument (``union bpf_iter_link_info``):

    * *map*: the map an ``iter/bpf_map_elem`` (or ``bpf_sk_storage_map``,
      ``sockmap``) program walks (a :class:`bpfload.Map` or an fd; the
      kernel checks the program's key/value accesses fit its sizes);
    * *cgroup* (a cgroup v2 path or fd) with *order* (``"self_only"``,
      ``"descendants_pre"`` (the default), ``"descendants_post"``,
      ``"ancestors_up"``, or the enum value) for ``iter/cgroup`` (Linux 6.1+);
    * for ``iter/task``, ``iter/task_file``, ``iter/task_vma`` (Linux 6.1+
      for these): *task*, a process id (all threads of that process), *tid*
      (that one thread) or *pid_fd* (a pidfd: that process).

    Without one, ``iter/task`` visits every task, ``iter/bpf_map`` every map
    and so on.  Needs Linux 5.8+.  ``link.info()`` shows ``target_name``
    (and ``map_id`` for map iterators).  Raises :class:`bpfload.AttachError`
    when the program is not an iterator, the arguments conflict, or the
    kernel refuses (EACCES: the program reads past the map's key or value).
    """
    target = getattr(prog, "attach_target", None) or (prog.section or "").partition("/")[2]
    hook = f"iterator {target or '?'}"
    if getattr(prog, "expected_attach_type", None) != AttachType.TRACE_ITER:
        raise errors.AttachError(f"attach_iter() is for iter/ programs, not section "
                                 f"{getattr(prog, 'section', None)!r}", program=prog.name,
                                 hook=hook)
    given = [n for n, v in (("map", map), ("cgroup", cgroup), ("task", task), ("tid", tid),
                            ("pid_fd", pid_fd)) if v is not None]
    if len(given) > 1:
        raise errors.AttachError(f"pass at most one iterator target, got {' and '.join(given)}",
                                 program=prog.name, hook=hook)
    takes = _TARGET_ARGS.get(target)
    if takes is not None:
        if given and given[0] not in takes:
            raise errors.AttachError(f"iter/{target} takes no {given[0]}= argument"
                                     + (f" (it takes {' or '.join(t + '=' for t in takes)})"
                                        if takes else ""), program=prog.name, hook=hook)
        if not given and takes in (("map",), ("cgroup",)):
            raise errors.AttachError(f"iter/{target} needs {takes[0]}= (the {takes[0]} to walk)",
                                     program=prog.name, hook=hook)
    if order is not None and cgroup is None:
        raise errors.AttachError("order= is for cgroup iterators (pass cgroup=)",
                                 program=prog.name, hook=hook)
    cgfd: Optional[FD] = None
    owned = False
    info: Optional[bytes] = None
    if map is not None:
        info = struct.pack("=I", _fd_of(map, "map"))
        hook += f" over map {getattr(map, 'name', None) or _fd_of(map, 'map')}"
    elif cgroup is not None:
        ordv = _order(order, prog, hook)
        cgfd, owned, what = open_cgroup(cgroup, program=prog.name, hook=hook)
        hook += f" over {what}"
        info = struct.pack("=IIQ", ordv, cgfd.fileno(), 0)
    elif task is not None:
        info = struct.pack("=III", 0, int(task), 0)
        hook += f" over pid {task}"
    elif tid is not None:
        info = struct.pack("=III", int(tid), 0, 0)
        hook += f" over tid {tid}"
    elif pid_fd is not None:
        info = struct.pack("=III", 0, 0, _fd_of(pid_fd, "pid_fd"))
        hook += " over a pidfd"
    try:
        if info is None:
            fd = _sys.link_create(prog.fd, 0, AttachType.TRACE_ITER, target=prog.name)
        else:
            fd = _sys.link_create(prog.fd, 0, AttachType.TRACE_ITER, target=prog.name,
                                  iter_info=info)
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="iter") from e
    finally:
        if cgfd is not None:
            _release(cgfd, owned)
    return IterLink(fd, program=prog.name, type=LinkType.ITER, hook=hook)
