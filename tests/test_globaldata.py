"""Global data through the mapping: ``obj.bss`` / ``obj.data`` / ``obj.rodata`` with no syscall.

bpf/globaldata.bpf.c's ``bump`` (xdp) adds ``.data`` ``step`` to ``.bss``
``counter``, counts ``hist[in & 7]``, fills the struct ``last`` and computes
``last_out = in * cfg.mul + cfg.bias + table[in & 3]`` (``cfg`` in ``.data``,
``table`` in ``.rodata``); ``runs_static`` lives alone in ``.data.statics``.
Every test runs the program with BPF_PROG_TEST_RUN and reads what it wrote
through the mapping, and counts bpf(2) lookups to show the reads make none.
"""
from __future__ import annotations

import errno
import json
import shutil
import struct
import subprocess

import pytest

import bpfload
from bpfload import MapFlags
from bpfload._core import syscall as _sys

from conftest import bpf_object, unavailable

pytestmark = pytest.mark.kernel

OBJ = bpf_object("globaldata")
LOOKUP = 1        # BPF_MAP_LOOKUP_ELEM
MMAPABLE = int(MapFlags.MMAPABLE)


def pkt(x: int) -> bytes:
    return struct.pack("<I", x) + bytes(60)


def bpf_map_mappings() -> int:
    """Shared mappings of BPF maps in this process, as the kernel lists them."""
    with open("/proc/self/maps") as f:
        return sum("anon_inode:bpf-map" in line for line in f)


def test_flags_follow_libbpfs_rule():
    """MMAPABLE exactly where a section holds a non-static variable (the libbpf
    comparison test checks the same flags against libbpf itself)."""
    with bpfload.load(OBJ) as obj:
        flags = {n: m.info().flags for n, m in obj.maps.items()}
    assert flags[".bss"] & MMAPABLE and flags[".data"] & MMAPABLE and flags[".rodata"] & MMAPABLE
    assert not flags[".data.statics"] & MMAPABLE          # only a static variable
    assert not flags[".rodata.str1.1"] & MMAPABLE         # a string literal, no BTF variable
    assert flags[".rodata"] & MapFlags.RDONLY_PROG


def test_reader_sees_every_increment_without_a_syscall():
    with bpfload.load(OBJ) as obj:
        prog = obj.programs["bump"]
        view = obj.bss.view("counter")
        assert view.format == "Q" and len(view) == 1
        for i in range(1, 101):
            prog.test_run(pkt(3))
            before = _sys.syscall_count(LOOKUP)
            got, seen = obj.bss["counter"], view[0]
            assert _sys.syscall_count(LOOKUP) == before        # read from the mapping
            assert (got, seen) == (i, i)
        prog.test_run(pkt(3), repeat=1000)
        assert obj.bss["counter"] == view[0] == 1100
        # the mapping is the map: the syscall path reads the same bytes
        assert struct.unpack_from("=Q", obj.maps[".bss"].lookup(0), 0)[0] == 1100
        assert obj.bss["hist"] == [0, 0, 0, 1100, 0, 0, 0, 0]


def test_writing_data_changes_what_the_program_computes():
    with bpfload.load(OBJ) as obj:
        prog = obj.programs["bump"]
        prog.test_run(pkt(5))
        assert obj.bss["counter"] == 1 and obj.bss["last_out"] == 5 * 2 - 1 + 20
        obj.data["step"] = 7
        obj.data["cfg"] = {"mul": 3, "bias": -100}         # a struct, encoded through BTF
        assert struct.unpack("=IIi", obj.maps[".data"].lookup(0)) == (7, 3, -100)
        prog.test_run(pkt(6))
        assert obj.bss["counter"] == 8                      # 1 + 7
        assert obj.bss["last_out"] == 6 * 3 - 100 + 30
        assert obj.data["cfg"] == {"mul": 3, "bias": -100}
        # an int view writes in place, seen by the next run
        obj.data.view("step")[0] = 1000
        prog.test_run(pkt(6))
        assert obj.bss["counter"] == 1008
        obj.data["step"] = -1                               # two's complement into a __u32
        assert obj.data["step"] == 0xFFFFFFFF
        with pytest.raises(ValueError):
            obj.data["step"] = 1 << 40


