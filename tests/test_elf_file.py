"""bpfload's own ELF64 reader (bpfload.elf.file) against pyelftools, the reference.

* On every committed object, every section bpfload reads (name, type, flags,
  offset, size, link, info, entsize and the bytes) is what pyelftools reads.
* Differential fuzzing of the ELF header and the section header table: for
  every mutation the reader either raises ElfError or reads exactly the
  section table pyelftools reads from the same bytes.
* Each header check has a targeted case naming what is wrong; the extended
  section numbering (count in section 0) reads the same table as the normal one.

No kernel needed.
"""
from __future__ import annotations

import io
import pathlib
import random
import struct

import pytest
from elftools.elf.elffile import ELFFile

from bpfload.elf import parse_object
from bpfload.elf.file import SHT_NAMES, ElfFile
from bpfload.errors import ElfError

ROOT = pathlib.Path(__file__).resolve().parent.parent
OBJECTS = sorted((ROOT / "bpf").glob("*.bpf.o"))
SHDR = struct.Struct("<IIQQQQIIQQ")


def _ours(data: bytes):
    f = ElfFile(data)
    return [(s.index, s.name, s.type, s.flags, s.offset if s.type != "SHT_NULL" else 0,
             s.size, s.link, s.info, s.entsize, s.data) for s in f.sections]


def _reference(data: bytes):
    """The same table read by pyelftools (raises whatever pyelftools raises).

    The raw headers (``_get_section_header``): ``get_section`` adds per-type checks of
    the section's contents (a REL section's entry size) that bpfload's parser makes
    where it reads those sections, not in the section table.
    """
    elf = ELFFile(io.BytesIO(data))
    out = []
    for i in range(elf.num_sections()):
        h = elf._get_section_header(i)
        name = elf._get_section_name(h)
        stype = h["sh_type"]
        if isinstance(stype, int):      # pyelftools leaves types it has no name for as numbers
            stype = SHT_NAMES.get(stype, f"SHT_{stype:#x}")
        null = stype == "SHT_NULL"
        nobits = stype == "SHT_NOBITS"
        data_ = b"" if null or nobits else data[h["sh_offset"]:h["sh_offset"] + h["sh_size"]]
        out.append((i, name, stype, h["sh_flags"], 0 if null else h["sh_offset"],
                    0 if null else h["sh_size"], h["sh_link"], h["sh_info"], h["sh_entsize"], data_))
    return out


def _header(data: bytes):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    return shoff, shnum, shstrndx


@pytest.mark.parametrize("obj", OBJECTS, ids=[p.name for p in OBJECTS])
def test_sections_match_pyelftools(obj):
    data = obj.read_bytes()
    ours = _ours(data)
    assert ours == _reference(data)
    assert len(ours) > 5 and any(s[2] == "SHT_SYMTAB" for s in ours)


@pytest.mark.parametrize("obj", OBJECTS[::4], ids=[p.name for p in OBJECTS[::4]])
def test_header_mutations_agree_with_pyelftools(obj):
    """Mutate only the ELF header and the section headers: ElfError, or pyelftools' table."""
    data = obj.read_bytes()
    shoff, shnum, _ = _header(data)
    ranges = [(0, 64), (shoff, shoff + shnum * SHDR.size)]
    rng = random.Random(f"elf-file-{obj.name}")
    agreed = refused = 0
    for _ in range(150):
        blob = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            lo, hi = rng.choice(ranges)
            pos = rng.randrange(lo, hi)
            blob[pos] = rng.choice([0, 0xFF, 0x80, rng.randrange(256), blob[pos] ^ (1 << rng.randrange(8))])
        blob = bytes(blob)
        try:
            ours = _ours(blob)
        except ElfError:
            refused += 1
            continue
        assert ours == _reference(blob), f"{obj.name}: the readers disagree"
        agreed += 1
    assert agreed >= 30 and refused >= 10, (agreed, refused)


