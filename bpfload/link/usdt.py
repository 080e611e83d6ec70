"""USDT probes: a kprobe-type program on the ``<sys/sdt.h>`` probe sites of a binary.

This is libbpf's USDT protocol (``usdt/`` sections and ``<bpf/usdt.bpf.h>``):
the BPF side calls ``bpf_usdt_arg(ctx, i, &v)``, ``bpf_usdt_arg_cnt(ctx)``
and ``bpf_usdt_cookie(ctx)``, which look up the BPF cookie of the probe
site (``bpf_get_attach_cookie()``) in the array map ``__bpf_usdt_specs``
and decode the argument from ``struct pt_regs`` as the spec found there
says.  :func:`attach_usdt` does the user-space half:

1. reads the binary's ``.note.stapsdt`` notes (:mod:`bpfload.elf.notes`) and
   keeps the sites of *provider*:*name* (a probe may have several: inlined
   or repeated ``DTRACE_PROBE`` calls);
2. parses each site's argument specification (x86-64 assembler operands,
   see :func:`parse_arg`) into ``struct __bpf_usdt_spec``;
3. gives each distinct specification a spec id (the lowest ids free in that
   map; libbpf's dedup by spec string) and writes it into the program's
   ``__bpf_usdt_specs`` map (found among the maps the kernel says the
   program uses);
4. puts one uprobe on every site with the spec id as its BPF cookie and the
   site's semaphore as its ``ref_ctr_offset`` (the kernel increments the
   semaphore while a probe is attached, so ``if (provider_name_ENABLED())``
   guards in the traced program fire): one ``uprobe_multi`` link for all
   sites (Linux 6.6+; the program must have been loaded with expected attach
   type ``BPF_TRACE_UPROBE_MULTI``, which the loader chooses for ``usdt``
   sections when the kernel has such links), otherwise one perf-event
   uprobe link per site (5.15+ for cookies).

One :class:`~bpfload.link.link.Link` owns it all; closing it detaches every
site and frees the spec ids.  The ``__bpf_usdt_ip_to_spec_id`` map of
usdt.bpf.h is not filled: it serves kernels without BPF cookies (before
5.15), which bpfload does not support (``LINUX_HAS_BPF_COOKIE`` is true).

x86-64 only (the register names below are x86's).
"""
from __future__ import annotations

import errno as _errno
import os
import re
import struct
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set

from .. import errors
from .._core import syscall as _sys
from .._core.syscall import FD
from ..constants import AttachType, LinkType, MapType, ProgType
from ..elf.notes import UsdtProbe, read_usdt_notes
from ..elf.symbols import resolve_binary
from .link import Link, link_group

__all__ = ["attach_usdt", "parse_arg", "parse_spec", "UsdtArg", "encode_spec",
           "uprobe_multi_supported", "load_attach_type", "PT_REGS_OFFSETS", "MAX_ARGS",
           "SPEC_SIZE"]

#: BPF_USDT_MAX_ARG_CNT of usdt.bpf.h
MAX_ARGS = 12
#: enum __bpf_usdt_arg_type
ARG_CONST, ARG_REG, ARG_REG_DEREF = 0, 1, 2
#: struct __bpf_usdt_arg_spec: val_off, arg_type, reg_off, arg_signed, arg_bitshift
_ARG = struct.Struct("<QIh?b")
#: struct __bpf_usdt_spec: args[12], usdt_cookie, arg_cnt (+ padding to 8)
_SPEC_TAIL = struct.Struct("<Qh")
SPEC_SIZE = (_ARG.size * MAX_ARGS + _SPEC_TAIL.size + 7) // 8 * 8      # 208
#: the kernel's (15-character) name of usdt.bpf.h's specs map
_SPECS_MAP = "__bpf_usdt_specs"[:15]

#: offsetof(struct pt_regs, REG) on x86-64, for every name of the register
PT_REGS_OFFSETS: Dict[str, int] = {}
for _off, _names in ((0, ("r15", "r15d", "r15w", "r15b")), (8, ("r14", "r14d", "r14w", "r14b")),
                     (16, ("r13", "r13d", "r13w", "r13b")), (24, ("r12", "r12d", "r12w", "r12b")),
                     (32, ("rbp", "ebp", "bp", "bpl")), (40, ("rbx", "ebx", "bx", "bl")),
                     (48, ("r11", "r11d", "r11w", "r11b")), (56, ("r10", "r10d", "r10w", "r10b")),
                     (64, ("r9", "r9d", "r9w", "r9b")), (72, ("r8", "r8d", "r8w", "r8b")),
                     (80, ("rax", "eax", "ax", "al")), (88, ("rcx", "ecx", "cx", "cl")),
                     (96, ("rdx", "edx", "dx", "dl")), (104, ("rsi", "esi", "si", "sil")),
                     (112, ("rdi", "edi", "di", "dil")), (128, ("rip", "eip")),
                     (152, ("rsp", "esp", "sp", "spl"))):
    for _n in _names:
        PT_REGS_OFFSETS[_n] = _off

