"""cgroup v2 attach: cgroup_skb/egress and cgroup/sock_create programs on a child cgroup.

Each test makes its own cgroup under the cgroup2 mount and moves a Python
child process into it; the child creates sockets and sends UDP datagrams
to a port the test listens on (loopback).  The programs
(bpf/attach_cgroup.bpf.c) count only IPv4 UDP datagrams to that port, so
the counts read back from .bss are exact: the child's datagrams count, the
test's own (sent from outside the cgroup) do not, and nothing counts after
close()/detach().
"""
from __future__ import annotations

import errno
import itertools
import os
import socket
import subprocess
import sys

import pytest

import bpfload
from bpfload import AttachType, LinkType
from bpfload._core import syscall as _sys
from bpfload.link.cgroup import BPF_F_ALLOW_MULTI
from conftest import bpf_object, cgroup2_root

pytestmark = pytest.mark.kernel

PAYLOAD = 32
IP_UDP_LEN = 20 + 8 + PAYLOAD     # what egress_bytes adds per datagram (IPv4 total length)

_CHILD = r"""
import socket, sys
def reply(s):
    sys.stdout.write(s + "\n"); sys.stdout.flush()
reply("ready")
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "send":                  # send N PORT: N datagrams from one new socket
        n, port = int(args[0]), int(args[1])
        errs = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                try:
                    s.sendto(b"x" * PAYLOAD, ("127.0.0.1", port))
                except OSError as e:
                    errs.append(e.errno)
        reply("sent %d %s" % (n - len(errs), ",".join(map(str, errs)) or "-"))
    elif cmd == "connect":             # connect N PORT: N TCP connections to 127.0.0.1:PORT
        for _ in range(int(args[0])):
            with socket.create_connection(("127.0.0.1", int(args[1])), timeout=5):
                pass
        reply("ok")
    elif cmd == "socket":              # socket FAMILY TYPE N: create and close N sockets
        fam = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}[args[0]]
        typ = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}[args[1]]
        for _ in range(int(args[2])):
            socket.socket(fam, typ).close()
        reply("ok")
""".replace("PAYLOAD", str(PAYLOAD))

_seq = itertools.count()


@pytest.fixture
def cgroup_dir():
    """A fresh child cgroup (removed after: its processes moved back to the root first)."""
    root = cgroup2_root()
    path = os.path.join(root, f"bpfload-test-{os.getpid()}-{next(_seq)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(os.path.join(root, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass    # exited meanwhile
        os.rmdir(path)


class Child:
    """A Python child that makes sockets and sends datagrams on command, in a cgroup."""

    def __init__(self, cgroup=None):
        self.p = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"
        if cgroup is not None:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(self.p.pid))
            with open(os.path.join(cgroup, "cgroup.procs")) as f:
                assert str(self.p.pid) in f.read().split()

    def _ask(self, line: str) -> str:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def send(self, n: int, port: int):
        """-> (datagrams sent, [errnos of the failed sendto calls])."""
        _, sent, errs = self._ask(f"send {n} {port}").split()
        return int(sent), [] if errs == "-" else [int(e) for e in errs.split(",")]

    def connect(self, n: int, port: int) -> None:
        assert self._ask(f"connect {n} {port}") == "ok"

    def sockets(self, family: str, type_: str, n: int) -> None:
        assert self._ask(f"socket {family} {type_} {n}") == "ok"

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)
        self.p.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def listener():
    """A UDP socket on 127.0.0.1 (the port the programs count)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    try:
        yield s
    finally:
        s.close()


def drain(sock) -> int:
    """How many datagrams are waiting on *sock*."""
    n = 0
    while True:
        try:
            sock.recv(2048)
        except (socket.timeout, BlockingIOError):
            return n
        n += 1


def send_from_here(n: int, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(n):
            s.sendto(b"y" * PAYLOAD, ("127.0.0.1", port))


@pytest.fixture
def tcp_listener():
    """A TCP listener on 127.0.0.1 (connections complete in its backlog; never accepted)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def obj(listener, tcp_listener):
    with bpfload.BpfObject.open(bpf_object("attach_cgroup")).load() as o:
        o.bss["want_port"] = listener.getsockname()[1]
        o.bss["want_tcp_port"] = tcp_listener.getsockname()[1]
        yield o


