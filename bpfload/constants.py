"""Kernel constants as IntEnums: map, program and attach types, and flags.

Values follow include/uapi/linux/bpf.h (Linux 6.18); names drop the
``BPF_MAP_TYPE_`` / ``BPF_PROG_TYPE_`` / ``BPF_`` prefixes.
"""
from __future__ import annotations

from ._enums import IntEnumBase, IntFlagBase, fast_enum


@fast_enum
class MapType(IntEnumBase):
    """``enum bpf_map_type``."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


@fast_enum
class ProgType(IntEnumBase):
    """``enum bpf_prog_type``."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


@fast_enum
class AttachType(IntEnumBase):
    """``enum bpf_attach_type``."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57


@fast_enum
class MapFlags(IntFlagBase):
    """``map_flags`` for BPF_MAP_CREATE."""

    NO_PREALLOC = 1 << 0
    NO_COMMON_LRU = 1 << 1
    NUMA_NODE = 1 << 2
    RDONLY = 1 << 3
    WRONLY = 1 << 4
    STACK_BUILD_ID = 1 << 5
    ZERO_SEED = 1 << 6
    RDONLY_PROG = 1 << 7
    WRONLY_PROG = 1 << 8
    CLONE = 1 << 9
    MMAPABLE = 1 << 10
    PRESERVE_ELEMS = 1 << 11
    INNER_MAP = 1 << 12
    LINK = 1 << 13
    PATH_FD = 1 << 14
    VTYPE_BTF_OBJ_FD = 1 << 15
    TOKEN_FD = 1 << 16
    SEGV_ON_FAULT = 1 << 17
    NO_USER_CONV = 1 << 18


@fast_enum
class UpdateFlags(IntFlagBase):
    """Flags for BPF_MAP_UPDATE_ELEM / batch ``elem_flags``."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


# Update flag shortcuts at module level, as libbpf and BCC users write them.
BPF_ANY = UpdateFlags.ANY
BPF_NOEXIST = UpdateFlags.NOEXIST
BPF_EXIST = UpdateFlags.EXIST
BPF_F_LOCK = UpdateFlags.F_LOCK


@fast_enum
class LinkType(IntEnumBase):
    """``enum bpf_link_type``, plus bpfload's kinds for attachments that are not BPF links.

    The values from 256 up are bpfload's own: attachments made without a
    kernel link object (a perf event with ``PERF_EVENT_IOC_SET_BPF``,
    ``SO_ATTACH_BPF``, ``BPF_PROG_ATTACH``, a tc filter over netlink).  Such
    a :class:`bpfload.Link` has no link id and cannot be pinned.
    """

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14
    # not kernel link types: attachments without a BPF link
    PERF_EVENT_IOCTL = 256
    SOCKET_FILTER = 257
    PROG_ATTACH = 258
    TC_NETLINK = 259

    @property
    def is_bpf_link(self) -> bool:
        """True for kernel link types (an fd and an id that can be pinned)."""
        return self.value < 256


@fast_enum
class PerfEventType(IntEnumBase):
    """``enum bpf_perf_event_type``: what a ``BPF_LINK_TYPE_PERF_EVENT`` link is attached to."""

    UNSPEC = 0
    UPROBE = 1
    URETPROBE = 2
    KPROBE = 3
    KRETPROBE = 4
    TRACEPOINT = 5
    EVENT = 6


@fast_enum
class PinType(IntEnumBase):
    """``pinning`` attribute of a map definition (libbpf's LIBBPF_PIN_*)."""

    NONE = 0
    BY_NAME = 1


#: Map types whose value is one slot per possible CPU.
PERCPU_MAP_TYPES = frozenset({
    MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
    MapType.PERCPU_CGROUP_STORAGE,
})

#: Map-in-map outer types: values are map fds on update and map ids on lookup.
MAP_IN_MAP_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})

#: Maps that take an fd as the value on update and return an id on lookup.
FD_VALUE_MAP_TYPES = MAP_IN_MAP_TYPES | {MapType.PROG_ARRAY}

#: Maps with no key (key_size must be 0): push/pop/peek interface.
KEYLESS_MAP_TYPES = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})

#: Array-like maps: every key in [0, max_entries) exists, delete is refused.
ARRAY_MAP_TYPES = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
    MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS,
})
