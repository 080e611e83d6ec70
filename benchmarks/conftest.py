"""Benchmark harness: bpfload against a C reference doing the same work.

* The C reference (``c_ref.c``) is compiled with ``cc -O2 -shared -fPIC``
  into ``benchmarks/.build/`` when the first benchmark needs it, and loaded
  with ctypes.  Nothing prebuilt is committed; ``CC`` overrides the compiler.
* Files named ``bench_*.py`` are collected only when pytest is pointed at
  this directory (the repository's ``testpaths`` is ``tests``, so a plain
  ``python3 -m pytest`` never runs benchmarks).  ``__init__.py`` makes this
  directory a package, so this file is not imported as the top-level
  ``conftest`` that tests/ imports helpers from.
* ``kernel``: skips a benchmark (with the reason) where bpf(2) is not usable.
* Every benchmark group holds one bpfload case and its C twin; both record
  their round times in the session's :class:`Pairs` (fixture ``pairs``),
  and the ratio table is printed at the end of the run
  (``pytest_terminal_summary``).

Run: ``python3 -m pytest benchmarks/bench_maps.py --benchmark-only``.
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import shlex
import statistics
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
BUILD = HERE / ".build"

# ctypes signatures of c_ref.c (every function returns a count or -errno).
_SIGNATURES = {
    "cref_lookup_elems": [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p],
    "cref_update_elems": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                          ctypes.c_uint64],
    "cref_lookup_batch": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                          ctypes.c_uint32, ctypes.c_size_t, ctypes.c_uint32],
    "cref_update_batch": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                          ctypes.c_uint64],
    "cref_percpu_sum": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                        ctypes.c_uint32, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_uint32],
}


# --------------------------------------------------------------------------
# collection: bench_*.py, only for runs pointed at benchmarks/

def pytest_collect_file(parent, file_path):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and file_path.parent == HERE and not parent.session.isinitpath(file_path)):
        # An explicitly named file is collected by pytest itself.
        return pytest.Module.from_parent(parent, path=file_path)
    return None


# --------------------------------------------------------------------------
# the C reference

def build_c(name: str, sources, flags=(), libs=(), *, what: str,
            skip_on_error: bool = False) -> pathlib.Path:
    """Compile *sources* with ``$CC -O2 -Wall`` *flags* into ``.build/name``, linking *libs*.

    Atomically (written under a per-process name, then renamed): a concurrent run never
    loads half a file.  A failed build fails the test naming *what* and the compiler's
    output, or skips it with *skip_on_error* (an optional reference).
    """
    BUILD.mkdir(exist_ok=True)
    out = BUILD / name
    stem, dot, ext = name.partition(".")
    tmp = BUILD / f"{stem}.{os.getpid()}{dot}{ext}"
    cmd = shlex.split(os.environ.get("CC", "cc")) + [
        "-O2", "-Wall", *flags, "-o", str(tmp), *map(str, sources), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = f"building {what} failed: {' '.join(cmd)}\n{proc.stderr.strip()}"
        if skip_on_error:
            pytest.skip(msg)
        pytest.fail(msg, pytrace=False)
    os.replace(tmp, out)
    return out


def build_c_ref() -> pathlib.Path:
    """Compile c_ref.c into .build/."""
    return build_c("c_ref.so", [HERE / "c_ref.c"], ["-shared", "-fPIC", "-Wextra"],
                   what="the C reference")


@pytest.fixture(scope="session")
def cref():
    """The compiled C reference, loaded with ctypes (built once per run)."""
    lib = ctypes.CDLL(str(build_c_ref()))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_long
    return lib


@pytest.fixture(scope="session")
def kernel():
    """Skip (with the reason) when this process may not use bpf(2)."""
    import bpfload
    try:
        with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="probe"):
            pass
    except (bpfload.PermissionDeniedError, OSError) as e:
        pytest.skip(f"bpf(2) not usable here: {e}")


# --------------------------------------------------------------------------
# pairing and the ratio table

class Pair:
    """One benchmark group: round times (seconds) of the C twin and of bpfload.

    The verdict uses the *interleaved* rounds only: each bpfload round is
    compared with the C round run just before it, so load from other
    processes on this shared machine (which comes and goes over seconds)
    hits both sides of a pair alike.
    """

    def __init__(self, group: str, ops: int, what: str, target: float):
        self.group, self.ops, self.what, self.target = group, ops, what, target
        self.c_twin: list[float] = []   # the C test's own rounds (for the group table)
        self.c: list[float] = []        # C rounds, each run just before ...
        self.py: list[float] = []       # ... this bpfload round
        self.floor_c: list[float] = []  # optional: C rounds, each run just before ...
        self.floor: list[float] = []    # ... a round of what CPython itself must spend

    def ratio(self) -> float:
        """The verdict: median over rounds of bpfload / the C round just before it."""
        return statistics.median(p / c for p, c in zip(self.py, self.c))

    def spread(self) -> tuple:
        """(lowest, highest) per-pair ratio bpfload / C of the interleaved rounds."""
        r = sorted(p / c for p, c in zip(self.py, self.c))
        return r[0], r[-1]

    def iqr(self) -> tuple[float, float]:
        """First and third quartiles of the paired round ratios (the verdict's spread)."""
        ratios = [p / c for p, c in zip(self.py, self.c)]
        if len(ratios) < 2:
            return ratios[0], ratios[0]
        q = statistics.quantiles(ratios, n=4)
        return q[0], q[2]

    def ratio_min(self) -> float:
        """min(bpfload rounds) / min(interleaved C rounds): each side at its least disturbed."""
        return min(self.py) / min(self.c)

    def floor_ratio(self) -> float:
        """Median of (C + CPython's own share) / C: no bpfload can do better than this."""
        return statistics.median((c + f) / c for c, f in zip(self.floor_c, self.floor))

    def ns(self, times: list[float]) -> float:
        """ns per operation of the fastest round."""
        return min(times) * 1e9 / self.ops


class Pairs(dict):
    """The session's pairs by group name (bench_maps.py's ``Case`` fields build one)."""

    def get_pair(self, group: str, ops: int, what: str, target: float) -> Pair:
        if group not in self:
            self[group] = Pair(group, ops, what, target)
        return self[group]


_PAIRS = Pairs()


@pytest.fixture(scope="session")
def pairs() -> Pairs:
    return _PAIRS


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    done = [p for p in _PAIRS.values() if p.py and p.c]
    if not done:
        return
    tr = terminalreporter
    tr.write_sep("=", "bpfload / C reference (same work, same map fd)")
    head = (f"{'group':<24} {'per':<7} {'C ns':>8} {'bpfload ns':>11} {'ratio':>7} "
            f"{'ratio(min)':>11} {'IQR':>13} {'target':>7}  verdict")
    tr.write_line(head)
    tr.write_line("-" * len(head))
    missed = []
    for p in done:
        r = p.ratio()
        verdict = "ok" if r <= p.target else f"MISSED by {r / p.target - 1:.0%}"
        if r > p.target:
            missed.append(p)
        tr.write_line(f"{p.group:<24} {p.what:<7} {p.ns(p.c):>8.1f} {p.ns(p.py):>11.1f} "
                      f"{r:>7.3f} {p.ratio_min():>11.3f} {'%.3f-%.3f' % p.iqr():>13} "
                      f"{p.target:>7.2f}  {verdict}")
    tr.write_line("ns: fastest round / operations per round.  ratio: median over rounds of "
                  "bpfload / the C round run just before it (the verdict); IQR: its quartiles.  "
                  "ratio(min): fastest bpfload round / fastest of those C rounds.")
    tr.write_line("spread (lowest-highest per-pair ratio): " + ", ".join(
        f"{p.group} {p.spread()[0]:.2f}-{p.spread()[1]:.2f}" for p in done))
    for p in done:
        if p.floor and p.floor_c:
            tr.write_line(f"{p.group}: CPython's dict() over an already built items() list "
                          f"alone takes {p.ns(p.floor):.1f} ns/{p.what}; C raw dump + that = "
                          f"{p.floor_ratio():.2f}x C, the floor for dict(m.items()) "
                          "(to_dict() builds the dict in C and skips it).")
    if missed:
        names = ", ".join(f"{p.group} {p.ratio():.3f} > {p.target:.2f}" for p in missed)
        if config.getoption("strict_targets"):
            tr.write_line(f"--strict-targets: {len(missed)} target(s) missed: {names}")
            _MISSED_TARGETS.extend(missed)
        else:
            tr.write_line(f"{len(missed)} target(s) missed (informational; the machine is "
                          f"noisy: --strict-targets makes this fail the run): {names}")


_MISSED_TARGETS: list = []


def pytest_addoption(parser):
    parser.addoption("--strict-targets", action="store_true", default=False,
                     dest="strict_targets",
                     help="exit non-zero when a bpfload/C ratio misses its target "
                          "(informational by default: ratios move with host load)")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # the summary above runs after this hook on some pytest versions: decide from the pairs
    if session.config.getoption("strict_targets"):
        done = [p for p in _PAIRS.values() if p.py and p.c]
        if any(p.ratio() > p.target for p in done) and session.exitstatus == 0:
            session.exitstatus = 1
