"""struct_ops: kernel structs of function pointers implemented by BPF programs.

A ``.struct_ops`` variable (``SEC(".struct_ops") struct tcp_congestion_ops cc = {...}``)
becomes a BPF_MAP_TYPE_STRUCT_OPS map (Linux 5.6) whose one value is the
kernel's ``struct bpf_struct_ops_<name>``: a common header, then the kernel's
``struct <name>`` with the object's data members copied by member name and
each function pointer set to the fd of its program.  Each such program is
loaded with ``attach_btf_id`` = the kernel struct's BTF id and
``expected_attach_type`` = the member's index, which the verifier checks
against the member's prototype.  Registering (:func:`register`) writes the
value (BPF_MAP_UPDATE_ELEM; for ``.struct_ops.link`` variables, whose map has
BPF_F_LINK, then BPF_LINK_CREATE); closing the returned Link unregisters.

:func:`plan` reads only BTF (no syscall), so the layout can be checked
anywhere; the loader does the rest.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Dict, List, Optional, Tuple

from . import errors
from .btf import Btf, Kind
from .constants import AttachType, LinkType
from .spec import ObjectSpec, StructOpsSpec

__all__ = ["StructOpsPlan", "plan", "build_value", "register", "BPF_F_LINK"]

#: map flag of a struct_ops map registered through a BPF link
BPF_F_LINK = 1 << 13


@dataclasses.dataclass
class StructOpsPlan:
    """How one struct_ops variable becomes a map value (kernel BTF ids and offsets)."""

    name: str
    struct_name: str
    #: kernel BTF ids of ``struct <name>`` and of ``struct bpf_struct_ops_<name>``
    kern_type_id: int
    value_type_id: int
    value_size: int
    #: the value with the data members filled and every function pointer 0
    template: bytes
    #: value offset -> program name, for the function pointers set by the object
    slots: Dict[int, str]
    #: program name -> (kernel struct id, member index): what it is loaded with
    programs: Dict[str, Tuple[int, int]]
    link: bool


def _essential(name: str) -> str:
    return name.split("___", 1)[0]


def _is_func_ptr(btf: Btf, type_id: int) -> bool:
    t = btf.resolve(type_id)
    return t.kind == Kind.PTR and btf.skip_modifiers(t.type).kind == Kind.FUNC_PROTO


def plan(spec: ObjectSpec, so: StructOpsSpec, kernel: Btf) -> StructOpsPlan:
    """Lay out struct_ops variable *so* of *spec* the way *kernel* (vmlinux BTF) wants it.

    Data members are matched by name and must have the same size in both
    structs; a member the kernel lacks must be zero.  Raises
    :class:`bpfload.BtfError` naming the object, variable and member when the
    kernel has no such struct_ops type or a member does not fit.
    """
    def fail(msg: str) -> errors.BtfError:
        return errors.BtfError(f"struct_ops {so.name!r}: {msg}", object=spec.name,
                               section=so.section, symbol=so.name)

    btf = spec.btf
    local = btf.resolve(so.type_id)
    sname = _essential(local.name)
    kern = kernel.find(sname, Kind.STRUCT)
    vtype = kernel.find(f"bpf_struct_ops_{sname}", Kind.STRUCT)
    if kern is None or vtype is None:
        raise fail(f"the kernel has no struct_ops type 'struct {sname}' "
                   f"(no 'struct bpf_struct_ops_{sname}' in its BTF)")
    data_m = vtype.member("data")
    if data_m is None:
        raise fail(f"'struct bpf_struct_ops_{sname}' has no 'data' member")
    base = data_m.offset // 8
    value = bytearray(vtype.size)
    slots: Dict[int, str] = {}
    progs: Dict[str, Tuple[int, int]] = {}
    for m in local.members:
        off = m.offset // 8
        if m.bitfield_size or m.offset % 8:
            raise fail(f"member {m.name!r} is a bitfield (not supported)")
        size = btf.size_of(m.type) if not _is_func_ptr(btf, m.type) else 8
        raw = so.data[off:off + size]
        prog = so.programs.get(off)
        idx = next((i for i, km in enumerate(kern.members) if km.name == m.name), None)
        if idx is None:
            if prog is not None or any(raw):
                raise fail(f"member {m.name!r} is set, but the kernel's struct {sname} "
                           "has no such member")
            continue
        km = kern.members[idx]
        koff = base + km.offset // 8
        if _is_func_ptr(btf, m.type):
            if not _is_func_ptr(kernel, km.type):
                raise fail(f"member {m.name!r} is a function pointer here, not in the kernel")
            if prog is not None:
                if prog in progs and progs[prog] != (kern.id, idx):
                    raise fail(f"program {prog!r} is used for two different members")
                slots[koff] = prog
                progs[prog] = (kern.id, idx)
            elif any(raw):
                raise fail(f"function pointer {m.name!r} is set to something not a program")
            continue
        if prog is not None:
            raise fail(f"member {m.name!r} points at program {prog!r} but is not a function "
                       "pointer")
        ksize = kernel.size_of(km.type)
        if ksize != size:
            raise fail(f"member {m.name!r} is {size} bytes here, {ksize} in the kernel")
        value[koff:koff + size] = raw
    return StructOpsPlan(so.name, sname, kern.id, vtype.id, vtype.size, bytes(value), slots,
                         progs, so.link)


def build_value(p: StructOpsPlan, fds: Dict[str, int]) -> bytes:
    """The map value of *p* with each function pointer slot set to its program's fd.

    Raises :class:`bpfload.BpfError` when a program of *p* has no fd in *fds*.
    """
    value = bytearray(p.template)
    for off, prog in p.slots.items():
        fd = fds.get(prog)
        if fd is None:
            raise errors.BpfError(f"struct_ops {p.name!r}: program {prog!r} is not loaded")
        struct.pack_into("<Q", value, off, fd)
    return bytes(value)


def register(m, p: StructOpsPlan, fds: Dict[str, int], *, program: Optional[str] = None):
    """Register struct_ops map *m* (a :class:`bpfload.Map`) with the kernel -> a Link.

    Writes the value (BPF_MAP_UPDATE_ELEM); for a ``.struct_ops.link`` map
    (BPF_F_LINK) then creates the link (BPF_LINK_CREATE, Linux 6.4).  Closing
    the Link unregisters (the link's close, or BPF_MAP_DELETE_ELEM).  Raises
    :class:`bpfload.AttachError` naming the variable and struct, with the
    kernel's errno and a hint.
    """
    from ._core import syscall as _sys
    from .link.link import Link
    hook = f"struct_ops {p.struct_name} ({p.name})"
    value = build_value(p, fds)
    try:
        m.update(0, value)   # registers a map without BPF_F_LINK
    except errors.SyscallError as e:
        raise errors.attach_error("BPF_MAP_UPDATE_ELEM", e.errno, program=program or p.name,
                                  hook=hook, family="struct_ops") from None
    if p.link:
        try:
            fd = _sys.link_create(m.fd, 0, int(AttachType.STRUCT_OPS))
        except errors.SyscallError as e:
            raise errors.attach_error("BPF_LINK_CREATE", e.errno, program=program or p.name,
                                      hook=hook, family="struct_ops") from None
        return Link(fd, program=program or p.name, type=LinkType.STRUCT_OPS, hook=hook)

    from .maps import Map
    own = Map.from_fd(m.fd, name=p.name)   # the Link unregisters even after the object closed

    def _unregister() -> None:
        own.delete(0)
    return Link(None, program=program or p.name, type=LinkType.STRUCT_OPS, hook=hook,
                detach=_unregister, holds=[own])


def plans(spec: ObjectSpec, kernel: Btf) -> List[StructOpsPlan]:
    """:func:`plan` for every struct_ops variable of *spec*, in order."""
    return [plan(spec, so, kernel) for so in spec.struct_ops.values()]
