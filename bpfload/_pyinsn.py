"""Pure-Python reference twin of :mod:`bpfload._core.insn`.

Same public names, same results, same exceptions (class *and* message) as the
compiled module; the test suite runs every case against both and compares
them on generated inputs.  Use it to read what the Cython code does, to debug,
and as the slow side of ``benchmarks/bench_insn.py``.  Compute only: no
syscalls, no kernel needed.

Instruction encoding (8-byte ``struct bpf_insn``, little-endian)::

    u8 code | u8 dst_reg:4 (low nibble), src_reg:4 (high nibble) | s16 off | s32 imm

``ld_imm64`` (code ``0x18``) occupies two slots; the second slot has code 0
and carries the upper 32 bits of the immediate in its ``imm``.

Relocation buffer for :func:`patch_maps`: native-endian int32 records of four
values ``(insn_index, kind, fd, addend)``; ``kind`` is ``RelocKind.MAP`` (1) or
``RelocKind.DATA`` (2); ``addend`` is the byte offset into the map value for
DATA and ignored for MAP.  Any C-contiguous buffer of format ``'i'``
(``array('i')``, a numpy int32 array) or raw bytes in that layout is accepted.
:func:`build_relocs` makes one from a :class:`LinkedProgram`'s relocations.
"""
from __future__ import annotations

import struct
from array import array

from .errors import BpfError, ElfError

__all__ = [
    "INSN_SIZE", "LD_IMM64", "CALL",
    "PSEUDO_MAP_FD", "PSEUDO_MAP_VALUE", "PSEUDO_CALL", "PSEUDO_FUNC",
    "KIND_MAP", "KIND_DATA", "KIND_CALL", "KIND_FUNC_ADDR", "KIND_EXTERN",
    "RECORD_INTS",
    "decode", "find_ld_imm64", "LinkedProgram", "link",
    "build_relocs", "patch_maps", "apply", "pack_ext_records",
]

INSN_SIZE = 8
LD_IMM64 = 0x18          # BPF_LD | BPF_IMM | BPF_DW
CALL = 0x85              # BPF_JMP | BPF_CALL
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_CALL = 1
PSEUDO_FUNC = 4

# bpfload.spec.RelocKind values, mirrored so the core needs no spec import.
KIND_MAP = 1
KIND_DATA = 2
KIND_CALL = 3
KIND_FUNC_ADDR = 4
KIND_EXTERN = 5
_KIND_NAMES = {1: "MAP", 2: "DATA", 3: "CALL", 4: "FUNC_ADDR", 5: "EXTERN"}

#: int32 values per patch_maps record: insn_index, kind, fd, addend
RECORD_INTS = 4

_IMM = struct.Struct("<i")


# ---------------------------------------------------------------- buffers

def _byte_view(insns, writable=False):
    """*insns* as a flat unsigned-byte memoryview of whole instructions."""
    try:
        mv = memoryview(insns)
    except TypeError:
        raise TypeError(f"instructions must be a bytes-like object, not {type(insns).__name__}") from None
    if writable and mv.readonly:
        raise TypeError("instructions must be a writable buffer (e.g. bytearray) to be patched")
    if not mv.c_contiguous:
        raise TypeError("instructions must be a C-contiguous buffer")
    mv = mv.cast("B")
    if mv.nbytes % INSN_SIZE:
        raise ElfError(f"instruction stream is {mv.nbytes} bytes, not a multiple of {INSN_SIZE}")
    return mv


def _record_view(relocs):
    """*relocs* as a flat int32 memoryview of whole patch records."""
    try:
        mv = memoryview(relocs)
    except TypeError:
        raise TypeError(f"relocation buffer must be a bytes-like object, not {type(relocs).__name__}") from None
    if not mv.c_contiguous:
        raise TypeError("relocation buffer must be C-contiguous")
    if mv.format not in ("i", "B", "b", "c"):
        raise TypeError(f"relocation buffer must hold int32 ('i') or raw bytes, not format {mv.format!r}")
    if mv.nbytes % (4 * RECORD_INTS):
        raise ValueError(f"relocation buffer is {mv.nbytes} bytes, not a whole number of "
                         f"{4 * RECORD_INTS}-byte records (int32 insn, kind, fd, addend)")
    return mv.cast("B").cast("i")


