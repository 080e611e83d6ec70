"""Network hooks: XDP, tc (tcx links or clsact/cls_bpf over netlink), netfilter,
socket filters and sockmap programs.

Each function takes a loaded :class:`bpfload.Program` (duck-typed: ``fd``,
``name``, ``type``, ``section``, ``expected_attach_type``) and returns the
:class:`bpfload.Link` that owns the attachment; each raises
:class:`bpfload.AttachError` naming the program and the hook, and closes
whatever it opened before raising.

=================  ==========================  =================  ==============
function           kernel mechanism            Link type          needs
=================  ==========================  =================  ==============
attach_xdp         BPF_LINK_CREATE BPF_XDP     XDP (a BPF link)   Linux 5.9
attach_tc          BPF_LINK_CREATE BPF_TCX_*   TCX (a BPF link)   Linux 6.6
                   else clsact + cls_bpf       TC_NETLINK         Linux 4.5
attach_netfilter   BPF_LINK_CREATE             NETFILTER          Linux 6.4
                   BPF_NETFILTER
attach_socket      setsockopt SO_ATTACH_BPF    SOCKET_FILTER      Linux 3.19
attach_sockmap     BPF_PROG_ATTACH on a map    PROG_ATTACH        Linux 4.17
=================  ==========================  =================  ==============
"""
from __future__ import annotations

import errno as _errno
import logging
import os
import socket
import stat
import weakref
from typing import Any, Optional, Tuple, Union

from .. import errors
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType, MapType, ProgType
from .link import Link

__all__ = ["attach_xdp", "attach_tc", "attach_netfilter", "attach_socket", "attach_sockmap",
           "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE",
           "NFPROTO_IPV4", "NFPROTO_IPV6", "NF_INET_PRE_ROUTING", "NF_INET_LOCAL_IN",
           "NF_INET_FORWARD", "NF_INET_LOCAL_OUT", "NF_INET_POST_ROUTING",
           "BPF_F_NETFILTER_IP_DEFRAG"]

log = logging.getLogger("bpfload.link")

XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_HW_MODE = 8
_XDP_MODES = {"auto": 0, "skb": XDP_FLAGS_SKB_MODE, "generic": XDP_FLAGS_SKB_MODE,
              "drv": XDP_FLAGS_DRV_MODE, "native": XDP_FLAGS_DRV_MODE, "hw": XDP_FLAGS_HW_MODE}

NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_FORWARD, NF_INET_LOCAL_OUT, \
    NF_INET_POST_ROUTING = range(5)
_NF_HOOKS = ("PRE_ROUTING", "LOCAL_IN", "FORWARD", "LOCAL_OUT", "POST_ROUTING")
BPF_F_NETFILTER_IP_DEFRAG = 1
_NF_IP_PRI_FIRST = -2 ** 31
_NF_IP_PRI_LAST = 2 ** 31 - 1
_NF_IP_PRI_CONNTRACK_DEFRAG = -400

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27

_TCX = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}

#: sockmap attach types and the program type each takes
_SOCKMAP_ATTACH = {
    AttachType.SK_MSG_VERDICT: ProgType.SK_MSG,
    AttachType.SK_SKB_STREAM_PARSER: ProgType.SK_SKB,
    AttachType.SK_SKB_STREAM_VERDICT: ProgType.SK_SKB,
    AttachType.SK_SKB_VERDICT: ProgType.SK_SKB,
}


def _type_name(prog: Any) -> str:
    return getattr(prog.type, "name", str(prog.type))


def _need_type(prog: Any, want: Tuple[ProgType, ...], hook: str, what: str) -> None:
    if prog.type not in want:
        names = "/".join(t.name for t in want)
        raise errors.AttachError(f"{what} takes {names} programs, not a {_type_name(prog)} "
                                 "program", program=prog.name, hook=hook)


