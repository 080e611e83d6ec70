"""USDT probes of a host binary: the ``.note.stapsdt`` notes ``<sys/sdt.h>`` leaves in it.

Each ``STAP_PROBE``/``DTRACE_PROBE`` site of a program or shared library is
described by one ELF note (owner ``"stapsdt"``, type 3) in the
``.note.stapsdt`` section.  Its descriptor holds three addresses (word-size
of the ELF class) and three NUL-terminated strings:

* the probe's location (``pc``), the link-time address of the ``.stapsdt.base``
  section (``base``) and the address of the probe's semaphore (0 when it has
  none);
* the provider, the probe name and the argument specification
  (``"-4@%eax 8@-8(%rbp) -4@$5"``: one ``SIZE@OPERAND`` per argument, in the
  assembler's syntax; see :mod:`bpfload.link.usdt` for what it means).

:func:`read_usdt_notes` reads them and locates every probe the way libbpf
does: when the binary has a ``.stapsdt.base`` section the location is moved
by the difference between that section's address now and the ``base`` the
note recorded (prelink may have moved the binary after the notes were
written); the address is then turned into a FILE offset (what the uprobe
PMU and uprobe_multi links want) through the executable ``PT_LOAD`` segment
that contains it, and the semaphore's address through the writable one.

The file is read with :mod:`struct` (32/64-bit, either byte order), only its
headers and the two sections; every offset, size and string is checked
against the file and the note first.  Malformed input raises
:class:`~bpfload.errors.ElfError` naming the file (and the note's offset),
never ``struct.error``/``IndexError``/``UnicodeDecodeError``.  No syscalls
besides reading the file; no privileges.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, List, NamedTuple, Optional, Tuple

from ..errors import ElfError

__all__ = ["UsdtNote", "UsdtProbe", "UsdtNotes", "Segment", "read_usdt_notes", "NOTE_SECTION",
           "BASE_SECTION"]

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
_NOTE_OWNER = b"stapsdt\0"
_NT_STAPSDT = 3
_SHT_NOTE = 7
_SHT_NOBITS = 8
_PT_LOAD = 1
_PF_X = 1
_ET_EXEC, _ET_DYN = 2, 3
#: larger than any real notes section: beyond it the header is malformed
_MAX_NOTES_SIZE = 64 << 20
_MAX_SHNUM = 1 << 16
_MAX_PHNUM = 1 << 16


class Segment(NamedTuple):
    """A ``PT_LOAD`` program header."""

    vaddr: int
    memsz: int
    offset: int
    executable: bool


class UsdtNote(NamedTuple):
    """One ``stapsdt`` note as recorded (addresses as the linker wrote them)."""

    provider: str
    name: str
    pc: int                 # the probe's address
    base: int               # the address of .stapsdt.base when the note was written
    semaphore: int          # the semaphore's address, 0 for none
    args: str               # the argument specification ("" when the probe has none)
    note_offset: int        # where the note starts in the section (for messages)


class UsdtProbe(NamedTuple):
    """A probe site located in the file: what a uprobe on it needs."""

    provider: str
    name: str
    args: str
    address: int            # pc after the .stapsdt.base adjustment
    offset: int             # file offset of the probed instruction
    semaphore: int          # semaphore address (0: none)
    semaphore_offset: int   # file offset of the semaphore (0: none)


class UsdtNotes(NamedTuple):
    """What :func:`read_usdt_notes` found in one binary."""

    path: str
    elf_type: int           # 2 ET_EXEC, 3 ET_DYN (PIE executables and shared libraries)
    is64: bool
    little_endian: bool
    segments: Tuple[Segment, ...]
    base: Optional[int]     # the address of .stapsdt.base, None without the section
    notes: Tuple[UsdtNote, ...]

    def probes(self, provider: Optional[str] = None, name: Optional[str] = None) -> List[UsdtProbe]:
        """The located probe sites of *provider*/*name* (None matches any), in note order.

        Raises :class:`ElfError` naming the file and the probe when a
        matching note's address is in no executable ``PT_LOAD`` segment, or
        its semaphore in no writable one.
        """
        out = []
        for n in self.notes:
            if (provider is not None and n.provider != provider) or \
                    (name is not None and n.name != name):
                continue
            what = f"{n.provider}:{n.name}"
            addr = n.pc
            if self.base is not None:
                addr = (addr + self.base - n.base) & ((1 << (64 if self.is64 else 32)) - 1)
            seg = self._segment(addr)
            if seg is None or not seg.executable:
                raise ElfError(f"USDT probe {what} at {addr:#x} is in no executable loadable "
                               "segment" if seg is None else
                               f"USDT probe {what} at {addr:#x} lies in a segment that is not "
                               "executable", object=self.path, section=NOTE_SECTION,
                               offset=n.note_offset)
            off = addr - seg.vaddr + seg.offset
            sema_off = 0
            if n.semaphore:
                sseg = self._segment(n.semaphore)
                if sseg is None or sseg.executable:
                    raise ElfError(f"the semaphore of USDT probe {what} at {n.semaphore:#x} is in "
                                   "no writable loadable segment", object=self.path,
                                   section=NOTE_SECTION, offset=n.note_offset)
                sema_off = n.semaphore - sseg.vaddr + sseg.offset
            out.append(UsdtProbe(n.provider, n.name, n.args, addr, off, n.semaphore, sema_off))
        return out

    def _segment(self, addr: int) -> Optional[Segment]:
        for s in self.segments:
            if s.vaddr <= addr < s.vaddr + s.memsz:
                return s
        return None


class _Reader:
    """Bounds-checked reads of one open file."""

    def __init__(self, f: BinaryIO, path: str):
        self.f = f
        self.path = path
        self.size = os.fstat(f.fileno()).st_size

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


def read_usdt_notes(path) -> UsdtNotes:
    """Read the USDT notes of the ELF executable or shared library *path*.

    Returns a :class:`UsdtNotes` (empty ``notes`` when the binary has no
    ``.note.stapsdt`` section: it defines no USDT probes).  Raises
    :class:`ElfError` naming *path*: unreadable file, not ELF, not
    ET_EXEC/ET_DYN, truncated or malformed headers, a ``.note.stapsdt`` that
    is not a note section, or a malformed ``stapsdt`` note (short
    descriptor, missing NUL, names that are not UTF-8).  Reads the file
    only; any kernel.
    """
    path = os.fsdecode(os.fspath(path))
    try:
        with open(path, "rb") as f:
            return _parse(_Reader(f, path))
    except OSError as e:
        raise ElfError(f"cannot read the binary: {e.strerror or e}", object=path) from None
    except struct.error as e:                 # defensive: every read is sized first
        raise ElfError(f"malformed ELF: {e}", object=path) from None


def _parse(r: _Reader) -> UsdtNotes:
    path = r.path
    ident = r.read(0, 16, "ELF identification")
    if ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF file", object=path)
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError(f"unknown ELF class {ident[4]} or data encoding {ident[5]}", object=path)
    is64, e = ident[4] == 2, "<" if ident[5] == 1 else ">"
    if is64:
        ehdr, phdr, shdr = (struct.Struct(e + "HHIQQQIHHHHHH"), struct.Struct(e + "IIQQQQQQ"),
                            struct.Struct(e + "IIQQQQIIQQ"))
        asz = 8
    else:
        ehdr, phdr, shdr = (struct.Struct(e + "HHIIIIIHHHHHH"), struct.Struct(e + "IIIIIIII"),
                            struct.Struct(e + "IIIIIIIIII"))
        asz = 4
    (etype, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
     shstrndx) = ehdr.unpack(r.read(16, ehdr.size, "ELF header"))
    if etype not in (_ET_EXEC, _ET_DYN):
        raise ElfError(f"not an executable or shared object (e_type {etype})", object=path)

    # program headers: the PT_LOAD segments
    segments: List[Segment] = []
    if phnum:
        if phentsize < phdr.size or phnum > _MAX_PHNUM:
            raise ElfError(f"{phnum} program headers of {phentsize} bytes", object=path)
        raw = r.read(phoff, phnum * phentsize, "program headers")
        for i in range(phnum):
            fields = phdr.unpack_from(raw, i * phentsize)
            if is64:
                p_type, p_flags, p_offset, p_vaddr, _, _, p_memsz, _ = fields
            else:
                p_type, p_offset, p_vaddr, _, _, p_memsz, p_flags, _ = fields
            if p_type == _PT_LOAD:
                segments.append(Segment(p_vaddr, p_memsz, p_offset, bool(p_flags & _PF_X)))
    segments.sort()

    # section headers and their names
    sections: List[Tuple[int, int, int, int, int, int]] = []   # name, type, addr, off, size, align
    if shoff:
        if shentsize < shdr.size:
            raise ElfError(f"section header entries of {shentsize} bytes", object=path)
        if shnum == 0:                      # SHN_LORESERVE or more sections: count in section 0
            shnum = shdr.unpack(r.read(shoff, shdr.size, "section header 0"))[5]
        if shnum > _MAX_SHNUM:
            raise ElfError(f"{shnum} sections", object=path)
        raw = r.read(shoff, shnum * shentsize, "section headers")
        for i in range(shnum):
            name, typ, _, addr, off, size, _, _, align, _ = shdr.unpack_from(raw, i * shentsize)
            sections.append((name, typ, addr, off, size, align))
    if shstrndx == 0xffff and sections:     # SHN_XINDEX: the index is in section 0's sh_link
        shstrndx = shdr.unpack(r.read(shoff, shdr.size, "section header 0"))[6]
    notes_sec = base_sec = None
    if sections:
        if not 0 < shstrndx < len(sections):
            raise ElfError(f"section name table index {shstrndx} out of range", object=path)
        _, styp, _, soff, ssize, _ = sections[shstrndx]
        if styp == _SHT_NOBITS or ssize > _MAX_NOTES_SIZE:
            raise ElfError("malformed section name table", object=path)
        names = r.read(soff, ssize, "section name table")
        for sec in sections:
            end = names.find(b"\0", sec[0]) if 0 <= sec[0] < len(names) else -1
            if end < 0:
                continue                    # a name we cannot read is not one we look for
            n = names[sec[0]:end]
            if n == NOTE_SECTION.encode() and notes_sec is None:
                notes_sec = sec
            elif n == BASE_SECTION.encode() and base_sec is None:
                base_sec = sec
    notes: List[UsdtNote] = []
    if notes_sec is not None:
        _, typ, _, off, size, align = notes_sec
        if typ != _SHT_NOTE:
            raise ElfError(f"section type {typ} is not SHT_NOTE", object=path, section=NOTE_SECTION)
        if size > _MAX_NOTES_SIZE:
            raise ElfError(f"{size} bytes of notes", object=path, section=NOTE_SECTION)
        data = r.read(off, size, NOTE_SECTION)
        notes = _notes(data, path, e, asz, 8 if align == 8 else 4)
    return UsdtNotes(path, etype, is64, e == "<", tuple(segments),
                     base_sec[2] if base_sec is not None else None, tuple(notes))


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _notes(data: bytes, path: str, e: str, asz: int, align: int) -> List[UsdtNote]:
    """The ``stapsdt`` notes of a notes section's bytes (other owners and types are skipped)."""
    out: List[UsdtNote] = []
    hdr = struct.Struct(e + "III")
    addrs = struct.Struct(e + ("QQQ" if asz == 8 else "III"))
    pos = 0
    while pos < len(data):
        start = pos

        def bad(msg: str) -> ElfError:
            return ElfError(f"malformed note: {msg}", object=path, section=NOTE_SECTION,
                            offset=start)

        if pos + hdr.size > len(data):
            raise bad(f"{len(data) - pos} bytes left, a note header needs {hdr.size}")
        namesz, descsz, ntype = hdr.unpack_from(data, pos)
        name_off = pos + hdr.size
        desc_off = name_off + _align(namesz, align)
        end = desc_off + _align(descsz, align)
        if desc_off + descsz > len(data):
            raise bad(f"owner ({namesz} bytes) and descriptor ({descsz} bytes) run past the "
                      f"section's {len(data)} bytes")
        pos = min(end, len(data))
        if ntype != _NT_STAPSDT or data[name_off:name_off + namesz] != _NOTE_OWNER:
            continue
        desc = data[desc_off:desc_off + descsz]
        if len(desc) < addrs.size + 3:
            raise bad(f"a {descsz}-byte stapsdt descriptor is shorter than its three "
                      f"addresses and three strings ({addrs.size + 3} bytes)")
        pc, base, sema = addrs.unpack_from(desc, 0)
        strings, at = [], addrs.size
        for what in ("provider", "probe name", "argument string"):
            nul = desc.find(b"\0", at)
            if nul < 0:
                raise bad(f"the {what} is not NUL-terminated inside the descriptor")
            try:
                strings.append(desc[at:nul].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad(f"the {what} is not UTF-8") from None
            at = nul + 1
        provider, name, args = strings
        if not provider or not name:
            raise bad("empty provider or probe name")
        out.append(UsdtNote(provider, name, pc, base, sema, args, start))
    return out