def _scan_ld_imm64(mv, n):
    out = []
    i = 0
    while i < n:
        if mv[i * 8] == LD_IMM64:
            if i + 1 >= n:
                raise ElfError(f"ld_imm64 at instruction {i} is missing its second half (end of stream)")
            code2 = mv[(i + 1) * 8]
            if code2 != 0:
                raise ElfError(f"ld_imm64 at instruction {i} is missing its second half "
                               f"(instruction {i + 1} has code {code2:#04x})")
            out.append(i)
            i += 2
        else:
            i += 1
    return out


# --------------------------------------------------------------- decoding

def decode(insns):
    """Decode an instruction stream into ``(code, dst_reg, src_reg, off, imm)`` per slot.

    ``off`` and ``imm`` are signed.  An ``ld_imm64`` yields two tuples (the
    second has code 0).  Raises :class:`ElfError` if the length is not a
    multiple of 8 or an ``ld_imm64`` lacks its second half; ``TypeError`` if
    *insns* is not a contiguous bytes-like object.
    """
    mv = _byte_view(insns)
    _scan_ld_imm64(mv, mv.nbytes // INSN_SIZE)
    return [(code, regs & 0x0F, regs >> 4, off, imm)
            for code, regs, off, imm in struct.iter_unpack("<BBhi", mv)]


def find_ld_imm64(insns):
    """Indexes of the first slot of every ``ld_imm64`` (code 0x18) instruction.

    Raises :class:`ElfError` like :func:`decode`.
    """
    mv = _byte_view(insns)
    return _scan_ld_imm64(mv, mv.nbytes // INSN_SIZE)


# ---------------------------------------------------------------- linking

class LinkedProgram:
    """One program's instructions with its subprograms appended and calls fixed.

    ``insns``: bytearray, patched in place by :func:`apply`/:func:`patch_maps`.
    ``layout``: ``[(function name, start instruction index), ...]`` in order,
    entry first (for remapping BTF func_info/line_info).
    ``relocs``: the MAP, DATA and EXTERN relocations of every included
    function, ``insn`` absolute in ``insns``, sorted by ``insn``.
    """

    __slots__ = ("name", "insns", "layout", "relocs")

    def __init__(self, name, insns, layout, relocs):
        self.name = name
        self.insns = insns
        self.layout = layout
        self.relocs = relocs

    @property
    def insn_count(self):
        return len(self.insns) // INSN_SIZE

    def __eq__(self, other):
        if not isinstance(other, LinkedProgram):
            return NotImplemented
        return (self.name, self.insns, self.layout, self.relocs) == \
            (other.name, other.insns, other.layout, other.relocs)

    __hash__ = None

    def __repr__(self):
        return (f"LinkedProgram({self.name!r}, {self.insn_count} insns, "
                f"layout={self.layout!r}, {len(self.relocs)} relocs)")


def _fn_error(name, fn, idx, msg):
    section = getattr(fn, "section", None) or None
    offset = getattr(fn, "offset", 0) + idx * INSN_SIZE
    return ElfError(f"instruction {idx}: {msg}", section=section, symbol=name, offset=offset)


def _prepare(name, fn):
    """(insn count, relocations sorted by instruction) of one function."""
    nbytes = len(fn.insns)
    if nbytes % INSN_SIZE:
        raise ElfError(f"function is {nbytes} bytes, not a multiple of {INSN_SIZE}",
                       section=getattr(fn, "section", None) or None, symbol=name)
    return nbytes // INSN_SIZE, sorted(fn.relocs, key=lambda r: r.insn)


def _check_ld_imm64(name, fn, out, base, idx, n, kind):
    p = (base + idx) * 8
    code = out[p]
    if code != LD_IMM64:
        raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} relocation is not on an ld_imm64 "
                                       f"instruction (code {code:#04x})")
    if idx + 1 >= n:
        raise _fn_error(name, fn, idx, "ld_imm64 is missing its second half (end of function)")
    code2 = out[p + 8]
    if code2 != 0:
        raise _fn_error(name, fn, idx, f"ld_imm64 is missing its second half "
                                       f"(instruction {idx + 1} has code {code2:#04x})")


