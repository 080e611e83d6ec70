"""The exporter's configuration: parsed and checked before anything touches the kernel.

A configuration is a mapping (YAML or JSON file, or a dict)::

    objects:                       # optional: objects to load (and attach)
      app:
        path: counters.bpf.o       # relative to the config file
        attach: true               # attach_all() after loading (default)
    metrics:
      - name: flow_packets_total
        help: Packets per flow
        type: counter              # counter | gauge | histogram
        map: app:flows             # OBJECT:MAP, or {pin: PATH}, or {id: N}
        value: packets             # a u64 member of the value (default: the first counter)
        per_cpu: sum               # sum (default) | label (a "cpu" label per CPU)
        labels:
          - name: port
            field: port            # a member of the key (dotted for nested structs)
            decoders: [{name: port, byteorder: network}]

See docs/exporter.md for every setting.  :func:`parse_config` returns a
:class:`Config`; errors are :class:`ExportConfigError` naming the metric.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Union

from .errors import ExportConfigError

__all__ = ["Config", "MetricSpec", "LabelSpec", "BucketSpec", "MapRef", "ObjectSpec",
           "parse_config", "load_config_file"]

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = ("counter", "gauge", "histogram")


class MapRef:
    """Where a metric's map comes from: ``object``+``name``, a ``pin`` path or a map ``id``."""

    __slots__ = ("object", "name", "pin", "id")

    def __init__(self, object: Optional[str] = None, name: Optional[str] = None,
                 pin: Optional[str] = None, id: Optional[int] = None):
        self.object, self.name, self.pin, self.id = object, name, pin, id

    @property
    def key(self) -> tuple:
        return (self.object, self.name, self.pin, self.id)

    def __str__(self) -> str:
        if self.pin is not None:
            return f"pin:{self.pin}"
        if self.id is not None:
            return f"id:{self.id}"
        return f"{self.object}:{self.name}" if self.object else str(self.name)


class ObjectSpec:
    __slots__ = ("name", "path", "attach", "pin_root")

    def __init__(self, name: str, path: str, attach: bool, pin_root: Optional[str]):
        self.name, self.path, self.attach, self.pin_root = name, path, attach, pin_root


class LabelSpec:
    """One label: its name, the key field it comes from (or offset/size), its decoders."""

    __slots__ = ("name", "field", "offset", "size", "decoders")

    def __init__(self, name, field, offset, size, decoders):
        self.name, self.field, self.offset, self.size, self.decoders = (
            name, field, offset, size, decoders)


class BucketSpec:
    """A histogram's buckets: ``type`` log2|linear, where the slot index is (``field`` of
    the key, or ``in_value``: the value is an array of u64 slots), ``multiplier``,
    ``min``/``max`` slot."""

    __slots__ = ("type", "field", "offset", "size", "in_value", "multiplier", "min", "max")

    def __init__(self, type, field, offset, size, in_value, multiplier, min, max):
        self.type, self.field, self.offset, self.size = type, field, offset, size
        self.in_value, self.multiplier, self.min, self.max = in_value, multiplier, min, max

    def upper(self, slot: int) -> float:
        """The inclusive upper bound (``le``) of *slot*."""
        if self.type == "log2":
            return float(2 ** slot) * self.multiplier
        return float(slot + 1) * self.multiplier


class MetricSpec:
    __slots__ = ("name", "help", "type", "map", "value", "per_cpu", "labels", "bucket")

    def __init__(self, name, help, type, map, value, per_cpu, labels, bucket):
        self.name, self.help, self.type, self.map = name, help, type, map
        self.value, self.per_cpu, self.labels, self.bucket = value, per_cpu, labels, bucket


class Config:
    __slots__ = ("objects", "metrics", "base_dir")

    def __init__(self, objects: Dict[str, ObjectSpec], metrics: List[MetricSpec], base_dir: str):
        self.objects, self.metrics, self.base_dir = objects, metrics, base_dir


