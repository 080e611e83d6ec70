"""cgroup v2 hooks: ``cgroup_skb/``, ``cgroup/`` and ``sockops`` programs.

:func:`attach_cgroup` attaches a program to a cgroup v2 directory with a
cgroup BPF link (``BPF_LINK_CREATE``, Linux 5.7+).  On kernels without
cgroup links it falls back to ``BPF_PROG_ATTACH`` with
``BPF_F_ALLOW_MULTI`` (Linux 4.10+), which the returned
:class:`~bpfload.Link` undoes with ``BPF_PROG_DETACH`` on close.
"""
from __future__ import annotations

import errno as _errno
import os
import stat
from typing import Any, Optional, Tuple, Union

from .. import errors
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType
from .link import Link

__all__ = ["attach_cgroup", "open_cgroup", "BPF_F_ALLOW_OVERRIDE", "BPF_F_ALLOW_MULTI",
           "BPF_F_REPLACE"]

#: ``BPF_PROG_ATTACH`` flags (uapi/linux/bpf.h)
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2

_CGROUP2_FSTYPE = "cgroup2"

#: attach types that hook a cgroup
_CGROUP_ATTACH_TYPES = frozenset(
    [t for t in AttachType if t.name.startswith("CGROUP_")] + [AttachType.LSM_CGROUP])


