"""BPF ELF object -> :class:`~bpfload.spec.ObjectSpec`.

bpfload's own ELF64 reader (:mod:`.file`) reads the ELF header, the section
header table and section names; the fixed-size symbol and relocation records
are read here (or by :mod:`bpfload._core.elf`) from section data that was
bounds-checked against the file first.  Every offset, size and index read from the file is
checked, so a malformed object raises :class:`~bpfload.errors.ElfError` (or
its subclass :class:`~bpfload.errors.BtfError`) naming the object and, where
it applies, the section, symbol and offset -- never ``IndexError``,
``KeyError`` or ``struct.error``.  pyelftools is not used here (the tests use
it as the reference the reader is checked against).

No syscalls: parsing needs no privileges.  See :mod:`bpfload.spec` for the
instruction-level contract this module fills (functions with their own
instructions, relocations relative to the function start, CALL relocations
for every bpf-to-bpf call).

Decisions worth knowing:

* A program is a global (or weak) function in an executable section other
  than ``.text``; static functions anywhere, and all of ``.text``, are
  subprograms (:class:`~bpfload.spec.FunctionSpec`).
* A program in an unknown section gets ``ProgType.UNSPEC`` (see
  :mod:`bpfload.elf.sections`): the user may set the type before loading.
  ``SEC("?name")`` programs are classified as ``name`` with
  ``autoload=False``.
* The per-record loops (section headers, symbols, code relocations, call
  sites) run in compiled code (:mod:`bpfload._core.elf`) when it is built;
  every entry that is not a plain map load, data address or call -- and every
  entry that is wrong -- is handed back to the Python code here, which names
  the problem.  The Python loops are kept as the reference the tests compare
  the compiled ones with (tests/test_elf_raw.py).
* ``.BTF`` DATASEC sizes and VAR offsets, which clang leaves 0, are fixed up
  from the ELF here (:meth:`bpfload.btf.Btf.fixup_datasecs`), so
  ``spec.btf`` is ready for BPF_BTF_LOAD.
* Global-data sections are named by their section name in ``spec.maps``;
  :func:`kernel_map_name` gives the name the kernel should see.
"""
from __future__ import annotations

import bisect
import os
import struct

from . import iproute2 as _iproute2
from . import sections as _sections
from .file import ElfFile, ElfSection
from ..btf import Btf, BtfExt, Datasec, Kind, Var, VarLinkage, annotate_error, parse_map_def
from .._lazy import Module
from ..constants import MapFlags, MapType, PinType, ProgType
from ..errors import BtfError, ElfError
from ..spec import (FunctionSpec, GlobalVar, MapSpec, ObjectSpec, ProgramSpec, Reloc, RelocKind,
                    StructOpsSpec, pin_name_problem)

copy = Module("copy")   # imported on first use (deep copies of templates are rare)
TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple, Union

__all__ = ["parse_object", "kernel_map_name", "BPF_OBJ_NAME_LEN"]

try:    # the per-record loops in compiled code; the Python twins below are the reference
    from .._core import elf as _celf
except ImportError:  # pragma: no cover - a build without the extension
    _celf = None  # type: ignore[assignment]

#: Kernel limit for object names, NUL included.
BPF_OBJ_NAME_LEN = 16

# ELF constants
_SHN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_SECTION = 0, 1, 2, 3
_STV_INTERNAL, _STV_HIDDEN = 1, 2

# BPF instruction encoding
_INSN_SIZE = 8
_LD_IMM64 = 0x18   # BPF_LD | BPF_IMM | BPF_DW
_CALL = 0x85       # BPF_JMP | BPF_CALL
_CALL_BYTE = bytes([_CALL])
_PSEUDO_CALL = 1

_SYM = struct.Struct("<IBBHQQ")   # Elf64_Sym
_REL = struct.Struct("<QQ")       # Elf64_Rel
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
#: struct_ops sections -> registered through a link?
_STRUCT_OPS_SECTIONS = {".struct_ops": False, ".struct_ops.link": True}

_LEGACY_DEF = struct.Struct("<5I")
_CUSTOM_DEF = struct.Struct("<6I3i")

#: Largest global-data section accepted (the kernel's own limit is lower).
_MAX_DATA_SECTION = 64 << 20

_MAPS_SEC = "maps"
_BTF_MAPS_SEC = ".maps"
_BY_INSN = lambda r: r.insn    # noqa: E731 (sorts only lists out of order)
_KINDS = (RelocKind.MAP, RelocKind.DATA, RelocKind.CALL)


def kernel_map_name(obj_name: str, section: str) -> str:
    """The map name the kernel sees for a global-data section, libbpf's rule.

    ``.data``/``.rodata``/``.bss``/``.kconfig`` get as much of the object name
    as fits in front (the suffix always reserves at least 7 characters:
    ``my_object`` + ``.bss`` -> ``my_objec.bss``); custom sections with a
    second dot (``.rodata.str1.1``, ``.data.counters``) use the section name
    alone.  The result is at most 15 characters (BPF_OBJ_NAME_LEN - 1), and
    characters the kernel refuses become ``_``.  Never raises.
    """
    obj = obj_name[:BPF_OBJ_NAME_LEN - 1].split(".", 1)[0]
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    if "." in section[1:]:
        pfx_len = 0
    else:
        pfx_len = min(BPF_OBJ_NAME_LEN - 1 - sfx_len, len(obj))
    name = (obj[:pfx_len] + section[:sfx_len])[:BPF_OBJ_NAME_LEN - 1]
    if name.isascii() and name.replace("_", "").replace(".", "").isalnum():
        return name     # nothing to clean (the usual case): no loop per character
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_." else "_" for c in name)


