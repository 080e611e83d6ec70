"""The Prometheus/OpenMetrics exporter against the kernel.

bpf/export_counters.bpf.o is loaded by the exporter from a YAML config,
driven with BPF_PROG_TEST_RUN on two CPUs, and scraped over HTTP on
127.0.0.1; the exposition is parsed with prometheus_client's own parsers
(text format and OpenMetrics).  Every sample must equal what the maps hold
(read back separately with per-element lookups of the typed view) and what
the test put in: counters summed over CPUs and per CPU, labels decoded
(ifindex -> name, port byte order, static map, BTF enum, cgroup id -> path,
kernel address -> symbol), log2 and linear histograms as cumulative buckets.
"""
from __future__ import annotations

import errno
import os
import struct
import urllib.request

import pytest

import bpfload
from bpfload._core import syscall as _sys
from conftest import bpf_object, cgroup2_root, need_module, on_cpu, sysfs_cpus

pytestmark = pytest.mark.kernel

yaml = need_module("yaml")
need_module("prometheus_client")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families as text_parse  # noqa: E402

from bpfload.export import ExportConfigError, Exporter  # noqa: E402

BPF_MAP_LOOKUP_BATCH = 24
OBJ = str(bpf_object("export_counters"))
PROTO = {6: "tcp", 17: "udp"}
KINDS = {0: "KIND_NORMAL", 1: "KIND_RETRANS", 2: "KIND_DROP"}


def args(ifindex=1, port=80, proto=6, kind=0, op=0, nbytes=100, latency=1) -> bytes:
    """struct export_args; port given in host order, stored in network order as a program sees it."""
    return struct.pack("=IHBBIIQ", ifindex, struct.unpack("=H", struct.pack("!H", port))[0],
                       proto, kind, op, nbytes, latency)


def log2_slot(v: int) -> int:
    """The reference bucketing: the smallest k with v <= 2**k."""
    k = 0
    while v > (1 << k):
        k += 1
    return k


CONFIG = {
    "objects": {"app": {"path": OBJ}},
    "metrics": [
        {"name": "flow_packets_total", "help": "Packets per flow", "type": "counter",
         "map": "app:flows", "value": "packets",
         "labels": [{"name": "dev", "field": "ifindex", "decoders": ["ifname"]},
                    {"name": "port", "field": "port", "decoders": [{"name": "port"}]},
                    {"name": "proto", "field": "proto",
                     "decoders": [{"name": "static_map", "map": {6: "tcp", 17: "udp"}}]},
                    {"name": "kind", "field": "kind",
                     "decoders": [{"name": "enum", "type": "flow_kind"}]}]},
        {"name": "flow_bytes", "help": "Bytes per flow and CPU", "type": "gauge",
         "map": "app:flows", "value": "bytes", "per_cpu": "label",
         "labels": [{"name": "port", "field": "port", "decoders": ["port"]},
                    {"name": "proto", "field": "proto"}]},
        {"name": "op_latency_seconds", "help": "Latency per op", "type": "histogram",
         "map": "app:lat", "labels": [{"name": "op", "field": "op"}],
         "bucket": {"type": "log2", "field": "slot", "multiplier": 1e-6, "max": 12}},
        {"name": "packet_size_bytes", "help": "Sizes", "type": "histogram", "map": "app:sizes",
         "bucket": {"type": "linear", "multiplier": 256, "max": 7}},
        {"name": "cgroup_events_total", "help": "Events per cgroup", "map": "app:cgroups",
         "labels": [{"name": "cgroup", "decoders": ["cgroup"]}]},
    ],
}

# what the test drives: (cpu index into the usable CPUs, args)
EVENTS = [
    (0, dict(port=80, proto=6, kind=0, op=1, nbytes=100, latency=1)),
    (1, dict(port=80, proto=6, kind=0, op=1, nbytes=300, latency=3)),
    (0, dict(port=443, proto=6, kind=1, op=1, nbytes=1500, latency=1000)),
    (1, dict(port=53, proto=17, kind=2, op=2, nbytes=600, latency=70)),
    (1, dict(port=53, proto=17, kind=2, op=2, nbytes=50, latency=5000)),   # slot 13 > max: +Inf only
    (0, dict(port=53, proto=17, kind=2, op=2, nbytes=3000, latency=2)),
]


