"""Typed map views: keys and values decoded through BTF into Python values.

The raw interface of :class:`bpfload.Map` (bytes in, bytes out) stays the
fast path.  A :class:`TypedMap` is an opt-in view over a map that knows the
BTF types of its key and value and converts in both directions::

    tv = obj.maps["recs"].typed()            # BTF fetched from the kernel by id
    tv[{"addr": 1, "port": 80, "proto": 6}] = {"count": 3, "name": b"eth0"}
    tv[{"addr": 1, "port": 80, "proto": 6}]["count"]   # -> 3
    for key, value in tv.items(): ...

or, with any BTF at hand (an object's ``spec.btf`` before or after load)::

    tv = bpfload.TypedMap(m, obj.spec.btf, key_type_id, value_type_id)

Conversions (little-endian, as BTF is):

==================================  ===========================================
BTF type                            Python value
==================================  ===========================================
INT (any size, signed or not)       ``int`` (``_Bool``: ``bool``; encodes 0/1 only)
bitfield member / INT with offset   ``int``, read and written in place
ENUM, ENUM64                        an ``IntEnum`` member built from the BTF
                                    enumerators (a plain ``int`` for a value
                                    with no enumerator); encoding also takes
                                    the enumerator's name as a ``str``
FLOAT (2, 4, 8 bytes)               ``float``
PTR                                 ``int`` (the address)
array of ``char``/unsigned bytes    ``bytes`` of the full array length (NULs
                                    kept); encoding takes bytes, a ``str``
                                    (UTF-8) or a list of ints, zero-padded
other arrays                        ``list`` (nested for multi-dimensional)
STRUCT, UNION                       ``dict`` by member name; members of an
                                    anonymous struct/union appear in the
                                    enclosing dict, as in C
DATASEC (``.bss``/``.data`` maps)    ``dict`` by variable name
no type (id 0)                      ``int`` for 1/2/4/8 bytes, else ``bytes``
==================================  ===========================================

Encoding works like a C initializer: a dict may omit members (they are
zero) and a list may be shorter than its array (the rest is zero).  It
rejects, with :class:`TypedValueError` (a ``ValueError``), unknown member
names, out-of-range integers, unknown enumerator names, too-long arrays and
union members that disagree; a value of the wrong kind (a list for a struct,
a str for an int) raises :class:`TypedTypeError` (a ``TypeError``).  Both
say where: ``map 'recs': value.samples[1].port: 70000 is out of range for
__u16 (0..65535)``.

Kernel-managed fields (``struct bpf_spin_lock``, ``bpf_timer``, ``bpf_wq``,
list/rbtree heads and nodes, ``bpf_refcount``, kptrs) are left out of
decoded values, and encoding refuses them: the kernel ignores what user
space writes there (and with ``BPF_F_LOCK`` takes the lock itself).

Per-CPU maps decode to a list with one value per possible CPU; updating
takes such a list, or one value that every CPU gets.  (For a per-CPU map
whose value type is itself an array, pass the per-CPU list explicitly.)
Map-in-map and program arrays keep their raw conversion (ids out, fds in).

Pure Python on top of :class:`bpfload.Map`; the only kernel access of its
own is :func:`fetch_btf` (BPF_BTF_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD).
"""
from __future__ import annotations

import enum
import errno as _errno
import operator
import struct
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .. import errors
from .format import (Array, Btf, Datasec, Enum, Float, Int, IntEncoding, Kind, Ptr, Struct, Type,
                  TypeTag, Union, Var)

__all__ = ["TypedMap", "TypedValueError", "TypedTypeError", "Codec", "codec_for", "fetch_btf"]

#: Structs the kernel manages inside map values (found by name in the value's BTF).
KERNEL_STRUCTS = frozenset({
    "bpf_spin_lock", "bpf_res_spin_lock", "bpf_timer", "bpf_wq", "bpf_task_work",
    "bpf_list_head", "bpf_list_node", "bpf_rb_root", "bpf_rb_node", "bpf_refcount",
})
#: BTF type tags that make a pointer member a kptr (kernel-managed).
_KPTR_TAGS = frozenset({"kptr", "kptr_untrusted", "kptr_ref", "percpu_kptr", "uptr"})

