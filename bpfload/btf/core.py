"""CO-RE: resolve BTF.ext CO-RE relocations against kernel BTF and patch instructions.

Compile Once - Run Everywhere.  clang records, for every instruction that
depends on a kernel type layout (``BPF_CORE_READ``, ``bpf_core_field_exists``,
``bpf_core_type_size``, ``bpf_core_enum_value`` ...), a ``bpf_core_relo``:
the local (object) BTF type, an access string (``"0:5:2"``: member/array
indexes from that type) and a relocation kind.  This module finds the same
type in the running kernel's BTF, computes what the value is *there* and
rewrites the instruction, following libbpf's documented semantics
(``tools/lib/bpf/relo_core.c``; the rules are restated where they are
implemented):

* **Candidates** are target types of a compatible kind whose *essential*
  name (the name without a trailing ``___flavor``) equals the local type's
  essential name.  vmlinux BTF is searched first; kernel module BTF (split
  BTF under ``/sys/kernel/btf/``) only when vmlinux has no candidate.  The
  lookup goes through an index built once per target BTF
  (:class:`TargetBtf`).
* **Matching** walks the access string through each candidate (named
  members by name, looking inside anonymous members; array indexes within
  bounds, flexible arrays allowed), checks field compatibility, and computes
  the target's value.  All matching candidates must agree, otherwise the
  relocation is *ambiguous* and -- as in libbpf -- the load fails with
  :class:`~bpfload.errors.BtfError`.
* **No match** is not an error: existence checks (``FIELD_EXISTS``,
  ``TYPE_EXISTS``, ``TYPE_MATCHES``, ``ENUMVAL_EXISTS``) and ``TYPE_SIZE`` /
  ``TYPE_ID_TARGET`` become 0; every other kind *poisons* the instruction
  (``call 0xbad2310``; both halves of an ``ld_imm64``).  Guarded code
  (``if (bpf_core_field_exists(...))``) is then dead and the verifier drops
  it; an unguarded poisoned instruction makes the verifier refuse the
  program at that instruction ("invalid func unknown#195896080"), which
  surfaces as :class:`~bpfload.errors.LoadError`.
* **Patching** per instruction class: ALU/ALU64 with an immediate operand
  (``rX = imm``, ``rX += imm``): ``imm``; LDX/ST/STX: the memory ``off``,
  and the access size when the field size changed (allowed only for
  pointers and unsigned integers; otherwise the instruction is poisoned);
  ``ld_imm64``: the 64-bit immediate.  Before writing, the instruction's
  current value must equal the value computed against the local BTF
  (libbpf's validation; skipped where the compiler's value is legitimately
  different: bitfields, type ids).

Resolution is pure Python (about 20 us a relocation), cached per load so a
subprogram shared by several programs is resolved once.  The multi-megabyte
work -- parsing vmlinux BTF and indexing it by essential name -- happens once
per process (:func:`kernel_targets`); the index is built in C
(:mod:`bpfload._core.corepatch`), with a pure-Python twin.

Errors: a malformed record (bad access string, index out of range, wrong
instruction for its kind, unexpected instruction value) or an ambiguous
relocation raises :class:`~bpfload.errors.BtfError` whose message names the
object, program, relocation index (per ELF section, libbpf's numbering) and
access string.
"""
from __future__ import annotations

import struct
import sys
from _thread import allocate_lock
from _weakref import ref as _weakref_ref
from bisect import bisect_left

from .._records import FrozenRecord, Record
from ..errors import BtfError
from .format import Array, Btf, CoreRelo, CoreReloKind, Enum, Int, IntEncoding, Kind, Ptr, Type
from .targets import (_ENUM_KINDS, TargetBtf, Targets, _decoded, _kinds_compat, essential_name,
                      kernel_targets)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: a CO-RE load in a fresh process never imports typing
    from typing import Dict, List, Optional, Tuple

__all__ = [
    "POISON_IMM",
    "essential_name",
    "CoreResult",
    "CoreFixup",
    "TargetBtf",
    "Targets",
    "CoreResolver",
    "patch_insn",
    "apply_core_relos",
    "kernel_targets",
]


