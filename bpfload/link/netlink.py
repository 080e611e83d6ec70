"""rtnetlink for tc: the clsact qdisc and cls_bpf filters, over an AF_NETLINK socket.

What :func:`bpfload.link.net.attach_tc` needs on kernels without tcx links
(before Linux 6.6), or when asked for the netlink path: add/delete the
``clsact`` qdisc, add/delete a direct-action ``bpf`` filter at a given
priority and handle, and list the filters of a clsact hook.  Pure Python
(``socket`` and ``struct``); no ``tc`` binary.

The socket lives in the network namespace of the thread that opened it;
:class:`RtNetlink` keeps it open so a later delete reaches the same
namespace.  Errors are :class:`NetlinkError` (an ``OSError`` with the
errno and the kernel's extended-ack message when it sent one).
"""
from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from typing import Dict, Iterator, List, Optional, Tuple

__all__ = ["NetlinkError", "RtNetlink", "TcFilter", "TC_H_CLSACT", "TC_H_MIN_INGRESS",
           "TC_H_MIN_EGRESS", "clsact_parent"]

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200   # in an NLMSG_ERROR reply
NLMSGERR_ATTR_MSG = 1

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_FLAG_ACT_DIRECT = 1

TC_H_CLSACT = 0xFFFFFFF1          # == TC_H_INGRESS
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
CLSACT_HANDLE = 0xFFFF0000
ETH_P_ALL = 0x0003

_TIMEOUT = 10.0   # seconds to wait for the kernel's answer (it answers at once)
_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")
_NLATTR = struct.Struct("=HH")


def clsact_parent(direction: str) -> int:
    """The parent handle of clsact's ingress (``ffff:fff2``) or egress (``ffff:fff3``) hook."""
    minor = TC_H_MIN_INGRESS if direction == "ingress" else TC_H_MIN_EGRESS
    return (TC_H_CLSACT & 0xFFFF0000) | minor


class NetlinkError(OSError):
    """A netlink request the kernel refused: ``errno`` and the kernel's message (``extack``)."""

    def __init__(self, err: int, what: str, extack: Optional[str] = None):
        self.extack = extack
        msg = f"{what}: {os.strerror(err)}"
        if extack:
            msg += f" ({extack})"
        super().__init__(err, msg)


class TcFilter(Tuple[int, int, int, int, str]):
    """One filter from a dump: ``(parent, priority, protocol, handle, kind)``."""

    __slots__ = ()

    def __new__(cls, parent: int, priority: int, protocol: int, handle: int, kind: str):
        return super().__new__(cls, (parent, priority, protocol, handle, kind))

    parent = property(lambda self: self[0])
    priority = property(lambda self: self[1])
    protocol = property(lambda self: self[2])
    handle = property(lambda self: self[3])
    kind = property(lambda self: self[4])


def _attr(atype: int, payload: bytes) -> bytes:
    n = _NLATTR.size + len(payload)
    return _NLATTR.pack(n, atype) + payload + b"\0" * (-n % 4)


def _attrs(buf: bytes, off: int = 0) -> Iterator[Tuple[int, bytes]]:
    while off + _NLATTR.size <= len(buf):
        n, atype = _NLATTR.unpack_from(buf, off)
        if n < _NLATTR.size:
            break
        yield atype & 0x3FFF, buf[off + _NLATTR.size: off + n]
        off += (n + 3) & ~3


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


