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

import enum

from ._enums import IntEnumBase, fast_enum
from ._records import FrozenRecord, Record
from .constants import AttachType, MapType, PinType, ProgType

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


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


@fast_enum
class RelocKind(IntEnumBase):
    MAP = 1        #: ld_imm64 of a map: src_reg=BPF_PSEUDO_MAP_FD, imm=fd
    DATA = 2       #: ld_imm64 into a global-data map: BPF_PSEUDO_MAP_VALUE, imm=fd, imm2=addend
    CALL = 3       #: bpf-to-bpf call: imm = callee start - (insn + 1)
    FUNC_ADDR = 4  #: ld_imm64 of a subprogram address (callbacks): BPF_PSEUDO_FUNC
    EXTERN = 5     #: ld_imm64 / call of an extern (.kconfig / __ksym): resolved by btf/loader


class Reloc(FrozenRecord):
    """One relocation inside a function.

    ``insn``: index of the instruction (8-byte slots) from the function start.
    ``target``: map name (MAP), data section name (DATA), function name
    (CALL/FUNC_ADDR) or extern symbol name (EXTERN).
    ``addend``: DATA: byte offset inside the section image; CALL/FUNC_ADDR:
    instruction offset inside the callee.
    """

    __slots__ = ("insn", "kind", "target", "addend")
    _fields = __slots__

    insn: int
    kind: RelocKind
    target: str
    addend: int

    def __init__(self, insn: int, kind: RelocKind, target: str, addend: int = 0) -> None:
        _set = object.__setattr__
        _set(self, "insn", insn)
        _set(self, "kind", kind)
        _set(self, "target", target)
        _set(self, "addend", addend)


class FunctionSpec(Record):
    """A function's instructions and relocations (a program or a subprogram)."""

    _fields = ("name", "section", "insns", "relocs", "offset", "hidden")
    _factories = {"relocs": list}

    name: str
    section: str
    insns: bytes
    relocs: List[Reloc]
    #: offset of the function's first byte inside its section
    offset: int
    #: a global symbol of hidden/internal visibility (``__hidden``): its BTF FUNC is loaded
    #: as static, so the verifier checks it in its caller's context (libbpf's rule)
    hidden: bool

    def __init__(self, name: str, section: str, insns: bytes, relocs: Optional[List[Reloc]] = None,
                 offset: int = 0, hidden: bool = False) -> None:
        self.name = name
        self.section = section
        self.insns = insns
        self.relocs = [] if relocs is None else relocs
        self.offset = offset
        self.hidden = hidden

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8


class ProgramSpec(FunctionSpec):
    """An entry-point program: a function plus what the kernel needs to load it."""

    _fields = FunctionSpec._fields + ("type", "expected_attach_type", "attach_target", "license",
                                      "kern_version", "flags", "attach_btf_id", "autoload")

    type: ProgType
    expected_attach_type: Optional[AttachType]
    #: what follows the section prefix (``kprobe/do_sys_open`` -> ``do_sys_open``)
    attach_target: Optional[str]
    license: str
    kern_version: int
    #: BPF_F_SLEEPABLE etc.
    flags: int
    #: kernel BTF id to attach to (tp_btf/fentry/lsm/iter); 0: resolved from attach_target
    attach_btf_id: int
    #: False: skip this program at load (libbpf's set_autoload / ``SEC("?...")``)
    autoload: bool

    def __init__(self, name: str, section: str, insns: bytes, relocs: Optional[List[Reloc]] = None,
                 offset: int = 0, hidden: bool = False, type: ProgType = ProgType.UNSPEC,
                 expected_attach_type: Optional[AttachType] = None, attach_target: Optional[str] = None,
                 license: str = "", kern_version: int = 0, flags: int = 0, attach_btf_id: int = 0,
                 autoload: bool = True) -> None:
        FunctionSpec.__init__(self, name, section, insns, relocs, offset, hidden)
        self.type = type
        self.expected_attach_type = expected_attach_type
        self.attach_target = attach_target
        self.license = license
        self.kern_version = kern_version
        self.flags = flags
        self.attach_btf_id = attach_btf_id
        self.autoload = autoload