def _interface(prog: Any, iface: Union[str, int], kind: str) -> Tuple[int, str]:
    """(ifindex, name) of *iface* (a name or an ifindex) in this network namespace."""
    if isinstance(iface, bool) or not isinstance(iface, (str, int)):
        raise errors.AttachError(f"iface must be an interface name or an ifindex, not "
                                 f"{type(iface).__name__}", program=prog.name, hook=kind)
    try:
        if isinstance(iface, int):
            return iface, socket.if_indextoname(iface)
        return socket.if_nametoindex(iface), iface
    except (OSError, ValueError, OverflowError):
        what = f"ifindex {iface}" if isinstance(iface, int) else repr(iface)
        raise errors.AttachError(f"no such interface {what} in this network namespace",
                                 program=prog.name, hook=f"{kind} on {iface}",
                                 err=_errno.ENODEV,
                                 hint="see 'ip link'; an interface in another network "
                                 "namespace is not visible here") from None


# -- XDP --------------------------------------------------------------------------

def attach_xdp(prog: Any, iface: Union[str, int], *, mode: str = "auto", flags: int = 0) -> Link:
    """Attach an XDP program to interface *iface* (a name or an ifindex) with an XDP link.

    *mode*: ``"auto"`` (the driver's native XDP when it has it, else
    generic), ``"skb"`` (generic, any device), ``"drv"`` (native only) or
    ``"hw"`` (offloaded); *flags* are further ``XDP_FLAGS_*`` bits.  The
    link detaches when closed; :meth:`bpfload.Link.update` swaps the
    program atomically.  Needs Linux 5.9 (XDP links).

    Raises :class:`bpfload.AttachError`: not an XDP program, no such
    interface, an unknown mode, another XDP program already on the
    interface (EBUSY/EEXIST), a mode the driver lacks (EOPNOTSUPP).
    """
    hook = f"xdp on {iface}"
    _need_type(prog, (ProgType.XDP,), hook, "attach_xdp()")
    if mode not in _XDP_MODES:
        raise errors.AttachError(f"unknown XDP mode {mode!r}; use one of "
                                 f"{', '.join(sorted(_XDP_MODES))}", program=prog.name, hook=hook)
    ifindex, name = _interface(prog, iface, "xdp")
    hook = f"xdp on {name}" + ("" if mode == "auto" else f" ({mode} mode)")
    try:
        fd = _sys.link_create(prog.fd, ifindex, AttachType.XDP, _XDP_MODES[mode] | flags,
                              target=prog.name)
    except errors.SyscallError as e:
        message = "the kernel refused"
        if e.errno in (_errno.EBUSY, _errno.EEXIST):
            message = f"another program holds the XDP hook of {name}"
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="xdp", message=message) from e
    return Link(fd, program=prog.name, type=LinkType.XDP, hook=hook)


# -- tc ---------------------------------------------------------------------------

def _tc_direction(prog: Any, direction: Optional[str]) -> str:
    if direction is None:
        at = prog.expected_attach_type
        if at == AttachType.TCX_EGRESS:
            return "egress"
        if at == AttachType.TCX_INGRESS:
            return "ingress"
        tail = (prog.section or "").lstrip("?").partition("/")[2]
        return "egress" if tail == "egress" else "ingress"
    if direction not in _TCX:
        raise errors.AttachError(f"direction must be 'ingress' or 'egress', not {direction!r}",
                                 program=prog.name, hook="tc")
    return direction


