"""Regression (issue 10, Low 14): errors are bpfload's own and say what and where.

* an int too large for a map's key or value size: IntRangeError (a BpfError
  and ValueError, still an OverflowError) naming the map and the field (was
  OverflowError "Python int too large to convert to C unsigned long"); a non-contiguous buffer: BufferError naming the map and the
  argument;
* ``obj["missing"]``, ``obj.rodata["nope"]``: :class:`bpfload.NotFoundError`,
  a BpfError and a KeyError (was a plain KeyError);
* a missing object file or a directory: :class:`bpfload.ObjectFileError`
  naming the path, an ElfError and still a FileNotFoundError /
  IsADirectoryError;
* ``Program.unpin()`` of a pin already gone: PinError (was FileNotFoundError),
  as ``Map.unpin()``;
* a ``pin_root`` that is a file says so (was "directory does not exist"); a
  dangling symlink at the pin path says so (was "element already exists
  (BPF_NOEXIST)"); ``pin_root=""`` is a ValueError (silently meant /sys/fs/bpf).
"""
from __future__ import annotations

import os

import pytest

import bpfload
from bpfload import MapType

from conftest import bpf_object, pins

OBJ = bpf_object("maps_btf")


# -- no kernel ------------------------------------------------------------------

def test_missing_names_raise_not_found_error_in_the_family():
    obj = bpfload.BpfObject.open(OBJ)
    for get in (lambda: obj["nosuch"], lambda: obj.rodata["nope"], lambda: obj.bss["nope"]):
        with pytest.raises(bpfload.NotFoundError) as ei:
            get()
        assert isinstance(ei.value, KeyError) and isinstance(ei.value, bpfload.BpfError)
        assert "'maps_btf'" in str(ei.value) and not str(ei.value).startswith('"')
    with pytest.raises(KeyError):         # except KeyError keeps working
        obj["nosuch"]
    assert "nosuch" not in obj.rodata


def test_object_file_errors_name_the_path_and_stay_oserrors(tmp_path):
    missing = tmp_path / "missing.bpf.o"
    for load in (bpfload.load, bpfload.BpfObject.open):
        with pytest.raises(bpfload.ObjectFileError) as ei:
            load(missing)
        e = ei.value
        assert isinstance(e, FileNotFoundError) and isinstance(e, bpfload.ElfError)
        assert e.errno == 2 and e.filename == str(missing)
        assert str(e) == f"{missing}: No such file or directory"
    with pytest.raises(IsADirectoryError) as ei:
        bpfload.BpfObject.open(tmp_path)
    assert isinstance(ei.value, bpfload.ElfError) and str(tmp_path) in str(ei.value)


def test_empty_pin_root_is_a_value_error_and_leaves_the_object_usable(bpffs):
    obj = bpfload.BpfObject.open(OBJ)
    with pytest.raises(ValueError, match="pin_root is empty"):
        obj.load(pin_root="")
    with obj.load(pin_root=bpffs):          # nothing was done: the object still loads
        assert pins(bpffs) == ["lru_pinned"]


# -- kernel -----------------------------------------------------------------------

@pytest.mark.kernel
def test_ints_too_large_for_key_or_value_name_the_map_and_field(kernel):
    with bpfload.Map.create(MapType.HASH, 4, 4, 8, name="ovf") as m, \
            bpfload.Map.create(MapType.PERCPU_ARRAY, 4, 8, 1, name="ovf_pc") as pc:
        cases = [
            (lambda: m.update(2**40, 1), "map 'ovf': key 1099511627776 does not fit in the key size of 4"),
            (lambda: m.update(1, 2**64), "map 'ovf': value 18446744073709551616 does not fit in the "
             "value size of 4"),
            (lambda: m.update(-2**70, 1), "map 'ovf': key -1180591620717411303424 does not fit"),
            (lambda: m.lookup(2**33), "map 'ovf': key 8589934592 does not fit"),
            (lambda: m.delete(2**64), "map 'ovf': key 18446744073709551616 does not fit"),
            (lambda: pc.update(0, 2**64), "map 'ovf_pc': value 18446744073709551616 does not fit in the "
             "value size of 8"),
        ]
        for call, msg in cases:
            with pytest.raises(bpfload.IntRangeError) as ei:
                call()
            assert isinstance(ei.value, ValueError) and isinstance(ei.value, bpfload.BpfError)
            assert isinstance(ei.value, OverflowError)      # what it was: except clauses still work
            assert str(ei.value).startswith(msg), str(ei.value)
        assert len(list(m.keys())) == 0


@pytest.mark.kernel
def test_non_contiguous_buffers_name_the_argument(kernel):
    with bpfload.Map.create(MapType.HASH, 4, 4, 8, name="buf") as m:
        with pytest.raises(BufferError, match=r"^map 'buf': key: .*not C-contiguous"):
            m.update(memoryview(bytes(8))[::2], 1)
        with pytest.raises(BufferError, match=r"^map 'buf': value: .*not C-contiguous"):
            m.update(1, memoryview(bytes(8))[::2])
        with pytest.raises(BufferError, match=r"^map 'buf': keys: .*not C-contiguous"):
            m.update_batch(memoryview(bytes(16))[::2], bytes(8))
        with pytest.raises(BufferError, match=r"^map 'buf': values: .*not C-contiguous"):
            m.update_batch(bytes(8), memoryview(bytes(16))[::2])
        with pytest.raises(BufferError, match=r"^map 'buf': keys: .*not C-contiguous"):
            m.delete_batch(memoryview(bytes(16))[::2])
        assert len(list(m.keys())) == 0


@pytest.mark.kernel
def test_program_unpin_of_a_removed_pin_is_a_pin_error(bpffs):
    with bpfload.load(OBJ, pin_root=bpffs) as obj:
        prog = obj.programs["count_pkts"]
        prog.pin(bpffs / "prog")
        os.unlink(bpffs / "prog")
        with pytest.raises(bpfload.PinError, match="cannot unpin program 'count_pkts'") as ei:
            prog.unpin()
        assert ei.value.errno == 2
        m = obj.maps["lru_pinned"]
        os.unlink(bpffs / "lru_pinned")
        with pytest.raises(bpfload.PinError, match="cannot unpin map 'lru_pinned'"):
            m.unpin()


@pytest.mark.kernel
def test_pin_root_that_is_a_file_says_so(tmp_path, kernel):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(bpfload.PinError) as ei:
        bpfload.load(OBJ, pin_root=f)
    assert f"{f} is not a directory" in str(ei.value), str(ei.value)
    assert "does not exist" not in str(ei.value)


@pytest.mark.kernel
def test_dangling_symlink_at_the_pin_path_says_so(bpffs):
    os.symlink(bpffs / "nowhere", bpffs / "lru_pinned")
    with pytest.raises(bpfload.PinError) as ei:
        bpfload.load(OBJ, pin_root=bpffs)
    assert "dangling symlink" in str(ei.value), str(ei.value)
    assert "BPF_NOEXIST" not in str(ei.value)
    assert pins(bpffs) == ["lru_pinned"] and os.path.islink(bpffs / "lru_pinned")