def _copy(obj):
    """``copy.copy(obj)`` of a spec record (one with a ``__dict__``), without the copy module.

    (``import copy`` brings weakref and copyreg: ~1 ms of a fresh process.)
    """
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


#: values MapSpec.__deepcopy__ shares instead of copying
_IMMUTABLE = (int, str, bytes, float, type(None), enum.Enum)


class MapSpec(Record):
    """A map definition, editable before load.

    ``form`` is where it came from: ``"btf"`` (``.maps``), ``"legacy"``
    (``struct bpf_map_def`` in ``maps``), ``"custom"`` (bpfload's
    ``struct bpfm_map_custom``), ``"iproute2"`` (iproute2's ``struct
    bpf_elf_map``), or ``"data"`` (a global-data section).
    """

    _fields = ("name", "type", "key_size", "value_size", "max_entries", "flags", "pinning", "numa_node",
               "map_extra", "form", "section", "inner", "slots", "btf_key_type_id", "btf_value_type_id",
               "data", "freeze", "map_id", "relation_id", "inner_index", "pin_dir", "reused",
               "struct_ops")
    _factories = {"slots": dict}

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    pinning: PinType
    numa_node: Optional[int]
    map_extra: int
    form: str
    section: str
    #: outer maps: the template inner map (a spec; for BTF it is anonymous)
    inner: Optional[MapSpec]
    #: outer map / program array static initializers: slot -> map or program name
    slots: Dict[int, str]
    btf_key_type_id: int
    btf_value_type_id: int
    #: global-data maps: the section image (``.bss``: zeros)
    data: Optional[bytes]
    #: freeze after creation and initial update (``.rodata``)
    freeze: bool
    #: custom / iproute2 forms: the definition's own id, relation (inner) id and inner slot
    map_id: int
    relation_id: int
    inner_index: int
    #: pinned maps: the directory under the pin root (iproute2's ``tc/globals``), or None
    pin_dir: Optional[str]
    #: set by :meth:`reuse`: a Map or fd to use instead of creating one
    reused: object
    #: ``.struct_ops``/``.struct_ops.link`` maps: the variable the map registers
    struct_ops: Optional[StructOpsSpec]

    def __init__(self, name: str, type: MapType, key_size: int, value_size: int, max_entries: int,
                 flags: int = 0, pinning: PinType = PinType.NONE, numa_node: Optional[int] = None,
                 map_extra: int = 0, form: str = "btf", section: str = ".maps",
                 inner: Optional[MapSpec] = None, slots: Optional[Dict[int, str]] = None,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0, data: Optional[bytes] = None,
                 freeze: bool = False, map_id: int = -1, relation_id: int = -1, inner_index: int = -1,
                 pin_dir: Optional[str] = None, reused: object = None,
                 struct_ops: Optional[StructOpsSpec] = None) -> None:
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.pinning = pinning
        self.numa_node = numa_node
        self.map_extra = map_extra
        self.form = form
        self.section = section
        self.inner = inner
        self.slots = {} if slots is None else slots
        self.btf_key_type_id = btf_key_type_id
        self.btf_value_type_id = btf_value_type_id
        self.data = data
        self.freeze = freeze
        self.map_id = map_id
        self.relation_id = relation_id
        self.inner_index = inner_index
        self.pin_dir = pin_dir
        self.reused = reused
        self.struct_ops = struct_ops

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
        # (copy is imported only for values other than a dict of immutables or a MapSpec:
        # a plain load never needs it)
        new = _copy(self)
        memo[id(self)] = new
        fields = new.__dict__
        for k, v in fields.items():
            if k == "reused" or isinstance(v, _IMMUTABLE):
                continue
            if type(v) is dict and all(isinstance(x, _IMMUTABLE) for kv in v.items() for x in kv):
                fields[k] = dict(v)
            elif type(v) is MapSpec:
                done = memo.get(id(v))
                fields[k] = v.__deepcopy__(memo) if done is None else done
            else:
                import copy
                fields[k] = copy.deepcopy(v, memo)
        return new

    @property
    def is_outer(self) -> bool:
        return self.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