def attach_tc(prog: Any, iface: Union[str, int], *, direction: Optional[str] = None,
              netlink: Optional[bool] = None, priority: Optional[int] = None,
              handle: int = 1) -> Link:
    """Attach a tc (``SCHED_CLS``) program to the ingress or egress of *iface*.

    *direction*: ``"ingress"`` or ``"egress"``; when None the section says
    (``tcx/egress`` and ``tc/egress`` are egress, everything else ingress).
    By default a tcx link (BPF_LINK_CREATE BPF_TCX_INGRESS/EGRESS, Linux
    6.6; a :class:`bpfload.Link` of type TCX that can be updated and
    pinned).  When the kernel has no tcx (EINVAL), or with
    ``netlink=True``, the program goes in a direct-action ``cls_bpf``
    filter of the ``clsact`` qdisc over rtnetlink (Linux 4.5): the qdisc is
    added if absent, the filter gets *priority* (default: the lowest free
    one from 1) and *handle*; the Link (type TC_NETLINK, no fd) deletes
    exactly that filter when detached or closed, and the clsact qdisc too
    if this call added it and no filter remains in it.  ``netlink=False``
    never falls back.

    Raises :class:`bpfload.AttachError`: not a SCHED_CLS program, no such
    interface, a bad direction, the kernel's or netlink's refusal (with
    its errno; EEXIST: a filter already has that priority and handle).
    """
    hook = f"tc {direction or ''} on {iface}".replace("  ", " ")
    _need_type(prog, (ProgType.SCHED_CLS,), hook, "attach_tc()")
    direction = _tc_direction(prog, direction)
    ifindex, name = _interface(prog, iface, f"tc {direction}")
    hook = f"tc {direction} on {name}"
    if not netlink:
        try:
            fd = _sys.link_create(prog.fd, ifindex, _TCX[direction], target=prog.name)
        except errors.SyscallError as e:
            if netlink is not None or e.errno != _errno.EINVAL:
                raise errors.attach_error(e.command, e.errno, program=prog.name,
                                          hook=f"tcx {direction} on {name}", family="tcx") from e
            log.debug("tcx link for %s on %s refused (EINVAL): using clsact/cls_bpf",
                      prog.name, name)
        else:
            return Link(fd, program=prog.name, type=LinkType.TCX, hook=f"tcx {direction} on {name}")
    return _attach_tc_netlink(prog, ifindex, name, direction, priority, handle)


def _attach_tc_netlink(prog: Any, ifindex: int, name: str, direction: str,
                       priority: Optional[int], handle: int) -> Link:
    from .netlink import NetlinkError, RtNetlink, clsact_parent

    hook = f"tc {direction} on {name} (cls_bpf)"
    if priority is not None and not 1 <= priority <= 0xFFFF:
        raise errors.AttachError(f"tc priority must be 1..65535, not {priority}",
                                 program=prog.name, hook=hook)
    if not 1 <= handle <= 0xFFFFFFFF:
        raise errors.AttachError(f"tc filter handle must be 1..0xffffffff, not {handle}",
                                 program=prog.name, hook=hook)
    parent = clsact_parent(direction)
    try:
        nl = RtNetlink()
    except OSError as e:
        raise errors.attach_error("socket(AF_NETLINK)", e.errno or _errno.EIO, program=prog.name,
                                  hook=hook, family="tc") from None
    created = False
    step = "RTM_NEWQDISC clsact"
    try:
        created = nl.add_clsact(ifindex)
        step = "RTM_GETTFILTER"
        if priority is None:
            used = {f.priority for f in nl.filters(ifindex, parent)}
            priority = next(p for p in range(1, 0x10000) if p not in used)
        step = "RTM_NEWTFILTER bpf"
        nl.add_bpf_filter(ifindex, parent, priority, handle, prog.fd, prog.name)
    except NetlinkError as e:
        if created:
            try:
                nl.del_clsact(ifindex)
            except NetlinkError as e2:  # pragma: no cover - we just added it
                log.debug("removing the clsact qdisc of %s again: %s", name, e2)
        nl.close()
        message = e.extack or "the kernel refused"
        if e.errno == _errno.EEXIST:
            message = f"a filter already has priority {priority} handle {handle:#x}"
        raise errors.attach_error(step, e.errno, program=prog.name, hook=hook, family="tc",
                                  message=message) from None
    except BaseException:
        nl.close()
        raise
    hook = f"tc {direction} on {name} (cls_bpf prio {priority} handle {handle:#x})"
    prog_name = prog.name

    def detach() -> None:
        try:
            nl.del_filter(ifindex, parent, priority, handle)
        except NetlinkError as e:
            if e.errno not in (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL):
                raise errors.attach_error("RTM_DELTFILTER", e.errno, program=prog_name, hook=hook,
                                          family="tc", op="detach") from None
            return   # the filter, its qdisc or the interface is already gone
        if not created:
            return
        try:
            left = nl.filters(ifindex, clsact_parent("ingress")) + \
                nl.filters(ifindex, clsact_parent("egress"))
            if not left:
                nl.del_clsact(ifindex)
        except NetlinkError as e:
            log.debug("leaving the clsact qdisc of %s: %s", name, e)

    return Link(None, program=prog.name, type=LinkType.TC_NETLINK, hook=hook, detach=detach,
                holds=[nl])


