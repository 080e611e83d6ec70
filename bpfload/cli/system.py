"""``bpfload prog|map|link list``, ``bpfload prog show`` and ``bpfload run``.

The listings are :mod:`bpfload.system` printed the way ``bpftool`` users
read them: one aligned row per object (``--json``: one JSON array).

``bpfload run OBJ`` loads an object (``--set VAR=VALUE`` sets ``.rodata``
variables first), attaches every program whose section says where
(:meth:`bpfload.BpfObject.attach_all`), prints the records of a ring or
perf buffer (``--events MAP``, hex or decoded through BTF with
``--event-type NAME``) as they come and the per-key rates of counter maps
(``--poll MAP[:sum]``) every ``--interval`` seconds, until ``--duration``
ends or SIGINT/SIGTERM arrives; then it detaches (closes the object) and
prints a summary.  With ``--json`` every line is one JSON object with a
``"type"``: ``attached``, ``event``, ``poll``, ``summary``.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import errors
from .guide import UsageError, kernel_step

__all__ = ["cmd_prog_list", "cmd_prog_show", "cmd_map_list", "cmd_link_list", "cmd_run",
           "add_list_parsers", "add_run_parser", "apply_sets", "UsageError", "ArgumentParser",
           "seconds", "int_range", "object_id", "directory", "map_ref"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bpfload: [SUBCOMMAND: ]message``, exit status 2.

    Sub-command parsers are of the same class (argparse makes them with
    ``type(parent)``).
    """

    def error(self, message: str):
        sub = self.prog.split(None, 1)[1] if " " in self.prog else ""
        self.exit(2, f"bpfload: {sub + ': ' if sub else ''}{message}\n")


#: the longest --duration and --interval accepted (a year: past it time.sleep() overflows)
MAX_SECONDS = 365 * 86400.0
#: kernel object ids are u32; 0 is never an id
MAX_ID = 2**32 - 1


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds, > 0 and at most a year."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or not 0 < v <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0 and at most "
                                         f"{MAX_SECONDS:.0f} (a year), got {text!r}")
    return v


def int_range(lo: int, hi: int, what: str = "an integer"):
    """argparse type: an integer (decimal, 0x.., 0o..) in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be {what} from {lo} to {hi}, got {text!r}")
        return v
    parse.__name__ = what
    return parse


object_id = int_range(1, MAX_ID, "an object id")


def path_arg(text: str) -> str:
    """argparse type: a path (checked by the command; no NUL byte)."""
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a path cannot contain a NUL byte")
    return text


def directory(text: str) -> str:
    """argparse type: an existing directory (e.g. a bpffs mount for --pin-root)."""
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a path cannot contain a NUL byte")
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return text


def map_ref(text: str):
    """argparse type: a map id (1..2**32-1) or the path of an existing bpffs pin (not a directory)."""
    if text.isdigit():
        return object_id(text)
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a path cannot contain a NUL byte")
    if not os.path.lexists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such pin (give a bpffs pin path or a map id)")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a pinned map")
    return text


def _name(v) -> str:
    return getattr(v, "name", str(v))


def _boot_offset() -> float:
    """Wall-clock seconds at boot (``load_time`` is CLOCK_BOOTTIME nanoseconds)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _when(load_time_ns: int, boot: float) -> str:
    if not load_time_ns:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(boot + load_time_ns / 1e9))


def _listing(args, records: List[Dict[str, Any]], headers: List[str], row, pinned_at: int) -> int:
    """Print *records* as JSON (``--json``) or a table: ``row(record)`` gives the cells, and
    with ``--pin-root`` a PINNED column goes in at index *pinned_at*."""
    if args.json:
        _dump_json(records, sys.stdout)
        return 0
    if args.pin_root:
        headers = headers[:pinned_at] + ["PINNED"] + headers[pinned_at:]
    rows = []
    for rec in records:
        cells = list(row(rec))
        if args.pin_root:
            cells.insert(pinned_at, " ".join(rec["pinned"]) or "-")
        rows.append(cells)
    _table(headers, rows, sys.stdout)
    return 0


