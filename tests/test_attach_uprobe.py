"""Uprobes and uretprobes (bpfload.link.uprobe) and the ELF lookups behind them (bpfload.elf.symbols).

A small C program (built here with ``cc``, once as PIE and once as non-PIE)
has ``bl_target(x) = 3x + 1`` (noinline), ``bl_slow(ms)`` (sleeps) and calls
getpid(); it announces "ready" and waits for a line on stdin, so the tests
attach first and then let it make a known number of calls.  The programs of
bpf/attach_uprobe.bpf.c count what they see; the counts must be exact, and
must stop moving once the links are closed.

Independent references: ``nm``/``readelf`` for symbol addresses and
segments, ``ldconfig -p`` for the ld.so.cache.
"""
from __future__ import annotations

import errno
import os
import pathlib
import random
import re
import struct
import subprocess
import sys

import pytest

import bpfload
from bpfload.elf import symbols
from bpfload.link import uprobe as uprobe_mod
from conftest import REPO, bpf_object, need_tool, unavailable

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>

/* a USDT-style semaphore: the kernel counts attached probes here (ref_ctr_offset) */
unsigned short bl_sema __attribute__((section(".probes"), used)) = 0;

__attribute__((noinline)) int bl_target(int x) { return x * 3 + 1; }

__attribute__((noinline)) int bl_slow(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
	return ms;
}