_MODIFIER_KINDS = (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG)
_MAX_DEPTH = 64
_INT_FMT = {1: "b", 2: "h", 4: "i", 8: "q"}
_FLOAT_FMT = {2: "e", 4: "f", 8: "d"}

# Map types whose values are kernel object ids/fds (MapCore converts them).
_FD_VALUE_TYPES = frozenset({3, 12, 13})          # PROG_ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS
_KEYLESS_TYPES = frozenset({22, 23, 30})          # QUEUE, STACK, BLOOM_FILTER


class TypedValueError(errors.BpfError, ValueError):
    """A Python value that does not fit the BTF type (unknown member, out of range, too long).

    ``path`` is where in the key/value (``"value.samples[1].port"``),
    ``map_name`` the map's name (None outside a map).
    """

    def __init__(self, msg: str, path: str = "", map_name: Optional[str] = None):
        self.path = path
        self.map_name = map_name
        self.reason = msg
        where = f"map {map_name!r}: " if map_name else ""
        super().__init__(f"{where}{path + ': ' if path else ''}{msg}")


class TypedTypeError(errors.BpfError, TypeError):
    """A Python value of the wrong kind for the BTF type (a list for a struct, a str for an int)."""

    def __init__(self, msg: str, path: str = "", map_name: Optional[str] = None):
        self.path = path
        self.map_name = map_name
        self.reason = msg
        where = f"map {map_name!r}: " if map_name else ""
        super().__init__(f"{where}{path + ': ' if path else ''}{msg}")


class _Bad(Exception):
    """Raised inside codecs; collects the path on the way out."""

    def __init__(self, msg: str, kind: type = TypedValueError):
        super().__init__(msg)
        self.msg = msg
        self.kind = kind
        self.parts: List[str] = []


# --------------------------------------------------------------------------
# Codecs: one per BTF type, compiled once
# --------------------------------------------------------------------------

class Codec:
    """Converts one BTF type between bytes and Python values.

    ``size`` is the type's size in bytes, ``type_name`` its C spelling.
    Build one with :func:`codec_for`; use :meth:`decode` / :meth:`encode`.
    """

    __slots__ = ("size", "type_name")

    def __init__(self, size: int, type_name: str):
        self.size = size
        self.type_name = type_name

    def decode(self, raw, offset: int = 0) -> Any:
        """The Python value of the type's bytes at *offset* of *raw* (bytes-like).

        Raises ``struct.error``/``IndexError`` only if *raw* is too short.
        """
        return self._dec(raw, offset)

    def encode(self, value) -> bytes:
        """*value* as exactly ``size`` bytes.

        Raises :class:`TypedValueError` / :class:`TypedTypeError` (see the module doc).
        """
        buf = bytearray(self.size)
        try:
            self._enc(value, buf, 0)
        except _Bad as e:
            raise e.kind(e.msg, "".join(reversed(e.parts)).lstrip(".")) from None
        return bytes(buf)

    def _dec(self, raw, off: int) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _enc(self, value, buf: bytearray, off: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name} ({self.size} bytes)>"


def _as_int(value, type_name: str) -> int:
    if isinstance(value, (float, str, bytes, bytearray)):
        raise _Bad(f"expected an int for {type_name}, got {type(value).__name__}", TypedTypeError)
    try:
        return operator.index(value)
    except TypeError:
        raise _Bad(f"expected an int for {type_name}, got {type(value).__name__}",
                   TypedTypeError) from None