def usable_cpus():
    cpus = sorted(os.sched_getaffinity(0) & set(sysfs_cpus("online")))
    return cpus if len(cpus) > 1 else cpus * 2


def drive(obj):
    cpus = usable_cpus()
    prog = obj.programs["export_count"]
    for ci, a in EVENTS:
        with on_cpu(cpus[ci]):
            assert prog.test_run(ctx=args(**a)).retval == log2_slot(a["latency"])


def scrape(addr, openmetrics=False):
    req = urllib.request.Request(f"http://{addr[0]}:{addr[1]}/metrics")
    if openmetrics:
        req.add_header("Accept", "application/openmetrics-text; version=1.0.0")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def samples(families, name):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families if f.name == name for s in f.samples}


@pytest.fixture
def config_file(tmp_path):
    p = tmp_path / "export.yaml"
    p.write_text(yaml.safe_dump(CONFIG))
    return p


def expected_counters():
    pk, by = {}, {}
    for _, a in EVENTS:
        k = (("dev", "lo"), ("kind", KINDS[a["kind"]]), ("port", str(a["port"])),
             ("proto", PROTO[a["proto"]]))
        pk[("flow_packets_total", k)] = pk.get(("flow_packets_total", k), 0) + 1
        by[(a["port"], a["proto"])] = by.get((a["port"], a["proto"]), 0) + a["nbytes"]
    return pk, by


def expected_hist(values, bound, lo, hi, fam, extra=()):
    out = {}
    for k in range(lo, hi + 1):
        out[(f"{fam}_bucket", tuple(sorted(extra + (("le", bound(k)),))))] = \
            sum(1 for v in values if v <= k)
    out[(f"{fam}_bucket", tuple(sorted(extra + (("le", "+Inf"),))))] = len(values)
    out[(f"{fam}_count", tuple(sorted(extra)))] = len(values)
    return out


