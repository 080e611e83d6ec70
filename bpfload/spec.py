"""Deterministic, syscall-free description of a BPF object.

:mod:`bpfload.elf` turns an ELF file into an :class:`ObjectSpec`; the loader
turns a spec into live maps and programs.  Nothing here touches the kernel, so
specs can be built and inspected without privileges, and loading never
mutates them (the loader works on copies).

Instruction-level contract (shared by elf.py, the linker in
``bpfload._core.insn`` and the loader):

* Every function in an executable section is a :class:`FunctionSpec` holding
  its own instructions (``symbol.value .. + symbol.size``) and its
  relocations, indexed in 8-byte instruction slots *relative to the function
  start*.
* Programs (global functions in a program section) are
  :class:`ProgramSpec`\\ s, i.e. functions with a program type; static
  functions (and everything in ``.text``) are subprograms.
* A bpf-to-bpf call is always a :class:`Reloc` of kind ``CALL`` naming the
  callee function, whether clang emitted an ELF relocation for it (calls
  across sections) or resolved it itself (calls inside one section):
  ``addend`` is the callee's instruction offset inside the callee function
  (normally 0).  The linker therefore never needs to know about sections.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any, Dict, List, Optional

from .constants import AttachType, MapType, PinType, ProgType


def pin_name_problem(name) -> Optional[str]:
    """Why *name* cannot be one bpffs path component (a pin name), or None when it can.

    A pin path is ``pin_root/<name>``: a name with ``/``, a NUL, ``.`` or
    ``..``, or an empty one would put the pin (or the map reused from it)
    somewhere else.  Shared by the ELF reader (at parse time) and
    :func:`bpfload.pins.pin_path` (where every pin path is made).
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a str"
    if not name:
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    if "/" in name:
        return "contains '/'"
    if name in (".", ".."):
        return f"is {name!r}"
    if len(name.encode(errors="surrogateescape")) > 255:
        return "is longer than 255 bytes"
    return None


class RelocKind(enum.IntEnum):
    MAP = 1        #: ld_imm64 of a map: src_reg=BPF_PSEUDO_MAP_FD, imm=fd
    DATA = 2       #: ld_imm64 into a global-data map: BPF_PSEUDO_MAP_VALUE, imm=fd, imm2=addend
    CALL = 3       #: bpf-to-bpf call: imm = callee start - (insn + 1)
    FUNC_ADDR = 4  #: ld_imm64 of a subprogram address (callbacks): BPF_PSEUDO_FUNC
    EXTERN = 5     #: ld_imm64 / call of an extern (.kconfig / __ksym): resolved by btf/loader


@dataclasses.dataclass(frozen=True)
class Reloc:
    """One relocation inside a function.

    ``insn``: index of the instruction (8-byte slots) from the function start.
    ``target``: map name (MAP), data section name (DATA), function name
    (CALL/FUNC_ADDR) or extern symbol name (EXTERN).
    ``addend``: DATA: byte offset inside the section image; CALL/FUNC_ADDR:
    instruction offset inside the callee.
    """

    insn: int
    kind: RelocKind
    target: str
    addend: int = 0


@dataclasses.dataclass
class FunctionSpec:
    """A function's instructions and relocations (a program or a subprogram)."""

    name: str
    section: str
    insns: bytes
    relocs: List[Reloc] = dataclasses.field(default_factory=list)
    #: offset of the function's first byte inside its section
    offset: int = 0
    #: a global symbol of hidden/internal visibility (``__hidden``): its BTF FUNC is loaded
    #: as static, so the verifier checks it in its caller's context (libbpf's rule)
    hidden: bool = False

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8


@dataclasses.dataclass
class ProgramSpec(FunctionSpec):
    """An entry-point program: a function plus what the kernel needs to load it."""

    type: ProgType = ProgType.UNSPEC
    expected_attach_type: Optional[AttachType] = None
    #: what follows the section prefix (``kprobe/do_sys_open`` -> ``do_sys_open``)
    attach_target: Optional[str] = None
    license: str = ""
    kern_version: int = 0
    #: BPF_F_SLEEPABLE etc.
    flags: int = 0
    #: kernel BTF id to attach to (tp_btf/fentry/lsm/iter); 0: resolved from attach_target
    attach_btf_id: int = 0
    #: False: skip this program at load (libbpf's set_autoload / ``SEC("?...")``)
    autoload: bool = True


#: values MapSpec.__deepcopy__ shares instead of copying
_IMMUTABLE = (int, str, bytes, float, type(None), enum.Enum)


