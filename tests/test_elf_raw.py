"""The compiled ELF record walkers (bpfload._core.elf) against the reader's pure-Python twins,
on every committed object and on seeded mutations of their symbols, relocations and
BTF.ext records.  No kernel needed.

* the ObjectSpec (functions, their instructions and relocations, programs, maps,
  variables, externs, BTF, BTF.ext records) is the same with and without the extension;
* a mutated object gives the same outcome both ways: the same spec, or the same error
  class and message (the compiled code hands every bad entry to the Python code that
  names it);
* call_sites and FuncTable.at agree with their references on real code, random bytes
  and offsets past any range (no crash, no OverflowError).
"""
from __future__ import annotations

import bisect
import random
import struct

import pytest

import bpfload.btf.format as fmt
import bpfload.elf.reader as reader
import fuzz_driver
from bpfload._core import btf as cbtf
from bpfload._core import elf as celf
from bpfload.elf import parse_object
from bpfload.errors import BpfError

from conftest import BPF_DIR

OBJECTS = sorted(BPF_DIR.glob("*.bpf.o"))


def _fmt(path) -> str | None:
    return "iproute2" if "iproute2" in path.name else None


def _summary(spec) -> tuple:
    """Everything the reader decided, as comparable values."""
    funcs = tuple((f.name, f.section, f.insns, f.offset, f.hidden, type(f).__name__,
                   tuple((r.insn, int(r.kind), r.target, r.addend) for r in f.relocs))
                  for f in spec.functions.values())
    maps = tuple((n, repr(m)) for n, m in spec.maps.items())
    ext = None
    if spec.btf_ext is not None:
        e = spec.btf_ext
        ext = (e.func_info_rec_size, e.line_info_rec_size, e.core_relo_rec_size,
               repr(e.func_info), repr(e.line_info), repr(e.core_relos))
    return (funcs, tuple(spec.programs), maps, repr(spec.variables), repr(spec.externs),
            spec.license, spec.kern_version, spec.btf.to_bytes() if spec.btf is not None else None,
            ext)


def _outcome(data: bytes, compiled: bool, monkeypatch, map_format=None):
    monkeypatch.setattr(reader, "_celf", celf if compiled else None)
    monkeypatch.setattr(fmt, "_cbtf", cbtf if compiled else None)
    try:
        return _summary(parse_object(data, name="x", map_format=map_format))
    except BpfError as e:
        return (type(e).__name__, str(e))


@pytest.mark.parametrize("path", OBJECTS, ids=[p.name for p in OBJECTS])
def test_compiled_reader_gives_the_python_spec(path, monkeypatch):
    data = path.read_bytes()
    compiled = _outcome(data, True, monkeypatch, _fmt(path))
    assert compiled == _outcome(data, False, monkeypatch, _fmt(path))


# the objects with the most relocations, calls, maps and BTF.ext records
MUTATED = [p for p in OBJECTS if p.stem.split(".")[0] in
           ("large", "demo", "globals", "subprog", "parse_relocs", "core_task", "maps_legacy",
            "externs", "parity_weak", "mim_btf", "struct_ops")]


@pytest.mark.parametrize("path", MUTATED, ids=[p.name for p in MUTATED])
def test_mutations_give_the_same_outcome(path, monkeypatch):
    """Edits of symbol, relocation and BTF.ext fields: same spec or same error both ways."""
    data = path.read_bytes()
    lay = fuzz_driver.Layout(data)
    fields = [f for f in lay.fields if f[0].startswith(("sym[", "rel[", "btf_ext."))]
    assert fields
    rng = random.Random(f"elf-raw-{path.name}")
    errors = 0
    for _ in range(120):
        blob = bytearray(data)
        for _ in range(rng.randint(1, 2)):
            label, off, size = rng.choice(fields)
            old = int.from_bytes(blob[off:off + size], "little")
            new = fuzz_driver._interesting(rng, old, size, len(data))
            blob[off:off + size] = new.to_bytes(size, "little")
        blob = bytes(blob)
        compiled = _outcome(blob, True, monkeypatch, _fmt(path))
        assert compiled == _outcome(blob, False, monkeypatch, _fmt(path)), label
        errors += isinstance(compiled[0], str) and compiled[0].endswith("Error")
    assert errors >= 10


