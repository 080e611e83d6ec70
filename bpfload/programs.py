"""Programs: :class:`Program`, one owner of one loaded BPF program fd.

Loading (with verifier-log growth) is :func:`load_program`; the loader calls
it with relocated instructions.  :meth:`Program.test_run` runs a loaded
program through BPF_PROG_TEST_RUN so callers (and the tests) can prove
what it does.
"""
from __future__ import annotations

import errno as _errno
import os
import struct

from . import errors
from ._records import FrozenRecord
from .pins import pin_fd, unpin_path
from ._core import syscall as _sys
from ._core.syscall import FD
from .constants import ProgType

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Optional, Union
    from typing_extensions import Buffer

    from .link.iter import IterLink
    from .link.link import Link

__all__ = ["Program", "ProgramInfo", "TestRunResult", "load_program"]

# struct bpf_prog_info up to attach_btf_id (Linux 6.18 layout), 232 bytes.
_PROG_INFO_SIZE = 232
_PI = {
    "type": (0, "I"), "id": (4, "I"), "tag": (8, "8s"), "jited_prog_len": (16, "I"),
    "xlated_prog_len": (20, "I"), "xlated_prog_insns": (32, "Q"), "load_time": (40, "Q"),
    "created_by_uid": (48, "I"), "nr_map_ids": (52, "I"), "map_ids": (56, "Q"),
    "name": (64, "16s"), "btf_id": (128, "I"), "nr_func_info": (144, "I"),
    "nr_line_info": (148, "I"), "run_time_ns": (192, "Q"), "run_cnt": (200, "Q"),
    "verified_insns": (216, "I"),
}

#: Program types that BPF_PROG_TEST_RUN drives with a context only (no packet).
CTX_ONLY_TYPES = frozenset({
    ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.SYSCALL,
    ProgType.TRACING, ProgType.STRUCT_OPS,
})

#: errnos with which the verifier refuses a program: worth a retry with a log.  Not E2BIG:
#: "program too large/complex" (too many instructions, or the verifier's complexity limit
#: after seconds of work): a second verification with a log costs as much again and the
#: log would only end with the instruction count.
_VERIFIER_ERRNOS = frozenset({_errno.EACCES, _errno.EINVAL, _errno.ERANGE,
                              _errno.EOPNOTSUPP, 524, _errno.ENOENT, _errno.EFAULT})

#: Program types BPF_PROG_TEST_RUN runs exactly once, with a context only.
_RUN_ONCE_TYPES = frozenset({ProgType.SYSCALL, ProgType.RAW_TRACEPOINT,
                             ProgType.RAW_TRACEPOINT_WRITABLE})

_LOG_START = 64 * 1024
_LOG_MAX = 16 * 1024 * 1024 - 1   # the kernel caps log_size below UINT32_MAX >> 8


