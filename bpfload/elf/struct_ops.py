"""``.struct_ops`` / ``.struct_ops.link`` sections -> :class:`~bpfload.spec.StructOpsSpec`.

Each variable of such a section is a kernel struct (``struct tcp_congestion_ops``)
defined in the object: its bytes are the initial member values, and each
function pointer member set to a program has an ``R_BPF_64_ABS64`` relocation
against that program.  The BTF DATASEC of the section names the variables.
No syscalls.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..btf import Datasec, Kind, Var
from ..errors import BtfError, ElfError
from ..spec import ObjectSpec, ProgramSpec, StructOpsSpec

__all__ = ["is_struct_ops_section", "read_variables", "add_program"]

_SECTIONS = (".struct_ops", ".struct_ops.link")


def is_struct_ops_section(name: str) -> bool:
    """True for ``.struct_ops``, ``.struct_ops.link`` and their ``.NAME`` variants."""
    return name in _SECTIONS or name.startswith(".struct_ops.")


def read_variables(spec: ObjectSpec, sections, err: Callable[..., ElfError]) -> None:
    """Fill ``spec.struct_ops`` from every struct_ops section of *sections*.

    Raises :class:`ElfError` (via *err*) for a struct_ops section without BTF, a
    variable that is not a struct, or one that lies outside its section.
    """
    for sec in sections:
        if not is_struct_ops_section(sec.name) or sec.size == 0:
            continue
        btf = spec.btf
        ds = btf.find(sec.name, Kind.DATASEC) if btf is not None else None
        if not isinstance(ds, Datasec):
            raise err("a struct_ops section needs its DATASEC in .BTF", section=sec.name,
                      cls=BtfError)
        for vsi in ds.vars:
            var = btf[vsi.type]
            if not isinstance(var, Var) or not var.name:
                raise err(f"DATASEC member [{vsi.type}] is not a named variable",
                          section=sec.name, cls=BtfError)
            t = btf.resolve(var.type)
            if t.kind != Kind.STRUCT:
                raise err(f"struct_ops variable is a {t.kind.name}, not a struct",
                          section=sec.name, symbol=var.name, cls=BtfError)
            if vsi.offset + t.size > len(sec.data):
                raise err(f"struct_ops variable {vsi.offset:#x}+{t.size:#x} extends past the "
                          f"section end {len(sec.data):#x}", section=sec.name, symbol=var.name)
            if var.name in spec.struct_ops or var.name in spec.maps:
                raise err("duplicate struct_ops variable (or map) name", section=sec.name,
                          symbol=var.name)
            spec.struct_ops[var.name] = StructOpsSpec(
                name=var.name, section=sec.name, type_id=t.id,
                data=bytes(sec.data[vsi.offset:vsi.offset + t.size]),
                link=sec.name.startswith(".struct_ops.link"), offset=vsi.offset)


def add_program(spec: ObjectSpec, section: str, r_offset: int, fn: Optional[object],
                sym_name: str, err: Callable[..., ElfError]) -> None:
    """Record the relocation at *r_offset* of struct_ops *section*: a function pointer
    member set to program *fn*.  Raises :class:`ElfError` when *fn* is not an
    entry-point program or the offset is in no variable."""
    for so in spec.struct_ops.values():
        base = so.offset
        if so.section == section and base <= r_offset < base + len(so.data):
            if not isinstance(fn, ProgramSpec):
                raise err("struct_ops member points at something that is not a program",
                          section=section, symbol=sym_name, offset=r_offset)
            so.programs[r_offset - base] = fn.name
            return
    raise err("relocation in a struct_ops section outside any variable", section=section,
              symbol=sym_name, offset=r_offset)
