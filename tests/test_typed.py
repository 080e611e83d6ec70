"""Typed map views (bpfload.btf.typed): BTF-driven decoding and encoding.

The kernel half proves the layout against C: a BPF program writes a record
that the view decodes (typed_fill), and a record the view encodes is
checked field by field by a BPF program (typed_check, bpf/typed_values.bpf.c).
The codec half runs without the kernel on the object's parsed BTF and on
hand-built BTF for the kinds clang does not emit here.
"""
from __future__ import annotations

import enum
import struct

import pytest

import bpfload
from bpfload import BtfError, Map, MapType, TypedMap, TypedTypeError, TypedValueError
from bpfload.btf import (Btf, Enum, EnumValue, Float, Int, IntEncoding, Member, Ptr,
                         Struct, TypeTag, Typedef, Union)
from bpfload.btf.typed import Codec, codec_for, fetch_btf

from conftest import bpf_object, sysfs_cpus

NCPU = len(sysfs_cpus("possible"))

# What bpf/typed_values.bpf.c's typed_fill writes and typed_check expects
# (count aside: addr + port / 0x1122334455667788).
COMMON = {
    "temp": -40, "color": 7, "sign": -5, "wide": 0x123456789,
    "name": b"filled".ljust(16, b"\0"), "hist": [1, 2, 3, 0xFFFFFFFF],
    "samples": [{"port": 443, "delta": -1, "tag": b"ab\0\0\0"},
                {"port": 8080, "delta": 127, "tag": b"vwxyz"}],
    "word": {"u32": 0x01020304, "bytes": b"\x04\x03\x02\x01"},
    "lo": 5, "mid": -9, "hi": 0xABCDEF, "ok": True, "x": 7, "y": 65535,
    "neg": -(1 << 40), "matrix": [b"\x01\x02\x03", b"\x04\x05\x06"], "ratio": 0.5,
}
REC_SIZE = 120


def fill_args(addr: int, port: int) -> bytes:
    return struct.pack("<IHH", addr, port, 0)


@pytest.fixture(scope="module")
def spec_btf():
    """The object's BTF, parsed only (no kernel)."""
    return bpfload.BpfObject.open(bpf_object("typed_values")).spec


def rec_codec(spec) -> Codec:
    return codec_for(spec.btf, spec.maps["recs"].btf_value_type_id)


# --------------------------------------------------------------------------
# against the kernel
# --------------------------------------------------------------------------

