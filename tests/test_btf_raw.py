"""The compiled BTF record walkers (bpfload._core.btf) against their pure-Python twins,
on every committed object, the running kernel's BTF and malformed blobs.  No kernel needed
but its BTF file.

* scan / of_kind / check give what the Python code (decoding every type) gives, and the
  same error message on the same bad record, for seeded mutations of real BTF;
* malformed input (truncated headers, record lengths past the end, bad string offsets,
  offsets arrays that do not match the records) is a BtfError, never a crash;
* DATASEC fix-ups patched in the raw records give the same blob as the decoded path,
  without decoding the object's types.
"""
from __future__ import annotations

import random
import struct

import pytest

import bpfload.btf.format as fmt
from bpfload._core import btf as cbtf
from bpfload.btf import Btf, Kind
from bpfload.elf import parse_object
from bpfload.errors import BtfError

from test_btf import OBJECTS, VMLINUX, _assemble, _parts, elf_section
from conftest import unavailable

HDR = struct.Struct("<HBBIIIII")
BTF_OBJECTS = [p for p in OBJECTS if elf_section(p, ".BTF") is not None]


def _parse(path):
    """The object's spec (iproute2-format objects parse only when asked to)."""
    return parse_object(str(path), map_format="iproute2" if "iproute2" in path.name else None)


def _outcome(blob: bytes, compiled: bool, monkeypatch) -> str:
    """What parse + validate say of *blob*: "ok" or the BtfError message."""
    monkeypatch.setattr(fmt, "_cbtf", cbtf if compiled else None)
    try:
        Btf.parse(blob).validate()
        return "ok"
    except BtfError as e:
        return str(e)


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=[p.name for p in BTF_OBJECTS])
def test_scan_and_kinds_match_python(path):
    types, _ = _parts(elf_section(path, ".BTF"))
    offsets = cbtf.scan(types)
    assert list(offsets) == list(Btf._scan_py(types)) and len(offsets) > 0
    for kind in Kind:
        want = [i for i, off in enumerate(offsets)
                if (struct.unpack_from("<I", types, off + 4)[0] >> 24) & 0x1F == kind]
        assert cbtf.of_kind(types, offsets, int(kind)) == want


def test_vmlinux_scan_and_check(monkeypatch):
    if not VMLINUX.exists():
        unavailable("no /sys/kernel/btf/vmlinux (kernel without CONFIG_DEBUG_INFO_BTF)")
    raw = VMLINUX.read_bytes()
    btf = Btf.parse(raw)
    types, _ = _parts(raw)
    assert list(btf._offsets) == list(Btf._scan_py(types))
    btf.validate()
    # validate() decoded nothing (the compiled pass read the records), and the blob is intact
    assert all(t is None for t in btf._cache)
    assert btf.to_bytes() == raw
    assert btf.find("task_struct", Kind.STRUCT).size > 0
    # one bad reference deep in vmlinux: found, named, by the compiled pass
    bad = bytearray(raw)
    idx = len(btf._offsets) - 10
    off = btf._offsets[idx]
    while (struct.unpack_from("<I", types, off + 4)[0] >> 24) not in (Kind.PTR, Kind.TYPEDEF, Kind.CONST):
        idx -= 1
        off = btf._offsets[idx]
    struct.pack_into("<I", bad, 24 + off + 8, len(btf) + 5)
    with pytest.raises(BtfError, match=rf"type \[{idx + 1}\] .* refers to type id {len(btf) + 5}"):
        Btf.parse(bytes(bad)).validate()


