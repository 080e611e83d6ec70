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
import threading

from .._lazy import Pattern
from ..errors import BtfError
from .format import Btf, Kind, Type

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

try:
    from .._core import corepatch as _corepatch
except ImportError:  # pragma: no cover - not built: the pure-Python index is used
    _corepatch = None  # type: ignore[assignment]

__all__ = ["VMLINUX_PATH", "vmlinux", "find_kernel_type", "essential_name", "TargetBtf",
           "Targets", "kernel_targets"]

_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)

VMLINUX_PATH = "/sys/kernel/btf/vmlinux"

_lock = threading.Lock()
_vmlinux: Optional[Btf] = None


def vmlinux() -> Btf:
    """The running kernel's BTF (``/sys/kernel/btf/vmlinux``), parsed once per process.

    Raises :class:`bpfload.BtfError` when the kernel exposes no BTF.
    """
    global _vmlinux
    with _lock:
        if _vmlinux is None:
            try:
                with open(VMLINUX_PATH, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise BtfError(f"kernel BTF unavailable: {e.strerror} ({VMLINUX_PATH}); "
                               "the kernel needs CONFIG_DEBUG_INFO_BTF") from e
            _vmlinux = Btf.parse(data)
        return _vmlinux


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

_FLAVOR_RE = Pattern(r"(?s)(.*[^_])___[^_]")


def essential_name(name: str) -> str:
    """*name* without its ``___flavor`` suffix (``task_struct___v2`` -> ``task_struct``).

    The suffix starts at the last ``___`` that has a non-underscore on both
    sides (libbpf's rule), so ``__u64`` and ``___x`` have no flavor.  Never
    raises.
    """
    if "___" not in name:
        return name
    m = _FLAVOR_RE.match(name)
    return m.group(1) if m else name


def _kinds_compat(a: Kind, b: Kind) -> bool:
    """libbpf's btf_kind_core_compat: same kind, or ENUM vs ENUM64."""
    return a == b or (a in _ENUM_KINDS and b in _ENUM_KINDS)


# --------------------------------------------------------------------------
# target BTF with its candidate index

class TargetBtf:
    """A BTF to relocate against (vmlinux, or a module's split BTF) plus its candidate index.

    :meth:`candidates` finds the types of this BTF (for split BTF: only the
    module's own types, never its base's) whose essential name is a given
    one, through an index built once (:meth:`build_index`, or on the first
    lookup).

    *compiled* (default when ``bpfload._core.corepatch`` is built): the
    index is :class:`bpfload._core.corepatch.EssentialIndex`, built in C
    straight from the raw type records (about 10x cheaper than a Python
    dict of every name for vmlinux).  ``compiled=False`` (or a Btf without
    raw records) uses the pure-Python twin: the BTF's own name index plus a
    map of the names that carry a flavor suffix.  Both give the same
    candidates.  Types added to the Btf after the index was built may be
    missed.
    """

    def __init__(self, btf: Btf, name: str = "vmlinux", *, compiled: Optional[bool] = None):
        self.btf = btf
        self.name = name
        self.compiled = (compiled is not False) and _corepatch is not None
        self._cindex = None
        self._extra: Dict[str, List[int]] = {}
        self._flavored: Optional[Dict[str, List[str]]] = None
        self._built = False
        self._lock = threading.Lock()

    def build_index(self) -> None:
        """Build the candidate index now (it is otherwise built on first lookup).

        Raises :class:`BtfError` if a type record or name of the BTF is malformed.
        """
        with self._lock:
            if self._built:
                return
            btf = self.btf
            raw = getattr(btf, "_types_raw", None)
            offsets = getattr(btf, "_offsets", None)
            if self.compiled and raw is not None and offsets is not None:
                chain = []
                b: Optional[Btf] = btf
                while b is not None:
                    chain.append(b)
                    b = b.base
                segments, base = [], 0
                for b in reversed(chain):  # string offsets continue from base to split
                    segments.append((base, b._strings_view()))
                    base += b._slen
                assert _corepatch is not None
                self._cindex = _corepatch.EssentialIndex(raw, offsets, segments, btf.start_id)
                # types add()ed after parsing are not in the raw records
                for tid in range(btf.start_id + len(offsets), len(btf)):
                    t = btf[tid]
                    if t.name:
                        self._extra.setdefault(essential_name(t.name), []).append(tid)
            else:
                self.compiled = False
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
            self._built = True

    def candidates(self, ess: str, kind: Kind) -> List[Type]:
        """Types of this BTF with essential name *ess* and a kind compatible with *kind*.

        In id order.  Raises :class:`BtfError` if a candidate type is malformed.
        """
        if not self._built:
            self.build_index()
        btf = self.btf
        if self._cindex is not None:
            ids = self._cindex.lookup(ess)
            extra = self._extra.get(ess)
            if extra:
                ids = sorted(ids + extra)
            out = []
            for tid in ids:
                t = btf[tid]
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

_kt_lock = threading.Lock()
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
        self.lock = threading.Lock()

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
            main = TargetBtf(vm, "vmlinux")
            main.build_index()
            _kernel_targets = Targets(main, _KernelModules(vm, os.path.dirname(VMLINUX_PATH)))
        return _kernel_targets