def _fstype_of_dev(dev: int) -> Optional[str]:
    """The filesystem type of the mount whose device is *dev* (from /proc/self/mountinfo)."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3 or fields[2] != want:
                    continue
                try:
                    return fields[fields.index("-", 6) + 1]
                except (ValueError, IndexError):
                    continue
    except OSError:
        return None
    return None


def _not_cgroup2(what: str, fstype: Optional[str]) -> Optional[str]:
    if fstype is None or fstype == _CGROUP2_FSTYPE:
        return None   # cgroup v2, or unknown: let the kernel decide
    if fstype == "cgroup":
        return (f"{what} is in a cgroup v1 hierarchy; BPF programs attach to cgroup v2 "
                "directories (a cgroup2 mount, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified)")
    return (f"{what} is not a cgroup v2 directory (it is on a {fstype} filesystem; "
            "use a directory under a cgroup2 mount, e.g. /sys/fs/cgroup/unified/NAME)")


def open_cgroup(cgroup: Any, *, program: Optional[str] = None,
                hook: Optional[str] = None) -> Tuple[FD, bool, str]:
    """Resolve *cgroup* (a path, an int fd, an :class:`FD` or a file object) to an fd.

    Returns ``(fd, owned, description)``: *owned* is True when the fd was
    opened here (``O_RDONLY|O_DIRECTORY|O_CLOEXEC``) and the caller must
    close it; an fd the caller passed is wrapped but not owned (do not close
    it; ``FD.detach()`` it instead).  Raises :class:`bpfload.AttachError`
    when the path does not exist, is not a directory, or is not in a cgroup
    v2 hierarchy.
    """
    if isinstance(cgroup, (str, bytes, os.PathLike)):
        path = os.fsdecode(cgroup)
        what = f"cgroup {path}"
        try:
            raw = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            reason = ("no such directory" if e.errno == _errno.ENOENT else
                      "not a directory (pass a cgroup v2 directory)" if e.errno == _errno.ENOTDIR
                      else e.strerror or str(e))
            raise errors.AttachError(f"cannot open {path}: {reason}", program=program,
                                     hook=hook or what, err=e.errno or 0) from None
        fd = FD(raw, what)
        owned = True
    else:
        if isinstance(cgroup, bool):
            raise TypeError("cgroup must be a path or an fd, not a bool")
        if isinstance(cgroup, int):
            raw = cgroup
        elif hasattr(cgroup, "fileno"):
            raw = cgroup.fileno()
        else:
            raise TypeError(f"cgroup must be a path or an fd, not {type(cgroup).__name__}")
        what = f"cgroup fd {raw}"
        fd = FD(raw, what)
        owned = False
    try:
        st = os.fstat(fd.fileno())
    except OSError as e:
        _release(fd, owned)
        raise errors.AttachError(f"{what} is not an open file ({e.strerror})", program=program,
                                 hook=hook or what, err=e.errno or 0) from None
    problem = _not_cgroup2(what, _fstype_of_dev(st.st_dev))
    if problem is None and not stat.S_ISDIR(st.st_mode):
        problem = f"{what} is not a directory (pass a cgroup v2 directory)"
    if problem is not None:
        _release(fd, owned)
        raise errors.AttachError(problem, program=program, hook=hook or what)
    return fd, owned, what


def _release(fd: FD, owned: bool) -> None:
    if owned:
        fd.close()
    elif not fd.closed:
        fd.detach()


def _attach_type(prog: Any, attach_type: Union[AttachType, int, str, None],
                 hook: str) -> AttachType:
    if attach_type is None:
        attach_type = getattr(prog, "expected_attach_type", None)
        if attach_type is None:
            raise errors.AttachError(
                f"section {getattr(prog, 'section', None)!r} does not say where in the cgroup to "
                "attach; pass attach_type= (e.g. AttachType.CGROUP_INET_EGRESS)",
                program=prog.name, hook=hook)
    if isinstance(attach_type, str):
        name = attach_type.upper()
        try:
            attach_type = AttachType[name if name.startswith("CGROUP_") or name == "LSM_CGROUP"
                                     else "CGROUP_" + name]
        except KeyError:
            raise errors.AttachError(f"unknown cgroup attach type {attach_type!r}",
                                     program=prog.name, hook=hook) from None
    try:
        at = AttachType(attach_type)
    except ValueError:
        raise errors.AttachError(f"unknown attach type {attach_type!r}", program=prog.name,
                                 hook=hook) from None
    if at not in _CGROUP_ATTACH_TYPES:
        raise errors.AttachError(f"attach type {at.name} is not a cgroup hook (section "
                                 f"{getattr(prog, 'section', None)!r})", program=prog.name,
                                 hook=hook)
    return at


def attach_cgroup(prog: Any, cgroup: Any, *, attach_type: Union[AttachType, int, str, None] = None,
                  flags: int = 0, use_prog_attach: bool = False) -> Link:
    """Attach *prog* to the cgroup v2 *cgroup* -> :class:`bpfload.Link`.

    *cgroup* is a cgroup v2 directory (a path, opened
    ``O_RDONLY|O_DIRECTORY|O_CLOEXEC`` and closed once attached: the
    attachment keeps the cgroup) or an open fd of one (an int, an
    :class:`FD` or a file object; not closed).  *attach_type* (an
    :class:`~bpfload.AttachType`, its value, or a name such as
    ``"inet_egress"``) defaults to the program's expected attach type, which
    the section gives (``cgroup_skb/egress`` -> ``CGROUP_INET_EGRESS``,
    ``cgroup/sock_create``, ``cgroup/connect4``, ``sockops`` ...).

    The attachment is a cgroup BPF link (``BPF_LINK_CREATE``, Linux 5.7+;
    the Link has an fd and id, supports ``update()``, ``detach()``,
    ``pin()`` and ``info()`` with ``cgroup_id`` and ``attach_type``).
    Several links coexist on one hook.  *flags* go to ``BPF_LINK_CREATE``
    (the kernel wants 0 for cgroup links up to at least 6.18).

    When the kernel has no cgroup links (``BPF_LINK_CREATE`` fails with
    EINVAL and a probe shows the command is unknown) or *use_prog_attach*
    is True (for tests and old kernels),
    ``BPF_PROG_ATTACH`` with ``BPF_F_ALLOW_MULTI | flags`` (Linux 4.10+) is
    used instead; the Link then has type ``PROG_ATTACH`` and no fd, holds a
    dup of the program fd and of the cgroup fd, and closing it runs
    ``BPF_PROG_DETACH``.

    Raises :class:`bpfload.AttachError` when *cgroup* is not a cgroup v2
    directory, when no attach type is known, or when the kernel refuses.
    """
    hook0 = f"cgroup {os.fsdecode(cgroup)}" if isinstance(cgroup, (str, bytes, os.PathLike)) \
        else "cgroup"
    atype = _attach_type(prog, attach_type, hook0)
    cgfd, owned, what = open_cgroup(cgroup, program=prog.name, hook=hook0)
    hook = f"{what} ({_type_label(atype)})"
    try:
        if not use_prog_attach:
            try:
                fd = _sys.link_create(prog.fd, cgfd.fileno(), atype, flags, target=prog.name)
            except errors.SyscallError as e:
                if e.errno != _errno.EINVAL or _kernel_has_link_create():
                    raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                              family="cgroup") from e
                first = e
            else:
                return Link(fd, program=prog.name, type=LinkType.CGROUP, hook=hook)
        else:
            first = None
        return _prog_attach(prog, cgfd, atype, flags, hook, first)
    finally:
        _release(cgfd, owned)


_link_create_known: Optional[bool] = None


def _kernel_has_link_create() -> bool:
    """Whether this kernel knows BPF_LINK_CREATE (Linux 5.7+), probed once.

    The probe passes no program (fd -1): a kernel that knows the command
    fails it with EBADF, one that does not with EINVAL (unknown command).
    So an EINVAL from a real BPF_LINK_CREATE falls back to BPF_PROG_ATTACH
    only on kernels without links, and is reported as it is elsewhere.
    """
    global _link_create_known
    if _link_create_known is None:
        try:
            _sys.link_create(-1, -1, AttachType.CGROUP_INET_INGRESS).close()
            _link_create_known = True   # pragma: no cover - cannot succeed without a program
        except errors.SyscallError as e:
            _link_create_known = e.errno != _errno.EINVAL
    return _link_create_known


def _prog_attach(prog: Any, cgfd: FD, atype: AttachType, flags: int, hook: str,
                 first: Optional[errors.SyscallError]) -> Link:
    """BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI; the Link holds dups of both fds."""
    prog_dup = FD(os.dup(prog.fd), f"program {prog.name} (held for BPF_PROG_DETACH)")
    try:
        cg_dup = FD(os.dup(cgfd.fileno()), f"{hook} (held for BPF_PROG_DETACH)")
    except OSError:
        prog_dup.close()
        raise
    try:
        _sys.prog_attach(cg_dup.fileno(), prog_dup.fileno(), atype, BPF_F_ALLOW_MULTI | flags,
                         target=prog.name)
    except errors.SyscallError as e:
        cg_dup.close()
        prog_dup.close()
        if first is not None:   # the link attempt's EINVAL says more than a second refusal
            raise errors.attach_error(first.command, first.errno, program=prog.name, hook=hook,
                                      family="cgroup",
                                      message=f"the kernel refused (BPF_PROG_ATTACH fallback: "
                                      f"[Errno {e.errno}] {_errno.errorcode.get(e.errno, '')})"
                                      ) from e
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="cgroup") from e

    def detach() -> None:
        try:
            _sys.prog_detach(cg_dup.fileno(), prog_dup.fileno(), atype, target=prog.name)
        except errors.SyscallError as e:
            raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                      family="cgroup", op="detach") from e

    return Link(None, program=prog.name, type=LinkType.PROG_ATTACH, hook=hook, detach=detach,
                holds=(prog_dup, cg_dup))


def _type_label(atype: AttachType) -> str:
    name = atype.name
    return (name[len("CGROUP_"):] if name.startswith("CGROUP_") else name).lower()
