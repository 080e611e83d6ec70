# cython: language_level=3
"""BPF instruction work in compiled code: decode, link subprograms, patch maps.

Compute only: no syscalls, and nothing imported from bpfload but
:mod:`bpfload.errors`.  :mod:`bpfload._pyinsn` is the pure-Python twin with the
same names, results and exceptions (class and message); the tests run every
case against both.  Read that module for the reference semantics; this one
keeps the per-instruction work in C over typed memoryviews.

Instruction encoding (8-byte ``struct bpf_insn``, little-endian)::

    u8 code | u8 dst_reg:4 (low nibble), src_reg:4 (high nibble) | s16 off | s32 imm

Relocation buffer for :func:`patch_maps`: native-endian int32 records of four
values ``(insn_index, kind, fd, addend)``; ``kind`` is ``RelocKind.MAP`` (1) or
``RelocKind.DATA`` (2); ``addend`` is the byte offset into the map value for
DATA and ignored for MAP.  Any C-contiguous buffer of format ``'i'``
(``array('i')``, a numpy int32 array) or raw bytes in that layout is accepted.
:func:`build_relocs` makes one from a :class:`LinkedProgram`'s relocations.
"""
import struct
from array import array

from bpfload.errors import BpfError, ElfError

from cpython cimport array as carray
from libc.stdint cimport int32_t


cdef extern from "bpf_insn.h" nogil:
    unsigned char bpfl_code(const unsigned char *p)
    unsigned char bpfl_dst(const unsigned char *p)
    unsigned char bpfl_src(const unsigned char *p)
    short bpfl_off(const unsigned char *p)
    int32_t bpfl_imm(const unsigned char *p)
    void bpfl_set_src(unsigned char *p, unsigned char src)
    void bpfl_set_imm(unsigned char *p, int32_t imm)
    void BPFL_DEBUG_ASSERT(bint cond)


cdef enum:
    C_LD_IMM64 = 0x18
    C_CALL = 0x85
    C_PSEUDO_MAP_FD = 1
    C_PSEUDO_MAP_VALUE = 2
    C_PSEUDO_CALL = 1
    C_PSEUDO_FUNC = 4
    C_KIND_MAP = 1
    C_KIND_DATA = 2
    C_RECORD_INTS = 4
    # patch_maps record errors (messages in _record_error)
    E_RANGE = 1
    E_KIND = 2
    E_FD = 3
    E_ADDEND = 4
    E_NOT_LD = 5
    E_SECOND = 6


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
    if mv.nbytes % 8:
        raise ElfError(f"instruction stream is {mv.nbytes} bytes, not a multiple of 8")
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
    if mv.nbytes % (4 * C_RECORD_INTS):
        raise ValueError(f"relocation buffer is {mv.nbytes} bytes, not a whole number of "
                         f"{4 * C_RECORD_INTS}-byte records (int32 insn, kind, fd, addend)")
    return mv.cast("B").cast("i")


cdef list _scan_ld_imm64(const unsigned char[::1] buf, Py_ssize_t n):
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef int code2
    while i < n:
        if buf[i * 8] == C_LD_IMM64:
            if i + 1 >= n:
                raise ElfError(f"ld_imm64 at instruction {i} is missing its second half (end of stream)")
            code2 = buf[(i + 1) * 8]
            if code2 != 0:
                raise ElfError(f"ld_imm64 at instruction {i} is missing its second half "
                               f"(instruction {i + 1} has code {format(code2, '#04x')})")
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
    cdef const unsigned char[::1] buf = _byte_view(insns)
    cdef Py_ssize_t n = buf.shape[0] // 8
    cdef Py_ssize_t i
    cdef const unsigned char *p
    _scan_ld_imm64(buf, n)
    cdef list out = []
    for i in range(n):
        p = &buf[i * 8]
        out.append((bpfl_code(p), bpfl_dst(p), bpfl_src(p), bpfl_off(p), bpfl_imm(p)))
    return out


