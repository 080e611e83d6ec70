"""Regression (issue 10, Medium 6): integers given as objects with ``__index__``
(NumPy integers) are packed as ints everywhere a value is packed.

``bytes(v)`` of such an object is *v zero bytes*: a per-CPU update of 8 summed
to 0, ``obj.rodata["x"] = numpy.int64(4)`` read back 0, and 2**40 tried to
allocate a terabyte.
"""
from __future__ import annotations

import sys

import pytest

import bpfload
from bpfload import MapType, possible_cpus

from conftest import bpf_object

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.kernel


def test_percpu_scalar_value():
    ncpu = len(possible_cpus())
    with bpfload.Map.create(MapType.PERCPU_ARRAY, 4, 8, 4, name="np_pcpu") as m:
        m.update(0, np.int64(8))
        assert m.sum(0) == 8 * ncpu
        m.update(1, np.int64(2**40))
        assert m.sum(1) == 2**40 * ncpu
        m.update(2, [np.uint64(i + 1) for i in range(ncpu)])
        assert m.lookup(2) == [(i + 1).to_bytes(8, sys.byteorder) for i in range(ncpu)]


def test_plain_keys_and_values():
    with bpfload.Map.create(MapType.HASH, 4, 8, 4, name="np_hash") as m:
        m.update(np.uint32(3), np.int64(-5))      # a 4-byte key from an 8-byte-buffer scalar
        assert m.lookup(3) == (-5).to_bytes(8, sys.byteorder, signed=True)
        assert m[np.int16(3)] == m.lookup(3)
        del m[np.uint8(3)]
        assert m.lookup(3) is None
        # a NumPy array is still a byte buffer, not an integer
        m.update(np.array([7], dtype=np.uint32), np.array([9], dtype=np.uint64))
        assert m.lookup(7) == (9).to_bytes(8, sys.byteorder)


def test_global_variables_before_and_after_load():
    with bpfload.BpfObject.open(bpf_object("globals")) as obj:
        obj.rodata["cfg_mult"] = np.int64(4)
        obj.rodata["cfg_add"] = np.uint64(2**40)
        obj.bss["bss_in"] = np.int32(7)
        assert obj.rodata["cfg_mult"] == 4
        assert obj.rodata["cfg_add"] == 2**40
        with pytest.raises(ValueError):
            obj.rodata["cfg_mult"] = np.int64(2**40)   # does not fit 4 bytes: no terabyte
        obj.load()
        assert obj.rodata["cfg_mult"] == 4
        assert obj.rodata["cfg_add"] == 2**40
        assert obj.bss["bss_in"] == 7
        obj.data["data_magic"] = np.uint32(0xABCD)
        assert obj.data["data_magic"] == 0xABCD
