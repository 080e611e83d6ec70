"""Fleet operation: the CLI's exit statuses and its signal handling, run as a subprocess.

* exit 2 for bad arguments (options, a bad export config), 3 when the kernel
  refuses to load a program, 4 when a program cannot be attached;
* ``bpfload export``: SIGTERM detaches every link it made (the kernel's
  link list, read here through ``bpfload.links()``, no longer has them) and
  exits 0; SIGHUP reloads the config: the new metric is served, the old
  object's link is gone and the new one is up; a broken config on SIGHUP
  keeps the running one;
* ``bpfload run``: SIGTERM detaches and exits 0.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import bpfload
from conftest import CliProcess, bpf_object, need_module

pytestmark = pytest.mark.kernel

yaml = need_module("yaml")
need_module("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

CLI = [sys.executable, "-m", "bpfload"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_USAGE, EXIT_LOAD, EXIT_ATTACH = 2, 3, 4


def cli(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def link_ids(lines) -> list:
    return [int(ln.rsplit("link id ", 1)[1].rstrip(")\n")) for ln in lines if "(link id " in ln]


def live_links() -> set:
    return {ln.id for ln in bpfload.links()}


def scrape(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def write_config(path, metrics, obj="attach_run"):
    path.write_text(yaml.safe_dump({"objects": {"app": {"path": str(bpf_object(obj))}},
                                    "metrics": metrics}))


SYSCALLS = {"name": "syscalls_total", "help": "Syscalls by number", "map": "app:syscalls",
            "labels": [{"name": "nr"}]}


def test_exit_status_bad_arguments(tmp_path):
    assert cli("export").returncode == EXIT_USAGE                            # missing CONFIG
    assert cli("run", bpf_object("attach_run"), "--interval", "-1").returncode == EXIT_USAGE
    cfg = tmp_path / "bad.yaml"
    write_config(cfg, [{"name": "x", "map": "app:no_such_map"}])
    p = cli("export", cfg, "--once")
    assert p.returncode == EXIT_USAGE and "no map 'no_such_map'" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert cli("export", tmp_path / "missing.yaml", "--once").returncode == EXIT_USAGE


def test_exit_status_could_not_load(tmp_path):
    cfg = tmp_path / "reject.yaml"
    write_config(cfg, [{"name": "x", "map": {"id": 1}}], obj="verifier_reject")
    p = cli("export", cfg, "--once")
    assert p.returncode == EXIT_LOAD, p.stderr
    assert "verifier log" in p.stderr and "Traceback" not in p.stderr


def test_exit_status_could_not_attach():
    # export_count is SEC("syscall"): nothing to attach it to, so --attach-all must fail
    p = cli("run", bpf_object("export_counters"), "--attach-all", "--duration", "0.1")
    assert p.returncode == EXIT_ATTACH, (p.stdout, p.stderr)
    assert "--attach-all" in p.stderr and "Traceback" not in p.stderr


def test_export_sigterm_detaches_and_sighup_reloads(tmp_path):
    cfg = tmp_path / "export.yaml"
    write_config(cfg, [SYSCALLS])
    proc = CliProcess(CLI + ["export", cfg, "--listen", "127.0.0.1:0"], cwd=REPO)
    try:
        lines = proc.until("serving ")
        first = link_ids(lines)
        assert len(first) == 1 and first[0] in live_links()
        url = lines[-1].split()[1]
        fams = scrape(url)
        assert sum(s.value for s in fams["syscalls"].samples) > 0     # counting for real

        # SIGHUP: a second metric appears; the object is reloaded and re-attached
        write_config(cfg, [SYSCALLS, {"name": "syscalls_seen", "type": "gauge",
                                      "map": "app:syscalls", "labels": [{"name": "nr"}]}])
        proc.p.send_signal(signal.SIGHUP)
        lines = proc.until("reloaded config")
        second = link_ids(lines)
        assert len(second) == 1 and second != first
        live = live_links()
        assert second[0] in live and first[0] not in live
        assert "syscalls_seen" in scrape(url)

        # SIGHUP with a broken config: logged, the running config stays
        write_config(cfg, [{"name": "x", "map": "app:nope"}])
        proc.p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert "syscalls_seen" in scrape(url)
        assert second[0] in live_links()

        proc.p.send_signal(signal.SIGTERM)
        out, err = proc.finish()
        assert proc.p.returncode == 0, err
        assert "stopped by SIGTERM" in out and "Traceback" not in err
        assert "reload failed" in err and "nope" in err
        assert second[0] not in live_links()
    finally:
        proc.close()


def test_run_sigterm_detaches_and_exits_0():
    proc = CliProcess(CLI + ["run", bpf_object("attach_run"), "--json"], cwd=REPO)
    try:
        first = json.loads(proc.readline())
        ids = [ln["id"] for ln in first["links"]]
        assert ids and set(ids) <= live_links()
        proc.p.send_signal(signal.SIGTERM)
        out, err = proc.finish()
        assert proc.p.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["stopped_by"] == "SIGTERM" and summary["detached"] == ["on_sys_enter"]
        assert not set(ids) & live_links()
    finally:
        proc.close()
