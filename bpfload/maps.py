"""Maps: :class:`Map`, one owner of one BPF map fd.

The per-element and bulk fast paths live in :class:`bpfload._core.syscall.MapCore`
(Cython); this module adds construction (create, fd, id, pin), pinning,
kernel info and the interfaces of particular map types (queue/stack/bloom).
"""
from __future__ import annotations

import os
import struct

from . import errors
from ._lazy import Module
from ._records import FrozenRecord
from .pins import pin_fd, unpin_path
from ._core import syscall as _sys
from ._core.syscall import FD, MapCore, possible_cpus
from .constants import MAP_IN_MAP_TYPES, MapType

fcntl = Module("fcntl")   # imported on first use (dup_fd only)
TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Optional, Union
    from ._core.mapping import MapMapping
    from .btf.format import Btf
    from .btf.typed import TypedMap

__all__ = ["Map", "MapInfo", "possible_cpus", "kernel_name"]

_MAP_INFO = struct.Struct("=6I16sII QQ III4x Q")
assert _MAP_INFO.size == 88

#: what kernel object names may hold (kernel_name); a set, not a regular expression (start-up)
_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")

MMAPABLE, RDONLY = 1 << 10, 1 << 3     # BPF_F_MMAPABLE, BPF_F_RDONLY
#: flags that belong to the fd, not the map: the kernel leaves them out of bpf_map_info (5.9+)
_FD_FLAGS = RDONLY | 1 << 4             # BPF_F_RDONLY | BPF_F_WRONLY
_MAP_IN_MAP = frozenset(int(t) for t in MAP_IN_MAP_TYPES)


def kernel_name(name: Optional[str]) -> str:
    """The name the kernel accepts: [A-Za-z0-9_.], at most 15 bytes."""
    if name and name.isascii():
        name = name[:15]
        if name.replace("_", "").replace(".", "").isalnum():
            return name     # nothing to clean (the usual case): no loop per character
    return "".join([c if c in _NAME_OK else "_" for c in (name or "")[:15]])


class MapInfo(FrozenRecord):
    """What BPF_OBJ_GET_INFO_BY_FD reports for a map (``struct bpf_map_info``)."""

    _fields = ("type", "id", "key_size", "value_size", "max_entries", "flags", "name", "ifindex",
               "btf_vmlinux_value_type_id", "netns_dev", "netns_ino", "btf_id", "btf_key_type_id",
               "btf_value_type_id", "map_extra")

    type: MapType
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    ifindex: int
    btf_vmlinux_value_type_id: int
    netns_dev: int
    netns_ino: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    map_extra: int

    def __init__(self, type: MapType, id: int, key_size: int, value_size: int, max_entries: int,
                 flags: int, name: str, ifindex: int, btf_vmlinux_value_type_id: int, netns_dev: int,
                 netns_ino: int, btf_id: int, btf_key_type_id: int, btf_value_type_id: int,
                 map_extra: int) -> None:
        _set = object.__setattr__
        _set(self, "type", type)
        _set(self, "id", id)
        _set(self, "key_size", key_size)
        _set(self, "value_size", value_size)
        _set(self, "max_entries", max_entries)
        _set(self, "flags", flags)
        _set(self, "name", name)
        _set(self, "ifindex", ifindex)
        _set(self, "btf_vmlinux_value_type_id", btf_vmlinux_value_type_id)
        _set(self, "netns_dev", netns_dev)
        _set(self, "netns_ino", netns_ino)
        _set(self, "btf_id", btf_id)
        _set(self, "btf_key_type_id", btf_key_type_id)
        _set(self, "btf_value_type_id", btf_value_type_id)
        _set(self, "map_extra", map_extra)

    @classmethod
    def from_fd(cls, fd: Union[int, FD], target: Optional[str] = None) -> "MapInfo":
        raw = _sys.obj_get_info(fd, _MAP_INFO.size, target)
        raw = raw.ljust(_MAP_INFO.size, b"\0")
        f = list(_MAP_INFO.unpack(raw))
        try:
            f[0] = MapType(f[0])
        except ValueError:
            pass
        f[6] = f[6].split(b"\0", 1)[0].decode(errors="replace")
        return cls(*f)


_MAPPING_MODULE = None


def _mapping_module():
    """bpfload._core.mapping, imported on first use (an import statement per call costs ~1 us)."""
    global _MAPPING_MODULE
    if _MAPPING_MODULE is None:
        from ._core import mapping
        _MAPPING_MODULE = mapping
    return _MAPPING_MODULE


