"""Kernel BTF and CO-RE: vmlinux parse, candidate index, resolution of a real object.

What a first CO-RE load in a process pays, step by step, and what libbpf
pays for the same steps:

* ``parse``: ``Btf.parse`` of ``/sys/kernel/btf/vmlinux`` (file read
  included) beside libbpf's ``btf__parse_raw`` + ``btf__free`` of the same
  file.
* ``index``: :meth:`bpfload.btf.targets.TargetBtf.build_index` on a freshly parsed
  vmlinux (the compiled essential-name index; also its pure-Python twin,
  the BTF name index plus a ``___flavor`` map), then one candidate lookup
  per distinct root type of ``bpf/core_task.bpf.o``;
  beside libbpf's way of finding candidates, a linear scan of every vmlinux
  type per root type (``bpf_core_add_cands``), written against libbpf's
  public API.
* ``resolve``: every CO-RE relocation of ``core_task.bpf.o`` (both programs
  linked, the shared subprogram's relocations resolved once) against the
  per-process kernel targets, index already built: what each load of the
  object costs once the process has paid for the two steps above.
* ``cold``: all three, as the first load in a fresh process would do them.

Run::

    python3 -m pytest benchmarks/bench_btf.py --benchmark-columns=min,mean,rounds

``extra_info`` carries ``per_relocation_us`` (resolution) and ``vs_libbpf``
(bpfload / libbpf, fastest rounds) for the pairs; the summary printed after
the run's tests shows fastest rounds, as the machine is shared.  Needs
kernel BTF (``CONFIG_DEBUG_INFO_BTF``); the C twin needs ``libbpf-dev`` and
a C compiler (``CC``).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import time

import pytest

from bpfload.btf import core
from bpfload._core import insn as _insn
from bpfload.btf import Btf
from bpfload.btf.targets import VMLINUX_PATH
from bpfload.object import BpfObject

from .conftest import BUILD, HERE, build_c

CORE_OBJ = HERE.parent / "bpf" / "core_task.bpf.o"
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))

_C_SRC = r"""
/* libbpf twin of bench_btf.py: parse vmlinux BTF; find CO-RE candidates libbpf's way. */
#include <string.h>
#include <time.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

static size_t essential_len(const char *name)
{
	size_t n = strlen(name);
	for (long i = (long)n - 5; i >= 0; i--)
		if (name[i] != '_' && name[i + 1] == '_' && name[i + 2] == '_' &&
		    name[i + 3] == '_' && name[i + 4] != '_')
			return i + 1;
	return n;
}

/* btf__parse_raw + btf__free, n times; returns the type count or -errno */
long bref_parse(const char *path, int n)
{
	long cnt = 0;
	for (int i = 0; i < n; i++) {
		struct btf *btf = btf__parse_raw(path);
		long err = libbpf_get_error(btf);
		if (err)
			return err;
		cnt = btf__type_cnt(btf);
		btf__free(btf);
	}
	return cnt;
}

/* btf__parse(path) + btf__free, n times (what libbpf does for each CO-RE object
 * load: file read, header and record checks, its type offset index); returns the
 * thread CPU time in ns, or -errno */
