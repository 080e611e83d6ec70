"""bpfload against libbpf: the same objects become the same kernel objects.

Every committed object is loaded twice into the running kernel: by libbpf
(through tests/libbpf_driver.c, compiled here against libbpf-dev) and by
bpfload; the few libbpf refuses are listed in EXCLUDED with the reason, and
a test checks that libbpf really refuses each.  Both loads must give:

* the same maps (object-level and kernel names, type, key/value size,
  max_entries, flags, BTF key/value type ids), the same maps pinned by name;
* the same map contents after load: global data images (``.data``,
  ``.rodata``, ``.kconfig`` ...), the frozen flag, program-array slots (as
  program names) and map-in-map slots (as inner map names);
* the same programs (kernel name, type, tag, attach_btf_id, func_info and
  line_info counts, the maps each holds: ``.rodata`` bound with
  BPF_PROG_BIND_MAP) and the same translated instructions with every map
  reference replaced by the map's kernel name and every offset kept.

The tag alone would not do: the kernel hashes instructions with the
immediates of map loads zeroed, so a program pointed at the wrong map or the
wrong global variable keeps its tag (TestIdentity shows it).  Where
instructions differ, the failure shows the first differing one, decoded.
Maps pinned by name go under a private bpffs on both sides (libbpf's
``pin_root_path``, bpfload's ``pin_root``).

Needs a C compiler and libbpf-dev (Debian: ``gcc libbpf-dev``); bpftool,
when present, adds its disassembly to a mismatch report.  Without them the
tests skip, unless BPFLOAD_REQUIRE_KERNEL=1 (CI installs them), where a
missing reference is a failure.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import struct
from typing import Dict, List, Optional, Tuple

import pytest

import bpfload
from bpfload._core import insn as _insn
from bpfload._core import syscall as _sys

from conftest import REPO, bpf_object, unavailable

pytestmark = pytest.mark.kernel

#: Committed objects libbpf 1.1 refuses, and why (test_excluded_objects_are_refused_by_libbpf
#: checks that it does, with the message given here).
EXCLUDED = {
    "maps_legacy": ("legacy 'maps' section (bpf_map_def): libbpf 1.0+ dropped it",
                    "legacy map definitions in 'maps' section are not supported"),
    "maps_custom": ("bpfload's own map form lives in the legacy 'maps' section",
                    "legacy map definitions in 'maps' section are not supported"),
    "parity_cilium": ("cilium/ebpf's conventions: a PERF_EVENT_ARRAY without key/value sizes "
                      "(libbpf creates it as written, the kernel refuses it) and section "
                      "spellings libbpf does not know (socket/NAME, sk_lookup/NAME, xdp/NAME)",
                      "map 'events': failed to create: Invalid argument"),
    "parity_iproute2": ("iproute2's struct bpf_elf_map in the legacy 'maps' section (tc's form)",
                        "legacy map definitions in 'maps' section are not supported"),
    "parse_relocs": ("a static function in a program section (libbpf refuses, bpfload links it)",
                     "is static and not supported"),
    "subprog": ("a static function in a program section", "is static and not supported"),
    "externs": ("libbpf 1.1 finds bpf_task_from_pid's prototype incompatible with the kernel's "
                "(its kfunc check is stricter than the kernel's; bpfload loads and runs it)",
                "incompatible with kernel"),
    "parse_btf": ("a parse-only object: the verifier refuses core_prog under both loaders",
                  "BPF program load failed"),
    "verifier_reject": ("made to be refused by the verifier", "BPF program load failed"),
    "attach_net": ("tcx/ingress, tcx/egress and netfilter sections: libbpf 1.1 predates them "
                   "(1.3 and 1.2 added them)", "missing BPF prog type, check ELF section name"),
    "arena": ("an ARENA map whose map_extra is an __ulong (ENUM64): libbpf 1.1 predates both "
              "(1.4 added them)", "attr 'map_extra': expected PTR, got enum64"),
    "struct_ops_link": ("a .struct_ops.link section: libbpf 1.1 predates it (1.2 added it) and "
                        "skips it, leaving its programs without a struct_ops member",
                        "failed to load: -524"),
    "struct_ops_bad": ("made to be refused (it sets a member the kernel lacks); libbpf 1.1 refuses "
                       "it earlier, as it keeps the ___flavor suffix of struct_ops types",
                       "is not found in kernel BTF"),
    "sections": ("one program per section prefix, fentry/lsm among them: this kernel refuses "
                 "trampoline programs with EPERM under both loaders",
                 "Operation not permitted"),
    "extern_func": ("calls an extern function defined nowhere: refused under both loaders "
                    "(bpfload names it too)", "failed to find BTF for extern 'fwd'"),
}



def _libbpf_syscall_wrapper(monkeypatch) -> None:
    """Give bpfload libbpf 1.1's LINUX_HAS_SYSCALL_WRAPPER.  libbpf probes it by opening a
    kprobe on __x64_sys_bpf, which fails on a kernel without kprobes (n) although the
    wrapper is there; bpfload reads kallsyms (y; test_parity checks that value).  The
    verifier prunes BPF_KSYSCALL's branch on it, so the programs match only when both
    loaders agree on it."""
    import platform
    from bpfload.link import tracefs
    if tracefs.pmu_type("kprobe") is None:
        monkeypatch.setitem(tracefs._wrapper_cache, ("/proc/kallsyms", platform.machine()), False)


#: Every other committed object is compared.
OBJECTS = sorted(p.name[:-len(".bpf.o")] for p in (REPO / "bpf").glob("*.bpf.o")
                 if p.name[:-len(".bpf.o")] not in EXCLUDED)

#: Compared objects that wait for a fix on another branch (xfail strict: the marker must go
#: when the fix lands, or the XPASS fails the run).
PENDING: dict = {}

DRIVER_SRC = REPO / "tests" / "libbpf_driver.c"
_LD_IMM64 = 0x18
#: src_reg of an ld_imm64 whose imm is a map (BPF_PSEUDO_MAP_FD/VALUE/IDX/IDX_VALUE):
#: in translated dumps the kernel writes the map id there, which differs per load.
_MAP_SRCS = (1, 2, 5, 6)
_KERNEL_ADDR = 0xFFFF800000000000
_PROG_INFO_SIZE = 232          # struct bpf_prog_info up to attach_btf_id (6.18)
_ATTACH_BTF_ID_OFF = 224


# --------------------------------------------------------------------------
# the libbpf side
# --------------------------------------------------------------------------

def _missing_reference() -> Optional[str]:
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return "no C compiler (cc) to build the libbpf driver: apt-get install gcc"
    if not os.path.exists("/usr/include/bpf/libbpf.h"):
        return "libbpf headers missing (/usr/include/bpf/libbpf.h): apt-get install libbpf-dev"
    return None


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> str:
    why = _missing_reference()
    if why:
        unavailable(why)
    out = tmp_path_factory.mktemp("libbpf") / "libbpf_driver"
    cc = shutil.which(os.environ.get("CC", "cc"))
    r = subprocess.run([cc, "-O1", "-Wall", "-Werror", "-o", str(out), str(DRIVER_SRC), "-lbpf"],
                       capture_output=True, text=True)
    if r.returncode:
        if "-lbpf" in r.stderr or "cannot find" in r.stderr or "No such file" in r.stderr:
            unavailable(f"cannot build the libbpf driver (libbpf-dev?): {r.stderr.strip()}")
        pytest.fail(f"the libbpf driver does not compile:\n{r.stderr}")
    return str(out)


@dataclasses.dataclass(frozen=True)
class MapRow:
    kernel_name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_key_type_id: int
    btf_value_type_id: int


@dataclasses.dataclass(frozen=True)
class ProgRow:
    kernel_name: str
    type: int
    tag: str
    xlated_len: int


@dataclasses.dataclass
class Loaded:
    maps: Dict[str, MapRow]
    progs: Dict[str, ProgRow]
    map_ids: Dict[str, int] = dataclasses.field(default_factory=dict)


def run_libbpf(driver: str, obj: str, pin_dir) -> Loaded:
    """Load *obj* with libbpf; its programs stay pinned at pin_dir/prog_NAME."""
    r = subprocess.run([driver, obj, str(pin_dir)], capture_output=True, text=True, timeout=120)
    if r.returncode:
        pytest.fail(f"libbpf refused {os.path.basename(obj)}:\n{r.stderr[-3000:]}")
    out = Loaded({}, {})
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "map":
            out.maps[f[1]] = MapRow(f[2], *map(int, f[3:10]))
            out.map_ids[f[1]] = int(f[10])
        elif f[0] == "prog":
            out.progs[f[1]] = ProgRow(f[2], int(f[3]), f[4], int(f[5]))
    return out


def bpfload_rows(obj: bpfload.BpfObject) -> Loaded:
    out = Loaded({}, {})
    for name, m in obj.maps.items():
        i = m.info()
        out.maps[name] = MapRow(i.name, int(i.type), i.key_size, i.value_size, i.max_entries,
                                i.flags, i.btf_key_type_id, i.btf_value_type_id)
    for name, p in obj.programs.items():
        i = p.info()
        out.progs[name] = ProgRow(i.name, int(i.type), i.tag, i.xlated_prog_len)
    return out


# --------------------------------------------------------------------------
# explaining a tag mismatch
# --------------------------------------------------------------------------

def xlated(prog: bpfload.Program) -> bytes:
    return _sys.prog_xlated_insns(prog.fd, prog.info().xlated_prog_len)


def map_namer():
    """id -> the kernel name of that map (cached); what a map reference means in both loads."""
    cache: Dict[int, str] = {}

    def name(map_id: int) -> str:
        if map_id not in cache:
            with _sys.get_fd_by_id("map", map_id) as fd:
                cache[map_id] = "map:" + bpfload.MapInfo.from_fd(fd.fileno()).name
        return cache[map_id]
    return name


def _normalized(raw: bytes, map_name=None) -> List[tuple]:
    """Instructions with what differs between two loads of the same program masked:
    kernel addresses (callback subprograms) and map ids in ld_imm64.  With
    *map_name* (id -> name) a map id is replaced by the map's name instead of
    masked, so a reference to another map, or another offset into a map value
    (kept in the next instruction), is a difference."""
    insns = [tuple(i) for i in _insn.decode(raw)]
    out: List[tuple] = []
    i = 0
    while i < len(insns):
        code, dst, src, off, imm = insns[i]
        if code == _LD_IMM64 and i + 1 < len(insns):
            nxt = insns[i + 1]
            value = (imm & 0xFFFFFFFF) | ((nxt[4] & 0xFFFFFFFF) << 32)
            if src in _MAP_SRCS:
                imm = map_name(imm & 0xFFFFFFFF) if map_name else 0
            elif value >= _KERNEL_ADDR:
                imm, nxt = 0, nxt[:4] + (0,)
            out += [(code, dst, src, off, imm), nxt]
            i += 2
            continue
        out.append((code, dst, src, off, imm))
        i += 1
    return out


def _fmt(insn) -> str:
    code, dst, src, off, imm = insn
    return f"code={code:#04x} dst=r{dst} src=r{src} off={off} imm={imm}"


def prog_extras(prog: bpfload.Program) -> Tuple[int, int, int]:
    """(attach_btf_id, nr_func_info, nr_line_info) as the kernel reports them."""
    i = prog.info()
    raw = _sys.obj_get_info(prog.fd, _PROG_INFO_SIZE)
    return struct.unpack_from("=I", raw, _ATTACH_BTF_ID_OFF)[0], i.nr_func_info, i.nr_line_info


def _frozen(fd: int) -> bool:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return any(line.split() == ["frozen:", "1"] for line in f)


def map_contents(m: bpfload.Map, prog_name, map_name) -> object:
    """What a map holds after load, comparable across loads: global data as bytes
    (with the frozen flag), program-array slots as program names, map-in-map
    slots as inner map names; None for maps a load leaves empty by design."""
    t = m.type
    if t == bpfload.MapType.PROG_ARRAY:
        return {k: prog_name(m.lookup(k)) for k in range(m.max_entries) if m.lookup(k) is not None}
    if t in (bpfload.MapType.ARRAY_OF_MAPS, bpfload.MapType.HASH_OF_MAPS):
        return {bytes(k) if not isinstance(k, int) else k: map_name(m.lookup(k)) for k in m.keys()}
    if t == bpfload.MapType.ARRAY and m.max_entries == 1 and "." in m.info().name:
        return (m.lookup(0), _frozen(m.fd))          # .data/.rodata/.bss/.kconfig ...
    return None


def _bpftool_lines(pin: Optional[str]) -> Dict[int, str]:
    """bpftool's disassembly of the pinned program by instruction index ({} without bpftool)."""
    tool = shutil.which("bpftool")
    if tool is None or pin is None:
        return {}
    r = subprocess.run([tool, "prog", "dump", "xlated", "pinned", pin], capture_output=True,
                       text=True, timeout=60)
    lines = {}
    for line in r.stdout.splitlines():
        mo = re.match(r"^\s*(\d+): (.*)$", line)
        if mo:
            lines[int(mo.group(1))] = mo.group(2)
    return lines


