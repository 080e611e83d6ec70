"""The main job, `bpfload demo`, run short: its counters must match the traffic it sent."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bpfload.cli.demo import PROTOCOLS, build_traffic, demo_object_path
from conftest import BPF_DIR

pytestmark = pytest.mark.kernel


def test_shipped_demo_object_is_the_built_one():
    with open(demo_object_path(), "rb") as f:
        assert f.read() == (BPF_DIR / "demo.bpf.o").read_bytes(), \
            "bpfload/data/demo.bpf.o is stale: run make -C bpf"


def test_traffic_mix_covers_every_protocol():
    kinds = build_traffic()
    assert {PROTOCOLS[p.proto] for p in kinds} == set(PROTOCOLS)
    assert sum(p.weight for p in kinds) == 100


def test_demo_json_counts_match_what_was_sent():
    p = subprocess.run([sys.executable, "-m", "bpfload.cli", "demo", "--duration", "1.5",
                        "--rate", "50000", "--interval", "0.5", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert len(rows) >= 2 and all(set(r["pps"]) == set(PROTOCOLS) for r in rows)
    assert rows[-1]["packets"]["tcp"] >= rows[0]["packets"]["tcp"] > 0
    assert summary["ok"] is True
    for proto in PROTOCOLS:
        assert summary["counted"][proto] == summary["sent"][proto]
        assert summary["sent"][proto]["packets"] > 0
    # every TCP packet went to :443 or :80, every UDP one to :53 or :4789 (map-in-map)
    assert sum(summary["ports"]["tcp"].values()) == summary["sent"]["tcp"]["packets"]
    assert set(summary["ports"]["udp"]) == {"53", "4789"}
    # ring buffer: events for SYNs and big packets, all TCP here, none lost
    assert summary["events_received"] == summary["events_expected"] > 0
    assert summary["events_by_protocol"]["tcp"] == summary["events_received"]


def test_demo_text_output():
    p = subprocess.run([sys.executable, "-m", "bpfload.cli", "demo", "--duration", "1",
                        "--rate", "20000"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "packets/s" in p.stdout and "counters match the traffic sent: yes" in p.stdout
