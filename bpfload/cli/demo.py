"""``bpfload demo``: the main job on an embedded default.

Loads the XDP object shipped in the package (``bpfload/data/demo.bpf.o``,
built from ``bpf/demo.bpf.c``), drives it with synthetic packets through
BPF_PROG_TEST_RUN for a few seconds, and shows a live per-protocol
packets-per-second table (a :class:`bpfload.MapPoller` over the per-CPU
counters), the busiest ports (read through the map-in-map) and the events
read from the ring buffer, then a summary that checks every counter
against the traffic that was sent.  No clang, no network, no arguments.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Dict, List, Optional, TextIO

from ..object import BpfObject
from ..events.poll import MapPoller
from ..events.ringbuf import RingBuffer
from .guide import human_rate

if TYPE_CHECKING:
    from ..maps import Map

__all__ = ["run_demo", "demo_object_path", "PROTOCOLS", "build_traffic"]

PROTOCOLS = ("tcp", "udp", "icmp", "other")
_EVENT = struct.Struct("=QIIHHB3x")


def demo_object_path() -> str:
    """Path of the demo object shipped inside the package."""
    return str(resources.files("bpfload") / "data" / "demo.bpf.o")


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _eth(ethertype: int) -> bytes:
    return bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", ethertype)


def _ipv4(proto: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                      socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return _eth(0x0800) + hdr + payload


def _ipv6(nexthdr: int, payload: bytes) -> bytes:
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(payload), nexthdr, 64,
                      socket.inet_pton(socket.AF_INET6, "fd00::1"),
                      socket.inet_pton(socket.AF_INET6, "fd00::2"))
    return _eth(0x86DD) + hdr + payload


def _tcp(sport: int, dport: int, flags: int, size: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + bytes(size)


def _udp(sport: int, dport: int, size: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + size, 0) + bytes(size)


@dataclasses.dataclass(frozen=True)
class Packet:
    """One kind of synthetic packet and its share of the traffic."""

    name: str
    proto: int          # index into PROTOCOLS
    data: bytes
    weight: int         # parts per 100
    dport: Optional[int]
    event: bool         # the program emits a ring buffer event for it


def build_traffic(big_packet: int = 1000) -> List[Packet]:
    """The demo's traffic mix: TCP handshakes and data, DNS, VXLAN over IPv6, ping, ARP."""
    def pkt(name, proto, data, weight, dport, syn=False):
        return Packet(name, proto, data, weight, dport, syn or len(data) >= big_packet)
    return [
        pkt("tcp syn :443", 0, _ipv4(6, _tcp(40000, 443, 0x02, 0)), 5, 443, syn=True),
        pkt("tcp ack :443", 0, _ipv4(6, _tcp(40000, 443, 0x10, 1200)), 30, 443),
        pkt("tcp ack :80", 0, _ipv4(6, _tcp(40001, 80, 0x10, 200)), 15, 80),
        pkt("udp dns :53", 1, _ipv4(17, _udp(5353, 53, 40)), 20, 53),
        pkt("udp6 vxlan :4789", 1, _ipv6(17, _udp(5000, 4789, 100)), 10, 4789),
        pkt("icmp echo", 2, _ipv4(1, struct.pack("!BBHHH", 8, 0, 0, 1, 1) + bytes(56)), 12, None),
        pkt("arp", 3, _eth(0x0806) + bytes(46), 8, None),
    ]


