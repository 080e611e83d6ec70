"""Kernel-side BTF: load an object's BTF, find attach targets in vmlinux BTF.

:mod:`bpfload.btf` parses (no syscalls); this module is where BTF meets the
kernel:

* :func:`load_object_btf` -- BPF_BTF_LOAD of an object's ``.BTF`` (DATASEC
  sizes and VAR offsets were fixed up from the ELF at parse time), with the
  kernel's BTF log on failure;
* :func:`vmlinux` -- the running kernel's BTF, parsed once per process;
* :func:`resolve_attach_btf_id` -- ``attach_btf_id`` for tp_btf, iter,
  fentry/fexit/fmod_ret and lsm programs from the target named in the
  section;
* :func:`ext_records` -- func_info / line_info of a linked program, rebased
  to where each function landed.
"""
from __future__ import annotations

import array
import errno as _errno
import struct

from .. import errors
from .._core import syscall as _sys
from .._core.insn import pack_ext_records as _pack
from .._core.syscall import FD
from ..constants import AttachType, ProgType
from ..errors import BtfError
from .format import Btf, FuncLinkage, Kind, _cbtf

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: loading an object never imports typing for this module
    from typing import FrozenSet, Iterable, List, Optional, Tuple

    from .targets import VMLINUX_PATH, vmlinux
    from .targets import find_kernel_type as find_kernel_type

__all__ = ["load_object_btf", "vmlinux", "resolve_attach_btf_id", "ext_records",
           "VMLINUX_PATH"]

# bpfload.btf.targets (the kernel's type index; it brings _core.corepatch) is imported on
# first use: loading an object's BTF needs none of it.  vmlinux, VMLINUX_PATH and
# find_kernel_type are its own objects, handed out by the module __getattr__.
_FROM_TARGETS = ("VMLINUX_PATH", "find_kernel_type", "vmlinux")


def __getattr__(name: str) -> object:
    if name in _FROM_TARGETS:
        from . import targets
        return getattr(targets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_object_btf(btf: Btf, obj_name: str, *, static_funcs: Iterable[str] = ()) -> FD:
    """BPF_BTF_LOAD an object's BTF -> an owned fd.

    *static_funcs*: functions whose ELF symbol is hidden (``__hidden``):
    their global FUNCs are loaded with static linkage, so the verifier
    checks them in their callers' context (libbpf's rule).  The parsed
    *btf* is not changed: the blob given to the kernel is patched.

    Raises :class:`bpfload.BtfError` naming the function when a FUNC of
    extern linkage is left (a function declared, called and defined
    nowhere: the kernel would refuse the whole BTF with "Invalid func
    linkage"), or carrying the kernel's BTF verifier log.  Needs Linux 4.18
    (BPF_BTF_LOAD); FUNC records 5.0.
    """
    data = _func_linkage(btf.to_bytes(), frozenset(static_funcs), obj_name)
    ret = _sys.btf_load(data)
    if ret >= 0:
        return FD(ret, f"BTF of {obj_name!r}")
    err = -ret
    text = ""
    if err in (_errno.EINVAL, _errno.E2BIG, _errno.EACCES, _errno.ENOSPC):
        # the BTF verifier said no: ask again with a log to say why
        log = bytearray(1 << 20)
        ret2 = _sys.btf_load(data, log, 1)
        if ret2 >= 0:
            return FD(ret2, f"BTF of {obj_name!r}")
        text = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip()
    tail = "\n".join(text.splitlines()[-8:])
    raise errors.BtfError(f"the kernel refused the object's BTF (BPF_BTF_LOAD: "
                          f"{_errno.errorcode.get(err, err)})" + (f":\n{tail}" if tail else ""),
                          object=obj_name, section=".BTF")


_HDR = struct.Struct("<HBBIIIII")
_REC = struct.Struct("<III")


def _func_linkage(data: bytes, static_funcs: FrozenSet[str], obj_name: str) -> bytes:
    """*data* (a BTF blob from :meth:`Btf.to_bytes`) with hidden FUNCs static; extern FUNCs refused."""
    hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data, 0)[3:]
    tstart = hdr_len + type_off
    types = memoryview(data)[tstart:tstart + type_len]
    sstart = hdr_len + str_off
    strings = data[sstart:sstart + str_len]
    try:
        funcs = _func_records(types)
    except BtfError as e:  # pragma: no cover - to_bytes writes whole records
        raise BtfError(f"cannot re-read the object's BTF: {e}", object=obj_name, section=".BTF") from e
    out = None
    for off in funcs:
        name_off, info, _ = _REC.unpack_from(types, off)
        linkage = info & 0xFFFF
        if linkage not in (FuncLinkage.GLOBAL, FuncLinkage.EXTERN):
            continue
        end = strings.find(b"\0", name_off)
        name = strings[name_off:end].decode(errors="replace") if 0 <= name_off < end else ""
        if linkage == FuncLinkage.EXTERN:
            raise BtfError(f"failed to find BTF for extern {name!r}: the function is declared and "
                           "called but defined nowhere in the object (not a __ksym kfunc either); "
                           "define it, or link the object that does (the kernel would refuse the "
                           "whole BTF: 'Invalid func linkage')", object=obj_name, section=".BTF",
                           symbol=name)
        if name in static_funcs:
            if out is None:
                out = bytearray(data)
            struct.pack_into("<I", out, tstart + off + 4, info & ~0xFFFF | FuncLinkage.STATIC)
    return data if out is None else bytes(out)


