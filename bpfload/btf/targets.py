"""The running kernel's BTF as a lookup target, parsed and indexed once per process.

One home for "where do kernel types come from": :func:`vmlinux` parses
``/sys/kernel/btf/vmlinux``; :class:`TargetBtf` indexes a BTF by *essential*
name (the name without a ``___flavor`` suffix); :func:`kernel_targets` is
vmlinux plus module BTFs as CO-RE candidates; :func:`find_kernel_type` is
the exact-name lookup used by attach targets and ``__ksym`` externs.
Both :mod:`bpfload.btf.core` (CO-RE) and :mod:`bpfload.btf.kernel`
(BTF meets the kernel) import from here, never the other way round.
"""
from __future__ import annotations

import os
from _thread import allocate_lock

from ..errors import BtfError
from .format import (_3U32, _HDR, _MAX_NAME_LEN, BTF_MAGIC, BTF_VERSION, Btf, Enum, Enum64, EnumValue,
                     Kind, Member, Struct, Type, Union)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: a CO-RE load in a fresh process never imports typing
    from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

try:
    from .._core import corepatch as _corepatch
except ImportError:  # pragma: no cover - not built: the pure-Python index is used
    _corepatch = None  # type: ignore[assignment]

__all__ = ["VMLINUX_PATH", "vmlinux", "find_kernel_type", "essential_name", "TargetBtf",
           "Targets", "kernel_targets"]

_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)
_ENUM_MASK = (1 << int(Kind.ENUM)) | (1 << int(Kind.ENUM64))
# the two groups a TargetBtf indexes separately: functions (attach targets, kfuncs; 56,000 in
# vmlinux) and every other kind (CO-RE's structs, unions, enums, typedefs; ~15,000 named)
_FUNC_MASK = 1 << int(Kind.FUNC)
_TYPES_MASK = ((1 << 32) - 1) & ~_FUNC_MASK

VMLINUX_PATH = "/sys/kernel/btf/vmlinux"

_lock = allocate_lock()
_vmlinux: Optional[Btf] = None


def vmlinux() -> Btf:
    """The running kernel's BTF (``/sys/kernel/btf/vmlinux``), parsed once per process.

    Raises :class:`bpfload.BtfError` when the kernel exposes no BTF.
    """
    global _vmlinux
    with _lock:
        if _vmlinux is None:
            vm = _parse_vmlinux(VMLINUX_PATH)
            if _corepatch is not None:
                # kept until exit: no collection needs to walk its ~130,000 cache slots
                _corepatch.gc_untrack(vm._cache)
            _vmlinux = vm
        return _vmlinux


