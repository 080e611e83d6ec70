"""The warm-load shortcuts of the open path against the slow paths they stand in for, on
every committed object.  No kernel needed.

* opening an object leaves none of its BTF types decoded (map definitions and data-section
  variables are read from the raw records, or decoded and dropped), so ``to_bytes`` copies
  the records; the blob equals the one re-encoded from every type decoded;
* BTF-defined map definitions read raw equal the decoded path's, and a malformed one still
  gets the decoded path's error;
* a data section's DATASEC id and mmapable flag read raw equal the decoded answer;
* ``_core.btf.datasec_vars`` equals the pure-Python reading, and gives None (the decoded
  path) for a decoded member, a bad id or inconsistent arguments, never a crash;
* the kernel-name fast paths equal the per-character rule; enum members are plain class
  attributes (no descriptor call per ``Kind.VAR``) and still the same members.
"""
from __future__ import annotations

import array
import copy
import struct

import pytest

import bpfload.btf.format as fmt
from bpfload._core import btf as cbtf
from bpfload.btf import Kind
from bpfload.btf.format import BtfMapDef, _parse_map_def, parse_map_def
from bpfload.constants import MapType
from bpfload.elf import parse_object
from bpfload.elf.reader import kernel_map_name
from bpfload.errors import BtfError
from bpfload.maps import kernel_name

from test_btf import OBJECTS, elf_section

BTF_OBJECTS = [p for p in OBJECTS if elf_section(p, ".BTF") is not None]
IDS = [p.name for p in BTF_OBJECTS]
# the objects with BTF-defined maps (a ".maps" section)
MAPS_OBJECTS = [p for p in BTF_OBJECTS if elf_section(p, ".maps") is not None]


def _parse(path):
    return parse_object(str(path), map_format="iproute2" if "iproute2" in path.name else None)


def _fields(d: BtfMapDef):
    return None if d is None else tuple(
        _fields(getattr(d, f)) if f == "inner" else getattr(d, f) for f in BtfMapDef._fields)


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=IDS)
def test_open_leaves_types_undecoded_and_the_blob_unchanged(path):
    spec = _parse(path)
    btf = spec.btf
    struct_ops = any(m.form == "struct_ops" for m in spec.maps.values())
    if not struct_ops:      # (struct_ops maps are matched through decoded types)
        assert all(t is None for t in btf._cache), "a type decoded at open was kept"
    raw = btf.to_bytes()
    list(btf)               # every type decoded: to_bytes re-encodes each one
    assert btf.to_bytes() == raw


@pytest.mark.parametrize("path", MAPS_OBJECTS, ids=[p.name for p in MAPS_OBJECTS])
def test_raw_map_definitions_match_the_decoded_path(path):
    btf = _parse(path).btf
    ds = btf._datasec(".maps")
    assert ds is not None, "a .maps section without its DATASEC"
    variables = [btf[v.type] for v in ds.vars]
    for var in variables:
        fresh = copy.deepcopy(btf)
        fresh._cache = [None] * len(fresh._cache)
        raw = fmt._parse_map_def_raw(fresh, var.type, var.name, False)
        assert all(t is None for t in fresh._cache), "the raw reader decoded a type"
        decoded = _parse_map_def(fresh, var.type, var.name, False)
        if raw is not None:
            assert _fields(raw) == _fields(decoded)
        assert _fields(parse_map_def(fresh, var.type, var.name)) == _fields(decoded)
        assert fresh.size_of(var.type) == btf._raw_size_of(var.type) or btf._raw_size_of(var.type) is None


def test_a_malformed_map_definition_gets_the_decoded_error():
    """A definition whose key size conflicts with its key type: the raw reader gives up, the
    decoded path words the refusal."""
    btf = _parse(next(p for p in BTF_OBJECTS if p.name == "demo.bpf.o")).btf
    ds = btf._datasec(".maps")
    for vsi in ds.vars:
        st = btf.resolve(btf[vsi.type].type)
        names = [m.name for m in st.members]
        if "key" in names and "key_size" not in names:
            break
    else:
        pytest.skip("no definition with a key type")
    var = btf[vsi.type]
    size_attr = next(m for m in st.members if m.name == "max_entries")
    # a key_size attribute that disagrees with the key type's size (max_entries's shape)
    st.members.insert(0, fmt.Member("key_size", size_attr.type, 0, 0, 0))
    btf = Btf_from(btf)
    assert fmt._parse_map_def_raw(btf, var.type, var.name, False) is None
    with pytest.raises(BtfError, match="conflicting key size") as e:
        parse_map_def(btf, var.type, var.name)
    assert e.value.symbol == var.name


