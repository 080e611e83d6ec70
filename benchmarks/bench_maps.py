"""bpfload map access against a C reference doing the same work on the same fd.

Each group pairs ``test_<op>_c`` (one ctypes call into c_ref.c per round: the
whole loop runs in C with raw bpf(2)) with ``test_<op>_bpfload`` (the same
work through bpfload's public API from Python).  Before each of its rounds
the bpfload test runs and times one C round, so a pair of rounds sees the
same machine; conftest.py prints the ratio table at the end of the run.
Group 6 holds several bpfload variants (``dict(m.items())``, ``m.to_dict()``
and ``m.to_dict(int_keys=True, int_values=True)``) beside one C twin: each is a
row of the ratio table (``Case.row``) with its own interleaved C rounds.
What CPython alone costs for those dicts (the floor of the ``to_dict()``
rows) is timed piece by piece by ``dict_anatomy.py``.

Rounds are timed with ``time.thread_time`` (CPU time of this thread, user +
kernel): the machine is shared, and wall time would also count the time other
processes ran.  Every operation here is a synchronous syscall that does not
sleep, so on an idle machine the two clocks agree.

Run: ``python3 -m pytest benchmarks/bench_maps.py --benchmark-only``
(``BPFLOAD_BENCH_ROUNDS`` sets the rounds per test, default 15).
"""
from __future__ import annotations

import array
import ctypes
import os
import random
import sys
import time
from typing import NamedTuple

import pytest

from bpfload import Map, MapType, possible_cpus

N_ENTRIES = 1_000_000     # the HASH map: u32 -> u64, full
N_KEYS = 200_000          # per-element rounds: this many distinct random keys
CHUNK = 4096              # BPF_MAP_LOOKUP_BATCH entries per call for the dump (case 3)
N_PERCPU = 100_000        # the PERCPU_ARRAY of u64 counters
ROUNDS = int(os.environ.get("BPFLOAD_BENCH_ROUNDS", "15"))
WARMUP = 1
TIMER = time.thread_time

pytestmark = pytest.mark.usefixtures("kernel")


class Case(NamedTuple):
    group: str      # pytest-benchmark's group: the C twin and every bpfload variant of it
    ops: int        # operations per round (ns/op = round time / ops)
    what: str       # what one operation is
    target: float   # bpfload / C must not exceed this
    row: str = ""   # the ratio table's row, when a group has several bpfload variants

    def mark(self):
        return pytest.mark.benchmark(group=self.group, timer=TIMER)

    def pair(self, pairs):
        return pairs.get_pair(self.row or self.group, self.ops, self.what, self.target)


LOOKUP = Case("1 lookup per element", N_KEYS, "lookup", 1.15)
UPDATE = Case("2 update per element", N_KEYS, "update", 1.15)
# The same on an ARRAY: the kernel's part is shorter, bpfload's own share larger.
LOOKUP_ARRAY = Case("1a ARRAY lookup", N_KEYS, "lookup", 1.15)
UPDATE_ARRAY = Case("2a ARRAY update", N_KEYS, "update", 1.15)
DUMP = Case("3 dump by batch lookup", N_ENTRIES, "entry", 1.1)
UPDATE_BATCH = Case("4 update_batch 1M", N_ENTRIES, "entry", 1.1)
PERCPU_SUM = Case("5 per-CPU sum_batch", N_PERCPU, "entry", 1.1)
DICT = Case("6 dump into a dict", N_ENTRIES, "entry", 1.3)      # dict(m.items())
TO_DICT = DICT._replace(row="6 to_dict() bytes")
TO_DICT_INT = DICT._replace(row="6 to_dict() int k/v")


# --------------------------------------------------------------------------
# helpers

class Buf:
    """A zeroed bytearray and its address, for the C side."""

    def __init__(self, nbytes: int):
        self.data = bytearray(nbytes)
        self._c = (ctypes.c_char * nbytes).from_buffer(self.data)
        self.addr = ctypes.addressof(self._c)


def _addr(arr: array.array) -> int:
    return arr.buffer_info()[0]


def check(ret: int, what: str) -> int:
    """A C reference return value, or an OSError for -errno."""
    if ret < 0:
        raise OSError(-ret, f"C reference {what}: {os.strerror(-ret)}")
    return ret


class Interleaver:
    """A pedantic ``setup``: runs and times one C round before each bpfload round."""

    def __init__(self, c_round, sink: list):
        self.c_round, self.sink = c_round, sink

    def __call__(self):
        t0 = TIMER()
        self.c_round()
        self.sink.append(TIMER() - t0)


