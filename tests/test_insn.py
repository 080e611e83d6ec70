"""Instruction decoding, subprogram linking and map patching (no kernel needed).

Every test taking ``mod`` runs against the compiled core (``bpfload._core.insn``)
and its pure-Python twin (``bpfload._pyinsn``); ``TestTwins`` feeds both the
same generated inputs and requires identical bytes or identical exceptions.
Programs are written with the small assembler below, so every expected byte
is known.
"""
from __future__ import annotations

import copy
import os
import random
import struct
from array import array

import pytest

import bpfload._core.insn as cinsn
import bpfload._pyinsn as pyinsn
from bpfload.errors import BpfError, ElfError
from bpfload.spec import FunctionSpec, Reloc, RelocKind

MAP, DATA, CALL, FUNC_ADDR, EXTERN = (RelocKind.MAP, RelocKind.DATA, RelocKind.CALL,
                                      RelocKind.FUNC_ADDR, RelocKind.EXTERN)


@pytest.fixture(params=[cinsn, pyinsn], ids=["cython", "python"])
def mod(request):
    return request.param


# ------------------------------------------------------------- assembler

def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov(dst, imm):
    return insn(0xB7, dst, imm=imm)          # BPF_ALU64 | BPF_MOV | BPF_K


def exit_():
    return insn(0x95)


def helper(func_id):
    return insn(0x85, imm=func_id)


def pcall(imm=-1):
    """A bpf-to-bpf call as clang emits it (src_reg = BPF_PSEUDO_CALL)."""
    return insn(0x85, src=1, imm=imm)


def ld64(dst, imm64=0, src=0):
    lo, hi = struct.unpack("<ii", struct.pack("<q", imm64))
    return insn(0x18, dst, src, imm=lo) + insn(0, imm=hi)


def asm(*parts):
    return b"".join(parts)


def slots(code_bytes):
    return [code_bytes[i:i + 8] for i in range(0, len(code_bytes), 8)]


def fields(buf, i):
    """(code, dst, src, off, imm) of slot *i* of *buf*."""
    code, regs, off, imm = struct.unpack_from("<BBhi", buf, i * 8)
    return code, regs & 15, regs >> 4, off, imm


def func(name, *parts, relocs=(), section=".text", offset=0):
    return FunctionSpec(name=name, section=section, insns=asm(*parts), relocs=list(relocs),
                        offset=offset)


def funcs(*fns):
    return {f.name: f for f in fns}


# ---------------------------------------------------------------- decode

class TestDecode:
    def test_known_instructions(self, mod):
        prog = asm(mov(1, 42), insn(0x61, 2, 1, off=-4), ld64(3, 0x1122334455667788, src=1),
                   helper(1), insn(0x07, 10, imm=-16), exit_())
        assert mod.decode(prog) == [
            (0xB7, 1, 0, 0, 42),
            (0x61, 2, 1, -4, 0),
            (0x18, 3, 1, 0, 0x55667788),
            (0x00, 0, 0, 0, 0x11223344),
            (0x85, 0, 0, 0, 1),
            (0x07, 10, 0, 0, -16),
            (0x95, 0, 0, 0, 0),
        ]

    def test_extremes(self, mod):
        prog = insn(0xFF, 15, 15, -32768, -2**31) + insn(0x07, 0, 0, 32767, 2**31 - 1)
        assert mod.decode(prog) == [(0xFF, 15, 15, -32768, -2**31), (0x07, 0, 0, 32767, 2**31 - 1)]

    def test_empty(self, mod):
        assert mod.decode(b"") == []
        assert mod.find_ld_imm64(b"") == []

    @pytest.mark.parametrize("make", [bytes, bytearray, memoryview, lambda b: array("B", b)])
    def test_buffer_types(self, mod, make):
        prog = asm(mov(0, 7), exit_())
        assert mod.decode(make(prog)) == [(0xB7, 0, 0, 0, 7), (0x95, 0, 0, 0, 0)]

    def test_not_a_buffer(self, mod):
        with pytest.raises(TypeError, match="bytes-like"):
            mod.decode(12)

    def test_non_contiguous(self, mod):
        with pytest.raises(TypeError, match="contiguous"):
            mod.decode(memoryview(bytes(32))[::2])

    @pytest.mark.parametrize("length", [1, 7, 9, 15])
    def test_length_not_multiple_of_8(self, mod, length):
        with pytest.raises(ElfError, match=f"{length} bytes, not a multiple of 8"):
            mod.decode(bytes(length))
        with pytest.raises(ElfError, match=f"{length} bytes, not a multiple of 8"):
            mod.find_ld_imm64(bytes(length))

    def test_find_ld_imm64(self, mod):
        prog = asm(ld64(1), mov(0, 0x18), ld64(2, 0x18), ld64(3), exit_(), ld64(4))
        assert mod.find_ld_imm64(prog) == [0, 3, 5, 8]

    def test_second_slot_is_not_scanned(self, mod):
        # imm bytes of 0x18 must not be taken for ld_imm64 codes
        prog = asm(insn(0x18, imm=0x18181818), insn(0, imm=0x18), exit_())
        assert mod.find_ld_imm64(prog) == [0]

    @pytest.mark.parametrize("fn", ["decode", "find_ld_imm64"])
    def test_ld_imm64_truncated(self, mod, fn):
        prog = asm(mov(0, 0), insn(0x18, 1))
        with pytest.raises(ElfError, match=r"ld_imm64 at instruction 1 is missing its second half \(end of stream\)"):
            getattr(mod, fn)(prog)

    @pytest.mark.parametrize("fn", ["decode", "find_ld_imm64"])
    def test_ld_imm64_bad_second_slot(self, mod, fn):
        prog = asm(insn(0x18, 1), exit_())
        with pytest.raises(ElfError, match=r"instruction 1 has code 0x95"):
            getattr(mod, fn)(prog)


