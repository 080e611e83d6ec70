"""Spec -> live maps and programs: ordering, relocation, pins, rollback.

The order follows the kernel's dependencies (and the seed's createAllMaps):

1. every map that is not an outer map (ARRAY_OF_MAPS / HASH_OF_MAPS),
   inner maps included, in definition order; global-data maps get their
   section image and ``.rodata`` is frozen;
2. each outer map, created with ``inner_map_fd`` = its template;
3. outer slots prepopulated (one BPF_MAP_UPDATE_BATCH per outer map: one
   RCU grace period instead of one per slot);
4. maps pinned by name are pinned (or an existing compatible pin is reused);
5. programs linked (subprograms appended), relocated and loaded;
6. program arrays filled from their static initializers.

Everything created goes on one list of owned fds; only a load that got to
the end releases them to the caller.  A failure at any step closes every fd
this load created (newest first) and removes the pins it created (never a
pin that existed before), then re-raises.
"""
from __future__ import annotations

import array
import errno as _errno
import os

from . import errors
from ._lazy import Pattern
from ._records import Record
from ._core import insn as _insn
from .constants import MAP_IN_MAP_TYPES, MapFlags, MapType, PinType, ProgType
from .maps import Map, MapInfo, kernel_name, possible_cpus
from .programs import Program, load_program
from .pins import pin_path
from .spec import MapSpec, ObjectSpec, RelocKind

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List, Optional

__all__ = ["LoadResult", "load_spec", "check_compatible", "validate_map_in_map",
           "DEFAULT_PIN_ROOT"]

#: libbpf's default for maps pinned by name when no pin_root is given.
DEFAULT_PIN_ROOT = "/sys/fs/bpf"

#: Map types created without BTF key/value types (libbpf does the same: the
#: kernel refuses or ignores value types for fd-holding and keyless maps).
_NO_BTF_TYPES = {MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
                 MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP,
                 MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP,
                 MapType.SOCKHASH, MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
                 MapType.PROG_ARRAY, MapType.BLOOM_FILTER}

#: Program types whose section names a kernel BTF entity to attach to.
_ATTACH_BTF_TYPES = {ProgType.TRACING, ProgType.LSM}

#: BPF_F_MMAPABLE as a plain int (an IntFlag ``&`` makes a new flag object each time)
_MMAPABLE = int(MapFlags.MMAPABLE)

_ARRAY_LIKE = {MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
               MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS}


def _is_usdt(section: Optional[str]) -> bool:
    """``usdt``, ``usdt/...``, ``usdt.s`` ... (libbpf's usdt sections)."""
    head = (section or "").lstrip("?").split("/", 1)[0]
    return head in ("usdt", "usdt.s")


class LoadResult(Record):
    """What a successful load hands to :class:`bpfload.BpfObject`."""

    _fields = ("maps", "programs", "pins_created", "reused", "order", "struct_ops")
    _factories = {"struct_ops": dict}

    maps: Dict[str, Map]
    programs: Dict[str, Program]
    #: pins this load created (the object does not remove them on close)
    pins_created: List[str]
    #: map names that were reused (pin or explicit fd) rather than created
    reused: List[str]
    #: the order maps were obtained in, for ``inspect`` and tests
    order: List[str]
    #: struct_ops map name -> the value that registers it (see link/structops.py)
    struct_ops: Dict[str, bytes]

    def __init__(self, maps: Dict[str, Map], programs: Dict[str, Program], pins_created: List[str],
                 reused: List[str], order: List[str], struct_ops: Optional[Dict[str, bytes]] = None) -> None:
        self.maps = maps
        self.programs = programs
        self.pins_created = pins_created
        self.reused = reused
        self.order = order
        self.struct_ops = {} if struct_ops is None else struct_ops


def _ringbuf_size(n: int) -> int:
    """Round a ring buffer size up to a power-of-two multiple of the page size, as libbpf does."""
    page = os.sysconf("SC_PAGE_SIZE")
    size = max(n, page)
    size = (size + page - 1) // page * page
    return 1 << (size - 1).bit_length()