def attached_ids(cgroup: str, atype: AttachType):
    """(attach flags, program ids) the kernel reports at (cgroup, atype) (BPF_PROG_QUERY)."""
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _sys.prog_query(fd, atype)
    finally:
        os.close(fd)


def test_egress_counts_exactly_the_cgroup_children_packets(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    prog = obj.programs["count_egress"]
    with Child(cgroup_dir) as child:
        link = prog.attach(cgroup=cgroup_dir)     # section cgroup_skb/egress says where
        try:
            assert link.type == LinkType.CGROUP and link.is_bpf_link and link.fd >= 0
            assert child.send(5, port) == (5, [])
            assert obj.bss["egress_pkts"] == 5
            assert obj.bss["egress_bytes"] == 5 * IP_UDP_LEN
            assert drain(listener) == 5                  # counted, and passed (returned 1)

            send_from_here(3, port)                      # this process is not in the cgroup
            assert drain(listener) == 3
            assert obj.bss["egress_pkts"] == 5

            with Child() as outsider:                    # nor is a sibling process
                assert outsider.send(2, port) == (2, [])
            assert drain(listener) == 2
            assert obj.bss["egress_pkts"] == 5
        finally:
            link.close()
        assert child.send(4, port) == (4, [])
        assert drain(listener) == 4
        assert obj.bss["egress_pkts"] == 5                # closing detached it
    assert link.closed


def test_sock_create_counts_the_childs_inet_udp_sockets(obj, cgroup_dir):
    prog = obj.programs["count_sock_create"]
    with Child(cgroup_dir) as child:
        with prog.attach_cgroup(cgroup_dir) as link:
            assert link.info().attach_type == AttachType.CGROUP_INET_SOCK_CREATE
            child.sockets("inet", "udp", 3)
            assert obj.bss["sock_creates"] == 3
            child.sockets("inet", "tcp", 2)              # the program counts only AF_INET UDP
            child.sockets("unix", "udp", 2)              # and the hook sees only inet sockets
            assert obj.bss["sock_creates"] == 3
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()   # outside the cgroup
            assert obj.bss["sock_creates"] == 3
            child.sockets("inet", "udp", 1)
            assert obj.bss["sock_creates"] == 4
        child.sockets("inet", "udp", 2)
        assert obj.bss["sock_creates"] == 4


def test_connect4_and_sockops_count_the_childs_tcp_connects(obj, cgroup_dir, tcp_listener):
    port = tcp_listener.getsockname()[1]
    c4, sockops = obj.programs["count_connect4"], obj.programs["count_sockops"]
    assert sockops.section == "sockops"
    with Child(cgroup_dir) as child:
        with c4.attach(cgroup=cgroup_dir) as l1, sockops.attach(cgroup=cgroup_dir) as l2:
            assert l1.info().attach_type == AttachType.CGROUP_INET4_CONNECT
            assert l2.info().attach_type == AttachType.CGROUP_SOCK_OPS
            child.connect(3, port)
            assert (obj.bss["connects"], obj.bss["tcp_connects"]) == (3, 3)
            with socket.create_connection(("127.0.0.1", port), timeout=5):   # from outside
                pass
            assert (obj.bss["connects"], obj.bss["tcp_connects"]) == (3, 3)
        child.connect(2, port)
        assert (obj.bss["connects"], obj.bss["tcp_connects"]) == (3, 3)


def test_drop_egress_fails_the_childs_sendto_with_eperm(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    with Child(cgroup_dir) as child:
        with obj.programs["drop_egress"].attach(cgroup=cgroup_dir):
            sent, errs = child.send(3, port)
            assert (sent, errs) == (0, [errno.EPERM] * 3)
            assert obj.bss["dropped_pkts"] == 3
            assert drain(listener) == 0
        assert child.send(3, port) == (3, [])
        assert drain(listener) == 3
        assert obj.bss["dropped_pkts"] == 3


def test_update_swaps_the_program(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    first, second = obj.programs["count_egress"], obj.programs["count_egress2"]
    with Child(cgroup_dir) as child, first.attach(cgroup=cgroup_dir) as link:
        assert child.send(2, port) == (2, [])
        assert (obj.bss["egress_pkts"], obj.bss["egress2_pkts"]) == (2, 0)
        link.update(second)
        assert link.info().prog_id == second.id
        assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == [second.id]
        assert child.send(3, port) == (3, [])
        assert (obj.bss["egress_pkts"], obj.bss["egress2_pkts"]) == (2, 3)
        with pytest.raises(bpfload.AttachError):          # BPF_F_REPLACE: first is not attached
            link.update(first, old_program=first)
        link.update(first, old_program=second)
        assert child.send(1, port) == (1, [])
        assert (obj.bss["egress_pkts"], obj.bss["egress2_pkts"]) == (3, 3)
    assert drain(listener) == 6


def test_detach_stops_counting_and_keeps_the_fd(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    with Child(cgroup_dir) as child, obj.programs["count_egress"].attach(cgroup=cgroup_dir) as link:
        assert child.send(2, port) == (2, [])
        link_id = link.id
        link.detach()
        assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []
        assert child.send(2, port) == (2, [])
        assert obj.bss["egress_pkts"] == 2
        info = link.info()                           # the fd is still a valid link
        assert info.id == link_id and info.type == LinkType.CGROUP
        assert info.cgroup_id == 0                   # ... without a cgroup
        with pytest.raises(bpfload.AttachError, match="ENOLINK|already detached"):
            link.update(obj.programs["count_egress2"])
    assert drain(listener) == 4


def test_info_names_the_cgroup_and_the_attach_type(obj, cgroup_dir):
    prog = obj.programs["count_egress"]
    with prog.attach(cgroup=cgroup_dir) as link:
        info = link.info()
        assert info.type == LinkType.CGROUP
        assert info.cgroup_id == os.stat(cgroup_dir).st_ino
        assert info.attach_type == AttachType.CGROUP_INET_EGRESS
        assert info.prog_id == prog.id and info.id == link.id > 0
        assert cgroup_dir in link.hook and "inet_egress" in link.hook
        flags, ids = attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)
        assert ids == [prog.id]
        again = bpfload.Link.from_id(link.id)        # one more reference: closing it keeps it
        try:
            assert again.info().cgroup_id == info.cgroup_id and again.program == prog.name
        finally:
            again.close()
        assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == [prog.id]
    assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []


def test_two_links_on_one_hook_both_run(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    with Child(cgroup_dir) as child, \
            obj.programs["count_egress"].attach(cgroup=cgroup_dir), \
            obj.programs["count_egress2"].attach(cgroup=cgroup_dir):
        assert child.send(3, port) == (3, [])
        assert (obj.bss["egress_pkts"], obj.bss["egress2_pkts"]) == (3, 3)
    assert drain(listener) == 3


def test_cgroup_given_as_an_fd_is_not_closed(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with Child(cgroup_dir) as child, obj.programs["count_egress"].attach_cgroup(fd) as link:
            os.fstat(fd)                                 # still ours
            assert link.info().cgroup_id == os.stat(cgroup_dir).st_ino
            assert child.send(2, port) == (2, [])
            assert obj.bss["egress_pkts"] == 2
    finally:
        os.close(fd)
    assert drain(listener) == 2


def test_prog_attach_fallback_counts_and_close_detaches(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    prog = obj.programs["count_egress"]
    with Child(cgroup_dir) as child:
        link = prog.attach_cgroup(cgroup_dir, use_prog_attach=True)
        try:
            assert link.type == LinkType.PROG_ATTACH and not link.is_bpf_link
            assert link.fd == -1 and link.id == 0
            flags, ids = attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)
            assert ids == [prog.id] and flags == BPF_F_ALLOW_MULTI
            assert child.send(3, port) == (3, [])
            assert obj.bss["egress_pkts"] == 3
            with pytest.raises(bpfload.AttachError, match="not a BPF link"):
                link.info()
        finally:
            link.close()
        assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []
        assert child.send(3, port) == (3, [])
        assert obj.bss["egress_pkts"] == 3
    assert drain(listener) == 6


def test_prog_attach_fallback_survives_closing_the_program(cgroup_dir, listener):
    """The Link holds its own dup of the program fd for BPF_PROG_DETACH."""
    port = listener.getsockname()[1]
    o = bpfload.BpfObject.open(bpf_object("attach_cgroup")).load()
    try:
        o.bss["want_port"] = port
        prog_id = o.programs["count_egress"].id
        link = o.programs["count_egress"].attach_cgroup(cgroup_dir, use_prog_attach=True)
    finally:
        o.close()
    try:
        assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == [prog_id]
    finally:
        link.close()
    assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []


def test_section_without_direction_needs_attach_type(obj, cgroup_dir, listener):
    port = listener.getsockname()[1]
    prog = obj.programs["any_skb"]                       # SEC("cgroup/skb")
    assert prog.expected_attach_type is None
    with pytest.raises(bpfload.AttachError, match="any_skb.*attach_type=") as ei:
        prog.attach(cgroup=cgroup_dir)
    assert ei.value.program == "any_skb" and ei.value.command is None
    with Child(cgroup_dir) as child, \
            prog.attach(cgroup=cgroup_dir, attach_type="inet_egress") as link:
        assert link.info().attach_type == AttachType.CGROUP_INET_EGRESS
        assert child.send(2, port) == (2, [])
        assert obj.bss["any_skb_pkts"] == 2
    assert drain(listener) == 2


def test_wrong_attach_type_for_the_program_is_refused(obj, cgroup_dir):
    prog = obj.programs["count_sock_create"]
    with pytest.raises(bpfload.AttachError) as ei:
        prog.attach_cgroup(cgroup_dir, attach_type=AttachType.CGROUP_INET_EGRESS)
    assert ei.value.errno == errno.EINVAL and ei.value.command == "BPF_LINK_CREATE"
    assert "count_sock_create" in str(ei.value) and "attach type" in str(ei.value)
    assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []
    with pytest.raises(bpfload.AttachError, match="XDP is not a cgroup hook"):
        prog.attach_cgroup(cgroup_dir, attach_type=AttachType.XDP)


def test_not_a_cgroup_directory(obj, tmp_path):
    prog = obj.programs["count_egress"]
    with pytest.raises(bpfload.AttachError, match="not a cgroup v2 directory") as ei:
        prog.attach(cgroup=tmp_path)
    assert ei.value.program == "count_egress" and str(tmp_path) in str(ei.value)
    with pytest.raises(bpfload.AttachError, match="no such directory"):
        prog.attach_cgroup(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(bpfload.AttachError, match="not a directory"):
        prog.attach_cgroup(tmp_path / "file")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(bpfload.AttachError, match="not a cgroup v2 directory"):
            prog.attach_cgroup(fd)
        os.fstat(fd)                                    # the caller's fd is left open
    finally:
        os.close(fd)


def test_attach_all_leaves_cgroup_programs_alone(obj):
    assert "cgroup" in bpfload.link.attach.auto_attach_reason(obj.programs["count_egress"])


def test_einval_falls_back_to_prog_attach_only_without_link_create(obj, cgroup_dir, listener,
                                                                   monkeypatch):
    """BPF_LINK_CREATE's EINVAL means 'no cgroup links' only where the command is unknown.

    Flags a cgroup link does not take make the real kernel answer EINVAL.
    This kernel knows BPF_LINK_CREATE (the probe says so), so that is an
    error; with the probe's answer set to what a pre-5.7 kernel gives, the
    same call takes the BPF_PROG_ATTACH path, which really attaches.
    """
    from bpfload.link import cgroup as cgmod
    port = listener.getsockname()[1]
    prog = obj.programs["count_egress"]
    assert cgmod._kernel_has_link_create()
    with pytest.raises(bpfload.AttachError, match="BPF_LINK_CREATE.*EINVAL"):
        prog.attach(cgroup=cgroup_dir, flags=BPF_F_ALLOW_MULTI)
    assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []
    monkeypatch.setattr(cgmod, "_link_create_known", False)
    with Child(cgroup_dir) as child:
        with prog.attach(cgroup=cgroup_dir, flags=BPF_F_ALLOW_MULTI) as link:
            assert link.type == LinkType.PROG_ATTACH
            assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == [prog.id]
            assert child.send(2, port) == (2, [])
            assert obj.bss["egress_pkts"] == 2
            link.detach()                                  # detach, then close: harmless
            assert attached_ids(cgroup_dir, AttachType.CGROUP_INET_EGRESS)[1] == []
        with pytest.raises(bpfload.AttachError, match="BPF_PROG_ATTACH fallback"):
            obj.programs["count_sock_create"].attach(cgroup=cgroup_dir,
                                                     attach_type="inet_egress")
    assert drain(listener) == 2
