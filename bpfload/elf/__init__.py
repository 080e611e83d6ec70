"""The BPF ELF object: the reader (:mod:`.reader`, the only importer of
pyelftools) and the section-name table (:mod:`.sections`).

Parsing makes no syscalls: it produces a :class:`bpfload.spec.ObjectSpec`.
"""
from .reader import kernel_map_name, parse_object

__all__ = ["parse_object", "kernel_map_name"]