# -- netfilter --------------------------------------------------------------------

def attach_netfilter(prog: Any, *, pf: int, hooknum: int, priority: int, flags: int = 0) -> Link:
    """Attach a netfilter program to hook *hooknum* of protocol family *pf*.

    *pf*: ``NFPROTO_IPV4`` (2) or ``NFPROTO_IPV6`` (10); *hooknum*:
    ``NF_INET_PRE_ROUTING`` (0) .. ``NF_INET_POST_ROUTING`` (4); *priority*:
    a signed 32-bit value strictly between ``NF_IP_PRI_FIRST`` and
    ``NF_IP_PRI_LAST`` (lower runs first); *flags*:
    ``BPF_F_NETFILTER_IP_DEFRAG`` (then priority must be above
    ``NF_IP_PRI_CONNTRACK_DEFRAG``, -400).  BPF_LINK_CREATE with
    BPF_NETFILTER: needs Linux 6.4 (defrag 6.6).

    Raises :class:`bpfload.AttachError`: not a NETFILTER program, an
    invalid pf/hooknum/priority/flags (checked before the syscall, with
    the errno the kernel would give), or the kernel's refusal.
    """
    hookname = _NF_HOOKS[hooknum] if isinstance(hooknum, int) and 0 <= hooknum < 5 else hooknum
    family = {NFPROTO_IPV4: "ipv4", NFPROTO_IPV6: "ipv6"}.get(pf, f"pf {pf}")
    hook = f"netfilter {family} {hookname} priority {priority}"
    _need_type(prog, (ProgType.NETFILTER,), hook, "attach_netfilter()")

    def bad(message: str, err: int) -> errors.AttachError:
        return errors.AttachError(message, program=prog.name, hook=hook, err=err)

    if pf not in (NFPROTO_IPV4, NFPROTO_IPV6):
        raise bad(f"pf must be NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10), not {pf!r}",
                  _errno.EAFNOSUPPORT)
    if isinstance(hooknum, bool) or not isinstance(hooknum, int) or not 0 <= hooknum < 5:
        raise bad(f"hooknum must be NF_INET_PRE_ROUTING (0) .. NF_INET_POST_ROUTING (4), "
                  f"not {hooknum!r}", _errno.EPROTO)
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not _NF_IP_PRI_FIRST < priority < _NF_IP_PRI_LAST:
        raise bad(f"priority must be an int strictly between NF_IP_PRI_FIRST ({_NF_IP_PRI_FIRST}) "
                  f"and NF_IP_PRI_LAST ({_NF_IP_PRI_LAST}), not {priority!r}", _errno.ERANGE)
    if not isinstance(flags, int) or flags & ~BPF_F_NETFILTER_IP_DEFRAG or flags < 0:
        raise bad(f"flags {flags!r}: only BPF_F_NETFILTER_IP_DEFRAG (1) is defined",
                  _errno.EOPNOTSUPP)
    if flags & BPF_F_NETFILTER_IP_DEFRAG and priority <= _NF_IP_PRI_CONNTRACK_DEFRAG:
        raise bad(f"with BPF_F_NETFILTER_IP_DEFRAG the priority must be above "
                  f"NF_IP_PRI_CONNTRACK_DEFRAG ({_NF_IP_PRI_CONNTRACK_DEFRAG}), not {priority}",
                  _errno.ERANGE)
    try:
        fd = _sys.link_create(prog.fd, 0, AttachType.NETFILTER,
                              netfilter=(pf, hooknum, priority, flags), target=prog.name)
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="netfilter") from e
    return Link(fd, program=prog.name, type=LinkType.NETFILTER, hook=hook)