# ------------------------------------------------------------------ link

class TestLink:
    def test_single_function(self, mod):
        main = func("main", mov(0, 1), exit_(), section="xdp")
        linked = mod.link("main", funcs(main))
        assert isinstance(linked.insns, bytearray)
        assert bytes(linked.insns) == main.insns
        assert linked.layout == [("main", 0)]
        assert linked.relocs == []
        assert linked.name == "main"
        assert linked.insn_count == 2

    def test_call_fixup(self, mod):
        main = func("main", mov(1, 1), pcall(), exit_(), relocs=[Reloc(1, CALL, "sub")], section="xdp")
        sub = func("sub", mov(0, 2), exit_())
        linked = mod.link("main", funcs(main, sub))
        assert linked.layout == [("main", 0), ("sub", 3)]
        assert slots(bytes(linked.insns)) == [mov(1, 1), pcall(3 - 2), exit_(), mov(0, 2), exit_()]

    def test_call_sets_pseudo_call_and_keeps_dst(self, mod):
        # clang's cross-section calls already have src_reg 1; be strict anyway
        main = func("main", insn(0x85, dst=0, src=0, imm=-1), exit_(), relocs=[Reloc(0, CALL, "s")])
        s = func("s", exit_())
        linked = mod.link("main", funcs(main, s))
        assert fields(linked.insns, 0) == (0x85, 0, 1, 0, 1)

    def test_call_addend(self, mod):
        main = func("main", pcall(), exit_(), relocs=[Reloc(0, CALL, "sub", addend=2)])
        sub = func("sub", mov(0, 0), mov(0, 1), mov(0, 2), exit_())
        linked = mod.link("main", funcs(main, sub))
        # callee starts at 2; target 2 + 2 = 4; imm = 4 - (0 + 1)
        assert fields(linked.insns, 0) == (0x85, 0, 1, 0, 3)

    def test_two_programs_share_a_subprogram(self, mod):
        sub = func("sub", mov(0, 9), ld64(1), exit_(), relocs=[Reloc(1, MAP, "m")])
        a = func("a", pcall(), exit_(), relocs=[Reloc(0, CALL, "sub")], section="xdp")
        b = func("b", mov(6, 1), mov(7, 1), pcall(), exit_(), relocs=[Reloc(2, CALL, "sub")],
                 section="tc")
        fns = funcs(a, b, sub)
        before = copy.deepcopy(fns)
        la = mod.link("a", fns)
        lb = mod.link("b", fns)
        assert la.layout == [("a", 0), ("sub", 2)]
        assert lb.layout == [("b", 0), ("sub", 4)]
        assert fields(la.insns, 0) == (0x85, 0, 1, 0, 1)
        assert fields(lb.insns, 2) == (0x85, 0, 1, 0, 1)
        assert bytes(la.insns[16:]) == bytes(lb.insns[32:]) == sub.insns
        assert la.relocs == [Reloc(3, MAP, "m")]
        assert lb.relocs == [Reloc(5, MAP, "m")]
        assert fns == before, "link must not modify the specs"
        assert la.insns is not lb.insns

    def test_nested_calls_depth_first(self, mod):
        # main -> a (insn 0), main -> b (insn 2); a -> c.  libbpf order: main, a, c, b
        main = func("main", pcall(), mov(1, 0), pcall(), exit_(),
                    relocs=[Reloc(2, CALL, "b"), Reloc(0, CALL, "a")])   # unsorted on purpose
        a = func("a", mov(0, 1), pcall(), exit_(), relocs=[Reloc(1, CALL, "c")])
        b = func("b", mov(0, 2), exit_())
        c = func("c", pcall(), exit_(), relocs=[Reloc(0, CALL, "b")])
        linked = mod.link("main", funcs(main, a, b, c))
        assert linked.layout == [("main", 0), ("a", 4), ("c", 7), ("b", 9)]
        assert fields(linked.insns, 0)[4] == 4 - 1       # main -> a
        assert fields(linked.insns, 2)[4] == 9 - 3       # main -> b
        assert fields(linked.insns, 5)[4] == 7 - 6       # a -> c
        assert fields(linked.insns, 7)[4] == 9 - 8       # c -> b
        assert linked.insn_count == 11

    def test_unreferenced_functions_left_out(self, mod):
        main = func("main", exit_())
        other = func("other", exit_())
        assert mod.link("main", funcs(main, other)).layout == [("main", 0)]

    def test_recursion_and_cycles(self, mod):
        # main calls itself and a; a calls b; b calls a and main
        main = func("main", pcall(), pcall(), exit_(),
                    relocs=[Reloc(0, CALL, "main"), Reloc(1, CALL, "a")])
        a = func("a", pcall(), exit_(), relocs=[Reloc(0, CALL, "b")])
        b = func("b", pcall(), pcall(), exit_(), relocs=[Reloc(0, CALL, "a"), Reloc(1, CALL, "main")])
        linked = mod.link("main", funcs(main, a, b))
        assert linked.layout == [("main", 0), ("a", 3), ("b", 5)]
        assert [fields(linked.insns, i)[4] for i in (0, 1, 3, 5, 6)] == [
            0 - 1, 3 - 2, 5 - 4, 3 - 6, 0 - 7]

    def test_func_addr(self, mod):
        main = func("main", ld64(2, 0x40), helper(181), exit_(),
                    relocs=[Reloc(0, FUNC_ADDR, "cb")], section="xdp")
        cb = func("cb", mov(0, 0), exit_())
        linked = mod.link("main", funcs(main, cb))
        assert linked.layout == [("main", 0), ("cb", 4)]
        assert fields(linked.insns, 0) == (0x18, 2, 4, 0, 4 - 1)
        assert fields(linked.insns, 1) == (0, 0, 0, 0, 0)   # second slot untouched
        assert linked.relocs == []

    def test_func_addr_and_call_same_callee(self, mod):
        main = func("main", ld64(2), pcall(), exit_(),
                    relocs=[Reloc(0, FUNC_ADDR, "cb"), Reloc(2, CALL, "cb")])
        cb = func("cb", exit_())
        linked = mod.link("main", funcs(main, cb))
        assert linked.layout == [("main", 0), ("cb", 4)]
        assert fields(linked.insns, 0)[2:] == (4, 0, 3)
        assert fields(linked.insns, 2)[2:] == (1, 0, 1)

    def test_data_relocs_made_absolute(self, mod):
        main = func("main", ld64(1), pcall(), exit_(),
                    relocs=[Reloc(2, CALL, "sub"), Reloc(0, DATA, ".rodata", addend=8)])
        sub = func("sub", ld64(1), ld64(2), helper(1), pcall(), exit_(),
                   relocs=[Reloc(0, MAP, "m", addend=20), Reloc(2, EXTERN, "CONFIG_HZ"),
                           Reloc(5, EXTERN, "bpf_kfunc")])
        linked = mod.link("main", funcs(main, sub))
        assert linked.relocs == [
            Reloc(0, DATA, ".rodata", addend=8),
            Reloc(4, MAP, "m", addend=20),
            Reloc(6, EXTERN, "CONFIG_HZ"),
            Reloc(9, EXTERN, "bpf_kfunc"),
        ]
        assert all(type(r) is Reloc and isinstance(r.kind, RelocKind) for r in linked.relocs)
        # MAP/DATA/EXTERN instructions are left for the loader to patch
        assert bytes(linked.insns[:16]) == ld64(1)
        assert bytes(linked.insns[32:48]) == ld64(1)

    def test_linked_program_repr_and_eq(self, mod):
        main = func("main", exit_())
        l1 = mod.link("main", funcs(main))
        l2 = mod.link("main", funcs(main))
        assert l1 == l2
        assert "main" in repr(l1) and "1 insns" in repr(l1)
        l2.insns[0] = 0
        assert l1 != l2