def test_scrape_equals_maps(config_file):
    with Exporter(config_file) as ex:
        obj = ex.objects["app"]
        drive(obj)
        addr = ex.serve("127.0.0.1", 0)
        assert ex.address == addr
        with pytest.raises(RuntimeError, match="already serves"):
            ex.serve("127.0.0.1", 0)
        ctype, text = scrape(addr)
        assert ctype.startswith("text/plain; version=0.0.4")
        fams = list(text_parse(text))

        # counters summed over CPUs: equal to the test's events and to the map
        want_pk, want_by = expected_counters()
        got = samples(fams, "flow_packets")
        assert {k: v for k, v in got.items()} == want_pk
        ref = {}
        for k, per_cpu in obj.maps["flows"].typed().items():
            ref[(k["port"], k["proto"])] = [c["bytes"] for c in per_cpu]
        ports = {(struct.unpack("!H", struct.pack("=H", p))[0], pr): v for (p, pr), v in ref.items()}
        assert {k: sum(v) for k, v in ports.items()} == want_by

        # per_cpu: label -- one sample per possible CPU, equal to the map's per-CPU values
        got = samples(fams, "flow_bytes")
        want = {}
        for (port, proto), vals in ports.items():
            for cpu, v in enumerate(vals):
                want[("flow_bytes", (("cpu", str(cpu)), ("port", str(port)), ("proto", str(proto))))] = v
        assert got == want
        assert sum(1 for v in got.values() if v) >= 2        # the events ran on two CPUs

        # log2 histogram per op, slots from the key; slot 13 lands in +Inf only
        got = samples(fams, "op_latency_seconds")
        want = {}
        for op in (1, 2):
            slots = [log2_slot(a["latency"]) for _, a in EVENTS if a["op"] == op]
            want.update(expected_hist(slots, lambda k: repr(float(2 ** k) * 1e-6), 0, 12,
                                      "op_latency_seconds", (("op", str(op)),)))
        assert got == want
        raw = {(k["op"], k["slot"]): v for k, v in obj.maps["lat"].typed().items()}
        assert raw[(2, 13)] == 1 and sum(raw.values()) == len(EVENTS)

        # linear histogram from an array whose key is the slot
        got = samples(fams, "packet_size_bytes")
        slots = [min(a["nbytes"] // 256, 7) for _, a in EVENTS]
        assert got == expected_hist(slots, lambda k: repr(float((k + 1) * 256)), 0, 7,
                                    "packet_size_bytes")

        # cgroup id -> path: this process's cgroup2 path
        with open("/proc/self/cgroup") as f:
            path = [ln.split("::", 1)[1].strip() for ln in f if ln.startswith("0::")][0]
        assert samples(fams, "cgroup_events") == {
            ("cgroup_events_total", (("cgroup", path),)): len(EVENTS)}

        # self-metrics
        assert samples(fams, "bpfload_export_scrape_duration_seconds")[
            ("bpfload_export_scrape_duration_seconds_count", ())] >= 1
        ent = samples(fams, "bpfload_export_map_entries")
        assert ent[("bpfload_export_map_entries", (("map", "app:lat"),))] == len(raw)

        # OpenMetrics: the same samples, parsed by the strict parser
        ctype, om = scrape(addr, openmetrics=True)
        assert ctype.startswith("application/openmetrics-text") and om.endswith("# EOF\n")
        omf = list(om_parse(om))
        assert samples(omf, "flow_packets") == want_pk
        assert samples(omf, "op_latency_seconds") == {
            k: v for k, v in samples(fams, "op_latency_seconds").items()
            if k[0] != "op_latency_seconds_count"}        # OpenMetrics: no _count without _sum


def test_one_batch_lookup_per_map_per_scrape(config_file):
    with Exporter(config_file) as ex:
        drive(ex.objects["app"])
        ex.render()
        n0 = _sys.syscall_count(BPF_MAP_LOOKUP_BATCH)
        ex.render()
        # flows is read twice (summed, and per CPU for the per_cpu: label metric), then lat,
        # sizes, cgroups: one batch lookup each
        assert _sys.syscall_count(BPF_MAP_LOOKUP_BATCH) - n0 == 5


def test_cgroup_and_ksym_decoders(tmp_path):
    root = cgroup2_root()
    cg = os.path.join(root, f"bpfload-export-{os.getpid()}")
    ks = need_module("bpfload.export.decoders").Ksyms()
    sym = "bpf_prog_test_run_syscall"
    addr = ks.address(sym)
    if addr is None:
        pytest.skip("kallsyms addresses are hidden (kptr_restrict)")
    cfg = {"objects": {"app": {"path": OBJ}},
           "metrics": [{"name": "cg_total", "map": "app:cgroups",
                        "labels": [{"name": "cgroup", "decoders": ["cgroup"]}]},
                       {"name": "sym", "type": "gauge", "map": "app:syms",
                        "labels": [{"name": "func", "decoders": ["ksym"]},
                                   {"name": "addr", "offset": 0, "size": 8, "decoders": ["hex"]}]}]}
    os.mkdir(cg)
    try:
        with Exporter(cfg) as ex:
            obj = ex.objects["app"]
            with open("/proc/self/cgroup") as f:
                home = [ln.split("::", 1)[1].strip() for ln in f if ln.startswith("0::")][0]
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            try:
                obj.programs["export_count"].test_run(ctx=args())
                obj.programs["export_count"].test_run(ctx=args())
            finally:
                with open(os.path.join(root, home.lstrip("/"), "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            obj.maps["syms"].update(struct.pack("=Q", addr + 4), struct.pack("=Q", 7))
            fams = list(text_parse(ex.render().decode()))
            assert samples(fams, "cg") == {
                ("cg_total", (("cgroup", f"/bpfload-export-{os.getpid()}"),)): 2}
            assert samples(fams, "sym") == {("sym", (("addr", hex(addr + 4)), ("func", sym))): 7}
    finally:
        os.rmdir(cg)


def test_pinned_map_and_map_id(bpffs):
    with bpfload.load(OBJ) as obj:
        obj.programs["export_count"].test_run(ctx=args(port=8080, nbytes=700, latency=9))
        obj.maps["lat"].pin(bpffs / "lat")
        cfg = {"metrics": [
            {"name": "by_pin", "type": "histogram", "map": {"pin": str(bpffs / "lat")},
             "labels": [{"name": "op", "field": "op"}], "bucket": {"field": "slot", "max": 4}},
            {"name": "by_id_total", "map": {"id": obj.maps["sizes"].id},
             "labels": [{"name": "slot"}]}]}
        with Exporter(cfg) as ex:
            fams = list(text_parse(ex.render().decode()))
    got = samples(fams, "by_pin")
    assert got[("by_pin_bucket", (("le", "8.0"), ("op", "0")))] == 0
    assert got[("by_pin_bucket", (("le", "16.0"), ("op", "0")))] == 1      # 9 <= 16: slot 4
    assert got[("by_pin_count", (("op", "0"),))] == 1
    ids = samples(fams, "by_id")
    assert ids == {("by_id_total", (("slot", str(s)),)): int(s == 2) for s in range(8)}


def test_read_error_counted_and_metric_left_out(config_file):
    with Exporter(config_file) as ex:
        drive(ex.objects["app"])
        _sys.inject_fault(1, errno.EIO, BPF_MAP_LOOKUP_BATCH)
        try:
            fams = list(text_parse(ex.render().decode()))
        finally:
            _sys.inject_fault(0, 0)
        errs = samples(fams, "bpfload_export_map_read_errors")
        assert errs == {("bpfload_export_map_read_errors_total", (("map", "app:flows"),)): 1}
        assert samples(fams, "flow_packets") == {}            # its map could not be read
        assert samples(fams, "cgroup_events")                 # the other maps still were
        fams = list(text_parse(ex.render().decode()))
        assert samples(fams, "flow_packets") == expected_counters()[0]


def test_lost_and_free_self_metrics():
    cpu = usable_cpus()[0]
    with bpfload.load(bpf_object("perf_event")) as pobj, bpfload.load(bpf_object("ringbuf")) as robj, \
            on_cpu(cpu), bpfload.PerfBuffer(pobj.maps["events"], cpus=[cpu], page_count=1) as pb, \
            bpfload.RingBuffer(robj.maps["rb"]) as rb:
        for s in range(300):
            pobj.programs["pe_output"].test_run(struct.pack("<II", s, 0) + bytes(12))
        list(pb.records(timeout_ms=0))
        pobj.programs["pe_output"].test_run(struct.pack("<II", 999, 0) + bytes(12))
        list(pb.records(timeout_ms=0))
        for s in range(10):
            robj.programs["rb_output"].test_run(ctx=struct.pack("=II", s, 0))
        with Exporter({"objects": {"app": {"path": OBJ}},
                       "metrics": [{"name": "x_total", "map": "app:sizes"}]}) as ex:
            ex.watch_reader("perf", pb)
            ex.watch_reader("ring", rb)
            fams = list(text_parse(ex.render().decode()))
        assert pb.lost > 0
        assert samples(fams, "bpfload_export_lost_events") == {
            ("bpfload_export_lost_events_total", (("reader", "perf"),)): pb.lost}
        assert samples(fams, "bpfload_export_ring_free_bytes") == {
            ("bpfload_export_ring_free_bytes", (("reader", "ring"),)): 16384 - 10 * 32}


@pytest.mark.parametrize("metric, message", [
    ({"name": "a", "map": "app:flows", "labels": [{"name": "x", "field": "nope"}]},
     "struct flow_key has no member 'nope'"),
    ({"name": "a", "map": "app:nomap"}, "has no map 'nomap'"),
    ({"name": "a", "map": "app:flows", "value": "packetz"}, "no member 'packetz'"),
    ({"name": "a", "map": "app:flows", "labels": [{"name": "x", "field": "port",
                                                   "decoders": ["bogus"]}]}, "unknown decoder"),
    ({"name": "a", "map": "app:flows", "labels": [{"name": "x", "field": "kind",
                                                   "decoders": [{"name": "enum", "type": "nope"}]}]},
     "no enum 'nope'"),
    ({"name": "a", "type": "histogram", "map": "app:lat"}, "needs bucket"),
    ({"name": "a", "type": "summary", "map": "app:lat"}, "type must be"),
    ({"name": "a b", "map": "app:lat"}, "name must match"),
    ({"name": "a", "map": {"pin": "/nonexistent/pin"}}, "cannot open pinned map"),
])
def test_config_errors_name_the_metric_and_leave_nothing(metric, message):
    with pytest.raises(ExportConfigError, match=message) as ei:
        Exporter({"objects": {"app": {"path": OBJ}}, "metrics": [metric]}).open()
    assert "metric 'a" in str(ei.value) or "metrics[0]" in str(ei.value)


def test_reload_swaps_config(config_file, tmp_path):
    with Exporter(config_file) as ex:
        drive(ex.objects["app"])
        old_obj = ex.objects["app"]
        cfg = dict(CONFIG, metrics=[{"name": "sizes_only_total", "map": "app:sizes",
                                     "labels": [{"name": "slot"}]}])
        config_file.write_text(yaml.safe_dump(cfg))
        ex.reload()
        with pytest.raises(bpfload.MapClosedError):       # the old object was closed
            old_obj.maps["sizes"].fd
        fams = list(text_parse(ex.render().decode()))
        names = {f.name for f in fams}
        assert "sizes_only" in names and "flow_packets" not in names
        # a fresh object: its maps start empty
        assert sum(samples(fams, "sizes_only").values()) == 0
        # a broken config leaves the running one
        config_file.write_text(yaml.safe_dump(dict(CONFIG, metrics=[{"name": "z", "map": "app:zz"}])))
        with pytest.raises(ExportConfigError):
            ex.reload()
        assert "sizes_only" in {f.name for f in text_parse(ex.render().decode())}


def test_docs_example_config_runs():
    """The YAML example of docs/exporter.md, against the committed object it describes."""
    import pathlib
    import re
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "exporter.md").read_text()
    cfg = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.S).group(1))
    cfg["objects"]["app"]["path"] = OBJ
    with Exporter(cfg) as ex:
        drive(ex.objects["app"])
        fams = {f.name: f for f in text_parse(ex.render().decode())}
    want_pk, _ = expected_counters()
    assert samples(fams.values(), "flow_packets") == want_pk
    lat = samples(fams.values(), "op_latency_seconds")
    assert lat[("op_latency_seconds_bucket", (("le", "+Inf"), ("op", "2")))] == 3
    assert samples(fams.values(), "packet_size_bytes")[
        ("packet_size_bytes_count", ())] == len(EVENTS)


def test_histogram_slots_in_value():
    """libbpf-tools' layout: key = labels, value = u64 slots[8] (a map without BTF)."""
    from bpfload import MapType
    with bpfload.Map.create(MapType.HASH, 4, 64, 16, name="hist_val") as m:
        m.update(struct.pack("=I", 7), struct.pack("=8Q", 1, 0, 2, 0, 0, 0, 0, 4))
        m.update(struct.pack("=I", 9), struct.pack("=8Q", 0, 0, 0, 0, 0, 0, 0, 0))
        cfg = {"metrics": [{"name": "h", "type": "histogram", "map": {"id": m.id},
                            "labels": [{"name": "dev", "offset": 0, "size": 4}],
                            "bucket": {"type": "log2", "in_value": True, "min": 1, "max": 6}}]}
        with Exporter(cfg) as ex:
            got = samples(text_parse(ex.render().decode()), "h")
    dev7 = {dict(k[1])["le"]: v for k, v in got.items()
            if k[0] == "h_bucket" and ("dev", "7") in k[1]}
    # slot 0 (<= 1) folds into the first exported bucket (le 2); slot 7 > max: +Inf only
    assert dev7 == {"2.0": 1, "4.0": 3, "8.0": 3, "16.0": 3, "32.0": 3, "64.0": 3, "+Inf": 7}
    assert got[("h_count", (("dev", "9"),))] == 0
