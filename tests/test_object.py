"""Loading whole objects: each case is loaded, *run* with BPF_PROG_TEST_RUN,
and its maps read back, so the test sees the program used the right maps."""
from __future__ import annotations

import errno
import re
import struct

import pytest

import bpfload
from bpfload import MapType, ProgType
from conftest import bpf_object, sysfs_cpus

pytestmark = pytest.mark.kernel


def pkt(first: int, length: int = 64) -> bytes:
    """An Ethernet-sized test packet whose first byte is *first*."""
    return bytes([first]) + bytes(length - 1)


def u64(b) -> int:
    return struct.unpack("=Q", b)[0]


# --------------------------------------------------------------------------
# the three map-definition forms

def test_btf_defined_maps(bpffs):
    with bpfload.load(bpf_object("maps_btf"), pin_root=bpffs) as obj:
        m = obj.maps
        assert m["pkt_hash"].type == MapType.HASH and m["pkt_hash"].flags & 1  # NO_PREALLOC
        assert (m["pkt_array"].key_size, m["pkt_array"].value_size) == (4, 8)
        assert m["pcpu_stats"].type == MapType.PERCPU_ARRAY
        prog = obj.programs["count_pkts"]
        assert prog.type == ProgType.XDP
        for first in (7, 7, 7, 9):
            assert prog.test_run(pkt(first)).retval == 2  # XDP_PASS
        assert {struct.unpack("=I", k)[0]: u64(v) for k, v in obj["pkt_hash"].items()} == {7: 3, 9: 1}
        assert u64(obj["pkt_array"][7]) == 3 and u64(obj["pkt_array"][9]) == 1
        assert obj["pcpu_stats"].sum(0) == 4
        assert obj["pcpu_stats"].sum(1) == 4 * 64
        # pinned by name under pin_root, and the pin outlives the object
        path = bpffs / "lru_pinned"
        assert path.exists()
        assert obj.pins_created == [str(path)]
        lru_id = obj["lru_pinned"].id
    with bpfload.Map.from_pin(path) as again:
        assert again.id == lru_id
        assert u64(again[9]) == 64


def test_legacy_maps():
    with bpfload.load(bpf_object("maps_legacy")) as obj:
        prog = obj.programs["legacy_count"]
        for first, n in ((1, 60), (1, 70), (5, 80)):
            assert prog.test_run(pkt(first, n)).retval == 2
        assert u64(obj["legacy_hash"][1]) == 2 and u64(obj["legacy_hash"][5]) == 1
        assert u64(obj["legacy_array"][0]) == 210
        assert obj.maps["legacy_hash"].max_entries == 64


CTX = struct.Struct("=IIQ")  # {u32 slot; u32 key; u64 value}


def run_ctx(prog, slot, key, value=0):
    r = prog.test_run(ctx=bytearray(CTX.pack(slot, key, value)))
    return r


def test_custom_form_and_map_in_map_prepopulated():
    with bpfload.load(bpf_object("maps_custom")) as obj:
        # plain maps from BMAP_COM_EXT0
        assert run_ctx(obj.programs["plain_write"], 0, 5, 77).retval == 0
        assert u64(obj["plain_hash"][5]) == 77 and u64(obj["plain_array"][5]) == 77
        assert obj.maps["plain_hash"].max_entries == 1024

        # ARRAY_OF_MAPS: inner maps prepopulated at their inner_index
        outer = obj["aom_outer"]
        assert outer[0] == obj["aom_inner0"].id
        assert outer[1] == obj["aom_inner1"].id
        assert outer.lookup(2) is None
        w, r = obj.programs["aom_write"], obj.programs["aom_read"]
        assert run_ctx(w, 1, 3, 0xbeef).retval == 1
        assert u64(obj["aom_inner1"][3]) == 0xbeef       # the kernel used inner1 at slot 1
        assert u64(obj["aom_inner0"][3]) == 0
        assert run_ctx(w, 2, 0, 1).retval == 0            # slot 2 empty
        obj["aom_inner0"][2] = 41
        assert run_ctx(r, 0, 2).retval == 1

        # HASH_OF_MAPS: slots 3 and 7, spare not prepopulated
        hom = obj["hom_outer"]
        assert hom[3] == obj["hom_inner3"].id and hom[7] == obj["hom_inner7"].id
        assert hom.lookup(0) is None and len(hom.keys()) == 2
        assert run_ctx(obj.programs["hom_write"], 7, 9, 123).retval == 1
        assert u64(obj["hom_inner7"][9]) == 123
        assert run_ctx(obj.programs["hom_write"], 4, 9, 1).retval == 0
        hom[4] = obj["hom_spare"]                           # insert from user space
        assert run_ctx(obj.programs["hom_write"], 4, 9, 5).retval == 1
        assert u64(obj["hom_spare"][9]) == 5
        # creation order: every plain/inner map before any outer map
        order = obj.map_order
        assert order.index("aom_outer") > order.index("aom_inner1")
        assert order.index("hom_outer") > order.index("hom_spare")