@dataclasses.dataclass
class MapSpec:
    """A map definition, editable before load.

    ``form`` is where it came from: ``"btf"`` (``.maps``), ``"legacy"``
    (``struct bpf_map_def`` in ``maps``), ``"custom"`` (bpfload's
    ``struct bpfm_map_custom``), ``"iproute2"`` (iproute2's ``struct
    bpf_elf_map``), or ``"data"`` (a global-data section).
    """

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    pinning: PinType = PinType.NONE
    numa_node: Optional[int] = None
    map_extra: int = 0
    form: str = "btf"
    section: str = ".maps"
    #: outer maps: the template inner map (a spec; for BTF it is anonymous)
    inner: Optional["MapSpec"] = None
    #: outer map / program array static initializers: slot -> map or program name
    slots: Dict[int, str] = dataclasses.field(default_factory=dict)
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    #: global-data maps: the section image (``.bss``: zeros)
    data: Optional[bytes] = None
    #: freeze after creation and initial update (``.rodata``)
    freeze: bool = False
    #: custom / iproute2 forms: the definition's own id, relation (inner) id and inner slot
    map_id: int = -1
    relation_id: int = -1
    inner_index: int = -1
    #: pinned maps: the directory under the pin root (iproute2's ``tc/globals``), or None
    pin_dir: Optional[str] = None
    #: set by :meth:`reuse`: a Map or fd to use instead of creating one
    reused: object = None
    #: ``.struct_ops``/``.struct_ops.link`` maps: the variable the map registers
    struct_ops: Optional["StructOpsSpec"] = None

    def reuse(self, map_or_fd) -> None:
        """Use an existing map (a :class:`bpfload.Map` or fd) instead of creating one.

        The map must be compatible (type, key/value size, max_entries, flags);
        the loader checks that before any program is loaded.
        """
        self.reused = map_or_fd

    def __deepcopy__(self, memo):
        # The reused map/fd is shared, never copied: a copy of an fd owner
        # would close the caller's fd when collected.
        # Immutable values (names, sizes, enums, the data image) are shared as they are;
        # everything else (slots, the inner template) is deep-copied.
        new = copy.copy(self)
        memo[id(self)] = new
        fields = new.__dict__
        for k, v in fields.items():
            if k != "reused" and not isinstance(v, _IMMUTABLE):
                fields[k] = copy.deepcopy(v, memo)
        return new

    @property
    def is_outer(self) -> bool:
        return self.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


@dataclasses.dataclass
class StructOpsSpec:
    """A struct_ops variable (``SEC(".struct_ops") struct tcp_congestion_ops x = {...}``).

    ``type_name`` is the kernel struct it implements, ``data`` the variable's
    image in the object (its local layout, BTF type ``btf_type_id``),
    ``programs`` maps a function-pointer member's name to the program that
    implements it, ``link`` is True for ``.struct_ops.link`` (registered
    through a BPF link rather than a map update).
    """

    type_name: str
    btf_type_id: int
    data: bytes
    programs: Dict[str, str] = dataclasses.field(default_factory=dict)
    link: bool = False


@dataclasses.dataclass
class GlobalVar:
    """A global variable in a data section (``.data``, ``.rodata``, ``.bss``...)."""

    name: str
    section: str
    offset: int
    size: int


@dataclasses.dataclass
class ObjectSpec:
    """Everything parsed from one BPF ELF object."""

    name: str
    maps: Dict[str, MapSpec] = dataclasses.field(default_factory=dict)
    programs: Dict[str, ProgramSpec] = dataclasses.field(default_factory=dict)
    #: every function, programs included, by symbol name (the linker's input)
    functions: Dict[str, FunctionSpec] = dataclasses.field(default_factory=dict)
    variables: Dict[str, GlobalVar] = dataclasses.field(default_factory=dict)
    license: str = ""
    kern_version: int = 0
    #: undefined symbols (``.kconfig`` / ``__ksym`` externs): name -> weak?
    externs: Dict[str, bool] = dataclasses.field(default_factory=dict)
    #: parsed ``.BTF`` (a :class:`bpfload.btf.Btf`) and ``.BTF.ext``, or None
    btf: Any = None
    btf_ext: Any = None

    def copy(self) -> "ObjectSpec":
        """A copy the loader may edit without touching this spec.

        Maps, programs, functions and variables are copied (relocation lists
        included); instruction bytes are immutable and shared.  The parsed
        BTF is shared too: the loader treats it as read-only and works on its
        own copy where it must edit it.  (A plain deepcopy of a large object
        cost most of its load time.)
        """
        new = copy.copy(self)
        new.maps = {n: copy.deepcopy(m) for n, m in self.maps.items()}
        funcs = {}
        for n, f in self.functions.items():
            c = copy.copy(f)
            c.relocs = list(f.relocs)
            funcs[n] = c
        new.functions = funcs
        new.programs = {n: funcs[n] if n in funcs else copy.copy(p)
                        for n, p in self.programs.items()}
        new.variables = {n: copy.copy(v) for n, v in self.variables.items()}
        return new
