# cython: language_level=3
"""BTF record walking in compiled code: the offset index, validation, kind lookup.

Compute only: no syscalls, and nothing imported from bpfload but
:mod:`bpfload.errors`.  :class:`bpfload.btf.Btf` keeps the raw type
section and decodes a type into a Python object only when it is looked up;
what it needs from every record at once is done here, in one pass each:

* :func:`scan` -- the byte offset of every type record (the index lookups
  go through), checking that each record has a known kind and fits the
  section;
* :func:`check` -- every type reference below the type count and every name
  offset inside the string section, NUL-terminated within the name limit
  (what decoding each type would check), without decoding anything;
* :func:`of_kind` -- the indexes of the records of one kind (DATASECs to fix
  up, FUNCs to mark static);
* :func:`ext_index` / :func:`ext_records` -- a ``.BTF.ext`` subsection's
  per-section index with every string offset checked, and, only when asked
  for, its records as objects.

Every read is bounds-checked against the buffer it comes from: a truncated
record, a length past the end or a bad string offset raises
:class:`bpfload.BtfError`, never a crash.  ``bpfload.btf.format`` keeps a
pure-Python twin of each function for builds without this extension; the
tests compare the two.
"""
import array

from cpython cimport array as carray
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint32_t
from libc.string cimport memchr, memcpy

from bpfload.errors import BtfError

__all__ = ["scan", "check", "of_kind", "ext_index", "ext_records", "cstr",
           "ext_pack"]

# bytes after the 12-byte common header, per kind: fixed part and per-vlen part
cdef int _FIXED[20]
cdef int _PER_VLEN[20]
_FIXED[:] = [0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0]
_PER_VLEN[:] = [0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12]
cdef enum:
    NKINDS = 20

_KIND_NAMES = ("UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
               "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT",
               "DECL_TAG", "TYPE_TAG", "ENUM64")


cdef inline uint32_t _u32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


def scan(buf):
    """Byte offsets of the type records of a raw BTF type section -> ``array('I')``.

    Raises :class:`BtfError` for a record of an unknown kind (0 or past
    ENUM64) or one that does not fit the section.
    """
    cdef const unsigned char[::1] v = memoryview(buf).cast("B")
    cdef Py_ssize_t end = v.shape[0]
    cdef const unsigned char *p = &v[0] if end else NULL
    cdef Py_ssize_t off = 0, n = 0, cap = 1024, nxt
    cdef uint32_t info, kind
    out = array.array("I", bytes(4 * cap))
    cdef unsigned int[::1] ov = out
    while off < end:
        if off + 12 > end:
            raise BtfError(f"type #{n + 1}: truncated type record", section=".BTF", offset=off)
        info = _u32(p + off + 4)
        kind = (info >> 24) & 0x1F
        if kind == 0 or kind >= NKINDS:
            raise BtfError(f"type #{n + 1}: unknown BTF kind {kind}", section=".BTF", offset=off)
        nxt = off + 12 + _FIXED[kind] + <Py_ssize_t>_PER_VLEN[kind] * (info & 0xFFFF)
        if nxt > end:
            raise BtfError(f"type #{n + 1}: truncated type record", section=".BTF", offset=off)
        if n == cap:
            ov = None
            out.extend(array.array("I", bytes(4 * cap)))
            cap *= 2
            ov = out
        ov[n] = <unsigned int>off
        n += 1
        off = nxt
    ov = None
    del out[n:]
    return out


cdef inline int _name_ok(const unsigned char *s, Py_ssize_t slen, uint32_t off,
                         Py_ssize_t limit) noexcept nogil:
    """0: fine; 1: offset outside the strings (or unterminated); 2: longer than *limit*."""
    if off >= slen:
        return 1
    cdef Py_ssize_t stop = off + limit + 1
    if stop > slen:
        stop = slen
    if memchr(s + off, 0, stop - off) != NULL:
        return 0
    return 1 if stop == slen else 2


