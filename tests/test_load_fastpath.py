"""The warm-load fast paths keep the load's results: what each shortcut must not change.

* The loader works on a shallow copy of the spec and copies a map or program
  spec only where it edits one (libbpf's map defaults, struct_ops): the
  caller's specs keep their values, and the kernel gets the edited ones.
* ``Map.create`` does not ask BPF_OBJ_GET_INFO_BY_FD for every map it makes:
  its ``flags`` are what the kernel reports, its ``id`` is asked for on
  first read and equals the kernel's.
* func_info/line_info are packed straight from the parsed records: the
  bytes equal the records rebased and sorted as tuples, also when the
  records are out of order.
"""
from __future__ import annotations

import array
import copy
import os
import struct

import pytest

import bpfload
from bpfload import MapType
from bpfload.btf.format import BtfExt, FuncInfo, LineInfo
from bpfload.btf.kernel import ext_records
from bpfload.loader import normalize_maps, working_copy
from bpfload.spec import FunctionSpec

from conftest import bpf_object

pytestmark = pytest.mark.kernel


def _fields(ms):
    return (ms.type, ms.key_size, ms.value_size, ms.max_entries, ms.flags)


def test_map_defaults_go_to_the_kernel_not_into_the_spec():
    obj = bpfload.BpfObject.open(bpf_object("perf_event"))
    ev = obj.spec.maps["events"]
    ev.max_entries = ev.key_size = ev.value_size = 0     # libbpf's defaults fill these in
    before = {n: _fields(ms) for n, ms in obj.spec.maps.items()}
    with obj.load():
        info = obj.maps["events"].info()
        assert (info.max_entries, info.key_size, info.value_size) == \
            (len(bpfload.possible_cpus()), 4, 4)
    assert {n: _fields(ms) for n, ms in obj.spec.maps.items()} == before
    assert obj.spec.maps["events"] is ev


def test_ring_buffer_size_is_rounded_for_the_kernel_only():
    obj = bpfload.BpfObject.open(bpf_object("ringbuf"))
    rb = obj.spec.maps["rb"]
    page = os.sysconf("SC_PAGE_SIZE")
    rb.max_entries = 3 * page + 1          # rounded up to a power-of-two number of pages
    with obj.load():
        assert obj.maps["rb"].info().max_entries == 4 * page
        assert obj.maps["rb"].max_entries == 4 * page
    assert rb.max_entries == 3 * page + 1 and obj.spec.maps["rb"] is rb


def test_named_inner_template_edited_with_its_outer_map():
    """A ring buffer template named in the object: the outer map gets the rounded one."""
    page = os.sysconf("SC_PAGE_SIZE")
    obj = bpfload.BpfObject.open(bpf_object("ringbuf"))
    spec = copy.copy(obj.spec)
    rb = spec.maps["rb"]
    rb.max_entries = page + 1
    outer = copy.copy(rb)
    outer.name, outer.type, outer.key_size, outer.value_size, outer.max_entries = \
        "outer", MapType.ARRAY_OF_MAPS, 4, 4, 1
    outer.inner = rb
    spec.maps = dict(spec.maps, outer=outer)
    work = working_copy(spec)
    normalize_maps(work)
    assert work.maps["rb"].max_entries == 2 * page and work.maps["outer"].inner is work.maps["rb"]
    assert rb.max_entries == page + 1 and outer.inner is rb and spec.maps["outer"] is outer


def test_struct_ops_load_leaves_the_program_specs_alone():
    obj = bpfload.BpfObject.open(bpf_object("struct_ops"))
    before = {n: (ps.attach_btf_id, ps.expected_attach_type, ps.autoload)
              for n, ps in obj.spec.programs.items()}
    sizes = {n: ms.value_size for n, ms in obj.spec.maps.items()}
    with obj.load():
        loaded = {n: p.info().type for n, p in obj.programs.items()}
        assert loaded and all(t == bpfload.ProgType.STRUCT_OPS for t in loaded.values())
    assert {n: (ps.attach_btf_id, ps.expected_attach_type, ps.autoload)
            for n, ps in obj.spec.programs.items()} == before
    assert {n: ms.value_size for n, ms in obj.spec.maps.items()} == sizes


@pytest.mark.parametrize("flags", [0, 1 << 3, 1 << 4, 1 << 10])  # -, RDONLY, WRONLY, MMAPABLE
def test_created_map_flags_and_id_are_the_kernels(flags):
    with bpfload.Map.create(MapType.ARRAY, 4, 8, 2, flags=flags, name="fastpath") as m:
        info = m.info()
        assert m.flags == info.flags
        assert m.id == info.id > 0
        assert bpfload.Map.from_id(m.id).close() is None