def normalize_maps(spec: ObjectSpec) -> None:
    """Apply libbpf's defaults to map definitions (on the loader's copy of the spec).

    A PERF_EVENT_ARRAY with max_entries 0 gets one slot per possible CPU, and
    key/value sizes left 0 become 4 (cilium/ebpf's fix-up); a ring buffer's
    size is rounded up to a power-of-two number of pages.  Done
    before reuse checks, so a pinned map created by libbpf compares equal.

    The loader's copy shares the caller's :class:`MapSpec` objects: a map
    whose definition changes is replaced in ``spec.maps`` by an edited copy
    (and an outer map whose template it is, by a copy pointing at it), so
    the caller's specs are never written.
    """
    replaced: Dict[int, MapSpec] = {}
    for name, ms in spec.maps.items():
        if ms.type == MapType.PERF_EVENT_ARRAY:
            # cilium/ebpf's fix-up: the kernel takes only 4-byte keys and values (fds)
            want = (ms.max_entries or len(possible_cpus()), ms.key_size or 4, ms.value_size or 4)
            if want != (ms.max_entries, ms.key_size, ms.value_size):
                new = _shallow(ms)
                new.max_entries, new.key_size, new.value_size = want
                replaced[id(ms)] = spec.maps[name] = new
        elif ms.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
            size = _ringbuf_size(ms.max_entries)
            if size != ms.max_entries:
                new = _shallow(ms)
                new.max_entries = size
                replaced[id(ms)] = spec.maps[name] = new
    if replaced:
        # a named template edited above is the same object as its outer maps' .inner
        for name, ms in spec.maps.items():
            if ms.inner is not None and id(ms.inner) in replaced:
                new = _shallow(ms)
                new.inner = replaced[id(ms.inner)]
                spec.maps[name] = new


def _shallow(spec):
    """A shallow copy of a spec object (``copy.copy`` without importing copy: start-up cost)."""
    new = object.__new__(type(spec))
    new.__dict__.update(spec.__dict__)
    return new


def working_copy(spec: ObjectSpec) -> ObjectSpec:
    """The copy of *spec* a load works on, made cheaply.

    Its ``maps`` and ``programs`` dicts are its own; the specs in them, the
    functions, variables and BTF are the caller's, shared: the loader
    replaces a map or program spec by a copy before it edits one
    (:func:`normalize_maps`, struct_ops), and the linker, the relocations
    and the BTF load never write the specs they read.  (Copying every spec
    cost a small object more than its map and program syscalls' share.)
    """
    new = _shallow(spec)
    new.maps = dict(spec.maps)
    new.programs = dict(spec.programs)
    return new


def check_compatible(ms: MapSpec, info: MapInfo, what: str, obj: str = "") -> None:
    """Refuse to reuse a map whose type, sizes, max_entries or flags differ from *ms*.

    Raises :class:`bpfload.IncompatibleMapError` naming every mismatch.
    """
    want = {"type": int(ms.type), "key_size": ms.key_size, "value_size": ms.value_size,
            "max_entries": ms.max_entries, "flags": ms.flags}
    have = {"type": int(info.type), "key_size": info.key_size, "value_size": info.value_size,
            "max_entries": info.max_entries, "flags": info.flags}
    diff = [f"{k}: definition {want[k]}, existing {have[k]}" for k in want if want[k] != have[k]]
    if diff:
        raise errors.IncompatibleMapError(
            f"{'object ' + repr(obj) + ': ' if obj else ''}map {ms.name!r} cannot reuse {what}: "
            + "; ".join(diff))


def _meta_mismatch(inner: MapSpec, template: MapSpec) -> List[str]:
    """What the kernel's bpf_map_meta_equal would refuse, in words."""
    out = []
    for k in ("type", "key_size", "value_size", "flags"):
        a, b = getattr(inner, k), getattr(template, k)
        if int(a) != int(b):
            out.append(f"{k} {int(a)} != template {int(b)}")
    if (template.type in _ARRAY_LIKE and not (template.flags & MapFlags.INNER_MAP)
            and inner.max_entries != template.max_entries):
        out.append(f"max_entries {inner.max_entries} != template {template.max_entries} "
                   "(arrays must match unless the template has BPF_F_INNER_MAP)")
    return out


