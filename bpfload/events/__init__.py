"""Event streams and polling: the Python faces of :mod:`bpfload._core.events`
and :mod:`bpfload._core.poll`.

:class:`RingBuffer` (BPF_MAP_TYPE_RINGBUF), :class:`PerfBuffer`
(BPF_MAP_TYPE_PERF_EVENT_ARRAY) and :class:`MapPoller` (batch map polling).
"""
from .perf import PerfBuffer, online_cpus
from .poll import MapPoller, Sample, Snapshot, SnapshotArrays, StaleSnapshotError
from .ringbuf import RingBuffer, RingStats

__all__ = ["RingBuffer", "RingStats", "PerfBuffer", "online_cpus", "MapPoller", "Sample",
           "Snapshot", "SnapshotArrays", "StaleSnapshotError"]