/* argv: n_target n_getpid n_slow slow_ms wait(0|1) */
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0, g = argc > 2 ? atoi(argv[2]) : 0;
	int s = argc > 3 ? atoi(argv[3]) : 0, ms = argc > 4 ? atoi(argv[4]) : 0;
	int wait = argc > 5 ? atoi(argv[5]) : 0;
	char buf[16];
	volatile long sum = 0;

	if (wait) {
		printf("ready\n");
		fflush(stdout);
		if (!fgets(buf, sizeof buf, stdin))
			return 2;
	}
	for (int i = 0; i < n; i++)
		sum += bl_target(i + 1);
	for (int i = 0; i < g; i++)
		sum += getpid();
	for (int i = 0; i < s; i++)
		sum += bl_slow(ms);
	printf("%ld %u\n", (long)sum, (unsigned)bl_sema);
	return 0;
}
"""

K = 7                       # bl_target calls per run
ARGS = set(range(1, K + 1))
RETS = {3 * x + 1 for x in ARGS}


def _cc(out, *flags):
    src = out.parent / "uprobe_target.c"
    src.write_text(SOURCE)
    subprocess.run(["cc", "-O1", "-g", *flags, "-o", str(out), str(src)], check=True)
    return str(out)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    need_tool("cc", "gcc")
    d = tmp_path_factory.mktemp("uprobe")
    return {"pie": _cc(d / "target_pie", "-fPIE", "-pie"),
            "nopie": _cc(d / "target_nopie", "-fno-PIE", "-no-pie")}


class Child:
    """The C program, started and stopped before its calls ("ready"), released by go()."""

    def __init__(self, binary, n=K, getpids=0, slow=0, ms=0):
        self.p = subprocess.Popen([binary, str(n), str(getpids), str(slow), str(ms), "1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.p.stdout.readline() == b"ready\n"
        self.pid = self.p.pid

    def go(self) -> int:
        """Let it run; returns the sum of its calls (bl_sema as it was at the end is in .sema)."""
        out, _ = self.p.communicate(b"go\n", timeout=30)
        assert self.p.returncode == 0
        total, sema = out.split()
        self.sema = int(sema)
        return int(total)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def _hash(m) -> dict:
    return {struct.unpack("=i", k)[0]: struct.unpack("=Q", v)[0] for k, v in m.items()}


def _open(tgid=0):
    obj = bpfload.BpfObject.open(bpf_object("attach_uprobe"))
    obj.rodata["target_tgid"] = tgid
    return obj.load()


def _nm_address(binary, symbol, dynamic=False):
    need_tool("nm", "binutils")
    out = subprocess.run(["nm", "--defined-only"] + (["-D"] if dynamic else []) + [binary],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise AssertionError(f"nm shows no {symbol} in {binary}")


def _readelf_loads(binary):
    need_tool("readelf", "binutils")
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True,
                         text=True).stdout
    loads = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))   # offset, vaddr, filesz
    assert loads
    return loads


def _reference_offset(binary, symbol, dynamic=False):
    addr = _nm_address(binary, symbol, dynamic)
    hits = [addr - vaddr + off for off, vaddr, filesz in _readelf_loads(binary)
            if vaddr <= addr < vaddr + filesz]
    assert len(hits) == 1
    return hits[0]


def _ldconfig():
    """ldconfig -p as [(name, description, path)]."""
    need_tool("ldconfig", "libc-bin")
    out = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    count = int(re.match(r"^(\d+) libs found", lines[0]).group(1))
    rows = []
    for line in lines[1:]:
        if not line[:1].isspace():        # "Cache generated by: ..." (the extension section)
            continue
        m = re.match(r"^\s+(\S+) \((.*)\) => (.+)$", line)
        assert m, line
        rows.append(m.groups())
    assert len(rows) == count
    return rows


def _libc_path():
    native = "x86-64" if os.uname().machine == "x86_64" else None
    if native is None:
        unavailable("the reference check is written for x86_64")
    for name, desc, path in _ldconfig():
        if name == "libc.so.6" and native in desc:
            return path
    unavailable("ldconfig -p lists no native libc.so.6")


# ---------------------------------------------------------------------------
# ELF symbols and library lookup (no kernel)

@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_symbol_offset_matches_nm_and_readelf(binaries, kind):
    binary = binaries[kind]
    for sym in ("bl_target", "bl_slow", "main"):
        assert symbols.symbol_offset(binary, sym) == _reference_offset(binary, sym)
    m = symbols.find_symbol(binary, "bl_target")
    assert m.table == ".symtab" and m.address == _nm_address(binary, "bl_target")
    if kind == "nopie":     # the translation matters: the address is not the offset
        assert m.address >= 0x400000 and m.offset < m.address


def test_symbol_offset_in_libc_matches_nm_dynamic():
    libc = _libc_path()
    want = _reference_offset(libc, "getpid@@GLIBC_2.2.5", dynamic=True)
    assert symbols.symbol_offset(libc, "getpid") == want
    assert symbols.symbol_offset(libc, "getpid@@GLIBC_2.2.5") == want
    assert symbols.symbol_offset(libc, "getpid@GLIBC_2.2.5") == want
    # a name with two versions at different addresses: the plain name is the default one
    nm = subprocess.run(["nm", "-D", "--defined-only", libc], check=True, capture_output=True,
                        text=True).stdout
    versions = re.findall(r"^[0-9a-f]+ [TtiW] (memcpy@@?GLIBC_[0-9.]+)$", nm, re.M)
    default = [v for v in versions if "@@" in v]
    if len(versions) < 2 or len(default) != 1:
        unavailable("this libc has no multi-version memcpy")
    assert symbols.symbol_offset(libc, "memcpy") == _reference_offset(libc, default[0], True)
    for v in versions:     # memcpy@GLIBC_2.2.5 and memcpy@@GLIBC_2.14: each its own address
        assert symbols.symbol_offset(libc, v) == _reference_offset(libc, v, True)


def test_symbol_offset_in_a_32bit_library():
    """The 32-bit ELF layout (Elf32_Sym, Elf32_Phdr): the i386 libc of a multilib host."""
    lib32 = [p for n, d, p in _ldconfig() if n == "libc.so.6" and d == "libc6"]
    if not lib32:
        unavailable("no 32-bit libc here (libc6-i386)")
    for sym in ("getpid", "malloc"):
        nm = subprocess.run(["nm", "-D", "--defined-only", lib32[0]], check=True,
                            capture_output=True, text=True).stdout
        full = re.search(rf"^[0-9a-f]+ [TW] ({sym}@@GLIBC_[0-9.]+)$", nm, re.M).group(1)
        assert symbols.symbol_offset(lib32[0], sym) == _reference_offset(lib32[0], full, True)


def test_ld_so_cache_matches_ldconfig():
    rows = _ldconfig()
    every = symbols.ld_cache_entries(native=False)
    assert [(n, p) for n, _, p in every] == [(n, p) for n, _, p in rows]
    if os.uname().machine == "x86_64":
        native = [(n, p) for n, _, p in symbols.ld_cache_entries()]
        assert native == [(n, p) for n, d, p in rows if "x86-64" in d]
        assert len(native) < len(every) or all("x86-64" in d for _, d, _ in rows)


def test_resolve_binary_like_the_loader(binaries, tmp_path, monkeypatch):
    libc = _libc_path()
    for name in ("c", "libc", "libc.so.6", "libc.so"):
        assert symbols.resolve_binary(name) == libc, name
    # a path is used as is (made absolute)
    assert symbols.resolve_binary(binaries["pie"]) == binaries["pie"]
    monkeypatch.chdir(os.path.dirname(binaries["pie"]))
    assert symbols.resolve_binary("./target_pie") == binaries["pie"]
    # a program name falls back to $PATH, as the shell finds it
    sh = subprocess.run(["sh", "-c", "command -v cc"], capture_output=True, text=True).stdout.strip()
    assert symbols.resolve_binary("cc") == sh
    with pytest.raises(bpfload.ElfError, match="no_such_lib_xyz"):
        symbols.resolve_binary("no_such_lib_xyz")
    with pytest.raises(bpfload.ElfError, match="not a regular file"):
        symbols.resolve_binary(str(tmp_path))
    with pytest.raises(bpfload.ElfError, match="nope"):
        symbols.resolve_binary(str(tmp_path / "nope"))


def test_missing_symbol_names_binary_symbol_and_close_names(binaries):
    with pytest.raises(bpfload.ElfError) as ei:
        symbols.symbol_offset(binaries["pie"], "bl_targte")
    msg = str(ei.value)
    assert binaries["pie"] in msg and "bl_targte" in msg and "bl_target" in msg
    assert ei.value.symbol == "bl_targte" and ei.value.object == binaries["pie"]


def test_malformed_binaries_raise_elf_error(binaries, tmp_path):
    data = pathlib.Path(binaries["pie"]).read_bytes()
    bad = tmp_path / "bad"
    good = symbols.symbol_offset(binaries["pie"], "bl_target")
    cuts = [0, 3, 16, 40, 63, 64, 100, len(data) // 4, len(data) // 2, len(data) - 100, len(data) - 1]
    for cut in cuts:
        bad.write_bytes(data[:cut])
        with pytest.raises(bpfload.ElfError) as ei:
            symbols.symbol_offset(str(bad), "bl_target")
        assert str(bad) in str(ei.value), cut
    # random corruption of the ELF header, program and section headers: a result or ElfError
    rng = random.Random(1234)
    shoff = struct.unpack_from("<Q", data, 40)[0]
    regions = [(0, 64), (64, 64 + 13 * 56), (shoff, len(data))]
    outcomes = set()
    for _ in range(300):
        b = bytearray(data)
        lo, hi = rng.choice(regions)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(lo, hi)] = rng.randrange(256)
        bad.write_bytes(bytes(b))
        try:
            off = symbols.symbol_offset(str(bad), "bl_target")
            outcomes.add("ok" if off == good else "other")
        except bpfload.ElfError:
            outcomes.add("ElfError")
    assert "ElfError" in outcomes
    # not an executable: a BPF object (ET_REL), a text file
    with pytest.raises(bpfload.ElfError, match="not an executable"):
        symbols.symbol_offset(str(bpf_object("attach_uprobe")), "up_entry")
    bad.write_text("INPUT(libc.so.6)\n")
    with pytest.raises(bpfload.ElfError, match="not an ELF"):
        symbols.symbol_offset(str(bad), "x")


# ---------------------------------------------------------------------------
# attaching (kernel)

@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_uprobe_records_args_and_uretprobe_returns(binaries, kind):
    binary = binaries[kind]
    with _open() as obj:
        up = obj.programs["up_entry"].attach_uprobe(binary, "bl_target", cookie=0xc0ffee)
        ret = obj.programs["up_return"].attach(binary=binary, symbol="bl_target")
        try:
            info = up.info()
            assert info.file_name == binary
            assert info.offset == _reference_offset(binary, "bl_target")
            assert info.cookie == 0xc0ffee
            assert ret.info().perf_event_type == bpfload.constants.PerfEventType.URETPROBE
            with Child(binary) as c:
                assert c.go() == sum(RETS)
            assert obj.bss["entry_count"] == K and obj.bss["return_count"] == K
            assert _hash(obj.maps["args"]) == {x: 1 for x in ARGS}
            assert _hash(obj.maps["rets"]) == {r: 1 for r in RETS}
            assert obj.bss["last_cookie"] == 0xc0ffee
        finally:
            up.close()
            ret.close()
        with Child(binary) as c:     # detached: nothing moves
            c.go()
        assert obj.bss["entry_count"] == K and obj.bss["return_count"] == K


@pytest.mark.kernel
def test_offset_alone_and_symbol_plus_offset(binaries):
    binary = binaries["pie"]
    off = symbols.symbol_offset(binary, "bl_target")
    with _open() as obj:
        with obj.programs["up_entry"].attach_uprobe(binary, offset=off) as link:
            assert link.info().offset == off
            with Child(binary) as c:
                c.go()
            assert obj.bss["entry_count"] == K
            assert _hash(obj.maps["args"]) == {x: 1 for x in ARGS}
        # symbol + 0 offset through the section-style keyword, and a nonzero offset lands there
        with obj.programs["up_entry"].attach_uprobe(binary, "main", offset=1) as link:
            assert link.info().offset == symbols.symbol_offset(binary, "main") + 1


@pytest.mark.kernel
def test_ref_ctr_offset_counts_the_probe_in_the_semaphore(binaries):
    """ref_ctr_offset: the kernel adds 1 to the semaphore while the probe is attached."""
    binary = binaries["nopie"]
    sema = _reference_offset(binary, "bl_sema")
    with _open() as obj:
        with Child(binary) as c:
            link = obj.programs["up_entry"].attach_uprobe(binary, "bl_target", ref_ctr_offset=sema)
            with link:
                assert link.info().ref_ctr_offset == sema
                c.go()
            assert c.sema == 1 and obj.bss["entry_count"] == K
        with Child(binary) as c:      # detached: the semaphore stays 0
            c.go()
            assert c.sema == 0
    with pytest.raises(bpfload.AttachError, match="ref_ctr_offset"):
        with _open() as obj:
            obj.programs["up_entry"].attach_uprobe(binary, "bl_target", ref_ctr_offset=1 << 40)


@pytest.mark.kernel
def test_pid_filter_counts_only_that_process(binaries):
    binary = binaries["nopie"]
    with _open() as obj, Child(binary) as a, Child(binary, n=3) as b:
        with obj.programs["up_entry"].attach_uprobe(binary, "bl_target", pid=b.pid) as link:
            assert f"pid {b.pid}" in link.hook
            a.go()
            assert obj.bss["entry_count"] == 0
            b.go()
            assert obj.bss["entry_count"] == 3
            assert _hash(obj.maps["args"]) == {1: 1, 2: 1, 3: 1}


@pytest.mark.kernel
def test_section_names_library_and_symbol_getpid(binaries):
    """SEC("uprobe/libc.so.6:getpid"): attach() resolves libc through ld.so.cache."""
    libc = _libc_path()
    binary = binaries["pie"]
    with Child(binary, n=0, getpids=11) as c:
        with _open(tgid=c.pid) as obj:
            up = obj.programs["up_getpid"].attach(pid=c.pid)
            ret = obj.programs["up_getpid_ret"].attach(pid=c.pid)
            try:
                assert up.info().file_name == libc
                assert up.info().offset == _reference_offset(libc, "getpid@@GLIBC_2.2.5", True)
                assert obj.bss["getpid_count"] == 0
                c.go()
                assert obj.bss["getpid_count"] == 11
                assert obj.bss["getpid_ret_count"] == 11
                assert obj.bss["getpid_ret"] == c.pid
            finally:
                up.close()
                ret.close()


@pytest.mark.kernel
def test_library_name_and_this_process(binaries):
    """attach_uprobe("c", "getpid", pid=os.getpid()): os.getpid() is a call of libc's getpid."""
    libc = _libc_path()
    with _open(tgid=os.getpid()) as obj:
        with obj.programs["up_getpid"].attach_uprobe("c", "getpid", pid=os.getpid()) as link:
            assert link.info().file_name == libc
            before = obj.bss["getpid_count"]
            for _ in range(25):
                os.getpid()
            assert obj.bss["getpid_count"] - before == 25
        after = obj.bss["getpid_count"]
        os.getpid()
        assert obj.bss["getpid_count"] == after