def test_btf_map_in_map_static_initializers():
    with bpfload.load(bpf_object("mim_btf")) as obj:
        aom, hom = obj["btf_aom"], obj["btf_hom"]
        assert aom[0] == obj["inner_a"].id and aom[2] == obj["inner_b"].id
        assert aom.lookup(1) is None
        assert hom[1] == obj["inner_b"].id and hom[5] == obj["inner_c"].id
        assert obj["btf_aom_empty"].lookup(0) is None
        obj["inner_a"][1] = 0xa1
        obj["inner_c"][1] = 0xa3
        ctx = bytearray(CTX.pack(0, 1, 0))
        assert obj.programs["aom_read"].test_run(ctx=ctx).retval == 1
        assert CTX.unpack(ctx)[2] == 0xa1          # the kernel writes ctx back in place
        ctx = bytearray(CTX.pack(5, 1, 0))
        assert obj.programs["hom_read"].test_run(ctx=ctx).retval == 1
        assert CTX.unpack(ctx)[2] == 0xa3
        assert run_ctx(obj.programs["empty_read"], 0, 1).retval == 0


# --------------------------------------------------------------------------
# global data

def test_global_data_rodata_set_from_python():
    obj = bpfload.BpfObject.open(bpf_object("globals"))
    assert obj.rodata["cfg_mult"] == 1
    obj.rodata["cfg_mult"] = 3
    obj.rodata["cfg_add"] = 4294967296000
    with pytest.raises(ValueError):
        obj.rodata["cfg_mult"] = b"\x01"          # wrong size
    with pytest.raises(KeyError):
        obj.rodata["nope"] = 1
    with obj.load():
        assert isinstance(obj.maps[".rodata"], bpfload.Map)
        r = obj.programs["compute"].test_run(struct.pack("=I", 7) + bytes(60))
        out = 7 * 3 + 4294967296000
        assert r.retval == out & 0xffffffff
        assert obj.bss["bss_out"] == out
        assert obj.bss["bss_in"] == 7
        assert obj.bss["bss_calls"] == 1
        assert obj.data["data_calls"] == 101 and obj.data["data_magic"] == 0x1234abcd
        # .rodata is frozen: user space can no longer write it
        with pytest.raises(bpfload.PermissionDeniedError):
            obj.maps[".rodata"].update(0, bytes(obj.maps[".rodata"].value_size))
        # .data can be changed live
        obj.data["data_calls"] = 5
        obj.programs["compute"].test_run(struct.pack("=I", 1) + bytes(60))
        assert obj.data["data_calls"] == 6
        # the kernel names follow libbpf: object-name prefix + section name
        assert obj.maps[".rodata"].info().name.endswith(".rodata")


def test_spec_is_not_modified_by_load():
    obj = bpfload.BpfObject.open(bpf_object("subprog"))
    before = {n: f.insns for n, f in obj.spec.functions.items()}
    with obj.load():
        pass
    assert {n: f.insns for n, f in obj.spec.functions.items()} == before


# --------------------------------------------------------------------------
# subprograms

@pytest.mark.parametrize("x", [0, 5, 40])
def test_subprogram_called_from_two_programs(x):
    with bpfload.load(bpf_object("subprog")) as obj:
        assert obj.programs["sub_xdp"].test_run(pkt(x)).retval == 3 * x + 111
        assert obj.programs["sub_tc"].test_run(pkt(x)).retval == 3 * x + 11
        res = obj["sub_results"]
        assert u64(res[0]) == 3 * x + 11 and u64(res[1]) == 3 * x + 11


# --------------------------------------------------------------------------
# program arrays

def test_prog_array_static_initializer():
    with bpfload.load(bpf_object("prog_array")) as obj:
        entry = obj.programs["tail_entry"]
        assert entry.test_run(pkt(0)).retval == 100
        assert entry.test_run(pkt(1)).retval == 200
        assert entry.test_run(pkt(2)).retval == 1       # empty slot
        obj["jmp_table"][2] = obj.programs["tail_c"]
        assert entry.test_run(pkt(2)).retval == 300
        assert obj["jmp_table"][0] == obj.programs["tail_a"].id


# --------------------------------------------------------------------------
# verifier errors

def test_verifier_rejection_carries_log_and_closes_everything():
    obj = bpfload.BpfObject.open(bpf_object("verifier_reject"))
    with pytest.raises(bpfload.LoadError) as ei:
        obj.load()
    e = ei.value
    assert e.program == "bad_deref" and e.errno == errno.EACCES
    assert "invalid mem access" in e.log
    assert "invalid mem access" in str(e) and "bad_deref" in str(e)
    assert "the verifier refused the program" in str(e)
    # func_info/line_info went with the program: the log names the source line
    assert "verifier_reject.bpf.c:29" in str(e) and "return *v;" in e.log
    assert not obj.loaded
    with pytest.raises(bpfload.BpfError):
        obj.load()


