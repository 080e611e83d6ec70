"""Hardening issue, Low 10: a bulk read into caller buffers smaller than the map
never looks complete when it is not.

Buffers for N/2 entries of a map holding N: lookup_batch(), lookup_and_delete_batch()
and sum_batch() raise bpfload.MapError (ENOSPC) whose ``count`` says how many
entries the buffers hold, on the kernel's batch commands and on the per-element
fallback.  Buffers that hold everything the map has (fewer than max_entries)
still succeed.  The reference is read element by element (get_next_key + lookup).
"""
from __future__ import annotations

import array
import errno

import pytest

import bpfload
from bpfload import Map, MapType
from conftest import sysfs_cpus

pytestmark = pytest.mark.kernel

N = 40


def reference(m) -> dict:
    out = {}
    k = m.next_key()
    while k is not None:
        v = m.lookup(k)
        if v is not None:
            out[k] = v
        k = m.next_key(k)
    return out


def entries(m, keys, values, n) -> dict:
    ks, vs = m.key_size, m.value_stride
    kb, vb = bytes(keys), bytes(values)
    return {kb[i * ks:(i + 1) * ks]: vb[i * vs:(i + 1) * vs] for i in range(n)}


def half_buffers(m, n_entries: int):
    half = n_entries // 2
    return half, bytearray(half * m.key_size), bytearray(half * m.value_stride)


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.ARRAY, MapType.DEVMAP_HASH])
def test_lookup_batch_into_half_buffers_raises_with_the_count(mtype):
    # HASH and ARRAY take BPF_MAP_LOOKUP_BATCH; DEVMAP_HASH has no batch command
    # and takes the per-element fallback.  ARRAY has max_entries entries always.
    max_entries = N if mtype == MapType.ARRAY else 64
    vsize = 4
    with Map.create(mtype, 4, vsize, max_entries, name="halfbuf") as m:
        for k in range(N):
            m[k] = 1 if mtype == MapType.DEVMAP_HASH else k * 3 + 1   # ifindex 1 (lo)
        ref = reference(m)
        assert len(ref) == N
        half, kb, vb = half_buffers(m, N)
        with pytest.raises(bpfload.MapError) as ei:
            m.lookup_batch(kb, vb)
        e = ei.value
        assert e.errno == errno.ENOSPC and e.command == "BPF_MAP_LOOKUP_BATCH"
        assert 0 < e.count <= half and "has more" in str(e) and "halfbuf" in str(e)
        got = entries(m, kb, vb, e.count)
        assert len(got) == e.count
        for k, v in got.items():      # what the buffers hold is really in the map
            assert ref[k] == v
        assert len(reference(m)) == N  # a lookup deletes nothing


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.DEVMAP_HASH])
def test_buffers_that_hold_every_entry_succeed(mtype):
    # Smaller than max_entries (64) but as large as the content (N): complete, no error.
    with Map.create(mtype, 4, 4, 64, name="exact") as m:
        for k in range(N):
            m[k] = 1
        kb, vb = bytearray(N * 4), bytearray(N * 4)
        keys, values, n = m.lookup_batch(kb, vb)
        assert n == N and len(entries(m, kb, vb, n)) == N
        # one entry fewer than the content: not complete
        with pytest.raises(bpfload.MapError) as ei:
            m.lookup_batch(bytearray((N - 1) * 4), bytearray((N - 1) * 4))
        assert ei.value.errno == errno.ENOSPC and ei.value.count <= N - 1


def test_buffers_too_small_for_one_entry_raise_when_the_map_is_not_empty():
    with Map.create(MapType.HASH, 8, 4, 16, name="tiny") as m:
        assert m.lookup_batch(bytearray(4), bytearray(4))[2] == 0    # empty map: complete
        m[1] = 1
        with pytest.raises(bpfload.MapError) as ei:
            m.lookup_batch(bytearray(4), bytearray(4))                # room for no 8-byte key
        assert ei.value.count == 0


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.DEVMAP_HASH])
def test_lookup_and_delete_batch_into_half_buffers(mtype):
    with Map.create(mtype, 4, 4, 64, name="halfdrain") as m:
        for k in range(N):
            m[k] = 1
        before = set(reference(m))
        half, kb, vb = half_buffers(m, N)
        with pytest.raises(bpfload.MapError) as ei:
            m.lookup_and_delete_batch(kb, vb)
        e = ei.value
        assert e.errno == errno.ENOSPC and e.command == "BPF_MAP_LOOKUP_AND_DELETE_BATCH"
        assert 0 < e.count <= half and "deleted from the map" in str(e)
        taken = set(entries(m, kb, vb, e.count))
        left = set(reference(m))
        # the entries in the buffers left the map, the rest stayed: nothing lost
        assert len(taken) == e.count and not taken & left and taken | left == before
        # buffers for what is left drain the rest completely
        _, _, n = m.lookup_and_delete_batch(bytearray(64 * 4), bytearray(64 * 4))
        assert n == len(left) and reference(m) == {}


def test_sum_batch_into_half_buffers_raises():
    ncpu = len(sysfs_cpus("possible"))
    with Map.create(MapType.PERCPU_HASH, 4, 8, 64, name="halfsum") as m:
        for k in range(N):
            m[k] = [k] * ncpu
        half = N // 2
        keys, scratch = bytearray(half * 4), bytearray(half * m.value_stride)
        sums = array.array("Q", [0] * half)
        with pytest.raises(bpfload.MapError) as ei:
            m.sum_batch(keys, sums, scratch)
        assert ei.value.errno == errno.ENOSPC and 0 < ei.value.count <= half
        # full-size buffers: every key, summed over the possible CPUs
        k, s, n = m.sum_batch(bytearray(64 * 4), array.array("Q", [0] * 64),
                              bytearray(64 * m.value_stride))
        assert n == N
        got = dict(zip(array.array("I", bytes(k[:n * 4])), s[:n]))
        assert got == {key: key * ncpu for key in range(N)}