def check(types, offsets, strings, cache, Py_ssize_t start_id, Py_ssize_t ntypes,
          Py_ssize_t name_limit):
    """Check the references and names of every raw record whose ``cache`` entry is None.

    *types*: the raw type section; *offsets*: from :func:`scan`; *strings*:
    the string section (names are offsets into it; this BTF has no base);
    *ntypes*: the type count including void (references must be below it).
    Returns the index of the first bad record and what is wrong, or None:
    ``(index, "name", name_off, 1 | 2)`` (1: outside the string section, 2:
    longer than *name_limit*) or ``(index, "ref", type_id, kind name)``.
    Never raises for well-typed arguments; records must have been scanned.
    """
    cdef const unsigned char[::1] tv = memoryview(types).cast("B")
    cdef const unsigned int[::1] ov = memoryview(offsets).cast("B").cast("I")
    cdef const unsigned char[::1] sv = memoryview(strings).cast("B")
    cdef Py_ssize_t tlen = tv.shape[0], slen = sv.shape[0], n = ov.shape[0]
    cdef const unsigned char *tp = &tv[0] if tlen else NULL
    cdef const unsigned char *sp = &sv[0] if slen else NULL
    cdef Py_ssize_t idx, off, i, vlen, per, first, nrefs
    cdef uint32_t info, kind, name_off, ref
    cdef const unsigned char *r
    cdef int bad
    cdef list c = cache
    if len(c) < n:
        raise ValueError("cache shorter than the offsets")
    for idx in range(n):
        if c[idx] is not None:
            continue
        off = ov[idx]
        if off < 0 or off + 12 > tlen:
            return (idx, "record", off, 0)
        r = tp + off
        info = _u32(r + 4)
        kind = (info >> 24) & 0x1F
        if kind == 0 or kind >= NKINDS:
            return (idx, "record", off, 0)
        vlen = info & 0xFFFF
        per = _PER_VLEN[kind]
        if off + 12 + _FIXED[kind] + per * vlen > tlen:
            return (idx, "record", off, 0)
        # names: the type's, then its members' / values' / params'
        name_off = _u32(r)
        if name_off:
            bad = _name_ok(sp, slen, name_off, name_limit)
            if bad:
                return (idx, "name", name_off, bad)
        if kind == 4 or kind == 5 or kind == 6 or kind == 19 or kind == 13:
            for i in range(vlen):
                name_off = _u32(r + 12 + per * i)
                if name_off:
                    bad = _name_ok(sp, slen, name_off, name_limit)
                    if bad:
                        return (idx, "name", name_off, bad)
        # references
        if kind == 2 or kind == 8 or kind == 9 or kind == 10 or kind == 11 or kind == 18 \
                or kind == 12 or kind == 14 or kind == 17 or kind == 13:
            ref = _u32(r + 8)
            if ref >= ntypes:
                return (idx, "ref", ref, _KIND_NAMES[kind])
        if kind == 3:
            for i in range(2):
                ref = _u32(r + 12 + 4 * i)
                if ref >= ntypes:
                    return (idx, "ref", ref, _KIND_NAMES[kind])
        elif kind == 4 or kind == 5 or kind == 13 or kind == 15:
            # member type at +4 of each 12-byte member; param type at +4 of each 8-byte
            # param; var type at +0 of each 12-byte secinfo
            first = 0 if kind == 15 else 4
            for i in range(vlen):
                ref = _u32(r + 12 + per * i + first)
                if ref >= ntypes:
                    return (idx, "ref", ref, _KIND_NAMES[kind])
    return None


def of_kind(types, offsets, int kind):
    """Indexes (into *offsets*) of the raw records of *kind*, in order.

    Records must have been scanned; an offset past the section is skipped.
    Never raises for well-typed arguments.
    """
    cdef const unsigned char[::1] tv = memoryview(types).cast("B")
    cdef const unsigned int[::1] ov = memoryview(offsets).cast("B").cast("I")
    cdef Py_ssize_t tlen = tv.shape[0], n = ov.shape[0], idx, off
    cdef const unsigned char *tp = &tv[0] if tlen else NULL
    cdef list out = []
    for idx in range(n):
        off = ov[idx]
        if off + 12 > tlen:
            continue
        if ((_u32(tp + off + 4) >> 24) & 0x1F) == <uint32_t>kind:
            out.append(idx)
    return out