def test_structs_and_arrays_decode_through_btf():
    with bpfload.load(OBJ) as obj:
        obj.programs["bump"].test_run(pkt(0x10009))
        assert obj.bss["last"] == {"a": 0x10009, "b": -9, "tag": b"pair!\0"}
        assert obj.bss["hist"][1] == 1 and sum(obj.bss["hist"]) == 1
        assert obj.rodata["table"] == [10, 20, 30, 40]
        hist = obj.bss.view("hist")
        assert (hist.format, len(hist)) == ("Q", 8) and hist[1] == 1
        assert obj.bss.view("last").format == "B" and obj.bss.view("last").nbytes == 12
        with pytest.raises(bpfload.TypedValueError, match="out of range"):
            obj.data["cfg"] = {"mul": -1}


def test_numpy_view_polls_the_live_array():
    np = pytest.importorskip("numpy")
    with bpfload.load(OBJ) as obj:
        hist = obj.bss.numpy("hist")
        counter = obj.bss.numpy("counter")
        assert hist.dtype == np.uint64 and hist.shape == (8,)
        for x in (1, 1, 2, 7, 9):
            obj.programs["bump"].test_run(pkt(x))
        assert hist.tolist() == [0, 3, 1, 0, 0, 0, 0, 1]    # 9 & 7 == 1
        assert counter[0] == 5
        hist[:] = 0                                          # writes the variable
        assert obj.bss["hist"] == [0] * 8


def test_rodata_is_set_before_load_and_refused_after():
    obj = bpfload.BpfObject.open(OBJ)
    obj.rodata["table"] = [1, 2, 3, 4]
    with obj.load():
        obj.programs["bump"].test_run(pkt(2))
        assert obj.bss["last_out"] == 2 * 2 - 1 + 3
        with pytest.raises(bpfload.ReadOnlyError, match=r"'table' is in \.rodata.*before load") as ei:
            obj.rodata["table"] = [9, 9, 9, 9]
        assert isinstance(ei.value, PermissionError)
        assert obj.rodata["table"] == [1, 2, 3, 4]
        view = obj.rodata.view("table")
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 9
        m = obj.maps[".rodata"]
        assert not m.mmap().writable
        with pytest.raises(bpfload.ReadOnlyError):
            m.mmap(writable=True)
        # the kernel itself refuses a writable mapping of the frozen map
        with bpfload.Map.from_id(m.id) as again:
            with pytest.raises(bpfload.PermissionDeniedError) as ei:
                again.mmap(writable=True)
            assert ei.value.errno == errno.EPERM and ei.value.command == "mmap"


def test_static_only_section_uses_syscalls():
    with bpfload.load(OBJ) as obj:
        obj.programs["bump"].test_run(pkt(1))
        before = _sys.syscall_count(LOOKUP)
        assert obj.data["runs_static"] == 6                  # 5 + one run
        assert _sys.syscall_count(LOOKUP) == before + 1
        obj.data["runs_static"] = 40
        obj.programs["bump"].test_run(pkt(1))
        assert obj.data["runs_static"] == 41
        with pytest.raises(bpfload.BpfError, match="not mmapable"):
            obj.data.view("runs_static")
        with pytest.raises(bpfload.MapTypeError):
            obj.maps[".data.statics"].mmap()


def test_close_unmaps_and_releases_the_map():
    base = bpf_map_mappings()
    obj = bpfload.load(OBJ)
    assert bpf_map_mappings() == base + 3                    # .data, .rodata, .bss
    view = obj.bss.view("counter")
    obj.programs["bump"].test_run(pkt(1))
    obj.close()
    assert bpf_map_mappings() == base
    with pytest.raises(ValueError):                          # released, never dangling
        view[0]


def test_a_view_held_past_close_reads_zeros_and_the_map_is_released():
    pytest.importorskip("numpy")
    base = bpf_map_mappings()
    with bpfload.load(OBJ) as obj:
        obj.programs["bump"].test_run(pkt(1))
        arr = obj.bss.numpy("counter")                       # NumPy keeps the buffer exported
        assert arr[0] == 1
    # detached: the process no longer maps (holds) the map, and the array is valid memory
    assert bpf_map_mappings() == base
    assert arr[0] == 0
    arr[0] = 5                                               # private zero page: harmless
    del arr


def test_mmap_failure_at_load_rolls_back():
    base = bpf_map_mappings()
    obj = bpfload.BpfObject.open(OBJ)
    _sys.inject_fault(2, errno.ENOMEM, command="mmap")         # the second data map's mmap
    try:
        with pytest.raises(bpfload.SyscallError) as ei:
            obj.load()
    finally:
        _sys.inject_fault(0, 0)
    assert ei.value.command == "mmap" and ei.value.errno == errno.ENOMEM
    assert bpf_map_mappings() == base            # the first mapping went with its map
    obj.close()


