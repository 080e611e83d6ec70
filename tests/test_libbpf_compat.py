"""bpfload against libbpf: the same objects become the same kernel objects.

Each libbpf-style object is loaded twice into the running kernel: by libbpf
(through tests/libbpf_driver.c, compiled here against libbpf-dev) and by
bpfload.  Both must create the same maps (object-level and kernel names,
type, key/value size, max_entries, flags, BTF key/value type ids), pin the
same maps by name, and load the same programs with the same kernel program
tag.  The tag (``bpf_prog_info.tag``) is the kernel's hash of the
instructions it was given, with map references masked: equal tags mean the
same relocated bytecode.  Where a tag differs, the failure shows the first
differing translated instruction of the two programs.

Only objects libbpf 1.x accepts are compared: libbpf refuses the legacy
``maps`` section, bpfload's custom map form and static functions in
program sections.  Maps pinned by name go under a private bpffs on both
sides (libbpf's ``pin_root_path``, bpfload's ``pin_root``).

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
from typing import Dict, List, Optional, Tuple

import pytest

import bpfload
from bpfload._core import insn as _insn
from bpfload._core import syscall as _sys

from conftest import REPO, REQUIRE_KERNEL, bpf_object

pytestmark = pytest.mark.kernel

#: Committed objects libbpf accepts, compared map by map and tag by tag.
OBJECTS = [
    "maps_btf",        # pinning by name, flags, percpu, key_size/value_size form
    "globals",         # .data/.bss/.rodata/.rodata.str1.1 maps and their kernel names
    "prog_array",      # static program-array initializers
    "mim_btf",         # map-in-map with BTF templates
    "share_writer",
    "share_reader",
    "ringbuf",
    "perf_event",
    "large",           # 48 programs, many maps
    "ringbuf_bench",
    "typed_values",    # rich BTF value types
    "spinlock",        # bpf_spin_lock / bpf_timer values, a callback subprogram
    "core_task",       # CO-RE relocations against vmlinux BTF, tp_btf attach id
    "demo",            # the main job's object: map-in-map, ringbuf, per-CPU, .rodata
]

DRIVER_SRC = REPO / "tests" / "libbpf_driver.c"
_LD_IMM64 = 0x18
#: src_reg of an ld_imm64 whose imm is a map (BPF_PSEUDO_MAP_FD/VALUE/IDX/IDX_VALUE):
#: in translated dumps the kernel writes the map id there, which differs per load.
_MAP_SRCS = (1, 2, 5, 6)
_KERNEL_ADDR = 0xFFFF800000000000


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


def _unavailable(why: str):
    if REQUIRE_KERNEL:
        pytest.fail(f"BPFLOAD_REQUIRE_KERNEL=1 but the libbpf reference is unavailable: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> str:
    why = _missing_reference()
    if why:
        _unavailable(why)
    out = tmp_path_factory.mktemp("libbpf") / "libbpf_driver"
    cc = shutil.which(os.environ.get("CC", "cc"))
    r = subprocess.run([cc, "-O1", "-Wall", "-Werror", "-o", str(out), str(DRIVER_SRC), "-lbpf"],
                       capture_output=True, text=True)
    if r.returncode:
        if "-lbpf" in r.stderr or "cannot find" in r.stderr or "No such file" in r.stderr:
            _unavailable(f"cannot build the libbpf driver (libbpf-dev?): {r.stderr.strip()}")
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


def run_libbpf(driver: str, obj: str, pin_dir) -> Loaded:
    """Load *obj* with libbpf; its programs stay pinned at pin_dir/prog_NAME."""
    r = subprocess.run([driver, obj, str(pin_dir)], capture_output=True, text=True, timeout=120)
    if r.returncode:
        pytest.fail(f"libbpf refused {os.path.basename(obj)}:\n{r.stderr[-3000:]}")
    out = Loaded({}, {})
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "map":
            out.maps[f[1]] = MapRow(f[2], *map(int, f[3:]))
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


def _normalized(raw: bytes) -> List[Tuple[int, int, int, int, int]]:
    """Instructions with what differs between two loads of the same program masked:
    map ids in ld_imm64 and kernel addresses (callback subprograms)."""
    insns = [tuple(i) for i in _insn.decode(raw)]
    out = []
    i = 0
    while i < len(insns):
        code, dst, src, off, imm = insns[i]
        if code == _LD_IMM64 and i + 1 < len(insns):
            nxt = insns[i + 1]
            value = (imm & 0xFFFFFFFF) | ((nxt[4] & 0xFFFFFFFF) << 32)
            if src in _MAP_SRCS:
                imm = 0
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
                     theirs_pin: Optional[str] = None) -> Optional[str]:
    """Where two translated programs first differ (map ids and kernel addresses masked),
    as text; None when they are the same."""
    a, b = _normalized(ours), _normalized(theirs)
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

@pytest.mark.parametrize("name", OBJECTS)
def test_same_maps_and_program_tags(name, driver, bpffs):
    path = str(bpf_object(name))
    lib_dir, our_dir = bpffs / "libbpf", bpffs / "bpfload"
    lib_dir.mkdir()
    our_dir.mkdir()
    ref = run_libbpf(driver, path, lib_dir)
    with bpfload.load(path, pin_root=our_dir) as obj:
        ours = bpfload_rows(obj)

        # maps: the same set, each created the same way.  libbpf 1.1 names its
        # global-data maps by their kernel name ("globals.bss"), bpfload by
        # section (".bss"): match those by kernel name.
        data = {n for n, ms in obj.spec.maps.items() if ms.form == "data"}
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
        lib_pins = sorted(p for p in os.listdir(lib_dir) if not p.startswith("prog_"))
        assert sorted(os.path.basename(p) for p in obj.pins_created) == lib_pins

        # programs: the same set, type and kernel name, and the same tag
        assert sorted(ours.progs) == sorted(ref.progs)
        problems = []
        for pname, p in obj.programs.items():
            mine, theirs = ours.progs[pname], ref.progs[pname]
            assert (mine.kernel_name, mine.type) == (theirs.kernel_name, theirs.type), pname
            if mine.tag == theirs.tag:
                continue
            our_pin = str(our_dir / f"prog_{pname}")
            p.pin(our_pin)
            lib_pin = str(lib_dir / f"prog_{pname}")
            with bpfload.Program.from_pin(lib_pin) as lp:
                where = first_difference(xlated(p), xlated(lp), our_pin, lib_pin)
            problems.append(f"{pname}: tag {mine.tag} (bpfload) != {theirs.tag} (libbpf); "
                            + (where or "translated instructions are identical once map ids "
                               "are masked: the difference is in what the verifier rewrote"))
        assert not problems, f"{name}: " + "\n".join(problems)


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