def link(entry_name, functions):
    """Link program *entry_name* with every subprogram it reaches.

    *functions* maps name -> :class:`bpfload.spec.FunctionSpec` (relocation
    indexes relative to each function).  The entry's instructions come first;
    each function named by a CALL or FUNC_ADDR relocation is appended once, at
    its first reference, depth-first in instruction order like libbpf
    (callees of callees are appended before the caller's later callees;
    recursion and cycles are fine).  Calls get ``src_reg=BPF_PSEUDO_CALL``,
    FUNC_ADDR ld_imm64s ``src_reg=BPF_PSEUDO_FUNC``, both with
    ``imm = callee_start + addend - (insn + 1)``.  The specs are not modified.

    Raises :class:`ElfError` (with the function as ``symbol`` and the
    instruction index in the message) for: an unknown entry or callee, a
    function whose size is not a multiple of 8, a relocation index or call
    target offset out of range, two relocations on one instruction, a CALL
    relocation not on a call (0x85), a MAP/DATA/FUNC_ADDR relocation not on a
    complete ld_imm64, an unknown relocation kind, and a bpf-to-bpf call
    (``call`` with src_reg 1) that has no CALL/EXTERN relocation.
    """
    if entry_name not in functions:
        raise ElfError(f"unknown entry function {entry_name!r}", symbol=entry_name)
    entry = functions[entry_name]
    n, relocs = _prepare(entry_name, entry)
    start = {entry_name: 0}
    counts = {entry_name: n}
    order = [(entry_name, entry, relocs)]
    total = n
    # Iterative depth-first walk: a frame is [name, fn, sorted relocs, next reloc].
    stack = [[entry_name, entry, relocs, 0]]
    while stack:
        frame = stack[-1]
        name, fn, relocs, pos = frame
        pushed = False
        while pos < len(relocs):
            r = relocs[pos]
            pos += 1
            kind = int(r.kind)
            if kind != KIND_CALL and kind != KIND_FUNC_ADDR:
                continue
            target = r.target
            if target in start:
                continue
            if target not in functions:
                raise _fn_error(name, fn, r.insn, f"{_KIND_NAMES[kind]} relocation names unknown "
                                                  f"function {target!r}")
            callee = functions[target]
            cn, crelocs = _prepare(target, callee)
            start[target] = total
            counts[target] = cn
            total += cn
            order.append((target, callee, crelocs))
            frame[3] = pos
            stack.append([target, callee, crelocs, 0])
            pushed = True
            break
        if not pushed:
            stack.pop()

    out = bytearray(total * INSN_SIZE)
    out_relocs = []
    layout = []
    for name, fn, relocs in order:
        base = start[name]
        n = counts[name]
        layout.append((name, base))
        out[base * 8:(base + n) * 8] = fn.insns
        claimed = set()
        for r in relocs:
            idx = r.insn
            kind = int(r.kind)
            if kind not in _KIND_NAMES:
                raise _fn_error(name, fn, idx, f"unknown relocation kind {kind}")
            if idx < 0 or idx >= n:
                raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} relocation is out of range "
                                               f"(function has {n} instructions)")
            if idx in claimed:
                raise _fn_error(name, fn, idx, "more than one relocation on one instruction")
            claimed.add(idx)
            p = (base + idx) * 8
            if kind == KIND_CALL or kind == KIND_FUNC_ADDR:
                if kind == KIND_CALL:
                    code = out[p]
                    if code != CALL:
                        raise _fn_error(name, fn, idx, f"CALL relocation is not on a call "
                                                       f"instruction (code {code:#04x})")
                    src = PSEUDO_CALL
                else:
                    _check_ld_imm64(name, fn, out, base, idx, n, kind)
                    src = PSEUDO_FUNC
                target = r.target
                addend = r.addend
                if addend < 0 or addend >= counts[target]:
                    raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} target offset {addend} is "
                                                   f"outside function {target!r} "
                                                   f"({counts[target]} instructions)")
                imm = start[target] + addend - (base + idx + 1)
                out[p + 1] = (out[p + 1] & 0x0F) | (src << 4)
                _IMM.pack_into(out, p + 4, imm)
            else:
                if kind != KIND_EXTERN:
                    _check_ld_imm64(name, fn, out, base, idx, n, kind)
                out_relocs.append(type(r)(base + idx, r.kind, r.target, r.addend))
        for idx in range(n):
            p = (base + idx) * 8
            if out[p] == CALL and out[p + 1] >> 4 == PSEUDO_CALL and idx not in claimed:
                raise _fn_error(name, fn, idx, "bpf-to-bpf call without a CALL relocation")
    return LinkedProgram(entry_name, out, layout, out_relocs)


