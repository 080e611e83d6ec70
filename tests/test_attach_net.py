"""Network attach against the kernel: XDP, tcx, tc over netlink, netfilter,
socket filters and sk_msg on a SOCKMAP (bpf/attach_net.bpf.c).

Traffic is real: a veth pair with one end in a network namespace each test
creates (and deletes), IPv6 off on both ends so only the test's own
packets flow.  The namespace side pings the root side with a tiny
raw-socket pinger (PINGER below, run under ``ip netns exec``; no ping
binary needed) and reports how many echo replies came back.  The programs
count only IPv4 ICMP echo requests/replies (or UDP to the test's port), so
ARP and the like never change a count.  ``ip``/``tc`` are used here only,
never in the library.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time

import pytest

import bpfload
from bpfload import AttachType, LinkType
from bpfload.link.net import NF_INET_LOCAL_OUT, NFPROTO_IPV4
from conftest import REPO, bpf_object, need_tool

pytestmark = pytest.mark.kernel

# counts[] slots of attach_net.bpf.c
C_XDP, C_XDP2, C_XDP_DROP, C_TCX_IN, C_TCX_OUT, C_TC, C_NF, C_SOCK, C_SK_MSG = range(9)

# argv: ADDR COUNT TIMEOUT -> prints the number of echo replies received
PINGER = r"""
import os, socket, struct, sys, time
addr, n, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, got = os.getpid() & 0xffff, 0
for seq in range(n):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"bpfload-attach-net!!"
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    s.sendto(body, (addr, 0))
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            pkt = s.recv(2048)
        except socket.timeout:
            break
        ihl = (pkt[0] & 15) * 4
        t, _, _, i, q = struct.unpack_from("!BBHHH", pkt, ihl)
        if t == 0 and i == ident and q == seq:
            got += 1
            break
print(got)
"""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p


class Veth:
    """host (root namespace) <-> peer (in namespace ns), addresses host_ip/peer_ip."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = f"bpfl-net-{pid}"
        self.host = f"bfh{pid}"
        self.peer = f"bfp{pid}"
        net = f"10.{(pid >> 8) & 0xFF}.{pid & 0xFF}"
        self.host_ip, self.peer_ip = f"{net}.1", f"{net}.2"

    def up(self) -> None:
        self.down()                              # what a killed earlier run may have left
        _run("ip", "netns", "add", self.ns)
        _run("ip", "link", "add", self.host, "type", "veth", "peer", "name", self.peer,
             "netns", self.ns)
        with open(f"/proc/sys/net/ipv6/conf/{self.host}/disable_ipv6", "w") as f:
            f.write("1")
        self.ns_exec("sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{self.peer}/disable_ipv6")
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host)
        _run("ip", "-n", self.ns, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer)
        _run("ip", "link", "set", self.host, "up")
        _run("ip", "-n", self.ns, "link", "set", self.peer, "up")

    def down(self) -> None:
        _run("ip", "link", "del", self.host, check=False)
        _run("ip", "netns", "del", self.ns, check=False)

    @property
    def ifindex(self) -> int:
        return socket.if_nametoindex(self.host)

    def ns_exec(self, *cmd: str) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", self.ns, *cmd)

    def ping(self, n: int, wait: float = 1.0) -> int:
        """Send *n* echo requests from the namespace to host_ip; how many were answered."""
        p = self.ns_exec(sys.executable, "-c", PINGER, self.host_ip, str(n), str(wait))
        return int(p.stdout.strip())


@pytest.fixture
def veth():
    need_tool("ip", "iproute2")
    need_tool("tc", "iproute2")
    v = Veth()
    try:
        v.up()
        yield v
    finally:
        v.down()


@pytest.fixture
def obj():
    with bpfload.BpfObject.open(bpf_object("attach_net")).load() as o:
        yield o


def count(obj, slot: int) -> int:
    return int.from_bytes(obj.maps["counts"][slot], sys.byteorder)


# -- XDP ---------------------------------------------------------------------------

