"""Tracing attachments against the kernel: tracepoints, raw_tp, tp_btf, perf events, kprobes.

bpf/attach_trace.bpf.o counts events of one process (``target_tgid`` in
``.rodata``, set to this process before load) into ``counts`` (slot 0:
tracepoint sys_enter_getppid, 1: raw_tp sys_enter, 2: tp_btf sys_enter,
3: the kprobe-type programs) and ``cpu_counts`` (perf_event samples per
CPU).  Each test drives the hook with real system calls (os.getppid()),
reads the counter back, and shows that closing the link stops the count.

This kernel has no kprobes: the kprobe tests check the error and the
perf_event_attr bpfload would pass (built without a syscall, against a fake
sysfs); the tracefs probe-event writer is exercised for real with a legacy
uprobe event on libc's getppid.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
import tempfile
import time

import pytest

import bpfload
from bpfload import AttachError, LinkType, ProgType
from bpfload._core import perf as _perf
from bpfload._core import syscall as _sys
from bpfload.constants import PerfEventType
from bpfload.link import tracefs
from bpfload.link.tracing import attach_probe_event, kprobe_perf_attr
from conftest import REPO, bpf_object, on_cpu, pins

pytestmark = pytest.mark.kernel

N = 37
TP, RAWTP, TPBTF, KPROBE = 0, 1, 2, 3
KPROBE_PROGS = ("kp_nanosleep", "ks_getppid")


def _open(autoload_off=()):
    obj = bpfload.BpfObject.open(bpf_object("attach_trace"))
    obj.rodata["target_tgid"] = os.getpid()
    for name in autoload_off:
        obj.programs[name].autoload = False
    return obj


@pytest.fixture
def obj():
    o = _open().load()
    try:
        yield o
    finally:
        o.close()


def count(m, slot) -> int:
    return int.from_bytes(m[slot], "little")


def getppid_n(n=N):
    for _ in range(n):
        os.getppid()


def links_of(*progs) -> list:
    """Ids of the kernel's links whose program is one of *progs* (robust to other processes)."""
    want = {p.id for p in progs}
    out, cur = [], 0
    while True:
        cur = _sys.get_next_id("link", cur)
        if not cur:
            return out
        try:
            with bpfload.Link.from_id(cur) as link:
                if link.info().prog_id in want:
                    out.append(cur)
        except bpfload.BpfError:   # gone in between
            continue


def perf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
        except OSError:
            pass
    return n


def link_gone(link_id) -> bool:
    try:
        bpfload.Link.from_id(link_id).close()
    except bpfload.BpfError:
        return True
    return False


# -- tracepoints --------------------------------------------------------------------

def test_tracepoint_counts_exactly_and_close_stops(obj):
    counts = obj.maps["counts"]
    link = obj.programs["tp_getppid"].attach_tracepoint("syscalls", "sys_enter_getppid")
    try:
        assert link.is_bpf_link and link.type == LinkType.PERF_EVENT
        getppid_n()
        assert count(counts, TP) == N
        os.getpid()                                  # another syscall: not counted
        assert count(counts, TP) == N
    finally:
        link.close()
    getppid_n()
    assert count(counts, TP) == N


def test_tracepoint_by_section(obj):
    counts = obj.maps["counts"]
    with obj.programs["tp_getppid"].attach() as link:
        assert link.hook == "tracepoint syscalls/sys_enter_getppid"
        getppid_n()
        assert count(counts, TP) == N
    getppid_n()
    assert count(counts, TP) == N


def test_tracepoint_ioctl_fallback(obj):
    """use_ioctl=True: PERF_EVENT_IOC_SET_BPF, no BPF link in the kernel; close() detaches."""
    counts = obj.maps["counts"]
    prog = obj.programs["tp_getppid"]
    link = prog.attach_tracepoint("syscalls", "sys_enter_getppid", use_ioctl=True)
    try:
        assert not link.is_bpf_link and link.fd == -1
        assert link.type == LinkType.PERF_EVENT_IOCTL
        assert links_of(prog) == []
        getppid_n()
        assert count(counts, TP) == N
        with pytest.raises(AttachError, match="cannot pin"):
            link.pin("/sys/fs/bpf/never")
    finally:
        link.close()
    getppid_n()
    assert count(counts, TP) == N