@pytest.mark.kernel
def test_attach_all_attaches_the_library_sections():
    with _open(tgid=os.getpid()) as obj:
        made = obj.attach_all()
        assert sorted(made) == ["up_getpid", "up_getpid_ret"]
        assert "PATH:SYMBOL" in obj.unattached["up_entry"]
        before = obj.bss["getpid_count"]
        os.getpid()
        os.getpid()
        assert obj.bss["getpid_count"] - before == 2
        assert obj.bss["getpid_ret"] == os.getpid()


@pytest.mark.kernel
def test_attach_errors_name_program_binary_and_symbol(binaries, tmp_path):
    binary = binaries["pie"]
    with _open() as obj:
        p = obj.programs["up_entry"]
        with pytest.raises(bpfload.AttachError) as ei:
            p.attach_uprobe(binary, "no_such_function")
        msg = str(ei.value)
        assert "up_entry" in msg and binary in msg and "no_such_function" in msg
        assert isinstance(ei.value.__cause__, bpfload.ElfError)
        with pytest.raises(bpfload.AttachError, match="no_such_lib_xyz"):
            p.attach_uprobe("no_such_lib_xyz", "f")
        trunc = tmp_path / "trunc"
        trunc.write_bytes(pathlib.Path(binary).read_bytes()[:200])
        with pytest.raises(bpfload.AttachError, match="trunc"):
            p.attach_uprobe(str(trunc), "bl_target")
        # the kernel's refusals: no such process, offset beyond the file
        pid_max = int(pathlib.Path("/proc/sys/kernel/pid_max").read_text())
        with pytest.raises(bpfload.AttachError) as ei:
            p.attach_uprobe(binary, "bl_target", pid=pid_max + 1)
        assert ei.value.errno == errno.ESRCH and "no such process" in str(ei.value)
        with pytest.raises(bpfload.AttachError) as ei:
            p.attach_uprobe(binary, offset=os.path.getsize(binary) + 4096)
        assert ei.value.command == "perf_event_open" and ei.value.errno == errno.EINVAL
        with pytest.raises(bpfload.AttachError, match="negative"):
            p.attach_uprobe(binary, "bl_target", offset=-1)
        with pytest.raises(bpfload.AttachError, match="not a process id"):
            p.attach_uprobe(binary, "bl_target", pid=-5)
        # a section without PATH:SYMBOL needs the binary
        with pytest.raises(bpfload.AttachError, match="binary"):
            p.attach()
    # a program that is not of kprobe type
    with bpfload.BpfObject.open(bpf_object("globals")) as g:
        g.load()
        with pytest.raises(bpfload.AttachError, match="KPROBE"):
            g.programs["compute"].attach_uprobe(binary, "bl_target")