def test_map_id_first_read_after_close_says_closed():
    m = bpfload.Map.create(MapType.ARRAY, 4, 4, 1, name="fastpath")
    kid = m.info().id
    m2 = bpfload.Map.create(MapType.ARRAY, 4, 4, 1, name="fastpath")
    assert m2.id != kid
    m2.close()
    assert m2.id > 0              # known before the close: kept
    m.close()
    with pytest.raises(bpfload.MapClosedError):
        m.id


def test_loaded_object_map_ids_match_the_kernel():
    with bpfload.load(bpf_object("demo")) as obj:
        ids = {n: m.id for n, m in obj.maps.items()}
        assert ids == {n: m.info().id for n, m in obj.maps.items()}
        prog = next(iter(obj.programs.values()))
        used = set(prog.info().map_ids)
        assert used and used <= set(ids.values())     # the kernel's ids of the maps it uses
        outer = obj.maps["ports"]
        assert outer.inner_map_id and outer.inner_map_id not in ids.values()


def _reference(btf_ext, functions, layout):
    fi, li = [], []
    for name, start in layout:
        f = functions[name]
        lo, hi = f.offset, f.offset + len(f.insns)
        fi += [((r.insn_off - lo) // 8 + start, r.type_id) for r in btf_ext.func_info.get(f.section, [])
               if lo <= r.insn_off < hi]
        li += [((r.insn_off - lo) // 8 + start, r.file_name_off, r.line_off, r.line_col)
               for r in btf_ext.line_info.get(f.section, []) if lo <= r.insn_off < hi]
    return (b"".join(struct.pack("=II", *r) for r in sorted(fi)),
            b"".join(struct.pack("=IIII", *r) for r in sorted(li)))


def test_ext_records_of_every_program_match_the_reference():
    from bpfload._core import insn
    n = 0
    for name in ("globals", "demo", "subprog", "large", "core_task"):
        spec = bpfload.BpfObject.open(bpf_object(name)).spec
        for prog in spec.programs:
            layout = insn.link(prog, spec.functions).layout
            got = ext_records(spec.btf_ext, spec.functions, layout)
            assert got == _reference(spec.btf_ext, spec.functions, layout)
            assert got[1]
            n += 1
    assert n > 50


def test_ext_records_out_of_order_are_sorted():
    ext = BtfExt()
    ext.func_info = {"s": [FuncInfo(16, 7), FuncInfo(0, 5)]}
    ext.line_info = {"s": [LineInfo(24, 1, 2, 3 << 10), LineInfo(8, 4, 5, 6), LineInfo(0, 9, 9, 9),
                           LineInfo(40, 1, 1, 1)]}
    functions = {"f": FunctionSpec("f", "s", bytes(32)), "g": FunctionSpec("g", "s", bytes(16), offset=32)}
    layout = [("f", 0), ("g", 4)]
    fi, li = ext_records(ext, functions, layout)
    assert fi == array.array("I", [0, 5, 2, 7]).tobytes()
    assert li == array.array("I", [0, 9, 9, 9, 1, 4, 5, 6, 3, 1, 2, 3 << 10, 5, 1, 1, 1]).tobytes()
    assert (fi, li) == _reference(ext, functions, layout)


@pytest.fixture(params=["cython", "python"])
def insnmod(request):
    from bpfload import _pyinsn
    from bpfload._core import insn as cinsn
    return cinsn if request.param == "cython" else _pyinsn


def test_pack_ext_records_rebases_and_reports_order(insnmod):
    out = array.array("I", [7, 7])
    recs = [LineInfo(64, 1, 2, 3), LineInfo(72, 4, 5, 6)]
    assert insnmod.pack_ext_records(recs, 64, 10, 4, out, 3) == (11, True)
    assert list(out) == [7, 7, 10, 1, 2, 3, 11, 4, 5, 6]
    assert insnmod.pack_ext_records([FuncInfo(0, 9)], 0, 11, 2, out, 11) == (11, False)
    assert list(out)[-2:] == [11, 9]
    assert insnmod.pack_ext_records([], 0, 0, 2, out, 5) == (5, True)


def test_pack_ext_records_refuses_without_writing(insnmod):
    out = array.array("I", [1])
    with pytest.raises(OverflowError):
        insnmod.pack_ext_records([FuncInfo(0, 1), FuncInfo(8, -1)], 0, 0, 2, out)
    with pytest.raises(OverflowError):
        insnmod.pack_ext_records([FuncInfo(0, 1)], 8, 0, 2, out)      # before the function
    with pytest.raises(OverflowError):
        insnmod.pack_ext_records([LineInfo(0, 1, 1, 1 << 32)], 0, 0, 4, out)
    assert list(out) == [1]
    with pytest.raises(ValueError, match="width"):
        insnmod.pack_ext_records([], 0, 0, 3, out)
    with pytest.raises(TypeError, match="array"):
        insnmod.pack_ext_records([], 0, 0, 2, array.array("i"))