class _IntCodec(Codec):
    """A byte-aligned integer (or enum) of 1..16 bytes."""

    __slots__ = ("signed", "lo", "hi", "st", "boolean", "enum_cls", "by_name")

    def __init__(self, size: int, signed: bool, type_name: str, *, boolean: bool = False,
                 enum_cls=None, by_name: Optional[Dict[str, int]] = None):
        super().__init__(size, type_name)
        self.signed = signed
        self.boolean = boolean
        self.enum_cls = enum_cls
        self.by_name = by_name
        bits = size * 8
        self.lo, self.hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed
                            else (0, (1 << bits) - 1))
        if boolean:
            self.lo, self.hi = 0, 1
        fmt = _INT_FMT.get(size)
        self.st = struct.Struct("<" + (fmt if signed else fmt.upper())) if fmt else None

    def _finish(self, v: int):
        if self.enum_cls is not None:
            try:
                return self.enum_cls(v)
            except ValueError:
                return v
        if self.boolean and v in (0, 1):
            return bool(v)
        return v

    def _dec(self, raw, off):
        if self.st is not None:
            v = self.st.unpack_from(raw, off)[0]
        else:
            v = int.from_bytes(raw[off:off + self.size], "little", signed=self.signed)
        return self._finish(v)

    def _to_int(self, value) -> int:
        if self.by_name is not None and isinstance(value, str):
            v = self.by_name.get(value)
            if v is None:
                raise _Bad(f"{value!r} is not an enumerator of {self.type_name} "
                           f"(has: {', '.join(self.by_name) or 'none'})")
            return v
        v = _as_int(value, self.type_name)
        if not self.lo <= v <= self.hi:
            raise _Bad(f"{v} is out of range for {self.type_name} ({self.lo}..{self.hi})")
        return v

    def _enc(self, value, buf, off):
        v = self._to_int(value)
        if self.st is not None:
            self.st.pack_into(buf, off, v)
        else:
            buf[off:off + self.size] = v.to_bytes(self.size, "little", signed=self.signed)


class _BitsCodec(_IntCodec):
    """An integer of ``nbits`` bits, ``shift`` bits into ``size`` bytes (a bitfield)."""

    __slots__ = ("shift", "nbits", "mask")

    def __init__(self, nbytes: int, shift: int, nbits: int, signed: bool, type_name: str, **kw):
        super().__init__(nbytes, signed, type_name, **kw)
        self.st = None
        self.shift = shift
        self.nbits = nbits
        self.mask = (1 << nbits) - 1
        self.lo, self.hi = ((-(1 << (nbits - 1)), (1 << (nbits - 1)) - 1) if signed
                            else (0, self.mask))
        if self.boolean:
            self.lo, self.hi = 0, 1

    def _dec(self, raw, off):
        v = (int.from_bytes(raw[off:off + self.size], "little") >> self.shift) & self.mask
        if self.signed and v >> (self.nbits - 1):
            v -= 1 << self.nbits
        return self._finish(v)

    def _enc(self, value, buf, off):
        v = self._to_int(value)
        cur = int.from_bytes(buf[off:off + self.size], "little")
        cur = (cur & ~(self.mask << self.shift)) | ((v & self.mask) << self.shift)
        buf[off:off + self.size] = cur.to_bytes(self.size, "little")


class _RawCodec(_IntCodec):
    """No BTF type: an unsigned int for 1/2/4/8 bytes; bytes of the exact size also accepted."""

    __slots__ = ()

    def _enc(self, value, buf, off):
        if isinstance(value, (bytes, bytearray, memoryview)):
            b = bytes(value)
            if len(b) != self.size:
                raise _Bad(f"{len(b)} bytes given, {self.type_name} is {self.size}")
            buf[off:off + self.size] = b
            return
        super()._enc(value, buf, off)


class _FloatCodec(Codec):
    __slots__ = ("st",)

    def __init__(self, size: int, type_name: str):
        super().__init__(size, type_name)
        self.st = struct.Struct("<" + _FLOAT_FMT[size])

    def _dec(self, raw, off):
        return self.st.unpack_from(raw, off)[0]

    def _enc(self, value, buf, off):
        if not isinstance(value, (int, float)):
            raise _Bad(f"expected a float for {self.type_name}, got {type(value).__name__}",
                       TypedTypeError)
        try:
            self.st.pack_into(buf, off, value)
        except (OverflowError, struct.error):
            raise _Bad(f"{value!r} is out of range for {self.type_name}") from None


class _BytesCodec(Codec):
    """An array of char / unsigned bytes: ``bytes`` of the whole array."""

    __slots__ = ()

    def _dec(self, raw, off):
        return bytes(raw[off:off + self.size])

    def _enc(self, value, buf, off):
        if isinstance(value, str):
            b = value.encode()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            b = bytes(value)
        elif isinstance(value, (list, tuple)):
            out = bytearray()
            for i, x in enumerate(value):
                x = _as_int(x, "a byte")
                if not -128 <= x <= 255:
                    e = _Bad(f"{x} is out of range for a byte (-128..255)")
                    e.parts.append(f"[{i}]")
                    raise e
                out.append(x & 0xFF)
            b = bytes(out)
        else:
            raise _Bad(f"expected bytes or str for {self.type_name}, got {type(value).__name__}",
                       TypedTypeError)
        if len(b) > self.size:
            raise _Bad(f"{len(b)} bytes do not fit {self.type_name}")
        buf[off:off + len(b)] = b