def test_xdp_counts_update_swaps_detach_stops(veth, obj):
    with obj.programs["xdp_count"].attach(iface=veth.host) as link:
        assert link.type == LinkType.XDP and link.is_bpf_link
        assert link.info().ifindex == veth.ifindex
        assert link.info().prog_id == obj.programs["xdp_count"].id
        assert veth.ping(3) == 3
        assert count(obj, C_XDP) == 3

        link.update(obj.programs["xdp_count2"])
        assert link.info().prog_id == obj.programs["xdp_count2"].id
        assert veth.ping(2) == 2
        assert (count(obj, C_XDP), count(obj, C_XDP2)) == (3, 2)

        link.detach()
        assert link.fd >= 0
        info = link.info()                       # the fd stays valid
        assert info.type == LinkType.XDP and info.ifindex == 0
        assert veth.ping(2) == 2                 # traffic flows, nothing counts
        assert (count(obj, C_XDP), count(obj, C_XDP2)) == (3, 2)


def test_xdp_by_ifindex_in_skb_mode_and_close_stops(veth, obj):
    link = obj.programs["xdp_count"].attach_xdp(veth.ifindex, mode="skb")
    try:
        assert link.info().ifindex == veth.ifindex
        assert veth.ping(2) == 2
        assert count(obj, C_XDP) == 2
    finally:
        link.close()
    assert veth.ping(1) == 1
    assert count(obj, C_XDP) == 2


def test_xdp_drop_makes_pings_fail(veth, obj):
    with obj.programs["xdp_drop"].attach_xdp(veth.host):
        assert veth.ping(3, wait=0.3) == 0
        assert count(obj, C_XDP_DROP) == 3
    assert veth.ping(1) == 1                     # closed: the hook is free again
    assert count(obj, C_XDP_DROP) == 3


def test_second_xdp_link_on_same_interface_is_refused(veth, obj):
    with obj.programs["xdp_count"].attach_xdp(veth.host):
        with pytest.raises(bpfload.AttachError) as ei:
            obj.programs["xdp_count2"].attach_xdp(veth.host)
        assert ei.value.errno in (errno.EBUSY, errno.EEXIST)
        assert "another program holds the XDP hook" in str(ei.value)
        assert "xdp_count2" in str(ei.value) and veth.host in str(ei.value)
        # another mode at the same time: EEXIST (native and generic exclude each other)
        with pytest.raises(bpfload.AttachError) as ei:
            obj.programs["xdp_count2"].attach_xdp(veth.host, mode="skb")
        assert ei.value.errno == errno.EEXIST
        assert "another program holds the XDP hook" in str(ei.value)
        assert veth.ping(1) == 1
        assert (count(obj, C_XDP), count(obj, C_XDP2)) == (1, 0)


def test_xdp_errors(obj):
    with pytest.raises(bpfload.AttachError, match="no such interface 'bfnope0'") as ei:
        obj.programs["xdp_count"].attach_xdp("bfnope0")
    assert ei.value.errno == errno.ENODEV and ei.value.program == "xdp_count"
    with pytest.raises(bpfload.AttachError, match="no such interface ifindex 999999"):
        obj.programs["xdp_count"].attach_xdp(999999)
    with pytest.raises(bpfload.AttachError, match="no such interface ifindex -1"):
        obj.programs["xdp_count"].attach_xdp(-1)
    with pytest.raises(bpfload.AttachError, match="takes XDP programs, not a SCHED_CLS"):
        obj.programs["tc_count"].attach_xdp("lo")
    with pytest.raises(bpfload.AttachError, match="unknown XDP mode 'turbo'"):
        obj.programs["xdp_count"].attach_xdp("lo", mode="turbo")
    with pytest.raises(bpfload.AttachError, match="xdp programs need an interface|iface"):
        obj.programs["xdp_count"].attach()


# -- tc ----------------------------------------------------------------------------

def test_tcx_ingress_and_egress_count(veth, obj):
    # the section (tcx/ingress, tcx/egress) picks the direction
    with obj.programs["tcx_in"].attach(iface=veth.host) as lin, \
            obj.programs["tcx_out"].attach(iface=veth.host) as lout:
        assert lin.type == lout.type == LinkType.TCX
        assert lin.info().attach_type == AttachType.TCX_INGRESS
        assert lout.info().attach_type == AttachType.TCX_EGRESS
        assert lin.info().ifindex == lout.info().ifindex == veth.ifindex
        assert veth.ping(3) == 3
        assert (count(obj, C_TCX_IN), count(obj, C_TCX_OUT)) == (3, 3)
    assert veth.ping(1) == 1
    assert (count(obj, C_TCX_IN), count(obj, C_TCX_OUT)) == (3, 3)