def _as_fd(obj) -> int:
    """An int fd from an int, an :class:`FD`, or anything with ``fd``/``fileno()``."""
    if isinstance(obj, int):
        return obj
    fd = getattr(obj, "fd", None)
    if isinstance(fd, int):
        return fd
    if hasattr(obj, "fileno"):
        return obj.fileno()
    raise TypeError(f"expected an fd or an object with one, got {type(obj).__name__}")


def dup_fd(fd: int) -> int:
    """An O_CLOEXEC duplicate of *fd* numbered 3 or above (fd 0 means "no fd" to the UAPI)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _fdinfo_kind(fd: int) -> str:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return "unknown"
    if "map_type:" in text:
        return "map"
    if "prog_type:" in text:
        return "prog"
    if "link_type:" in text:
        return "link"
    return "other"


class Map(MapCore):
    """One BPF map, owned through its fd.

    Construct with :meth:`create`, :meth:`from_fd`, :meth:`from_id` or
    :meth:`from_pin`; loaded objects hand them out as ``obj.maps[name]``.
    Keys and values are bytes-like objects of exactly the map's sizes, or
    ints packed to those sizes in native byte order.  See
    :class:`~bpfload._core.syscall.MapCore` for the access methods
    (``lookup``, ``update``, ``delete``, batch operations, ``sum`` ...) and
    the dict protocol (``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``,
    iteration over keys).  Close with :meth:`close` or a ``with`` block.

    Bulk reads into caller buffers (``lookup_batch``,
    ``lookup_and_delete_batch``, ``sum_batch``) are whole or raise: buffers
    that fill up while the map holds more entries raise :class:`MapError`
    (errno ENOSPC) with ``count``, the entries the buffers hold.
    """

    _type: Union[MapType, int]
    _id: int
    _pin_path: Optional[str]
    #: the id of the inner-map template of a map-in-map this Map created, else None
    inner_map_id: Optional[int]

    def __init__(self, *a: object, **kw: object) -> None:
        raise TypeError("use Map.create(), Map.from_fd(), Map.from_id() or Map.from_pin()")

    # -- construction ---------------------------------------------------------
    @classmethod
    def _wrap(cls, fdobj: FD, map_type: int, key_size: int, value_size: int, max_entries: int,
              flags: int, name: Optional[str], map_id: int = 0) -> "Map":
        self = cls.__new__(cls)
        self._init_core(fdobj, int(map_type), key_size, value_size, max_entries, flags, name)
        # (the member for a known type, else the number: MapType(n) without the enum call)
        self._type = MapType._value2member_map_.get(map_type, map_type)
        self._id = map_id
        self._pin_path = None
        self.inner_map_id = None
        return self

    @classmethod
    def _from_owned_fd(cls, fdobj: FD, name: Optional[str] = None) -> "Map":
        try:
            info = MapInfo.from_fd(fdobj.fileno(), name)
        except BaseException:
            fdobj.close()
            raise
        m = cls._wrap(fdobj, info.type, info.key_size, info.value_size, info.max_entries,
                      info.flags, name or info.name, info.id)
        fdobj.what = f"map {m.name!r}"
        return m

    @classmethod
    def create(cls, map_type: Union[MapType, int], key_size: int, value_size: int,
               max_entries: int, *, flags: int = 0, name: Optional[str] = None,
               inner_map: Optional[Union["Map", int]] = None, numa_node: Optional[int] = None,
               map_extra: int = 0, btf_fd: int = 0, btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               btf_vmlinux_value_type_id: int = 0) -> "Map":
        """Create a map (BPF_MAP_CREATE).

        *inner_map* (a Map or fd) is the template of an ARRAY_OF_MAPS /
        HASH_OF_MAPS.  *numa_node* sets BPF_F_NUMA_NODE.  *map_extra* is the
        number of hash functions of a BLOOM_FILTER, the user address of an
        ARENA (page aligned; 0: wherever :meth:`mmap` puts it).
        *btf_vmlinux_value_type_id*: a STRUCT_OPS map's value type in the
        kernel's BTF (``struct bpf_struct_ops_<type>``).  Raises
        :class:`bpfload.MapError` (errno and hint) when the kernel refuses.
        """
        map_type = int(map_type)
        inner_fd = 0
        if map_type in _MAP_IN_MAP:
            if inner_map is None:
                raise ValueError(f"map {name!r}: {MapType(map_type).name} needs inner_map "
                                 "(the template the kernel checks inner maps against)")
            inner_fd = _as_fd(inner_map)
        elif inner_map is not None:
            raise ValueError(f"map {name!r}: inner_map is only for ARRAY_OF_MAPS/HASH_OF_MAPS")
        fdobj = _sys.map_create(map_type, key_size, value_size, max_entries, flags,
                                kernel_name(name), inner_fd, numa_node, btf_fd, btf_key_type_id,
                                btf_value_type_id, btf_vmlinux_value_type_id, map_extra)
        if name:
            fdobj.what = f"map {name!r}"
        # The flags bpf_map_info would report, without asking (libbpf does not ask either):
        # the kernel keeps what it was given but the fd's access flags.  The id is asked
        # for when first read (see :attr:`id`).
        m = cls._wrap(fdobj, map_type, key_size, value_size, max_entries, flags & ~_FD_FLAGS, name)
        if inner_fd:
            try:
                m.inner_map_id = MapInfo.from_fd(inner_fd).id
            except BaseException:
                m.close()          # the new outer map: never left to the collector
                raise
        return m

    @classmethod
    def from_fd(cls, fd: Union[int, FD, Any], *, name: Optional[str] = None) -> "Map":
        """A Map for an existing map fd.  The fd is duplicated: the caller keeps its own."""
        src = fd  # holds an fd owner passed as a temporary open until it is duplicated
        fd = _as_fd(src)
        if _fdinfo_kind(fd) != "map":
            raise errors.BpfError(f"fd {fd} is not a BPF map")
        new = dup_fd(fd)
        return cls._from_owned_fd(FD(new, "map"), name)

    @classmethod
    def from_id(cls, map_id: int, *, name: Optional[str] = None) -> "Map":
        """Open the map with kernel id *map_id* (BPF_MAP_GET_FD_BY_ID)."""
        return cls._from_owned_fd(_sys.get_fd_by_id("map", map_id), name)

    @classmethod
    def from_pin(cls, path: Union[str, "os.PathLike[str]"], *, name: Optional[str] = None) -> "Map":
        """Open the map pinned at *path* in a bpffs (BPF_OBJ_GET).

        Raises :class:`bpfload.PinError` when nothing is pinned there or the
        pin is not a map.
        """
        path = os.fspath(path)
        try:
            fdobj = _sys.obj_get(path)
        except errors.SyscallError as e:
            raise errors.PinError(f"cannot open pinned map ({e.hint})", path, e.errno) from e
        if _fdinfo_kind(fdobj.fileno()) != "map":
            fdobj.close()
            raise errors.PinError("pinned object is not a map", path)
        m = cls._from_owned_fd(fdobj, name)
        m._pin_path = path
        return m

    # -- attributes -----------------------------------------------------------
    @property
    def type(self) -> Union[MapType, int]:
        """The map type (:class:`bpfload.MapType`; a plain int for a type newer than bpfload)."""
        return self._type

    @property
    def id(self) -> int:
        """The kernel's id for this map (stable while the map exists).

        Known from the start for maps opened by id, pin or fd; a map made by
        :meth:`create` asks the kernel (BPF_OBJ_GET_INFO_BY_FD) the first time
        and keeps the answer.  Raises :class:`bpfload.MapClosedError` when
        that first time comes after :meth:`close`.
        """
        if not self._id:
            self._id = MapInfo.from_fd(self._fdobj, self.name).id
        return self._id

    @property
    def pin_path(self) -> Optional[str]:
        """Where this Map pinned (or was opened from), else None."""
        return self._pin_path

    def info(self) -> MapInfo:
        """Fresh ``struct bpf_map_info`` from the kernel."""
        return MapInfo.from_fd(self._fdobj, self.name)

    def fileno(self) -> int:
        return self.fd

    def typed(self, btf: Optional["Btf"] = None, key_type_id: Optional[int] = None,
              value_type_id: Optional[int] = None) -> "TypedMap":
        """A :class:`bpfload.TypedMap` view: keys and values converted through BTF.

        By default the BTF object and type ids are the ones the kernel
        reports for this map (``info().btf_id``; the BTF is fetched from the
        kernel), so maps of a loaded object and maps opened from a pin or an
        id work alike.  Give *btf* (a :class:`bpfload.btf.Btf`) and the type
        ids to use others.  Raises :class:`bpfload.BtfError` when the map was
        created without BTF and none is given.  See :mod:`bpfload.btf.typed`.
        """
        from .btf.typed import TypedMap
        return TypedMap.for_map(self, btf, key_type_id, value_type_id)

    # -- pins -----------------------------------------------------------------
    def pin(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Pin the map at *path* (inside a bpffs mount); :class:`bpfload.PinError` on failure."""
        self._pin_path = pin_fd(self._fdobj, path, f"map {self.name!r}")

    def unpin(self) -> None:
        """Remove the pin this map was pinned at (the map lives on while fds hold it)."""
        unpin_path(self._pin_path, f"map {self.name!r}")
        self._pin_path = None

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); programs may still write."""
        _sys.map_freeze(self._fdobj, self.name)

    # -- shared mapping (global data, arenas) ---------------------------------
    #: the MapMapping made by mmap(), released by close()
    _mapping: Optional["MapMapping"] = None

    def mmap(self, *, writable: Optional[bool] = None) -> "MapMapping":
        """The map's memory mapped into this process: a :class:`bpfload._core.mapping.MapMapping`.

        ``memoryview(map.mmap())`` reads and writes the map with no bpf(2)
        call.  For an ARRAY created with ``BPF_F_MMAPABLE`` (global-data
        maps) the range holds the values back to back, each rounded up to 8
        bytes; for an ARENA it is the arena's ``max_entries`` pages, at the
        user address given as ``map_extra`` (or one the kernel picks);
        pages are allocated when first touched.  *writable*: None maps
        read-write, or read-only when the kernel refuses writes (a frozen map,
        ``BPF_F_RDONLY``); False maps read-only.  The mapping is made once
        and kept; :meth:`close` releases it (views still held then read
        zeros).  Raises :class:`bpfload.MapTypeError` for other maps,
        :class:`bpfload.ReadOnlyError` when *writable* is True but the map is
        already mapped read-only, :class:`bpfload.SyscallError` when mmap(2)
        fails (EPERM for writable mappings of frozen maps).  Needs Linux 5.5
        (mmapable arrays), 6.9 (arenas).
        """
        _mapping = _mapping_module()
        m = self._mapping
        if m is not None and not m.closed:
            if writable and not m.writable:
                raise errors.ReadOnlyError(f"map {self.name!r} is already mapped read-only")
            return m
        fd = self.fd
        page = _mapping.page_size()
        address = 0
        if self._type == MapType.ARENA:
            length = self.max_entries * page
            address = self.info().map_extra
        elif self._type == MapType.ARRAY and self.flags & MMAPABLE:
            length = -(-((self.value_size + 7) // 8 * 8 * self.max_entries) // page) * page
        else:
            raise errors.MapTypeError(
                f"map {self.name!r} ({getattr(self._type, 'name', self._type)}, flags "
                f"{self.flags:#x}) cannot be mapped: only ARRAY maps created with BPF_F_MMAPABLE "
                "and ARENA maps can")
        what = f"map {self.name!r}"
        if writable is None and not self.flags & RDONLY:
            try:
                m = _mapping.map_mmap(fd, length, True, address, what)
            except errors.PermissionDeniedError:     # frozen: the kernel allows reading only
                m = _mapping.map_mmap(fd, length, False, address, what)
        else:
            m = _mapping.map_mmap(fd, length, bool(writable), address, what)
        self._mapping = m
        return m

    # -- queue / stack / bloom filter -----------------------------------------
    def push(self, value: Any, flags: int = 0) -> None:
        """QUEUE/STACK: push *value* (``BPF_EXIST`` makes a full queue drop its oldest).
        BLOOM_FILTER: add *value*."""
        self._keyless(1, value, flags)

    def pop(self) -> Any:
        """QUEUE/STACK: remove and return the next value, or None when empty."""
        return self._keyless(2, None, 0)

    def peek(self) -> Any:
        """QUEUE/STACK: the next value without removing it, or None when empty."""
        return self._keyless(0, None, 0)

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Close the map (idempotent), releasing the mapping :meth:`mmap` made."""
        if self._mapping is not None:
            self._mapping.close()
        super().close()

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        tname = self._type.name if isinstance(self._type, MapType) else self._type
        return (f"<Map {self.name!r} {tname} key={self.key_size} value={self.value_size} "
                f"max_entries={self.max_entries} {state}>")