class _ArrayCodec(Codec):
    __slots__ = ("elem", "n", "stride", "fast")

    def __init__(self, elem: Codec, n: int, type_name: str):
        super().__init__(elem.size * n, type_name)
        self.elem, self.n, self.stride = elem, n, elem.size
        self.fast = None
        if (type(elem) is _IntCodec and elem.st is not None and elem.enum_cls is None
                and not elem.boolean and n):
            self.fast = struct.Struct(f"<{n}{elem.st.format[-1]}")

    def _dec(self, raw, off):
        if self.fast is not None:
            return list(self.fast.unpack_from(raw, off))
        dec, stride = self.elem._dec, self.stride
        return [dec(raw, off + i * stride) for i in range(self.n)]

    def _enc(self, value, buf, off):
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"expected a list for {self.type_name}, got {type(value).__name__}",
                       TypedTypeError)
        if len(value) > self.n:
            raise _Bad(f"{len(value)} elements do not fit {self.type_name}")
        enc, stride = self.elem._enc, self.stride
        for i, x in enumerate(value):
            try:
                enc(x, buf, off + i * stride)
            except _Bad as e:
                e.parts.append(f"[{i}]")
                raise


class _Field:
    __slots__ = ("name", "codec", "off", "span")

    def __init__(self, name: Optional[str], codec: Codec, off: int, span: int):
        self.name, self.codec, self.off, self.span = name, codec, off, span


class _StructCodec(Codec):
    """STRUCT, UNION or DATASEC: a dict by member (variable) name."""

    __slots__ = ("fields", "index", "hidden", "union", "names")

    def __init__(self, size: int, type_name: str, union: bool = False):
        super().__init__(size, type_name)
        self.fields: List[_Field] = []
        #: name -> index of the field holding it (anonymous members hold their children's names)
        self.index: Dict[str, int] = {}
        #: kernel-managed member name -> what it is
        self.hidden: Dict[str, str] = {}
        self.union = union
        self.names: List[str] = []

    def _add(self, name: Optional[str], codec: Codec, off: int, span: int) -> None:
        if off + span > self.size:
            raise errors.BtfError(f"{self.type_name}: member {name or '(anon)'!r} "
                                  f"({off}+{span} bytes) is past the end of {self.type_name} "
                                  f"({self.size} bytes)", section=".BTF")
        i = len(self.fields)
        self.fields.append(_Field(name, codec, off, span))
        if name is None:
            assert isinstance(codec, _StructCodec)
            for n in codec.names:
                self.index.setdefault(n, i)
                self.names.append(n)
            for n, what in codec.hidden.items():
                self.hidden.setdefault(n, what)
        else:
            self.index.setdefault(name, i)
            self.names.append(name)

    def _dec(self, raw, off):
        d: Dict[str, Any] = {}
        for f in self.fields:
            if f.name is None:
                d.update(f.codec._dec(raw, off + f.off))
            else:
                d[f.name] = f.codec._dec(raw, off + f.off)
        return d

    def _enc(self, value, buf, off):
        if not isinstance(value, Mapping):
            raise _Bad(f"expected a dict for {self.type_name}, got {type(value).__name__}",
                       TypedTypeError)
        given: Dict[int, Any] = {}
        for k, v in value.items():
            i = self.index.get(k) if isinstance(k, str) else None
            if i is None:
                if k in self.hidden:
                    raise _Bad(f"member {k!r} is a {self.hidden[k]} that the kernel manages: "
                               "leave it out")
                raise _Bad(f"{self.type_name} has no member {k!r} "
                           f"(members: {', '.join(self.names) or 'none'})")
            f = self.fields[i]
            if f.name is None:
                given.setdefault(i, {})[k] = v
            else:
                given[i] = v
        if not self.union:
            for i, v in given.items():
                f = self.fields[i]
                try:
                    f.codec._enc(v, buf, off + f.off)
                except _Bad as e:
                    if f.name is not None:
                        e.parts.append(f".{f.name}")
                    raise
            return
        # A union: every given member is encoded alone; they must agree where they overlap.
        images = []
        for i, v in given.items():
            f = self.fields[i]
            tmp = bytearray(self.size)
            try:
                f.codec._enc(v, tmp, f.off)
            except _Bad as e:
                if f.name is not None:
                    e.parts.append(f".{f.name}")
                raise
            images.append((f, tmp))
        images.sort(key=lambda x: -x[0].span)
        for f, tmp in images:
            lo, hi = f.off, f.off + f.span
            for g, other in images:
                if g is f:
                    break
                if other[lo:hi] != tmp[lo:hi]:
                    raise _Bad(f"union members {_label(g)} and {_label(f)} of "
                               f"{self.type_name} disagree")
        if images:
            buf[off:off + self.size] = images[0][1]