class TestLinkErrors:
    def check(self, mod, fns, entry, pattern, symbol, idx=None):
        with pytest.raises(ElfError, match=pattern) as info:
            mod.link(entry, fns)
        assert info.value.symbol == symbol
        if idx is not None:
            assert f"instruction {idx}:" in str(info.value)
        return info.value

    def test_unknown_entry(self, mod):
        self.check(mod, {}, "nope", "unknown entry function 'nope'", "nope")

    def test_unknown_callee(self, mod):
        main = func("main", mov(0, 0), pcall(), exit_(), relocs=[Reloc(1, CALL, "ghost")],
                    section="xdp", offset=0x20)
        err = self.check(mod, funcs(main), "main", "CALL relocation names unknown function 'ghost'",
                         "main", 1)
        assert err.section == "xdp"
        assert err.offset == 0x20 + 8

    def test_unknown_func_addr_target(self, mod):
        main = func("main", ld64(1), exit_(), relocs=[Reloc(0, FUNC_ADDR, "ghost")])
        self.check(mod, funcs(main), "main", "FUNC_ADDR relocation names unknown function", "main", 0)

    def test_unknown_callee_in_subprogram(self, mod):
        main = func("main", pcall(), exit_(), relocs=[Reloc(0, CALL, "sub")])
        sub = func("sub", mov(0, 0), pcall(), exit_(), relocs=[Reloc(1, CALL, "ghost")])
        self.check(mod, funcs(main, sub), "main", "unknown function 'ghost'", "sub", 1)

    def test_call_reloc_not_on_call(self, mod):
        main = func("main", mov(0, 0), exit_(), relocs=[Reloc(0, CALL, "main")])
        self.check(mod, funcs(main), "main", r"CALL relocation is not on a call instruction \(code 0xb7\)",
                   "main", 0)

    @pytest.mark.parametrize("kind", [MAP, DATA, FUNC_ADDR])
    def test_reloc_not_on_ld_imm64(self, mod, kind):
        main = func("main", mov(0, 0), helper(1), exit_(), relocs=[Reloc(1, kind, "main")])
        self.check(mod, funcs(main), "main",
                   rf"{kind.name} relocation is not on an ld_imm64 instruction \(code 0x85\)", "main", 1)

    @pytest.mark.parametrize("kind", [MAP, DATA, FUNC_ADDR])
    def test_ld_imm64_truncated_by_function_end(self, mod, kind):
        main = func("main", exit_(), insn(0x18, 1), relocs=[Reloc(1, kind, "main")])
        self.check(mod, funcs(main), "main", r"missing its second half \(end of function\)", "main", 1)

    def test_ld_imm64_bad_second_slot(self, mod):
        main = func("main", insn(0x18, 1), exit_(), relocs=[Reloc(0, MAP, "m")])
        self.check(mod, funcs(main), "main", r"instruction 1 has code 0x95", "main", 0)

    @pytest.mark.parametrize("idx", [-1, 2, 100])
    @pytest.mark.parametrize("kind", list(RelocKind))
    def test_reloc_index_out_of_range(self, mod, kind, idx):
        main = func("main", mov(0, 0), exit_(), relocs=[Reloc(idx, kind, "main")])
        self.check(mod, funcs(main), "main",
                   rf"{kind.name} relocation is out of range \(function has 2 instructions\)", "main", idx)

    def test_reloc_out_of_range_in_subprogram(self, mod):
        main = func("main", pcall(), exit_(), relocs=[Reloc(0, CALL, "sub")])
        sub = func("sub", exit_(), relocs=[Reloc(1, MAP, "m")])
        self.check(mod, funcs(main, sub), "main", "out of range", "sub", 1)

    @pytest.mark.parametrize("addend", [-1, 2])
    def test_call_target_outside_callee(self, mod, addend):
        main = func("main", pcall(), exit_(), relocs=[Reloc(0, CALL, "sub", addend=addend)])
        sub = func("sub", mov(0, 0), exit_())
        self.check(mod, funcs(main, sub), "main",
                   rf"CALL target offset {addend} is outside function 'sub' \(2 instructions\)", "main", 0)

    def test_two_relocs_on_one_instruction(self, mod):
        main = func("main", ld64(1), exit_(), relocs=[Reloc(0, MAP, "a"), Reloc(0, MAP, "b")])
        self.check(mod, funcs(main), "main", "more than one relocation on one instruction", "main", 0)

    def test_pseudo_call_without_reloc(self, mod):
        main = func("main", mov(0, 0), pcall(5), exit_())
        self.check(mod, funcs(main), "main", "bpf-to-bpf call without a CALL relocation", "main", 1)

    def test_helper_call_needs_no_reloc(self, mod):
        main = func("main", helper(5), exit_())
        assert bytes(mod.link("main", funcs(main)).insns) == main.insns

    def test_unknown_kind(self, mod):
        main = func("main", ld64(1), exit_(), relocs=[Reloc(0, 9, "x")])
        self.check(mod, funcs(main), "main", "unknown relocation kind 9", "main", 0)

    def test_function_size(self, mod):
        main = FunctionSpec("main", "xdp", b"\x95" + bytes(8))
        self.check(mod, funcs(main), "main", "function is 9 bytes, not a multiple of 8", "main")
        ok = func("ok", pcall(), exit_(), relocs=[Reloc(0, CALL, "main")])
        self.check(mod, {"ok": ok, "main": main}, "ok", "not a multiple of 8", "main")


