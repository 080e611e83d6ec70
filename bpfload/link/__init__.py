"""Attaching programs and owning the attachments (links).

Tracing hooks (perf events, tracefs, tracepoints, kprobes, uprobes), network
hooks (XDP, tcx, tc over netlink), cgroups, sockets, netfilter and
iterators.  Everything here sits beside :mod:`bpfload.programs` and
:mod:`bpfload.maps` and imports only them and the layers below.
"""
from .iter import IterLink
from .link import Link, LinkInfo, link_info

__all__ = ["Link", "LinkInfo", "IterLink", "link_info"]
