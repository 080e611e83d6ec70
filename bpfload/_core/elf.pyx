# cython: language_level=3
"""ELF record walking in compiled code: symbols, code relocations, call sites.

Compute only: no syscalls, and nothing imported from bpfload but
:mod:`bpfload.errors`.  :mod:`bpfload.elf.reader` decides what an object
means; what it does once per symbol, relocation or instruction is done here
over the raw section bytes:

* :func:`read_sections` -- the section header table as :class:`Section`\ s,
  names decoded, offsets and sizes checked against the file;
* :func:`read_symbols` -- every ``Elf64_Sym`` of a symbol table as a
  :class:`Symbol`, names decoded through the string table;
* :class:`FuncTable` -- the functions of one executable section, sorted by
  start, with the "which function holds this byte" lookup;
* :func:`code_relocs` -- the REL entries of one executable section: the
  common ones (an ``ld_imm64`` of a map, a bpf-to-bpf call into another
  section) become relocations of their function here; every other entry,
  and every entry that is wrong in any way, is handed to the reader's
  Python code, which finishes it or raises the error naming it;
* :func:`call_sites` -- the bpf-to-bpf calls of a function's instructions.

Every read is bounds-checked against the buffer it comes from; a bad
offset, index or count is reported (or handed back to Python to report),
never a crash.  ``bpfload.elf.reader`` keeps the pure-Python twin of each
function for builds without this extension; the tests compare the two.
"""
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy

__all__ = ["Section", "Symbol", "FuncTable", "read_sections", "read_symbols", "code_relocs",
           "call_sites"]

cdef enum:
    SHDR_SIZE = 64
    SHT_NULL = 0
    SHT_PROGBITS = 1
    SHT_NOBITS = 8
    SHF_EXECINSTR = 4
    SYM_SIZE = 24
    REL_SIZE = 16
    INSN_SIZE = 8
    STT_SECTION = 3
    SHN_LORESERVE = 0xFF00
    LD_IMM64 = 0x18
    CALL = 0x85
    PSEUDO_CALL = 1

# symbol values at or past this take the Python path (no overflow in 64-bit arithmetic here)
cdef uint64_t VALUE_LIMIT = 1ULL << 62


cdef inline uint32_t _u32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t _u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline int32_t _i32(const unsigned char *p) noexcept nogil:
    cdef int32_t v
    memcpy(&v, p, 4)
    return v


cdef class Symbol:
    """One ``Elf64_Sym``: ``index`` in the table, ``name`` (a section symbol without a
    name is named after its section), ``value``, ``size``, ``bind`` (STB_*), ``type``
    (STT_*), ``shndx`` and ``visibility`` (STV_*)."""

    cdef readonly Py_ssize_t index
    cdef readonly str name
    cdef readonly uint64_t value
    cdef readonly uint64_t size
    cdef readonly int bind
    cdef readonly int type
    cdef readonly Py_ssize_t shndx
    cdef readonly int visibility

    def __init__(self, Py_ssize_t index, str name, uint64_t value, uint64_t size, int bind,
                 int type_, Py_ssize_t shndx, int visibility):
        self.index = index
        self.name = name
        self.value = value
        self.size = size
        self.bind = bind
        self.type = type_
        self.shndx = shndx
        self.visibility = visibility

    def __repr__(self):
        return (f"Symbol(#{self.index} {self.name!r} value={self.value:#x} size={self.size} "
                f"bind={self.bind} type={self.type} shndx={self.shndx})")


