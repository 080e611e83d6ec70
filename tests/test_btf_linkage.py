"""Function linkage in the BTF bpfload gives the kernel (libbpf's rules).

* ``__hidden`` global subprograms (bpf/hidden_func.bpf.c, usdt.bpf.h's pattern) are
  loaded as static FUNCs, so the verifier checks them in the caller's context: the
  object loads and runs, and the same object with the rule switched off is refused
  by the verifier exactly as libbpf-less loaders were;
* an extern function defined nowhere (bpf/extern_func.bpf.c) is named before
  BPF_BTF_LOAD instead of the kernel's "Invalid func linkage" for the whole BTF.
"""
from __future__ import annotations

import os
import struct

import pytest

import bpfload
from bpfload._core import syscall as _sys
from bpfload.btf import Func, FuncLinkage, Kind
from bpfload.errors import BtfError, LoadError

from conftest import bpf_object

pytestmark = pytest.mark.kernel


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_hidden_global_functions_load_as_static_and_run():
    with bpfload.BpfObject.open(bpf_object("hidden_func")) as obj:
        spec = obj.spec
        # the object's own BTF says global: the loader is what makes them static
        for name in ("arg_at", "arg_cnt"):
            f = spec.btf.find(name, Kind.FUNC)
            assert isinstance(f, Func) and f.linkage == FuncLinkage.GLOBAL
            assert spec.functions[name].hidden
        assert not spec.functions["hidden_xdp"].hidden
        obj.load()
        prog = obj.programs["hidden_xdp"]
        results = obj.maps["hidden_results"]
        for first in (0, 5, 200):
            assert prog.test_run(bytes([first]) + bytes(63)).retval == 2      # XDP_PASS
            assert struct.unpack("=Q", results[0])[0] == first * 7 + 3
        # the parsed BTF was not edited by the load (the blob given to the kernel was)
        assert spec.btf.find("arg_at", Kind.FUNC).linkage == FuncLinkage.GLOBAL


def test_without_the_rule_the_verifier_refuses_the_hidden_helper():
    """The test object is one that needs the rule: verified as a global function on its
    own, arg_at's unchecked pointer write is refused (usdt.bpf.h's failure)."""
    with bpfload.BpfObject.open(bpf_object("hidden_func")) as obj:
        for name in ("arg_at", "arg_cnt"):
            obj.spec.functions[name].hidden = False
        before = _open_fds()
        with pytest.raises(LoadError, match="mem_or_null"):
            obj.load()
        assert _open_fds() == before


def test_extern_function_without_definition_is_named_before_btf_load(monkeypatch):
    import bpfload.btf.kernel as kernel_mod
    calls = []

    def counting(*a, **kw):            # the real syscall, counted
        calls.append(a)
        return _sys.btf_load(*a, **kw)
    monkeypatch.setattr(kernel_mod, "_sys", _Spy(_sys, counting))
    before = _open_fds()
    with pytest.raises(BtfError) as ei:
        bpfload.load(bpf_object("extern_func"))
    e = ei.value
    assert "failed to find BTF for extern 'fwd'" in str(e) and "Invalid func linkage" in str(e)
    assert e.object == "extern_func" and e.symbol == "fwd" and e.section == ".BTF"
    assert calls == []                     # refused before the kernel saw the BTF
    assert _open_fds() == before
    # the objects that do load still go through the (counted) BPF_BTF_LOAD
    bpfload.load(bpf_object("hidden_func")).close()
    assert len(calls) == 1


class _Spy:
    """The syscall module with btf_load replaced (everything else passes through)."""

    def __init__(self, mod, btf_load):
        self._mod = mod
        self.btf_load = btf_load

    def __getattr__(self, name):
        return getattr(self._mod, name)


def test_hidden_rule_without_the_compiled_walkers(monkeypatch):
    """The pure-Python twin of the FUNC-record walk marks the same functions static."""
    import bpfload.btf.kernel as kernel_mod
    monkeypatch.setattr(kernel_mod, "_cbtf", None)
    with bpfload.load(bpf_object("hidden_func")) as obj:
        assert obj.programs["hidden_xdp"].test_run(bytes([9]) + bytes(63)).retval == 2
        assert struct.unpack("=Q", obj.maps["hidden_results"][0])[0] == 9 * 7 + 3
    with pytest.raises(BtfError, match="failed to find BTF for extern 'fwd'"):
        bpfload.load(bpf_object("extern_func"))
