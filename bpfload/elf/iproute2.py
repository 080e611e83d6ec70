"""iproute2's ``struct bpf_elf_map`` (tc's map definitions in the ``maps`` section).

iproute2 (``include/bpf_elf.h``) defines maps as nine ``__u32`` -- 36 bytes,
the size of bpfload's own ``struct bpfm_map_custom``, with other fields::

    type, size_key, size_value, max_elem, flags, id, pinning, inner_id, inner_idx

* ``pinning``: ``PIN_NONE`` (0), ``PIN_OBJECT_NS`` (1: ``<pin_root>/tc/<sha1 of
  the object file>/<name>``), ``PIN_GLOBAL_NS`` (2: ``<pin_root>/tc/globals/<name>``);
  other values name paths in ``/etc/iproute2/bpf_pinning`` (refused here).
* map-in-map: an outer map's ``inner_id`` is the ``id`` of its template map; a
  map with an ``id``, no ``inner_id`` and an ``inner_idx`` other than -1 is put
  at slot ``inner_idx`` of every outer map whose ``inner_id`` is its ``id``.

bpfload reads this form only when asked (``BpfObject.open(path,
map_format="iproute2")``): the size alone cannot tell the two forms apart.
When the custom reading fails, :func:`looks_like` says whether the
definitions fit iproute2's form instead, so the error can say so.  No syscalls.
"""
from __future__ import annotations

import struct

from .._lazy import Module
from ..constants import MapType, PinType
from ..errors import ElfError
from ..spec import MapSpec

copy = Module("copy")   # imported on first use (deep copies of templates are rare)
TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional

__all__ = ["ELF_MAP", "PIN_NONE", "PIN_OBJECT_NS", "PIN_GLOBAL_NS", "map_spec", "link_maps",
           "looks_like", "GLOBALS_DIR"]

#: struct bpf_elf_map
ELF_MAP = struct.Struct("<9I")
PIN_NONE, PIN_OBJECT_NS, PIN_GLOBAL_NS = 0, 1, 2
#: where PIN_GLOBAL_NS maps are pinned, under the pin root (iproute2's default for tc)
GLOBALS_DIR = "tc/globals"
_NO_SLOT = 0xFFFFFFFF


def map_spec(name: str, raw: bytes, offset: int, *, section: str, data: bytes) -> MapSpec:
    """The :class:`MapSpec` of the ``struct bpf_elf_map`` at *offset* of *raw*.

    *data* is the object file (PIN_OBJECT_NS pins under its SHA-1, as tc does).
    Raises :class:`ElfError` for an unknown map type or a pinning value other
    than PIN_NONE / PIN_OBJECT_NS / PIN_GLOBAL_NS.
    """
    mtype, ksz, vsz, maxe, flags, map_id, pinning, inner_id, inner_idx = \
        ELF_MAP.unpack_from(raw, offset)
    try:
        t = MapType(mtype)
    except ValueError:
        t = MapType.UNSPEC
    if t == MapType.UNSPEC:
        raise ElfError(f"struct bpf_elf_map: unknown map type {mtype}", section=section, symbol=name)
    pin_dir = None
    if pinning == PIN_GLOBAL_NS:
        pin_dir = GLOBALS_DIR
    elif pinning == PIN_OBJECT_NS:
        import hashlib   # (here: 3-4 ms of import that only PIN_OBJECT_NS needs)
        pin_dir = "tc/" + hashlib.sha1(data).hexdigest()
    elif pinning != PIN_NONE:
        raise ElfError(f"struct bpf_elf_map: pinning {pinning} names a path of "
                       "/etc/iproute2/bpf_pinning, which bpfload does not read (use PIN_NONE, "
                       "PIN_OBJECT_NS or PIN_GLOBAL_NS)", section=section, symbol=name)
    return MapSpec(name=name, type=t, key_size=ksz, value_size=vsz, max_entries=maxe, flags=flags,
                   pinning=PinType.BY_NAME if pin_dir else PinType.NONE, pin_dir=pin_dir,
                   form="iproute2", section=section, map_id=map_id, relation_id=inner_id,
                   inner_index=-1 if inner_idx == _NO_SLOT else inner_idx)


def link_maps(maps: Iterable[MapSpec]) -> None:
    """Tie iproute2 map-in-map definitions together, in place (iproute2's rules, above).

    Raises :class:`ElfError` when an outer map's ``inner_id`` names no map.
    """
    mine = [m for m in maps if m.form == "iproute2"]
    by_id: Dict[int, MapSpec] = {}
    for m in mine:
        if m.map_id and not m.is_outer:
            by_id.setdefault(m.map_id, m)
    for outer in mine:
        if not outer.is_outer:
            continue
        template = by_id.get(outer.relation_id) if outer.relation_id else None
        if template is None:
            raise ElfError(f"map-in-map {outer.name!r}: inner_id {outer.relation_id} names no "
                           "map (struct bpf_elf_map: the id of its inner map)",
                           section=outer.section, symbol=outer.name)
        inner = copy.deepcopy(template)
        inner.slots = {}
        outer.inner = inner
        for m in mine:
            if (m.map_id == outer.relation_id and not m.is_outer and not m.relation_id
                    and m.inner_index >= 0):
                outer.slots[m.inner_index] = m.name


def looks_like(defs: List[bytes]) -> Optional[str]:
    """Why the 36-byte definitions *defs* read as ``struct bpf_elf_map``, or None.

    iproute2 leaves unused ids at 0 where bpfload's custom form puts -1, and its
    ``pinning`` (the custom form's ``map_id``) is 0, 1 or 2.  Called when the
    custom reading failed, to say which form the object most likely has.
    """
    if not defs:
        return None
    zeros = 0
    for raw in defs:
        mtype, _k, _v, _m, _f, _id, pinning, inner_id, inner_idx = ELF_MAP.unpack(raw)
        if pinning > PIN_GLOBAL_NS or not 0 < mtype <= max(MapType).value:
            return None
        # the custom form has -1 (0xffffffff) where iproute2 has no relation
        if _NO_SLOT in (_id, pinning, inner_id):
            return None
        zeros += inner_id == 0
    if not zeros:
        return None
    return ("the 36-byte definitions in 'maps' fit iproute2's struct bpf_elf_map (id, pinning "
            "0..2, inner_id/inner_idx 0 where bpfload's struct bpfm_map_custom has -1); open "
            "the object with map_format='iproute2'")