# --------------------------------------------------------------- patching

def build_relocs(relocs, fd_of):
    """The :func:`patch_maps` buffer (``array('i')``) for MAP and DATA *relocs*.

    *fd_of* maps a relocation target (map name, data section name) to its fd.
    Other kinds (EXTERN...) are skipped.  Raises :class:`BpfError` ("map has
    no fd") for a target missing from *fd_of*; ``OverflowError`` for a value
    that does not fit in int32.
    """
    out = array("i")
    for r in relocs:
        kind = int(r.kind)
        if kind == KIND_MAP:
            addend = 0
        elif kind == KIND_DATA:
            addend = r.addend
        else:
            continue
        if r.target not in fd_of:
            raise BpfError(f"instruction {r.insn}: map {r.target!r} has no fd")
        out.extend((r.insn, kind, fd_of[r.target], addend))
    return out


def pack_ext_records(records, offset, start, width, out, last=-1):
    """Append BTF.ext *records* to *out* (``array('I')``) in the kernel's layout, rebased.

    *records* lie in one function that starts at byte *offset* of its section
    and at instruction *start* of the linked program.  *width* 2: ``FuncInfo``
    records become ``bpf_func_info`` (insn, type_id); *width* 4: ``LineInfo``
    records become ``bpf_line_info`` (insn, file_name_off, line_off, line_col);
    insn is ``(insn_off - offset) // 8 + start``.  *last* is the instruction
    of the record written before these (-1: none).  Returns ``(last
    instruction written, True if the instructions strictly increased)``
    (the kernel takes nothing else: the caller sorts otherwise).  Raises
    ``OverflowError`` for a value that does not fit a u32 (*out* is left as
    it was), ``ValueError`` for another *width*, ``TypeError`` for an *out*
    that is not an ``array('I')``.
    """
    if width != 2 and width != 4:
        raise ValueError(f"width must be 2 (func_info) or 4 (line_info), not {width}")
    if type(out) is not array or out.typecode != "I":
        raise TypeError("out must be an array('I')")
    ok = True
    vals = []
    for r in records:
        insn_idx = (r.insn_off - offset) // 8 + start
        if insn_idx < 0 or insn_idx > 0xFFFFFFFF:
            raise OverflowError(f"instruction {insn_idx} does not fit a u32")
        if insn_idx <= last:
            ok = False
        last = insn_idx
        if width == 2:
            vals += (insn_idx, r.type_id)
        else:
            vals += (insn_idx, r.file_name_off, r.line_off, r.line_col)
    out.extend(array("I", vals))   # all or nothing: a value over u32 raises OverflowError first
    return last, ok


