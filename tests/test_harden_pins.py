"""Regression (issue 10, High 2): no pin may escape pin_root.

The map name of a pinned-by-name map comes from the object.  Crafted objects
are made from the committed bpf/maps_btf.bpf.o by rewriting the name of its
pinned map ``lru_pinned`` (10 bytes) in the ELF and BTF string tables with
another name of the same length (a shorter one is NUL-padded: the tables are
NUL-terminated).  Each must be refused with ElfError naming the object and the
map before anything is created or pinned, through the public API.
"""
from __future__ import annotations

import os

import pytest

import bpfload
from bpfload import pins as _pins

from conftest import bpf_object, pins

pytestmark = pytest.mark.kernel

NAME = b"lru_pinned"


def _crafted(new: bytes) -> bytes:
    data = bpf_object("maps_btf").read_bytes()
    assert len(new) <= len(NAME)
    assert data.count(NAME) >= 2, "the ELF and BTF string tables both name the map"
    return data.replace(NAME, new.ljust(len(NAME), b"\0"))


BAD = {
    "dotdot-slash": b"../escape_",     # ../x: one level up
    "absolute": b"/tmp/abs_x",         # /abs: ignores the root
    "subdir": b"lru/pinned",           # a/b
    "dotdot": b"..",
    "dot": b".",
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_crafted_pin_name_refused(case, bpffs, tmp_path):
    data = _crafted(BAD[case])
    before_tmp = sorted(os.listdir(tmp_path))
    before_root = pins(bpffs)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(bpfload.ElfError) as ei:
        with bpfload.load(data, name="crafted.o", pin_root=bpffs):
            pass
    msg = str(ei.value)
    assert "crafted.o" in msg, msg
    if BAD[case]:   # (an empty name is refused earlier: no ELF symbol for the variable)
        assert repr(BAD[case].decode()) in msg and "path component" in msg, msg
    # nothing pinned anywhere, nothing left open
    assert pins(bpffs) == before_root
    assert sorted(os.listdir(tmp_path)) == before_tmp
    assert not os.path.exists("/tmp/abs_x")
    assert len(os.listdir("/proc/self/fd")) == fds


@pytest.mark.parametrize("case", ["dotdot-slash", "absolute", "subdir", "dotdot"])
def test_crafted_pin_name_refused_at_open(case):
    """BpfObject.open() already refuses: the name is checked at parse time."""
    with pytest.raises(bpfload.ElfError) as ei:
        bpfload.BpfObject.open(_crafted(BAD[case]), name="crafted.o")
    assert "crafted.o" in str(ei.value) and "path component" in str(ei.value)


def test_spec_edit_cannot_escape(bpffs):
    """A name set on the spec after parsing is checked where the path is made."""
    obj = bpfload.BpfObject.open(bpf_object("maps_btf"))
    obj.spec.maps["lru_pinned"].name = "../up"
    try:
        with pytest.raises(bpfload.ElfError, match="path component"):
            obj.load(pin_root=bpffs)
    finally:
        obj.close()
    assert pins(bpffs) == []
    assert not os.path.exists(os.path.join(os.path.dirname(bpffs), "up"))


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", ".", "", "a\0b"])
def test_pin_path_refuses(name, tmp_path):
    with pytest.raises(bpfload.ElfError):
        _pins.pin_path(tmp_path, name, object="o.bpf.o")


def test_symlinked_root_is_resolved(bpffs, tmp_path):
    link = tmp_path / "rootlink"
    link.symlink_to(bpffs)
    with bpfload.load(bpf_object("maps_btf"), pin_root=link) as obj:
        m = obj.maps["lru_pinned"]
        assert m.pin_path == os.path.join(os.path.realpath(bpffs), "lru_pinned")
        assert pins(bpffs) == ["lru_pinned"]
    os.unlink(os.path.join(bpffs, "lru_pinned"))


def test_symlink_at_pin_path_leaving_root_refused(bpffs):
    """A symlink in the root pointing at another application's pin is not followed."""
    other = os.path.join(bpffs, "other")
    root = os.path.join(bpffs, "app")
    os.mkdir(other)
    os.mkdir(root)
    try:
        with bpfload.Map.create(bpfload.MapType.LRU_HASH, 4, 8, 128, name="victim") as v:
            v.pin(os.path.join(other, "lru_pinned"))
            os.symlink(os.path.join(other, "lru_pinned"), os.path.join(root, "lru_pinned"))
            with pytest.raises(bpfload.PinError, match="leaves pin_root"):
                with bpfload.load(bpf_object("maps_btf"), pin_root=root):
                    pass
    finally:
        for p in (os.path.join(root, "lru_pinned"), os.path.join(other, "lru_pinned")):
            if os.path.lexists(p):
                os.unlink(p)
        os.rmdir(root)
        os.rmdir(other)


@pytest.mark.parametrize("case", ["dotdot-slash", "absolute", "subdir", "dotdot", "dot"])
def test_crafted_pin_name_refused_by_the_cli(case, bpffs, tmp_path):
    """`bpfload load` on a crafted object: a one-line error naming the map, a non-zero exit,
    no pin anywhere and none reported."""
    import subprocess
    import sys
    path = tmp_path / "crafted.bpf.o"
    path.write_bytes(_crafted(BAD[case]))
    (bpffs / "root").mkdir()
    before_parent = pins(bpffs)
    p = subprocess.run([sys.executable, "-m", "bpfload.cli", "load", str(path), "--pin-root",
                        str(bpffs / "root")], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bpfload: "), p.stderr
    assert "object 'crafted'" in err[0] and "path component" in err[0], err
    assert "Traceback" not in p.stderr and "pinned" not in p.stdout, p.stdout
    assert pins(bpffs / "root") == [] and pins(bpffs) == before_parent
    assert not os.path.exists("/tmp/abs_x")