def find_ld_imm64(insns):
    """Indexes of the first slot of every ``ld_imm64`` (code 0x18) instruction.

    Raises :class:`ElfError` like :func:`decode`.
    """
    cdef const unsigned char[::1] buf = _byte_view(insns)
    return _scan_ld_imm64(buf, buf.shape[0] // 8)


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
        return len(self.insns) // 8

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
    offset = getattr(fn, "offset", 0) + idx * 8
    return ElfError(f"instruction {idx}: {msg}", section=section, symbol=name, offset=offset)


def _reloc_insn(r):
    return r.insn


def _prepare(name, fn):
    """(insn count, relocations sorted by instruction) of one function."""
    nbytes = len(fn.insns)
    if nbytes % 8:
        raise ElfError(f"function is {nbytes} bytes, not a multiple of 8",
                       section=getattr(fn, "section", None) or None, symbol=name)
    return nbytes // 8, sorted(fn.relocs, key=_reloc_insn)


cdef _check_ld_imm64(name, fn, const unsigned char[::1] out, Py_ssize_t base, Py_ssize_t idx,
                     Py_ssize_t n, int kind):
    # idx is already known to be in [0, n) and base + n <= len(out) // 8
    cdef Py_ssize_t p = (base + idx) * 8
    cdef int code = out[p]
    if code != C_LD_IMM64:
        raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} relocation is not on an ld_imm64 "
                                       f"instruction (code {format(code, '#04x')})")
    if idx + 1 >= n:
        raise _fn_error(name, fn, idx, "ld_imm64 is missing its second half (end of function)")
    code = out[p + 8]
    if code != 0:
        raise _fn_error(name, fn, idx, f"ld_imm64 is missing its second half "
                                       f"(instruction {idx + 1} has code {format(code, '#04x')})")


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
    cdef dict start = {entry_name: 0}
    cdef dict counts = {entry_name: n}
    cdef list order = [(entry_name, entry, relocs)]
    cdef Py_ssize_t total = n
    cdef list stack = [[entry_name, entry, relocs, 0]]
    cdef list frame
    cdef Py_ssize_t pos
    cdef int kind
    cdef bint pushed
    # Iterative depth-first walk: a frame is [name, fn, sorted relocs, next reloc].
    while stack:
        frame = stack[len(stack) - 1]  # wraparound is off: no [-1]
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

    out = bytearray(total * 8)
    for name, fn, relocs in order:
        base = start[name]
        out[base * 8:(base + counts[name]) * 8] = fn.insns

    cdef unsigned char[::1] ob = out
    cdef unsigned char *p
    cdef Py_ssize_t cbase, cn_, idx, addend, code, src, i, tstart
    cdef set claimed
    cdef list out_relocs = []
    cdef list layout = []
    for name, fn, relocs in order:
        cbase = start[name]
        cn_ = counts[name]
        layout.append((name, cbase))
        claimed = set()
        for r in relocs:
            idx = r.insn
            kind = int(r.kind)
            if kind not in _KIND_NAMES:
                raise _fn_error(name, fn, idx, f"unknown relocation kind {kind}")
            if idx < 0 or idx >= cn_:
                raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} relocation is out of range "
                                               f"(function has {cn_} instructions)")
            if idx in claimed:
                raise _fn_error(name, fn, idx, "more than one relocation on one instruction")
            claimed.add(idx)
            BPFL_DEBUG_ASSERT((cbase + idx) * 8 + 8 <= ob.shape[0])
            p = &ob[(cbase + idx) * 8]
            if kind == KIND_CALL or kind == KIND_FUNC_ADDR:
                if kind == KIND_CALL:
                    code = bpfl_code(p)
                    if code != C_CALL:
                        raise _fn_error(name, fn, idx, f"CALL relocation is not on a call "
                                                       f"instruction (code {format(code, '#04x')})")
                    src = C_PSEUDO_CALL
                else:
                    _check_ld_imm64(name, fn, ob, cbase, idx, cn_, kind)
                    src = C_PSEUDO_FUNC
                target = r.target
                addend = r.addend
                if addend < 0 or addend >= counts[target]:
                    raise _fn_error(name, fn, idx, f"{_KIND_NAMES[kind]} target offset {addend} is "
                                                   f"outside function {target!r} "
                                                   f"({counts[target]} instructions)")
                bpfl_set_src(p, <unsigned char>src)
                tstart = start[target]
                bpfl_set_imm(p, <int32_t>(tstart + addend - (cbase + idx + 1)))
            else:
                if kind != KIND_EXTERN:
                    _check_ld_imm64(name, fn, ob, cbase, idx, cn_, kind)
                if cbase == 0:
                    out_relocs.append(r)   # already absolute: relocations are immutable, share it
                else:
                    out_relocs.append(type(r)(cbase + idx, r.kind, r.target, r.addend))  # replace(): 5x slower
        for i in range(cn_):
            p = &ob[(cbase + i) * 8]
            if bpfl_code(p) == C_CALL and bpfl_src(p) == C_PSEUDO_CALL and i not in claimed:
                raise _fn_error(name, fn, i, "bpf-to-bpf call without a CALL relocation")
    return LinkedProgram(entry_name, out, layout, out_relocs)