def test_tracepoint_link_info_update_and_detach_refused(obj):
    prog = obj.programs["tp_getppid"]
    with prog.attach() as link:
        info = link.info()
        assert info.type == LinkType.PERF_EVENT
        assert info.perf_event_type == PerfEventType.TRACEPOINT
        assert info.tp_name == "sys_enter_getppid"
        assert info.prog_id == prog.id and info.id == link.id
        assert links_of(prog) == [link.id]
        with pytest.raises(AttachError, match="cannot update the link.*cannot swap"):
            link.update(prog)
        with pytest.raises(AttachError, match="cannot detach the link.*close the link instead"):
            link.detach()
        getppid_n()                                  # still attached after both refusals
        assert count(obj.maps["counts"], TP) == N
    assert links_of(prog) == []


def test_unknown_tracepoint_is_named(obj):
    prog = obj.programs["tp_getppid"]
    with pytest.raises(AttachError) as e:
        prog.attach_tracepoint("syscalls", "sys_enter_no_such_call")
    assert e.value.errno == errno.ENOENT and e.value.program == "tp_getppid"
    assert "syscalls/sys_enter_no_such_call" in str(e.value)
    assert "no such tracepoint" in str(e.value)
    with pytest.raises(AttachError, match="similar: syscalls/sys_enter_getppid"):
        prog.attach_tracepoint("syscalls", "sys_enter_getppd")
    with pytest.raises(AttachError, match="similar: syscalls/"):
        prog.attach_tracepoint("syscals", "sys_enter_getppid")
    with pytest.raises(AttachError, match="invalid tracepoint name"):
        prog.attach_tracepoint("syscalls", "../../id")


def test_program_types_are_checked(obj):
    p = obj.programs
    with pytest.raises(AttachError, match="RAW_TRACEPOINT program cannot attach to a tracepoint"):
        p["rawtp_getppid"].attach_tracepoint("syscalls", "sys_enter_getppid")
    with pytest.raises(AttachError, match="TRACEPOINT program cannot attach to a perf event"):
        p["tp_getppid"].attach_perf_event(type=1, config=0, sample_freq=1000)
    with pytest.raises(AttachError, match="TRACEPOINT program cannot attach to a kprobe"):
        p["tp_getppid"].attach_kprobe("do_nanosleep")
    with pytest.raises(AttachError, match="PERF_EVENT program cannot attach to a uprobe"):
        attach_probe_event(p["perf_sample"], "uprobe", "/bin/true:0x0")
    # fentry/fexit/lsm: the kernel here refuses them at load (EPERM, see test_attach_btf), so
    # only attach_trace()'s own check runs here: a program of another type is refused.
    with pytest.raises(AttachError, match="attach_trace\\(\\) is for tp_btf/fentry"):
        p["tp_getppid"].attach_trace()
    assert links_of(*p.values()) == []


# -- raw tracepoints and tp_btf ---------------------------------------------------------

@pytest.mark.parametrize("name, slot, ltype", [("rawtp_getppid", RAWTP, LinkType.RAW_TRACEPOINT),
                                               ("tpbtf_getppid", TPBTF, LinkType.RAW_TRACEPOINT)])
def test_raw_tp_and_tp_btf_count(obj, name, slot, ltype):
    counts = obj.maps["counts"]
    prog = obj.programs[name]
    link = prog.attach()
    try:
        assert link.type == ltype
        assert link.info().prog_id == prog.id
        getppid_n()
        assert count(counts, slot) == N
    finally:
        link.close()
    getppid_n()
    assert count(counts, slot) == N


def test_raw_tracepoint_explicit(obj):
    counts = obj.maps["counts"]
    with obj.programs["rawtp_getppid"].attach_raw_tracepoint("sys_enter") as link:
        assert link.info().tp_name == "sys_enter"
        getppid_n()
    assert count(counts, RAWTP) == N


# -- attach_all -------------------------------------------------------------------------