def run_c(benchmark, pairs, case: Case, c_round):
    """The C twin: pytest-benchmark times one ctypes call per round."""
    pair = case.pair(pairs)
    benchmark.pedantic(c_round, rounds=ROUNDS, warmup_rounds=WARMUP)
    if benchmark.disabled:
        return
    pair.c_twin = list(benchmark.stats.stats.data)
    benchmark.extra_info.update(ops_per_round=case.ops, per_op=case.what,
                                ns_per_op=round(pair.ns(pair.c_twin), 1))


def run_py(benchmark, pairs, case: Case, py_round, c_round):
    """The bpfload case; one C round runs (and is timed) as the setup of each round."""
    pair = case.pair(pairs)
    inter: list[float] = []
    benchmark.pedantic(py_round, setup=Interleaver(c_round, inter), rounds=ROUNDS,
                       warmup_rounds=WARMUP)
    if benchmark.disabled:
        return
    pair.py = list(benchmark.stats.stats.data)
    pair.c = inter[WARMUP:]
    benchmark.extra_info.update(
        ops_per_round=case.ops, per_op=case.what,
        ns_per_op=round(pair.ns(pair.py), 1),
        c_ns_per_op=round(pair.ns(pair.c), 1),
        ratio=round(pair.ratio(), 3),            # median of the paired round ratios
        ratio_min=round(pair.ratio_min(), 3),
        ratio_iqr=[round(q, 3) for q in pair.iqr()],
        target=case.target,
    )


# --------------------------------------------------------------------------
# fixtures: the maps (filled once per session) and the keys

@pytest.fixture(scope="session")
def hash_map():
    """HASH u32 -> u64 with N_ENTRIES entries (key k holds value k), filled by update_batch."""
    m = Map.create(MapType.HASH, 4, 8, N_ENTRIES, name="bench_hash")
    keys = array.array("I", range(N_ENTRIES))
    m.update_batch(keys, array.array("Q", keys))
    yield m
    m.close()


@pytest.fixture(scope="session")
def array_map():
    """ARRAY u32 -> u64 with N_ENTRIES entries (index k holds k), filled by update_batch."""
    m = Map.create(MapType.ARRAY, 4, 8, N_ENTRIES, name="bench_array")
    keys = array.array("I", range(N_ENTRIES))
    m.update_batch(keys, array.array("Q", keys))
    yield m
    m.close()


@pytest.fixture(scope="session")
def elem_keys():
    """N_KEYS distinct keys of the hash (and array) map in random order: a list for Python, u32[] for C.

    The list's int objects are made fresh by ``tolist()``, so they sit next to
    each other in memory like the C array (``random.sample`` hands out ints
    scattered over the heap, which costs Python a cache miss per key).
    """
    ka = array.array("I", random.Random(20240601).sample(range(N_ENTRIES), N_KEYS))
    return ka.tolist(), ka, array.array("Q", ka)


@pytest.fixture(scope="session")
def percpu_map():
    """PERCPU_ARRAY of N_PERCPU u64 counters, random values on every possible CPU."""
    ncpu = len(possible_cpus())
    m = Map.create(MapType.PERCPU_ARRAY, 4, 8, N_PERCPU, name="bench_pcpu")
    rng = random.Random(7)
    m.update_batch(array.array("I", range(N_PERCPU)),
                   array.array("Q", (rng.randrange(1 << 40) for _ in range(N_PERCPU * ncpu))))
    yield m
    m.close()


# --------------------------------------------------------------------------
# 1. per-element lookup

def _c_lookup(cref, m, elem_keys):
    _, ka, _ = elem_keys
    value = Buf(8)
    fd, kp, n = m.fd, _addr(ka), len(ka)

    def c_round():
        assert check(cref.cref_lookup_elems(fd, kp, n, value.addr), "lookup") == n
    return c_round


def elem_cases(hash_case: Case, array_case: Case):
    """Parametrize a per-element test over (case, map fixture): the HASH map and the ARRAY."""
    return pytest.mark.parametrize("case, map_name", [
        pytest.param(hash_case, "hash_map", marks=hash_case.mark(), id="hash"),
        pytest.param(array_case, "array_map", marks=array_case.mark(), id="array"),
    ])


@elem_cases(LOOKUP, LOOKUP_ARRAY)
def test_lookup_elem_c(benchmark, pairs, cref, request, elem_keys, case, map_name):
    run_c(benchmark, pairs, case, _c_lookup(cref, request.getfixturevalue(map_name), elem_keys))