#: shortest round of test_run calls (seconds of traffic).  An XDP test_run with
#: repeat > 1 registers the program in the kernel's XDP dispatcher and removes it
#: after (two dispatcher image swaps, each waiting for an RCU grace period):
#: ~30 ms of sleep per call whatever the repeat count or packet size.  A round
#: makes one call per kind of packet (7, more for event chunks), so rounds grow
#: to 1.5 times what the last one cost, up to the display interval.
ROUND_S = 0.25
#: the demo's ring buffer (set on the spec before load): 4 MiB of 32-byte records
RING_BYTES = 4 << 20
#: records per test_run for event-emitting packets: a quarter of the ring
_EVENT_CHUNK = RING_BYTES // 32 // 4
#: runs per test_run call at most (about 0.1 s of kernel time): the granularity of the end
_MAX_REPEAT = 1 << 20
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _split(total: int, traffic: List[Packet]) -> List[int]:
    """*total* packets shared by weight, exactly (largest remainders get the rest)."""
    weights = sum(p.weight for p in traffic)
    exact = [total * p.weight / weights for p in traffic]
    counts = [int(x) for x in exact]
    order = sorted(range(len(traffic)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def run_demo(duration: float = 5.0, rate: int = 200_000, interval: float = 1.0, *,
             json_out: bool = False, out: TextIO = sys.stdout,
             object_path: Optional[str] = None, plain: bool = False) -> dict:
    """Run the demo; returns the summary dict (also printed).

    *rate* is the target packets per second across all kinds, *duration*
    in seconds, *interval* between table updates.  On a terminal the live
    view is drawn with Rich when it is installed (``plain=True``: without),
    else redrawn in place with plain escape codes, cropped to the terminal's
    width; otherwise one block per interval.  SIGINT (Ctrl-C) and SIGTERM end
    the run early, with the summary (``stopped_by``).  Raises
    :class:`bpfload.BpfError` subclasses when the kernel refuses (e.g.
    :class:`bpfload.PermissionDeniedError` without CAP_BPF); ValueError for a
    *duration* or *interval* that is not a finite number > 0 (NaN and inf
    would never end) or a *rate* that is not a positive integer.  Linux 5.10+
    (ring buffer, map-in-map, BPF_PROG_TEST_RUN of XDP).
    """
    for what, v in (("duration", duration), ("interval", interval)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not 0 < v <= 365 * 86400:
            raise ValueError(f"{what} must be a finite number of seconds > 0 (at most a year), "
                             f"got {v!r}")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"rate must be an integer number of packets per second >= 1, got {rate!r}")
    traffic = build_traffic()
    sent = [0] * len(PROTOCOLS)
    sent_bytes = [0] * len(PROTOCOLS)
    events_expected = 0
    ev_count = [0] * len(PROTOCOLS)

    def on_event(data) -> None:
        _, proto, _, _, _, _ = _EVENT.unpack_from(data)
        if proto < len(ev_count):
            ev_count[proto] += 1

    stop: List[str] = []

    def on_signal(signum, frame) -> None:
        stop.append(signal.Signals(signum).name)

    intervals = []
    obj = BpfObject.open(object_path or demo_object_path())
    obj.spec.maps["events"].max_entries = RING_BYTES     # specs are editable before load
    view = None
    old_handlers = {}
    with obj:
        obj.load()
        prog = obj.programs["count_proto"]
        stats = obj.maps["proto_stats"]
        ports = _PortCounters(obj)
        with ports, RingBuffer(obj.maps["events"], on_event) as rb, \
                MapPoller(stats, interval=interval, sum_cpus=True) as poller:
            view = None if json_out else _make_view(out, plain)
            if threading.current_thread() is threading.main_thread():
                for sig in _STOP_SIGNALS:
                    old_handlers[sig] = signal.signal(sig, on_signal)
            try:
                start = time.monotonic()
                end = start + duration
                next_tick = start + interval
                scheduled = 0
                round_s = ROUND_S
                while not stop:
                    now = time.monotonic()
                    if now >= end:
                        break
                    # the packets due by the end of this round; a backlog (the machine is
                    # slower than the rate) is dropped past one round, so the run ends on
                    # time and sent_pps says what was reached
                    horizon = min(end, now + round_s)
                    due = int(rate * (horizon - start)) - scheduled
                    scheduled += due
                    due = min(due, int(rate * round_s * 2))
                    t0 = time.monotonic()
                    if due > 0:
                        for p, n in zip(traffic, _split(due, traffic)):
                            # event kinds run in chunks of a quarter of the ring,
                            # consumed in between, so the ring never fills; a call
                            # never starts past the end (or after Ctrl-C), so the run
                            # ends on time with every packet sent counted
                            left = n
                            while left > 0 and not stop and time.monotonic() < end:
                                k = min(left, _EVENT_CHUNK if p.event else _MAX_REPEAT)
                                _test_run(prog, p.data, k)
                                left -= k
                                sent[p.proto] += k
                                sent_bytes[p.proto] += k * len(p.data)
                                if p.event:
                                    events_expected += k
                                    rb.consume()
                    rb.consume()
                    now = time.monotonic()
                    cost = now - t0
                    round_s = min(max(ROUND_S, 1.5 * cost), max(ROUND_S, interval))
                    if now >= next_tick:
                        snap = poller.snapshot()
                        row = _interval_row(obj, snap, now - start, sum(ev_count), ports.rates())
                        intervals.append(row)
                        if view is None:
                            out.write(json.dumps(row) + "\n")
                            out.flush()
                        else:
                            view.show(row, duration, rate)
                        while next_tick <= now:
                            next_tick += interval
                    wake = min(next_tick, horizon, end)
                    if not stop and wake > now:
                        time.sleep(wake - now)
                if not intervals and not stop:     # a run shorter than one interval
                    row = _interval_row(obj, poller.snapshot(), time.monotonic() - start,
                                        sum(ev_count), ports.rates())
                    intervals.append(row)
                    if view is None:
                        out.write(json.dumps(row) + "\n")
                    else:
                        view.show(row, duration, rate)
            finally:
                for sig, h in old_handlers.items():
                    signal.signal(sig, h)
                if view is not None:
                    view.close()
            rb.consume()
            elapsed = time.monotonic() - start
            final = poller.snapshot()
            counted = {}
            for key, s in final.to_dict(int_keys=True).items():
                counted[PROTOCOLS[key]] = {"packets": s.value[0], "bytes": s.value[1]}
            port_totals = ports.totals()
    summary = {
        "duration_s": round(elapsed, 3),
        "requested_s": duration,
        "stopped_by": stop[0] if stop else "duration",
        "target_pps": rate,
        "sent_pps": round(sum(sent) / elapsed, 1) if elapsed > 0 else 0.0,
        "sent": {p: {"packets": sent[i], "bytes": sent_bytes[i]} for i, p in enumerate(PROTOCOLS)},
        "counted": counted,
        "avg_pps": {p: round(counted[p]["packets"] / elapsed, 1) for p in PROTOCOLS},
        "ports": port_totals,
        "events_expected": events_expected,
        "events_received": sum(ev_count),
        "events_by_protocol": {p: ev_count[i] for i, p in enumerate(PROTOCOLS)},
        "ring_dropped": events_expected - sum(ev_count),
    }
    summary["ok"] = (all(counted[p]["packets"] == sent[i] and
                         counted[p]["bytes"] == sent_bytes[i]
                         for i, p in enumerate(PROTOCOLS))
                     and summary["events_received"] <= events_expected)
    if json_out:
        out.write(json.dumps({"summary": summary}) + "\n")
    else:
        out.write(_summary_text(summary) + "\n")
    out.flush()
    return summary


def _test_run(prog, data: bytes, repeat: int) -> None:
    """One BPF_PROG_TEST_RUN of *repeat* runs with SIGINT/SIGTERM held off.

    The kernel aborts a test run with EINTR when a signal is pending, after
    an unknown number of the runs: the packets counted would no longer match
    the packets sent.  Blocked here, a Ctrl-C waits for the call (tens of
    milliseconds) and then ends the demo between calls.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        prog.test_run(data, repeat=repeat, data_out_size=0)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _PortCounters:
    """The per-protocol port maps, reached through the map-in-map ``ports`` as a program
    would (outer slot -> inner map id -> map), opened once; rates between reads."""

    def __init__(self, obj):
        from ..maps import Map
        self.maps: Dict[str, "Map"] = {}
        try:
            outer = obj.maps["ports"]
            for slot, name in ((0, "tcp"), (1, "udp")):
                inner_id = outer.lookup(slot)
                if inner_id is not None:
                    self.maps[name] = Map.from_id(inner_id)
        except BaseException:
            self.close()
            raise
        self._last: Dict[str, Dict[int, int]] = {}
        self._t = time.monotonic()

    def totals(self) -> Dict[str, Dict[int, int]]:
        """Port -> packets per protocol, busiest first."""
        out = {}
        for name, m in self.maps.items():
            counts = {int.from_bytes(k, sys.byteorder): int.from_bytes(v, sys.byteorder)
                      for k, v in m.items()}
            out[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        return out

    def rates(self) -> Dict[str, Dict[int, float]]:
        """Port -> packets per second since the previous call, busiest first."""
        now = time.monotonic()
        dt = max(now - self._t, 1e-9)
        cur = self.totals()
        out = {}
        for name, counts in cur.items():
            last = self._last.get(name, {})
            r = {port: (n - last.get(port, 0)) / dt for port, n in counts.items()}
            out[name] = dict(sorted(r.items(), key=lambda kv: -kv[1]))
        self._last, self._t = cur, now
        return out

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> "_PortCounters":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_view(out: TextIO, plain: bool):
    """Rich's Live on a terminal when Rich is installed (and *plain* is off), else plain text."""
    tty = out.isatty()
    if tty and not plain:
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return _RichView(out)
    return _PlainView(out, tty)


class _PlainView:
    """The live block redrawn in place with escape codes on a terminal, every line cropped
    to the terminal's width (a wrapped line would leave a stale one behind at the next
    redraw); one block after another when not a terminal."""

    def __init__(self, out: TextIO, tty: bool):
        self.out = out
        self.tty = tty
        self.lines = 0

    def _width(self) -> int:
        try:
            return max(os.get_terminal_size(self.out.fileno()).columns, 20)
        except (OSError, ValueError, AttributeError):
            return 80

    def show(self, row: dict, duration: float, rate: int) -> None:
        lines = _table_lines(row, duration, rate)
        if self.tty:
            width = self._width() - 1        # the last column would wrap on some terminals
            lines = [ln[:width] for ln in lines]
            if self.lines:
                self.out.write(f"\x1b[{self.lines}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.lines = len(lines)

    def close(self) -> None:
        pass


class _RichView:
    """Rich's Live display (redraws at any width; Rich crops what does not fit)."""

    def __init__(self, out: TextIO):
        from rich.console import Console
        from rich.live import Live
        self.console = Console(file=out)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def show(self, row: dict, duration: float, rate: int) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text
        t = Table(title=f"bpfload demo  t={row['t']:.1f}s of {duration:g}s  "
                        f"target {human_rate(rate)}", title_justify="left", box=None,
                  pad_edge=False)
        t.add_column("proto")
        t.add_column("packets/s", justify="right")
        t.add_column("bytes/s", justify="right")
        t.add_column("packets", justify="right")
        for p in PROTOCOLS:
            t.add_row(p, human_rate(row["pps"].get(p, 0)), human_rate(row["bytes_per_s"].get(p, 0)),
                      f"{row['packets'].get(p, 0):,}")
        t.add_row("total", human_rate(sum(row["pps"].values())), "", "")
        parts = [t, Text("busiest ports (map-in-map)", style="bold")]
        parts += [Text(ln) for ln in _port_lines(row)]
        parts.append(Text(f"ring buffer events: {row['events']:,}"))
        self.live.update(Group(*parts), refresh=True)

    def close(self) -> None:
        self.live.stop()


def _interval_row(obj, snap, t: float, events: int, port_rates: Dict[str, Dict[int, float]]) -> dict:
    row = {"t": round(t, 2), "time": round(time.time(), 3), "pps": {}, "bytes_per_s": {},
           "packets": {}, "events": events,
           "ports_pps": {name: {str(port): round(r, 1) for port, r in list(rates.items())[:3]}
                         for name, rates in port_rates.items()}}
    for key, s in snap.to_dict(int_keys=True).items():
        name = PROTOCOLS[key]
        row["pps"][name] = round(s.rate[0], 1)
        row["bytes_per_s"][name] = round(s.rate[1], 1)
        row["packets"][name] = s.value[0]
    return row


def _port_lines(row: dict) -> List[str]:
    return [f"{name:<5}" + "  ".join(f":{port} {human_rate(r)}" for port, r in rates.items())
            for name, rates in row["ports_pps"].items()]


def _table_lines(row: dict, duration: float, rate: int) -> List[str]:
    """The live block as lines of at most 46 columns (50-column terminals fit it whole)."""
    lines = [f"bpfload demo  t={row['t']:.1f}s/{duration:g}s  target {human_rate(rate)}",
             f"{'proto':<6}{'packets/s':>11}{'bytes/s':>11}{'packets':>14}"]
    for p in PROTOCOLS:
        lines.append(f"{p:<6}{human_rate(row['pps'].get(p, 0)):>11}"
                     f"{human_rate(row['bytes_per_s'].get(p, 0)):>11}"
                     f"{row['packets'].get(p, 0):>14,}")
    lines.append(f"{'total':<6}{human_rate(sum(row['pps'].values())):>11}")
    lines.append("busiest ports (map-in-map)")
    lines += _port_lines(row)
    lines.append(f"ring buffer events: {row['events']:,}")
    return lines


def _summary_text(s: dict) -> str:
    how = "" if s["stopped_by"] == "duration" else f", stopped by {s['stopped_by']}"
    lines = [f"\nsummary after {s['duration_s']:.1f}s of {s['requested_s']:g}s{how}",
             f"sent {human_rate(s['sent_pps'])} (target {human_rate(s['target_pps'])})",
             f"{'proto':<6}{'sent':>13}{'counted':>13}{'avg':>10}"]
    for p in PROTOCOLS:
        lines.append(f"{p:<6}{s['sent'][p]['packets']:>13,}{s['counted'][p]['packets']:>13,}"
                     f"{human_rate(s['avg_pps'][p]):>10}")
    lines.append("busiest ports (map-in-map):")
    for proto, ports in s["ports"].items():
        top = "  ".join(f":{port} {n:,}" for port, n in list(ports.items())[:2])
        lines.append(f"  {proto:<4}{top}")
    lines.append(f"ring buffer events: {s['events_received']:,} of {s['events_expected']:,}")
    if s["ring_dropped"]:
        lines.append(f"  ({s['ring_dropped']:,} dropped: the ring was full)")
    lines.append("counters match the traffic sent: " + ("yes" if s["ok"] else "NO"))
    return "\n".join(lines)
