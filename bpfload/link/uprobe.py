"""Uprobes and uretprobes: a kprobe-type program on a function of a user-space binary.

:func:`attach_uprobe` opens a perf event of the ``uprobe`` PMU
(``/sys/bus/event_source/devices/uprobe``, Linux 4.17+): the binary's path
in ``config1`` (``uprobe_path``), the FILE offset of the probed instruction
in ``config2``, the ``retprobe`` bit (and ``ref_ctr_offset`` for USDT
semaphores) in ``config`` at the positions the PMU's ``format/`` files
give.  The program is then put on the event by
:func:`~bpfload.link.perf.attach_perf_fd` (a BPF perf link on 5.15+).

The binary is found like the dynamic loader would (``"c"`` is libc, see
:func:`bpfload.elf.symbols.resolve_binary`) and the symbol's file offset is
read from its ELF (:func:`bpfload.elf.symbols.symbol_offset`).

Not implemented: the legacy tracefs ``uprobe_events`` fallback for kernels
without the uprobe PMU (before 4.17); such kernels get an
:class:`~bpfload.errors.AttachError` saying so.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple

from .. import errors
from .._core import perf as _perf
from ..constants import ProgType
from ..elf.symbols import find_symbol, resolve_binary
from . import tracefs as _tracefs
from .link import Link
from .perf import attach_perf_fd

__all__ = ["attach_uprobe"]

#: the sysfs root the uprobe PMU is read from (tests point it elsewhere)
SYSFS = "/sys"


def _pmu_type(prog: Any, hook: str) -> int:
    pmu = _tracefs.pmu_type("uprobe", sysfs=SYSFS)
    if pmu is None:
        raise errors.AttachError(
            f"the uprobe PMU is missing ({SYSFS}/bus/event_source/devices/uprobe/type)",
            program=prog.name, hook=hook,
            hint="this kernel has no uprobe PMU (needs Linux 4.17+ with CONFIG_UPROBE_EVENTS); "
                 "bpfload does not implement the tracefs uprobe_events fallback")
    return pmu


def _format_field(prog: Any, hook: str, field: str) -> Tuple[int, int]:
    """(first bit, width) of *field* in ``config``, or AttachError."""
    f = _tracefs.pmu_format_field("uprobe", field, sysfs=SYSFS)
    if f is None:
        raise errors.AttachError(f"the uprobe PMU does not describe {field!r} (or not as "
                                 "config:N[-M])", program=prog.name, hook=hook,
                                 hint=f"this kernel's uprobe PMU does not support {field}")
    return f


def attach_uprobe(prog: Any, binary, symbol: Optional[str] = None, *, offset: int = 0,
                  retprobe: bool = False, pid: int = -1, cookie: int = 0,
                  ref_ctr_offset: int = 0) -> Link:
    """Attach the kprobe-type program *prog* to a function of a user-space binary.

    *binary* is a path, or a bare library/program name resolved like the
    dynamic loader (``"c"``, ``"libc.so.6"``; see
    :func:`bpfload.elf.symbols.resolve_binary`).  The probe goes at the
    file offset of function *symbol* (``.symtab``, then ``.dynsym``;
    ``name@@VERSION`` accepted) plus *offset*, or at the file offset
    *offset* alone when *symbol* is None.  *retprobe* makes it a
    uretprobe (runs when the function returns; ``PT_REGS_RC`` is the
    return value).  *pid* >= 0 limits the probe to that process (every
    thread of it; 0 is the calling process, as for perf_event_open); -1
    probes every process that runs the code.  *cookie*
    is the BPF cookie (``bpf_get_attach_cookie()``, needs a perf link,
    5.15+); *ref_ctr_offset* the file offset of a USDT semaphore the kernel
    increments while the probe is attached (4.20+).

    Needs the uprobe PMU (Linux 4.17+; no tracefs fallback).  Raises
    :class:`bpfload.AttachError` naming the program and the hook: wrong
    program type, binary or symbol not found or malformed ELF (the
    :class:`bpfload.ElfError` is chained), a negative offset, a pid below
    -1, an offset, cookie or ref_ctr_offset too large, no uprobe PMU,
    or the kernel's refusal (ENOENT: no such file; ESRCH: no such process;
    EINVAL: offset not in the file ...).  No fd is left open on failure.
    """
    kind = "uretprobe" if retprobe else "uprobe"
    where = f"{os.fsdecode(os.fspath(binary))}:{symbol or ''}"
    if offset:
        where += f"+{offset:#x}" if symbol else f"{offset:#x}"
    hook = f"{kind} {where}" + (f" (pid {pid})" if pid >= 0 else "")
    if prog.type != ProgType.KPROBE:
        raise errors.AttachError(f"a {getattr(prog.type, 'name', prog.type)} program cannot attach "
                                 f"to a {kind}; uprobes need a KPROBE program "
                                 "(SEC(\"uprobe\") / SEC(\"uretprobe\"))", program=prog.name,
                                 hook=hook)
    if offset < 0:
        raise errors.AttachError(f"negative offset {offset}", program=prog.name, hook=hook)
    if not -1 <= pid < 1 << 31:
        raise errors.AttachError(f"pid {pid} is not a process id (or -1 for every process)",
                                 program=prog.name, hook=hook)
    try:
        path = resolve_binary(binary)
        if symbol:
            match = find_symbol(path, symbol)
            file_off = match.offset + offset
        else:
            file_off = offset
    except errors.ElfError as e:
        raise errors.AttachError(str(e), program=prog.name, hook=hook,
                                 hint="check the binary and symbol (nm -D / readelf -s)") from e
    sym = f"{symbol}+{offset:#x}" if symbol and offset else (symbol or "")
    hook = f"{kind} {path}:{sym} (file offset {file_off:#x}" + \
        (f", pid {pid})" if pid >= 0 else ")")

    if file_off >= 1 << 64 or not 0 <= cookie < 1 << 64:
        raise errors.AttachError(f"offset {file_off:#x} or cookie {cookie:#x} does not fit in "
                                 "64 bits", program=prog.name, hook=hook)
    pmu = _pmu_type(prog, hook)
    config = 0
    if retprobe:
        bit, _ = _format_field(prog, hook, "retprobe")
        config |= 1 << bit
    if ref_ctr_offset:
        lo, width = _format_field(prog, hook, "ref_ctr_offset")
        if ref_ctr_offset < 0 or ref_ctr_offset >= 1 << width:
            raise errors.AttachError(f"ref_ctr_offset {ref_ctr_offset:#x} does not fit in "
                                     f"{width} bits", program=prog.name, hook=hook)
        config |= ref_ctr_offset << lo
    try:
        pfd = _perf.perf_event_open(pmu, config, pid=pid if pid >= 0 else -1,
                                    cpu=-1 if pid >= 0 else 0, name=path, config2=file_off,
                                    target=prog.name, what=hook)
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="uprobe") from e
    return attach_perf_fd(prog, pfd, hook=hook, family="uprobe", cookie=cookie)
