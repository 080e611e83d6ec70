"""IntEnum/IntFlag classes built the fast way: ``enum._simple_enum`` where Python has it.

A class statement ``class ProgType(enum.IntEnum)`` runs EnumType's checks for
every member (~20 us each in 3.11): bpfload's ~230 kernel constants cost a
fresh process ~3 ms.  ``enum._simple_enum`` (Python 3.11+, what the standard
library uses for ``re.RegexFlag``, ``http.HTTPStatus``...) builds the same
IntEnum/IntFlag from a plain template class without those checks.  Write::

    @fast_enum
    class ProgType(IntEnumBase):
        UNSPEC = 0
        ...

``IntEnumBase``/``IntFlagBase`` are the real ``enum.IntEnum``/``enum.IntFlag``
for type checkers (and on Pythons other than 3.11-3.14, where ``fast_enum``
returns the class as it is), and plain template bases at run time.  The
members, values, repr, str, format, iteration, lookup and pickling equal those
of the class statement (tests/test_records.py compares every bpfload enum with
one built the usual way).
"""
from __future__ import annotations

import enum
import sys as _sys

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import TypeVar

    _T = TypeVar("_T")

__all__ = ["IntEnumBase", "IntFlagBase", "fast_enum"]

# 3.11-3.14: the Pythons whose standard library builds its own enums with _simple_enum;
# any other takes the class statement.
_simple_enum = getattr(enum, "_simple_enum", None) if (3, 11) <= _sys.version_info[:2] < (3, 15) else None

if TYPE_CHECKING:
    from enum import IntEnum as IntEnumBase, IntFlag as IntFlagBase

    def fast_enum(cls: _T) -> _T: ...
elif _simple_enum is None:      # the ordinary class statement
    IntEnumBase = enum.IntEnum
    IntFlagBase = enum.IntFlag

    def fast_enum(cls):
        return cls
else:
    class IntEnumBase:
        """Template base: :func:`fast_enum` turns the subclass into an ``enum.IntEnum``."""

    class IntFlagBase:
        """Template base: :func:`fast_enum` turns the subclass into an ``enum.IntFlag``."""

    def fast_enum(cls):
        """The IntEnum (or IntFlag) *cls* describes, built by ``enum._simple_enum``."""
        if issubclass(cls, IntFlagBase):
            return _simple_enum(enum.IntFlag)(cls)
        if _MEMBERS_AS_PROPERTIES:
            return _int_enum_members_in_dict(cls)
        return _simple_enum(enum.IntEnum)(cls)

# Python 3.11's _simple_enum (like its class statement) reaches every member through an
# enum.property in the class: ``ProgType.XDP`` is a Python-level __get__ call (a load makes
# ~190 of them), and the ~200 properties, each set through EnumType.__setattr__, are a third
# of the enums' import time.  3.12 keeps members in the class dict, as the builder below does.
_MEMBERS_AS_PROPERTIES = _sys.version_info[:2] == (3, 11)


def _int_enum_members_in_dict(cls):
    """``_simple_enum(IntEnum)(cls)`` with the members in the class dict (as in Python 3.12+).

    The class is built by ``_simple_enum`` from *cls* without its members (same type, bases,
    methods, docstring, lookup tables), then each member is made and recorded as _simple_enum
    makes and records it: ``int.__new__``, ``_value_``, ``_name_``, ``__objclass__``,
    ``_sort_order_``; an alias (a value seen before) maps to the first member of that value.
    A template with anything but int members, methods and dunders takes _simple_enum.
    """
    members = [(k, v) for k, v in vars(cls).items() if not k.startswith("_") and type(v) is int]
    rest = [k for k, v in vars(cls).items()
            if not k.startswith("_") and type(v) is not int and not hasattr(v, "__get__")]
    if rest or "__new__" in vars(cls) or "__init__" in vars(cls) or any(
            hasattr(enum.IntEnum, name) for name, _ in members):   # (a member shadowing .name etc.)
        return _simple_enum(enum.IntEnum)(cls)
    for name, _ in members:
        delattr(cls, name)
    ecls = _simple_enum(enum.IntEnum)(cls)
    new, by_name, by_value, names = int.__new__, ecls._member_map_, ecls._value2member_map_, ecls._member_names_
    for name, value in members:
        member = by_value.get(value)
        if member is None:
            member = new(ecls, value)
            member._value_ = value
            member._name_ = name
            member.__objclass__ = ecls
            member._sort_order_ = len(names)
            by_value[value] = member
            names.append(name)
        by_name[name] = member
        type.__setattr__(ecls, name, member)   # (EnumType.__setattr__ refuses to set a member)
    return ecls
