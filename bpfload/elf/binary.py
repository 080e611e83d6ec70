"""ELF executables and shared objects as uprobes and USDT read them.

:class:`ElfBinary` reads the headers, the loadable segments, the sections
(by name too), the function symbols with their versions, and translates a
virtual address to a file offset; :mod:`.symbols` (uprobe targets) and
:mod:`.notes` (USDT probes) are built on it.  (BPF objects themselves are
read by :mod:`.file`.)
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Dict, List, Optional, Tuple

from ..errors import ElfError

__all__ = ["ElfBinary"]

_PT_LOAD = 1
_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_SHT_GNU_VERDEF, _SHT_GNU_VERSYM = 0x6ffffffd, 0x6fffffff
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_SHN_UNDEF, _SHN_LORESERVE = 0, 0xFF00
_ET_EXEC, _ET_DYN = 2, 3
_VERSYM_HIDDEN = 0x8000
#: more symbols than any real binary has: a count beyond is a malformed header
_MAX_SYMBOLS = 1 << 24
_MAX_SHNUM = 1 << 16
_MAX_PHNUM = 1 << 16
_MAX_STRTAB = 64 << 20
_SHT_NOBITS = 8



class ElfBinary:
    """An ELF executable or shared object, read with bounds checks: what uprobes and USDT need.

    Reads the file through *f* as it is asked (headers at once, program and
    section headers, symbols and sections on demand).  Every read is checked
    against the file's size; anything malformed raises :class:`ElfError`
    naming *path*.
    """

    def __init__(self, f: BinaryIO, path: str):
        self.f = f
        self.path = path
        self.size = os.fstat(f.fileno()).st_size
        ident = self.read(0, 16, "ELF identification")
        if ident[:4] != b"\x7fELF":
            raise ElfError("not an ELF file", object=path)
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ElfError(f"unknown ELF class {ident[4]} or data encoding {ident[5]}", object=path)
        self.is64 = ident[4] == 2
        e = "<" if ident[5] == 1 else ">"
        if self.is64:
            ehdr = struct.Struct(e + "HHIQQQIHHHHHH")
            self.phdr = struct.Struct(e + "IIQQQQQQ")
            self.shdr = struct.Struct(e + "IIQQQQIIQQ")
            self.sym = struct.Struct(e + "IBBHQQ")
        else:
            ehdr = struct.Struct(e + "HHIIIIIHHHHHH")
            self.phdr = struct.Struct(e + "IIIIIIII")
            self.shdr = struct.Struct(e + "IIIIIIIIII")
            self.sym = struct.Struct(e + "IIIBBH")
        self.e = e
        (self.type, _, _, _, self.phoff, self.shoff, _, _, phentsize, self.phnum, shentsize,
         self.shnum, self.shstrndx) = ehdr.unpack(self.read(16, ehdr.size, "ELF header"))
        if self.type not in (_ET_EXEC, _ET_DYN):
            raise ElfError(f"not an executable or shared object (e_type {self.type})", object=path)
        if self.phnum and phentsize < self.phdr.size:
            raise ElfError(f"program header entries of {phentsize} bytes", object=path)
        if self.shnum and shentsize < self.shdr.size:
            raise ElfError(f"section header entries of {shentsize} bytes", object=path)
        self.phentsize, self.shentsize = phentsize, shentsize
        self._sections: Optional[List[Tuple[int, ...]]] = None

    def read(self, off: int, size: int, what: str) -> bytes:
        if off < 0 or size < 0 or off + size > self.size:
            raise ElfError(f"{what} ({size} bytes at {off:#x}) lies outside the file "
                           f"({self.size} bytes): truncated or malformed", object=self.path,
                           offset=off)
        self.f.seek(off)
        data = self.f.read(size)
        if len(data) != size:
            raise ElfError(f"short read of {what}", object=self.path, offset=off)
        return data

    def load_segments(self) -> List[Tuple[int, int, int, int, int]]:
        """PT_LOAD headers as (p_offset, p_vaddr, p_filesz, p_memsz, p_flags)."""
        if self.phnum > _MAX_PHNUM:
            raise ElfError(f"{self.phnum} program headers", object=self.path)
        raw = self.read(self.phoff, self.phnum * self.phentsize, "program headers")
        out = []
        for i in range(self.phnum):
            fields = self.phdr.unpack_from(raw, i * self.phentsize)
            if self.is64:
                p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz, _ = fields
            else:
                p_type, p_offset, p_vaddr, _, p_filesz, p_memsz, p_flags, _ = fields
            if p_type == _PT_LOAD:
                out.append((p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
        return out

    def segments(self) -> List[Tuple[int, int, int, int]]:
        """PT_LOAD headers as (p_offset, p_vaddr, p_filesz, p_memsz)."""
        return [seg[:4] for seg in self.load_segments()]

    def section_headers(self) -> List[Tuple[int, ...]]:
        """(sh_name, sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_addralign, sh_entsize) per section."""
        if self._sections is None:
            shnum = self.shnum
            if self.shoff and shnum == 0:        # more than SHN_LORESERVE: count in section 0
                first = self.shdr.unpack(self.read(self.shoff, self.shdr.size, "section header 0"))
                shnum = first[5]
            if shnum > _MAX_SHNUM:
                raise ElfError(f"{shnum} sections", object=self.path)
            raw = self.read(self.shoff, shnum * self.shentsize, "section headers") if shnum else b""
            out = []
            for i in range(shnum):
                name, typ, _, addr, off, size, link, _, align, entsize = self.shdr.unpack_from(
                    raw, i * self.shentsize)
                out.append((name, typ, addr, off, size, link, align, entsize))
            self._sections = out
        return self._sections

    def sections(self) -> List[Tuple[int, ...]]:
        """(sh_type, sh_offset, sh_size, sh_link, sh_entsize) per section."""
        return [(typ, off, size, link, entsize)
                for _, typ, _, off, size, link, _, entsize in self.section_headers()]

    def section_names(self) -> Dict[str, int]:
        """Section name -> index (the first of each name; unreadable names left out)."""
        secs = self.section_headers()
        if not secs:
            return {}
        shstrndx = self.shstrndx
        if shstrndx == 0xffff:                   # SHN_XINDEX: the index is in section 0's sh_link
            shstrndx = secs[0][5]
        if not 0 < shstrndx < len(secs):
            raise ElfError(f"section name table index {shstrndx} out of range", object=self.path)
        _, styp, _, soff, ssize, _, _, _ = secs[shstrndx]
        if styp == _SHT_NOBITS or ssize > _MAX_STRTAB:
            raise ElfError("malformed section name table", object=self.path)
        names = self.read(soff, ssize, "section name table")
        out: Dict[str, int] = {}
        for i, sec in enumerate(secs):
            end = names.find(b"\0", sec[0]) if 0 <= sec[0] < len(names) else -1
            if end >= 0:                         # a name we cannot read is not one we look for
                out.setdefault(names[sec[0]:end].decode("utf-8", "replace"), i)
        return out

    def section_data(self, index: int, what: str) -> bytes:
        secs = self.sections()
        if not 0 <= index < len(secs):
            raise ElfError(f"{what}: section index {index} out of range", object=self.path)
        _, off, size, _, _ = secs[index]
        return self.read(off, size, what)

    def symbols(self, sh_type: int) -> List[Tuple[str, int, int, int, int, Optional[str], bool]]:
        """Defined function symbols of the first section of *sh_type*:
        (name, value, size, info, shndx, version, default)."""
        secs = self.sections()
        idx = next((i for i, s in enumerate(secs) if s[0] == sh_type), None)
        table = ".symtab" if sh_type == _SHT_SYMTAB else ".dynsym"
        if idx is None:
            return []
        typ, off, size, link, entsize = secs[idx]
        if entsize < self.sym.size:
            raise ElfError(f"symbol entries of {entsize} bytes", object=self.path, section=table)
        count = size // entsize
        if count > _MAX_SYMBOLS:
            raise ElfError(f"{count} symbols", object=self.path, section=table)
        raw = self.read(off, count * entsize, table)
        strtab = self.section_data(link, f"{table} string table")
        versions = self._versions(idx, count) if sh_type == _SHT_DYNSYM else None
        out = []
        for i in range(1, count):
            fields = self.sym.unpack_from(raw, i * entsize)
            if self.is64:
                st_name, st_info, _, shndx, value, sz = fields
            else:
                st_name, value, sz, st_info, _, shndx = fields
            if (st_info & 0xf) not in (_STT_FUNC, _STT_GNU_IFUNC) or shndx == _SHN_UNDEF:
                continue
            name = _cstr(strtab, st_name, self.path, table)
            version, default = None, True
            if versions is not None:
                version, default = versions[i]
            if "@" in name:                      # .symtab spelling: name@VER / name@@VER
                base, _, ver = name.partition("@")
                default = ver.startswith("@")
                name, version = base, ver.lstrip("@") or None
            out.append((name, value, sz, st_info, shndx, version, default))
        return out

    def _versions(self, dynsym: int, count: int) -> Optional[List[Tuple[Optional[str], bool]]]:
        """Per .dynsym index: (version name or None, is the default version)."""
        secs = self.sections()
        vs = next((s for s in secs if s[0] == _SHT_GNU_VERSYM), None)
        vd_i = next((i for i, s in enumerate(secs) if s[0] == _SHT_GNU_VERDEF), None)
        if vs is None:
            return None
        raw = self.read(vs[1], min(vs[2], count * 2), ".gnu.version")
        ids = struct.unpack(f"{self.e}{len(raw) // 2}H", raw[:len(raw) // 2 * 2])
        names: Dict[int, str] = {}
        if vd_i is not None:
            vd = self.section_data(vd_i, ".gnu.version_d")
            strtab = self.section_data(secs[vd_i][3], ".gnu.version_d strings")
            pos, seen = 0, 0
            while seen < 1 << 16:                # vd_next chain, bounded
                if pos + 20 > len(vd):
                    raise ElfError("truncated version definition", object=self.path,
                                   section=".gnu.version_d", offset=pos)
                _, _, ndx, cnt, _, aux, nxt = struct.unpack_from(self.e + "HHHHIII", vd, pos)
                if cnt and pos + aux + 8 <= len(vd):
                    vda_name = struct.unpack_from(self.e + "I", vd, pos + aux)[0]
                    names[ndx & 0x7fff] = _cstr(strtab, vda_name, self.path, ".gnu.version_d")
                if not nxt:
                    break
                pos += nxt
                seen += 1
        out: List[Tuple[Optional[str], bool]] = []
        for i in range(count):
            v = ids[i] if i < len(ids) else 1
            out.append((names.get(v & 0x7fff) if (v & 0x7fff) > 1 else None,
                        not v & _VERSYM_HIDDEN))
        return out

    def file_offset(self, addr: int, what: str) -> int:
        for p_offset, p_vaddr, p_filesz, _ in self.segments():
            if p_vaddr <= addr < p_vaddr + p_filesz:
                return addr - p_vaddr + p_offset
        raise ElfError(f"address {addr:#x} of {what} is in no loadable segment", object=self.path,
                       symbol=what)


def _cstr(strtab: bytes, off: int, path: str, table: str) -> str:
    end = strtab.find(b"\0", off) if 0 <= off < len(strtab) else -1
    if end < 0:
        raise ElfError(f"symbol name index {off} outside the string table", object=path,
                       section=table)
    return strtab[off:end].decode("utf-8", "replace")