def test_call_sites_match_python():
    rng = random.Random("call-sites")
    blobs = []
    for path in OBJECTS:
        try:
            spec = parse_object(str(path), map_format=_fmt(path))
        except BpfError:
            continue
        blobs += [f.insns for f in spec.functions.values()]
    # runs of ld_imm64 opcodes before a call, odd and even; random code; a partial tail
    call = bytes([0x85, 0x10, 0, 0]) + struct.pack("<i", -3)
    ld = bytes([0x18]) + bytes(7)
    blobs += [ld * k + call for k in range(5)] + [call + ld * 2 + call + b"\x85\x10"]
    blobs += [bytes(rng.choice([0x85, 0x18, 0x10, 0x00, 0xFF]) for _ in range(8 * rng.randint(0, 40)))
              for _ in range(300)]
    found = 0
    for b in blobs:
        assert celf.call_sites(b) == reader._call_sites(b)
        found += len(reader._call_sites(b))
    assert found > 50


def test_func_table_lookup():
    syms, _ = celf.read_symbols(struct.pack("<IBBHQQ", 0, 0x12, 0, 1, 16, 16)
                                + struct.pack("<IBBHQQ", 0, 0x12, 0, 1, 40, 8), b"\0", [])
    table = celf.FuncTable(syms, ["a", "b"])
    starts, ends = [16, 40], [32, 48]
    for off in [-1, 0, 15, 16, 31, 32, 39, 40, 47, 48, 1 << 63, (1 << 64) - 1, 1 << 64, 1 << 80, -(1 << 70)]:
        j = bisect.bisect_right(starts, off) - 1
        want = (syms[j], "ab"[j]) if j >= 0 and off < ends[j] else None
        assert table.at(off) == want, off
    with pytest.raises(ValueError):
        celf.FuncTable(syms[::-1], ["b", "a"])


def test_read_symbols_reports_bad_names():
    sym = struct.Struct("<IBBHQQ")
    table = sym.pack(1, 0x11, 0, 2, 0, 4) + sym.pack(9, 0x11, 0, 2, 0, 4)
    syms, bad = celf.read_symbols(table, b"\0ab\0", ["", "", ".data"])
    assert [s.name for s in syms] == ["ab"] and bad == (1, "outside", 9)
    syms, bad = celf.read_symbols(sym.pack(2, 0x11, 0, 2, 0, 4), b"\0ab", [])
    assert syms == [] and bad == (0, "unterminated", 2)
    # a section symbol without a name is named after its section (index checked)
    syms, bad = celf.read_symbols(sym.pack(0, 3, 0, 2, 0, 0) + sym.pack(0, 3, 0, 7, 0, 0), b"\0",
                                  ["", "", ".data"])
    assert bad is None and [s.name for s in syms] == [".data", ""]


# -- BTF.ext: checked raw at parse, objects when asked for ---------------------------

EXT_OBJECTS = [p for p in OBJECTS if p.stem.split(".")[0] in ("large", "core_task", "parse_btf", "demo")]


def _ext_parts(path):
    spec = parse_object(str(path))
    from test_btf import elf_section
    return elf_section(path, ".BTF.ext"), spec.btf


def _ext_outcome(blob, btf, compiled, monkeypatch):
    from bpfload.btf import BtfExt
    monkeypatch.setattr(fmt, "_cbtf", cbtf if compiled else None)
    try:
        e = BtfExt.parse(blob, btf)
    except BpfError as err:
        return (type(err).__name__, str(err))
    return (e.func_info_rec_size, e.line_info_rec_size, e.core_relo_rec_size,
            e.func_info, e.line_info, e.core_relos)


