"""The bpfload command line: inspect (no kernel) and load (kernel, bpffs)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bpfload
from conftest import bpf_object, pins


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "bpfload.cli", *map(str, args)],
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"bpfload {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def test_inspect_json_lists_programs_maps_relocations_and_order():
    d = json.loads(run("inspect", bpf_object("maps_custom"), "--json").stdout)
    maps = {m["name"]: m for m in d["maps"]}
    assert maps["aom_outer"]["type"] == "ARRAY_OF_MAPS"
    assert maps["aom_outer"]["form"] == "custom"
    assert maps["aom_outer"]["inner_template"]["name"] == "aom_inner0"
    assert maps["aom_outer"]["slots"] == {"0": "aom_inner0", "1": "aom_inner1"}
    assert maps["hom_outer"]["create_order"] > maps["hom_spare"]["create_order"]
    progs = {p["name"]: p for p in d["programs"]}
    assert progs["aom_write"]["type"] == "SYSCALL"
    assert any(r["kind"] == "MAP" and r["target"] == "aom_outer"
               for r in progs["aom_write"]["relocations"])


def test_inspect_text_shows_subprograms_and_globals():
    out = run("inspect", bpf_object("subprog")).stdout
    assert "subprograms" in out and "compute" in out and "CALL" in out
    out = run("inspect", bpf_object("globals")).stdout
    assert "cfg_mult" in out and "frozen" in out


def test_inspect_malformed_object_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.o"
    bad.write_bytes(bpf_object("globals").read_bytes()[:200])
    p = run("inspect", bad, check=False)
    assert p.returncode == 1 and "bpfload:" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.kernel
def test_load_pins_maps_and_programs(bpffs):
    d = json.loads(run("load", bpf_object("maps_btf"), "--pin-root", bpffs, "--json").stdout)
    assert {m["name"] for m in d["maps"]} == {"pkt_hash", "pkt_array", "pcpu_stats", "lru_pinned"}
    assert pins(bpffs) == sorted(["count_pkts", "lru_pinned", "pcpu_stats", "pkt_array", "pkt_hash"])
    # the pinned program is alive after the CLI exited and uses the pinned maps
    with bpfload.Program.from_pin(bpffs / "count_pkts") as prog, \
            bpfload.Map.from_pin(bpffs / "pkt_hash") as m:
        assert prog.test_run(b"\x03" + bytes(63)).retval == 2
        assert m[3] == (1).to_bytes(8, "little")
        assert set(prog.info().map_ids) >= {m.id}


@pytest.mark.kernel
def test_load_failure_prints_verifier_log_and_leaves_no_pins(bpffs):
    p = run("load", bpf_object("verifier_reject"), "--pin-root", bpffs, check=False)
    assert p.returncode == 3          # EXIT_LOAD: the kernel refused to load a program
    assert "bad_deref" in p.stderr and "invalid mem access" in p.stderr
    assert pins(bpffs) == []


@pytest.mark.kernel
def test_map_dump_and_poll_by_pin_and_id(bpffs):
    run("load", bpf_object("maps_btf"), "--pin-root", bpffs)
    with bpfload.Program.from_pin(bpffs / "count_pkts") as prog:
        for first in (4, 4, 9):
            prog.test_run(bytes([first]) + bytes(63))
    d = json.loads(run("map", "dump", bpffs / "pkt_hash", "--json", "--raw").stdout)
    got = {bytes.fromhex(e["key"])[0]: int.from_bytes(bytes.fromhex(e["value"]), "little")
           for e in d["entries"]}
    assert got == {4: 2, 9: 1}
    with bpfload.Map.from_pin(bpffs / "pcpu_stats") as m:
        map_id = m.id
    out = run("map", "poll", str(map_id), "--interval", "0.1", "--count", "2", "--sum-cpus",
              "--json").stdout.splitlines()
    rows = [json.loads(x) for x in out]
    assert len(rows) == 2
    assert {e["key"]: e["value"] for e in rows[-1]["entries"]} == {0: 3, 1: 3 * 64}
    p = run("map", "dump", bpffs / "nope", check=False)
    assert p.returncode == 2 and "no such pin" in p.stderr     # a bad argument


@pytest.mark.kernel
def test_load_sanitizes_pin_names_and_dump_decodes_with_btf(bpffs):
    run("load", bpf_object("globals"), "--pin-root", bpffs)
    # bpffs refuses '.' in names: .rodata is pinned as _rodata, like libbpf
    assert {"_rodata", "_data", "_bss", "compute"} <= set(pins(bpffs))
    d = json.loads(run("map", "dump", bpffs / "_data", "--json").stdout)
    (entry,) = d["entries"]
    assert entry["value"] == {"data_magic": 0x1234abcd, "data_calls": 100}


def test_bare_command_lists_the_commands():
    p = run()
    assert p.returncode == 0 and p.stderr == ""
    for cmd in ("inspect", "load", "run", "demo", "map", "prog", "link"):
        assert f"    {cmd} " in p.stdout, p.stdout


def test_version_and_verbosity():
    p = run("--version")
    assert p.stdout.strip() == f"bpfload {bpfload.__version__}"
    # -vv logs the library's debug records on stderr; -q keeps stderr quiet
    loud = run("-vv", "inspect", bpf_object("globals"))
    quiet = run("-q", "inspect", bpf_object("globals"))
    assert loud.stdout == quiet.stdout and quiet.stderr == ""