def datasec_vars(types, offsets, Py_ssize_t idx, Py_ssize_t start_id, list cache):
    """The members of the raw DATASEC record *idx* with their VAR records (the fix-up at open).

    A list of ``[type id, offset, size, record offset, kind, name offset, linkage]``,
    one per member (linkage -1 unless the member is a VAR), or None when a member's id
    is not a never-decoded record of this blob (``cache[i] is not None``: its object may
    have been edited) or a record runs past the section.  Never raises for well-typed
    arguments.
    """
    cdef const unsigned char[::1] tv = memoryview(types).cast("B")
    cdef const unsigned int[::1] ov = memoryview(offsets).cast("B").cast("I")
    cdef Py_ssize_t tlen = tv.shape[0], n = ov.shape[0], off, voff, vidx, i, vlen
    cdef const unsigned char *tp = &tv[0] if tlen else NULL
    cdef const unsigned char *p
    cdef uint32_t vt, kind
    cdef long long linkage
    cdef list out = []
    if idx < 0 or idx >= n:
        return None
    off = ov[idx]
    if off + 12 > tlen:
        return None
    vlen = _u32(tp + off + 4) & 0xFFFF
    if off + 12 + 12 * vlen > tlen:
        return None
    for i in range(vlen):
        p = tp + off + 12 + 12 * i
        vt = _u32(p)
        vidx = <Py_ssize_t>vt - start_id
        if vidx < 0 or vidx >= n or vidx >= len(cache) or cache[vidx] is not None:
            return None
        voff = ov[vidx]
        if voff + 16 > tlen:
            return None
        kind = (_u32(tp + voff + 4) >> 24) & 0x1F
        linkage = _u32(tp + voff + 12) if kind == 14 else -1
        out.append([vt, _u32(p + 4), _u32(p + 8), voff, kind, _u32(tp + voff), linkage])
    return out


# -- BTF.ext -------------------------------------------------------------------

def ext_index(sub, Py_ssize_t rec_size, strings, int str_fields):
    """The per-section index of one BTF.ext subsection, every string offset checked.

    *sub*: the subsection (its 4-byte record size first); *rec_size*: that
    size (checked by the caller); *strings*: the ``.BTF`` string section
    (a BTF without a base); *str_fields*: bit *k* set when the *k*-th u32 of
    a record is a string offset (line_info: file name and line; core_relo:
    access string).  Returns ``(index, None)`` -- index: ``[(name_off, start,
    count, in_order), ...]`` in file order, *start* the byte offset of the first
    record in *sub*, *in_order* whether the records' ``insn_off`` never
    decrease -- or ``(index so far, error)``, *error* what the first problem
    is, in the order a record-by-record reader meets them:
    ``("header", pos, 0)`` (a truncated section header), ``("name", name_off,
    0)`` (outside the strings, or empty), ``("empty", name_off, 0)`` (no
    records), ``("past", name_off, count)`` (records past the end),
    ``("string", off, 0)`` (a record's string outside the strings).  Never
    raises for well-typed arguments.
    """
    cdef const unsigned char[::1] v = memoryview(sub).cast("B")
    cdef const unsigned char[::1] sv = memoryview(strings).cast("B")
    cdef Py_ssize_t n = v.shape[0], slen = sv.shape[0]
    cdef const unsigned char *p = &v[0] if n else NULL
    cdef const unsigned char *sp = &sv[0] if slen else NULL
    cdef Py_ssize_t pos = 4, q, i, k, nfields = rec_size // 4
    cdef bint in_order
    cdef uint32_t sec_off, num, off
    cdef list index = []
    if rec_size < 4:
        raise ValueError("record size below 4")
    if nfields > 32:
        nfields = 32
    while pos < n:
        if pos + 8 > n:
            return index, ("header", pos, 0)
        sec_off = _u32(p + pos)
        num = _u32(p + pos + 4)
        pos += 8
        if sec_off >= slen or sp[sec_off] == 0:
            return index, ("name", sec_off, 0)
        if num == 0:
            return index, ("empty", sec_off, 0)
        if <unsigned long long>num * <unsigned long long>rec_size > <unsigned long long>(n - pos):
            return index, ("past", sec_off, num)
        if str_fields:
            for i in range(num):
                q = pos + i * rec_size
                for k in range(nfields):
                    if str_fields & (1 << k):
                        off = _u32(p + q + 4 * k)
                        if off >= slen and not (off == 0 and slen == 0):
                            return index, ("string", off, 0)
        in_order = True
        for i in range(1, num):
            if _u32(p + pos + i * rec_size) < _u32(p + pos + (i - 1) * rec_size):
                in_order = False
                break
        index.append((sec_off, pos, num, in_order))
        pos += num * rec_size
    return index, None