@pytest.mark.parametrize("path", EXT_OBJECTS, ids=[p.name for p in EXT_OBJECTS])
def test_btf_ext_raw_then_objects(path, monkeypatch):
    """No record object is made at parse; the objects made later are the Python reader's,
    and the raw records are the bytes they came from."""
    from bpfload.btf import BtfExt
    blob, btf = _ext_parts(path)
    ext = BtfExt.parse(blob, btf)
    assert set(ext._raw) == {"func_info", "line_info", "core_relos"} - {
        a for a, v in (("func_info", ext._func_info), ("line_info", ext._line_info),
                       ("core_relos", ext._core_relos)) if v is not None}
    raw = {attr: {sec: ext._raw_records(attr, sec) for sec in {r[0] for r in ext._raw[attr][2]}}
           for attr in ext._raw}
    want = _ext_outcome(blob, btf, False, monkeypatch)
    assert _ext_outcome(blob, btf, True, monkeypatch) == want
    assert sum(len(v) for v in want[4].values()) > 0
    for attr, secs in raw.items():
        for sec, (runs, size) in secs.items():
            recs = getattr(ext, attr)[sec]
            flat = b"".join(bytes(r) for r in runs)
            assert len(flat) == size * len(recs)
            firsts = [struct.unpack_from("<II", flat, i * size) for i in range(len(recs))]
            assert firsts == [(r.insn_off, r.type_id if attr != "line_info" else r.file_name_off)
                              for r in recs]
        assert ext._raw_records(attr, "xdp") is None      # objects made: read the attribute
    # an edit replaces the records, raw ones included
    ext2 = BtfExt.parse(blob, btf)
    ext2.line_info = {}
    assert ext2.line_info == {} and ext2._raw_records("line_info", ".text") is None


@pytest.mark.parametrize("path", EXT_OBJECTS, ids=[p.name for p in EXT_OBJECTS])
def test_btf_ext_mutations_same_both_ways(path, monkeypatch):
    """Seeded u32 edits and truncations of the blob: the same records or the same error."""
    blob, btf = _ext_parts(path)
    rng = random.Random(f"ext-{path.name}")
    refused = 0
    for _ in range(200):
        b = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(8, len(b) - 4) & ~3 if rng.random() < 0.8 else rng.randrange(len(b))
            val = fuzz_driver._interesting(rng, int.from_bytes(b[pos:pos + 4], "little"), 4, len(b))
            b[pos:pos + 4] = val.to_bytes(4, "little")
        if rng.random() < 0.2:
            b = b[:rng.randrange(len(b))]
        got = _ext_outcome(bytes(b), btf, True, monkeypatch)
        assert got == _ext_outcome(bytes(b), btf, False, monkeypatch)
        refused += got[0] == "BtfError"
    assert refused >= 20


# -- the section table --------------------------------------------------------------

def _table(data, compiled, monkeypatch):
    import bpfload.elf.file as elffile
    monkeypatch.setattr(elffile, "_celf", celf if compiled else None)
    try:
        f = elffile.ElfFile(data)
    except BpfError as e:
        return (type(e).__name__, str(e), e.section)
    return [(s.index, s.name, s.type, s.type_id, s.flags, s.offset, s.size, s.link, s.info,
             s.entsize, s.nobits, s.executable, s.data, repr(s)) for s in f.sections]


