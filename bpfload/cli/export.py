"""``bpfload export CONFIG.yaml [--listen HOST:PORT] [--once]``: the Prometheus exporter.

Loads what the config names, attaches, and serves ``/metrics`` until
SIGTERM or SIGINT (then detaches, closes everything and exits 0).  SIGHUP
re-reads the config and swaps it in; a config that fails to load is logged
and the running one kept.  ``--once`` prints one scrape and exits.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import List, Tuple

from .system import UsageError

__all__ = ["add_export_parser", "cmd_export", "parse_listen"]


def parse_listen(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9435`` for IPv6, ``:9435`` for all addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    try:
        p = int(port)
    except ValueError:
        raise UsageError(f"--listen {text!r}: port must be a number") from None
    if not 0 <= p <= 65535:
        raise UsageError(f"--listen {text!r}: port out of range")
    return host, p


def cmd_export(args) -> int:
    """Serve the configured maps; exit 0 on SIGTERM/SIGINT."""
    import logging

    try:
        from ..export import ExportConfigError, Exporter
        log = logging.getLogger("bpfload.export")
        host, port = parse_listen(args.listen)
        exporter = Exporter(args.config)
        exporter.open()
    except ModuleNotFoundError as e:       # the [export] extra is not installed
        print(f"bpfload: {e}", file=sys.stderr)
        return 1
    except ExportConfigError as e:         # a bad config is a bad argument: exit 2
        raise UsageError(str(e)) from e
    with exporter:
        if args.once:
            sys.stdout.buffer.write(exporter.render(openmetrics=args.openmetrics))
            sys.stdout.flush()
            return 0
        wake = threading.Event()
        stop: List[str] = []
        hup: List[int] = []

        def on_stop(signum, frame):
            stop.append(signal.Signals(signum).name)
            wake.set()

        def on_hup(signum, frame):
            hup.append(1)
            wake.set()

        old = {s: signal.signal(s, h) for s, h in
               ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup))}
        try:
            _print_links(exporter)
            bound = exporter.serve(host, port)
            print(f"serving http://{bound[0]}:{bound[1]}/metrics (pid {os.getpid()})",
                  flush=True)
            while not stop:
                wake.wait(1.0)
                wake.clear()
                while hup and not stop:
                    hup.clear()
                    try:
                        exporter.reload()
                        _print_links(exporter)
                        print("reloaded config", args.config, flush=True)
                    except Exception as e:   # keep serving the old config
                        log.error("reload of %s failed, keeping the running config: %s",
                                  args.config, e)
                        print(f"reload failed: {e}", file=sys.stderr, flush=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    print(f"stopped by {stop[0] if stop else 'exit'}; detached", flush=True)
    return 0


def _print_links(exporter) -> None:
    for oname, obj in exporter.objects.items():
        for prog, link in obj.links.items():
            print(f"attached {oname}:{prog} -> {link.hook} (link id {link.id})", flush=True)
        for prog, why in obj.unattached.items():
            print(f"not attached {oname}:{prog}: {why}", flush=True)


def add_export_parser(sub) -> None:
    """Add ``export`` to the top-level sub-command parser."""
    p = sub.add_parser(
        "export", help="serve BPF maps as Prometheus/OpenMetrics metrics",
        description="Load the objects CONFIG names (attaching their programs), open its pinned "
        "maps and map ids, and serve /metrics until SIGTERM/SIGINT (exit 0, programs "
        "detached). SIGHUP reloads CONFIG. See docs/exporter.md.")
    p.add_argument("config", help="YAML (or .json) exporter config")
    p.add_argument("--listen", default="127.0.0.1:9435", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:9435; port 0: any free port)")
    p.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")
    p.add_argument("--openmetrics", action="store_true",
                   help="with --once: OpenMetrics instead of the Prometheus text format")
    p.set_defaults(func=cmd_export)
