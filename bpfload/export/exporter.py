"""The Prometheus/OpenMetrics exporter: BPF maps -> ``/metrics``.

:class:`Exporter` turns a :class:`~bpfload.export.config.Config` into
metrics: it loads the configured objects (and attaches their programs),
opens pinned maps and maps by id, and on every scrape reads each map once
with ``BPF_MAP_LOOKUP_BATCH`` through a :class:`bpfload.MapPoller` (per-CPU
values summed in C, into buffers allocated once), decodes the keys' label
fields column by column (``struct.iter_unpack`` over the key buffer; each
decoder runs once per distinct value) and writes the Prometheus text format
(0.0.4) or OpenMetrics 1.0, chosen by the scraper's ``Accept`` header.
Self-metrics (scrape duration, map read errors, entries, ring/perf lost
events) come from a ``prometheus_client`` registry.

Needs ``prometheus-client`` (``pip install 'bpfload[export]'``; PyYAML too
for YAML configs) and what the maps need (Linux 5.6 for batch reads, older
kernels take the per-element path).
"""
from __future__ import annotations

import gzip
import logging
import os
from operator import itemgetter
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .. import errors
from ..btf.typed import TypedMap, _BitsCodec, _BytesCodec, _FloatCodec, _IntCodec, _StructCodec
from ..events.poll import MapPoller
from ..maps import Map
from .config import Config, MetricSpec, load_config_file, parse_config
from .decoders import build_decoder
from .errors import ExportConfigError

__all__ = ["Exporter", "TEXT_CONTENT_TYPE", "OPENMETRICS_CONTENT_TYPE"]

log = logging.getLogger("bpfload.export")

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_INT_FMT = {1: "b", 2: "h", 4: "i", 8: "q"}


def _prom():
    try:
        import prometheus_client
        import prometheus_client.openmetrics.exposition  # noqa: F401
    except ImportError as e:
        raise ModuleNotFoundError("bpfload.export needs prometheus-client: "
                                  "pip install 'bpfload[export]'") from e
    return prometheus_client


