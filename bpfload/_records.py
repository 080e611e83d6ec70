"""Plain record classes: what ``@dataclasses.dataclass`` generated, written by hand.

``import dataclasses`` costs a fresh process ~12 ms of CPU (it imports
``inspect``, ``ast``, ``dis``, ``tokenize``) and every dataclass another
0.3-0.6 ms (it compiles its ``__init__``/``__repr__``/``__eq__`` with
``exec``): more than the whole start-up budget of ``bpfload.load()``.  The
spec, BTF and info classes on the load path therefore subclass :class:`Record`
and write their ``__init__`` themselves; this base supplies the rest, with the
dataclass semantics:

* ``__repr__``: ``Name(field=value, ...)`` over the fields not in ``_hidden``
  (a dataclass ``field(repr=False, compare=False)``);
* ``__eq__``: the same class and equal shown fields; ``__hash__`` is None
  (:class:`FrozenRecord`: the fields' hash, and assignment raises
  ``AttributeError`` as a frozen dataclass does);
* ``dataclasses.fields()``, ``replace()``, ``asdict()`` and ``is_dataclass()``
  still work, and a ``@dataclass`` may extend a record:
  ``__dataclass_fields__`` and ``__dataclass_params__`` are those of a shadow
  dataclass made (importing ``dataclasses``) the first time something asks.

A subclass lists its fields in ``_fields`` (the ``__init__`` order), may name
default factories in ``_factories``, and declares ``__slots__`` when nothing
sets other attributes on its instances.  This module imports nothing.
"""
from __future__ import annotations

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Dict, Tuple

__all__ = ["Record", "FrozenRecord"]


class _DataclassAttr:
    """``__dataclass_fields__``/``__dataclass_params__`` of a Record class, made on first use.

    With them the ``dataclasses`` functions (fields, replace, asdict,
    is_dataclass) accept records, and ``@dataclass`` can extend one.
    """

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __get__(self, obj: object, cls: type) -> Any:
        made = cls.__dict__.get("_dataclass_shadow")
        if made is None:
            made = _make_shadow(cls)
            type.__setattr__(cls, "_dataclass_shadow", made)
        return getattr(made, self.attr)


def _make_shadow(cls: Any) -> type:
    """A dataclass with *cls*'s fields, defaults, repr/compare flags and frozenness."""
    import dataclasses
    import inspect

    params = inspect.signature(cls.__init__).parameters
    annotations: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(klass.__dict__.get("__annotations__", {}))
    specs = []
    for name in cls._fields:
        shown = name not in cls._hidden
        if name in cls._factories:
            f = dataclasses.field(default_factory=cls._factories[name], repr=shown, compare=shown)
        elif params[name].default is not inspect.Parameter.empty:
            f = dataclasses.field(default=params[name].default, repr=shown, compare=shown)
        else:
            f = dataclasses.field(repr=shown, compare=shown)
        specs.append((name, annotations.get(name, "Any"), f))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=issubclass(cls, FrozenRecord))


class Record:
    """Base of the hand-written record classes (see the module docstring)."""

    __slots__ = ()
    #: every field, in ``__init__`` order
    _fields: ClassVar[Tuple[str, ...]] = ()
    #: fields left out of repr and ==
    _hidden: ClassVar[Tuple[str, ...]] = ()
    #: field -> default factory (for ``dataclasses.fields``; ``__init__`` applies it)
    _factories: ClassVar[Dict[str, Callable[[], Any]]] = {}
    #: the fields repr shows and == compares (set per class)
    _shown: ClassVar[Tuple[str, ...]] = ()
    __match_args__: ClassVar[Tuple[str, ...]] = ()
    __dataclass_fields__: ClassVar[Dict[str, Any]] = _DataclassAttr("__dataclass_fields__")  # type: ignore
    __dataclass_params__: ClassVar[Any] = _DataclassAttr("__dataclass_params__")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._shown = tuple(n for n in cls._fields if n not in cls._hidden)
        cls.__match_args__ = cls._fields

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}("
                f"{', '.join([f'{n}={getattr(self, n)!r}' for n in self._shown])})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return (tuple([getattr(self, n) for n in self._shown])
                    == tuple([getattr(other, n) for n in self._shown]))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]   # mutable, compared by value: unhashable


class FrozenRecord(Record):
    """A record whose fields cannot be assigned after ``__init__`` (hashable by value)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple([getattr(self, n) for n in self._shown]))

    def __reduce__(self) -> Tuple[Any, ...]:
        # copy/deepcopy/pickle through the constructor (slots cannot be set on a frozen record)
        return (type(self), tuple([getattr(self, n) for n in self._fields]))
