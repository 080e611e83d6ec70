"""Seeded, structure-aware fuzzing of every committed object, in a child process.

Each case mutates one committed ``bpf/*.bpf.o`` (bit flips, truncations,
ELF header / section header / symbol / relocation / legacy map / BTF header /
BTF type / BTF.ext field edits, oversized counts: see tests/fuzz_driver.py)
and opens it with ``bpfload.BpfObject.open``; every ``LOAD_EVERY``-th case
that opens is loaded too (pins under a private bpffs; map sizes clamped to
32 MiB of kernel memory first, since a mutated max_entries is a request the
kernel grants slowly, not a bpfload defect -- open() sees them unclamped).  The cases run in ONE
child process with ``RLIMIT_AS`` capped, a per-case timer, and an fd count
around each case.  The test fails, naming object, seed, index and mutation
(replay: ``python tests/fuzz_driver.py --replay OBJ SEED INDEX out.o``), on:

* any exception outside the ``bpfload.BpfError`` family (MemoryError included);
* the child dying of a signal;
* a case running longer than ``CASE_TIMEOUT`` seconds;
* an fd (or a ResourceWarning) left behind by a case.

``BPFLOAD_FUZZ_CASES=N`` runs N cases instead of the CI default (sized to
about a minute on a 2-core shared machine), ``BPFLOAD_FUZZ_SEED=S`` another
seed.  Crashers found are fixed in bpfload and kept in tests/data/malformed/
(checked by tests/test_elf.py::test_malformed_regressions and here).
"""
from __future__ import annotations

import json
import struct
import os
import select
import subprocess
import sys
import time

import pytest

import bpfload

import fuzz_driver
from conftest import BPF_DIR, REPO

pytestmark = pytest.mark.kernel

OBJECTS = sorted(BPF_DIR.glob("*.bpf.o"))
MALFORMED_DIR = REPO / "tests" / "data" / "malformed"
DEFAULT_CASES = 10000
LOAD_EVERY = 5
CASE_TIMEOUT = 5.0
RLIMIT_AS = 2 << 30
SEED = os.environ.get("BPFLOAD_FUZZ_SEED", "bpfload-fuzz-1")


