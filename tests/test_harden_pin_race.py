"""Regression (issue 10, "two loads racing for the same pins").

Two processes load bpf/maps_btf.bpf.o (its ``lru_pinned`` map is
LIBBPF_PIN_BY_NAME) with the same pin_root at the same moment.  Both find no
pin, both create the map, one pins first: the other must reuse the pin that
won (BPF_OBJ_PIN's EEXIST), not fail, and its program must use that map.

Two long-lived children load once per round; every round uses a fresh
directory of a private bpffs.  Each child opens the object, then blocks
reading a FIFO of the round; the parent opens and closes its write end, which
releases both readers at once (EOF), and both call load().  (The parent holds
the FIFO open read-write until both children have opened it and said so.)  Each child reports the pinned map's id and the map ids of
its program as the kernel tells them (BPF_OBJ_GET_INFO_BY_FD).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import bpf_object, pins

pytestmark = pytest.mark.kernel

ROUNDS = 20

CHILD = r"""
import json, sys
import bpfload
path = sys.argv[1]
for line in sys.stdin:
    root, fifo = line.split()
    obj = bpfload.BpfObject.open(path)
    with open(fifo, "rb") as f:
        print("ready", flush=True)
        f.read()            # EOF when the parent closes its end: both go together
    try:
        with obj.load(pin_root=root):
            m = obj.maps["lru_pinned"]
            out = {"id": m.id, "pin": m.pin_path,
                   "prog_maps": list(obj.programs["count_pkts"].info().map_ids),
                   "reused": "lru_pinned" in obj.reused_maps}
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"""


def _child(path):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)


def test_two_loads_racing_for_one_pin_share_the_winner(bpffs):
    path = bpf_object("maps_btf")
    kids = [_child(path), _child(path)]
    results = []
    try:
        for r in range(ROUNDS):
            root = bpffs / f"round{r}"
            root.mkdir()
            fifo = bpffs.parent / f"go{r}"
            os.mkfifo(fifo)
            wfd = os.open(fifo, os.O_RDWR)     # a writer: the children's opens do not block
            try:
                for k in kids:
                    k.stdin.write(f"{root} {fifo}\n")
                    k.stdin.flush()
                for k in kids:
                    assert k.stdout.readline() == "ready\n"
            finally:
                os.close(wfd)                  # the last writer goes: both reads see EOF
            got = [json.loads(k.stdout.readline()) for k in kids]
            results.append(got)
            assert all("error" not in g for g in got), f"round {r}: {got}"
            a, b = got
            assert a["id"] == b["id"], f"round {r}: two different maps {got}"
            assert a["pin"] == b["pin"] == str(root / "lru_pinned")
            for g in got:       # the program was relocated to the shared map
                assert a["id"] in g["prog_maps"], f"round {r}: {got}"
            assert pins(root) == ["lru_pinned"]
    finally:
        for k in kids:
            k.stdin.close()
        for k in kids:
            try:
                k.wait(timeout=30)
            except subprocess.TimeoutExpired:
                k.kill()
                k.wait()
                raise
            finally:
                k.stdout.close()
    # each round has one creator that pinned; the other reused (the pin was there,
    # or it lost the race at BPF_OBJ_PIN)
    assert all(sorted(g["reused"] for g in got) == [False, True] for got in results), results