class ProgramInfo(FrozenRecord):
    """What BPF_OBJ_GET_INFO_BY_FD reports for a program (a subset of ``bpf_prog_info``)."""

    _fields = ("type", "id", "tag", "name", "xlated_prog_len", "jited_prog_len", "nr_map_ids",
               "map_ids", "btf_id", "nr_func_info", "nr_line_info", "run_time_ns", "run_cnt",
               "verified_insns", "load_time", "created_by_uid")

    type: Union[ProgType, int]
    id: int
    tag: str
    name: str
    xlated_prog_len: int
    jited_prog_len: int
    nr_map_ids: int
    map_ids: tuple
    btf_id: int
    nr_func_info: int
    nr_line_info: int
    run_time_ns: int
    run_cnt: int
    verified_insns: int
    load_time: int
    created_by_uid: int

    def __init__(self, type: Union[ProgType, int], id: int, tag: str, name: str, xlated_prog_len: int,
                 jited_prog_len: int, nr_map_ids: int, map_ids: tuple, btf_id: int, nr_func_info: int,
                 nr_line_info: int, run_time_ns: int, run_cnt: int, verified_insns: int,
                 load_time: int, created_by_uid: int) -> None:
        _set = object.__setattr__
        _set(self, "type", type)
        _set(self, "id", id)
        _set(self, "tag", tag)
        _set(self, "name", name)
        _set(self, "xlated_prog_len", xlated_prog_len)
        _set(self, "jited_prog_len", jited_prog_len)
        _set(self, "nr_map_ids", nr_map_ids)
        _set(self, "map_ids", map_ids)
        _set(self, "btf_id", btf_id)
        _set(self, "nr_func_info", nr_func_info)
        _set(self, "nr_line_info", nr_line_info)
        _set(self, "run_time_ns", run_time_ns)
        _set(self, "run_cnt", run_cnt)
        _set(self, "verified_insns", verified_insns)
        _set(self, "load_time", load_time)
        _set(self, "created_by_uid", created_by_uid)

    @classmethod
    def from_fd(cls, fd: Union[int, FD], target: Optional[str] = None) -> "ProgramInfo":
        raw = _sys.obj_get_info(fd, _PROG_INFO_SIZE, target).ljust(_PROG_INFO_SIZE, b"\0")
        f = {k: struct.unpack_from("=" + fmt, raw, off)[0] for k, (off, fmt) in _PI.items()}
        try:
            f["type"] = ProgType(f["type"])
        except ValueError:
            pass
        map_ids: tuple = ()
        if f["nr_map_ids"]:
            map_ids = tuple(_sys.prog_map_ids(fd, f["nr_map_ids"]))
        return cls(type=f["type"], id=f["id"], tag=f["tag"].hex(),
                   name=f["name"].split(b"\0", 1)[0].decode(errors="replace"),
                   xlated_prog_len=f["xlated_prog_len"], jited_prog_len=f["jited_prog_len"],
                   nr_map_ids=f["nr_map_ids"], map_ids=map_ids, btf_id=f["btf_id"],
                   nr_func_info=f["nr_func_info"], nr_line_info=f["nr_line_info"],
                   run_time_ns=f["run_time_ns"], run_cnt=f["run_cnt"],
                   verified_insns=f["verified_insns"], load_time=f["load_time"],
                   created_by_uid=f["created_by_uid"])


class TestRunResult(FrozenRecord):
    """Outcome of BPF_PROG_TEST_RUN: the program's return value, output packet and context."""

    __test__ = False  # not a pytest class
    _fields = ("retval", "data", "duration_ns", "ctx")

    retval: int
    data: Optional[bytes]
    duration_ns: int
    ctx: Optional[bytes]

    def __init__(self, retval: int, data: Optional[bytes], duration_ns: int,
                 ctx: Optional[bytes] = None) -> None:
        _set = object.__setattr__
        _set(self, "retval", retval)
        _set(self, "data", data)
        _set(self, "duration_ns", duration_ns)
        _set(self, "ctx", ctx)


def _decode_log(buf: bytearray) -> str:
    return bytes(buf).split(b"\0", 1)[0].decode(errors="replace")


