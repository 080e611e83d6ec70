"""bpfload: load BPF ELF objects and use their maps and programs from Python.

The hot paths (instruction patching, per-element and bulk map access,
per-CPU reads, event streams) are Cython calling bpf(2) directly.

``import bpfload`` imports nothing but this file and the version: every public
name below is bound the first time it is used (a module ``__getattr__``), so a
script pays only for what it calls (``bpfload.load`` never imports the BTF
typed-value layer, the event readers or the attach modules).
"""
from __future__ import annotations

import sys as _sys

from ._version import __version__ as __version__

# public name -> the submodule defining it (bound on first use by __getattr__)
_LAZY = {
    **dict.fromkeys((
        "BPF_ANY", "BPF_EXIST", "BPF_F_LOCK", "BPF_NOEXIST", "AttachType", "LinkType", "MapFlags",
        "MapType", "PerfEventType", "PinType", "ProgType", "UpdateFlags"), "constants"),
    **dict.fromkeys((
        "BpfError", "BtfError", "ElfError", "IncompatibleMapError", "LoadError", "CoreRelocationError",
        "MapClosedError",
        "MapError", "MapFullError", "MapIndexError", "MapKeyError", "NotSupportedError",
        "PermissionDeniedError", "PinError", "SyscallError", "ReaderClosedError", "ReaderBusyError",
        "MapTypeError", "EventConfigError", "CorruptRecordError", "AttachError", "NotFoundError",
        "ObjectFileError", "IntRangeError", "ReadOnlyError"), "errors"),
    "Map": "maps", "MapInfo": "maps", "possible_cpus": "maps",
    "IterLink": "link", "Link": "link", "LinkInfo": "link",
    "BpfObject": "object", "GlobalData": "globaldata", "load": "object",
    "Program": "programs", "ProgramInfo": "programs", "TestRunResult": "programs",
    "TypedMap": "btf.typed", "TypedTypeError": "btf.typed", "TypedValueError": "btf.typed",
    # programs(), maps(), links(), btfs(): system-wide listings.  The functions named
    # programs and maps shadow the submodules bpfload.programs / bpfload.maps as package
    # attributes; "from bpfload.maps import Map" still works (see bpfload.system).
    "BtfInfo": "system", "btfs": "system", "links": "system", "maps": "system",
    "programs": "system",
    **dict.fromkeys((
        "MapPoller", "PerfBuffer", "RingBuffer", "RingStats", "Sample", "Snapshot", "SnapshotArrays",
        "StaleSnapshotError", "online_cpus"), "events"),
}

__all__ = [
    "Map", "MapInfo", "possible_cpus", "BpfObject", "GlobalData", "load", "Program",
    "ProgramInfo", "TestRunResult", "RingBuffer", "RingStats", "PerfBuffer", "online_cpus",
    "MapPoller", "Snapshot", "SnapshotArrays", "Sample", "StaleSnapshotError",
    "TypedMap", "TypedValueError", "TypedTypeError",
    "programs", "maps", "links", "btfs", "BtfInfo",
    "Link", "LinkInfo", "IterLink", "LinkType", "PerfEventType", "AttachError",
    "MapType", "ProgType", "AttachType", "MapFlags", "PinType", "UpdateFlags",
    "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_F_LOCK",
    "BpfError", "SyscallError", "MapError", "MapKeyError", "MapFullError", "MapIndexError",
    "MapClosedError",
    "NotSupportedError", "PermissionDeniedError", "ElfError", "BtfError", "LoadError",
    "CoreRelocationError",
    "PinError", "IncompatibleMapError", "ReaderClosedError", "ReaderBusyError", "MapTypeError",
    "EventConfigError", "CorruptRecordError", "NotFoundError", "ObjectFileError",
    "IntRangeError", "ReadOnlyError",
]

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:   # type checkers see every public name at once, with its real type
    from .constants import (
        BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, AttachType, LinkType, MapFlags, MapType,
        PerfEventType, PinType, ProgType, UpdateFlags,
    )
    from .errors import (
        AttachError, BpfError, BtfError, CoreRelocationError, CorruptRecordError, ElfError,
        EventConfigError, IncompatibleMapError, IntRangeError, LoadError, MapClosedError, MapError,
        MapFullError, MapIndexError, MapKeyError, MapTypeError, NotFoundError, NotSupportedError,
        ObjectFileError, PermissionDeniedError, PinError, ReadOnlyError, ReaderBusyError,
        ReaderClosedError, SyscallError,
    )
    from .maps import Map, MapInfo, possible_cpus
    from .link import IterLink, Link, LinkInfo
    from .globaldata import GlobalData
    from .object import BpfObject, load
    from .programs import Program, ProgramInfo, TestRunResult
    from .btf.typed import TypedMap, TypedTypeError, TypedValueError
    from .system import BtfInfo, btfs, links, maps, programs
    from .events import (MapPoller, PerfBuffer, RingBuffer, RingStats, Sample, Snapshot,
                         SnapshotArrays, StaleSnapshotError, online_cpus)

# The functions maps() and programs() own these package attributes: importing the
# submodules of the same name (which the import system records as package attributes)
# must not replace them.
_FUNCTIONS_OVER_MODULES = frozenset(("maps", "programs"))


class _Package(type(_sys)):
    """This package's module type: keeps ``bpfload.maps``/``bpfload.programs`` the functions."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS_OVER_MODULES and isinstance(value, type(_sys)):
            return  # the submodule stays in sys.modules; __getattr__ binds the function
        super().__setattr__(name, value)


def _bind(name: str):
    """Import the submodule defining public *name*, bind the name here and return it."""
    qualified = f"{__name__}.{_LAZY[name]}"
    if qualified in _sys.modules:
        __import__(qualified)
    else:
        # The first import of a submodule (bpfload.load: ~30 modules) creates a few thousand
        # objects that live until exit (classes, functions, tables); the collections their
        # allocations trigger meanwhile find no garbage and cost a fresh process ~1 ms.
        # Collection is paused for the import only, and resumed as the caller had it.
        import gc
        paused = gc.isenabled()
        gc.disable()
        try:
            __import__(qualified)  # (not importlib.import_module: importlib is 0.3 ms to import)
        finally:
            if paused:
                gc.enable()
    module = _sys.modules[qualified]
    value = getattr(module, name)
    type(_sys).__setattr__(_sys.modules[__name__], name, value)
    return value


def __getattr__(name: str):
    if name in _LAZY:
        return _bind(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


_sys.modules[__name__].__class__ = _Package