# -------------------------------------------------------------- patching

def records(*recs):
    return array("i", [v for rec in recs for v in rec])


class TestPatch:
    def test_map_byte_exact(self, mod):
        prog = bytearray(asm(mov(0, 0), ld64(1, 0x1234_0000_5678, src=0), exit_()))
        assert mod.patch_maps(prog, records((1, 1, 7, 0))) == 1
        assert bytes(prog) == asm(mov(0, 0), insn(0x18, 1, 1, imm=7), insn(0, imm=0), exit_())

    def test_data_byte_exact(self, mod):
        prog = bytearray(asm(ld64(9, 16), exit_()))
        mod.patch_maps(prog, records((0, 2, 42, 16)))
        assert bytes(prog) == asm(insn(0x18, 9, 2, imm=42), insn(0, imm=16), exit_())

    def test_map_ignores_addend(self, mod):
        prog = bytearray(ld64(3))
        mod.patch_maps(prog, records((0, 1, 5, 99)))
        assert bytes(prog) == insn(0x18, 3, 1, imm=5) + insn(0, imm=0)

    def test_keeps_off_and_second_slot_fields(self, mod):
        prog = bytearray(insn(0x18, 4, 0, off=0, imm=-1) + insn(0, 0, 0, off=0, imm=-1))
        mod.patch_maps(prog, records((0, 2, 3, 2**31 - 1)))
        assert fields(prog, 0) == (0x18, 4, 2, 0, 3)
        assert fields(prog, 1) == (0, 0, 0, 0, 2**31 - 1)

    def test_many_and_repeat(self, mod):
        prog = bytearray(asm(*(ld64(i % 10) for i in range(50))))
        recs = records(*((2 * i, 1 + i % 2, 100 + i, i) for i in range(50)))
        assert mod.patch_maps(prog, recs) == 50
        once = bytes(prog)
        mod.patch_maps(prog, recs)
        assert bytes(prog) == once
        for i in range(50):
            kind = 1 + i % 2
            assert fields(prog, 2 * i) == (0x18, i % 10, kind, 0, 100 + i)
            assert fields(prog, 2 * i + 1)[4] == (i if kind == 2 else 0)

    def test_fd_zero_is_an_fd(self, mod):
        prog = bytearray(ld64(1))
        mod.patch_maps(prog, records((0, 1, 0, 0)))
        assert fields(prog, 0) == (0x18, 1, 1, 0, 0)

    @pytest.mark.parametrize("make", [
        lambda a: a, lambda a: a.tobytes(), lambda a: bytearray(a.tobytes()),
        lambda a: memoryview(a), lambda a: memoryview(a.tobytes()),
    ], ids=["array", "bytes", "bytearray", "memoryview-i", "memoryview-B"])
    def test_buffer_forms(self, mod, make):
        prog = bytearray(asm(exit_(), ld64(1)))
        mod.patch_maps(prog, make(records((1, 1, 3, 0))))
        assert fields(prog, 1) == (0x18, 1, 1, 0, 3)

    def test_patch_memoryview_of_bytearray(self, mod):
        prog = bytearray(asm(exit_(), ld64(1)))
        mod.patch_maps(memoryview(prog), records((1, 1, 3, 0)))
        assert fields(prog, 1) == (0x18, 1, 1, 0, 3)

    def test_empty(self, mod):
        assert mod.patch_maps(bytearray(), array("i")) == 0
        assert mod.patch_maps(bytearray(exit_()), b"") == 0


