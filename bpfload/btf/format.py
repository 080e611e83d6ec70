"""BTF (``.BTF``) and BTF.ext (``.BTF.ext``) parsing, editing and serialization.

Pure parsing: no syscalls.  :meth:`Btf.parse` reads a raw BTF blob (the
``.BTF`` section of an object, ``/sys/kernel/btf/vmlinux`` or a split module
BTF on top of a base) into typed objects with ids; :meth:`Btf.to_bytes`
re-emits it.

Parsing is lazy so the multi-megabyte vmlinux BTF is cheap to open: ``parse``
validates the header and walks the type section once to record where each
type starts (every record is bounds-checked then); a type is decoded into its
Python object the first time it is looked up, and names are resolved on
decode.  Everything that reads the blob goes through bounds checks, so
malformed or truncated input raises :class:`~bpfload.errors.BtfError`, never
``IndexError`` or ``struct.error``.  :meth:`Btf.validate` decodes every type
and checks every type reference (the ELF parser calls it for object BTF).

Type objects refer to other types by id (``Ptr.type`` is an ``int``), which
keeps them acyclic and cheap; :meth:`Btf.__getitem__` turns an id into the
object.  Objects are mutable: edit them (or call :meth:`Btf.fixup_datasecs`)
and :meth:`Btf.to_bytes` re-encodes what changed, adding new names to the
string section when needed.  Types never decoded are copied verbatim, so an
unmodified blob round-trips byte for byte.
"""
from __future__ import annotations

import array
import bisect
import struct

from .._enums import IntEnumBase, IntFlagBase, fast_enum
from .._lazy import Module
from .._records import Record
from ..errors import BtfError, ElfError

try:
    from .._core import btf as _cbtf
except ImportError:  # pragma: no cover - not built: the pure-Python twins are used
    _cbtf = None  # type: ignore[assignment]

copy = Module("copy")   # imported on first use (only Btf.__deepcopy__ needs it: externs)
TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "BTF_MAGIC",
    "Kind",
    "IntEncoding",
    "FuncLinkage",
    "VarLinkage",
    "CoreReloKind",
    "Type",
    "Void",
    "Int",
    "Ptr",
    "Array",
    "Member",
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Enum64",
    "Fwd",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "TypeTag",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
    "Btf",
    "BtfMapDef",
    "parse_map_def",
    "annotate_error",
    "FuncInfo",
    "LineInfo",
    "CoreRelo",
    "ExtInfo",
    "BtfExt",
]

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len
_EXT_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, func/line off+len
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_3U32 = struct.Struct("<III")
_2U32 = struct.Struct("<II")
_4U32 = struct.Struct("<IIII")
_NAME_INT = struct.Struct("<Ii")

#: Kernel limit on type resolution chains (BTF's MAX_RESOLVE_DEPTH is 32).
_MAX_RESOLVE_DEPTH = 32
_MAX_SIZE = 0xFFFFFFFF
# Type names: the kernel refuses names of KSYM_NAME_LEN (512) bytes or more; twice that
# here.  BTF.ext strings (source lines, file names, CO-RE access strings) are cut instead.
_MAX_NAME_LEN = 1024
_MAX_EXT_STRING = 4096


class _TooLong(Exception):
    """A string longer than the limit its caller gave (see Btf._str_or_none)."""


@fast_enum
class Kind(IntEnumBase):
    """``BTF_KIND_*``."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


@fast_enum
class IntEncoding(IntFlagBase):
    """``BTF_INT_*`` encoding bits of an INT."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


@fast_enum
class FuncLinkage(IntEnumBase):
    """``BTF_FUNC_*`` (stored in a FUNC's vlen)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


@fast_enum
class VarLinkage(IntEnumBase):
    """``BTF_VAR_*``."""

    STATIC = 0
    GLOBAL_ALLOCATED = 1
    GLOBAL_EXTERN = 2


@fast_enum
class CoreReloKind(IntEnumBase):
    """``enum bpf_core_relo_kind``."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


# Bytes following the 12-byte common header, per kind: fixed part and per-vlen part.
_FIXED = (0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)
_NKINDS = len(_FIXED)


# --------------------------------------------------------------------------
# Type objects
# --------------------------------------------------------------------------

class Type(Record):
    """Base of every BTF type.  ``id`` is the type id, ``name`` ``""`` when anonymous."""

    __slots__ = ("id", "name", "kind_flag", "name_off")
    _fields = __slots__
    _hidden = ("name_off",)

    KIND: ClassVar[Kind] = Kind.UNKN

    id: int
    name: str
    #: the raw ``kind_flag`` bit (bitfield members, signed enums, union fwd...)
    kind_flag: bool
    #: offset of ``name`` in the string section this type was parsed from
    name_off: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off

    @property
    def kind(self) -> Kind:
        return self.KIND

    def refs(self) -> Iterator[int]:
        """The type ids this type refers to.  Never raises."""
        return iter(())

    def _encode(self, name_off: int, out: bytearray) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _info(kind: int, vlen: int, kflag: bool) -> int:
    return (kind << 24) | (vlen & 0xFFFF) | (0x80000000 if kflag else 0)


class Void(Type):
    """Type id 0."""

    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.UNKN


class Int(Type):
    __slots__ = ("size", "encoding", "offset", "bits")
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.INT

    size: int
    encoding: IntEncoding
    #: bit offset and number of bits inside ``size`` bytes
    offset: int
    bits: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 0, encoding: IntEncoding = IntEncoding.NONE, offset: int = 0,
                 bits: int = 0) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size
        self.encoding = encoding
        self.offset = offset
        self.bits = bits

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.INT, 0, self.kind_flag), self.size)
        out += _U32.pack(((int(self.encoding) & 0xF) << 24) | ((self.offset & 0xFF) << 16)
                         | (self.bits & 0xFF))

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


class _RefType(Type):
    """A type that is just a reference to another type."""

    __slots__ = ("type",)
    _fields = Type._fields + __slots__

    type: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 type: int = 0) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.type = type

    def refs(self):
        yield self.type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(self.KIND, 0, self.kind_flag), self.type)


class Ptr(_RefType):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.PTR


class Typedef(_RefType):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.TYPEDEF


class Volatile(_RefType):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.VOLATILE


class Const(_RefType):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.CONST


class Restrict(_RefType):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.RESTRICT


class TypeTag(_RefType):
    """``__attribute__((btf_type_tag("name")))`` on ``type``."""

    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.TYPE_TAG


class Func(Type):
    __slots__ = ("type", "linkage")
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.FUNC

    #: the FUNC_PROTO
    type: int
    linkage: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 type: int = 0, linkage: int = FuncLinkage.STATIC) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.type = type
        self.linkage = linkage

    def refs(self):
        yield self.type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.FUNC, self.linkage, self.kind_flag), self.type)


class Array(Type):
    __slots__ = ("type", "index_type", "nelems")
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.ARRAY

    type: int
    index_type: int
    nelems: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 type: int = 0, index_type: int = 0, nelems: int = 0) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.type = type
        self.index_type = index_type
        self.nelems = nelems

    def refs(self):
        yield self.type
        yield self.index_type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.ARRAY, 0, self.kind_flag), 0)
        out += _3U32.pack(self.type, self.index_type, self.nelems)


class Member(Record):
    """A struct/union member.  ``offset`` is in bits; ``bitfield_size`` 0 unless a bitfield."""

    __slots__ = ("name", "type", "offset", "bitfield_size", "name_off")
    _fields = __slots__
    _hidden = ("name_off",)

    name: str
    type: int
    offset: int
    bitfield_size: int
    name_off: int

    def __init__(self, name: str, type: int, offset: int, bitfield_size: int = 0,
                 name_off: int = 0) -> None:
        self.name = name
        self.type = type
        self.offset = offset
        self.bitfield_size = bitfield_size
        self.name_off = name_off


class _Composite(Type):
    __slots__ = ("size", "members")
    _fields = Type._fields + __slots__
    _factories = {"members": list}

    size: int
    members: List[Member]

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 0, members: Optional[List[Member]] = None) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size
        self.members = [] if members is None else members

    def refs(self):
        for m in self.members:
            yield m.type

    def member(self, name: str) -> Optional[Member]:
        """The direct member called *name*, or None (see :meth:`Btf.find_member` for nesting).

        Never raises.
        """
        for m in self.members:
            if m.name == name:
                return m
        return None

    def _encode_members(self, strings: "_StringTable", out: bytearray) -> None:
        out += _3U32.pack(strings.offset_of(self.name, self.name_off),
                          _info(self.KIND, len(self.members), self.kind_flag), self.size)
        for m in self.members:
            if self.kind_flag:
                off = ((m.bitfield_size & 0xFF) << 24) | (m.offset & 0xFFFFFF)
            else:
                off = m.offset
            out += _3U32.pack(strings.offset_of(m.name, m.name_off), m.type, off)


class Struct(_Composite):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.STRUCT


class Union(_Composite):
    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.UNION


class EnumValue(Record):
    __slots__ = ("name", "value", "name_off")
    _fields = __slots__
    _hidden = ("name_off",)

    name: str
    value: int
    name_off: int

    def __init__(self, name: str, value: int, name_off: int = 0) -> None:
        self.name = name
        self.value = value
        self.name_off = name_off


class Enum(Type):
    """ENUM (32-bit values); ``kind_flag`` set means signed."""

    __slots__ = ("size", "values")
    _fields = Type._fields + __slots__
    _factories = {"values": list}
    KIND: ClassVar[Kind] = Kind.ENUM

    size: int
    values: List[EnumValue]

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 4, values: Optional[List[EnumValue]] = None) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size
        self.values = [] if values is None else values

    @property
    def signed(self) -> bool:
        return self.kind_flag

    def value(self, name: str) -> Optional[int]:
        """The value of enumerator *name*, or None.  Never raises."""
        for v in self.values:
            if v.name == name:
                return v.value
        return None


class Enum64(Enum):
    """ENUM64 (64-bit values); ``kind_flag`` set means signed."""

    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.ENUM64

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 8, values: Optional[List[EnumValue]] = None) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size
        self.values = [] if values is None else values


class Fwd(Type):
    """Forward declaration; ``kind_flag`` set means ``union``."""

    __slots__ = ()
    KIND: ClassVar[Kind] = Kind.FWD

    @property
    def is_union(self) -> bool:
        return self.kind_flag

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.FWD, 0, self.kind_flag), 0)