def validate_map_in_map(spec: ObjectSpec) -> None:
    """Check map-in-map definitions the way the kernel will, with clearer errors.

    Raises :class:`bpfload.ElfError` naming the object and maps.
    """
    for ms in spec.maps.values():
        if not ms.is_outer:
            continue
        tmpl = ms.inner
        if tmpl is None:
            raise errors.ElfError(f"failed to find map-in-map {ms.name} inner template map",
                                  object=spec.name, section=ms.section)
        if tmpl.type in MAP_IN_MAP_TYPES:
            raise errors.ElfError(f"map-in-map {ms.name}: inner map {tmpl.name!r} is itself a "
                                  "map-in-map (the kernel supports one level)",
                                  object=spec.name, section=ms.section)
        if tmpl.type == MapType.PROG_ARRAY:
            raise errors.ElfError(f"map-in-map {ms.name}: a PROG_ARRAY cannot be an inner map",
                                  object=spec.name, section=ms.section)
        if ms.type == MapType.HASH_OF_MAPS and ms.slots and ms.key_size != 4:
            raise errors.ElfError(f"map-in-map {ms.name}: prepopulated HASH_OF_MAPS needs 4-byte "
                                  f"keys (slot numbers), key_size is {ms.key_size}",
                                  object=spec.name, section=ms.section)
        for slot, target in sorted(ms.slots.items()):
            inner = spec.maps.get(target)
            if inner is None:
                raise errors.ElfError(f"map-in-map {ms.name}: slot {slot} names unknown map "
                                      f"{target!r}", object=spec.name, section=ms.section)
            if ms.type == MapType.ARRAY_OF_MAPS and not 0 <= slot < ms.max_entries:
                raise errors.ElfError(f"map-in-map {ms.name}: slot {slot} is outside "
                                      f"max_entries {ms.max_entries}", object=spec.name,
                                      section=ms.section)
            if inner.is_outer:
                raise errors.ElfError(f"map-in-map {ms.name}: inner map {target!r} is itself a "
                                      "map-in-map", object=spec.name, section=ms.section)
            bad = _meta_mismatch(inner, tmpl)
            if bad:
                raise errors.ElfError(f"map-in-map {ms.name}: inner map {target!r} does not match "
                                      f"the template: {', '.join(bad)}", object=spec.name,
                                      section=ms.section)