# -- socket filters ---------------------------------------------------------------

def _setsockopt(fd: int, opt: int, value: int) -> None:
    """setsockopt(SOL_SOCKET, *opt*, *value*) on socket fd *fd* through a private dup."""
    dup = os.dup(fd)
    try:
        s = socket.socket(fileno=dup)
    except BaseException:
        os.close(dup)
        raise
    with s:
        s.setsockopt(socket.SOL_SOCKET, opt, value)


def attach_socket(prog: Any, sock: Any) -> Link:
    """Attach a socket filter program to *sock* (a socket object or an int fd) with
    ``setsockopt(SO_ATTACH_BPF)`` (Linux 3.19).

    The program sees each packet the socket receives and returns how many
    bytes of it to keep (0 drops it).  A socket has one filter: attaching
    replaces any earlier one.  Detaching (``Link.detach()``/``close()``)
    is ``SO_DETACH_BPF``.  The Link does not keep the socket open: it holds
    a weak reference to a socket object, or the fd number with the
    socket's inode for an int fd.  When the socket is closed first (or the
    fd number now names another file) there is nothing left to undo and
    detaching is a no-op.

    Raises :class:`bpfload.AttachError`: not a SOCKET_FILTER program, a
    closed fd or one that is not a socket, or the kernel's refusal.
    """
    hook = "socket"
    _need_type(prog, (ProgType.SOCKET_FILTER,), hook, "attach_socket()")
    ref = None
    if isinstance(sock, int) and not isinstance(sock, bool):
        fd = sock
    elif hasattr(sock, "fileno"):
        fd = sock.fileno()
        try:
            ref = weakref.ref(sock)
        except TypeError:   # an object without weakref support: track the fd alone
            ref = None
    else:
        raise errors.AttachError(f"expected a socket or an fd, not {type(sock).__name__}",
                                 program=prog.name, hook=hook)
    hook = f"socket fd {fd}"
    try:
        st = os.fstat(fd)
    except (OSError, ValueError):
        raise errors.AttachError("the socket is closed", program=prog.name, hook=hook,
                                 err=_errno.EBADF) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise errors.AttachError(f"fd {fd} is not a socket", program=prog.name, hook=hook,
                                 err=_errno.ENOTSOCK)
    try:
        _setsockopt(fd, SO_ATTACH_BPF, prog.fd)
    except OSError as e:
        raise errors.attach_error("setsockopt(SO_ATTACH_BPF)", e.errno or _errno.EINVAL,
                                  program=prog.name, hook=hook, family="socket") from None
    ident = (st.st_dev, st.st_ino)
    prog_name = prog.name

    def detach() -> None:
        cur = fd
        if ref is not None:
            s = ref()
            if s is None:
                return
            cur = s.fileno()
        try:
            now = os.fstat(cur)
        except (OSError, ValueError):
            return   # the socket is closed: its filter went with it
        if (now.st_dev, now.st_ino) != ident:
            return   # the fd number was reused for another file
        try:
            _setsockopt(cur, SO_DETACH_BPF, 0)
        except OSError as e:
            if e.errno == _errno.ENOENT:
                return   # no filter on the socket any more
            raise errors.attach_error("setsockopt(SO_DETACH_BPF)", e.errno or _errno.EINVAL,
                                      program=prog_name, hook=hook, family="socket",
                                      op="detach") from None

    return Link(None, program=prog.name, type=LinkType.SOCKET_FILTER, hook=hook, detach=detach)


# -- sockmap ----------------------------------------------------------------------