cdef str _ext_text(const unsigned char *sp, Py_ssize_t slen, uint32_t off, Py_ssize_t limit,
                   dict seen):
    """The string at *off* (checked by ext_index), at most *limit* bytes ("..." after a cut)."""
    cdef object key = off
    cdef object got = seen.get(key)
    cdef Py_ssize_t stop
    cdef const unsigned char *end
    if got is not None:
        return <str>got
    if off >= slen:
        s = ""
    else:
        stop = slen - off
        if stop > limit + 1:
            stop = limit + 1
        end = <const unsigned char *>memchr(sp + off, 0, stop)
        if end != NULL:
            s = PyUnicode_DecodeUTF8(<const char *>(sp + off), end - (sp + off), "replace")
        else:
            s = PyUnicode_DecodeUTF8(<const char *>(sp + off), limit, "replace") + "..."
    seen[key] = s
    return s


def ext_records(sub, Py_ssize_t rec_size, list index, int what, cls, strings, Py_ssize_t limit,
                dict kinds):
    """The records of an :func:`ext_index`-ed subsection as objects: ``{section name
    offset: [cls(...), ...]}`` (the same offset twice: one list, in file order).

    *what* 0: func_info, ``cls(insn_off, type_id)``; 1: line_info,
    ``cls(insn_off, file_name_off, line_off, line_col, file_name, line)``; 2:
    core_relo, ``cls(insn_off, type_id, access_str_off, kinds.get(kind, kind),
    access_str)``.  Strings are decoded once per offset, at most *limit* bytes.
    The index must come from :func:`ext_index` over the same arguments.
    """
    cdef const unsigned char[::1] v = memoryview(sub).cast("B")
    cdef const unsigned char[::1] sv = memoryview(strings).cast("B")
    cdef Py_ssize_t n = v.shape[0], slen = sv.shape[0]
    cdef const unsigned char *p = &v[0] if n else NULL
    cdef const unsigned char *sp = &sv[0] if slen else NULL
    cdef Py_ssize_t start, num, i
    cdef const unsigned char *r
    cdef uint32_t a, b, c, d
    cdef dict out = {}
    cdef dict seen = {}
    cdef list recs
    for name_off, start, num, _ in index:
        if start < 0 or num < 0 or start + num * rec_size > n or rec_size < 4 * (2 if what == 0 else 4):
            raise ValueError("index does not match the subsection")
        recs = out.get(name_off)
        if recs is None:
            recs = out[name_off] = []
        for i in range(num):
            r = p + start + i * rec_size
            a = _u32(r)
            b = _u32(r + 4)
            if what == 0:
                recs.append(cls(a, b))
                continue
            c = _u32(r + 8)
            d = _u32(r + 12)
            if what == 1:
                recs.append(cls(a, b, c, d, _ext_text(sp, slen, b, limit, seen),
                                _ext_text(sp, slen, c, limit, seen)))
            else:
                recs.append(cls(a, b, c, kinds.get(d, d), _ext_text(sp, slen, c, limit, seen)))
    return out


def cstr(object buf, Py_ssize_t start, Py_ssize_t stop):
    """The NUL-terminated string at ``buf[start:]`` whose NUL lies before *stop*, decoded
    (UTF-8, bad bytes replaced), or None when there is no NUL in ``buf[start:stop]`` (or
    the range is empty or outside *buf*).  *buf* is bytes (the fast path) or any object
    with a read-only buffer (the kernel's BTF mapped in place).  Never raises for
    well-typed arguments.
    """
    cdef Py_buffer view
    if PyBytes_CheckExact(buf):
        return _cstr(PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), start, stop)
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _cstr(<const char *>view.buf, view.len, start, stop)
    finally:
        PyBuffer_Release(&view)