def first_difference(ours: bytes, theirs: bytes, ours_pin: Optional[str] = None,
                     theirs_pin: Optional[str] = None, map_name=None) -> Optional[str]:
    """Where two translated programs first differ (kernel addresses masked; map ids
    masked, or named with *map_name*), as text; None when they are the same."""
    a, b = _normalized(ours, map_name), _normalized(theirs, map_name)
    n = min(len(a), len(b))
    idx = next((i for i in range(n) if a[i] != b[i]), None)
    if idx is None:
        if len(a) == len(b):
            return None
        idx = n
    la, lb = _bpftool_lines(ours_pin), _bpftool_lines(theirs_pin)

    def side(insns, lines, i):
        if i >= len(insns):
            return f"(end of program: {len(insns)} instructions)"
        text = f"{_fmt(insns[i])}"
        return text + (f"   [{lines[i]}]" if i in lines else "")
    return (f"first differing instruction #{idx} "
            f"(bpfload {len(a)} instructions, libbpf {len(b)}):\n"
            f"  bpfload: {side(a, la, idx)}\n"
            f"  libbpf:  {side(b, lb, idx)}")


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def _prog_namer():
    cache: Dict[int, str] = {}

    def name(prog_id: int) -> str:
        if prog_id not in cache:
            with bpfload.Program.from_id(prog_id) as p:
                cache[prog_id] = "prog:" + p.info().name
        return cache[prog_id]
    return name


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=PENDING[n])) if n in PENDING else n
    for n in OBJECTS])