@pytest.mark.parametrize("path", OBJECTS[::3], ids=[p.name for p in OBJECTS[::3]])
def test_section_table_same_both_ways(path, monkeypatch):
    """Every committed object and seeded edits of its section headers (names, types,
    offsets, sizes): the same sections or the same error, compiled or not."""
    data = path.read_bytes()
    assert _table(data, True, monkeypatch) == _table(data, False, monkeypatch)
    lay = fuzz_driver.Layout(data)
    fields = [f for f in lay.fields if f[0].startswith(("shdr[", "ehdr.e_sh"))]
    rng = random.Random(f"shdr-{path.name}")
    refused = 0
    for _ in range(80):
        blob = bytearray(data)
        label, off, size = rng.choice(fields)
        old = int.from_bytes(blob[off:off + size], "little")
        blob[off:off + size] = fuzz_driver._interesting(rng, old, size, len(data)).to_bytes(size, "little")
        got = _table(bytes(blob), True, monkeypatch)
        assert got == _table(bytes(blob), False, monkeypatch), label
        refused += isinstance(got, tuple)
    assert refused >= 5


# -- Btf._datasec: find(name, DATASEC) without the name index ----------------------------

@pytest.mark.parametrize("compiled", [True, False])
def test_datasec_lookup_is_find(compiled, monkeypatch):
    from bpfload.btf import Btf, Kind
    from test_btf import elf_section
    monkeypatch.setattr(fmt, "_cbtf", cbtf if compiled else None)
    seen = 0
    for path in OBJECTS:
        raw = elf_section(path, ".BTF")
        if raw is None:
            continue
        names = [t.name for t in Btf.parse(raw) if t.kind == Kind.DATASEC]
        btf = Btf.parse(raw)
        for name in names + [".nope", ""]:
            got = btf._datasec(name)
            assert btf._name_index is None          # no index was built
            want = Btf.parse(raw).find(name, Kind.DATASEC)
            assert (got.id, got.name) == (want.id, want.name) if want is not None else got is None
            seen += want is not None
        # a decoded, renamed DATASEC is found by its new name (as find() does)
        if names:
            t = btf._datasec(names[0])
            t.name = "renamed"
            assert btf._datasec("renamed") is t and btf.find("renamed", Kind.DATASEC) is t
    assert seen > 20


# -- packing the kernel's func_info / line_info straight from the raw records ---------------

def _packed_raw(spec, blob, layout):
    import array
    from bpfload.btf import BtfExt
    ext = BtfExt.parse(blob, spec.btf)
    out = {}
    for attr, width in (("func_info", 2), ("line_info", 4)):
        arr, last, ok = array.array("I"), -1, True
        for name, start in layout:
            f = spec.functions[name]
            got = ext._pack_raw(attr, f.section, f.offset, f.offset + len(f.insns), start, width, arr, last)
            assert got is not None
            last, ok2 = got
            ok = ok and ok2
        recs = [tuple(arr[i:i + width]) for i in range(0, len(arr), width)]
        out[attr] = (recs if ok else sorted(recs), ok)
    assert ext._func_info is None and ext._line_info is None     # no record object was made
    return out


@pytest.mark.parametrize("path", EXT_OBJECTS + [p for p in OBJECTS if p.stem.startswith("subprog")],
                         ids=lambda p: p.name)
def test_raw_packing_is_what_the_record_objects_give(path):
    """For every program: the kernel records packed from the raw bytes are the records the
    objects give (rebased by the linker's layout, sorted), and say sorted when they are."""
    from bpfload import _pyinsn
    from bpfload.btf.kernel import ext_records
    from test_btf import elf_section
    spec = parse_object(str(path))
    blob = elf_section(path, ".BTF.ext")
    checked = 0
    for prog in spec.programs:
        layout = _pyinsn.link(prog, spec.functions).layout
        want_fi, want_li = ext_records(spec.btf_ext, spec.functions, layout)
        got = _packed_raw(spec, blob, layout)
        assert got["func_info"][0] == [struct.unpack_from("<II", want_fi, i) for i in range(0, len(want_fi), 8)]
        assert got["line_info"][0] == [struct.unpack_from("<IIII", want_li, i)
                                       for i in range(0, len(want_li), 16)]
        checked += len(got["line_info"][0])
    assert checked > 0