# --------------------------------------------------------------- patching

def build_relocs(relocs, fd_of):
    """The :func:`patch_maps` buffer (``array('i')``) for MAP and DATA *relocs*.

    *fd_of* maps a relocation target (map name, data section name) to its fd.
    Other kinds (EXTERN...) are skipped.  Raises :class:`BpfError` ("map has
    no fd") for a target missing from *fd_of*; ``OverflowError`` for a value
    that does not fit in int32.
    """
    cdef carray.array out = array("i")
    cdef Py_ssize_t n = 0
    cdef int kind, insn_idx, fd, addend
    cdef int *d
    for r in relocs:
        kobj = int(r.kind)
        if kobj == KIND_MAP:
            kind = C_KIND_MAP
            addend = 0
        elif kobj == KIND_DATA:
            kind = C_KIND_DATA
            addend = r.addend
        else:
            continue
        target = r.target
        if target not in fd_of:
            raise BpfError(f"instruction {r.insn}: map {target!r} has no fd")
        insn_idx = r.insn
        fd = fd_of[target]
        carray.resize_smart(out, n + C_RECORD_INTS)
        d = out.data.as_ints + n
        d[0] = insn_idx
        d[1] = kind
        d[2] = fd
        d[3] = addend
        n += C_RECORD_INTS
    return out


def pack_ext_records(records, Py_ssize_t offset, Py_ssize_t start, Py_ssize_t width, out,
                     Py_ssize_t last=-1):
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
    cdef carray.array arr = out
    cdef Py_ssize_t base = len(arr)
    cdef Py_ssize_t n = len(records)
    cdef Py_ssize_t insn_idx
    cdef bint ok = True
    cdef unsigned int *d
    cdef Py_ssize_t k = 0
    carray.resize_smart(arr, base + n * width)
    try:
        for r in records:
            if k >= n:
                raise ValueError("records changed size while packing")
            insn_idx = (<Py_ssize_t>r.insn_off - offset) // 8 + start
            if insn_idx < 0 or insn_idx > 0xFFFFFFFF:
                raise OverflowError(f"instruction {insn_idx} does not fit a u32")
            if insn_idx <= last:
                ok = False
            last = insn_idx
            d = arr.data.as_uints + base + k * width
            d[0] = insn_idx
            if width == 2:
                d[1] = r.type_id
            else:
                d[1] = r.file_name_off
                d[2] = r.line_off
                d[3] = r.line_col
            k += 1
        if k != n:
            raise ValueError("records changed size while packing")
    except BaseException:
        carray.resize(arr, base)
        raise
    return last, ok


def _record_error(k, err, idx, kind, fd, addend, n, code):
    if err == E_RANGE:
        return ElfError(f"relocation {k}: instruction {idx} out of range for an ld_imm64 "
                        f"(program has {n} instructions)")
    if err == E_KIND:
        return ElfError(f"relocation {k}: unknown kind {kind} (expected 1=MAP or 2=DATA)")
    if err == E_FD:
        return BpfError(f"relocation {k} (instruction {idx}): map has no fd (fd={fd})")
    if err == E_ADDEND:
        return ElfError(f"relocation {k} (instruction {idx}): negative data offset {addend}")
    if err == E_NOT_LD:
        return ElfError(f"relocation {k}: instruction {idx} is not ld_imm64 (code {code:#04x})")
    return ElfError(f"relocation {k}: ld_imm64 at instruction {idx} is missing its second half "
                    f"(instruction {idx + 1} has code {code:#04x})")