def _debug(msg: str, *args: object) -> None:
    """``logging.getLogger("bpfload.btf.core").debug(msg, *args)``, without importing logging.

    When nothing in the process has imported :mod:`logging`, nothing has configured a
    handler or a level either, and a DEBUG record would be dropped: so is this one.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("bpfload.btf.core").debug(msg, *args)


#: imm of the ``call`` a poisoned instruction becomes (0xbad2310, "bad relo"):
#: the verifier reports ``invalid func unknown#195896080`` if it is reachable.
POISON_IMM = 0xBAD2310

_MASK64 = (1 << 64) - 1
_SPEC_MAX_LEN = 64        # BPF_CORE_SPEC_MAX_LEN
_MAX_LEVEL = 32           # libbpf's recursion budget for type compatibility
_MAX_DEPTH = 32           # ... and for reference chains inside one level

_FIELD_KINDS = frozenset({CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_BYTE_SIZE,
                          CoreReloKind.FIELD_EXISTS, CoreReloKind.FIELD_SIGNED,
                          CoreReloKind.FIELD_LSHIFT_U64, CoreReloKind.FIELD_RSHIFT_U64})
_TYPE_KINDS = frozenset({CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET,
                         CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_SIZE,
                         CoreReloKind.TYPE_MATCHES})
_ENUMVAL_KINDS = frozenset({CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE})

_KIND_STR = {
    CoreReloKind.FIELD_BYTE_OFFSET: "byte_off",
    CoreReloKind.FIELD_BYTE_SIZE: "byte_sz",
    CoreReloKind.FIELD_EXISTS: "field_exists",
    CoreReloKind.FIELD_SIGNED: "signed",
    CoreReloKind.FIELD_LSHIFT_U64: "lshift_u64",
    CoreReloKind.FIELD_RSHIFT_U64: "rshift_u64",
    CoreReloKind.TYPE_ID_LOCAL: "local_type_id",
    CoreReloKind.TYPE_ID_TARGET: "target_type_id",
    CoreReloKind.TYPE_EXISTS: "type_exists",
    CoreReloKind.TYPE_MATCHES: "type_matches",
    CoreReloKind.TYPE_SIZE: "type_size",
    CoreReloKind.ENUMVAL_EXISTS: "enumval_exists",
    CoreReloKind.ENUMVAL_VALUE: "enumval_value",
}

_COMPOSITE_KINDS = (Kind.STRUCT, Kind.UNION)
_KIND_LOWER = {k: k.name.lower() for k in Kind}

# enum members as module globals: in CPython 3.11 every ``Kind.X`` in a function body is a
# descriptor call (enum.property.__get__), ~2,000 of them per CO-RE load of a tracing object
_E_SIGNED = IntEncoding.SIGNED
_K_ARRAY = Kind.ARRAY
_K_ENUM = Kind.ENUM
_K_ENUM64 = Kind.ENUM64
_K_FLOAT = Kind.FLOAT
_K_FUNC_PROTO = Kind.FUNC_PROTO
_K_FWD = Kind.FWD
_K_INT = Kind.INT
_K_PTR = Kind.PTR
_K_STRUCT = Kind.STRUCT
_K_UNION = Kind.UNION
_K_UNKN = Kind.UNKN
_R_ENUMVAL_EXISTS = CoreReloKind.ENUMVAL_EXISTS
_R_FIELD_BYTE_OFFSET = CoreReloKind.FIELD_BYTE_OFFSET
_R_FIELD_BYTE_SIZE = CoreReloKind.FIELD_BYTE_SIZE
_R_FIELD_EXISTS = CoreReloKind.FIELD_EXISTS
_R_FIELD_LSHIFT_U64 = CoreReloKind.FIELD_LSHIFT_U64
_R_FIELD_RSHIFT_U64 = CoreReloKind.FIELD_RSHIFT_U64
_R_FIELD_SIGNED = CoreReloKind.FIELD_SIGNED
_R_TYPE_EXISTS = CoreReloKind.TYPE_EXISTS
_R_TYPE_ID_LOCAL = CoreReloKind.TYPE_ID_LOCAL
_R_TYPE_ID_TARGET = CoreReloKind.TYPE_ID_TARGET
_R_TYPE_MATCHES = CoreReloKind.TYPE_MATCHES
_R_TYPE_SIZE = CoreReloKind.TYPE_SIZE

# instruction encoding
_INSN = struct.Struct("<BBhi")
_I32 = struct.Struct("<i")
_CLS_LD, _CLS_LDX, _CLS_ST, _CLS_STX, _CLS_ALU, _CLS_ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
_LD_IMM64 = 0x18
_CALL = 0x85
_SRC_X = 0x08
_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}   # BPF_SIZE(code) -> bytes
_BYTES_SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}


class _CoreError(BtfError):
    """A relocation that cannot be applied (libbpf: a negative errno).

    :func:`apply_core_relos` re-raises it as a plain :class:`BtfError` with
    the object, program, relocation index and access string in front.
    """


class _Poison(Exception):
    """Internal: the relocation must poison its instruction (libbpf's -EUCLEAN)."""


# --------------------------------------------------------------------------
# specs: an access string walked through one BTF

class _Acc:
    """One high-level accessor: a named member (``name``) or an array index (``name`` None)."""

    __slots__ = ("type_id", "idx", "name")

    def __init__(self, type_id: int, idx: int, name: Optional[str]):
        self.type_id = type_id
        self.idx = idx
        self.name = name


class _Spec:
    """An access string resolved in one BTF: accessors, raw indexes, bit offset."""

    __slots__ = ("btf", "root_type_id", "kind", "accs", "raw", "bit_offset")

    def __init__(self, btf: Btf, root_type_id: int, kind: int):
        self.btf = btf
        self.root_type_id = root_type_id
        self.kind = kind
        self.accs: List[_Acc] = []
        self.raw: List[int] = []
        self.bit_offset = 0

    def describe(self) -> str:
        """libbpf's bpf_core_format_spec: ``<byte_off> [12] struct task_struct.pid (0:5 @ offset 1264)``."""
        btf = self.btf
        t = btf.get(self.root_type_id)
        tname = (t.name or "<anon>") if t is not None else "?"
        tkind = _KIND_LOWER[t.KIND] if t is not None else "?"
        out = f"<{_KIND_STR.get(self.kind, self.kind)}> [{self.root_type_id}] {tkind} {tname}"
        if self.kind in _TYPE_KINDS:
            return out
        if self.kind in _ENUMVAL_KINDS:
            if self.accs:
                e = btf.get(self.accs[0].type_id)
                a = self.accs[0]
                val = e.values[a.idx].value if isinstance(e, Enum) and a.idx < len(e.values) else "?"
                out += f"::{a.name} = {val}"
            return out
        for i, a in enumerate(self.accs):
            if a.name:
                out += f".{a.name}"
            elif i > 0 or a.idx > 0:
                out += f"[{a.idx}]"
        raw = ":".join(map(str, self.raw))
        if self.bit_offset % 8:
            return out + f" ({raw} @ offset {self.bit_offset // 8}.{self.bit_offset % 8})"
        return out + f" ({raw} @ offset {self.bit_offset // 8})"


_MODS_AND_TYPEDEF = frozenset({Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG,
                               Kind.TYPEDEF})


def _resolve(btf: Btf, type_id: int) -> Type:
    """``btf.resolve(type_id)``; a type that is neither a modifier nor a typedef (most of what
    matching asks about) is returned without the extra calls."""
    t = _decoded(btf, type_id)   # (a struct's members made in compiled code)
    if t.KIND not in _MODS_AND_TYPEDEF:
        return t
    return btf.resolve(type_id)


_SIZED_KINDS = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT,
                          Kind.DATASEC})
