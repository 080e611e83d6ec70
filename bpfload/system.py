"""System introspection: every BPF program, map, link and BTF object the kernel holds.

What ``bpftool prog|map|link|btf list`` shows, as generators of records
with the kernel's field names::

    for p in bpfload.programs():
        print(p.id, p.type.name, p.name, p.tag, p.map_ids)
    for ln in bpfload.links(pin_root="/sys/fs/bpf"):
        print(ln.id, ln.type, ln.prog_id, ln.pinned)

Each generator walks the ids with BPF_{PROG,MAP,LINK,BTF}_GET_NEXT_ID,
opens each object by id (BPF_*_GET_FD_BY_ID), reads its info
(BPF_OBJ_GET_INFO_BY_FD) and closes the fd at once: the walk holds at most
one fd, and holding it never keeps an object alive past the step.  Objects
that disappear between the id walk and the open (ENOENT) are skipped
silently, so a listing is a consistent-enough snapshot of a moving system
(objects created during the walk may or may not appear).

The records are :class:`ProgramRecord`, :class:`MapRecord` and
:class:`LinkRecord`: subclasses of :class:`bpfload.ProgramInfo`,
:class:`bpfload.MapInfo` and :class:`bpfload.LinkInfo` with one more field,
``pinned``: a tuple of the paths under *pin_root* (a bpffs directory,
walked recursively) where the object is pinned; empty when no *pin_root*
is given or nothing is pinned there.  :class:`BtfInfo` describes BTF objects
(which cannot be pinned).

Needs root or CAP_SYS_ADMIN (the kernel refuses GET_NEXT_ID and
GET_FD_BY_ID to others: :class:`bpfload.PermissionDeniedError`), Linux
4.13 for programs and maps, 5.4 for BTF, 5.8 for links.

Note on names: :mod:`bpfload` re-exports :func:`programs` and :func:`maps`
as ``bpfload.programs()`` and ``bpfload.maps()``.  Binding those functions
in the package namespace shadows the submodules ``bpfload.programs`` and
``bpfload.maps`` as *attributes* of the package.  What keeps working:
``from bpfload.maps import Map``, ``from bpfload.programs import Program``
(these look the submodule up in ``sys.modules``), ``from bpfload import
Map``, ``importlib.import_module("bpfload.maps")`` and bpfload's own
relative imports (``from .maps import ...``).  What no longer works:
attribute access through the package, ``bpfload.maps.Map``, and the forms
that resolve to it: ``import bpfload.maps as m`` and ``from bpfload import
maps`` give the *function*, and so does ``mock.patch("bpfload.maps.X")``'s
lookup.  Nothing in bpfload, its tests or benchmarks uses those forms.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import os
import struct
from typing import Dict, Iterator, Optional, Tuple, Union

from . import errors
from ._core import syscall as _sys
from .link.link import LinkInfo, link_info
from .maps import MapInfo, _fdinfo_kind
from .programs import ProgramInfo

__all__ = ["programs", "maps", "links", "btfs", "ProgramRecord", "MapRecord", "LinkRecord",
           "BtfInfo", "pinned_objects"]


@dataclasses.dataclass(frozen=True)
class ProgramRecord(ProgramInfo):
    """A :class:`bpfload.ProgramInfo` plus ``pinned``: paths under the pin root."""

    pinned: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MapRecord(MapInfo):
    """A :class:`bpfload.MapInfo` plus ``pinned``: paths under the pin root."""

    pinned: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LinkRecord(LinkInfo):
    """A :class:`bpfload.LinkInfo` plus ``pinned``: paths under the pin root."""

    pinned: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BtfInfo:
    """``struct bpf_btf_info`` without the blob: ``id``, ``name`` ("vmlinux", a module's
    name, or "" for BTF loaded by a program's object), ``size`` (bytes of the
    BTF blob) and ``kernel_btf`` (True for vmlinux and module BTF)."""

    id: int
    name: str
    size: int
    kernel_btf: bool


# struct bpf_btf_info: btf (u64 ptr), btf_size, id, name (u64 ptr), name_len, kernel_btf
_BTF_INFO = struct.Struct("=QII QII")
_BTF_NAME_CAP = 256

#: pinnable kind -> the fdinfo word that names it
_KINDS = ("prog", "map", "link")


def _gone(e: errors.SyscallError) -> bool:
    return e.errno == _errno.ENOENT


def _walk(kind: str) -> Iterator[Tuple[int, object]]:
    """Yield ``(id, FD)`` for each live object of *kind*; the caller must close the FD
    before asking for the next one (the generator closes it too, in case it did not)."""
    cur = 0
    while True:
        nxt = _sys.get_next_id(kind, cur)
        if not nxt:
            return
        cur = nxt
        try:
            fd = _sys.get_fd_by_id(kind, nxt)
        except errors.SyscallError as e:
            if _gone(e):
                continue
            raise
        try:
            yield nxt, fd
        finally:
            fd.close()


def pinned_objects(pin_root: Union[str, os.PathLike]) -> Dict[Tuple[str, int], Tuple[str, ...]]:
    """``{(kind, id): (path, ...)}`` for every object pinned under *pin_root* (recursively).

    *kind* is ``"prog"``, ``"map"`` or ``"link"``.  Files that are not BPF
    objects, symbolic links and pins that vanish during the walk are
    skipped.  Raises :class:`bpfload.PinError` when *pin_root* is not a
    directory.
    """
    root = os.fspath(pin_root)
    if not os.path.isdir(root):
        raise errors.PinError("pin root is not a directory", root, _errno.ENOTDIR)
    out: Dict[Tuple[str, int], list] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            path = os.path.join(dirpath, fn)
            if os.path.islink(path):
                continue
            try:
                fd = _sys.obj_get(path)
            except errors.SyscallError:
                continue      # not a BPF object (maps.debug ...), or gone
            with fd:
                kind = _fdinfo_kind(fd.fileno())
                if kind not in _KINDS:
                    continue
                try:
                    raw = _sys.obj_get_info(fd.fileno(), 8, path)
                except errors.SyscallError:
                    continue
            obj_id = struct.unpack_from("=I", raw.ljust(8, b"\0"), 4)[0]
            out.setdefault((kind, obj_id), []).append(path)
    return {k: tuple(v) for k, v in out.items()}


def _pins(pin_root) -> Optional[Dict[Tuple[str, int], Tuple[str, ...]]]:
    return None if pin_root is None else pinned_objects(pin_root)


def _records(kind: str, read, cls, pin_root) -> Iterator:
    """Walk the kernel's *kind* ids: open each, read its info with *read*, close it, and
    yield it as *cls* with its pins; objects that vanish meanwhile are skipped."""
    pins = _pins(pin_root)
    for _id, fd in _walk(kind):
        try:
            info = read(fd.fileno())
        except errors.SyscallError as e:
            if _gone(e):
                continue
            raise
        finally:
            fd.close()
        yield _extend(cls, info, pins, kind)


def _extend(cls, info, pins, kind: str):
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    fields["pinned"] = pins.get((kind, info.id), ()) if pins else ()
    return cls(**fields)


def programs(*, pin_root: Optional[Union[str, os.PathLike]] = None) -> Iterator[ProgramRecord]:
    """Every BPF program loaded in the kernel, by increasing id (``bpftool prog list``).

    Yields :class:`ProgramRecord` (``id``, ``type``, ``name``, ``tag``,
    ``map_ids``, ``load_time`` (ns since boot), ``created_by_uid``,
    ``run_cnt``, ``btf_id`` ... and ``pinned``, the paths under *pin_root*).
    Raises :class:`bpfload.PermissionDeniedError` without CAP_SYS_ADMIN and
    :class:`bpfload.PinError` when *pin_root* is not a directory.  Linux 4.13+.
    """
    return _records("prog", ProgramInfo.from_fd, ProgramRecord, pin_root)


def maps(*, pin_root: Optional[Union[str, os.PathLike]] = None) -> Iterator[MapRecord]:
    """Every BPF map in the kernel, by increasing id (``bpftool map list``).

    Yields :class:`MapRecord` (``id``, ``type``, ``name``, ``key_size``,
    ``value_size``, ``max_entries``, ``flags``, ``btf_id`` ... and
    ``pinned``).  Raises as :func:`programs`.  Linux 4.13+.
    """
    return _records("map", MapInfo.from_fd, MapRecord, pin_root)


def links(*, pin_root: Optional[Union[str, os.PathLike]] = None) -> Iterator[LinkRecord]:
    """Every BPF link in the kernel, by increasing id (``bpftool link list``).

    Yields :class:`LinkRecord` (``id``, ``type``, ``prog_id``, and the
    per-type fields of :class:`bpfload.LinkInfo`: ``tp_name``,
    ``attach_type``, ``ifindex``, ``cgroup_id`` ... and ``pinned``).  Raises
    as :func:`programs`.  Linux 5.8+ (link ids and BPF_LINK_GET_NEXT_ID).
    """
    return _records("link", link_info, LinkRecord, pin_root)


def btfs() -> Iterator[BtfInfo]:
    """Every BTF object in the kernel (vmlinux, modules, loaded objects), by id.

    Yields :class:`BtfInfo` without copying the BTF blobs (``size`` says how
    big each is).  Raises as :func:`programs`.  Linux 5.4+ (``name`` and
    ``kernel_btf`` 5.11+; empty/False before).
    """
    for bid, fd in _walk("btf"):
        try:
            raw, names = _sys.obj_get_info_names(fd.fileno(), _BTF_INFO.size,
                                                 [(16, 24, _BTF_NAME_CAP)], f"BTF id {bid}")
        except errors.SyscallError as e:
            if _gone(e):
                continue
            if e.errno != _errno.ENOSPC:     # a name longer than the buffer: keep it cut
                raise
            raw, names = _sys.obj_get_info_names(fd.fileno(), _BTF_INFO.size, [], f"BTF id {bid}")
            names = [b""]
        finally:
            fd.close()
        _ptr, size, obj_id, _nptr, _nlen, kernel_btf = _BTF_INFO.unpack(
            raw.ljust(_BTF_INFO.size, b"\0"))
        name = names[0].split(b"\0", 1)[0].decode(errors="replace")
        yield BtfInfo(id=obj_id or bid, name=name, size=size, kernel_btf=bool(kernel_btf))