@pytest.mark.parametrize("name", ["parse_btf.bpf.o", "core_task.bpf.o", "maps_btf.bpf.o"])
def test_check_matches_decoding_on_mutations(name, monkeypatch):
    """Seeded edits of name offsets, type references, kinds and vlens: the compiled
    validation and the decoding one agree on every case, message included."""
    types, strings = _parts(elf_section(next(p for p in OBJECTS if p.name == name), ".BTF"))
    rng = random.Random(f"btf-raw-{name}")
    values = [0, 1, len(strings) - 1, len(strings), len(strings) + 7, 0xFFFFFFFF, 5, 200, 10 ** 6]
    seen = {"ok": 0, "err": 0}
    for _ in range(250):
        bad = bytearray(types)
        for _ in range(rng.choice((1, 1, 2))):
            pos = rng.randrange(0, len(bad) // 4) * 4
            if rng.random() < 0.15:
                bad[pos + rng.randrange(4)] = rng.randrange(256)
            else:
                struct.pack_into("<I", bad, pos, rng.choice(values))
        blob = _assemble(bytes(bad), strings)
        got = _outcome(blob, True, monkeypatch)
        want = _outcome(blob, False, monkeypatch)
        assert got == want, (got, want)
        seen["ok" if got == "ok" else "err"] += 1
    assert seen["ok"] > 10 and seen["err"] > 50, seen


def test_long_names_are_refused_alike(monkeypatch):
    long = b"x" * 2000
    strings = b"\0" + long + b"\0int\0"
    rec = struct.pack("<IIII", 1, 1 << 24, 4, 32)          # INT named by the 2000-byte string
    blob = HDR.pack(0xEB9F, 1, 0, 24, 0, len(rec), len(rec), len(strings)) + rec + strings
    c = _outcome(blob, True, monkeypatch)
    py = _outcome(blob, False, monkeypatch)
    assert c == py and "name at string offset 1 is longer than 1024 bytes" in c


# --------------------------------------------------------------------------
# malformed blobs: BtfError, never a crash

def test_truncated_headers():
    raw = elf_section(BTF_OBJECTS[0], ".BTF")
    for n in range(HDR.size):
        with pytest.raises(BtfError):
            Btf.parse(raw[:n])


@pytest.mark.parametrize("field,value", [
    ("hdr_len", 10 ** 6), ("hdr_len", 8), ("type_len", 10 ** 6), ("type_off", 3),
    ("str_off", 10 ** 6), ("str_len", 10 ** 6), ("type_off", 0xFFFFFFF0), ("str_off", 0xFFFFFFF0),
])
def test_header_fields_past_the_end(field, value):
    raw = bytearray(elf_section(BTF_OBJECTS[0], ".BTF"))
    pos = {"hdr_len": 4, "type_off": 8, "type_len": 12, "str_off": 16, "str_len": 20}[field]
    struct.pack_into("<I", raw, pos, value)
    with pytest.raises(BtfError):
        Btf.parse(bytes(raw)).validate()


@pytest.mark.parametrize("kind", [Kind.STRUCT, Kind.ENUM, Kind.FUNC_PROTO, Kind.DATASEC, Kind.ENUM64])
def test_record_lengths_past_the_end(kind):
    """A vlen that runs the last record past the section, and one past the blob."""
    strings = b"\0a\0"
    for vlen in (1, 0xFFFF):
        rec = struct.pack("<III", 1, (int(kind) << 24) | vlen, 4)
        blob = HDR.pack(0xEB9F, 1, 0, 24, 0, len(rec), len(rec), len(strings)) + rec + strings
        with pytest.raises(BtfError, match="truncated"):
            Btf.parse(blob)
        with pytest.raises(BtfError, match="truncated"):
            cbtf.scan(rec)


def test_bad_string_offsets():
    types, strings = _parts(elf_section(BTF_OBJECTS[0], ".BTF"))
    for value in (len(strings), len(strings) + 1, 0x7FFFFFFF, 0xFFFFFFFF):
        bad = bytearray(types)
        struct.pack_into("<I", bad, 0, value)
        with pytest.raises(BtfError, match="name offset"):
            Btf.parse(_assemble(bytes(bad), strings)).validate()
    # a string section that is not NUL-terminated where a name starts near its end
    with pytest.raises(BtfError):
        Btf.parse(_assemble(types, strings + b"abc")).validate()


def test_walkers_survive_inconsistent_arguments():
    """Offsets that do not match the records (past the end, misaligned) and random bytes:
    the compiled walkers report or skip, never read outside their buffers."""
    import array
    types, strings = _parts(elf_section(BTF_OBJECTS[0], ".BTF"))
    offs = array.array("I", [0, len(types) - 4, len(types), len(types) + 1000, 0xFFFFFFF0])
    assert cbtf.of_kind(types, offs, int(Kind.INT)) in ([], [0])
    bad = cbtf.check(types, offs, strings, [None] * len(offs), 1, 10, 1024)
    assert bad is not None and bad[1] in ("record", "name", "ref")
    with pytest.raises(ValueError):
        cbtf.check(types, offs, strings, [], 1, 10, 1024)
    assert cbtf.check(b"", array.array("I"), b"", [], 1, 1, 1024) is None
    rng = random.Random("btf-raw-noise")
    for _ in range(300):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 96)))
        try:
            o = cbtf.scan(noise)
        except BtfError:
            continue
        cbtf.check(noise, o, noise[:rng.randrange(0, 8)], [None] * len(o), 1, 50, 1024)


# --------------------------------------------------------------------------
# DATASEC fix-ups in the raw records

@pytest.mark.parametrize("path", BTF_OBJECTS, ids=[p.name for p in BTF_OBJECTS])
def test_raw_fixups_match_decoded_fixups(path, monkeypatch):
    """The ELF reader's fix-ups patched in the raw records give the blob the decoded path
    gives, and leave the object's types undecoded."""
    original = Btf.fixup_datasecs
    decoded_by_fixup = []

    def counting(self, sizes, syms):
        before = sum(t is not None for t in self._cache)
        original(self, sizes, syms)
        decoded_by_fixup.append(sum(t is not None for t in self._cache) - before)
    monkeypatch.setattr(Btf, "fixup_datasecs", counting)
    spec = _parse(path)
    raw_blob = spec.btf.to_bytes()
    assert decoded_by_fixup == [0]      # the raw path decoded no type

    def decode_first(self, sizes, syms):
        list(self)                      # every type an object: the edit-the-objects path
        decoded_by_fixup.append(None)
        return original(self, sizes, syms)
    monkeypatch.setattr(Btf, "fixup_datasecs", decode_first)
    spec2 = _parse(path)
    assert decoded_by_fixup[-1] is None
    assert spec2.btf.to_bytes() == raw_blob


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=[p.name for p in BTF_OBJECTS])
def test_pure_python_build_gives_the_same_blob(path, monkeypatch):
    """Without the compiled walkers (a build without bpfload._core.btf), the reader's
    parse, fix-ups and validation give the same BTF byte for byte."""
    try:
        compiled = _parse(path).btf.to_bytes()
    except BtfError as e:
        compiled = str(e)
    monkeypatch.setattr(fmt, "_cbtf", None)
    try:
        python = _parse(path).btf.to_bytes()
    except BtfError as e:
        python = str(e)
    assert python == compiled