@pytest.mark.kernel
def test_missing_uprobe_pmu_is_a_clear_error(binaries, tmp_path, monkeypatch):
    monkeypatch.setattr(uprobe_mod, "SYSFS", str(tmp_path / "no_sysfs"))
    with _open() as obj:
        with pytest.raises(bpfload.AttachError, match="uprobe PMU is missing") as ei:
            obj.programs["up_entry"].attach_uprobe(binaries["pie"], "bl_target")
        assert "uprobe_events" in str(ei.value)


@pytest.mark.kernel
def test_many_attach_close_cycles_leave_no_fd(binaries):
    """Every link owns its perf event fd; closing it releases both (the fd-leak check applies)."""
    binary = binaries["pie"]
    with _open() as obj:
        for _ in range(20):
            obj.programs["up_entry"].attach_uprobe(binary, "bl_target").close()
            obj.programs["up_return"].attach_uprobe(binary, "bl_target", retprobe=True).close()
        with Child(binary) as c:
            c.go()
        assert obj.bss["entry_count"] == 0 and obj.bss["return_count"] == 0


# ---------------------------------------------------------------------------
# the example tool

def _histogram(out: str) -> dict:
    hist = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+) -> (\d+)\s*: (\d+)", line)
        if m:
            hist[int(m.group(1))] = int(m.group(3))
    return hist


