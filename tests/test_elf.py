"""BPF ELF object -> ObjectSpec (bpfload.elf).  No kernel needed.

Each committed object under bpf/ is parsed and checked against what its
source implies; structural invariants are checked on every object; then
malformed objects (hand-patched and fuzzed) must raise ElfError only.
"""
from __future__ import annotations

import pathlib
import random
import struct

import pytest

from bpfload.btf import Btf, BtfExt, Kind, VarLinkage
from bpfload.constants import AttachType, MapFlags, MapType, PinType, ProgType
from bpfload.elf import kernel_map_name, parse_object
from bpfload.errors import BtfError, ElfError
from bpfload.elf.sections import BPF_F_SLEEPABLE
from bpfload.spec import FunctionSpec, GlobalVar, MapSpec, ObjectSpec, ProgramSpec, Reloc, RelocKind

ROOT = pathlib.Path(__file__).resolve().parent.parent
BPF_DIR = ROOT / "bpf"
MALFORMED_DIR = ROOT / "tests" / "data" / "malformed"
OBJECTS = sorted(BPF_DIR.glob("*.bpf.o"))

MAP, DATA, CALL, FUNC_ADDR, EXTERN = (RelocKind.MAP, RelocKind.DATA, RelocKind.CALL,
                                      RelocKind.FUNC_ADDR, RelocKind.EXTERN)


def load(name: str) -> ObjectSpec:
    return parse_object(BPF_DIR / name)


def reloc_summary(fn: FunctionSpec):
    return [(r.kind, r.target, r.addend) for r in fn.relocs]


# ---------------------------------------------------------------------------
# a minimal independent ELF reader, for patching objects in tests
# ---------------------------------------------------------------------------

