"""USDT probes (bpfload.link.usdt) and the ELF notes behind them (bpfload.elf.notes).

A small C program using ``<sys/sdt.h>`` (Debian ``systemtap-sdt-dev``) is
built here with gcc, as PIE and non-PIE; its probes cover the argument kinds
a compiler emits on x86-64: stack memory of 1, 2, 4 and 8 bytes, signed and
unsigned (``bl:mem``), constants including a negative one and a 1-byte
``$-1`` that must read as 255 (``bl:consts``), registers including the
1-byte ``%dl`` (``bl:regs``), one probe with three sites and two distinct
argument specs (``bl:twice``), one whose argument is a global the compiler
reads ``bl_global(%rip)`` (``bl:glob``, which bpfload, like libbpf, cannot
read) and one behind a semaphore (``bl:sema_on``: the program only fires
it while the kernel counts an attached probe in ``bl_sema_on_semaphore``,
and passes the semaphore's value as its second argument).

bpf/usdt_args.bpf.c records, per usdt cookie and hit number, what
``bpf_usdt_arg()`` returned for each of the 12 argument slots, the
argument count and ``bpf_usdt_cookie()``; the tests compare every value
with what the C program computed, for uprobe_multi links and for the
perf-event fallback, then close the links and show nothing more is
recorded.

Independent references: ``readelf -n`` for the notes, ``readelf -l`` for
the segments, the kernel's BTF for ``struct pt_regs``, the object's BTF for
usdt.bpf.h's ``struct __bpf_usdt_spec``.
"""
from __future__ import annotations

import errno
import os
import pathlib
import random
import re
import shutil
import struct
import subprocess

import pytest

import bpfload
from bpfload.elf import notes as notes_mod
from bpfload.link import usdt as usdt_mod
from conftest import bpf_object, need_tool, readelf_loads, unavailable

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>

int bl_sema_fire(int x);
int bl_global = 7;

__attribute__((noinline)) void bl_args(long i)
{
	volatile signed char c = -(signed char)i;
	volatile unsigned char uc = 200 + i;
	volatile short s = -1000 - i;
	volatile unsigned short us = 60000 + i;
	volatile int n = -100000 - i;
	volatile unsigned int un = 4000000000u + i;
	volatile long l = -5000000000L - i;
	volatile unsigned long ul = 0xfedcba9876543210UL + i;
	signed char rc = -(signed char)i;
	long rl = i * 1000;

	DTRACE_PROBE8(bl, mem, c, uc, s, us, n, un, l, ul);
	DTRACE_PROBE4(bl, consts, -5, 7, 1L << 40, (unsigned char)255);
	DTRACE_PROBE3(bl, regs, rc, rl, i);
	DTRACE_PROBE1(bl, twice, i);
}

__attribute__((noinline)) void bl_more(long i)
{
	DTRACE_PROBE1(bl, twice, i * 2);
	DTRACE_PROBE1(bl, twice, 99);
	DTRACE_PROBE1(bl, glob, bl_global);
}

/* argv: n [wait]; prints the semaphore as the last call saw it */
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	int wait = argc > 2 ? atoi(argv[2]) : 0;
	char buf[16];
	int sema = 0;

	if (wait) {
		printf("ready\n");
		fflush(stdout);
		if (!fgets(buf, sizeof buf, stdin))
			return 2;
	}
	for (long i = 1; i <= n; i++) {
		bl_args(i);
		bl_more(i);
		sema = bl_sema_fire(i);
	}
	printf("%d\n", sema);
	return 0;
}
"""

SEMA = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

unsigned short bl_sema_on_semaphore __attribute__((section(".probes"), used));

__attribute__((noinline)) int bl_sema_fire(int x)
{
	if (bl_sema_on_semaphore)
		DTRACE_PROBE2(bl, sema_on, x, bl_sema_on_semaphore);
	return bl_sema_on_semaphore;
}
"""

N = 3                       # iterations per run
_S64 = (1 << 63)


def _s64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v & _S64 else v