@elem_cases(LOOKUP, LOOKUP_ARRAY)
def test_lookup_elem_bpfload(benchmark, pairs, cref, request, elem_keys, case, map_name):
    m = request.getfixturevalue(map_name)
    keys = elem_keys[0]

    def py_round():
        for k in keys:
            m.lookup(k)

    run_py(benchmark, pairs, case, py_round, _c_lookup(cref, m, elem_keys))
    assert m.lookup(keys[0]) == keys[0].to_bytes(8, sys.byteorder)


# --------------------------------------------------------------------------
# 2. per-element update (value = key, as filled)

def _c_update(cref, m, elem_keys):
    _, ka, va = elem_keys
    fd, kp, vp, n = m.fd, _addr(ka), _addr(va), len(ka)

    def c_round():
        check(cref.cref_update_elems(fd, kp, vp, n, 0), "update")
    return c_round


@elem_cases(UPDATE, UPDATE_ARRAY)
def test_update_elem_c(benchmark, pairs, cref, request, elem_keys, case, map_name):
    run_c(benchmark, pairs, case, _c_update(cref, request.getfixturevalue(map_name), elem_keys))


@elem_cases(UPDATE, UPDATE_ARRAY)
def test_update_elem_bpfload(benchmark, pairs, cref, request, elem_keys, case, map_name):
    m = request.getfixturevalue(map_name)
    keys = elem_keys[0]

    def py_round():
        for k in keys:
            m.update(k, k)

    run_py(benchmark, pairs, case, py_round, _c_update(cref, m, elem_keys))
    assert m.lookup(keys[-1]) == keys[-1].to_bytes(8, sys.byteorder)


# --------------------------------------------------------------------------
# 3. full dump with BPF_MAP_LOOKUP_BATCH into preallocated buffers

def _c_dump(cref, m, chunk):
    kb, vb = Buf(N_ENTRIES * 4), Buf(N_ENTRIES * 8)
    fd = m.fd

    def c_round():
        assert check(cref.cref_lookup_batch(fd, kb.addr, vb.addr, 4, 8, N_ENTRIES, chunk),
                     "lookup_batch") == N_ENTRIES
    c_round.bufs = (kb, vb)
    return c_round


@DUMP.mark()
def test_dump_batch_c(benchmark, pairs, cref, hash_map):
    run_c(benchmark, pairs, DUMP, _c_dump(cref, hash_map, CHUNK))


@DUMP.mark()
def test_dump_batch_bpfload(benchmark, pairs, cref, hash_map):
    m = hash_map
    kb, vb = bytearray(N_ENTRIES * 4), bytearray(N_ENTRIES * 8)

    def py_round():
        _, _, n = m.lookup_batch(kb, vb, chunk=CHUNK)
        assert n == N_ENTRIES

    c_round = _c_dump(cref, m, CHUNK)
    run_py(benchmark, pairs, DUMP, py_round, c_round)
    py_round()
    c_round()
    ckb, cvb = c_round.bufs
    assert kb == ckb.data and vb == cvb.data  # same entries in the same order


# --------------------------------------------------------------------------
# 4. BPF_MAP_UPDATE_BATCH of the whole map from array buffers (one call)

@pytest.fixture(scope="module")
def batch_data():
    keys = array.array("I", range(N_ENTRIES))
    return keys, array.array("Q", keys)


def _c_update_batch(cref, m, batch_data):
    keys, values = batch_data
    fd, kp, vp = m.fd, _addr(keys), _addr(values)

    def c_round():
        assert check(cref.cref_update_batch(fd, kp, vp, N_ENTRIES, 0),
                     "update_batch") == N_ENTRIES
    return c_round


@UPDATE_BATCH.mark()
def test_update_batch_c(benchmark, pairs, cref, hash_map, batch_data):
    run_c(benchmark, pairs, UPDATE_BATCH, _c_update_batch(cref, hash_map, batch_data))


@UPDATE_BATCH.mark()
def test_update_batch_bpfload(benchmark, pairs, cref, hash_map, batch_data):
    m = hash_map
    keys, values = batch_data

    def py_round():
        m.update_batch(keys, values)

    run_py(benchmark, pairs, UPDATE_BATCH, py_round, _c_update_batch(cref, m, batch_data))


# --------------------------------------------------------------------------
# 5. per-CPU array: read everything and sum each entry over the CPUs

