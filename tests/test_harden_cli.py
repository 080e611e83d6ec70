"""Regression (issue 10, Low 12): every bad CLI argument ends in one line and exit status 2.

Each invocation runs ``python -m bpfload ...`` as a child with a timeout: a
directory given as an object (IsADirectoryError traceback before), a FIFO
(blocked forever in open()), /dev/zero (read without limit), a file over
the 256 MiB cap, map ids past u32 (OverflowError), non-finite or
non-positive seconds (``--interval inf`` and ``--duration nan`` never
ended), ``--rate 0`` and ``--duration -1`` (accepted).  Each must print
exactly one line ``bpfload: ...`` on stderr, nothing on stdout, no
traceback, and exit 2, in well under the timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import bpf_object

OBJ = str(bpf_object("maps_btf"))
SECONDS = "must be a number of seconds > 0"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    fifo = d / "fifo.o"
    os.mkfifo(fifo)                      # nobody ever writes: reading it would block
    big = d / "big.bpf.o"
    with open(big, "wb") as f:
        f.truncate((256 << 20) + 1)      # sparse: one byte over the cap
    plain = d / "plain"
    plain.write_text("not a directory\n")
    return {"dir": str(d), "fifo": str(fifo), "big": str(big), "plain": str(plain),
            "missing": str(d / "missing.bpf.o")}


CASES = [
    # objects: only regular files, at most 256 MiB
    (["inspect", "{dir}"], "bpfload: {dir}: is a directory, not an object file"),
    (["inspect", "/dev/zero"], "bpfload: /dev/zero: is a character device, not a regular object file"),
    (["inspect", "{fifo}"], "bpfload: {fifo}: is a FIFO, not a regular object file"),
    (["inspect", "{big}"], "bpfload: {big}: is over 256 MiB, the most bpfload reads as an object file"),
    (["inspect", "{missing}"], "bpfload: {missing}: No such file or directory"),
    (["load", "{dir}", "--pin-root", "{dir}"], "bpfload: {dir}: is a directory, not an object file"),
    (["load", "{fifo}", "--pin-root", "{dir}"], "bpfload: {fifo}: is a FIFO"),
    (["load", "/dev/zero", "--pin-root", "{dir}"], "bpfload: /dev/zero: is a character device"),
    (["run", "{dir}", "--duration", "1"], "bpfload: {dir}: is a directory, not an object file"),
    (["run", "{fifo}", "--duration", "1"], "bpfload: {fifo}: is a FIFO"),
    (["run", "/dev/zero", "--duration", "1"], "bpfload: /dev/zero: is a character device"),
    (["run", "{big}", "--duration", "1"], "bpfload: {big}: is over 256 MiB"),
    # directories
    (["load", OBJ, "--pin-root", "{plain}"], "bpfload: --pin-root {plain}: not a directory"),
    (["load", OBJ, "--pin-root", "{missing}"],
     "bpfload: --pin-root {missing}: no such directory, and {dir} is not on a bpffs mount"),
    (["load", OBJ, "--pin-root", "{dir}"], "bpfload: --pin-root {dir}: not on a bpffs mount"),
    (["run", OBJ, "--pin-root", "{plain}"], "bpfload: run: argument --pin-root: {plain}: not a directory"),
    (["prog", "list", "--pin-root", "{plain}"], "bpfload: prog list: argument --pin-root: {plain}: not a"),
    (["map", "list", "--pin-root", "{missing}"], "bpfload: map list: argument --pin-root: {missing}: no"),
    (["link", "list", "--pin-root", "{plain}"], "bpfload: link list: argument --pin-root: {plain}: not"),
    # ids: u32, never 0
    (["map", "dump", "4294967296"], "bpfload: map dump: argument map: must be an object id from 1 to "
     "4294967295, got '4294967296'"),
    (["map", "dump", str(2**64)], "bpfload: map dump: argument map: must be an object id"),
    (["map", "dump", "0"], "bpfload: map dump: argument map: must be an object id"),
    (["map", "poll", str(2**64)], "bpfload: map poll: argument map: must be an object id"),
    (["prog", "show", str(2**64)], "bpfload: prog show: argument id: must be an object id"),
    (["prog", "show", "x"], "bpfload: prog show: argument id: not an object id: 'x'"),
    # pins
    (["map", "dump", "{dir}"], "bpfload: map dump: argument map: {dir}: is a directory, not a pinned map"),
    (["map", "dump", "{missing}"], "bpfload: map dump: argument map: {missing}: no such pin"),
    # seconds: finite, > 0, at most a year
    (["map", "poll", "1", "--interval", "inf"], "bpfload: map poll: argument --interval: " + SECONDS),
    (["map", "poll", "1", "--interval", "nan"], "bpfload: map poll: argument --interval: " + SECONDS),
    (["map", "poll", "1", "--interval", "0"], "bpfload: map poll: argument --interval: " + SECONDS),
    (["map", "poll", "1", "--interval", "1e300"], "bpfload: map poll: argument --interval: " + SECONDS),
    (["map", "poll", "1", "--count", "-1"], "bpfload: map poll: argument --count: must be a count"),
    (["demo", "--duration", "nan"], "bpfload: demo: argument --duration: " + SECONDS),
    (["demo", "--duration", "inf"], "bpfload: demo: argument --duration: " + SECONDS),
    (["demo", "--duration", "-1"], "bpfload: demo: argument --duration: " + SECONDS),
    (["demo", "--duration", "0"], "bpfload: demo: argument --duration: " + SECONDS),
    (["demo", "--interval", "0"], "bpfload: demo: argument --interval: " + SECONDS),
    (["demo", "--interval", "x"], "bpfload: demo: argument --interval: not a number of seconds: 'x'"),
    (["demo", "--rate", "0"], "bpfload: demo: argument --rate: must be a packet rate from 1"),
    (["demo", "--rate", "-5"], "bpfload: demo: argument --rate: must be a packet rate from 1"),
    (["demo", "--rate", "1.5"], "bpfload: demo: argument --rate: not a packet rate: '1.5'"),
    (["run", OBJ, "--duration", "nan"], "bpfload: run: argument --duration: " + SECONDS),
    (["run", OBJ, "--interval", "inf"], "bpfload: run: argument --interval: " + SECONDS),
    (["load", OBJ, "--pin-root", "{dir}", "--log-level", "99"],
     "bpfload: load: argument --log-level: must be a verifier log level from 0 to 7"),
    # argparse's own errors are one line too
    (["nosuch"], "bpfload: argument COMMAND: invalid choice: 'nosuch'"),
    (["map"], "bpfload: map: the following arguments are required: mapcmd"),
    (["load", OBJ], "bpfload: load: the following arguments are required: --pin-root"),
]


def bpfload(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "bpfload", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv, msg", CASES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_argument_is_one_line_and_status_2(files, argv, msg):
    argv = [a.format(**files) for a in argv]
    try:
        p = bpfload(*argv)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bpfload {' '.join(argv)} never ended")
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.endswith("\n"), p.stderr
    assert p.stderr.startswith(msg.format(**files)), p.stderr


@pytest.mark.kernel
def test_a_path_that_is_no_map_pin_is_a_bad_argument(files, kernel):
    """A FIFO or a plain file as the map: BPF_OBJ_GET refuses it (no open(), so no blocking)."""
    for path in (files["fifo"], files["plain"]):
        p = bpfload("map", "dump", path)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("bpfload: cannot open pinned map") and \
            p.stderr.count("\n") == 1, p.stderr
    p = bpfload("map", "dump", "4294967295")      # a valid id no map has (ids start low)
    assert (p.returncode, p.stderr) == (2, "bpfload: no map with id 4294967295\n")