class Param(Record):
    __slots__ = ("name", "type", "name_off")
    _fields = __slots__
    _hidden = ("name_off",)

    name: str
    type: int
    name_off: int

    def __init__(self, name: str, type: int, name_off: int = 0) -> None:
        self.name = name
        self.type = type
        self.name_off = name_off


class FuncProto(Type):
    __slots__ = ("return_type", "params")
    _fields = Type._fields + __slots__
    _factories = {"params": list}
    KIND: ClassVar[Kind] = Kind.FUNC_PROTO

    return_type: int
    params: List[Param]

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 return_type: int = 0, params: Optional[List[Param]] = None) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.return_type = return_type
        self.params = [] if params is None else params

    def refs(self):
        yield self.return_type
        for p in self.params:
            yield p.type

    @property
    def variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type == 0 and not self.params[-1].name


class Var(Type):
    __slots__ = ("type", "linkage")
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.VAR

    type: int
    linkage: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 type: int = 0, linkage: int = VarLinkage.STATIC) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.type = type
        self.linkage = linkage

    def refs(self):
        yield self.type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.VAR, 0, self.kind_flag), self.type)
        out += _U32.pack(self.linkage)


class VarSecinfo(Record):
    """One variable of a DATASEC: the VAR (or extern FUNC) id, its offset and size."""

    __slots__ = ("type", "offset", "size")
    _fields = __slots__

    type: int
    offset: int
    size: int

    def __init__(self, type: int, offset: int, size: int) -> None:
        self.type = type
        self.offset = offset
        self.size = size


class Datasec(Type):
    __slots__ = ("size", "vars")
    _fields = Type._fields + __slots__
    _factories = {"vars": list}
    KIND: ClassVar[Kind] = Kind.DATASEC

    size: int
    vars: List[VarSecinfo]

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 0, vars: Optional[List[VarSecinfo]] = None) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size
        self.vars = [] if vars is None else vars

    def refs(self):
        for v in self.vars:
            yield v.type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.DATASEC, len(self.vars), self.kind_flag), self.size)
        for v in self.vars:
            out += _3U32.pack(v.type, v.offset, v.size)


class Float(Type):
    __slots__ = ("size",)
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.FLOAT

    size: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 size: int = 0) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.size = size

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.FLOAT, 0, self.kind_flag), self.size)


class DeclTag(Type):
    """``btf_decl_tag("name")`` on ``type`` (``component_idx`` -1: the type itself)."""

    __slots__ = ("type", "component_idx")
    _fields = Type._fields + __slots__
    KIND: ClassVar[Kind] = Kind.DECL_TAG

    type: int
    component_idx: int

    def __init__(self, id: int = 0, name: str = "", kind_flag: bool = False, name_off: int = 0,
                 type: int = 0, component_idx: int = -1) -> None:
        self.id = id
        self.name = name
        self.kind_flag = kind_flag
        self.name_off = name_off
        self.type = type
        self.component_idx = component_idx

    def refs(self):
        yield self.type

    def _encode(self, name_off, out):
        out += _3U32.pack(name_off, _info(Kind.DECL_TAG, 0, self.kind_flag), self.type)
        out += _I32.pack(self.component_idx)


_MODIFIERS = (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG)
_MODS_AND_TYPEDEF = _MODIFIERS + (Kind.TYPEDEF,)


# --------------------------------------------------------------------------
# String table used while serializing
# --------------------------------------------------------------------------

class _StringTable:
    """The original string section plus strings added by edits."""

    def __init__(self, btf: "Btf"):
        self._btf = btf
        self._extra = bytearray()
        self._added: Dict[str, int] = {}

    def offset_of(self, name: str, hint: int) -> int:
        """Offset (in this BTF's numbering) of *name*; *hint* is the offset it was parsed from."""
        btf = self._btf
        if not name:
            return hint if hint == 0 or btf._str_or_none(hint, 1, truncate=True) == "" else 0
        # decode no more than the name's length (+ its NUL): the hint may be a long string
        if btf._str_or_none(hint, len(name.encode()) + 1, truncate=True) == name:
            return hint
        return self._add(name)

    def _add(self, name: str) -> int:
        off = self._added.get(name)
        if off is None:
            enc = name.encode()
            b = self._btf
            pos = b._sraw.find(b"\0" + enc + b"\0", b._soff, b._soff + b._slen)  # reuse a string
            if pos >= 0:
                off = b._str_base + pos - b._soff + 1
            else:
                off = b._str_base + b._slen + len(self._extra)
                self._extra += enc + b"\0"
            self._added[name] = off
        return off

    def section(self) -> bytes:
        b = self._btf
        return b._sraw[b._soff:b._soff + b._slen] + bytes(self._extra)


# --------------------------------------------------------------------------
# Btf
# --------------------------------------------------------------------------

