"""The ``bpfload`` command line.

    bpfload inspect OBJ [--json]            programs, maps, relocations of an object
    bpfload load OBJ --pin-root DIR         load, pin maps and programs under DIR
             [--attach] [--set VAR=VALUE]   and attach, pinning links at DIR/links/<prog>
    bpfload demo [--duration S] [--rate PPS] [--json]   the main job
    bpfload map dump PIN_OR_ID [--json]     every entry, BTF-decoded where possible
    bpfload map poll PIN_OR_ID --interval S [--sum-cpus] [--rate] [--json]
    bpfload prog list|show ID, map list, link list [--pin-root DIR] [--json]
                                            what the kernel holds (cli/system.py)
    bpfload run OBJ [--set VAR=VALUE] [--events MAP] [--poll MAP[:sum]] [--duration S]
                                            load, attach, stream, poll (cli/system.py)
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from typing import List, Optional

from .. import errors
from ..constants import FD_VALUE_MAP_TYPES
from ..pins import pin_name
from .guide import check_no_pins, human_rate, kernel_step, prepare_pin_root, remove_created_dirs
from .system import (ArgumentParser, UsageError, add_list_parsers, add_run_parser, apply_sets,
                     int_range, map_ref, path_arg, seconds)

__all__ = ["main"]


def _enum_name(v) -> str:
    return getattr(v, "name", str(v))


def describe(spec) -> dict:
    """A JSON-able description of an ObjectSpec (what ``inspect`` prints)."""
    from ..loader import creation_order
    order = creation_order(spec)
    maps = []
    for name, ms in spec.maps.items():
        d = {
            "name": name, "form": ms.form, "type": _enum_name(ms.type),
            "key_size": ms.key_size, "value_size": ms.value_size,
            "max_entries": ms.max_entries, "flags": int(ms.flags),
            "pinning": _enum_name(ms.pinning), "section": ms.section,
            "create_order": order.index(name),
        }
        if ms.inner is not None:
            d["inner_template"] = {"name": ms.inner.name, "type": _enum_name(ms.inner.type),
                                   "key_size": ms.inner.key_size,
                                   "value_size": ms.inner.value_size,
                                   "max_entries": ms.inner.max_entries}
        if ms.slots:
            d["slots"] = {str(k): v for k, v in sorted(ms.slots.items())}
        if ms.form == "custom":
            d.update(map_id=ms.map_id, relation_id=ms.relation_id, inner_index=ms.inner_index)
        if ms.form == "data":
            d["frozen"] = bool(ms.freeze)
        maps.append(d)
    progs = []
    for name, ps in spec.programs.items():
        progs.append({
            "name": name, "section": ps.section, "type": _enum_name(ps.type),
            "expected_attach_type": _enum_name(ps.expected_attach_type)
            if ps.expected_attach_type is not None else None,
            "attach_target": ps.attach_target, "insns": ps.insn_count,
            "relocations": [{"insn": r.insn, "kind": _enum_name(r.kind), "target": r.target,
                             "addend": r.addend} for r in ps.relocs],
        })
    subprogs = [{"name": n, "section": f.section, "insns": f.insn_count,
                 "relocations": len(f.relocs)}
                for n, f in spec.functions.items() if n not in spec.programs]
    return {"object": spec.name, "license": spec.license, "kern_version": spec.kern_version,
            "btf": spec.btf is not None, "programs": progs, "subprograms": subprogs, "maps": maps,
            "globals": [{"name": v.name, "section": v.section, "offset": v.offset,
                         "size": v.size} for v in spec.variables.values()]}


def _print_inspect(d: dict, out) -> None:
    w = out.write
    w(f"object {d['object']}  license={d['license']!r}  btf={'yes' if d['btf'] else 'no'}\n")
    w(f"\nprograms ({len(d['programs'])}):\n")
    for p in d["programs"]:
        w(f"  {p['name']:<20} {p['section']:<28} {p['type']:<16} {p['insns']:>6} insns\n")
        for r in p["relocations"]:
            add = f"+{r['addend']}" if r["addend"] else ""
            w(f"      reloc insn {r['insn']:>5}  {r['kind']:<9} {r['target']}{add}\n")
    if d["subprograms"]:
        w(f"\nsubprograms ({len(d['subprograms'])}):\n")
        for s in d["subprograms"]:
            w(f"  {s['name']:<20} {s['section']:<28} {s['insns']:>6} insns\n")
    w(f"\nmaps ({len(d['maps'])}), in creation order:\n")
    for m in sorted(d["maps"], key=lambda m: m["create_order"]):
        extra = []
        if m["pinning"] != "NONE":
            extra.append(f"pinning={m['pinning']}")
        if m["flags"]:
            extra.append(f"flags={m['flags']:#x}")
        if "inner_template" in m:
            extra.append(f"inner={m['inner_template']['name']}")
        if "slots" in m:
            extra.append("slots=" + ",".join(f"{k}:{v}" for k, v in m["slots"].items()))
        if m.get("frozen"):
            extra.append("frozen")
        w(f"  {m['create_order']:>2}. {m['name']:<20} {m['form']:<7} {m['type']:<16} "
          f"key={m['key_size']:<3} value={m['value_size']:<5} max={m['max_entries']:<8} "
          f"{' '.join(extra)}\n")
    if d["globals"]:
        w(f"\nglobals ({len(d['globals'])}):\n")
        for g in d["globals"]:
            w(f"  {g['name']:<20} {g['section']:<16} offset={g['offset']:<5} size={g['size']}\n")


def cmd_inspect(args) -> int:
    from ..object import BpfObject
    spec = BpfObject.open(args.object).spec    # a regular file of at most 256 MiB
    d = describe(spec)
    if args.json:
        json.dump(d, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_inspect(d, sys.stdout)
    return 0


def cmd_load(args) -> int:
    from ..object import BpfObject
    obj = BpfObject.open(args.object)
    apply_sets(obj, args.set)
    names = {pin_name(n) for n in obj.maps} & {pin_name(n) for n in obj.programs}
    if names:
        raise errors.BpfError(f"object {obj.name!r}: maps and programs share names "
                              f"{sorted(names)}; cannot pin both under {args.pin_root}")
    root, made = prepare_pin_root(args.pin_root)
    try:
        check_no_pins(_load_pin_paths(obj, root, args.attach), root)
        with kernel_step():
            report = _load_and_pin(obj, root, args)
    except BaseException:
        remove_created_dirs(made)
        raise
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"loaded {report['object']}: {len(report['maps'])} maps, "
              f"{len(report['programs'])} programs, pinned under {root}")
        for m in report["maps"]:
            print(f"  map  {m['name']:<20} {m['type']:<16} id={m['id']:<6} {m['pin']}")
        for p in report["programs"]:
            print(f"  prog {p['name']:<20} {p['type']:<16} id={p['id']:<6} tag={p['tag']} {p['pin']}")
        for ln in report.get("links", ()):
            print(f"  link {ln['program']:<20} {ln['hook']:<16} id={ln['id']:<6} {ln['pin']}")
        for n, why in report.get("unattached", {}).items():
            print(f"  not attached {n}: {why}")
    return 0


def _load_pin_paths(obj, root: str, attach: bool) -> List[str]:
    """Where ``load`` will pin: maps not pinned by name (those are reused by design),
    programs, and with --attach their links."""
    from ..constants import PinType
    paths = [os.path.join(root, pin_name(n)) for n, ms in obj.spec.maps.items()
             if ms.pinning != PinType.BY_NAME]
    progs = [n for n, ps in obj.spec.programs.items() if ps.autoload]
    paths += [os.path.join(root, pin_name(n)) for n in progs]
    if attach:
        paths += [os.path.join(root, "links", pin_name(n)) for n in progs]
    return paths


def _load_and_pin(obj, root: str, args) -> dict:
    created = []
    with obj:
        obj.load(pin_root=root, log_level=args.log_level)
        try:
            for name, m in obj.maps.items():
                path = os.path.join(root, pin_name(name))
                if m.pin_path is None:
                    m.pin(path)
                    created.append(path)
            created.extend(obj.pin_programs(root))
            if args.attach:
                created.extend(_pin_links(obj, os.path.join(root, "links")))
        except BaseException:
            for p in created:
                try:
                    os.unlink(p)
                except OSError:
                    pass
            for p in obj.pins_created:
                try:
                    os.unlink(p)
                except OSError:
                    pass
            raise
        report = {
            "object": obj.name,
            "maps": [{"name": n, "type": _enum_name(m.type), "id": m.id,
                      "pin": m.pin_path} for n, m in obj.maps.items()],
            "programs": [{"name": n, "type": _enum_name(p.type), "id": p.id, "tag": p.tag,
                          "pin": p.pin_path} for n, p in obj.programs.items()],
        }
        if args.attach:
            report["links"] = [{"program": n, "id": ln.id, "hook": ln.hook, "pin": ln.pin_path}
                               for n, ln in obj.links.items()]
            report["unattached"] = dict(obj.unattached)
    return report


def _pin_links(obj, directory: str) -> list:
    """attach_all() and pin every new link at ``directory/<program>``; returns the paths.

    The pins keep the programs attached after the command exits; unlinking
    a pin (with no other holder) detaches.  On failure the pins made so far
    are removed by the caller (they are returned as they are made).
    """
    obj.attach_all()
    paths = []
    if obj.links:
        os.makedirs(directory, exist_ok=True)
    try:
        for name, link in obj.links.items():
            path = os.path.join(directory, pin_name(name))
            link.pin(path)
            paths.append(path)
    except BaseException:
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return paths


def cmd_demo(args) -> int:
    from .demo import run_demo
    with kernel_step():
        summary = run_demo(duration=args.duration, rate=args.rate, interval=args.interval,
                           json_out=args.json, plain=args.plain)
    return 0 if summary["ok"] else 1


def _open_map(ref):
    """The map *ref* names: an id (int, checked by map_ref) or a pin path."""
    from ..maps import Map
    if isinstance(ref, int):
        try:
            return Map.from_id(ref)
        except errors.SyscallError as e:
            if e.errno == errno.ENOENT:
                raise UsageError(f"no map with id {ref}") from None
            raise
    try:
        return Map.from_pin(ref)
    except errors.PinError as e:      # not a pin, not a map pin: a bad argument
        raise UsageError(str(e)) from None


def _hex(b) -> str:
    return bytes(b).hex()


def _jsonable(v):
    """Typed values as JSON: bytes as text when printable, else hex."""
    if isinstance(v, (bytes, bytearray)):
        t = bytes(v).rstrip(b"\0")
        return t.decode() if t.isascii() and t.decode().isprintable() else bytes(v).hex()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "name") and isinstance(v, int):   # IntEnum from BTF
        return v.name
    return v


def _decoder(m, typed: bool):
    """(key, value) -> JSON-able, decoded with the map's BTF when the kernel has it."""
    if typed and m.info().btf_id:
        tv = m.typed()          # BTF fetched from the kernel by the map's btf_id
        return lambda k, v: (_jsonable(tv.decode_key(k)), _jsonable(tv.decode_value(v)))
    if m.percpu:
        return lambda k, v: (_hex(k), [_hex(x) for x in v])
    if m.type in FD_VALUE_MAP_TYPES:      # values are object ids
        return lambda k, v: (_hex(k), v)
    return lambda k, v: (_hex(k), _hex(v))


