"""Link: one owner of one attachment of a program to a hook.

Two kinds of attachment share this class:

* **BPF links** (``BPF_LINK_CREATE``, ``BPF_RAW_TRACEPOINT_OPEN``): the
  kernel object has an fd and an id, can be pinned in a bpffs (then it
  outlives the process), updated with another program (``BPF_LINK_UPDATE``)
  and detached while the fd stays open (``BPF_LINK_DETACH``).  Closing the
  fd of an unpinned link detaches the program.
* **Other attachments** (a perf event with ``PERF_EVENT_IOC_SET_BPF``,
  ``SO_ATTACH_BPF``, ``BPF_PROG_ATTACH``, a tc filter over netlink): no link
  object exists in the kernel; the :class:`Link` keeps what is needed to
  undo the attachment (a detach callback and the fds it needs) and undoes it
  on :meth:`Link.detach` or :meth:`Link.close`.  ``fd`` is -1, ``id`` 0, and
  :meth:`Link.pin` raises :class:`~bpfload.errors.AttachError`.

The attach functions in :mod:`bpfload.link` build these; users get them
from :meth:`bpfload.Program.attach` and friends.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import logging
import os
import struct
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

from .. import errors
from ..pins import pin_fd, unpin_path
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType, PerfEventType

__all__ = ["Link", "LinkInfo", "link_info", "link_group"]

log = logging.getLogger("bpfload.link")

# struct bpf_link_info (Linux 6.18): type, id, prog_id, then a union at 16.
_LINK_INFO_SIZE = 96
_NAME_CAP = 512
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_U64 = struct.Struct("=Q")

# per link type: (field, offset, format) of the union's plain fields
_FIELDS: Dict[int, Tuple[Tuple[str, int, str], ...]] = {
    LinkType.RAW_TRACEPOINT: (),
    LinkType.TRACING: (("attach_type", 16, "I"), ("target_obj_id", 20, "I"),
                       ("target_btf_id", 24, "I")),
    LinkType.CGROUP: (("cgroup_id", 16, "Q"), ("attach_type", 24, "I")),
    LinkType.ITER: (("map_id", 28, "I"),),
    LinkType.NETNS: (("netns_ino", 16, "I"), ("attach_type", 20, "I")),
    LinkType.XDP: (("ifindex", 16, "I"),),
    LinkType.STRUCT_OPS: (("map_id", 16, "I"),),
    LinkType.NETFILTER: (("pf", 16, "I"), ("hooknum", 20, "I"), ("priority", 24, "i"),
                         ("flags", 28, "I")),
    LinkType.KPROBE_MULTI: (("count", 24, "I"), ("flags", 28, "I"), ("missed", 32, "Q")),
    LinkType.UPROBE_MULTI: (("count", 52, "I"), ("flags", 56, "I")),
    LinkType.TCX: (("ifindex", 16, "I"), ("attach_type", 20, "I")),
    LinkType.NETKIT: (("ifindex", 16, "I"), ("attach_type", 20, "I")),
    LinkType.SOCKMAP: (("map_id", 16, "I"), ("attach_type", 20, "I")),
}

# name slots: (field, pointer offset, length offset)
_NAMES: Dict[int, Tuple[str, int, int]] = {
    LinkType.RAW_TRACEPOINT: ("tp_name", 16, 24),
    LinkType.ITER: ("target_name", 16, 24),
    LinkType.UPROBE_MULTI: ("file_name", 16, 48),
}

# perf-event links: the event kind at 16, then a union at 24
_PERF_FIELDS: Dict[int, Tuple[Tuple[str, int, str], ...]] = {
    PerfEventType.UPROBE: (("offset", 36, "I"), ("cookie", 40, "Q"), ("ref_ctr_offset", 48, "Q")),
    PerfEventType.URETPROBE: (("offset", 36, "I"), ("cookie", 40, "Q"),
                              ("ref_ctr_offset", 48, "Q")),
    PerfEventType.KPROBE: (("offset", 36, "I"), ("addr", 40, "Q"), ("missed", 48, "Q"),
                           ("cookie", 56, "Q")),
    PerfEventType.KRETPROBE: (("offset", 36, "I"), ("addr", 40, "Q"), ("missed", 48, "Q"),
                              ("cookie", 56, "Q")),
    PerfEventType.TRACEPOINT: (("cookie", 40, "Q"),),
    PerfEventType.EVENT: (("config", 24, "Q"), ("event_type", 32, "I"), ("cookie", 40, "Q")),
}
_PERF_NAMES = {
    PerfEventType.UPROBE: "file_name", PerfEventType.URETPROBE: "file_name",
    PerfEventType.KPROBE: "func_name", PerfEventType.KRETPROBE: "func_name",
    PerfEventType.TRACEPOINT: "tp_name",
}


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    """``struct bpf_link_info`` as the kernel reports it (BPF_OBJ_GET_INFO_BY_FD).

    ``id``, ``type`` and ``prog_id`` are always set; the other fields keep
    the kernel's names and are None where the link type has no such field:
    ``tp_name`` (raw tracepoint, perf-event tracepoint), ``attach_type``,
    ``target_obj_id``/``target_btf_id`` (tracing), ``cgroup_id``,
    ``target_name``/``map_id`` (iterator), ``netns_ino``, ``ifindex`` (XDP,
    tcx, netkit), ``pf``/``hooknum``/``priority``/``flags`` (netfilter),
    ``perf_event_type`` (:class:`bpfload.constants.PerfEventType`) with
    ``file_name``/``func_name``/``offset``/``addr``/``cookie``/``config``/
    ``event_type`` for perf-event links.
    """

    id: int
    type: Union[LinkType, int]
    prog_id: int
    tp_name: Optional[str] = None
    attach_type: Optional[Union[AttachType, int]] = None
    target_obj_id: Optional[int] = None
    target_btf_id: Optional[int] = None
    cgroup_id: Optional[int] = None
    target_name: Optional[str] = None
    map_id: Optional[int] = None
    netns_ino: Optional[int] = None
    ifindex: Optional[int] = None
    pf: Optional[int] = None
    hooknum: Optional[int] = None
    priority: Optional[int] = None
    flags: Optional[int] = None
    count: Optional[int] = None
    missed: Optional[int] = None
    perf_event_type: Optional[Union[PerfEventType, int]] = None
    file_name: Optional[str] = None
    func_name: Optional[str] = None
    offset: Optional[int] = None
    addr: Optional[int] = None
    cookie: Optional[int] = None
    ref_ctr_offset: Optional[int] = None
    config: Optional[int] = None
    event_type: Optional[int] = None


def _enum(cls, v):
    try:
        return cls(v)
    except ValueError:
        return v


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def link_info(fd: Union[int, FD], target: Optional[str] = None) -> LinkInfo:
    """Read the ``bpf_link_info`` of link *fd*, names included (two calls when it has one).

    Raises :class:`bpfload.SyscallError` when *fd* is not a link.
    """
    raw, _ = _sys.obj_get_info_names(fd, _LINK_INFO_SIZE, [], target)
    raw = raw.ljust(_LINK_INFO_SIZE, b"\0")
    ltype, lid, prog_id = struct.unpack_from("=III", raw, 0)
    fields: Dict[str, Any] = {}
    name_slot = _NAMES.get(ltype)
    plain = _FIELDS.get(ltype, ())
    if ltype == LinkType.PERF_EVENT:
        ptype = _U32.unpack_from(raw, 16)[0]
        fields["perf_event_type"] = _enum(PerfEventType, ptype)
        plain = _PERF_FIELDS.get(ptype, ())
        if ptype in _PERF_NAMES:
            name_slot = (_PERF_NAMES[ptype], 24, 32)
    if name_slot is not None:
        raw, names = _sys.obj_get_info_names(fd, _LINK_INFO_SIZE,
                                             [(name_slot[1], name_slot[2], _NAME_CAP)], target)
        raw = raw.ljust(_LINK_INFO_SIZE, b"\0")
        fields[name_slot[0]] = _cstr(names[0])
    for name, off, fmt in plain:
        fields[name] = struct.unpack_from("=" + fmt, raw, off)[0]
    if ltype == LinkType.ITER and fields.get("target_name") == "cgroup":
        fields["cgroup_id"] = _U64.unpack_from(raw, 32)[0]
    if "attach_type" in fields:
        fields["attach_type"] = _enum(AttachType, fields["attach_type"])
    return LinkInfo(id=lid, type=_enum(LinkType, ltype), prog_id=prog_id, **fields)


_L = TypeVar("_L", bound="Link")


class Link:
    """One attachment of one program (see the module docstring for the two kinds).

    Attributes: ``fd`` (the link fd, -1 when the attachment is not a BPF
    link), ``id`` (kernel link id, 0 likewise), ``program`` (the program's
    name), ``type`` (:class:`bpfload.LinkType`), ``hook`` (what it is
    attached to, for messages), ``pin_path``.  A context manager; closing
    is idempotent.  A Link left unclosed warns with ``ResourceWarning`` when
    collected (and is closed then).
    """

    def __init__(self, fd: Optional[FD], *, program: str, type: Union[LinkType, int], hook: str,
                 detach: Optional[Callable[[], None]] = None, holds: Sequence[Any] = ()):
        """Wrap an attachment.  For bpfload's attach functions; users get Links from them.

        *fd*: the owned link fd (None for attachments that are not BPF
        links, which need *detach*: called once to undo the attachment).
        *holds*: further owned resources (fds, sockets, objects with
        ``close()``) released after the attachment is undone.
        """
        if fd is None and detach is None:
            raise ValueError("a Link needs a link fd or a detach callback")
        self._fd = fd
        self.program = program
        self.type = _enum(LinkType, type)
        self.hook = hook
        self._detach_fn = detach
        self._holds: List[Any] = list(holds)
        self._detached = False
        self._closed = False
        self._pin_path: Optional[str] = None
        self._id = 0

    #: link type -> the subclass that opens such links (IterLink registers for ITER)
    _by_type: Dict[int, type] = {}

    # -- opening existing links ------------------------------------------------
    @classmethod
    def _from_fd(cls, fdobj: FD, program: Optional[str]) -> "Link":
        try:
            info = link_info(fdobj.fileno())
            name = program or _program_name(info.prog_id)
        except BaseException:
            fdobj.close()
            raise
        sub = Link._by_type.get(info.type)
        if sub is not None and issubclass(sub, cls):
            cls = sub       # Link.from_pin() of an iterator gives an IterLink
        link = cls(fdobj, program=name, type=info.type, hook=_describe(info))
        link._id = info.id
        return link

    @classmethod
    def from_pin(cls, path: Union[str, "os.PathLike[str]"], *, program: Optional[str] = None) -> "Link":
        """Open the link pinned at *path*.

        Closing the returned Link does not detach (the pin holds the link);
        :meth:`unpin` then :meth:`close` does.  Raises
        :class:`bpfload.PinError` when nothing is pinned there and
        :class:`bpfload.AttachError` when the pin is not a link.
        """
        path = os.fspath(path)
        try:
            fdobj = _sys.obj_get(path)
        except errors.SyscallError as e:
            raise errors.PinError(f"cannot open pinned link ({e.hint})", path, e.errno) from e
        from ..maps import _fdinfo_kind
        kind = _fdinfo_kind(fdobj.fileno())
        if kind != "link":
            fdobj.close()
            raise errors.AttachError(f"{path} is a pinned {kind}, not a link", op="open")
        link = cls._from_fd(fdobj, program)
        link._pin_path = path
        return link

    @classmethod
    def from_id(cls, link_id: int, *, program: Optional[str] = None) -> "Link":
        """Open the link with kernel id *link_id* (BPF_LINK_GET_FD_BY_ID).

        The new fd is one more reference: closing it does not detach while
        another fd or a pin holds the link.
        """
        return cls._from_fd(_sys.get_fd_by_id("link", link_id), program)

    # -- attributes ------------------------------------------------------------
    @property
    def is_bpf_link(self) -> bool:
        """True when the kernel holds a link object (fd, id, pin, update, detach)."""
        return self._fd is not None

    @property
    def fd(self) -> int:
        """The link fd; -1 for attachments that are not BPF links."""
        if self._fd is None:
            return -1
        self._check_open()
        return self._fd.fileno()

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def id(self) -> int:
        """The kernel link id; 0 for attachments that are not BPF links."""
        if self._fd is None:
            return 0
        if not self._id:
            self._id = self.info().id
        return self._id

    @property
    def pin_path(self) -> Optional[str]:
        return self._pin_path

    def info(self) -> LinkInfo:
        """The kernel's ``bpf_link_info`` (:class:`LinkInfo`).

        Raises :class:`bpfload.AttachError` for attachments that are not BPF links.
        """
        if self._fd is None:
            raise errors.AttachError(f"a {self._kind()} attachment is not a BPF link and has no "
                                     "link info", program=self.program, hook=self.hook,
                                     op="read")
        self._check_open()
        info = link_info(self._fd, self.program)
        self._id = info.id
        return info

    # -- operations ------------------------------------------------------------
    def pin(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Pin the link at *path* in a bpffs: the program stays attached after this
        process exits, and :meth:`close` no longer detaches.

        Raises :class:`bpfload.AttachError` for attachments that cannot be
        pinned, :class:`bpfload.PinError` when the kernel refuses the path.
        """
        if self._fd is None:
            raise errors.AttachError(f"a {self._kind()} attachment is not a BPF link and cannot be "
                                     "pinned", program=self.program, hook=self.hook, op="pin")
        self._check_open()
        self._pin_path = pin_fd(self._fd, path, f"link of program {self.program!r}")

    def unpin(self) -> None:
        """Remove the link's pin; the link then lives as long as its fds."""
        unpin_path(self._pin_path, f"link of program {self.program!r}")
        self._pin_path = None

    def update(self, program: Any, *, old_program: Any = None) -> None:
        """Swap the attached program for *program* atomically (BPF_LINK_UPDATE).

        With *old_program*, only if that one is still attached
        (BPF_F_REPLACE).  Link kinds whose kernel has no update (perf-event
        links: tracepoints, kprobes, uprobes, perf events) and attachments
        that are not BPF links raise :class:`bpfload.AttachError`.
        """
        if self._fd is None or self.type == LinkType.PERF_EVENT:
            raise errors.AttachError(f"the kernel cannot swap the program of a {self._kind()} "
                                     "link; close it and attach the new program instead",
                                     program=self.program, hook=self.hook, op="update")
        new_fd = _fd_arg(program)
        old_fd = 0 if old_program is None else _fd_arg(old_program)
        replace = 4 if old_program is not None else 0           # BPF_F_REPLACE
        self._check_open()
        try:
            _sys.link_update(self._fd, new_fd, replace, old_fd, self.program)
        except errors.SyscallError as e:
            raise errors.attach_error(e.command, e.errno, program=self.program, hook=self.hook,
                                      family="link", op="update",
                                      message="the kernel refused") from e
        self.program = getattr(program, "name", self.program)

    def detach(self) -> None:
        """Release the program from its hook.

        A BPF link's fd stays valid (its info then shows no target);
        BPF_LINK_DETACH is refused by the kernel for perf-event links, which
        raise :class:`bpfload.AttachError` (use :meth:`close`).  For other
        attachments this undoes the attachment; calling it twice is harmless.
        """
        if self._fd is None:
            self._check_open()
            self._run_detach()
            return
        if self.type == LinkType.PERF_EVENT:
            raise errors.AttachError("the kernel has no detach for perf-event links "
                                     "(tracepoints, kprobes, uprobes, perf events); close the "
                                     "link instead", program=self.program, hook=self.hook,
                                     op="detach")
        self._check_open()
        try:
            _sys.link_detach(self._fd, self.program)
        except errors.SyscallError as e:
            raise errors.attach_error(e.command, e.errno, program=self.program, hook=self.hook,
                                      family="link", op="detach",
                                      message="the kernel refused") from e
        self._detached = True

    def close(self) -> None:
        """Close the link: detaches unless pinned.  Idempotent; never raises for cleanup."""
        if self._closed:
            return
        self._closed = True
        if self._fd is None:
            try:
                self._run_detach()
            except errors.BpfError as e:
                log.debug("detaching %s from %s on close: %s", self.program, self.hook, e)
        else:
            self._fd.close()
        for h in reversed(self._holds):
            try:
                h.close()
            except OSError as e:  # pragma: no cover - closing an fd we own
                log.debug("closing %r: %s", h, e)
        self._holds.clear()

    def _run_detach(self) -> None:
        if self._detached:
            return
        self._detached = True
        assert self._detach_fn is not None
        self._detach_fn()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.AttachError("it is closed", program=self.program, hook=self.hook,
                                     err=_errno.EBADF, op="use")

    def _kind(self) -> str:
        t = self.type
        return (t.name.lower().replace("_", "-") if isinstance(t, LinkType) else str(t))

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            warnings.warn(f"unclosed link of program {self.program!r} ({self.hook})",
                          ResourceWarning)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
        self.close()

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, LinkType) else self.type
        if self._closed:
            state = "closed"
        elif self._fd is None:
            state = "no link fd"
        else:
            state = f"fd={self._fd.fileno()}"
        pin = f" pinned={self._pin_path!r}" if self._pin_path else ""
        return f"<Link {t} {self.program!r} -> {self.hook} {state}{pin}>"