class Btf:
    """A parsed BTF blob: types by id and the string section.

    ``btf[id]`` returns the type object (id 0 is :class:`Void`), ``len(btf)``
    is the number of ids including void (for split BTF: including the base's),
    iteration yields every type in id order.  ``Btf()`` is an empty BTF to
    :meth:`add` types to.
    """

    def __init__(self) -> None:
        self._base: Optional[Btf] = None
        self._start_id = 1
        self._str_base = 0
        # the type records: bytes, a zero-copy memoryview of the parsed blob, or a
        # bytearray once fix-ups patched them in place
        self._types_raw: bytes | bytearray | memoryview = b""
        self._offsets = array.array("I")
        # the string section is _sraw[_soff:_soff + _slen] (no copy of a parsed blob)
        self._sraw: bytes = b"\0"
        self._soff = 0
        self._slen = 1
        self._strings_copy: Optional[bytes] = None
        self._cache: List[Optional[Type]] = []
        self._name_index: Optional[Dict[str, List[int]]] = None
        self.version = BTF_VERSION
        self.flags = 0
        self._hdr_extra = b""

    # -- parsing -----------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, base: Optional["Btf"] = None) -> "Btf":
        """Parse a raw BTF blob (little endian).

        *base*: for split BTF (kernel module BTF), the base BTF (vmlinux)
        whose types and strings this blob continues.

        Raises :class:`BtfError` for a bad magic or version, a header or
        section that does not fit the blob, or a type record that is
        truncated or of an unknown kind.  Type references and name offsets
        are checked when a type is decoded (:meth:`validate` checks all).
        """
        raw = data if type(data) is bytes else bytes(data)
        if len(raw) < _HDR.size:
            raise BtfError(f"BTF blob of {len(raw)} bytes is shorter than its header", section=".BTF")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(raw, 0)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BtfError("BTF is big endian; only little-endian BTF is supported", section=".BTF")
            raise BtfError(f"bad BTF magic {magic:#06x} (expected {BTF_MAGIC:#06x})", section=".BTF")
        if version != BTF_VERSION:
            raise BtfError(f"unsupported BTF version {version}", section=".BTF")
        if hdr_len < _HDR.size or hdr_len > len(raw):
            raise BtfError(f"bad BTF header length {hdr_len}", section=".BTF")
        body = len(raw) - hdr_len
        if type_off % 4:
            raise BtfError(f"BTF type section offset {type_off} is not 4-byte aligned", section=".BTF")
        if type_off + type_len > body or str_off + str_len > body:
            raise BtfError("BTF type or string section extends past the end of the blob", section=".BTF")
        self = cls()
        self.version = version
        self.flags = flags
        self._hdr_extra = raw[_HDR.size:hdr_len]
        soff = hdr_len + str_off
        if base is None and str_len and raw[soff] != 0:
            raise BtfError("BTF string section does not start with an empty string", section=".BTF")
        if str_len and raw[soff + str_len - 1] != 0:
            raise BtfError("BTF string section is not NUL-terminated", section=".BTF")
        # no copies of the sections: vmlinux BTF is megabytes
        self._sraw, self._soff, self._slen = raw, soff, str_len
        if base is not None:
            self._base = base
            self._start_id = len(base)
            self._str_base = base._str_base + base._slen
        self._types_raw = memoryview(raw)[hdr_len + type_off: hdr_len + type_off + type_len]
        self._offsets = self._scan(self._types_raw)
        self._cache = [None] * len(self._offsets)
        return self

    @staticmethod
    def _scan(buf: bytes) -> "array.array[int]":
        if _cbtf is not None:
            return _cbtf.scan(buf)
        return Btf._scan_py(buf)

    @staticmethod
    def _scan_py(buf: bytes) -> "array.array[int]":
        """The pure-Python twin of :func:`bpfload._core.btf.scan`."""
        offsets = array.array("I")
        append = offsets.append
        unpack = _U32.unpack_from
        fixed, per, nkinds = _FIXED, _PER_VLEN, _NKINDS
        end = len(buf)
        off = 0
        try:
            while off < end:
                info = unpack(buf, off + 4)[0]
                kind = (info >> 24) & 0x1F
                if kind == 0 or kind >= nkinds:
                    raise BtfError(f"type #{len(offsets) + 1}: unknown BTF kind {kind}",
                                   section=".BTF", offset=off)
                append(off)
                off += 12 + fixed[kind] + per[kind] * (info & 0xFFFF)
        except struct.error:
            raise BtfError(f"type #{len(offsets) + 1}: truncated type record", section=".BTF",
                           offset=off) from None
        if off != end:
            raise BtfError(f"type #{len(offsets)}: truncated type record", section=".BTF",
                           offset=offsets[-1] if offsets else 0)
        return offsets

    # -- strings -----------------------------------------------------------

    def _str_or_none(self, off: int, limit: Optional[int] = None, truncate: bool = False) -> Optional[str]:
        """The string at *off*, or None when *off* is outside the string section.

        With *limit*, at most *limit* bytes are decoded: a longer string is cut
        (with *truncate*) or raises :class:`_TooLong`.  Every caller that decodes
        one string per type or record passes a limit, so a crafted object cannot
        make (records x string length) bytes of text out of one long string.
        """
        if off < self._str_base:
            return self._base._str_or_none(off, limit, truncate) if self._base is not None else None
        local = off - self._str_base
        slen = self._slen
        if local >= slen:
            return None
        s, base = self._sraw, self._soff
        stop = slen if limit is None else min(slen, local + limit + 1)
        if _cbtf is not None:
            got = _cbtf.cstr(s, base + local, base + stop)
            if got is not None:
                return got
        end = s.find(b"\0", base + local, base + stop)
        if end < 0:
            if stop == slen:
                return None
            if not truncate:
                raise _TooLong(off, limit)
            return s[base + local:base + local + limit].decode("utf-8", "replace") + "..."
        return s[base + local:end].decode("utf-8", "replace")

    def string(self, off: int) -> str:
        """The string at offset *off* of the string section.

        Raises :class:`BtfError` when *off* is outside the string section.
        """
        if off == 0 and not self._slen and self._base is None:
            return ""
        s = self._str_or_none(off)
        if s is None:
            raise BtfError(f"string offset {off} outside the BTF string section", section=".BTF")
        return s

    @property
    def strings(self) -> bytes:
        """The raw string section (this blob's only, for split BTF)."""
        return self._strings

    @property
    def _strings(self) -> bytes:
        s = self._strings_copy
        if s is None:
            s = self._strings_copy = bytes(self._sraw[self._soff:self._soff + self._slen])
        return s

    def _strings_view(self) -> memoryview:
        """The string section without a copy."""
        return memoryview(self._sraw)[self._soff:self._soff + self._slen]

    def _datasec(self, name: str) -> Optional["Datasec"]:
        """``find(name, Kind.DATASEC)`` without building the name index.

        Opening an object asks for a few DATASECs by name (``.maps``, each data
        section); the name index would decode the name of every type for them.
        Here only the DATASEC records' names are read (and the match decoded).
        Raises :class:`BtfError` as :meth:`find` does.
        """
        nraw = len(self._offsets)
        if self._name_index is not None or self._base is not None or len(self._cache) != nraw:
            found = self.find(name, Kind.DATASEC)
            return found if isinstance(found, Datasec) else None
        idxs = self.__dict__.get("_datasec_idxs")
        if idxs is None:
            if _cbtf is not None:
                idxs = _cbtf.of_kind(self._types_raw, self._offsets, int(Kind.DATASEC))
            else:
                idxs = [i for i in range(nraw)
                        if (_U32.unpack_from(self._types_raw, self._offsets[i] + 4)[0] >> 24) & 0x1F
                        == Kind.DATASEC]
            self.__dict__["_datasec_idxs"] = idxs
        cache, start = self._cache, self._start_id
        for idx in idxs:
            t = cache[idx]
            if t is None:
                name_off = _U32.unpack_from(self._types_raw, self._offsets[idx])[0]
                try:
                    if not name_off or self._str_or_none(name_off, _MAX_NAME_LEN) != name:
                        continue
                except _TooLong:    # (validate() refuses it; no DATASEC is called that)
                    continue
                t = self[idx + start]
            if isinstance(t, Datasec) and t.name == name:
                return t
        return None

    def _datasec_visible(self, name: str) -> Optional[Tuple[int, bool]]:
        """``(type id, any non-static VAR)`` of DATASEC *name*, or None when there is none.

        What opening an object asks of each data section (libbpf makes its map
        mmapable when a variable is visible), read from the raw records when
        neither the DATASEC nor its members were decoded; otherwise through
        :meth:`_datasec`.  Raises :class:`BtfError` as :meth:`find` does.
        """
        nraw = len(self._offsets)
        if self._name_index is None and self._base is None and len(self._cache) == nraw:
            idxs = self.__dict__.get("_datasec_idxs")
            buf, offsets, cache, start = self._types_raw, self._offsets, self._cache, self._start_id
            if idxs is None:
                if _cbtf is not None:
                    idxs = _cbtf.of_kind(buf, offsets, int(Kind.DATASEC))
                else:
                    idxs = [i for i in range(nraw)
                            if (_U32.unpack_from(buf, offsets[i] + 4)[0] >> 24) & 0x1F == Kind.DATASEC]
                self.__dict__["_datasec_idxs"] = idxs
            names = self.__dict__.get("_datasec_names")
            if names is None:   # DATASEC name -> first index, each name decoded once
                names = {}
                for idx in idxs:
                    name_off = _U32.unpack_from(buf, offsets[idx])[0]
                    try:
                        nm = self._str_or_none(name_off, _MAX_NAME_LEN) if name_off else None
                    except _TooLong:
                        nm = None
                    if nm is not None and nm not in names:
                        names[nm] = idx
                self.__dict__["_datasec_names"] = names
            kvar, static = Kind.VAR, VarLinkage.STATIC
            for idx in idxs:
                if cache[idx] is not None:
                    break       # a DATASEC decoded (maybe edited): the object path
            else:
                idx = names.get(name, -1)
                if idx < 0:
                    return None
                off = offsets[idx]
                info = _U32.unpack_from(buf, off + 4)[0]
                visible = False
                for i in range(info & 0xFFFF):
                    vidx = _U32.unpack_from(buf, off + 12 + 12 * i)[0] - start
                    if not 0 <= vidx < nraw or cache[vidx] is not None:
                        break   # a bad id, or decoded (maybe edited): the object path
                    voff = offsets[vidx]
                    if (_U32.unpack_from(buf, voff + 4)[0] >> 24) & 0x1F == kvar and \
                            _U32.unpack_from(buf, voff + 12)[0] != static:
                        visible = True
                        break
                else:
                    return idx + start, visible
                if visible:
                    return idx + start, visible
        ds = self._datasec(name)
        if not isinstance(ds, Datasec):
            return None
        for vsi in ds.vars:
            v = self[vsi.type]
            if isinstance(v, Var) and v.linkage != VarLinkage.STATIC:
                return ds.id, True
        return ds.id, False

    def _raw_rec(self, type_id: int) -> Optional[Tuple[int, int, int, int]]:
        """``(record offset, kind, info, size/type)`` of a never-decoded record of this blob.

        None for void, a base or added type, a bad id, or a decoded one (its
        object may have been edited: read that instead).  Never raises.
        """
        idx = type_id - self._start_id
        if not 0 <= idx < len(self._offsets) or self._cache[idx] is not None:
            return None
        off = self._offsets[idx]
        _, info, size_type = _3U32.unpack_from(self._types_raw, off)
        return off, (info >> 24) & 0x1F, info, size_type

    def _raw_size_of(self, type_id: int) -> Optional[int]:
        """:meth:`size_of` read from never-decoded records; None where it cannot (or would raise)."""
        nelems = 1
        tid = type_id
        buf = self._types_raw
        for _ in range(_MAX_RESOLVE_DEPTH):
            r = self._raw_rec(tid)
            if r is None:
                return None
            off, k, _, size_type = r
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT, Kind.DATASEC):
                size = size_type
                break
            if k == Kind.PTR:
                size = 8
                break
            if k in _MODS_AND_TYPEDEF or k == Kind.VAR:
                tid = size_type
                continue
            if k == Kind.ARRAY:
                et, _, n = _3U32.unpack_from(buf, off + 12)
                nelems *= n
                if nelems > _MAX_SIZE:
                    return None
                tid = et
                continue
            return None
        else:
            return None
        total = nelems * size
        return total if total <= _MAX_SIZE else None

    def __deepcopy__(self, memo) -> "Btf":
        new = Btf.__new__(Btf)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k == "_types_raw" and isinstance(v, memoryview):
                v = v.tobytes()
            elif k not in ("_sraw", "_strings_copy"):  # immutable bytes: shared
                v = copy.deepcopy(v, memo)
            new.__dict__[k] = v
        return new

    # -- type access -------------------------------------------------------

    def __len__(self) -> int:
        return self._start_id + len(self._cache)

    @property
    def start_id(self) -> int:
        """First type id defined by this blob (1, or the base's length for split BTF)."""
        return self._start_id

    @property
    def base(self) -> Optional["Btf"]:
        return self._base

    def __getitem__(self, type_id: int) -> Type:
        """The type with id *type_id*.  Raises :class:`BtfError` for an unknown id or a malformed type."""
        if type_id < self._start_id:
            if type_id == 0:
                return _VOID
            if self._base is not None and 0 < type_id:
                return self._base[type_id]
            raise BtfError(f"type id {type_id} out of range", section=".BTF")
        idx = type_id - self._start_id
        try:
            t = self._cache[idx]
        except (IndexError, TypeError):
            raise BtfError(f"type id {type_id} out of range (BTF has {len(self)} types)",
                           section=".BTF") from None
        if t is None:
            t = self._decode(idx)
            self._cache[idx] = t
        return t

    def get(self, type_id: int) -> Optional[Type]:
        """Like ``btf[type_id]`` but None for an unknown or malformed id.  Never raises."""
        try:
            return self[type_id]
        except BtfError:
            return None

    def __iter__(self) -> Iterator[Type]:
        """Every type of this blob (not the base's), in id order; void first for non-split BTF.

        Decodes as it goes: raises :class:`BtfError` at a malformed type.
        """
        if self._base is None:
            yield _VOID
        for i in range(self._start_id, len(self)):
            yield self[i]

    def _decode(self, idx: int) -> Type:
        buf = self._types_raw
        off = self._offsets[idx]
        tid = idx + self._start_id
        try:
            name_off, info, size_type = _3U32.unpack_from(buf, off)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = bool(info >> 31)
            name = self._name(name_off, tid)
            p = off + 12
            if kind == Kind.INT:
                (extra,) = _U32.unpack_from(buf, p)
                return Int(tid, name, kflag, name_off, size=size_type,
                           encoding=IntEncoding((extra >> 24) & 0xF), offset=(extra >> 16) & 0xFF,
                           bits=extra & 0xFF)
            if kind in _REF_CLASSES:
                return _REF_CLASSES[kind](tid, name, kflag, name_off, type=size_type)
            if kind == Kind.FUNC:
                return Func(tid, name, kflag, name_off, type=size_type, linkage=vlen)
            if kind == Kind.ARRAY:
                et, it, n = _3U32.unpack_from(buf, p)
                return Array(tid, name, kflag, name_off, type=et, index_type=it, nelems=n)
            if kind in (Kind.STRUCT, Kind.UNION):
                members = []
                for i in range(vlen):
                    mn, mt, moff = _3U32.unpack_from(buf, p + 12 * i)
                    if kflag:
                        members.append(Member(self._name(mn, tid), mt, moff & 0xFFFFFF, moff >> 24, mn))
                    else:
                        members.append(Member(self._name(mn, tid), mt, moff, 0, mn))
                cls = Struct if kind == Kind.STRUCT else Union
                return cls(tid, name, kflag, name_off, size=size_type, members=members)
            if kind == Kind.ENUM:
                values = []
                for i in range(vlen):
                    vn, val = _NAME_INT.unpack_from(buf, p + 8 * i)
                    if not kflag:
                        val &= 0xFFFFFFFF
                    values.append(EnumValue(self._name(vn, tid), val, vn))
                return Enum(tid, name, kflag, name_off, size=size_type, values=values)
            if kind == Kind.ENUM64:
                values = []
                for i in range(vlen):
                    vn, lo, hi = _3U32.unpack_from(buf, p + 12 * i)
                    val = (hi << 32) | lo
                    if kflag and val >= 1 << 63:
                        val -= 1 << 64
                    values.append(EnumValue(self._name(vn, tid), val, vn))
                return Enum64(tid, name, kflag, name_off, size=size_type, values=values)
            if kind == Kind.FWD:
                return Fwd(tid, name, kflag, name_off)
            if kind == Kind.FUNC_PROTO:
                params = []
                for i in range(vlen):
                    pn, pt = _2U32.unpack_from(buf, p + 8 * i)
                    params.append(Param(self._name(pn, tid), pt, pn))
                return FuncProto(tid, name, kflag, name_off, return_type=size_type, params=params)
            if kind == Kind.VAR:
                (linkage,) = _U32.unpack_from(buf, p)
                return Var(tid, name, kflag, name_off, type=size_type, linkage=linkage)
            if kind == Kind.DATASEC:
                vars_ = [VarSecinfo(*_3U32.unpack_from(buf, p + 12 * i)) for i in range(vlen)]
                return Datasec(tid, name, kflag, name_off, size=size_type, vars=vars_)
            if kind == Kind.FLOAT:
                return Float(tid, name, kflag, name_off, size=size_type)
            if kind == Kind.DECL_TAG:
                (comp,) = _I32.unpack_from(buf, p)
                return DeclTag(tid, name, kflag, name_off, type=size_type, component_idx=comp)
        except struct.error:  # _scan bounds every record; belt and braces
            raise BtfError(f"type [{tid}]: truncated record", section=".BTF", offset=off) from None
        raise BtfError(f"type [{tid}]: unknown BTF kind {kind}", section=".BTF", offset=off)

    def _name(self, off: int, tid: int) -> str:
        if off == 0 and self._base is None:
            return ""
        try:
            s = self._str_or_none(off, _MAX_NAME_LEN)
        except _TooLong:
            raise BtfError(f"type [{tid}]: name at string offset {off} is longer than "
                           f"{_MAX_NAME_LEN} bytes", section=".BTF", offset=off) from None
        if s is None:
            raise BtfError(f"type [{tid}]: name offset {off} outside the string section", section=".BTF")
        return s

    # -- lookup ------------------------------------------------------------

    def _build_name_index(self) -> Dict[str, List[int]]:
        by_off: Dict[int, List[int]] = {}
        buf = self._types_raw
        unpack = _U32.unpack_from
        start = self._start_id
        cache = self._cache
        decoded: List[Tuple[str, int]] = []
        for idx, off in enumerate(self._offsets):
            t = cache[idx]
            if t is not None:
                if t.name:
                    decoded.append((t.name, idx + start))
                continue
            name_off = unpack(buf, off)[0]
            if name_off:
                lst = by_off.get(name_off)
                if lst is None:
                    by_off[name_off] = [idx + start]
                else:
                    lst.append(idx + start)
        for idx in range(len(self._offsets), len(cache)):
            t = cache[idx]
            if t is not None and t.name:
                decoded.append((t.name, idx + start))
        index: Dict[str, List[int]] = {}
        for name_off, ids in by_off.items():
            try:
                name = self._str_or_none(name_off, _MAX_NAME_LEN)
            except _TooLong:
                raise BtfError(f"type [{ids[0]}]: name at string offset {name_off} is longer than "
                               f"{_MAX_NAME_LEN} bytes", section=".BTF", offset=name_off) from None
            if not name:
                continue
            lst = index.get(name)
            if lst is None:
                index[name] = ids
            else:
                lst.extend(ids)
        for name, tid in decoded:
            index.setdefault(name, []).append(tid)
        for ids in index.values():
            ids.sort()
        self._name_index = index
        return index

    def find_all(self, name: str, kind: Optional[Kind] = None) -> List[Type]:
        """Every type called *name* (optionally of *kind*), in id order; base types first.

        Raises :class:`BtfError` if a matching type is malformed.
        """
        found: List[Type] = []
        if self._base is not None:
            found.extend(self._base.find_all(name, kind))
        index = self._name_index if self._name_index is not None else self._build_name_index()
        for tid in index.get(name, ()):
            t = self[tid]
            if t.name != name:  # renamed after the index was built
                continue
            if kind is None or t.kind == kind:
                found.append(t)
        return found

    def find(self, name: str, kind: Optional[Kind] = None) -> Optional[Type]:
        """The first type called *name* (optionally of *kind*), or None.

        Raises :class:`BtfError` if the matching type is malformed.
        """
        found = self.find_all(name, kind)
        return found[0] if found else None

    # -- resolution helpers ------------------------------------------------

    def skip_modifiers(self, type_id: int) -> Type:
        """Follow const/volatile/restrict/type_tag from *type_id*.

        Raises :class:`BtfError` for a bad id or a reference loop.
        """
        return self._skip(type_id, _MODIFIERS)

    def resolve(self, type_id: int) -> Type:
        """Follow modifiers and typedefs from *type_id* to the underlying type.

        Raises :class:`BtfError` for a bad id or a reference loop.
        """
        return self._skip(type_id, _MODS_AND_TYPEDEF)

    def _skip(self, type_id: int, kinds) -> Type:
        t = self[type_id]
        for _ in range(_MAX_RESOLVE_DEPTH):
            if t.KIND not in kinds:
                return t
            t = self[t.type]  # type: ignore[attr-defined]
        raise BtfError(f"type [{type_id}]: reference chain too long (loop?)", section=".BTF")

    def size_of(self, type_id: int) -> int:
        """Size in bytes of *type_id*, through modifiers, typedefs, vars and arrays.

        Raises :class:`BtfError` for types without a size (void, func,
        func_proto, fwd, decl_tag), bad ids, loops, or sizes over 4 GiB.
        """
        nelems = 1
        tid = type_id
        for _ in range(_MAX_RESOLVE_DEPTH):
            t = self[tid]
            k = t.KIND
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT,
                     Kind.DATASEC):
                size = t.size  # type: ignore[attr-defined]
                break
            if k == Kind.PTR:
                size = 8
                break
            if k in _MODS_AND_TYPEDEF or k == Kind.VAR:
                tid = t.type  # type: ignore[attr-defined]
                continue
            if k == Kind.ARRAY:
                nelems *= t.nelems  # type: ignore[attr-defined]
                if nelems > _MAX_SIZE:
                    raise BtfError(f"type [{type_id}]: array too large", section=".BTF")
                tid = t.type  # type: ignore[attr-defined]
                continue
            raise BtfError(f"type [{type_id}]: {k.name} has no size", section=".BTF")
        else:
            raise BtfError(f"type [{type_id}]: reference chain too long (loop?)", section=".BTF")
        total = nelems * size
        if total > _MAX_SIZE:
            raise BtfError(f"type [{type_id}]: size {total} too large", section=".BTF")
        return total

    def find_member(self, type_id: int, name: str) -> Optional[Tuple[Member, int]]:
        """Find member *name* of struct/union *type_id*, looking inside anonymous members.

        Returns ``(member, bit_offset)`` with the bit offset from the start
        of the outer type, or None.  Raises :class:`BtfError` if *type_id*
        does not resolve to a struct or union.
        """
        t = self.resolve(type_id)
        if not isinstance(t, _Composite):
            raise BtfError(f"type [{type_id}] is {t.kind.name}, not a struct or union", section=".BTF")
        return self._find_member(t, name, 0, 0)

    def _find_member(self, t: "_Composite", name: str, base: int, depth: int):
        if depth > _MAX_RESOLVE_DEPTH:
            raise BtfError(f"type [{t.id}]: anonymous members nested too deeply", section=".BTF")
        for m in t.members:
            if m.name == name:
                return m, base + m.offset
        for m in t.members:
            if not m.name:
                inner = self.resolve(m.type)
                if isinstance(inner, _Composite):
                    r = self._find_member(inner, name, base + m.offset, depth + 1)
                    if r is not None:
                        return r
        return None

    # -- validation --------------------------------------------------------

    def validate(self) -> None:
        """Decode every type and check every type reference and name offset.

        Raises :class:`BtfError` naming the first bad type.
        """
        n = len(self)
        if _cbtf is not None and self._base is None:
            # the raw records in one compiled pass; decoded (maybe edited) types below
            bad = _cbtf.check(self._types_raw, self._offsets, self._strings_view(), self._cache,
                              self._start_id, n, _MAX_NAME_LEN)
            if bad is not None:
                self._raise_check(*bad)
            types: Iterator[Type] = (t for t in self._cache if t is not None)
        else:
            types = iter(self)
        for t in types:
            for ref in t.refs():
                if ref >= n:
                    raise BtfError(f"type [{t.id}] {t.kind.name} '{t.name}' refers to type id {ref}, "
                                   f"past the last type {n - 1}", section=".BTF")

    def _raise_check(self, idx: int, what: str, value: int, detail) -> None:
        """Raise the error decoding record *idx* would have raised (see :meth:`validate`)."""
        tid = idx + self._start_id
        if what == "name":
            if detail == 2:
                raise BtfError(f"type [{tid}]: name at string offset {value} is longer than "
                               f"{_MAX_NAME_LEN} bytes", section=".BTF", offset=value)
            raise BtfError(f"type [{tid}]: name offset {value} outside the string section", section=".BTF")
        if what == "ref":
            name = self._name(_U32.unpack_from(self._types_raw, self._offsets[idx])[0], tid)
            raise BtfError(f"type [{tid}] {detail} '{name}' refers to type id {value}, "
                           f"past the last type {len(self) - 1}", section=".BTF")
        raise BtfError(f"type [{tid}]: truncated record", section=".BTF", offset=value)

    # -- editing -----------------------------------------------------------

    def add(self, t: Type) -> int:
        """Append *t*, set and return its new id.  Never raises."""
        t.id = len(self)
        self._cache.append(t)
        if self._name_index is not None and t.name:
            self._name_index.setdefault(t.name, []).append(t.id)
        return t.id

    def fixup_datasecs(self, section_sizes: Mapping[str, int],
                       symbols: Mapping[str, Mapping[str, Tuple[int, bool]]]) -> None:
        """Fill in what clang leaves zero in object files: DATASEC sizes and VAR offsets.

        *section_sizes*: ELF section name -> size.  *symbols*: ELF section
        name -> {variable name: (offset, hidden)} from the ELF symbol table.
        For every DATASEC whose size is 0, the size is taken from the ELF
        section and each variable's offset from its symbol; global variables
        whose symbol has hidden/internal visibility become static (libbpf's
        rule, which decides BPF_F_MMAPABLE).  ``.kconfig`` and ``.ksyms``
        (extern-backed) are left alone.  Variables are then sorted by offset,
        as the kernel requires.

        Raises :class:`BtfError` if a DATASEC has no ELF section, or a
        global (non-extern) variable has no symbol.

        Records never decoded are patched in place in the raw type section
        (one compiled pass finds the DATASECs; only their VARs are read), so
        an object's BTF is neither decoded nor re-encoded for this; types
        already decoded are edited as objects.
        """
        nraw = len(self._offsets)
        cache = self._cache
        start = self._start_id
        if _cbtf is not None:
            raw_secs = _cbtf.of_kind(self._types_raw, self._offsets, int(Kind.DATASEC))
        else:
            raw_secs = [i for i in range(nraw)
                        if (_U32.unpack_from(self._types_raw, self._offsets[i] + 4)[0] >> 24) & 0x1F
                        == Kind.DATASEC]
        todo = [i for i in raw_secs if cache[i] is None or isinstance(cache[i], Datasec)]
        todo += [i for i in range(nraw, len(cache)) if isinstance(cache[i], Datasec)]
        for idx in todo:
            if cache[idx] is None and self._fixup_raw_datasec(idx, section_sizes, symbols):
                continue
            t = self[idx + start]
            if isinstance(t, Datasec):
                self._fixup_datasec(t, section_sizes, symbols)

    def _raw_var(self, type_id: int) -> Optional[Tuple[int, int, str, int]]:
        """``(record offset, kind, name, linkage)`` of a never-decoded record, else None."""
        idx = type_id - self._start_id
        if not 0 <= idx < len(self._offsets) or self._cache[idx] is not None:
            return None
        off = self._offsets[idx]
        name_off, info, _ = _3U32.unpack_from(self._types_raw, off)
        kind = (info >> 24) & 0x1F
        linkage = _U32.unpack_from(self._types_raw, off + 12)[0] if kind == Kind.VAR else -1
        return off, kind, self._name(name_off, type_id), linkage

    def _fixup_raw_datasec(self, idx: int, section_sizes, symbols) -> bool:
        """:meth:`fixup_datasecs` of the raw DATASEC record *idx*; False: not possible raw."""
        buf = self._types_raw
        off = self._offsets[idx]
        tid = idx + self._start_id
        name_off, info, size = _3U32.unpack_from(buf, off)
        name = self._name(name_off, tid)
        vlen = info & 0xFFFF
        read = getattr(_cbtf, "datasec_vars", None) if _cbtf is not None else None
        if read is not None:    # the members and their VAR records read in compiled code
            rows = read(buf, self._offsets, idx, self._start_id, self._cache)
            if rows is None:
                return False  # a member already decoded (or a bad id): the object path says why
            vsis = [r[:3] for r in rows]
            members = [(r[3], r[4], self._name(r[5], r[0]), r[6]) for r in rows]
        else:
            vsis = [list(_3U32.unpack_from(buf, off + 12 + 12 * i)) for i in range(vlen)]
            members = [self._raw_var(v[0]) for v in vsis]
            if any(m is None for m in members):
                return False  # a member already decoded (or a bad id): the object path says why
        extern_backed = name in (".kconfig", ".ksyms")
        allowed = (Kind.VAR,) if name != ".ksyms" else (Kind.VAR, Kind.FUNC)
        for v, m in zip(vsis, members):
            if m[1] not in allowed:  # type: ignore[index]
                raise BtfError(f"DATASEC '{name}': member [{v[0]}] is {Kind(m[1]).name}, "  # type: ignore[index]
                               f"not {' or '.join(k.name for k in allowed)}", section=name)
        if extern_backed:
            return True
        syms = symbols.get(name, {})
        fix_offsets = False
        if size == 0:
            size = section_sizes.get(name)
            if not size:
                raise BtfError(f"DATASEC '{name}': no ELF section to take its size from", section=name)
            if size > _MAX_SIZE:
                raise BtfError(f"DATASEC '{name}': section size {size} does not fit BTF's 32 bits",
                               section=name)
            fix_offsets = True
        static_vars = []
        for v, m in zip(vsis, members):
            voff, _, vname, linkage = m  # type: ignore[misc]
            if linkage == VarLinkage.GLOBAL_EXTERN:
                continue
            sym = syms.get(vname)
            if sym is None:
                if linkage == VarLinkage.STATIC:
                    continue
                raise BtfError(f"DATASEC '{name}': no ELF symbol for variable '{vname}'",
                               section=name, symbol=vname)
            offset, hidden = sym
            if fix_offsets:
                if not 0 <= offset <= size - v[2]:
                    raise BtfError(f"DATASEC '{name}': variable '{vname}' at offset "
                                   f"{offset} (size {v[2]}) lies outside the "
                                   f"{size}-byte section", section=name, symbol=vname)
                v[1] = offset
            if hidden and linkage != VarLinkage.STATIC:
                static_vars.append(voff)
        new = sorted(vsis, key=lambda v: v[1])
        if fix_offsets or static_vars or new != vsis:
            buf = self._mutable_types()
            _U32.pack_into(buf, off + 8, size)
            for i, v in enumerate(new):
                _3U32.pack_into(buf, off + 12 + 12 * i, *v)
            for voff in static_vars:
                _U32.pack_into(buf, voff + 12, VarLinkage.STATIC)
        return True

    def _mutable_types(self) -> bytearray:
        """The raw type section as a bytearray, to patch records in place."""
        if not isinstance(self._types_raw, bytearray):
            self._types_raw = bytearray(self._types_raw)
        return self._types_raw

    def _fixup_datasec(self, t: "Datasec", section_sizes, symbols) -> None:
        """:meth:`fixup_datasecs` of one decoded DATASEC."""
        if t.name in (".kconfig", ".ksyms"):
            # extern-backed: laid out at load, but only VARs (and kfunc FUNCs) can be there
            kinds = (Var,) if t.name == ".kconfig" else (Var, Func)
            for vsi in t.vars:
                m = self[vsi.type]
                if not isinstance(m, kinds):
                    raise BtfError(f"DATASEC '{t.name}': member [{vsi.type}] is {m.kind.name}, "
                                   f"not {' or '.join(k.__name__.upper() for k in kinds)}",
                                   section=t.name)
            return
        syms = symbols.get(t.name, {})
        fix_offsets = False
        if t.size == 0:
            size = section_sizes.get(t.name)
            if not size:
                raise BtfError(f"DATASEC '{t.name}': no ELF section to take its size from",
                               section=t.name)
            t.size = size
            fix_offsets = True
        for vsi in t.vars:
            var = self[vsi.type]
            if not isinstance(var, Var):
                raise BtfError(f"DATASEC '{t.name}': member [{vsi.type}] is {var.kind.name}, not VAR",
                               section=t.name)
            if var.linkage == VarLinkage.GLOBAL_EXTERN:
                continue
            sym = syms.get(var.name)
            if sym is None:
                if var.linkage == VarLinkage.STATIC:
                    continue
                raise BtfError(f"DATASEC '{t.name}': no ELF symbol for variable '{var.name}'",
                               section=t.name, symbol=var.name)
            offset, hidden = sym
            if fix_offsets:
                if not 0 <= offset <= t.size - vsi.size:
                    raise BtfError(f"DATASEC '{t.name}': variable '{var.name}' at offset "
                                   f"{offset} (size {vsi.size}) lies outside the "
                                   f"{t.size}-byte section", section=t.name,
                                   symbol=var.name)
                vsi.offset = offset
            if hidden and var.linkage != VarLinkage.STATIC:
                var.linkage = VarLinkage.STATIC
        t.vars.sort(key=lambda v: v.offset)

    def _decode_mark(self) -> List[Optional[Type]]:
        """The decoded-type cache as it stands, for :meth:`_forget_since`."""
        return self._cache[:len(self._offsets)]

    def _forget_since(self, mark: List[Optional[Type]]) -> None:
        """Drop from the cache the raw records decoded since *mark* was taken.

        For readers that only look at types (map definitions, data-section
        variables at open): :meth:`to_bytes` copies records it never decoded
        verbatim, so what was decoded only to be read is not re-encoded at
        every load.  The caller must not have edited them (a later ``btf[id]``
        decodes a fresh copy).  Never raises.
        """
        cache = self._cache
        n = len(mark)
        if mark.count(None) == cache[:n].count(None):
            return      # nothing decoded since
        for i in range(n):
            if mark[i] is None:
                cache[i] = None

    # -- serialization -----------------------------------------------------

    def to_bytes(self) -> bytes:
        """Encode this BTF (types of this blob, strings) as a blob for BPF_BTF_LOAD.

        Types that were never decoded are copied verbatim; decoded ones are
        re-encoded from their (possibly edited) objects; new names are
        appended to the string section.  An unmodified parse round-trips
        byte for byte.  Raises :class:`BtfError` for a value that does not
        fit its field.
        """
        raw = self._types_raw
        offsets = self._offsets
        nraw = len(offsets)
        cache = self._cache
        if cache.count(None) == len(cache):
            # nothing decoded (and nothing added): the parsed sections, with patched records
            types = raw[offsets[0]:] if nraw else b""
            hdr_len = _HDR.size + len(self._hdr_extra)
            hdr = _HDR.pack(BTF_MAGIC, self.version, self.flags, hdr_len, 0, len(types), len(types),
                            self._slen)
            return b"".join((hdr, self._hdr_extra, types, self._sraw[self._soff:self._soff + self._slen]))
        strings = _StringTable(self)
        out = bytearray()
        # runs of never-decoded records are copied in one slice each
        run = 0
        for idx in [i for i, t in enumerate(cache) if t is not None]:
            if idx < nraw:
                if run < idx:
                    out += raw[offsets[run]:offsets[idx]]
                run = idx + 1
            elif run < nraw:
                out += raw[offsets[run]:]
                run = nraw
            t = cache[idx]
            try:
                self._encode_type(t, strings, out)
            except struct.error as e:
                raise BtfError(f"cannot encode type [{t.id}] {t.name!r}: {e}", section=".BTF") from None
        if run < nraw:
            out += raw[offsets[run]:]
        str_sec = strings.section()
        hdr_len = _HDR.size + len(self._hdr_extra)
        hdr = _HDR.pack(BTF_MAGIC, self.version, self.flags, hdr_len, 0, len(out), len(out), len(str_sec))
        return hdr + self._hdr_extra + bytes(out) + str_sec

    @staticmethod
    def _encode_type(t: Type, strings: _StringTable, out: bytearray) -> None:
        if isinstance(t, _Composite):
            t._encode_members(strings, out)
            return
        name_off = strings.offset_of(t.name, t.name_off)
        if isinstance(t, Enum):
            kind = t.KIND
            out += _3U32.pack(name_off, _info(kind, len(t.values), t.kind_flag), t.size)
            for v in t.values:
                voff = strings.offset_of(v.name, v.name_off)
                if kind == Kind.ENUM64:
                    val = v.value & 0xFFFFFFFFFFFFFFFF
                    out += _3U32.pack(voff, val & 0xFFFFFFFF, val >> 32)
                else:
                    out += _2U32.pack(voff, v.value & 0xFFFFFFFF)
            return
        if isinstance(t, FuncProto):
            out += _3U32.pack(name_off, _info(Kind.FUNC_PROTO, len(t.params), t.kind_flag), t.return_type)
            for p in t.params:
                out += _2U32.pack(strings.offset_of(p.name, p.name_off), p.type)
            return
        t._encode(name_off, out)

    def __repr__(self) -> str:
        return f"<Btf {len(self) - self._start_id} types, {self._slen} bytes of strings>"