def _record_error(k, err, idx, kind, fd, addend, n, code):
    if err == 1:
        return ElfError(f"relocation {k}: instruction {idx} out of range for an ld_imm64 "
                        f"(program has {n} instructions)")
    if err == 2:
        return ElfError(f"relocation {k}: unknown kind {kind} (expected 1=MAP or 2=DATA)")
    if err == 3:
        return BpfError(f"relocation {k} (instruction {idx}): map has no fd (fd={fd})")
    if err == 4:
        return ElfError(f"relocation {k} (instruction {idx}): negative data offset {addend}")
    if err == 5:
        return ElfError(f"relocation {k}: instruction {idx} is not ld_imm64 (code {code:#04x})")
    return ElfError(f"relocation {k}: ld_imm64 at instruction {idx} is missing its second half "
                    f"(instruction {idx + 1} has code {code:#04x})")


def patch_maps(insns, relocs):
    """Point the ld_imm64 instructions named by *relocs* at their maps, in place.

    *insns*: writable buffer (bytearray).  *relocs*: int32 records
    ``(insn_index, kind, fd, addend)`` (see the module docstring).
    MAP: ``src_reg = BPF_PSEUDO_MAP_FD``, ``imm = fd``, second slot ``imm = 0``.
    DATA: ``src_reg = BPF_PSEUDO_MAP_VALUE``, ``imm = fd``, second slot
    ``imm = addend``.  Every record is validated before anything is written,
    so on error *insns* is unchanged.  Returns the number of records applied.

    Raises :class:`ElfError` (a ValueError) for a stream whose length is not a
    multiple of 8, an index out of range, a non-ld_imm64 target, an unknown
    kind or a negative DATA offset; :class:`BpfError` ("map has no fd") for
    ``fd < 0``; ``ValueError`` for a buffer that is not whole records;
    ``TypeError`` for a read-only *insns* or an unsupported buffer format.
    """
    buf = _byte_view(insns, writable=True)
    rec = _record_view(relocs)
    n = buf.nbytes // INSN_SIZE
    count = len(rec) // RECORD_INTS
    for k in range(count):
        j = k * RECORD_INTS
        idx, kind, fd, addend = rec[j], rec[j + 1], rec[j + 2], rec[j + 3]
        err = 0
        code = 0
        if idx < 0 or idx + 1 >= n:
            err = 1
        elif kind != KIND_MAP and kind != KIND_DATA:
            err = 2
        elif fd < 0:
            err = 3
        elif kind == KIND_DATA and addend < 0:
            err = 4
        else:
            code = buf[idx * 8]
            if code != LD_IMM64:
                err = 5
            else:
                code = buf[idx * 8 + 8]
                if code != 0:
                    err = 6
        if err:
            raise _record_error(k, err, idx, kind, fd, addend, n, code)
    for k in range(count):
        j = k * RECORD_INTS
        p = rec[j] * 8
        if rec[j + 1] == KIND_MAP:
            src, imm2 = PSEUDO_MAP_FD, 0
        else:
            src, imm2 = PSEUDO_MAP_VALUE, rec[j + 3]
        buf[p + 1] = (buf[p + 1] & 0x0F) | (src << 4)
        _IMM.pack_into(buf, p + 4, rec[j + 2])
        _IMM.pack_into(buf, p + 12, imm2)
    return count


def apply(linked, fd_of):
    """Patch *linked*'s MAP and DATA relocations in place with the fds in *fd_of*.

    Same as ``patch_maps(linked.insns, build_relocs(linked.relocs, fd_of))``
    and raises what those raise.  Returns the number of instructions patched.
    """
    return patch_maps(linked.insns, build_relocs(linked.relocs, fd_of))
