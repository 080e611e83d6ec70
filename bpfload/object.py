"""BpfObject: one BPF ELF object, from parsed spec to live maps and programs.

``BpfObject.open()`` parses only; until :meth:`BpfObject.load` the maps and
programs are editable specs (:class:`~bpfload.spec.MapSpec`,
:class:`~bpfload.spec.ProgramSpec`).  After load they are live
:class:`~bpfload.Map` and :class:`~bpfload.Program` objects.  The object
owns every fd it created and closes them in :meth:`close` (or at the end
of a ``with`` block).
"""
from __future__ import annotations

import errno
import os
import stat

from . import errors
from .constants import ProgType
from .elf import parse_object   # (at import: bpfload.load imports it while collection is paused)
from .globaldata import GlobalData
from .loader import LoadResult, load_spec
from .pins import pin_name, pin_path
from .spec import ObjectSpec

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Union
    from .link.link import Link
    from .maps import Map
    from .programs import Program

__all__ = ["BpfObject", "load", "GlobalData", "read_object_file"]


class BpfObject:
    """A BPF ELF object: its maps and programs, before and after load.

    Before :meth:`load`, ``maps[name]`` is a :class:`~bpfload.spec.MapSpec`
    (edit ``max_entries``, ``pinning``, call ``reuse(map_or_fd)``) and
    ``programs[name]`` a :class:`~bpfload.spec.ProgramSpec` (set ``type``
    where the section name does not say it).  After load, ``maps[name]`` and
    ``obj[name]`` are :class:`~bpfload.Map`\\ s and ``programs[name]`` are
    :class:`~bpfload.Program`\\ s.  Global data maps are listed under their
    section names (``obj.maps[".rodata"]``).
    """

    def __init__(self, spec: ObjectSpec, *, path: Optional[str] = None):
        self.spec = spec
        self.name = spec.name
        self.path = path
        # Typed as what they hold after load; before it they hold the specs, which typed
        # code edits through obj.spec.maps / obj.spec.programs (the same objects).
        self.maps: Dict[str, Map] = dict(spec.maps)  # type: ignore[arg-type]
        self.programs: Dict[str, Program] = dict(spec.programs)  # type: ignore[arg-type]
        self._result: Optional[LoadResult] = None
        self._closed = False
        #: program name -> :class:`bpfload.Link` made by :meth:`attach_all` (closed by close())
        self.links: Dict[str, Link] = {}
        #: program name -> why :meth:`attach_all` left it unattached
        self.unattached: Dict[str, str] = {}
        self.rodata = GlobalData(self, ".rodata")
        self.data = GlobalData(self, ".data")
        self.bss = GlobalData(self, ".bss")

    @classmethod
    def open(cls, path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview], *,
             name: Optional[str] = None, map_format: Optional[str] = None) -> "BpfObject":
        """Parse a BPF ELF object (a path or its bytes) without touching the kernel.

        Raises :class:`bpfload.ElfError` for a malformed or unsupported object,
        :class:`bpfload.ObjectFileError` (an ElfError and the matching OSError:
        FileNotFoundError, IsADirectoryError, PermissionError) for a path that
        is not a readable regular file of at most 256 MiB (see
        :func:`read_object_file`), TypeError for anything but a path or bytes (an int is not a path:
        it is never read as an fd).  *map_format* ``"iproute2"`` reads 36-byte definitions in
        ``maps`` as iproute2's ``struct bpf_elf_map`` (tc objects: pinning ``PIN_GLOBAL_NS``
        pins under ``<pin_root>/tc/globals``) instead of bpfload's ``struct bpfm_map_custom``.
        """
        if not isinstance(path_or_bytes, (str, os.PathLike, bytes, bytearray, memoryview)):
            raise TypeError("BpfObject.open() takes a path (str or os.PathLike) or the object's "
                            f"bytes, not {type(path_or_bytes).__name__}")
        path = None
        if isinstance(path_or_bytes, (str, os.PathLike)):
            path = os.fspath(path_or_bytes)
            if name is None:
                base = os.path.basename(path)
                name = base.split(".", 1)[0] or base
            path_or_bytes = read_object_file(path)
        spec = parse_object(path_or_bytes, name=name, map_format=map_format)
        return cls(spec, path=path)

    # -- state ----------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._result is not None and not self._closed

    @property
    def pins_created(self) -> List[str]:
        """Paths this object's load pinned (maps pinned by name that did not exist)."""
        return list(self._result.pins_created) if self._result else []

    @property
    def reused_maps(self) -> List[str]:
        """Names of maps taken from a pin or ``reuse()`` instead of being created."""
        return list(self._result.reused) if self._result else []

    @property
    def map_order(self) -> List[str]:
        """The order the loader obtained maps in."""
        return list(self._result.order) if self._result else []

    # -- load -----------------------------------------------------------------
    def load(self, *, pin_root: Optional[Union[str, os.PathLike]] = None,
             log_level: int = 0) -> "BpfObject":
        """Create the maps, relocate and load the programs (see :mod:`bpfload.loader`).

        *pin_root*: the bpffs directory for maps pinned by name (default
        ``/sys/fs/bpf``).  *log_level*: verifier log level for every program
        (a failed load is retried with a log anyway).  On failure every fd
        this load created is closed, its pins removed, the object is left
        closed, and the error propagates (:class:`bpfload.LoadError`,
        :class:`bpfload.MapError`, :class:`bpfload.ElfError`,
        :class:`bpfload.IncompatibleMapError`, :class:`bpfload.PinError`);
        ValueError for an empty *pin_root* (before anything is done).
        """
        if self._closed:
            raise errors.BpfError(f"object {self.name!r} is closed")
        if self._result is not None:
            raise errors.BpfError(f"object {self.name!r} is already loaded")
        if pin_root is not None and os.fspath(pin_root) in ("", b""):
            raise ValueError("pin_root is empty: give a bpffs directory, or None for the "
                             "default /sys/fs/bpf")
        try:
            res = load_spec(self.spec, pin_root=os.fspath(pin_root) if pin_root is not None else None,
                            log_level=log_level)
        except BaseException:
            self._closed = True
            raise
        self._result = res
        self.maps = dict(res.maps)
        self.programs = dict(res.programs)
        return self

    def __getitem__(self, name: str) -> "Map":
        """``obj["counts"]``: the map (BCC style), or the program when no map has that name.

        Typed as a Map: typed code takes programs from ``obj.programs``.
        Raises :class:`bpfload.NotFoundError` (a KeyError) for a name the object lacks.
        """
        if name in self.maps:
            return self.maps[name]
        if name in self.programs:
            return self.programs[name]  # type: ignore[return-value]
        raise errors.NotFoundError(f"object {self.name!r} has no map or program {name!r} "
                       f"(maps: {', '.join(self.maps)}; programs: {', '.join(self.programs)})")

    def pin_programs(self, directory: Union[str, "os.PathLike[str]"]) -> List[str]:
        """Pin every loaded program at ``directory/<name>``; returns the paths."""
        self._require_loaded()
        out = []
        for p in self.programs.values():
            path = pin_path(directory, pin_name(p.name), object=self.name, what="program")
            p.pin(path)
            out.append(path)
        return out

    def attach_all(self) -> Dict[str, Link]:
        """Attach every loaded program whose section says where (libbpf skeleton's attach).

        struct_ops maps are registered first (:meth:`attach_struct_ops`;
        their Links are kept under the map's name).  Tracepoints, raw
        tracepoints, tp_btf/fentry/fexit/fmod_ret/lsm,
        kprobes, uprobes with a path and iterators that need no argument are
        attached; the rest (XDP, tc, cgroup, perf_event, sockets ...) need a
        target and are listed in ``obj.unattached`` (name -> reason), as are
        programs with ``autoload`` off.  The new links are kept in
        ``obj.links`` (name -> :class:`bpfload.Link`) and closed by
        :meth:`close`; programs already in ``obj.links`` are left alone.
        Returns the links this call made.  If one attach fails, the links
        this call made are closed and the :class:`bpfload.AttachError`
        (naming the program) propagates.
        """
        from .link.attach import attach, auto_attach_reason
        self._require_loaded()
        made: Dict[str, Link] = {}
        try:
            for name in self._result.struct_ops:
                if name not in self.links:
                    made[name] = self.attach_struct_ops(name)
            for name, prog in self.programs.items():
                if name in self.links:
                    continue
                if prog.type == ProgType.STRUCT_OPS:
                    self.unattached[name] = "a struct_ops program: registered with its struct_ops map"
                    continue
                reason = auto_attach_reason(prog)
                if reason is not None:
                    self.unattached[name] = reason
                    continue
                made[name] = attach(prog)
        except BaseException:
            for link in made.values():
                link.close()
            raise
        for name in made:
            self.unattached.pop(name, None)
        self.links.update(made)
        for name, ps in self.spec.programs.items():
            if name not in self.programs:
                self.unattached.setdefault(name, "not loaded (autoload is off)")
        return made

    def attach_struct_ops(self, name: str):
        """Register struct_ops map *name* with the kernel; return its :class:`bpfload.Link`.

        ``SEC(".struct_ops") struct tcp_congestion_ops cc = {...}`` becomes a
        map of that name; registering it makes the kernel use it (for a
        congestion control: it is listed in
        ``/proc/sys/net/ipv4/tcp_available_congestion_control``).  Closing the
        Link unregisters it.  ``.struct_ops.link`` maps register through a BPF
        link (6.4+), which can be pinned.  :meth:`attach_all` does this for
        every struct_ops map.  Raises :class:`bpfload.NotFoundError` for a
        name that is not a struct_ops map, :class:`bpfload.AttachError` when
        the kernel refuses.
        """
        from .link.structops import attach_struct_ops
        self._require_loaded()
        value = self._result.struct_ops.get(name)
        if value is None:
            raise errors.NotFoundError(f"object {self.name!r} has no struct_ops map {name!r} "
                                       f"(struct_ops maps: {', '.join(self._result.struct_ops) or 'none'})")
        st = self.spec.maps[name].struct_ops
        return attach_struct_ops(self.maps[name], value, type_name=st.type_name, link=st.link)

    def _require_loaded(self) -> None:
        if not self.loaded:
            raise errors.BpfError(f"object {self.name!r} is not loaded")

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Close the links of :meth:`attach_all` (detaching the unpinned ones), then every
        map and program fd this object owns (pins stay)."""
        for link in self.links.values():
            link.close()
        self.links.clear()
        for g in (self.rodata, self.data, self.bss):
            g._release()      # views of the mappings first: then closing the maps unmaps them
        if self._result is not None:
            for p in self._result.programs.values():
                p.close()
            for m in self._result.maps.values():
                m.close()
        self._closed = True

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else ("closed" if self._closed else "opened")
        return (f"<BpfObject {self.name!r} {state}: {len(self.maps)} maps, "
                f"{len(self.programs)} programs>")


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_object_file(path: Union[str, os.PathLike], limit: int = errors.MAX_OBJECT_SIZE) -> bytes:
    """The bytes of the object file *path*: a regular file of at most *limit* bytes (256 MiB).

    Never blocks on a FIFO and never reads a device: anything but a regular
    file is refused after ``open(O_NONBLOCK)`` and ``fstat``.  Raises
    :class:`bpfload.ObjectFileError` naming the path (the subclass matching
    the OSError: :class:`~bpfload.errors.ObjectNotFoundError` is a
    FileNotFoundError, a directory an IsADirectoryError), ValueError for a NUL
    in the path.  No kernel version needed.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise errors.object_file_error(path, e.errno) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a regular file")
            if stat.S_ISDIR(st.st_mode):
                raise errors.object_file_error(path, errno.EISDIR, "is a directory, not an object file")
            raise errors.object_file_error(path, None, f"is {kind}, not a regular object file")
        too_big = (f"is over {limit >> 20} MiB, the most bpfload reads as an object file"
                   if limit >= 1 << 20 else f"is over {limit} bytes, the most bpfload reads")
        if st.st_size > limit:
            raise errors.object_file_error(path, errno.EFBIG, too_big)
        chunks = []
        got = 0
        while got <= limit:         # the file may grow after fstat: read at most limit + 1
            try:
                b = os.read(fd, min(limit + 1 - got, 1 << 20))
            except OSError as e:
                raise errors.object_file_error(path, e.errno) from None
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got > limit:
            raise errors.object_file_error(path, errno.EFBIG, too_big)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load(path_or_bytes: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview], *,
         name: Optional[str] = None, pin_root: Optional[Union[str, "os.PathLike[str]"]] = None,
         log_level: int = 0, map_format: Optional[str] = None) -> BpfObject:
    """Open and load a BPF object in one step (see :meth:`BpfObject.open` and :meth:`BpfObject.load`)."""
    obj = BpfObject.open(path_or_bytes, name=name, map_format=map_format)
    return obj.load(pin_root=pin_root, log_level=log_level)