def _label(f: _Field) -> str:
    if f.name is not None:
        return repr(f.name)
    names = f.codec.names if isinstance(f.codec, _StructCodec) else []
    return "(" + ", ".join(map(repr, names)) + ")"


# --------------------------------------------------------------------------
# BTF -> codec
# --------------------------------------------------------------------------

def _type_name(btf: Btf, type_id: int) -> str:
    """A C-like spelling of *type_id* for messages.  Never raises."""
    t = btf.get(type_id)
    for _ in range(_MAX_DEPTH):
        if t is None:
            return f"type [{type_id}]"
        if t.name:
            if t.kind == Kind.STRUCT:
                return f"struct {t.name}"
            if t.kind == Kind.UNION:
                return f"union {t.name}"
            if t.kind in (Kind.ENUM, Kind.ENUM64):
                return f"enum {t.name}"
            return t.name
        if isinstance(t, Array):
            return f"{_type_name(btf, t.type)}[{t.nelems}]"
        if t.kind in _MODIFIER_KINDS:
            t = btf.get(t.type)  # type: ignore[attr-defined]
            continue
        if isinstance(t, Ptr):
            return f"{_type_name(btf, t.type)} *"
        if t.kind == Kind.STRUCT:
            return "struct (anon)"
        if t.kind == Kind.UNION:
            return "union (anon)"
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return "enum (anon)"
        return "void" if t.kind == Kind.UNKN else t.kind.name.lower()
    return f"type [{type_id}]"


def _is_kptr(btf: Btf, ptr: Ptr) -> bool:
    t = btf.get(ptr.type)
    for _ in range(_MAX_DEPTH):
        if t is None or t.kind not in _MODIFIER_KINDS:
            return False
        if isinstance(t, TypeTag) and t.name in _KPTR_TAGS:
            return True
        t = btf.get(t.type)  # type: ignore[attr-defined]
    return False


def _kernel_managed(btf: Btf, type_id: int) -> Optional[str]:
    """What a member of this type is when the kernel manages it, else None."""
    t = btf.resolve(type_id)
    if isinstance(t, Struct) and t.name in KERNEL_STRUCTS:
        return f"struct {t.name}"
    if isinstance(t, Ptr) and _is_kptr(btf, t):
        return "kptr"
    return None


def _is_byte(t: Type) -> bool:
    return (isinstance(t, Int) and t.size == 1 and t.bits == 8 and t.offset == 0
            and not t.encoding & IntEncoding.BOOL
            and (not t.signed or t.name == "char" or bool(t.encoding & IntEncoding.CHAR)))