@pytest.mark.kernel
def test_example_uprobe_latency(binaries):
    binary = binaries["pie"]
    tool = str(REPO / "examples" / "uprobe_latency.py")
    run = subprocess.run([sys.executable, tool, binary, "bl_slow", "--", binary, "5", "0", "3", "20"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    hist = _histogram(run.stdout)
    assert sum(hist.values()) == 3 and "total 3 calls" in run.stdout
    # each call slept 20 ms: every sample is at least 2^24 ns (16.8 ms) and below 2^31 (2.1 s)
    assert all(lo >= 1 << 24 and lo < 1 << 31 for lo, n in hist.items() if n)
    run = subprocess.run([sys.executable, tool, binary, "bl_target", "--", binary, "50"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    hist = _histogram(run.stdout)
    assert sum(hist.values()) == 50
    assert all(lo < 1 << 24 for lo, n in hist.items() if n)    # 3x+1 takes far less than 16 ms


def _cache_bytes(entries, *, old_prefix=False):
    """A glibc-ld.so.cache1.1 image (optionally after an old ld.so-1.7.0 table), string offsets
    relative to the new header, as glibc's loader reads them."""
    strings = bytearray()
    rows = []
    hdr_len = 48 + 24 * len(entries)
    for name, flags, path in entries:
        k = hdr_len + len(strings)
        strings += name.encode() + b"\0"
        v = hdr_len + len(strings)
        strings += path.encode() + b"\0"
        rows.append(struct.pack("<iIIIQ", flags, k, v, 0, 0))
    new = (b"glibc-ld.so.cache1.1" + struct.pack("<II", len(entries), len(strings)) +
           bytes(20) + b"".join(rows) + bytes(strings))
    if not old_prefix:
        return new
    old = b"ld.so-1.7.0" + b"\0" + struct.pack("<I", 1) + struct.pack("<iII", 1, 0, 0)
    return old + bytes(-len(old) % 8) + new


def test_ld_so_cache_format_old_prefix_versions_and_malformed(tmp_path):
    if os.uname().machine != "x86_64":
        unavailable("the cache flags are written for x86_64")
    libc, libm = _libc_path(), symbols.resolve_binary("m")
    entries = [("libfake.so.1", 0x0303, libc), ("libfake.so.2", 0x0303, libm),
               ("libfake.so.2", 0x0003, "/lib32/libfake.so.2"), ("libtxt.so", 0x0303, "/etc/hostname")]
    for old in (False, True):
        cache = tmp_path / f"cache{int(old)}"
        cache.write_bytes(_cache_bytes(entries, old_prefix=old))
        assert symbols.ld_cache_entries(str(cache), native=False) == entries
        assert [e[0] for e in symbols.ld_cache_entries(str(cache))] == \
            ["libfake.so.1", "libfake.so.2", "libtxt.so"]
        # "fake" -> the highest version; a name that is not an ELF file is skipped
        assert symbols.resolve_binary("fake", cache=str(cache)) == libm
        assert symbols.resolve_binary("libfake.so.1", cache=str(cache)) == libc
        with pytest.raises(bpfload.ElfError, match="libtxt"):
            symbols.resolve_binary("libtxt.so", cache=str(cache))
    data = _cache_bytes(entries)
    for cut in (0, 10, 47, 60, len(data) - 5):
        cache.write_bytes(data[:cut])
        with pytest.raises(bpfload.ElfError):
            symbols.ld_cache_entries(str(cache))
    # a broken cache is not fatal for resolution: the library directories still answer
    assert symbols.resolve_binary("libc.so.6", cache=str(cache)) == \
        os.path.join(next(d for d in symbols.LIBRARY_DIRS
                          if os.path.exists(os.path.join(d, "libc.so.6"))), "libc.so.6")
