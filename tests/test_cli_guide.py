"""Errors that guide (issue 13): what the command line says when the system is not ready.

* without privileges (capabilities dropped with setpriv, or a non-root uid) ``load`` and
  ``demo`` say what bpf(2) needs instead of "the kernel refused the object's BTF (EPERM)";
* a pin root off bpffs says how to mount bpffs at /sys/fs/bpf (never in the directory given);
* ``load --pin-root DIR`` creates missing directories under a bpffs, and removes them again
  when the load fails;
* loading over existing pins lists what is pinned there and how to reuse or remove it;
* ``map poll --rate`` prints human rates and JSON lines carry wall-clock ``time``.
"""
from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import bpfload
from bpfload._core import syscall as _sys
from bpfload.cli.guide import human_rate, missing_privilege
from bpfload.cli.main import main
from conftest import bpf_object, mount_bpffs, pins, umount

OBJ = bpf_object("maps_btf")
NEEDS = "bpf(2) needs root or CAP_BPF"


def bpfload_cli(*args, prefix=(), timeout=120):
    return subprocess.run([*prefix, sys.executable, "-m", "bpfload", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# setpriv: the same root user, every capability gone (bounding set too, so exec cannot
# give them back); and the unprivileged nobody
NO_CAPS = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")


def _need_setpriv():
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")


def _assert_privilege_message(p):
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    first = p.stderr.splitlines()[0]
    assert first.startswith(f"bpfload: {NEEDS}"), p.stderr
    for cap in ("CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"):
        assert cap in first, first
    # the kernel's own words stay, after the guidance
    assert "the kernel said:" in p.stderr and "EPERM" in p.stderr


def test_missing_privilege_reads_the_capability_mask():
    assert missing_privilege(0) is not None and NEEDS in missing_privilege(0)
    assert missing_privilege(1 << 39) is None          # CAP_BPF
    assert missing_privilege(1 << 21) is None          # CAP_SYS_ADMIN
    assert missing_privilege((1 << 38) | (1 << 12)) is not None   # PERFMON + NET_ADMIN only


@pytest.fixture
def open_bpffs(kernel):
    """A bpffs that uid 65534 can reach and write (tmp_path's parents are root's only)."""
    d = tempfile.mkdtemp(prefix=f"bpfload-guide-{os.getpid()}-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        mount_bpffs(d)
    except OSError as e:
        os.rmdir(d)
        pytest.skip(f"cannot mount bpffs: {e}")
    try:
        os.chmod(d, 0o777)
        yield pathlib.Path(d)
    finally:
        umount(d)
        os.rmdir(d)


@pytest.mark.kernel
@pytest.mark.parametrize("who", ["no-caps", "nobody"])
def test_load_without_privileges_says_what_bpf_needs(open_bpffs, who):
    _need_setpriv()
    before = sorted(os.listdir(open_bpffs))
    p = bpfload_cli("load", OBJ, "--pin-root", open_bpffs / "app",
                    prefix=NO_CAPS if who == "no-caps" else NOBODY)
    _assert_privilege_message(p)
    # the pin directory load made before asking the kernel is removed again
    assert sorted(os.listdir(open_bpffs)) == before


@pytest.mark.kernel
@pytest.mark.parametrize("who", ["no-caps", "nobody"])
def test_demo_without_privileges_says_what_bpf_needs(who):
    _need_setpriv()
    p = bpfload_cli("demo", "--duration", "1", prefix=NO_CAPS if who == "no-caps" else NOBODY)
    _assert_privilege_message(p)
    assert p.stdout == ""


@pytest.mark.kernel
def test_privileged_failures_are_not_blamed_on_privileges(bpffs):
    p = bpfload_cli("load", bpf_object("verifier_reject"), "--pin-root", bpffs)
    assert p.returncode == 3 and "invalid mem access" in p.stderr   # 3: could not load
    assert "CAP_BPF" not in p.stderr


def test_pin_root_off_bpffs_says_how_to_mount_bpffs_at_sys_fs_bpf(tmp_path):
    for root in (tmp_path, tmp_path / "new" / "dir"):
        p = bpfload_cli("load", OBJ, "--pin-root", root)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert "not on a bpffs mount" in p.stderr
        assert "mount -t bpf bpf /sys/fs/bpf" in p.stderr
        assert f"mount -t bpf bpf {tmp_path}" not in p.stderr
    assert not (tmp_path / "new").exists()      # nothing created off bpffs


@pytest.mark.kernel
def test_pin_failure_off_bpffs_in_the_api_never_suggests_mounting_there(tmp_path):
    with pytest.raises(bpfload.PinError) as ei:
        bpfload.load(OBJ, pin_root=tmp_path)
    assert "/sys/fs/bpf" in str(ei.value) and f"mount -t bpf bpf {tmp_path}" not in str(ei.value)


@pytest.mark.kernel
def test_load_creates_missing_pin_directories_under_bpffs(bpffs):
    root = bpffs / "apps" / "counter"
    d = json.loads(bpfload_cli("load", OBJ, "--pin-root", root, "--json").stdout)
    assert pins(root) == sorted(["count_pkts", "lru_pinned", "pcpu_stats", "pkt_array", "pkt_hash"])
    with bpfload.Map.from_pin(root / "pkt_hash") as m:
        assert m.id == {x["name"]: x["id"] for x in d["maps"]}["pkt_hash"]


@pytest.mark.kernel
def test_failed_load_removes_the_directories_it_created(bpffs, capsys):
    """The kernel refuses a map (a fault injected at BPF_MAP_CREATE): the pin
    directories load made are removed, what existed stays."""
    (bpffs / "keep").mkdir()
    before = sorted(os.listdir(bpffs))
    _sys.inject_fault(2, errno.EINVAL, command=0)          # the second BPF_MAP_CREATE
    try:
        rc = main(["load", str(OBJ), "--pin-root", str(bpffs / "keep" / "a" / "b")])
    finally:
        _sys.inject_fault(0, 0)
    assert rc == 1 and "CAP_BPF" not in capsys.readouterr().err
    assert sorted(os.listdir(bpffs)) == before and os.listdir(bpffs / "keep") == []


@pytest.mark.kernel
def test_loading_over_existing_pins_says_what_is_there_and_what_to_do(bpffs):
    bpfload_cli("load", OBJ, "--pin-root", bpffs)
    before = pins(bpffs)
    with bpfload.Map.from_pin(bpffs / "pkt_hash") as m, \
            bpfload.Program.from_pin(bpffs / "count_pkts") as prog:
        map_id, prog_id = m.id, prog.id
    p = bpfload_cli("load", OBJ, "--pin-root", bpffs)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    err = p.stderr
    assert f"{bpffs}/pkt_hash: map 'pkt_hash' (HASH, id {map_id})" in err
    assert f"{bpffs}/count_pkts: program 'count_pkts' (XDP, id {prog_id})" in err
    # lru_pinned is pinned by name: reused by design, so not in the way
    assert "lru_pinned:" not in err
    assert "bpfload map list --pin-root" in err and f"rm {bpffs}/pkt_hash" in err
    # nothing was replaced
    assert pins(bpffs) == before
    with bpfload.Map.from_pin(bpffs / "pkt_hash") as m:
        assert m.id == map_id


def test_human_rate():
    assert [human_rate(v) for v in (0, 0.5, 12.345, 999.4, 1990.4, 19990, 2.5e6, 3e9)] == \
        ["0/s", "0.5/s", "12.3/s", "999/s", "1.99k/s", "20k/s", "2.5M/s", "3G/s"]
    assert human_rate((1500, 3)) == "[1.5k/s, 3/s]"


@pytest.mark.kernel
def test_map_poll_rate_is_human_and_json_has_wall_clock_time(bpffs):
    m = bpfload.Map.create(bpfload.MapType.ARRAY, 4, 8, 2, name="rates")
    path = bpffs / "rates"
    m.pin(path)
    stop = threading.Event()

    def count():            # about 50k/s into slot 0
        v = 0
        while not stop.is_set():
            v += 5000
            m[0] = v
            time.sleep(0.1)

    t = threading.Thread(target=count)
    t.start()
    try:
        text = bpfload_cli("map", "poll", path, "--interval", "0.3", "--count", "3", "--rate").stdout
        t0, w0 = time.monotonic(), time.time()
        lines = bpfload_cli("map", "poll", path, "--interval", "0.2", "--count", "2",
                            "--json").stdout.splitlines()
    finally:
        stop.set()
        t.join()
        m.close()
    last = [ln for ln in text.splitlines() if ln.strip().startswith("0:")][-1]
    assert re.fullmatch(r"\s+0: \d+  \d+(\.\d+)?k/s", last), text
    rows = [json.loads(x) for x in lines]
    for r in rows:
        assert abs(r["time"] - w0) < 30 and abs(r["t"] - t0) < 30, r
    assert rows[1]["time"] > rows[0]["time"]