def cmd_map_dump(args) -> int:
    with _open_map(args.map) as m:
        dec = _decoder(m, not args.raw)
        rows = [dec(k, v) for k, v in m.items()]
        if args.json:
            json.dump({"map": m.name, "id": m.id, "type": _enum_name(m.type),
                       "entries": [{"key": k, "value": v} for k, v in rows]}, sys.stdout,
                      indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(f"map {m.name!r} id {m.id} {_enum_name(m.type)}: {len(rows)} entries")
            for k, v in rows:
                print(f"  {k}: {v}")
    return 0


def cmd_map_poll(args) -> int:
    from ..events.poll import MapPoller
    with _open_map(args.map) as m, MapPoller(m, interval=args.interval,
                                             sum_cpus=args.sum_cpus) as poller:
        n = 0
        tty = sys.stdout.isatty() and not args.json
        for snap in poller:
            d = snap.to_dict()
            rows = sorted(d.items(), key=lambda kv: kv[0] if not isinstance(kv[0], bytes)
                          else kv[0].hex())
            if args.json:
                # t: CLOCK_MONOTONIC seconds (for intervals); time: wall clock, epoch seconds
                out = {"t": round(snap.timestamp_ns / 1e9, 3), "time": round(time.time(), 3),
                       "map": m.name, "entries": [
                    {"key": k if isinstance(k, int) else _hex(k), "value": s.value,
                     **({"rate": s.rate} if args.rate else {"delta": s.delta})}
                    for k, s in rows]}
                print(json.dumps(out), flush=True)
            else:
                if tty:
                    sys.stdout.write("\x1b[H\x1b[J")
                print(f"map {m.name!r} ({_enum_name(m.type)}, {snap.count} entries) "
                      f"every {args.interval}s")
                for k, s in rows:
                    key = k if isinstance(k, int) else _hex(k)
                    extra = human_rate(s.rate) if args.rate else f"+{s.delta}"
                    print(f"  {key}: {s.value}  {extra}")
                sys.stdout.flush()
            n += 1
            if args.count and n >= args.count:
                break
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__
    ap = ArgumentParser(prog="bpfload", description="Load, attach and inspect BPF ELF objects.",
                        epilog="'bpfload COMMAND --help' describes a command.")
    ap.add_argument("--version", action="version", version=f"bpfload {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="log what bpfload does (-v: info, -vv: debug) on stderr")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="log errors only (library warnings are not shown)")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    p = sub.add_parser("inspect", help="print programs, maps and relocations of an object")
    p.add_argument("object")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("load", help="load an object and pin its maps and programs")
    p.add_argument("object")
    p.add_argument("--pin-root", required=True, type=path_arg,
                   help="directory on a bpffs for the pins (created, with missing parents, "
                   "under a bpffs mount, as bpftool does)")
    p.add_argument("--log-level", type=int_range(0, 7, "a verifier log level"), default=0,
                   help="verifier log level (0..7: 1 basic, 2 verbose, 4 stats)")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help=".rodata variable to set before load (int, or string for char arrays)")
    p.add_argument("--attach", action="store_true",
                   help="also attach every program whose section names its hook and pin each "
                   "link at PIN_ROOT/links/<program>: the programs stay attached after the "
                   "command exits, until the pin is removed (rm PIN_ROOT/links/<program>)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("demo", help="the main job: drive the shipped XDP demo object and "
                       "show live per-protocol packet rates and ring buffer events")
    p.add_argument("--duration", type=seconds, default=5.0, help="seconds (default 5)")
    p.add_argument("--rate", type=int_range(1, 100_000_000, "a packet rate"), default=200_000,
                   help="target packets per second (default 200000)")
    p.add_argument("--interval", type=seconds, default=1.0,
                   help="seconds between updates of the live view (default 1)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per interval, then a summary object")
    p.add_argument("--plain", action="store_true",
                   help="plain text on a terminal even when Rich is installed")
    p.set_defaults(func=cmd_demo)
    mp = sub.add_parser("map", help="read maps by pin path or id").add_subparsers(
        dest="mapcmd", required=True)
    p = mp.add_parser("dump", help="print every entry (decoded with BTF where the kernel has it)")
    p.add_argument("map", type=map_ref, help="a bpffs pin path or a map id")
    p.add_argument("--raw", action="store_true", help="hex bytes, no BTF decoding")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_map_dump)
    p = mp.add_parser("poll", help="snapshot a map every interval: values, deltas or rates")
    p.add_argument("map", type=map_ref, help="a bpffs pin path or a map id")
    p.add_argument("--interval", type=seconds, default=1.0, help="seconds between snapshots")
    p.add_argument("--sum-cpus", action="store_true", help="sum per-CPU values")
    p.add_argument("--rate", action="store_true", help="show rates per second, not deltas")
    p.add_argument("--count", type=int_range(0, 2**31 - 1, "a count"), default=0, help="stop after N snapshots (0: forever)")
    p.add_argument("--json", action="store_true", help="one JSON line per interval")
    p.set_defaults(func=cmd_map_poll)
    pp = sub.add_parser("prog", help="list and show the kernel's BPF programs").add_subparsers(
        dest="progcmd", required=True)
    lp = sub.add_parser("link", help="list the kernel's BPF links").add_subparsers(
        dest="linkcmd", required=True)
    add_list_parsers(pp, mp, lp)
    add_run_parser(sub)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:               # a bare 'bpfload': the command list, not an error
        parser.print_help()
        return 0
    import logging
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO,
                                              logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="bpfload: %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as e:
        print(f"bpfload: {e}", file=sys.stderr)
        return 2
    except errors.ObjectFileError as e:     # missing, a directory, a FIFO, over 256 MiB
        print(f"bpfload: {e}", file=sys.stderr)
        return 2
    except errors.LoadError as e:
        print(f"bpfload: {e.command} failed for program {e.program!r}: {e.hint}", file=sys.stderr)
        if e.log:
            print("verifier log:\n" + e.log.rstrip(), file=sys.stderr)
        return 1
    except errors.BpfError as e:
        print(f"bpfload: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"bpfload: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:          # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
