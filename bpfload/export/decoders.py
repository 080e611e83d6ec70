"""Label decoders of the exporter: a raw key field (an int or bytes) -> a label value (str).

Each decoder is built once from its config entry and called once per
distinct raw value (the exporter memoizes per scrape column), so lookups
such as ``/proc/kallsyms`` or a walk of the cgroup tree are paid once.

=============  ===================================================  ==========================
name           raw -> label                                         options
=============  ===================================================  ==========================
``ksym``       kernel address -> symbol name (``/proc/kallsyms``)
``cgroup``     cgroup id (cgroup2 inode) -> path under the mount     ``root`` (the mount)
``ifname``     ifindex -> interface name (``if_indextoname``)
``static_map`` value -> name from a table                            ``map``, ``allow_unknown``
``enum``       value -> enumerator name of a BTF enum of the map     ``type`` (the enum's name)
``port``       16-bit port, network byte order by default -> number  ``byteorder``, ``service``
``string``     bytes -> text up to the first NUL
``hex``        int -> ``0x...``
=============  ===================================================  ==========================
"""
from __future__ import annotations

import bisect
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ExportConfigError

__all__ = ["build_decoder", "DECODERS", "Ksyms", "cgroup_paths"]


class Ksyms:
    """Kernel symbols from ``/proc/kallsyms``, searchable by address (loaded once).

    Addresses read as 0 (no CAP_SYSLOG / kptr_restrict) leave the table
    empty and every lookup falls back to the hex address.
    """

    _shared: Optional["Ksyms"] = None

    def __init__(self, path: str = "/proc/kallsyms"):
        addrs: List[int] = []
        names: List[str] = []
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3:
                        continue
                    a = int(parts[0], 16)
                    if a:
                        addrs.append(a)
                        names.append(parts[2])
        except OSError:
            pass
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self.addrs = [addrs[i] for i in order]
        self.names = [names[i] for i in order]

    @classmethod
    def shared(cls) -> "Ksyms":
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def name(self, addr: int) -> str:
        """The symbol containing *addr* (the nearest one at or below it), or ``0x...``."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or not addr:
            return hex(addr)
        return self.names[i]

    def address(self, name: str) -> Optional[int]:
        """The address of symbol *name*, or None (a linear search: for tests and tools)."""
        try:
            return self.addrs[self.names.index(name)]
        except ValueError:
            return None


def _cgroup2_mount() -> Optional[str]:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                p = line.split()
                if len(p) > 2 and p[2] == "cgroup2":
                    return p[1]
    except OSError:
        pass
    return None


def cgroup_paths(root: str) -> Dict[int, str]:
    """``{cgroup id: path}`` for every cgroup under the cgroup2 mount *root* (ids are inode
    numbers on cgroup2; paths are relative to the mount, ``/`` for the root)."""
    out: Dict[int, str] = {}
    for dirpath, _dirs, _files in os.walk(root):
        try:
            ino = os.stat(dirpath).st_ino
        except OSError:
            continue
        rel = "/" + os.path.relpath(dirpath, root)
        out[ino] = "/" if rel == "/." else rel
    return out


def _cgroup(opts: Dict[str, Any], ctx) -> Callable[[Any], str]:
    root = opts.get("root") or _cgroup2_mount()
    table: Dict[int, str] = {}

    def dec(cgid):
        nonlocal table
        p = table.get(cgid)
        if p is None and root:
            table = cgroup_paths(root)     # a new cgroup: walk again (once per miss per scrape)
            p = table.get(cgid)
        return p if p is not None else str(cgid)
    return dec


def _ksym(opts, ctx):
    ks = Ksyms.shared()
    return lambda addr: ks.name(int(addr))


def _ifname(opts, ctx):
    def dec(ifindex):
        try:
            return socket.if_indextoname(int(ifindex))
        except OSError:
            return str(ifindex)
    return dec


def _static_map(opts, ctx):
    table = opts.get("map")
    if not isinstance(table, dict):
        raise ExportConfigError(f"{ctx}: static_map needs map: {{value: name, ...}}")
    conv = {}
    for k, v in table.items():
        try:
            conv[int(k, 0) if isinstance(k, str) else int(k)] = str(v)
        except (TypeError, ValueError):
            conv[k] = str(v)
    allow = bool(opts.get("allow_unknown", True))

    def dec(raw):
        try:
            return conv[raw]
        except KeyError:
            if allow:
                return str(raw)
            raise LookupError(f"{ctx}: no static_map entry for {raw!r}") from None
    return dec


def _enum(opts, ctx):
    btf = ctx.btf
    name = opts.get("type")
    if btf is None:
        raise ExportConfigError(f"{ctx}: the enum decoder needs the map's BTF")
    if not name:
        raise ExportConfigError(f"{ctx}: the enum decoder needs type: <enum name>")
    from ..btf.format import Kind
    t = btf.find(name, Kind.ENUM) or btf.find(name, Kind.ENUM64)
    if t is None:
        raise ExportConfigError(f"{ctx}: no enum {name!r} in the map's BTF")
    names = {v.value: v.name for v in t.values}
    return lambda raw: names.get(raw, str(raw))


def _port(opts, ctx):
    order = opts.get("byteorder", "network")
    if order not in ("network", "host"):
        raise ExportConfigError(f"{ctx}: port byteorder must be network or host, got {order!r}")
    service = opts.get("service")
    swap = order == "network" and socket.htons(1) != 1

    def dec(raw):
        p = int(raw) & 0xFFFF
        if swap:
            p = ((p & 0xFF) << 8) | (p >> 8)
        if service:
            try:
                return socket.getservbyport(p, service)
            except OSError:
                pass
        return str(p)
    return dec


def _string(opts, ctx):
    def dec(raw):
        if isinstance(raw, (bytes, bytearray)):
            return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")
        return str(raw)
    return dec


def _hex(opts, ctx):
    return lambda raw: hex(raw) if isinstance(raw, int) else bytes(raw).hex()


DECODERS: Dict[str, Callable] = {
    "ksym": _ksym, "cgroup": _cgroup, "ifname": _ifname, "static_map": _static_map,
    "enum": _enum, "port": _port, "string": _string, "hex": _hex,
}


def build_decoder(entry, ctx) -> Tuple[str, Callable[[Any], Any]]:
    """One decoder from a config entry: ``"ksym"`` or ``{"name": "static_map", ...}``
    (or the one-key form ``{"static_map": {...}}``).  Raises :class:`ExportConfigError`."""
    if isinstance(entry, str):
        name, opts = entry, {}
    elif isinstance(entry, dict) and "name" in entry:
        name, opts = entry["name"], entry
    elif isinstance(entry, dict) and len(entry) == 1:
        name, opts = next(iter(entry.items()))
        if name == "static_map" and isinstance(opts, dict) and "map" not in opts:
            opts = {"map": opts}
        elif not isinstance(opts, dict):
            opts = {}
    else:
        raise ExportConfigError(f"{ctx}: a decoder is a name or a mapping with name:, got {entry!r}")
    try:
        make = DECODERS[name]
    except KeyError:
        raise ExportConfigError(f"{ctx}: unknown decoder {name!r} "
                                f"(known: {', '.join(sorted(DECODERS))})") from None
    return name, make(opts, ctx)