def test_tc_program_explicit_direction_tcx(veth, obj):
    # a plain "tc" program on a tcx link, egress chosen by the caller: it
    # counts echo requests, and there are none leaving the host end
    with obj.programs["tc_count"].attach_tc(veth.host, direction="egress") as link:
        assert link.info().attach_type == AttachType.TCX_EGRESS
        assert veth.ping(2) == 2
        assert count(obj, C_TC) == 0
    with obj.programs["tc_count"].attach_tc(veth.host, direction="ingress"):
        assert veth.ping(2) == 2
        assert count(obj, C_TC) == 2


def _filters(veth, direction="ingress") -> str:
    return _run("tc", "filter", "show", "dev", veth.host, direction).stdout


def _has_clsact(veth) -> bool:
    return "clsact" in _run("tc", "qdisc", "show", "dev", veth.host).stdout


def test_tc_netlink_counts_and_close_removes_filter_and_qdisc(veth, obj):
    assert not _has_clsact(veth)
    link = obj.programs["tc_count"].attach_tc(veth.host, netlink=True)
    try:
        assert link.type == LinkType.TC_NETLINK and link.fd == -1 and not link.is_bpf_link
        shown = _filters(veth)
        assert "tc_count" in shown and "direct-action" in shown and "pref 1" in shown
        assert _has_clsact(veth)
        assert veth.ping(3) == 3
        assert count(obj, C_TC) == 3
        with pytest.raises(bpfload.AttachError, match="not a BPF link"):
            link.info()
    finally:
        link.close()
    assert "tc_count" not in _filters(veth)
    assert not _has_clsact(veth)                 # we added it, nothing else is left
    assert veth.ping(1) == 1
    assert count(obj, C_TC) == 3


def test_tc_netlink_removes_exactly_its_filter(veth, obj):
    prog = obj.programs["tc_count"]
    first = prog.attach_tc(veth.host, netlink=True)             # adds clsact, prio 1
    try:
        second = prog.attach_tc(veth.host, netlink=True)        # next free prio: 2
        try:
            assert "pref 1" in _filters(veth) and "pref 2" in _filters(veth)
            with pytest.raises(bpfload.AttachError) as ei:     # same prio and handle
                prog.attach_tc(veth.host, netlink=True, priority=2)
            assert ei.value.errno == errno.EEXIST
            assert veth.ping(2) == 2
            assert count(obj, C_TC) == 4                        # both filters ran
        finally:
            second.close()
        shown = _filters(veth)
        assert "pref 2" not in shown and "pref 1" in shown and _has_clsact(veth)
    finally:
        first.close()
    assert "tc_count" not in _filters(veth) and not _has_clsact(veth)


def test_tc_netlink_keeps_a_clsact_it_did_not_add(veth, obj):
    _run("tc", "qdisc", "add", "dev", veth.host, "clsact")
    with obj.programs["tc_count"].attach_tc(veth.host, netlink=True, direction="ingress"):
        assert veth.ping(1) == 1
        assert count(obj, C_TC) == 1
    assert "tc_count" not in _filters(veth)
    assert _has_clsact(veth)


def test_tc_netlink_egress_from_the_section(veth, obj):
    with obj.programs["tcx_out"].attach_tc(veth.host, direction=None, netlink=True) as link:
        assert "egress" in link.hook
        assert "tcx_out" in _filters(veth, "egress") and "tcx_out" not in _filters(veth)
        assert veth.ping(2) == 2
        assert count(obj, C_TCX_OUT) == 2
    assert "tcx_out" not in _filters(veth, "egress") and not _has_clsact(veth)