_VOID = Void(0, "")
_REF_CLASSES = {
    Kind.PTR: Ptr,
    Kind.TYPEDEF: Typedef,
    Kind.VOLATILE: Volatile,
    Kind.CONST: Const,
    Kind.RESTRICT: Restrict,
    Kind.TYPE_TAG: TypeTag,
}


# --------------------------------------------------------------------------
# BTF-defined map definitions (the structs in ``.maps``)
# --------------------------------------------------------------------------

class BtfMapDef(Record):
    """A decoded ``struct { __uint(type, ...); ... }`` map definition from ``.maps``.

    Integer attributes are ``None`` when the definition does not set them.
    ``values_offset`` is the byte offset of the ``values`` member (static
    initializers of map-in-map / program arrays), ``inner`` the decoded
    inner template for map-in-map, ``values_is_prog`` True for a program
    array's ``__array(values, int (void *))``.
    """

    _fields = ("name", "type", "key_size", "value_size", "max_entries", "map_flags", "numa_node",
               "pinning", "map_extra", "key_type_id", "value_type_id", "values_offset",
               "values_is_prog", "inner")

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    numa_node: Optional[int]
    pinning: int
    map_extra: int
    key_type_id: int
    value_type_id: int
    values_offset: Optional[int]
    values_is_prog: bool
    inner: Optional[BtfMapDef]

    def __init__(self, name: str, type: int = 0, key_size: int = 0, value_size: int = 0,
                 max_entries: int = 0, map_flags: int = 0, numa_node: Optional[int] = None,
                 pinning: int = 0, map_extra: int = 0, key_type_id: int = 0, value_type_id: int = 0,
                 values_offset: Optional[int] = None, values_is_prog: bool = False,
                 inner: Optional[BtfMapDef] = None) -> None:
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.numa_node = numa_node
        self.pinning = pinning
        self.map_extra = map_extra
        self.key_type_id = key_type_id
        self.value_type_id = value_type_id
        self.values_offset = values_offset
        self.values_is_prog = values_is_prog
        self.inner = inner


