"""Register a struct_ops map with the kernel (``.struct_ops`` / ``.struct_ops.link``).

A struct_ops map holds one value: the kernel struct (e.g. ``tcp_congestion_ops``)
with the fds of the programs that implement its function pointers.  Writing
that value registers it (``.struct_ops``: the kernel calls the subsystem's
``reg``, e.g. ``tcp_register_congestion_control``), and deleting it
unregisters.  A map created with ``BPF_F_LINK`` (``.struct_ops.link``) only
stores the value on update; ``BPF_LINK_CREATE`` with the map fd registers it,
and closing the link (or ``link.update(other_map)``) unregisters or swaps it.
"""
from __future__ import annotations

import errno as _errno
from typing import Any

from .. import errors
from .._core import syscall as _sys
from ..constants import AttachType, LinkType
from .link import Link

__all__ = ["attach_struct_ops"]


def attach_struct_ops(map: Any, value: bytes, *, type_name: str, link: bool) -> Link:
    """Register struct_ops *map* (a :class:`bpfload.Map`) with *value*; return the :class:`Link`.

    *link*: the map was created with ``BPF_F_LINK`` (``.struct_ops.link``):
    register through a BPF link (6.4+), else by the map update itself
    (5.6+), and the Link unregisters by deleting the value.  A plain
    struct_ops map registers once: after it is unregistered the kernel
    refuses to register it again (``EBUSY``); load the object again.
    Raises :class:`bpfload.AttachError` naming the map and type.
    """
    hook = f"struct_ops {type_name} {map.name!r}"
    dup = map.__class__.from_fd(map.fd, name=map.name)   # the Link's own reference
    try:
        try:
            map.update(0, value)
        except errors.SyscallError as e:
            # a .struct_ops.link value is stored once; a retry after a failed link finds it there
            if not (link and e.errno == _errno.EBUSY):
                raise errors.attach_error("BPF_MAP_UPDATE_ELEM", e.errno, program=map.name, hook=hook,
                                          family="struct_ops",
                                          message=f"registering struct_ops {map.name!r} failed") from e
        if link:
            try:
                fd = _sys.link_create(dup.fd, 0, int(AttachType.STRUCT_OPS))
            except errors.SyscallError as e:
                raise errors.attach_error("BPF_LINK_CREATE", e.errno, program=map.name, hook=hook,
                                          family="struct_ops") from e
            dup.close()
            return Link(fd, program=map.name, type=LinkType.STRUCT_OPS, hook=hook)
    except BaseException:
        dup.close()
        raise

    def unregister() -> None:
        dup.delete(0)

    return Link(None, program=map.name, type=LinkType.STRUCT_OPS, hook=hook, detach=unregister,
                holds=(dup,))