def parse_object(path_or_bytes: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview],
                 name: Optional[str] = None, *, map_format: Optional[str] = None) -> ObjectSpec:
    """Parse a BPF ELF object (a path or its bytes) into an :class:`ObjectSpec`.

    *name* defaults to the file's base name up to its first dot
    (``maps_btf.bpf.o`` -> ``maps_btf``), or ``"object"`` for bytes.

    Raises :class:`ElfError` (:class:`BtfError` for BTF problems) for
    anything malformed or unsupported: not an ELF file, not 64-bit
    little-endian EM_BPF ET_REL, sections or symbols out of bounds, bad
    relocations, unknown map types, bad map definitions, a missing
    map-in-map template.  Reading a path may raise :class:`OSError`.
    Makes no syscalls besides reading the file.

    *map_format* ``"iproute2"``: the 36-byte definitions in ``maps`` are
    iproute2's ``struct bpf_elf_map`` (:mod:`bpfload.elf.iproute2`), not
    bpfload's ``struct bpfm_map_custom`` (the default); ValueError for any
    other value.
    """
    if map_format not in (None, "custom", "iproute2"):
        raise ValueError(f"map_format must be 'custom' or 'iproute2', not {map_format!r}")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        obj_name = name if name is not None else "object"
    else:
        if not isinstance(path_or_bytes, (str, os.PathLike)):
            # An int would be read as an fd and closed by open(): a Map's fd given by
            # mistake would lose its number to the next object created.
            raise TypeError("expected a path (str or os.PathLike) or the object's bytes, "
                            f"not {type(path_or_bytes).__name__}")
        with open(path_or_bytes, "rb") as f:
            data = f.read()
        if name is None:
            base = os.path.basename(os.fspath(path_or_bytes))
            name = base.split(".", 1)[0] or base
        obj_name = name
    return _Parser(data, obj_name, map_format == "iproute2").run()


# --------------------------------------------------------------------------
# internal records
# --------------------------------------------------------------------------

class _Symbol:
    __slots__ = ("index", "name", "value", "size", "bind", "type", "shndx", "visibility")

    def __init__(self, index, name, value, size, bind, type_, shndx, visibility):
        self.index = index
        self.name = name
        self.value = value
        self.size = size
        self.bind = bind
        self.type = type_
        self.shndx = shndx
        self.visibility = visibility


class _BtfMap:
    """Where a BTF-defined map lives in ``.maps`` and its decoded definition."""

    __slots__ = ("name", "offset", "size", "values_offset", "values_is_prog")

    def __init__(self, name, offset, size, values_offset, values_is_prog):
        self.name = name
        self.offset = offset
        self.size = size
        self.values_offset = values_offset
        self.values_is_prog = values_is_prog