def test_rtnetlink_primitives(veth, obj):
    from bpfload.link.netlink import NetlinkError, RtNetlink, clsact_parent
    ing, eg = clsact_parent("ingress"), clsact_parent("egress")
    assert (ing, eg) == (0xFFFFFFF2, 0xFFFFFFF3)
    fd = obj.programs["tc_count"].fd
    with RtNetlink() as nl:
        with pytest.raises(NetlinkError) as ei:             # no clsact yet
            nl.add_bpf_filter(veth.ifindex, ing, 1, 1, fd, "x")
        assert ei.value.errno == errno.EINVAL and ei.value.extack   # the kernel's own words
        assert nl.add_clsact(veth.ifindex) is True
        assert nl.add_clsact(veth.ifindex) is False           # already there
        assert (0xFFFF0000, 0xFFFFFFF1, "clsact") in nl.qdiscs(veth.ifindex)
        nl.add_bpf_filter(veth.ifindex, ing, 7, 0x42, fd, "tc_count")
        assert "pref 7" in _filters(veth) and "handle 0x42" in _filters(veth)
        (f,) = nl.filters(veth.ifindex, ing)
        assert (f.parent, f.priority, f.protocol, f.handle, f.kind) == (ing, 7, 0x0003, 0x42, "bpf")
        assert nl.filters(veth.ifindex, eg) == []
        with pytest.raises(NetlinkError) as ei:
            nl.add_bpf_filter(veth.ifindex, ing, 7, 0x42, fd, "tc_count")
        assert ei.value.errno == errno.EEXIST
        nl.del_filter(veth.ifindex, ing, 7, 0x42)
        assert "tc_count" not in _filters(veth)
        nl.del_clsact(veth.ifindex)
        assert not _has_clsact(veth)
        with pytest.raises(NetlinkError) as ei:
            nl.add_clsact(999999)
        assert ei.value.errno == errno.ENODEV


def test_links_close_cleanly_after_the_interface_is_gone(veth, obj):
    xdp = obj.programs["xdp_count"].attach_xdp(veth.host)
    tcx = obj.programs["tcx_in"].attach_tc(veth.host)
    nl = obj.programs["tc_count"].attach_tc(veth.host, netlink=True)
    try:
        veth.down()
        assert xdp.info().ifindex == 0 and tcx.info().ifindex == 0   # the kernel detached them
        nl.detach()                              # filter and device gone: nothing to undo
    finally:
        for link in (xdp, tcx, nl):
            link.close()


def test_tc_errors(obj):
    with pytest.raises(bpfload.AttachError, match="no such interface"):
        obj.programs["tcx_in"].attach_tc("bfnope0")
    with pytest.raises(bpfload.AttachError, match="takes SCHED_CLS programs, not a XDP"):
        obj.programs["xdp_count"].attach_tc("lo")
    with pytest.raises(bpfload.AttachError, match="direction must be 'ingress' or 'egress'"):
        obj.programs["tcx_in"].attach_tc("lo", direction="sideways")


# -- netfilter ---------------------------------------------------------------------