def _table(headers: Sequence[str], rows: List[Sequence[Any]], out) -> None:
    """Left-aligned columns (the last one unpadded), two spaces apart."""
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths[:-1]))
        out.write((line + "  " + r[-1] if line else r[-1]).rstrip() + "\n")


def _dump_json(data, out) -> None:
    json.dump(data, out, indent=2)
    out.write("\n")


# -- programs -----------------------------------------------------------------

def _prog_dict(p, boot: float) -> Dict[str, Any]:
    return {"id": p.id, "type": _name(p.type), "name": p.name, "tag": p.tag,
            "map_ids": list(p.map_ids), "load_time": p.load_time,
            "loaded_at": _when(p.load_time, boot), "created_by_uid": p.created_by_uid,
            "btf_id": p.btf_id, "xlated_prog_len": p.xlated_prog_len,
            "jited_prog_len": p.jited_prog_len, "verified_insns": p.verified_insns,
            "run_cnt": p.run_cnt, "run_time_ns": p.run_time_ns, "pinned": list(p.pinned)}


def cmd_prog_list(args) -> int:
    from ..system import programs
    boot = _boot_offset()
    progs = [_prog_dict(p, boot) for p in programs(pin_root=args.pin_root)]
    return _listing(args, progs, ["ID", "TYPE", "NAME", "TAG", "MAPS", "LOADED", "UID"],
                    lambda p: [p["id"], p["type"].lower(), p["name"], p["tag"],
                               ",".join(map(str, p["map_ids"])) or "-", p["loaded_at"],
                               p["created_by_uid"]], pinned_at=7)


def cmd_prog_show(args) -> int:
    from .._core import syscall as _sys
    from ..programs import ProgramInfo
    from ..system import ProgramRecord, pinned_objects
    try:
        fd = _sys.get_fd_by_id("prog", args.id)
    except errors.SyscallError as e:
        if e.errno == errno.ENOENT:
            raise UsageError(f"no program with id {args.id}") from None
        raise errors.BpfError(f"no program with id {args.id} ({e.hint})") from e
    with fd:
        info = ProgramInfo.from_fd(fd.fileno())
    pins = pinned_objects(args.pin_root) if args.pin_root else {}
    rec = ProgramRecord(**{f.name: getattr(info, f.name) for f in dataclasses.fields(info)},
                        pinned=pins.get(("prog", info.id), ()))
    d = _prog_dict(rec, _boot_offset())
    if args.json:
        _dump_json(d, sys.stdout)
        return 0
    print(f"{d['id']}: {d['type'].lower()}  name {d['name']}  tag {d['tag']}")
    print(f"    loaded_at {d['loaded_at']}  uid {d['created_by_uid']}")
    print(f"    xlated {d['xlated_prog_len']}B  jited {d['jited_prog_len']}B  "
          f"verified_insns {d['verified_insns']}  btf_id {d['btf_id']}")
    print(f"    map_ids {','.join(map(str, d['map_ids'])) or '-'}")
    if d["run_cnt"] or d["run_time_ns"]:
        print(f"    run_cnt {d['run_cnt']}  run_time_ns {d['run_time_ns']}")
    for p in d["pinned"]:
        print(f"    pinned {p}")
    return 0


# -- maps ---------------------------------------------------------------------

def _map_dict(m) -> Dict[str, Any]:
    return {"id": m.id, "type": _name(m.type), "name": m.name, "key_size": m.key_size,
            "value_size": m.value_size, "max_entries": m.max_entries, "flags": m.flags,
            "btf_id": m.btf_id, "map_extra": m.map_extra, "pinned": list(m.pinned)}