class _Load:
    def __init__(self, spec: ObjectSpec, pin_root: Optional[str], log_level: int, kernel_map_name):
        self.spec = spec
        self.pin_root = pin_root
        self.log_level = log_level
        self.kernel_map_name = kernel_map_name
        self.maps: Dict[str, Map] = {}
        self.programs: Dict[str, Program] = {}
        self.pins: List[str] = []
        self.pin_dirs: List[str] = []
        self.reused: List[str] = []
        self.order: List[str] = []
        self.to_pin: List[str] = []
        self.btf_fd = 0
        self.externs = None
        #: BPF_PROG_BIND_MAP worked (True), is missing (False), not tried yet (None)
        self.can_bind: Optional[bool] = None
        #: (name, Map) of the .rodata maps every program is bound to, once known
        self.rodata_maps: Optional[list] = None
        #: struct_ops map name -> the kernel's layout of its type (btf/structops.py)
        self.st_ops: Dict[str, object] = {}
        self.st_ops_values: Dict[str, bytes] = {}
        #: owned only while loading (the object's BTF fd, anonymous map-in-map
        #: templates): closed when the load succeeds, by rollback() when it fails
        self.temporary: list = []
        #: every fd owner this load made, in order: closed in reverse if the load fails
        self.owned: list = []

    def own(self, thing):
        self.owned.append(thing)   # (one list, not an ExitStack callback per fd)
        return thing

    def rollback(self) -> None:
        """Undo a failed load: close what it made (newest first), then remove the pins it made."""
        try:
            self.close_owned()
        finally:
            # (try/except, not contextlib.suppress: contextlib is ~0.5 ms of a fresh process's start)
            for path in reversed(self.pins):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            for path in reversed(self.pin_dirs):
                try:
                    os.rmdir(path)   # only if empty: another loader may have pinned there
                except OSError:
                    pass

    def close_owned(self) -> None:
        """Close what :meth:`own` took, newest first (a failed load's rollback)."""
        err = None
        while self.owned:
            try:
                self.owned.pop().close()
            except BaseException as e:   # close the rest; the last error wins, as in an ExitStack
                if err is not None and e.__context__ is None:
                    e.__context__ = err
                err = e
        if err is not None:
            raise err

    # -- maps -----------------------------------------------------------------
    def pin_path(self, ms: MapSpec) -> Optional[str]:
        if ms.pinning == PinType.NONE:
            return None
        if ms.pinning != PinType.BY_NAME:
            raise errors.ElfError(f"map {ms.name!r}: unsupported pinning {int(ms.pinning)}",
                                  object=self.spec.name, section=ms.section)
        root = self.pin_root or DEFAULT_PIN_ROOT
        if ms.pin_dir:   # iproute2's tc/globals: a fixed subdirectory, made when pinning
            root = os.path.join(root, ms.pin_dir)
        return pin_path(root, ms.name, object=self.spec.name)

    def create(self, ms: MapSpec, inner_fd: int = 0, name: Optional[str] = None) -> Map:
        kname = name or (self.kernel_map_name(self.spec.name, ms.name) if ms.form == "data"
                         else kernel_name(ms.name))
        btf = {}
        if self.btf_fd and ms.type not in _NO_BTF_TYPES and ms.btf_value_type_id:
            btf = dict(btf_fd=self.btf_fd, btf_key_type_id=ms.btf_key_type_id,
                       btf_value_type_id=ms.btf_value_type_id)
        if ms.name in self.st_ops:
            btf = dict(btf_fd=self.btf_fd,
                       btf_vmlinux_value_type_id=self.st_ops[ms.name].value_type_id)
        m = Map.create(ms.type, ms.key_size, ms.value_size, ms.max_entries, flags=ms.flags,
                       name=kname, inner_map=inner_fd or None, numa_node=ms.numa_node,
                       map_extra=ms.map_extra, **btf)
        m.name = ms.name  # the object's name for it; the kernel has kname
        return self.own(m)

    def obtain(self, ms: MapSpec, inner_fd: int = 0) -> Map:
        """Reuse (explicit fd or compatible pin) or create the map for *ms*."""
        if ms.reused is not None:
            m = self.own(Map.from_fd(ms.reused, name=ms.name))
            check_compatible(ms, m.info(), "the map given to reuse()", self.spec.name)
            self.reused.append(ms.name)
            return m
        path = self.pin_path(ms)
        if path is not None and os.path.exists(path):
            m = self.own(Map.from_pin(path, name=ms.name))
            check_compatible(ms, m.info(), f"the map pinned at {path}", self.spec.name)
            self.reused.append(ms.name)
            return m
        m = self.create(ms, inner_fd)
        if path is not None:
            self.to_pin.append(ms.name)
        return m

    def init_data(self, ms: MapSpec, m: Map) -> None:
        if ms.data is not None:
            m.update(0, ms.data if len(ms.data) == ms.value_size
                     else bytes(ms.data).ljust(ms.value_size, b"\0"))
        if ms.freeze:
            m.freeze()
        if ms.form == "data" and ms.flags & _MMAPABLE:
            m.mmap(writable=not ms.freeze)   # after the freeze: .rodata/.kconfig read-only (libbpf)
        elif ms.type == MapType.ARENA:
            m.mmap()   # before any program load: the verifier needs the arena's user address

    def template_fd(self, ms: MapSpec) -> int:
        tmpl = ms.inner   # present: validate_map_in_map refused outer maps without one
        existing = self.maps.get(tmpl.name)
        if existing is not None and self.spec.maps.get(tmpl.name) is not None \
                and tmpl.name != ms.name:
            return existing.fd
        # An anonymous template (BTF __array(values, ...)): create it only to
        # hand its fd to MAP_CREATE; the kernel keeps a copy of its metadata.
        t = self.create(tmpl, name=kernel_name(f"{ms.name}.inner"))
        self.temporary.append(t)
        return t.fd

    def prepopulate(self, ms: MapSpec, outer: Map) -> None:
        if not ms.slots:
            return
        slots = sorted(ms.slots.items())
        keys = array.array("I", [s for s, _ in slots])
        fds = array.array("i", [self.maps[t].fd for _, t in slots])
        outer.update_batch(keys, fds)   # slots and key size checked by validate_map_in_map

    def load_maps(self) -> None:
        spec = self.spec
        plain = [ms for ms in spec.maps.values() if not ms.is_outer]
        outer = [ms for ms in spec.maps.values() if ms.is_outer]
        for ms in plain:
            m = self.obtain(ms)
            self.maps[ms.name] = m
            self.order.append(ms.name)
            if ms.name not in self.reused:
                self.init_data(ms, m)
        for ms in outer:
            fd = self.template_fd(ms) if ms.reused is None else 0
            m = self.obtain(ms, fd)
            self.maps[ms.name] = m
            self.order.append(ms.name)
        for ms in outer:
            if ms.name not in self.reused:
                self.prepopulate(ms, self.maps[ms.name])

    def pin_maps(self) -> None:
        """Pin the maps created for LIBBPF_PIN_BY_NAME.

        Another loader may have pinned the same name since :meth:`obtain`
        looked (two processes loading one object at once): on EEXIST the pin
        that won is reused as if it had been there first (compat-checked), and
        the map this load created is closed.  Programs are loaded after this,
        so they see only the map that stays.
        """
        for name in self.to_pin:
            ms = self.spec.maps[name]
            path = self.pin_path(ms)
            if ms.pin_dir:
                self.make_pin_dir(os.path.dirname(path))
            try:
                self.maps[name].pin(path)
            except errors.PinError as e:
                if e.errno != _errno.EEXIST or (os.path.islink(path) and not os.path.exists(path)):
                    raise       # (a dangling symlink is in the way: nothing to reuse)
                self.adopt_pin(ms, path)
                continue
            self.pins.append(path)

    def make_pin_dir(self, path: str) -> None:
        """mkdir -p *path* in bpffs; the directories made are removed again if the load fails."""
        missing = []
        d = path
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                continue
            except OSError as e:
                raise errors.PinError(f"cannot create the pin directory ({e.strerror})", d,
                                      e.errno) from None
            self.pin_dirs.append(d)

    def adopt_pin(self, ms: MapSpec, path: str) -> None:
        """Replace the map created for *ms* by the compatible one pinned at *path* meanwhile."""
        m = self.own(Map.from_pin(path, name=ms.name))
        check_compatible(ms, m.info(), f"the map pinned at {path}", self.spec.name)
        lost = self.maps[ms.name]
        self.maps[ms.name] = m
        self.reused.append(ms.name)
        # outer maps this load created and filled may hold the lost map in a slot
        for outer in self.spec.maps.values():
            if outer.is_outer and outer.name not in self.reused:
                for slot, target in sorted(outer.slots.items()):
                    if target == ms.name:
                        self.maps[outer.name].update(slot, m.fd)
        lost.close()

    def plan_externs(self) -> None:
        if not self.spec.externs:       # most objects: no extern, nothing to import
            self.externs = None
            return
        from .externs import plan_externs
        from .btf.kernel import vmlinux
        self.externs = plan_externs(self.spec, vmlinux)
        if self.externs is not None and self.externs.kconfig_map is not None:
            self.spec.maps[self.externs.kconfig_map.name] = self.externs.kconfig_map

    def load_btf(self) -> None:
        btf = self.externs.btf if self.externs is not None else self.spec.btf
        if btf is None:
            return
        from .btf.kernel import load_object_btf
        hidden = [f.name for f in self.spec.functions.values() if getattr(f, "hidden", False)]
        b = self.own(load_object_btf(btf, self.spec.name, static_funcs=hidden))
        self.temporary.append(b)   # the kernel keeps its own reference for maps and programs
        self.btf_fd = b.fileno()

    # -- struct_ops -----------------------------------------------------------
    def plan_struct_ops(self) -> None:
        """Match each struct_ops map to its kernel type; point its programs at their members.

        A struct_ops program no map refers to is not loaded (it could not
        be verified without a member to verify it for), as libbpf does.
        """
        spec = self.spec
        maps = [ms for ms in spec.maps.values() if ms.struct_ops is not None]
        if not maps and not any(ps.type == ProgType.STRUCT_OPS for ps in spec.programs.values()):
            return
        from .btf.structops import kernel_struct_ops, member_indexes
        from .btf.targets import find_kernel_type, vmlinux
        used: Dict[str, tuple] = {}
        for ms in maps:
            where = f"object {spec.name!r}, struct_ops map {ms.name!r}"
            kso = kernel_struct_ops(ms.struct_ops.type_name, vmlinux(), find_kernel_type, where=where)
            indexes = member_indexes(kso, ms.struct_ops.programs, where=where)
            self.st_ops[ms.name] = kso
            if ms.value_size != kso.value_size:
                ms = spec.maps[ms.name] = _shallow(ms)   # the caller's spec stays as it is
                ms.value_size = kso.value_size
            for prog, index in indexes.items():
                prev = used.setdefault(prog, (kso.struct_id, index, ms.name))
                if prev[:2] != (kso.struct_id, index):
                    raise errors.ElfError(f"struct_ops program {prog!r} implements a member of "
                                          f"{prev[2]!r} and of {ms.name!r}: one program, one member",
                                          object=spec.name, section=ms.section, symbol=prog)
                ps = spec.programs[prog] = _shallow(spec.programs[prog])
                ps.attach_btf_id = kso.struct_id
                ps.expected_attach_type = index   # for struct_ops: the member index
        for name, ps in spec.programs.items():
            if ps.type == ProgType.STRUCT_OPS and name not in used:
                ps = spec.programs[name] = _shallow(ps)
                ps.autoload = False

    def build_struct_ops(self) -> None:
        if not self.st_ops:
            return
        from .btf.structops import build_value
        for name, kso in self.st_ops.items():
            st = self.spec.maps[name].struct_ops
            fds = {member: self.programs[prog].fd for member, prog in st.programs.items()}
            value, _ = build_value(kso, self.spec.btf, st.btf_type_id, st.data, fds,
                                   where=f"object {self.spec.name!r}, struct_ops map {name!r}")
            self.st_ops_values[name] = value

    # -- programs -------------------------------------------------------------
    def fd_of(self) -> Dict[str, int]:
        return {name: m.fd for name, m in self.maps.items()}

    def load_programs(self) -> None:
        fds = self.fd_of()
        ext_records = None
        if self.btf_fd and self.spec.btf_ext is not None:
            from .btf.kernel import ext_records   # once per load, not per program
        for ps in self.spec.programs.values():
            if not getattr(ps, "autoload", True):
                continue
            linked = _insn.link(ps.name, self.spec.functions)
            poisoned: dict = {}
            if self.spec.btf_ext is not None and self.spec.btf_ext.core_relos:
                from .btf.core import apply_core_relos
                poisoned = {f.insn: f for f in apply_core_relos(linked, self.spec) if f.poison}
            if self.externs is not None:
                self.externs.relocate(linked)
            for r in linked.relocs:
                if r.kind == RelocKind.EXTERN:
                    raise errors.ElfError(f"program {ps.name!r}: extern {r.target!r} cannot be "
                                          "resolved (no BTF describes it)", object=self.spec.name,
                                          section=ps.section, symbol=r.target)
                if r.kind in (RelocKind.MAP, RelocKind.DATA) and r.target not in fds:
                    raise errors.ElfError(f"program {ps.name!r} references map {r.target!r}, "
                                          "which has no fd (not created)", object=self.spec.name,
                                          section=ps.section, symbol=r.target)
            _insn.apply(linked, fds)
            if ps.type == 0:
                raise errors.ElfError(f"program {ps.name!r}: the section name does not say the "
                                      "program type; set obj.programs[name].type before load",
                                      object=self.spec.name, section=ps.section)
            extra = {}
            if ext_records is not None:
                fi, li = ext_records(self.spec.btf_ext, self.spec.functions, linked.layout)
                extra = dict(btf_fd=self.btf_fd)
                if fi:
                    extra.update(func_info=fi, func_info_rec_size=8)
                if li:
                    extra.update(line_info=li, line_info_rec_size=16)
            attach_btf_id = ps.attach_btf_id
            if not attach_btf_id and ps.type in _ATTACH_BTF_TYPES:
                from .btf.kernel import resolve_attach_btf_id
                attach_btf_id = resolve_attach_btf_id(ps.type, ps.expected_attach_type,
                                                      ps.attach_target, program=ps.name,
                                                      obj_name=self.spec.name)
            eat = ps.expected_attach_type
            if eat is None and ps.type == ProgType.KPROBE and _is_usdt(ps.section):
                from .link.usdt import load_attach_type    # uprobe_multi where the kernel has it
                eat = load_attach_type()
            log: list = []
            try:
                fdobj = load_program(ps.type, linked.insns, name=ps.name,
                                     license=ps.license or self.spec.license,
                                     expected_attach_type=eat,
                                     log_level=self.log_level,
                                     kern_version=ps.kern_version or self.spec.kern_version,
                                     prog_flags=ps.flags, section=ps.section,
                                     attach_btf_id=attach_btf_id, log_out=log, **extra)
            except errors.LoadError as e:
                if poisoned:
                    better = explain_poisoned(e, poisoned, ps.section, self.spec.name)
                    if better is not None:
                        raise better from e
                raise
            p = Program(fdobj, ps.name, ps.type, section=ps.section,
                        expected_attach_type=eat,
                        attach_target=ps.attach_target,
                        verifier_log=log[0] if log else None)
            self.programs[ps.name] = self.own(p)
            self.bind_rodata(p)

    def bind_rodata(self, prog: Program) -> None:
        """Bind every ``.rodata``/``.rodata.*`` map to *prog* (BPF_PROG_BIND_MAP), as libbpf
        does: the program then holds them, and ``bpftool prog show`` lists them and prints
        their ``bpf_metadata_*`` variables.  A kernel without the command (EINVAL on the
        first call; before 5.10) is skipped and not asked again.  Any other refusal fails
        the load (libbpf only warns): a program silently loaded without its metadata
        would differ from what libbpf leaves."""
        if self.can_bind is False:
            return
        rodata = self.rodata_maps
        if rodata is None:   # the same for every program of this load: found once
            rodata = self.rodata_maps = []
            for name, m in self.maps.items():
                ms = self.spec.maps.get(name)
                if ms is not None and ms.form == "data" and (name == ".rodata"
                                                             or name.startswith(".rodata.")):
                    rodata.append((name, m))
        if not rodata:
            return
        from ._core.syscall import prog_bind_map
        for name, m in rodata:
            try:
                prog_bind_map(prog.fd, m.fd, prog.name, f"binding map {name!r}")
            except errors.SyscallError as e:
                if e.errno == _errno.EINVAL and self.can_bind is None:
                    self.can_bind = False
                    return
                raise
            self.can_bind = True

    def fill_prog_arrays(self) -> None:
        for ms in self.spec.maps.values():
            if ms.type != MapType.PROG_ARRAY or not ms.slots or ms.name in self.reused:
                continue
            keys, fds = array.array("I"), array.array("i")
            for slot, target in sorted(ms.slots.items()):
                p = self.programs.get(target)
                if p is None:
                    raise errors.ElfError(f"program array {ms.name!r}: slot {slot} names "
                                          f"{target!r}, which is not a loaded program",
                                          object=self.spec.name, section=ms.section)
                keys.append(slot)
                fds.append(p.fd)
            self.maps[ms.name].update_batch(keys, fds)