#: probe -> per-iteration list of per-hit argument lists (what the C program passes)
def expected(probe: str, i: int, sema: int = 1):
    if probe == "mem":
        return [[-i, 200 + i, -1000 - i, 60000 + i, -100000 - i, 4000000000 + i,
                 -5000000000 - i, _s64(0xfedcba9876543210 + i)]]
    if probe == "consts":
        return [[-5, 7, 1 << 40, 255]]
    if probe == "regs":
        return [[-i, 1000 * i, i]]
    if probe == "twice":
        return [[i], [2 * i], [99]]
    if probe == "sema_on":
        return [[i, sema]]
    raise AssertionError(probe)


PROBES = ("mem", "consts", "regs", "twice", "sema_on")


def _build(d, name, *flags):
    need_tool("gcc", "gcc")
    main, sema = d / "bl_main.c", d / "bl_sema.c"
    main.write_text(MAIN)
    sema.write_text(SEMA)
    out = d / name
    r = subprocess.run(["gcc", "-O2", "-g", *flags, "-o", str(out), str(main), str(sema)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if "sys/sdt.h" in r.stderr:
            unavailable("<sys/sdt.h> is missing (Debian: systemtap-sdt-dev)")
        raise AssertionError(r.stderr)
    return str(out)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    d = tmp_path_factory.mktemp("usdt")
    return {"pie": _build(d, "bl_usdt_target", "-fPIE", "-pie"),
            "nopie": _build(d, "bl_usdt_nopie", "-fno-PIE", "-no-pie")}


def _readelf_notes(binary):
    """readelf -n's stapsdt notes as [(provider, name, pc, base, sema, args)]."""
    need_tool("readelf", "binutils")
    out = subprocess.run(["readelf", "-nW", binary], check=True, capture_output=True,
                         text=True).stdout
    rows, cur = [], {}
    for line in out.splitlines():
        line = line.strip()
        m = re.search(r"Provider: (\S+)$", line)     # with -W, on the note's header line
        if m:
            cur = {"provider": m.group(1)}
        elif line.startswith("Name:") and cur:
            cur["name"] = line.split(":", 1)[1].strip()
        elif line.startswith("Location:") and cur:
            m = re.match(r"Location: (0x[0-9a-f]+), Base: (0x[0-9a-f]+), Semaphore: (0x[0-9a-f]+)",
                         line)
            cur["pc"], cur["base"], cur["sema"] = (int(x, 16) for x in m.groups())
        elif line.startswith("Arguments:") and cur:
            cur["args"] = line.split(":", 1)[1].strip()
            rows.append((cur["provider"], cur["name"], cur["pc"], cur["base"], cur["sema"],
                         cur["args"]))
            cur = {}
    assert rows
    return rows


def _ref_offset(binary, addr, executable):
    hits = [addr - vaddr + off for off, vaddr, _, memsz, flags in readelf_loads(binary)
            if vaddr <= addr < vaddr + memsz and ("E" in flags) == executable]
    assert len(hits) == 1
    return hits[0]


# ---------------------------------------------------------------------------
# notes and argument specs (no kernel)

@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_notes_match_readelf(binaries, kind):
    binary = binaries[kind]
    ref = _readelf_notes(binary)
    found = notes_mod.read_usdt_notes(binary)
    assert [(n.provider, n.name, n.pc, n.base, n.semaphore, n.args) for n in found.notes] == ref
    assert found.base == ref[0][3]                 # unprelinked: .stapsdt.base where recorded
    probes = found.probes()
    assert len(probes) == len(ref) == 8
    for p, (_, _, pc, _, sema, _) in zip(probes, ref):
        assert p.address == pc
        assert p.offset == _ref_offset(binary, pc, True)
        assert p.semaphore_offset == (_ref_offset(binary, sema, False) if sema else 0)
    sema_probe = found.probes("bl", "sema_on")
    assert len(sema_probe) == 1 and sema_probe[0].semaphore
    assert len(found.probes("bl", "twice")) == 3
    assert found.probes("bl", "nope") == [] and found.probes("other") == []
    if kind == "nopie":     # the translation matters: the address is not the offset
        assert all(p.offset != p.address for p in probes)


def _note_section(binary):
    from elftools.elf.elffile import ELFFile
    with open(binary, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.stapsdt")
        return sec["sh_offset"], sec["sh_size"]


def _first_note_desc(data: bytes, sec_off: int) -> int:
    """File offset of the first stapsdt note's descriptor."""
    namesz = struct.unpack_from("<I", data, sec_off)[0]
    return sec_off + 12 + (namesz + 3) // 4 * 4


def test_prelink_base_adjustment(binaries, tmp_path):
    """A note whose recorded base lags .stapsdt.base by D moves by D (prelink compensation)."""
    binary = binaries["pie"]
    data = bytearray(pathlib.Path(binary).read_bytes())
    off, _ = _note_section(binary)
    desc = _first_note_desc(data, off)
    pc, base, _ = struct.unpack_from("<QQQ", data, desc)
    struct.pack_into("<Q", data, desc + 8, base - 0x20)
    path = tmp_path / "moved"
    path.write_bytes(bytes(data))
    first = notes_mod.read_usdt_notes(path).probes()[0]
    assert (first.address, first.offset) == (pc + 0x20, _ref_offset(binary, pc + 0x20, True))
    # and the other notes, recorded with the true base, stay put
    assert notes_mod.read_usdt_notes(path).probes()[1].address == _readelf_notes(binary)[1][2]


def _mutate(binary, tmp_path, name, edit):
    data = bytearray(pathlib.Path(binary).read_bytes())
    edit(data)
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def test_malformed_notes_raise_elf_error(binaries, tmp_path):
    binary = binaries["pie"]
    off, size = _note_section(binary)
    desc = _first_note_desc(pathlib.Path(binary).read_bytes(), off)

    def descsz_huge(d):
        struct.pack_into("<I", d, off + 4, 0x7fffffff)

    def no_nul(d):
        end = off + 12 + 8 + struct.unpack_from("<I", d, off + 4)[0]
        d[desc + 24:end] = b"A" * (end - desc - 24)

    def short_desc(d):
        struct.pack_into("<I", d, off + 4, 20)

    def bad_utf8(d):
        d[desc + 24] = 0xff

    def pc_nowhere(d):
        struct.pack_into("<Q", d, desc, 0x7fff00000000)

    cases = {"descsz_huge": (descsz_huge, "run past"),
             "no_nul": (no_nul, "not NUL-terminated"),
             "short_desc": (short_desc, "shorter than"),
             "bad_utf8": (bad_utf8, "not UTF-8")}
    for name, (edit, msg) in cases.items():
        p = _mutate(binary, tmp_path, name, edit)
        with pytest.raises(bpfload.ElfError, match=msg) as ei:
            notes_mod.read_usdt_notes(p)
        assert str(p) in str(ei.value) and ei.value.section == ".note.stapsdt"
    p = _mutate(binary, tmp_path, "pc_nowhere", pc_nowhere)
    with pytest.raises(bpfload.ElfError, match="in no executable loadable segment"):
        notes_mod.read_usdt_notes(p).probes()
    for name, data in (("empty", b""), ("text", b"#!/bin/sh\n"),
                       ("truncated", pathlib.Path(binary).read_bytes()[:off + size // 2])):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(bpfload.ElfError) as ei:
            notes_mod.read_usdt_notes(p)
        assert str(p) in str(ei.value)
    with pytest.raises(bpfload.ElfError, match="cannot read"):
        notes_mod.read_usdt_notes(tmp_path / "missing")
    # a relocatable object is no executable
    rel = tmp_path / "obj.o"
    subprocess.run(["gcc", "-c", "-o", str(rel), "-x", "c", "-"], input="int x;", text=True,
                   check=True)
    with pytest.raises(bpfload.ElfError, match="not an executable"):
        notes_mod.read_usdt_notes(rel)


def test_fuzzed_notes_never_escape_elf_error(binaries, tmp_path):
    """Seeded byte flips and truncations of the notes and headers: parse or ElfError, nothing else."""
    binary = binaries["pie"]
    good = pathlib.Path(binary).read_bytes()
    off, size = _note_section(binary)
    rng = random.Random("bpfload-usdt-notes")
    p = tmp_path / "fuzzed"
    outcomes = {"ok": 0, "error": 0}
    for case in range(400):
        data = bytearray(good)
        if case % 4 == 3:
            data = data[:rng.randrange(len(data))]
        else:
            lo, hi = (off, off + size) if case % 4 else (0, 64 + 56 * 13)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(lo, hi)] = rng.randrange(256)
        p.write_bytes(bytes(data))
        try:
            n = notes_mod.read_usdt_notes(p)
            n.probes()
            outcomes["ok"] += 1
        except bpfload.ElfError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]      # the mutations reached both outcomes


@pytest.mark.parametrize("text, want", [
    ("-4@$5", (usdt_mod.ARG_CONST, 5, 0, True, 4)),
    ("1@$-1", (usdt_mod.ARG_CONST, -1, 0, False, 1)),
    ("-8@$1099511627776", (usdt_mod.ARG_CONST, 1 << 40, 0, True, 8)),
    ("-4@%eax", (usdt_mod.ARG_REG, 0, 80, True, 4)),
    ("8@%rdi", (usdt_mod.ARG_REG, 0, 112, False, 8)),
    ("-1@%dl", (usdt_mod.ARG_REG, 0, 96, True, 1)),
    ("2@%r8w", (usdt_mod.ARG_REG, 0, 72, False, 2)),
    ("1@%sil", (usdt_mod.ARG_REG, 0, 104, False, 1)),
    ("8@-8(%rbp)", (usdt_mod.ARG_REG_DEREF, -8, 32, False, 8)),
    ("-4@-1204(%rbp)", (usdt_mod.ARG_REG_DEREF, -1204, 32, True, 4)),
    ("8@(%rsp)", (usdt_mod.ARG_REG_DEREF, 0, 152, False, 8)),
    ("-2@16(%r15)", (usdt_mod.ARG_REG_DEREF, 16, 0, True, 2)),
])
def test_parse_arg(text, want):
    a = usdt_mod.parse_arg(text)
    assert (a.kind, a.val_off, a.reg_off, a.signed, a.size) == want
    assert a.bitshift == 64 - 8 * want[4]


@pytest.mark.parametrize("text, msg", [
    ("-4@bl_global(%rip)", "unsupported USDT argument"),
    ("8@(%rax,%rbx,8)", "unsupported USDT argument"),
    ("1@%ah", "unknown or unsupported register"),
    ("4@%xmm0", "unknown or unsupported register"),
    ("3@%eax", "size 3"),
    ("%eax", "unsupported USDT argument"),
    ("4@$99999999999999999999999", "does not fit 64 bits"),
])
def test_parse_arg_refuses(text, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        usdt_mod.parse_arg(text)


def test_parse_spec_limits():
    assert usdt_mod.parse_spec("") == []
    assert len(usdt_mod.parse_spec(" ".join(["8@%rax"] * 12))) == 12
    with pytest.raises(ValueError, match="13 arguments"):
        usdt_mod.parse_spec(" ".join(["8@%rax"] * 13))


def test_pt_regs_offsets_match_kernel_btf(kernel):
    from bpfload.btf.format import Kind
    from bpfload.btf.kernel import vmlinux
    regs = vmlinux().find("pt_regs", Kind.STRUCT)
    off = {m.name: m.offset // 8 for m in regs.members if m.name}
    for names, member in ((("rax", "eax", "ax", "al"), "ax"), (("rbx", "bl"), "bx"),
                          (("rcx", "cl"), "cx"), (("rdx", "dl"), "dx"), (("rsi", "sil"), "si"),
                          (("rdi", "dil"), "di"), (("rbp", "bpl"), "bp"), (("rsp", "spl"), "sp"),
                          (("rip",), "ip")) + tuple(((f"r{i}", f"r{i}d", f"r{i}w", f"r{i}b"),
                                                     f"r{i}") for i in range(8, 16)):
        for n in names:
            assert usdt_mod.PT_REGS_OFFSETS[n] == off[member], n


def test_spec_layout_matches_usdt_bpf_h():
    """encode_spec() writes the fields where the object's BTF of usdt.bpf.h puts them."""
    from bpfload.btf.format import Kind
    btf = bpfload.BpfObject.open(bpf_object("usdt_args")).spec.btf
    spec = btf.find("__bpf_usdt_spec", Kind.STRUCT)
    arg = btf.find("__bpf_usdt_arg_spec", Kind.STRUCT)
    assert spec.size == usdt_mod.SPEC_SIZE and arg.size == 16
    so = {m.name: m.offset // 8 for m in spec.members}
    ao = {m.name: m.offset // 8 for m in arg.members}
    raw = usdt_mod.encode_spec(usdt_mod.parse_spec("-4@-20(%rbp) 1@$-1"), 0x1122334455667788)
    assert struct.unpack_from("<Q", raw, so["usdt_cookie"])[0] == 0x1122334455667788
    assert struct.unpack_from("<h", raw, so["arg_cnt"])[0] == 2
    a0 = so["args"]
    assert struct.unpack_from("<q", raw, a0 + ao["val_off"])[0] == -20
    assert struct.unpack_from("<I", raw, a0 + ao["arg_type"])[0] == usdt_mod.ARG_REG_DEREF
    assert struct.unpack_from("<h", raw, a0 + ao["reg_off"])[0] == 32
    assert raw[a0 + ao["arg_signed"]] == 1 and raw[a0 + ao["arg_bitshift"]] == 32
    a1 = a0 + arg.size
    assert struct.unpack_from("<q", raw, a1 + ao["val_off"])[0] == -1
    assert raw[a1 + ao["arg_signed"]] == 0 and raw[a1 + ao["arg_bitshift"]] == 56


# ---------------------------------------------------------------------------
# with the kernel



def _open(mode: str, monkeypatch, tgid: int = 0):
    """Load bpf/usdt_args.bpf.o for *mode* ("uprobe_multi" or "perf").

    usdt.bpf.h's helpers are ``__weak __hidden``: the loader marks hidden
    functions static in the BTF it loads, as libbpf does, so the verifier
    checks them in the caller's context (test_object_loads_unmodified).
    """
    if mode == "perf":       # a kernel without uprobe_multi links: load plain, attach perf uprobes
        monkeypatch.setitem(usdt_mod._features, "uprobe_multi", False)
    elif not usdt_mod.uprobe_multi_supported():
        unavailable("this kernel has no uprobe_multi links (Linux 6.6+)")
    obj = bpfload.BpfObject.open(bpf_object("usdt_args"))
    obj.rodata["target_tgid"] = tgid
    return obj.load()


def _records(obj):
    """{cookie: [(arg_cnt, usdt_cookie, args, rets) per hit, in hit order]}."""
    out: dict = {}
    for k, v in obj.maps["records"].items():
        key = struct.unpack("=Q", k)[0]
        vals = struct.unpack("=26q", v)
        out.setdefault(key >> 32, {})[key & 0xffffffff] = (vals[0], vals[1], list(vals[2:14]),
                                                          list(vals[14:26]))
    return {c: [hits[i] for i in sorted(hits)] for c, hits in out.items()}


def _hits(obj):
    return {struct.unpack("=Q", k)[0]: struct.unpack("=Q", v)[0]
            for k, v in obj.maps["hits"].items()}


def _run(binary, n=N) -> int:
    out = subprocess.run([binary, str(n)], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    return int(out)


def _expect(probe, cookie, runs=1, sema=1):
    rows = []
    for _ in range(runs):
        for i in range(1, N + 1):
            for args in expected(probe, i, sema):
                rows.append((len(args), cookie, args + [0] * (12 - len(args)),
                             [0] * len(args) + [-errno.ENOENT] * (12 - len(args))))
    return rows


@pytest.fixture(params=["uprobe_multi", "perf"])
def mode(request):
    return request.param


kernel_test = pytest.mark.kernel      # the tests below need bpf(2); the ones above do not


@kernel_test
@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_every_argument_read_exactly(binaries, kind, mode, monkeypatch):
    binary = binaries[kind]
    with _open(mode, monkeypatch) as obj:
        prog = obj.programs["on_usdt"]
        want_multi = mode == "uprobe_multi"
        assert (prog.expected_attach_type == bpfload.AttachType.TRACE_UPROBE_MULTI) == want_multi
        assert _run(binary) == 0                    # semaphore off: nothing attached yet
        links = {p: prog.attach_usdt(binary, "bl", p, cookie=c)
                 for c, p in enumerate(PROBES, start=10)}
        try:
            for p, lk in links.items():
                sites = 3 if p == "twice" else 1
                if want_multi:
                    info = lk.info()
                    assert info.type == bpfload.LinkType.UPROBE_MULTI
                    assert (info.count, info.file_name, info.prog_id) == (sites, binary, prog.id)
                else:
                    assert lk.type == bpfload.LinkType.PERF_EVENT and lk.fd == -1
            assert _run(binary) == 1                # the kernel counts the attached probe
            recs = _records(obj)
            for c, p in enumerate(PROBES, start=10):
                assert recs.get(c) == _expect(p, c), p
            assert set(recs) == set(range(10, 10 + len(PROBES)))
            # the specs: one per distinct argument string (bl:twice has 3 sites, 2 specs)
            specs = [v for _, v in obj.maps["__bpf_usdt_specs"].items() if any(v)]
            assert len(specs) == 6
        finally:
            for lk in links.values():
                lk.close()
        before = _hits(obj)
        assert before == {c: N * len(expected(p, 1)) for c, p in enumerate(PROBES, start=10)}
        assert _run(binary) == 0                    # closed: the semaphore is back to 0
        assert _hits(obj) == before                 # and nothing more is recorded
        assert usdt_mod._ids_in_use == {}           # every spec id given back


@kernel_test
def test_section_auto_attach(binaries, mode, monkeypatch):
    """SEC("usdt/bl_usdt_target:bl:regs"): attach() finds the binary in $PATH; BPF_USDT unpacks."""
    binary = binaries["pie"]
    monkeypatch.setenv("PATH", os.path.dirname(binary) + os.pathsep + os.environ["PATH"])
    with _open(mode, monkeypatch) as obj:
        links = obj.attach_all()
        try:
            assert list(links) == ["on_regs"]
            _run(binary)
            assert [obj.bss[v] for v in ("regs_count", "regs_c", "regs_l", "regs_i")] == \
                [N, -N, 1000 * N, N]
        finally:
            for lk in links.values():
                lk.close()
        _run(binary)
        assert obj.bss["regs_count"] == N
        # a binary given to attach() overrides the section's
        with obj.programs["on_regs"].attach(binary=binaries["nopie"]):
            _run(binaries["nopie"])
        assert obj.bss["regs_count"] == 2 * N


LIB = r"""
#include <sys/sdt.h>
__attribute__((noinline)) long bl_lib_call(long x)
{
	volatile int k = -(int)x;
	DTRACE_PROBE2(bllib, call, x, k);
	return x + 1;
}
"""

LIB_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
long bl_lib_call(long x);
int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1, s = 0;
	for (long i = 1; i <= n; i++)
		s += bl_lib_call(i * 10);
	printf("%ld\n", s);
	return 0;
}
"""


@kernel_test
def test_shared_library_probe(binaries, mode, monkeypatch, tmp_path):
    """A probe in a shared library: attached by the library's path, fires in its users."""
    lib, exe = tmp_path / "libblusdt.so", tmp_path / "bl_lib_user"
    (tmp_path / "lib.c").write_text(LIB)
    (tmp_path / "main.c").write_text(LIB_MAIN)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "lib.c")],
                   check=True)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(tmp_path / "main.c"), f"-L{tmp_path}",
                    "-lblusdt", f"-Wl,-rpath,{tmp_path}"], check=True)
    site = notes_mod.read_usdt_notes(lib).probes("bllib", "call")
    assert len(site) == 1 and notes_mod.read_usdt_notes(lib).elf_type == 3
    with _open(mode, monkeypatch) as obj:
        with obj.programs["on_usdt"].attach_usdt(lib, "bllib", "call", cookie=3):
            subprocess.run([str(exe), str(N)], check=True, capture_output=True, timeout=30)
        subprocess.run([str(exe), str(N)], check=True, capture_output=True, timeout=30)
        got = _records(obj)[3]
        assert [(r[0], r[1], r[2][:2], r[3][:3]) for r in got] == \
            [(2, 3, [10 * i, -10 * i], [0, 0, -errno.ENOENT]) for i in range(1, N + 1)]


@kernel_test
def test_pid_filter(binaries, mode, monkeypatch):
    binary = binaries["pie"]
    with _open(mode, monkeypatch) as obj:
        kids = [subprocess.Popen([binary, str(N), "1"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for _ in range(2)]
        try:
            for k in kids:
                assert k.stdout.readline() == b"ready\n"
            with obj.programs["on_usdt"].attach_usdt(binary, "bl", "regs", pid=kids[0].pid,
                                                    cookie=7):
                for k in kids:
                    k.communicate(b"go\n", timeout=30)
                    assert k.returncode == 0
            assert _records(obj) == {7: _expect("regs", 7)}      # the other child: nothing
        finally:
            for k in kids:
                if k.poll() is None:
                    k.kill()
                k.communicate()


@kernel_test
def test_errors_name_the_binary_and_probe(binaries, monkeypatch, tmp_path):
    binary = binaries["pie"]
    with _open("uprobe_multi", monkeypatch) as obj:
        prog = obj.programs["on_usdt"]
        with pytest.raises(bpfload.AttachError) as ei:
            prog.attach_usdt(binary, "nobody", "mem")
        msg = str(ei.value)
        assert f"{binary} has no USDT provider 'nobody'" in msg and "'on_usdt'" in msg
        assert "bl:mem" in msg and "bl:sema_on" in msg          # the hint lists the probes
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(bpfload.AttachError, match=f"{re.escape(binary)} has no USDT probe "
                                                      "'nope' of provider 'bl'"):
            prog.attach_usdt(binary, "bl", "nope")
        true = shutil.which("true")
        with pytest.raises(bpfload.AttachError, match="no .note.stapsdt notes"):
            prog.attach_usdt(true, "bl", "mem")
        with pytest.raises(bpfload.AttachError, match="cannot use the binary") as ei:
            prog.attach_usdt(tmp_path / "missing", "bl", "mem")
        assert isinstance(ei.value.__cause__, bpfload.ElfError)
        # the compiler reads bl_global as bl_global(%rip): a form bpfload (like libbpf) cannot read
        glob = [n.args for n in notes_mod.read_usdt_notes(binary).notes if n.name == "glob"]
        assert glob == ["-4@bl_global(%rip)"]
        with pytest.raises(bpfload.AttachError, match=r"unsupported USDT argument "
                                                      r"'-4@bl_global\(%rip\)'"):
            prog.attach_usdt(binary, "bl", "glob")
        with pytest.raises(bpfload.AttachError, match="pid -2"):
            prog.attach_usdt(binary, "bl", "mem", pid=-2)
        with pytest.raises(bpfload.AttachError, match="does not name PATH:PROVIDER:NAME|binary"):
            obj.programs["on_usdt"].attach()
        assert usdt_mod._ids_in_use == {}          # no failure kept a spec id
        # a kernel refusal (no such process) leaves nothing behind either
        with pytest.raises(bpfload.AttachError):
            prog.attach_usdt(binary, "bl", "mem", pid=(1 << 22) + 12345)
        assert usdt_mod._ids_in_use == {}
        # not a kprobe program
    with bpfload.load(bpf_object("attach_run")) as other:
        p = next(p for p in other.programs.values() if p.type != bpfload.ProgType.KPROBE)
        with pytest.raises(bpfload.AttachError, match="USDT needs a KPROBE program"):
            p.attach_usdt(binary, "bl", "mem")


@kernel_test
def test_feature_probe_caches_only_answers(monkeypatch):
    """A failure of the uprobe_multi probe itself (ENOMEM) is not taken for the kernel's answer."""
    from bpfload._core import syscall as core
    monkeypatch.delitem(usdt_mod._features, "uprobe_multi", raising=False)
    core.inject_fault(1, errno.ENOMEM)
    try:
        assert usdt_mod.uprobe_multi_supported() is False
        assert not core.fault_pending()
    finally:
        core.inject_fault(0, 0)
    assert "uprobe_multi" not in usdt_mod._features
    assert usdt_mod.uprobe_multi_supported() is True            # Linux 6.18 has them
    assert usdt_mod._features["uprobe_multi"] is True
    assert usdt_mod.load_attach_type() == bpfload.AttachType.TRACE_UPROBE_MULTI


def test_auto_attach_reason():
    from bpfload.link.attach import auto_attach_reason, section_kind

    class P:
        name = "p"

        def __init__(self, section):
            self.section, self.attach_target = section, None

    assert section_kind("usdt/x:y:z") == section_kind("usdt") == section_kind("usdt.s/a:b:c") == "usdt"
    assert auto_attach_reason(P("usdt/bin:prov:name")) is None
    assert auto_attach_reason(P("usdt/./path/with:colons:prov:name")) is None
    assert "PATH:PROVIDER:NAME" in auto_attach_reason(P("usdt"))
    assert "PATH:PROVIDER:NAME" in auto_attach_reason(P("usdt/prov:name"))


@kernel_test
def test_object_loads_unmodified(kernel):
    with bpfload.load(bpf_object("usdt_args")) as obj:
        assert set(obj.programs) == {"on_usdt", "on_regs"}