cdef object _cstr(const char *p, Py_ssize_t n, Py_ssize_t start, Py_ssize_t stop):
    cdef const char *end
    if stop > n:
        stop = n
    if start < 0 or start >= stop:
        return None
    end = <const char *>memchr(p + start, 0, stop - start)
    if end == NULL:
        return None
    return PyUnicode_DecodeUTF8(p + start, end - (p + start), "replace")


cdef Py_ssize_t _first_at(const unsigned char *p, Py_ssize_t rec_size, Py_ssize_t num,
                          Py_ssize_t lo) noexcept:
    """The first of *num* records (insn_off never decreasing) with insn_off >= *lo*."""
    cdef Py_ssize_t a = 0, b = num, m
    while a < b:
        m = (a + b) >> 1
        if <Py_ssize_t>_u32(p + m * rec_size) < lo:
            a = m + 1
        else:
            b = m
    return a


def ext_pack(sub, Py_ssize_t rec_size, list runs, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t start,
             Py_ssize_t width, out, Py_ssize_t last=-1):
    """Append the raw BTF.ext records of one function to *out* in the kernel's layout, rebased.

    *runs*: ``[(byte offset in sub, count, in order), ...]`` of one section's
    records (from :func:`ext_index`), in file order (a run in order is searched
    by bisection, another read whole); the records whose ``insn_off``
    lies in ``[lo, hi)`` (the function's bytes in its section) are written,
    in file order, as *width* u32s: 2, ``bpf_func_info`` (insn, type_id);
    4, ``bpf_line_info`` (insn, file_name_off, line_off, line_col); insn is
    ``(insn_off - lo) // 8 + start``.  *last*: the instruction of the record
    written before these (-1: none).  Returns ``(last instruction written,
    True if the instructions strictly increased)``, what
    :func:`bpfload._core.insn.pack_ext_records` returns for the same records
    as objects.  Raises ``ValueError`` for another *width* or runs outside
    *sub*, ``TypeError`` for an *out* that is not an ``array('I')``,
    ``OverflowError`` for an instruction past u32 (*out* left as it was).
    """
    cdef const unsigned char[::1] v = memoryview(sub).cast("B")
    cdef Py_ssize_t n = v.shape[0], s, num, i, k = 0, count = 0, base, insn_idx, first
    cdef bint srt
    cdef const unsigned char *p = &v[0] if n else NULL
    cdef const unsigned char *r
    cdef uint32_t insn_off
    cdef bint ok = True
    cdef unsigned int *d
    cdef carray.array arr
    if width != 2 and width != 4:
        raise ValueError(f"width must be 2 (func_info) or 4 (line_info), not {width}")
    if type(out) is not array.array or out.typecode != "I":
        raise TypeError("out must be an array('I')")
    if rec_size < 4 * width:
        raise ValueError(f"records of {rec_size} bytes are shorter than {width} u32s")
    for s, num, srt in runs:
        if s < 0 or num < 0 or s > n or num > (n - s) // rec_size:
            raise ValueError("run outside the subsection")
        first = _first_at(p + s, rec_size, num, lo) if srt else 0
        for i in range(first, num):
            insn_off = _u32(p + s + i * rec_size)
            if lo <= insn_off < hi:
                count += 1
            elif srt and insn_off >= hi:
                break
    if count == 0:
        return last, True
    arr = out
    base = len(arr)
    carray.resize_smart(arr, base + count * width)
    for s, num, srt in runs:
        first = _first_at(p + s, rec_size, num, lo) if srt else 0
        for i in range(first, num):
            r = p + s + i * rec_size
            insn_off = _u32(r)
            if not (lo <= insn_off < hi):
                if srt and insn_off >= hi:
                    break
                continue
            insn_idx = (insn_off - lo) // 8 + start
            if insn_idx < 0 or insn_idx > 0xFFFFFFFF:
                carray.resize_smart(arr, base)
                raise OverflowError(f"instruction {insn_idx} does not fit a u32")
            if insn_idx <= last:
                ok = False
            last = insn_idx
            d = arr.data.as_uints + base + k * width
            d[0] = <unsigned int>insn_idx
            d[1] = _u32(r + 4)
            if width == 4:
                d[2] = _u32(r + 8)
                d[3] = _u32(r + 12)
            k += 1
    return last, ok
