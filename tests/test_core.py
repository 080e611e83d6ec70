"""CO-RE relocation: the resolver on hand-built BTF, and real objects on the running kernel.

The first half needs no kernel: small local/target :class:`Btf` pairs are
built with ``Btf()`` + ``add()`` and every relocation kind, flavors,
ambiguity, missing fields, guarded existence checks, array index accessors
and anonymous members are resolved and patched with :mod:`bpfload.btf.core`.

The second half (``@pytest.mark.kernel``) loads ``bpf/core_task.bpf.o`` and
``bpf/core_poison.bpf.o`` -- written the way libbpf users write CO-RE code
(vmlinux.h, BPF_CORE_READ, bpf_core_field_exists ...) -- against
``/sys/kernel/btf/vmlinux``, runs them in a thread of this process and
checks what they read against the thread's own pid/tgid/comm, checks the
relocated instructions against offsets computed from vmlinux BTF, and checks
that libbpf (bpftool) produces the same program tags.  The compiled
candidate index is compared with its pure-Python twin (every resolver test
runs on both, and both index the running kernel's BTF identically).
"""
from __future__ import annotations

import dataclasses
import os
import struct
import threading

import pytest

from conftest import bpf_object

import bpfload
from bpfload.btf import core, targets
from bpfload._core import insn as _insn
from bpfload.btf import (Array, Btf, BtfExt, CoreRelo, CoreReloKind as K, Enum, Enum64,
                         EnumValue, Fwd, Int, IntEncoding, Member, Ptr, Struct, Typedef, Union)
from bpfload.btf.core import CoreResolver, TargetBtf, Targets, apply_core_relos, patch_insn
from bpfload.errors import BtfError
from bpfload.spec import FunctionSpec, ObjectSpec, ProgramSpec, Reloc, RelocKind

POISON = struct.pack("<BBhi", 0x85, 0, 0, 0xBAD2310)
M64 = (1 << 64) - 1


def pytest_generate_tests(metafunc):
    # Every resolver test runs on the compiled candidate index and on its
    # pure-Python twin; the kernel tests use the per-process (compiled) one.
    if "index_impl" in metafunc.fixturenames:
        kernel = metafunc.definition.get_closest_marker("kernel") is not None
        metafunc.parametrize("index_impl", ["compiled"] if kernel else ["compiled", "python"],
                             indirect=True)