_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_CONST = re.compile(rf"({_NUM})@\$({_NUM})")
_REG = re.compile(rf"({_NUM})@%(\w+)")
_DEREF = re.compile(rf"({_NUM})@({_NUM})?\(\s*%(\w+)\s*\)")


class UsdtArg(NamedTuple):
    """One parsed argument: ``struct __bpf_usdt_arg_spec`` with its source text."""

    kind: int           # ARG_CONST, ARG_REG or ARG_REG_DEREF
    val_off: int        # the constant, or the memory offset from the register (signed)
    reg_off: int        # offsetof(struct pt_regs, register); 0 for constants
    signed: bool
    size: int           # 1, 2, 4 or 8 bytes
    text: str

    @property
    def bitshift(self) -> int:
        return 64 - 8 * self.size


def _int(s: str) -> int:
    return int(s, 0) if s.lstrip("+-").lower().startswith("0x") else int(s, 10)


def parse_arg(text: str) -> UsdtArg:
    """Parse one x86-64 USDT argument, ``SIZE@OPERAND``.

    SIZE is the byte size, negative for a signed value (``-4`` is an
    ``int``, ``8`` an ``unsigned long``; 1, 2, 4 or 8).  OPERAND is a
    constant (``$5``, ``$-1``), a register (``%eax``, ``%r8``, ``%dil``: any
    name of the 64-bit register, whose low SIZE bytes are the value) or a
    memory operand ``OFF(%REG)``/``(%REG)`` (SIZE bytes at register +
    offset in the traced process).  Raises :class:`ValueError` for anything
    else: SIB operands (``(%rax,%rbx,8)``), symbols (``var(%rip)``), high
    byte registers (``%ah``), segment prefixes.
    """
    t = text.strip()
    m = _CONST.fullmatch(t)
    if m:
        size, kind, val, reg = _int(m.group(1)), ARG_CONST, _int(m.group(2)), 0
    else:
        m = _REG.fullmatch(t)
        if m:
            size, kind, val, reg_name = _int(m.group(1)), ARG_REG, 0, m.group(2)
        else:
            m = _DEREF.fullmatch(t)
            if not m:
                raise ValueError(f"unsupported USDT argument {text!r} (bpfload reads constants "
                                 "'N@$V', registers 'N@%reg' and 'N@OFF(%reg)')")
            size, kind, reg_name = _int(m.group(1)), ARG_REG_DEREF, m.group(3)
            val = _int(m.group(2)) if m.group(2) else 0
        if reg_name not in PT_REGS_OFFSETS:
            raise ValueError(f"USDT argument {text!r}: unknown or unsupported register "
                             f"%{reg_name}")
        reg = PT_REGS_OFFSETS[reg_name]
    if abs(size) not in (1, 2, 4, 8):
        raise ValueError(f"USDT argument {text!r}: size {abs(size)} is not 1, 2, 4 or 8 bytes")
    if not -(1 << 63) <= val < 1 << 64:
        raise ValueError(f"USDT argument {text!r}: {val} does not fit 64 bits")
    return UsdtArg(kind, val, reg, size < 0, abs(size), t)


def parse_spec(args: str) -> List[UsdtArg]:
    """Parse a probe's whole argument string (space-separated arguments; may be empty).

    Raises :class:`ValueError` for a bad argument or more than
    :data:`MAX_ARGS` of them.
    """
    parts = args.split()
    if len(parts) > MAX_ARGS:
        raise ValueError(f"{len(parts)} arguments; usdt.bpf.h holds at most {MAX_ARGS}")
    return [parse_arg(p) for p in parts]