cdef inline int _check_record(const unsigned char *base, Py_ssize_t n, const int *r,
                              int *code) noexcept nogil:
    """0 if record *r* may be applied to the *n* instructions at *base*, else E_*.

    The one place untrusted record values are turned into memory accesses:
    everything below reads *base* only at ``idx * 8`` and ``idx * 8 + 8`` with
    ``0 <= idx`` and ``idx + 1 < n``.
    """
    cdef Py_ssize_t idx = r[0]
    cdef int kind = r[1]
    if idx < 0 or idx + 1 >= n:
        return E_RANGE
    if kind != C_KIND_MAP and kind != C_KIND_DATA:
        return E_KIND
    if r[2] < 0:
        return E_FD
    if kind == C_KIND_DATA and r[3] < 0:
        return E_ADDEND
    code[0] = base[idx * 8]
    if code[0] != C_LD_IMM64:
        return E_NOT_LD
    code[0] = base[idx * 8 + 8]
    if code[0] != 0:
        return E_SECOND
    return 0


def patch_maps(insns, relocs):
    """Point the ld_imm64 instructions named by *relocs* at their maps, in place.

    *insns*: writable buffer (bytearray).  *relocs*: int32 records
    ``(insn_index, kind, fd, addend)`` (see the module docstring).
    MAP: ``src_reg = BPF_PSEUDO_MAP_FD``, ``imm = fd``, second slot ``imm = 0``.
    DATA: ``src_reg = BPF_PSEUDO_MAP_VALUE``, ``imm = fd``, second slot
    ``imm = addend``.  Every record is validated before anything is written,
    so on error *insns* is unchanged.  Returns the number of records applied.
    The work runs without the GIL.

    Raises :class:`ElfError` (a ValueError) for a stream whose length is not a
    multiple of 8, an index out of range, a non-ld_imm64 target, an unknown
    kind or a negative DATA offset; :class:`BpfError` ("map has no fd") for
    ``fd < 0``; ``ValueError`` for a buffer that is not whole records;
    ``TypeError`` for a read-only *insns* or an unsupported buffer format.
    """
    cdef unsigned char[::1] buf = _byte_view(insns, True)
    cdef const int[::1] rec = _record_view(relocs)
    cdef Py_ssize_t n = buf.shape[0] // 8
    cdef Py_ssize_t count = rec.shape[0] // C_RECORD_INTS
    cdef Py_ssize_t k, bad = -1
    cdef int err = 0, code = 0
    cdef unsigned char *base
    cdef unsigned char *p
    cdef const int *r
    if count == 0:
        return 0
    if n == 0:
        # every record is out of range; report the first like the loop would
        err = E_RANGE
        bad = 0
    else:
        base = &buf[0]
        with nogil:
            for k in range(count):
                err = _check_record(base, n, &rec[k * C_RECORD_INTS], &code)
                if err:
                    bad = k
                    break
            if not err:
                for k in range(count):
                    r = &rec[k * C_RECORD_INTS]
                    BPFL_DEBUG_ASSERT(r[0] >= 0 and r[0] + 1 < n)
                    p = base + <Py_ssize_t>r[0] * 8
                    if r[1] == C_KIND_MAP:
                        bpfl_set_src(p, C_PSEUDO_MAP_FD)
                        bpfl_set_imm(p + 8, 0)
                    else:
                        bpfl_set_src(p, C_PSEUDO_MAP_VALUE)
                        bpfl_set_imm(p + 8, r[3])
                    bpfl_set_imm(p, r[2])
    if err:
        r = &rec[bad * C_RECORD_INTS]
        raise _record_error(bad, err, r[0], r[1], r[2], r[3], n, code)
    return count


def apply(linked, fd_of):
    """Patch *linked*'s MAP and DATA relocations in place with the fds in *fd_of*.

    Same as ``patch_maps(linked.insns, build_relocs(linked.relocs, fd_of))``
    and raises what those raise.  Returns the number of instructions patched.
    """
    return patch_maps(linked.insns, build_relocs(linked.relocs, fd_of))