cdef class Section:
    """One section header, decoded; :attr:`data` is the section's bytes (empty for
    NOBITS/NULL), sliced from the file on first use.

    ``type`` is the sh_type name (``"SHT_PROGBITS"``, ...), ``type_id`` its value.
    The offset and size were checked against the file when the header was read,
    except for NOBITS sections, which occupy no bytes of the file.  (The compiled
    twin of :class:`bpfload.elf.file.ElfSection`, made by :func:`read_sections`.)
    """

    cdef readonly Py_ssize_t index
    cdef readonly str name
    cdef readonly str type
    cdef readonly uint32_t type_id
    cdef readonly uint64_t flags
    cdef readonly uint64_t offset
    cdef readonly uint64_t size
    cdef readonly uint32_t link
    cdef readonly uint32_t info
    cdef readonly uint64_t entsize
    cdef readonly bint nobits
    cdef bytes _file
    cdef readonly object _data   # None until sliced (the tests look)

    @property
    def data(self):
        """The section's bytes, sliced from the file once (never past its end: checked at read)."""
        if self._data is None:
            self._data = self._file[self.offset:self.offset + self.size]
        return self._data

    @property
    def executable(self):
        """PROGBITS with SHF_EXECINSTR: BPF instructions."""
        return self.type_id == SHT_PROGBITS and (self.flags & SHF_EXECINSTR) != 0

    def __repr__(self):
        return f"ElfSection(#{self.index} {self.name!r} {self.type} size={self.size:#x})"


def read_sections(bytes data, uint64_t shoff, Py_ssize_t shnum, uint64_t names_off,
                  uint64_t names_size, dict type_names):
    """The section header table -> ``(sections, None)`` or ``(sections so far, error)``.

    *shoff*/*shnum*: the table (checked by the caller to lie inside *data*);
    *names_off*/*names_size*: the section name string table (checked too);
    *type_names*: sh_type -> name (others are named ``SHT_<hex>``).  *error*:
    ``("name_outside", index, sh_name, 0)``, ``("name_unterminated", index,
    0, 0)`` or ``("extends", index, offset, size)`` with the section's name
    in place of the last field (a section past the end of the file).  Never
    raises for well-typed arguments.
    """
    cdef Py_ssize_t n = len(data), i
    cdef const unsigned char *p = <const unsigned char *>(<char *>data)
    cdef const unsigned char *h
    cdef const unsigned char *nm
    cdef const unsigned char *end
    cdef uint32_t sh_name, sh_type
    cdef uint64_t off, size
    cdef list out = []
    cdef Section sec
    cdef str name
    if shnum < 0 or shoff > <uint64_t>n or <uint64_t>shnum * SHDR_SIZE > <uint64_t>n - shoff \
            or names_off > <uint64_t>n or names_size > <uint64_t>n - names_off:
        raise ValueError("section table or name table outside the data")
    nm = p + names_off
    for i in range(shnum):
        h = p + shoff + i * SHDR_SIZE
        sh_name = _u32(h)
        sh_type = _u32(h + 4)
        if sh_name >= names_size:
            if sh_name:
                return out, ("name_outside", i, sh_name, 0)
            name = ""
        else:
            end = <const unsigned char *>memchr(nm + sh_name, 0, names_size - sh_name)
            if end == NULL:
                return out, ("name_unterminated", i, 0, 0)
            name = PyUnicode_DecodeUTF8(<const char *>(nm + sh_name), end - (nm + sh_name), "replace")
        off = _u64(h + 24)
        size = _u64(h + 32)
        if sh_type == SHT_NULL:
            off = size = 0
        elif sh_type != SHT_NOBITS and (off > <uint64_t>n or size > <uint64_t>n - off):
            return out, ("extends", i, off, size, name)
        sec = Section.__new__(Section)
        sec.index = i
        sec.name = name
        sec.type_id = sh_type
        t = type_names.get(sh_type)
        sec.type = t if t else f"SHT_{sh_type:#x}"
        sec.flags = _u64(h + 8)
        sec.offset = off
        sec.size = size
        sec.link = _u32(h + 40)
        sec.info = _u32(h + 44)
        sec.entsize = _u64(h + 56)
        sec.nobits = sh_type == SHT_NOBITS
        sec._file = data
        sec._data = b"" if sec.nobits or sh_type == SHT_NULL else None
        out.append(sec)
    return out, None


