"""A regular expression compiled on first use.

``import re`` costs a fresh process ~1.5 ms of CPU (the parser and compiler
modules); the patterns bpfload compiled at import serve error paths and CO-RE
flavors only, so a plain load never needs ``re``.  ``Pattern(text)`` behaves
as ``re.compile(text)`` for attribute access (``.match``, ``.sub``,
``.finditer`` ...); write flags inline (``(?m)``, ``(?s)``).
"""
from __future__ import annotations

TYPE_CHECKING = False   # (typing is never imported at run time: start-up cost)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Pattern"]


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