def test_attach_all(obj_path):
    obj = _open(autoload_off=KPROBE_PROGS).load()
    try:
        made = obj.attach_all()
        assert sorted(made) == sorted(obj.links) == ["rawtp_getppid", "tp_getppid",
                                                     "tpbtf_getppid"]
        assert obj.unattached["perf_sample"].startswith("perf_event programs need")
        for name in KPROBE_PROGS + ("fe_nanosleep",):
            assert obj.unattached[name] == "not loaded (autoload is off)"
        ids = [link.id for link in obj.links.values()]
        assert sorted(links_of(*obj.programs.values())) == sorted(ids)
        counts = bpfload.Map.from_fd(obj.maps["counts"].fd)
        getppid_n()
        assert [count(counts, s) for s in (TP, RAWTP, TPBTF)] == [N, N, N]
        assert obj.attach_all() == {}                # attached ones are left alone
    finally:
        obj.close()
    try:
        assert obj.links == {}
        assert all(link_gone(i) for i in ids)
        getppid_n()
        assert [count(counts, s) for s in (TP, RAWTP, TPBTF)] == [N, N, N]
    finally:
        counts.close()


def test_attach_all_rolls_back_when_a_kprobe_cannot_attach(obj):
    """The kprobe programs load but cannot attach here: attach_all undoes the links it made."""
    before = perf_fds()
    with pytest.raises(AttachError, match="kp_nanosleep.*CONFIG_KPROBES"):
        obj.attach_all()
    assert obj.links == {}
    assert links_of(*obj.programs.values()) == []
    assert perf_fds() == before
    getppid_n()
    assert count(obj.maps["counts"], TP) == 0


def test_attach_all_fault_at_each_bpf_call_leaves_nothing():
    """ENOMEM injected at the 1st, 2nd ... syscall of attach_all (bpf(2) and perf_event_open
    go through one fault door): no link, fd or event left."""
    obj = _open(autoload_off=KPROBE_PROGS).load()
    try:
        progs = list(obj.programs.values())
        before = perf_fds()
        fired = 0
        for n in range(1, 20):
            _sys.inject_fault(n, errno.ENOMEM)
            try:
                obj.attach_all()
            except AttachError as e:
                assert e.errno == errno.ENOMEM and e.program in obj.programs
                assert not _sys.fault_pending()
                fired += 1
                assert obj.links == {}
                assert links_of(*progs) == []
                assert perf_fds() == before
                continue
            finally:
                _sys.inject_fault(0, 0)
            # no fault fired: every bpf(2) call of attach_all was covered
            assert len(obj.links) == 3
            break
        else:
            pytest.fail("attach_all kept hitting the injected fault")
        # the tracepoint's perf_event_open and link, the raw_tp and the tp_btf links
        assert fired == 4
    finally:
        obj.close()
    assert perf_fds() == before


# -- pins -------------------------------------------------------------------------------

def test_pinned_tracepoint_link_outlives_the_object(bpffs):
    link_pin, map_pin = bpffs / "tp_link", bpffs / "counts"
    obj = _open(autoload_off=KPROBE_PROGS).load()
    try:
        link = obj.programs["tp_getppid"].attach()
        link.pin(link_pin)
        obj.maps["counts"].pin(map_pin)
        link.close()                                 # pinned: stays attached
    finally:
        obj.close()
    assert pins(bpffs) == ["counts", "tp_link"]
    with bpfload.Map.from_pin(map_pin) as counts:
        getppid_n()
        assert count(counts, TP) == N
        with bpfload.Link.from_pin(link_pin) as again:
            assert again.info().tp_name == "sys_enter_getppid"
            assert again.program == "tp_getppid"
        getppid_n()                                  # closing an fd of a pinned link: attached
        assert count(counts, TP) == 2 * N
        last = bpfload.Link.from_pin(link_pin)
        last.unpin()
        last.close()
        getppid_n()
        assert count(counts, TP) == 2 * N
    os.unlink(map_pin)
    assert pins(bpffs) == []


# -- perf events ------------------------------------------------------------------------

PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK = 1, 0


def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def cpu_counts(obj):
    m = obj.maps["cpu_counts"]
    return [count(m, c) for c in range(len(bpfload.online_cpus()))]