_ARRAY_OF_MAPS, _HASH_OF_MAPS, _PROG_ARRAY = 12, 13, 3


def _map_int(btf: Btf, map_name: str, m: Member) -> int:
    t = btf.resolve(m.type)
    if not isinstance(t, Ptr):
        raise BtfError(f"map '{map_name}': attribute '{m.name}': expected PTR, got {t.kind.name}",
                       section=".maps", symbol=map_name)
    arr = btf[t.type]
    if not isinstance(arr, Array):
        raise BtfError(f"map '{map_name}': attribute '{m.name}': expected pointer to ARRAY, got "
                       f"pointer to {arr.kind.name}", section=".maps", symbol=map_name)
    return arr.nelems


def _map_long(btf: Btf, map_name: str, m: Member) -> int:
    """A 64-bit attribute: ``__uint`` (pointer to array) or libbpf's ``__ulong(name, val)``,
    an anonymous ENUM/ENUM64 whose one enumerator is the value."""
    t = btf.resolve(m.type)
    if isinstance(t, Ptr):
        return _map_int(btf, map_name, m)
    if not isinstance(t, Enum):
        raise BtfError(f"map '{map_name}': attribute '{m.name}': expected PTR, ENUM or ENUM64 "
                       f"(__uint or __ulong), got {t.kind.name}", section=".maps", symbol=map_name)
    if len(t.values) != 1:
        raise BtfError(f"map '{map_name}': attribute '{m.name}': an __ulong enum has one "
                       f"enumerator, this one {len(t.values)}", section=".maps", symbol=map_name)
    return t.values[0].value & 0xFFFFFFFFFFFFFFFF


