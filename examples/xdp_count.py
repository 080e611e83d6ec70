#!/usr/bin/env python3
"""Count the packets an interface receives with XDP and print packets/s.

    sudo python3 examples/xdp_count.py IFACE [SECONDS] [--interval 1] [--mode auto|skb|drv]

Loads ``xdp_count`` from bpf/attach_net.bpf.o, attaches it to IFACE with an
XDP link (the program passes every packet), and every interval reads the
per-CPU counter ``xdp_pkts[0]`` (one slot per possible CPU: no atomics in
the program) and prints the per-CPU values, their sum and the rate.  After
SECONDS (default 10; 0 = until Ctrl-C) it prints ``total N packets`` and
closes the link, which detaches the program.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import List, Optional

import bpfload

OBJECT = pathlib.Path(__file__).resolve().parent.parent / "bpf" / "attach_net.bpf.o"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface", help="interface name or ifindex")
    ap.add_argument("seconds", nargs="?", type=float, default=10.0,
                    help="how long to count (0: until Ctrl-C)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between reports")
    ap.add_argument("--mode", default="auto", choices=("auto", "skb", "drv", "hw"))
    ap.add_argument("--object", default=str(OBJECT), help="the BPF object (attach_net.bpf.o)")
    args = ap.parse_args(argv)
    iface = int(args.iface) if args.iface.isdigit() else args.iface

    with bpfload.BpfObject.open(args.object).load() as obj:
        prog, pkts = obj.programs["xdp_count"], obj.maps["xdp_pkts"]
        try:
            link = prog.attach_xdp(iface, mode=args.mode)
        except bpfload.AttachError as e:
            print(f"xdp_count: {e}", file=sys.stderr)
            return 1
        with link:
            print(f"counting packets on {args.iface} (XDP link id {link.id}, "
                  f"{len(bpfload.possible_cpus())} possible CPUs)", flush=True)
            start = last_t = time.monotonic()
            last = 0
            try:
                while not args.seconds or time.monotonic() - start < args.seconds:
                    left = args.seconds - (time.monotonic() - start) if args.seconds else args.interval
                    time.sleep(max(0.0, min(args.interval, left)))
                    per_cpu = [int.from_bytes(v, sys.byteorder) for v in pkts[0]]
                    total, now = sum(per_cpu), time.monotonic()
                    rate = (total - last) / (now - last_t) if now > last_t else 0.0
                    busy = " ".join(f"cpu{i}={n}" for i, n in enumerate(per_cpu) if n)
                    print(f"{rate:10.1f} packets/s  total {total}  [{busy or 'no packets'}]",
                          flush=True)
                    last, last_t = total, now
            except KeyboardInterrupt:
                pass
            print(f"total {pkts.sum(0)} packets", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
