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
        etype = enum.IntFlag if issubclass(cls, IntFlagBase) else enum.IntEnum
        new = _simple_enum(etype)(cls)
        if _sys.version_info[:2] == (3, 11):
            # 3.11 puts every member behind an ``enum.property`` redirect, so each
            # ``Kind.VAR`` in a hot loop is a descriptor call (~60 ns); 3.12+ stores a
            # member whose name no base class uses directly in the class dict, as here.
            bases = new.__mro__[1:]
            for mname, member in new._member_map_.items():
                if type(new.__dict__.get(mname)) is enum.property and \
                        not any(mname in b.__dict__ for b in bases):
                    type.__setattr__(new, mname, member)
        return new
