"""Per-CPU maps: one value per possible CPU, sums across CPUs, bulk layout."""
from __future__ import annotations

import array
import struct
import sys

import pytest

import bpfload
from bpfload import Map, MapType
from bpfload._core import syscall as _sys
from conftest import sysfs_cpus

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder
CPUS = sysfs_cpus("possible")
NCPU = len(CPUS)
PERCPU_TYPES = [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH]


def test_possible_cpus_matches_sysfs():
    assert bpfload.possible_cpus() == CPUS
    assert CPUS == sorted(set(CPUS)) and NCPU >= 1
    assert bpfload.possible_cpus() is not bpfload.possible_cpus()  # a copy each time


@pytest.mark.parametrize("text,cpus", [("0", [0]), ("0-3", [0, 1, 2, 3]),
                                       ("0-1,4,6-7\n", [0, 1, 4, 6, 7]), ("", [])])
def test_parse_cpu_list(text, cpus):
    assert _sys.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("mtype", PERCPU_TYPES, ids=lambda t: t.name)
def test_one_value_per_possible_cpu(mtype):
    with Map.create(mtype, 4, 8, 4, name="pc") as m:
        assert m.percpu and m.ncpus == NCPU
        assert m.value_stride == 8 * NCPU
        m[1] = [1000 + c for c in range(NCPU)]
        got = m[1]
        assert isinstance(got, list) and len(got) == NCPU
        assert got == [(1000 + c).to_bytes(8, NATIVE) for c in range(NCPU)]
        m[1] = 7  # one value for every CPU
        assert m[1] == [(7).to_bytes(8, NATIVE)] * NCPU
        m[2] = [b"\xff" * 8] + [bytes(8)] * (NCPU - 1)
        assert m[2][0] == b"\xff" * 8 and m[2][1:] == [bytes(8)] * (NCPU - 1)


def test_percpu_array_slots_start_zeroed_and_cannot_be_deleted():
    with Map.create(MapType.PERCPU_ARRAY, 4, 8, 3, name="pcarr") as m:
        assert [m[i] for i in range(3)] == [[bytes(8)] * NCPU] * 3
        assert m.lookup(3) is None
        with pytest.raises(bpfload.MapError):
            del m[0]


def test_values_smaller_than_8_bytes_are_padded_per_cpu():
    # The kernel lays per-CPU values out in 8-byte slots: a 4-byte value
    # occupies round_up(4, 8) per CPU.  Read the raw layout with a batch.
    with Map.create(MapType.PERCPU_HASH, 4, 4, 2, name="pad") as m:
        assert m.value_stride == 8 * NCPU
        m[5] = [0x11111111 * (c + 1) & 0xFFFFFFFF for c in range(NCPU)]
        assert m[5] == [(0x11111111 * (c + 1) & 0xFFFFFFFF).to_bytes(4, NATIVE)
                        for c in range(NCPU)]
        keys, values, n = m.lookup_batch()
        assert n == 1 and bytes(keys) == (5).to_bytes(4, NATIVE)
        assert len(values) == 8 * NCPU
        for c in range(NCPU):
            slot = bytes(values[c * 8:(c + 1) * 8])
            assert slot[:4] == (0x11111111 * (c + 1) & 0xFFFFFFFF).to_bytes(4, NATIVE)


def test_odd_sized_values():
    with Map.create(MapType.PERCPU_ARRAY, 4, 12, 2, name="odd") as m:
        vals = [bytes([c + 1]) * 12 for c in range(NCPU)]
        m[1] = vals
        assert m[1] == vals
        assert m.value_stride == 16 * NCPU
        items = dict(m.items())
        assert items[(1).to_bytes(4, NATIVE)] == vals
        assert items[(0).to_bytes(4, NATIVE)] == [bytes(12)] * NCPU
        with pytest.raises(ValueError, match="odd"):
            m.sum(1)  # 12 bytes is neither a counter nor u64 fields


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_sum_of_counters(size):
    with Map.create(MapType.PERCPU_HASH, 4, size, 4, name="counters") as m:
        top = 2**(size * 8) - 1
        m[1] = [top - c for c in range(NCPU)]
        # summed in a u64: no wrap at the value size, modulo 2**64 (as sum_batch's u64 out)
        assert m.sum(1) == sum(top - c for c in range(NCPU)) % 2**64
        m[3] = [c + 1 for c in range(NCPU)]
        assert m.sum(3) == NCPU * (NCPU + 1) // 2
        assert m.sum(2) is None  # absent