def Btf_from(btf):
    """*btf* re-parsed from its encoding (the edited types as raw records)."""
    return fmt.Btf.parse(btf.to_bytes())


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=IDS)
def test_datasec_visible_matches_the_decoded_answer(path):
    spec = _parse(path)
    names = sorted({m.section for m in spec.maps.values() if m.form == "data"}) + [".nope"]
    for name in names:
        btf = _parse(path).btf
        got = btf._datasec_visible(name)
        ds = btf._datasec(name)
        want = None if ds is None else (ds.id, any(
            isinstance(btf[v.type], fmt.Var) and btf[v.type].linkage != fmt.VarLinkage.STATIC
            for v in ds.vars))
        assert got == want, name


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=IDS)
def test_datasec_vars_matches_python(path):
    btf = fmt.Btf.parse(elf_section(path, ".BTF"))
    buf, offsets, start = btf._types_raw, btf._offsets, btf._start_id
    for idx in cbtf.of_kind(buf, offsets, int(Kind.DATASEC)):
        rows = cbtf.datasec_vars(buf, offsets, idx, start, btf._cache)
        off = offsets[idx]
        vlen = struct.unpack_from("<I", buf, off + 4)[0] & 0xFFFF
        want = []
        for i in range(vlen):
            vt, voff, vsize = struct.unpack_from("<III", buf, off + 12 + 12 * i)
            rec_off, kind, _, linkage = btf._raw_var(vt)
            name_off = struct.unpack_from("<I", buf, rec_off)[0]
            want.append([vt, voff, vsize, rec_off, kind, name_off, linkage])
        assert rows == want
        if vlen:    # a decoded member: its object may have been edited
            first = want[0][0]
            btf[first]
            assert cbtf.datasec_vars(buf, offsets, idx, start, btf._cache) is None
            btf._cache[first - start] = None


def test_datasec_vars_survives_inconsistent_arguments():
    path = next(p for p in BTF_OBJECTS if p.name == "globals.bpf.o")
    btf = fmt.Btf.parse(elf_section(path, ".BTF"))
    buf, offsets = btf._types_raw, btf._offsets
    idx = cbtf.of_kind(buf, offsets, int(Kind.DATASEC))[0]
    assert cbtf.datasec_vars(buf, offsets, len(offsets), 1, btf._cache) is None
    assert cbtf.datasec_vars(buf, offsets, -1, 1, btf._cache) is None
    assert cbtf.datasec_vars(buf, offsets, idx, 1, []) is None            # ids past the cache
    assert cbtf.datasec_vars(buf, offsets, idx, 10 ** 6, btf._cache) is None
    assert cbtf.datasec_vars(bytes(buf[:offsets[idx] + 8]), offsets, idx, 1, btf._cache) is None
    short = array.array("I", offsets)
    short[idx] = len(buf) + 100
    assert cbtf.datasec_vars(buf, short, idx, 1, btf._cache) is None


@pytest.mark.parametrize("name", [None, "", "counts", "globals.bss", "a-b.c", "x" * 20, "é1", "__..",
                                  "tab\tname", "0123456789abcdefg"])
def test_kernel_name_fast_path(name):
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    assert kernel_name(name) == "".join(c if c in ok else "_" for c in (name or "")[:15])


@pytest.mark.parametrize("obj,sec,want", [
    ("globals", ".bss", "globals.bss"), ("my-object", ".data", "my_objec.data"),
    ("x", ".rodata.str1.1", ".rodata.str1.1"), ("é", ".bss", "_.bss"),
    ("o", ".data.a-b", ".data.a_b"), ("averyveryverylongname", ".kconfig", "averyve.kconfig")])
def test_kernel_map_name_fast_path(obj, sec, want):
    assert kernel_map_name(obj, sec) == want


def test_enum_members_are_plain_class_attributes():
    for cls in (Kind, MapType, fmt.VarLinkage):
        for name, member in cls.__members__.items():
            assert getattr(cls, name) is member is cls[name] is cls(member.value)
    if "VAR" in vars(Kind):
        assert vars(Kind)["VAR"] is Kind.VAR     # (3.11: not an enum.property redirect)
    assert repr(Kind.VAR) == "<Kind.VAR: 14>" and Kind.VAR.name == "VAR" and Kind.VAR == 14
