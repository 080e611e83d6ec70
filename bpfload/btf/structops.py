"""struct_ops: match an object's struct_ops variable to the kernel struct it implements.

A ``SEC(".struct_ops")`` variable of type ``struct tcp_congestion_ops`` becomes
a BPF_MAP_TYPE_STRUCT_OPS map whose value is the kernel's
``struct bpf_struct_ops_tcp_congestion_ops`` (a common header, then ``data``:
the kernel's ``struct tcp_congestion_ops``).  The object's layout of the struct
may differ from the kernel's (it was compiled against another vmlinux.h), so
members are matched by name, as libbpf does:

- a function-pointer member gets the fd of the program the object points it
  at (0 when none); the program loads with ``attach_btf_id`` = the kernel
  struct's id and ``expected_attach_type`` = the member's index;
- any other member is copied byte for byte and must have the same size and
  kind in both;
- a member the kernel does not have is an error unless it is all zeros;
  bitfields are refused.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Tuple

from ..errors import BtfError
from .format import Btf, Kind
from .targets import essential_name

__all__ = ["KernelStructOps", "kernel_struct_ops", "member_indexes", "build_value", "VALUE_PREFIX"]

#: the kernel wraps every struct_ops type X in ``struct bpf_struct_ops_X``
VALUE_PREFIX = "bpf_struct_ops_"


@dataclasses.dataclass(frozen=True)
class KernelMember:
    index: int
    offset: int          # bytes, within the kernel struct
    size: int
    kind: Kind
    is_func: bool


@dataclasses.dataclass(frozen=True)
class KernelStructOps:
    """The kernel's side of one struct_ops type (resolved once per type and process)."""

    type_name: str
    struct_id: int           # the struct's BTF id: programs' attach_btf_id
    value_type_id: int       # bpf_struct_ops_<type>: the map's btf_vmlinux_value_type_id
    value_size: int
    data_offset: int         # where the struct sits in the map value
    members: Mapping[str, KernelMember]


def _is_func_ptr(btf: Btf, type_id: int) -> bool:
    t = btf.resolve(type_id)
    return t.kind == Kind.PTR and btf.resolve(t.type).kind == Kind.FUNC_PROTO  # type: ignore[attr-defined]


_cache: Dict[str, KernelStructOps] = {}


def kernel_struct_ops(type_name: str, vmlinux: Btf, find, *, where: str) -> KernelStructOps:
    """The kernel layout of struct_ops type *type_name* (a ``___flavor`` suffix is dropped).

    *find(name, kind)* looks a type up in *vmlinux* (the kernel's BTF).
    *where* names the map for errors.  Raises :class:`BtfError` when the
    kernel has no such struct_ops type.
    """
    type_name = essential_name(type_name)
    got = _cache.get(type_name)
    if got is not None:
        return got
    st = find(type_name, Kind.STRUCT)
    value = find(VALUE_PREFIX + type_name, Kind.STRUCT)
    if st is None or value is None:
        what = f"struct {type_name}" if st is None else f"struct_ops value type {VALUE_PREFIX + type_name}"
        raise BtfError(f"{where}: the kernel has no {what} (not a struct_ops type this kernel "
                       "supports, or one from a module)", section=".struct_ops")
    data = value.member("data")
    if data is None or vmlinux.resolve(data.type).id != st.id:
        raise BtfError(f"{where}: kernel type {value.name} has no 'data' member of type "
                       f"struct {type_name}", section=".struct_ops")
    members = {}
    for i, m in enumerate(st.members):
        if m.bitfield_size or m.offset % 8:
            members[m.name] = KernelMember(i, m.offset // 8, 0, Kind.UNKN, False)   # bitfield
            continue
        members[m.name] = KernelMember(i, m.offset // 8, vmlinux.size_of(m.type),
                                       vmlinux.resolve(m.type).kind, _is_func_ptr(vmlinux, m.type))
    got = KernelStructOps(type_name, st.id, value.id, value.size, data.offset // 8, members)
    _cache[type_name] = got
    return got


def member_indexes(kso: KernelStructOps, programs: Mapping[str, str], *, where: str) -> Dict[str, int]:
    """Program name -> the index of the kernel member it implements (its expected_attach_type).

    *programs* maps member names to program names.  Raises
    :class:`BtfError` for a member the kernel's struct lacks or that is not a
    function pointer there.
    """
    out: Dict[str, int] = {}
    for member, prog in programs.items():
        km = kso.members.get(member)
        if km is None or not km.is_func:
            why = "has no such member" if km is None else "has it, but not as a function pointer"
            raise BtfError(f"{where}: program {prog!r} implements member {member!r}, but struct "
                           f"{kso.type_name} in this kernel {why}", section=".struct_ops")
        if prog in out and out[prog] != km.index:
            raise BtfError(f"{where}: program {prog!r} implements two members; a struct_ops program "
                           "is verified for one member (use one program per member)", section=".struct_ops")
        out[prog] = km.index
    return out


def build_value(kso: KernelStructOps, local: Btf, local_type_id: int, data: bytes,
                prog_fds: Mapping[str, int], *, where: str) -> Tuple[bytes, Dict[str, int]]:
    """The map value registering *data* (the object's image of the variable).

    *prog_fds* maps function-pointer member names to loaded program fds.
    Returns the value and, for the caller's records, member name -> member
    index of every program set.  Raises :class:`BtfError` naming the member
    for a layout the kernel's cannot take.
    """
    st = local.resolve(local_type_id)
    value = bytearray(kso.value_size)
    base = kso.data_offset
    placed: Dict[str, int] = {}
    for m in st.members:    # type: ignore[attr-defined]
        off = m.offset // 8
        size = local.size_of(m.type)
        raw = data[off:off + size]
        km = kso.members.get(m.name)
        if km is None:
            if any(raw) or m.name in prog_fds:
                raise BtfError(f"{where}: member {m.name!r} is set but struct {kso.type_name} in this "
                               "kernel has no such member", section=".struct_ops")
            continue
        if m.bitfield_size or m.offset % 8 or km.kind == Kind.UNKN:
            if any(raw):
                raise BtfError(f"{where}: member {m.name!r} is a bitfield; struct_ops bitfields "
                               "are not supported", section=".struct_ops")
            continue
        if km.is_func:
            fd = prog_fds.get(m.name)
            if fd is None:
                if any(raw):
                    raise BtfError(f"{where}: member {m.name!r} points at something that is not a "
                                   "struct_ops program", section=".struct_ops")
                continue
            value[base + km.offset:base + km.offset + 8] = fd.to_bytes(8, "little")
            placed[m.name] = km.index
            continue
        if m.name in prog_fds:
            raise BtfError(f"{where}: member {m.name!r} holds a program, but in the kernel it is not "
                           "a function pointer", section=".struct_ops")
        lkind = local.resolve(m.type).kind
        if lkind != km.kind or size != km.size:
            raise BtfError(f"{where}: member {m.name!r} is {lkind.name} of {size} bytes here but "
                           f"{km.kind.name} of {km.size} bytes in the kernel", section=".struct_ops")
        value[base + km.offset:base + km.offset + size] = raw
    return bytes(value), placed
