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
from typing import List, NamedTuple, Optional, Tuple

from ..errors import ElfError
from .binary import ElfBinary

__all__ = ["UsdtNote", "UsdtProbe", "UsdtNotes", "Segment", "read_usdt_notes", "NOTE_SECTION",
           "BASE_SECTION"]

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
_NOTE_OWNER = b"stapsdt\0"
_NT_STAPSDT = 3
_SHT_NOTE = 7
_PF_X = 1
#: larger than any real notes section: beyond it the header is malformed
_MAX_NOTES_SIZE = 64 << 20


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
            return _parse(ElfBinary(f, path))
    except OSError as e:
        raise ElfError(f"cannot read the binary: {e.strerror or e}", object=path) from None
    except struct.error as e:                 # defensive: every read is sized first
        raise ElfError(f"malformed ELF: {e}", object=path) from None


def _parse(elf: ElfBinary) -> UsdtNotes:
    path = elf.path
    segments = sorted(Segment(vaddr, memsz, off, bool(flags & _PF_X))
                      for off, vaddr, _, memsz, flags in elf.load_segments())
    names = elf.section_names()
    secs = elf.section_headers()
    notes: List[UsdtNote] = []
    if NOTE_SECTION in names:
        _, typ, _, off, size, _, align, _ = secs[names[NOTE_SECTION]]
        if typ != _SHT_NOTE:
            raise ElfError(f"section type {typ} is not SHT_NOTE", object=path, section=NOTE_SECTION)
        if size > _MAX_NOTES_SIZE:
            raise ElfError(f"{size} bytes of notes", object=path, section=NOTE_SECTION)
        data = elf.read(off, size, NOTE_SECTION)
        notes = _notes(data, path, elf.e, 8 if elf.is64 else 4, 8 if align == 8 else 4)
    base = secs[names[BASE_SECTION]][2] if BASE_SECTION in names else None
    return UsdtNotes(path, elf.type, elf.is64, elf.e == "<", tuple(segments), base, tuple(notes))


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