@pytest.mark.kernel
class TestKernel:
    @pytest.fixture
    def obj(self):
        with bpfload.load(bpf_object("typed_values")) as obj:
            yield obj

    def test_decodes_what_the_program_wrote(self, obj):
        assert obj.programs["typed_fill"].test_run(ctx=fill_args(0x0A000001, 80)).retval == 0
        tv = obj.maps["recs"].typed()
        key = {"addr": 0x0A000001, "port": 80, "proto": 6, "pad": 0}
        got = tv[key]
        assert got == {"count": 0x0A000001 + 80, **COMMON}
        assert got["color"] is tv.value_codec._dec(obj.maps["recs"].lookup(tv.encode_key(key)),
                                                   0)["color"]  # same IntEnum member
        assert got["color"].name == "BLUE" and got["sign"].name == "MINUS"
        assert got["wide"].name == "WIDE_BIG" and isinstance(got["ok"], bool)
        assert tv.items() == [(key, got)]
        assert tv.keys() == [key] and list(tv) == [key] and tv.values() == [got]
        assert key in tv and {"addr": 1} not in tv
        # signed ints, untyped-free keys
        assert obj.maps["shorts"].typed().items() == [(0, 0), (1, -1234), (2, 0), (3, 0)]

    def test_encoded_value_reads_right_in_c(self, obj):
        tv = obj.maps["recs"].typed()
        key = {"addr": 5, "port": 53, "proto": 17}
        tv[key] = {"count": 0x1122334455667788, **COMMON}
        assert obj.programs["typed_check"].test_run(ctx=fill_args(5, 53)).retval == 0
        # the same value given loosely: enum names, str for char[], short lists
        loose = dict(COMMON, count=0x1122334455667788, color="BLUE", sign="MINUS",
                     wide="WIDE_BIG", name="filled", ok=1,
                     samples=[{"port": 443, "delta": -1, "tag": "ab"},
                              {"port": 8080, "delta": 127, "tag": [118, 119, 120, 121, 122]}],
                     word={"bytes": [4, 3, 2, 1]}, matrix=[[1, 2, 3], b"\x04\x05\x06"])
        tv.update(key, loose, bpfload.BPF_EXIST)
        assert obj.programs["typed_check"].test_run(ctx=fill_args(5, 53)).retval == 0
        # and a wrong one is seen as wrong by C (the check is not vacuous)
        tv[key] = dict(loose, mid=-8, hi=0xABCDEE)
        assert obj.programs["typed_check"].test_run(ctx=fill_args(5, 53)).retval == \
            (1 << 11) | (1 << 12)
        assert obj.programs["typed_check"].test_run(ctx=fill_args(6, 53)).retval == 1 << 31

    def test_round_trip_is_byte_exact(self, obj):
        m = obj.maps["recs"]
        obj.programs["typed_fill"].test_run(ctx=fill_args(9, 9))
        tv = m.typed()
        k = {"addr": 9, "port": 9, "proto": 6}
        tv[{"addr": 9, "port": 9, "proto": 7}] = tv[k]
        assert m.lookup(tv.encode_key({"addr": 9, "port": 9, "proto": 7})) == \
            m.lookup(tv.encode_key(k))

    def test_partial_values_are_zero_filled(self, obj):
        tv = obj.maps["recs"].typed()
        tv[{"addr": 1}] = {"count": 3, "hist": [9], "samples": [{"tag": b"x"}]}
        raw = obj.maps["recs"].lookup(tv.encode_key({"addr": 1, "port": 0, "proto": 0}))
        assert raw[:8] == (3).to_bytes(8, "little")
        v = tv[{"addr": 1}]
        assert v["hist"] == [9, 0, 0, 0] and v["samples"][0] == {"port": 0, "delta": 0,
                                                                  "tag": b"x\0\0\0\0"}
        assert v["color"] == 0 and v["color"].name == "RED" and v["ok"] is False

    def test_element_operations(self, obj):
        tv = obj.maps["recs"].typed()
        k = {"addr": 2, "port": 2, "proto": 2}
        assert tv.lookup(k) is None and tv.get(k, "none") == "none"
        with pytest.raises(bpfload.MapKeyError) as ei:
            tv[k]
        assert isinstance(ei.value, KeyError) and "'addr': 2" in str(ei.value)
        tv.update(k, {"count": 1}, bpfload.BPF_NOEXIST)
        with pytest.raises(bpfload.SyscallError):
            tv.update(k, {"count": 2}, bpfload.BPF_NOEXIST)
        assert tv.get(k)["count"] == 1
        assert tv.lookup_and_delete(k)["count"] == 1
        assert k not in tv
        tv[k] = {"count": 4}
        del tv[k]
        assert tv.items() == []

    def test_enum_value_without_enumerator_decodes_as_int(self, obj):
        m = obj.maps["recs"]
        tv = m.typed()
        raw = bytearray(tv.value_codec.encode({"color": "GREEN"}))
        raw[12:16] = (3).to_bytes(4, "little")  # color: no enumerator is 3
        m.update(tv.encode_key({}), bytes(raw))
        color = tv[{}]["color"]
        assert color == 3 and type(color) is int

    def test_percpu(self, obj):
        obj.programs["typed_fill"].test_run(ctx=fill_args(1, 1500))
        tv = obj.maps["pcpu"].typed()
        got = tv[0]
        assert isinstance(got, list) and len(got) == NCPU
        assert sum(c["packets"] for c in got) == 1 and sum(c["bytes"] for c in got) == 1500
        assert [c["last"] for c in got].count(7) == 1
        tv[1] = {"packets": 5, "last": "GREEN"}          # one value for every CPU
        assert tv[1] == [{"packets": 5, "bytes": 0, "last": 1}] * NCPU
        tv[1] = [{"packets": i, "bytes": 2 * i} for i in range(NCPU)]
        assert [c["bytes"] for c in tv[1]] == [2 * i for i in range(NCPU)]
        assert obj.maps["pcpu"].sum(1) == (sum(range(NCPU)), sum(2 * i for i in range(NCPU)))
        with pytest.raises(TypedValueError, match=r"needs %d entries" % NCPU):
            tv[1] = [{}] * (NCPU + 1)
        with pytest.raises(TypedValueError, match=r"value\[cpu 0\]\.packets"):
            tv[1] = [{"packets": -1}] * NCPU
        assert dict(tv.items())[1] == tv[1]

    def test_from_id_and_pin(self, obj, bpffs):
        m = obj.maps["recs"]
        obj.programs["typed_fill"].test_run(ctx=fill_args(3, 3))
        m.pin(bpffs / "recs")
        with Map.from_pin(bpffs / "recs") as pinned, Map.from_id(m.id) as by_id:
            for other in (pinned, by_id):
                tv = other.typed()
                assert tv.key_type_id == obj.spec.maps["recs"].btf_key_type_id
                assert tv.value_type_id == obj.spec.maps["recs"].btf_value_type_id
                assert tv[{"addr": 3, "port": 3, "proto": 6}]["count"] == 6

    def test_fetch_btf(self, obj):
        info = obj.maps["recs"].info()
        btf = fetch_btf(info.btf_id)
        assert btf[info.btf_value_type_id].name == "rec"
        assert btf.to_bytes() == obj.spec.btf.to_bytes()
        from bpfload.btf import targets as kbtf
        vmlinux_id = None
        for bid in range(1, 64):
            try:
                with bpfload._core.syscall.get_fd_by_id("btf", bid) as fd:
                    if bpfload._core.syscall.btf_info(fd.fileno())[2] == "vmlinux":
                        vmlinux_id = bid
                        break
            except bpfload.SyscallError:
                continue
        assert vmlinux_id is not None
        assert fetch_btf(vmlinux_id) is kbtf.vmlinux()
        with pytest.raises(bpfload.SyscallError):
            fetch_btf(0xFFFFFFF0)

    def test_datasec_of_global_data(self):
        with bpfload.load(bpf_object("globals")) as obj:
            pkt = (0x01020304).to_bytes(4, "little") + bytes(60)
            assert obj.programs["compute"].test_run(pkt).retval == 0x01020304
            bss = obj.maps[".bss"].typed()
            assert bss.key_codec.type_name == "4-byte value"
            assert bss[0] == {"bss_out": 0x01020304, "bss_in": 0x01020304, "bss_calls": 1,
                              "bss_tag_char": ord("bpfload-globals"[4])}
            data = obj.maps[".data"].typed()[0]
            assert data == {"data_magic": 0x1234ABCD, "data_calls": 101}
            assert obj.maps[".rodata"].typed()[0] == {"cfg_mult": 1, "cfg_add": 0}

    def test_map_without_btf(self, spec_btf):
        spec = spec_btf
        with Map.create(MapType.HASH, 8, REC_SIZE, 4, name="nobtf") as m:
            with pytest.raises(BtfError, match="created without BTF"):
                m.typed()
            tv = m.typed(spec.btf, spec.maps["recs"].btf_key_type_id,
                         spec.maps["recs"].btf_value_type_id)
            tv[{"port": 1}] = {"count": 2}
            assert tv[{"port": 1}]["count"] == 2
        with Map.create(MapType.ARRAY, 4, 8, 2, name="untyped") as m:
            tv = TypedMap(m, None)
            tv[1] = 7
            tv[0] = b"\x01" * 8
            assert tv.items() == [(0, 0x0101010101010101), (1, 7)]
            with pytest.raises(TypedValueError, match="out of range"):
                tv[1] = -1
            with pytest.raises(TypedValueError, match="3 bytes given"):
                tv[1] = b"abc"

    def test_wrong_size_type(self, spec_btf):
        with Map.create(MapType.HASH, 4, 8, 1, name="small") as m:
            with pytest.raises(BtfError, match=r"map 'small'.*struct flow_key.*8 bytes, not 4"):
                TypedMap(m, spec_btf.btf, spec_btf.maps["recs"].btf_key_type_id, 0)

    def test_queue_push_pop(self, spec_btf):
        btf = spec_btf.btf
        sample = btf.find("sample")
        with Map.create(MapType.QUEUE, 0, 8, 4, name="q") as m:
            tv = TypedMap(m, btf, 0, sample.id)
            tv.push({"port": 1, "tag": "q1"})
            tv.push({"port": 2, "delta": -2})
            assert tv.peek() == {"port": 1, "delta": 0, "tag": b"q1\0\0\0"}
            assert tv.pop()["port"] == 1 and tv.pop()["delta"] == -2 and tv.pop() is None
            with pytest.raises(TypeError, match="no keys"):
                tv.encode_key(1)