class Elf:
    SHDR = struct.Struct("<IIQQQQIIQQ")
    SYM = struct.Struct("<IBBHQQ")

    def __init__(self, data: bytes):
        self.data = bytearray(data)
        self.shoff, = struct.unpack_from("<Q", data, 0x28)
        self.shentsize, self.shnum, self.shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        strtab = self.hdr(self.shstrndx)
        self.names = {}
        for i in range(self.shnum):
            h = self.hdr(i)
            n = bytes(data[strtab[4] + h[0]:data.index(b"\0", strtab[4] + h[0])]).decode()
            self.names[n] = i

    def hdr(self, i):
        return self.SHDR.unpack_from(self.data, self.shoff + i * self.shentsize)

    def hdr_pos(self, name):
        return self.shoff + self.names[name] * self.shentsize

    def sec_offset(self, name):
        return self.hdr(self.names[name])[4]

    def sec_size(self, name):
        return self.hdr(self.names[name])[5]

    def symbols(self):
        h = self.hdr(self.names[".symtab"])
        strtab = self.hdr(h[6])
        out = {}
        for i in range(h[5] // 24):
            pos = h[4] + 24 * i
            name_off, info, other, shndx, value, size = self.SYM.unpack_from(self.data, pos)
            start = strtab[4] + name_off
            n = bytes(self.data[start:self.data.index(b"\0", start)]).decode()
            out[n] = (pos, i, shndx, value, size)
        return out

    def rels(self, relsec):
        off, size = self.sec_offset(relsec), self.sec_size(relsec)
        return [(off + 16 * i,) + struct.unpack_from("<QQ", self.data, off + 16 * i) for i in range(size // 16)]

    def bytes(self) -> bytes:
        return bytes(self.data)


def patched(name: str):
    return Elf((BPF_DIR / name).read_bytes())


# ---------------------------------------------------------------------------
# structural invariants, on every object
# ---------------------------------------------------------------------------

def check_invariants(spec: ObjectSpec) -> None:
    for name, prog in spec.programs.items():
        assert spec.functions[name] is prog
        assert isinstance(prog, ProgramSpec)
    for fn in spec.functions.values():
        assert len(fn.insns) % 8 == 0 and fn.insns
        insns = [fn.insns[i:i + 8] for i in range(0, len(fn.insns), 8)]
        seen = set()
        for r in fn.relocs:
            assert r.insn not in seen
            seen.add(r.insn)
            code, regs = insns[r.insn][0], insns[r.insn][1]
            if r.kind in (MAP, DATA, FUNC_ADDR):
                assert code == 0x18 and r.insn + 1 < len(insns)
            elif r.kind == CALL:
                assert code == 0x85 and regs >> 4 == 1
            else:
                assert code in (0x18, 0x85)
            if r.kind in (CALL, FUNC_ADDR):
                callee = spec.functions[r.target]
                assert 0 <= r.addend < callee.insn_count
            elif r.kind == MAP:
                assert spec.maps[r.target].form != "data"
            elif r.kind == DATA:
                m = spec.maps[r.target]
                assert m.form == "data" and 0 <= r.addend <= m.value_size
        assert [r.insn for r in fn.relocs] == sorted(seen)
        # every bpf-to-bpf call has a CALL relocation
        i = 0
        while i < len(insns):
            if insns[i][0] == 0x18:
                i += 2
                continue
            if insns[i][0] == 0x85 and insns[i][1] >> 4 == 1:
                assert any(r.insn == i and r.kind in (CALL, EXTERN) for r in fn.relocs), (fn.name, i)
            i += 1
    for m in spec.maps.values():
        assert isinstance(m.type, MapType)
        for slot, target in m.slots.items():
            assert slot >= 0
            if m.type == MapType.PROG_ARRAY:
                assert target in spec.programs
            else:
                assert target in spec.maps
        if m.is_outer and m.form == "custom":
            assert m.inner is not None  # (a BTF outer map without 'values' gets its inner fd later)
    for v in spec.variables.values():
        m = spec.maps[v.section]
        assert m.form == "data" and v.offset + v.size <= m.value_size


#: relocation entries in code no function symbol owns (test_parity.py's weak body)
DEAD_RELOCS = {"parity_weak.bpf.o": 1}
#: objects that need a parse option (tc's map definitions: see test_parity.py)
PARSE_OPTIONS = {"parity_iproute2.bpf.o": {"map_format": "iproute2"}}


@pytest.mark.parametrize("obj", OBJECTS, ids=[p.name for p in OBJECTS])
def test_every_object_parses_consistently(obj):
    opts = PARSE_OPTIONS.get(obj.name, {})
    spec = parse_object(obj, **opts)
    check_invariants(spec)
    assert spec.name == obj.name.split(".")[0]
    assert spec.license
    # bytes in, same spec out (path and bytes agree)
    again = parse_object(obj.read_bytes(), name=spec.name, **opts)
    assert again.maps == spec.maps and again.functions.keys() == spec.functions.keys()
    for k, fn in spec.functions.items():
        assert again.functions[k] == fn


# ---------------------------------------------------------------------------
# per object: what the sources imply
# ---------------------------------------------------------------------------

def test_maps_btf():
    spec = load("maps_btf.bpf.o")
    btf = spec.btf
    assert list(spec.maps) == ["pkt_hash", "pkt_array", "pcpu_stats", "lru_pinned"]
    h = spec.maps["pkt_hash"]
    assert (h.type, h.key_size, h.value_size, h.max_entries, h.flags, h.pinning, h.form, h.section) == \
        (MapType.HASH, 4, 8, 256, int(MapFlags.NO_PREALLOC), PinType.NONE, "btf", ".maps")
    assert btf[h.btf_key_type_id].name == "__u32" and btf[h.btf_value_type_id].name == "__u64"
    a = spec.maps["pkt_array"]
    assert (a.type, a.key_size, a.value_size, a.max_entries, a.flags) == (MapType.ARRAY, 4, 8, 256, 0)
    assert (a.btf_key_type_id, a.btf_value_type_id) == (0, 0)   # key_size/value_size form
    p = spec.maps["pcpu_stats"]
    assert (p.type, p.key_size, p.value_size, p.max_entries) == (MapType.PERCPU_ARRAY, 4, 8, 2)
    lru = spec.maps["lru_pinned"]
    assert (lru.type, lru.max_entries, lru.pinning) == (MapType.LRU_HASH, 128, PinType.BY_NAME)
    for m in spec.maps.values():
        assert m.inner is None and m.slots == {} and m.numa_node is None and m.data is None
    assert list(spec.programs) == ["count_pkts"]
    prog = spec.programs["count_pkts"]
    assert (prog.type, prog.expected_attach_type, prog.section, prog.license) == \
        (ProgType.XDP, AttachType.XDP, "xdp", "GPL")
    assert [r.target for r in prog.relocs] == \
        ["pkt_hash", "pkt_hash", "pkt_array", "pcpu_stats", "pcpu_stats", "lru_pinned"]
    assert {r.kind for r in prog.relocs} == {MAP}
    assert spec.variables == {}


def test_maps_legacy():
    spec = load("maps_legacy.bpf.o")
    assert spec.maps == {
        "legacy_hash": MapSpec("legacy_hash", MapType.HASH, 4, 8, 64, form="legacy", section="maps"),
        "legacy_array": MapSpec("legacy_array", MapType.ARRAY, 4, 8, 4, form="legacy", section="maps"),
    }
    prog = spec.programs["legacy_count"]
    assert reloc_summary(prog) == [(MAP, "legacy_hash", 0), (MAP, "legacy_hash", 0), (MAP, "legacy_array", 0)]


def test_maps_custom():
    spec = load("maps_custom.bpf.o")

    def custom(name, t, ks, vs, n, map_id=-1, rel=-1, idx=-1, **kw):
        return MapSpec(name, t, ks, vs, n, form="custom", section="maps", map_id=map_id,
                       relation_id=rel, inner_index=idx, **kw)

    inner0 = custom("aom_inner0", MapType.ARRAY, 4, 8, 4, 11, 10, 0)
    inner3 = custom("hom_inner3", MapType.HASH, 4, 8, 16, 21, 20, 3)
    expected = {
        "plain_hash": custom("plain_hash", MapType.HASH, 4, 8, 1024),
        "plain_array": custom("plain_array", MapType.ARRAY, 4, 8, 1024),
        "aom_outer": custom("aom_outer", MapType.ARRAY_OF_MAPS, 4, 4, 4, 10, 11, -1, inner=inner0,
                            slots={0: "aom_inner0", 1: "aom_inner1"}),
        "aom_inner0": inner0,
        "aom_inner1": custom("aom_inner1", MapType.ARRAY, 4, 8, 4, 12, 10, 1),
        "hom_outer": custom("hom_outer", MapType.HASH_OF_MAPS, 4, 4, 16, 20, 21, -1, inner=inner3,
                            slots={3: "hom_inner3", 7: "hom_inner7"}),
        "hom_inner3": inner3,
        "hom_inner7": custom("hom_inner7", MapType.HASH, 4, 8, 16, 22, 20, 7),
        "hom_spare": custom("hom_spare", MapType.HASH, 4, 8, 16, 23, 20, -1),
    }
    assert spec.maps == expected
    assert list(spec.maps) == list(expected)
    # the template is a copy: editing it does not edit the inner map itself
    assert spec.maps["aom_outer"].inner is not spec.maps["aom_inner0"]
    assert set(spec.programs) == {"plain_write", "aom_write", "aom_read", "hom_write", "hom_read"}
    for p in spec.programs.values():
        assert (p.type, p.expected_attach_type, p.flags) == (ProgType.SYSCALL, None, BPF_F_SLEEPABLE)
    assert reloc_summary(spec.programs["plain_write"]) == [(MAP, "plain_hash", 0), (MAP, "plain_array", 0)]
    for name, target in [("aom_write", "aom_outer"), ("aom_read", "aom_outer"),
                         ("hom_write", "hom_outer"), ("hom_read", "hom_outer")]:
        assert reloc_summary(spec.programs[name]) == [(MAP, target, 0)]


def test_mim_btf():
    spec = load("mim_btf.bpf.o")
    btf = spec.btf
    inner = MapSpec("x", MapType.ARRAY, 4, 8, 4)
    for name in ("inner_a", "inner_b", "inner_c"):
        m = spec.maps[name]
        assert (m.type, m.key_size, m.value_size, m.max_entries, m.inner, m.slots) == \
            (MapType.ARRAY, 4, 8, 4, None, {})
    aom, hom, empty = spec.maps["btf_aom"], spec.maps["btf_hom"], spec.maps["btf_aom_empty"]
    assert (aom.type, aom.key_size, aom.value_size, aom.max_entries) == (MapType.ARRAY_OF_MAPS, 4, 4, 4)
    assert (hom.type, hom.key_size, hom.value_size, hom.max_entries) == (MapType.HASH_OF_MAPS, 4, 4, 8)
    assert aom.slots == {0: "inner_a", 2: "inner_b"}
    assert hom.slots == {1: "inner_b", 5: "inner_c"}
    assert empty.slots == {}
    for outer in (aom, hom, empty):
        i = outer.inner
        assert i.name == outer.name + ".inner"
        assert (i.type, i.key_size, i.value_size, i.max_entries, i.form) == \
            (inner.type, inner.key_size, inner.value_size, inner.max_entries, "btf")
        assert btf[outer.btf_key_type_id].name == "__u32" and outer.btf_value_type_id == 0
    assert {n: reloc_summary(p) for n, p in spec.programs.items()} == {
        "aom_read": [(MAP, "btf_aom", 0)], "hom_read": [(MAP, "btf_hom", 0)],
        "empty_read": [(MAP, "btf_aom_empty", 0)]}


def test_prog_array():
    spec = load("prog_array.bpf.o")
    jt = spec.maps["jmp_table"]
    assert (jt.type, jt.key_size, jt.value_size, jt.max_entries, jt.inner) == \
        (MapType.PROG_ARRAY, 4, 4, 4, None)
    assert jt.slots == {0: "tail_a", 1: "tail_b"}
    assert list(spec.programs) == ["tail_a", "tail_b", "tail_c", "tail_entry"]
    assert all(p.type == ProgType.XDP for p in spec.programs.values())
    assert reloc_summary(spec.programs["tail_entry"]) == [(MAP, "jmp_table", 0)]


def test_globals():
    spec = load("globals.bpf.o")
    assert list(spec.maps) == [".data", ".rodata", ".rodata.str1.1", ".bss"]
    data, ro, s, bss = (spec.maps[n] for n in spec.maps)
    mm, rdonly = int(MapFlags.MMAPABLE), int(MapFlags.RDONLY_PROG)
    assert (data.type, data.key_size, data.value_size, data.max_entries, data.flags, data.freeze) == \
        (MapType.ARRAY, 4, 8, 1, mm, False)
    assert data.data == struct.pack("<iI", 0x1234abcd, 100)
    assert (ro.value_size, ro.flags, ro.freeze) == (16, rdonly | mm, True)
    assert ro.data == struct.pack("<IIQ", 1, 0, 0)
    # string literals only: no visible variable, so not mmapable (libbpf's rule)
    assert (s.value_size, s.flags, s.freeze, s.data) == (16, rdonly, True, b"bpfload-globals\0")
    assert (bss.value_size, bss.flags, bss.freeze, bss.data) == (20, mm, False, bytes(20))
    for m in spec.maps.values():
        assert m.form == "data" and m.section == m.name
    assert spec.btf[data.btf_value_type_id].name == ".data" and data.btf_key_type_id == 0
    assert s.btf_value_type_id == 0  # no DATASEC for merged strings
    assert spec.variables == {
        "data_magic": GlobalVar("data_magic", ".data", 0, 4),
        "data_calls": GlobalVar("data_calls", ".data", 4, 4),
        "bss_out": GlobalVar("bss_out", ".bss", 0, 8),
        "bss_in": GlobalVar("bss_in", ".bss", 8, 4),
        "bss_tag_char": GlobalVar("bss_tag_char", ".bss", 12, 1),
        "bss_calls": GlobalVar("bss_calls", ".bss", 16, 4),
        "cfg_mult": GlobalVar("cfg_mult", ".rodata", 0, 4),
        "cfg_add": GlobalVar("cfg_add", ".rodata", 8, 8),
    }
    prog = spec.programs["compute"]
    assert sorted(reloc_summary(prog), key=str) == sorted([
        (DATA, ".bss", 16), (DATA, ".data", 4), (DATA, ".rodata.str1.1", 0), (DATA, ".bss", 12),
        (DATA, ".bss", 8), (DATA, ".rodata", 0), (DATA, ".rodata", 8), (DATA, ".bss", 0)], key=str)
    # the BTF in the spec has DATASEC sizes and VAR offsets fixed up from the ELF
    for sec in (".data", ".rodata", ".bss"):
        ds = spec.btf.find(sec, Kind.DATASEC)
        assert ds.size == spec.maps[sec].value_size
        for vsi in ds.vars:
            v = spec.btf[vsi.type]
            assert (vsi.offset, vsi.size) == (spec.variables[v.name].offset, spec.variables[v.name].size)


def test_subprog():
    spec = load("subprog.bpf.o")
    assert list(spec.programs) == ["sub_xdp", "sub_tc"]
    assert set(spec.functions) == {"compute", "mix", "xdp_local", "sub_xdp", "sub_tc"}
    for name in ("compute", "mix", "xdp_local"):
        fn = spec.functions[name]
        assert type(fn) is FunctionSpec
    assert spec.functions["compute"].section == ".text" and spec.functions["xdp_local"].section == "xdp"
    assert spec.functions["mix"].offset == 17 * 8
    # clang resolved compute -> mix and sub_xdp -> xdp_local itself: synthesized CALLs
    assert reloc_summary(spec.functions["compute"]) == [(CALL, "mix", 0), (MAP, "sub_results", 0)]
    assert reloc_summary(spec.functions["sub_xdp"]) == [(CALL, "compute", 0), (CALL, "xdp_local", 0)]
    assert reloc_summary(spec.functions["sub_tc"]) == [(CALL, "compute", 0)]
    assert spec.programs["sub_tc"].type == ProgType.SCHED_CLS
    assert [r.insn for r in spec.functions["sub_xdp"].relocs] == [8, 10]


def test_parse_relocs_every_kind():
    """bpf/parse_relocs.bpf.c (ours): exact instruction indexes too."""
    spec = load("parse_relocs.bpf.o")
    check_invariants(spec)
    assert spec.license == "Dual BSD/GPL" and spec.kern_version == 0x060C00
    assert list(spec.programs) == ["reloc_xdp", "reloc_tc_local", "reloc_tc"]
    assert {n for n, f in spec.functions.items() if type(f) is FunctionSpec} == \
        {"text_global", "text_leaf", "text_cb", "xdp_cb", "tc_local"}
    xdp = spec.programs["reloc_xdp"]
    assert (xdp.license, xdp.kern_version, xdp.autoload) == ("Dual BSD/GPL", 0x060C00, True)
    assert xdp.relocs == [
        Reloc(4, MAP, "counters"),
        Reloc(9, DATA, ".rodata", 0),                  # ro_var
        Reloc(12, CALL, "text_global", 0),             # relocation against the function symbol
        Reloc(13, DATA, ".data.tbl", 0),               # tbl (imm holds the +4 of tbl[1])
        Reloc(17, DATA, ".rodata.cfg", 0),
        Reloc(25, FUNC_ADDR, "text_cb", 0),            # static callback in .text (section symbol)
        Reloc(31, FUNC_ADDR, "xdp_cb", 0),             # callback in the program's own section
        Reloc(36, EXTERN, "LINUX_KERNEL_VERSION"),     # __kconfig
        Reloc(39, CALL, "text_leaf", 0),               # static .text function (section symbol)
        Reloc(40, EXTERN, "bpf_prog_active"),          # __ksym variable
    ]
    tc = spec.programs["reloc_tc"]
    assert (tc.section, tc.type, tc.autoload) == ("?tc", ProgType.SCHED_CLS, False)
    assert tc.relocs == [
        Reloc(1, EXTERN, "bpf_rcu_read_lock"),         # kfunc calls
        Reloc(2, EXTERN, "bpf_rcu_read_unlock"),
        Reloc(4, CALL, "text_leaf", 0),
        Reloc(5, DATA, ".bss", 8),                     # static variable: section symbol + imm
    ]
    assert spec.programs["reloc_tc_local"].relocs == [Reloc(1, CALL, "tc_local", 0),
                                                      Reloc(4, CALL, "tc_local", 0)]
    assert spec.functions["text_global"].relocs == [Reloc(0, CALL, "text_leaf", 0), Reloc(1, DATA, ".data", 0)]
    assert spec.functions["text_leaf"].relocs == [Reloc(0, DATA, ".bss", 8)]
    assert spec.functions["text_cb"].relocs == [Reloc(2, DATA, ".bss", 16)]
    assert spec.functions["xdp_cb"].relocs == [Reloc(0, DATA, ".bss", 0)]
    # custom data sections and the hidden variable
    assert list(spec.maps) == ["counters", ".data", ".rodata", ".data.tbl", ".rodata.cfg", ".bss"]
    assert spec.maps[".data.tbl"].data == struct.pack("<4I", 1, 2, 3, 4)
    assert spec.maps[".rodata.cfg"].freeze and spec.maps[".rodata.cfg"].data == struct.pack("<Q", 9)
    assert spec.variables["hidden_var"] == GlobalVar("hidden_var", ".bss", 0, 4)
    assert spec.variables["bss_static"] == GlobalVar("bss_static", ".bss", 8, 8)
    assert spec.btf.find("hidden_var", Kind.VAR).linkage == VarLinkage.STATIC  # hidden -> static
    # extern-backed DATASECs are left alone
    assert spec.btf.find(".ksyms", Kind.DATASEC) is not None
    # tbl[1] is read through imm: the data relocation keeps libbpf's sym.value + imm rule
    insn = xdp.insns[13 * 8:14 * 8]
    assert struct.unpack_from("<i", insn, 4)[0] == 0


def test_btf_and_ext_in_spec():
    spec = load("parse_btf.bpf.o")
    assert isinstance(spec.btf, Btf) and isinstance(spec.btf_ext, BtfExt)
    prog = spec.programs["core_prog"]
    info = spec.btf_ext.for_function(prog.section, prog.offset, len(prog.insns))
    assert len(info.func_info) == 1 and spec.btf[info.func_info[0].type_id].name == "core_prog"
    assert len(info.core_relos) == 5
    assert all(r.insn_off < prog.insn_count for r in info.core_relos + info.line_info)
    helper = spec.functions["helper_fn"]
    assert type(helper) is FunctionSpec and helper.section == ".text"  # global .text: subprogram
    bss = spec.btf.find(".bss", Kind.DATASEC)
    assert bss.size == spec.maps[".bss"].value_size
    offs = [v.offset for v in bss.vars]
    assert offs == sorted(offs) and len(set(offs)) == len(offs)


def test_sections_object():
    spec = load("sections.bpf.o")
    assert len(spec.programs) == 25 and spec.maps == {}
    assert spec.programs["p_kprobe"].attach_target == "do_nanosleep"
    assert spec.programs["p_tracepoint"].attach_target == "syscalls/sys_enter_getpid"
    assert spec.programs["p_fentry"].expected_attach_type == AttachType.TRACE_FENTRY
    assert spec.programs["p_cgroup_sock"].expected_attach_type == AttachType.CGROUP_INET_SOCK_CREATE


def test_names_and_copy():
    data = (BPF_DIR / "maps_btf.bpf.o").read_bytes()
    assert parse_object(data).name == "object"
    assert parse_object(data, name="custom").name == "custom"
    assert parse_object(BPF_DIR / "maps_btf.bpf.o", name="x").name == "x"
    assert parse_object(str(BPF_DIR / "maps_btf.bpf.o")).name == "maps_btf"
    spec = load("mim_btf.bpf.o")
    c = spec.copy()
    c.maps["btf_aom"].slots[3] = "inner_c"
    c.maps["btf_aom"].inner.max_entries = 99
    c.programs["aom_read"].relocs.clear()
    assert spec.maps["btf_aom"].slots == {0: "inner_a", 2: "inner_b"}
    assert spec.maps["btf_aom"].inner.max_entries == 4
    assert spec.programs["aom_read"].relocs
    assert c.functions["aom_read"] is c.programs["aom_read"]


@pytest.mark.parametrize("obj,section,expected", [
    ("globals", ".data", "globals.data"),
    ("globals", ".rodata", "globals.rodata"),
    ("globals", ".bss", "globals.bss"),
    ("maps_custom", ".bss", "maps_cus.bss"),
    ("my_object_name", ".rodata", "my_objec.rodata"),
    ("my_object_name", ".bss", "my_objec.bss"),
    ("my_object_name", ".kconfig", "my_obje.kconfig"),
    ("globals", ".rodata.str1.1", ".rodata.str1.1"),
    ("globals", ".rodata.abracadabra", ".rodata.abracad"),
    ("globals", ".data.tbl", ".data.tbl"),
    ("a-b c", ".data", "a_b_c.data"),
    ("x.bpf", ".data", "x.data"),
    ("averyveryverylongname", ".data", "averyver.data"),
])
def test_kernel_map_name(obj, section, expected):
    got = kernel_map_name(obj, section)
    assert got == expected and len(got) <= 15


# ---------------------------------------------------------------------------
# malformed objects: targeted
# ---------------------------------------------------------------------------

def expect_elf_error(data: bytes, match: str, **attrs) -> ElfError:
    with pytest.raises(ElfError, match=match) as ei:
        parse_object(data, name="bad")
    assert ei.value.object == "bad"
    for k, v in attrs.items():
        assert getattr(ei.value, k) == v, (k, getattr(ei.value, k))
    return ei.value


def test_not_elf():
    expect_elf_error(b"", "not an ELF")
    expect_elf_error(b"hello world, not an object", "not an ELF")
    expect_elf_error((BPF_DIR / "maps_btf.bpf.o").read_bytes()[:40], "malformed ELF")


@pytest.mark.parametrize("offset,value,match", [
    (4, b"\x01", "malformed ELF|ELF class 32"),     # ELFCLASS32
    (5, b"\x02", "big-endian|malformed ELF"),        # ELFDATA2MSB
    (18, struct.pack("<H", 62), "not a BPF object"),  # EM_X86_64
    (16, struct.pack("<H", 2), "not a relocatable"),  # ET_EXEC
])
def test_wrong_elf_kind(offset, value, match):
    e = patched("maps_btf.bpf.o")
    e.data[offset:offset + len(value)] = value
    expect_elf_error(e.bytes(), match)


def _first_rel(e: Elf, relsec: str):
    pos, r_offset, r_info = e.rels(relsec)[0]
    return pos, r_offset, r_info


def test_relocation_offset_out_of_range():
    e = patched("maps_legacy.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".relxdp")
    struct.pack_into("<Q", e.data, pos, 0x100000)
    err = expect_elf_error(e.bytes(), "outside the section", section="xdp", symbol="legacy_hash",
                           offset=0x100000)
    assert "legacy_hash" in str(err) and "'xdp'" in str(err) and "0x100000" in str(err)


def test_relocation_offset_unaligned():
    e = patched("maps_legacy.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".relxdp")
    struct.pack_into("<Q", e.data, pos, r_offset + 4)
    expect_elf_error(e.bytes(), "not 8-byte aligned", section="xdp", offset=r_offset + 4)


def test_relocation_against_wrong_instruction():
    e = patched("maps_legacy.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".relxdp")
    code_at_0 = e.data[e.sec_offset("xdp")]
    assert code_at_0 not in (0x18, 0x85)
    struct.pack_into("<Q", e.data, pos, 0)
    expect_elf_error(e.bytes(), "neither ld_imm64 nor call", section="xdp", symbol="legacy_hash", offset=0)
    # the second half of an ld_imm64
    e = patched("maps_legacy.bpf.o")
    struct.pack_into("<Q", e.data, pos, r_offset + 8)
    expect_elf_error(e.bytes(), "neither ld_imm64 nor call")


def test_relocation_bad_symbol_index():
    e = patched("maps_legacy.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".relxdp")
    struct.pack_into("<Q", e.data, pos + 8, (9999 << 32) | (r_info & 0xFFFFFFFF))
    expect_elf_error(e.bytes(), "bad symbol index 9999", section="xdp", offset=r_offset)


def test_call_relocation_against_non_pseudo_call():
    e = patched("subprog.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".relxdp")
    insn = e.sec_offset("xdp") + r_offset
    assert e.data[insn] == 0x85
    e.data[insn + 1] = 0  # src_reg 0: a helper call
    expect_elf_error(e.bytes(), "not a bpf-to-bpf call", section="xdp")


def test_map_definitions_overlap_or_missing():
    e = patched("maps_legacy.bpf.o")
    pos = e.symbols()["legacy_array"][0]
    struct.pack_into("<Q", e.data, pos + 8, 4)  # st_value: inside legacy_hash
    expect_elf_error(e.bytes(), "overlaps the previous one", section="maps", symbol="legacy_array")
    e = patched("maps_legacy.bpf.o")
    struct.pack_into("<Q", e.data, pos + 8, 36)
    expect_elf_error(e.bytes(), "extends past the section end|lies outside the", section="maps", symbol="legacy_array")
    # legacy_hash turned into a section symbol: no longer a map, its relocations point at nothing
    e = patched("maps_legacy.bpf.o")
    pos = e.symbols()["legacy_hash"][0]
    e.data[pos + 4] = (1 << 4) | 3  # STB_GLOBAL, STT_SECTION
    expect_elf_error(e.bytes(), "no ELF symbol for variable 'legacy_hash'")  # BTF notices first
    struct.pack_into("<I", e.data, e.hdr_pos(".BTF"), 0)  # without .BTF the relocation does
    expect_elf_error(e.bytes(), "where no map is defined", section="xdp")


def test_unknown_map_type_legacy_and_custom():
    for obj, sym in (("maps_legacy.bpf.o", "legacy_array"), ("maps_custom.bpf.o", "hom_spare")):
        e = patched(obj)
        pos, idx, shndx, value, size = e.symbols()[sym]
        struct.pack_into("<I", e.data, e.sec_offset("maps") + value, 99)
        err = expect_elf_error(e.bytes(), "unknown map type 99", section="maps", symbol=sym)
        assert "highest known is 33" in str(err)


def test_unknown_map_type_btf():
    e = patched("maps_btf.bpf.o")
    raw = bytes(e.data[e.sec_offset(".BTF"):e.sec_offset(".BTF") + e.sec_size(".BTF")])
    btf = Btf.parse(raw)
    pkt_hash = btf.resolve(btf.find("pkt_hash").type)
    arr = btf[btf[pkt_hash.member("type").type].type]
    hdr_len, type_off = struct.unpack_from("<II", raw, 4)[0], struct.unpack_from("<I", raw, 8)[0]
    rec = e.sec_offset(".BTF") + hdr_len + type_off + btf._offsets[arr.id - 1]
    assert struct.unpack_from("<I", e.data, rec + 20)[0] == 1
    struct.pack_into("<I", e.data, rec + 20, 4242)
    expect_elf_error(e.bytes(), "unknown map type 4242", section=".maps")


def test_custom_map_of_bad_size():
    e = patched("maps_custom.bpf.o")
    pos = e.symbols()["plain_array"][0]
    struct.pack_into("<Q", e.data, pos + 16, 24)
    expect_elf_error(e.bytes(), "map definition of 24 bytes", section="maps", symbol="plain_array")


def test_custom_missing_template():
    e = patched("maps_custom.bpf.o")
    pos, idx, shndx, value, size = e.symbols()["aom_outer"]
    struct.pack_into("<i", e.data, e.sec_offset("maps") + value + 28, 99)  # relation_id
    err = expect_elf_error(e.bytes(), "failed to find map-in-map aom_outer inner template map",
                           symbol="aom_outer")
    assert isinstance(err, ElfError)


def test_custom_inner_without_outer_and_slot_clash():
    e = patched("maps_custom.bpf.o")
    value = e.symbols()["aom_inner1"][3]
    struct.pack_into("<i", e.data, e.sec_offset("maps") + value + 28, 77)
    expect_elf_error(e.bytes(), "names no map-in-map outer", symbol="aom_inner1")
    e = patched("maps_custom.bpf.o")
    struct.pack_into("<i", e.data, e.sec_offset("maps") + value + 32, 0)  # slot 0 again
    expect_elf_error(e.bytes(), "slot 0 of 'aom_outer' claimed by both")
    e = patched("maps_custom.bpf.o")
    struct.pack_into("<i", e.data, e.sec_offset("maps") + value + 24, 10)  # duplicate map_id
    expect_elf_error(e.bytes(), "map_id 10 used by both")


def test_custom_bad_pinning():
    e = patched("maps_custom.bpf.o")
    value = e.symbols()["plain_hash"][3]
    struct.pack_into("<I", e.data, e.sec_offset("maps") + value + 16, 2)
    expect_elf_error(e.bytes(), "invalid pinning value 2", symbol="plain_hash")


def test_section_past_end_of_file():
    e = patched("maps_btf.bpf.o")
    struct.pack_into("<Q", e.data, e.hdr_pos(".BTF") + 32, 1 << 40)  # sh_size
    expect_elf_error(e.bytes(), "extends past the end of the file", section=".BTF")


def test_corrupt_btf_is_btf_error_with_object():
    e = patched("maps_btf.bpf.o")
    e.data[e.sec_offset(".BTF")] = 0
    err = expect_elf_error(e.bytes(), "bad BTF magic", section=".BTF")
    assert isinstance(err, BtfError) and "object 'bad'" in str(err)


def test_btf_maps_without_btf():
    e = patched("maps_btf.bpf.o")
    struct.pack_into("<I", e.data, e.hdr_pos(".BTF"), 0)  # rename .BTF to "" (name offset 0)
    expect_elf_error(e.bytes(), "BTF-defined maps need a .BTF section", section=".maps")


def test_map_in_map_slot_relocation_errors():
    e = patched("mim_btf.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".rel.maps")
    struct.pack_into("<Q", e.data, pos, 0)  # inside inner_a, which has no 'values'
    expect_elf_error(e.bytes(), "has no 'values' member", section=".maps")
    e = patched("prog_array.bpf.o")
    pos, r_offset, r_info = _first_rel(e, ".rel.maps")
    sym_jt = e.symbols()["jmp_table"][1]
    struct.pack_into("<Q", e.data, pos + 8, (sym_jt << 32) | (r_info & 0xFFFFFFFF))
    expect_elf_error(e.bytes(), "not a program", section=".maps")


def test_function_symbol_out_of_bounds():
    e = patched("prog_array.bpf.o")
    pos = e.symbols()["tail_c"][0]
    struct.pack_into("<Q", e.data, pos + 16, 0x10000)
    expect_elf_error(e.bytes(), "extends past the section end", section="xdp", symbol="tail_c")
    e = patched("prog_array.bpf.o")
    struct.pack_into("<Q", e.data, pos + 8, 4)
    expect_elf_error(e.bytes(), "whole instructions", symbol="tail_c")


def test_bad_version_section():
    e = patched("parse_relocs.bpf.o")
    struct.pack_into("<Q", e.data, e.hdr_pos("version") + 32, 3)
    expect_elf_error(e.bytes(), "'version' section must be 4 bytes", section="version")


# ---------------------------------------------------------------------------
# malformed objects: deterministic fuzzing, and the crashers it found
# ---------------------------------------------------------------------------

def _mutations(data: bytes, rng: random.Random, count: int):
    e = Elf(data)
    hot = []  # byte ranges worth hitting: ELF header, section headers, symtab, relocations, maps, BTF
    hot.append((0, 64))
    hot.append((e.shoff, e.shoff + e.shnum * e.shentsize))
    for name in e.names:
        if name in (".symtab", "maps", ".maps", ".BTF", ".BTF.ext", ".strtab") or name.startswith(".rel"):
            if name.startswith(".rel.debug"):
                continue
            off, size = e.sec_offset(name), e.sec_size(name)
            if size:
                hot.append((off, off + size))
    for i in range(count):
        blob = bytearray(data)
        how = i % 4
        if how == 0:
            blob = blob[:rng.randrange(len(blob))]
        else:
            for _ in range(rng.randint(1, 3 if how == 1 else 8)):
                lo, hi = rng.choice(hot) if how != 3 else (0, len(blob))
                pos = rng.randrange(lo, hi)
                blob[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256),
                                        blob[pos] ^ (1 << rng.randrange(8))])
        yield bytes(blob)


@pytest.mark.parametrize("obj", OBJECTS, ids=[p.name for p in OBJECTS])
def test_fuzz_only_elf_error(obj):
    data = obj.read_bytes()
    rng = random.Random(f"elf-{obj.name}")
    outcomes = {"ok": 0, "ElfError": 0}
    for blob in _mutations(data, rng, 60):
        try:
            spec = parse_object(blob, name="fuzz")
        except ElfError as e:
            assert e.object == "fuzz"
            outcomes["ElfError"] += 1
            continue
        check_invariants(spec)
        spec.copy()
        if spec.btf is not None:
            spec.btf.to_bytes()
        outcomes["ok"] += 1
    assert outcomes["ElfError"] >= 15  # the truncations alone


MALFORMED = sorted(MALFORMED_DIR.glob("*")) if MALFORMED_DIR.exists() else []


@pytest.mark.parametrize("path", MALFORMED, ids=[p.name for p in MALFORMED])
def test_malformed_regressions(path):
    """Inputs that once crashed the parser with something other than ElfError."""
    with pytest.raises(ElfError):
        parse_object(path.read_bytes(), name=path.name)


@pytest.mark.parametrize("obj", OBJECTS, ids=[p.name for p in OBJECTS])
def test_reloc_indexes_match_the_elf_relocation_entries(obj):
    """Every relocation entry pyelftools reads from .rel<section> lands on the instruction
    index bpfload reports, in the function that holds it; relocations bpfload has beyond
    those are calls clang resolved itself (a pseudo call with no entry)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    spec = parse_object(obj, **PARSE_OPTIONS.get(obj.name, {}))
    entries = {}          # executable section name -> sorted entry offsets
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec.name.startswith(".rel"):
                target = elf.get_section(sec["sh_info"])
                if target["sh_flags"] & 0x4:          # SHF_EXECINSTR
                    entries[target.name] = sorted(r["r_offset"] for r in sec.iter_relocations())
    checked = 0
    for fn in spec.functions.values():
        lo, hi = fn.offset, fn.offset + len(fn.insns)
        from_elf = {(off - lo) // 8 for off in entries.get(fn.section, ()) if lo <= off < hi}
        ours = {r.insn for r in fn.relocs}
        assert from_elf <= ours, f"{fn.name}: entries at {sorted(from_elf - ours)} not reported"
        for idx in ours - from_elf:
            r = next(r for r in fn.relocs if r.insn == idx)
            code, src = fn.insns[idx * 8], fn.insns[idx * 8 + 1] >> 4
            assert r.kind == RelocKind.CALL and code == 0x85 and src == 1, \
                f"{fn.name}: relocation at {idx} has no ELF entry and is not a pseudo call"
        checked += len(from_elf)
    # every entry of an executable section belongs to exactly one function, but for
    # entries in an overridden weak body the linker left without a symbol (dead code)
    dead = DEAD_RELOCS.get(obj.name, 0)
    assert checked == sum(len(offs) for offs in entries.values()) - dead
