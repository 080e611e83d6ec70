"""System introspection: bpfload.programs(), maps(), links(), btfs() against what the kernel holds.

Each test loads bpf/attach_run.bpf.o (a raw_syscalls/sys_enter tracepoint program filtered on
one tgid, counting syscalls per number in the ``syscalls`` hash) and checks
that the system-wide listings report exactly the ids, names, tags and map
ids of the objects it made, that links come and go with their owner, and
that pinned paths are found under a bpffs root.
"""
from __future__ import annotations

import importlib
import os
import sys
import time

import pytest

import bpfload
from bpfload import LinkType, MapType, ProgType
from conftest import bpf_object

pytestmark = pytest.mark.kernel

NR_GETPPID = 110   # x86_64


def _load(tgid: int = 0):
    obj = bpfload.BpfObject.open(bpf_object("attach_run"))
    obj.rodata["target_tgid"] = tgid
    return obj.load()


def _getppids(n: int) -> None:
    for _ in range(n):
        os.getppid()


def _count(obj) -> int:
    v = obj.maps["syscalls"].lookup(NR_GETPPID)
    return 0 if v is None else int.from_bytes(v, sys.byteorder)


def _eventually(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_submodules_still_import_and_functions_are_bound():
    # bpfload.programs / bpfload.maps are functions now; the submodules stay importable
    from bpfload.maps import Map
    from bpfload.programs import Program
    assert Map is bpfload.Map and Program is bpfload.Program
    assert callable(bpfload.programs) and callable(bpfload.maps)
    assert importlib.import_module("bpfload.maps").Map is Map
    assert importlib.import_module("bpfload.programs").Program is Program
    assert sys.modules["bpfload.maps"].MapInfo is bpfload.MapInfo
    assert isinstance(list(bpfload.programs()), list) and isinstance(list(bpfload.maps()), list)


def test_programs_lists_the_loaded_program_with_kernel_fields():
    with _load() as obj:
        prog = obj.programs["on_sys_enter"]
        want_maps = {m.id for m in obj.maps.values()}
        recs = [p for p in bpfload.programs() if p.id == prog.id]
        assert len(recs) == 1
        r = recs[0]
        assert isinstance(r, bpfload.ProgramInfo)
        assert r.name == "on_sys_enter" and r.type == ProgType.TRACEPOINT
        assert r.tag == prog.tag and len(r.tag) == 16
        assert set(r.map_ids) == want_maps and len(want_maps) == 4
        assert r.created_by_uid == os.getuid() and r.load_time > 0 and r.btf_id > 0
        assert r.pinned == ()
        pid = prog.id
    # closed: gone from the listing
    assert pid not in {p.id for p in bpfload.programs()}


def test_programs_are_listed_by_increasing_id_and_hold_no_fd_between_steps():
    with _load() as obj:
        before = len(os.listdir("/proc/self/fd"))
        it = bpfload.programs()
        first = next(it)
        assert len(os.listdir("/proc/self/fd")) == before   # the walk's fd is closed already
        ids = [first.id] + [p.id for p in it]
        assert ids == sorted(ids) and obj.programs["on_sys_enter"].id in ids


def test_maps_lists_each_map_of_the_object():
    with _load() as obj:
        by_id = {m.id: m for m in bpfload.maps()}
        for name, m in obj.maps.items():
            r = by_id[m.id]
            assert isinstance(r, bpfload.MapInfo)
            assert (r.type, r.key_size, r.value_size, r.max_entries) == \
                (m.type, m.key_size, m.value_size, m.max_entries)
        assert by_id[obj.maps["events"].id].type == MapType.RINGBUF
        assert by_id[obj.maps["events"].id].name == "events"
        assert by_id[obj.maps["syscalls"].id].name == "syscalls"
        ids = set(m.id for m in obj.maps.values())
    # the kernel frees maps after the program that used them, an RCU grace period later
    assert _eventually(lambda: not ids & {m.id for m in bpfload.maps()})


def test_links_lists_a_live_link_and_forgets_it_after_close():
    with _load(os.getpid()) as obj:
        prog = obj.programs["on_sys_enter"]
        link = prog.attach()
        try:
            recs = [ln for ln in bpfload.links() if ln.id == link.id]
            assert len(recs) == 1
            assert recs[0].prog_id == prog.id and recs[0].type == LinkType.PERF_EVENT
            assert isinstance(recs[0], bpfload.LinkInfo)
            # the listed link is really attached: syscalls of this process are counted
            base = _count(obj)
            _getppids(5)
            assert _count(obj) == base + 5
        finally:
            link.close()
        assert link.id not in {ln.id for ln in bpfload.links()}
        assert prog.id not in {ln.prog_id for ln in bpfload.links()}
        after = _count(obj)
        _getppids(5)
        assert _count(obj) == after       # detached: nothing counts any more


def test_pin_root_finds_pinned_paths_of_programs_maps_and_links(bpffs):
    with _load(os.getpid()) as obj:
        prog = obj.programs["on_sys_enter"]
        m = obj.maps["syscalls"]
        sub = bpffs / "sub"
        sub.mkdir()
        prog.pin(bpffs / "prog_a")
        prog_pin_twice(prog, sub / "prog_b")
        m.pin(sub / "counts")
        with prog.attach() as link:
            link.pin(bpffs / "link")
            try:
                progs = {p.id: p for p in bpfload.programs(pin_root=bpffs)}
                maps = {x.id: x for x in bpfload.maps(pin_root=bpffs)}
                links = {x.id: x for x in bpfload.links(pin_root=bpffs)}
                assert progs[prog.id].pinned == (str(bpffs / "prog_a"), str(sub / "prog_b"))
                assert maps[m.id].pinned == (str(sub / "counts"),)
                assert maps[obj.maps["events"].id].pinned == ()
                assert links[link.id].pinned == (str(bpffs / "link"),)
                # without a pin root nothing is looked up
                assert next(p for p in bpfload.programs() if p.id == prog.id).pinned == ()
                # the pinned link is the attached one
                assert links[link.id].prog_id == prog.id
            finally:
                link.unpin()
        with pytest.raises(bpfload.PinError):
            list(bpfload.maps(pin_root=bpffs / "nope"))


def prog_pin_twice(prog, path):
    """Pin *prog* a second time at *path* (a Program remembers one pin path)."""
    with bpfload.Program.from_id(prog.id) as again:
        again.pin(path)


def test_btfs_lists_vmlinux_and_the_object_btf():
    with _load() as obj:
        btf_id = obj.programs["on_sys_enter"].info().btf_id
        recs = {b.id: b for b in bpfload.btfs()}
        vm = [b for b in recs.values() if b.name == "vmlinux"]
        assert len(vm) == 1 and vm[0].kernel_btf and vm[0].size > 1 << 20
        assert btf_id in recs
        assert not recs[btf_id].kernel_btf and recs[btf_id].size > 0
        # the maps declared with BTF types name the same BTF object (a ring buffer has none)
        assert {n: m.info().btf_id for n, m in obj.maps.items()} == {
            "events": 0, "syscalls": btf_id, ".rodata": btf_id, ".bss": btf_id}
