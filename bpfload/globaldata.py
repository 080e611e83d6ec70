"""Global variables of a BPF object, read and written through the map's memory.

``obj.bss``, ``obj.data`` and ``obj.rodata`` are :class:`GlobalData`
accessors (libbpf skeleton's ``skel->bss``, ``skel->data``, ``skel->rodata``):

* before :meth:`~bpfload.BpfObject.load`, ``obj.rodata["cfg"] = 3`` edits the
  section image the map will be created with;
* after load, a section whose map is ``BPF_F_MMAPABLE`` (libbpf's rule: it
  holds at least one non-static variable) is mapped into this process once,
  and ``obj.bss["counter"]`` reads the live value from that mapping with no
  bpf(2) call; writing stores into it.  ``.rodata`` is frozen at load and
  mapped read-only: writing raises :class:`bpfload.ReadOnlyError`.  A
  section without the flag (only static variables) falls back to
  BPF_MAP_LOOKUP_ELEM / BPF_MAP_UPDATE_ELEM of the whole section.
* :meth:`GlobalData.view` is a memoryview over one live variable (typed:
  ``view("counter")[0]`` is the int), :meth:`GlobalData.numpy` the same as
  a NumPy array, for polling loops that cannot afford even a dict lookup.

Values convert through the variable's BTF type like typed map values
(:mod:`bpfload.btf.typed`): integers and enums are ints (an enum an
``IntEnum`` member), ``char`` arrays bytes, other arrays lists, structs and
unions dicts, floats floats.  Writing takes an int (packed to the variable's
size, two's complement for negative values), bytes of exactly the
variable's size, or what the BTF codec encodes (a dict for a struct, a list
for an array, a str for a char array).  Without BTF, reading gives bytes.

Closing the object releases the mappings; views still held by the caller
then read zeros (they never point at unmapped memory).
"""
from __future__ import annotations

import sys

from . import errors
from ._core.syscall import index_int
from .spec import GlobalVar

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = ["GlobalData"]

_PACKABLE = (1, 2, 4, 8)
_INT_FORMATS = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
                (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}
_FLOAT_FORMATS = {4: "f", 8: "d"}