def _call_sites(insns: bytes) -> List[Tuple[int, int]]:
    """``[(insn index, imm), ...]``: the bpf-to-bpf calls of a function's instructions.

    The Python twin of :func:`bpfload._core.elf.call_sites`.  Candidates are found with
    ``bytes.find`` for the call opcode at instruction boundaries; one is the second half
    of an ld_imm64 when an odd run of ld_imm64 opcodes precedes it (what a walk from the
    function start would have skipped).  Never raises.
    """
    out = []
    n = len(insns) // _INSN_SIZE * _INSN_SIZE
    p = insns.find(_CALL_BYTE, 0, n)
    while p >= 0:
        if p % _INSN_SIZE == 0 and insns[p + 1] >> 4 == _PSEUDO_CALL:
            i = p // _INSN_SIZE
            run = 0
            while run < i and insns[(i - run - 1) * _INSN_SIZE] == _LD_IMM64:
                run += 1
            if run % 2 == 0:
                out.append((i, _I32.unpack_from(insns, p + 4)[0]))
        p = insns.find(_CALL_BYTE, (p // _INSN_SIZE + 1) * _INSN_SIZE, n)
    return out


def _with_object(e: ElfError, obj: str) -> ElfError:
    """The same error (same class) with the object name filled in."""
    return annotate_error(e, object=obj)


# --------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------

class _Parser:
    def __init__(self, data: bytes, name: str, iproute2: bool = False):
        self.data = data
        self.name = name
        self.iproute2 = iproute2
        self.defs36: List[bytes] = []   # the 36-byte map definitions, for iproute2 detection
        self.spec = ObjectSpec(name=name)
        self.elf: Optional[ElfFile] = None
        self.sections: List[ElfSection] = []
        self.symbols: List[_Symbol] = []
        self.symtab_index = -1
        # executable section index -> sorted function starts and the functions
        self.func_starts: Dict[int, List[int]] = {}
        self.func_list: Dict[int, List[Tuple[_Symbol, FunctionSpec]]] = {}
        # the same as compiled lookup tables (with the extension only)
        self.func_tables: Dict[int, "_celf.FuncTable"] = {}
        # (insn, kind, target, addend) -> its Reloc: equal relocations are one (immutable) object
        self.reloc_memo: Dict[tuple, Reloc] = {}
        # relocation lists that may be out of order: functions code_relocs says so of, and
        # every function of a section an entry of which was done in Python
        self.unsorted: Dict[int, FunctionSpec] = {}
        self.resort: set = set()
        # executable sections whose REL entries went through code_relocs
        self.reloc_done: set = set()
        # (section index, offset) -> map name, for MAP relocations
        self.map_at: Dict[Tuple[int, int], str] = {}
        self.btf_maps: List[_BtfMap] = []
        self.data_sections: Dict[int, str] = {}
        # relocations in .struct_ops sections: (section, offset, symbol)
        self.st_ops_relocs: List[Tuple[ElfSection, int, _Symbol]] = []
        # executable section index -> offsets with a relocation entry (one per instruction)
        self.reloc_offsets: Dict[int, set] = {}

    def err(self, msg: str, *, section: Optional[str] = None, symbol: Optional[str] = None,
            offset: Optional[int] = None, cls=ElfError) -> ElfError:
        return cls(msg, object=self.name, section=section, symbol=symbol, offset=offset)

    def run(self) -> ObjectSpec:
        try:
            self._read_elf()
            self._read_symbols()
            self._read_license_version()
            self._read_btf()
            self._read_functions()
            self._read_legacy_maps()
            # map definitions and data-section variables are only read: the types
            # decoded for them are dropped again, so the load copies their raw records
            btf = self.spec.btf
            mark = btf._decode_mark() if isinstance(btf, Btf) else None
            self._read_btf_maps()
            self._read_data_sections()
            if mark is not None:
                btf._forget_since(mark)
            self._read_relocations()
            self._read_struct_ops()
            self._synthesize_calls()
            self._resolve_custom_relations()
        except ElfError as e:
            why = None if self.iproute2 or e.section != _MAPS_SEC else _iproute2.looks_like(self.defs36)
            if why is not None:
                hinted = type(e)(f"{e}; {why}")
                hinted.object, hinted.section, hinted.symbol = self.name, e.section, e.symbol
                raise hinted from e
            new = _with_object(e, self.name)
            if new is e:
                raise
            raise new from e
        return self.spec

    # -- ELF structure -----------------------------------------------------

    def _read_elf(self) -> None:
        try:
            self.elf = ElfFile(self.data)
        except ElfError as e:
            raise _with_object(e, self.name) from None
        self.sections = self.elf.sections

    def section(self, idx: int) -> Optional[ElfSection]:
        if 0 <= idx < len(self.sections):
            return self.sections[idx]
        return None

    def section_by_name(self, name: str) -> Optional[ElfSection]:
        return self.elf.section_by_name(name)

    def _read_symbols(self) -> None:
        symtabs = [s for s in self.sections if s.type == "SHT_SYMTAB"]
        if not symtabs:
            raise self.err("no symbol table")
        if len(symtabs) > 1:
            raise self.err("more than one symbol table")
        st = symtabs[0]
        self.symtab_index = st.index
        if st.entsize not in (0, _SYM.size) or st.size % _SYM.size:
            raise self.err(f"symbol table entry size {st.entsize} / size {st.size} is not a multiple "
                           f"of {_SYM.size}", section=st.name)
        strtab = self.section(st.link)
        if strtab is None or strtab.type != "SHT_STRTAB":
            raise self.err(f"symbol table links to section #{st.link}, not a string table",
                           section=st.name)
        strings = strtab.data
        if _celf is not None:
            syms, bad = _celf.read_symbols(st.data, strings, [s.name for s in self.sections])
            self.symbols = syms
            if bad is not None:
                i, what, name_off = bad
                if what == "outside":
                    raise self.err(f"symbol #{i}: name offset {name_off} outside the string table",
                                   section=st.name)
                raise self.err(f"symbol #{i}: name is not NUL-terminated", section=st.name)
            return
        for i in range(st.size // _SYM.size):
            name_off, info, other, shndx, value, size = _SYM.unpack_from(st.data, i * _SYM.size)
            if name_off:
                if name_off >= len(strings):
                    raise self.err(f"symbol #{i}: name offset {name_off} outside the string table",
                                   section=st.name)
                end = strings.find(b"\0", name_off)
                if end < 0:
                    raise self.err(f"symbol #{i}: name is not NUL-terminated", section=st.name)
                sname = strings[name_off:end].decode("utf-8", "replace")
            else:
                sname = ""
            stype = info & 0xF
            if stype == _STT_SECTION and not sname:
                sec = self.section(shndx)
                sname = sec.name if sec is not None else ""
            self.symbols.append(_Symbol(i, sname, value, size, info >> 4, stype, shndx, other & 3))

    def _read_license_version(self) -> None:
        lic = self.section_by_name("license")
        if lic is not None:
            raw = lic.data.split(b"\0", 1)[0]
            self.spec.license = raw.decode("utf-8", "replace")
        ver = self.section_by_name("version")
        if ver is not None:
            if ver.size != 4 or len(ver.data) != 4:
                raise self.err(f"'version' section must be 4 bytes, not {ver.size}", section="version")
            self.spec.kern_version = int.from_bytes(ver.data, "little")

    # -- BTF -----------------------------------------------------------------

    def _read_btf(self) -> None:
        sec = self.section_by_name(".BTF")
        if sec is None:
            return
        btf = Btf.parse(sec.data)
        sizes = {s.name: s.size for s in self.sections if s.name}
        syms: Dict[str, Dict[str, Tuple[int, bool]]] = {}
        for sym in self.symbols:
            if sym.type not in (_STT_OBJECT, _STT_NOTYPE) or not sym.name:
                continue
            s = self.section(sym.shndx) if sym.shndx < _SHN_LORESERVE else None
            if s is None or sym.shndx == _SHN_UNDEF:
                continue
            hidden = sym.bind != _STB_LOCAL and sym.visibility in (_STV_HIDDEN, _STV_INTERNAL)
            syms.setdefault(s.name, {})[sym.name] = (sym.value, hidden)
        btf.fixup_datasecs(sizes, syms)
        for sym in self.symbols:
            if sym.shndx == _SHN_UNDEF and sym.name and sym.bind in (_STB_GLOBAL, _STB_WEAK):
                self.spec.externs[sym.name] = sym.bind == _STB_WEAK
        btf.validate()
        self.spec.btf = btf
        ext = self.section_by_name(".BTF.ext")
        if ext is not None:
            self.spec.btf_ext = BtfExt.parse(ext.data, btf)

    # -- functions -------------------------------------------------------------

    def _read_functions(self) -> None:
        by_sec: Dict[int, List[_Symbol]] = {}
        for sym in self.symbols:
            if sym.type != _STT_FUNC or sym.shndx == _SHN_UNDEF:
                continue
            sec = self.section(sym.shndx) if sym.shndx < _SHN_LORESERVE else None
            if sec is None or not sec.executable:
                raise self.err("function symbol outside an executable section",
                               section=sec.name if sec else None, symbol=sym.name)
            by_sec.setdefault(sec.index, []).append(sym)
        for sec in self.sections:
            if not sec.executable or sec.size == 0:
                continue
            if sec.size % _INSN_SIZE:
                raise self.err(f"executable section size {sec.size} is not a multiple of 8",
                               section=sec.name)
            syms = sorted(by_sec.get(sec.index, ()), key=lambda s: s.value)
            sdef = None
            if sec.name != ".text":
                sdef = _sections.classify(sec.name)
            starts: List[int] = []
            funcs: List[Tuple[_Symbol, FunctionSpec]] = []
            prev_end = 0
            for sym in syms:
                if not sym.name:
                    raise self.err("function symbol without a name", section=sec.name, offset=sym.value)
                if sym.value % _INSN_SIZE or sym.size % _INSN_SIZE or sym.size == 0:
                    raise self.err(f"function at {sym.value:#x} of size {sym.size} is not made of "
                                   f"whole instructions", section=sec.name, symbol=sym.name,
                                   offset=sym.value)
                if sym.value + sym.size > sec.size:
                    raise self.err(f"function {sym.value:#x}+{sym.size:#x} extends past the section "
                                   f"end {sec.size:#x}", section=sec.name, symbol=sym.name,
                                   offset=sym.value)
                if sym.value < prev_end:
                    raise self.err("function overlaps the previous one", section=sec.name,
                                   symbol=sym.name, offset=sym.value)
                prev_end = sym.value + sym.size
                if sym.name in self.spec.functions:
                    raise self.err("duplicate function name", section=sec.name, symbol=sym.name)
                insns = sec.data[sym.value:sym.value + sym.size]
                fn: FunctionSpec
                if sdef is not None and sym.bind in (_STB_GLOBAL, _STB_WEAK):
                    fn = ProgramSpec(name=sym.name, section=sec.name, insns=insns, offset=sym.value,
                                     type=sdef.prog_type, expected_attach_type=sdef.expected_attach_type,
                                     attach_target=sdef.attach_target, license=self.spec.license,
                                     kern_version=self.spec.kern_version, flags=sdef.flags,
                                     autoload=not sec.name.startswith("?"))
                    self.spec.programs[sym.name] = fn
                else:
                    fn = FunctionSpec(name=sym.name, section=sec.name, insns=insns, offset=sym.value)
                fn.hidden = sym.bind != _STB_LOCAL and sym.visibility in (_STV_HIDDEN, _STV_INTERNAL)
                self.spec.functions[sym.name] = fn
                starts.append(sym.value)
                funcs.append((sym, fn))
            self.func_starts[sec.index] = starts
            self.func_list[sec.index] = funcs
            if _celf is not None:
                self.func_tables[sec.index] = _celf.FuncTable([f[0] for f in funcs], [f[1] for f in funcs])

    def function_at(self, shndx: int, byte_off: int) -> Optional[Tuple[_Symbol, FunctionSpec]]:
        """The function of section *shndx* whose bytes contain *byte_off*."""
        if _celf is not None:
            table = self.func_tables.get(shndx)
            return table.at(byte_off) if table is not None else None
        starts = self.func_starts.get(shndx)
        if not starts:
            return None
        i = bisect.bisect_right(starts, byte_off) - 1
        if i < 0:
            return None
        sym, fn = self.func_list[shndx][i]
        if sym.value <= byte_off < sym.value + sym.size:
            return sym, fn
        return None

    # -- maps --------------------------------------------------------------------

    def _map_type(self, value: int, where: str, section: str) -> MapType:
        try:
            return MapType(value)
        except ValueError:
            raise self.err(f"unknown map type {value} (the highest known is {max(MapType).value})",
                           section=section, symbol=where) from None

    def _add_map(self, m: MapSpec, shndx: int, offset: int) -> None:
        if m.name in self.spec.maps:
            raise self.err("duplicate map name", section=m.section, symbol=m.name)
        self.spec.maps[m.name] = m
        self.map_at[(shndx, offset)] = m.name

    def _read_legacy_maps(self) -> None:
        sec = self.section_by_name(_MAPS_SEC)
        if sec is None:
            return
        if sec.type != "SHT_PROGBITS":
            raise self.err(f"map definitions section is {sec.type}, not SHT_PROGBITS", section=sec.name)
        syms = sorted((s for s in self.symbols if s.shndx == sec.index and s.type != _STT_SECTION
                       and s.name), key=lambda s: s.value)
        prev_end = 0
        for sym in syms:
            if sym.value + sym.size > sec.size:
                raise self.err(f"map definition {sym.value:#x}+{sym.size:#x} extends past the "
                               f"section end {sec.size:#x}", section=sec.name, symbol=sym.name,
                               offset=sym.value)
            if sym.value < prev_end:
                raise self.err("map definition overlaps the previous one", section=sec.name,
                               symbol=sym.name, offset=sym.value)
            prev_end = sym.value + sym.size
            if sym.size == _LEGACY_DEF.size:
                mtype, ksz, vsz, maxe, flags = _LEGACY_DEF.unpack_from(sec.data, sym.value)
                m = MapSpec(name=sym.name, type=self._check_type(mtype, sym.name, sec.name),
                            key_size=ksz, value_size=vsz, max_entries=maxe, flags=flags,
                            form="legacy", section=sec.name)
            elif sym.size == _CUSTOM_DEF.size and self.iproute2:
                m = _iproute2.map_spec(sym.name, sec.data, sym.value, section=sec.name, data=self.data)
                if m.pinning:
                    self._pin_type(int(m.pinning), sym.name, sec.name)   # the name is one component
            elif sym.size == _CUSTOM_DEF.size:
                self.defs36.append(sec.data[sym.value:sym.value + _CUSTOM_DEF.size])
                (mtype, ksz, vsz, maxe, pinning, flags, map_id, relation_id,
                 inner_index) = _CUSTOM_DEF.unpack_from(sec.data, sym.value)
                m = MapSpec(name=sym.name, type=self._check_type(mtype, sym.name, sec.name),
                            key_size=ksz, value_size=vsz, max_entries=maxe, flags=flags,
                            pinning=self._pin_type(pinning, sym.name, sec.name), form="custom",
                            section=sec.name, map_id=map_id, relation_id=relation_id,
                            inner_index=inner_index)
            else:
                raise self.err(f"map definition of {sym.size} bytes: expected {_LEGACY_DEF.size} "
                               f"(struct bpf_map_def) or {_CUSTOM_DEF.size} (struct bpfm_map_custom)",
                               section=sec.name, symbol=sym.name, offset=sym.value)
            self._add_map(m, sec.index, sym.value)

    def _check_type(self, value: int, name: str, section: str) -> MapType:
        t = self._map_type(value, name, section)
        if t == MapType.UNSPEC:
            raise self.err("map type isn't specified", section=section, symbol=name)
        return t

    def _pin_type(self, value: int, name: str, section: str) -> PinType:
        try:
            pin = PinType(value)
        except ValueError:
            raise self.err(f"invalid pinning value {value} (0 = none, 1 = by name)",
                           section=section, symbol=name) from None
        if pin == PinType.BY_NAME:
            problem = pin_name_problem(name)
            if problem is not None:
                raise self.err(f"map {name!r} is pinned by name but its name {problem}: a pinned "
                               "map's name must be a single bpffs path component",
                               section=section, symbol=name)
        return pin

    def _read_btf_maps(self) -> None:
        sec = self.section_by_name(_BTF_MAPS_SEC)
        if sec is None or sec.size == 0:
            return
        btf = self.spec.btf
        if not isinstance(btf, Btf):
            raise self.err("BTF-defined maps need a .BTF section", section=sec.name)
        ds = btf._datasec(_BTF_MAPS_SEC)
        if not isinstance(ds, Datasec):
            raise self.err("no DATASEC '.maps' in .BTF", section=sec.name, cls=BtfError)
        for vsi in ds.vars:
            var = btf[vsi.type]
            if not isinstance(var, Var):
                raise self.err(f"DATASEC '.maps' member [{vsi.type}] is {var.kind.name}, not VAR",
                               section=sec.name, cls=BtfError)
            if not var.name:
                raise self.err("map without a name", section=sec.name, offset=vsi.offset, cls=BtfError)
            if var.linkage == VarLinkage.GLOBAL_EXTERN:
                raise self.err("extern maps are not supported", section=sec.name, symbol=var.name)
            if vsi.offset + vsi.size > sec.size:
                raise self.err(f"map {vsi.offset:#x}+{vsi.size:#x} extends past the section end "
                               f"{sec.size:#x}", section=sec.name, symbol=var.name, cls=BtfError)
            d = parse_map_def(btf, var.type, var.name)
            size = btf._raw_size_of(var.type)     # (no type objects for the usual definition)
            if (btf.size_of(var.type) if size is None else size) > vsi.size:
                raise self.err("map definition is larger than its variable", section=sec.name,
                               symbol=var.name, cls=BtfError)
            m = self._spec_from_def(d, sec.name)
            if d.inner is not None:
                m.inner = self._spec_from_def(d.inner, sec.name)
            self._add_map(m, sec.index, vsi.offset)
            self.btf_maps.append(_BtfMap(var.name, vsi.offset, vsi.size, d.values_offset,
                                         d.values_is_prog))
        self.btf_maps.sort(key=lambda b: b.offset)
        for prev, cur in zip(self.btf_maps, self.btf_maps[1:]):
            if cur.offset < prev.offset + prev.size:
                raise self.err(f"map {cur.name!r} overlaps map {prev.name!r}", section=sec.name,
                               symbol=cur.name, offset=cur.offset, cls=BtfError)

    def _spec_from_def(self, d, section: str) -> MapSpec:
        return MapSpec(name=d.name, type=self._check_type(d.type, d.name, section), key_size=d.key_size,
                       value_size=d.value_size, max_entries=d.max_entries, flags=d.map_flags,
                       pinning=self._pin_type(d.pinning, d.name, section), numa_node=d.numa_node,
                       map_extra=d.map_extra, form="btf", section=section,
                       btf_key_type_id=d.key_type_id, btf_value_type_id=d.value_type_id)

    def _read_data_sections(self) -> None:
        btf = self.spec.btf if isinstance(self.spec.btf, Btf) else None
        zeros = 0  # bytes of NOBITS images made here: the file does not bound them, so this does
        for sec in self.sections:
            n = sec.name
            if sec.executable or not n.startswith((".data", ".rodata", ".bss")):
                continue    # (one test for most sections; the exact names below)
            if n == ".data" or n.startswith(".data."):
                rodata = False
            elif n == ".rodata" or n.startswith(".rodata."):
                rodata = True
            elif n == ".bss" or n.startswith(".bss."):
                rodata = False
            else:
                continue
            if sec.type not in ("SHT_PROGBITS", "SHT_NOBITS") or sec.size == 0:
                continue
            if sec.size > _MAX_DATA_SECTION:
                raise self.err(f"global-data section of {sec.size} bytes is too large for a map",
                               section=n)
            if sec.nobits:
                zeros += sec.size
                if zeros > _MAX_DATA_SECTION:
                    raise self.err(f"global-data (NOBITS) sections total {zeros} bytes, over the "
                                   f"{_MAX_DATA_SECTION}-byte limit", section=n)
            flags = int(MapFlags.RDONLY_PROG) if rodata else 0
            value_type_id = 0
            if btf is not None:
                found = btf._datasec_visible(n)
                if found is not None:
                    value_type_id, visible = found
                    if visible:     # libbpf: mmapable if any variable is visible (non-static)
                        flags |= int(MapFlags.MMAPABLE)
            image = bytes(sec.size) if sec.nobits else sec.data
            m = MapSpec(name=n, type=MapType.ARRAY, key_size=4, value_size=sec.size, max_entries=1,
                        flags=flags, form="data", section=n, data=image, freeze=rodata,
                        btf_value_type_id=value_type_id)
            if n in self.spec.maps:
                raise self.err("a map has the same name as a data section", section=n, symbol=n)
            self.spec.maps[n] = m
            self.data_sections[sec.index] = n
        for sym in self.symbols:
            sname = self.data_sections.get(sym.shndx)
            if sname is None or sym.type == _STT_SECTION or not sym.name:
                continue
            if sym.type not in (_STT_OBJECT, _STT_NOTYPE):
                continue
            size = self.spec.maps[sname].value_size
            if sym.value + sym.size > size:
                raise self.err(f"variable {sym.value:#x}+{sym.size:#x} extends past the section end "
                               f"{size:#x}", section=sname, symbol=sym.name, offset=sym.value)
            if sym.name in self.spec.variables:
                raise self.err("duplicate global variable name", section=sname, symbol=sym.name)
            self.spec.variables[sym.name] = GlobalVar(sym.name, sname, sym.value, sym.size)

    # -- relocations ---------------------------------------------------------------

    def _read_struct_ops(self) -> None:
        """``.struct_ops``/``.struct_ops.link``: one STRUCT_OPS map per variable.

        The variable's BTF type names the kernel struct it implements; each
        relocation in the section points a function-pointer member at a
        ``struct_ops`` program.  The kernel layout is matched at load.
        """
        for sec in self.sections:
            if sec.name not in _STRUCT_OPS_SECTIONS:
                continue
            btf = self.spec.btf
            ds = btf._datasec(sec.name) if btf is not None else None
            if ds is None:
                raise self.err("struct_ops section without BTF (compile with -g)", section=sec.name,
                               cls=BtfError)
            relocs = [(off, sym) for s2, off, sym in self.st_ops_relocs if s2.index == sec.index]
            for vsi in ds.vars:
                var = btf.get(vsi.type)
                if var is None or var.kind != Kind.VAR:
                    raise self.err(f"DATASEC member [{vsi.type}] is not a variable", section=sec.name,
                                   cls=BtfError)
                st = btf.resolve(var.type)
                if st.kind != Kind.STRUCT or not st.name:
                    raise self.err(f"struct_ops variable {var.name!r} is not a named struct",
                                   section=sec.name, symbol=var.name, cls=BtfError)
                if vsi.offset + vsi.size > len(sec.data) or vsi.size != st.size:
                    raise self.err(f"struct_ops variable {var.name!r} ({vsi.offset}+{vsi.size}) does "
                                   f"not fit the section or its type ({st.size} bytes)",
                                   section=sec.name, symbol=var.name)
                progs = {}
                for off, sym in relocs:
                    if not vsi.offset <= off < vsi.offset + vsi.size:
                        continue
                    member = next((m for m in st.members if m.offset == (off - vsi.offset) * 8), None)
                    if member is None or btf.resolve(member.type).kind != Kind.PTR:
                        raise self.err(f"struct_ops {var.name!r}: relocation at +{off - vsi.offset} is "
                                       "not a function-pointer member", section=sec.name, symbol=sym.name)
                    progs[member.name] = self._struct_ops_program(sec, off, sym, var.name)
                if var.name in self.spec.maps:
                    raise self.err(f"struct_ops {var.name!r}: a map of that name exists already",
                                   section=sec.name)
                link = _STRUCT_OPS_SECTIONS[sec.name]
                self.spec.maps[var.name] = MapSpec(
                    name=var.name, type=MapType.STRUCT_OPS, key_size=4, value_size=0, max_entries=1,
                    flags=int(MapFlags.LINK) if link else 0, form="struct_ops", section=sec.name,
                    struct_ops=StructOpsSpec(st.name, st.id, bytes(sec.data[vsi.offset:vsi.offset + vsi.size]),
                                             progs, link))

    def _struct_ops_program(self, sec: ElfSection, off: int, sym: _Symbol, var: str) -> str:
        """The program a struct_ops relocation at *off* points at (a function or section symbol)."""
        if sym.type == _STT_FUNC:
            name = sym.name
        elif sym.type == _STT_SECTION:   # a static function: the addend is its offset
            (addend,) = _U64.unpack_from(sec.data, off)
            found = self.function_at(sym.shndx, addend)
            if found is None:
                raise self.err(f"struct_ops {var!r}: relocation points at no function",
                               section=sec.name, symbol=sym.name, offset=off)
            name = found[1].name
        else:
            raise self.err(f"struct_ops {var!r}: relocation against {sym.name!r}, not a function",
                           section=sec.name, symbol=sym.name, offset=off)
        ps = self.spec.programs.get(name)
        if ps is None or ps.type != ProgType.STRUCT_OPS:
            raise self.err(f"struct_ops {var!r}: {name!r} is not a program in a struct_ops section",
                           section=sec.name, symbol=name, offset=off)
        return name

    def _read_relocations(self) -> None:
        btf_maps_sec = self.section_by_name(_BTF_MAPS_SEC)
        for rs in self.sections:
            if rs.type not in ("SHT_REL", "SHT_RELA"):
                continue
            target = self.section(rs.info)
            if target is None:
                raise self.err(f"relocation section applies to section #{rs.info}, which does not exist",
                               section=rs.name)
            is_code = target.executable
            is_maps = btf_maps_sec is not None and target.index == btf_maps_sec.index
            is_st_ops = target.name in _STRUCT_OPS_SECTIONS
            if not (is_code or is_maps or is_st_ops):
                continue  # .BTF, .BTF.ext, DWARF: nothing for the loader
            if rs.type == "SHT_RELA":
                raise self.err("RELA relocations are not used by BPF objects", section=rs.name)
            if rs.link != self.symtab_index:
                raise self.err(f"relocation section links to section #{rs.link}, not the symbol table",
                               section=rs.name)
            if rs.size % _REL.size:
                raise self.err(f"relocation section size {rs.size} is not a multiple of {_REL.size}",
                               section=rs.name)
            if is_code:
                self._code_relocs(rs, target)
                continue
            for i, (r_offset, r_info) in enumerate(_REL.iter_unpack(rs.data)):
                sym = self._reloc_symbol(target, i, r_offset, r_info)
                if is_st_ops:
                    self.st_ops_relocs.append((target, r_offset, sym))
                else:
                    self._maps_reloc(target, r_offset, sym)
        for shndx in self.resort:
            self.unsorted.update((id(fn), fn) for _, fn in self.func_list.get(shndx, ()))
        for fn in self.unsorted.values():
            if len(fn.relocs) > 1:
                fn.relocs.sort(key=_BY_INSN)

    def _reloc_symbol(self, target: ElfSection, i: int, r_offset: int, r_info: int) -> _Symbol:
        """The symbol of relocation entry #*i* against *target*, its offset checked."""
        sym_idx = r_info >> 32
        if sym_idx == 0 or sym_idx >= len(self.symbols):
            raise self.err(f"relocation #{i} has bad symbol index {sym_idx}",
                           section=target.name, offset=r_offset)
        sym = self.symbols[sym_idx]
        if r_offset % _INSN_SIZE or r_offset >= target.size:
            raise self.err(f"relocation #{i} offset is outside the section (size "
                           f"{target.size:#x}) or not 8-byte aligned",
                           section=target.name, symbol=sym.name, offset=r_offset)
        return sym

    def _code_relocs(self, rs: ElfSection, sec: ElfSection) -> None:
        """The REL entries *rs* holds for executable section *sec*.

        Map ``ld_imm64`` entries and calls into other sections -- nearly all the
        entries of an object, thousands in a large one -- are done by the compiled
        :func:`bpfload._core.elf.code_relocs`, which hands every other entry (and every
        entry that is wrong) to :meth:`_code_reloc`, in file order; without the
        extension :meth:`_code_reloc` does them all.
        """
        starts = self.func_starts.get(sec.index) or []
        funcs = self.func_list.get(sec.index) or []
        seen = self.reloc_offsets.get(sec.index)
        if seen is None:
            seen = self.reloc_offsets[sec.index] = set()

        def slow(i: int, r_offset: int, r_info: int) -> None:
            self.resort.add(sec.index)
            self._code_reloc(sec, i, r_offset, r_info, starts, funcs, seen)

        table = self.func_tables.get(sec.index)
        if _celf is not None and table is not None and sec.index not in self.reloc_done:
            data_secs = {i: (n, self.sections[i].size) for i, n in self.data_sections.items()}
            self.unsorted.update((id(fn), fn) for fn in _celf.code_relocs(
                rs.data, sec.data, self.symbols, table, self.func_tables, seen, self.map_at,
                data_secs, Reloc, _KINDS, self.reloc_memo, slow))
            self.reloc_done.add(sec.index)
            return
        for i, (r_offset, r_info) in enumerate(_REL.iter_unpack(rs.data)):
            slow(i, r_offset, r_info)

    def _code_reloc(self, sec: ElfSection, i: int, r_offset: int, r_info: int, starts: List[int],
                    funcs: List[Tuple[_Symbol, FunctionSpec]], seen: set) -> None:
        """REL entry #*i* of executable section *sec*: checked, then a relocation of its function.

        The reference :func:`bpfload._core.elf.code_relocs` is checked against (the
        compiled code does the common entries the same way and passes the rest here).
        """
        symbols = self.symbols
        sym_idx = r_info >> 32
        if sym_idx == 0 or sym_idx >= len(symbols) or r_offset % _INSN_SIZE or r_offset >= sec.size:
            self._reloc_symbol(sec, i, r_offset, r_info)   # raises, saying which
        sym = symbols[sym_idx]
        j = bisect.bisect_right(starts, r_offset) - 1
        if j < 0 or r_offset >= funcs[j][0].value + funcs[j][0].size:
            # Code no function symbol owns: the linker left an overridden __weak body
            # behind without its symbol.  It is never loaded (functions are cut out by
            # their symbols), so its relocations are dropped, as libbpf and cilium do.
            if starts:
                return
            raise self.err("relocation outside any function", section=sec.name, symbol=sym.name,
                           offset=r_offset)
        fsym, fn = funcs[j]
        if r_offset in seen:
            raise self.err("two relocations for one instruction", section=sec.name,
                           symbol=sym.name, offset=r_offset)
        seen.add(r_offset)
        insn_idx = (r_offset - fsym.value) // _INSN_SIZE
        data = sec.data
        code = data[r_offset]
        if code == _LD_IMM64:
            if r_offset + 2 * _INSN_SIZE > fsym.value + fsym.size:
                raise self._reloc_err(sec, sym, r_offset, f"ld_imm64 at the end of {fn.name!r} is "
                                      "missing its second half")
            shndx = sym.shndx
            if 0 < shndx < _SHN_LORESERVE:
                off = sym.value
                if sym.type == _STT_SECTION:
                    off += _I32.unpack_from(data, r_offset + 4)[0]
                mname = self.map_at.get((shndx, off))
                if mname is not None:
                    fn.relocs.append(Reloc(insn_idx, RelocKind.MAP, mname))
                    return
        elif code != _CALL:
            raise self._reloc_err(sec, sym, r_offset, f"relocation against instruction {insn_idx} "
                                  f"of {fn.name!r} (opcode {code:#04x}), which is neither ld_imm64 "
                                  "nor call")
        elif data[r_offset + 1] >> 4 == _PSEUDO_CALL and 0 < sym.shndx < min(len(self.sections),
                                                                             _SHN_LORESERVE) \
                and not sym.value % _INSN_SIZE and self.sections[sym.shndx].executable:
            # a bpf-to-bpf call into another section: the callee by its start
            cidx = sym.shndx
            target_byte = (sym.value // _INSN_SIZE + _I32.unpack_from(data, r_offset + 4)[0] + 1) \
                * _INSN_SIZE
            callee = self.function_at(cidx, target_byte)
            if callee is not None:
                csym, cfn = callee
                fn.relocs.append(Reloc(insn_idx, RelocKind.CALL, cfn.name,
                                       (target_byte - csym.value) // _INSN_SIZE))
                return
        self._code_reloc_other(sec, r_offset, sym, fsym, fn, insn_idx, code == _CALL)

    def _reloc_err(self, sec: ElfSection, sym: _Symbol, r_offset: int, msg: str) -> ElfError:
        return self.err(msg, section=sec.name, symbol=sym.name, offset=r_offset)

    def _code_reloc_other(self, sec: ElfSection, r_offset: int, sym: _Symbol, fsym: _Symbol,
                          fn: FunctionSpec, insn_idx: int, is_call: bool) -> None:
        """A relocated call, function address, extern or data address (maps: _code_reloc)."""
        data = sec.data
        src_reg = data[r_offset + 1] >> 4
        (imm,) = _I32.unpack_from(data, r_offset + 4)

        def fail(msg: str) -> ElfError:
            return self._reloc_err(sec, sym, r_offset, msg)

        if sym.shndx == _SHN_UNDEF:
            if not sym.name:
                raise fail("relocation against an undefined symbol without a name")
            fn.relocs.append(Reloc(insn_idx, RelocKind.EXTERN, sym.name))
            return
        if sym.shndx >= _SHN_LORESERVE:
            raise fail(f"relocation against special section {sym.shndx:#x} "
                       f"(an uninitialized global compiled with -fcommon?)")
        tsec = self.section(sym.shndx)
        if tsec is None:
            raise fail(f"symbol is in section #{sym.shndx}, which does not exist")
        if is_call:
            if src_reg != _PSEUDO_CALL:
                raise fail(f"relocation against call instruction {insn_idx} of {fn.name!r} that is "
                           f"not a bpf-to-bpf call (src_reg {src_reg})")
            if not tsec.executable:
                raise fail(f"call relocation against non-executable section {tsec.name!r}")
            if sym.value % _INSN_SIZE:
                raise fail("call relocation against a symbol that is not instruction aligned")
            target_byte = (sym.value // _INSN_SIZE + imm + 1) * _INSN_SIZE
            callee = self.function_at(tsec.index, target_byte)
            if callee is None:
                raise fail(f"call target {target_byte:#x} in {tsec.name!r} is in no function")
            csym, cfn = callee
            fn.relocs.append(Reloc(insn_idx, RelocKind.CALL, cfn.name,
                                   (target_byte - csym.value) // _INSN_SIZE))
            return
        # ld_imm64
        if tsec.executable:
            target_byte = sym.value + imm
            if target_byte % _INSN_SIZE:
                raise fail("function address relocation is not instruction aligned")
            callee = self.function_at(tsec.index, target_byte)
            if callee is None:
                raise fail(f"function address {target_byte:#x} in {tsec.name!r} is in no function")
            csym, cfn = callee
            fn.relocs.append(Reloc(insn_idx, RelocKind.FUNC_ADDR, cfn.name,
                                   (target_byte - csym.value) // _INSN_SIZE))
            return
        if tsec.name in (_MAPS_SEC, _BTF_MAPS_SEC):
            off = sym.value + (imm if sym.type == _STT_SECTION else 0)
            # (a map found here was taken by _code_reloc's fast path)
            raise fail(f"map relocation against offset {off:#x} of {tsec.name!r}, where no map is "
                       f"defined")
        dname = self.data_sections.get(tsec.index)
        if dname is not None:
            addend = sym.value + imm
            if addend < 0 or addend > tsec.size:
                raise fail(f"data relocation offset {addend} outside {dname!r} ({tsec.size} bytes)")
            fn.relocs.append(Reloc(insn_idx, RelocKind.DATA, dname, addend))
            return
        raise fail(f"relocation against section {tsec.name!r}, which is neither code, maps nor "
                   f"global data")

    def _maps_reloc(self, sec: ElfSection, r_offset: int, sym: _Symbol) -> None:
        """``.rel.maps``: a static initializer of a map-in-map or program array ``values``."""

        def fail(msg: str) -> ElfError:
            return self.err(msg, section=sec.name, symbol=sym.name, offset=r_offset)

        owner = None
        for bm in self.btf_maps:
            if bm.offset <= r_offset < bm.offset + bm.size:
                owner = bm
                break
        if owner is None:
            raise fail("relocation in .maps outside any map definition")
        if owner.values_offset is None:
            raise fail(f"relocation in map {owner.name!r}, which has no 'values' member")
        moff = r_offset - owner.offset - owner.values_offset
        if moff < 0 or moff % 8:
            raise fail(f"relocation in map {owner.name!r} outside its 'values' slots")
        slot = moff // 8
        outer = self.spec.maps[owner.name]
        if owner.values_is_prog:
            tsec = self.section(sym.shndx) if 0 < sym.shndx < _SHN_LORESERVE else None
            if tsec is None or not tsec.executable:
                raise fail(f"program array {owner.name!r} slot {slot}: symbol is not a program")
            target = self.function_at(tsec.index, sym.value)
            if target is None or target[0].value != sym.value or not isinstance(target[1], ProgramSpec):
                raise fail(f"program array {owner.name!r} slot {slot}: symbol is not an entry-point "
                           f"program")
            name = target[1].name
        else:
            if sym.shndx != sec.index:
                raise fail(f"map-in-map {owner.name!r} slot {slot}: symbol is not a BTF-defined map")
            found = self.map_at.get((sec.index, sym.value))
            if found is None:
                raise fail(f"map-in-map {owner.name!r} slot {slot}: no map at offset {sym.value:#x}")
            name = found
        if slot in outer.slots:
            raise fail(f"map {owner.name!r} slot {slot} initialized twice")
        outer.slots[slot] = name

    def _synthesize_calls(self) -> None:
        """CALL relocations for calls clang resolved itself (callee in the same section).

        The call sites of each function come from :func:`_call_sites` (compiled, or its
        Python twin); a call that already has a relocation is left alone.
        """
        for shndx, funcs in self.func_list.items():
            relocated = self.reloc_offsets.get(shndx)
            for fsym, fn in funcs:
                if _celf is not None:
                    # calls with a relocation entry are those at an offset code_relocs saw
                    sites = _celf.call_sites(fn.insns, fsym.value, relocated)
                else:
                    have = {r.insn for r in fn.relocs}
                    sites = [(i, imm) for i, imm in _call_sites(fn.insns) if i not in have]
                added = False
                for i, imm in sites:
                    target_byte = fsym.value + (i + imm + 1) * _INSN_SIZE
                    callee = self.function_at(shndx, target_byte)
                    if callee is None:
                        raise self.err(f"call at instruction {i} of {fn.name!r} jumps to "
                                       f"{target_byte:#x}, which is in no function",
                                       section=fn.section, symbol=fn.name,
                                       offset=fsym.value + i * _INSN_SIZE)
                    csym, cfn = callee
                    fn.relocs.append(Reloc(i, RelocKind.CALL, cfn.name,
                                           (target_byte - csym.value) // _INSN_SIZE))
                    added = True
                if added:
                    fn.relocs.sort(key=_BY_INSN)

    def _resolve_custom_relations(self) -> None:
        """bpfm_map_custom: outer -> inner template, inner -> slot of its outer (see bpfm.h)."""
        if self.iproute2:
            _iproute2.link_maps(self.spec.maps.values())
            return
        custom = [m for m in self.spec.maps.values() if m.form == "custom"]
        by_id: Dict[int, MapSpec] = {}
        for m in custom:
            if m.map_id < 0:
                continue
            if m.map_id in by_id:
                raise self.err(f"map_id {m.map_id} used by both {by_id[m.map_id].name!r} and {m.name!r}",
                               section=m.section, symbol=m.name)
            by_id[m.map_id] = m
        for m in custom:
            if m.is_outer or m.relation_id < 0 or m.inner_index < 0:
                continue
            outer = by_id.get(m.relation_id)
            if outer is None or not outer.is_outer:
                raise self.err(f"inner map's relation_id {m.relation_id} names no map-in-map outer map",
                               section=m.section, symbol=m.name)
            if m.inner_index in outer.slots:
                raise self.err(f"slot {m.inner_index} of {outer.name!r} claimed by both "
                               f"{outer.slots[m.inner_index]!r} and {m.name!r}",
                               section=m.section, symbol=m.name)
            outer.slots[m.inner_index] = m.name
        for m in custom:
            if not m.is_outer:
                continue
            template = by_id.get(m.relation_id) if m.relation_id >= 0 else None
            if template is None or template.is_outer:
                raise self.err(f"failed to find map-in-map {m.name} inner template map "
                               f"(relation_id {m.relation_id})", section=m.section, symbol=m.name)
            inner = copy.deepcopy(template)
            inner.slots = {}
            m.inner = inner