def test_extended_section_numbering_reads_the_same_table():
    """e_shnum 0 and e_shstrndx SHN_XINDEX: the count and the index live in section 0."""
    data = bytearray((ROOT / "bpf" / "globals.bpf.o").read_bytes())
    shoff, shnum, shstrndx = _header(data)
    before = _ours(bytes(data))
    struct.pack_into("<HH", data, 0x3C, 0, 0xFFFF)
    struct.pack_into("<Q", data, shoff + 32, shnum)      # section 0 sh_size
    struct.pack_into("<I", data, shoff + 40, shstrndx)   # section 0 sh_link
    after = _ours(bytes(data))
    assert [s[1:3] + s[4:6] + s[9:] for s in after[1:]] == [s[1:3] + s[4:6] + s[9:] for s in before[1:]]
    assert parse_object(bytes(data), name="x").programs.keys() == parse_object(
        ROOT / "bpf" / "globals.bpf.o").programs.keys()


def _bad(edit, match: str):
    data = bytearray((ROOT / "bpf" / "globals.bpf.o").read_bytes())
    edit(data, *_header(data))
    with pytest.raises(ElfError, match=match) as ei:
        parse_object(bytes(data), name="bad")
    assert ei.value.object == "bad"
    assert "'bad'" in str(ei.value)


def test_header_checks_name_what_is_wrong():
    _bad(lambda d, *_: d.__setitem__(slice(4, 5), b"\x01"), "ELF class 32")
    _bad(lambda d, *_: d.__setitem__(slice(5, 6), b"\x02"), "big-endian")
    _bad(lambda d, *_: d.__setitem__(slice(5, 6), b"\x07"), "data encoding 7")
    _bad(lambda d, *_: struct.pack_into("<H", d, 18, 62), r"not a BPF object \(e_machine 62")
    _bad(lambda d, *_: struct.pack_into("<H", d, 16, 3), r"not a relocatable object \(e_type ET_DYN")
    _bad(lambda d, *_: struct.pack_into("<Q", d, 0x28, 0), "no section header table")
    _bad(lambda d, *_: struct.pack_into("<H", d, 0x3A, 40), "section header entry size 40")
    _bad(lambda d, *_: struct.pack_into("<Q", d, 0x28, len(d) - 10), "past the end of the file")
    _bad(lambda d, so, n, s: struct.pack_into("<H", d, 0x3C, n + 1), "section headers .* extend past")
    _bad(lambda d, so, n, s: struct.pack_into("<H", d, 0x3E, n), "is not a string table")
    _bad(lambda d, so, n, s: struct.pack_into("<H", d, 0x3E, 0), "is not a string table")
    # the name table itself past the end of the file
    _bad(lambda d, so, n, s: struct.pack_into("<Q", d, so + s * 64 + 32, 1 << 40),
         "section name table .* extends past")
    # a section name offset outside the name table
    _bad(lambda d, so, n, s: struct.pack_into("<I", d, so + 64 * 2, 1 << 30), "section #2: name offset")
    # the extended count claims more sections than the file holds
    _bad(lambda d, so, n, s: (struct.pack_into("<H", d, 0x3C, 0), struct.pack_into("<Q", d, so + 32, 1 << 40)),
         "too many sections")


def test_unterminated_section_name_is_refused():
    data = bytearray((ROOT / "bpf" / "globals.bpf.o").read_bytes())
    shoff, shnum, shstrndx = _header(data)
    off, size = struct.unpack_from("<QQ", data, shoff + shstrndx * 64 + 24)
    # Find the section whose name is last in the table, and cut the table before its NUL.
    names = [(struct.unpack_from("<I", data, shoff + 64 * i)[0], i) for i in range(shnum)]
    last, idx = max(names)
    end = data.index(b"\0", off + last) - off
    struct.pack_into("<Q", data, shoff + shstrndx * 64 + 32, end)
    with pytest.raises(ElfError, match=f"section #{idx}: name is not NUL-terminated"):
        parse_object(bytes(data), name="bad")


def test_section_data_is_sliced_once_and_lazily():
    data = (ROOT / "bpf" / "globals.bpf.o").read_bytes()
    f = ElfFile(data)
    text = next(s for s in f.sections if s.executable)
    assert text._data is None
    first = text.data
    assert first is text.data and first == data[text.offset:text.offset + text.size]
    assert f.section_by_name(text.name) is text and f.section(len(f.sections)) is None