def annotate_error(e: ElfError, *, object: Optional[str] = None, section: Optional[str] = None,
                   symbol: Optional[str] = None, offset: Optional[int] = None) -> ElfError:
    """The same error (same class, same message) with its empty location fields filled in.

    Returns *e* itself when nothing is added.  Never raises.
    """
    new_object = e.object or object
    new_section = e.section or section
    new_symbol = e.symbol or symbol
    new_offset = e.offset if e.offset is not None else offset
    if (new_object, new_section, new_symbol, new_offset) == (e.object, e.section, e.symbol, e.offset):
        return e
    parts = []
    if e.object:
        parts.append(f"object {e.object!r}")
    if e.section:
        parts.append(f"section {e.section!r}")
    if e.symbol:
        parts.append(f"symbol {e.symbol!r}")
    if e.offset is not None:
        parts.append(f"offset {e.offset:#x}")
    prefix = f"{', '.join(parts)}: " if parts else ""
    msg = str(e)
    if prefix and msg.startswith(prefix):
        msg = msg[len(prefix):]
    new = type(e)(msg, object=new_object, section=new_section, symbol=new_symbol, offset=new_offset)
    new.__cause__ = e.__cause__
    return new


def parse_map_def(btf: Btf, def_type_id: int, map_name: str, *, inner: bool = False) -> BtfMapDef:
    """Decode the struct *def_type_id* of a ``.maps`` variable called *map_name*.

    Follows libbpf's rules: integer attributes are pointers to arrays whose
    element count is the value; ``key``/``value`` are pointers to the type;
    ``values`` must be the last member, a zero-length array of pointers to
    an inner definition struct (map-in-map) or a function prototype
    (program array).  Unknown members are ignored.

    Raises :class:`BtfError` for a malformed definition: not a struct, an
    attribute of the wrong shape, conflicting sizes, no map type, a nested
    ``values`` in an inner definition, or ``values`` on another map type.
    The error's ``symbol`` is the map name.
    """
    try:
        d = _parse_map_def_raw(btf, def_type_id, map_name, inner) if isinstance(btf, Btf) else None
        return d if d is not None else _parse_map_def(btf, def_type_id, map_name, inner)
    except BtfError as e:
        new = annotate_error(e, section=".maps", symbol=map_name)
        if new is e:
            raise
        raise new from e


_RAW_INT_ATTRS = frozenset(("type", "max_entries", "map_flags", "numa_node", "pinning", "key_size",
                            "value_size", "map_extra"))


def _parse_map_def_raw(btf: Btf, def_type_id: int, map_name: str, inner: bool) -> Optional[BtfMapDef]:
    """:func:`_parse_map_def` of a well-formed definition, read from never-decoded records.

    None for anything else (a ``values`` member, a decoded or odd record, a
    definition the object path would refuse): :func:`_parse_map_def` then
    decides, and raises its errors.  Makes no type objects.  Never raises.
    """
    rec = btf._raw_rec
    r = rec(def_type_id)
    for _ in range(_MAX_RESOLVE_DEPTH):
        if r is None or r[1] not in _MODS_AND_TYPEDEF:
            break
        r = rec(r[3])
    if r is None or r[1] != Kind.STRUCT:
        return None
    off, _, info, _ = r
    buf = btf._types_raw
    d = BtfMapDef(map_name)
    key_set = value_set = False
    try:
        for i in range(info & 0xFFFF):
            mn, mt, _ = _3U32.unpack_from(buf, off + 12 + 12 * i)
            name = btf._str_or_none(mn, _MAX_NAME_LEN) if mn else ""
            if name in _RAW_INT_ATTRS:
                p = rec(mt)
                for _ in range(_MAX_RESOLVE_DEPTH):
                    if p is None or p[1] not in _MODS_AND_TYPEDEF:
                        break
                    p = rec(p[3])
                if p is None or p[1] != Kind.PTR:
                    return None
                a = rec(p[3])
                if a is None or a[1] != Kind.ARRAY:
                    return None
                val = _U32.unpack_from(buf, a[0] + 20)[0]
                if name == "pinning" and inner:
                    return None
                if name == "key_size":
                    if key_set and d.key_size != val:
                        return None
                    d.key_size, key_set = val, True
                elif name == "value_size":
                    if value_set and d.value_size != val:
                        return None
                    d.value_size, value_set = val, True
                else:
                    setattr(d, name, val)
            elif name == "key" or name == "value":
                p = rec(mt)
                if p is None or p[1] != Kind.PTR:
                    return None
                sz = btf._raw_size_of(p[3])
                if sz is None:
                    return None
                if name == "key":
                    if key_set and d.key_size != sz:
                        return None
                    d.key_size, key_set, d.key_type_id = sz, True, p[3]
                else:
                    if value_set and d.value_size != sz:
                        return None
                    d.value_size, value_set, d.value_type_id = sz, True, p[3]
            elif name == "values":
                if inner or i != (info & 0xFFFF) - 1 or value_set and d.value_size != 4 or \
                        d.type not in (_ARRAY_OF_MAPS, _HASH_OF_MAPS, _PROG_ARRAY):
                    return None
                d.value_size, value_set = 4, True
                a = rec(mt)
                if a is None or a[1] != Kind.ARRAY or _U32.unpack_from(buf, a[0] + 20)[0]:
                    return None
                p = rec(_U32.unpack_from(buf, a[0] + 12)[0])
                for _ in range(_MAX_RESOLVE_DEPTH):
                    if p is None or p[1] not in _MODS_AND_TYPEDEF:
                        break
                    p = rec(p[3])
                if p is None or p[1] != Kind.PTR:
                    return None
                target_id = p[3]
                tg = rec(target_id)
                for _ in range(_MAX_RESOLVE_DEPTH):
                    if tg is None or tg[1] not in _MODS_AND_TYPEDEF:
                        break
                    target_id = tg[3]
                    tg = rec(target_id)
                if tg is None:
                    return None
                bitoff = _U32.unpack_from(buf, off + 20 + 12 * i)[0]
                if info >> 31:
                    bitoff &= 0xFFFFFF
                if bitoff % 8:
                    return None
                d.values_offset = bitoff // 8
                if d.type == _PROG_ARRAY:
                    if tg[1] != Kind.FUNC_PROTO:
                        return None
                    d.values_is_prog = True
                else:
                    if tg[1] != Kind.STRUCT:
                        return None
                    d.inner = _parse_map_def_raw(btf, target_id, f"{map_name}.inner", True)
                    if d.inner is None:
                        return None
            elif name is None:
                return None
    except _TooLong:
        return None
    return d if d.type else None


