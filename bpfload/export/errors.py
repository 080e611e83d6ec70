"""Exceptions of the exporter."""
from __future__ import annotations

from .. import errors

__all__ = ["ExportConfigError"]


class ExportConfigError(errors.BpfError, ValueError):
    """A configuration the exporter cannot use: a missing key, an unknown map, field,
    decoder or metric type; the message names the metric and the setting."""