def load_program(prog_type: int, insns, *, name: str, license: str = "GPL",
                 expected_attach_type: Optional[int] = None, log_level: int = 0,
                 kern_version: int = 0, prog_flags: int = 0, btf_fd: int = 0,
                 func_info=None, func_info_rec_size: int = 0, line_info=None,
                 line_info_rec_size: int = 0, attach_btf_id: int = 0,
                 attach_btf_obj_fd: int = 0, attach_prog_fd: int = 0, fd_array=None,
                 section: Optional[str] = None, log_out: Optional[list] = None) -> FD:
    """BPF_PROG_LOAD with verifier-log handling -> an owned :class:`FD`.

    With ``log_level=0`` the first attempt runs without a log (fastest); if
    the verifier refuses (not E2BIG: program too large/complex), the load is
    retried once with ``log_level=1`` so the error carries the verifier's
    reason.  A log that did not fit (ENOSPC) is retried once with a buffer of
    exactly the size the kernel reports (``log_true_size``, Linux 6.4+; older
    kernels: the buffer grows from 64 KiB up to 16 MiB).  A failure with a
    complete log is never retried.  With *log_out* (a list) and
    ``log_level > 0``, the verifier's log of the successful load is appended
    to it.  Raises :class:`bpfload.LoadError` with the program name, errno
    and full log.
    """
    kw = dict(expected_attach_type=int(expected_attach_type or 0), prog_flags=prog_flags,
              kern_version=kern_version, prog_btf_fd=btf_fd, func_info=func_info,
              func_info_rec_size=func_info_rec_size, line_info=line_info,
              line_info_rec_size=line_info_rec_size, attach_btf_id=attach_btf_id,
              attach_btf_obj_fd=attach_btf_obj_fd, attach_prog_fd=attach_prog_fd,
              fd_array=fd_array)
    level = log_level
    size = _LOG_START
    log = None
    tried_plain = False
    exact = False
    while True:
        if level:
            log = bytearray(size)
        ret, true_size = _sys.prog_load(int(prog_type), insns, license, _kernel_prog_name(name),
                                        log_level=level, log_buf=log if level else None,
                                        with_log_true_size=True, **kw)
        if ret >= 0:
            fd = FD(ret, f"program {name!r}")
            if log_out is not None and level and log is not None:
                log_out.append(_decode_log(log))
            return fd
        err = -ret
        if level == 0 and not tried_plain and err in _VERIFIER_ERRNOS:
            tried_plain = True
            level = 1
            continue
        if level and err == _errno.ENOSPC and not exact and size < _LOG_MAX:
            if true_size > size:      # the kernel said how much it needs: one exact retry
                size = min(true_size, _LOG_MAX)
                exact = True
            else:                     # before Linux 6.4: grow
                size = min(size * 4, _LOG_MAX)
            continue
        text = _decode_log(log) if log is not None else ""
        detail = None
        if section:
            detail = f"section {section!r}"
        if err == _errno.EPERM:
            detail = ((detail + "; ") if detail else "") + (
                "the kernel refused this program type here (needs CAP_BPF/CAP_PERFMON/"
                "CAP_SYS_ADMIN, or the kernel forbids it, e.g. trampoline programs)")
        raise errors.LoadError(name, err, text, detail=detail)


def _kernel_prog_name(name: str) -> str:
    if name.isascii() and name.replace("_", "").replace(".", "").isalnum():
        return name[:15]    # nothing to replace (the common case): no generator per character
    out = "".join(c if (c.isalnum() or c in "_.") and c.isascii() else "_" for c in name)
    return out[:15]