def attach_sockmap(prog: Any, map: Any, *, attach_type: Union[AttachType, int, None] = None) -> Link:
    """Attach an sk_msg/sk_skb program to a SOCKMAP or SOCKHASH with BPF_PROG_ATTACH.

    *map*: a :class:`bpfload.Map` or a map fd.  *attach_type*: defaults to
    the program's expected attach type (``sk_msg`` -> SK_MSG_VERDICT,
    ``sk_skb/stream_parser``, ``sk_skb/stream_verdict``,
    ``sk_skb/verdict``); a plain ``sk_skb`` section must pass it.  The
    program then runs for the sockets in the map.  The Link (type
    PROG_ATTACH, no link fd) holds duplicates of the program and map fds,
    so detaching (BPF_PROG_DETACH of exactly this program) works after the
    caller closed them; it also keeps the map alive until closed.  Needs
    Linux 4.17 (SK_MSG), 5.18 (SK_SKB_VERDICT).

    Raises :class:`bpfload.AttachError`: not an SK_MSG/SK_SKB program, an
    attach type that does not fit the program, a map that is not a
    SOCKMAP/SOCKHASH, or the kernel's refusal.
    """
    from ..maps import MapInfo, _as_fd, dup_fd

    hook = "sockmap"
    _need_type(prog, (ProgType.SK_MSG, ProgType.SK_SKB), hook, "attach_sockmap()")
    at = prog.expected_attach_type if attach_type is None else attach_type
    try:
        at = AttachType(at) if at is not None else None
    except ValueError:
        at = None
    if at not in _SOCKMAP_ATTACH:
        raise errors.AttachError(
            f"attach type {getattr(at, 'name', attach_type)!r} is not a sockmap attach type; pass "
            "attach_type=AttachType.SK_MSG_VERDICT, SK_SKB_STREAM_PARSER, SK_SKB_STREAM_VERDICT or "
            "SK_SKB_VERDICT", program=prog.name, hook=hook)
    if _SOCKMAP_ATTACH[at] != prog.type:
        raise errors.AttachError(f"attach type {at.name} takes {_SOCKMAP_ATTACH[at].name} "
                                 f"programs, not {_type_name(prog)}", program=prog.name, hook=hook)
    try:
        map_fd = _as_fd(map)
    except TypeError as e:
        raise errors.AttachError(str(e), program=prog.name, hook=hook) from None
    try:
        info = MapInfo.from_fd(map_fd, prog.name)
    except errors.BpfError as e:
        raise errors.AttachError(f"fd {map_fd} is not a BPF map", program=prog.name, hook=hook,
                                 err=getattr(e, "errno", 0) or _errno.EBADF) from None
    hook = f"{getattr(info.type, 'name', info.type)} map {info.name or info.id!r} ({at.name})"
    if info.type not in (MapType.SOCKMAP, MapType.SOCKHASH):
        raise errors.AttachError(f"a {getattr(info.type, 'name', info.type)} map is not a SOCKMAP "
                                 "or SOCKHASH", program=prog.name, hook=hook, err=_errno.EINVAL)
    pdup = FD(dup_fd(prog.fd), "program")
    try:
        mdup = FD(dup_fd(map_fd), "map")
    except BaseException:
        pdup.close()
        raise
    try:
        _sys.prog_attach(mdup.fileno(), pdup.fileno(), at, target=prog.name)
    except errors.SyscallError as e:
        mdup.close()
        pdup.close()
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="sockmap") from e
    except BaseException:
        mdup.close()
        pdup.close()
        raise
    prog_name = prog.name

    def detach() -> None:
        try:
            _sys.prog_detach(mdup.fileno(), pdup.fileno(), at, target=prog_name)
        except errors.SyscallError as e:
            if e.errno == _errno.ENOENT:
                return   # another program replaced this one: nothing of ours to undo
            raise errors.attach_error(e.command, e.errno, program=prog_name, hook=hook,
                                      family="sockmap", op="detach") from e

    return Link(None, program=prog.name, type=LinkType.PROG_ATTACH, hook=hook, detach=detach,
                holds=[pdup, mdup])