def test_kconfig_is_mapped_read_only():
    with bpfload.load(bpf_object("externs")) as obj:
        kc = obj.maps[".kconfig"]
        assert kc.info().flags & MMAPABLE
        mapping = kc.mmap()
        assert not mapping.writable
        assert mapping.read(0, kc.value_size) == kc.lookup(0)


def test_map_mmap_of_a_user_array():
    with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 12, 3, flags=MMAPABLE, name="mm") as m:
        mapping = m.mmap()
        assert mapping is m.mmap() and mapping.length == 4096 and mapping.writable
        mapping.write(16, b"x" * 12)                        # values are 8-byte aligned
        assert m.lookup(1) == b"x" * 12
        m.update(2, b"y" * 12)
        assert mapping.read(32, 12) == b"y" * 12
        with pytest.raises(IndexError):
            mapping.read(4090, 8)
    assert mapping.closed
    with pytest.raises(bpfload.MapClosedError):
        mapping.read(0, 1)
    with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 8, 1, name="plain") as m:
        with pytest.raises(bpfload.MapTypeError, match="BPF_F_MMAPABLE"):
            m.mmap()


# --------------------------------------------------------------------------
# .rodata bound to every program (BPF_PROG_BIND_MAP), bpf_metadata_* for bpftool

def test_rodata_is_bound_and_bpftool_shows_the_metadata():
    with bpfload.load(bpf_object("metadata")) as obj:
        prog = obj.programs["meta_pass"]
        rodata = obj.maps[".rodata"]
        # meta_pass never reads .rodata: the map is held only because the loader bound it
        assert prog.info().map_ids == (rodata.id,)
        assert obj.rodata["bpf_metadata_version"] == b"1.2.3\0"
        bpftool = shutil.which("bpftool")
        if bpftool is None:
            unavailable("bpftool is not installed (Debian: bpftool)")
        r = subprocess.run([bpftool, "-j", "prog", "show", "id", str(prog.id)],
                           capture_output=True, text=True, timeout=60, check=True)
        shown = json.loads(r.stdout)
        assert shown["map_ids"] == [rodata.id]
        assert shown["metadata"] == {"version": "1.2.3", "build": 42}
        text = subprocess.run([bpftool, "prog", "show", "id", str(prog.id)], capture_output=True,
                              text=True, timeout=60, check=True).stdout
        assert 'version = "1.2.3"' in text and "build = 42" in text


PROG_BIND_MAP = 35


def test_a_kernel_without_prog_bind_map_is_skipped_other_refusals_fail_the_load():
    """EINVAL on the first BPF_PROG_BIND_MAP is a kernel before 5.10 (no such command):
    the load goes on without binding and never asks again.  Any other errno fails the
    load, which closes everything it made (the fd check of every test)."""
    obj = bpfload.BpfObject.open(bpf_object("metadata"))
    _sys.inject_fault(1, errno.EINVAL, command=PROG_BIND_MAP)
    try:
        before = _sys.syscall_count(PROG_BIND_MAP)
        with obj.load():
            assert _sys.syscall_count(PROG_BIND_MAP) == before + 1
            assert obj.programs["meta_pass"].info().map_ids == ()     # not bound
    finally:
        _sys.inject_fault(0, 0)
    obj = bpfload.BpfObject.open(bpf_object("metadata"))
    _sys.inject_fault(1, errno.ENOMEM, command=PROG_BIND_MAP)
    try:
        with pytest.raises(bpfload.SyscallError) as ei:
            obj.load()
    finally:
        _sys.inject_fault(0, 0)
    assert ei.value.command == "BPF_PROG_BIND_MAP" and ei.value.errno == errno.ENOMEM
    assert "meta_pass" in str(ei.value) and "'.rodata'" in str(ei.value)
    assert not obj.loaded


def test_every_program_gets_every_rodata_map():
    """globaldata has .rodata (read by bump) and .rodata.str1.1 (a string literal bump
    copies with immediates): both are bound, as libbpf binds every .rodata* map."""
    with bpfload.load(OBJ) as obj:
        held = set(obj.programs["bump"].info().map_ids)
        assert {obj.maps[".rodata"].id, obj.maps[".rodata.str1.1"].id} <= held