def _parse_vmlinux(path: str) -> Btf:
    """Parse the kernel's BTF at *path*, mapped rather than read where the kernel allows.

    Linux 6.16+ lets ``/sys/kernel/btf/vmlinux`` be mapped read-only: the
    ~5 MB blob is then used in place, where a read() copies it 4 KiB per
    system call (sysfs) into freshly faulted memory.  Earlier kernels refuse
    the mapping and the file is read.  Raises :class:`BtfError`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BtfError(f"kernel BTF unavailable: {e.strerror} ({path}); "
                       "the kernel needs CONFIG_DEBUG_INFO_BTF") from e
    try:
        m = _map_readonly(fd)
        if m is not None:
            btf = _parse_in_place(m)
            return btf if btf is not None else Btf.parse(m)
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as e:
        raise BtfError(f"kernel BTF unavailable: {e.strerror} ({path}); "
                       "the kernel needs CONFIG_DEBUG_INFO_BTF") from e
    finally:
        os.close(fd)
    return Btf.parse(data)


def _map_readonly(fd: int):
    """The whole file *fd* mapped read-only (no copy, no fd kept), or None where it cannot be."""
    if _corepatch is None:  # pragma: no cover - not built: the file is read
        return None
    try:
        size = os.fstat(fd).st_size
    except OSError:
        return None
    return _corepatch.map_readonly(fd, size)


def _parse_in_place(m) -> Optional[Btf]:
    """A :class:`Btf` over mapping *m* without copying it, or None (then *m* is parsed as bytes).

    :meth:`Btf.parse` copies every buffer that is not ``bytes``; a mapping
    has what a parsed blob needs from its bytes (indexing, slicing,
    ``find``), so the one copy is skipped by parsing the header here and
    handing the records to the same scan.  Anything unusual in the header
    goes to :meth:`Btf.parse` (its checks and error messages).
    """
    n = len(m)
    if n < _HDR.size:
        return None
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(m, 0)
    if magic != BTF_MAGIC or version != BTF_VERSION or hdr_len < _HDR.size or hdr_len > n \
            or type_off % 4 \
            or type_off + type_len > n - hdr_len or str_off + str_len > n - hdr_len \
            or not str_len or m[hdr_len + str_off] != 0 or m[hdr_len + str_off + str_len - 1] != 0:
        return None
    btf = Btf()
    btf.version = version
    btf.flags = flags
    btf._hdr_extra = m[_HDR.size:hdr_len]
    btf._sraw, btf._soff, btf._slen = m, hdr_len + str_off, str_len  # type: ignore[assignment]
    btf._types_raw = memoryview(m)[hdr_len + type_off:hdr_len + type_off + type_len]
    # (a mapping exists only where corepatch is built: its scan sizes the offsets once)
    btf._offsets = (_corepatch.scan_sized(btf._types_raw) if _corepatch is not None
                    else Btf._scan(btf._types_raw))  # type: ignore[arg-type]
    btf._cache = [None] * len(btf._offsets)
    return btf


def find_kernel_type(name: str, kind: Kind):
    """The vmlinux type named *name* of *kind*, or None.

    Uses the CO-RE candidate index (built in C from the raw records, ~5 ms
    once per process) rather than a Python index of every vmlinux name
    (~100 ms).
    """
    for t in kernel_targets().main.candidates(name, kind):
        if t.name == name and t.kind == kind:
            return t
    return None



# --------------------------------------------------------------------------
# names

def essential_name(name: str) -> str:
    """*name* without its ``___flavor`` suffix (``task_struct___v2`` -> ``task_struct``).

    The suffix starts at the last ``___`` that has a non-underscore on both
    sides (libbpf's rule), so ``__u64`` and ``___x`` have no flavor.  Never
    raises.
    """
    i = name.rfind("___")
    while i > 0:
        if name[i - 1] != "_" and i + 3 < len(name) and name[i + 3] != "_":
            return name[:i]
        i = name.rfind("___", 0, i + 2)   # the next "___" starting before i
    return name


def _kinds_compat(a: Kind, b: Kind) -> bool:
    """libbpf's btf_kind_core_compat: same kind, or ENUM vs ENUM64."""
    return a == b or (a in _ENUM_KINDS and b in _ENUM_KINDS)


# --------------------------------------------------------------------------
# candidates decoded in compiled code

_VLEN_CLASSES = {int(Kind.STRUCT): Struct, int(Kind.UNION): Union, int(Kind.ENUM): Enum,
                 int(Kind.ENUM64): Enum64}


def _decoded(btf: Btf, tid: int) -> Type:
    """``btf[tid]``, with the members (enumerators) of a not yet decoded struct, union or
    enum of a BTF without a base made in compiled code (``task_struct``: 248 members, each a
    name decoded through three Python calls in :meth:`Btf._decode`).  The same objects, cached
    in the Btf as ``btf[tid]`` caches them; anything unusual goes to ``btf[tid]`` (and its
    errors).  Raises :class:`BtfError` as ``btf[tid]`` does.
    """
    idx = tid - btf._start_id
    cache = btf._cache
    if 0 <= idx < len(cache):
        t = cache[idx]
        if t is not None:
            return t
    if _corepatch is None or btf._base is not None or not 0 <= idx < len(btf._offsets):
        return btf[tid]
    raw = btf._types_raw
    off = btf._offsets[idx]
    if off + 12 > len(raw):
        return btf[tid]
    name_off, info, size = _3U32.unpack_from(raw, off)
    cls = _VLEN_CLASSES.get((info >> 24) & 0x1F)
    if cls is None:
        return btf[tid]
    items = _corepatch.decode_vlen(raw, off, btf._sraw, btf._soff, btf._slen, _MAX_NAME_LEN,
                                   Member, EnumValue)
    if items is None:
        return btf[tid]
    name = btf._name(name_off, tid)
    kflag = bool(info >> 31)
    if cls is Struct or cls is Union:
        t = cls(tid, name, kflag, name_off, size=size, members=items)
    else:
        t = cls(tid, name, kflag, name_off, size=size, values=items)
    cache[idx] = t
    return t


# --------------------------------------------------------------------------
# target BTF with its candidate index

class TargetBtf:
    """A BTF to relocate against (vmlinux, or a module's split BTF) plus its candidate index.

    :meth:`candidates` finds the types of this BTF (for split BTF: only the
    module's own types, never its base's) whose essential name is a given
    one, through an index built once: of every kind by :meth:`build_index`,
    otherwise of one group on the first lookup of a kind in it -- functions,
    or every other kind (a CO-RE load never hashes vmlinux's functions).

    *compiled* (default when ``bpfload._core.corepatch`` is built): the
    index is :class:`bpfload._core.corepatch.EssentialIndex`, built in C
    straight from the raw type records (about 10x cheaper than a Python
    dict of every name for vmlinux; vmlinux's structs alone: ~1 ms).  ``compiled=False`` (or a Btf without
    raw records) uses the pure-Python twin: the BTF's own name index plus a
    map of the names that carry a flavor suffix.  Both give the same
    candidates.  Types added to the Btf after the index was built may be
    missed.
    """

    def __init__(self, btf: Btf, name: str = "vmlinux", *, compiled: Optional[bool] = None):
        self.btf = btf
        self.name = name
        self.compiled = (compiled is not False) and _corepatch is not None
        self._cindex: Optional[object] = None
        # kind group mask -> (compiled index of the group's records, types added after parsing)
        self._groups: Dict[int, Tuple[object, Dict[str, List[int]]]] = {}
        self._extra: Dict[str, List[int]] = {}
        self._flavored: Optional[Dict[str, List[str]]] = None
        self._built = False
        self._lock = allocate_lock()

    def _raw(self):
        """(raw records, offsets, string segments) for the compiled index, or None."""
        btf = self.btf
        raw = getattr(btf, "_types_raw", None)
        offsets = getattr(btf, "_offsets", None)
        if not self.compiled or raw is None or offsets is None:
            return None
        chain = []
        b: Optional[Btf] = btf
        while b is not None:
            chain.append(b)
            b = b.base
        segments, base = [], 0
        for b in reversed(chain):  # string offsets continue from base to split
            segments.append((base, b._strings_view()))
            base += b._slen
        return raw, offsets, segments

    def _added(self, kinds: Optional[int]) -> Dict[str, List[int]]:
        """Essential name -> ids of the types add()ed after parsing (not in the raw records)."""
        btf = self.btf
        out: Dict[str, List[int]] = {}
        for tid in range(btf.start_id + len(btf._offsets), len(btf)):
            t = btf[tid]
            if t.name and (kinds is None or (kinds >> int(t.kind)) & 1):
                out.setdefault(essential_name(t.name), []).append(tid)
        return out

    def build_index(self) -> None:
        """Build the candidate index of every kind now.

        Without it, :meth:`candidates` builds one index per kind group it
        is asked for (all vmlinux structs, say), on first need: a CO-RE load
        never hashes the names of vmlinux's functions.  Raises
        :class:`BtfError` if a type record or name of the BTF is malformed.
        """
        with self._lock:
            if self._built:
                return
            btf = self.btf
            raw = self._raw()
            if raw is not None:
                assert _corepatch is not None
                types, offsets, segments = raw
                self._cindex = _corepatch.EssentialIndex(types, offsets, segments, btf.start_id)
                self._extra = self._added(None)
            else:
                self.compiled = False
                self._build_python_index()
            self._built = True

    def _build_python_index(self) -> None:
        btf = self.btf
        btf.find("int")  # builds the BTF's name index (once per Btf)
        index = getattr(btf, "_name_index", None)
        flavored: Dict[str, List[str]] = {}
        if isinstance(index, dict):
            names: Iterable[str] = index
        else:  # pragma: no cover - no private index: every string is a possible name
            names = (n for b in _chain_strings(btf) for n in _split_strings(b))
        for name in names:
            if "___" in name:
                ess = essential_name(name)
                if ess != name:
                    lst = flavored.setdefault(ess, [])
                    if name not in lst:
                        lst.append(name)
        self._flavored = flavored

    def _group(self, kind: Kind) -> Optional[Tuple[object, Dict[str, List[int]]]]:
        """The compiled index of *kind*'s group (functions, or every other kind), built on
        first need; None when the compiled index cannot be used (then the full Python index
        is built)."""
        key = _FUNC_MASK if kind == Kind.FUNC else _TYPES_MASK
        g = self._groups.get(key)
        if g is not None:
            return g
        with self._lock:
            g = self._groups.get(key)
            if g is None:
                raw = self._raw()
                if raw is None:
                    return None
                assert _corepatch is not None
                types, offsets, segments = raw
                g = (_corepatch.EssentialIndex(types, offsets, segments, self.btf.start_id, key),
                     self._added(key))
                self._groups[key] = g
            return g

    def candidates(self, ess: str, kind: Kind) -> List[Type]:
        """Types of this BTF with essential name *ess* and a kind compatible with *kind*.

        In id order.  Raises :class:`BtfError` if a candidate type is malformed
        (or, on first use of a kind, a record or name of the BTF).
        """
        btf = self.btf
        if self._built:
            cindex, extra = self._cindex, self._extra
        elif self.compiled:
            g = self._group(kind)
            if g is None:
                self.build_index()
                return self.candidates(ess, kind)
            cindex, extra = g
        else:
            self.build_index()
            cindex, extra = None, {}
        if cindex is not None:
            ids = cindex.lookup(ess, _ENUM_MASK if kind in _ENUM_KINDS  # type: ignore[attr-defined]
                                else 1 << int(kind))
            more = extra.get(ess)
            if more:
                ids = sorted(ids + more)
            out = []
            for tid in ids:
                t = _decoded(btf, tid)
                # the index is by hash: compare the real names
                if _kinds_compat(t.kind, kind) and t.name and essential_name(t.name) == ess:
                    out.append(t)
            return out
        assert self._flavored is not None
        names: Sequence[str] = self._flavored.get(ess, ())
        if essential_name(ess) == ess:
            names = (ess, *names)
        start = btf.start_id
        found = [t for n in names for t in btf.find_all(n)
                 if t.id >= start and _kinds_compat(t.kind, kind)]
        if len(names) > 1:
            found.sort(key=lambda t: t.id)
        return found

    def __repr__(self) -> str:
        how = "compiled" if self.compiled else "python"
        return f"<TargetBtf {self.name} ({how} index) {self.btf!r}>"


def _chain_strings(btf: Btf) -> List[bytes]:
    out = []
    b: Optional[Btf] = btf
    while b is not None:
        out.append(b.strings)
        b = b.base
    return out


def _split_strings(blob: bytes) -> List[str]:
    return [x.decode("utf-8", "replace") for x in blob.split(b"\0") if x]


class Targets:
    """Where relocations look for candidates: a main BTF, then modules.

    *main*: the vmlinux :class:`TargetBtf` (or a :class:`~bpfload.btf.Btf`).
    *modules*: module :class:`TargetBtf`\\ s, or a callable returning them
    (called only when a type is missing from *main*, as libbpf only looks at
    module BTF when vmlinux has no candidate).
    """

    def __init__(self, main, modules: Sequence[TargetBtf] | Callable[[], Sequence[TargetBtf]] = ()):
        self.main = main if isinstance(main, TargetBtf) else TargetBtf(main)
        self._modules = modules

    def modules(self) -> Sequence[TargetBtf]:
        """The module BTFs (loading them if that was deferred).  Raises :class:`BtfError`."""
        m = self._modules
        return m() if callable(m) else m

    def candidates(self, ess: str, kind: Kind) -> List[Tuple[Btf, Type]]:
        """``(btf, type)`` candidates for essential name *ess* of *kind*: vmlinux first.

        Raises :class:`BtfError` (malformed target BTF, unreadable module BTF).
        """
        found = self.main.candidates(ess, kind)
        if found:
            return [(self.main.btf, t) for t in found]
        out: List[Tuple[Btf, Type]] = []
        for mod in self.modules():
            out.extend((mod.btf, t) for t in mod.candidates(ess, kind))
        return out


# --------------------------------------------------------------------------
# kernel targets (once per process)

_kt_lock = allocate_lock()
_kernel_targets: Optional[Targets] = None


class _KernelModules:
    """Module BTFs under /sys/kernel/btf, parsed as split BTF on first need.

    The directory is listed again whenever modules are consulted, so a
    module loaded after the first lookup is still found; each module's BTF
    is parsed once.
    """

    def __init__(self, base: Btf, directory: str):
        self.base = base
        self.directory = directory
        self.parsed: Dict[str, TargetBtf] = {}
        self.lock = allocate_lock()

    def __call__(self) -> List[TargetBtf]:
        with self.lock:
            try:
                names = sorted(n for n in os.listdir(self.directory) if n != "vmlinux")
            except OSError:
                return []
            for n in names:
                if n in self.parsed:
                    continue
                path = os.path.join(self.directory, n)
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue  # module unloaded meanwhile
                try:
                    self.parsed[n] = TargetBtf(Btf.parse(data, base=self.base), n)
                except BtfError as e:
                    raise BtfError(f"module BTF {path}: {e}") from e
            return [self.parsed[n] for n in names if n in self.parsed]


def kernel_targets() -> Targets:
    """The running kernel's BTF as CO-RE targets: vmlinux, then module BTFs.

    vmlinux BTF comes from :func:`vmlinux` (parsed once per
    process); its candidate index is built here, once.  Module BTFs are
    parsed on first need.  Needs ``CONFIG_DEBUG_INFO_BTF`` (module BTF:
    ``CONFIG_DEBUG_INFO_BTF_MODULES``, Linux 5.11+).  Raises
    :class:`BtfError` when the kernel exposes no BTF.
    """
    global _kernel_targets
    with _kt_lock:
        if _kernel_targets is None:
            vm = vmlinux()
            main = TargetBtf(vm, "vmlinux")   # indexed per kind on first lookup
            _kernel_targets = Targets(main, _KernelModules(vm, os.path.dirname(VMLINUX_PATH)))
        return _kernel_targets