def _parse_map_def(btf: Btf, def_type_id: int, map_name: str, inner: bool) -> BtfMapDef:
    d = BtfMapDef(map_name)
    t = btf.resolve(def_type_id)
    if not isinstance(t, Struct):
        raise BtfError(f"map '{map_name}': definition is {t.kind.name}, not a struct",
                       section=".maps", symbol=map_name)
    key_size_set = value_size_set = False
    for i, m in enumerate(t.members):
        name = m.name
        if name == "type":
            d.type = _map_int(btf, map_name, m)
        elif name == "max_entries":
            d.max_entries = _map_int(btf, map_name, m)
        elif name == "map_flags":
            d.map_flags = _map_int(btf, map_name, m)
        elif name == "numa_node":
            d.numa_node = _map_int(btf, map_name, m)
        elif name == "map_extra":
            d.map_extra = _map_long(btf, map_name, m)
        elif name == "pinning":
            if inner:
                raise BtfError(f"map '{map_name}': an inner map definition can't be pinned",
                               section=".maps", symbol=map_name)
            d.pinning = _map_int(btf, map_name, m)
        elif name in ("key_size", "value_size", "key", "value"):
            is_key = name.startswith("key")
            if name in ("key", "value"):
                ptr = btf[m.type]
                if not isinstance(ptr, Ptr):
                    raise BtfError(f"map '{map_name}': '{name}' is {ptr.kind.name}, not PTR",
                                   section=".maps", symbol=map_name)
                sz = btf.size_of(ptr.type)
                if is_key:
                    d.key_type_id = ptr.type
                else:
                    d.value_type_id = ptr.type
            else:
                sz = _map_int(btf, map_name, m)
            cur_set = key_size_set if is_key else value_size_set
            cur = d.key_size if is_key else d.value_size
            if cur_set and cur != sz:
                raise BtfError(f"map '{map_name}': conflicting {'key' if is_key else 'value'} size "
                               f"{cur} != {sz}", section=".maps", symbol=map_name)
            if is_key:
                d.key_size, key_size_set = sz, True
            else:
                d.value_size, value_size_set = sz, True
        elif name == "values":
            if inner:
                raise BtfError(f"map '{map_name}': multi-level inner maps are not supported",
                               section=".maps", symbol=map_name)
            if i != len(t.members) - 1:
                raise BtfError(f"map '{map_name}': 'values' must be the last member",
                               section=".maps", symbol=map_name)
            if d.type not in (_ARRAY_OF_MAPS, _HASH_OF_MAPS, _PROG_ARRAY):
                raise BtfError(f"map '{map_name}': 'values' needs a map-in-map or program array type",
                               section=".maps", symbol=map_name)
            if value_size_set and d.value_size != 4:
                raise BtfError(f"map '{map_name}': conflicting value size {d.value_size} != 4",
                               section=".maps", symbol=map_name)
            d.value_size, value_size_set = 4, True
            arr = btf[m.type]
            if not isinstance(arr, Array) or arr.nelems:
                raise BtfError(f"map '{map_name}': 'values' is not a zero-length array",
                               section=".maps", symbol=map_name)
            ptr = btf.resolve(arr.type)
            if not isinstance(ptr, Ptr):
                raise BtfError(f"map '{map_name}': 'values' elements are {ptr.kind.name}, not PTR",
                               section=".maps", symbol=map_name)
            target = btf.resolve(ptr.type)
            if m.offset % 8:
                raise BtfError(f"map '{map_name}': 'values' is not byte aligned",
                               section=".maps", symbol=map_name)
            d.values_offset = m.offset // 8
            if d.type == _PROG_ARRAY:
                if not isinstance(target, FuncProto):
                    raise BtfError(f"map '{map_name}': program array 'values' must point to a "
                                   f"function prototype, not {target.kind.name}",
                                   section=".maps", symbol=map_name)
                d.values_is_prog = True
            else:
                if not isinstance(target, Struct):
                    raise BtfError(f"map '{map_name}': map-in-map 'values' must point to a struct, "
                                   f"not {target.kind.name}", section=".maps", symbol=map_name)
                d.inner = _parse_map_def(btf, target.id, f"{map_name}.inner", True)
    if d.type == 0:
        raise BtfError(f"map '{map_name}': map type isn't specified", section=".maps", symbol=map_name)
    return d


# --------------------------------------------------------------------------
# BTF.ext
# --------------------------------------------------------------------------

class FuncInfo(Record):
    """``bpf_func_info``: ``insn_off`` is in bytes from the section start (as in the object)."""

    __slots__ = ("insn_off", "type_id")
    _fields = __slots__

    insn_off: int
    type_id: int

    def __init__(self, insn_off: int, type_id: int) -> None:
        self.insn_off = insn_off
        self.type_id = type_id


