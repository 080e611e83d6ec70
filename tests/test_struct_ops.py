"""struct_ops: a TCP congestion control written in BPF, loaded, registered and used.

bpf/struct_ops.bpf.c (``.struct_ops``, registered by the map update) and
bpf/struct_ops_link.bpf.c (``.struct_ops.link``, registered by a BPF link)
implement Reno through the kernel's tcp_reno_* kfuncs and count their calls
in .bss.  The kernel confirms each step: the congestion control appears in
/proc/sys/net/ipv4/tcp_available_congestion_control, a loopback TCP socket
that selects it runs the programs (the counters move), the map's value read
back holds each program's id in the member the object pointed at it, and
closing the Link unregisters it.
"""
from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

import bpfload
from bpfload import AttachError, BpfError, MapType
from bpfload._core import syscall as _sys
from bpfload.btf.structops import kernel_struct_ops
from bpfload.btf.targets import find_kernel_type, vmlinux
from bpfload.constants import LinkType, MapFlags, ProgType

from conftest import bpf_object

pytestmark = pytest.mark.kernel

AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"


def available() -> list:
    with open(AVAILABLE) as f:
        return f.read().split()


def kso():
    return kernel_struct_ops("tcp_congestion_ops", vmlinux(), find_kernel_type, where="test")


def tcp_through(cc: str, nbytes: int = 1 << 20) -> str:
    """Send *nbytes* over loopback from a socket using congestion control *cc*; its cc name."""
    srv = socket.socket()
    cli = socket.socket()
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        cli.connect(srv.getsockname())
        peer, _ = srv.accept()
        with peer:
            cli.sendall(b"x" * nbytes)
            got = 0
            while got < nbytes:
                got += len(peer.recv(1 << 16))
        return cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    finally:
        cli.close()
        srv.close()


def test_open_reads_struct_ops_sections_without_syscalls():
    before = _sys.syscall_count()
    obj = bpfload.BpfObject.open(bpf_object("struct_ops"))
    link_obj = bpfload.BpfObject.open(bpf_object("struct_ops_link"))
    assert _sys.syscall_count() == before
    ms = obj.maps["bl_cc"]
    assert ms.type == MapType.STRUCT_OPS and ms.key_size == 4 and ms.max_entries == 1
    assert ms.struct_ops.type_name == "tcp_congestion_ops" and not ms.struct_ops.link
    assert ms.struct_ops.programs == {"ssthresh": "bl_ssthresh", "cong_avoid": "bl_cong_avoid",
                                      "undo_cwnd": "bl_undo_cwnd", "init": "bl_init",
                                      "release": "bl_release"}
    assert link_obj.programs["bl_unused"].type == ProgType.STRUCT_OPS
    lms = link_obj.maps["bl_cc_link"]
    assert lms.struct_ops.link and lms.flags & MapFlags.LINK
    obj.close()
    link_obj.close()


def test_register_use_and_unregister():
    k = kso()
    with bpfload.load(bpf_object("struct_ops")) as obj:
        m = obj["bl_cc"]
        info = m.info()
        assert info.type == MapType.STRUCT_OPS and info.value_size == k.value_size
        assert info.btf_vmlinux_value_type_id == find_kernel_type(
            "bpf_struct_ops_tcp_congestion_ops", bpfload.btf.Kind.STRUCT).id
        assert "bpfload_cc" not in available()
        link = obj.attach_struct_ops("bl_cc")
        try:
            assert link.type == LinkType.STRUCT_OPS and link.fd == -1
            assert "bpfload_cc" in available()
            # the kernel's copy of the value: state INUSE, each member holding its program's id
            value = m.lookup(0)
            refcnt, state = struct.unpack_from("<II", value, 0)
            assert state == 1
            base = k.data_offset
            for member, prog in obj.spec.maps["bl_cc"].struct_ops.programs.items():
                (pid,) = struct.unpack_from("<Q", value, base + k.members[member].offset)
                assert pid == obj.programs[prog].id, member
            (unset,) = struct.unpack_from("<Q", value, base + k.members["set_state"].offset)
            assert unset == 0
            name_at = base + k.members["name"].offset
            assert value[name_at:name_at + 16].rstrip(b"\0") == b"bpfload_cc"

            assert tcp_through("bpfload_cc") == "bpfload_cc"
            assert obj.bss["init_calls"] == 1           # the client socket; the server's uses the default
            assert obj.bss["release_calls"] == 1        # closed
            assert obj.bss["cong_avoid_calls"] > 0      # ACKs went through the BPF Reno
        finally:
            link.close()
        assert "bpfload_cc" not in available()
        with pytest.raises(OSError):
            tcp_through("bpfload_cc")


