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
import socket
import struct
import sys
import time
from importlib import resources
from typing import Dict, List, Optional, TextIO

from ..object import BpfObject
from ..events.poll import MapPoller
from ..events.ringbuf import RingBuffer

__all__ = ["run_demo", "demo_object_path", "PROTOCOLS", "build_traffic"]

PROTOCOLS = ("tcp", "udp", "icmp", "other")
_EVENT = struct.Struct("=QIIHHB3x")
#: records per test_run for event-emitting packets: a quarter of the 256 KiB
#: ring (32-byte records with their headers)
_EVENT_CHUNK = 2048


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


class _Screen:
    """Redraws a block in place on a terminal; prints blocks one after another otherwise."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.lines = 0

    def show(self, text: str) -> None:
        if self.tty and self.lines:
            self.out.write(f"\x1b[{self.lines}F\x1b[J")
        self.out.write(text + "\n")
        self.out.flush()
        self.lines = text.count("\n") + 1


def _fmt_rate(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:7.2f}{unit}"
    return f"{v:8.0f}"


def run_demo(duration: float = 5.0, rate: int = 200_000, interval: float = 1.0, *,
             json_out: bool = False, out: TextIO = sys.stdout,
             object_path: Optional[str] = None) -> dict:
    """Run the demo; returns the summary dict (also printed).

    *rate* is the target packets per second across all kinds, *duration*
    in seconds, *interval* between table updates.  Raises
    :class:`bpfload.BpfError` subclasses when the kernel refuses (e.g.
    :class:`bpfload.PermissionDeniedError` without CAP_BPF); ValueError for a
    *duration* or *interval* that is not a finite number > 0 (NaN and inf
    would never end) or a *rate* that is not a positive integer.
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

    screen = _Screen(out)
    intervals = []
    with BpfObject.open(object_path or demo_object_path()) as obj:
        obj.load()
        prog = obj.programs["count_proto"]
        stats = obj.maps["proto_stats"]
        with RingBuffer(obj.maps["events"], on_event) as rb, \
                MapPoller(stats, interval=interval, sum_cpus=True) as poller:
            start = time.monotonic()
            next_tick = start + interval
            tick = 0.02
            credit = 0.0
            last = start
            while True:
                now = time.monotonic()
                if now - start >= duration:
                    break
                credit += (now - last) * rate
                last = now
                budget = int(credit)
                if budget >= 100:
                    credit -= budget
                    for p in traffic:
                        n = budget * p.weight // 100
                        if n <= 0:
                            continue
                        # kinds that emit events run in chunks a quarter of the
                        # ring's capacity, consumed in between, so the ring
                        # does not fill while the program runs
                        chunk = _EVENT_CHUNK if p.event else n
                        left = n
                        while left > 0:
                            k = min(left, chunk)
                            prog.test_run(p.data, repeat=k, data_out_size=0)
                            left -= k
                            if p.event:
                                rb.consume()
                        sent[p.proto] += n
                        sent_bytes[p.proto] += n * len(p.data)
                        if p.event:
                            events_expected += n
                if now >= next_tick:
                    snap = poller.snapshot()
                    row = _interval_row(obj, snap, now - start, sum(ev_count))
                    intervals.append(row)
                    if json_out:
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                    else:
                        screen.show(_table(row))
                    next_tick += interval
                time.sleep(tick)
            rb.consume()
            elapsed = time.monotonic() - start
            final = poller.snapshot()
            counted = {}
            for key, s in final.to_dict(int_keys=True).items():
                counted[PROTOCOLS[key]] = {"packets": s.value[0], "bytes": s.value[1]}
            ports = _top_ports(obj)
        summary = {
            "duration_s": round(elapsed, 3),
            "target_pps": rate,
            "sent": {p: {"packets": sent[i], "bytes": sent_bytes[i]} for i, p in enumerate(PROTOCOLS)},
            "counted": counted,
            "avg_pps": {p: round(counted[p]["packets"] / elapsed, 1) for p in PROTOCOLS},
            "ports": ports,
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


def _interval_row(obj, snap, t: float, events: int) -> dict:
    row = {"t": round(t, 2), "pps": {}, "bytes_per_s": {}, "packets": {}, "events": events}
    for key, s in snap.to_dict(int_keys=True).items():
        name = PROTOCOLS[key]
        row["pps"][name] = round(s.rate[0], 1)
        row["bytes_per_s"][name] = round(s.rate[1], 1)
        row["packets"][name] = s.value[0]
    return row


def _top_ports(obj) -> Dict[str, Dict[int, int]]:
    """Per-protocol port counts, read through the outer map as a program would."""
    from ..maps import Map
    out = {}
    outer = obj.maps["ports"]
    for slot, name in ((0, "tcp"), (1, "udp")):
        inner_id = outer.lookup(slot)
        if inner_id is None:
            continue
        with Map.from_id(inner_id) as inner:
            counts = {int.from_bytes(k, sys.byteorder): int.from_bytes(v, sys.byteorder)
                      for k, v in inner.items()}
        out[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    return out


def _table(row: dict) -> str:
    lines = [f"bpfload demo: xdp count_proto via BPF_PROG_TEST_RUN   t={row['t']:5.1f}s",
             f"{'protocol':<10}{'packets/s':>12}{'bytes/s':>12}{'packets':>14}"]
    for p in PROTOCOLS:
        lines.append(f"{p:<10}{_fmt_rate(row['pps'].get(p, 0)):>12}"
                     f"{_fmt_rate(row['bytes_per_s'].get(p, 0)):>12}{row['packets'].get(p, 0):>14,}")
    total = sum(row["pps"].values())
    lines.append(f"{'total':<10}{_fmt_rate(total):>12}")
    lines.append(f"ring buffer events: {row['events']:,}")
    return "\n".join(lines)


def _summary_text(s: dict) -> str:
    lines = [f"\nsummary after {s['duration_s']:.1f}s (target {s['target_pps']:,} packets/s)",
             f"{'protocol':<10}{'sent':>12}{'counted':>12}{'avg pkt/s':>12}"]
    for p in PROTOCOLS:
        lines.append(f"{p:<10}{s['sent'][p]['packets']:>12,}{s['counted'][p]['packets']:>12,}"
                     f"{s['avg_pps'][p]:>12,.0f}")
    for proto, ports in s["ports"].items():
        top = ", ".join(f":{port} {n:,}" for port, n in list(ports.items())[:3])
        lines.append(f"top {proto} ports (via map-in-map): {top}")
    lines.append(f"ring buffer events: {s['events_received']:,} received of "
                 f"{s['events_expected']:,} emitted ({s['ring_dropped']:,} dropped: ring full)")
    lines.append("counters match the traffic sent: " + ("yes" if s["ok"] else "NO"))
    return "\n".join(lines)