def test_sum_of_u64_fields():
    with Map.create(MapType.PERCPU_ARRAY, 4, 16, 1, name="pktbytes") as m:
        m[0] = [struct.pack("=QQ", c + 1, 100 * (c + 1)) for c in range(NCPU)]
        n = NCPU * (NCPU + 1) // 2
        assert m.sum(0) == (n, 100 * n)


def test_sum_takes_one_syscall():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 2, name="one") as m:
        m[1] = [3] * NCPU
        calls = _sys.syscall_count()
        assert m.sum(1) == 3 * NCPU
        assert _sys.syscall_count() == calls + 1


def test_sum_on_a_plain_map_is_the_value():
    with Map.create(MapType.HASH, 4, 4, 1, name="plain") as m:
        m[1] = 41
        assert m.sum(1) == 41


def test_sum_batch():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 16, name="sums") as m:
        expect = {}
        for k in range(10):
            m[k] = [k * 10 + c for c in range(NCPU)]
            expect[k] = sum(k * 10 + c for c in range(NCPU))
        keys, sums, n = m.sum_batch()
        assert n == 10
        got = dict(zip(array.array("I", bytes(keys[:n * 4])),
                       array.array("Q", bytes(sums[:n * 8]))))
        assert got == expect
        assert got == {int.from_bytes(k, NATIVE): m.sum(k) for k in m.keys()}


def test_sum_batch_into_preallocated_buffers_makes_no_allocation_per_poll():
    with Map.create(MapType.PERCPU_ARRAY, 4, 8, 8, name="poll") as m:
        keys = bytearray(8 * 4)
        sums = array.array("Q", [0] * 8)
        scratch = bytearray(8 * m.value_stride)
        for rnd in range(3):
            m[rnd] = [rnd + 1] * NCPU
            k, s, n = m.sum_batch(keys, sums, scratch)
            assert k is keys and s is sums and n == 8
            assert list(sums) == [(i + 1) * NCPU if i <= rnd else 0 for i in range(8)]
            assert list(array.array("I", bytes(keys))) == list(range(8))
        with pytest.raises(ValueError, match="sums_out"):
            m.sum_batch(keys, bytearray(8), scratch)


def test_sum_batch_of_u64_fields():
    with Map.create(MapType.PERCPU_HASH, 4, 16, 4, name="fields") as m:
        m[1] = [struct.pack("=QQ", 1, 2)] * NCPU
        m[2] = [struct.pack("=QQ", 10, 20)] * NCPU
        keys, sums, n = m.sum_batch()
        assert n == 2
        flat = array.array("Q", bytes(sums))
        got = {int.from_bytes(bytes(keys[i * 4:i * 4 + 4]), NATIVE): tuple(flat[2 * i:2 * i + 2])
               for i in range(n)}
        assert got == {1: (NCPU, 2 * NCPU), 2: (10 * NCPU, 20 * NCPU)}


def test_percpu_batch_round_trip():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 8, name="pcbatch") as m:
        stride = m.value_stride
        keys = array.array("I", [3, 4, 5])
        values = array.array("Q", [k * 100 + c for k in (3, 4, 5) for c in range(NCPU)])
        assert len(values) * 8 == 3 * stride
        assert m.update_batch(keys, values) == 3
        assert m[4] == [(400 + c).to_bytes(8, NATIVE) for c in range(NCPU)]
        k, v, n = m.lookup_batch()
        got = {int.from_bytes(bytes(k[i * 4:i * 4 + 4]), NATIVE):
               list(array.array("Q", bytes(v[i * stride:(i + 1) * stride]))) for i in range(n)}
        assert got == {kk: [kk * 100 + c for c in range(NCPU)] for kk in (3, 4, 5)}
        k, v, n = m.lookup_and_delete_batch()
        assert n == 3 and m.keys() == []


def test_lookup_and_delete_on_percpu_hash():
    with Map.create(MapType.PERCPU_HASH, 4, 8, 2, name="lad") as m:
        m[1] = [c + 5 for c in range(NCPU)]
        assert m.lookup_and_delete(1) == [(c + 5).to_bytes(8, NATIVE) for c in range(NCPU)]
        assert m.lookup(1) is None