def test_autoload_false_skips_a_program():
    obj = bpfload.BpfObject.open(bpf_object("verifier_reject"))
    obj.programs["bad_deref"].autoload = False
    with obj.load():
        assert list(obj.programs) == ["good_prog"]
        assert obj.programs["good_prog"].test_run(pkt(0)).retval == 2


def test_log_level_gives_a_log_on_success():
    obj = bpfload.BpfObject.open(bpf_object("verifier_reject"))
    obj.programs["bad_deref"].autoload = False
    with obj.load(log_level=2):
        prog = obj.programs["good_prog"]
        assert prog.tag
        log = prog.verifier_log
        m = re.search(r"processed (\d+) insns", log or "")
        assert m, log
        # the verifier counted what the kernel reports as verified
        assert int(m.group(1)) == prog.info().verified_insns
    with bpfload.load(bpf_object("verifier_reject").parent / "subprog.bpf.o") as quiet:
        assert all(p.verifier_log is None for p in quiet.programs.values())   # log_level 0


def test_verifier_log_larger_than_the_first_buffer():
    """log_level=2 on the large object writes more than the first 64 KiB buffer: the load
    still succeeds (one exact-size retry) and the whole log is kept."""
    from bpfload._core import syscall as _sys
    obj = bpfload.BpfObject.open(bpf_object("large"))
    names = list(obj.programs)
    for n in names[1:]:
        obj.programs[n].autoload = False
    before = _sys.syscall_count(5)                    # BPF_PROG_LOAD
    with obj.load(log_level=2):
        log = obj.programs[names[0]].verifier_log
        calls = _sys.syscall_count(5) - before
    assert len(log) > 64 * 1024, len(log)
    assert calls == 2                                   # the first try, then one exact retry
    assert log.rstrip().splitlines()[-1].startswith(("processed", "verification time")) or \
        "processed" in log[-2000:]


# --------------------------------------------------------------------------
# BCC-style access and object state

def test_object_indexing_and_close():
    obj = bpfload.load(bpf_object("maps_legacy"))
    m = obj["legacy_hash"]
    assert obj.maps["legacy_hash"] is m
    with pytest.raises(KeyError, match="no map or program"):
        obj["nope"]
    obj.close()
    obj.close()
    assert m.closed
    with pytest.raises(bpfload.MapClosedError):
        m.lookup(1)


def test_program_type_override_before_load():
    obj = bpfload.BpfObject.open(bpf_object("verifier_reject"))
    obj.programs["bad_deref"].autoload = False
    obj.programs["good_prog"].type = ProgType.SCHED_CLS
    obj.programs["good_prog"].expected_attach_type = None
    with obj.load():
        p = obj.programs["good_prog"]
        assert p.type == ProgType.SCHED_CLS and p.info().type == ProgType.SCHED_CLS


def test_libbpf_map_defaults_applied_on_a_copy():
    from bpfload.loader import normalize_maps
    obj = bpfload.BpfObject.open(bpf_object("ringbuf"))
    spec = obj.spec.copy()
    spec.maps["rb"].max_entries = 5000
    obj2 = bpfload.BpfObject.open(bpf_object("perf_event"))
    pspec = obj2.spec.copy()
    pspec.maps["events"].max_entries = 0
    normalize_maps(spec)
    normalize_maps(pspec)
    assert spec.maps["rb"].max_entries == 8192          # two pages
    assert pspec.maps["events"].max_entries == len(sysfs_cpus("possible"))
    assert obj.spec.maps["rb"].max_entries == 16384     # the object's spec is untouched
    obj.maps["rb"].max_entries = 5000
    with obj.load():
        assert obj.maps["rb"].max_entries == 8192 and obj.maps["rb"].info().max_entries == 8192


def test_program_from_fd_id_and_pin(bpffs):
    with bpfload.BpfObject.open(bpf_object("prog_array")) as obj:
        obj.load()
        p = obj.programs["tail_a"]
        with bpfload.Program.from_fd(p.fd) as q, bpfload.Program.from_id(p.id) as r:
            assert q.fd != p.fd and q.id == r.id == p.id and q.tag == p.tag
            assert q.test_run(pkt(0)).retval == 100
        p.pin(bpffs / "tail_a")
        with bpfload.Program.from_pin(bpffs / "tail_a") as s:
            assert s.id == p.id
        with pytest.raises(bpfload.BpfError, match="not a BPF program"):
            bpfload.Program.from_fd(obj.maps["jmp_table"].fd)
        with pytest.raises(bpfload.BpfError, match="not a BPF map"):
            bpfload.Map.from_fd(p.fd)