class _Compiler:
    def __init__(self, btf: Btf):
        self.btf = btf
        self.memo: Dict[int, Codec] = {}
        self.active: set = set()
        self.enums: Dict[int, Any] = {}

    def codec(self, type_id: int, depth: int = 0) -> Codec:
        c = self.memo.get(type_id)
        if c is not None:
            return c
        if depth > _MAX_DEPTH or type_id in self.active:
            raise errors.BtfError(f"type [{type_id}] nests too deeply (or contains itself)",
                                  section=".BTF")
        self.active.add(type_id)
        try:
            c = self._build(type_id, depth)
        finally:
            self.active.discard(type_id)
        self.memo[type_id] = c
        return c

    def _enum_class(self, t: Enum, name: str):
        if t.id in self.enums:
            return self.enums[t.id]
        cls = None
        if t.values:
            try:
                cls = enum.IntEnum(t.name or f"enum_{t.id}",  # type: ignore[misc]
                                   [(v.name, v.value) for v in t.values])
            except Exception:  # names Enum reserves (_sunder_, mro...): stay with ints
                cls = None
        self.enums[t.id] = cls
        return cls

    def _int_kw(self, t: Type, name: str) -> Dict[str, Any]:
        if isinstance(t, Enum):
            return dict(enum_cls=self._enum_class(t, name),
                        by_name={v.name: v.value for v in t.values})
        if isinstance(t, Int):
            return dict(boolean=bool(t.encoding & IntEncoding.BOOL))
        return {}

    def _build(self, type_id: int, depth: int) -> Codec:
        btf = self.btf
        name = _type_name(btf, type_id)
        t = btf.resolve(type_id)
        if isinstance(t, Int):
            if t.offset or t.bits != t.size * 8:
                return _BitsCodec(t.size, t.offset, t.bits, t.signed, name, **self._int_kw(t, name))
            return _IntCodec(t.size, t.signed, name, **self._int_kw(t, name))
        if isinstance(t, Enum):  # Enum64 included
            return _IntCodec(t.size, t.signed, name, **self._int_kw(t, name))
        if isinstance(t, Ptr):
            return _IntCodec(8, False, name)
        if isinstance(t, Float):
            if t.size in _FLOAT_FMT:
                return _FloatCodec(t.size, name)
            return _BytesCodec(t.size, name)
        if isinstance(t, Array):
            et = btf.resolve(t.type)
            if _is_byte(et):
                return _BytesCodec(t.nelems, name)
            return _ArrayCodec(self.codec(t.type, depth + 1), t.nelems, name)
        if isinstance(t, (Struct, Union)):
            c = _StructCodec(t.size, name, union=isinstance(t, Union))
            for m in t.members:
                self._member(c, t, m, depth)
            return c
        if isinstance(t, Datasec):
            c = _StructCodec(t.size, name)
            for vsi in t.vars:
                var = btf.get(vsi.type)
                if not isinstance(var, Var):
                    continue
                c._add(var.name, self.codec(var.type, depth + 1), vsi.offset, vsi.size)
            return c
        raise errors.BtfError(f"type [{type_id}] ({name}) is {t.kind.name}: no value to decode",
                              section=".BTF")

    def _member(self, c: _StructCodec, parent: Type, m, depth: int) -> None:
        btf = self.btf
        what = _kernel_managed(btf, m.type)
        if what is not None:
            if m.name:
                c.hidden[m.name] = what
            return
        mt = btf.resolve(m.type)
        if m.bitfield_size or (isinstance(mt, Int) and (mt.offset or mt.bits != mt.size * 8)):
            if not isinstance(mt, (Int, Enum)):
                raise errors.BtfError(f"{_type_name(btf, parent.id)}: bitfield {m.name!r} is "
                                      f"{mt.kind.name}", section=".BTF")
            bit = m.offset + (mt.offset if isinstance(mt, Int) else 0)
            nbits = m.bitfield_size or (mt.bits if isinstance(mt, Int) else mt.size * 8)
            start = bit // 8
            shift = bit - start * 8
            nbytes = (shift + nbits + 7) // 8
            name = _type_name(btf, m.type) + f":{nbits}"
            signed = mt.signed
            codec: Codec = _BitsCodec(nbytes, shift, nbits, signed, name, **self._int_kw(mt, name))
            if m.name:
                c._add(m.name, codec, start, nbytes)
            return
        if m.offset % 8:
            raise errors.BtfError(f"{_type_name(btf, parent.id)}: member {m.name!r} is not "
                                  "byte aligned", section=".BTF")
        sub = self.codec(m.type, depth + 1)
        if m.name:
            c._add(m.name, sub, m.offset // 8, sub.size)
        elif isinstance(sub, _StructCodec):
            c._add(None, sub, m.offset // 8, sub.size)


def codec_for(btf: Btf, type_id: int, size: Optional[int] = None) -> Codec:
    """The :class:`Codec` of *type_id* in *btf*; type id 0: untyped bytes of *size*.

    Raises :class:`bpfload.BtfError` for a type with no value (void, func),
    a malformed type, or (when *size* is given) a size that differs from
    the type's.
    """
    if not type_id:
        if size is None:
            raise ValueError("type id 0 (no type) needs a size")
        if size in _INT_FMT:
            return _RawCodec(size, False, f"{size}-byte value")
        return _BytesCodec(size, f"{size}-byte value")
    c = _Compiler(btf).codec(type_id)
    if size is not None and c.size != size:
        raise errors.BtfError(f"type [{type_id}] ({c.type_name}) is {c.size} bytes, "
                              f"not {size}", section=".BTF")
    return c


# --------------------------------------------------------------------------
# kernel BTF by id
# --------------------------------------------------------------------------

def fetch_btf(btf_id: int) -> Btf:
    """The BTF object with kernel id *btf_id*, parsed (BPF_BTF_GET_FD_BY_ID + GET_INFO).

    Module BTF is parsed on top of vmlinux.  Raises
    :class:`bpfload.SyscallError` when no such BTF exists (ENOENT) or
    access is denied (needs CAP_SYS_ADMIN), :class:`bpfload.BtfError` when
    the blob does not parse.  Needs Linux 5.4 (BTF info by fd).
    """
    from .._core import syscall as _sys
    from . import kernel as kbtf
    with _sys.get_fd_by_id("btf", btf_id) as fd:
        _id, data, name, kernel_btf = _sys.btf_info(fd.fileno(), f"BTF id {btf_id}")
    if kernel_btf and name == "vmlinux":
        return kbtf.vmlinux()
    base = kbtf.vmlinux() if kernel_btf else None
    return Btf.parse(data, base=base)


# --------------------------------------------------------------------------
# TypedMap
# --------------------------------------------------------------------------

class TypedMap:
    """A view of *map* that converts keys and values through BTF.

    ``TypedMap(map, btf, key_type_id, value_type_id)``: *btf* is a
    :class:`bpfload.btf.Btf` holding the types (an object's ``spec.btf``,
    or :func:`fetch_btf`); a type id of 0 means untyped (an int for 1/2/4/8
    bytes, else bytes).  ``map.typed()`` builds one from the BTF the map
    was created with.  The map is not owned: closing the view is closing
    nothing.

    Raises :class:`bpfload.BtfError` when a type has no value or its size
    differs from the map's key/value size.
    """

    def __init__(self, map, btf: Optional[Btf], key_type_id: int = 0, value_type_id: int = 0):
        self.map = map
        self.btf = btf
        self.key_type_id = key_type_id
        self.value_type_id = value_type_id
        if btf is None and (key_type_id or value_type_id):
            raise ValueError("type ids need the BTF that defines them")
        name = getattr(map, "name", None)
        try:
            self._key = (codec_for(btf, key_type_id, map.key_size)  # type: ignore[arg-type]
                         if map.key_size else None)
            self._value: Optional[Codec] = None
            if map.type not in _FD_VALUE_TYPES:
                self._value = codec_for(btf, value_type_id, map.value_size)  # type: ignore[arg-type]
        except errors.BtfError as e:
            raise errors.BtfError(f"map {name!r}: {e}", section=".BTF") from e
        self._percpu = bool(getattr(map, "percpu", False))
        self._ncpus = int(getattr(map, "ncpus", 1))
        self._keyless = map.type in _KEYLESS_TYPES

    @classmethod
    def for_map(cls, map, btf: Optional[Btf] = None, key_type_id: Optional[int] = None,
                value_type_id: Optional[int] = None) -> "TypedMap":
        """A view with the BTF and type ids the kernel reports for *map*, unless given.

        Raises :class:`bpfload.BtfError` when the map was created without
        BTF and no *btf* is given; :class:`bpfload.SyscallError` when its
        BTF cannot be fetched.
        """
        if btf is None or key_type_id is None or value_type_id is None:
            info = map.info()
            if key_type_id is None:
                key_type_id = info.btf_key_type_id
            if value_type_id is None:
                value_type_id = info.btf_value_type_id
            if btf is None:
                if not info.btf_id:
                    raise errors.BtfError(
                        f"map {map.name!r} was created without BTF: pass btf= with "
                        "key_type_id/value_type_id (e.g. from the object's spec)", section=".BTF")
                btf = fetch_btf(info.btf_id)
        return cls(map, btf, key_type_id, value_type_id)

    # -- conversions ----------------------------------------------------------
    @property
    def key_codec(self) -> Optional[Codec]:
        return self._key

    @property
    def value_codec(self) -> Optional[Codec]:
        """None for map-in-map and program arrays (their values are ids/fds)."""
        return self._value

    def _encode(self, codec: Codec, value, what: str) -> bytes:
        buf = bytearray(codec.size)
        try:
            codec._enc(value, buf, 0)
        except _Bad as e:
            raise e.kind(e.msg, what + "".join(reversed(e.parts)), self.map.name) from None
        return bytes(buf)

    def encode_key(self, key) -> bytes:
        """*key* as the map's key bytes.  Raises :class:`TypedValueError`/:class:`TypedTypeError`."""
        if self._key is None:
            raise TypeError(f"map {self.map.name!r} has no keys")
        return self._encode(self._key, key, "key")

    def decode_key(self, raw) -> Any:
        if self._key is None:
            raise TypeError(f"map {self.map.name!r} has no keys")
        return self._key._dec(raw, 0)

    def encode_value(self, value):
        """*value* as what :meth:`bpfload.Map.update` takes.

        Per-CPU maps: a list/tuple is one value per CPU (a list of bytes
        comes back), anything else one value for every CPU.  Raises
        :class:`TypedValueError`/:class:`TypedTypeError`.
        """
        c = self._value
        if c is None:
            return value
        if self._percpu and isinstance(value, (list, tuple)):
            if len(value) != self._ncpus:
                raise TypedValueError(f"per-CPU value needs {self._ncpus} entries (possible CPUs), "
                                      f"got {len(value)}", "value", self.map.name)
            return [self._encode(c, v, f"value[cpu {i}]") for i, v in enumerate(value)]
        return self._encode(c, value, "value")

    def decode_value(self, raw) -> Any:
        """Bytes (per-CPU: a list of bytes) from the map -> Python value(s)."""
        c = self._value
        if c is None or raw is None:
            return raw
        if isinstance(raw, list):
            return [c._dec(r, 0) for r in raw]
        return c._dec(raw, 0)

    # -- elements -------------------------------------------------------------
    def lookup(self, key, flags: int = 0) -> Any:
        """The decoded value for *key*, or None when absent (*flags*: ``BPF_F_LOCK``)."""
        return self.decode_value(self.map.lookup(self.encode_key(key), flags))

    def get(self, key, default=None) -> Any:
        v = self.lookup(key)
        return default if v is None else v

    def __getitem__(self, key) -> Any:
        v = self.lookup(key)
        if v is None:
            raise errors.MapKeyError("BPF_MAP_LOOKUP_ELEM", _errno.ENOENT, self.map.name,
                                     f"key {key!r}")
        return v

    def update(self, key, value, flags: int = 0) -> None:
        """Write *value* at *key* (*flags*: ``BPF_ANY``/``BPF_NOEXIST``/``BPF_EXIST``, ``BPF_F_LOCK``)."""
        self.map.update(self.encode_key(key), self.encode_value(value), flags)

    def __setitem__(self, key, value) -> None:
        self.update(key, value)

    def delete(self, key) -> None:
        self.map.delete(self.encode_key(key))

    def __delitem__(self, key) -> None:
        self.delete(key)

    def __contains__(self, item) -> bool:
        if self._keyless:
            return self.encode_value(item) in self.map
        return self.map.lookup(self.encode_key(item)) is not None

    def lookup_and_delete(self, key, flags: int = 0) -> Any:
        """Remove *key* and return its decoded value (None when absent)."""
        return self.decode_value(self.map.lookup_and_delete(self.encode_key(key), flags))

    # -- iteration ------------------------------------------------------------
    def keys(self) -> List[Any]:
        dec = self.decode_key
        return [dec(k) for k in self.map.keys()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def items(self) -> List[Tuple[Any, Any]]:
        """Every ``(key, value)``, decoded (one batch read of the map)."""
        dk, dv = self.decode_key, self.decode_value
        return [(dk(k), dv(v)) for k, v in self.map.items()]

    def values(self) -> List[Any]:
        dv = self.decode_value
        return [dv(v) for _, v in self.map.items()]

    # -- queue / stack / bloom filter ---------------------------------------
    def push(self, value, flags: int = 0) -> None:
        self.map.push(self.encode_value(value), flags)

    def pop(self) -> Any:
        return self.decode_value(self.map.pop())

    def peek(self) -> Any:
        return self.decode_value(self.map.peek())

    def __repr__(self) -> str:
        k = self._key.type_name if self._key else "-"
        v = self._value.type_name if self._value else "raw"
        return f"<TypedMap {self.map.name!r} key={k} value={v}{' per-CPU' if self._percpu else ''}>"