def test_raw_packing_arguments():
    import array
    from bpfload.btf import BtfExt
    from test_btf import elf_section
    path = BPF_DIR / "large.bpf.o"
    ext = BtfExt.parse(elf_section(path, ".BTF.ext"), parse_object(str(path)).btf)
    out = array.array("I", [7])
    assert ext._pack_raw("line_info", "nope", 0, 1 << 20, 0, 4, out) == (-1, True) and list(out) == [7]
    with pytest.raises(ValueError):
        ext._pack_raw("line_info", "xdp", 0, 1 << 20, 0, 3, out)
    with pytest.raises(TypeError):
        ext._pack_raw("line_info", "xdp", 0, 1 << 20, 0, 4, [])
    with pytest.raises(OverflowError):
        ext._pack_raw("line_info", "xdp", 0, 1 << 20, 0xFFFFFFFF, 4, out)
    assert list(out) == [7]
    last, ok = ext._pack_raw("line_info", "xdp", 0, 1 << 20, 0, 4, out, 5)
    assert not ok and last > 5 and len(out) > 1           # the first record came before 5
    _ = ext.line_info                                      # objects made: the raw path steps aside
    assert ext._pack_raw("line_info", "xdp", 0, 1 << 20, 0, 4, out) is None


def test_ext_pack_runs_in_and_out_of_order():
    import array
    rec = struct.Struct("<IIII")
    insns = [0, 8, 8, 24, 40, 48, 64]
    sub = b"\0" * 4 + b"".join(rec.pack(o, 100 + k, 200 + k, 300 + k) for k, o in enumerate(insns))
    shuffled = [24, 0, 48, 8, 64, 40, 8]
    sub2 = b"\0" * 4 + b"".join(rec.pack(o, 100 + k, 200 + k, 300 + k) for k, o in enumerate(shuffled))
    for lo, hi in [(0, 72), (8, 48), (9, 10), (40, 41), (64, 1 << 20), (0, 0)]:
        # in order: bisection gives what reading the whole run gives
        a, b = array.array("I"), array.array("I")
        ra = cbtf.ext_pack(sub, 16, [(4, len(insns), True)], lo, hi, 3, 4, a)
        rb = cbtf.ext_pack(sub, 16, [(4, len(insns), False)], lo, hi, 3, 4, b)
        assert (ra, a) == (rb, b)
        want = [((o - lo) // 8 + 3, 100 + k, 200 + k, 300 + k) for k, o in enumerate(insns) if lo <= o < hi]
        assert [tuple(a[i:i + 4]) for i in range(0, len(a), 4)] == want
        # out of order: file order kept, "not increasing" said
        c = array.array("I")
        last, ok = cbtf.ext_pack(sub2, 16, [(4, len(shuffled), False)], lo, hi, 0, 2, c)
        want = [((o - lo) // 8, 100 + k) for k, o in enumerate(shuffled) if lo <= o < hi]
        assert [tuple(c[i:i + 2]) for i in range(0, len(c), 2)] == want
        insn_seq = [w[0] for w in want]
        assert ok == all(x < y for x, y in zip(insn_seq, insn_seq[1:]))
        assert last == (insn_seq[-1] if want else -1)
    with pytest.raises(ValueError):
        cbtf.ext_pack(sub, 16, [(4, len(insns) + 1, True)], 0, 8, 0, 4, array.array("I"))


def test_raw_records_made_later_without_the_module_global(monkeypatch):
    """Records kept raw at parse are made into objects even if the format module's handle on
    the extension is gone by then (tests switch it per test)."""
    from bpfload.btf import BtfExt
    from test_btf import elf_section
    path = BPF_DIR / "core_task.bpf.o"
    blob, btf = elf_section(path, ".BTF.ext"), parse_object(str(path)).btf
    ext = BtfExt.parse(blob, btf)
    monkeypatch.setattr(fmt, "_cbtf", None)
    assert ext.core_relos == BtfExt.parse(blob, btf).core_relos and ext.core_relos