def read_symbols(symtab, strings, list section_names):
    """The symbols of a raw symbol table -> ``(symbols, None)`` or ``(symbols so far, error)``.

    *symtab*: the table's bytes (a whole number of 24-byte entries: the
    caller checked); *strings*: its string table; *section_names*: section
    index -> name, for section symbols without a name.  *error* is
    ``(index, "outside", name_off)`` (name offset past the string table) or
    ``(index, "unterminated", name_off)``.  Never raises for well-typed
    arguments.
    """
    cdef const unsigned char[::1] tv = memoryview(symtab).cast("B")
    cdef const unsigned char[::1] sv = memoryview(strings).cast("B")
    cdef Py_ssize_t tlen = tv.shape[0], slen = sv.shape[0]
    cdef const unsigned char *tp = &tv[0] if tlen else NULL
    cdef const unsigned char *sp = &sv[0] if slen else NULL
    cdef Py_ssize_t n = tlen // SYM_SIZE, i, nsec = len(section_names)
    cdef const unsigned char *r
    cdef const unsigned char *end
    cdef uint32_t name_off
    cdef int info, stype
    cdef Py_ssize_t shndx
    cdef str sname
    cdef list out = []
    cdef Symbol s
    for i in range(n):
        r = tp + i * SYM_SIZE
        name_off = _u32(r)
        info = r[4]
        shndx = r[6] | (r[7] << 8)
        if name_off:
            if name_off >= slen:
                return out, (i, "outside", name_off)
            end = <const unsigned char *>memchr(sp + name_off, 0, slen - name_off)
            if end == NULL:
                return out, (i, "unterminated", name_off)
            sname = PyUnicode_DecodeUTF8(<const char *>(sp + name_off), end - (sp + name_off),
                                         "replace")
        else:
            sname = ""
        stype = info & 0xF
        if stype == STT_SECTION and not sname and shndx < nsec:
            sname = section_names[shndx]
        s = Symbol.__new__(Symbol)
        s.index = i
        s.name = sname
        s.value = _u64(r + 8)
        s.size = _u64(r + 16)
        s.bind = info >> 4
        s.type = stype
        s.shndx = shndx
        s.visibility = r[5] & 3
        out.append(s)
    return out, None


