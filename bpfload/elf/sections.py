"""ELF section name -> program type, expected attach type and load flags.

One table, :data:`SECTION_DEFS`, following libbpf's ``SEC()`` conventions
(libbpf.c ``section_defs``).  Patterns match the way libbpf matches them:

* ``"name"``  -- the section must be exactly ``name``;
* ``"name+"`` -- exactly ``name`` or ``name/<target>``;
* ``"name/"`` -- ``name/<target>`` only.

A name no rule matches is then tried the way cilium/ebpf names programs:
an exact pattern followed by ``/NAME`` (``socket/NAME``, ``sk_lookup/NAME``,
``xdp/NAME`` ...), with no attach target.  libbpf refuses those names; where
the two loaders disagree, libbpf's rule wins (this rule runs last).  cilium
also reads a bare prefix (``xdpfoo`` as ``xdp``); bpfload does not.

What follows the ``/`` is the attach target (``kprobe/do_sys_open`` ->
``do_sys_open``, ``tracepoint/syscalls/sys_enter_openat`` ->
``syscalls/sys_enter_openat``).  The first matching entry wins, so more
specific patterns come first.  A leading ``?`` (libbpf's "do not autoload"
marker) is ignored for classification.

Unknown program sections: :func:`classify` returns a :class:`SectionDef`
with ``prog_type=ProgType.UNSPEC`` and ``known=False`` by default (the ELF
parser keeps such programs so that the user can set ``ProgramSpec.type`` by
hand before loading; the loader refuses to load a program whose type is
still UNSPEC).  ``classify(name, strict=True)`` raises :class:`ElfError`
instead.  Well-known non-program sections (``.text``, data, maps, BTF,
DWARF, relocation and symbol sections) give ``None``.

No syscalls, no state.
"""
from __future__ import annotations

from .._records import FrozenRecord
from ..constants import AttachType, ProgType
from ..errors import ElfError

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

__all__ = [
    "BPF_F_SLEEPABLE",
    "BPF_F_XDP_HAS_FRAGS",
    "SectionDef",
    "SECTION_DEFS",
    "classify",
    "is_program_section_name",
]

#: ``prog_flags`` for BPF_PROG_LOAD (include/uapi/linux/bpf.h).
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5

# option letters used in the table below
_BTF = "btf"          # attach target is a BTF id (kernel function, LSM hook, iterator...)
_SLEEP = "sleepable"  # BPF_F_SLEEPABLE
_FRAGS = "frags"      # BPF_F_XDP_HAS_FRAGS

_P = ProgType
_A = AttachType