_SIZE_THROUGH = frozenset({Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG, Kind.TYPEDEF,
                           Kind.VAR})
_MAX_SIZE = 0xFFFFFFFF


def _size(btf: Btf, type_id: int) -> int:
    """``btf.size_of(type_id)`` (the common cases without its enum attribute look-ups); any
    case it does not settle, an error included, is left to ``size_of``.  Raises _CoreError."""
    nelems = 1
    tid = type_id
    for _ in range(8):
        t = btf[tid] if tid else None
        k = t.KIND if t is not None else None
        if k in _SIZED_KINDS:
            total = nelems * t.size  # type: ignore[union-attr]
            if total <= _MAX_SIZE:
                return total
            break
        if k == _K_PTR:
            return nelems * 8
        if k in _SIZE_THROUGH:
            tid = t.type  # type: ignore[union-attr]
        elif k == _K_ARRAY:
            nelems *= t.nelems  # type: ignore[union-attr]
            if nelems > _MAX_SIZE:
                break
            tid = t.type  # type: ignore[union-attr]
        else:
            break
    try:
        return btf.size_of(type_id)
    except BtfError as e:
        raise _CoreError(f"cannot size type [{type_id}]: {e}") from None


def _is_flex_arr(btf: Btf, prev: Optional[_Acc], arr: Array) -> bool:
    """A zero-length array that is the last member of the struct holding it."""
    if prev is None or not prev.name or arr.nelems > 0:
        return False
    t = btf[prev.type_id]
    return prev.idx == len(t.members) - 1  # type: ignore[attr-defined]


def _parse_spec(btf: Btf, relo: CoreRelo, kind: int) -> _Spec:
    """The local spec of *relo*: libbpf's bpf_core_parse_spec.  Raises _CoreError."""
    s = relo.access_str
    if not s or s[0] == ":":
        raise _CoreError(f"empty or malformed access string {s!r}")
    spec = _Spec(btf, relo.type_id, kind)
    if kind in _TYPE_KINDS:
        if s != "0":
            raise _CoreError(f"type-based relocation needs access string '0', not {s!r}")
        return spec
    try:
        raw = [int(x) for x in s.split(":")]
    except ValueError:
        raise _CoreError(f"malformed access string {s!r}") from None
    if len(raw) > _SPEC_MAX_LEN:
        raise _CoreError(f"access string {s!r} is deeper than {_SPEC_MAX_LEN} levels")
    if any(x < 0 for x in raw):
        raise _CoreError(f"negative index in access string {s!r}")
    spec.raw = raw
    t = _resolve(btf, relo.type_id)
    tid = t.id
    first = _Acc(tid, raw[0], None)
    spec.accs.append(first)

    if kind in _ENUMVAL_KINDS:
        if t.kind not in _ENUM_KINDS or len(raw) > 1 or raw[0] >= len(t.values):  # type: ignore[attr-defined]
            raise _CoreError(f"access string {s!r} does not name an enumerator of "
                             f"{t.kind.name} [{tid}]")
        first.name = t.values[raw[0]].name  # type: ignore[attr-defined]
        return spec

    if kind not in _FIELD_KINDS:
        raise _CoreError(f"unrecognized CO-RE relocation kind {int(kind)}")
    spec.bit_offset = raw[0] * _size(btf, tid) * 8
    for i in range(1, len(raw)):
        t = _resolve(btf, tid)
        idx = raw[i]
        if t.kind in _COMPOSITE_KINDS:
            members = t.members  # type: ignore[attr-defined]
            if idx >= len(members):
                raise _CoreError(f"access string {s!r}: member index {idx} out of range for "
                                 f"{t.kind.name.lower()} {t.name or '<anon>'} [{t.id}] "
                                 f"({len(members)} members)")
            m = members[idx]
            spec.bit_offset += m.offset
            if m.name:
                spec.accs.append(_Acc(t.id, idx, m.name))
            tid = m.type
        elif isinstance(t, Array):
            elem = _resolve(btf, t.type)
            if not _is_flex_arr(btf, spec.accs[-1], t) and idx >= t.nelems:
                raise _CoreError(f"access string {s!r}: array index {idx} out of range "
                                 f"(array [{t.id}] has {t.nelems} elements)")
            tid = elem.id
            spec.accs.append(_Acc(tid, idx, None))
            spec.bit_offset += idx * _size(btf, tid) * 8
        else:
            raise _CoreError(f"access string {s!r} (at index {i}) goes through type [{t.id}] "
                             f"of unexpected kind {t.kind.name}")
    return spec


# --------------------------------------------------------------------------
# compatibility rules

def _types_are_compat(lb: Btf, lid: int, tb: Btf, tid: int, level: int = _MAX_LEVEL) -> bool:
    """Type-based relocations (TYPE_EXISTS/SIZE/ID_TARGET): are the two types compatible?

    Modifiers and typedefs are skipped; struct/union/enum/fwd are compatible
    by kind (names were matched by the candidate search); ints unless one is
    a legacy bitfield int; pointers and arrays recurse; function prototypes
    need the same arity and compatible parameters and return type.
    """
    if not _kinds_compat(lb[lid].kind, tb[tid].kind):
        return False
    for _ in range(_MAX_DEPTH):
        lt = _resolve(lb, lid)
        tt = _resolve(tb, tid)
        if not _kinds_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (_K_UNKN, _K_STRUCT, _K_UNION, _K_ENUM, _K_ENUM64, _K_FWD):
            return True
        if k == _K_INT:
            return lt.offset == 0 and tt.offset == 0  # type: ignore[attr-defined]
        if k == _K_PTR:
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if k == _K_ARRAY:
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if k == _K_FUNC_PROTO:
            lp, tp = lt.params, tt.params  # type: ignore[attr-defined]
            if len(lp) != len(tp):
                return False
            for a, b in zip(lp, tp):
                if level <= 0:
                    raise _CoreError("function prototypes nested too deeply")
                if not _types_are_compat(lb, _resolve(lb, a.type).id, tb, _resolve(tb, b.type).id,
                                         level - 1):
                    return False
            lid, tid = lt.return_type, tt.return_type  # type: ignore[attr-defined]
            continue
        return False
    raise _CoreError("type reference chain too long")