def _cases(total: int) -> list:
    per = -(-total // len(OBJECTS))
    out = [(str(p), i) for i in range(per) for p in OBJECTS]
    return out[:total]


def _describe(cases, pos: int) -> str:
    path, index = cases[pos]
    with open(path, "rb") as f:
        _, what = fuzz_driver.case_bytes(f.read(), os.path.basename(path), SEED, index)
    rel = os.path.relpath(path, REPO)
    return (f"{rel} seed={SEED!r} index={index} [{what}] "
            f"(replay: python tests/fuzz_driver.py --replay {rel} {SEED} {index} out.o)")


def _run_child(cfg: dict, start: int, stderr_path: str):
    """Run the child from case *start*; returns (failures, next start or None when done, stats)."""
    failures = []
    cfg = dict(cfg, start=start)
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, fuzz_driver.__file__], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, cwd=REPO)
    try:
        proc.stdin.write(json.dumps(cfg).encode())
        proc.stdin.close()
        current = None
        buf = b""
        # the first case waits for the imports and the warm-up loads
        deadline = time.monotonic() + 60
        while True:
            timeout = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(timeout, 0))
            if not ready:
                proc.kill()
                proc.wait()
                failures.append(("hang (killed)", current,
                                 f"no progress for {cfg['timeout'] + cfg.get('grace', 5)} s"))
                return failures, (current + 1 if current is not None else None), None
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                rc = proc.wait()
                with open(stderr_path, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                failures.append((f"child died (status {rc})", current, tail))
                return failures, (current + 1 if current is not None else None), None
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "start" in msg:
                    current = msg["start"]
                    deadline = time.monotonic() + cfg["timeout"] + cfg.get("grace", 5)
                elif "fail" in msg:
                    failures.append((f"{msg['fail']} during {msg['phase']}", msg["pos"], msg["error"]))
                elif "done" in msg:
                    proc.wait()
                    return failures, None, msg["done"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _fuzz(cfg: dict, tmp_path):
    """Run every case of *cfg*, restarting the child after a case that killed or hung it."""
    failures = []
    stats = None
    start = 0
    while start is not None and start < len(cfg["cases"]) and len(failures) < 50:
        found, start, stats = _run_child(cfg, start, str(tmp_path / "child.stderr"))
        failures += found
    return failures, stats


def test_harness_reports_every_failure(tmp_path):
    """The fuzz test can fail: faults injected into chosen cases of the child are each
    reported at their case, and the cases after a fatal one still run."""
    cases = _cases(len(OBJECTS) * 2)
    faults = {1: "segv", 3: "hang", 5: "stuck", 7: "memory", 9: "leak", 11: "keyerror"}
    cfg = {"objects": [str(p) for p in OBJECTS], "cases": cases, "seed": SEED, "load": False,
           "load_every": LOAD_EVERY, "timeout": 0.5, "grace": 1.5, "rlimit_as": RLIMIT_AS,
           "inject": {str(k): v for k, v in faults.items()}}
    failures, stats = _fuzz(cfg, tmp_path)
    got = {pos: what for what, pos, _ in failures}
    assert got == {1: "child died (status -11)", 3: "hang during open", 5: "hang (killed)",
                   7: "exception during open", 9: "fd during open", 11: "exception during open"}, failures
    detail = {pos: d for _, pos, d in failures}
    assert "MemoryError" in detail[7] and "KeyError" in detail[11] and "/dev/null" in detail[9]
    # the last child (restarted after case 5) ran to the end
    assert stats is not None and stats["cases"] == len(cases) - 6


def test_fuzz_objects(bpffs, tmp_path):
    total = int(os.environ.get("BPFLOAD_FUZZ_CASES", DEFAULT_CASES))
    cases = _cases(total)
    pin_root = bpffs / "fuzz"
    pin_root.mkdir()
    cfg = {"objects": [str(p) for p in OBJECTS], "cases": cases, "seed": SEED,
           "load": True, "load_every": LOAD_EVERY, "timeout": CASE_TIMEOUT,
           "rlimit_as": RLIMIT_AS, "pin_root": str(pin_root)}
    t0 = time.monotonic()
    failures, stats = _fuzz(cfg, tmp_path)
    elapsed = time.monotonic() - t0
    print(f"fuzz: {len(cases)} cases in {elapsed:.1f} s, stats {stats}, {len(failures)} failures")
    report = []
    for what, pos, detail in failures:
        where = _describe(cases, pos) if pos is not None else "(before the first case)"
        report.append(f"{what}: {where}\n    {detail.strip()}")
    assert not failures, f"{len(failures)} fuzz failures:\n" + "\n".join(report)
    # the run exercised what it claims: most cases open or fail cleanly, some load
    assert stats is not None and stats["cases"] == len(cases)
    assert stats["open_errors"] > len(cases) // 10
    assert stats["loads"] > 0 and stats["loaded"] > 0


def test_malformed_dir_is_not_empty():
    """test_elf.py's regression corpus is parametrized over this directory: a missing or
    emptied directory would silently give zero cases."""
    files = [p for p in MALFORMED_DIR.glob("*") if p.is_file()]
    assert len(files) >= 11, f"{MALFORMED_DIR} holds {len(files)} files"


# ---------------------------------------------------------------------------
# sizes read from the object are bounded before anything is allocated for them
# ---------------------------------------------------------------------------

_LOAD_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import bpfload
try:
    with bpfload.BpfObject.open(open(sys.argv[1], "rb").read(), name="crafted").load():
        pass
    print("ok")
except BaseException as e:
    print(type(e).__name__, getattr(e, "symbol", None), str(e).splitlines()[0][:300])
"""


def _patch(obj: str, edits: dict) -> bytes:
    """*obj*'s bytes with the fields named by fuzz_driver.Layout labels set to new values."""
    data = bytearray((BPF_DIR / obj).read_bytes())
    fields = {label: (off, size) for label, off, size in fuzz_driver.Layout(bytes(data)).fields}
    for label, value in edits.items():
        off, size = fields[label]
        data[off:off + size] = value.to_bytes(size, "little")
    return bytes(data)


def _load_in_capped_child(tmp_path, blob: bytes) -> str:
    path = tmp_path / "crafted.o"
    path.write_bytes(blob)
    r = subprocess.run([sys.executable, "-c", _LOAD_CAPPED, str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


# externs.bpf.o: [6] INT 'int' (CONFIG_HZ), [10] ARRAY char[16] (CONFIG_DEFAULT_HOSTNAME),
# [42] DATASEC '.kconfig' whose first member is LINUX_KERNEL_VERSION
@pytest.mark.parametrize("edits, symbol", [
    ({"btf[10].fixed2": 0xFFFFFFFF}, "CONFIG_DEFAULT_HOSTNAME"),   # was a 4 GiB bytearray: MemoryError
    ({"btf[10].fixed2": 50_000_000}, "CONFIG_DEFAULT_HOSTNAME"),   # was 50 MB allocated, then E2BIG
    ({"btf[6].size_type": 0x40000000}, "CONFIG_HZ"),               # a 1 GiB "int"
], ids=["char-array-4GiB", "char-array-50MB", "int-1GiB"])
def test_kconfig_extern_sizes_are_bounded(tmp_path, kernel, edits, symbol):
    out = _load_in_capped_child(tmp_path, _patch("externs.bpf.o", edits))
    assert out.startswith(f"BtfError {symbol} "), out
    assert ".kconfig" in out


def test_kconfig_member_that_is_not_a_var(tmp_path, kernel):
    """Fuzz crasher: a .kconfig DATASEC member pointing at void made load() raise AttributeError."""
    blob = _patch("externs.bpf.o", {"btf[42].vlen[0].0": 0})
    out = _load_in_capped_child(tmp_path, blob)
    assert out.startswith("BtfError None ") and "member [0]" in out and ".kconfig" in out, out


def _with_bss_sections(obj: str, count: int, size: int) -> bytes:
    """*obj* with *count* extra NOBITS sections ``.bss.fN`` of *size* bytes each: a new section
    header table and section name table appended at the end (the original sections keep
    their indexes, so symbols and relocations still hold)."""
    data = bytearray((BPF_DIR / obj).read_bytes())
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    hdrs = [bytearray(data[shoff + 64 * i:shoff + 64 * (i + 1)]) for i in range(shnum)]
    old_str_off, old_str_size = struct.unpack_from("<QQ", hdrs[shstrndx], 24)
    names = bytearray(data[old_str_off:old_str_off + old_str_size])
    for k in range(count):
        name_off = len(names)
        names += f".bss.f{k}\0".encode()
        hdrs.append(bytearray(struct.pack("<IIQQQQIIQQ", name_off, 8, 3, 0, 0, size, 0, 0, 8, 0)))
    str_off = len(data)
    data += names
    struct.pack_into("<QQ", hdrs[shstrndx], 24, str_off, len(names))
    data += b"\0" * (-len(data) % 8)
    new_shoff = len(data)
    for h in hdrs:
        data += h
    struct.pack_into("<Q", data, 0x28, new_shoff)
    struct.pack_into("<H", data, 0x3C, len(hdrs))
    return bytes(data)


_OPEN_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import bpfload
try:
    bpfload.BpfObject.open(open(sys.argv[1], "rb").read(), name="crafted")
    print("ok")
except BaseException as e:
    print(type(e).__name__, getattr(e, "section", None), str(e).splitlines()[0][:300])
"""


def test_bss_sections_are_bounded_in_total(tmp_path):
    """Each NOBITS data section was capped at 64 MiB but their number was not: a 2 KB
    section table asking for 40 x 60 MiB of zeros made open() allocate 2.4 GB (MemoryError)."""
    path = tmp_path / "many_bss.o"
    path.write_bytes(_with_bss_sections("globals.bpf.o", 40, 60 << 20))
    r = subprocess.run([sys.executable, "-c", _OPEN_CAPPED, str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.strip()
    assert out.startswith("ElfError .bss.f") and "global-data" in out, out
    # a few small ones still open: the bound is on the total, not on the count
    small = tmp_path / "few_bss.o"
    small.write_bytes(_with_bss_sections("globals.bpf.o", 3, 4096))
    with bpfload.BpfObject.open(small) as obj:
        assert obj.spec.maps[".bss.f2"].value_size == 4096


_STRINGS_CAPPED = """
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from bpfload.btf import Btf, BtfExt
N, L = 20000, 200_000
strings = b"\\0" + b"A" * L + b"\\0"
types = struct.pack("<IIII", 1, 1 << 24, 4, 32) * N          # N INTs, all named by the long string
hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
try:
    btf = Btf.parse(hdr + types + strings)
    print("types", len([t.name for t in btf]))
except BaseException as e:
    print("types", type(e).__name__, str(e).splitlines()[0][:200])
# a valid BTF with the same long string, and N line_info records each at another offset in it
one = struct.pack("<IIII", 0, 1 << 24, 4, 32)
btf = Btf.parse(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 16, 16, len(strings)) + one + strings)
recs = b"".join(struct.pack("<IIII", 8 * i, 1 + i, 1 + i, 0) for i in range(N))
line = struct.pack("<I", 16) + struct.pack("<II", 1, N) + recs
ext = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, len(line), len(line), 0) + line
try:
    e = BtfExt.parse(ext, btf)
    lines = [li for recs in e.line_info.values() for li in recs]
    print("lines", len(lines), max(len(li.line) for li in lines))
except BaseException as e:
    print("lines", type(e).__name__, str(e).splitlines()[0][:200])
"""


def test_one_long_string_is_not_decoded_once_per_type_or_record():
    """20,000 BTF types (or BTF.ext line records) naming a 200 KB string made parsing decode
    4 GB of text (MemoryError under a 1 GiB cap): type names longer than the kernel allows
    are a BtfError, BTF.ext strings are cut and decoded once per offset."""
    r = subprocess.run([sys.executable, "-c", _STRINGS_CAPPED], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    types, lines = r.stdout.strip().splitlines()
    assert types.startswith("types BtfError ") and "type [1]: name at string offset 1 is longer than" in types, types
    assert lines == "lines 20000 4099", lines      # 4096 bytes and "..."