class LineInfo(Record):
    """``bpf_line_info``; ``file_name_off``/``line_off`` index the ``.BTF`` strings."""

    __slots__ = ("insn_off", "file_name_off", "line_off", "line_col", "file_name", "line")
    _fields = __slots__

    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int
    file_name: str
    line: str

    def __init__(self, insn_off: int, file_name_off: int, line_off: int, line_col: int,
                 file_name: str = "", line: str = "") -> None:
        self.insn_off = insn_off
        self.file_name_off = file_name_off
        self.line_off = line_off
        self.line_col = line_col
        self.file_name = file_name
        self.line = line

    @property
    def line_num(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


class CoreRelo(Record):
    """``bpf_core_relo``: a CO-RE relocation at ``insn_off`` (bytes from the section start)."""

    __slots__ = ("insn_off", "type_id", "access_str_off", "kind", "access_str")
    _fields = __slots__

    insn_off: int
    type_id: int
    access_str_off: int
    kind: int
    access_str: str

    def __init__(self, insn_off: int, type_id: int, access_str_off: int, kind: int,
                 access_str: str = "") -> None:
        self.insn_off = insn_off
        self.type_id = type_id
        self.access_str_off = access_str_off
        self.kind = kind
        self.access_str = access_str


class ExtInfo(Record):
    """BTF.ext records of one function, ``insn_off`` rebased to instruction indexes from its start."""

    _fields = ("func_info", "line_info", "core_relos")
    _factories = {"func_info": list, "line_info": list, "core_relos": list}

    func_info: List[FuncInfo]
    line_info: List[LineInfo]
    core_relos: List[CoreRelo]

    def __init__(self, func_info: Optional[List[FuncInfo]] = None,
                 line_info: Optional[List[LineInfo]] = None,
                 core_relos: Optional[List[CoreRelo]] = None) -> None:
        self.func_info = [] if func_info is None else func_info
        self.line_info = [] if line_info is None else line_info
        self.core_relos = [] if core_relos is None else core_relos


_MIN_REC = {"func_info": 8, "line_info": 16, "core_relo": 16}
#: subsection -> (record number for _core.btf.ext_records, which u32s of a record are string
#: offsets, the BtfExt attribute holding its records)
_EXT_SUBS = {"func_info": (0, 0, "func_info"), "line_info": (1, 0b110, "line_info"),
             "core_relo": (2, 0b100, "core_relos")}


class _ExtTable:
    """A :class:`BtfExt` record table (``func_info``, ``line_info``, ``core_relos``):
    section name -> records, made into objects from the checked raw subsection the first
    time it is read (``BtfExt._records``).  Assigning a table drops the raw records."""

    __slots__ = ("attr", "slot", "cls")

    def __init__(self, attr: str, cls: type) -> None:
        self.attr, self.slot, self.cls = attr, "_" + attr, cls

    def __get__(self, ext: Optional[BtfExt], owner: object = None) -> Any:
        if ext is None:
            return self
        table = getattr(ext, self.slot)
        if table is None:
            table = ext._records(self.attr, self.cls)
            setattr(ext, self.slot, table)
        return table

    def __set__(self, ext: BtfExt, table: Dict[str, List[Any]]) -> None:
        ext._raw.pop(self.attr, None)
        setattr(ext, self.slot, table)


class BtfExt:
    """A parsed ``.BTF.ext``: func_info, line_info and CO-RE relocations per ELF section.

    ``func_info``, ``line_info`` and ``core_relos`` map a section name to its
    records, in file order; ``*_rec_size`` keep the record sizes of the
    object.
    """

    def __init__(self) -> None:
        self.version = 1
        self.flags = 0
        # records not made into objects yet: attribute -> (subsection, record size,
        # [(section name, start, count, in order)], string section); see _records()
        self._raw: Dict[str, tuple] = {}
        self._func_info: Optional[Dict[str, List[FuncInfo]]] = {}
        self._line_info: Optional[Dict[str, List[LineInfo]]] = {}
        self._core_relos: Optional[Dict[str, List[CoreRelo]]] = {}
        self.func_info_rec_size = 8
        self.line_info_rec_size = 16
        self.core_relo_rec_size = 16

    if TYPE_CHECKING:
        #: section name -> its ``bpf_func_info`` records, in file order
        func_info: Dict[str, List[FuncInfo]]
        #: section name -> its ``bpf_line_info`` records, in file order (file names and
        #: source lines decoded when first asked for)
        line_info: Dict[str, List[LineInfo]]
        #: section name -> its ``bpf_core_relo`` records, in file order
        core_relos: Dict[str, List[CoreRelo]]
    else:
        func_info = _ExtTable("func_info", FuncInfo)
        line_info = _ExtTable("line_info", LineInfo)
        core_relos = _ExtTable("core_relos", CoreRelo)

    def _records(self, attr: str, cls: type) -> Dict[str, list]:
        """The records of *attr* as objects, from the checked raw subsection (once)."""
        from .._core import btf as cbtf    # (records are kept raw only when it exists)
        sub, rec_size, index, strings = self._raw.pop(attr)
        what = {"func_info": 0, "line_info": 1, "core_relos": 2}[attr]
        return cbtf.ext_records(sub, rec_size, index, what, cls, strings, _MAX_EXT_STRING,
                                CoreReloKind._value2member_map_)

    def _raw_records(self, attr: str, section: str) -> Optional[Tuple[List[memoryview], int]]:
        """*section*'s records of *attr* (``"func_info"``, ``"line_info"``, ``"core_relos"``)
        as raw bytes, no object made: ``([records of one run, ...], record size)``, ``([], size)``
        for a section without records; None once the records were made into objects (read
        the attribute then: it may have been edited).  Never raises for those names.
        """
        raw = self._raw.get(attr)
        if raw is None:
            return None
        sub, rec_size, index, _ = raw
        view = memoryview(sub)
        return [view[start:start + num * rec_size] for name, start, num, _ in index if name == section], rec_size

    def _pack_raw(self, attr: str, section: str, lo: int, hi: int, start: int, width: int,
                  out: "array.array[int]", last: int = -1) -> Optional[Tuple[int, bool]]:
        """Append *section*'s raw *attr* records (``"func_info"``: *width* 2, ``"line_info"``:
        4) with ``lo <= insn_off < hi`` to *out* in the kernel's layout, rebased to start at
        instruction *start*, without making record objects: ``(last, sorted)`` as
        :func:`bpfload._core.insn.pack_ext_records` returns for the same records, or None
        once they were made into objects (pack those: they may have been edited).  Raises
        what :func:`bpfload._core.btf.ext_pack` raises.
        """
        raw = self._raw.get(attr)
        if raw is None:
            return None
        from .._core import btf as cbtf
        sub, rec_size, index, _ = raw
        return cbtf.ext_pack(sub, rec_size, [r[1:] for r in index if r[0] == section],
                             lo, hi, start, width, out, last)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, btf: Btf) -> "BtfExt":
        """Parse a ``.BTF.ext`` blob whose names live in *btf*'s string section.

        Raises :class:`BtfError` for a bad magic/version/header, a subsection
        that does not fit, a record size below the minimum or not a multiple
        of 4, a truncated record list, or a bad string offset.  Every record
        is checked here; the record objects are made when an attribute is
        first read (the loader needs none of the text).
        """
        raw = bytes(data)
        if len(raw) < _EXT_HDR.size:
            raise BtfError(f"BTF.ext blob of {len(raw)} bytes is shorter than its header",
                           section=".BTF.ext")
        magic, version, flags, hdr_len, fi_off, fi_len, li_off, li_len = _EXT_HDR.unpack_from(raw, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF.ext magic {magic:#06x}", section=".BTF.ext")
        if version != 1:
            raise BtfError(f"unsupported BTF.ext version {version}", section=".BTF.ext")
        if hdr_len < _EXT_HDR.size or hdr_len > len(raw):
            raise BtfError(f"bad BTF.ext header length {hdr_len}", section=".BTF.ext")
        self = cls()
        self.version, self.flags = version, flags
        core_off = core_len = 0
        if hdr_len >= _EXT_HDR.size + 8:
            core_off, core_len = _2U32.unpack_from(raw, _EXT_HDR.size)
        body = raw[hdr_len:]
        compiled = _cbtf is not None and btf._base is None
        if compiled:
            self._func_info = self._line_info = self._core_relos = None
        self.func_info_rec_size = self._parse_sub(body, fi_off, fi_len, "func_info", btf, self,
                                                  compiled)
        self.line_info_rec_size = self._parse_sub(body, li_off, li_len, "line_info", btf, self,
                                                  compiled)
        self.core_relo_rec_size = self._parse_sub(body, core_off, core_len, "core_relo", btf, self,
                                                  compiled)
        return self

    @staticmethod
    def _parse_sub(body: bytes, off: int, length: int, what: str, btf: Btf, ext: "BtfExt",
                   compiled: bool = False) -> int:
        """Read subsection *what* of *ext* and return its record size.

        *compiled*: check every record with :func:`bpfload._core.btf.ext_index` and
        keep it raw (``ext._raw``); else make the objects now (the pure-Python twin,
        also the path of a BTF with a base).  Both raise the same errors.
        """
        minimum = _MIN_REC[what]
        attr = _EXT_SUBS[what][2]
        if length == 0:
            if compiled:
                setattr(ext, attr, {})
            return minimum
        if off + length > len(body) or off % 4:
            raise BtfError(f"BTF.ext {what} ({off}+{length}) does not fit the blob", section=".BTF.ext")
        sub = body[off:off + length]
        if len(sub) < 4:
            raise BtfError(f"BTF.ext {what}: no record size", section=".BTF.ext")
        (rec_size,) = _U32.unpack_from(sub, 0)
        if rec_size < minimum or rec_size % 4:
            raise BtfError(f"BTF.ext {what}: bad record size {rec_size}", section=".BTF.ext")
        if compiled:
            strings = btf._strings    # bytes (copied once per BTF): ext stays deep-copyable
            index, bad = _cbtf.ext_index(sub, rec_size, strings, _EXT_SUBS[what][1])
            if bad is not None:
                BtfExt._raise_index(what, rec_size, btf, *bad)
            ext._raw[attr] = (sub, rec_size, [(btf._str_or_none(r[0]),) + r[1:] for r in index],
                              strings)
            return rec_size
        out: Dict[str, list] = getattr(ext, attr)
        seen: Dict[int, str] = {}

        def text(off: int) -> str:
            # one decode per offset, each at most _MAX_EXT_STRING bytes (a source line is cut)
            got = seen.get(off)
            if got is None:
                got = btf._str_or_none(off, _MAX_EXT_STRING, truncate=True)
                if got is None:
                    got = btf.string(off)   # raises: offset outside the string section
                seen[off] = got
            return got

        p = 4
        while p < len(sub):
            if p + 8 > len(sub):
                raise BtfError(f"BTF.ext {what}: truncated section header", section=".BTF.ext", offset=p)
            sec_off, num = _2U32.unpack_from(sub, p)
            p += 8
            sec_name = btf._str_or_none(sec_off)
            if not sec_name:
                raise BtfError(f"BTF.ext {what}: bad section name offset {sec_off}", section=".BTF.ext")
            if num == 0:
                raise BtfError(f"BTF.ext {what}: section '{sec_name}' has no records",
                               section=".BTF.ext")
            if p + num * rec_size > len(sub):
                raise BtfError(f"BTF.ext {what}: section '{sec_name}' has {num} records of "
                               f"{rec_size} bytes, past the end", section=".BTF.ext")
            recs = out.setdefault(sec_name, [])
            for i in range(num):
                q = p + i * rec_size
                if what == "func_info":
                    recs.append(FuncInfo(*_2U32.unpack_from(sub, q)))
                elif what == "line_info":
                    a, b, c, d = _4U32.unpack_from(sub, q)
                    recs.append(LineInfo(a, b, c, d, text(b), text(c)))
                else:
                    a, b, c, d = _4U32.unpack_from(sub, q)
                    kind = CoreReloKind(d) if d in CoreReloKind._value2member_map_ else d
                    recs.append(CoreRelo(a, b, c, kind, text(c)))
            p += num * rec_size
        return rec_size

    @staticmethod
    def _raise_index(what: str, rec_size: int, btf: Btf, problem: str, value: int, num: int) -> None:
        """Raise what the Python reader raises for an :func:`~bpfload._core.btf.ext_index` problem."""
        if problem == "header":
            raise BtfError(f"BTF.ext {what}: truncated section header", section=".BTF.ext",
                           offset=value)
        if problem == "name":
            raise BtfError(f"BTF.ext {what}: bad section name offset {value}", section=".BTF.ext")
        sec_name = btf._str_or_none(value)
        if problem == "empty":
            raise BtfError(f"BTF.ext {what}: section '{sec_name}' has no records", section=".BTF.ext")
        if problem == "past":
            raise BtfError(f"BTF.ext {what}: section '{sec_name}' has {num} records of "
                           f"{rec_size} bytes, past the end", section=".BTF.ext")
        btf.string(value)   # raises: offset outside the string section
        raise BtfError(f"string offset {value} outside the BTF string section", section=".BTF")

    def for_function(self, section: str, offset: int, size: int) -> ExtInfo:
        """Records of the function at byte *offset*, *size* bytes long, in *section*.

        ``insn_off`` of the returned copies is an instruction index from the
        function start (the unit the kernel wants).  Never raises.
        """
        # (the constructors directly: dataclasses.replace() costs ~5 us a record, and a
        # large object's line info runs to thousands of records a load)
        end = offset + size
        res = ExtInfo()
        res.func_info = [FuncInfo((fi.insn_off - offset) // 8, fi.type_id)
                         for fi in self._window("func_info", self.func_info, section, offset, end)]
        res.line_info = [LineInfo((li.insn_off - offset) // 8, li.file_name_off, li.line_off, li.line_col,
                                  li.file_name, li.line)
                         for li in self._window("line_info", self.line_info, section, offset, end)]
        res.core_relos = [CoreRelo((cr.insn_off - offset) // 8, cr.type_id, cr.access_str_off, cr.kind,
                                   cr.access_str)
                          for cr in self._window("core_relos", self.core_relos, section, offset, end)]
        return res

    def _window(self, kind: str, table: Dict[str, list], section: str, start: int, end: int) -> list:
        """The records of *table*[*section*] with ``start <= insn_off < end``.

        clang writes each section's records in instruction order, so a function's
        records are one slice found by bisection (a scan per function made loading an
        object with hundreds of functions quadratic in its line info); records out of
        order are filtered one by one.
        """
        recs = table.get(section)
        if not recs:
            return []
        cache = self.__dict__.setdefault("_offsets", {})
        offs = cache.get((kind, section))
        if offs is None:
            offs = [r.insn_off for r in recs]
            if any(a > b for a, b in zip(offs, offs[1:])):
                offs = False
            cache[(kind, section)] = offs
        if offs is False:
            return [r for r in recs if start <= r.insn_off < end]
        return recs[bisect.bisect_left(offs, start):bisect.bisect_left(offs, end)]

    def __repr__(self) -> str:
        return (f"<BtfExt func_info={sum(map(len, self.func_info.values()))} "
                f"line_info={sum(map(len, self.line_info.values()))} "
                f"core_relos={sum(map(len, self.core_relos.values()))}>")