#: what the verifier logs at an instruction the CO-RE pass poisoned (``call 0xbad2310``)
_POISON_CALL = Pattern(r"(?m)^(\d+): \(85\) call unknown#195896080$")
_KIND_WORDS = {0: "byte_off", 1: "byte_sz", 2: "field_exists", 3: "signed", 4: "lshift_u64",
               5: "rshift_u64", 6: "local_type_id", 7: "target_type_id", 8: "type_exists",
               9: "type_size", 10: "enumval_exists", 11: "enumval_value", 12: "type_matches"}


def explain_poisoned(e: errors.LoadError, poisoned: dict, section: Optional[str],
                     obj: str) -> Optional[errors.CoreRelocationError]:
    """The verifier stopped at an instruction a failed CO-RE relocation poisoned: name it.

    *poisoned*: instruction index -> :class:`bpfload.btf.core.CoreFixup`.  Returns the
    :class:`bpfload.CoreRelocationError` replacing *e* (libbpf's "failed to resolve CO-RE
    relocation"), or None when the log does not end at a poisoned instruction.
    """
    hits = list(_POISON_CALL.finditer(e.log or ""))
    if not hits:
        return None
    idx = int(hits[-1].group(1))
    fix = poisoned.get(idx)
    if fix is None:
        return None
    source = None
    for line in reversed(e.log[:hits[-1].start()].splitlines()):
        if line.startswith("; "):
            source = line[2:].strip()
            break
    spec = fix.local.split(" ", 1)[1] if fix.local.startswith("<") and " " in fix.local \
        else fix.local
    kind = _KIND_WORDS.get(fix.kind, str(fix.kind))
    if fix.target:   # matched, but the field's size changed in a way the load cannot follow
        why = f"cannot adjust the instruction to the kernel's {fix.target}"
    else:
        why = "no type or field in the kernel's BTF matches it"
    where = f"function {fix.function!r}, " if fix.function != fix.program else ""
    return errors.CoreRelocationError(
        e.program, e.errno, e.log, insn=idx, kind=kind, relocation=spec, index=fix.index,
        function=fix.function, section=section, source=source, object=obj,
        message=f"instruction {idx} ({where}CO-RE relocation #{fix.index}): failed to resolve "
                f"CO-RE relocation <{kind}> {spec}: {why}",
        hint="the kernel lacks what the program reads: guard the access with "
             "bpf_core_field_exists()/bpf_core_type_exists()/bpf_core_enum_value_exists(), "
             "or give the type a ___flavor that matches this kernel")


