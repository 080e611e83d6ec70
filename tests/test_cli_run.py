"""The introspection CLI (prog/map/link list, prog show), ``bpfload run`` and ``load --attach``.

Every command runs as a subprocess (``python -m bpfload.cli``).  ``run``
is checked end to end on bpf/attach_run.bpf.o: the filter is on the tgid of
a helper process the test starts and drives (``--set target_tgid=PID``;
0 would mean "every process"), so the test knows exactly how many
getppid() calls the program must see: the helper makes N of them when told
to and no others.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

import bpfload
from conftest import CliProcess, bpf_object, pins

pytestmark = pytest.mark.kernel

NR_GETPPID = 110   # x86_64
CLI = [sys.executable, "-m", "bpfload.cli"]

# Waits for "go N" on stdin, makes N getppid() calls, says "done"; exits on EOF.
HELPER = r"""
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)   # PR_SET_NAME
print(os.getpid(), flush=True)
for line in sys.stdin:
    n = int(line.split()[1])
    for _ in range(n):
        os.getppid()
    print("done", flush=True)
"""


def cli(*args, check=True, timeout=60):
    p = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"bpfload {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@contextlib.contextmanager
def helper(comm: str = "blhelper"):
    h = subprocess.Popen([sys.executable, "-c", HELPER, comm], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        pid = int(h.stdout.readline())
        assert pid == h.pid

        def syscalls(n: int) -> None:
            h.stdin.write(f"go {n}\n")
            h.stdin.flush()
            assert h.stdout.readline().strip() == "done"
        yield pid, syscalls
    finally:
        h.stdin.close()
        h.wait(timeout=10)
        h.stdout.close()


def run_cli(*args):
    """``bpfload run ARGS`` as a :class:`CliProcess` (a context manager)."""
    return CliProcess(CLI + ["run", *args], line_timeout=20.0)


def _load(tgid: int = 0):
    obj = bpfload.BpfObject.open(bpf_object("attach_run"))
    obj.rodata["target_tgid"] = tgid
    return obj.load()


# -- list / show ---------------------------------------------------------------

def test_prog_map_link_list_json_match_the_kernel(bpffs):
    with _load(os.getpid()) as obj, obj.programs["on_sys_enter"].attach() as link:
        prog = obj.programs["on_sys_enter"]
        obj.maps["syscalls"].pin(bpffs / "syscalls")
        progs = {p["id"]: p for p in json.loads(cli("prog", "list", "--json").stdout)}
        p = progs[prog.id]
        assert (p["name"], p["type"], p["tag"]) == ("on_sys_enter", "TRACEPOINT", prog.tag)
        assert sorted(p["map_ids"]) == sorted(m.id for m in obj.maps.values())
        assert p["load_time"] > 0 and p["loaded_at"] and p["pinned"] == []
        maps = {m["id"]: m for m in json.loads(cli("map", "list", "--json", "--pin-root",
                                                   bpffs).stdout)}
        s = maps[obj.maps["syscalls"].id]
        assert (s["name"], s["type"], s["key_size"], s["value_size"], s["max_entries"]) == \
            ("syscalls", "HASH", 4, 8, 1024)
        assert s["pinned"] == [str(bpffs / "syscalls")]
        assert maps[obj.maps["events"].id]["type"] == "RINGBUF"
        links = {ln["id"]: ln for ln in json.loads(cli("link", "list", "--json").stdout)}
        ln = links[link.id]
        assert (ln["prog_id"], ln["prog_name"], ln["type"]) == \
            (prog.id, "on_sys_enter", "PERF_EVENT")
        assert ln["tp_name"] == "sys_enter" and ln["target"] == "sys_enter"
        show = json.loads(cli("prog", "show", prog.id, "--json").stdout)
        assert show["id"] == prog.id and show["tag"] == prog.tag and show["name"] == "on_sys_enter"
        link_id = link.id
    # gone after close (the kernel may release a perf-event link a moment later)
    assert _eventually(lambda: link_id not in {
        ln["id"] for ln in json.loads(cli("link", "list", "--json").stdout)})


def test_list_text_is_aligned_columns():
    with _load() as obj:
        prog = obj.programs["on_sys_enter"]
        lines = cli("prog", "list").stdout.splitlines()
        head = lines[0]
        assert head.split() == ["ID", "TYPE", "NAME", "TAG", "MAPS", "LOADED", "UID"]
        row = next(ln for ln in lines[1:] if ln.split()[0] == str(prog.id))
        # every column starts where its header does
        for col, value in (("TYPE", "tracepoint"), ("NAME", "on_sys_enter"), ("TAG", prog.tag)):
            assert row.index(value) == head.index(col), (head, row)
        maps = cli("map", "list").stdout.splitlines()
        assert maps[0].split()[:4] == ["ID", "TYPE", "NAME", "KEY"]
        row = next(ln for ln in maps[1:] if ln.split()[0] == str(obj.maps["syscalls"].id))
        assert row.split()[1:7] == ["hash", "syscalls", "4B", "8B", "1024", "0x0"]
        assert row.index("syscalls") == maps[0].index("NAME")


def test_prog_show_unknown_id_fails_cleanly():
    p = cli("prog", "show", "4000000000", check=False)
    assert p.returncode == 2 and p.stderr == "bpfload: no program with id 4000000000\n"
    assert "Traceback" not in p.stderr


# -- run -----------------------------------------------------------------------

def _events(lines, pid):
    return [e for e in lines if e["type"] == "event" and e["data"]["pid"] == pid]


def test_run_prints_the_helpers_syscalls_polls_and_stops_at_duration():
    n = 23
    with helper() as (hpid, syscalls), run_cli(
            bpf_object("attach_run"), "--set", f"target_tgid={hpid}", "--events", "events",
            "--event-type", "event", "--poll", "syscalls", "--interval", "0.5",
            "--duration", "3", "--json") as p:
        first = json.loads(p.readline())
        assert first["type"] == "attached" and first["set"] == {"target_tgid": hpid}
        assert [ln["program"] for ln in first["links"]] == ["on_sys_enter"]
        # attached for real: the kernel lists its link
        link_id = first["links"][0]["id"]
        listed = {ln.id: ln for ln in bpfload.links()}
        assert link_id in listed
        prog_id = listed[link_id].prog_id
        syscalls(n)
        t0 = time.monotonic()
        out, err = p.finish()
        assert p.p.returncode == 0, err
        assert "Traceback" not in err
    lines = [json.loads(x) for x in out.splitlines()]
    assert all(ln["type"] in ("event", "poll", "summary") for ln in lines)
    ev = _events(lines, hpid)
    assert len(ev) == len([e for e in lines if e["type"] == "event"])   # the filter holds
    getppid = [e for e in ev if e["data"]["syscall_nr"] == NR_GETPPID]
    assert len(getppid) == n
    assert {e["data"]["comm"] for e in ev} == {"blhelper"}
    polls = [ln for ln in lines if ln["type"] == "poll"]
    assert polls, "no poll line in 3 s at a 0.5 s interval"
    last = {e["key"]: e["value"] for e in polls[-1]["entries"]}
    assert last[NR_GETPPID] == n
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["stopped_by"] == "duration"
    assert summary["events"] == len(ev) and summary["lost"] == 0
    assert summary["maps"]["syscalls"]["total"] == len(ev)
    assert summary["detached"] == ["on_sys_enter"]
    assert 3.0 <= summary["elapsed"] < 3.0 + (time.monotonic() - t0) + 1
    # the run detached: its link is gone, and its program once the kernel frees it (RCU)
    assert link_id not in {ln.id for ln in bpfload.links()}
    assert _eventually(lambda: prog_id not in {pr.id for pr in bpfload.programs()})


def test_run_stops_on_sigint_detaches_and_prints_hex_events():
    n = 5
    with helper() as (hpid, syscalls), run_cli(
            bpf_object("attach_run"), "--set", f"target_tgid={hpid:#x}", "--events", "events",
            "--json") as p:
        first = json.loads(p.readline())
        link_id = first["links"][0]["id"]
        syscalls(n)
        seen = 0
        while seen < n:       # events arrive while it runs, not only at the end
            e = json.loads(p.readline())
            pid, nr = struct.unpack_from("=II", bytes.fromhex(e["hex"]))
            assert pid == hpid and len(e["hex"]) == 48
            seen += nr == NR_GETPPID
        assert link_id in {ln.id for ln in bpfload.links()}
        p.p.send_signal(signal.SIGINT)
        out, err = p.finish()
        assert p.p.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err
        summary = json.loads(out.splitlines()[-1])
        assert summary["stopped_by"] == "SIGINT" and summary["events"] >= n
        assert summary["detached"] == ["on_sys_enter"]
    assert link_id not in {ln.id for ln in bpfload.links()}


def test_run_sets_char_array_and_zero_tgid_means_any_process():
    n = 9
    comm = f"blc{os.getpid() % 100000}"
    with helper(comm) as (hpid, syscalls), run_cli(
            bpf_object("attach_run"), "--set", "target_tgid=0", "--set", f"comm_filter={comm}",
            "--events", "events", "--event-type", "struct event", "--duration", "2") as p:
        assert p.readline().startswith("attached on_sys_enter -> tracepoint raw_syscalls/sys_enter")
        syscalls(n)
        out, err = p.finish()
        assert p.p.returncode == 0, err
    events = [ln for ln in out.splitlines() if " events: " in ln and "pid=" in ln]
    assert events and all(f"pid={hpid} " in ln and f"comm={comm}" in ln for ln in events)
    assert sum(f"syscall_nr={NR_GETPPID} " in ln for ln in events) == n
    assert f"events: {len(events)} seen, 0 lost" in out


def test_run_reads_a_perf_buffer_too():
    n = 13
    with helper() as (hpid, syscalls), run_cli(
            bpf_object("attach_run_perf"), "--set", f"target_tgid={hpid}", "--events", "pevents",
            "--event-type", "event", "--duration", "2", "--json") as p:
        assert json.loads(p.readline())["links"][0]["program"] == "on_sys_enter_perf"
        syscalls(n)
        out, err = p.finish()
        assert p.p.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    ev = [e for e in lines if e["type"] == "event"]
    assert ev and all(e["data"]["pid"] == hpid and e["map"] == "pevents" for e in ev)
    assert sum(e["data"]["syscall_nr"] == NR_GETPPID for e in ev) == n
    assert lines[-1]["events"] == len(ev) and lines[-1]["lost"] == 0


@pytest.mark.parametrize("args, msg", [
    (["--duration", "0"], "bpfload: run: argument --duration: must be a number of seconds > 0"),
    (["--duration", "-2"], "bpfload: run: argument --duration: must be a number of seconds > 0"),
    (["--interval", "0"], "bpfload: run: argument --interval: must be a number of seconds > 0"),
    (["--poll", "syscalls:avg"], "bpfload: --poll 'syscalls:avg'"),
    (["--events", "nosuch"], "bpfload: object 'attach_run' has no map 'nosuch'"),
    (["--events", "syscalls"], "bpfload: --events syscalls: a HASH map is not a RINGBUF"),
    (["--set", "target_tgid=abc"], "bpfload: --set target_tgid: 'abc' is not an integer"),
    (["--set", "nosuch=1"], "bpfload: --set nosuch: object 'attach_run' has no .rodata"),
    (["--set", "comm_filter=" + "x" * 16], "bpfload: --set comm_filter: 'xxxxxxxxxxxxxxxx' "
                                           "does not fit"),
    (["--set", "target_tgid"], "bpfload: --set 'target_tgid': expected VAR=VALUE"),
    (["--event-type", "nosuch", "--events", "events"], "bpfload: --event-type nosuch: no"),
])
def test_run_rejects_bad_arguments_with_status_2(args, msg):
    extra = [] if "--duration" in args else ["--duration", "1"]
    p = cli("run", bpf_object("attach_run"), *args, *extra, "--json", check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith(msg), p.stderr
    assert "Traceback" not in p.stderr


# -- load --attach -------------------------------------------------------------

def _eventually(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _libc_getppid_count(n: int) -> None:
    for _ in range(n):
        os.getppid()


def test_load_attach_pins_links_that_outlive_the_command(bpffs):
    d = json.loads(cli("load", bpf_object("attach_run"), "--pin-root", bpffs, "--attach",
                       "--set", f"target_tgid={os.getpid()}", "--json").stdout)
    link_pin = bpffs / "links" / "on_sys_enter"
    try:
        assert [ln["pin"] for ln in d["links"]] == [str(link_pin)]
        assert d["unattached"] == {}
        assert link_pin.exists() and "links" in pins(bpffs)
        with bpfload.Program.from_pin(bpffs / "on_sys_enter") as prog, \
                bpfload.Map.from_pin(bpffs / "syscalls") as counts:
            listed = [ln for ln in bpfload.links(pin_root=bpffs) if ln.prog_id == prog.id]
            assert len(listed) == 1 and listed[0].pinned == (str(link_pin),)
            assert listed[0].id == d["links"][0]["id"]

            def count():
                v = counts.lookup(NR_GETPPID)
                return 0 if v is None else int.from_bytes(v, sys.byteorder)
            # still attached after the command exited: this process's syscalls count
            base = count()
            _libc_getppid_count(11)
            assert count() == base + 11
            os.unlink(link_pin)               # the last holder: detaches
            assert prog.id not in {ln.prog_id for ln in bpfload.links()}

            def detached():
                c = count()
                os.getppid()
                return count() == c
            # the kernel releases a link whose last pin goes from a work queue, a bit later
            assert _eventually(detached)
            after = count()
            _libc_getppid_count(11)
            assert count() == after
    finally:
        if link_pin.exists():
            os.unlink(link_pin)


def test_load_attach_text_names_the_link_pins(bpffs):
    out = cli("load", bpf_object("attach_run"), "--pin-root", bpffs, "--attach").stdout
    link_pin = bpffs / "links" / "on_sys_enter"
    try:
        assert "link on_sys_enter" in out and str(link_pin) in out
    finally:
        os.unlink(link_pin)
    assert not [ln for ln in bpfload.links(pin_root=bpffs) if ln.pinned]