cdef class FuncTable:
    """The functions of one executable section: ``syms`` (their :class:`Symbol`\\ s,
    sorted by start, not overlapping) and ``fns`` (what the reader made of each)."""

    cdef uint64_t *starts
    cdef uint64_t *ends
    cdef Py_ssize_t n
    cdef readonly list syms
    cdef readonly list fns

    def __cinit__(self, list syms, list fns):
        cdef Py_ssize_t i
        cdef Symbol s
        if len(syms) != len(fns):
            raise ValueError("one function per symbol")
        self.n = len(syms)
        self.syms = syms
        self.fns = fns
        self.starts = <uint64_t *>malloc(sizeof(uint64_t) * (self.n + 1))
        self.ends = <uint64_t *>malloc(sizeof(uint64_t) * (self.n + 1))
        if self.starts == NULL or self.ends == NULL:
            raise MemoryError()
        for i in range(self.n):
            s = <Symbol?>syms[i]
            self.starts[i] = s.value
            self.ends[i] = s.value + s.size
            if i and self.starts[i] < self.starts[i - 1]:
                raise ValueError("function symbols not sorted by start")

    def __dealloc__(self):
        free(self.starts)
        free(self.ends)

    def __len__(self):
        return self.n

    cdef inline Py_ssize_t _before(self, uint64_t off) noexcept:
        """The last function starting at or before *off*, or -1 (bisect_right - 1)."""
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if off < self.starts[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo - 1

    cdef inline Py_ssize_t _holding(self, uint64_t off) noexcept:
        cdef Py_ssize_t j = self._before(off)
        if j >= 0 and off < self.ends[j]:
            return j
        return -1

    def at(self, off):
        """``(symbol, function)`` of the function whose bytes hold *off*, or None.  Never raises
        for an int."""
        cdef Py_ssize_t j
        if not 0 <= off < 0x10000000000000000:
            return None
        j = self._holding(<uint64_t>off)
        if j < 0:
            return None
        return self.syms[j], self.fns[j]


cdef inline object _reloc(dict memo, object reloc, Py_ssize_t insn, object kind, object target,
                          long long addend):
    """``reloc(insn, kind, target, addend)``, one object per distinct value (relocations
    are immutable; the programs of a large object repeat the same ones)."""
    key = (insn, kind, target, addend)
    r = memo.get(key)
    if r is None:
        r = memo[key] = reloc(insn, kind, target, addend)
    return r


def code_relocs(rel, code, list symbols, FuncTable table, dict tables, set seen, dict map_at,
                dict data_secs, reloc, kinds, dict memo, slow):
    """The REL entries *rel* of the executable section *code* (its functions: *table*).

    An ``ld_imm64`` of a map named in *map_at* (``(section index, offset) ->
    map name``), an ``ld_imm64`` of an address inside a global-data section
    (*data_secs*: section index -> ``(name, size)``) and a bpf-to-bpf call
    into a function of another section (*tables*: section index ->
    :class:`FuncTable`) become ``reloc(insn, kind, target, addend)`` (*kinds*:
    the MAP, DATA and CALL kinds; equal relocations are one object, through
    *memo*) appended to the function's ``relocs``; the entry's offset is added
    to *seen*.  Every other entry -- and any entry with a bad symbol index, offset, owner,
    duplicate, opcode or size -- is passed to ``slow(i, r_offset, r_info)``
    unchanged, in file order, which finishes it or raises.  Returns the
    functions whose relocations this call appended out of instruction order
    (the caller sorts those, and those of any entry it did itself).
    """
    cdef const unsigned char[::1] rv = memoryview(rel).cast("B")
    cdef const unsigned char[::1] cv = memoryview(code).cast("B")
    cdef Py_ssize_t rlen = rv.shape[0], size = cv.shape[0]
    cdef const unsigned char *rp = &rv[0] if rlen else NULL
    cdef const unsigned char *cp = &cv[0] if size else NULL
    cdef Py_ssize_t n = rlen // REL_SIZE, j, nsym = len(symbols)
    cdef object fn, mname, dsec
    cdef Py_ssize_t insn
    cdef Py_ssize_t *last
    cdef list unsorted = []
    kind_map, kind_data, kind_call = kinds
    last = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * (table.n + 1))
    if last == NULL:
        raise MemoryError()
    for j in range(table.n):
        last[j] = -1
    try:
        _code_relocs(rp, n, cp, size, symbols, nsym, table, tables, seen, map_at, data_secs, reloc,
                     kind_map, kind_data, kind_call, memo, slow, last)
        for j in range(table.n):
            if last[j] == -2:
                unsorted.append(table.fns[j])
    finally:
        free(last)
    return unsorted


cdef inline void _append(Py_ssize_t *last, Py_ssize_t j, object fn, Py_ssize_t insn, object r) except *:
    fn.relocs.append(r)
    if last[j] != -2:
        last[j] = insn if insn > last[j] else -2


