"""bpfload.Link: the owner of one attachment, whatever the hook.

The hook-specific tests live in test_attach_*.py; these check the lifecycle
every link shares (info, id, from_id, pin/from_pin/unpin, update/detach
refusals, close), the attachments that are not BPF links, Program.attach()
by section and BpfObject.attach_all(), each against the kernel: the program
is attached, made to run by a syscall, and its map read back.
"""
from __future__ import annotations

import errno
import gc
import os
import struct
import warnings

import pytest

import bpfload
from bpfload import AttachError, Link, LinkType
from bpfload._core import syscall as _sys
from conftest import bpf_object, pins

pytestmark = pytest.mark.kernel

SEEN_OFF = None  # offset of core_out.seen, from the object's BTF (set on first use)


def _link_ids() -> set:
    out, cur = set(), 0
    while True:
        cur = _sys.get_next_id("link", cur)
        if not cur:
            return out
        out.add(cur)


def _seen(obj, key: int) -> int:
    """core_task's core_out[key].seen: 1 once the program ran (see bpf/core_task.bpf.c)."""
    global SEEN_OFF
    if SEEN_OFF is None:
        btf = obj.spec.btf
        t = btf.find("core_out", bpfload.btf.Kind.STRUCT)
        SEEN_OFF = next(m.offset // 8 for m in t.members if m.name == "seen")
    raw = obj.maps["core_out"].lookup(key)
    return struct.unpack_from("=Q", raw, SEEN_OFF)[0]


def _reset(obj) -> None:
    m = obj.maps["core_out"]
    m.update(0, bytes(m.value_size))
    m.update(1, bytes(m.value_size))


@pytest.fixture
def core_task():
    with bpfload.load(bpf_object("core_task")) as obj:
        yield obj


def test_raw_tp_link_runs_while_attached_and_stops_on_close(core_task):
    obj = core_task
    prog = obj.programs["core_raw_tp"]
    _reset(obj)
    link = prog.attach()                 # section raw_tp/sys_enter
    try:
        assert isinstance(link, Link) and link.type == LinkType.RAW_TRACEPOINT
        assert link.program == "core_raw_tp" and link.fd > 2 and link.id in _link_ids()
        os.getppid()
        assert _seen(obj, 0) == 1
        info = link.info()
        assert (info.id, info.prog_id, info.tp_name) == (link.id, prog.id, "sys_enter")
        assert "raw tracepoint sys_enter" in repr(link)
    finally:
        link.close()
    assert link.closed and info.id not in _link_ids()
    _reset(obj)
    os.getppid()
    assert _seen(obj, 0) == 0
    link.close()                          # idempotent
    with pytest.raises(AttachError, match="closed"):
        link.fd


def test_from_id_is_another_reference(core_task):
    prog = core_task.programs["core_raw_tp"]
    with prog.attach_raw_tracepoint("sys_enter") as link:
        other = Link.from_id(link.id)
        try:
            assert other.program == prog.info().name
            assert other.type == LinkType.RAW_TRACEPOINT and other.id == link.id
            assert "sys_enter" in other.hook
        finally:
            other.close()
        assert link.id in _link_ids()      # the first fd still holds it
    with pytest.raises(bpfload.SyscallError):
        Link.from_id(0xFFFFFFF0)


def test_pinned_link_outlives_its_object(core_task, bpffs):
    obj = core_task
    prog = obj.programs["core_tp_btf"]
    path = bpffs / "raw_tp_link"
    link = prog.attach_trace()
    lid = link.id
    link.pin(path)
    assert link.pin_path == str(path) and pins(bpffs) == ["raw_tp_link"]
    link.close()                          # pinned: stays attached
    assert lid in _link_ids()
    again = Link.from_pin(path)
    try:
        assert again.id == lid and again.pin_path == str(path)
        assert again.program == prog.info().name
        again.unpin()
        assert pins(bpffs) == [] and again.pin_path is None
        assert lid in _link_ids()         # our fd still holds it
    finally:
        again.close()
    assert lid not in _link_ids()


def test_from_pin_refuses_what_is_not_a_link(bpffs):
    with bpfload.Map.create(bpfload.MapType.ARRAY, 4, 4, 1, name="notlink") as m:
        m.pin(bpffs / "m")
        with pytest.raises(AttachError, match="pinned map, not a link"):
            Link.from_pin(bpffs / "m")
    with pytest.raises(bpfload.PinError):
        Link.from_pin(bpffs / "absent")


def test_update_and_detach_refusals_name_the_link(core_task):
    prog = core_task.programs["core_raw_tp"]
    with prog.attach() as link:
        with pytest.raises(AttachError) as ei:
            link.update(prog)
        e = ei.value
        assert e.errno == errno.EINVAL and e.command == "BPF_LINK_UPDATE"
        assert "cannot update the link of program 'core_raw_tp'" in str(e)
        with pytest.raises(AttachError) as ei:
            link.detach()
        assert ei.value.errno == errno.EOPNOTSUPP and "cannot detach" in str(ei.value)
        # still attached after both refusals
        _reset(core_task)
        os.getppid()
        assert _seen(core_task, 0) == 1


def test_wrong_program_type_for_the_hook(core_task):
    with pytest.raises(AttachError, match="cannot attach to a raw tracepoint"):
        core_task.programs["core_tp_btf"].attach_raw_tracepoint("sys_enter")
    with pytest.raises(AttachError, match="attach_trace\\(\\) is for"):
        core_task.programs["core_raw_tp"].attach_trace()
    with pytest.raises(AttachError) as ei:
        core_task.programs["core_raw_tp"].attach_raw_tracepoint("bpfload_no_such_tp")
    assert ei.value.errno == errno.ENOENT and "no such tracepoint" in str(ei.value)


def test_section_without_a_hook():
    with bpfload.load(bpf_object("ringbuf")) as obj:
        prog = obj.programs["rb_output"]          # SEC("syscall")
        with pytest.raises(AttachError, match="names no hook"):
            prog.attach()
        obj.attach_all()
        assert obj.links == {}
        assert set(obj.unattached) == set(obj.programs)
        assert "no attachable hook" in obj.unattached["rb_output"]


def test_attach_all_keeps_links_and_close_detaches(core_task):
    obj = core_task
    before = _link_ids()
    made = obj.attach_all()
    assert set(made) == {"core_raw_tp", "core_tp_btf"} and obj.links == made
    assert obj.unattached == {}
    ids = {link.id for link in made.values()}
    assert ids <= _link_ids() and not ids & before
    assert obj.attach_all() == {}                 # already attached: left alone
    _reset(obj)
    obj.bss["want_tid"] = 0                       # tp_btf records tid 0 only: never this thread
    os.getppid()
    assert _seen(obj, 0) == 1 and _seen(obj, 1) == 0
    obj.close()
    assert not ids & _link_ids() and obj.links == {}
    assert all(link.closed for link in made.values())


@pytest.mark.parametrize("nth", [1, 2])
def test_attach_all_rolls_back_on_a_failed_syscall(core_task, nth):
    """A fault at the nth bpf(2) call of attach_all leaves no link and no fd.

    With nth=2 the first program was attached before the fault: its link is closed.
    """
    before = _link_ids()
    _sys.inject_fault(nth, errno.ENOMEM)
    try:
        with pytest.raises(AttachError) as ei:
            core_task.attach_all()
        fired = not _sys.fault_pending()
    finally:
        _sys.inject_fault(0, 0)
    assert fired and ei.value.errno == errno.ENOMEM
    assert ei.value.program in ("core_raw_tp", "core_tp_btf")
    assert core_task.links == {}
    assert _link_ids() - before == set()


def test_attach_all_third_call_succeeds_without_a_fault(core_task):
    # the two attaches take two bpf(2) calls: a fault armed for the third never fires
    _sys.inject_fault(3, errno.ENOMEM)
    try:
        made = core_task.attach_all()
        assert _sys.fault_pending()
    finally:
        _sys.inject_fault(0, 0)
    assert len(made) == 2


class _Probe:
    def __init__(self):
        self.calls = 0
        self.closed = False

    def detach(self):
        self.calls += 1

    def close(self):
        self.closed = True


def test_attachment_without_a_bpf_link():
    probe = _Probe()
    link = Link(None, program="p", type=LinkType.SOCKET_FILTER, hook="socket 7",
                detach=probe.detach, holds=[probe])
    assert link.fd == -1 and link.id == 0 and not link.is_bpf_link
    with pytest.raises(AttachError, match="cannot be pinned"):
        link.pin("/sys/fs/bpf/x")
    with pytest.raises(AttachError, match="not a BPF link"):
        link.info()
    with pytest.raises(AttachError, match="cannot update"):
        link.update(3)
    link.detach()
    link.detach()                  # harmless twice
    assert probe.calls == 1 and not probe.closed
    link.close()
    assert probe.calls == 1 and probe.closed and link.closed
    with pytest.raises(AttachError, match="closed"):
        link.detach()
    with pytest.raises(ValueError):
        Link(None, program="p", type=LinkType.SOCKET_FILTER, hook="x")


def test_leaked_attachment_warns_and_is_undone():
    probe = _Probe()
    link = Link(None, program="leaky", type=LinkType.PROG_ATTACH, hook="sockmap",
                detach=probe.detach)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del link
        gc.collect()
    assert probe.calls == 1
    assert any(issubclass(x.category, ResourceWarning) and "leaky" in str(x.message) for x in w)


def test_leaked_bpf_link_warns_and_detaches(core_task):
    prog = core_task.programs["core_raw_tp"]
    link = prog.attach()
    lid = link.id
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del link
        gc.collect()
    assert lid not in _link_ids()
    assert any(issubclass(x.category, ResourceWarning) for x in w)


def test_attach_error_carries_what_a_user_needs():
    e = bpfload.errors.attach_error("BPF_LINK_CREATE", errno.EEXIST, program="xdp_pass",
                                    hook="xdp on veth0", family="xdp")
    assert isinstance(e, bpfload.BpfError) and isinstance(e, OSError)
    assert (e.program, e.hook, e.command, e.errno) == ("xdp_pass", "xdp on veth0",
                                                       "BPF_LINK_CREATE", errno.EEXIST)
    assert str(e).startswith("cannot attach program 'xdp_pass' to xdp on veth0")
    assert "another XDP program" in e.hint and "EEXIST" in str(e)
    generic = bpfload.errors.attach_error("BPF_LINK_CREATE", errno.EPERM, program="p")
    assert "CAP_BPF" in generic.hint


def test_link_calls_hold_the_fd_while_closed_elsewhere(core_task):
    """close() while another call holds the link fd: the number stays the link's until the
    last user releases it, and new calls on the closed Link fail (they never reach a
    reused number)."""
    prog = core_task.programs["core_raw_tp"]
    link = prog.attach()
    owner = link._fd
    n = owner.hold()                   # what a call in flight on another thread does
    try:
        link.close()
        assert owner.closed
        for op in (link.info, link.detach, lambda: link.update(prog),
                   lambda: link.pin("/sys/fs/bpf/x")):
            with pytest.raises(AttachError, match="closed"):
                op()
        os.fstat(n)                    # still the link's: no new object can take the number
        _reset(core_task)
        os.getppid()
        assert _seen(core_task, 0) == 1      # and the link is still attached
    finally:
        owner.release()
    with pytest.raises(OSError):
        os.fstat(n)
    _reset(core_task)
    os.getppid()
    assert _seen(core_task, 0) == 0          # the last user closed it: detached
