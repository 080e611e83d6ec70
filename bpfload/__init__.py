"""bpfload: load BPF ELF objects and use their maps and programs from Python.

The hot paths (instruction patching, per-element and bulk map access,
per-CPU reads, event streams) are Cython calling bpf(2) directly.
"""
from .constants import (
    BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, AttachType, LinkType, MapFlags, MapType,
    PerfEventType, PinType, ProgType, UpdateFlags,
)
from .errors import (
    BpfError, BtfError, ElfError, IncompatibleMapError, LoadError, CoreRelocationError, MapClosedError, MapError,
    MapFullError, MapIndexError, MapKeyError, NotSupportedError, PermissionDeniedError, PinError,
    SyscallError,
    ReaderClosedError, ReaderBusyError, MapTypeError, EventConfigError, CorruptRecordError,
    AttachError, NotFoundError, ObjectFileError, IntRangeError,
)
from .errors import ReadOnlyError
from .maps import Map, MapInfo, possible_cpus
from .link import IterLink, Link, LinkInfo
from .object import BpfObject, GlobalData, load
from .programs import Program, ProgramInfo, TestRunResult
from .btf.typed import TypedMap, TypedTypeError, TypedValueError
# programs(), maps(), links(), btfs(): system-wide listings.  Binding programs and maps
# here shadows the submodules bpfload.programs / bpfload.maps as package attributes;
# "from bpfload.maps import Map" still works (see bpfload.system).
from .system import BtfInfo, btfs, links, maps, programs
from .events import (MapPoller, PerfBuffer, RingBuffer, RingStats, Sample, Snapshot, SnapshotArrays,
                     StaleSnapshotError, online_cpus)

from ._version import __version__ as __version__

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
    "NotSupportedError", "PermissionDeniedError", "ElfError", "BtfError", "LoadError", "CoreRelocationError",
    "PinError", "IncompatibleMapError", "ReaderClosedError", "ReaderBusyError", "MapTypeError",
    "EventConfigError", "CorruptRecordError", "NotFoundError", "ObjectFileError",
    "IntRangeError", "ReadOnlyError",
]