def load_config_file(path: Union[str, os.PathLike]) -> Config:
    """Read and parse a YAML (or JSON) config file.

    Raises :class:`ExportConfigError` for an unreadable file, bad syntax or
    a bad setting; ModuleNotFoundError when the file is YAML and PyYAML is
    missing (``pip install 'bpfload[export]'``).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ExportConfigError(f"config {path}: {e.strerror}") from None
    data: Any
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ExportConfigError(f"config {path}: {e}") from None
    else:
        try:
            import yaml
        except ImportError as e:
            raise ModuleNotFoundError("bpfload export reads YAML with PyYAML: pip install "
                                      "'bpfload[export]' (or give a .json config)") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ExportConfigError(f"config {path}: {e}") from None
    return parse_config(data, base_dir=os.path.dirname(os.path.abspath(path)))


def _field_or_offset(d: dict, where: str):
    field = d.get("field")
    off, size = d.get("offset"), d.get("size")
    if field is not None and not isinstance(field, str):
        raise ExportConfigError(f"{where}: field must be a member name, got {field!r}")
    if off is not None or size is not None:
        if field is not None:
            raise ExportConfigError(f"{where}: give field or offset/size, not both")
        if not isinstance(off, int) or size not in (1, 2, 4, 8):
            raise ExportConfigError(f"{where}: offset must be an int and size 1, 2, 4 or 8")
    return field, off, size


def _map_ref(v, where: str, objects: Dict[str, ObjectSpec]) -> MapRef:
    if isinstance(v, str):
        obj, sep, name = v.rpartition(":")
        if not sep:
            if len(objects) != 1:
                raise ExportConfigError(f"{where}: map {v!r} needs OBJECT:MAP "
                                        f"(objects: {', '.join(objects) or 'none'})")
            obj = next(iter(objects))
        if obj not in objects:
            raise ExportConfigError(f"{where}: no object {obj!r} in objects: "
                                    f"({', '.join(objects) or 'none'})")
        return MapRef(object=obj, name=name)
    if isinstance(v, dict):
        if "pin" in v:
            return MapRef(pin=str(v["pin"]))
        if "id" in v:
            try:
                return MapRef(id=int(v["id"]))
            except (TypeError, ValueError):
                raise ExportConfigError(f"{where}: map id must be an int, got {v['id']!r}") from None
        if "object" in v and "name" in v:
            return _map_ref(f"{v['object']}:{v['name']}", where, objects)
    raise ExportConfigError(f"{where}: map must be OBJECT:MAP, {{pin: PATH}} or {{id: N}}, got {v!r}")


def parse_config(data: Any, base_dir: str = ".") -> Config:
    """Check a config mapping and return a :class:`Config` (no kernel access).

    Raises :class:`ExportConfigError` naming the metric and setting at fault.
    """
    if not isinstance(data, dict):
        raise ExportConfigError("config: expected a mapping with metrics:")
    unknown = set(data) - {"objects", "metrics"}
    if unknown:
        raise ExportConfigError(f"config: unknown top-level key(s) {sorted(unknown)}")
    objects: Dict[str, ObjectSpec] = {}
    raw_objs = data.get("objects") or {}
    if not isinstance(raw_objs, dict):
        raise ExportConfigError("config: objects must map a name to {path: ...}")
    for name, o in raw_objs.items():
        if isinstance(o, str):
            o = {"path": o}
        if not isinstance(o, dict) or "path" not in o:
            raise ExportConfigError(f"objects.{name}: needs path:")
        path = os.path.join(base_dir, os.path.expanduser(str(o["path"])))
        pin_root = o.get("pin_root")
        objects[str(name)] = ObjectSpec(str(name), path, bool(o.get("attach", True)),
                                        str(pin_root) if pin_root else None)
    raw_metrics = data.get("metrics")
    if not isinstance(raw_metrics, list) or not raw_metrics:
        raise ExportConfigError("config: metrics must be a non-empty list")
    metrics: List[MetricSpec] = []
    seen = set()
    for i, m in enumerate(raw_metrics):
        if not isinstance(m, dict):
            raise ExportConfigError(f"metrics[{i}]: expected a mapping")
        name = m.get("name")
        where = f"metric {name!r}" if name else f"metrics[{i}]"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ExportConfigError(f"{where}: name must match {_NAME_RE.pattern}")
        mtype = m.get("type", "counter")
        if mtype not in TYPES:
            raise ExportConfigError(f"{where}: type must be one of {', '.join(TYPES)}, got {mtype!r}")
        family = name[:-6] if mtype == "counter" and name.endswith("_total") else name
        if family in seen:
            raise ExportConfigError(f"{where}: defined twice")
        seen.add(family)
        unknown = set(m) - {"name", "help", "type", "map", "value", "per_cpu", "labels", "bucket"}
        if unknown:
            raise ExportConfigError(f"{where}: unknown setting(s) {sorted(unknown)}")
        if "map" not in m:
            raise ExportConfigError(f"{where}: needs map:")
        mref = _map_ref(m["map"], where, objects)
        value = m.get("value")
        if value is not None and not isinstance(value, (str, int)):
            raise ExportConfigError(f"{where}: value must be a member name or a counter index")
        per_cpu = m.get("per_cpu", "sum")
        if per_cpu not in ("sum", "label"):
            raise ExportConfigError(f"{where}: per_cpu must be sum or label, got {per_cpu!r}")
        labels: List[LabelSpec] = []
        names = set()
        for j, lab in enumerate(m.get("labels") or []):
            lwhere = f"{where} label {j}"
            if not isinstance(lab, dict) or not isinstance(lab.get("name"), str) \
                    or not _LABEL_RE.match(lab["name"]) or lab["name"].startswith("__") \
                    or lab["name"] in ("le", "cpu"):
                raise ExportConfigError(f"{lwhere}: needs name: (a label name other than le/cpu)")
            if lab["name"] in names:
                raise ExportConfigError(f"{lwhere}: label {lab['name']!r} twice")
            names.add(lab["name"])
            field, off, size = _field_or_offset(lab, lwhere)
            decs = lab.get("decoders") or []
            if not isinstance(decs, list):
                decs = [decs]
            labels.append(LabelSpec(lab["name"], field, off, size, decs))
        bucket = None
        if mtype == "histogram":
            b = m.get("bucket")
            if not isinstance(b, dict):
                raise ExportConfigError(f"{where}: a histogram needs bucket: {{type: log2|linear, ...}}")
            btype = b.get("type", "log2")
            if btype not in ("log2", "linear"):
                raise ExportConfigError(f"{where}: bucket type must be log2 or linear, got {btype!r}")
            in_value = bool(b.get("in_value", False))
            bfield, boff, bsize = _field_or_offset(b, f"{where} bucket")
            try:
                mult = float(b.get("multiplier", 1))
                bmin = int(b.get("min", 0))
                bmax = int(b.get("max", 63 if btype == "log2" else 1023))
            except (TypeError, ValueError):
                raise ExportConfigError(f"{where}: bucket multiplier/min/max must be numbers") from None
            if not 0 <= bmin <= bmax or not mult > 0:
                raise ExportConfigError(f"{where}: bucket needs 0 <= min <= max and multiplier > 0")
            if in_value and (bfield is not None or boff is not None):
                raise ExportConfigError(f"{where}: bucket in_value takes no field")
            bucket = BucketSpec(btype, bfield, boff, bsize, in_value, mult, bmin, bmax)
        elif "bucket" in m:
            raise ExportConfigError(f"{where}: bucket: is for histograms")
        metrics.append(MetricSpec(name, str(m.get("help") or name), mtype, mref, value, per_cpu,
                                  labels, bucket))
    return Config(objects, metrics, base_dir)