class GlobalData:
    """Global variables of one data section kind (``.bss``, ``.data``, ``.rodata``), by name.

    ``.data`` includes ``.data.*`` sections, ``.rodata`` includes ``.rodata.*``.
    ``g[name]`` reads, ``g[name] = value`` writes (see the module doc for the
    conversions); ``name in g``, ``g.keys()`` and iteration list the
    variables.  Unknown names raise :class:`bpfload.NotFoundError` (a
    KeyError).  No kernel version needed before load; mmapable global data
    needs Linux 5.5.
    """

    def __init__(self, obj: Any, prefix: str) -> None:
        self._obj = obj
        self._prefix = prefix
        #: after load: name -> 1-element memoryview cast to the int's format (every mapped int)
        self._ints: Dict[str, memoryview] = {}
        #: the same for the writable ones
        self._wints: Dict[str, memoryview] = {}
        #: after load: name -> byte memoryview of the variable in its mapping
        self._views: Dict[str, memoryview] = {}
        #: every memoryview made here (released on close), and the ones handed out by view()
        self._made: List[memoryview] = []
        self._handed: Dict[str, memoryview] = {}
        self._bound: set[str] = set()
        self._codecs: Dict[str, Any] = {}
        self._types: Optional[Dict[str, int]] = None

    # -- names ------------------------------------------------------------------
    def _mine(self, v: GlobalVar) -> bool:
        return v.section == self._prefix or v.section.startswith(self._prefix + ".")

    def _var(self, name: str) -> GlobalVar:
        v = self._obj.spec.variables.get(name)
        if v is None or not self._mine(v):
            raise errors.NotFoundError(f"object {self._obj.name!r}: no variable {name!r} in {self._prefix} "
                                       f"(has: {', '.join(sorted(self.keys())) or 'none'})")
        return v

    def keys(self) -> List[str]:
        """Names of this section kind's variables (``.rodata`` includes ``.rodata.*``)."""
        return [n for n, v in self._obj.spec.variables.items() if self._mine(v)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    # -- types ----------------------------------------------------------------
    def _type_id(self, v: GlobalVar) -> int:
        """The BTF type id of *v* (0: no BTF says)."""
        if self._types is None:
            from .btf import Datasec, Kind, Var
            types: Dict[str, int] = {}
            btf = self._obj.spec.btf
            if btf is not None:
                for sec_name in {x.section for x in self._obj.spec.variables.values() if self._mine(x)}:
                    sec = btf.find(sec_name, Kind.DATASEC)
                    if not isinstance(sec, Datasec):
                        continue
                    for info in sec.vars:
                        var = btf.get(info.type)
                        if isinstance(var, Var) and var.name:
                            types[var.name] = var.type
            self._types = types
        return self._types.get(v.name, 0)

    def _codec(self, v: GlobalVar) -> Any:
        """The BTF codec of *v*, or None (no BTF, or a type whose size is not the variable's)."""
        if v.name not in self._codecs:
            codec = None
            tid = self._type_id(v)
            if tid:
                from .btf.typed import codec_for
                try:
                    codec = codec_for(self._obj.spec.btf, tid)
                except (errors.BtfError, ValueError):
                    codec = None
                if codec is not None and codec.size != v.size:
                    codec = None
            self._codecs[v.name] = codec
        return self._codecs[v.name]

    def _format(self, v: GlobalVar) -> Tuple[Optional[str], int]:
        """(struct format, element count) when *v* is a plain int or float, or an array of them
        (what a memoryview can show typed); (None, 0) otherwise."""
        from .btf.typed import _ArrayCodec, _FloatCodec, _IntCodec
        c = self._codec(v)
        n = 1
        while isinstance(c, _ArrayCodec):
            n *= c.n
            c = c.elem
        if type(c) is _IntCodec and c.enum_cls is None and not c.boolean:
            fmt = _INT_FORMATS.get((c.size, c.signed))
        elif isinstance(c, _FloatCodec):
            fmt = _FLOAT_FORMATS.get(c.size)
        else:
            fmt = None
        return (fmt, n) if fmt is not None and c.size * n == v.size else (None, 0)

    # -- conversions ------------------------------------------------------------
    def _encode(self, v: GlobalVar, value: Any) -> bytes:
        iv = index_int(value)   # ints and anything with __index__ (NumPy integers)
        if iv is not None:
            if v.size not in _PACKABLE:
                raise ValueError(f"variable {v.name!r} is {v.size} bytes: pass bytes, not an int")
            try:
                return iv.to_bytes(v.size, sys.byteorder, signed=iv < 0)
            except OverflowError:
                raise ValueError(f"{iv} does not fit variable {v.name!r} ({v.size} bytes)") from None
        try:
            b = bytes(memoryview(value))   # not bytes(value): that of an __index__ object is zeros
        except TypeError:
            codec = self._codec(v)
            if codec is None:
                raise TypeError(f"variable {v.name!r}: value must be bytes-like or int, "
                                f"not {type(value).__name__}") from None
            try:
                return codec.encode(value)
            except (ValueError, TypeError) as e:
                raise type(e)(f"object {self._obj.name!r}: variable {v.name!r}: {e}") from None
        if len(b) != v.size:
            raise ValueError(f"variable {v.name!r} is {v.size} bytes, got {len(b)}")
        return b

    def _decode(self, v: GlobalVar, raw: Any) -> Any:
        codec = self._codec(v)
        if codec is None:
            return bytes(raw)
        return codec.decode(raw)

    # -- the live mapping -------------------------------------------------------
    def _map(self, v: GlobalVar) -> Any:
        return self._obj.maps[v.section]

    def _bind(self, section: str) -> bool:
        """Map *section* (once) and make the views of its variables; False if it is not mmapable."""
        if section in self._bound:
            return True
        m = self._obj.maps.get(section)
        if m is None or not (m.flags & (1 << 10)):       # BPF_F_MMAPABLE
            return False
        mapping = m.mmap()
        base = memoryview(mapping)
        self._made.append(base)
        for name, v in self._obj.spec.variables.items():
            if v.section != section:
                continue
            view = base[v.offset:v.offset + v.size]
            self._made.append(view)
            self._views[name] = view
            fmt, n = self._format(v)
            if fmt is not None and n == 1 and fmt not in "fd":
                cv = view.cast(fmt)  # type: ignore[call-overload]  # a format chosen at run time
                self._made.append(cv)
                self._ints[name] = cv
                if mapping.writable:
                    self._wints[name] = cv
        self._bound.add(section)
        return True

    def _release(self) -> None:
        """Drop every view made here (called by the object's close before its maps close)."""
        if not self._made and not self._handed:
            return          # never bound (every view is in _made): nothing to drop
        for mv in reversed(self._made + list(self._handed.values())):
            try:
                mv.release()
            except BufferError:      # someone exports from it (a NumPy array): it stays valid
                pass
        self._made.clear()
        self._handed.clear()
        self._ints.clear()
        self._wints.clear()
        self._views.clear()
        self._bound.clear()

    def _read_only(self, v: GlobalVar) -> bool:
        ms = self._obj.spec.maps.get(v.section)
        return bool(ms is not None and ms.freeze)

    def _refuse_write(self, v: GlobalVar) -> None:
        raise errors.ReadOnlyError(
            f"object {self._obj.name!r}: variable {v.name!r} is in {v.section}, which is frozen "
            "at load (programs see its values as constants): set it before load()")

    # -- access -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        cv = self._ints.get(name)
        if cv is not None:
            return cv[0]
        v = self._var(name)
        if not self._obj.loaded:
            image = self._obj.spec.maps[v.section].data or b""
            return self._decode(v, image[v.offset:v.offset + v.size])
        if self._bind(v.section):
            cv = self._ints.get(name)
            return cv[0] if cv is not None else self._decode(v, self._views[name])
        image = self._map(v).lookup(0)
        return self._decode(v, image[v.offset:v.offset + v.size])

    def __setitem__(self, name: str, value: Any) -> None:
        cv = self._wints.get(name)
        if cv is not None and type(value) is int:
            try:
                cv[0] = value
                return
            except (ValueError, OverflowError):   # negative into unsigned, too big: the slow path says
                pass
        v = self._var(name)
        raw = self._encode(v, value)
        if not self._obj.loaded:
            ms = self._obj.spec.maps[v.section]
            image = bytearray(ms.data or bytes(ms.value_size))
            image[v.offset:v.offset + v.size] = raw
            ms.data = bytes(image)
            return
        if self._read_only(v):
            self._refuse_write(v)
        if self._bind(v.section):
            view = self._views[name]
            if view.readonly:
                self._refuse_write(v)
            view[:] = raw
            return
        m = self._map(v)
        image = bytearray(m.lookup(0))
        image[v.offset:v.offset + v.size] = raw
        m.update(0, bytes(image))

    def view(self, name: str) -> memoryview:
        """A memoryview over the live variable *name* in its map's mapping (no copy, no syscall).

        Typed where a memoryview can be: an int or float variable is a
        one-element view of its format (``view("counter")[0]``), an array of
        them a 1-D view with one element per item (multi-dimensional arrays
        flattened), anything else unsigned bytes.  Writable unless the
        section is ``.rodata``.  The same view is returned until the object
        closes; it is released then (a view a NumPy array holds stays valid
        and reads zeros).  Raises :class:`bpfload.NotFoundError` for an
        unknown name, :class:`bpfload.BpfError` before load, after close or
        when the section's map is not mmapable (it holds only static
        variables).  Needs Linux 5.5.
        """
        mv = self._handed.get(name)
        if mv is not None:
            try:
                mv.nbytes                 # released by the caller (a with block)?
                return mv
            except ValueError:
                pass
        v = self._var(name)
        if not self._obj.loaded:
            raise errors.BpfError(f"object {self._obj.name!r} is not loaded: view({name!r}) shows the "
                                  "live variable in the map")
        if not self._bind(v.section):
            raise errors.BpfError(f"object {self._obj.name!r}: map {v.section!r} is not mmapable (it "
                                  "holds only static variables): read the variable with "
                                  f"{self._prefix[1:]}[{name!r}]")
        fmt, _ = self._format(v)
        view = self._views[name]
        mv = view.cast(fmt) if fmt is not None else view[:]  # type: ignore[call-overload]
        self._handed[name] = mv
        return mv

    def numpy(self, name: str) -> Any:
        """The live variable *name* as a NumPy array sharing the mapping (see :meth:`view`).

        An int or float is a one-element array of its dtype, an array of
        them a 1-D array, anything else ``uint8``.  Writes to the array write
        the variable (unless ``.rodata``).  Raises ImportError without NumPy
        and what :meth:`view` raises.
        """
        import numpy as np
        return np.asarray(self.view(name))

    def __repr__(self) -> str:
        return f"<GlobalData {self._prefix} of {self._obj.name!r}: {', '.join(self.keys())}>"