def test_perf_event_on_every_cpu(obj):
    prog = obj.programs["perf_sample"]
    before = perf_fds()
    cpu = max(bpfload.online_cpus())
    link = prog.attach_perf_event(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK,
                                  sample_freq=2000)
    try:
        ncpu = len(bpfload.online_cpus())
        assert perf_fds() == before + ncpu
        assert not link.is_bpf_link and link.fd == -1 and link.id == 0
        assert link.type == LinkType.PERF_EVENT
        assert len(links_of(prog)) == ncpu           # one perf link per CPU
        with pytest.raises(AttachError, match="not a BPF link"):
            link.info()
        with pytest.raises(AttachError, match="cannot pin"):
            link.pin("/sys/fs/bpf/never")
        with on_cpu(cpu):
            busy(0.2)
        assert cpu_counts(obj)[cpu] > 0
    finally:
        link.close()
    assert perf_fds() == before
    assert links_of(prog) == []
    snap = cpu_counts(obj)
    with on_cpu(cpu):
        busy(0.05)
    assert cpu_counts(obj) == snap


def test_perf_event_detach_closes_every_cpu(obj):
    prog = obj.programs["perf_sample"]
    before = perf_fds()
    with prog.attach(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK,
                     sample_period=100000) as link:
        assert links_of(prog)
        link.detach()
        assert links_of(prog) == [] and perf_fds() == before
        link.detach()                                # harmless twice


@pytest.mark.parametrize("call", ["BPF_LINK_CREATE", "perf_event_open"])
def test_perf_event_fault_on_a_later_cpu_rolls_back(obj, call):
    """ENOMEM at the n-th CPU's BPF_LINK_CREATE or perf_event_open: the links and events of
    the CPUs before go."""
    prog = obj.programs["perf_sample"]
    before = perf_fds()
    ncpu = len(bpfload.online_cpus())
    for n in range(1, ncpu + 1):
        _sys.inject_fault(n, errno.ENOMEM, 28 if call == "BPF_LINK_CREATE" else call)
        try:
            with pytest.raises(AttachError, match=f"on CPU {bpfload.online_cpus()[n - 1]}"):
                prog.attach_perf_event(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK,
                                       sample_period=100000)
            assert not _sys.fault_pending()
        finally:
            _sys.inject_fault(0, 0)
        assert links_of(prog) == [] and perf_fds() == before


def test_perf_event_one_cpu_is_a_perf_link(obj):
    prog = obj.programs["perf_sample"]
    cpu = min(bpfload.online_cpus())
    with prog.attach_perf_event(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK,
                                sample_freq=2000, cpu=cpu) as link:
        info = link.info()
        assert info.perf_event_type == PerfEventType.EVENT
        assert info.config == PERF_COUNT_SW_CPU_CLOCK
        # the PMU that took the event: PERF_TYPE_SOFTWARE, or (Linux 6.x) cpu-clock's own
        # dynamic PMU, numbered from PERF_TYPE_MAX (6) up
        assert info.event_type == PERF_TYPE_SOFTWARE or info.event_type >= 6
        with on_cpu(cpu):
            busy(0.1)
        assert cpu_counts(obj)[cpu] > 0


@pytest.mark.parametrize("as_int", [True, False])
def test_perf_event_given_fd_is_duplicated(obj, as_int):
    prog = obj.programs["perf_sample"]
    cpu = min(bpfload.online_cpus())
    mine = _perf.perf_event_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, cpu=cpu,
                                 sample_freq=2000, what="test event")
    try:
        with prog.attach_perf_event(mine.fileno() if as_int else mine) as link:
            assert link.is_bpf_link
            with on_cpu(cpu):
                busy(0.1)
            assert cpu_counts(obj)[cpu] > 0
        assert not mine.closed
        os.fstat(mine.fileno())                      # the caller's fd is still open
    finally:
        mine.close()


def test_perf_event_argument_errors(obj):
    prog = obj.programs["perf_sample"]
    with pytest.raises(AttachError, match="needs the event"):
        prog.attach()
    with pytest.raises(AttachError, match="exactly one of sample_period and sample_freq"):
        prog.attach_perf_event(type=1, config=0)
    with pytest.raises(AttachError, match="either pfd or the event"):
        prog.attach_perf_event(5, type=1, config=0, sample_freq=10)
    with tempfile.TemporaryFile() as f:
        with pytest.raises(AttachError, match="is not a perf event"):
            prog.attach_perf_event(f.fileno())
    with pytest.raises(AttachError, match="perf_event_open: .*ENOENT.*no such event"):
        prog.attach_perf_event(type=PERF_TYPE_SOFTWARE, config=999, sample_period=1, cpu=0)
    assert links_of(prog) == []