def _fields_are_compat(lb: Btf, lid: int, tb: Btf, tid: int) -> bool:
    """Field relocations: may the local member's type be read as the target member's?

    Any two structs/unions; pointers; floats; enums/fwds with matching
    essential names (or one anonymous); ints except legacy bitfield ints;
    arrays whose element types are compatible.
    """
    for _ in range(_MAX_DEPTH):
        lt = _resolve(lb, lid)
        tt = _resolve(tb, tid)
        if lt.kind in _COMPOSITE_KINDS and tt.kind in _COMPOSITE_KINDS:
            return True
        if not _kinds_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (_K_PTR, _K_FLOAT):
            return True
        if k in (_K_FWD, _K_ENUM, _K_ENUM64):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if k == _K_INT:
            return lt.offset == 0 and tt.offset == 0  # type: ignore[attr-defined]
        if k == _K_ARRAY:
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        return False
    raise _CoreError("type reference chain too long")


def _names_match(local: str, targ: str) -> bool:
    if not targ:
        return not local
    if local == targ:
        return True
    # a name without "___" is its own essential name
    return ("___" in local or "___" in targ) and essential_name(local) == essential_name(targ)


def _types_match(lb: Btf, lid: int, tb: Btf, tid: int, behind_ptr: bool = False,
                 level: int = _MAX_LEVEL) -> bool:
    """TYPE_MATCHES (``bpf_core_type_matches``): the stricter structural match.

    Modifiers/typedefs skipped; names must match (essential names); same
    kind, except that behind a pointer a struct/union matches a fwd of the
    same flavor; ints need equal size and signedness; enums equal size and
    every local enumerator name present in the target; structs/unions every
    local member present in the target with a matching type (behind a
    pointer: name and kind only); arrays equal length; pointers, arrays and
    prototypes recurse.
    """
    if level <= 0:
        raise _CoreError("types nested too deeply for type_matches")
    for _ in range(_MAX_DEPTH):
        lt = _resolve(lb, lid)
        tt = _resolve(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == _K_UNKN:
            return lk == tk
        if lk == _K_FWD:
            lf = lt.kind_flag
            if behind_ptr and lk != tk:
                return (tk == _K_STRUCT and not lf) or (tk == _K_UNION and lf)
            return lk == tk and lf == tt.kind_flag
        if lk in _ENUM_KINDS:
            if tk not in _ENUM_KINDS or lt.size != tt.size:  # type: ignore[attr-defined]
                return False
            lv, tv = lt.values, tt.values  # type: ignore[attr-defined]
            if len(lv) > len(tv):
                return False
            return all(any(_names_match(a.name, b.name) for b in tv) for a in lv)
        if lk in _COMPOSITE_KINDS:
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == _K_FWD and (lk == _K_UNION) == tt.kind_flag
            if lk != tk:
                return False
            lm, tm = lt.members, tt.members  # type: ignore[attr-defined]
            if len(lm) > len(tm):
                return False
            for a in lm:
                if not any(_names_match(a.name, b.name)
                           and _types_match(lb, a.type, tb, b.type, behind_ptr, level - 1)
                           for b in tm):
                    return False
            return True
        if lk == _K_INT:
            return (tk == _K_INT and lt.size == tt.size  # type: ignore[attr-defined]
                    and lt.signed == tt.signed)  # type: ignore[attr-defined]
        if lk == _K_PTR:
            if tk != lk:
                return False
            behind_ptr = True
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if lk == _K_ARRAY:
            if tk != lk or lt.nelems != tt.nelems:  # type: ignore[attr-defined]
                return False
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if lk == _K_FUNC_PROTO:
            if tk != lk:
                return False
            lp, tp = lt.params, tt.params  # type: ignore[attr-defined]
            if len(lp) != len(tp):
                return False
            for a, b in zip(lp, tp):
                if not _types_match(lb, a.type, tb, b.type, behind_ptr, level - 1):
                    return False
            lid, tid = lt.return_type, tt.return_type  # type: ignore[attr-defined]
            continue
        return False
    raise _CoreError("type reference chain too long")


# --------------------------------------------------------------------------
# matching a local spec against one candidate

# (the module weakref, with WeakKeyDictionary and finalize, costs a cold start ~0.7 ms to
# import; weak references with a callback do the same here)

def _weak_entry(table: dict, key: int, obj: object) -> "_weakref_ref":
    """A weak reference to *obj* that removes ``table[key]`` when *obj* dies, if the entry
    still belongs to it (an id can be reused once its object is gone)."""
    def drop(r, table=table, key=key):
        ent = table.get(key)
        if ent is not None and ent[0] is r:
            del table[key]
    return _weakref_ref(obj, drop)


# id(target Btf) -> (weak reference to it, {type id: member map})
_member_maps: "Dict[int, Tuple[_weakref_ref, Dict[int, Tuple[Dict[str, int], List[int]]]]]" = {}
_member_maps_lock = allocate_lock()


def _members_map(btf: Btf, t: Type) -> Tuple[Dict[str, int], List[int]]:
    """(name -> first member index, indexes of anonymous members) of composite *t*.

    Cached per target Btf and type: task_struct has hundreds of members and
    is matched by nearly every relocation of a tracing object.
    """
    key = id(btf)
    ent = _member_maps.get(key)
    if ent is None or ent[0]() is not btf:
        with _member_maps_lock:
            ent = _member_maps.get(key)
            if ent is None or ent[0]() is not btf:
                ent = _member_maps[key] = (_weak_entry(_member_maps, key, btf), {})
    per = ent[1]
    mm = per.get(t.id)
    if mm is None:
        names: Dict[str, int] = {}
        anon: List[int] = []
        for i, m in enumerate(t.members):  # type: ignore[attr-defined]
            if m.name:
                names.setdefault(m.name, i)
            else:
                anon.append(i)
        mm = per[t.id] = (names, anon)
    return mm


def _match_member(lb: Btf, lacc: _Acc, tb: Btf, tid: int, spec: _Spec) -> Optional[int]:
    """Find *lacc*'s member in target composite *tid* (recursing into anonymous members).

    Members are considered in order, as libbpf does: an anonymous member
    before the named one is searched first.  On success the target accessor
    is appended to *spec* and the member's type id is returned; None when
    there is no compatible member.
    """
    tt = _resolve(tb, tid)
    if tt.kind not in _COMPOSITE_KINDS:
        return None
    lm = lb[lacc.type_id].members[lacc.idx]  # type: ignore[attr-defined]
    names, anon = _members_map(tb, tt)
    pos = names.get(lm.name)
    members = tt.members  # type: ignore[attr-defined]
    for i in anon:
        if pos is not None and i > pos:
            break
        if len(spec.raw) >= _SPEC_MAX_LEN:
            raise _CoreError(f"target access deeper than {_SPEC_MAX_LEN} levels")
        m = members[i]
        spec.bit_offset += m.offset
        spec.raw.append(i)
        found = _match_member(lb, lacc, tb, m.type, spec)
        if found is not None:
            return found
        spec.bit_offset -= m.offset
        spec.raw.pop()
    if pos is None:
        return None
    if len(spec.raw) >= _SPEC_MAX_LEN:
        raise _CoreError(f"target access deeper than {_SPEC_MAX_LEN} levels")
    m = members[pos]
    if not _fields_are_compat(lb, lm.type, tb, m.type):
        return None
    spec.bit_offset += m.offset
    spec.raw.append(pos)
    spec.accs.append(_Acc(tt.id, pos, m.name))
    return m.type


def _match_spec(local: _Spec, tb: Btf, targ_id: int) -> Optional[_Spec]:
    """The target spec of *local* in candidate *targ_id*, or None when it does not match."""
    kind = local.kind
    spec = _Spec(tb, targ_id, kind)
    if kind in _TYPE_KINDS:
        if kind == _R_TYPE_MATCHES:
            ok = _types_match(local.btf, local.root_type_id, tb, targ_id)
        else:
            ok = _types_are_compat(local.btf, local.root_type_id, tb, targ_id)
        return spec if ok else None

    lacc = local.accs[0]
    if kind in _ENUMVAL_KINDS:
        tt = _resolve(tb, targ_id)
        if tt.kind not in _ENUM_KINDS:
            return None
        want = essential_name(lacc.name or "")
        for i, v in enumerate(tt.values):  # type: ignore[attr-defined]
            if essential_name(v.name) == want:
                spec.accs.append(_Acc(tt.id, i, v.name))
                spec.raw.append(i)
                return spec
        return None

    tid = targ_id
    for i, lacc in enumerate(local.accs):
        tt = _resolve(tb, tid)
        tid = tt.id
        if lacc.name:
            nxt = _match_member(local.btf, lacc, tb, tid, spec)
            if nxt is None:
                return None
            tid = nxt
            continue
        if i > 0:
            if not isinstance(tt, Array):
                return None
            if not _is_flex_arr(tb, spec.accs[-1] if spec.accs else None, tt) \
                    and lacc.idx >= tt.nelems:
                return None
            tid = _resolve(tb, tt.type).id
        if len(spec.raw) >= _SPEC_MAX_LEN:
            raise _CoreError(f"target access deeper than {_SPEC_MAX_LEN} levels")
        spec.accs.append(_Acc(tid, lacc.idx, None))
        spec.raw.append(lacc.idx)
        spec.bit_offset += lacc.idx * _size(tb, tid) * 8
    return spec


# --------------------------------------------------------------------------
# values

class CoreResult(Record):
    """What one relocation does to its instruction (libbpf's bpf_core_relo_res).

    ``orig_val``: the value the compiler put in the instruction (computed
    from the local BTF); ``new_val``: the kernel's; both unsigned 64-bit.
    ``validate``: check the instruction holds ``orig_val`` before patching.
    ``orig_sz``/``new_sz``: field sizes for a load/store (0: not a memory
    access relocation); ``fail_memsz_adjust``: the sizes differ in a way a
    load/store must not paper over (poison if the instruction is one).
    ``local``/``target``: the specs, as libbpf prints them.
    """

    __slots__ = _fields = ("poison", "orig_val", "new_val", "validate", "orig_sz", "new_sz",
                           "orig_type_id", "new_type_id", "fail_memsz_adjust", "local", "target")

    def __init__(self, poison: bool = False, orig_val: int = 0, new_val: int = 0,
                 validate: bool = True, orig_sz: int = 0, new_sz: int = 0, orig_type_id: int = 0,
                 new_type_id: int = 0, fail_memsz_adjust: bool = False, local: str = "",
                 target: str = "") -> None:
        self.poison = poison
        self.orig_val = orig_val
        self.new_val = new_val
        self.validate = validate
        self.orig_sz = orig_sz
        self.new_sz = new_sz
        self.orig_type_id = orig_type_id
        self.new_type_id = new_type_id
        self.fail_memsz_adjust = fail_memsz_adjust
        self.local = local
        self.target = target


def _field_value(kind: int, spec: Optional[_Spec]) -> Tuple[int, int, int, bool]:
    """(value, field size, field type id, validate) of a field relocation on *spec*."""
    if kind == _R_FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, 0, True
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.accs[-1]
    if not acc.name:  # the last step is an array index: a[n]
        sz = _size(btf, acc.type_id)
        if kind == _R_FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, sz, acc.type_id, True
        if kind == _R_FIELD_BYTE_SIZE:
            return sz, 0, 0, True
        raise _CoreError(f"<{_KIND_STR[kind]}> cannot be applied to an array element access")
    t = btf[acc.type_id]
    m = t.members[acc.idx]  # type: ignore[attr-defined]
    mt = _resolve(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if not isinstance(mt, (Int, Enum)) or byte_sz <= 0:
            raise _CoreError(f"bitfield {m.name!r} has a {mt.kind.name} type")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        # the smallest load that covers the whole bitfield
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _CoreError(f"bitfield {m.name!r} cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(btf, mt.id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield  # the compiler may lay out bitfield loads differently
    if kind == _R_FIELD_BYTE_OFFSET:
        if bitfield:
            return byte_off, 0, 0, validate
        return byte_off, byte_sz, mt.id, validate
    if kind == _R_FIELD_BYTE_SIZE:
        return byte_sz, 0, 0, validate
    if kind == _R_FIELD_SIGNED:
        signed = ((mt.kind in _ENUM_KINDS and mt.kind_flag)
                  or (isinstance(mt, Int) and bool(mt.encoding & _E_SIGNED)))
        return int(signed), 0, 0, True
    if kind == _R_FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8), 0, 0, validate
    if kind == _R_FIELD_RSHIFT_U64:
        return 64 - bit_sz, 0, 0, True
    raise _CoreError(f"unrecognized CO-RE relocation kind {int(kind)}")


def _type_value(kind: int, spec: Optional[_Spec]) -> Tuple[int, bool]:
    if spec is None:
        return 0, True
    if kind == _R_TYPE_ID_TARGET:
        return spec.root_type_id, False  # ids change when objects are linked: don't check
    if kind in (_R_TYPE_EXISTS, _R_TYPE_MATCHES):
        return 1, True
    if kind == _R_TYPE_SIZE:
        return _size(spec.btf, spec.root_type_id), True
    raise _CoreError(f"unrecognized CO-RE relocation kind {int(kind)}")


def _enum_value(kind: int, spec: Optional[_Spec]) -> int:
    if kind == _R_ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison()
    acc = spec.accs[0]
    t = spec.btf[acc.type_id]
    return t.values[acc.idx].value & _MASK64  # type: ignore[attr-defined]


def _calc(kind: int, local: _Spec, targ: Optional[_Spec]) -> CoreResult:
    """libbpf's bpf_core_calc_relo for one candidate (or none: *targ* None)."""
    res = CoreResult()
    try:
        if kind in _FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _field_value(kind, local)
            res.new_val, res.new_sz, res.new_type_id, _ = _field_value(kind, targ)
            if res.orig_sz != res.new_sz:
                # Only two size changes are safe for a load/store: a pointer
                # (a 32-bit kernel's pointer read zero-extended) and an unsigned
                # integer (zero extension keeps the value).
                assert targ is not None
                ot = local.btf[res.orig_type_id]
                nt = targ.btf[res.new_type_id]
                ok = (isinstance(ot, Ptr) and isinstance(nt, Ptr)) or (
                    isinstance(ot, Int) and isinstance(nt, Int)
                    and ot.encoding != _E_SIGNED and nt.encoding != _E_SIGNED)
                res.fail_memsz_adjust = not ok
        elif kind in _TYPE_KINDS:
            res.orig_val, res.validate = _type_value(kind, local)
            res.new_val, _ = _type_value(kind, targ)
        elif kind in _ENUMVAL_KINDS:
            res.orig_val = _enum_value(kind, local)
            res.new_val = _enum_value(kind, targ)
        else:
            raise _CoreError(f"unrecognized CO-RE relocation kind {int(kind)}")
    except _Poison:
        res.poison = True
    res.orig_val &= _MASK64
    res.new_val &= _MASK64
    return res


# --------------------------------------------------------------------------
# the resolver

def _kind_of(relo: CoreRelo) -> int:
    k = relo.kind
    if k not in _KIND_STR:
        raise _CoreError(f"unrecognized CO-RE relocation kind {int(k)}")
    return CoreReloKind(k)


class CoreResolver:
    """Resolves CO-RE relocations of one local (object) BTF against :class:`Targets`.

    Candidates are looked up once per local type and, as in libbpf, pruned
    to the ones that matched each time a relocation of that type matches at
    least one, so later relocations see the narrowed list.
    """

    def __init__(self, local_btf: Btf, targets: Targets):
        self.local_btf = local_btf
        self.targets = targets
        self._cands: Dict[int, List[Tuple[Btf, Type]]] = {}

    def _candidates(self, local_id: int) -> List[Tuple[Btf, Type]]:
        c = self._cands.get(local_id)
        if c is None:
            lt = self.local_btf[local_id]
            if not lt.name:
                raise _CoreError(f"relocation against anonymous {lt.kind.name.lower()} "
                                 f"[{local_id}] is not supported")
            c = self.targets.candidates(essential_name(lt.name), lt.kind)
            self._cands[local_id] = c
        return c

    def resolve(self, relo: CoreRelo) -> CoreResult:
        """Compute what *relo* does (no patching).

        Returns a poisoning result for a relocation that matches no target.
        Raises :class:`BtfError` for a malformed record, an ambiguous match,
        a value that cannot be computed, or malformed local or target BTF.
        """
        kind = _kind_of(relo)
        lb = self.local_btf
        try:
            _decoded(lb, relo.type_id)   # lb.get(), with a struct's members made in compiled code
        except BtfError:
            raise _CoreError(f"local type id {relo.type_id} is not in the object's BTF") from None
        local = _parse_spec(lb, relo, kind)
        if kind == _R_TYPE_ID_LOCAL:
            d = local.describe()
            return CoreResult(orig_val=relo.type_id, new_val=relo.type_id, validate=False,
                              local=d, target=d)
        cands = self._candidates(relo.type_id)
        best: Optional[CoreResult] = None
        best_spec: Optional[_Spec] = None
        kept: List[Tuple[Btf, Type]] = []
        for tb, tt in cands:
            spec = _match_spec(local, tb, tt.id)
            if spec is None:
                continue
            res = _calc(kind, local, spec)
            if best is None or best_spec is None:
                best, best_spec = res, spec
            elif spec.bit_offset != best_spec.bit_offset:
                raise _CoreError(f"ambiguous: field offset {best_spec.bit_offset} bits "
                                 f"({best_spec.describe()}) != {spec.bit_offset} bits "
                                 f"({spec.describe()})")
            elif res.poison != best.poison or res.new_val != best.new_val:
                raise _CoreError(
                    f"ambiguous: {'failure' if best.poison else best.new_val} "
                    f"({best_spec.describe()}) != {'failure' if res.poison else res.new_val} "
                    f"({spec.describe()})")
            kept.append((tb, tt))
        if best is None:
            best = _calc(kind, local, None)
        else:
            self._cands[relo.type_id] = kept
        best.local = local.describe()
        best.target = best_spec.describe() if best_spec is not None else ""
        return best


# --------------------------------------------------------------------------
# patching

def _poison_slot(insns: bytearray, idx: int) -> None:
    _INSN.pack_into(insns, idx * 8, _CALL, 0, 0, POISON_IMM)


def patch_insn(insns: bytearray, idx: int, res: CoreResult) -> bool:
    """Apply *res* to the instruction at slot *idx* of *insns*, in place.

    Returns True when the instruction was poisoned.  Raises
    :class:`BtfError` when the instruction is out of range, of a class CO-RE
    cannot patch, does not hold the expected original value, or the new
    value does not fit; *insns* is then unchanged.
    """
    n = len(insns) // 8
    if not 0 <= idx < n:
        raise _CoreError(f"instruction {idx} out of range (program has {n} instructions)")
    code, regs, off, imm = _INSN.unpack_from(insns, idx * 8)
    is_ld64 = code == _LD_IMM64
    if is_ld64 and idx + 1 >= n:
        raise _CoreError(f"ld_imm64 at instruction {idx} is missing its second half")
    if res.poison:
        if is_ld64:  # else the verifier says "unknown opcode 00" about the second half
            _poison_slot(insns, idx + 1)
        _poison_slot(insns, idx)
        return True
    orig, new = res.orig_val, res.new_val
    cls = code & 0x07
    if cls in (_CLS_ALU, _CLS_ALU64):
        if code & _SRC_X:
            raise _CoreError(f"instruction {idx} (ALU) uses a register operand, not an immediate")
        if res.validate and (imm & _MASK64) != orig:
            raise _CoreError(f"unexpected instruction {idx} (ALU/ALU64) value: got {imm}, "
                             f"expected {orig} -> {new}")
        new32 = new & 0xFFFFFFFF
        _I32.pack_into(insns, idx * 8 + 4, new32 - (1 << 32) if new32 >= 1 << 31 else new32)
        return False
    if cls in (_CLS_LDX, _CLS_ST, _CLS_STX):
        if res.validate and (off & _MASK64) != orig:
            raise _CoreError(f"unexpected instruction {idx} (LDX/ST/STX) offset: got {off}, "
                             f"expected {orig} -> {new}")
        if new > 0x7FFF:
            raise _CoreError(f"instruction {idx} (LDX/ST/STX): offset {new} does not fit in 16 bits")
        if res.fail_memsz_adjust:
            _debug("instruction %d (LDX/ST/STX) accesses a field whose size changed "
                      "(%d -> %d bytes) and is neither a pointer nor an unsigned integer: "
                      "poisoned", idx, res.orig_sz, res.new_sz)
            _poison_slot(insns, idx)
            return True
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES[code & 0x18]
            if have != res.orig_sz:
                raise _CoreError(f"instruction {idx} (LDX/ST/STX) accesses {have} bytes, "
                                 f"expected {res.orig_sz}")
            size = _BYTES_SIZE.get(res.new_sz)
            if size is None:
                raise _CoreError(f"instruction {idx} (LDX/ST/STX): invalid new access size "
                                 f"{res.new_sz}")
            code = (code & 0xE7) | size  # keep mode and class
        _INSN.pack_into(insns, idx * 8, code, regs, new, imm)
        return False
    if cls == _CLS_LD:
        code2, regs2, off2, imm2 = _INSN.unpack_from(insns, idx * 8 + 8) if idx + 1 < n \
            else (0xFF, 0, 0, 0)
        if not is_ld64 or (regs >> 4) != 0 or off != 0 or code2 != 0 or regs2 != 0 or off2 != 0:
            raise _CoreError(f"instruction {idx} (LDIMM64) has an unexpected form")
        cur = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
        if res.validate and cur != orig:
            raise _CoreError(f"unexpected instruction {idx} (LDIMM64) value: got {cur}, "
                             f"expected {orig} -> {new}")
        lo, hi = new & 0xFFFFFFFF, new >> 32
        _I32.pack_into(insns, idx * 8 + 4, lo - (1 << 32) if lo >= 1 << 31 else lo)
        _I32.pack_into(insns, idx * 8 + 12, hi - (1 << 32) if hi >= 1 << 31 else hi)
        return False
    raise _CoreError(f"instruction {idx} (code {code:#04x}) cannot carry a CO-RE relocation")


# --------------------------------------------------------------------------
# the loader entry point

class CoreFixup(FrozenRecord):
    """One applied relocation, as :func:`apply_core_relos` reports it.

    ``index`` is the relocation's index in its section's BTF.ext records
    (libbpf's ``relo #N``); ``insn`` the instruction it patched in the
    linked program; ``function`` the function it belongs to.
    """

    __slots__ = _fields = ("program", "function", "section", "index", "insn", "kind", "type_id",
                           "access_str", "orig_val", "new_val", "poison", "local", "target")

    program: str
    function: str
    section: str
    index: int
    insn: int
    kind: int
    type_id: int
    access_str: str
    orig_val: int
    new_val: int
    poison: bool
    local: str
    target: str

    def __init__(self, program: str, function: str, section: str, index: int, insn: int,
                 kind: int, type_id: int, access_str: str, orig_val: int, new_val: int,
                 poison: bool, local: str, target: str) -> None:
        for k, v in zip(self.__slots__, (program, function, section, index, insn, kind, type_id,
                                         access_str, orig_val, new_val, poison, local, target)):
            object.__setattr__(self, k, v)


class _ObjectCore:
    """Per-load state: the resolver and every relocation's result (a subprogram's
    relocations are resolved once however many programs include it)."""

    def __init__(self, spec, targets: Targets):
        self.targets = targets
        self.resolver = CoreResolver(spec.btf, targets)
        self.results: Dict[Tuple[str, int], CoreResult] = {}
        # (kind, local type id, access string) -> result: a relocation depends on nothing
        # else, and a tracing object repeats many (core_task: 54 records, 32 distinct)
        self.by_relo: Dict[Tuple[int, int, str], CoreResult] = {}
        # section -> sorted record offsets and their indexes
        self.by_section: Dict[str, Tuple[List[int], List[int]]] = {}
        for sec, recs in spec.btf_ext.core_relos.items():
            order = sorted(range(len(recs)), key=lambda i: recs[i].insn_off)
            self.by_section[sec] = ([recs[i].insn_off for i in order], order)


_states_lock = allocate_lock()
_states: Dict[int, Tuple["_weakref_ref", _ObjectCore]] = {}


def _state_for(spec, targets: Targets) -> _ObjectCore:
    key = id(spec)
    with _states_lock:
        ent = _states.get(key)
        if ent is not None and ent[0]() is spec and ent[1].targets is targets:
            return ent[1]
        st = _ObjectCore(spec, targets)
        _states[key] = (_weak_entry(_states, key, spec), st)
        return st


def _relo_error(spec, program: str, function: str, section: str, index: int, relo: CoreRelo,
                msg: str) -> BtfError:
    kind = relo.kind
    kname = _KIND_STR.get(kind, str(int(kind)))
    t = spec.btf.get(relo.type_id) if spec.btf is not None else None
    tname = f"{t.kind.name.lower()} {t.name or '<anon>'}" if t is not None else "?"
    where = f"program {program!r}"
    if function != program:
        where += f" (in function {function!r})"
    return BtfError(f"{where}: CO-RE relocation #{index} <{kname}> [{relo.type_id}] "
                    f"{tname} + {relo.access_str!r}: {msg}",
                    object=spec.name or None, section=section or None, symbol=program or None)


def apply_core_relos(linked, spec, *, targets: Optional[Targets] = None) -> List[CoreFixup]:
    """Resolve and apply the CO-RE relocations of every function in *linked*, in place.

    *linked*: a :class:`bpfload._core.insn.LinkedProgram` (its ``layout``
    says where each function of *spec* landed).  *spec*: the
    :class:`~bpfload.spec.ObjectSpec` it was linked from (``btf`` and
    ``btf_ext`` are read, never modified).  *targets*: default
    :func:`kernel_targets` (the running kernel; needs
    ``CONFIG_DEBUG_INFO_BTF``).  Relocations are resolved once per *spec*
    object and target set, so a subprogram linked into several programs
    costs one resolution.

    Returns the applied relocations.  Relocations that match nothing poison
    their instruction (no exception); the verifier then refuses the program
    if the instruction is reachable.  Raises :class:`BtfError` naming the
    object, program, relocation index and access string for a malformed
    record or an ambiguous relocation, or when the kernel has no BTF.
    """
    ext = spec.btf_ext
    if ext is None or not ext.core_relos:
        return []
    if spec.btf is None:
        raise BtfError("the object has CO-RE relocations but no .BTF section",
                       object=spec.name or None, section=".BTF.ext")
    program = linked.name
    if targets is None:
        try:
            targets = kernel_targets()
        except BtfError as e:
            raise BtfError(f"program {program!r} has CO-RE relocations, which need the "
                           f"kernel's BTF: {e}", object=spec.name or None,
                           symbol=program or None) from e
    st = _state_for(spec, targets)
    fixups: List[CoreFixup] = []
    insns = linked.insns
    for fname, start in linked.layout:
        fn = spec.functions[fname]
        sec = st.by_section.get(fn.section)
        if sec is None:
            continue
        offs, order = sec
        lo, hi = fn.offset, fn.offset + len(fn.insns)
        recs = ext.core_relos[fn.section]
        for j in range(bisect_left(offs, lo), len(offs)):
            if offs[j] >= hi:
                break
            i = order[j]
            relo = recs[i]
            try:
                if relo.insn_off % 8:
                    raise _CoreError(f"instruction offset {relo.insn_off} is not a multiple of 8")
                res = st.results.get((fn.section, i))
                if res is None:
                    same = (int(relo.kind), relo.type_id, relo.access_str)
                    res = st.by_relo.get(same)
                    if res is None:
                        res = st.by_relo[same] = st.resolver.resolve(relo)
                    st.results[(fn.section, i)] = res
                idx = start + (relo.insn_off - lo) // 8
                poisoned = patch_insn(insns, idx, res)
            except _CoreError as e:
                raise _relo_error(spec, program, fname, fn.section, i, relo, str(e)) from None
            except BtfError as e:  # malformed local or target BTF
                raise _relo_error(spec, program, fname, fn.section, i, relo, str(e)) from e
            if poisoned:
                _debug("object %r program %r: CO-RE relocation #%d (%s): %s: instruction %d "
                          "poisoned", spec.name, program, i, res.local,
                          "no match in the kernel" if res.poison else
                          f"field size changed {res.orig_sz} -> {res.new_sz} bytes", idx)
            fixups.append(CoreFixup(program, fname, fn.section, i, idx, int(relo.kind),
                                    relo.type_id, relo.access_str, res.orig_val, res.new_val,
                                    poisoned, res.local, res.target))
    return fixups
