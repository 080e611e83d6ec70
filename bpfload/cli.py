"""The ``bpfload`` command line.

    bpfload inspect OBJ [--json]            programs, maps, relocations of an object
    bpfload load OBJ --pin-root DIR         load, pin maps and programs under DIR
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import errors

__all__ = ["main"]


def _enum_name(v) -> str:
    return getattr(v, "name", str(v))


def describe(spec) -> dict:
    """A JSON-able description of an ObjectSpec (what ``inspect`` prints)."""
    from .loader import creation_order
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
    from .elf import parse_object
    spec = parse_object(args.object)
    d = describe(spec)
    if args.json:
        json.dump(d, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_inspect(d, sys.stdout)
    return 0


def cmd_load(args) -> int:
    from .object import BpfObject
    root = os.path.abspath(args.pin_root)
    obj = BpfObject.open(args.object)
    names = set(obj.maps) & set(obj.programs)
    if names:
        raise errors.BpfError(f"object {obj.name!r}: maps and programs share names "
                              f"{sorted(names)}; cannot pin both under {root}")
    created = []
    with obj:
        obj.load(pin_root=root, log_level=args.log_level)
        try:
            for name, m in obj.maps.items():
                path = os.path.join(root, name)
                if m.pin_path is None:
                    m.pin(path)
                    created.append(path)
            created.extend(obj.pin_programs(root))
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bpfload", description="Load and inspect BPF ELF objects.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inspect", help="print programs, maps and relocations of an object")
    p.add_argument("object")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("load", help="load an object and pin its maps and programs")
    p.add_argument("object")
    p.add_argument("--pin-root", required=True, help="bpffs directory for the pins")
    p.add_argument("--log-level", type=int, default=0, help="verifier log level")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_load)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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


if __name__ == "__main__":
    sys.exit(main())