def test_same_as_libbpf(name, driver, bpffs, monkeypatch):
    # libbpf 1.1 predates uprobe_multi links and loads usdt programs as plain kprobes; load
    # ours the same way (libbpf 1.3+, like bpfload, loads them for uprobe_multi)
    from bpfload.link import usdt
    monkeypatch.setitem(usdt._features, "uprobe_multi", False)
    _libbpf_syscall_wrapper(monkeypatch)
    path = str(bpf_object(name))
    lib_dir, our_dir = bpffs / "libbpf", bpffs / "bpfload"
    lib_dir.mkdir()
    our_dir.mkdir()
    ref = run_libbpf(driver, path, lib_dir)
    map_name, prog_name = map_namer(), _prog_namer()
    with bpfload.load(path, pin_root=our_dir) as obj:
        ours = bpfload_rows(obj)

        # maps: the same set, each created the same way.  libbpf 1.1 names its
        # global-data maps by their kernel name ("globals.bss"), bpfload by
        # section (".bss"): match those by kernel name.
        # (.kconfig is made by the loader: in the object's maps, not in its spec)
        data = {n for n in ours.maps if n not in obj.spec.maps or obj.spec.maps[n].form == "data"}
        assert sorted(n for n in ours.maps if n not in data) == \
            sorted(n for n, r in ref.maps.items() if r.kernel_name not in
                   {ours.maps[d].kernel_name for d in data})
        by_kname = {r.kernel_name: r for r in ref.maps.values()}
        assert len(by_kname) == len(ref.maps) == len(ours.maps)
        diff = {n: (r, by_kname.get(r.kernel_name)) for n, r in ours.maps.items()
                if by_kname.get(r.kernel_name) != r}
        assert not diff, "maps differ (bpfload, libbpf): " + "; ".join(
            f"{n}: {a} != {b}" for n, (a, b) in diff.items())
        # the same maps pinned by name
        lib_pins = sorted(p for p in os.listdir(lib_dir) if not p.startswith(("prog_", "map_")))
        assert sorted(os.path.basename(p) for p in obj.pins_created) == lib_pins

        # the same contents after load: data images, frozen flags, slots by name
        lib_name = {r.kernel_name: n for n, r in ref.maps.items()}
        for n, m in obj.maps.items():
            lname = lib_name[ours.maps[n].kernel_name]
            with bpfload.Map.from_pin(lib_dir / ("map_" + lname.replace(".", "_"))) as lm:
                assert lm.id == ref.map_ids[lname]
                mine = map_contents(m, prog_name, map_name)
                theirs = map_contents(lm, prog_name, map_name)
            assert mine == theirs, f"{name}: map {n} holds {mine!r} (bpfload), {theirs!r} (libbpf)"

        # programs: the same set, type, kernel name, tag, attach id, func/line info,
        # and the same instructions with map identity and offsets
        assert sorted(ours.progs) == sorted(ref.progs)
        problems = []
        for pname, p in obj.programs.items():
            mine, theirs = ours.progs[pname], ref.progs[pname]
            assert (mine.kernel_name, mine.type) == (theirs.kernel_name, theirs.type), pname
            lib_pin = str(lib_dir / f"prog_{pname}")
            with bpfload.Program.from_pin(lib_pin) as lp:
                assert prog_extras(p) == prog_extras(lp), \
                    f"{pname}: (attach_btf_id, nr_func_info, nr_line_info) differ"
                # the maps it holds, .rodata bound with BPF_PROG_BIND_MAP included
                assert sorted(map(map_name, p.info().map_ids)) == \
                    sorted(map(map_name, lp.info().map_ids)), f"{pname}: the maps it holds differ"
                ours_x, theirs_x = xlated(p), xlated(lp)
            where = first_difference(ours_x, theirs_x, map_name=map_name)
            if mine.tag == theirs.tag and where is None:
                continue
            our_pin = str(our_dir / f"prog_{pname}")
            p.pin(our_pin)
            where = first_difference(ours_x, theirs_x, our_pin, lib_pin, map_name=map_name)
            problems.append(f"{pname}: tag {mine.tag} (bpfload), {theirs.tag} (libbpf); "
                            + (where or "translated instructions are identical: the "
                               "difference is in what the verifier rewrote"))
        assert not problems, f"{name}: " + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_objects_are_refused_by_libbpf(name, driver, tmp_path):
    """An exclusion is a fact about libbpf, not a way to skip a failing comparison."""
    reason, message = EXCLUDED[name]
    pin_dir = tmp_path / "pins"   # not a bpffs: libbpf fails before pinning anything
    pin_dir.mkdir()
    r = subprocess.run([driver, str(bpf_object(name)), str(pin_dir)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0, f"libbpf loads {name}: compare it instead ({reason})"
    assert message in r.stderr, f"libbpf refuses {name} for another reason:\n{r.stderr[-2000:]}"


def test_every_committed_object_is_compared_or_excluded():
    names = {p.name[:-len(".bpf.o")] for p in (REPO / "bpf").glob("*.bpf.o")}
    assert set(OBJECTS) | set(EXCLUDED) == names and not set(OBJECTS) & set(EXCLUDED)
    assert len(OBJECTS) >= 15


class TestIdentity:
    """The tag cannot see which map a program uses; the comparison above can."""

    def test_same_tag_different_map(self):
        with bpfload.load(bpf_object("mim_btf")) as obj:
            aom, empty = obj.programs["aom_read"], obj.programs["empty_read"]
            assert aom.tag == empty.tag                  # the kernel's hash masks the map
            a, b = xlated(aom), xlated(empty)
            assert first_difference(a, b) is None        # masked map ids: no difference
            text = first_difference(a, b, map_name=map_namer())
        assert text is not None and "imm=map:" in text   # named maps: a difference

    def test_same_tag_different_variable(self):
        """A global-variable access moved to another offset of the same map: the
        comparison keeps offsets (the second half of the ld_imm64), so it differs."""
        with bpfload.load(bpf_object("globals")) as obj:
            prog = next(p for p in obj.programs.values()
                        if any(src == 2 for _, _, src, _, _ in _insn.decode(xlated(p))))
            raw = bytearray(xlated(prog))
        insns = list(_insn.decode(bytes(raw)))
        idx = next(i for i, (code, _, src, _, _) in enumerate(insns)
                   if code == _LD_IMM64 and src == 2)
        moved = bytearray(raw)
        struct.pack_into("=i", moved, (idx + 1) * 8 + 4, insns[idx + 1][4] + 8)
        names = {}

        def fake(map_id):
            return names.setdefault(map_id, f"map:{len(names)}")
        text = first_difference(bytes(raw), bytes(moved), map_name=fake)
        assert text is not None and f"#{idx + 1}" in text


def test_compared_objects_cover_the_map_kinds():
    """The list above exercises what the comparison is for: BTF maps of several
    types, global data, map-in-map, program arrays, event maps (no kernel needed)."""
    seen_types = set()
    for name in OBJECTS:
        spec = bpfload.BpfObject.open(bpf_object(name)).spec
        seen_types |= {int(ms.type) for ms in spec.maps.values()}
    want = {bpfload.MapType.HASH, bpfload.MapType.ARRAY, bpfload.MapType.PERCPU_ARRAY,
            bpfload.MapType.LRU_HASH, bpfload.MapType.ARRAY_OF_MAPS, bpfload.MapType.HASH_OF_MAPS,
            bpfload.MapType.PROG_ARRAY, bpfload.MapType.RINGBUF,
            bpfload.MapType.PERF_EVENT_ARRAY}
    assert {int(t) for t in want} <= seen_types


class TestFirstDifference:
    """The mismatch report, on programs known to differ or to match."""

    def test_points_at_the_differing_instruction(self, bpffs):
        with bpfload.load(bpf_object("prog_array")) as obj:
            a, b = obj.programs["tail_a"], obj.programs["tail_b"]
            a.pin(bpffs / "a")
            b.pin(bpffs / "b")
            text = first_difference(xlated(a), xlated(b), str(bpffs / "a"), str(bpffs / "b"))
        assert text is not None
        assert text.startswith("first differing instruction #0 (bpfload 2 instructions, "
                               "libbpf 2)")
        assert "bpfload: code=0xb7 dst=r0 src=r0 off=0 imm=100" in text
        assert "libbpf:  code=0xb7 dst=r0 src=r0 off=0 imm=200" in text
        if shutil.which("bpftool"):
            assert "[(b7) r0 = 100]" in text and "[(b7) r0 = 200]" in text

    def test_map_ids_and_kernel_addresses_are_masked(self):
        with bpfload.load(bpf_object("mim_btf")) as obj:
            aom, empty = xlated(obj.programs["aom_read"]), xlated(obj.programs["empty_read"])
            assert aom != empty                      # different outer maps ...
            assert first_difference(aom, empty) is None  # ... and nothing else
            assert first_difference(aom, xlated(obj.programs["hom_read"])) is not None
        with bpfload.load(bpf_object("spinlock")) as one, bpfload.load(bpf_object("spinlock")) as two:
            a, b = xlated(one.programs["timer_arm"]), xlated(two.programs["timer_arm"])
            assert first_difference(a, b) is None   # callback address and map ids differ

    def test_length_difference(self):
        with bpfload.load(bpf_object("prog_array")) as obj:
            a, b = xlated(obj.programs["tail_a"]), xlated(obj.programs["tail_entry"])
        text = first_difference(a, a + b)
        assert text is not None and "#2 (bpfload 2 instructions" in text
        assert "(end of program: 2 instructions)" in text