# -- kprobes (this kernel has none) ---------------------------------------------------

def test_kprobe_without_kernel_support(obj):
    before = perf_fds()
    with pytest.raises(AttachError) as e:
        obj.programs["kp_nanosleep"].attach()
    msg = str(e.value)
    assert "'kp_nanosleep'" in msg and "kprobe do_nanosleep" in msg
    assert "no kprobe support (CONFIG_KPROBES)" in msg
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(AttachError, match="kretprobe do_nanosleep.*CONFIG_KPROBES"):
        obj.programs["kp_nanosleep"].attach_kprobe("do_nanosleep", retprobe=True)
    with pytest.raises(AttachError, match="kretprobe cannot have an offset"):
        obj.programs["kp_nanosleep"].attach_kprobe("do_nanosleep", retprobe=True, offset=4)
    with pytest.raises(AttachError, match="ks_getppid.*kprobe __x64_sys_getppid.*CONFIG_KPROBES"):
        obj.programs["ks_getppid"].attach()
    assert perf_fds() == before


def fake_pmu(root, ptype=6, retprobe="config:0"):
    d = root / "bus" / "event_source" / "devices" / "kprobe"
    (d / "format").mkdir(parents=True)
    (d / "type").write_text(f"{ptype}\n")
    (d / "format" / "retprobe").write_text(retprobe + "\n")
    return str(root)


ATTR = struct.Struct("=IIQQQQQIIQQ")  # type size config period sample_type read_fmt flags ... cfg1 cfg2


def parse_attr(raw):
    f = ATTR.unpack_from(raw, 0)
    return {"type": f[0], "size": f[1], "config": f[2], "sample_period": f[3],
            "config1": f[9], "config2": f[10]}


@pytest.mark.parametrize("retprobe, bit, config", [(False, "config:0", 0), (True, "config:0", 1),
                                                   (True, "config:5", 32)])
def test_kprobe_attr_from_a_fake_pmu(tmp_path, retprobe, bit, config):
    sysfs = fake_pmu(tmp_path, 6, bit)
    a = parse_attr(kprobe_perf_attr("do_nanosleep", retprobe=retprobe,
                                    offset=0 if retprobe else 0x10, sysfs=sysfs))
    assert a["type"] == 6 and a["config"] == config
    assert a["config1"] != 0                         # points at "do_nanosleep" during the call
    assert a["config2"] == (0 if retprobe else 0x10)
    assert a["size"] == len(kprobe_perf_attr("x", sysfs=sysfs)) >= 112


def test_kprobe_attr_without_a_pmu(tmp_path):
    with pytest.raises(AttachError, match="no kprobe PMU"):
        kprobe_perf_attr("do_nanosleep", sysfs=str(tmp_path))
    assert tracefs.pmu_type("kprobe") is None        # the real machine: no kprobes
    assert tracefs.pmu_type("uprobe") is not None    # ... but a uprobe PMU


def test_syscall_function(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text("ffffffff81000000 T _stext\n0 T sys_getppid\n")
    assert tracefs.syscall_function("getppid", kallsyms=str(ks), machine="x86_64") == "sys_getppid"
    ks.write_text("0 T __x64_sys_getppid\n0 T sys_getppid\n")
    assert tracefs.syscall_function("getppid", kallsyms=str(ks),
                                    machine="x86_64") == "__x64_sys_getppid"
    assert tracefs.syscall_function("getppid", kallsyms=str(tmp_path / "none"),
                                    machine="aarch64") == "__arm64_sys_getppid"
    if os.uname().machine == "x86_64":
        assert tracefs.syscall_function("getppid") == "__x64_sys_getppid"


# -- tracefs ----------------------------------------------------------------------------

def _tracefs_mounts():
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if ln.split()[2] == "tracefs"]


