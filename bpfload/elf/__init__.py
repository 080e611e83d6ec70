"""The BPF ELF object: the reader (:mod:`.reader`, the only importer of
pyelftools) and the section-name table (:mod:`.sections`); and, for uprobes, binaries of the
host (:mod:`.symbols`: library lookup like the dynamic loader, symbol file
offsets).

Parsing makes no syscalls: it produces a :class:`bpfload.spec.ObjectSpec`.
"""
from .reader import kernel_map_name, parse_object
from .symbols import resolve_binary, symbol_offset

__all__ = ["parse_object", "kernel_map_name", "resolve_binary", "symbol_offset"]
