"""The exporter's scrape against the raw batch dump it is built on.

For a HASH map of N = 10k / 100k / 1M entries (an 8-byte struct key
``{u32 id; u16 port (network order); u8 proto; u8 pad}`` -> u64, every key
distinct), three bpfload measurements are each paired round by round with
the C reference's raw dump of the same map (``cref_lookup_batch`` of
c_ref.c: BPF_MAP_LOOKUP_BATCH of the whole map in one call, as the exporter
makes it):

* ``read``: ``Exporter.collect()``: the batch lookup into the poller's
  preallocated buffers plus its per-key delta pass (target <= 1.5x the dump);
* ``format``: formatting the snapshot already read into the text
  exposition (three labels: ``id`` as is, ``port`` through the port
  decoder, ``proto`` through a static map), what a scrape adds to the read;
* ``scrape``: ``Exporter.render()``: both, plus the self-metrics.

The exposition's size is in each benchmark's ``extra_info`` (``bytes``)
and printed.  Rounds are CPU time of the thread (``time.thread_time``);
fewer rounds for the larger maps keep the run short on the shared machine.

Run: ``python3 -m pytest benchmarks/bench_export.py --benchmark-only``.
"""
from __future__ import annotations

import array
import os
import struct

import pytest

from bpfload import Map, MapType

from .bench_maps import TIMER, Buf, Case, check, run_c, run_py

pytest.importorskip("prometheus_client", reason="the exporter needs the [export] extra")

SIZES = (10_000, 100_000, 1_000_000)
ROUNDS_FOR = {10_000: 15, 100_000: 7, 1_000_000: 3}

pytestmark = pytest.mark.usefixtures("kernel")


def cases(n: int):
    label = f"{n // 1000}k" if n < 1_000_000 else "1M"
    return (Case(f"export read {label}", n, "entry", 1.5),
            Case(f"export format {label}", n, "entry", float("inf")),
            Case(f"export scrape {label}", n, "entry", float("inf")))


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}")
def flow_map(request):
    n = request.param
    m = Map.create(MapType.HASH, 8, 8, n, name=f"bench_exp{n}")
    keys = bytearray(8 * n)
    for i in range(n):
        struct.pack_into("=IHBx", keys, 8 * i, i, struct.unpack("=H", struct.pack("!H", i % 50000))[0],
                         (6, 17)[i & 1])
    m.update_batch(keys, array.array("Q", range(n)))
    yield n, m
    m.close()


@pytest.fixture(scope="module")
def exporter(flow_map):
    from bpfload.export import Exporter
    n, m = flow_map
    ex = Exporter({"metrics": [{
        "name": "bench_flow_packets_total", "help": "Packets per flow", "map": {"id": m.id},
        "labels": [{"name": "id", "offset": 0, "size": 4},
                   {"name": "port", "offset": 4, "size": 2, "decoders": ["port"]},
                   {"name": "proto", "offset": 6, "size": 1,
                    "decoders": [{"static_map": {6: "tcp", 17: "udp"}}]}]}]})
    ex.open()
    yield n, m, ex
    ex.close()


def _c_dump(cref, m, n):
    kb, vb = Buf(n * 8), Buf(n * 8)
    fd = m.fd

    def c_round():
        assert check(cref.cref_lookup_batch(fd, kb.addr, vb.addr, 8, 8, n, n), "lookup_batch") == n
    return c_round


def _format(ex) -> bytes:
    out = []
    for metric in ex._metrics:
        metric.render(out, False)
    return "".join(out).encode()


def _rounds(n):
    return int(os.environ.get("BPFLOAD_BENCH_ROUNDS", ROUNDS_FOR[n]))


@pytest.mark.benchmark(group="export", timer=TIMER)
def test_export_dump_c(benchmark, pairs, cref, exporter, monkeypatch):
    n, m, ex = exporter
    monkeypatch.setattr("benchmarks.bench_maps.ROUNDS", _rounds(n))
    run_c(benchmark, pairs, cases(n)[0], _c_dump(cref, m, n))


@pytest.mark.benchmark(group="export", timer=TIMER)
@pytest.mark.parametrize("what", ["read", "format", "scrape"])
def test_export_bpfload(benchmark, pairs, cref, exporter, what, monkeypatch):
    n, m, ex = exporter
    monkeypatch.setattr("benchmarks.bench_maps.ROUNDS", _rounds(n))
    read, fmt, scrape = cases(n)
    ex.collect()
    body = _format(ex)
    assert body.count(b"\n") == n + 2                      # every key, plus HELP and TYPE
    first = body.split(b"\n")[2]
    assert first.startswith(b'bench_flow_packets_total{id="') and b'proto="' in first
    if what == "read":
        case, py_round = read, ex.collect
    elif what == "format":
        case, py_round = fmt, lambda: _format(ex)
    else:
        case, py_round = scrape, ex.render
    run_py(benchmark, pairs, case, py_round, _c_dump(cref, m, n))
    if not benchmark.disabled:
        benchmark.extra_info.update(bytes=len(body) if what != "scrape" else len(ex.render()))
        print(f"\n{case.group}: {len(ex.render())} bytes per scrape")