def _c_percpu_sum(cref, m):
    ncpu = m.ncpus
    kb, scratch, sums = Buf(N_PERCPU * 4), Buf(N_PERCPU * 8 * ncpu), Buf(N_PERCPU * 8)
    fd = m.fd

    def c_round():
        # sum_batch() reads the whole map with one batch call: same chunk here.
        assert check(cref.cref_percpu_sum(fd, kb.addr, scratch.addr, sums.addr, 4, ncpu,
                                          N_PERCPU, N_PERCPU), "percpu_sum") == N_PERCPU
    c_round.sums = sums
    return c_round


@PERCPU_SUM.mark()
def test_percpu_sum_c(benchmark, pairs, cref, percpu_map):
    run_c(benchmark, pairs, PERCPU_SUM, _c_percpu_sum(cref, percpu_map))


@PERCPU_SUM.mark()
def test_percpu_sum_bpfload(benchmark, pairs, cref, percpu_map):
    m = percpu_map
    kb = bytearray(N_PERCPU * 4)
    sums = bytearray(N_PERCPU * 8)
    scratch = bytearray(N_PERCPU * m.value_stride)

    def py_round():
        _, _, n = m.sum_batch(kb, sums, scratch)
        assert n == N_PERCPU

    c_round = _c_percpu_sum(cref, m)
    run_py(benchmark, pairs, PERCPU_SUM, py_round, c_round)
    py_round()
    c_round()
    assert sums == c_round.sums.data
    assert m.sum(12345) == array.array("Q", sums)[12345]


# --------------------------------------------------------------------------
# 6. a dict of the whole map against C's raw batch dump (one batch call, as
#    items() and to_dict() make): dict(m.items()), m.to_dict() (bytes keys and
#    values) and m.to_dict(int_keys=True, int_values=True), each a row of the
#    ratio table with its own interleaved C rounds

@DICT.mark()
def test_dump_dict_c(benchmark, pairs, cref, hash_map):
    run_c(benchmark, pairs, DICT, _c_dump(cref, hash_map, N_ENTRIES))


@DICT.mark()
def test_dump_dict_bpfload(benchmark, pairs, cref, hash_map):
    m = hash_map

    def py_round():
        return dict(m.items())

    run_py(benchmark, pairs, DICT, py_round, _c_dump(cref, m, N_ENTRIES))
    d = py_round()
    assert len(d) == N_ENTRIES
    assert d[(777).to_bytes(4, sys.byteorder)] == (777).to_bytes(8, sys.byteorder)


def _c_dump_contents(c_round, as_int: bool) -> dict:
    """What the C reference's last dump read, as the dict to_dict() must equal."""
    kb, vb = c_round.bufs
    if as_int:
        keys, values = array.array("I", kb.data).tolist(), array.array("Q", vb.data).tolist()
    else:
        raw_k, raw_v = bytes(kb.data), bytes(vb.data)
        keys = [raw_k[i:i + 4] for i in range(0, len(raw_k), 4)]
        values = [raw_v[i:i + 8] for i in range(0, len(raw_v), 8)]
    return dict(zip(keys, values))


@pytest.mark.parametrize("as_int", [False, True], ids=["bytes", "int"])
@DICT.mark()
def test_dump_dict_to_dict_bpfload(benchmark, pairs, cref, hash_map, as_int):
    m = hash_map
    kw = {"int_keys": True, "int_values": True} if as_int else {}

    def py_round():
        return m.to_dict(**kw)

    c_round = _c_dump(cref, m, N_ENTRIES)
    run_py(benchmark, pairs, TO_DICT_INT if as_int else TO_DICT, py_round, c_round)
    d = py_round()
    c_round()
    assert len(d) == N_ENTRIES and d == _c_dump_contents(c_round, as_int)


@DICT.mark()
def test_dump_dict_floor_cpython(benchmark, pairs, cref, hash_map):
    """Not bpfload: CPython's own dict() over an already built items() list.

    Each round gets a fresh list from ``items()`` (built untimed, so its keys
    have no cached hash yet, as in ``dict(m.items())``).  ``dict(m.items())``
    cannot cost less than C's raw dump plus this; the ratio table prints that
    floor.  ``to_dict()`` builds no list and calls no ``dict()``: it is not
    bound by it.
    """
    pair = DICT.pair(pairs)
    inter: list[float] = []
    interleave = Interleaver(_c_dump(cref, hash_map, N_ENTRIES), inter)

    def setup():
        interleave()
        return (hash_map.items(),), {}

    benchmark.pedantic(dict, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    if benchmark.disabled:
        return
    pair.floor = list(benchmark.stats.stats.data)
    pair.floor_c = inter[WARMUP:]
    benchmark.extra_info.update(ops_per_round=DICT.ops, per_op=DICT.what,
                                ns_per_op=round(pair.ns(pair.floor), 1))
