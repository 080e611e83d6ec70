"""The running kernel's BTF as CO-RE/attach targets: how it is read and indexed.

* vmlinux BTF is mapped in place (Linux 6.16+) rather than read: the mapped
  :class:`~bpfload.btf.Btf` must equal the one parsed from the file's bytes,
  and the read fallback (a kernel that refuses the mapping) must give the
  same;
* :class:`bpfload._core.corepatch.ReadOnlyFile` behaves like the bytes it
  maps for everything a parsed Btf does with its blob (index, slice, find);
* the candidate index is built per kind group on first lookup (a CO-RE load
  never hashes vmlinux's functions): it must give the candidates the full
  index and the pure-Python twin give;
* ``essential_name`` (no regular expression) equals libbpf's rule written as
  one, on every short name over a small alphabet.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import struct
import subprocess
import sys

import pytest

import bpfload
from bpfload.btf import Btf, Kind, targets
from bpfload._core import corepatch
from bpfload.errors import BtfError

VMLINUX = "/sys/kernel/btf/vmlinux"


def _need_vmlinux():
    if not os.path.exists(VMLINUX):
        pytest.skip("the kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF)")


# --------------------------------------------------------------------------
# essential names

_FLAVOR_RE = re.compile(r"(.*[^_])___[^_]", re.DOTALL)


def _essential_re(name: str) -> str:
    m = _FLAVOR_RE.match(name) if "___" in name else None
    return m.group(1) if m else name


def test_essential_name_equals_the_regex_rule_on_every_short_name():
    n = 0
    for length in range(10):
        for t in itertools.product("a_\n", repeat=length):
            name = "".join(t)
            assert targets.essential_name(name) == _essential_re(name), repr(name)
            n += 1
    assert n > 29000
    for name in ("task_struct___v2", "a___b___c", "__u64", "___x", "foo____bar", "x___", "x___y_"):
        assert targets.essential_name(name) == _essential_re(name)
        assert corepatch.essential_len(name) == len(_essential_re(name))


# --------------------------------------------------------------------------
# the read-only mapping

def test_readonly_file_behaves_like_the_bytes_it_maps(tmp_path):
    data = b"\0abc\0task_struct\0\0abc\0" + bytes(range(256)) * 40 + b"tail\0"
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        m = corepatch.map_readonly(fd, len(data))
    finally:
        os.close(fd)             # the mapping keeps no fd
    assert m is not None and len(m) == len(data)
    assert bytes(memoryview(m)) == data and memoryview(m).readonly
    for i in (0, 1, 5, len(data) - 1, -1, -len(data)):
        assert m[i] == data[i]
    for i in (len(data), -len(data) - 1):
        with pytest.raises(IndexError):
            m[i]
    for sl in (slice(None), slice(1, 4), slice(5, 16), slice(-5, None), slice(10, 3),
               slice(0, 10 ** 9), slice(None, None, 3), slice(-10 ** 9, 4)):
        assert m[sl] == data[sl], sl
    for sub in (b"\0", b"abc", b"\0abc\0", b"tail\0", b"nope", b"", b"\xff\0\x01"):
        for start, end in ((None, None), (1, None), (2, 30), (5, 5), (30, 2), (-8, None),
                           (0, -3), (len(data) + 5, None), (-10 ** 6, 10 ** 6), (len(data), None),
                           (-10 ** 30, 10 ** 30), (None, -10 ** 6)):
            assert m.find(sub, start, end) == data.find(sub, start, end), (sub, start, end)
    assert corepatch.map_readonly(0, 0) is None


def test_map_readonly_refused_returns_none(tmp_path):
    r, w = os.pipe()            # a pipe cannot be mapped
    try:
        assert corepatch.map_readonly(r, 4096) is None
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------------------
# vmlinux in place

def _same_btf(a: Btf, b: Btf, step: int = 97) -> None:
    assert len(a) == len(b)
    assert list(a._offsets) == list(b._offsets)
    assert bytes(a._types_raw) == bytes(b._types_raw)
    assert a.strings == b.strings
    for tid in list(range(1, len(a), step)) + [len(a) - 1]:
        assert repr(a[tid]) == repr(b[tid]), tid
    task = a.find("task_struct", Kind.STRUCT)
    assert task is not None and repr(task) == repr(b.find("task_struct", Kind.STRUCT))
    assert a.size_of(task.id) == b.size_of(task.id)


@pytest.mark.kernel
def test_vmlinux_is_mapped_and_equals_the_file_parsed():
    _need_vmlinux()
    with open(VMLINUX, "rb") as f:
        data = f.read()
    mapped = targets._parse_vmlinux(VMLINUX)
    if not isinstance(mapped._sraw, corepatch.ReadOnlyFile):   # pragma: no cover - < 6.16
        pytest.skip("this kernel does not let /sys/kernel/btf/vmlinux be mapped (Linux 6.16+)")
    _same_btf(mapped, Btf.parse(data))
    mapped.validate()


@pytest.mark.kernel
def test_vmlinux_read_when_the_kernel_refuses_the_mapping(monkeypatch):
    _need_vmlinux()
    monkeypatch.setattr(targets, "_map_readonly", lambda fd: None)
    read = targets._parse_vmlinux(VMLINUX)
    assert type(read._sraw) is bytes
    with open(VMLINUX, "rb") as f:
        _same_btf(read, Btf.parse(f.read()), step=1009)


def test_vmlinux_in_place_parse_checks_the_header(tmp_path, monkeypatch):
    """A blob the in-place path does not take goes to Btf.parse, with its errors."""
    b = Btf()
    b.add(bpfload.btf.Int(name="int", size=4, bits=32, encoding=bpfload.btf.IntEncoding.SIGNED))
    good = b.to_bytes()
    path = tmp_path / "vmlinux"
    path.write_bytes(good)
    parsed = targets._parse_vmlinux(str(path))
    assert isinstance(parsed._sraw, corepatch.ReadOnlyFile)
    assert parsed.find("int", Kind.INT).size == 4
    path.write_bytes(struct.pack("<H", 0x1234) + good[2:])
    with pytest.raises(BtfError, match="bad BTF magic 0x1234"):
        targets._parse_vmlinux(str(path))
    with pytest.raises(BtfError, match="kernel BTF unavailable"):
        targets._parse_vmlinux(str(tmp_path / "missing"))


# --------------------------------------------------------------------------
# the candidate index, per kind group

def test_kind_mask_indexes_only_those_kinds():
    strings = b"\0abc\0f\0"
    rec = (struct.pack("<III", 1, 4 << 24, 4)              # [1] struct abc
           + struct.pack("<III", 5, 12 << 24, 0)           # [2] func f
           + struct.pack("<III", 99, 8 << 24, 1))          # [3] typedef, bad name offset
    from array import array
    offs = array("I", [0, 12, 24])
    idx = corepatch.EssentialIndex(rec, offs, [(0, strings)], 1, 1 << 4)
    assert idx.lookup("abc") == [1] and idx.lookup("f") == [] and len(idx) == 1
    assert idx.kinds == 1 << 4
    idx = corepatch.EssentialIndex(rec, offs, [(0, strings)], 1, 1 << 12)
    assert idx.lookup("f") == [2] and idx.lookup("abc") == []
    idx = corepatch.EssentialIndex(rec[:24], offs[:2], [(0, strings)], 1)   # every kind
    assert idx.lookup("abc") == [1] and idx.lookup("f") == [2] and idx.kinds is None
    assert idx.lookup("abc", 1 << 4) == [1] and idx.lookup("abc", 1 << 12) == []
    assert idx.lookup("f", (1 << 12) | (1 << 4)) == [2]
    with pytest.raises(BtfError, match=r"type \[3\]: name offset outside"):
        corepatch.EssentialIndex(rec, offs, [(0, strings)], 1, 1 << 8)
    with pytest.raises(BtfError, match=r"type \[3\]: name offset outside"):
        corepatch.EssentialIndex(rec, offs, [(0, strings)], 1)


@pytest.mark.kernel
def test_lazy_kind_groups_give_the_full_and_python_candidates():
    _need_vmlinux()
    vm = targets.vmlinux()
    lazy = targets.TargetBtf(vm)
    full = targets.TargetBtf(vm)
    full.build_index()
    slow = targets.TargetBtf(vm, compiled=False)
    queries = {(targets.essential_name(vm[tid].name), vm[tid].kind)
               for tid in range(1, len(vm), 211) if vm[tid].name}
    queries |= {("task_struct", Kind.STRUCT), ("bpf_func_id", Kind.ENUM64),
                ("bpf_func_id", Kind.ENUM), ("btf_trace_sys_enter", Kind.TYPEDEF),
                ("bpfload_no_such_type", Kind.UNION)}
    assert len(queries) > 300
    for ess, kind in sorted(queries):
        want = [t.id for t in slow.candidates(ess, kind)]
        assert [t.id for t in lazy.candidates(ess, kind)] == want, (ess, kind)
        assert [t.id for t in full.candidates(ess, kind)] == want, (ess, kind)
    assert not lazy._built and lazy._cindex is None
    assert set(lazy._groups) == {targets._TYPES_MASK, targets._FUNC_MASK}
    assert lazy.candidates("do_nanosleep", Kind.FUNC)
    assert lazy.candidates("do_nanosleep", Kind.STRUCT) == []


def test_core_modules_import_no_logging_dataclasses_or_typing():
    """What a CO-RE load imports beyond the generic path: none of the costly stdlib modules."""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import bpfload.btf.format\n"
            "base = set(sys.modules)\n"
            "import bpfload.btf.core, bpfload.btf.targets, bpfload.btf.kernel\n"
            "print(' '.join(sorted(set(sys.modules) - base)))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    added = set(p.stdout.split())
    assert not added & {"logging", "dataclasses", "typing", "re", "threading", "inspect"}, added
    assert {"bpfload.btf.core", "bpfload.btf.targets"} <= added


def test_btf_kernel_imports_the_kernel_btf_only_when_asked():
    """Every load with BTF imports bpfload.btf.kernel; vmlinux's module (and its compiled
    index) only comes with the first use of one of its names."""
    code = ("import sys\n"
            "import bpfload.btf.kernel as k\n"
            "print('bpfload.btf.targets' in sys.modules, 'bpfload._core.corepatch' in sys.modules)\n"
            "from bpfload.btf.kernel import vmlinux, find_kernel_type, VMLINUX_PATH\n"
            "import bpfload.btf.targets as t\n"
            "print(vmlinux is t.vmlinux and find_kernel_type is t.find_kernel_type, VMLINUX_PATH)\n"
            "try:\n"
            "    k.no_such_name\n"
            "except AttributeError as e:\n"
            "    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "False False", f"True {targets.VMLINUX_PATH}",
        "module 'bpfload.btf.kernel' has no attribute 'no_such_name'"]


@pytest.mark.kernel
def test_a_cold_core_load_maps_vmlinux_and_indexes_no_function():
    """In a fresh process, loading a CO-RE object (structs, an enum, a tp_btf target
    typedef): vmlinux is mapped, and only the group of those kinds was indexed --
    never vmlinux's ~56,000 FUNCs, nor the full index."""
    _need_vmlinux()
    obj = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bpf", "core_task.bpf.o")
    code = ("import json, bpfload\n"
            f"bpfload.load({obj!r}).close()\n"
            "from bpfload.btf import targets, Kind\n"
            "kt = targets.kernel_targets()\n"
            "print(json.dumps([[k == targets._TYPES_MASK for k in kt.main._groups], kt.main._built,\n"
            "                  type(targets.vmlinux()._sraw).__name__]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    groups, built, blob = json.loads(p.stdout)
    assert groups == [True] and built is False
    assert blob in ("ReadOnlyFile", "bytes")


# --------------------------------------------------------------------------
# the garbage collector and the kernel's BTF

def test_gc_untrack_keeps_what_the_list_holds():
    import gc
    import weakref

    class Node:
        pass
    items = [None] * 1000
    corepatch.gc_untrack(items)
    corepatch.gc_untrack(items)          # twice: no-op
    assert not gc.is_tracked(items)
    a, b = Node(), Node()
    a.other, b.other = b, a              # a cycle referenced only from the untracked list
    items[3], items[7] = a, b
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is items[3] and items[3].other is items[7]   # never freed under the list
    items[3] = items[7] = None
    gc.collect()
    assert ref() is None                 # freed once the list lets go


@pytest.mark.kernel
def test_vmlinux_type_cache_is_not_walked_by_the_collector():
    import gc
    _need_vmlinux()
    vm = targets.vmlinux()
    assert not gc.is_tracked(vm._cache) and len(vm._cache) == len(vm) - 1
    task = targets.find_kernel_type("task_struct", Kind.STRUCT)
    gc.collect()
    assert vm[task.id] is task and task.members