class RtNetlink:
    """An rtnetlink socket (NETLINK_ROUTE) in the caller's network namespace.

    A context manager; :meth:`close` closes the socket.  Each request waits
    for the kernel's acknowledgement and raises :class:`NetlinkError` on a
    refusal.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        try:
            self._sock.bind((0, 0))
            self._sock.settimeout(_TIMEOUT)
            try:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:   # pragma: no cover - kernels before 4.12: no messages
                pass
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def __enter__(self) -> "RtNetlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------
    def _request(self, mtype: int, flags: int, body: bytes, what: str) -> List[Tuple[int, bytes]]:
        """Send one request; return the (type, payload) of every reply before the ack/done."""
        self._seq += 1
        seq = self._seq
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags | NLM_F_REQUEST, seq, 0) + body
        self._sock.sendto(msg, (0, 0))
        out: List[Tuple[int, bytes]] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except socket.timeout:
                raise NetlinkError(_errno.ETIMEDOUT, f"{what}: no answer from the kernel") from None
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                n, rtype, rflags, rseq, _ = _NLMSGHDR.unpack_from(data, off)
                if n < _NLMSGHDR.size:
                    raise NetlinkError(_errno.EPROTO, f"{what}: truncated netlink reply")
                payload = data[off + _NLMSGHDR.size: off + n]
                off += (n + 3) & ~3
                if rseq != seq:
                    continue   # a stale reply to an earlier request
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload, 0)[0]
                    if err == 0:
                        return out
                    raise NetlinkError(err, what, self._extack(payload, rflags))
                out.append((rtype, payload))
                if not rflags & NLM_F_MULTI:
                    return out

    @staticmethod
    def _extack(payload: bytes, flags: int) -> Optional[str]:
        if not flags & NLM_F_ACK_TLVS:
            return None
        # the error code, then the request's header (its payload too unless capped)
        inner_len = _NLMSGHDR.unpack_from(payload, 4)[0]
        off = 4 + (_NLMSGHDR.size if flags & 0x100 else inner_len)   # NLM_F_CAPPED
        for atype, val in _attrs(payload, (off + 3) & ~3):
            if atype == NLMSGERR_ATTR_MSG:
                return _cstr(val) or None
        return None

    # -- qdiscs ------------------------------------------------------------------
    def add_clsact(self, ifindex: int) -> bool:
        """Add the clsact qdisc to *ifindex*: True when added, False when it was already there.

        Raises :class:`NetlinkError` (ENODEV: no such interface; EEXIST is
        not an error here).
        """
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0) + \
            _attr(TCA_KIND, b"clsact\0")
        try:
            self._request(RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                          "RTM_NEWQDISC clsact")
        except NetlinkError as e:
            if e.errno == _errno.EEXIST:
                return False
            raise
        return True

    def del_clsact(self, ifindex: int) -> None:
        """Delete the clsact qdisc of *ifindex* (and every filter in it)."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0) + \
            _attr(TCA_KIND, b"clsact\0")
        self._request(RTM_DELQDISC, NLM_F_ACK, body, "RTM_DELQDISC clsact")

    def qdiscs(self, ifindex: int) -> List[Tuple[int, int, str]]:
        """``(handle, parent, kind)`` of each qdisc on *ifindex*."""
        body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        out = []
        for _, payload in self._request(RTM_GETQDISC, NLM_F_DUMP, body, "RTM_GETQDISC"):
            _, idx, handle, parent, _ = _TCMSG.unpack_from(payload, 0)
            if idx != ifindex:
                continue
            kinds = dict(_attrs(payload, _TCMSG.size))
            out.append((handle, parent, _cstr(kinds.get(TCA_KIND, b""))))
        return out

    # -- filters -----------------------------------------------------------------
    @staticmethod
    def _filter_msg(ifindex: int, parent: int, priority: int, handle: int,
                    protocol: int = ETH_P_ALL) -> bytes:
        info = ((priority & 0xFFFF) << 16) | socket.htons(protocol)
        return _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)

    def add_bpf_filter(self, ifindex: int, parent: int, priority: int, handle: int, prog_fd: int,
                       name: str) -> None:
        """Add a direct-action cls_bpf filter running *prog_fd* (NLM_F_EXCL: never replaces).

        Raises :class:`NetlinkError` (EEXIST: a filter already has this
        priority and handle; EINVAL: no clsact qdisc, or the priority is
        taken by another protocol or kind).
        """
        opts = (_attr(TCA_BPF_FD, struct.pack("=I", prog_fd)) +
                _attr(TCA_BPF_NAME, name.encode()[:255] + b"\0") +
                _attr(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
        body = self._filter_msg(ifindex, parent, priority, handle) + _attr(TCA_KIND, b"bpf\0") + \
            _attr(TCA_OPTIONS, opts)
        self._request(RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                      "RTM_NEWTFILTER bpf")

    def del_filter(self, ifindex: int, parent: int, priority: int, handle: int,
                   kind: str = "bpf") -> None:
        """Delete exactly the filter (*parent*, *priority*, *handle*) of *kind*."""
        body = self._filter_msg(ifindex, parent, priority, handle) + \
            _attr(TCA_KIND, kind.encode() + b"\0")
        self._request(RTM_DELTFILTER, NLM_F_ACK, body, "RTM_DELTFILTER")

    def filters(self, ifindex: int, parent: int) -> List[TcFilter]:
        """The filters at *parent* of *ifindex* (one entry per filter; handle 0 entries,
        which stand for an empty priority, are left out).  Raises :class:`NetlinkError`
        (EINVAL when the parent does not exist)."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
        out = []
        for _, payload in self._request(RTM_GETTFILTER, NLM_F_DUMP, body, "RTM_GETTFILTER"):
            _, idx, handle, fparent, info = _TCMSG.unpack_from(payload, 0)
            if idx != ifindex or not handle:
                continue
            attrs: Dict[int, bytes] = dict(_attrs(payload, _TCMSG.size))
            out.append(TcFilter(fparent, info >> 16, socket.ntohs(info & 0xFFFF), handle,
                                _cstr(attrs.get(TCA_KIND, b""))))
        return out
