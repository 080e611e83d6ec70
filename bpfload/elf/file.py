"""A bounds-checked ELF64 little-endian reader: the header and the section table.

This is bpfload's own reader for BPF objects (``ET_REL``, ``EM_BPF``): the
file is read once into ``bytes``; the ELF header and the section header
table are decoded with :mod:`struct`, and every offset, size, count and index
taken from the file is checked against the file before it is used.  A
section's bytes are sliced on first use (DWARF sections nobody asks for are
never copied).  Anything malformed raises :class:`~bpfload.errors.ElfError`
saying what is wrong (the caller, :mod:`.reader`, adds the object's name).

It replaced pyelftools on the load path: pyelftools builds a ``construct``
parser per header and section, which was most of the time of loading a
small object, and importing it took about 0.1 s.  Symbols and relocations
are fixed-size records the reader decodes itself (:mod:`.reader`).

No syscalls; needs no privileges; no kernel version.
"""
from __future__ import annotations

import struct

from ..errors import ElfError

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List, Optional

__all__ = ["ElfFile", "ElfSection", "SHT_NAMES"]

try:    # the section table in compiled code; ElfSection and the loop below are its twin
    from .._core import elf as _celf
except ImportError:  # pragma: no cover - a build without the extension
    _celf = None  # type: ignore[assignment]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")       # Elf64_Ehdr
_SHDR = struct.Struct("<IIQQQQIIQQ")              # Elf64_Shdr
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_EM_BPF = 247
_ET_REL = 1
_SHN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_SHN_XINDEX = 0xFFFF
_SHT_NULL = 0
_SHT_NOBITS = 8
_SHT_STRTAB = 3
_SHT_PROGBITS = 1
_SHF_EXECINSTR = 0x4

#: sh_type value -> name (the names :class:`ElfSection.type` uses); other values
#: are named ``SHT_<hex>``.
SHT_NAMES: Dict[int, str] = {
    0: "SHT_NULL", 1: "SHT_PROGBITS", 2: "SHT_SYMTAB", 3: "SHT_STRTAB", 4: "SHT_RELA",
    5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE", 8: "SHT_NOBITS", 9: "SHT_REL",
    10: "SHT_SHLIB", 11: "SHT_DYNSYM", 14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY",
    16: "SHT_PREINIT_ARRAY", 17: "SHT_GROUP", 18: "SHT_SYMTAB_SHNDX",
    0x6FFF4C03: "SHT_LLVM_ADDRSIG",
}
_E_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

#: sections in one object at most (the extended numbering could claim 2**64)
MAX_SECTIONS = 0xFFFF


class ElfSection:
    """One section header, decoded; :attr:`data` is the section's bytes (empty for NOBITS/NULL).

    ``type`` is the sh_type name (``"SHT_PROGBITS"``, ...), ``type_id`` its value.
    The offset and size were checked against the file when the header was read,
    except for NOBITS sections, which occupy no bytes of the file.
    """

    __slots__ = ("index", "name", "type", "type_id", "flags", "offset", "size", "link", "info",
                 "entsize", "nobits", "_file", "_data")

    def __init__(self, file: bytes, index: int, name: str, type_id: int, flags: int, offset: int,
                 size: int, link: int, info: int, entsize: int):
        self.index = index
        self.name = name
        self.type_id = type_id
        self.type = SHT_NAMES.get(type_id) or f"SHT_{type_id:#x}"
        self.flags = flags
        self.offset = offset
        self.size = size
        self.link = link
        self.info = info
        self.entsize = entsize
        self.nobits = type_id == _SHT_NOBITS
        self._file = file
        self._data: Optional[bytes] = b"" if self.nobits or type_id == _SHT_NULL else None

    @property
    def data(self) -> bytes:
        """The section's bytes, sliced from the file once (never past its end: checked at read)."""
        d = self._data
        if d is None:
            d = self._data = self._file[self.offset:self.offset + self.size]
        return d

    @property
    def executable(self) -> bool:
        """PROGBITS with SHF_EXECINSTR: BPF instructions."""
        return self.type_id == _SHT_PROGBITS and bool(self.flags & _SHF_EXECINSTR)

    def __repr__(self) -> str:
        return f"ElfSection(#{self.index} {self.name!r} {self.type} size={self.size:#x})"


