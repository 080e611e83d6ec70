"""Arena maps (BPF_MAP_TYPE_ARENA) and 64-bit map attributes (``__ulong``).

bpf/arena.bpf.c defines a 4-page arena at user address 1 << 44 given with
``__ulong(map_extra, ...)`` (BTF: an ENUM64), and two syscall programs run
with BPF_PROG_TEST_RUN: ``arena_sum`` sums four u64 user space wrote into
the arena and stores the sum after them; ``arena_alloc`` allocates a page
with the bpf_arena_alloc_pages kfunc and writes 0xc0ffee, 7 into it.  This
kernel (6.18, JIT on) runs both: user space and programs share the pages.
"""
from __future__ import annotations

import array
import errno

import pytest

import bpfload
from bpfload import MapType

from conftest import bpf_object

pytestmark = pytest.mark.kernel

OBJ = bpf_object("arena")
USER_ADDR = 1 << 44
PAGES = 4


def arena_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("anon_inode:bpf-map" in line for line in f)


def test_ulong_map_extra_parses_from_enum64():
    spec = bpfload.BpfObject.open(OBJ).spec
    ms = spec.maps["arena"]
    assert ms.type == MapType.ARENA and ms.map_extra == USER_ADDR      # > 32 bits: ENUM64
    assert ms.max_entries == PAGES and ms.flags == bpfload.MapFlags.MMAPABLE
    assert (ms.key_size, ms.value_size) == (0, 0)


def test_programs_and_user_space_share_the_arena():
    with bpfload.load(OBJ) as obj:
        arena = obj.maps["arena"]
        assert arena.info().map_extra == USER_ADDR
        mapping = arena.mmap()                   # mapped at load, at the user address
        assert mapping.address == USER_ADDR and mapping.length == PAGES * 4096
        words = memoryview(mapping).cast("Q")
        try:
            words[0:4] = array.array("Q", [1, 2, 3, 40])   # faults page 0 in
            obj.bss["user_base"] = mapping.address
            assert obj.programs["arena_sum"].test_run(ctx=bytes(8)).retval == 0
            assert obj.bss["sum"] == 46 and words[4] == 46    # the program wrote the arena
            assert obj.programs["arena_alloc"].test_run(ctx=bytes(8)).retval == 0
            addr = obj.bss["alloc_addr"]
            assert USER_ADDR < addr < USER_ADDR + PAGES * 4096 and addr % 4096 == 0
            slot = (addr - USER_ADDR) // 8
            assert (words[slot], words[slot + 1]) == (0xc0ffee, 7)
        finally:
            words.release()


def test_arena_without_an_address_is_placed_by_the_kernel():
    """map_extra 0: the loader maps the arena before loading programs, as the verifier
    wants its user address ("arena's user address must be set via map_extra or mmap()")."""
    obj = bpfload.BpfObject.open(OBJ)
    obj.maps["arena"].map_extra = 0
    with obj.load():
        mapping = obj.maps["arena"].mmap()
        assert mapping.address not in (0, USER_ADDR)
        mapping.write(0, (5).to_bytes(8, "little") * 4)
        obj.bss["user_base"] = mapping.address
        assert obj.programs["arena_sum"].test_run(ctx=bytes(8)).retval == 0
        assert obj.bss["sum"] == 20 and mapping.read(32, 8) == (20).to_bytes(8, "little")


def test_second_arena_at_the_same_address_is_refused_and_rolled_back():
    base = arena_mappings()
    with bpfload.load(OBJ):
        again = bpfload.BpfObject.open(OBJ)
        with pytest.raises(bpfload.SyscallError) as ei:
            again.load()                         # 1 << 44 is taken: never replaced
        assert ei.value.command == "mmap" and ei.value.errno == errno.EEXIST
        again.close()
        assert arena_mappings() == base + 2      # the first object's .bss and arena only
    assert arena_mappings() == base


def test_what_the_kernel_refuses_at_create():
    """The kernel's rules for arenas: BPF_F_MMAPABLE, no key/value, a page-aligned address."""
    with pytest.raises(bpfload.MapError) as ei:
        bpfload.Map.create(MapType.ARENA, 0, 0, PAGES, name="no_mmap")
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(bpfload.MapError) as ei:
        bpfload.Map.create(MapType.ARENA, 0, 0, PAGES, flags=bpfload.MapFlags.MMAPABLE,
                           map_extra=USER_ADDR + 1, name="unaligned")
    assert ei.value.errno == errno.EINVAL
    with bpfload.Map.create(MapType.ARENA, 0, 0, PAGES, flags=bpfload.MapFlags.MMAPABLE,
                            name="plain") as m:
        mapping = m.mmap()
        mapping.write(4096, b"hello")
        assert mapping.read(4096, 5) == b"hello"
    assert mapping.closed


# -- no kernel: the __ulong forms libbpf accepts, and the ones it refuses ------

def _map_def(extra_type):
    """A BTF map definition ``struct { __uint(type, ARENA); <map_extra> }`` built by hand."""
    from bpfload.btf import Btf
    from bpfload.btf.format import Array, Int, Member, Ptr, Struct
    b = Btf()
    i32 = b.add(Int(name="int", size=4, bits=32))
    arr = b.add(Array(type=i32, index_type=i32, nelems=int(MapType.ARENA)))
    ptr = b.add(Ptr(type=arr))
    extra = b.add(extra_type(b, i32))
    sid = b.add(Struct(name="", size=16, members=[Member("type", ptr, 0),
                                                   Member("map_extra", extra, 64)]))
    return b, sid


def test_ulong_forms():
    from bpfload.btf.format import Array, Enum, Enum64, EnumValue, Int, Ptr, parse_map_def
    as_enum = _map_def(lambda b, i: Enum(name="", values=[EnumValue("v", 0x1000)]))
    assert parse_map_def(*as_enum, "m").map_extra == 0x1000
    as_enum64 = _map_def(lambda b, i: Enum64(name="", values=[EnumValue("v", 1 << 44)]))
    assert parse_map_def(*as_enum64, "m").map_extra == 1 << 44
    as_uint = _map_def(lambda b, i: Ptr(type=b.add(Array(type=i, index_type=i, nelems=7))))
    assert parse_map_def(*as_uint, "m").map_extra == 7
    two = _map_def(lambda b, i: Enum(name="", values=[EnumValue("a", 1), EnumValue("b", 2)]))
    with pytest.raises(bpfload.BtfError, match="'map_extra': an __ulong enum has one enumerator"):
        parse_map_def(*two, "m")
    plain_int = _map_def(lambda b, i: Int(name="long", size=8, bits=64))
    with pytest.raises(bpfload.BtfError, match="expected PTR, ENUM or ENUM64"):
        parse_map_def(*plain_int, "m")
