"""The BPF ELF object: bpfload's ELF64 reader (:mod:`.file`), the object parser
(:mod:`.reader`) and the section-name table (:mod:`.sections`); and, for uprobes, binaries of the
host (:mod:`.symbols`: library lookup like the dynamic loader, symbol file
offsets).  pyelftools is not imported by any of them.

Parsing makes no syscalls: it produces a :class:`bpfload.spec.ObjectSpec`.
:mod:`.symbols` is imported only when one of its names is used (it is for
uprobes, not for loading).
"""
from .reader import kernel_map_name, parse_object

__all__ = ["parse_object", "kernel_map_name", "resolve_binary", "symbol_offset"]


def __getattr__(name: str):
    if name in ("resolve_binary", "symbol_offset"):
        from . import symbols
        return getattr(symbols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