class ElfFile:
    """The ELF header and section table of a 64-bit little-endian BPF relocatable object.

    ``ElfFile(data)`` checks the identification (magic, ELFCLASS64,
    ELFDATA2LSB), ``e_machine == EM_BPF``, ``e_type == ET_REL``, the section
    header table's place and entry size, the section count (extended
    numbering through section 0 understood, at most 65535 sections), the
    section-name string table index, every section name offset and every
    non-NOBITS section's ``offset + size`` against the file.  Raises
    :class:`ElfError` (without an object name: the caller adds it) for
    anything else.  No syscalls.
    """

    __slots__ = ("data", "sections", "_by_name")

    def __init__(self, data: bytes):
        self.data = data
        n = len(data)
        if n < 4 or data[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        if n < _EHDR.size:
            raise ElfError(f"malformed ELF: the file ({n} bytes) is shorter than an ELF64 header")
        (ident, e_type, e_machine, _version, _entry, _phoff, shoff, _flags, _ehsize, _phentsize,
         _phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data, 0)
        if ident[4] != _ELFCLASS64:
            raise ElfError(f"ELF class {32 if ident[4] == 1 else ident[4]}: BPF objects are 64-bit")
        if ident[5] != _ELFDATA2LSB:
            raise ElfError("big-endian ELF: only little-endian BPF objects are supported"
                           if ident[5] == 2 else f"malformed ELF: data encoding {ident[5]}")
        if e_machine != _EM_BPF:
            raise ElfError(f"not a BPF object (e_machine {e_machine}, EM_BPF is {_EM_BPF})")
        if e_type != _ET_REL:
            raise ElfError(f"not a relocatable object (e_type {_E_TYPES.get(e_type, e_type)})")
        if shoff == 0:
            raise ElfError("malformed ELF: no section header table (e_shoff 0)")
        if shentsize != _SHDR.size:
            raise ElfError(f"malformed ELF: section header entry size {shentsize}, not {_SHDR.size}")
        if shoff > n or n - shoff < _SHDR.size:
            raise ElfError(f"malformed ELF: section header table at {shoff:#x} is past the end of "
                           f"the file ({n:#x} bytes)")
        # Extended numbering: section 0 holds the real count (sh_size) and shstrndx (sh_link).
        if shnum == 0 or shstrndx == _SHN_XINDEX:
            _, _, _, _, _, size0, link0, _, _, _ = _SHDR.unpack_from(data, shoff)
            if shnum == 0:
                shnum = size0
            if shstrndx == _SHN_XINDEX:
                shstrndx = link0
        if shnum > MAX_SECTIONS:
            raise ElfError(f"too many sections ({shnum})")
        if shnum * _SHDR.size > n - shoff:
            raise ElfError(f"malformed ELF: {shnum} section headers at {shoff:#x} extend past the "
                           f"end of the file ({n:#x} bytes)")
        if not 0 < shstrndx < shnum or _SHDR.unpack_from(data, shoff + shstrndx * _SHDR.size)[1] \
                != _SHT_STRTAB:
            raise ElfError(f"section name table index {shstrndx} is not a string table")
        _, _, _, _, str_off, str_size, _, _, _, _ = _SHDR.unpack_from(data, shoff + shstrndx * _SHDR.size)
        if str_off > n or str_size > n - str_off:
            raise ElfError(f"malformed ELF: section name table ({str_off:#x}+{str_size:#x}) extends "
                           f"past the end of the file ({n:#x} bytes)")
        self._by_name: Optional[Dict[str, ElfSection]] = None
        if _celf is not None and type(data) is bytes:
            secs, bad = _celf.read_sections(data, shoff, shnum, str_off, str_size, SHT_NAMES)
            if bad is not None:
                self._raise(bad, str_size, n)
            self.sections: List[ElfSection] = secs
            return
        headers = list(_SHDR.iter_unpack(data[shoff:shoff + shnum * _SHDR.size]))
        names = data[str_off:str_off + str_size]
        sections: List[ElfSection] = []
        for i, (sh_name, sh_type, flags, _addr, off, size, link, info, _align,
                entsize) in enumerate(headers):
            if sh_name >= len(names):
                if sh_name:
                    raise ElfError(f"malformed ELF: section #{i}: name offset {sh_name:#x} is outside "
                                   f"the section name table ({len(names)} bytes)")
                name = ""
            else:
                end = names.find(b"\0", sh_name)
                if end < 0:
                    raise ElfError(f"malformed ELF: section #{i}: name is not NUL-terminated")
                name = names[sh_name:end].decode("utf-8", "replace")
            if sh_type == _SHT_NULL:
                off = size = 0        # no data, whatever the header claims
            elif sh_type != _SHT_NOBITS and (off > n or size > n - off):
                raise ElfError(f"section #{i} ({off:#x}+{size:#x}) extends past the end of the file "
                               f"({n:#x} bytes)", section=name)
            sections.append(ElfSection(data, i, name, sh_type, flags, off, size, link, info, entsize))
        self.sections = sections

    @staticmethod
    def _raise(bad: tuple, names_size: int, n: int) -> None:
        """Raise the error the Python loop raises for a :func:`~bpfload._core.elf.read_sections` problem."""
        what, i = bad[0], bad[1]
        if what == "name_outside":
            raise ElfError(f"malformed ELF: section #{i}: name offset {bad[2]:#x} is outside "
                           f"the section name table ({names_size} bytes)")
        if what == "name_unterminated":
            raise ElfError(f"malformed ELF: section #{i}: name is not NUL-terminated")
        raise ElfError(f"section #{i} ({bad[2]:#x}+{bad[3]:#x}) extends past the end of the file "
                       f"({n:#x} bytes)", section=bad[4])

    def section(self, index: int) -> Optional[ElfSection]:
        """The section at *index*, or None when there is none (never raises)."""
        if 0 <= index < len(self.sections):
            return self.sections[index]
        return None

    def section_by_name(self, name: str) -> Optional[ElfSection]:
        """The first section named *name*, or None (never raises)."""
        by_name = self._by_name
        if by_name is None:
            by_name = {}
            for s in self.sections:
                by_name.setdefault(s.name, s)
            self._by_name = by_name
        return by_name.get(name)
