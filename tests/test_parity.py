"""Drop-in parity with libbpf and cilium/ebpf (issue 12).

* syscall wrappers: ``LINUX_HAS_SYSCALL_WRAPPER`` is detected from
  /proc/kallsyms (a program reads it back through test_run) and
  ``ksyscall/``/``kretsyscall/`` sections resolve to the arch wrapper;
* a CO-RE relocation that matched nothing: the verifier's "invalid func
  unknown#195896080" becomes an error naming the relocation;
* iproute2's ``struct bpf_elf_map`` (detected, and loaded with
  ``map_format="iproute2"``: pins under ``tc/globals``);
* cilium/ebpf's section names, its PERF_EVENT_ARRAY fix-up, and linker
  output whose overridden weak function has no symbol.
"""
from __future__ import annotations

import os
import shutil
import struct

import pytest

from conftest import bpf_object

import bpfload
from bpfload.link import tracefs
from bpfload.link.tracing import kprobe_perf_attr

pytestmark = pytest.mark.kernel


# -- syscall wrappers --------------------------------------------------------------------

def test_has_syscall_wrapper_reads_kallsyms(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text("0 T _stext\n0 T sys_bpf\n0 T sys_kill\n")
    assert not tracefs.has_syscall_wrapper(kallsyms=str(ks), machine="x86_64")
    assert tracefs.syscall_function("kill", kallsyms=str(ks), machine="x86_64") == "sys_kill"
    ks2 = tmp_path / "kallsyms2"
    ks2.write_text("0 T __pfx___arm64_sys_bpf\n0 T __arm64_sys_bpf\n")
    assert tracefs.has_syscall_wrapper(kallsyms=str(ks2), machine="aarch64")
    assert tracefs.syscall_function("kill", kallsyms=str(ks2), machine="aarch64") == "__arm64_sys_kill"
    # the running kernel: x86_64 with wrappers (__x64_sys_bpf is in kallsyms)
    with open("/proc/kallsyms") as f:
        real = any(ln.split()[2:3] == ["__x64_sys_bpf"] for ln in f)
    assert tracefs.has_syscall_wrapper() is real
    assert tracefs.syscall_function("kill") == ("__x64_sys_kill" if real else "sys_kill")


@pytest.mark.parametrize("detected", [True, False])
def test_kconfig_syscall_wrapper_is_what_was_detected(monkeypatch, detected):
    """The kconfig extern a program sees is the detection's answer, not a constant."""
    import platform
    monkeypatch.setitem(tracefs._wrapper_cache, ("/proc/kallsyms", platform.machine()), detected)
    with bpfload.BpfObject.open(bpf_object("parity_ksyscall")) as obj:
        obj.load()
        assert obj.programs["wrapper_value"].test_run().retval == int(detected)


def test_ksyscall_resolves_to_the_arch_wrapper():
    """ksyscall/kill and kretsyscall/kill load as KPROBE programs and attach (here: try to)
    to __x64_sys_kill; this kernel has no kprobes, so the attach error names that function."""
    assert tracefs.has_syscall_wrapper()
    with bpfload.BpfObject.open(bpf_object("parity_ksyscall")) as obj:
        obj.load()
        for name, kind in (("ks_kill", "kprobe"), ("kret_kill", "kretprobe")):
            p = obj.programs[name]
            assert p.type == bpfload.ProgType.KPROBE and p.attach_target == "kill"
            with pytest.raises(bpfload.AttachError) as ei:
                p.attach()
            assert ei.value.hook == f"{kind} __x64_sys_kill"
            assert "no kprobe support" in str(ei.value)


def test_ksyscall_perf_attr_on_a_kprobe_pmu(tmp_path):
    """The perf_event_attr a kretsyscall attach builds, on a (fake) kprobe PMU."""
    dev = tmp_path / "bus" / "event_source" / "devices" / "kprobe"
    (dev / "format").mkdir(parents=True)
    (dev / "type").write_text("6\n")
    (dev / "format" / "retprobe").write_text("config:0\n")
    fn = tracefs.syscall_function("kill")
    raw = kprobe_perf_attr(fn, retprobe=True, sysfs=str(tmp_path))
    ptype, size, config = struct.unpack_from("=IIQ", raw)
    assert (ptype, config) == (6, 1) and size == len(raw)


# -- a CO-RE relocation that matched nothing ---------------------------------------------

@pytest.mark.parametrize("program, kind, relocation, line", [
    ("poison_field", "byte_off", "struct task_struct___mine.nonexistent_field (0:0 @ offset 0)", 39),
    ("poison_enum", "enumval_value",
     "enum bpf_func_id___mine::BPF_FUNC_bpfload_no_such_helper = 4321", 50),
])
def test_poisoned_relocation_is_named(program, kind, relocation, line):
    """core_poison's unguarded reads of what vmlinux lacks: the kernel refuses the poisoned
    call, and the error names the relocation (libbpf's wording) instead of unknown#195896080."""
    obj = bpfload.BpfObject.open(bpf_object("core_poison"))
    obj.programs[program].autoload = True
    with obj, pytest.raises(bpfload.CoreRelocationError) as ei:
        obj.load()
    e = ei.value
    assert isinstance(e, bpfload.LoadError) and e.errno == 22 and e.program == program
    # the kernel really stopped at the instruction named
    assert f"{e.insn}: (85) call unknown#195896080\ninvalid func unknown#195896080" in e.log
    assert (e.kind, e.function, e.section, e.object) == (kind, program, "?raw_tp/sys_enter",
                                                          "core_poison")
    assert e.relocation.startswith("[") and e.relocation.endswith(relocation)
    assert e.source.endswith(f"@ core_poison.bpf.c:{line}")
    s = str(e)
    assert f"failed to resolve CO-RE relocation <{kind}> {e.relocation}" in s
    assert f"instruction {e.insn} (CO-RE relocation #{e.index})" in s
    assert "unknown#195896080" not in s and "bpf_core_field_exists" in s


# -- iproute2's struct bpf_elf_map ------------------------------------------------------

def _u64(m, key):
    v = m[key]
    return v if isinstance(v, int) else int.from_bytes(v, "little")


def test_iproute2_maps_are_detected():
    """Read as bpfload's custom form, tc's definitions cannot be right: the error says so."""
    with pytest.raises(bpfload.ElfError) as ei:
        bpfload.BpfObject.open(bpf_object("parity_iproute2"))
    s = str(ei.value)
    assert "object 'parity_iproute2', section 'maps'" in s
    assert "iproute2's struct bpf_elf_map" in s and "map_format='iproute2'" in s
    with pytest.raises(ValueError, match="map_format"):
        bpfload.BpfObject.open(bpf_object("parity_iproute2"), map_format="tc")
    # the custom form itself is still read as custom, with no iproute2 talk
    obj = bpfload.BpfObject.open(bpf_object("maps_custom"))
    assert obj.spec.maps["aom_outer"].slots == {0: "aom_inner0", 1: "aom_inner1"}


def test_iproute2_maps_load_pin_and_run(bpffs):
    import hashlib
    path = bpf_object("parity_iproute2")
    globals_pin = bpffs / "tc" / "globals" / "tc_counts"
    obj_pin = bpffs / "tc" / hashlib.sha1(path.read_bytes()).hexdigest() / "tc_objmap"
    spec = bpfload.BpfObject.open(path, map_format="iproute2").spec
    assert {n: (m.form, m.map_id, m.relation_id, m.inner_index) for n, m in spec.maps.items()} == {
        "tc_counts": ("iproute2", 0, 0, 0), "tc_objmap": ("iproute2", 0, 0, 0),
        "tc_inner": ("iproute2", 42, 0, 1), "tc_outer": ("iproute2", 0, 42, 0)}
    assert spec.maps["tc_outer"].slots == {1: "tc_inner"}
    pkt = bytes(14) + bytes(46)
    for round_ in (1, 2):
        with bpfload.BpfObject.open(path, map_format="iproute2") as obj:
            obj.load(pin_root=bpffs)
            # round 1 creates and pins; round 2 reuses the pins (as tc does)
            assert sorted(obj.pins_created) == ([str(obj_pin), str(globals_pin)]
                                                if round_ == 1 else [])
            assert sorted(obj.reused_maps) == ([] if round_ == 1 else ["tc_counts", "tc_objmap"])
            assert obj.maps["tc_counts"].type == bpfload.MapType.ARRAY
            assert obj.maps["tc_outer"].type == bpfload.MapType.ARRAY_OF_MAPS
            r = obj.programs["tc_count"].test_run(pkt)
            assert r.retval == 0                                  # slot 1 of tc_outer is filled
            assert _u64(obj.maps["tc_inner"], 0) == 1             # ... with tc_inner
            assert (_u64(obj.maps["tc_counts"], 0), _u64(obj.maps["tc_counts"], 1)) == \
                (round_, 60 * round_)
        assert globals_pin.exists() and obj_pin.exists()
        with bpfload.Map.from_pin(globals_pin) as m:             # the pin is the map the program used
            assert _u64(m, 0) == round_
        with bpfload.Map.from_pin(obj_pin) as m:
            assert _u64(m, 0) == round_


def test_iproute2_failed_load_removes_its_pins_and_dirs(bpffs):
    """A load that fails after pinning leaves neither pins nor the tc/ directories it made."""
    import errno
    from bpfload._core import syscall as _sys
    obj = bpfload.BpfObject.open(bpf_object("parity_iproute2"), map_format="iproute2")
    _sys.inject_fault(1, errno.ENOMEM, 5)   # BPF_PROG_LOAD: after the maps were pinned
    try:
        with obj, pytest.raises(bpfload.SyscallError) as ei:
            obj.load(pin_root=bpffs)
    finally:
        _sys.inject_fault(0, 0)
    assert ei.value.command == "BPF_PROG_LOAD"
    assert not (bpffs / "tc").exists()


# -- cilium/ebpf's conventions --------------------------------------------------------------

@pytest.mark.parametrize("section, ptype, atype", [
    ("socket/count_len", "SOCKET_FILTER", None),
    ("sk_lookup/steer", "SK_LOOKUP", "SK_LOOKUP"),
    ("xdp/named", "XDP", "XDP"),
    ("classifier/ingress", "SCHED_CLS", None),
    ("sk_skb/anything", "SK_SKB", None),
])
def test_cilium_section_spellings(section, ptype, atype):
    from bpfload.elf.sections import classify
    d = classify(section)
    assert d.known and d.prog_type == bpfload.ProgType[ptype] and d.attach_target is None
    assert d.expected_attach_type == (bpfload.AttachType[atype] if atype else None)


@pytest.mark.parametrize("section, pattern, target", [
    ("socket", "socket", None), ("xdp", "xdp", None), ("xdp.frags", "xdp.frags", None),
    ("sk_reuseport/migrate", "sk_reuseport/migrate", None),
    ("tc/ingress", "tc/ingress", None), ("tcx/egress", "tcx/egress", None),
    ("kprobe/do_sys_open", "kprobe+", "do_sys_open"),
])
def test_libbpf_names_keep_their_meaning(section, pattern, target):
    """The prefix rule runs after every libbpf rule: what libbpf accepts does not change."""
    from bpfload.elf.sections import classify
    d = classify(section)
    assert (d.pattern, d.attach_target) == (pattern, target)
    assert not classify("kprobex/foo").known
    assert not classify("socketless").known     # cilium reads a bare prefix too; bpfload does not


def test_cilium_object_loads_and_runs():
    """socket/NAME, sk_lookup/NAME and xdp/NAME programs load with their types and run; the
    PERF_EVENT_ARRAY without sizes is created 4/4 with one slot per CPU and carries samples."""
    from conftest import on_cpu
    from bpfload.events.perf import PerfBuffer
    from bpfload.maps import possible_cpus
    with bpfload.load(bpf_object("parity_cilium")) as obj:
        spec = obj.spec.maps["events"]
        assert (spec.key_size, spec.value_size, spec.max_entries) == (0, 0, 0)   # the spec is kept
        info = obj.maps["events"].info()
        assert (info.key_size, info.value_size, info.max_entries) == (4, 4, len(possible_cpus()))
        progs = obj.programs
        assert progs["count_len"].info().type == bpfload.ProgType.SOCKET_FILTER
        assert progs["steer"].info().type == bpfload.ProgType.SK_LOOKUP
        assert progs["xdp_named"].info().type == bpfload.ProgType.XDP
        got = []
        cpu = possible_cpus()[0]
        with PerfBuffer(obj.maps["events"], lambda c, d: got.append((c, bytes(d[:4])))) as pb, on_cpu(cpu):
            assert progs["count_len"].test_run(bytes(60)).retval == 0
            assert pb.consume() == 1
        assert got == [(cpu, struct.pack("=I", 46))]          # skb->len: 60 minus the MAC header
        assert _u64(obj.maps["seen"], 0) == 1
        ctx = bytearray(72)                                   # struct bpf_sk_lookup
        struct.pack_into("=II", ctx, 8, 2, 6)                 # AF_INET, IPPROTO_TCP
        assert progs["steer"].test_run(ctx=bytes(ctx)).retval == 1      # SK_PASS
        assert progs["xdp_named"].test_run(bytes(60)).retval == 2       # XDP_PASS


def test_linker_output_with_an_overridden_weak_function():
    """parity_weak.bpf.o (bpftool gen object of a weak and a strong pick()): the weak body
    stays in .text without a symbol, with a map relocation; the program runs the strong one."""
    from bpfload.elf import reader
    path = bpf_object("parity_weak")
    spec = reader.parse_object(path)
    assert sorted(spec.functions) == ["pick", "use_pick"]
    text = spec.functions["pick"]
    assert text.section == ".text" and text.offset > 0    # the weak body sits before it
    with bpfload.load(path) as obj:
        assert obj.programs["use_pick"].test_run(bytes(60)).retval == 46 * 10   # strong pick
        assert (_u64(obj.maps["calls"], 0), _u64(obj.maps["calls"], 1)) == (0, 1)


def test_iproute2_rollback_at_every_syscall(bpffs):
    """A failure at any bpf(2) call of an iproute2 load leaves no fd, no pin and no tc/
    directory behind (the pins and directories it made are removed)."""
    import errno
    from bpfload._core import syscall as core
    path = bpf_object("parity_iproute2")
    before = core.syscall_count()
    with bpfload.load(path, pin_root=bpffs, map_format="iproute2"):
        n = core.syscall_count() - before
    shutil.rmtree(bpffs / "tc")
    assert n >= 8
    fds = sorted(os.listdir("/proc/self/fd"))
    for k in range(1, n + 1):
        core.inject_fault(k, errno.ENOMEM)
        try:
            obj = bpfload.BpfObject.open(path, map_format="iproute2")
            with pytest.raises(bpfload.BpfError):
                obj.load(pin_root=bpffs)
            assert not core.fault_pending()
        finally:
            core.inject_fault(0, 0)
        assert sorted(os.listdir("/proc/self/fd")) == fds, f"call {k}: fd leak"
        assert not (bpffs / "tc").exists(), f"call {k}: pins or directories left"