# --------------------------------------------------------------------------
# codecs without the kernel
# --------------------------------------------------------------------------

class TestEncodingErrors:
    @pytest.mark.parametrize("value, cls, where, what", [
        ({"nope": 1}, TypedValueError, "value", "struct rec has no member 'nope'"),
        ({"samples": [{"prot": 1}]}, TypedValueError, "value.samples[0]", "no member 'prot'"),
        ({"count": -1}, TypedValueError, "value.count",
         "-1 is out of range for __u64 (0..18446744073709551615)"),
        ({"count": 1 << 64}, TypedValueError, "value.count", "out of range"),
        ({"temp": 1 << 31}, TypedValueError, "value.temp", "out of range for __s32"),
        ({"samples": [{}, {"port": 70000}]}, TypedValueError, "value.samples[1].port",
         "70000 is out of range for __u16 (0..65535)"),
        ({"samples": [{"delta": 128}]}, TypedValueError, "value.samples[0].delta",
         "out of range for __s8 (-128..127)"),
        ({"lo": 8}, TypedValueError, "value.lo", "8 is out of range for unsigned int:3 (0..7)"),
        ({"mid": 16}, TypedValueError, "value.mid", "out of range for int:5 (-16..15)"),
        ({"mid": -17}, TypedValueError, "value.mid", "out of range"),
        ({"hi": 1 << 24}, TypedValueError, "value.hi", "out of range"),
        ({"ok": 2}, TypedValueError, "value.ok", "2 is out of range for _Bool (0..1)"),
        ({"color": "PURPLE"}, TypedValueError, "value.color",
         "'PURPLE' is not an enumerator of enum color (has: RED, GREEN, BLUE)"),
        ({"color": -1}, TypedValueError, "value.color", "out of range for enum color"),
        ({"sign": 1 << 31}, TypedValueError, "value.sign", "out of range for enum sign"),
        ({"name": b"x" * 17}, TypedValueError, "value.name", "17 bytes do not fit char[16]"),
        ({"name": "é" * 9}, TypedValueError, "value.name", "18 bytes do not fit"),
        ({"samples": [{}, {}, {}]}, TypedValueError, "value.samples",
         "3 elements do not fit struct sample[2]"),
        ({"hist": [0] * 5}, TypedValueError, "value.hist", "5 elements do not fit __u32[4]"),
        ({"matrix": [[1, 2, 300]]}, TypedValueError, "value.matrix[0][2]", "300 is out of range"),
        ({"word": {"u32": 1, "bytes": b"\x02"}}, TypedValueError, "value.word",
         "union members 'u32' and 'bytes' of union word disagree"),
        ({"ratio": 1e40}, TypedValueError, "value.ratio", "out of range for float"),
        ([1, 2], TypedTypeError, "value", "expected a dict for struct rec, got list"),
        ({"count": "1"}, TypedTypeError, "value.count", "expected an int for __u64, got str"),
        ({"count": 1.0}, TypedTypeError, "value.count", "expected an int"),
        ({"hist": b"abcd"}, TypedTypeError, "value.hist", "expected a list for __u32[4]"),
        ({"name": 5}, TypedTypeError, "value.name", "expected bytes or str"),
        ({"ratio": "x"}, TypedTypeError, "value.ratio", "expected a float"),
        ({"samples": [5]}, TypedTypeError, "value.samples[0]", "expected a dict for struct sample"),
    ])
    def test_rejected(self, spec_btf, value, cls, where, what):
        tv = TypedMap(_FakeMap(), spec_btf.btf, spec_btf.maps["recs"].btf_key_type_id,
                      spec_btf.maps["recs"].btf_value_type_id)
        with pytest.raises(cls) as ei:
            tv.encode_value(value)
        e = ei.value
        assert isinstance(e, bpfload.BpfError)
        assert e.path == where and e.map_name == "fake"
        assert what in str(e) and str(e).startswith(f"map 'fake': {where}: ")

    def test_key_errors(self, spec_btf):
        tv = TypedMap(_FakeMap(), spec_btf.btf, spec_btf.maps["recs"].btf_key_type_id,
                      spec_btf.maps["recs"].btf_value_type_id)
        with pytest.raises(TypedValueError, match=r"key: struct flow_key has no member 'ip' "
                                                  r"\(members: addr, port, proto, pad\)"):
            tv.encode_key({"ip": 1})
        with pytest.raises(TypedTypeError, match="key: expected a dict for struct flow_key, got int"):
            tv.encode_key(1)
        assert tv.encode_key({"addr": 1, "proto": 6}) == b"\x01\0\0\0\0\0\x06\0"

    def test_consistent_union_members_are_accepted(self, spec_btf):
        c = rec_codec(spec_btf)
        a = c.encode({"word": {"u32": 0x01020304, "bytes": b"\x04\x03\x02\x01"}})
        b = c.encode({"word": {"bytes": [4, 3, 2, 1]}})
        assert a == b and c.decode(a)["word"]["u32"] == 0x01020304
        # a shorter member agrees with the longer one on its own bytes only
        u = Btf()
        u8 = u.add(Int(name="u8", size=1, bits=8))
        u64 = u.add(Int(name="u64", size=8, bits=64))
        un = u.add(Union(name="u", size=8, members=[Member("b", u8, 0), Member("q", u64, 0)]))
        uc = codec_for(u, un)
        assert uc.encode({"b": 0x11, "q": 0x2211}) == bytes([0x11, 0x22]) + bytes(6)
        with pytest.raises(TypedValueError, match="'q' and 'b' of union u disagree"):
            uc.encode({"b": 0x12, "q": 0x2211})

    def test_char_like_arrays(self, spec_btf):
        c = rec_codec(spec_btf)
        v = c.decode(c.encode({"name": "eth0", "samples": [{"tag": [-1, 255]}]}))
        assert v["name"] == b"eth0" + bytes(12)
        assert v["samples"][0]["tag"] == b"\xff\xff\0\0\0"
        with pytest.raises(TypedValueError, match=r"samples\[0\]\.tag\[1\]: 256 is out of range"):
            c.encode({"samples": [{"tag": [0, 256]}]})