@pytest.fixture(autouse=True)
def index_impl(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(targets, "_corepatch", None)
    return request.param


# --------------------------------------------------------------------------
# helpers

class B:
    """A tiny BTF builder: ``b.int()``, ``b.struct(name, size, (member, type, bit_off[, bits]))``."""

    def __init__(self):
        self.btf = Btf()

    def add(self, t):
        return self.btf.add(t)

    def int(self, name="int", size=4, signed=True, offset=0):
        enc = IntEncoding.SIGNED if signed else IntEncoding.NONE
        return self.add(Int(name=name, size=size, encoding=enc, bits=size * 8, offset=offset))

    def struct(self, name, size, *members, kflag=False, union=False):
        cls = Union if union else Struct
        return self.add(cls(name=name, size=size, kind_flag=kflag,
                            members=[Member(*m) for m in members]))

    def array(self, elem, n):
        return self.add(Array(type=elem, index_type=elem, nelems=n))


def R(type_id, access, kind):
    return CoreRelo(0, type_id, 0, kind, access)


def resolve(local, target, relo, modules=()):
    return CoreResolver(local.btf, Targets(target.btf, modules)).resolve(relo)


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def decode(buf, idx):
    code, regs, off, imm = struct.unpack_from("<BBhi", buf, idx * 8)
    return code, regs & 0xF, regs >> 4, off, imm


@pytest.fixture
def pair():
    """local: struct s {int a; int b;}; target: struct s {long x; int a; int b;}."""
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("s", 8, ("a", li, 0), ("b", li, 32))
    ti = tg.int()
    tl = tg.int("long", 8)
    ts = tg.struct("s", 16, ("x", tl, 0), ("a", ti, 64), ("b", ti, 96))
    return lo, tg, ls, ts


# --------------------------------------------------------------------------
# names

@pytest.mark.parametrize("name,ess", [
    ("task_struct", "task_struct"),
    ("task_struct___v2", "task_struct"),
    ("a___b___c", "a___b"),
    ("__u64", "__u64"),
    ("___x", "___x"),
    ("foo___", "foo___"),
    ("foo____bar", "foo____bar"),
    ("x___y", "x"),
    ("", ""),
])
def test_essential_name(name, ess):
    assert core.essential_name(name) == ess


# --------------------------------------------------------------------------
# field relocations

def test_field_byte_offset_and_size(pair):
    lo, tg, ls, ts = pair
    r = resolve(lo, tg, R(ls, "0:1", K.FIELD_BYTE_OFFSET))
    assert (r.poison, r.orig_val, r.new_val, r.orig_sz, r.new_sz) == (False, 4, 12, 4, 4)
    assert r.validate
    assert r.local == f"<byte_off> [{ls}] struct s.b (0:1 @ offset 4)"
    assert r.target == f"<byte_off> [{ts}] struct s.b (0:2 @ offset 12)"
    r = resolve(lo, tg, R(ls, "0:1", K.FIELD_BYTE_SIZE))
    assert (r.orig_val, r.new_val) == (4, 4)


def test_field_size_change_flags_memsz(pair):
    lo, tg, ls, _ = pair
    # target field grows to a signed 8-byte int: a load can't be resized
    t2 = B()
    tl = t2.int("long", 8)
    t2.struct("s", 16, ("a", tl, 0), ("b", tl, 64))
    r = resolve(lo, t2, R(ls, "0:1", K.FIELD_BYTE_OFFSET))
    assert (r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == (8, 4, 8, True)
    r = resolve(lo, t2, R(ls, "0:1", K.FIELD_BYTE_SIZE))
    assert (r.orig_val, r.new_val) == (4, 8)
    # unsigned on both sides: allowed
    l3, t3 = B(), B()
    u64 = l3.int("unsigned long long", 8, signed=False)
    s3 = l3.struct("u", 8, ("f", u64, 0))
    u32 = t3.int("unsigned int", 4, signed=False)
    t3.struct("u", 8, ("pad", u32, 0), ("f", u32, 32))
    r = resolve(l3, t3, R(s3, "0:0", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == (0, 4, 8, 4, False)


def test_field_exists_and_missing_is_guarded_not_poisoned(pair):
    lo, tg, _, _ = pair
    li = 1
    mine = lo.struct("s___mine", 4, ("nonexistent_field", li, 0))
    r = resolve(lo, tg, R(mine, "0:0", K.FIELD_EXISTS))
    assert (r.poison, r.orig_val, r.new_val) == (False, 1, 0)
    # the guarded read itself: poisoned
    r = resolve(lo, tg, R(mine, "0:0", K.FIELD_BYTE_OFFSET))
    assert r.poison
    ls = 2
    r = resolve(lo, tg, R(ls, "0:0", K.FIELD_EXISTS))
    assert (r.poison, r.orig_val, r.new_val) == (False, 1, 1)


def test_missing_type_poisons_field_reads_but_not_existence():
    lo, tg = B(), B()
    li = lo.int()
    s = lo.struct("nowhere", 4, ("a", li, 0))
    tg.int()
    assert resolve(lo, tg, R(s, "0:0", K.FIELD_BYTE_OFFSET)).poison
    assert resolve(lo, tg, R(s, "0:0", K.FIELD_SIGNED)).poison
    r = resolve(lo, tg, R(s, "0:0", K.FIELD_EXISTS))
    assert (r.poison, r.new_val) == (False, 0)


def test_field_signed():
    lo, tg = B(), B()
    lu = lo.int("unsigned int", signed=False)
    le = lo.add(Enum(name="e", size=4, values=[EnumValue("X", 1)]))
    ls = lo.struct("s", 8, ("v", lu, 0), ("e", le, 32))
    ti = tg.int()
    te = tg.add(Enum(name="e", size=4, kind_flag=True, values=[EnumValue("X", -1)]))
    tg.struct("s", 8, ("v", ti, 0), ("e", te, 32))
    r = resolve(lo, tg, R(ls, "0:0", K.FIELD_SIGNED))
    assert (r.orig_val, r.new_val) == (0, 1)
    r = resolve(lo, tg, R(ls, "0:1", K.FIELD_SIGNED))
    assert (r.orig_val, r.new_val) == (0, 1)


def test_field_type_mismatch_does_not_match():
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("s", 4, ("a", li, 0))
    ti = tg.int()
    inner = tg.struct("inner", 4, ("q", ti, 0))
    tp = tg.add(Ptr(type=inner))
    tg.struct("s", 8, ("a", tp, 0))     # int vs pointer: incompatible
    r = resolve(lo, tg, R(ls, "0:0", K.FIELD_EXISTS))
    assert r.new_val == 0
    assert resolve(lo, tg, R(ls, "0:0", K.FIELD_BYTE_OFFSET)).poison
    # a legacy bitfield int (INT with a bit offset) is not compatible either
    t2 = B()
    odd = t2.int(offset=3)
    t2.struct("s", 4, ("a", odd, 0))
    assert resolve(lo, t2, R(ls, "0:0", K.FIELD_BYTE_OFFSET)).poison


def test_bitfields():
    lo, tg = B(), B()
    lu = lo.int("unsigned int", signed=False)
    ls = lo.struct("bf", 4, ("y", lu, 0, 3), kflag=True)
    tu = tg.int("unsigned int", signed=False)
    tu8 = tg.int("unsigned char", 1, signed=False)
    tg.struct("bf", 8, ("x", tu, 0, 5), ("y", tu, 5, 3), ("z", tu8, 38, 4), kflag=True)
    want = {K.FIELD_BYTE_OFFSET: (0, 0), K.FIELD_BYTE_SIZE: (4, 4),
            K.FIELD_LSHIFT_U64: (61, 56), K.FIELD_RSHIFT_U64: (61, 61), K.FIELD_SIGNED: (0, 0)}
    for kind, (orig, new) in want.items():
        r = resolve(lo, tg, R(ls, "0:0", kind))
        assert (r.orig_val, r.new_val) == (orig, new), kind
        # bitfield offsets/sizes/lshift may legitimately differ from clang's: no validation
        assert r.validate == (kind in (K.FIELD_RSHIFT_U64, K.FIELD_SIGNED)), kind
    # a u8 bitfield straddling a byte boundary needs a 2-byte load
    lz = lo.struct("bf2", 1, ("z", lo.int("unsigned char", 1, signed=False), 0, 4), kflag=True)
    tg.struct("bf2", 8, ("pad", tu, 0), ("z", tu8, 38, 4), kflag=True)
    r = resolve(lo, tg, R(lz, "0:0", K.FIELD_BYTE_OFFSET))
    assert r.new_val == 4
    assert resolve(lo, tg, R(lz, "0:0", K.FIELD_BYTE_SIZE)).new_val == 2
    assert resolve(lo, tg, R(lz, "0:0", K.FIELD_LSHIFT_U64)).new_val == 64 - (38 + 4 - 32)
    assert resolve(lo, tg, R(lz, "0:0", K.FIELD_RSHIFT_U64)).new_val == 60


def test_bitfield_beyond_64_bits_is_an_error():
    lo, tg = B(), B()
    lu = lo.int("unsigned long", 8, signed=False)
    ls = lo.struct("w", 8, ("w", lu, 0, 8), kflag=True)
    tu = tg.int("unsigned long", 8, signed=False)
    tg.struct("w", 16, ("w", tu, 60, 8), kflag=True)
    with pytest.raises(BtfError, match="cannot be read with one 64-bit load"):
        resolve(lo, tg, R(ls, "0:0", K.FIELD_BYTE_OFFSET))


# --------------------------------------------------------------------------
# accessors: arrays, anonymous members, pointers-as-arrays

def test_array_index_accessor():
    lo, tg = B(), B()
    li = lo.int()
    la = lo.array(li, 4)
    ls = lo.struct("arr", 20, ("pad", li, 0), ("arr", la, 32))
    ti = tg.int()
    tl = tg.int("long", 8)
    ta = tg.array(ti, 8)
    tg.struct("arr", 48, ("pad", tl, 0), ("pad2", tl, 64), ("arr", ta, 128))
    r = resolve(lo, tg, R(ls, "0:1:2", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val, r.orig_sz, r.new_sz) == (12, 24, 4, 4)
    assert r.target.endswith(".arr[2] (0:2:2 @ offset 24)")
    assert resolve(lo, tg, R(ls, "0:1:2", K.FIELD_BYTE_SIZE)).new_val == 4
    with pytest.raises(BtfError, match="array element access"):
        resolve(lo, tg, R(ls, "0:1:2", K.FIELD_SIGNED))
    # the root accessor indexes an array of the root type: &s[1].arr[2]
    r = resolve(lo, tg, R(ls, "1:1:2", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (20 + 12, 48 + 24)


def test_array_index_out_of_target_bounds_does_not_match():
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("arr", 16, ("arr", lo.array(li, 4), 0))
    ti = tg.int()
    tg.struct("arr", 8, ("arr", tg.array(ti, 2), 0))
    assert resolve(lo, tg, R(ls, "0:0:1", K.FIELD_BYTE_OFFSET)).new_val == 4
    assert resolve(lo, tg, R(ls, "0:0:3", K.FIELD_BYTE_OFFSET)).poison
    assert resolve(lo, tg, R(ls, "0:0:3", K.FIELD_EXISTS)).new_val == 0
    # locally out of bounds: malformed
    with pytest.raises(BtfError, match="array index 4 out of range"):
        resolve(lo, tg, R(ls, "0:0:4", K.FIELD_BYTE_OFFSET))


def test_flexible_array_member():
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("flex", 4, ("n", li, 0), ("data", lo.array(li, 0), 32))
    ti = tg.int()
    tl = tg.int("long", 8)
    tg.struct("flex", 8, ("n", tl, 0), ("data", tg.array(ti, 0), 64))
    r = resolve(lo, tg, R(ls, "0:1:5", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (4 + 20, 8 + 20)


def test_anonymous_members_both_ways():
    lo, tg = B(), B()
    li = lo.int()
    ll = lo.int("long", 8)
    lu = lo.struct("", 8, ("b", li, 0), ("c", ll, 0), union=True)
    ls = lo.struct("an", 16, ("a", li, 0), ("", lu, 64))
    ti = tg.int()
    tl = tg.int("long", 8)
    inner = tg.struct("", 12, ("pad", ti, 0), ("b", ti, 32), ("c", tl, 64))
    tg.struct("an", 24, ("a", tl, 0), ("", inner, 64))
    # local: an.<anon union>.b = "0:1:0" -> target an.<anon struct>.b
    r = resolve(lo, tg, R(ls, "0:1:0", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (8, 12)
    assert r.local.endswith("struct an.b (0:1:0 @ offset 8)")
    assert r.target.endswith("struct an.b (0:1:1 @ offset 12)")
    r = resolve(lo, tg, R(ls, "0:1:1", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (8, 16)
    # the member a changed size: byte size relocation
    r = resolve(lo, tg, R(ls, "0:0", K.FIELD_BYTE_SIZE))
    assert (r.orig_val, r.new_val) == (4, 8)


def test_nested_pointer_free_path_through_typedefs_and_modifiers():
    lo, tg = B(), B()
    li = lo.int()
    inner_l = lo.struct("in", 8, ("p", li, 0), ("q", li, 32))
    td = lo.add(Typedef(name="in_t", type=inner_l))
    ls = lo.struct("out", 8, ("in", td, 0))
    ti = tg.int()
    inner_t = tg.struct("in", 12, ("x", ti, 0), ("q", ti, 32), ("p", ti, 64))
    tg.struct("out", 16, ("pad", ti, 0), ("in", inner_t, 32))
    r = resolve(lo, tg, R(ls, "0:0:1", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (4, 8)
    r = resolve(lo, tg, R(ls, "0:0:0", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (0, 12)


# --------------------------------------------------------------------------
# flavors, ambiguity, candidate pruning

def test_local_flavor_matches_target(pair):
    lo, tg, _, _ = pair
    li = 1
    old = lo.struct("s___old", 8, ("pad", li, 0), ("b", li, 32))
    r = resolve(lo, tg, R(old, "0:1", K.FIELD_BYTE_OFFSET))
    assert (r.orig_val, r.new_val) == (4, 12)


def test_target_flavors_agreeing_are_not_ambiguous(pair):
    lo, tg, ls, _ = pair
    ti = 1
    tg.struct("s___dup", 8, ("a", ti, 0), ("b", ti, 96), ("x", ti, 32))
    r = resolve(lo, tg, R(ls, "0:1", K.FIELD_BYTE_OFFSET))
    assert r.new_val == 12


def test_ambiguous_offsets_raise(pair):
    """libbpf refuses (-EINVAL "field offset ambiguity") rather than guess."""
    lo, tg, ls, _ = pair
    ti = 1
    tg.struct("s___other", 8, ("a", ti, 0), ("b", ti, 32))
    with pytest.raises(BtfError, match="ambiguous: field offset 96 bits"):
        resolve(lo, tg, R(ls, "0:1", K.FIELD_BYTE_OFFSET))


def test_ambiguous_decision_raises():
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("s", 8, ("a", li, 0), ("b", li, 32))
    ti = tg.int()
    tl = tg.int("long long", 8, signed=True)
    tg.struct("s", 8, ("b", ti, 0))
    tg.struct("s___v2", 8, ("b", tl, 0))   # same offset, different size
    with pytest.raises(BtfError, match="ambiguous: 4 .* != 8"):
        resolve(lo, tg, R(ls, "0:1", K.FIELD_BYTE_SIZE))


def test_candidates_are_pruned_like_libbpf():
    """After a relocation matches some candidates, later ones only see those."""
    lo, tg = B(), B()
    li = lo.int()
    ls = lo.struct("s", 12, ("a", li, 0), ("c", li, 32), ("d", li, 64))
    ti = tg.int()
    tg.struct("s", 8, ("a", ti, 0), ("d", ti, 32))
    tg.struct("s___x", 8, ("a", ti, 0), ("c", ti, 32))
    res = CoreResolver(lo.btf, Targets(tg.btf))
    assert res.resolve(R(ls, "0:2", K.FIELD_BYTE_OFFSET)).new_val == 4   # only s has d
    assert res.resolve(R(ls, "0:1", K.FIELD_BYTE_OFFSET)).poison         # s___x pruned
    fresh = CoreResolver(lo.btf, Targets(tg.btf))
    assert fresh.resolve(R(ls, "0:1", K.FIELD_BYTE_OFFSET)).new_val == 4


# --------------------------------------------------------------------------
# type-based relocations

def test_type_relocations(pair):
    lo, tg, ls, ts = pair
    r = resolve(lo, tg, R(ls, "0", K.TYPE_EXISTS))
    assert (r.orig_val, r.new_val) == (1, 1)
    r = resolve(lo, tg, R(ls, "0", K.TYPE_SIZE))
    assert (r.orig_val, r.new_val) == (8, 16)
    r = resolve(lo, tg, R(ls, "0", K.TYPE_ID_TARGET))
    assert (r.orig_val, r.new_val, r.validate) == (ls, ts, False)
    r = resolve(lo, tg, R(ls, "0", K.TYPE_ID_LOCAL))
    assert (r.orig_val, r.new_val, r.validate) == (ls, ls, False)
    gone = lo.struct("gone", 4, ("a", 1, 0))
    for kind in (K.TYPE_EXISTS, K.TYPE_SIZE, K.TYPE_ID_TARGET, K.TYPE_MATCHES):
        r = resolve(lo, tg, R(gone, "0", kind))
        assert (r.poison, r.new_val) == (False, 0), kind


def test_type_relocation_through_typedef_and_kind_mismatch():
    lo, tg = B(), B()
    li = lo.int()
    ltd = lo.add(Typedef(name="pid_t", type=li))
    ti = tg.int()
    tg.add(Typedef(name="pid_t", type=ti))
    r = resolve(lo, tg, R(ltd, "0", K.TYPE_SIZE))
    assert (r.orig_val, r.new_val) == (4, 4)
    # a struct named like a target union is no candidate (kinds differ)
    ls = lo.struct("thing", 4, ("a", li, 0))
    tg.struct("thing", 4, ("a", ti, 0), union=True)
    assert resolve(lo, tg, R(ls, "0", K.TYPE_EXISTS)).new_val == 0


def test_type_matches():
    lo, tg = B(), B()
    li = lo.int()
    ll = lo.int("long", 8)
    fwd_l = lo.struct("peer", 4, ("q", li, 0))
    pl = lo.add(Ptr(type=fwd_l))
    good = lo.struct("m___mine", 8, ("a", li, 0), ("p", pl, 0))
    bad_size = lo.struct("m___wide", 8, ("a", ll, 0))
    bad_member = lo.struct("m___extra", 8, ("zzz", li, 0))
    ti = tg.int()
    tl = tg.int("long", 8)
    fwd_t = tg.add(Fwd(name="peer"))          # only a forward declaration in the target
    pt = tg.add(Ptr(type=fwd_t))
    tg.struct("m", 24, ("a", ti, 0), ("b", tl, 64), ("p", pt, 128))
    assert resolve(lo, tg, R(good, "0", K.TYPE_MATCHES)).new_val == 1
    assert resolve(lo, tg, R(bad_size, "0", K.TYPE_MATCHES)).new_val == 0
    assert resolve(lo, tg, R(bad_member, "0", K.TYPE_MATCHES)).new_val == 0
    # plain compatibility (TYPE_EXISTS) is much looser
    assert resolve(lo, tg, R(bad_size, "0", K.TYPE_EXISTS)).new_val == 1


def test_type_matches_enums():
    lo, tg = B(), B()
    le = lo.add(Enum(name="color___mine", size=4, values=[EnumValue("RED", 9)]))
    le_more = lo.add(Enum(name="color___more", size=4,
                          values=[EnumValue("RED", 0), EnumValue("PURPLE", 5)]))
    tg.add(Enum64(name="color", size=4, values=[EnumValue("RED", 0), EnumValue("BLUE", 1)]))
    assert resolve(lo, tg, R(le, "0", K.TYPE_MATCHES)).new_val == 1
    assert resolve(lo, tg, R(le_more, "0", K.TYPE_MATCHES)).new_val == 0


# --------------------------------------------------------------------------
# enum value relocations

def test_enumval():
    lo, tg = B(), B()
    le = lo.add(Enum(name="fid___mine", size=4,
                     values=[EnumValue("PRINTK___mine", 1234), EnumValue("NOPE", 4321)]))
    tg.add(Enum(name="fid", size=4, values=[EnumValue("MAP", 1), EnumValue("PRINTK", 6)]))
    r = resolve(lo, tg, R(le, "0", K.ENUMVAL_VALUE))
    assert (r.poison, r.orig_val, r.new_val) == (False, 1234, 6)
    assert r.local == f"<enumval_value> [{le}] enum fid___mine::PRINTK___mine = 1234"
    r = resolve(lo, tg, R(le, "0", K.ENUMVAL_EXISTS))
    assert (r.orig_val, r.new_val) == (1, 1)
    r = resolve(lo, tg, R(le, "1", K.ENUMVAL_EXISTS))
    assert (r.poison, r.orig_val, r.new_val) == (False, 1, 0)
    assert resolve(lo, tg, R(le, "1", K.ENUMVAL_VALUE)).poison


def test_enumval_64_bit_and_signed_values():
    lo, tg = B(), B()
    le = lo.add(Enum(name="big", size=4, values=[EnumValue("HUGE", 1), EnumValue("NEG", 2)]))
    tg.add(Enum64(name="big", size=8, kind_flag=True,
                  values=[EnumValue("HUGE", 1 << 40), EnumValue("NEG", -5)]))
    assert resolve(lo, tg, R(le, "0", K.ENUMVAL_VALUE)).new_val == 1 << 40
    assert resolve(lo, tg, R(le, "1", K.ENUMVAL_VALUE)).new_val == M64 - 4


# --------------------------------------------------------------------------
# malformed records

@pytest.mark.parametrize("access,kind,msg", [
    ("", K.FIELD_BYTE_OFFSET, "empty or malformed"),
    (":1", K.FIELD_BYTE_OFFSET, "empty or malformed"),
    ("0:x", K.FIELD_BYTE_OFFSET, "malformed access string"),
    ("0:-1", K.FIELD_BYTE_OFFSET, "negative index"),
    ("0:9", K.FIELD_BYTE_OFFSET, "member index 9 out of range"),
    ("0:0:1", K.FIELD_BYTE_OFFSET, "unexpected kind INT"),
    ("0:1", K.TYPE_EXISTS, "needs access string '0'"),
    ("0:" * 70 + "0", K.FIELD_BYTE_OFFSET, "deeper than 64"),
    ("0", 42, "unrecognized CO-RE relocation kind 42"),
    ("0", K.ENUMVAL_VALUE, "does not name an enumerator"),
])
def test_malformed_records(pair, access, kind, msg):
    lo, tg, ls, _ = pair
    with pytest.raises(BtfError, match=msg):
        resolve(lo, tg, R(ls, access, kind))


def test_anonymous_root_and_bad_type_id_are_errors():
    lo, tg = B(), B()
    li = lo.int()
    anon = lo.struct("", 4, ("a", li, 0))
    tg.int()
    with pytest.raises(BtfError, match="anonymous struct"):
        resolve(lo, tg, R(anon, "0:0", K.FIELD_BYTE_OFFSET))
    with pytest.raises(BtfError, match="local type id 99"):
        resolve(lo, tg, R(99, "0:0", K.FIELD_BYTE_OFFSET))


# --------------------------------------------------------------------------
# instruction patching

def _res(**kw):
    return core.CoreResult(**kw)


@pytest.mark.parametrize("code", [0xB7, 0x07, 0xB4, 0x04])   # mov64/add64/mov32/add32 imm
def test_patch_alu_imm(code):
    buf = bytearray(insn(code, 1, imm=4))
    assert patch_insn(buf, 0, _res(orig_val=4, new_val=1264)) is False
    assert decode(buf, 0) == (code, 1, 0, 0, 1264)


def test_patch_alu_register_operand_refused():
    buf = bytearray(insn(0x0F, 1, 2))  # r1 += r2
    with pytest.raises(BtfError, match="register operand"):
        patch_insn(buf, 0, _res(orig_val=0, new_val=8))


def test_patch_validates_original_value_and_leaves_insn_alone():
    buf = bytearray(insn(0xB7, 1, imm=5))
    before = bytes(buf)
    with pytest.raises(BtfError, match=r"got 5, expected 4 -> 8"):
        patch_insn(buf, 0, _res(orig_val=4, new_val=8))
    assert bytes(buf) == before
    # no validation (bitfields, type ids): patched whatever clang put there
    patch_insn(buf, 0, _res(orig_val=4, new_val=8, validate=False))
    assert decode(buf, 0)[4] == 8


def test_patch_negative_values_compare_as_u64():
    buf = bytearray(insn(0xB7, 1, imm=-1))
    patch_insn(buf, 0, _res(orig_val=M64, new_val=M64 - 4))
    assert decode(buf, 0)[4] == -5


@pytest.mark.parametrize("code", [0x61, 0x62, 0x63])   # ldxw, stw, stxw
def test_patch_memory_offset(code):
    buf = bytearray(insn(code, 1, 2, off=4, imm=7))
    patch_insn(buf, 0, _res(orig_val=4, new_val=12, orig_sz=4, new_sz=4))
    assert decode(buf, 0) == (code, 1, 2, 12, 7)


def test_patch_load_size_change():
    buf = bytearray(insn(0x79, 0, 1, off=8))    # r0 = *(u64 *)(r1 + 8)
    patch_insn(buf, 0, _res(orig_val=8, new_val=20, orig_sz=8, new_sz=4))
    assert decode(buf, 0) == (0x61, 0, 1, 20, 0)  # r0 = *(u32 *)(r1 + 20)
    buf = bytearray(insn(0x71, 0, 1, off=8))    # u8 load, but the field was 8 bytes
    with pytest.raises(BtfError, match="accesses 1 bytes, expected 8"):
        patch_insn(buf, 0, _res(orig_val=8, new_val=20, orig_sz=8, new_sz=4))
    buf = bytearray(insn(0x61, 0, 1, off=8))
    with pytest.raises(BtfError, match="invalid new access size 3"):
        patch_insn(buf, 0, _res(orig_val=8, new_val=20, orig_sz=4, new_sz=3))


def test_patch_load_size_change_refused_poisons():
    buf = bytearray(insn(0x61, 0, 1, off=8))
    assert patch_insn(buf, 0, _res(orig_val=8, new_val=16, orig_sz=4, new_sz=8,
                                   fail_memsz_adjust=True)) is True
    assert bytes(buf) == POISON


def test_patch_offset_too_big():
    buf = bytearray(insn(0x61, 0, 1, off=8))
    with pytest.raises(BtfError, match="does not fit in 16 bits"):
        patch_insn(buf, 0, _res(orig_val=8, new_val=40000))


def test_patch_ld_imm64():
    buf = bytearray(insn(0x18, 1, imm=14) + insn(0))
    patch_insn(buf, 0, _res(orig_val=14, new_val=(5 << 32) | 0xFFFFFFFF))
    assert decode(buf, 0)[4] == -1 and decode(buf, 1)[4] == 5
    bad = bytearray(insn(0x18, 1, src=1, imm=3) + insn(0))  # a map load, not a constant
    with pytest.raises(BtfError, match="unexpected form"):
        patch_insn(bad, 0, _res(orig_val=3, new_val=4))
    with pytest.raises(BtfError, match="missing its second half"):
        patch_insn(bytearray(insn(0x18, 1)), 0, _res())


def test_poison_alu_and_both_halves_of_ld_imm64():
    buf = bytearray(insn(0xB7, 1, imm=4) + insn(0x18, 2, imm=6) + insn(0) + insn(0x95))
    assert patch_insn(buf, 0, _res(poison=True))
    assert patch_insn(buf, 1, _res(poison=True))
    assert bytes(buf) == POISON * 3 + insn(0x95)
    assert struct.unpack_from("<i", POISON, 4)[0] == 195896080


def test_patch_refuses_other_classes_and_bad_index():
    with pytest.raises(BtfError, match="cannot carry a CO-RE relocation"):
        patch_insn(bytearray(insn(0x05, off=1)), 0, _res())
    with pytest.raises(BtfError, match="out of range"):
        patch_insn(bytearray(insn(0xB7)), 3, _res())


# --------------------------------------------------------------------------
# apply_core_relos on a synthetic object: layout rebasing and error context

def _synthetic(pair, text_access="0:1"):
    lo, tg, ls, _ = pair
    prog = ProgramSpec(name="prog", section="raw_tp/x",
                       insns=insn(0xB7, 1, imm=4) + insn(0x85, src=1, imm=-1) + insn(0x95),
                       relocs=[Reloc(1, RelocKind.CALL, "sub")])
    other = FunctionSpec(name="other", section=".text", offset=0,
                         insns=insn(0xB7, 0, imm=0) + insn(0x95))
    sub = FunctionSpec(name="sub", section=".text", offset=16,
                       insns=insn(0x61, 0, 1, off=4) + insn(0x95))
    ext = BtfExt()
    ext.core_relos = {
        "raw_tp/x": [CoreRelo(0, ls, 0, K.FIELD_BYTE_OFFSET, "0:1")],
        ".text": [CoreRelo(0, ls, 0, K.FIELD_BYTE_OFFSET, "0:0"),    # in "other": not linked
                  CoreRelo(16, ls, 0, K.FIELD_BYTE_OFFSET, text_access)],
    }
    spec = ObjectSpec(name="synthetic", functions={"prog": prog, "other": other, "sub": sub},
                      programs={"prog": prog}, btf=lo.btf, btf_ext=ext)
    return spec, Targets(tg.btf)


def test_apply_rebases_per_function(pair):
    spec, targets = _synthetic(pair)
    linked = _insn.link("prog", spec.functions)
    assert linked.layout == [("prog", 0), ("sub", 3)]
    fixups = apply_core_relos(linked, spec, targets=targets)
    assert [(f.function, f.section, f.index, f.insn, f.orig_val, f.new_val, f.poison)
            for f in fixups] == [("prog", "raw_tp/x", 0, 0, 4, 12, False),
                                 ("sub", ".text", 1, 3, 4, 12, False)]
    assert decode(linked.insns, 0)[4] == 12
    assert decode(linked.insns, 3)[3] == 12
    # the spec is untouched: instructions are patched in the linked copy only
    assert spec.functions["sub"].insns == insn(0x61, 0, 1, off=4) + insn(0x95)


def test_apply_resolves_each_record_once_per_spec(pair, monkeypatch):
    spec, targets = _synthetic(pair)
    calls = []
    orig = CoreResolver.resolve
    monkeypatch.setattr(CoreResolver, "resolve", lambda self, r: calls.append(r) or orig(self, r))
    for _ in range(3):
        apply_core_relos(_insn.link("prog", spec.functions), spec, targets=targets)
    # the two linked records are alike (kind, type, access "0:1"): one resolution serves both
    assert len(calls) == 1
    copy = spec.copy()   # a new load: resolved again
    apply_core_relos(_insn.link("prog", copy.functions), copy, targets=targets)
    assert len(calls) == 2


def test_apply_resolves_distinct_records_apart(pair, monkeypatch):
    """Records that differ in access string are resolved each, and patched with their own
    values (the sharing of alike records keys on kind, type and access string)."""
    spec, targets = _synthetic(pair, text_access="0:0")
    calls = []
    orig = CoreResolver.resolve
    monkeypatch.setattr(CoreResolver, "resolve", lambda self, r: calls.append(r) or orig(self, r))
    linked = _insn.link("prog", spec.functions)
    # "sub" still reads offset 4 (member 1): the "0:0" record's own values (0 -> 8, not the
    # first record's 4 -> 12) are checked against it, and refused
    with pytest.raises(BtfError, match=r"got 4, expected 0 -> 8"):
        apply_core_relos(linked, spec, targets=targets)
    assert [c.access_str for c in calls] == ["0:1", "0:0"]


def test_apply_error_names_object_program_index_and_access(pair):
    spec, targets = _synthetic(pair, text_access="0:7")
    with pytest.raises(BtfError) as ei:
        apply_core_relos(_insn.link("prog", spec.functions), spec, targets=targets)
    msg = str(ei.value)
    assert "object 'synthetic'" in msg and "section '.text'" in msg
    assert "program 'prog' (in function 'sub'): CO-RE relocation #1 <byte_off>" in msg
    assert "struct s + '0:7'" in msg and "member index 7 out of range" in msg
    assert ei.value.object == "synthetic" and ei.value.symbol == "prog"


def test_apply_misaligned_record(pair):
    spec, targets = _synthetic(pair)
    spec.btf_ext.core_relos["raw_tp/x"][0] = dataclasses.replace(
        spec.btf_ext.core_relos["raw_tp/x"][0], insn_off=4)
    with pytest.raises(BtfError, match="relocation #0 .* not a multiple of 8"):
        apply_core_relos(_insn.link("prog", spec.functions), spec, targets=targets)


def test_apply_without_kernel_btf_names_the_program(pair, monkeypatch):
    spec, _ = _synthetic(pair)
    monkeypatch.setattr(targets, "_kernel_targets", None)
    monkeypatch.setattr(targets, "_vmlinux", None)
    monkeypatch.setattr(targets, "VMLINUX_PATH", "/nonexistent/btf/vmlinux")
    with pytest.raises(BtfError, match="program 'prog' has CO-RE relocations, which need the "
                                       "kernel's BTF: kernel BTF unavailable"):
        apply_core_relos(_insn.link("prog", spec.functions), spec)


def test_apply_without_relocations_is_a_no_op(pair):
    spec, targets = _synthetic(pair)
    spec.btf_ext = None
    linked = _insn.link("prog", spec.functions)
    before = bytes(linked.insns)
    assert apply_core_relos(linked, spec, targets=targets) == []
    assert bytes(linked.insns) == before


# --------------------------------------------------------------------------
# module (split) BTF

_HDR = struct.Struct("<HBBIIIII")


def _split_blob(base: Btf, int_id: int) -> bytes:
    """Split BTF on *base*: struct mod_only { int v; }, struct shared { int w; int v; }."""
    strings = b"\0mod_only\0v\0shared\0w\0"
    sb = len(base.strings)

    def name(s):
        return sb + strings.index(b"\0" + s + b"\0") + 1
    types = struct.pack("<III", name(b"mod_only"), (4 << 24) | 1, 4)
    types += struct.pack("<III", name(b"v"), int_id, 0)
    types += struct.pack("<III", name(b"shared"), (4 << 24) | 2, 8)
    types += struct.pack("<III", name(b"w"), int_id, 0)
    types += struct.pack("<III", name(b"v"), int_id, 32)
    hdr = _HDR.pack(0xEB9F, 1, 0, _HDR.size, 0, len(types), len(types), len(strings))
    return hdr + types + strings


@pytest.fixture
def split():
    b = B()
    bi = b.int()
    b.struct("shared", 4, ("v", bi, 0))
    base = Btf.parse(b.btf.to_bytes())
    return base, Btf.parse(_split_blob(base, bi), base=base)


def test_module_btf_is_searched_only_when_vmlinux_has_no_candidate(split):
    base, mod = split
    lo = B()
    li = lo.int()
    only = lo.struct("mod_only", 4, ("v", li, 0))
    shared = lo.struct("shared", 4, ("v", li, 0))
    asked = []

    def modules():
        asked.append(1)
        return [TargetBtf(mod, "mymod")]
    res = CoreResolver(lo.btf, Targets(base, modules))
    r = res.resolve(R(shared, "0:0", K.FIELD_BYTE_OFFSET))
    assert r.new_val == 0 and not asked                 # vmlinux's 'shared' wins
    r = res.resolve(R(only, "0", K.TYPE_ID_TARGET))
    assert r.new_val == mod.start_id and asked          # the module's own type
    assert res.resolve(R(only, "0:0", K.FIELD_EXISTS)).new_val == 1


def test_module_directory_scan(split, tmp_path):
    base, mod = split
    (tmp_path / "vmlinux").write_bytes(b"not read")
    raw = _split_blob(base, 1)
    (tmp_path / "mymod").write_bytes(raw)
    mods = targets._KernelModules(base, str(tmp_path))
    got = mods()
    assert [m.name for m in got] == ["mymod"]
    assert mods() == got          # parsed once
    assert [t.name for t in got[0].candidates("mod_only", bpfload.btf.Kind.STRUCT)] == ["mod_only"]
    # only the module's own types are candidates, never its base's
    assert [t.id for t in got[0].candidates("shared", bpfload.btf.Kind.STRUCT)] == [mod.start_id + 1]
    (tmp_path / "broken").write_bytes(b"\0" * 8)
    with pytest.raises(BtfError, match="module BTF .*broken"):
        mods()


def test_target_index_finds_flavored_target_names():
    tg = B()
    ti = tg.int()
    a = tg.struct("thing___v1", 4, ("a", ti, 0))
    b = tg.struct("thing___v2", 4, ("a", ti, 0))
    tg.struct("thing___v2___x", 4, ("a", ti, 0))    # essential name thing___v2
    t = TargetBtf(Btf.parse(tg.btf.to_bytes()))
    assert [x.id for x in t.candidates("thing", bpfload.btf.Kind.STRUCT)] == [a, b]
    assert t.candidates("thing", bpfload.btf.Kind.UNION) == []


def test_compiled_index_rejects_malformed_records():
    from array import array
    from bpfload._core import corepatch
    rec = struct.pack("<III", 1, 4 << 24, 4)
    strings = b"\0abc\0"
    idx = corepatch.EssentialIndex(rec, array("I", [0]), [(0, strings)], 1)
    assert idx.lookup("abc") == [1] and idx.lookup("abd") == [] and len(idx) == 1
    with pytest.raises(BtfError, match=r"type \[2\]: record offset 12 outside"):
        corepatch.EssentialIndex(rec, array("I", [0, 12]), [(0, strings)], 1)
    with pytest.raises(BtfError, match=r"type \[1\]: name offset outside"):
        corepatch.EssentialIndex(struct.pack("<III", 99, 4 << 24, 4), array("I", [0]),
                                 [(0, strings)], 1)
    with pytest.raises(BtfError, match="name offset outside"):   # no NUL before the end
        corepatch.EssentialIndex(rec, array("I", [0]), [(0, b"\0abc")], 1)
    for name in ("task_struct___v2", "a___b___c", "__u64", "___x", "foo____bar", ""):
        assert corepatch.essential_len(name) == len(core.essential_name(name))


# ==========================================================================
# the running kernel

@pytest.mark.kernel
def test_compiled_index_matches_python_twin_on_vmlinux():
    vm = _vmlinux()
    fast, slow = TargetBtf(vm, compiled=True), TargetBtf(vm, compiled=False)
    fast.build_index()
    slow.build_index()
    assert fast.compiled and not slow.compiled
    queries = {(core.essential_name(vm[tid].name), vm[tid].kind)
               for tid in range(1, len(vm), 53) if vm[tid].name}
    queries |= {(ess, vm.find(n).kind) for ess, names in slow._flavored.items() for n in names}
    queries |= {("task_struct", bpfload.btf.Kind.STRUCT), ("bpf_func_id", bpfload.btf.Kind.ENUM64),
                ("bpfload_no_such_type", bpfload.btf.Kind.STRUCT)}
    assert len(queries) > 1000
    for ess, kind in sorted(queries):
        assert [t.id for t in fast.candidates(ess, kind)] == \
            [t.id for t in slow.candidates(ess, kind)], (ess, kind)


TASK = "task_struct"


def _task_out(raw: bytes) -> dict:
    names = ["comm0", "pid_old", "flags", "flags_old", "pid_exists", "missing_exists", "guarded",
             "type_exists", "type_missing", "type_size", "type_matches", "type_mismatch",
             "enum_exists", "enum_missing", "enum_value", "pid_offset", "comm_size",
             "pid_signed", "reset_on_fork", "in_execve", "kernel_type_id", "seen"]
    pid, tgid, ppid, comm_len, comm = struct.unpack_from("<IIIi16s", raw)
    out = dict(pid=pid, tgid=tgid, ppid=ppid, comm_len=comm_len,
               comm=comm.split(b"\0", 1)[0].decode())
    out.update(zip(names, struct.unpack_from(f"<{len(names)}Q", raw, 32)))
    return out


def _vmlinux():
    return targets.vmlinux()


def _offset(vm, type_name, member):
    t = vm.find(type_name, bpfload.btf.Kind.STRUCT)
    m, bit = vm.find_member(t.id, member)
    return m, bit


def _in_thread(fn):
    """Run fn(tid) in a fresh thread with SCHED_RESET_ON_FORK set; re-raise its exception."""
    box = {}

    def body():
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER | 0x40000000, os.sched_param(0))
            tid = threading.get_native_id()
            with open(f"/proc/self/task/{tid}/comm") as f:
                box["comm"] = f.read().strip()
            box["tid"] = tid
            fn(tid)
        except BaseException as e:   # noqa: BLE001 - handed to the caller
            box["exc"] = e
    th = threading.Thread(target=body, name="core-test")
    th.start()
    th.join()
    if "exc" in box:
        raise box["exc"]
    return box


def _expected_common(vm, out):
    task = vm.find(TASK, bpfload.btf.Kind.STRUCT)
    pid_m, pid_bit = _offset(vm, TASK, "pid")
    return {
        "pid_exists": 1, "missing_exists": 0, "guarded": 0x5A5A5A5A,
        "type_exists": 1, "type_missing": 0, "type_size": task.size,
        "type_matches": 1, "type_mismatch": 0,
        "enum_exists": 1, "enum_missing": 0,
        "enum_value": vm.find("bpf_func_id", bpfload.btf.Kind.ENUM).value("BPF_FUNC_trace_printk"),
        "pid_offset": pid_bit // 8, "comm_size": 16, "pid_signed": 1,
        "kernel_type_id": task.id, "seen": 1,
    }


@pytest.mark.kernel
def test_raw_tp_reads_current_task_through_core():
    """raw_tp is test-run in the calling thread: it sees that thread's task_struct."""
    vm = _vmlinux()
    with bpfload.BpfObject.open(bpf_object("core_task")) as obj:
        obj.load()
        prog = obj.programs["core_raw_tp"]

        def run(tid):
            assert prog.test_run(ctx=bytes(16)).retval == 0
        box = _in_thread(run)
        out = _task_out(obj.maps["core_out"].lookup(0))
    assert out["pid"] == box["tid"] != os.getpid()
    assert out["tgid"] == os.getpid()
    assert out["ppid"] == os.getppid()
    assert out["comm"] == box["comm"] and out["comm_len"] == len(box["comm"]) + 1
    assert out["comm0"] == ord(box["comm"][0])
    assert out["pid_old"] == box["tid"]            # task_struct___old: kernel offset used
    assert out["reset_on_fork"] == 1 and out["in_execve"] == 0   # bitfields
    for k, v in _expected_common(vm, out).items():
        assert out[k] == v, k


@pytest.mark.kernel
def test_tp_btf_direct_loads_through_core():
    """tp_btf is attached to sys_enter and sees a syscall of this thread."""
    from bpfload._core import syscall as _sys
    vm = _vmlinux()
    with bpfload.BpfObject.open(bpf_object("core_task")) as obj:
        obj.load()
        prog = obj.programs["core_tp_btf"]
        # (BPF_PROG_TEST_RUN of a tp_btf program: EFAULT on 6.18 -- the kernel only
        # test-runs fentry/fexit/fmod_ret tracing programs -- so run it for real.)

        def run(tid):
            obj.bss["want_tid"] = tid
            link = _sys.raw_tracepoint_open(None, prog.fd, target=prog.name)
            try:
                os.getppid()        # any syscall of this thread
            finally:
                link.close()
        box = _in_thread(run)
        out = _task_out(obj.maps["core_out"].lookup(1))
    assert out["seen"] == 1
    assert out["pid"] == box["tid"] and out["tgid"] == os.getpid()
    assert out["ppid"] == os.getppid()
    assert out["comm"] == box["comm"]
    assert out["pid_old"] == box["tid"]
    assert out["flags_old"] == out["flags"] != 0   # 8-byte local load narrowed to the u32
    assert out["reset_on_fork"] == 1 and out["in_execve"] == 0
    for k, v in _expected_common(vm, out).items():
        assert out[k] == v, k


def _bitfield_expect(vm, member):
    """(byte_off, byte_sz, lshift, rshift) from vmlinux BTF, computed independently."""
    m, bit_off = _offset(vm, TASK, member)
    size = vm.size_of(m.type)
    byte_off = bit_off // 8 // size * size
    while bit_off + m.bitfield_size - byte_off * 8 > size * 8:
        size *= 2
        byte_off = bit_off // 8 // size * size
    return byte_off, size, 64 - (bit_off + m.bitfield_size - byte_off * 8), 64 - m.bitfield_size


@pytest.mark.kernel
@pytest.mark.parametrize("program", ["core_raw_tp", "core_tp_btf"])
def test_relocated_instructions_match_vmlinux_btf(program):
    spec = bpfload.BpfObject.open(bpf_object("core_task")).spec
    vm = _vmlinux()
    linked = _insn.link(program, spec.functions)
    original = bytes(linked.insns)
    fixups = apply_core_relos(linked, spec)
    assert fixups and {f.function for f in fixups} == {program, "fill_common"}
    task_local = {"task_struct", "task_struct___old"}
    checked = 0
    for f in fixups:
        lt = spec.btf[f.type_id]
        code, dst, src, off, imm = decode(linked.insns, f.insn)
        if f.poison:
            # only the guarded read of task_struct___mine.nonexistent_field
            assert lt.name == "task_struct___mine" and f.kind == K.FIELD_BYTE_OFFSET
            assert linked.insns[f.insn * 8:f.insn * 8 + 8] == POISON
            continue
        value = off if code & 7 in (1, 2, 3) else imm
        if code == 0x18:
            value = (imm & 0xFFFFFFFF) | (decode(linked.insns, f.insn + 1)[4] << 32)
        assert value & M64 == f.new_val or f.kind == K.TYPE_ID_TARGET, f
        if lt.name not in task_local or f.kind in (K.TYPE_EXISTS, K.TYPE_SIZE, K.TYPE_MATCHES,
                                                     K.TYPE_ID_TARGET):
            continue
        path = [int(x) for x in f.access_str.split(":")]
        member = lt.members[path[1]].name
        m, bit = _offset(vm, TASK, member)
        if m.bitfield_size:
            byte_off, size, lsh, rsh = _bitfield_expect(vm, member)
            want = {K.FIELD_BYTE_OFFSET: byte_off, K.FIELD_BYTE_SIZE: size,
                    K.FIELD_LSHIFT_U64: lsh, K.FIELD_RSHIFT_U64: rsh, K.FIELD_SIGNED: 0}[f.kind]
        elif f.kind == K.FIELD_BYTE_OFFSET:
            want = bit // 8
            if len(path) == 3:       # comm[n]
                want += path[2]
        elif f.kind == K.FIELD_BYTE_SIZE:
            want = vm.size_of(m.type)
        elif f.kind == K.FIELD_SIGNED:
            want = 1
        elif f.kind == K.FIELD_EXISTS:
            want = 1
        else:
            pytest.fail(f"unexpected relocation {f}")
        assert f.new_val == want, (f, member)
        checked += 1
    assert checked >= 8
    if program == "core_tp_btf":
        # task_struct___old.flags: u64 locally, u32 in the kernel -> the load was narrowed
        flags = [f for f in fixups if spec.btf[f.type_id].name == "task_struct___old"
                 and spec.btf[f.type_id].members[int(f.access_str.split(":")[1])].name == "flags"]
        assert len(flags) == 1
        assert original[flags[0].insn * 8] == 0x79          # ldxdw as compiled
        assert linked.insns[flags[0].insn * 8] == 0x61      # ldxw after relocation
        assert decode(linked.insns, flags[0].insn)[3] == _offset(vm, TASK, "flags")[1] // 8


@pytest.mark.kernel
@pytest.mark.parametrize("program,halves", [("poison_field", 1), ("poison_enum", 2)])
def test_unguarded_missing_relocation_fails_at_the_poisoned_instruction(program, halves):
    obj = bpfload.BpfObject.open(bpf_object("core_poison"))
    spec = obj.spec
    linked = _insn.link(program, spec.functions)
    fixups = apply_core_relos(linked, spec)
    bad = [f for f in fixups if f.poison]
    assert len(bad) == 1
    idx = bad[0].insn
    assert bytes(linked.insns[idx * 8:(idx + halves) * 8]) == POISON * halves
    obj.programs[program].autoload = True
    with obj, pytest.raises(bpfload.LoadError) as ei:
        obj.load()
    assert ei.value.program == program
    assert f"{idx}: (85) call unknown#195896080" in ei.value.log
    assert isinstance(ei.value, bpfload.CoreRelocationError) and ei.value.insn == idx
    assert f"{idx}: <invalid CO-RE relocation>" in str(ei.value)   # rewritten as libbpf does


# The comparison with libbpf of core_task and core_poison (instructions with map
# identity, attach ids, maps) is tests/test_libbpf_compat.py's, over every object.


@pytest.mark.kernel
def test_kernel_targets_are_cached_and_indexed():
    t1 = core.kernel_targets()
    assert core.kernel_targets() is t1
    assert t1.main.btf is _vmlinux()
    c = t1.candidates("task_struct", bpfload.btf.Kind.STRUCT)
    assert [t.name for _, t in c] == ["task_struct"]
