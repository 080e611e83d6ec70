"""The compiled pieces of a cold CO-RE start against their references.

``corepatch.scan_sized`` (the vmlinux record scan, one allocation) must give
the offsets and the errors of ``_core.btf.scan``; the kernel's BTF parsed in
place must hold the same offsets as a parse of the bytes read from the file;
the essential-name index (hashed eight bytes a step) must find, for every
named type of vmlinux, exactly the types the pure-Python index finds.
"""
from __future__ import annotations

import random
import struct

import pytest

from bpfload._core import btf as cbtf
from bpfload._core import corepatch
from bpfload.btf import Btf, Kind
from bpfload.btf import targets
from bpfload.errors import BtfError

from test_btf import OBJECTS, VMLINUX, _assemble, _parts, elf_section
from conftest import unavailable

BTF_OBJECTS = [p for p in OBJECTS if elf_section(p, ".BTF") is not None]


def _both(buf):
    """(offsets or error text) of both scans."""
    out = []
    for scan in (cbtf.scan, corepatch.scan_sized):
        try:
            out.append(list(scan(buf)))
        except BtfError as e:
            out.append(str(e))
    return out


@pytest.mark.parametrize("path", BTF_OBJECTS[:6], ids=[p.name for p in BTF_OBJECTS[:6]])
def test_scan_sized_matches_scan(path):
    types, _ = _parts(elf_section(path, ".BTF"))
    a, b = _both(types)
    assert a == b and isinstance(a, list) and len(a) > 0


def test_scan_sized_errors_match_scan():
    rng = random.Random("scan-sized")
    types, _ = _parts(elf_section(BTF_OBJECTS[0], ".BTF"))
    errors = 0
    for cut in range(0, min(len(types), 200)):
        a, b = _both(types[:cut])
        assert a == b
        errors += isinstance(a, str)
    for _ in range(300):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 96)))
        a, b = _both(noise)
        assert a == b
        errors += isinstance(a, str)
    assert errors > 100   # the truncation and unknown-kind paths were exercised
    bad = struct.pack("<III", 1, 21 << 24, 4)
    assert "unknown BTF kind 21" in _both(bad)[1]
    assert _both(b"") == [[], []]


def test_vmlinux_in_place_offsets_match_read():
    if not VMLINUX.exists():
        unavailable("no /sys/kernel/btf/vmlinux (kernel without CONFIG_DEBUG_INFO_BTF)")
    vm = targets._parse_vmlinux(str(VMLINUX))
    read = Btf.parse(VMLINUX.read_bytes())
    assert vm._offsets == read._offsets and len(vm._offsets) > 1000
    assert len(vm) == len(read)
    t = vm.find("task_struct", Kind.STRUCT)
    assert t is not None and t == read.find("task_struct", Kind.STRUCT)


@pytest.mark.parametrize("kind", [Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.TYPEDEF, Kind.FUNC])
def test_index_finds_every_vmlinux_name(kind):
    """Every named type of *kind*: the compiled index's candidates are the Python index's."""
    if not VMLINUX.exists():
        unavailable("no /sys/kernel/btf/vmlinux (kernel without CONFIG_DEBUG_INFO_BTF)")
    vm = targets.vmlinux()
    comp = targets.TargetBtf(vm, compiled=True)
    py = targets.TargetBtf(vm, compiled=False)
    names = sorted({targets.essential_name(vm[i + 1].name)
                    for i in cbtf.of_kind(vm._types_raw, vm._offsets, int(kind)) if vm[i + 1].name})
    assert len(names) > 10
    step = max(1, len(names) // 3000)   # functions: a sample (56,000 of them)
    for name in names[::step]:
        got = [t.id for t in comp.candidates(name, kind)]
        assert got == [t.id for t in py.candidates(name, kind)], name
        assert got, name


def test_essential_len_rules():
    for name, ess in [("task_struct", "task_struct"), ("task_struct___x", "task_struct"),
                      ("a___b", "a"), ("__u64", "__u64"), ("___x", "___x"), ("foo___", "foo___"),
                      ("x__y___z", "x__y"), ("abc____def", "abc____def"),
                      ("ab___c___d", "ab___c"), ("a_b", "a_b"), ("", "")]:
        assert name[:corepatch.essential_len(name)] == ess == targets.essential_name(name), name


def test_compiled_decode_matches_btf_decode():
    """Every struct, union and enum of vmlinux (a sample) and of the test objects: the
    compiled decode of a candidate gives the object ``Btf._decode`` gives."""
    btfs = [Btf.parse(elf_section(p, ".BTF")) for p in BTF_OBJECTS[:8]]
    if VMLINUX.exists():
        btfs.append(targets._parse_vmlinux(str(VMLINUX)))
    seen = 0
    for btf in btfs:
        ids = [i + btf.start_id for k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64)
               for i in cbtf.of_kind(btf._types_raw, btf._offsets, int(k))]
        for tid in ids[::max(1, len(ids) // 2000)]:
            got = targets._decoded(btf, tid)
            assert got is btf[tid]                       # cached as btf[tid] caches it
            want = btf._decode(tid - btf.start_id)
            assert got == want and type(got) is type(want), tid
            assert [type(x) for x in getattr(got, "members", getattr(got, "values", []))] == \
                [type(x) for x in getattr(want, "members", getattr(want, "values", []))]
            seen += 1
    assert seen > 100


def test_compiled_decode_refuses_what_btf_refuses():
    """A member name outside the strings: the compiled decode leaves the record to
    ``btf[tid]``, which raises its own error."""
    types, strings = _parts(elf_section(BTF_OBJECTS[0], ".BTF"))
    btf = Btf.parse(_assemble(types, strings))
    sid = next(i + 1 for i in cbtf.of_kind(btf._types_raw, btf._offsets, int(Kind.STRUCT))
               if struct.unpack_from("<I", btf._types_raw, btf._offsets[i] + 4)[0] & 0xFFFF)
    bad = bytearray(types)
    struct.pack_into("<I", bad, btf._offsets[sid - 1] + 12, len(strings) + 5)  # first member's name
    broken = Btf.parse(_assemble(bytes(bad), strings))
    assert corepatch.decode_vlen(broken._types_raw, broken._offsets[sid - 1], broken._sraw,
                                 broken._soff, broken._slen, 1024, object, object) is None
    with pytest.raises(BtfError, match="name offset"):
        targets._decoded(broken, sid)
    assert targets._decoded(btf, sid) == btf._decode(sid - 1)