class TestPatchErrors:
    PROG = asm(mov(0, 0), ld64(1), exit_(), insn(0x18, 2), mov(0, 1))   # 6 slots; 4 is a bad ld

    def check(self, mod, recs, exc, pattern, prog=PROG):
        buf = bytearray(prog)
        with pytest.raises(exc, match=pattern) as info:
            mod.patch_maps(buf, recs)
        assert bytes(buf) == prog, "a failed patch must leave the instructions unchanged"
        return info.value

    @pytest.mark.parametrize("idx", [-1, 5, 6, 2**31 - 1, -2**31])
    def test_index_out_of_range(self, mod, idx):
        self.check(mod, records((1, 1, 3, 0), (idx, 1, 3, 0)), ElfError,
                   rf"relocation 1: instruction {idx} out of range for an ld_imm64 \(program has 6 instructions\)")

    def test_empty_program(self, mod):
        self.check(mod, records((0, 1, 3, 0)), ElfError, "relocation 0: instruction 0 out of range",
                   prog=b"")

    def test_not_ld_imm64(self, mod):
        self.check(mod, records((0, 1, 3, 0)), ElfError,
                   r"relocation 0: instruction 0 is not ld_imm64 \(code 0xb7\)")

    def test_second_half_of_ld_imm64(self, mod):
        self.check(mod, records((2, 1, 3, 0)), ElfError, r"instruction 2 is not ld_imm64 \(code 0x00\)")

    def test_bad_second_slot(self, mod):
        self.check(mod, records((4, 1, 3, 0)), ElfError,
                   r"ld_imm64 at instruction 4 is missing its second half \(instruction 5 has code 0xb7\)")

    @pytest.mark.parametrize("fd", [-1, -2**31])
    def test_negative_fd(self, mod, fd):
        err = self.check(mod, records((1, 2, fd, 0)), BpfError,
                         rf"relocation 0 \(instruction 1\): map has no fd \(fd={fd}\)")
        assert not isinstance(err, ElfError)

    @pytest.mark.parametrize("kind", [0, 3, 4, 5, -1])
    def test_unknown_kind(self, mod, kind):
        self.check(mod, records((1, kind, 3, 0)), ElfError,
                   rf"relocation 0: unknown kind {kind} \(expected 1=MAP or 2=DATA\)")

    def test_negative_data_offset(self, mod):
        self.check(mod, records((1, 2, 3, -8)), ElfError, "negative data offset -8")

    def test_negative_addend_ignored_for_map(self, mod):
        buf = bytearray(self.PROG)
        mod.patch_maps(buf, records((1, 1, 3, -8)))
        assert fields(buf, 2)[4] == 0

    def test_first_bad_record_reported(self, mod):
        self.check(mod, records((1, 1, 3, 0), (1, 1, 3, 0), (0, 1, 3, 0), (1, 1, -1, 0)), ElfError,
                   "relocation 2:")

    @pytest.mark.parametrize("nbytes", [4, 12, 20])
    def test_partial_record(self, mod, nbytes):
        self.check(mod, bytes(nbytes), ValueError,
                   rf"relocation buffer is {nbytes} bytes, not a whole number of 16-byte records")

    @pytest.mark.parametrize("code", ["h", "q", "I", "f"])
    def test_wrong_format(self, mod, code):
        self.check(mod, array(code, [0] * 8), TypeError, "must hold int32")

    def test_not_a_buffer(self, mod):
        self.check(mod, [1, 1, 3, 0], TypeError, "relocation buffer must be a bytes-like object")

    def test_read_only_insns(self, mod):
        with pytest.raises(TypeError, match="writable"):
            mod.patch_maps(bytes(self.PROG), records((1, 1, 3, 0)))

    def test_insns_length(self, mod):
        with pytest.raises(ElfError, match="not a multiple of 8"):
            mod.patch_maps(bytearray(12), records())


