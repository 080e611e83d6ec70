"""Regressions (issue 10, Medium 7, Low 9, 11, 13): inputs that must be refused, and
resources a successful load must not leave to the garbage collector."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import bpfload
from bpfload import MapType

from conftest import bpf_object, pins


pytestmark = pytest.mark.kernel


# -- Medium 7: BpfObject.open(<int>) -------------------------------------------------

@pytest.mark.parametrize("opener", [bpfload.BpfObject.open, bpfload.load])
def test_open_int_is_a_type_error_and_leaves_the_fd_alone(opener):
    with bpfload.Map.create(MapType.ARRAY, 4, 4, 1, name="not_a_path") as m:
        fd = m.fd
        with pytest.raises(TypeError, match="path"):
            opener(fd)
        os.fstat(fd)            # still open: open() did not read and close it
        m.update(0, 1)          # and still this map's
        assert m.lookup(0) == (1).to_bytes(4, sys.byteorder)


# -- Low 9: Program.from_pin() of a map pin --------------------------------------------

def test_program_from_pin_refuses_a_map_pin(bpffs):
    path = os.path.join(bpffs, "a_map")
    with bpfload.Map.create(MapType.ARRAY, 4, 4, 1, name="pinned_map") as m:
        m.pin(path)
        try:
            with pytest.raises(bpfload.PinError, match="not a program") as ei:
                bpfload.Program.from_pin(path)
            assert isinstance(ei.value, bpfload.BpfError)
        finally:
            m.unpin()


# -- Low 11: a NUL inside a pin path ---------------------------------------------------

def test_nul_in_pin_path_is_a_value_error(bpffs):
    good = os.path.join(bpffs, "a")
    bad = good + "\0x"
    with bpfload.Map.create(MapType.ARRAY, 4, 4, 1, name="nul_pin") as m:
        m.pin(good)
        try:
            with pytest.raises(ValueError, match="null"):
                bpfload.Map.from_pin(bad)           # used to open "a"
            with pytest.raises(ValueError, match="null"):
                bpfload.Program.from_pin(bad)
            with pytest.raises(ValueError, match="null"):
                m.pin(os.path.join(bpffs, "b\0c"))  # used to pin at "b"
            assert pins(bpffs) == ["a"]
        finally:
            m.unpin()
    with pytest.raises(ValueError, match="null"):
        bpfload.load(bpf_object("maps_btf"), pin_root=str(bpffs) + "\0x")
    assert pins(bpffs) == []


# -- Low 13: nothing left to the collector after a successful load ----------------------

LOAD_AND_CLOSE = """
import os, sys, bpfload
for path in sys.argv[2:]:
    obj = bpfload.load(path, pin_root=sys.argv[1])
    btf_fds = [fd for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}")
               and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:btf"]
    print(path, "btf fds held after load:", len(btf_fds))
    obj.close()
    for name in os.listdir(sys.argv[1]):
        if name not in ("maps.debug", "progs.debug"):
            os.unlink(os.path.join(sys.argv[1], name))
"""


def test_load_leaves_nothing_to_the_collector(bpffs):
    """BTF fd and map-in-map templates are closed by the load, not by the collector."""
    objs = [str(bpf_object(n)) for n in ("maps_btf", "globals", "mim_btf", "ringbuf")]
    r = subprocess.run([sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c",
                        LOAD_AND_CLOSE, str(bpffs), *objs],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ResourceWarning" not in r.stderr, r.stderr
    assert r.stdout.count("btf fds held after load: 0") == len(objs), r.stdout
