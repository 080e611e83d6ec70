"""Pinning maps in a bpffs: pin, from_pin, unpin, and the errors of each."""
from __future__ import annotations

import errno
import os
import sys

import pytest

import bpfload
from bpfload import Map, MapType, ProgType
from bpfload._core import syscall as _sys

pytestmark = pytest.mark.kernel

NATIVE = sys.byteorder
RET0 = b"\xb7\x00\x00\x00\x00\x00\x00\x00" + b"\x95\x00\x00\x00\x00\x00\x00\x00"


def test_pin_and_open_the_pin(bpffs):
    path = bpffs / "counts"
    with Map.create(MapType.HASH, 4, 4, 8, name="counts") as m:
        m[1] = 10
        m.pin(path)
        assert m.pin_path == str(path)
        assert path.exists()
        with Map.from_pin(path) as p:
            assert p.id == m.id == p.info().id
            assert p.fd != m.fd
            assert p.pin_path == str(path)
            assert (p.type, p.key_size, p.value_size, p.max_entries, p.name) == \
                (MapType.HASH, 4, 4, 8, "counts")
            assert p[1] == (10).to_bytes(4, NATIVE)
            p[2] = 20  # a write through the pin is seen through the original fd
        assert m[2] == (20).to_bytes(4, NATIVE)


def test_pin_keeps_the_map_alive_after_close(bpffs):
    path = bpffs / "survivor"
    m = Map.create(MapType.ARRAY, 4, 8, 2, name="survivor")
    m[1] = 99
    map_id = m.id
    m.pin(str(path))
    m.close()
    with Map.from_pin(str(path)) as p:
        assert p.id == map_id
        assert p[1] == (99).to_bytes(8, NATIVE)
        p.unpin()
        assert not path.exists()
        assert p.pin_path is None
        assert p[1] == (99).to_bytes(8, NATIVE)  # the open fd still holds the map


def test_unpin_removes_the_file(bpffs):
    path = bpffs / "tmp"
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tmp") as m:
        before = set(os.listdir(bpffs))  # a bpffs may hold maps.debug/progs.debug
        m.pin(path)
        assert set(os.listdir(bpffs)) - before == {"tmp"}
        m.unpin()
        assert set(os.listdir(bpffs)) == before
        assert m.pin_path is None
        with pytest.raises(bpfload.PinError, match="not pinned"):
            m.unpin()
        with pytest.raises(bpfload.PinError):
            Map.from_pin(path)
        m.pin(path)  # the name is free again
        assert set(os.listdir(bpffs)) - before == {"tmp"}


def test_unpin_of_a_pin_removed_behind_our_back(bpffs):
    path = bpffs / "gone"
    with Map.create(MapType.ARRAY, 4, 4, 1, name="gone") as m:
        m.pin(path)
        os.unlink(path)
        with pytest.raises(bpfload.PinError) as ei:
            m.unpin()
        assert ei.value.errno == errno.ENOENT and ei.value.path == str(path)


def test_pin_twice_at_the_same_path(bpffs):
    path = bpffs / "dup"
    with Map.create(MapType.ARRAY, 4, 4, 1, name="first") as a, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="second") as b:
        a.pin(path)
        with pytest.raises(bpfload.PinError) as ei:
            b.pin(path)
        e = ei.value
        assert e.errno == errno.EEXIST and e.path == str(path)
        assert "second" in str(e) and str(path) in str(e)
        assert b.pin_path is None
        with Map.from_pin(path) as p:
            assert p.id == a.id  # the first pin is untouched


def test_pin_in_a_subdirectory(bpffs):
    sub = bpffs / "app"
    sub.mkdir()
    with Map.create(MapType.ARRAY, 4, 4, 1, name="nested") as m:
        m.pin(sub / "m")
        with Map.from_pin(sub / "m") as p:
            assert p.id == m.id
        with pytest.raises(bpfload.PinError) as ei:
            m.pin(bpffs / "missing_dir" / "m")
        assert ei.value.errno == errno.ENOENT


def test_from_pin_of_a_missing_path(bpffs):
    path = bpffs / "nothing"
    with pytest.raises(bpfload.PinError) as ei:
        Map.from_pin(path)
    e = ei.value
    assert isinstance(e, bpfload.BpfError) and isinstance(e, OSError)
    assert e.errno == errno.ENOENT and e.path == str(path) and str(path) in str(e)


def test_from_pin_of_a_program_is_refused(bpffs):
    ret = _sys.prog_load(ProgType.SOCKET_FILTER, RET0, "GPL", "pinned_prog")
    assert ret > 0
    path = bpffs / "prog"
    with _sys.FD(ret) as prog:
        _sys.obj_pin(int(prog), str(path))
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(bpfload.PinError, match="not a map") as ei:
        Map.from_pin(path)
    assert ei.value.path == str(path)
    assert len(os.listdir("/proc/self/fd")) == before  # the prog fd it opened was closed


def test_from_pin_of_a_file_outside_bpffs(tmp_path):
    f = tmp_path / "plain"
    f.write_bytes(b"not a pin")
    with pytest.raises(bpfload.PinError) as ei:
        Map.from_pin(f)
    assert ei.value.errno == errno.EACCES and ei.value.path == str(f)


def test_pin_outside_bpffs(tmp_path):
    with Map.create(MapType.ARRAY, 4, 4, 1, name="nofs") as m:
        with pytest.raises(bpfload.PinError) as ei:
            m.pin(tmp_path / "m")
        e = ei.value
        assert e.errno == errno.EPERM and e.path == str(tmp_path / "m")
        assert "nofs" in str(e)
        assert isinstance(e.__cause__, bpfload.SyscallError)
        assert e.__cause__.command == "BPF_OBJ_PIN"
        assert not (tmp_path / "m").exists()
        assert m.pin_path is None