class _FakeMap:
    """Enough of a Map for TypedMap's conversions (no kernel)."""

    name = "fake"
    type = int(MapType.HASH)
    key_size = 8
    value_size = REC_SIZE
    percpu = False
    ncpus = 1


class TestHandBuiltBtf:
    """Kinds and shapes clang does not emit in typed_values.bpf.c."""

    def test_old_style_int_bitfields_and_enum_bitfield(self):
        b = Btf()
        u32 = b.add(Int(name="unsigned int", size=4, bits=32))
        # kind_flag 0: a bitfield is an INT with its own offset/bits
        nib = b.add(Int(name="nibble", size=4, bits=4, offset=4))
        col = b.add(Enum(name="col", size=4, values=[EnumValue("A", 1), EnumValue("B", 2)]))
        s = b.add(Struct(name="s", size=8, kind_flag=False, members=[
            Member("whole", u32, 0), Member("nib", nib, 32)]))
        s2 = b.add(Struct(name="s2", size=4, kind_flag=True, members=[
            Member("c", col, 3, bitfield_size=2), Member("rest", u32, 5, bitfield_size=27)]))
        c = codec_for(b, s)
        raw = c.encode({"whole": 1, "nib": 15})
        assert raw == b"\x01\0\0\0\xf0\0\0\0" and c.decode(raw) == {"whole": 1, "nib": 15}
        with pytest.raises(TypedValueError, match="16 is out of range for nibble"):
            c.encode({"nib": 16})
        c2 = codec_for(b, s2)
        raw = c2.encode({"c": "B", "rest": (1 << 27) - 1})
        assert int.from_bytes(raw, "little") == (2 << 3) | (((1 << 27) - 1) << 5)
        d = c2.decode(raw)
        assert d["c"] == 2 and d["c"].name == "B" and d["rest"] == (1 << 27) - 1

    def test_wide_ints_floats_pointers(self):
        b = Btf()
        i128 = b.add(Int(name="__int128", size=16, bits=128, encoding=IntEncoding.SIGNED))
        half = b.add(Float(name="_Float16", size=2))
        dbl = b.add(Float(name="double", size=8))
        ldbl = b.add(Float(name="long double", size=16))
        vp = b.add(Ptr(type=0))
        s = b.add(Struct(name="w", size=56, members=[
            Member("big", i128, 0), Member("h", half, 128), Member("d", dbl, 192),
            Member("ld", ldbl, 256), Member("p", vp, 384)]))
        c = codec_for(b, s)
        v = {"big": -(1 << 100), "h": 1.5, "d": 1e300, "ld": b"\x01" * 16, "p": 0xFFFF800000001000}
        assert c.decode(c.encode(v)) == v
        with pytest.raises(TypedValueError, match="out of range for __int128"):
            c.encode({"big": 1 << 127})
        with pytest.raises(TypedValueError, match=r"^h: 70000\.0 is out of range for _Float16"):
            c.encode({"h": 70000.0})
        bad = b.add(Struct(name="short", size=50, members=[Member("p", vp, 384)]))
        with pytest.raises(BtfError, match="member 'p' .* past the end of struct short"):
            codec_for(b, bad)

    def test_kernel_managed_members_are_hidden(self):
        b = Btf()
        u32 = b.add(Int(name="unsigned int", size=4, bits=32))
        lock = b.add(Struct(name="bpf_spin_lock", size=4, members=[Member("val", u32, 0)]))
        task = b.add(Struct(name="task_struct", size=0))
        tag = b.add(TypeTag(name="kptr", type=task))
        kp = b.add(Ptr(type=tag))
        plain = b.add(Ptr(type=task))
        s = b.add(Struct(name="v", size=24, members=[
            Member("a", u32, 0), Member("lock", lock, 32), Member("k", kp, 64),
            Member("p", plain, 128)]))
        c = codec_for(b, s)
        assert c.decode(bytes(range(24))) == {"a": 0x03020100,
                                              "p": int.from_bytes(bytes(range(16, 24)), "little")}
        with pytest.raises(TypedValueError, match="'lock' is a struct bpf_spin_lock that the "
                                                  "kernel manages"):
            c.encode({"lock": {"val": 0}})
        with pytest.raises(TypedValueError, match="'k' is a kptr"):
            c.encode({"k": 0})

    def test_anonymous_union_in_struct(self):
        b = Btf()
        u16 = b.add(Int(name="u16", size=2, bits=16))
        u32 = b.add(Int(name="u32", size=4, bits=32))
        inner = b.add(Struct(name="", size=4, members=[Member("lo", u16, 0),
                                                       Member("hi", u16, 16)]))
        un = b.add(Union(name="", size=4, members=[Member("all", u32, 0), Member("", inner, 0)]))
        td = b.add(Typedef(name="wrap_t", type=un))
        s = b.add(Struct(name="outer", size=8, members=[Member("tag", u32, 0),
                                                        Member("", td, 32)]))
        c = codec_for(b, s)
        raw = c.encode({"tag": 1, "lo": 2, "hi": 3})
        assert c.decode(raw) == {"tag": 1, "all": 0x00030002, "lo": 2, "hi": 3}
        assert c.encode({"tag": 1, "all": 0x00030002, "lo": 2, "hi": 3}) == raw
        # members left out of a union alternative are zero, as in C: they must agree too
        with pytest.raises(TypedValueError, match=r"'all' and \('lo', 'hi'\) of wrap_t disagree"):
            c.encode({"all": 0x00030002, "hi": 3})

    def test_enum_names_python_reserves(self):
        b = Btf()
        e = b.add(Enum(name="odd", size=4, values=[EnumValue("_sunder_", 1),
                                                   EnumValue("mro", 2)]))
        c = codec_for(b, e)
        assert c.decode(c.encode("mro")) == 2 and type(c.decode(b"\1\0\0\0")) is int

    def test_types_without_values(self):
        b = Btf()
        proto_void = b.add(Int(name="int", size=4, bits=32))
        from bpfload.btf import Fwd, FuncProto
        fp = b.add(FuncProto(return_type=proto_void))
        fwd = b.add(Fwd(name="later"))
        for tid in (fp, fwd):
            with pytest.raises(BtfError, match="no value to decode"):
                codec_for(b, tid)
        with pytest.raises(ValueError, match="needs a size"):
            codec_for(b, 0)
        assert codec_for(b, 0, 3).decode(b"abc") == b"abc"

    def test_decoded_enum_is_an_intenum(self, spec_btf):
        c = rec_codec(spec_btf)
        col = c.decode(c.encode({"color": 1}))["color"]
        assert isinstance(col, enum.IntEnum) and col == 1 and col.name == "GREEN"
        assert c.encode({"color": col}) == c.encode({"color": "GREEN"})


def test_codec_packs_little_endian():
    """Values are packed little endian (as the BTF they come from), compared with
    struct's explicit '<' formats rather than with the machine's byte order."""
    b = Btf()
    u32 = b.add(Int(name="u32", size=4, bits=32))
    u64 = b.add(Int(name="u64", size=8, bits=64))
    assert codec_for(b, u32).encode(0x01020304) == struct.pack("<I", 0x01020304)
    assert codec_for(b, u32).decode(struct.pack("<I", 0xA0B0C0D0)) == 0xA0B0C0D0
    assert codec_for(b, u64).encode(0x0102030405060708) == struct.pack("<Q", 0x0102030405060708)


@pytest.mark.kernel
def test_docs_examples_run(monkeypatch, capsys):
    """Every python block of docs/typed.md runs as written (from the repository root)."""
    import re
    from conftest import REPO
    text = (REPO / "docs" / "typed.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(REPO)
    for block in blocks:
        exec(compile(block, "docs/typed.md", "exec"), {})
    out = capsys.readouterr().out
    assert "map 'recs': value.samples[0].port: 70000 is out of range for __u16 (0..65535)" in out
