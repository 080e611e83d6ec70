"""Regression (issue 10, High 1): a Map closed in one thread must never let another
thread's in-flight call reach whatever map the kernel gives the freed fd number next.

Writer threads update map A in a loop while a closer thread closes A and at once
creates maps B of the same shape (the kernel hands B the lowest free number: A's).
Nobody writes to a B, so every B must stay empty: an entry in one is a write that
landed in the wrong map.  Each racing call must either complete on A or raise
MapClosedError.  Bounded in time (a few seconds).
"""
from __future__ import annotations

import sys
import threading
import time

import pytest

import bpfload
from bpfload import MapType

pytestmark = pytest.mark.kernel

DURATION = 3.0
WRITERS = 4


def _race(op: str) -> tuple[int, int, int]:
    """Run the race with writers using *op*; returns (stray entries, B maps made, closed errors)."""
    holder = {"a": bpfload.Map.create(MapType.HASH, 4, 8, 64, name="race_a")}
    stop = threading.Event()
    errors: list = []
    closed_seen = [0]
    checked: list = []

    class _Victims(list):
        """Maps nobody writes to; each is checked for entries before it is closed."""

        def pop(self, i=-1):
            v = super().pop(i)
            checked.append(len(v.keys()))
            return v

    victims = _Victims()
    keys = bytes(4 * 8)
    values = (1).to_bytes(8, sys.byteorder) * 8

    def writer(i: int) -> None:
        try:
            while not stop.is_set():
                m = holder["a"]
                try:
                    if op == "update":
                        m.update(i, 1)
                    else:
                        m.update_batch(keys, values)
                except bpfload.MapClosedError:
                    closed_seen[0] += 1
                except Exception as e:  # EBADF & co: the call used a number it no longer owned
                    if len(errors) < 5:
                        errors.append(e)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def closer() -> None:
        try:
            while not stop.is_set():
                old = holder["a"]
                holder["a"] = bpfload.Map.create(MapType.HASH, 4, 8, 64, name="race_a")
                old.close()
                # the kernel gives the freed number to the next new fd: a B nobody writes
                victims.append(bpfload.Map.create(MapType.HASH, 4, 8, 64, name="race_b"))
                if len(victims) > 32:
                    victims.pop(0).close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    threads.append(threading.Thread(target=closer))
    try:
        for t in threads:
            t.start()
        time.sleep(DURATION)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sys.setswitchinterval(old_switch)
        for v in list(victims):
            checked.append(len(v.keys()))
            v.close()
        holder["a"].close()
    made = len(checked)
    stray = sum(1 for n in checked if n)
    return stray, made, errors


@pytest.mark.parametrize("op", ["update", "update_batch"])
def test_close_never_redirects_inflight_writes(op):
    stray, made, errors = _race(op)
    assert made > 50, f"the closer made only {made} maps: the race did not run"
    assert stray == 0, f"{stray} of {made} maps nobody wrote to received writes meant for a closed map"
    assert not errors, f"racing calls failed with other than MapClosedError: {errors}"


def test_last_user_closes_the_number():
    """close() while a call holds the number: new calls fail, the number lives until released."""
    import os

    m = bpfload.Map.create(MapType.ARRAY, 4, 8, 4, name="held")
    fdobj = m._fdobj
    n = fdobj.hold()
    try:
        m.close()
        assert m.closed and fdobj.closed
        with pytest.raises(bpfload.MapClosedError):
            m.lookup(0)
        with pytest.raises(bpfload.MapClosedError):
            m.update(0, 1)
        with pytest.raises(bpfload.MapClosedError):
            fdobj.hold()
        os.fstat(n)  # still ours: no new object can be given this number yet
        assert fdobj.users == 1
    finally:
        fdobj.release()
    assert fdobj.users == 0
    with pytest.raises(OSError):
        os.fstat(n)


def test_program_calls_hold_the_fd():
    """Program.test_run/info/pin use the FD owner: closed -> MapClosedError, never a stale number."""
    import os

    from conftest import bpf_object

    with bpfload.load(bpf_object("globals")) as obj:
        prog = next(iter(obj.programs.values()))
        fdobj = prog._fd
        n = fdobj.hold()
        try:
            prog.close()
            for call in (prog.test_run, prog.info):
                with pytest.raises(bpfload.MapClosedError, match="closed"):
                    call()
            os.fstat(n)
        finally:
            fdobj.release()
        with pytest.raises(OSError):
            os.fstat(n)
