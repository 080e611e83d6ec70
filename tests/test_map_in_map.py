"""Map-in-map checks made before the kernel sees the maps (bpf_map_meta_equal in words),
and the order maps are created in."""
from __future__ import annotations

import dataclasses
import errno

import pytest

import bpfload
from bpfload import MapFlags, MapType
from bpfload.loader import creation_order, validate_map_in_map
from conftest import bpf_object


def spec():
    return bpfload.BpfObject.open(bpf_object("maps_custom")).spec.copy()


def test_committed_object_is_valid_and_ordered():
    s = spec()
    validate_map_in_map(s)
    order = creation_order(s)
    outer_first = min(order.index("aom_outer"), order.index("hom_outer"))
    assert all(order.index(n) < outer_first for n in s.maps if not s.maps[n].is_outer)


@pytest.mark.parametrize("field,value,words", [
    ("value_size", 16, "value_size 16 != template 8"),
    ("key_size", 8, "key_size 8 != template 4"),
    ("type", MapType.HASH, "type 1 != template 2"),
    ("flags", int(MapFlags.NO_PREALLOC), "flags 1 != template 0"),
    ("max_entries", 8, "max_entries 8 != template 4"),
])
def test_inner_map_must_match_its_template(field, value, words):
    s = spec()
    setattr(s.maps["aom_inner1"], field, value)
    with pytest.raises(bpfload.ElfError, match=f"aom_outer.*aom_inner1.*{words}"):
        validate_map_in_map(s)


def test_array_max_entries_may_differ_with_inner_map_flag():
    s = spec()
    s.maps["aom_outer"].inner = dataclasses.replace(s.maps["aom_outer"].inner,
                                                    flags=int(MapFlags.INNER_MAP))
    for n in ("aom_inner0", "aom_inner1"):
        s.maps[n].flags = int(MapFlags.INNER_MAP)
    s.maps["aom_inner1"].max_entries = 64
    validate_map_in_map(s)          # accepted before any syscall ...
    s.maps["aom_inner1"].flags = 0
    with pytest.raises(bpfload.ElfError, match="aom_inner1"):
        validate_map_in_map(s)      # ... and refused without the flag


@pytest.mark.kernel
@pytest.mark.parametrize("flag", [True, False])
def test_the_kernel_agrees_on_the_inner_map_flag(flag):
    """What validate_map_in_map accepts is what the kernel accepts: with BPF_F_INNER_MAP an
    array of another max_entries fits the slot; without it the kernel refuses it."""
    f = int(MapFlags.INNER_MAP) if flag else 0
    with bpfload.Map.create(MapType.ARRAY, 4, 8, 4, flags=f, name="tmpl") as tmpl, \
            bpfload.Map.create(MapType.ARRAY_OF_MAPS, 4, 4, 2, inner_map=tmpl, name="outer") as outer, \
            bpfload.Map.create(MapType.ARRAY, 4, 8, 64, flags=f, name="big") as big:
        if flag:
            outer[0] = big
            assert outer[0] == big.id
        else:
            with pytest.raises(bpfload.MapError) as ei:
                outer[0] = big
            assert ei.value.errno == errno.EINVAL
            assert outer.lookup(0) is None


def test_inner_map_may_not_be_map_in_map():
    s = spec()
    s.maps["aom_outer"].slots[2] = "hom_outer"
    with pytest.raises(bpfload.ElfError, match="itself a map-in-map"):
        validate_map_in_map(s)


def test_prog_array_cannot_be_an_inner_map():
    s = spec()
    s.maps["aom_outer"].inner = dataclasses.replace(s.maps["aom_outer"].inner,
                                                    type=MapType.PROG_ARRAY)
    with pytest.raises(bpfload.ElfError, match="PROG_ARRAY cannot be an inner map"):
        validate_map_in_map(s)


def test_missing_template():
    s = spec()
    s.maps["hom_outer"].inner = None
    with pytest.raises(bpfload.ElfError, match="failed to find map-in-map hom_outer inner template"):
        validate_map_in_map(s)


def test_prepopulated_hash_of_maps_needs_4_byte_keys():
    s = spec()
    s.maps["hom_outer"].key_size = 8
    with pytest.raises(bpfload.ElfError, match="4-byte keys"):
        validate_map_in_map(s)


def test_slot_outside_array():
    s = spec()
    s.maps["aom_outer"].slots[9] = "aom_inner0"
    with pytest.raises(bpfload.ElfError, match="slot 9 is outside max_entries 4"):
        validate_map_in_map(s)


@pytest.mark.kernel
def test_invalid_spec_fails_before_any_syscall():
    from bpfload._core import syscall as core
    obj = bpfload.BpfObject.open(bpf_object("maps_custom"))
    obj.maps["aom_inner1"].value_size = 16
    before = core.syscall_count()
    with pytest.raises(bpfload.ElfError):
        obj.load()
    assert core.syscall_count() == before


BPF_MAP_UPDATE_ELEM, BPF_MAP_UPDATE_BATCH = 2, 26


@pytest.mark.kernel
@pytest.mark.parametrize("name", ["mim_btf", "maps_custom", "demo"])
def test_outer_map_slots_filled_with_one_batch_update(name):
    """Prepopulation is one BPF_MAP_UPDATE_BATCH per outer map with slots (one RCU
    grace period), never element by element: counted per command during the load."""
    from bpfload._core import syscall as core
    outer = [ms for ms in bpfload.BpfObject.open(bpf_object(name)).spec.maps.values()
             if ms.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)]
    with_slots = [ms for ms in outer if ms.slots]
    assert with_slots, f"{name} has no prepopulated outer map"
    b0, e0 = core.syscall_count(BPF_MAP_UPDATE_BATCH), core.syscall_count(BPF_MAP_UPDATE_ELEM)
    with bpfload.load(bpf_object(name)) as obj:
        batches = core.syscall_count(BPF_MAP_UPDATE_BATCH) - b0
        elems = core.syscall_count(BPF_MAP_UPDATE_ELEM) - e0
        # the slots are really there, as inner map ids
        for ms in with_slots:
            m = obj.maps[ms.name]
            for key, inner in ms.slots.items():
                assert m.lookup(key) == obj.maps[inner].id
    assert batches == len(with_slots)
    # element updates are for what is not an outer map: data images, program arrays
    data = sum(1 for ms in obj.spec.maps.values() if ms.form == "data" and ms.data
               and any(ms.data))
    prog_slots = sum(len(ms.slots) for ms in obj.spec.maps.values()
                     if ms.type == MapType.PROG_ARRAY)
    assert elems == data + prog_slots


@pytest.mark.kernel
def test_a_failed_batch_update_rolls_back():
    """The batch is the only way slots are written: failing it fails the load, cleanly."""
    from bpfload._core import syscall as core
    import errno
    import os
    fds = sorted(os.listdir("/proc/self/fd"))
    core.inject_fault(1, errno.EIO, command=BPF_MAP_UPDATE_BATCH)
    try:
        with pytest.raises(bpfload.MapError, match="BPF_MAP_UPDATE_BATCH"):
            bpfload.load(bpf_object("maps_custom"))
        assert not core.fault_pending()
    finally:
        core.inject_fault(0, 0)
    assert sorted(os.listdir("/proc/self/fd")) == fds
