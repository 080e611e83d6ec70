"""Prometheus/OpenMetrics exporter for BPF maps (``bpfload export CONFIG.yaml``).

:class:`Exporter` loads objects (or opens pinned maps / map ids), reads each
configured map once per scrape with a batch lookup, decodes keys into labels
through BTF and decoders, and serves ``/metrics``.  See docs/exporter.md for
the configuration.  Needs the ``export`` extra (prometheus-client, PyYAML).
"""
from .config import Config, load_config_file, parse_config
from .errors import ExportConfigError
from .exporter import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exporter

__all__ = ["Exporter", "ExportConfigError", "Config", "parse_config", "load_config_file",
           "TEXT_CONTENT_TYPE", "OPENMETRICS_CONTENT_TYPE"]