class TestApply:
    def program(self, mod):
        main = func("main", ld64(1), pcall(), ld64(2), exit_(),
                    relocs=[Reloc(0, MAP, "counts", addend=40), Reloc(2, CALL, "sub"),
                            Reloc(3, DATA, ".bss", addend=24)])
        sub = func("sub", ld64(3, 8), ld64(4), exit_(),
                   relocs=[Reloc(0, DATA, ".rodata", addend=8), Reloc(2, EXTERN, "LINUX_KERNEL_VERSION")])
        return mod.link("main", funcs(main, sub))

    def test_build_relocs(self, mod):
        linked = self.program(mod)
        buf = mod.build_relocs(linked.relocs, {"counts": 10, ".bss": 11, ".rodata": 12})
        assert isinstance(buf, array) and buf.typecode == "i"
        assert buf.tolist() == [0, 1, 10, 0, 3, 2, 11, 24, 6, 2, 12, 8]

    def test_apply_byte_exact(self, mod):
        linked = self.program(mod)
        assert mod.apply(linked, {"counts": 10, ".bss": 11, ".rodata": 12}) == 3
        assert slots(bytes(linked.insns)) == [
            insn(0x18, 1, 1, imm=10), insn(0, imm=0),
            pcall(6 - 3),
            insn(0x18, 2, 2, imm=11), insn(0, imm=24),
            exit_(),
            insn(0x18, 3, 2, imm=12), insn(0, imm=8),
            insn(0x18, 4), insn(0),                       # EXTERN: left to btf/loader
            exit_(),
        ]

    def test_missing_fd(self, mod):
        linked = self.program(mod)
        before = bytes(linked.insns)
        with pytest.raises(BpfError, match=r"instruction 6: map '.rodata' has no fd"):
            mod.apply(linked, {"counts": 10, ".bss": 11})
        assert bytes(linked.insns) == before

    def test_negative_fd(self, mod):
        linked = self.program(mod)
        with pytest.raises(BpfError, match="map has no fd"):
            mod.apply(linked, {"counts": -1, ".bss": 11, ".rodata": 12})


# ---------------------------------------------------------- twin checks

