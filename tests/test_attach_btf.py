"""attach_btf_id for tracing/LSM/iter programs, from the section name and vmlinux BTF.

On these machines the kernel refuses trampoline programs (fentry, fexit,
lsm) with EPERM before verification, even from libbpf; tp_btf and iter
load. So: attach-id resolution is checked for every kind, the ones the
kernel accepts are loaded, and the refused kinds must fail with EPERM or
load (never anything else).
"""
from __future__ import annotations

import errno

import pytest

import bpfload
from bpfload import AttachType, ProgType
from bpfload.btf import Kind
from bpfload.btf.kernel import resolve_attach_btf_id, vmlinux
from conftest import bpf_object

CASES = {
    "p_tp_btf": ("btf_trace_sched_switch", Kind.TYPEDEF),
    "p_iter_task": ("bpf_iter_task", Kind.FUNC),
    "p_fentry": ("do_nanosleep", Kind.FUNC),
    "p_fexit": ("do_nanosleep", Kind.FUNC),
    "p_lsm": ("bpf_lsm_file_open", Kind.FUNC),
}


@pytest.mark.parametrize("prog", sorted(CASES))
def test_attach_id_resolves_to_the_vmlinux_entity(prog):
    ps = bpfload.BpfObject.open(bpf_object("sections")).spec.programs[prog]
    name, kind = CASES[prog]
    want = vmlinux().find(name, kind)
    assert want is not None, f"{name} missing from this kernel's BTF"
    assert resolve_attach_btf_id(ps.type, ps.expected_attach_type, ps.attach_target,
                                 program=prog) == want.id


def test_unknown_target_names_the_program():
    with pytest.raises(bpfload.BtfError, match="p_x.*no_such_function_here"):
        resolve_attach_btf_id(ProgType.TRACING, AttachType.TRACE_FENTRY, "no_such_function_here",
                              program="p_x")


def _only(prog):
    obj = bpfload.BpfObject.open(bpf_object("sections"))
    for name, ps in obj.programs.items():
        ps.autoload = name == prog
    return obj


@pytest.mark.kernel
@pytest.mark.parametrize("prog", ["p_tp_btf", "p_iter_task"])
def test_tp_btf_and_iter_load(prog):
    with _only(prog).load() as obj:
        p = obj.programs[prog]
        assert p.type == ProgType.TRACING
        assert p.info().verified_insns > 0


@pytest.mark.kernel
@pytest.mark.parametrize("prog", ["p_fentry", "p_fexit", "p_lsm"])
def test_trampoline_programs_load_or_are_refused_with_eperm(prog):
    obj = _only(prog)
    try:
        obj.load()
    except bpfload.LoadError as e:
        assert e.errno == errno.EPERM and e.program == prog
        assert "kernel refused this program type" in str(e)
    else:
        obj.close()