def test_private_tracefs_mount_leaves_nothing_behind():
    if tracefs.find_tracefs() is not None:
        pytest.skip("tracefs is mounted here: no private mount to test")
    with tracefs.tracefs() as root:
        assert root in _tracefs_mounts()
        assert os.path.basename(root).startswith(f"bpfload-tracefs-{os.getpid()}-")
        assert os.path.exists(os.path.join(root, "events", "syscalls"))
    assert root not in _tracefs_mounts() and not os.path.exists(root)
    tracefs.clear_cache()
    assert tracefs.tracepoint_id("syscalls", "sys_enter_getppid") > 0
    assert not [m for m in _tracefs_mounts() if f"bpfload-tracefs-{os.getpid()}-" in m]
    assert not [d for d in os.listdir(tempfile.gettempdir())
                if d.startswith(f"bpfload-tracefs-{os.getpid()}-")]


def _libc_getppid():
    """(path, file offset) of libc's getppid in this process, for a uprobe."""
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(libc.getppid, ctypes.c_void_p).value
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi and len(parts) >= 6:
                return parts[5], addr - lo + int(parts[2], 16)
    pytest.skip("getppid is not in a file mapping")


def _uprobe_events():
    with tracefs.tracefs() as root:
        with open(os.path.join(root, "uprobe_events")) as f:
            return f.read()


def test_legacy_probe_event_through_tracefs(obj):
    """The kprobe_events/uprobe_events writer, for real: a uprobe event on libc getppid,
    a KPROBE-type program on its tracepoint, the event removed on close."""
    path, off = _libc_getppid()
    counts = obj.maps["counts"]
    link = attach_probe_event(obj.programs["kp_nanosleep"], "uprobe", f"{path}:{off:#x}")
    try:
        name = f"bpfload_{os.getpid()}_"
        assert f"p:uprobes/{name}" in _uprobe_events()
        info = link.info()          # the kernel sees through the tracefs event to the uprobe
        assert info.perf_event_type == PerfEventType.UPROBE
        assert (info.file_name, info.offset) == (os.path.realpath(path), off)
        getppid_n()
        assert count(counts, KPROBE) == N
    finally:
        link.close()
    assert f"uprobes/{name}" not in _uprobe_events()
    getppid_n()
    assert count(counts, KPROBE) == N


def test_legacy_probe_event_refused_leaves_nothing(obj):
    with pytest.raises(AttachError, match="kp_nanosleep.*uprobe_events"):
        attach_probe_event(obj.programs["kp_nanosleep"], "uprobe", "/no/such/file:0x10")
    assert f"bpfload_{os.getpid()}_" not in _uprobe_events()
    with pytest.raises(AttachError, match="CONFIG_KPROBE_EVENTS"):
        attach_probe_event(obj.programs["kp_nanosleep"], "kprobe", "do_nanosleep")


# -- the example --------------------------------------------------------------------------

def test_syscount_example():
    """examples/syscount.py counts this process's getppid calls for a second."""
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "syscount.py"),
                             "-p", str(os.getpid()), "-d", "1.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = proc.stdout.readline()
        assert first.startswith("counting syscalls/sys_enter_getppid"), \
            first + proc.stderr.read()
        getppid_n()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == f"syscalls/sys_enter_getppid pid {os.getpid()}: {N}"


def test_syscount_example_unknown_tracepoint():
    res = subprocess.run([sys.executable, str(REPO / "examples" / "syscount.py"), "-d", "0.1",
                          "-t", "syscalls/sys_enter_nope"], capture_output=True, text=True,
                         timeout=30, cwd=REPO)
    assert res.returncode == 1
    assert "no such tracepoint" in res.stderr and "sys_enter_nope" in res.stderr


def test_program_type_of_the_object(obj):
    """The object's sections map to the types the attach functions expect."""
    types = {n: p.type for n, p in obj.programs.items()}
    assert types == {"tp_getppid": ProgType.TRACEPOINT, "rawtp_getppid": ProgType.RAW_TRACEPOINT,
                     "tpbtf_getppid": ProgType.TRACING, "perf_sample": ProgType.PERF_EVENT,
                     "kp_nanosleep": ProgType.KPROBE, "ks_getppid": ProgType.KPROBE}