def encode_spec(args: Sequence[UsdtArg], cookie: int) -> bytes:
    """``struct __bpf_usdt_spec`` (usdt.bpf.h, :data:`SPEC_SIZE` bytes) for *args* and *cookie*."""
    out = bytearray(SPEC_SIZE)
    for i, a in enumerate(args):
        _ARG.pack_into(out, i * _ARG.size, a.val_off & ((1 << 64) - 1), a.kind, a.reg_off,
                       a.signed, a.bitshift)
    _SPEC_TAIL.pack_into(out, _ARG.size * MAX_ARGS, cookie & ((1 << 64) - 1), len(args))
    return bytes(out)


# -- spec ids: per specs map, shared by every attachment that writes it ----------

_ids_lock = threading.Lock()
_ids_in_use: Dict[int, Set[int]] = {}       # kernel map id -> spec ids held by open links


def _take_ids(map_id: int, count: int, limit: int) -> List[int]:
    with _ids_lock:
        used = _ids_in_use.setdefault(map_id, set())
        got = []
        i = 0
        while len(got) < count and i < limit:
            if i not in used:
                got.append(i)
            i += 1
        if len(got) < count:
            if not used:
                del _ids_in_use[map_id]
            raise OverflowError(f"{count} spec ids needed, {limit - len(used)} of {limit} free")
        used.update(got)
        return got


def _give_ids(map_id: int, ids: Sequence[int]) -> None:
    with _ids_lock:
        used = _ids_in_use.get(map_id)
        if used is None:
            return
        used.difference_update(ids)
        if not used:
            del _ids_in_use[map_id]


class _SpecIds:
    """The spec ids one USDT Link holds (released when the Link closes)."""

    def __init__(self, map_id: int, ids: List[int]):
        self.map_id, self.ids = map_id, ids

    def close(self) -> None:
        ids, self.ids = self.ids, []
        if ids:
            _give_ids(self.map_id, ids)


# -- kernel features -----------------------------------------------------------

_features: Dict[str, bool] = {}
_BPF_EXIT_0 = bytes.fromhex("b700000000000000" "9500000000000000")     # r0 = 0; exit
#: errnos of a kernel that does not know what was asked (not of a transient failure)
_NO_FEATURE = frozenset({_errno.EINVAL, _errno.EOPNOTSUPP, 524, _errno.E2BIG})


def uprobe_multi_supported() -> bool:
    """Whether this kernel has uprobe_multi links (Linux 6.6+); probed once, cached.

    A trivial KPROBE program with expected attach type
    ``BPF_TRACE_UPROBE_MULTI`` is loaded and linked to ``/`` (a directory):
    a kernel with uprobe_multi links refuses the path with EBADF, one
    without them the program (EINVAL) or the link (EINVAL, EOPNOTSUPP).
    Those answers are cached; any other failure (ENOMEM, EPERM ...) gives
    False for this call and is asked again next time.  Never raises.
    """
    if "uprobe_multi" in _features:
        return _features["uprobe_multi"]
    answer: Optional[bool] = None
    try:
        ret = _sys.prog_load(ProgType.KPROBE, _BPF_EXIT_0, "GPL", "bl_probe_umulti",
                             expected_attach_type=AttachType.TRACE_UPROBE_MULTI)
        fd = ret[0] if isinstance(ret, tuple) else ret
        if fd < 0:
            answer = False if -fd in _NO_FEATURE else None
        else:
            with FD(fd, "program"):
                try:
                    lfd = _sys.link_create(fd, 0, AttachType.TRACE_UPROBE_MULTI,
                                           uprobe_multi=(b"/", struct.pack("=Q", 0), None, None,
                                                         0, 0))
                    lfd.close()          # cannot happen: "/" is no file
                except errors.SyscallError as e:
                    answer = True if e.errno == _errno.EBADF else \
                        False if e.errno in _NO_FEATURE else None
    except (errors.BpfError, OSError):
        answer = None
    if answer is None:
        return False
    _features["uprobe_multi"] = answer
    return answer


def load_attach_type() -> Optional[AttachType]:
    """The expected attach type a ``usdt`` program is loaded with (the loader asks).

    ``BPF_TRACE_UPROBE_MULTI`` where the kernel has uprobe_multi links (as
    libbpf 1.3+ does), else None (plain kprobe type: perf-event uprobes).
    """
    return AttachType.TRACE_UPROBE_MULTI if uprobe_multi_supported() else None


# -- the specs map ---------------------------------------------------------------