def _escape(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def _float_str(v: float) -> str:
    """Go's (and OpenMetrics') canonical float: 1.0, 0.001, 1e+06, +Inf."""
    if v == float("inf"):
        return "+Inf"
    s = repr(float(v))
    if "e" in s:
        mant, exp = s.split("e")
        return f"{mant}e{'+' if not exp.startswith('-') else '-'}{exp.lstrip('+-').rjust(2, '0')}"
    return s


class _Ctx:
    """What a decoder may need: where it is (for messages) and the map's BTF."""

    def __init__(self, where: str, btf):
        self.where, self.btf = where, btf

    def __str__(self) -> str:
        return self.where


class _Field:
    """A key field extracted with struct: its format code, and the value -> label chain."""

    def __init__(self, off: int, size: int, code: str, decoders: List[Callable]):
        self.off, self.size, self.code, self.decoders = off, size, code, decoders

    def decode_column(self, col) -> List[Any]:
        """Labels (escaped strings) for a column of raw values, each distinct value decoded once."""
        decs = self.decoders
        if not decs:
            return col          # ints and floats: formatted by %s as they are, nothing to escape
        cache: Dict[Any, str] = {}
        for raw in set(col):          # each distinct value once; the column is then mapped in C
            v = raw
            for d in decs:
                v = d(v)
            cache[raw] = _escape(str(v))
        return list(map(cache.__getitem__, col))


def _resolve_field(codec, path: Optional[str], where: str):
    """(offset, leaf codec) of a dotted member *path* in a key codec (None: the whole key)."""
    if not path:
        if isinstance(codec, _StructCodec):
            raise ExportConfigError(f"{where}: the key is {codec.type_name}: name a field "
                                    f"({', '.join(codec.names)})")
        return 0, codec
    off, c = 0, codec
    for part in path.split("."):
        if not isinstance(c, _StructCodec):
            raise ExportConfigError(f"{where}: {path!r}: {c.type_name} has no members")
        idx = c.index.get(part)
        if idx is None:
            raise ExportConfigError(f"{where}: {c.type_name} has no member {part!r} "
                                    f"(members: {', '.join(c.names)})")
        f = c.fields[idx]
        off += f.off
        while f.name is None:                 # an anonymous struct/union holding the name
            c = f.codec
            f = c.fields[c.index[part]]
            off += f.off
        c = f.codec
    return off, c


def _leaf(codec, where: str) -> Tuple[str, List[Callable]]:
    """struct format code of a leaf codec, plus its automatic decoders (enum names, strings)."""
    if isinstance(codec, _BitsCodec):
        raise ExportConfigError(f"{where}: bitfields cannot be labels (use offset/size on a byte-"
                                "aligned field)")
    if isinstance(codec, _IntCodec) and codec.size in _INT_FMT:
        code = _INT_FMT[codec.size]
        autos: List[Callable] = []
        if codec.enum_cls is not None:
            cls = codec.enum_cls

            def enum_name(v, cls=cls):
                try:
                    return cls(v).name
                except ValueError:
                    return v
            autos.append(enum_name)
        return (code if codec.signed else code.upper()), autos
    if isinstance(codec, _FloatCodec):
        return ("f" if codec.size == 4 else "d"), []
    if isinstance(codec, _BytesCodec):
        return f"{codec.size}s", [lambda b: bytes(b).split(b"\0", 1)[0].decode("utf-8", "replace")]
    raise ExportConfigError(f"{where}: a {codec.type_name} field cannot be a label "
                            "(ints, enums, floats and char arrays can)")


class _Source:
    """One map read once per scrape: the Map, its poller, its BTF view."""

    def __init__(self, ref, m: Map, owned: bool, sum_cpus: bool):
        self.ref, self.map, self.owned, self.sum_cpus = ref, m, owned, sum_cpus
        try:
            self.typed = TypedMap.for_map(m)
        except errors.BtfError:
            self.typed = TypedMap(m, None, 0, 0)       # no BTF: untyped key/value
        self.poller: Optional[MapPoller] = None
        self.snap = None
        self.error: Optional[BaseException] = None

    def open(self) -> None:
        self.poller = MapPoller(self.map, interval=3600.0, sum_cpus=self.sum_cpus)

    def read(self):
        self.snap, self.error = None, None
        try:
            self.snap = self.poller.snapshot()
        except errors.BpfError as e:
            self.error = e
        return self.snap

    def close(self) -> None:
        if self.poller is not None:
            self.poller.close()
            self.poller = None
        if self.owned:
            self.map.close()


class _Metric:
    """A configured metric compiled against its map: key struct, value index, decoders."""

    def __init__(self, spec: MetricSpec, src: _Source):
        self.spec, self.src = spec, src
        where = f"metric {spec.name!r} (map {src.ref})"
        m = src.map
        kc, vc = src.typed.key_codec, src.typed.value_codec
        btf = src.typed.btf
        self.family = spec.name[:-6] if spec.type == "counter" and spec.name.endswith("_total") \
            else spec.name
        self.sample = self.family + "_total" if spec.type == "counter" else self.family
        # key fields: the labels, then the histogram's bucket slot
        fields: List[_Field] = []
        for lab in spec.labels:
            lwhere = f"{where} label {lab.name!r}"
            if lab.offset is not None:
                if lab.offset < 0 or lab.offset + lab.size > m.key_size:
                    raise ExportConfigError(f"{lwhere}: offset {lab.offset} + size {lab.size} is past "
                                            f"the {m.key_size}-byte key")
                off, code, autos = lab.offset, _INT_FMT[lab.size].upper(), []
                size = lab.size
            else:
                off, leaf = _resolve_field(kc, lab.field, lwhere)
                code, autos = _leaf(leaf, lwhere)
                size = leaf.size
            decs = list(autos)
            for d in lab.decoders:
                decs.append(build_decoder(d, _Ctx(lwhere, btf))[1])
            fields.append(_Field(off, size, code, decs))
        self.bucket_in_key = False
        b = spec.bucket
        if b is not None and not b.in_value:
            bwhere = f"{where} bucket"
            if b.offset is not None:
                off, code, size = b.offset, _INT_FMT[b.size].upper(), b.size
            else:
                off, leaf = _resolve_field(kc, b.field, bwhere)
                code, _ = _leaf(leaf, bwhere)
                size = leaf.size
                if code[-1] not in "bBhHiIqQ":
                    raise ExportConfigError(f"{bwhere}: the slot must be an integer field")
            fields.append(_Field(off, size, code, []))
            self.bucket_in_key = True
        self.fields = fields
        # one struct over the key extracting each distinct field once, in offset order
        spots = sorted({(f.off, f.size, f.code) for f in fields})
        fmt, pos = "=", 0
        for off, size, code in spots:
            if off < pos:
                raise ExportConfigError(f"{where}: two labels overlap at key offset {off}")
            fmt += (f"{off - pos}x" if off > pos else "") + code
            pos = off + size
        if pos > m.key_size:
            raise ExportConfigError(f"{where}: fields run past the {m.key_size}-byte key")
        fmt += f"{m.key_size - pos}x" if m.key_size > pos else ""
        self.key_struct = struct.Struct(fmt)
        self.unsort = [spots.index((f.off, f.size, f.code)) for f in fields]   # our field -> column
        # value: which u64 counter of each key
        vs = m.value_size
        nf = 1 if vs in (1, 2, 4, 8) else vs // 8
        self.nf = nf
        if b is not None and b.in_value:
            if vs % 8:
                raise ExportConfigError(f"{where}: bucket in_value needs a value of u64 slots")
            self.vindex = 0
        elif spec.value is None:
            self.vindex = 0
        elif isinstance(spec.value, int) and not isinstance(spec.value, bool):
            if not 0 <= spec.value < nf:
                raise ExportConfigError(f"{where}: value index {spec.value} out of 0..{nf - 1}")
            self.vindex = spec.value
        else:
            if not isinstance(vc, _StructCodec):
                raise ExportConfigError(f"{where}: value {spec.value!r}: the value has no members "
                                        "(give a counter index instead)")
            off, leaf = _resolve_field(vc, spec.value, f"{where} value")
            if off % 8 or leaf.size != 8 or nf == 1:
                raise ExportConfigError(f"{where}: value {spec.value!r} must be a u64 at an 8-byte "
                                        f"offset of a value of u64 counters")
            self.vindex = off // 8
        self.header_cache: Dict[bool, str] = {}

    # -- output ---------------------------------------------------------------
    def _header(self, om: bool) -> str:
        h = self.header_cache.get(om)
        if h is None:
            s = self.spec
            name = self.family if (om or s.type != "counter") else self.sample
            helptext = s.help.replace("\\", "\\\\").replace("\n", "\\n")
            if om:
                helptext = helptext.replace('"', '\\"')
            h = self.header_cache[om] = f"# HELP {name} {helptext}\n# TYPE {name} {s.type}\n"
        return h

    def _label_columns(self, snap) -> List[List[str]]:
        n = snap.count
        if not self.fields:
            return []
        keys = snap.keys
        tuples = list(self.key_struct.iter_unpack(keys)) if n else []
        # columns by itemgetter (C), not zip(*tuples): that makes one iterator per key
        cols = [list(map(itemgetter(i), tuples)) for i in self.unsort]
        out = []
        for f, col in zip(self.fields, cols):
            if self.spec.bucket is not None and f is self.fields[-1] and self.bucket_in_key:
                out.append(list(col))            # slots stay ints
            else:
                out.append(f.decode_column(col))
        return out

    def render(self, out: List[str], om: bool) -> int:
        """Append this metric's lines to *out*; returns the number of samples."""
        snap = self.src.snap
        out.append(self._header(om))
        if snap is None or snap.count == 0:
            return 0
        if self.spec.type == "histogram":
            return self._render_histogram(out, snap, om)
        names = [lab.name for lab in self.spec.labels]
        cols = self._label_columns(snap)
        vals = snap.values
        F = snap.fields
        if self.src.sum_cpus:
            col = vals.tolist() if F == 1 else vals[self.vindex::F].tolist()
            if names:
                tmpl = self.sample + "{" + ",".join(f'{n}="%s"' for n in names) + "} %d\n"
                out.extend(map(tmpl.__mod__, zip(*cols, col)))
            else:
                out.append(f"{self.sample} {sum(col)}\n")
            return len(col)
        # per_cpu: label -- a cpu label per possible CPU, counters CPU-major per key
        ncpus = F // self.nf
        tmpl = self.sample + "{" + "".join(f'{n}="%s",' for n in names) + 'cpu="%d"} %d\n'
        n = 0
        for c in range(ncpus):
            col = vals[c * self.nf + self.vindex::F].tolist()
            out.extend(map(tmpl.__mod__, zip(*cols, [c] * len(col), col)))
            n += len(col)
        return n

    def _render_histogram(self, out: List[str], snap, om: bool) -> int:
        # Bucket maps hold no sum: no _sum sample; _count (= the +Inf bucket) only in the
        # text format, since OpenMetrics allows _count only together with _sum.
        b = self.spec.bucket
        names = [lab.name for lab in self.spec.labels]
        cols = self._label_columns(snap)
        vals = snap.values
        F = snap.fields
        nslots = b.max - b.min + 1
        groups: Dict[tuple, List[int]] = {}
        inf: Dict[tuple, int] = {}
        if self.bucket_in_key:
            lab_cols, slots = cols[:-1], cols[-1]
            counts = vals.tolist() if F == 1 else vals[self.vindex::F].tolist()
            for lab, slot, cnt in zip(zip(*lab_cols) if lab_cols else [()] * len(slots), slots, counts):
                g = groups.get(lab)
                if g is None:
                    g = groups[lab] = [0] * nslots
                    inf[lab] = 0
                inf[lab] += cnt
                if slot <= b.max:
                    g[max(slot, b.min) - b.min] += cnt
        else:
            rows = zip(*cols) if cols else [()] * snap.count
            flat = vals.tolist()
            for i, lab in enumerate(rows):
                row = flat[i * F:(i + 1) * F]
                g = groups.get(lab)
                if g is None:
                    g = groups[lab] = [0] * nslots
                    inf[lab] = 0
                for slot, cnt in enumerate(row):
                    if cnt:
                        inf[lab] += cnt
                        if slot <= b.max:
                            g[max(slot, b.min) - b.min] += cnt
        les = [_float_str(b.upper(s)) for s in range(b.min, b.max + 1)]
        fam = self.family
        n = 0
        for lab, g in groups.items():
            ls = "".join(f'{k}="{v}",' for k, v in zip(names, lab))
            acc = 0
            for le, cnt in zip(les, g):
                acc += cnt
                out.append(f'{fam}_bucket{{{ls}le="{le}"}} {acc}\n')
            total = inf[lab]
            out.append(f'{fam}_bucket{{{ls}le="+Inf"}} {total}\n')
            n += nslots + 1
            if not om:
                ls = ls[:-1]
                out.append(f"{fam}_count{{{ls}}} {total}\n" if ls else f"{fam}_count {total}\n")
                n += 1
        return n


class Exporter:
    """Serves BPF maps as Prometheus metrics, configured like ebpf_exporter.

    ``Exporter(config)``: *config* is a path to a YAML/JSON file, a mapping
    or a parsed :class:`~bpfload.export.config.Config`.  :meth:`open` loads
    the objects (attaching their programs when ``attach``), opens the maps
    and checks every metric against its map's BTF; :meth:`render` reads
    every map once and returns the exposition; :meth:`serve` starts an HTTP
    server for ``/metrics`` in a thread; :meth:`reload` swaps in a new
    config; :meth:`close` (or the ``with`` block) detaches and closes
    everything.  Objects are also reachable as ``exporter.objects[name]``.

    Raises (from :meth:`open`) :class:`ExportConfigError` for a setting that
    does not fit its map, the :class:`bpfload.BpfError` of a failed load or
    attach (everything opened so far is closed again), and
    ModuleNotFoundError without prometheus-client.
    """

    def __init__(self, config: Union[str, "os.PathLike[str]", dict, Config]):
        _prom()
        if isinstance(config, Config):
            self._source_cfg: Any = None
            self.config = config
        elif isinstance(config, dict):
            self._source_cfg = None
            self.config = parse_config(config)
        else:
            self._source_cfg = config
            self.config = load_config_file(config)
        self.objects: Dict[str, Any] = {}
        self._sources: List[_Source] = []
        self._metrics: List[_Metric] = []
        self._readers: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._opened = False
        self._init_self_metrics()

    # -- self-metrics -----------------------------------------------------------
    def _init_self_metrics(self) -> None:
        pc = _prom()
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        self.registry = pc.CollectorRegistry(auto_describe=False)
        self._scrape_hist = pc.Histogram(
            "bpfload_export_scrape_duration_seconds", "Time to read the maps and format a scrape",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._read_errors = pc.Counter("bpfload_export_map_read_errors", "Failed map reads",
                                       ["map"], registry=self.registry)
        exporter = self

        class _Live:
            def collect(self):
                ent = GaugeMetricFamily("bpfload_export_map_entries", "Entries read at the last scrape",
                                        labels=["map"])
                for s in exporter._sources:
                    if s.snap is not None:
                        ent.add_metric([str(s.ref)], s.snap.count)
                yield ent
                lost = CounterMetricFamily("bpfload_export_lost_events",
                                           "Samples the kernel dropped because a perf ring was full",
                                           labels=["reader"])
                free = GaugeMetricFamily("bpfload_export_ring_free_bytes",
                                         "Free bytes of a ring buffer (0: records are refused)",
                                         labels=["reader"])
                for name, r in list(exporter._readers.items()):
                    if r.closed:
                        continue
                    if hasattr(r, "lost"):
                        lost.add_metric([name], r.lost)
                    elif hasattr(r, "stats") and len(r):
                        free.add_metric([name], r.stats().free)
                yield lost
                yield free

        self.registry.register(_Live())

    def watch_reader(self, name: str, reader) -> None:
        """Export a reader's backpressure: ``bpfload_export_lost_events_total{reader=name}``
        for a :class:`bpfload.PerfBuffer` (its ``lost``), ``bpfload_export_ring_free_bytes``
        for a :class:`bpfload.RingBuffer` (its first ring).  The reader stays the caller's."""
        self._readers[str(name)] = reader

    # -- lifecycle --------------------------------------------------------------
    def open(self) -> "Exporter":
        """Load and attach the objects, open the maps, compile the metrics (idempotent).

        Raises as the class doc says; on failure nothing stays open.
        """
        if self._opened:
            return self
        objects, sources, metrics = self._build(self.config)
        self.objects, self._sources, self._metrics = objects, sources, metrics
        self._opened = True
        return self

    def _build(self, cfg: Config):
        from ..object import BpfObject
        objects: Dict[str, Any] = {}
        sources: Dict[tuple, _Source] = {}
        metrics: List[_Metric] = []
        try:
            for name, o in cfg.objects.items():
                obj = objects[name] = BpfObject.open(o.path, name=name)
                obj.load(pin_root=o.pin_root)
                if o.attach:
                    obj.attach_all()
            for spec in cfg.metrics:
                sum_cpus = spec.per_cpu == "sum"
                key = spec.map.key + (sum_cpus,)
                src = sources.get(key)
                if src is None:
                    src = sources[key] = self._open_source(spec, objects, sum_cpus)
                    src.open()
                metrics.append(_Metric(spec, src))
        except BaseException:
            for s in sources.values():
                s.close()
            for obj in objects.values():
                obj.close()
            raise
        return objects, list(sources.values()), metrics

    def _open_source(self, spec: MetricSpec, objects, sum_cpus: bool) -> _Source:
        ref = spec.map
        where = f"metric {spec.name!r}"
        if ref.pin is not None:
            try:
                m = Map.from_pin(ref.pin)
            except (errors.BpfError, OSError) as e:
                raise ExportConfigError(f"{where}: cannot open pinned map {ref.pin}: {e}") from e
            owned = True
        elif ref.id is not None:
            try:
                m = Map.from_id(ref.id)
            except (errors.BpfError, OSError) as e:
                raise ExportConfigError(f"{where}: cannot open map id {ref.id}: {e}") from e
            owned = True
        else:
            obj = objects[ref.object]
            if ref.name not in obj.maps:
                raise ExportConfigError(f"{where}: object {ref.object!r} has no map {ref.name!r} "
                                        f"(maps: {', '.join(obj.maps)})")
            m, owned = obj.maps[ref.name], False
        try:
            return _Source(ref, m, owned, sum_cpus)
        except BaseException:
            if owned:
                m.close()
            raise

    def reload(self, config=None) -> None:
        """Re-read the config (the file given at construction, or *config*) and swap it in.

        The new objects are loaded and attached before the old ones are
        detached, so a bad config leaves the running one in place (the
        error is raised).  Raises as :meth:`open`.
        """
        if config is None:
            if self._source_cfg is None:
                raise ExportConfigError("reload: this exporter was built from a mapping: pass config=")
            cfg = load_config_file(self._source_cfg)
        elif isinstance(config, Config):
            cfg = config
        elif isinstance(config, dict):
            cfg = parse_config(config)
        else:
            self._source_cfg = config
            cfg = load_config_file(config)
        objects, sources, metrics = self._build(cfg)
        with self._lock:
            old = (self.objects, self._sources)
            self.config = cfg
            self.objects, self._sources, self._metrics = objects, sources, metrics
            self._opened = True
        self._release(*old)

    @staticmethod
    def _release(objects, sources) -> None:
        for s in sources:
            s.close()
        for obj in objects.values():
            obj.close()

    def close(self) -> None:
        """Stop the server, detach the programs, close objects and maps (idempotent).  Raises nothing."""
        self.shutdown()
        with self._lock:
            objects, sources = self.objects, self._sources
            self.objects, self._sources, self._metrics = {}, [], []
            self._opened = False
        self._release(objects, sources)

    def __enter__(self) -> "Exporter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scraping ---------------------------------------------------------------
    def collect(self) -> float:
        """Read every map once (one batch lookup each); returns the seconds it took.

        :meth:`render` calls it; it is public for benchmarks (reading
        without formatting).  Call it with no scrape running.

        Read errors are counted (``bpfload_export_map_read_errors_total``)
        and logged; the metrics of that map are left out of the scrape.
        """
        t0 = time.perf_counter()
        for s in self._sources:
            if s.read() is None and s.error is not None:
                self._read_errors.labels(str(s.ref)).inc()
                log.warning("reading map %s failed: %s", s.ref, s.error)
        return time.perf_counter() - t0

    def render(self, openmetrics: bool = False) -> bytes:
        """One scrape: read every map (one batch lookup each) and format all metrics.

        Returns the exposition as bytes: the Prometheus text format 0.0.4, or
        OpenMetrics 1.0 when *openmetrics* (ending in ``# EOF``).  Raises
        :class:`bpfload.BpfError` when the exporter is not open.
        """
        pc = _prom()
        with self._lock:
            if not self._opened:
                raise ExportConfigError("exporter is not open: call open() first")
            t0 = time.perf_counter()
            self.collect()
            out: List[str] = []
            for m in self._metrics:
                m.render(out, openmetrics)
            body = "".join(out).encode()
            self._scrape_hist.observe(time.perf_counter() - t0)
            if openmetrics:
                from prometheus_client.openmetrics.exposition import generate_latest as om_latest
                return body + om_latest(self.registry)
            return body + pc.generate_latest(self.registry)

    # -- HTTP -----------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 9435) -> Tuple[str, int]:
        """Serve ``/metrics`` on *host*:*port* (0: any free port) from a daemon thread.

        Returns the bound ``(host, port)``.  Opens the exporter if needed.
        Raises OSError when the address cannot be bound, RuntimeError when
        this exporter already serves (call :meth:`shutdown` first).
        """
        if self._server is not None:
            raise RuntimeError(f"exporter already serves on {self.address}")
        self.open()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/":
                    body, ctype, code = b'<a href="/metrics">/metrics</a>\n', "text/html", 200
                elif path == "/metrics":
                    om = "application/openmetrics-text" in self.headers.get("Accept", "")
                    try:
                        body = exporter.render(openmetrics=om)
                        ctype, code = (OPENMETRICS_CONTENT_TYPE if om else TEXT_CONTENT_TYPE), 200
                    except Exception as e:        # a scrape error is the scraper's 500
                        log.exception("scrape failed")
                        body, ctype, code = f"scrape failed: {e}\n".encode(), "text/plain", 500
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                gz = "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024
                if gz:
                    body = gzip.compress(body, 1)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                if gz:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("%s " + fmt, self.address_string(), *args)

        srv = ThreadingHTTPServer((host, port), Handler)
        srv.daemon_threads = True
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, name="bpfload-export",
                                        daemon=True)
        self._thread.start()
        return srv.server_address[0], srv.server_address[1]

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        """``(host, port)`` being served, or None."""
        return None if self._server is None else self._server.server_address[:2]

    def shutdown(self) -> None:
        """Stop the HTTP server (idempotent); the maps stay open."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(5)