def _fd_arg(program: Any) -> Union[int, FD]:
    """A program's fd owner (held by the syscall wrapper for the call), or its fd number."""
    owner = getattr(program, "_fd", None)
    if isinstance(owner, FD):
        return owner
    return program.fd if hasattr(program, "fd") else int(program)


def _program_name(prog_id: int) -> str:
    if not prog_id:
        return ""
    try:
        with _sys.get_fd_by_id("prog", prog_id) as pfd:
            raw = _sys.obj_get_info(pfd.fileno(), 80)
    except errors.SyscallError:
        return f"prog id {prog_id}"
    return _cstr(raw[64:80]) or f"prog id {prog_id}"


def _describe(info: LinkInfo) -> str:
    """A short description of a link's hook from its info (for messages and repr)."""
    t = info.type
    if info.tp_name:
        return f"tracepoint {info.tp_name}"
    if info.target_name:
        return f"iterator {info.target_name}"
    if info.func_name:
        return f"kprobe {info.func_name}"
    if info.file_name:
        return f"uprobe {info.file_name}"
    if info.ifindex is not None:
        return f"{t.name.lower() if isinstance(t, LinkType) else t} on ifindex {info.ifindex}"
    if info.cgroup_id is not None:
        return f"cgroup id {info.cgroup_id}"
    if info.pf is not None:
        return f"netfilter pf {info.pf} hook {info.hooknum} priority {info.priority}"
    return t.name.lower() if isinstance(t, LinkType) else f"link type {t}"


_Item = TypeVar("_Item")


def link_group(program: str, make: Callable[[_Item], "Link"], items: Iterable[_Item], *,
               type: Union[LinkType, int], hook: str, holds: Sequence[Any] = ()) -> "Link":
    """One :class:`Link` owning the Links ``make(item)`` gives for each of *items*, in order.

    For attachments made of several (one perf event per CPU, one uprobe per
    USDT site).  If a ``make`` raises, the Links made so far are closed, last
    first, and the error propagates.  Closing the group's Link closes them,
    last first, then releases *holds*.
    """
    links: List[Link] = []
    try:
        for item in items:
            links.append(make(item))
    except BaseException:
        for link in reversed(links):
            link.close()
        raise

    def detach() -> None:
        for link in reversed(links):
            link.close()

    return Link(None, program=program, type=type, hook=hook, detach=detach, holds=holds)
