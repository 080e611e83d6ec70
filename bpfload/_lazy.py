"""Regular expressions compiled, and standard modules imported, on first use.

``import re`` costs a fresh process ~1.5 ms of CPU (the parser and compiler
modules), ``import copy`` ~1 ms (weakref, copyreg); bpfload's module-level
patterns serve the loader's rarer paths only (CO-RE flavors are cut without
``re``), and its deep copies the rarer map formats and externs, so a plain load
needs neither.

* ``Pattern(text)`` behaves as ``re.compile(text)`` for attribute access
  (``.match``, ``.sub``, ``.finditer`` ...); write flags inline (``(?m)``).
* ``Module(name)`` behaves as the top-level module *name* for attribute
  access (``copy = Module("copy")`` ... ``copy.deepcopy(x)``).
"""
from __future__ import annotations

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Pattern", "Module"]


class Pattern:
    """``re.compile(pattern)``, done (and ``re`` imported) on first attribute access."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __getattr__(self, name: str) -> Any:
        import re
        return getattr(re.compile(self.pattern), name)   # re caches the compiled pattern

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


class Module:
    """The top-level module *name*, imported on first attribute access."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(__import__(self.name), attr)

    def __repr__(self) -> str:
        return f"Module({self.name!r})"