def outcome(fn, *args):
    try:
        result = fn(*args)
    except Exception as exc:  # compared, never swallowed: the twins must agree
        # ... on an error of the family (bad input), never on a crash of either twin
        assert isinstance(exc, (BpfError, TypeError, ValueError)), f"{fn}: {exc!r}"
        return ("raise", type(exc), str(exc))
    if isinstance(result, (pyinsn.LinkedProgram, cinsn.LinkedProgram)):
        return ("ok", result.name, bytes(result.insns), result.layout, result.relocs)
    return ("ok", result)


def random_function(rng, name, names, valid):
    parts, relocs = [], []
    for _ in range(rng.randint(0, 12)):
        i = sum(len(p) for p in parts) // 8
        roll = rng.random()
        if roll < 0.3:
            parts.append(insn(rng.choice([0xB7, 0x07, 0x61, 0x7B, 0x05, 0x95]), rng.randrange(11),
                              rng.randrange(11), rng.randint(-50, 50), rng.randint(-2**31, 2**31 - 1)))
        elif roll < 0.45:
            parts.append(helper(rng.randint(1, 200)))
        elif roll < 0.7:
            parts.append(pcall(rng.randint(-5, 5)))
            relocs.append(Reloc(i, CALL, rng.choice(names), addend=0))
        else:
            kind = rng.choice([MAP, DATA, FUNC_ADDR, EXTERN, None])
            parts.append(ld64(rng.randrange(11), rng.getrandbits(64) - 2**63))
            if kind is FUNC_ADDR:
                relocs.append(Reloc(i, kind, rng.choice(names)))
            elif kind is not None:
                relocs.append(Reloc(i, kind, rng.choice(["m1", "m2", ".data"]), rng.randint(0, 64)))
    n = sum(len(p) for p in parts) // 8
    if not valid and rng.random() < 0.5:
        # corrupt: out-of-range or misplaced relocations, unknown targets, extra pseudo calls
        what = rng.randrange(6)
        if what == 0:
            relocs.append(Reloc(rng.choice([-1, n, n + 3]), rng.choice(list(RelocKind)), names[0]))
        elif what == 1 and n:
            relocs.append(Reloc(rng.randrange(n), rng.choice(list(RelocKind)), rng.choice(names)))
        elif what == 2:
            parts.append(pcall())
            relocs.append(Reloc(n, CALL, "missing"))
        elif what == 3:
            parts.append(pcall(2))
        elif what == 4:
            parts.append(pcall())
            relocs.append(Reloc(n, CALL, rng.choice(names), addend=rng.choice([-1, 1, 50])))
        else:
            parts.append(b"\x95")
    rng.shuffle(relocs)
    return FunctionSpec(name=name, section=rng.choice([".text", "xdp"]), insns=asm(*parts),
                        relocs=relocs, offset=8 * rng.randrange(32))