cdef int _code_relocs(const unsigned char *rp, Py_ssize_t n, const unsigned char *cp, Py_ssize_t size,
                      list symbols, Py_ssize_t nsym, FuncTable table, dict tables, set seen,
                      dict map_at, dict data_secs, object reloc, object kind_map, object kind_data,
                      object kind_call, dict memo, object slow, Py_ssize_t *last) except -1:
    cdef Py_ssize_t i, j, k, insn
    cdef uint64_t r_offset, r_info, sym_idx, target_byte
    cdef long long tb, soff
    cdef unsigned char op
    cdef Symbol sym
    cdef FuncTable ct
    cdef object mname, dsec
    for i in range(n):
        r_offset = _u64(rp + i * REL_SIZE)
        r_info = _u64(rp + i * REL_SIZE + 8)
        sym_idx = r_info >> 32
        if sym_idx == 0 or sym_idx >= <uint64_t>nsym or r_offset % INSN_SIZE \
                or r_offset >= <uint64_t>size:
            slow(i, r_offset, r_info)
            continue
        j = table._holding(r_offset)
        if j < 0 or r_offset in seen:
            slow(i, r_offset, r_info)
            continue
        sym = <Symbol>symbols[sym_idx]
        op = cp[r_offset]
        if op == LD_IMM64:
            if r_offset + 2 * INSN_SIZE > table.ends[j] or not (0 < sym.shndx < SHN_LORESERVE):
                slow(i, r_offset, r_info)
                continue
            if sym.value >= VALUE_LIMIT:     # (Python's arithmetic finds no map there either)
                slow(i, r_offset, r_info)
                continue
            soff = <long long>sym.value
            if sym.type == STT_SECTION:
                soff += _i32(cp + r_offset + 4)
            mname = map_at.get((sym.shndx, soff)) if soff >= 0 else None
            if mname is not None:
                seen.add(r_offset)
                insn = (r_offset - table.starts[j]) // INSN_SIZE
                _append(last, j, table.fns[j], insn, _reloc(memo, reloc, insn, kind_map, mname, 0))
                continue
            dsec = data_secs.get(sym.shndx)
            soff = <long long>sym.value + _i32(cp + r_offset + 4)
            if dsec is None or soff < 0 or soff > <long long>(<tuple>dsec)[1]:
                slow(i, r_offset, r_info)
                continue
            seen.add(r_offset)
            insn = (r_offset - table.starts[j]) // INSN_SIZE
            _append(last, j, table.fns[j], insn,
                    _reloc(memo, reloc, insn, kind_data, (<tuple>dsec)[0], soff))
        elif op == CALL and (cp[r_offset + 1] >> 4) == PSEUDO_CALL and 0 < sym.shndx < SHN_LORESERVE \
                and sym.value % INSN_SIZE == 0 and sym.value < VALUE_LIMIT:
            ct = tables.get(sym.shndx)
            if ct is None:
                slow(i, r_offset, r_info)
                continue
            tb = (<long long>(sym.value // INSN_SIZE) + _i32(cp + r_offset + 4) + 1) * INSN_SIZE
            if tb < 0:
                slow(i, r_offset, r_info)
                continue
            target_byte = <uint64_t>tb
            k = ct._holding(target_byte)
            if k < 0:
                slow(i, r_offset, r_info)
                continue
            seen.add(r_offset)
            insn = (r_offset - table.starts[j]) // INSN_SIZE
            _append(last, j, table.fns[j], insn,
                    _reloc(memo, reloc, insn, kind_call, ct.fns[k].name,
                           (target_byte - ct.starts[k]) // INSN_SIZE))
        else:
            slow(i, r_offset, r_info)
    return 0


def call_sites(insns, Py_ssize_t base=0, set skip=None):
    """``[(insn index, imm), ...]``: the bpf-to-bpf calls (``call`` with src_reg
    BPF_PSEUDO_CALL) of *insns*, a function's instructions.

    A call opcode right after an odd run of ``ld_imm64`` opcodes is the
    second half of an ``ld_imm64``, not a call.  A call whose section offset
    (*base* + 8 * index) is in *skip* (it has a relocation) is left out.  A
    trailing partial instruction is ignored.  Never raises for a bytes-like
    argument.
    """
    cdef const unsigned char[::1] v = memoryview(insns).cast("B")
    cdef Py_ssize_t n = v.shape[0] // INSN_SIZE, i, run = 0
    cdef const unsigned char *p = &v[0] if n else NULL
    cdef list out = []
    for i in range(n):
        # run: the ld_imm64 opcodes right before instruction i
        if p[i * INSN_SIZE] == CALL and (p[i * INSN_SIZE + 1] >> 4) == PSEUDO_CALL and run % 2 == 0 \
                and (skip is None or (base + i * INSN_SIZE) not in skip):
            out.append((i, _i32(p + i * INSN_SIZE + 4)))
        if p[i * INSN_SIZE] == LD_IMM64:
            run += 1
        else:
            run = 0
    return out