class Program:
    """A loaded BPF program.

    Attributes: ``fd``, ``name`` (the function name), ``type``
    (:class:`bpfload.ProgType`), ``section``, ``tag`` (hex of the kernel's
    ``bpf_prog_info.tag``), ``id``.  Close with :meth:`close` or ``with``.
    """

    def __init__(self, fdobj: FD, name: str, prog_type, *, section: Optional[str] = None,
                 expected_attach_type=None, attach_target: Optional[str] = None,
                 verifier_log: Optional[str] = None):
        self._fd = fdobj
        #: the verifier's log of this program's load when it was loaded with log_level > 0
        #: (``obj.load(log_level=1)``), else None
        self.verifier_log = verifier_log
        #: what the section names after its prefix (``tracepoint/a/b`` -> ``a/b``)
        self.attach_target = attach_target
        self.name = name
        try:
            self.type = ProgType(prog_type)
        except ValueError:
            self.type = prog_type
        self.section = section
        self.expected_attach_type = expected_attach_type
        self._info: Optional[ProgramInfo] = None
        self._pin_path: Optional[str] = None

    @classmethod
    def from_fd(cls, fd: int, *, name: Optional[str] = None) -> "Program":
        """A Program for an existing program fd (duplicated: the caller keeps its fd).

        Raises :class:`bpfload.BpfError` when *fd* is not a BPF program.
        """
        from .maps import _as_fd, _fdinfo_kind, dup_fd
        src = fd  # keeps an fd owner passed as a temporary open until duplicated
        fd = _as_fd(src)
        if _fdinfo_kind(fd) != "prog":
            raise errors.BpfError(f"fd {fd} is not a BPF program")
        return cls._from_owned(FD(dup_fd(fd), "program"), name)

    @classmethod
    def from_id(cls, prog_id: int, *, name: Optional[str] = None) -> "Program":
        """Open the program with kernel id *prog_id*."""
        return cls._from_owned(_sys.get_fd_by_id("prog", prog_id), name)

    @classmethod
    def from_pin(cls, path: Union[str, "os.PathLike[str]"], *, name: Optional[str] = None) -> "Program":
        """Open the program pinned at *path* (BPF_OBJ_GET).

        Raises :class:`bpfload.PinError` (a BpfError) when nothing is pinned
        there or the pin is not a program (a map or link pin), ValueError for
        a NUL in *path*.
        """
        from .maps import _fdinfo_kind
        path = os.fspath(path)
        try:
            fdobj = _sys.obj_get(path)
        except errors.SyscallError as e:
            raise errors.PinError(f"cannot open pinned program ({e.hint})", path, e.errno) from e
        kind = _fdinfo_kind(fdobj.fileno())
        if kind != "prog":
            fdobj.close()
            raise errors.PinError(f"pinned object is not a program (it is a {kind})", path)
        p = cls._from_owned(fdobj, name)
        p._pin_path = path
        return p

    @classmethod
    def _from_owned(cls, fdobj: FD, name: Optional[str]) -> "Program":
        try:
            info = ProgramInfo.from_fd(fdobj.fileno(), name)
        except BaseException:
            fdobj.close()
            raise
        p = cls(fdobj, name or info.name, info.type)
        p._info = info
        return p

    # -- attributes -----------------------------------------------------------
    @property
    def fd(self) -> int:
        return self._fd.fileno()

    def fileno(self) -> int:
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def info(self) -> ProgramInfo:
        """Fresh ``bpf_prog_info`` from the kernel (run counts included)."""
        self._info = ProgramInfo.from_fd(self._fd, self.name)   # FD: held for the calls
        return self._info

    @property
    def id(self) -> int:
        return (self._info or self.info()).id

    @property
    def tag(self) -> str:
        """The kernel's program tag (hash of the accepted instructions, map refs masked)."""
        return (self._info or self.info()).tag

    # -- running --------------------------------------------------------------
    def test_run(self, data: "Buffer" = b"", *, repeat: int = 1, ctx: Optional["Buffer"] = None,
                 data_out_size: Optional[int] = None, flags: int = 0, cpu: int = 0) -> TestRunResult:
        """Run the program once (or *repeat* times) in the kernel with BPF_PROG_TEST_RUN.

        *data* is the input packet (XDP, tc, socket filter ...); *ctx* the
        context bytes (raw tracepoints and ``syscall`` programs take only a
        context).  Returns :class:`TestRunResult` with ``retval``, ``data``
        (the output packet), ``duration_ns`` (average per run) and ``ctx``.
        Raises :class:`bpfload.SyscallError` (EINVAL/ENOTSUPP when the
        program type cannot be test-run or the input is too short).
        """
        d = bytes(data) if data else None
        if d is None and ctx is None and self.type not in CTX_ONLY_TYPES:
            d = b""
        if self.type in _RUN_ONCE_TYPES:
            # The kernel runs these once and refuses repeat, data and ctx_out
            # (raw tracepoints accept only BPF_F_TEST_RUN_ON_CPU as a flag).
            # A syscall program writes its context back into the ctx_in
            # buffer: hand the kernel a private copy (never an immutable
            # bytes object) and copy it back.
            if repeat > 1 or d or (flags and self.type == ProgType.SYSCALL):
                raise ValueError(f"program {self.name!r}: {self.type.name} programs run once "
                                 "and take only ctx (no data or repeat)")
            buf = bytearray(ctx or b"")
            retval, dur, _, _ = _sys.prog_test_run(self._fd, None, buf if buf else None, repeat=0,
                                                   ctx_out_size=0, flags=flags, cpu=cpu,
                                                   target=self.name)
            if ctx is not None and isinstance(ctx, (bytearray, memoryview)) and \
                    not getattr(ctx, "readonly", False):
                ctx[:] = buf
            return TestRunResult(retval=retval, data=None, duration_ns=dur, ctx=bytes(buf))
        retval, dur, out, cout = _sys.prog_test_run(
            self._fd, d, ctx, repeat=repeat, flags=flags, cpu=cpu,
            data_out_size=-1 if data_out_size is None else data_out_size, target=self.name)
        return TestRunResult(retval=retval, data=out, duration_ns=dur, ctx=cout)

    # -- attaching -------------------------------------------------------------
    # Each returns a bpfload.Link that owns the attachment; the code is in
    # bpfload.link.  All raise bpfload.AttachError with the program, the hook
    # and a hint.

    def attach(self, **kw: Any) -> "Link":
        """Attach where the section name says (libbpf's conventions) -> :class:`bpfload.Link`.

        Keyword arguments supply what the section cannot: ``iface`` (xdp,
        tc), ``cgroup``, ``sock`` (socket filters), ``map`` (sk_msg/sk_skb;
        iterators over a map), ``pid`` (uprobes), ``pfd`` or
        ``type``/``config`` (perf_event), ``pf``/``hooknum``/``priority``
        (netfilter), plus the options of the explicit method.  See
        :mod:`bpfload.link.attach` for the table.
        """
        from .link.attach import attach
        return attach(self, **kw)

    def attach_tracepoint(self, category: str, name: str, **kw: Any) -> "Link":
        """Attach to the tracepoint CATEGORY/NAME (perf event on its tracefs id)."""
        from .link.tracing import attach_tracepoint
        return attach_tracepoint(self, category, name, **kw)

    def attach_raw_tracepoint(self, name: str, **kw: Any) -> "Link":
        """Attach to the raw tracepoint *name* (BPF_RAW_TRACEPOINT_OPEN)."""
        from .link.tracing import attach_raw_tracepoint
        return attach_raw_tracepoint(self, name, **kw)

    def attach_trace(self, **kw: Any) -> "Link":
        """Attach a tp_btf/fentry/fexit/fmod_ret/lsm program at its attach_btf_id."""
        from .link.tracing import attach_trace
        return attach_trace(self, **kw)

    def attach_kprobe(self, func: str, *, retprobe: bool = False, offset: int = 0,
                      **kw: Any) -> "Link":
        """Attach to kernel function *func* (kprobe PMU, else tracefs kprobe_events)."""
        from .link.tracing import attach_kprobe
        return attach_kprobe(self, func, retprobe=retprobe, offset=offset, **kw)

    def attach_uprobe(self, binary: Union[str, "os.PathLike[str]"], symbol: Optional[str] = None, *,
                      offset: int = 0, retprobe: bool = False, pid: int = -1, **kw: Any) -> "Link":
        """Attach to *symbol* (+*offset*) in *binary* (a path, or a library name like ``"c"``)."""
        from .link.uprobe import attach_uprobe
        return attach_uprobe(self, binary, symbol, offset=offset, retprobe=retprobe, pid=pid, **kw)

    def attach_usdt(self, binary: Union[str, "os.PathLike[str]"], provider: str, name: str, *,
                    pid: int = -1, cookie: int = 0, **kw: Any) -> "Link":
        """Attach to every site of USDT probe *provider*:*name* in *binary* (usdt.bpf.h's
        argument specs filled in; ``bpf_usdt_cookie()`` returns *cookie*) -> one
        :class:`bpfload.Link`.  Raises :class:`bpfload.AttachError` (no such probe, with the
        binary's probes in the hint).  Linux 5.15+ (one uprobe_multi link on 6.6+).  See
        :func:`bpfload.link.usdt.attach_usdt`."""
        from .link.usdt import attach_usdt
        return attach_usdt(self, binary, provider, name, pid=pid, cookie=cookie, **kw)

    def attach_perf_event(self, pfd: Optional[int] = None, **kw: Any) -> "Link":
        """Attach to the perf event fd *pfd*, or open one event per CPU from ``type``/``config``."""
        from .link.tracing import attach_perf_event
        return attach_perf_event(self, pfd, **kw)

    def attach_xdp(self, iface: Union[str, int], *, mode: str = "auto", **kw: Any) -> "Link":
        """Attach to the XDP hook of *iface* (a name or an ifindex) with an XDP link."""
        from .link.net import attach_xdp
        return attach_xdp(self, iface, mode=mode, **kw)

    def attach_tc(self, iface: Union[str, int], *, direction: Optional[str] = None,
                  **kw: Any) -> "Link":
        """Attach to tc ingress/egress of *iface* (tcx link; clsact + cls_bpf over netlink
        on kernels without tcx).  *direction* defaults to the section's (``tcx/egress``:
        egress; plain ``tc``: ingress)."""
        from .link.net import attach_tc
        return attach_tc(self, iface, direction=direction, **kw)

    def attach_cgroup(self, cgroup: Union[str, int, "os.PathLike[str]"], *, attach_type: Any = None,
                      **kw: Any) -> "Link":
        """Attach to a cgroup v2 (path or fd) at the section's attach type (or *attach_type*)."""
        from .link.cgroup import attach_cgroup
        return attach_cgroup(self, cgroup, attach_type=attach_type, **kw)

    def attach_socket(self, sock: Any) -> "Link":
        """Attach a socket filter to *sock* (a socket or fd) with SO_ATTACH_BPF."""
        from .link.net import attach_socket
        return attach_socket(self, sock)

    def attach_sockmap(self, map: Any, *, attach_type: Any = None) -> "Link":
        """Attach an sk_msg/sk_skb program to a SOCKMAP/SOCKHASH (BPF_PROG_ATTACH)."""
        from .link.net import attach_sockmap
        return attach_sockmap(self, map, attach_type=attach_type)

    def attach_netfilter(self, *, pf: int, hooknum: int, priority: int, flags: int = 0) -> "Link":
        """Attach to a netfilter hook (BPF_LINK_CREATE, BPF_NETFILTER)."""
        from .link.net import attach_netfilter
        return attach_netfilter(self, pf=pf, hooknum=hooknum, priority=priority, flags=flags)

    def attach_iter(self, *, map: Any = None, cgroup: Any = None, task: Optional[int] = None,
                    **kw: Any) -> "IterLink":
        """Create an iterator link; ``link.read()`` returns one pass of its output."""
        from .link.iter import attach_iter
        return attach_iter(self, map=map, cgroup=cgroup, task=task, **kw)

    # -- pins / lifetime ------------------------------------------------------
    def pin(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Pin the program at *path* in a bpffs."""
        self._pin_path = pin_fd(self._fd, path, f"program {self.name!r}")

    def unpin(self) -> None:
        """Remove the pin this program was pinned at (it lives on while fds or links hold it).

        Raises :class:`bpfload.PinError` when it is not pinned or the pin
        cannot be removed (as :meth:`bpfload.Map.unpin`).
        """
        unpin_path(self._pin_path, f"program {self.name!r}")
        self._pin_path = None

    @property
    def pin_path(self) -> Optional[str]:
        return self._pin_path

    def close(self) -> None:
        self._fd.close()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, ProgType) else self.type
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<Program {self.name!r} {t} section={self.section!r} {state}>"