#: (pattern, program type, expected attach type or None, options)
SECTION_DEFS: Tuple[Tuple[str, ProgType, Optional[AttachType], Tuple[str, ...]], ...] = (
    ("socket", _P.SOCKET_FILTER, None, ()),
    ("sk_reuseport/migrate", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE, ()),
    ("sk_reuseport", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, ()),
    ("kprobe+", _P.KPROBE, None, ()),
    ("uprobe+", _P.KPROBE, None, ()),
    ("uprobe.s+", _P.KPROBE, None, (_SLEEP,)),
    ("kretprobe+", _P.KPROBE, None, ()),
    ("uretprobe+", _P.KPROBE, None, ()),
    ("uretprobe.s+", _P.KPROBE, None, (_SLEEP,)),
    ("kprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI, ()),
    ("kretprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI, ()),
    ("kprobe.session+", _P.KPROBE, _A.TRACE_KPROBE_SESSION, ()),
    ("uprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, ()),
    ("uretprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, ()),
    ("uprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, (_SLEEP,)),
    ("uretprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, (_SLEEP,)),
    ("uprobe.session+", _P.KPROBE, _A.TRACE_UPROBE_SESSION, ()),
    ("uprobe.session.s+", _P.KPROBE, _A.TRACE_UPROBE_SESSION, (_SLEEP,)),
    ("ksyscall+", _P.KPROBE, None, ()),
    ("kretsyscall+", _P.KPROBE, None, ()),
    ("usdt+", _P.KPROBE, None, ()),
    ("usdt.s+", _P.KPROBE, None, (_SLEEP,)),
    ("tc/ingress", _P.SCHED_CLS, _A.TCX_INGRESS, ()),
    ("tc/egress", _P.SCHED_CLS, _A.TCX_EGRESS, ()),
    ("tcx/ingress", _P.SCHED_CLS, _A.TCX_INGRESS, ()),
    ("tcx/egress", _P.SCHED_CLS, _A.TCX_EGRESS, ()),
    ("tc", _P.SCHED_CLS, None, ()),
    ("classifier", _P.SCHED_CLS, None, ()),
    ("action", _P.SCHED_ACT, None, ()),
    ("netkit/primary", _P.SCHED_CLS, _A.NETKIT_PRIMARY, ()),
    ("netkit/peer", _P.SCHED_CLS, _A.NETKIT_PEER, ()),
    ("tracepoint+", _P.TRACEPOINT, None, ()),
    ("tp+", _P.TRACEPOINT, None, ()),
    ("raw_tracepoint+", _P.RAW_TRACEPOINT, None, ()),
    ("raw_tp+", _P.RAW_TRACEPOINT, None, ()),
    ("raw_tracepoint.w+", _P.RAW_TRACEPOINT_WRITABLE, None, ()),
    ("raw_tp.w+", _P.RAW_TRACEPOINT_WRITABLE, None, ()),
    ("tp_btf+", _P.TRACING, _A.TRACE_RAW_TP, (_BTF,)),
    ("fentry+", _P.TRACING, _A.TRACE_FENTRY, (_BTF,)),
    ("fmod_ret+", _P.TRACING, _A.MODIFY_RETURN, (_BTF,)),
    ("fexit+", _P.TRACING, _A.TRACE_FEXIT, (_BTF,)),
    ("fentry.s+", _P.TRACING, _A.TRACE_FENTRY, (_BTF, _SLEEP)),
    ("fmod_ret.s+", _P.TRACING, _A.MODIFY_RETURN, (_BTF, _SLEEP)),
    ("fexit.s+", _P.TRACING, _A.TRACE_FEXIT, (_BTF, _SLEEP)),
    ("freplace+", _P.EXT, None, (_BTF,)),
    ("lsm+", _P.LSM, _A.LSM_MAC, (_BTF,)),
    ("lsm.s+", _P.LSM, _A.LSM_MAC, (_BTF, _SLEEP)),
    ("lsm_cgroup+", _P.LSM, _A.LSM_CGROUP, (_BTF,)),
    ("iter+", _P.TRACING, _A.TRACE_ITER, (_BTF,)),
    ("iter.s+", _P.TRACING, _A.TRACE_ITER, (_BTF, _SLEEP)),
    ("syscall", _P.SYSCALL, None, (_SLEEP,)),
    ("xdp.frags/devmap", _P.XDP, _A.XDP_DEVMAP, (_FRAGS,)),
    ("xdp/devmap", _P.XDP, _A.XDP_DEVMAP, ()),
    ("xdp.frags/cpumap", _P.XDP, _A.XDP_CPUMAP, (_FRAGS,)),
    ("xdp/cpumap", _P.XDP, _A.XDP_CPUMAP, ()),
    ("xdp.frags", _P.XDP, _A.XDP, (_FRAGS,)),
    ("xdp", _P.XDP, _A.XDP, ()),
    ("perf_event", _P.PERF_EVENT, None, ()),
    ("lwt_in", _P.LWT_IN, None, ()),
    ("lwt_out", _P.LWT_OUT, None, ()),
    ("lwt_xmit", _P.LWT_XMIT, None, ()),
    ("lwt_seg6local", _P.LWT_SEG6LOCAL, None, ()),
    ("sockops", _P.SOCK_OPS, _A.CGROUP_SOCK_OPS, ()),
    ("sk_skb/stream_parser", _P.SK_SKB, _A.SK_SKB_STREAM_PARSER, ()),
    ("sk_skb/stream_verdict", _P.SK_SKB, _A.SK_SKB_STREAM_VERDICT, ()),
    ("sk_skb/verdict", _P.SK_SKB, _A.SK_SKB_VERDICT, ()),
    ("sk_skb", _P.SK_SKB, None, ()),
    ("sk_msg", _P.SK_MSG, _A.SK_MSG_VERDICT, ()),
    ("lirc_mode2", _P.LIRC_MODE2, _A.LIRC_MODE2, ()),
    ("flow_dissector", _P.FLOW_DISSECTOR, _A.FLOW_DISSECTOR, ()),
    ("cgroup_skb/ingress", _P.CGROUP_SKB, _A.CGROUP_INET_INGRESS, ()),
    ("cgroup_skb/egress", _P.CGROUP_SKB, _A.CGROUP_INET_EGRESS, ()),
    ("cgroup/skb", _P.CGROUP_SKB, None, ()),
    ("cgroup/sock_create", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, ()),
    ("cgroup/sock_release", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE, ()),
    ("cgroup/sock", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, ()),
    ("cgroup/post_bind4", _P.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND, ()),
    ("cgroup/post_bind6", _P.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND, ()),
    ("cgroup/bind4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND, ()),
    ("cgroup/bind6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND, ()),
    ("cgroup/connect4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT, ()),
    ("cgroup/connect6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT, ()),
    ("cgroup/connect_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT, ()),
    ("cgroup/sendmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG, ()),
    ("cgroup/sendmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG, ()),
    ("cgroup/sendmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG, ()),
    ("cgroup/recvmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG, ()),
    ("cgroup/recvmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG, ()),
    ("cgroup/recvmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG, ()),
    ("cgroup/getpeername4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME, ()),
    ("cgroup/getpeername6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME, ()),
    ("cgroup/getpeername_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETPEERNAME, ()),
    ("cgroup/getsockname4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME, ()),
    ("cgroup/getsockname6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME, ()),
    ("cgroup/getsockname_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETSOCKNAME, ()),
    ("cgroup/sysctl", _P.CGROUP_SYSCTL, _A.CGROUP_SYSCTL, ()),
    ("cgroup/getsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, ()),
    ("cgroup/setsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT, ()),
    ("cgroup/dev", _P.CGROUP_DEVICE, _A.CGROUP_DEVICE, ()),
    ("struct_ops+", _P.STRUCT_OPS, None, ()),
    ("struct_ops.s+", _P.STRUCT_OPS, None, (_SLEEP,)),
    ("sk_lookup", _P.SK_LOOKUP, _A.SK_LOOKUP, ()),
    ("netfilter", _P.NETFILTER, _A.NETFILTER, ()),
)


class SectionDef(FrozenRecord):
    """What a program section name means.

    ``flags`` are BPF_PROG_LOAD ``prog_flags`` (:data:`BPF_F_SLEEPABLE`,
    :data:`BPF_F_XDP_HAS_FRAGS`).  ``needs_attach_btf``: the attach target
    names a kernel BTF object (function, LSM hook, tracepoint, iterator) that
    the loader must resolve to ``attach_btf_id``.  ``pattern`` is the table
    entry that matched; ``known`` is False for an unrecognized section
    (``prog_type`` UNSPEC, to be set by the user).
    """

    _fields = ("prog_type", "expected_attach_type", "attach_target", "flags", "needs_attach_btf",
               "pattern", "known")

    prog_type: ProgType
    expected_attach_type: Optional[AttachType]
    attach_target: Optional[str]
    flags: int
    needs_attach_btf: bool
    pattern: str
    known: bool

    def __init__(self, prog_type: ProgType, expected_attach_type: Optional[AttachType],
                 attach_target: Optional[str], flags: int = 0, needs_attach_btf: bool = False,
                 pattern: str = "", known: bool = True) -> None:
        _set = object.__setattr__
        _set(self, "prog_type", prog_type)
        _set(self, "expected_attach_type", expected_attach_type)
        _set(self, "attach_target", attach_target)
        _set(self, "flags", flags)
        _set(self, "needs_attach_btf", needs_attach_btf)
        _set(self, "pattern", pattern)
        _set(self, "known", known)

    @property
    def sleepable(self) -> bool:
        return bool(self.flags & BPF_F_SLEEPABLE)


# Sections that never hold programs.
_NON_PROGRAM_EXACT = frozenset({
    ".text", ".data", ".rodata", ".bss", ".maps", "maps", "license", "version", ".BTF",
    ".BTF.ext", ".symtab", ".strtab", ".shstrtab", ".llvm_addrsig", ".kconfig", ".ksyms",
    ".struct_ops", ".struct_ops.link", ".addr_space.1", ".comment", ".note.GNU-stack", "",
})
_NON_PROGRAM_PREFIXES = (".data.", ".rodata.", ".bss.", ".rel", ".debug", ".BTF", ".struct_ops.")


def _compile() -> List[Tuple[str, str, tuple]]:
    ordered: List[Tuple[str, str, tuple]] = []
    for pattern, ptype, atype, opts in SECTION_DEFS:
        flags = (BPF_F_SLEEPABLE if _SLEEP in opts else 0) | (BPF_F_XDP_HAS_FRAGS if _FRAGS in opts else 0)
        entry = (pattern, ptype, atype, flags, _BTF in opts)
        if pattern.endswith("+"):
            ordered.append(("+", pattern[:-1], entry))
        elif pattern.endswith("/"):
            ordered.append(("/", pattern, entry))
        else:
            ordered.append(("=", pattern, entry))
    return ordered


_ORDERED = _compile()


def is_program_section_name(name: str) -> bool:
    """False for the well-known non-program sections (.text, data, maps, BTF, debug...)."""
    return not (name in _NON_PROGRAM_EXACT or name.startswith(_NON_PROGRAM_PREFIXES))


def classify(section_name: str, *, strict: bool = False) -> Optional[SectionDef]:
    """Map an ELF section name to a :class:`SectionDef`.

    Returns None for a section that never holds programs (``.text``, data,
    maps, BTF, DWARF...).  For an unrecognized name returns an UNSPEC
    definition with ``known=False`` (the user may set the type before load),
    or with ``strict=True`` raises :class:`ElfError` naming the section.
    """
    found = _CLASSIFIED.get(section_name, _MISSING)
    if found is _MISSING:
        found = _classify(section_name)
        if len(_CLASSIFIED) < _CLASSIFIED_MAX:
            _CLASSIFIED[section_name] = found
    if found is not None and strict and not found.known:
        raise ElfError("unknown program section name; set the program type by hand",
                       section=section_name)
    return found


#: section name -> its (immutable) SectionDef: an object's sections are classified at
#: every open, and a process opens the same few objects again and again
_CLASSIFIED: dict = {}
_CLASSIFIED_MAX = 4096
_MISSING = object()


def _classify(section_name: str) -> Optional[SectionDef]:
    name = section_name[1:] if section_name.startswith("?") else section_name
    if not is_program_section_name(name):
        return None
    for how, pfx, entry in _ORDERED:
        if how == "=":
            if name != pfx:
                continue
            target = None
        elif how == "+":
            if name == pfx:
                target = None
            elif name.startswith(pfx) and name[len(pfx)] == "/":
                target = name[len(pfx) + 1:]
            else:
                continue
        else:  # "/"
            if not name.startswith(pfx):
                continue
            target = name[len(pfx):]
        pattern, ptype, atype, flags, btf = entry
        return SectionDef(ptype, atype, target if target else None, flags, btf, pattern, True)
    # cilium/ebpf's spelling: an exact pattern followed by "/NAME" ("socket/NAME",
    # "sk_lookup/NAME", "xdp/NAME"), the name ignored.  Tried only after every libbpf
    # rule, so no name libbpf accepts changes meaning.
    for how, pfx, entry in _ORDERED:
        if how == "=" and name.startswith(pfx + "/"):
            pattern, ptype, atype, flags, btf = entry
            return SectionDef(ptype, atype, None, flags, btf, pattern, True)
    return SectionDef(ProgType.UNSPEC, None, None, 0, False, "", False)