class StructOpsSpec(Record):
    """A struct_ops variable (``SEC(".struct_ops") struct tcp_congestion_ops x = {...}``).

    ``type_name`` is the kernel struct it implements, ``data`` the variable's
    image in the object (its local layout, BTF type ``btf_type_id``),
    ``programs`` maps a function-pointer member's name to the program that
    implements it, ``link`` is True for ``.struct_ops.link`` (registered
    through a BPF link rather than a map update).
    """

    _fields = ("type_name", "btf_type_id", "data", "programs", "link")
    _factories = {"programs": dict}

    type_name: str
    btf_type_id: int
    data: bytes
    programs: Dict[str, str]
    link: bool

    def __init__(self, type_name: str, btf_type_id: int, data: bytes,
                 programs: Optional[Dict[str, str]] = None, link: bool = False) -> None:
        self.type_name = type_name
        self.btf_type_id = btf_type_id
        self.data = data
        self.programs = {} if programs is None else programs
        self.link = link


class GlobalVar(Record):
    """A global variable in a data section (``.data``, ``.rodata``, ``.bss``...)."""

    _fields = ("name", "section", "offset", "size")

    name: str
    section: str
    offset: int
    size: int

    def __init__(self, name: str, section: str, offset: int, size: int) -> None:
        self.name = name
        self.section = section
        self.offset = offset
        self.size = size


class ObjectSpec(Record):
    """Everything parsed from one BPF ELF object."""

    _fields = ("name", "maps", "programs", "functions", "variables", "license", "kern_version",
               "externs", "btf", "btf_ext")
    _factories = {"maps": dict, "programs": dict, "functions": dict, "variables": dict,
                  "externs": dict}

    name: str
    maps: Dict[str, MapSpec]
    programs: Dict[str, ProgramSpec]
    #: every function, programs included, by symbol name (the linker's input)
    functions: Dict[str, FunctionSpec]
    variables: Dict[str, GlobalVar]
    license: str
    kern_version: int
    #: undefined symbols (``.kconfig`` / ``__ksym`` externs): name -> weak?
    externs: Dict[str, bool]
    #: parsed ``.BTF`` (a :class:`bpfload.btf.Btf`) and ``.BTF.ext``, or None
    btf: Any
    btf_ext: Any

    def __init__(self, name: str, maps: Optional[Dict[str, MapSpec]] = None,
                 programs: Optional[Dict[str, ProgramSpec]] = None,
                 functions: Optional[Dict[str, FunctionSpec]] = None,
                 variables: Optional[Dict[str, GlobalVar]] = None, license: str = "",
                 kern_version: int = 0, externs: Optional[Dict[str, bool]] = None, btf: Any = None,
                 btf_ext: Any = None) -> None:
        self.name = name
        self.maps = {} if maps is None else maps
        self.programs = {} if programs is None else programs
        self.functions = {} if functions is None else functions
        self.variables = {} if variables is None else variables
        self.license = license
        self.kern_version = kern_version
        self.externs = {} if externs is None else externs
        self.btf = btf
        self.btf_ext = btf_ext

    def copy(self) -> "ObjectSpec":
        """A copy the loader may edit without touching this spec.

        Maps, programs, functions and variables are copied (relocation lists
        included); instruction bytes are immutable and shared.  The parsed
        BTF is shared too: the loader treats it as read-only and works on its
        own copy where it must edit it.  (A plain deepcopy of a large object
        cost most of its load time.)
        """
        new = _copy(self)
        new.maps = {n: m.__deepcopy__({}) for n, m in self.maps.items()}
        funcs = {}
        for n, f in self.functions.items():
            c = _copy(f)
            c.relocs = list(f.relocs)
            funcs[n] = c
        new.functions = funcs
        new.programs = {n: funcs[n] if n in funcs else _copy(p)
                        for n, p in self.programs.items()}
        new.variables = {n: _copy(v) for n, v in self.variables.items()}
        return new