def _specs_map(prog: Any, hook: str):
    """The program's ``__bpf_usdt_specs`` map (an open :class:`bpfload.Map`), or None."""
    from ..maps import Map
    try:
        map_ids = prog.info().map_ids
    except errors.BpfError as e:
        raise errors.AttachError(f"cannot read the program's maps: {e}", program=prog.name,
                                 hook=hook) from e
    for mid in map_ids:
        try:
            m = Map.from_id(mid)
        except errors.BpfError:
            continue                  # gone meanwhile: not ours
        try:
            info = m.info()
        except BaseException:
            m.close()
            raise
        if info.name == _SPECS_MAP and info.type == MapType.ARRAY:
            if info.key_size != 4 or info.value_size != SPEC_SIZE:
                m.close()
                raise errors.AttachError(
                    f"the program's {_SPECS_MAP} map has key/value size {info.key_size}/"
                    f"{info.value_size}, not 4/{SPEC_SIZE}", program=prog.name, hook=hook,
                    hint="bpfload writes struct __bpf_usdt_spec as libbpf 1.0-1.5's usdt.bpf.h "
                         "lays it out (12 arguments of 16 bytes)")
            return m
        m.close()
    return None


# -- attach ------------------------------------------------------------------------

def _probe_list(notes) -> str:
    names = sorted({f"{n.provider}:{n.name}" for n in notes.notes})
    if not names:
        return "it has no .note.stapsdt notes (no <sys/sdt.h> probes)"
    more = f" (+{len(names) - 20} more)" if len(names) > 20 else ""
    return "its probes: " + ", ".join(names[:20]) + more


def attach_usdt(prog: Any, binary, provider: str, name: str, *, pid: int = -1,
                cookie: int = 0) -> Link:
    """Attach the kprobe-type program *prog* to USDT probe *provider*:*name* of *binary*.

    *binary* is a path, or a bare library/program name resolved like the
    dynamic loader (see :func:`bpfload.elf.symbols.resolve_binary`).  Every
    site of the probe in that file is attached.  *pid* >= 0 limits the probe
    to that process (0: the calling process); -1 probes every process.
    *cookie* is what ``bpf_usdt_cookie()`` returns on the BPF side (the BPF
    cookie itself carries the spec id).  A program loaded with expected
    attach type ``BPF_TRACE_UPROBE_MULTI`` gets one uprobe_multi link, any
    other KPROBE program one perf-event uprobe per site.

    The program's ``__bpf_usdt_specs`` map (from ``<bpf/usdt.bpf.h>``) is
    filled with the sites' argument specs; a program that does not use
    usdt.bpf.h's helpers has no such map and is attached all the same.

    Needs the uprobe PMU (Linux 4.17+), BPF cookies (5.15+), uprobe_multi
    links for a program loaded for them (6.6+) and, for probes with a
    semaphore, the PMU's ``ref_ctr_offset`` (4.20+).  Raises
    :class:`bpfload.AttachError` naming the program and the hook (binary,
    provider and probe): wrong program type, binary not found or malformed
    (the :class:`bpfload.ElfError` is chained), no such provider or probe
    (the hint lists the binary's probes), an argument spec bpfload cannot
    read, too few free spec ids, a bad pid or cookie, or the kernel's
    refusal.  Nothing is left attached and no fd open on failure.
    """
    hook = f"usdt {os.fsdecode(os.fspath(binary))}:{provider}:{name}" + \
        (f" (pid {pid})" if pid >= 0 else "")
    if prog.type != ProgType.KPROBE:
        raise errors.AttachError(f"a {getattr(prog.type, 'name', prog.type)} program cannot attach "
                                 "to a USDT probe; USDT needs a KPROBE program (SEC(\"usdt\"))",
                                 program=prog.name, hook=hook)
    if not -1 <= pid < 1 << 31:
        raise errors.AttachError(f"pid {pid} is not a process id (or -1 for every process)",
                                 program=prog.name, hook=hook)
    if not -(1 << 63) <= cookie < 1 << 64:
        raise errors.AttachError(f"cookie {cookie:#x} does not fit in 64 bits", program=prog.name,
                                 hook=hook)
    if not provider or not name:
        raise errors.AttachError("empty provider or probe name", program=prog.name, hook=hook)
    try:
        path = resolve_binary(binary)
        notes = read_usdt_notes(path)
        sites = notes.probes(provider, name)
    except errors.ElfError as e:
        raise errors.AttachError(str(e), program=prog.name, hook=hook,
                                 hint="check the binary (readelf -n shows its USDT notes)") from e
    hook = f"usdt {path}:{provider}:{name}" + (f" (pid {pid})" if pid >= 0 else "")
    if not sites:
        if any(n.provider == provider for n in notes.notes):
            msg = f"{path} has no USDT probe {name!r} of provider {provider!r}"
        else:
            msg = f"{path} has no USDT provider {provider!r}"
        raise errors.AttachError(msg, program=prog.name, hook=hook, err=_errno.ENOENT,
                                 hint=_probe_list(notes))
    if not (notes.is64 and notes.little_endian):
        raise errors.AttachError(f"{path} is not a 64-bit little-endian ELF: bpfload reads x86-64 "
                                 "USDT arguments only", program=prog.name, hook=hook)
    # argument specs, deduplicated by their text (as libbpf does)
    distinct: Dict[str, bytes] = {}
    for s in sites:
        if s.args not in distinct:
            try:
                distinct[s.args] = encode_spec(parse_spec(s.args), cookie)
            except ValueError as e:
                raise errors.AttachError(f"probe site at file offset {s.offset:#x}: {e}",
                                         program=prog.name, hook=hook,
                                         hint="bpfload reads the operand forms libbpf reads") from e
    multi = prog.expected_attach_type == AttachType.TRACE_UPROBE_MULTI
    specs = _specs_map(prog, hook)
    try:
        if specs is not None:
            try:
                ids = _take_ids(specs.id, len(distinct), specs.max_entries)
            except OverflowError as e:
                raise errors.AttachError(f"{_SPECS_MAP} is full: {e}", program=prog.name, hook=hook,
                                         err=_errno.E2BIG,
                                         hint="close other USDT links of this object, or build it "
                                              "with a larger BPF_USDT_MAX_SPEC_CNT") from None
            held = _SpecIds(specs.id, ids)
        else:
            ids, held = list(range(len(distinct))), _SpecIds(-1, [])
        try:
            id_of = dict(zip(distinct, ids))
            if specs is not None:
                for text, sid in id_of.items():
                    try:
                        specs.update(struct.pack("=I", sid), distinct[text])
                    except errors.BpfError as e:
                        raise errors.AttachError(f"cannot write spec {sid} into {_SPECS_MAP}: {e}",
                                                 program=prog.name, hook=hook) from e
            if multi:
                return _attach_multi(prog, path, sites, id_of, pid, hook, held)
            return _attach_perf(prog, path, sites, id_of, pid, hook, held)
        except BaseException:
            held.close()
            raise
    finally:
        if specs is not None:
            specs.close()