def _func_records(types) -> List[int]:
    """Offsets of the FUNC records of a raw type section."""
    if _cbtf is not None:
        offsets = _cbtf.scan(types)
        return [offsets[i] for i in _cbtf.of_kind(types, offsets, int(Kind.FUNC))]
    return [off for off in Btf._scan_py(types)
            if (struct.unpack_from("<I", types, off + 4)[0] >> 24) & 0x1F == Kind.FUNC]


# attach target -> the vmlinux BTF entity libbpf looks up
def _attach_lookup(prog_type: int, attach_type: Optional[int], target: str) -> Tuple[str, Kind]:
    if prog_type == ProgType.LSM:
        return "bpf_lsm_" + target, Kind.FUNC
    if attach_type == AttachType.TRACE_RAW_TP:
        return "btf_trace_" + target, Kind.TYPEDEF
    if attach_type == AttachType.TRACE_ITER:
        return "bpf_iter_" + target, Kind.FUNC
    return target, Kind.FUNC


def resolve_attach_btf_id(prog_type: int, attach_type: Optional[int], target: Optional[str],
                          *, program: str = "", obj_name: str = "",
                          btf: Optional[Btf] = None) -> int:
    """The vmlinux BTF id a tracing/LSM/iter program attaches to.

    ``tp_btf/sched_switch`` -> typedef ``btf_trace_sched_switch``;
    ``iter/task`` -> func ``bpf_iter_task``; ``lsm/file_open`` -> func
    ``bpf_lsm_file_open``; ``fentry/do_nanosleep`` -> func ``do_nanosleep``.
    Raises :class:`bpfload.BtfError` naming the program when the target is
    missing.
    """
    if not target:
        raise errors.BtfError(f"program {program!r} needs an attach target in its section name",
                              object=obj_name)
    # module-qualified targets ("module:func") are looked up by the bare name
    name, kind = _attach_lookup(prog_type, attach_type, target.split(":")[-1])
    if btf is not None:
        t = btf.find(name, kind)
    else:
        from .targets import find_kernel_type
        t = find_kernel_type(name, kind)
    if t is None:
        raise errors.BtfError(f"program {program!r}: attach target {target!r} not found in "
                              f"kernel BTF (looked for {kind.name} {name!r})", object=obj_name)
    return t.id


assert array.array("I").itemsize == 4   # bpf_func_info / bpf_line_info fields are u32


def ext_records(btf_ext, functions, layout) -> Tuple[bytes, bytes]:
    """func_info and line_info records of a linked program, rebased by *layout*.

    *layout* is ``[(function name, start insn), ...]`` from the linker.
    Returns packed ``bpf_func_info`` (8 bytes) and ``bpf_line_info`` (16
    bytes) arrays, sorted by instruction as the kernel requires.
    """
    # The records are packed straight from the parsed ones (no rebased copies), one
    # array per kind, in compiled code.  Each function's window is in instruction
    # order and the linker lays functions out one after another, so the result is
    # sorted as it stands whenever the instructions strictly increase (the kernel
    # refuses anything else); otherwise the records are sorted as tuples, as they
    # always were.
    window = btf_ext._window
    # a BtfExt that keeps its records raw packs them without making record objects
    # (None: they were made into objects, which may have been edited: pack those)
    pack_raw = getattr(btf_ext, "_pack_raw", None)
    packed = []
    for kind, width in (("func_info", 2), ("line_info", 4)):
        vals = array.array("I")
        in_order = True
        last = -1
        for name, start in layout:
            f = functions[name]
            lo = f.offset
            hi = lo + len(f.insns)
            got = pack_raw(kind, f.section, lo, hi, start, width, vals, last) if pack_raw else None
            if got is None:
                recs = window(kind, getattr(btf_ext, kind), f.section, lo, hi)
                got = _pack(recs, lo, start, width, vals, last) if recs else (last, True)
            last, ok = got
            in_order = in_order and ok
        packed.append(vals.tobytes() if in_order else _sorted_records(vals, width))
    return packed[0], packed[1]


def _sorted_records(vals: "array.array[int]", width: int) -> bytes:
    """Records of *width* u32s sorted as tuples (what the kernel needs: by instruction)."""
    recs = sorted(zip(*(vals[i::width] for i in range(width))))
    return array.array("I", [v for r in recs for v in r]).tobytes()