def _udp_to_self(n: int) -> int:
    """Send *n* datagrams over loopback to a socket of ours; how many arrived."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", _udp_to_self.port))
        rx.settimeout(2)
        for i in range(n):
            tx.sendto(b"bpfload %d" % i, ("127.0.0.1", _udp_to_self.port))
        return sum(1 for _ in range(n) if rx.recv(64))


_udp_to_self.port = 0


@pytest.fixture
def nf_port(obj):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _udp_to_self.port = port
    obj.maps["cfg"][0] = port
    return port


def test_netfilter_local_out_counts_until_detached(obj, nf_port):
    prog = obj.programs["nf_local_out"]
    with prog.attach(pf=NFPROTO_IPV4, hooknum=NF_INET_LOCAL_OUT, priority=-128) as link:
        info = link.info()
        assert link.type == info.type == LinkType.NETFILTER
        assert (info.pf, info.hooknum, info.priority, info.flags) == (2, 3, -128, 0)
        assert _udp_to_self(4) == 4
        assert count(obj, C_NF) == 4
        link.detach()
        assert link.info().id == info.id         # still a valid link fd
        assert _udp_to_self(3) == 3
        assert count(obj, C_NF) == 4


def test_netfilter_close_stops(obj, nf_port):
    link = obj.programs["nf_local_out"].attach_netfilter(pf=2, hooknum=3, priority=100)
    assert _udp_to_self(2) == 2
    link.close()
    assert _udp_to_self(2) == 2
    assert count(obj, C_NF) == 2


@pytest.mark.parametrize("kw,err,match", [
    (dict(pf=2, hooknum=3, priority=-2 ** 31), errno.ERANGE, "strictly between NF_IP_PRI_FIRST"),
    (dict(pf=2, hooknum=3, priority=2 ** 31 - 1), errno.ERANGE, "strictly between"),
    (dict(pf=2, hooknum=3, priority=2 ** 40), errno.ERANGE, "strictly between"),
    (dict(pf=7, hooknum=3, priority=0), errno.EAFNOSUPPORT, "pf must be NFPROTO_IPV4"),
    (dict(pf=2, hooknum=5, priority=0), errno.EPROTO, "hooknum must be"),
    (dict(pf=2, hooknum=3, priority=0, flags=2), errno.EOPNOTSUPP, "only BPF_F_NETFILTER_IP_DEFRAG"),
    (dict(pf=2, hooknum=3, priority=-500, flags=1), errno.ERANGE, "NF_IP_PRI_CONNTRACK_DEFRAG"),
])
def test_netfilter_bad_arguments(obj, kw, err, match):
    with pytest.raises(bpfload.AttachError, match=match) as ei:
        obj.programs["nf_local_out"].attach_netfilter(**kw)
    assert ei.value.errno == err and ei.value.program == "nf_local_out"


def test_netfilter_needs_netfilter_program_and_arguments(obj):
    with pytest.raises(bpfload.AttachError, match="takes NETFILTER programs"):
        obj.programs["xdp_count"].attach_netfilter(pf=2, hooknum=3, priority=0)
    with pytest.raises(bpfload.AttachError, match="hooknum and priority"):
        obj.programs["nf_local_out"].attach(pf=2)


# -- socket filter -----------------------------------------------------------------

@pytest.fixture
def udp_pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    try:
        yield rx, tx
    finally:
        rx.close()
        tx.close()


def _send(rx, tx, n: int) -> int:
    for i in range(n):
        tx.sendto(b"datagram %d" % i, rx.getsockname())
    return sum(1 for _ in range(n) if rx.recv(64))


def test_socket_filter_counts_until_closed(obj, udp_pair):
    rx, tx = udp_pair
    link = obj.programs["sock_count"].attach(sock=rx)
    try:
        assert link.type == LinkType.SOCKET_FILTER and link.fd == -1
        assert _send(rx, tx, 5) == 5                # passed whole: every datagram arrives
        assert count(obj, C_SOCK) == 5
    finally:
        link.close()
    assert _send(rx, tx, 3) == 3
    assert count(obj, C_SOCK) == 5


def test_socket_filter_on_int_fd_detach(obj, udp_pair):
    rx, tx = udp_pair
    link = obj.programs["sock_count"].attach_socket(rx.fileno())
    try:
        assert _send(rx, tx, 2) == 2
        link.detach()
        assert _send(rx, tx, 2) == 2
        assert count(obj, C_SOCK) == 2
    finally:
        link.close()


def test_socket_filter_socket_closed_first(obj):
    # The Link does not keep the socket open; detaching a closed socket is a no-op.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    link = obj.programs["sock_count"].attach_socket(rx)
    fd = rx.fileno()
    rx.close()
    assert not os.path.exists(f"/proc/self/fd/{fd}") or \
        not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    link.detach()
    link.close()
    # an int fd whose number is reused for another socket is left alone
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stale = obj.programs["sock_count"].attach_socket(a.fileno())
    num = a.fileno()
    a.close()
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert b.fileno() == num
        b.bind(("127.0.0.1", 0))
        b.settimeout(2)
        with obj.programs["sock_count"].attach_socket(b):
            stale.close()                       # must not take b's filter away
            assert _send(b, tx, 2) == 2
            assert count(obj, C_SOCK) == 2
    finally:
        stale.close()
        b.close()
        tx.close()


def test_socket_filter_errors(obj):
    with pytest.raises(bpfload.AttachError, match="takes SOCKET_FILTER programs"):
        obj.programs["xdp_count"].attach_socket(0)
    r, w = os.pipe()
    try:
        with pytest.raises(bpfload.AttachError, match="is not a socket") as ei:
            obj.programs["sock_count"].attach_socket(r)
        assert ei.value.errno == errno.ENOTSOCK
    finally:
        os.close(r)
        os.close(w)
    s = socket.socket()
    s.close()
    with pytest.raises(bpfload.AttachError, match="closed"):
        obj.programs["sock_count"].attach_socket(s)


# -- sk_msg on a SOCKMAP -----------------------------------------------------------

@pytest.fixture
def tcp_conn():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        cli = socket.create_connection(srv.getsockname())
        acc, _ = srv.accept()
    acc.settimeout(2)
    try:
        yield cli, acc
    finally:
        cli.close()
        acc.close()


def _messages(cli, acc, n: int) -> None:
    want = 0
    for i in range(n):
        msg = b"message %03d;" % i
        cli.sendall(msg)
        want += len(msg)
    got = b""
    while len(got) < want:
        got += acc.recv(4096)
    assert got == b"".join(b"message %03d;" % i for i in range(n))


def _attached_ids(m) -> list:
    from bpfload._core import syscall as _sys
    return _sys.prog_query(m.fd, AttachType.SK_MSG_VERDICT)[1]


def test_sk_msg_counts_messages_until_closed(obj, tcp_conn):
    cli, acc = tcp_conn
    prog, smap = obj.programs["sk_msg_count"], obj.maps["sock_map"]
    link = prog.attach(map=smap)
    try:
        assert link.type == LinkType.PROG_ATTACH and link.fd == -1
        assert _attached_ids(smap) == [prog.id]
        smap[0] = cli.fileno()                   # sockets added now run the program
        _messages(cli, acc, 6)
        assert count(obj, C_SK_MSG) == 6
    finally:
        link.close()
    assert _attached_ids(smap) == []
    # a socket put in the map after the detach no longer runs it
    del smap[0]
    smap[0] = cli.fileno()
    _messages(cli, acc, 3)
    del smap[0]
    assert count(obj, C_SK_MSG) == 6


def test_sockmap_detach_works_after_program_closed(tcp_conn):
    obj = bpfload.BpfObject.open(bpf_object("attach_net")).load()
    try:
        smap = obj.maps["sock_map"]
        link = obj.programs["sk_msg_count"].attach_sockmap(smap)
        pid = obj.programs["sk_msg_count"].id
        obj.programs["sk_msg_count"].close()
        assert _attached_ids(smap) == [pid]
        link.detach()
        assert _attached_ids(smap) == []
        link.close()
    finally:
        obj.close()


def test_sockmap_errors(obj):
    prog = obj.programs["sk_msg_count"]
    with pytest.raises(bpfload.AttachError, match="ARRAY map is not a SOCKMAP or SOCKHASH"):
        prog.attach_sockmap(obj.maps["counts"])
    with pytest.raises(bpfload.AttachError, match="takes SK_SKB programs, not SK_MSG"):
        prog.attach_sockmap(obj.maps["sock_map"], attach_type=AttachType.SK_SKB_STREAM_VERDICT)
    with pytest.raises(bpfload.AttachError, match="takes SK_MSG/SK_SKB programs"):
        obj.programs["xdp_count"].attach_sockmap(obj.maps["sock_map"])
    r, w = os.pipe()
    try:
        with pytest.raises(bpfload.AttachError, match="is not a BPF map"):
            prog.attach_sockmap(r)
    finally:
        os.close(r)
        os.close(w)


# -- the example -------------------------------------------------------------------

def test_xdp_count_example(veth):
    p = subprocess.Popen([sys.executable, str(REPO / "examples" / "xdp_count.py"), veth.host,
                          "3", "--interval", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        first = p.stdout.readline()
        assert first.startswith(f"counting packets on {veth.host}"), first + p.stderr.read()
        t0 = time.monotonic()
        assert veth.ping(5, wait=0.5) == 5
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 10
    rows = [ln for ln in out.splitlines() if "packets/s" in ln]
    assert rows, out
    total = [ln for ln in out.splitlines() if ln.startswith("total")]
    assert total, out
    # every echo request (and the ARP that preceded them) went through XDP
    assert int(total[0].split()[1]) >= 5