def _attach_multi(prog: Any, path: str, sites: List[UsdtProbe], id_of: Dict[str, int], pid: int,
                  hook: str, held: _SpecIds) -> Link:
    n = len(sites)
    offsets = struct.pack(f"={n}Q", *(s.offset for s in sites))
    cookies = struct.pack(f"={n}Q", *(id_of[s.args] for s in sites))
    refs = struct.pack(f"={n}Q", *(s.semaphore_offset for s in sites)) \
        if any(s.semaphore_offset for s in sites) else None
    upid = os.getpid() if pid == 0 else max(pid, 0)
    try:
        lfd = _sys.link_create(prog.fd, 0, AttachType.TRACE_UPROBE_MULTI, target=prog.name,
                               uprobe_multi=(os.fsencode(path), offsets, refs, cookies, 0, upid))
    except errors.SyscallError as e:
        raise errors.attach_error(e.command, e.errno, program=prog.name, hook=hook,
                                  family="uprobe") from e
    return Link(lfd, program=prog.name, type=LinkType.UPROBE_MULTI,
                hook=f"{hook}, {n} site{'s' if n > 1 else ''}", holds=[held])


def _attach_perf(prog: Any, path: str, sites: List[UsdtProbe], id_of: Dict[str, int], pid: int,
                 hook: str, held: _SpecIds) -> Link:
    from .uprobe import attach_uprobe

    def at_site(s: UsdtProbe) -> Link:
        return attach_uprobe(prog, path, None, offset=s.offset, pid=pid, cookie=id_of[s.args],
                             ref_ctr_offset=s.semaphore_offset)

    n = len(sites)
    return link_group(prog.name, at_site, sites, type=LinkType.PERF_EVENT,
                      hook=f"{hook}, {n} site{'s' if n > 1 else ''} (perf-event uprobes)",
                      holds=[held])