long bref_parse_timed(const char *path, int n)
{
	struct timespec a, b;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (int i = 0; i < n; i++) {
		struct btf *btf = btf__parse(path, NULL);
		long err = libbpf_get_error(btf);
		if (err)
			return err;
		btf__free(btf);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	return (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
}

/* bpf_core_add_cands for each of nnames names: a linear scan comparing kind
 * and essential name.  Parses the file first (not timed by the caller: see
 * bref_parse); returns the total number of candidates found. */
static struct btf *cached;

long bref_load(const char *path)
{
	cached = btf__parse_raw(path);
	return libbpf_get_error(cached);
}

long bref_candidates(const char **names, const int *kinds, int nnames)
{
	long found = 0;
	int n = btf__type_cnt(cached);
	for (int k = 0; k < nnames; k++) {
		size_t len = essential_len(names[k]);
		for (int i = 1; i < n; i++) {
			const struct btf_type *t = btf__type_by_id(cached, i);
			if (btf_kind(t) != kinds[k])
				continue;
			const char *tn = btf__name_by_offset(cached, t->name_off);
			if (!tn || !*tn)
				continue;
			if (essential_len(tn) != len || strncmp(tn, names[k], len))
				continue;
			found++;
		}
	}
	return found;
}
"""

_summary: list = []


def _build_ref():
    BUILD.mkdir(exist_ok=True)
    src = BUILD / "btf_ref.c"
    src.write_text(_C_SRC)
    return build_c("btf_ref.so", [src], ["-shared", "-fPIC"], ["-lbpf"], what="the libbpf twin",
                   skip_on_error=True)


@pytest.fixture(scope="module")
def bref():
    lib = ctypes.CDLL(str(_build_ref()))
    lib.bref_parse.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.bref_parse.restype = ctypes.c_long
    lib.bref_parse_timed.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.bref_parse_timed.restype = ctypes.c_long
    lib.bref_load.argtypes = [ctypes.c_char_p]
    lib.bref_load.restype = ctypes.c_long
    lib.bref_candidates.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                    ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.bref_candidates.restype = ctypes.c_long
    return lib


@pytest.fixture(scope="module")
def vmlinux_bytes():
    try:
        with open(VMLINUX_PATH, "rb") as f:
            return f.read()
    except OSError as e:
        pytest.skip(f"no kernel BTF: {e}")


@pytest.fixture(scope="module")
def core_spec():
    return BpfObject.open(CORE_OBJ).spec


def _root_types(spec):
    """(essential name, kind) of every distinct root type with CO-RE relocations."""
    seen = {}
    for recs in spec.btf_ext.core_relos.values():
        for r in recs:
            t = spec.btf[r.type_id]
            if t.name:
                seen[t.id] = (core.essential_name(t.name), t.kind)
    return sorted(set(seen.values()))


def _relocate_all(spec, targets):
    s = spec.copy()  # a fresh spec per load: nothing cached from the previous round
    applied = 0
    for name in s.programs:
        linked = _insn.link(name, s.functions)
        applied += len(core.apply_core_relos(linked, s, targets=targets))
    return applied


def _note(benchmark, what):
    _summary.append((benchmark.group, benchmark.name, what))


@pytest.fixture(scope="module", autouse=True)
def _print_summary(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or not _summary:
        return
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        tr.write_line("")
        tr.write_sep("=", "bench_btf: vmlinux BTF and CO-RE")
        for group, name, what in _summary:
            tr.write_line(f"{group:<20} {name:<38} {what}")


def _best(benchmark) -> float:
    """Seconds of the fastest round (this machine is shared: the mean drifts with load)."""
    return benchmark.stats.stats.min


def _ms(benchmark) -> float:
    return _best(benchmark) * 1e3


# --------------------------------------------------------------------------
# parse

_means: dict = {}


@pytest.mark.benchmark(group="parse vmlinux BTF")
def test_parse_libbpf(benchmark, bref, vmlinux_bytes):
    path = VMLINUX_PATH.encode()
    n = benchmark.pedantic(bref.bref_parse, args=(path, 1), rounds=ROUNDS, warmup_rounds=1)
    assert n > 1000
    _means["parse_c"] = _best(benchmark)
    _note(benchmark, f"{_ms(benchmark):.1f} ms for {n} types")


@pytest.mark.benchmark(group="parse vmlinux BTF")
def test_parse_bpfload(benchmark, vmlinux_bytes):
    def parse():
        with open(VMLINUX_PATH, "rb") as f:
            return Btf.parse(f.read())
    btf = benchmark.pedantic(parse, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(types=len(btf), mbytes=round(len(vmlinux_bytes) / 1e6, 2))
    what = f"{_ms(benchmark):.1f} ms for {len(btf)} types ({len(vmlinux_bytes) / 1e6:.1f} MB)"
    if "parse_c" in _means:
        ratio = _best(benchmark) / _means["parse_c"]
        benchmark.extra_info["vs_libbpf"] = round(ratio, 2)
        what += f", {ratio:.2f}x libbpf"
    _note(benchmark, what)


PARSE_PER_ROUND = 5
#: bpfload / libbpf target for a vmlinux BTF parse (the speed issue's)
PARSE_TARGET = 2.0


def _bpfload_parse_round(n: int) -> float:
    t0 = time.thread_time()
    for _ in range(n):
        with open(VMLINUX_PATH, "rb") as f:
            Btf.parse(f.read())
    return time.thread_time() - t0


@pytest.mark.benchmark(group="parse vmlinux BTF (paired)")
def test_parse_vs_libbpf_paired(benchmark, bref, vmlinux_bytes, pairs):
    """Paired rounds: libbpf's btf__parse(path) x5, then bpfload's read + Btf.parse x5,
    alternating, thread CPU time of each; the ratio table reports the median of
    bpfload / the libbpf round just before it (target 2.0x)."""
    path = VMLINUX_PATH.encode()
    n = PARSE_PER_ROUND
    pair = pairs.get_pair("parse vmlinux BTF", n, "parse", PARSE_TARGET)
    assert bref.bref_parse_timed(path, 1) > 0          # warm both sides (page cache, allocator)
    _bpfload_parse_round(1)

    def one():
        c = bref.bref_parse_timed(path, n)
        assert c > 0, c
        py = _bpfload_parse_round(n)
        pair.c.append(c / 1e9)
        pair.c_twin.append(c / 1e9)
        pair.py.append(py)
    benchmark.pedantic(one, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(ratio=round(pair.ratio(), 3), ratio_min=round(pair.ratio_min(), 3))
    _note(benchmark, f"libbpf {pair.ns(pair.c) / 1e6:.2f} ms, bpfload {pair.ns(pair.py) / 1e6:.2f} ms "
                     f"per parse; paired median ratio {pair.ratio():.2f}x (target {PARSE_TARGET}x)")


# --------------------------------------------------------------------------
# candidate index

@pytest.mark.benchmark(group="CO-RE candidates")
def test_candidates_libbpf_scan(benchmark, bref, core_spec):
    roots = _root_types(core_spec)
    assert bref.bref_load(VMLINUX_PATH.encode()) == 0
    names = (ctypes.c_char_p * len(roots))(*[n.encode() for n, _ in roots])
    kinds = (ctypes.c_int * len(roots))(*[int(k) for _, k in roots])
    found = benchmark.pedantic(bref.bref_candidates, args=(names, kinds, len(roots)),
                               rounds=ROUNDS, warmup_rounds=1)
    assert found >= 3
    _means["cands_c"] = _best(benchmark)
    _note(benchmark, f"{_ms(benchmark):.2f} ms: {len(roots)} linear scans, {found} candidates")


@pytest.mark.benchmark(group="CO-RE candidates")
def test_candidates_bpfload_index(benchmark, vmlinux_bytes, core_spec):
    """Index build on a fresh vmlinux Btf + one lookup per root type (parse not timed)."""
    roots = _root_types(core_spec)

    def build_and_look_up(btf):
        t = core.TargetBtf(btf)
        t.build_index()
        return sum(len(t.candidates(n, k)) for n, k in roots)
    found = benchmark.pedantic(build_and_look_up,
                               setup=lambda: ((Btf.parse(vmlinux_bytes),), {}),
                               rounds=ROUNDS)
    assert found >= 3
    what = f"{_ms(benchmark):.1f} ms: index build + {len(roots)} lookups, {found} candidates"
    if "cands_c" in _means:
        ratio = _best(benchmark) / _means["cands_c"]
        benchmark.extra_info["vs_libbpf"] = round(ratio, 2)
        what += f", {ratio:.2f}x libbpf's scans"
    _note(benchmark, what)


@pytest.mark.benchmark(group="CO-RE candidates")
def test_candidates_bpfload_python_index(benchmark, vmlinux_bytes, core_spec):
    """The pure-Python twin of the index (what the compiled EssentialIndex replaces)."""
    roots = _root_types(core_spec)

    def build_and_look_up(btf):
        t = core.TargetBtf(btf, compiled=False)
        t.build_index()
        return sum(len(t.candidates(n, k)) for n, k in roots)
    found = benchmark.pedantic(build_and_look_up,
                               setup=lambda: ((Btf.parse(vmlinux_bytes),), {}),
                               rounds=max(3, ROUNDS // 3))
    assert found >= 3
    _note(benchmark, f"{_ms(benchmark):.1f} ms: pure-Python index build + {len(roots)} lookups")


@pytest.mark.benchmark(group="CO-RE candidates")
def test_candidate_lookup_after_index(benchmark, core_spec):
    """One lookup per root type once the per-process index exists."""
    roots = _root_types(core_spec)
    t = core.kernel_targets().main
    found = benchmark.pedantic(lambda: sum(len(t.candidates(n, k)) for n, k in roots),
                               rounds=ROUNDS, iterations=10)
    assert found >= 3
    per = _best(benchmark) / len(roots) * 1e6
    benchmark.extra_info["per_lookup_us"] = round(per, 2)
    _note(benchmark, f"{per:.1f} us per root type ({len(roots)} root types)")


# --------------------------------------------------------------------------
# resolution

@pytest.mark.benchmark(group="CO-RE resolution")
def test_resolve_core_task(benchmark, core_spec):
    """Every relocation of core_task.bpf.o, kernel targets and index already built."""
    targets = core.kernel_targets()
    records = sum(len(v) for v in core_spec.btf_ext.core_relos.values())
    _relocate_all(core_spec, targets)  # warm the per-process state
    applied = benchmark.pedantic(_relocate_all, args=(core_spec, targets), rounds=ROUNDS,
                                 iterations=5)
    per = _best(benchmark) / records * 1e6
    benchmark.extra_info.update(records=records, applied=applied,
                                per_relocation_us=round(per, 1))
    _note(benchmark, f"{_ms(benchmark):.2f} ms for {records} records ({applied} patched): "
                     f"{per:.1f} us per relocation")


@pytest.mark.benchmark(group="CO-RE resolution")
def test_cold_parse_index_resolve(benchmark, vmlinux_bytes, core_spec):
    """A process's first CO-RE load: parse vmlinux, build the index, resolve everything."""
    def cold():
        vm = Btf.parse(vmlinux_bytes)
        main = core.TargetBtf(vm)
        main.build_index()
        return _relocate_all(core_spec, core.Targets(main))
    applied = benchmark.pedantic(cold, rounds=max(3, ROUNDS // 3))
    assert applied > 0
    _note(benchmark, f"{_ms(benchmark):.1f} ms for the first load in a process")
