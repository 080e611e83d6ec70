"""BTF: the format (:mod:`.format`), the kernel's BTF as a lookup target
(:mod:`.targets`), BTF meeting the kernel (:mod:`.kernel`: BPF_BTF_LOAD,
attach ids, func/line info), CO-RE (:mod:`.core`) and typed values
(:mod:`.typed`).

Importing this package loads only the format; the other modules are
imported by what needs them.  ``from bpfload.btf import Btf, Kind, ...``
names the format's public types.
"""
from . import format as _format
from .format import *  # noqa: F401,F403  (the package's face is the format)

__all__ = list(_format.__all__)