def load_spec(spec: ObjectSpec, *, pin_root: Optional[str] = None, log_level: int = 0,
              kernel_map_name=None) -> LoadResult:
    """Create every map and load every program of *spec* (which is not modified).

    On any failure, everything this call created is closed, the pins it
    created are removed, and the exception propagates.
    """
    if kernel_map_name is None:
        from .elf import kernel_map_name
    spec = working_copy(spec)
    normalize_maps(spec)
    validate_map_in_map(spec)
    job = _Load(spec, pin_root, log_level, kernel_map_name)
    try:
        for ms in spec.maps.values():
            job.pin_path(ms)   # every pin name checked before anything is created
        job.plan_externs()
        job.plan_struct_ops()
        job.load_btf()
        job.load_maps()
        job.pin_maps()
        job.load_programs()
        job.fill_prog_arrays()
        job.build_struct_ops()
        for t in job.temporary:
            t.close()   # nothing after the load needs them: close now, not in the collector
    except BaseException:
        job.rollback()   # (a try, not an ExitStack: the same order, a few us less a load)
        raise
    return LoadResult(job.maps, job.programs, job.pins, job.reused, job.order, job.st_ops_values)


def creation_order(spec: ObjectSpec) -> List[str]:
    """The order :func:`load_spec` obtains maps in (plain and inner maps, then outer maps)."""
    return ([n for n, ms in spec.maps.items() if not ms.is_outer]
            + [n for n, ms in spec.maps.items() if ms.is_outer])
