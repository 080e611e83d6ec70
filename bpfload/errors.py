"""The bpfload exception family.

Every error bpfload raises on purpose is a :class:`BpfError`.  Errors that
come from a bpf(2) command carry the command name, the errno and the name of
the map or program involved, so a user can act without re-running under
strace.  Where a Python builtin fits, the class mixes it in (``MapKeyError``
is also a ``KeyError``) so ordinary ``except`` clauses keep working.

This module is pure Python: the Cython core raises these classes through
:func:`from_errno`, the one place that converts an errno.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "BpfError",
    "SyscallError",
    "MapError",
    "MapKeyError",
    "MapFullError",
    "MapIndexError",
    "MapClosedError",
    "NotSupportedError",
    "PermissionDeniedError",
    "ElfError",
    "BtfError",
    "ObjectFileError",
    "ObjectNotFoundError",
    "ObjectIsADirectoryError",
    "ObjectPermissionError",
    "object_file_error",
    "MAX_OBJECT_SIZE",
    "NotFoundError",
    "IntRangeError",
    "LoadError",
    "CoreRelocationError",
    "PinError",
    "IncompatibleMapError",
    "from_errno",
    "ReaderClosedError",
    "ReaderBusyError",
    "MapTypeError",
    "EventConfigError",
    "CorruptRecordError",
    "AttachError",
    "attach_error",
]

# What the kernel means by an errno, per command family. Generic meanings
# first; a command may refine them in _HINTS below.
_HINTS = {
    _errno.EPERM: "operation not permitted: bpf(2) needs CAP_BPF (or root), "
    "and some program types need CAP_PERFMON/CAP_SYS_ADMIN",
    _errno.EACCES: "permission denied (the verifier refused the program, or the "
    "map is frozen/read-only for this operation)",
    _errno.E2BIG: "too big: max_entries reached, or attr/value size beyond the "
    "kernel's limit",
    _errno.EINVAL: "invalid argument: the kernel rejected the attributes "
    "(type/size/flags combination)",
    _errno.ENOENT: "no such element or object",
    _errno.EEXIST: "element already exists (BPF_NOEXIST)",
    _errno.ENOMEM: "out of memory (or memlock limit)",
    _errno.EBADF: "bad file descriptor",
    _errno.ENOTSUPP if hasattr(_errno, "ENOTSUPP") else 524: "operation not "
    "supported for this map or program type",
    524: "operation not supported for this map or program type (ENOTSUPP)",
    _errno.EOPNOTSUPP: "operation not supported for this map or program type",
    _errno.EBUSY: "resource busy",
    _errno.EFAULT: "bad address passed to the kernel",
    _errno.ENOSPC: "no space (the verifier log was too small, or a map is full)",
}


# Command-specific meanings, where the generic one would mislead.
_CMD_HINTS = {
    ("BPF_MAP_UPDATE_ELEM", _errno.EPERM): "the map is frozen (BPF_MAP_FREEZE) or read-only "
    "for user space (BPF_F_RDONLY), or CAP_BPF is missing",
    ("BPF_MAP_DELETE_ELEM", _errno.EPERM): "the map is frozen or read-only for user space",
    ("BPF_MAP_UPDATE_BATCH", _errno.EPERM): "the map is frozen or read-only for user space",
    ("BPF_MAP_FREEZE", _errno.EBUSY): "the map is already frozen, or writable mmaps exist",
    ("BPF_MAP_FREEZE", _errno.EPERM): "the map is already frozen",
    ("BPF_OBJ_PIN", _errno.EPERM): "the path is not on a bpffs mount (bpffs belongs at "
    "/sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf)",
    ("BPF_OBJ_GET", _errno.EACCES): "not a bpffs pin, or no permission to open it",
    ("BPF_OBJ_GET", _errno.ENOENT): "nothing is pinned there",
    ("BPF_PROG_TEST_RUN", _errno.EINTR): "interrupted by a signal after an unknown number "
    "of the repeated runs (their effects on maps stay); not retried",
    ("BPF_OBJ_GET", _errno.EPERM): "not a bpffs path (pins live on the bpffs at /sys/fs/bpf)",
    ("BPF_MAP_LOOKUP_ELEM", _errno.ENOSPC): "value_size is too small for what the kernel "
    "returns (SOCKMAP/SOCKHASH lookups return a u64 socket cookie: use value_size 8)",
    ("BPF_MAP_UPDATE_ELEM", _errno.E2BIG): "the map is full (max_entries reached), or the "
    "index is beyond max_entries of an array",
    ("BPF_PROG_LOAD", _errno.EACCES): "the verifier refused the program (see the log)",
    ("BPF_PROG_LOAD", _errno.E2BIG): "program too large/complex: too many instructions, or the "
    "verifier's complexity limit (1M processed instructions) was reached",
    ("BPF_PROG_LOAD", _errno.EINVAL): "the verifier or the kernel refused the program "
    "(see the log: a bad instruction, helper or attach type)",
    ("BPF_MAP_UPDATE_BATCH", _errno.EINVAL): "the kernel refused the batch (this map type or "
    "these elem_flags are not supported by UPDATE_BATCH)",
    ("BPF_MAP_LOOKUP_BATCH", _errno.ENOSPC): "the buffers are smaller than what the map holds "
    "(pass buffers for max_entries, or none)",
    ("BPF_MAP_LOOKUP_AND_DELETE_BATCH", _errno.ENOSPC): "the buffers are smaller than what the "
    "map holds (pass buffers for max_entries, or none); the entries returned are deleted",
}


class BpfError(Exception):
    """Root of every error bpfload raises deliberately."""


class SyscallError(BpfError, OSError):
    """A bpf(2) (or related) system call failed.

    Attributes: ``command`` (e.g. ``"BPF_MAP_UPDATE_ELEM"``), ``errno``,
    ``target`` (map or program name, may be None) and ``hint``.
    """

    def __init__(self, command: str, err: int, target: str | None = None, detail: str | None = None):
        self.command = command
        self.target = target
        self.hint = _CMD_HINTS.get((command, err)) or _HINTS.get(err, os.strerror(err))
        self.detail = detail
        msg = f"{command} failed"
        if target:
            msg += f" for {target!r}"
        msg += f": [Errno {err}] {_errno.errorcode.get(err, err if err != 524 else 'ENOTSUPP')}: {self.hint}"
        if detail:
            msg += f" ({detail})"
        OSError.__init__(self, err, msg)
        self.args = (msg,)

    def __str__(self) -> str:  # OSError.__str__ would prefix "[Errno n]" again
        return self.args[0]


class MapError(SyscallError):
    """A map command failed."""


class MapKeyError(MapError, KeyError):
    """The key is not in the map (ENOENT from lookup/delete)."""

    def __str__(self) -> str:
        return self.args[0]


class MapFullError(MapError):
    """The map has no room for a new element (E2BIG on update)."""


class MapIndexError(MapError, IndexError):
    """An array-like map was given an index at or beyond ``max_entries`` (E2BIG on update)."""


class NotSupportedError(SyscallError):
    """The kernel does not support this operation for this map/program type."""


class PermissionDeniedError(SyscallError, PermissionError):
    """EPERM/EACCES: missing capability, frozen map, or read-only access."""


class MapClosedError(BpfError, ValueError):
    """Use of a map or program whose file descriptor was closed."""


class ElfError(BpfError, ValueError):
    """A malformed or unsupported BPF ELF object.

    Attributes ``object``, ``section``, ``symbol`` and ``offset`` say where.
    """

    def __init__(self, message: str, *, object: str | None = None, section: str | None = None,
                 symbol: str | None = None, offset: int | None = None):
        self.object = object
        self.section = section
        self.symbol = symbol
        self.offset = offset
        where = []
        if object:
            where.append(f"object {object!r}")
        if section:
            where.append(f"section {section!r}")
        if symbol:
            where.append(f"symbol {symbol!r}")
        if offset is not None:
            where.append(f"offset {offset:#x}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full)


class BtfError(ElfError):
    """Malformed or unsupported BTF / BTF.ext data, or a failed CO-RE relocation."""


#: the largest object file bpfload reads (a BPF object is rarely over a few MiB)
MAX_OBJECT_SIZE = 256 << 20


class ObjectFileError(ElfError, OSError):
    """The object file cannot be read: missing, unreadable, not a regular file, too large.

    An :class:`ElfError` naming the path, and an :class:`OSError` with
    ``errno`` and ``filename``; for a missing file, a directory and a
    permission problem it is also the matching builtin
    (:class:`ObjectNotFoundError` is a :class:`FileNotFoundError`, ...), so
    ``except FileNotFoundError`` keeps working.  Make one with
    :func:`object_file_error`.
    """

    def __init__(self, message: str, path: str, err: int | None = None):
        self.object = path
        self.section = self.symbol = self.offset = None
        msg = f"{path}: {message}"
        OSError.__init__(self, err, msg, path)
        self.args = (msg,)

    def __str__(self) -> str:
        return self.args[0]


class ObjectNotFoundError(ObjectFileError, FileNotFoundError):
    """The object file does not exist."""


class ObjectIsADirectoryError(ObjectFileError, IsADirectoryError):
    """The object path is a directory."""


class ObjectPermissionError(ObjectFileError, PermissionError):
    """The object file may not be read."""


_OBJECT_FILE_ERRORS = {_errno.ENOENT: ObjectNotFoundError, _errno.ENOTDIR: ObjectNotFoundError,
                       _errno.EISDIR: ObjectIsADirectoryError,
                       _errno.EACCES: ObjectPermissionError, _errno.EPERM: ObjectPermissionError}


def object_file_error(path: str, err: int | None, message: str | None = None) -> ObjectFileError:
    """The :class:`ObjectFileError` (subclass by *err*) for object file *path*."""
    cls = _OBJECT_FILE_ERRORS.get(err or 0, ObjectFileError)
    return cls(message or (os.strerror(err) if err else "cannot read the object file"), path, err)


class NotFoundError(BpfError, KeyError):
    """No such program, map or variable (``obj["missing"]``, ``obj.rodata["nope"]``).

    Also a :class:`KeyError`, so ``except KeyError`` and ``in`` checks keep working.
    """

    def __str__(self) -> str:   # KeyError.__str__ would repr() the message
        return str(self.args[0]) if self.args else ""


class IntRangeError(BpfError, ValueError, OverflowError):
    """An int that does not fit the map's key or value size (the message names both).

    A ValueError; also an OverflowError, which is what it was before.
    """


class IncompatibleMapError(BpfError, ValueError):
    """A map to reuse (pin or explicit fd) does not match the definition."""


class PinError(BpfError, OSError):
    """Pinning or opening a pin in bpffs failed (path given in ``path``)."""

    def __init__(self, message: str, path: str, err: int | None = None):
        self.path = path
        super().__init__(err or 0, f"{message}: {path}")
        self.args = (f"{message}: {path}",)

    def __str__(self) -> str:
        return self.args[0]


class LoadError(SyscallError):
    """The kernel refused to load a program.

    ``program`` is the program name, ``log`` the complete verifier log;
    ``str()`` shows the tail of the log, where the verifier says why.
    """

    def __init__(self, program: str, err: int, log: str = "", command: str = "BPF_PROG_LOAD",
                 detail: str | None = None):
        self.program = program
        self.log = log
        summary = _summarize_log(log)
        if summary:
            detail = (detail + "; " if detail else "") + "verifier log (tail):\n" + summary
        super().__init__(command, err, program, detail)


class CoreRelocationError(LoadError):
    """The verifier reached an instruction the loader poisoned because a CO-RE relocation
    matched nothing in the kernel's BTF (libbpf's "failed to resolve CO-RE relocation").

    Beyond :class:`LoadError`'s attributes: ``insn`` (the instruction in the loaded
    program), ``kind`` (``"byte_off"``, ``"enumval_value"`` ...), ``relocation`` (the
    local type and access, ``"[7] struct s.a (0:0 @ offset 0)"``), ``index`` (the
    relocation's number in its section's BTF.ext records), ``function``, ``section``,
    ``source`` (the source line the verifier log shows, or None) and ``object``.
    ``log`` stays the kernel's complete log; ``str()`` shows it with the poisoned call
    rewritten as libbpf does.
    """

    def __init__(self, program: str, err: int, log: str, *, insn: int, kind: str,
                 relocation: str, index: int, function: str, section: str | None,
                 source: str | None, object: str | None, message: str, hint: str):
        self.program, self.log = program, log
        self.insn, self.kind, self.relocation, self.index = insn, kind, relocation, index
        self.function, self.section, self.source, self.object = function, section, source, object
        shown = log.replace(f"{insn}: (85) call unknown#195896080\ninvalid func unknown#195896080",
                            f"{insn}: <invalid CO-RE relocation>\nfailed to resolve CO-RE "
                            f"relocation <{kind}> {relocation}")
        detail = message + (f"; line info: {source}" if source else "") + f"; {hint}"
        where = ", ".join(x for x in (f"object {object!r}" if object else "",
                                      f"section {section!r}" if section else "") if x)
        if where:
            detail = where + ": " + detail
        summary = _summarize_log(shown)
        if summary:
            detail += "; verifier log (tail):\n" + summary
        SyscallError.__init__(self, "BPF_PROG_LOAD", err, program, detail)


# -- event readers and pollers (raised by bpfload._core.events / poll) ------

class ReaderClosedError(BpfError, ValueError):
    """Use of a ring buffer, perf buffer or poller after :meth:`close`."""


class ReaderBusyError(BpfError, RuntimeError):
    """``poll()``/``consume()`` entered while another one is running on the same
    reader (from a callback, or from another thread)."""


class MapTypeError(BpfError, TypeError):
    """The map's type does not fit this reader or poller (e.g. a HASH given to
    :class:`bpfload.RingBuffer`)."""


class EventConfigError(BpfError, ValueError):
    """An invalid reader or poller setting (``page_count`` not a power of two,
    a CPU beyond the map's ``max_entries``, a non-positive interval ...)."""


class CorruptRecordError(BpfError, RuntimeError):
    """A record header in a mapped ring is impossible (length beyond the ring):
    the ring is not what this reader expects."""


# -- global data through the mapping (bpfload.globaldata, bpfload._core.mapping) --

class ReadOnlyError(BpfError, PermissionError):
    """A write to memory user space may only read: ``.rodata`` / ``.kconfig`` after
    load (the map is frozen; programs see it as constants) or a read-only map mapping."""


# -- attach and links (raised by bpfload.link) ------------------------------

class AttachError(BpfError, OSError):
    """A program could not be attached, or a link operation was refused.

    Attributes: ``program`` (name), ``hook`` (what it was attached to, e.g.
    ``"tracepoint syscalls/sys_enter_getppid"``, ``"xdp on veth0"``),
    ``command`` (the syscall or bpf command that failed, or None when bpfload
    refused before any syscall), ``errno`` (0 when there is none) and
    ``hint`` (what to do).
    """

    def __init__(self, message: str, *, program: str | None = None, hook: str | None = None,
                 command: str | None = None, err: int = 0, hint: str | None = None,
                 op: str = "attach"):
        self.program = program
        self.hook = hook
        self.command = command
        self.hint = hint
        if op == "attach":
            where = " to ".join(x for x in (f"program {program!r}" if program else "", hook) if x)
            msg = f"cannot attach {where}: {message}" if where else message
        else:   # an operation on an existing link: "update", "detach", "pin" ...
            whose = f" of program {program!r}" if program else ""
            on = f" ({hook})" if hook else ""
            msg = f"cannot {op} the link{whose}{on}: {message}"
        if command:
            name = _errno.errorcode.get(err, "ENOTSUPP" if err == 524 else str(err))
            msg += f" ({command}: [Errno {err}] {name})" if err else f" ({command})"
        if hint:
            msg += f"; {hint}"
        super().__init__(err, msg)
        self.args = (msg,)

    def __str__(self) -> str:
        return self.args[0]


# What an errno means when attaching, per hook family ("*": any hook).
_ATTACH_HINTS = {
    ("*", _errno.EPERM): "attaching needs root, or CAP_BPF plus CAP_PERFMON (tracing) or "
    "CAP_NET_ADMIN (network hooks)",
    ("*", _errno.EACCES): "permission denied by the kernel or an LSM",
    ("*", _errno.EBADF): "the program or target fd is closed or not what the kernel expects",
    ("*", _errno.EINVAL): "the kernel refused the combination of program type, expected attach "
    "type and hook (was the program loaded for this hook?)",
    ("*", _errno.EOPNOTSUPP): "this kernel does not support this attach type or link operation",
    ("*", 524): "this kernel does not support this attach type or link operation",
    ("*", _errno.ENOENT): "no such hook (function, tracepoint, symbol or object)",
    ("*", _errno.ENODEV): "no such device or interface",
    ("*", _errno.EEXIST): "another program already holds this hook; detach it first "
    "(or attach with the flag that allows several programs)",
    ("*", _errno.EBUSY): "the hook is busy: another program or link is attached in a mode that "
    "excludes this one (e.g. XDP in another mode, or a netlink-attached program)",
    ("*", _errno.E2BIG): "too many programs are attached to this hook",
    ("*", _errno.ENOMEM): "out of memory (or memlock limit)",
    ("xdp", _errno.EEXIST): "another XDP program is attached to this interface in another mode "
    "(native and generic XDP exclude each other); detach it first",
    ("xdp", _errno.EBUSY): "another XDP program is attached to this interface: close its link, "
    "or, if it was attached without a link (e.g. by ip link), remove it with "
    "'ip link set dev IFACE xdp off'",
    ("xdp", _errno.EOPNOTSUPP): "the driver does not support this XDP mode (try mode='skb')",
    ("tracepoint", _errno.ENOENT): "no such tracepoint (see /sys/kernel/tracing/events)",
    ("kprobe", _errno.ENOENT): "no such kernel function, or it cannot be probed",
    ("uprobe", _errno.ENOENT): "no such file or symbol",
    ("uprobe", _errno.ESRCH): "no such process (the pid= given)",
    ("uprobe", _errno.EINVAL): "the kernel refused the probe: the offset is beyond the file or "
    "not in an executable mapping, or ref_ctr_offset is invalid",
    ("perf_event", _errno.ENOENT): "this PMU has no such event (check type and config)",
    ("perf_event", _errno.EINVAL): "the kernel refused the event attributes (type, config, or "
    "a sample_freq above kernel.perf_event_max_sample_rate)",
    ("perf_event", _errno.EACCES): "perf_event_open needs CAP_PERFMON (or root), or a lower "
    "kernel.perf_event_paranoid",
    ("tracepoint", _errno.EACCES): "perf_event_open needs CAP_PERFMON (or root) for tracepoints",
    ("netfilter", _errno.EINVAL): "invalid pf/hooknum/priority (priority must not be "
    "NF_IP_PRI_FIRST or NF_IP_PRI_LAST), or the hook does not exist",
    ("cgroup", _errno.EBADF): "the target is not a cgroup v2 directory (or the program fd is "
    "closed)",
    ("cgroup", _errno.EINVAL): "the program was not loaded for this cgroup attach type (its "
    "section, e.g. cgroup_skb/egress, sets the expected attach type), or the flags are invalid",
    ("cgroup", _errno.EPERM): "the cgroup already has a program attached without "
    "BPF_F_ALLOW_MULTI, or privileges are missing",
    ("iter", _errno.EACCES): "the program reads more of the map's key or value than the map "
    "has (check key/value sizes)",
    ("iter", _errno.EINVAL): "the program is not an iterator, or the iterator target needs "
    "(or does not take) a map, cgroup or task argument",
    ("iter", _errno.ENOLINK): "the iterator link is detached",
    ("netfilter", _errno.ERANGE): "the priority must lie strictly between NF_IP_PRI_FIRST and "
    "NF_IP_PRI_LAST (above NF_IP_PRI_CONNTRACK_DEFRAG with BPF_F_NETFILTER_IP_DEFRAG)",
    ("netfilter", _errno.EPROTO): "hooknum must be NF_INET_PRE_ROUTING (0) .. "
    "NF_INET_POST_ROUTING (4)",
    ("netfilter", _errno.EAFNOSUPPORT): "pf must be NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10)",
    ("tc", _errno.EEXIST): "a tc filter already has this priority and handle; pass another "
    "priority= (or remove that filter)",
    ("tc", _errno.EINVAL): "the kernel refused the cls_bpf filter: the priority is taken by a "
    "filter of another kind or protocol, or an 'ingress' qdisc stands where clsact should be",
    ("link", _errno.EINVAL): "this link kind does not support the operation, or the new "
    "program's type or attach type differs from the old one's",
    ("link", _errno.EOPNOTSUPP): "the kernel does not support this operation for this link kind",
    ("link", _errno.ENOLINK): "the link is already detached",
    ("struct_ops", _errno.EBUSY): "this struct_ops map was registered before (a map registers "
    "once): load the object again",
    ("struct_ops", _errno.EEXIST): "the subsystem already has an implementation of that name "
    "(e.g. a congestion control called the same): unregister it or rename this one",
    ("link", _errno.EPERM): "the new program does not match the link (BPF_F_REPLACE), or "
    "privileges are missing",
}


def attach_error(command: str, err: int, *, program: str | None = None, hook: str | None = None,
                 family: str = "*", message: str | None = None, op: str = "attach") -> AttachError:
    """Build the :class:`AttachError` for *command* failing with *err* while attaching.

    *family* selects hook-specific hints (``"xdp"``, ``"tracepoint"``,
    ``"kprobe"``, ``"uprobe"``, ``"netfilter"``, ``"link"`` for operations
    on an existing link); the generic meaning applies otherwise.  The one
    place an attach errno becomes an exception.
    """
    hint = _ATTACH_HINTS.get((family, err)) or _ATTACH_HINTS.get(("*", err)) or os.strerror(err)
    return AttachError(message or "the kernel refused", program=program, hook=hook,
                       command=command, err=err, hint=hint, op=op)


def _summarize_log(log: str, lines: int = 12) -> str:
    tail = [ln for ln in log.rstrip("\0\n ").splitlines() if ln.strip()][-lines:]
    return "\n".join("    " + ln for ln in tail)


_BY_ERRNO = {
    _errno.EPERM: PermissionDeniedError,
    _errno.EACCES: PermissionDeniedError,
    _errno.EOPNOTSUPP: NotSupportedError,
    524: NotSupportedError,
}


def from_errno(command: str, err: int, target: str | None = None, detail: str | None = None,
               *, is_map: bool = False) -> SyscallError:
    """Build the precise exception for *command* failing with *err*.

    The one place errno becomes an exception class.
    """
    if is_map:
        if err == _errno.ENOENT and command in ("BPF_MAP_LOOKUP_ELEM", "BPF_MAP_DELETE_ELEM",
                                               "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
                                               "BPF_MAP_DELETE_BATCH"):
            return MapKeyError(command, err, target, detail)
        if err == _errno.E2BIG and command in ("BPF_MAP_UPDATE_ELEM", "BPF_MAP_UPDATE_BATCH"):
            return MapFullError(command, err, target, detail)
    cls = _BY_ERRNO.get(err)
    if cls is not None:
        return cls(command, err, target, detail)
    return (MapError if is_map else SyscallError)(command, err, target, detail)