class TestTwins:
    CASES = 300

    def test_module_surfaces_match(self):
        public = set(pyinsn.__all__)
        assert public == set(cinsn.__all__)
        for name in public:
            a, b = getattr(pyinsn, name), getattr(cinsn, name)
            if isinstance(a, int):
                assert a == b, name

    def test_decode(self):
        rng = random.Random(0xB9F)
        for _ in range(self.CASES):
            n = rng.randrange(0, 40)
            if rng.random() < 0.1:
                n += rng.randrange(1, 8)
            data = bytearray(rng.getrandbits(8) for _ in range(n))
            for i in range(0, len(data) - 7, 8):      # plenty of ld_imm64, some well formed
                r = rng.random()
                if r < 0.2:
                    data[i] = 0x18
                elif r < 0.4:
                    data[i] = 0
            data = bytes(data)
            assert outcome(pyinsn.decode, data) == outcome(cinsn.decode, data)
            assert outcome(pyinsn.find_ld_imm64, data) == outcome(cinsn.find_ld_imm64, data)

    def test_link(self):
        rng = random.Random(0x11AC)
        ok = 0
        for case in range(self.CASES):
            names = [f"f{i}" for i in range(rng.randint(1, 6))]
            valid = case % 3 != 0
            fns = {name: random_function(rng, name, names, valid) for name in names}
            before = copy.deepcopy(fns)
            entry = rng.choice(names) if rng.random() > 0.02 else "absent"
            py = outcome(pyinsn.link, entry, fns)
            cy = outcome(cinsn.link, entry, fns)
            assert py == cy, f"case {case}"
            assert fns == before
            ok += py[0] == "ok"
        assert 50 < ok < self.CASES, "the generator should produce both valid and invalid input"

    def test_patch(self):
        rng = random.Random(0x9A7C)
        raised = 0
        for case in range(self.CASES):
            parts = [rng.choice([ld64(rng.randrange(11), rng.getrandbits(64) - 2**63),
                                 mov(rng.randrange(11), rng.randint(-9, 9)), exit_()])
                     for _ in range(rng.randint(0, 30))]
            prog = asm(*parts)
            n = len(prog) // 8
            lds = [i for i, code in enumerate(prog[::8]) if code == 0x18]
            recs = array("i")
            for _ in range(rng.randint(0, 12)):
                idx = rng.choice(lds) if lds else 0
                recs.extend((idx, rng.choice([1, 2]), rng.randint(0, 1000), rng.randint(0, 4096)))
            if case % 4 == 0 and recs:
                k = rng.randrange(len(recs) // 4) * 4
                field = rng.randrange(4)
                recs[k + field] = rng.choice([-1, n, n - 1, 3, 7, -2**31, 2**31 - 1, 0])
            a, b = bytearray(prog), bytearray(prog)
            py = outcome(pyinsn.patch_maps, a, recs)
            cy = outcome(cinsn.patch_maps, b, recs)
            assert py == cy, f"case {case}"
            assert a == b, f"case {case}"
            if py[0] == "raise":
                raised += 1
                assert bytes(a) == prog
        assert 0 < raised < self.CASES


# ------------------------------------------------ a real clang-built object

SUBPROG_OBJ = os.path.join(os.path.dirname(__file__), "..", "bpf", "subprog.bpf.o")


def specs_from_object(path):
    """A minimal ELF -> FunctionSpec reader for this test (bpfload.elf does it for real)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        sections = {i: s for i, s in enumerate(elf.iter_sections())}
        fns = {}
        by_section = {}
        for sym in symtab.iter_symbols():
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]:
                sec = sections[sym["st_shndx"]]
                start = sym["st_value"]
                fn = FunctionSpec(sym.name, sec.name, sec.data()[start:start + sym["st_size"]],
                                  offset=start)
                fns[sym.name] = fn
                by_section.setdefault(sec.name, []).append(fn)

        def owner(section, byte_off):
            for fn in by_section[section]:
                if fn.offset <= byte_off < fn.offset + len(fn.insns):
                    return fn
            raise AssertionError((section, byte_off))

        elf_relocated = set()
        for rs in elf.iter_sections():
            if not isinstance(rs, RelocationSection):
                continue
            target = sections[rs["sh_info"]]
            if target.name not in by_section:
                continue
            for rel in rs.iter_relocations():
                fn = owner(target.name, rel["r_offset"])
                idx = (rel["r_offset"] - fn.offset) // 8
                sym = symtab.get_symbol(rel["r_info_sym"])
                code, _, _, _, imm = fields(fn.insns, idx)
                tsec = sections[sym["st_shndx"]].name
                if tsec == ".maps":
                    fn.relocs.append(Reloc(idx, MAP, sym.name))
                elif code == 0x85:
                    callee = owner(tsec, sym["st_value"] + (imm + 1) * 8)
                    fn.relocs.append(Reloc(idx, CALL, callee.name))
                    elf_relocated.add((fn.name, idx))
        for sec_name, sec_fns in by_section.items():
            for fn in sec_fns:
                for idx in range(len(fn.insns) // 8):
                    code, _, src, _, imm = fields(fn.insns, idx)
                    if code == 0x85 and src == 1 and (fn.name, idx) not in elf_relocated:
                        callee = owner(sec_name, fn.offset + (idx + imm + 1) * 8)
                        fn.relocs.append(Reloc(idx, CALL, callee.name))
        return fns


class TestRealObject:
    def test_subprog_object(self, mod):
        fns = specs_from_object(SUBPROG_OBJ)
        for fn in fns.values():
            assert mod.find_ld_imm64(fn.insns) == [r.insn for r in fn.relocs if r.kind == MAP]
        linked = mod.link("sub_xdp", fns)
        names = [name for name, _ in linked.layout]
        assert names == ["sub_xdp", "compute", "mix", "xdp_local"]
        starts = dict(linked.layout)
        callees = []
        for i, (code, _, src, _, imm) in enumerate(mod.decode(linked.insns)):
            if code == 0x85 and src == 1:
                target = i + imm + 1
                assert target in starts.values(), f"call at {i} lands inside a function"
                callees.append(target)
        assert sorted(callees) == sorted(starts[n] for n in ("compute", "mix", "xdp_local"))
        [m] = linked.relocs
        assert m.kind == MAP and m.target == "sub_results"
        assert linked.insns[m.insn * 8] == 0x18
        mod.apply(linked, {"sub_results": 3})
        assert fields(linked.insns, m.insn)[2:] == (1, 0, 3)
        tc = mod.link("sub_tc", fns)
        assert [name for name, _ in tc.layout] == ["sub_tc", "compute", "mix"]
        assert outcome(pyinsn.link, "sub_tc", fns) == outcome(cinsn.link, "sub_tc", fns)