def cmd_map_list(args) -> int:
    from ..system import maps
    ms = [_map_dict(m) for m in maps(pin_root=args.pin_root)]
    return _listing(args, ms, ["ID", "TYPE", "NAME", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS"],
                    lambda m: [m["id"], m["type"].lower(), m["name"], f"{m['key_size']}B",
                               f"{m['value_size']}B", m["max_entries"], f"{m['flags']:#x}"],
                    pinned_at=7)


# -- links --------------------------------------------------------------------

def _link_target(ln) -> str:
    """What a link is attached to, in a few words (from its kernel info)."""
    parts = []
    if ln.tp_name:
        parts.append(ln.tp_name)
    if ln.target_name:
        parts.append(f"iter {ln.target_name}")
    if ln.func_name:
        parts.append(ln.func_name + (f"+{ln.offset:#x}" if ln.offset else ""))
    if ln.file_name:
        parts.append(ln.file_name + (f"+{ln.offset:#x}" if ln.offset else ""))
    if ln.ifindex is not None:
        parts.append(f"ifindex {ln.ifindex}")
    if ln.cgroup_id is not None:
        parts.append(f"cgroup {ln.cgroup_id}")
    if ln.netns_ino is not None:
        parts.append(f"netns {ln.netns_ino}")
    if ln.target_obj_id:
        parts.append(f"obj {ln.target_obj_id} btf_id {ln.target_btf_id}")
    if ln.pf is not None:
        parts.append(f"pf {ln.pf} hook {ln.hooknum} prio {ln.priority}")
    if ln.attach_type is not None:
        parts.append(f"attach {_name(ln.attach_type).lower()}")
    return " ".join(parts)


def _jsonish(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and hasattr(v, "name"):
        return v.name
    if isinstance(v, (list, tuple)):
        return [_jsonish(x) for x in v]
    return v


def _link_dict(ln, prog_names: Dict[int, str]) -> Dict[str, Any]:
    d = {f.name: _jsonish(getattr(ln, f.name)) for f in dataclasses.fields(ln)
         if getattr(ln, f.name) is not None}
    d["prog_name"] = prog_names.get(ln.prog_id, "")
    d["target"] = _link_target(ln)
    return d


def cmd_link_list(args) -> int:
    from ..system import links, programs
    ls = list(links(pin_root=args.pin_root))
    names = {p.id: p.name for p in programs()} if ls else {}
    ds = [_link_dict(ln, names) for ln in ls]
    return _listing(args, ds, ["ID", "TYPE", "PROG", "TARGET"],
                    lambda d: [d["id"], str(d["type"]).lower(),
                               f"{d['prog_id']}" + (f" ({d['prog_name']})" if d["prog_name"] else ""),
                               d["target"] or "-"], pinned_at=3)


def add_list_parsers(prog_sub, map_sub, link_sub) -> None:
    """Add ``list``/``show`` to the ``prog``, ``map`` and ``link`` sub-command parsers."""
    def common(p):
        p.add_argument("--pin-root", metavar="DIR", type=directory,
                       help="bpffs directory to search (recursively) for pinned paths")
        p.add_argument("--json", action="store_true", help="one JSON array")
    p = prog_sub.add_parser("list", help="every BPF program in the kernel (like bpftool prog)")
    common(p)
    p.set_defaults(func=cmd_prog_list)
    p = prog_sub.add_parser("show", help="one program by id")
    p.add_argument("id", type=object_id)
    common(p)
    p.set_defaults(func=cmd_prog_show)
    p = map_sub.add_parser("list", help="every BPF map in the kernel (like bpftool map)")
    common(p)
    p.set_defaults(func=cmd_map_list)
    p = link_sub.add_parser("list", help="every BPF link in the kernel (like bpftool link)")
    common(p)
    p.set_defaults(func=cmd_link_list)


# -- run ----------------------------------------------------------------------

def apply_sets(obj, sets: Sequence[str]) -> Dict[str, Any]:
    """Apply ``VAR=VALUE`` assignments to ``obj.rodata`` (before load).

    VALUE is an int (``int(VALUE, 0)``: 10, 0x1f, 0o17) for a variable
    whose BTF type is an integer or enum; for any other variable (a char
    array) it is a string, stored NUL-padded.  Raises :class:`UsageError` for a malformed assignment, an
    unknown variable or a value that does not fit.
    """
    done: Dict[str, Any] = {}
    for s in sets:
        var, eq, text = s.partition("=")
        var = var.strip()
        if not eq or not var:
            raise UsageError(f"--set {s!r}: expected VAR=VALUE")
        if var not in obj.rodata:
            have = ", ".join(sorted(obj.rodata.keys())) or "none"
            raise UsageError(f"--set {var}: object {obj.name!r} has no .rodata variable {var!r} "
                             f"(has: {have})")
        size = obj.spec.variables[var].size
        is_int = isinstance(obj.rodata[var], int)     # BTF says integer/enum
        try:
            value: Any = int(text, 0)
        except ValueError:
            if is_int:
                raise UsageError(f"--set {var}: {text!r} is not an integer (10, 0x1f, 0o17)") \
                    from None
            value = None
        if not is_int:
            raw = text.encode()
            if len(raw) >= size:
                raise UsageError(f"--set {var}: {text!r} does not fit {var} ({size} bytes with "
                                 "the terminating NUL)")
            value = raw.ljust(size, b"\0")
        try:
            obj.rodata[var] = value
        except ValueError as e:
            raise UsageError(f"--set {var}: {e}") from None
        done[var] = value if isinstance(value, int) else text
    return done


def _parse_poll(spec: str) -> Tuple[str, bool]:
    name, _, mode = spec.partition(":")
    if not name or mode not in ("", "sum"):
        raise UsageError(f"--poll {spec!r}: expected MAP or MAP:sum")
    return name, mode == "sum"


def _event_codec(obj, type_name: str):
    from ..btf import Kind
    from ..btf.typed import codec_for
    btf = obj.spec.btf
    if btf is None:
        raise UsageError(f"--event-type {type_name}: object {obj.name!r} has no BTF")
    bare = type_name.split()[-1]
    for kind in (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF):
        t = btf.find(bare, kind)
        if t is not None:
            return codec_for(btf, t.id)
    raise UsageError(f"--event-type {type_name}: no struct, union or typedef {bare!r} in "
                     f"the BTF of {obj.name!r}")


def _plain(v):
    """A decoded value as JSON: char arrays as text when printable, else hex."""
    if isinstance(v, (bytes, bytearray)):
        t = bytes(v).split(b"\0", 1)[0]
        try:
            s = t.decode()
        except UnicodeDecodeError:
            return bytes(v).hex()
        return s if s.isprintable() else bytes(v).hex()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, int) and hasattr(v, "name"):
        return v.name
    return v


def _drop_counter(obj) -> Optional[int]:
    """The object's own count of dropped ring records: a .bss/.data ``dropped`` or ``lost``."""
    for gd in (obj.bss, obj.data):
        for name in ("dropped", "lost"):
            if name in gd:
                v = gd[name]
                if isinstance(v, int):
                    return v
    return None


def _validate_run(args) -> None:
    # --duration and --interval are checked by their argparse type (seconds); the
    # object file when it is read (ObjectFileError: exit 2)
    if args.event_type and not args.events:
        raise UsageError("--event-type needs --events MAP")


def cmd_run(args) -> int:
    """Load, attach, stream and poll until the duration ends or a signal comes."""
    from ..constants import MapType
    from ..events.perf import PerfBuffer
    from ..events.poll import MapPoller
    from ..events.ringbuf import RingBuffer
    from ..object import BpfObject

    _validate_run(args)
    polls = [_parse_poll(s) for s in args.poll]
    out = sys.stdout
    as_json = args.json

    def emit(d: Dict[str, Any], text: str) -> None:
        out.write((json.dumps(d) if as_json else text) + "\n")
        out.flush()

    obj = BpfObject.open(args.object)
    sets = apply_sets(obj, args.set)
    codec = _event_codec(obj, args.event_type) if args.event_type else None
    for name in [args.events] * bool(args.events) + [p[0] for p in polls]:
        if name not in obj.maps:
            raise UsageError(f"object {obj.name!r} has no map {name!r} "
                             f"(maps: {', '.join(obj.maps)})")

    stop: List[str] = []
    old_handlers = {}

    def on_signal(signum, frame):
        stop.append(signal.Signals(signum).name)

    counts = {"events": 0, "lost": 0}
    start = time.monotonic()
    readers: List[Any] = []
    pollers: List[Tuple[str, Any]] = []
    totals: Dict[str, Dict[str, int]] = {}

    def on_event(data) -> None:
        counts["events"] += 1
        t = round(time.monotonic() - start, 6)
        if codec is not None:
            raw = bytes(data[:codec.size])
            if len(raw) < codec.size:
                raw = raw.ljust(codec.size, b"\0")
            val = _plain(codec.decode(raw))
            txt = " ".join(f"{k}={v}" for k, v in val.items()) if isinstance(val, dict) else str(val)
            emit({"type": "event", "t": t, "map": args.events, "data": val},
                 f"{t:10.6f} {args.events}: {txt}")
        else:
            h = bytes(data).hex()
            emit({"type": "event", "t": t, "map": args.events, "hex": h},
                 f"{t:10.6f} {args.events}: {h}")

    def on_lost(cpu, n) -> None:
        counts["lost"] += n

    with obj:
        with kernel_step():
            obj.load(pin_root=os.path.abspath(args.pin_root) if args.pin_root else None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, on_signal)
        try:
            # readers first: a perf buffer drops what comes before its events are open
            ring = None
            if args.events:
                m = obj.maps[args.events]
                if m.type == MapType.RINGBUF:
                    ring = RingBuffer(m, on_event)
                elif m.type == MapType.PERF_EVENT_ARRAY:
                    ring = PerfBuffer(m, lambda cpu, data: on_event(data), on_lost)
                else:
                    raise UsageError(f"--events {args.events}: a {_name(m.type)} map is not a "
                                     "RINGBUF or PERF_EVENT_ARRAY map")
                readers.append(ring)
            for name, sum_cpus in polls:
                pollers.append((name, MapPoller(obj.maps[name], interval=args.interval,
                                                sum_cpus=sum_cpus)))
            obj.attach_all()
            if args.attach_all and obj.unattached:
                raise errors.AttachError(
                    "--attach-all: not every program could be attached: " +
                    "; ".join(f"{n}: {r}" for n, r in obj.unattached.items()), op="attach")
            links = {n: ln for n, ln in obj.links.items()}
            emit({"type": "attached", "object": obj.name, "pid": os.getpid(), "set": sets,
                  "links": [{"program": n, "id": ln.id, "hook": ln.hook} for n, ln in links.items()],
                  "unattached": dict(obj.unattached)},
                 "\n".join([f"attached {n} -> {ln.hook} (link id {ln.id})"
                            for n, ln in links.items()] +
                           [f"not attached {n}: {r}" for n, r in obj.unattached.items()] +
                           [f"running (pid {os.getpid()})" +
                            (f" for {args.duration:g}s" if args.duration else "") +
                            "; Ctrl-C to stop"]))
            deadline = start + args.duration if args.duration else None
            next_tick = start + args.interval
            while not stop:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                until = next_tick if deadline is None else min(next_tick, deadline)
                wait = max(0.0, min(until - now, 0.2))
                if ring is not None:
                    ring.poll(int(wait * 1000) or 1)
                else:
                    time.sleep(wait)
                if time.monotonic() >= next_tick and pollers:
                    _emit_polls(pollers, start, emit, totals)
                    next_tick += args.interval
                    if next_tick < time.monotonic():
                        next_tick = time.monotonic() + args.interval
            if ring is not None:
                ring.consume()            # what arrived before the stop
            if pollers:
                _emit_polls(pollers, start, emit, totals, final=True)
        finally:
            for _, p in pollers:
                p.close()
            for r in readers:
                r.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        if isinstance(ring, PerfBuffer):
            counts["lost"] = int(ring.lost)
        elif ring is not None:
            counts["lost"] = _drop_counter(obj) or 0
        attached = list(obj.links)
    # the object is closed: every link it made is detached
    elapsed = round(time.monotonic() - start, 3)
    summary = {"type": "summary", "object": obj.name, "elapsed": elapsed,
               "stopped_by": stop[0] if stop else "duration", "events": counts["events"],
               "lost": counts["lost"], "maps": totals, "detached": attached}
    text = [f"stopped by {summary['stopped_by']} after {elapsed}s; detached "
            f"{', '.join(attached) or 'nothing'}"]
    if args.events:
        text.append(f"events: {counts['events']} seen, {counts['lost']} lost")
    for name, t in totals.items():
        text.append(f"map {name}: {t['entries']} entries, total {t['total']}")
    emit(summary, "\n".join(text))
    return 0


def _emit_polls(pollers, start, emit, totals, final: bool = False) -> None:
    for name, p in pollers:
        snap = p.snapshot()
        d = snap.to_dict()
        t = round(time.monotonic() - start, 6)
        rows = []
        total = 0
        for k, s in d.items():
            v = s.value if not isinstance(s.value, tuple) else sum(s.value)
            dl = s.delta if not isinstance(s.delta, tuple) else sum(s.delta)
            r = s.rate if not isinstance(s.rate, tuple) else sum(s.rate)
            total += v
            key = k if isinstance(k, int) else bytes(k).hex()
            rows.append({"key": key, "value": v, "delta": dl, "rate": round(r, 3)})
        rows.sort(key=lambda r: (-r["delta"], str(r["key"])))
        totals[name] = {"entries": len(rows), "total": total}
        if final:
            continue
        active = [r for r in rows if r["delta"]]
        body = ", ".join(f"{r['key']}: {r['value']} ({r['rate']:g}/s)" for r in active[:10])
        more = f" (+{len(active) - 10} more)" if len(active) > 10 else ""
        emit({"type": "poll", "t": t, "map": name, "entries": rows},
             f"{t:10.6f} poll {name}: {len(rows)} keys, total {total}; "
             f"changed: {body or 'none'}{more}")


def add_run_parser(sub) -> None:
    """Add ``run`` to the top-level sub-command parser."""
    p = sub.add_parser(
        "run", help="load an object, attach its programs, stream events and poll maps",
        description="Load OBJ (setting .rodata variables first), attach every program whose "
        "section names its hook, print events and map rates until --duration ends or "
        "SIGINT/SIGTERM arrives, then detach and print a summary.")
    p.add_argument("object")
    p.add_argument("--attach-all", action="store_true",
                   help="fail (exit 1) unless every program attaches; by default programs "
                   "that need a target (XDP, tc, cgroup ...) are listed and skipped")
    p.add_argument("--pin-root", metavar="DIR", type=directory,
                   help="bpffs directory for maps pinned by name (default /sys/fs/bpf)")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help=".rodata variable to set before load: an int (10, 0x1f) or a string "
                   "for a char array; repeatable")
    p.add_argument("--events", metavar="MAP", help="RINGBUF or PERF_EVENT_ARRAY map to print")
    p.add_argument("--event-type", metavar="NAME",
                   help="decode each event as the struct/union/typedef NAME of the object's "
                   "BTF (default: hex)")
    p.add_argument("--poll", action="append", default=[], metavar="MAP[:sum]",
                   help="counter map to poll every interval (:sum adds per-CPU values); "
                   "repeatable")
    p.add_argument("--interval", type=seconds, default=1.0,
                   help="seconds between polls (default 1)")
    p.add_argument("--duration", type=seconds, default=None,
                   help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_run)
