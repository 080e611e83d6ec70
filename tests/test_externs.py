"""`.kconfig` and `__ksym` externs, resolved against the running kernel."""
from __future__ import annotations

import os
import struct

import pytest

import bpfload
from bpfload import externs
from bpfload.btf import Kind
from bpfload.btf.targets import vmlinux
from conftest import bpf_object

OUT = struct.Struct("=IiIIiIQ16s16x")


def kallsyms(name):
    with open("/proc/kallsyms") as f:
        for line in f:
            p = line.split()
            if p[2] == name:
                return int(p[0], 16)
    return None


def kernel_config_reference(name: str):
    """CONFIG value as zcat + grep would read it: the test's own reference, not bpfload's
    parser.  None when the option is not set or absent."""
    import subprocess
    text = subprocess.run(["zcat", "/proc/config.gz"], capture_output=True, text=True,
                          check=True).stdout
    for line in text.splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1]
    return None


def version_code_reference(release: str) -> int:
    import re
    major, minor, patch = (int(x) for x in re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
                           .groups(default="0"))
    return (major << 16) | (minor << 8) | min(patch, 255)


def test_kernel_version_code():
    assert externs.kernel_version_code("6.18.44-fc-v595") == (6 << 16) | (18 << 8) | 44
    assert externs.kernel_version_code("5.4.300") == (5 << 16) | (4 << 8) | 255
    assert externs.kernel_version_code("6.1") == (6 << 16) | (1 << 8)


def test_kconfig_map_is_planned_without_the_kernel():
    spec = bpfload.BpfObject.open(bpf_object("externs")).spec
    plan = externs.plan_externs(spec, vmlinux)
    m = plan.kconfig_map
    assert m.name == ".kconfig" and m.freeze and m.max_entries == 1
    hz = plan.kcfg["CONFIG_HZ"]
    assert int.from_bytes(m.data[hz.offset:hz.offset + 4], "little", signed=True) == \
        int(kernel_config_reference("CONFIG_HZ"))
    miss = plan.kcfg["CONFIG_BPFLOAD_MISSING"]
    assert miss.weak and m.data[miss.offset:miss.offset + 4] == bytes(4)
    # offsets are aligned and do not overlap
    spans = sorted((e.offset, e.offset + e.size) for e in plan.kcfg.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert all(e.offset % e.align == 0 for e in plan.kcfg.values())
    # the object's own BTF is untouched; the plan's copy has no extern linkage
    assert spec.btf.find("CONFIG_HZ", Kind.VAR).linkage == 2
    assert plan.btf.find("CONFIG_HZ", Kind.VAR).linkage == 1


@pytest.mark.kernel
def test_kconfig_and_untyped_ksym_values_reach_the_program():
    with bpfload.load(bpf_object("externs")) as obj:
        ctx = bytearray(OUT.size)
        assert obj.programs["read_cfg"].test_run(ctx=ctx).retval == 0
        version, hz, jit, syscall, missing, _, sched, host = OUT.unpack(ctx)
        ref = kernel_config_reference
        assert version == version_code_reference(os.uname().release)
        assert hz == int(ref("CONFIG_HZ"))
        assert jit == (1 if ref("CONFIG_BPF_JIT") == "y" else 0)
        assert syscall == (1 if ref("CONFIG_BPF_SYSCALL") == "y" else 0) == 1   # TRI_YES
        assert missing == 0                                   # weak, not in the config
        assert ref("CONFIG_BPFLOAD_MISSING") is None
        assert host.rstrip(b"\0").decode() == ref("CONFIG_DEFAULT_HOSTNAME").strip('"')
        assert sched == kallsyms("schedule")
        kc = obj.maps[".kconfig"]
        assert kc.info().name == "externs.kconfig"
        with pytest.raises(bpfload.PermissionDeniedError):   # frozen
            kc.update(0, bytes(kc.value_size))


@pytest.mark.kernel
def test_kfunc_calls_resolve_to_vmlinux_btf_ids():
    with bpfload.load(bpf_object("externs")) as obj:
        for pid, found in ((os.getpid(), 1), (1 << 30, 0)):
            ctx = bytearray(struct.pack("=ii", pid, -1))
            obj.programs["find_task"].test_run(ctx=ctx)
            assert struct.unpack("=ii", ctx) == (pid, found)


@pytest.mark.kernel
def test_typed_ksym_is_a_btf_id_load():
    """bpf_prog_active is typed: ld_imm64 src_reg=BPF_PSEUDO_BTF_ID, imm=its vmlinux id.

    The kernel finds a typed data ksym's address through kallsyms, which
    lists data symbols only with CONFIG_KALLSYMS_ALL=y: without it the load
    must fail with the kernel's own reason, with it the program must load.
    """
    obj = bpfload.BpfObject.open(bpf_object("externs"))
    spec = obj.spec
    plan = externs.plan_externs(spec, vmlinux)
    from bpfload._core import insn
    linked = insn.link("read_active", spec.functions)
    plan.relocate(linked)
    want = vmlinux().find("bpf_prog_active", Kind.VAR).id
    hits = [i for i, (code, dst, src, off, imm) in enumerate(insn.decode(linked.insns))
            if code == 0x18 and src == 3]
    assert hits and insn.decode(linked.insns)[hits[0]][4] == want

    obj.programs["read_active"].autoload = True
    for p in ("read_cfg", "find_task"):
        obj.programs[p].autoload = False
    if externs.kernel_config().get("CONFIG_KALLSYMS_ALL") == "y":
        with obj.load():
            assert obj.programs["read_active"].test_run(ctx=bytearray(4)).retval == 0
    else:
        with pytest.raises(bpfload.LoadError, match="kernel symbol 'bpf_prog_active'"):
            obj.load()


def test_strong_kconfig_extern_missing_is_an_error(monkeypatch):
    spec = bpfload.BpfObject.open(bpf_object("externs")).spec
    cfg = dict(externs.kernel_config())
    del cfg["CONFIG_HZ"]
    monkeypatch.setattr(externs, "kernel_config", lambda: cfg)
    with pytest.raises(bpfload.ElfError, match="unresolved .kconfig extern 'CONFIG_HZ'"):
        externs.plan_externs(spec, vmlinux)
