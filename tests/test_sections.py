"""Section name -> program type table (bpfload.elf.sections).  No kernel needed."""
from __future__ import annotations

import pathlib

import pytest

from bpfload.constants import AttachType as A
from bpfload.constants import ProgType as P
from bpfload.errors import ElfError
from bpfload.elf.sections import (
    BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, SECTION_DEFS, SectionDef, classify, is_program_section_name,
)

BPF_DIR = pathlib.Path(__file__).resolve().parent.parent / "bpf"

S, F = BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS

# (section name, prog type, expected attach type, attach target, flags, needs attach BTF)
CASES = [
    ("socket", P.SOCKET_FILTER, None, None, 0, False),
    ("xdp", P.XDP, A.XDP, None, 0, False),
    ("xdp.frags", P.XDP, A.XDP, None, F, False),
    ("xdp/devmap", P.XDP, A.XDP_DEVMAP, None, 0, False),
    ("xdp/cpumap", P.XDP, A.XDP_CPUMAP, None, 0, False),
    ("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, None, F, False),
    ("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, None, F, False),
    ("tc", P.SCHED_CLS, None, None, 0, False),
    ("classifier", P.SCHED_CLS, None, None, 0, False),
    ("action", P.SCHED_ACT, None, None, 0, False),
    ("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS, None, 0, False),
    ("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, None, 0, False),
    ("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS, None, 0, False),
    ("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY, None, 0, False),
    ("kprobe/do_sys_open", P.KPROBE, None, "do_sys_open", 0, False),
    ("kprobe", P.KPROBE, None, None, 0, False),
    ("kretprobe/do_sys_open", P.KPROBE, None, "do_sys_open", 0, False),
    ("uprobe//bin/true:main", P.KPROBE, None, "/bin/true:main", 0, False),
    ("uretprobe//lib/libc.so.6:malloc", P.KPROBE, None, "/lib/libc.so.6:malloc", 0, False),
    ("uprobe.s//bin/true:main", P.KPROBE, None, "/bin/true:main", S, False),
    ("uretprobe.s//bin/true:main", P.KPROBE, None, "/bin/true:main", S, False),
    ("kprobe.multi/tcp_*", P.KPROBE, A.TRACE_KPROBE_MULTI, "tcp_*", 0, False),
    ("kretprobe.multi/tcp_*", P.KPROBE, A.TRACE_KPROBE_MULTI, "tcp_*", 0, False),
    ("kprobe.session/f", P.KPROBE, A.TRACE_KPROBE_SESSION, "f", 0, False),
    ("uprobe.multi//bin/true:m*", P.KPROBE, A.TRACE_UPROBE_MULTI, "/bin/true:m*", 0, False),
    ("ksyscall/openat", P.KPROBE, None, "openat", 0, False),
    ("usdt/a:b:c", P.KPROBE, None, "a:b:c", 0, False),
    ("tracepoint/syscalls/sys_enter_openat", P.TRACEPOINT, None, "syscalls/sys_enter_openat", 0, False),
    ("tp/sched/sched_switch", P.TRACEPOINT, None, "sched/sched_switch", 0, False),
    ("raw_tracepoint/sys_enter", P.RAW_TRACEPOINT, None, "sys_enter", 0, False),
    ("raw_tp/sys_enter", P.RAW_TRACEPOINT, None, "sys_enter", 0, False),
    ("raw_tracepoint.w/bpf_test_finish", P.RAW_TRACEPOINT_WRITABLE, None, "bpf_test_finish", 0, False),
    ("raw_tp.w/bpf_test_finish", P.RAW_TRACEPOINT_WRITABLE, None, "bpf_test_finish", 0, False),
    ("tp_btf/sched_switch", P.TRACING, A.TRACE_RAW_TP, "sched_switch", 0, True),
    ("fentry/do_nanosleep", P.TRACING, A.TRACE_FENTRY, "do_nanosleep", 0, True),
    ("fexit/do_nanosleep", P.TRACING, A.TRACE_FEXIT, "do_nanosleep", 0, True),
    ("fmod_ret/security_x", P.TRACING, A.MODIFY_RETURN, "security_x", 0, True),
    ("fentry.s/do_nanosleep", P.TRACING, A.TRACE_FENTRY, "do_nanosleep", S, True),
    ("fexit.s/f", P.TRACING, A.TRACE_FEXIT, "f", S, True),
    ("freplace/handler", P.EXT, None, "handler", 0, True),
    ("lsm/file_open", P.LSM, A.LSM_MAC, "file_open", 0, True),
    ("lsm.s/file_open", P.LSM, A.LSM_MAC, "file_open", S, True),
    ("lsm_cgroup/socket_bind", P.LSM, A.LSM_CGROUP, "socket_bind", 0, True),
    ("iter/task", P.TRACING, A.TRACE_ITER, "task", 0, True),
    ("iter.s/task", P.TRACING, A.TRACE_ITER, "task", S, True),
    ("perf_event", P.PERF_EVENT, None, None, 0, False),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, None, 0, False),
    ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, None, 0, False),
    ("cgroup/skb", P.CGROUP_SKB, None, None, 0, False),
    ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None, 0, False),
    ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None, 0, False),
    ("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, None, 0, False),
    ("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, None, 0, False),
    ("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, None, 0, False),
    ("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, None, 0, False),
    ("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, None, 0, False),
    ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, None, 0, False),
    ("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, None, 0, False),
    ("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, None, 0, False),
    ("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, None, 0, False),
    ("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, None, 0, False),
    ("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, None, 0, False),
    ("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, None, 0, False),
    ("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, None, 0, False),
    ("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, None, 0, False),
    ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, None, 0, False),
    ("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, None, 0, False),
    ("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, None, 0, False),
    ("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, None, 0, False),
    ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, None, 0, False),
    ("sk_skb", P.SK_SKB, None, None, 0, False),
    ("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, None, 0, False),
    ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, None, 0, False),
    ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, None, 0, False),
    ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, None, 0, False),
    ("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, None, 0, False),
    ("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, None, 0, False),
    ("lwt_in", P.LWT_IN, None, None, 0, False),
    ("lwt_out", P.LWT_OUT, None, None, 0, False),
    ("lwt_xmit", P.LWT_XMIT, None, None, 0, False),
    ("lwt_seg6local", P.LWT_SEG6LOCAL, None, None, 0, False),
    ("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, None, 0, False),
    ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, None, 0, False),
    ("struct_ops", P.STRUCT_OPS, None, None, 0, False),
    ("struct_ops/tcp_init", P.STRUCT_OPS, None, "tcp_init", 0, False),
    ("struct_ops.s/x", P.STRUCT_OPS, None, "x", S, False),
    ("syscall", P.SYSCALL, None, None, S, False),
    ("netfilter", P.NETFILTER, A.NETFILTER, None, 0, False),
]


@pytest.mark.parametrize("name,ptype,atype,target,flags,btf", CASES, ids=[c[0] for c in CASES])
def test_classify_known(name, ptype, atype, target, flags, btf):
    d = classify(name)
    assert isinstance(d, SectionDef)
    assert (d.prog_type, d.expected_attach_type, d.attach_target, d.flags, d.needs_attach_btf) == \
        (ptype, atype, target, flags, btf)
    assert d.known
    assert d.sleepable == bool(flags & S)
    # libbpf's "SEC(\"?name\")": same meaning, not autoloaded (the ELF parser handles autoload)
    assert classify("?" + name) == d


@pytest.mark.parametrize("name", [
    ".text", ".data", ".rodata", ".bss", ".data.tbl", ".rodata.str1.1", ".bss.x", ".maps", "maps",
    "license", "version", ".BTF", ".BTF.ext", ".rel.text", ".relxdp", ".debug_info", ".symtab",
    ".strtab", ".llvm_addrsig", ".kconfig", ".ksyms", ".struct_ops", ".struct_ops.link",
])
def test_non_program_sections(name):
    assert classify(name) is None
    assert classify(name, strict=True) is None
    assert not is_program_section_name(name)


# ("socket/extra", "sk_skb/other": cilium/ebpf's "PATTERN/NAME" spelling, see test_parity.py)
@pytest.mark.parametrize("name", ["weird", "kprobex", "xdpfoo", "xdp.frags.x",
                                  "cgroup/unknown", "tracepointx/a", "fentry.x/y"])
def test_unknown_is_overridable_or_strict_error(name):
    d = classify(name)
    assert d is not None and not d.known
    assert d.prog_type == P.UNSPEC and d.expected_attach_type is None and d.flags == 0
    with pytest.raises(ElfError) as ei:
        classify(name, strict=True)
    assert ei.value.section == name
    assert name in str(ei.value)


def test_prefix_rules():
    # "kprobe+": exactly "kprobe" or "kprobe/<target>"; "kprobe.multi" is its own entry
    assert classify("kprobe/").attach_target is None
    assert classify("kprobe.multi").expected_attach_type == A.TRACE_KPROBE_MULTI
    assert classify("kprobe.multi").attach_target is None
    assert classify("uprobe.s").flags == S
    # targets keep every later slash
    assert classify("tracepoint/a/b/c").attach_target == "a/b/c"


def _example_name(pattern: str) -> str:
    if pattern.endswith("+"):
        return pattern[:-1] + "/target"
    if pattern.endswith("/"):
        return pattern + "target"
    return pattern


@pytest.mark.parametrize("pattern", [d[0] for d in SECTION_DEFS])
def test_no_entry_is_shadowed(pattern):
    """Every table entry is reachable: an earlier, broader entry never hides it."""
    d = classify(_example_name(pattern))
    assert d.pattern == pattern


def test_table_has_unique_patterns():
    patterns = [d[0] for d in SECTION_DEFS]
    assert len(patterns) == len(set(patterns))


def test_sections_object_matches_table():
    from bpfload.elf import parse_object

    spec = parse_object(BPF_DIR / "sections.bpf.o")
    assert len(spec.programs) == 25
    for prog in spec.programs.values():
        d = classify(prog.section)
        assert d.known, prog.section
        assert (prog.type, prog.expected_attach_type, prog.attach_target, prog.flags) == \
            (d.prog_type, d.expected_attach_type, d.attach_target, d.flags)
    assert spec.programs["p_uprobe"].attach_target == "/bin/true:main"
    assert spec.programs["p_lsm"].type == P.LSM
    assert spec.programs["p_syscall"].flags == S