def test_a_struct_ops_map_registers_once():
    with bpfload.load(bpf_object("struct_ops")) as obj:
        obj.attach_struct_ops("bl_cc").close()
        with pytest.raises(AttachError) as e:
            obj.attach_struct_ops("bl_cc")
        assert e.value.errno == errno.EBUSY and "load the object again" in str(e.value)
        assert "bpfload_cc" not in available()


def test_same_name_registered_twice_is_refused():
    with bpfload.load(bpf_object("struct_ops")) as a, bpfload.load(bpf_object("struct_ops")) as b:
        link = a.attach_struct_ops("bl_cc")
        try:
            with pytest.raises(AttachError) as e:
                b.attach_struct_ops("bl_cc")
            assert e.value.errno == errno.EEXIST and "bl_cc" in str(e.value)
            assert "already has an implementation" in str(e.value)
        finally:
            link.close()


def test_link_form_attach_all_pin_and_reopen(bpffs):
    with bpfload.load(bpf_object("struct_ops_link")) as obj:
        made = obj.attach_all()
        assert list(made) == ["bl_cc_link"]
        assert obj.unattached["bl_link_init"].startswith("a struct_ops program")
        assert "bl_unused" not in obj.programs         # referenced by no map: not loaded
        assert obj.unattached["bl_unused"] == "not loaded (autoload is off)"
        link = made["bl_cc_link"]
        assert link.fd >= 0 and link.info().map_id == obj["bl_cc_link"].id
        assert "bpfload_ccl" in available()
        assert tcp_through("bpfload_ccl") == "bpfload_ccl"
        assert obj.bss["init_calls"] == 1
        path = os.path.join(bpffs, "cc_link")
        link.pin(path)
    # the object and its link fd are closed; the pin keeps it registered
    assert "bpfload_ccl" in available()
    again = bpfload.Link.from_pin(path)
    assert again.type == LinkType.STRUCT_OPS
    again.unpin()
    again.close()
    assert "bpfload_ccl" not in available()


def test_fault_at_link_create_leaves_nothing_registered_and_can_retry():
    with bpfload.load(bpf_object("struct_ops_link")) as obj:
        _sys.inject_fault(1, errno.ENOMEM, 28)   # BPF_LINK_CREATE
        try:
            with pytest.raises(AttachError) as e:
                obj.attach_struct_ops("bl_cc_link")
        finally:
            _sys.inject_fault(0, 0)
        assert e.value.errno == errno.ENOMEM and e.value.command == "BPF_LINK_CREATE"
        assert "bpfload_ccl" not in available()
        link = obj.attach_struct_ops("bl_cc_link")    # the value is stored: registering still works
        assert "bpfload_ccl" in available()
        link.close()
        assert "bpfload_ccl" not in available()


def test_member_the_kernel_lacks_is_refused_at_load():
    with pytest.raises(BpfError, match=r"struct_ops map 'bad_cc': member 'bpfload_no_such_member' is set "
                       r"but struct tcp_congestion_ops in this kernel has no such member"):
        bpfload.load(bpf_object("struct_ops_bad"))


def test_unknown_struct_ops_type_is_refused_at_load():
    with bpfload.BpfObject.open(bpf_object("struct_ops")) as obj:
        obj.maps["bl_cc"].struct_ops.type_name = "bpfload_no_such_ops"
        with pytest.raises(BpfError, match=r"map 'bl_cc': the kernel has no struct bpfload_no_such_ops"):
            obj.load()


def test_program_pointed_at_a_data_member_is_refused():
    with bpfload.BpfObject.open(bpf_object("struct_ops")) as obj:
        obj.maps["bl_cc"].struct_ops.programs["key"] = "bl_init"
        with pytest.raises(BpfError, match=r"program 'bl_init' implements member 'key', but struct "
                           r"tcp_congestion_ops in this kernel has it, but not as a function pointer"):
            obj.load()


def test_attach_struct_ops_names_what_exists():
    with bpfload.load(bpf_object("struct_ops")) as obj:
        with pytest.raises(bpfload.NotFoundError, match=r"no struct_ops map 'nope' \(struct_ops maps: bl_cc\)"):
            obj.attach_struct_ops("nope")
