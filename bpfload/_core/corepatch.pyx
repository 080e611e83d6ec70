# cython: language_level=3
"""CO-RE helper in compiled code: the essential-name index of a raw BTF type section.

Compute only: no syscalls, and nothing imported from bpfload but
:mod:`bpfload.errors`.  :mod:`bpfload.btf.core` looks up CO-RE candidates by
*essential* name (the name without a ``___flavor`` suffix).  For vmlinux
(~130,000 types) building a Python dict of every name was the dominant cost
of a process's first CO-RE load; :class:`EssentialIndex` walks the raw type
records once in C, hashes each name's essential prefix (64 bits, eight bytes a step)
into an open-addressing table and chains the type ids that share it.
Lookups return candidate ids only: the caller decodes them and compares the
real names, so a hash collision can never produce a wrong candidate.

:mod:`bpfload.btf.core` keeps a pure-Python index with the same results
(``TargetBtf(..., compiled=False)``); the tests compare the two over the
running kernel's BTF.

The flavor rule (libbpf's ``bpf_core_essential_name_len``): the suffix
starts at the last ``___`` preceded by a non-underscore and followed by a
non-underscore.
"""
import array

from cpython cimport array as carray
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcpy, memset
from posix.mman cimport MAP_FAILED, MAP_PRIVATE, PROT_READ, mmap, munmap

from bpfload.errors import BtfError

cdef extern from "<string.h>" nogil:
    void *memmem(const void *hay, size_t hlen, const void *needle, size_t nlen)

cdef extern from *:
    void _prefetch "__builtin_prefetch"(const void *addr) nogil

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)
    int PyObject_GC_IsTracked(object op)

__all__ = ["EssentialIndex", "essential_len", "ReadOnlyFile", "map_readonly", "gc_untrack",
           "scan_sized", "decode_vlen"]


cdef enum:
    UNDERSCORE = 95
    MAX_SEGMENTS = 8


cdef struct Segment:
    Py_ssize_t base          # first string offset this segment holds
    const unsigned char *p
    Py_ssize_t length


cdef inline Py_ssize_t _essential_len(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    # most names hold no "__" at all: one look at every other byte settles them
    i = 1
    while i < n - 1:
        if s[i] == UNDERSCORE and (s[i - 1] == UNDERSCORE or s[i + 1] == UNDERSCORE):
            break
        i += 2
    else:
        return n
    i = n - 5
    while i >= 0:
        if (s[i] != UNDERSCORE and s[i + 1] == UNDERSCORE and s[i + 2] == UNDERSCORE
                and s[i + 3] == UNDERSCORE and s[i + 4] != UNDERSCORE):
            return i + 1
        i -= 1
    return n


cdef inline uint64_t _hash(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    # eight bytes a step (a byte-wise FNV-1a was a fifth of the index build); the
    # caller compares real names, so this need only spread names well
    cdef uint64_t h = 14695981039346656037ULL ^ (<uint64_t>n * 0x9E3779B97F4A7C15ULL)
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, s, 8)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
        h ^= h >> 32
        s += 8
        n -= 8
    if n:
        w = 0
        memcpy(&w, s, <size_t>n)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
    h ^= h >> 29
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 32
    return h | 1  # 0 marks an empty slot


cdef inline Py_ssize_t _slot(uint64_t h, Py_ssize_t mask) noexcept nogil:
    # the high half: the low bits are the weakest, and bit 0 is forced to 1
    return <Py_ssize_t>((h >> 32) ^ (h >> 1)) & mask


cdef inline uint32_t _u32le(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


def essential_len(name):
    """Length in bytes of the essential part of *name* (str or bytes).  Never raises."""
    cdef bytes b = name.encode() if isinstance(name, str) else bytes(name)
    return _essential_len(<const unsigned char *>b, len(b))


cdef class EssentialIndex:
    """Type ids of one BTF blob grouped by essential name.

    ``EssentialIndex(types, offsets, segments, start_id, kinds=None)``:
    *types* is the raw type section, *offsets* (``array('I')``) the byte
    offset of each record in it (type ``start_id + i`` at ``offsets[i]``),
    *segments* the string sections names may point into as ``[(first
    offset, bytes), ...]`` (for split BTF: the base's, then this blob's).
    *kinds*: a bit mask of the BTF kinds to index (bit ``1 << kind``; None:
    every kind) -- CO-RE asks for structs, unions, enums and typedefs, so
    vmlinux's ~56,000 functions need not be hashed for it.  Anonymous types
    are not indexed.

    Raises :class:`BtfError` for a record offset outside *types* or a name
    offset outside every segment (of a record of an indexed kind);
    ``TypeError``/``ValueError`` for bad arguments.
    """

    cdef uint64_t *slot_hash
    cdef uint32_t *slot_head     # first entry + 1 with this hash (0: none)
    cdef uint32_t *chain         # per entry: next entry + 1 with the same hash
    cdef uint32_t *ids           # per entry: its type index
    cdef unsigned char *kind_of  # per entry: its BTF kind
    cdef Py_ssize_t mask
    cdef Py_ssize_t ntypes
    cdef readonly Py_ssize_t start_id
    cdef readonly Py_ssize_t named
    cdef readonly object kinds

    def __cinit__(self):
        self.slot_hash = NULL
        self.slot_head = NULL
        self.chain = NULL
        self.ids = NULL
        self.kind_of = NULL

    def __dealloc__(self):
        PyMem_Free(self.slot_hash)
        PyMem_Free(self.slot_head)
        PyMem_Free(self.chain)
        PyMem_Free(self.ids)
        PyMem_Free(self.kind_of)

    def __init__(self, types, offsets, segments, Py_ssize_t start_id, kinds=None):
        cdef const unsigned char[::1] tv = memoryview(types).cast("B")
        cdef const unsigned int[::1] ov = memoryview(offsets).cast("B").cast("I")
        cdef Segment segs[MAX_SEGMENTS]
        cdef Py_ssize_t nseg = 0
        cdef const unsigned char[::1] sv
        cdef uint32_t kmask = 0xFFFFFFFF if kinds is None else <uint32_t>kinds
        keep = []
        for base, blob in segments:
            if nseg == MAX_SEGMENTS:
                raise ValueError(f"more than {MAX_SEGMENTS} string sections")
            sv = memoryview(blob).cast("B")
            keep.append(sv)
            segs[nseg].base = base
            segs[nseg].p = &sv[0] if sv.shape[0] else NULL
            segs[nseg].length = sv.shape[0]
            nseg += 1
        self.kinds = kinds
        self.start_id = start_id
        cdef Py_ssize_t n = ov.shape[0]
        cdef Py_ssize_t tlen = tv.shape[0]
        self.ntypes = n
        cdef const unsigned char *tp = &tv[0] if tlen else NULL
        cdef Py_ssize_t idx, off, local, k, slen, elen, slot, cap, count = 0, e
        cdef uint32_t name_off, info
        cdef uint64_t h
        cdef const unsigned char *s
        cdef const unsigned char *nul
        cdef Py_ssize_t bad = -1, bad_kind = 0

        # pass 1: the named records of the asked kinds (their type indexes, ascending)
        self.ids = <uint32_t *>PyMem_Malloc((n + 1) * sizeof(uint32_t))
        self.kind_of = <unsigned char *>PyMem_Malloc(n + 1)
        # per entry: its name's string offset (the records are read once, in order)
        cdef uint32_t *name_offs = <uint32_t *>PyMem_Malloc((n + 1) * sizeof(uint32_t))
        if self.ids == NULL or self.kind_of == NULL or name_offs == NULL:
            PyMem_Free(name_offs)
            raise MemoryError()
        try:
            self._fill(tp, tlen, ov, segs, nseg, kmask, name_offs)
        finally:
            PyMem_Free(name_offs)

    cdef _fill(self, const unsigned char *tp, Py_ssize_t tlen, const unsigned int[::1] ov,
               Segment *segs, Py_ssize_t nseg, uint32_t kmask, uint32_t *name_offs):
        cdef Py_ssize_t n = ov.shape[0]
        cdef Py_ssize_t start_id = self.start_id
        cdef Py_ssize_t idx, off, local, k, slen, elen, slot, cap, count = 0, e, ahead
        cdef uint32_t name_off, info
        cdef uint64_t h
        cdef const unsigned char *s
        cdef const unsigned char *nul
        cdef Py_ssize_t bad = -1
        with nogil:
            for idx in range(n):
                off = ov[idx]
                if off + 8 > tlen:
                    bad = idx
                    break
                info = _u32le(tp + off + 4)
                name_off = _u32le(tp + off)
                if (kmask >> ((info >> 24) & 0x1F)) & 1 and name_off != 0:
                    self.ids[count] = <uint32_t>idx
                    self.kind_of[count] = (info >> 24) & 0x1F
                    name_offs[count] = name_off
                    count += 1
        if bad >= 0:
            raise BtfError(f"type [{start_id + bad}]: record offset {ov[bad]} outside the "
                           f"type section", section=".BTF")

        cap = 16
        while cap < 2 * count:
            cap *= 2
        self.mask = cap - 1
        self.slot_hash = <uint64_t *>PyMem_Malloc(cap * sizeof(uint64_t))
        self.slot_head = <uint32_t *>PyMem_Malloc(cap * sizeof(uint32_t))
        self.chain = <uint32_t *>PyMem_Malloc((count + 1) * sizeof(uint32_t))
        if self.slot_hash == NULL or self.slot_head == NULL or self.chain == NULL:
            raise MemoryError()
        memset(self.slot_hash, 0, cap * sizeof(uint64_t))
        memset(self.slot_head, 0, cap * sizeof(uint32_t))

        # pass 2: hash each essential name; backwards, so that prepending keeps every
        # chain in ascending id order
        with nogil:
            e = count - 1
            while e >= 0:
                # the names lie scattered over megabytes of strings: ask for the one
                # a few entries on now, so the memory fetches overlap
                ahead = e - 16
                if ahead >= 0:
                    local = <Py_ssize_t>name_offs[ahead] - segs[nseg - 1].base
                    if 0 <= local < segs[nseg - 1].length:
                        _prefetch(segs[nseg - 1].p + local)
                idx = self.ids[e]
                name_off = name_offs[e]
                s = NULL
                slen = 0
                for k in range(nseg):
                    local = <Py_ssize_t>name_off - segs[k].base
                    if 0 <= local < segs[k].length:
                        nul = <const unsigned char *>memchr(segs[k].p + local, 0,
                                                            segs[k].length - local)
                        if nul != NULL:
                            s = segs[k].p + local
                            slen = nul - s
                        break
                if s == NULL:
                    bad = idx
                    break
                self.chain[e] = 0
                if slen:
                    elen = _essential_len(s, slen)
                    h = _hash(s, elen)
                    slot = _slot(h, self.mask)
                    while self.slot_hash[slot] != 0 and self.slot_hash[slot] != h:
                        slot = (slot + 1) & self.mask
                    self.slot_hash[slot] = h
                    self.chain[e] = self.slot_head[slot]
                    self.slot_head[slot] = <uint32_t>(e + 1)
                    self.named += 1
                e -= 1
        if bad >= 0:
            raise BtfError(f"type [{start_id + bad}]: name offset outside the string section",
                           section=".BTF")

    def lookup(self, name, kinds=None):
        """Ids of the types whose essential name hashes like *name* (str), ascending.

        *name* should itself be an essential name; *kinds*: a bit mask of the
        kinds wanted (None: every indexed kind).  The result may hold ids of
        other names (hash collisions): compare names after decoding.  Never
        raises for a str.
        """
        cdef uint32_t kmask = 0xFFFFFFFF if kinds is None else <uint32_t>kinds
        cdef bytes b = name.encode()
        cdef const unsigned char *p = b
        cdef uint64_t h = _hash(p, len(b))
        cdef Py_ssize_t slot = _slot(h, self.mask)
        cdef uint32_t cur
        cdef list out = []
        while self.slot_hash[slot] != 0:
            if self.slot_hash[slot] == h:
                cur = self.slot_head[slot]
                while cur != 0:
                    if (kmask >> self.kind_of[cur - 1]) & 1:
                        out.append(self.start_id + self.ids[cur - 1])
                    cur = self.chain[cur - 1]
                break
            slot = (slot + 1) & self.mask
        return out

    def __len__(self):
        return self.named

    def __repr__(self):
        return f"<EssentialIndex {self.named} named types of {self.ntypes}>"


# --------------------------------------------------------------------------
# the kernel's BTF in place

cdef class ReadOnlyFile:
    """A whole file mapped read-only and private: bytes-like enough to parse BTF in place.

    Made by :func:`map_readonly`.  Supports ``len()``, ``m[i]`` (an int),
    ``m[a:b]`` (bytes), ``m.find(sub, start, end)`` (as ``bytes.find``) and
    the buffer protocol (read-only); unmapped when the last reference goes
    (a memoryview holds one), so no view can outlive the memory.  Holds no
    file descriptor.
    """

    cdef const unsigned char *p
    cdef Py_ssize_t n

    def __cinit__(self):
        self.p = NULL
        self.n = 0

    def __dealloc__(self):
        if self.p != NULL:
            munmap(<void *>self.p, <size_t>self.n)
            self.p = NULL

    def __len__(self):
        return self.n

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void *>self.p, self.n, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __getitem__(self, key):
        cdef Py_ssize_t i, start, stop, step
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n)
            if step != 1:
                return bytes(memoryview(self)[key])
            return PyBytes_FromStringAndSize(<const char *>self.p + start,
                                             stop - start if stop > start else 0)
        i = key
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("index out of range")
        return self.p[i]

    def find(self, sub, start=None, end=None):
        """The lowest index of *sub* in ``self[start:end]``, or -1 (``bytes.find``).  Never raises
        for a bytes-like *sub* and int (or None) bounds."""
        cdef const unsigned char[::1] nv = memoryview(sub).cast("B")
        cdef Py_ssize_t nlen = nv.shape[0], n = self.n
        cdef Py_ssize_t a = 0 if start is None else max(min(start, n + 1), -n - 1)
        cdef Py_ssize_t b = n if end is None else max(min(end, n), -n - 1)
        if b < 0:
            b = max(b + n, 0)
        if a < 0:
            a = max(a + n, 0)
        if a > n or b - a < nlen:
            return -1
        if nlen == 0:
            return a
        cdef const void *hit = memmem(self.p + a, <size_t>(b - a), &nv[0], <size_t>nlen)
        return -1 if hit == NULL else <const unsigned char *>hit - self.p

    def __repr__(self):
        return f"<ReadOnlyFile {self.n} bytes>"


def map_readonly(int fd, Py_ssize_t size):
    """The first *size* bytes of file *fd* mapped read-only and private, or None.

    None where the file cannot be mapped (``/sys/kernel/btf/vmlinux``
    before Linux 6.16: EINVAL) or *size* is not positive: the caller reads
    the file instead.  The mapping does not keep *fd*.  Never raises.
    """
    if size <= 0:
        return None
    cdef void *p = mmap(NULL, <size_t>size, PROT_READ, MAP_PRIVATE, fd, 0)
    if p == MAP_FAILED:
        return None
    cdef ReadOnlyFile m = ReadOnlyFile.__new__(ReadOnlyFile)
    m.p = <const unsigned char *>p
    m.n = size
    return m


def gc_untrack(list items):
    """Take the list *items* out of the cyclic garbage collector's sight.

    For the per-type cache of the kernel's BTF (~130,000 slots, kept until
    the process exits): every collection that looks at it visits each slot,
    ~0.3 ms a time in a start that otherwise collects in ~3 ms.  What the
    list refers to stays alive as long as the list does (the collector then
    sees those references as coming from outside, so it can never free an
    object still in the list); a reference cycle through the list would not
    be collected -- the list lives until exit anyway.  Never raises for a
    list.
    """
    if PyObject_GC_IsTracked(items):
        PyObject_GC_UnTrack(<void *>items)


# bytes after the 12-byte common header, per BTF kind: fixed part and per-vlen part
cdef int _FIXED[20]
cdef int _PER_VLEN[20]
_FIXED[:] = [0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0]
_PER_VLEN[:] = [0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12]
cdef carray.array _U32_TEMPLATE = array.array("I")


def scan_sized(buf):
    """:func:`bpfload._core.btf.scan` for a large type section (the kernel's): the same
    offsets and errors, into one allocation sized for the most records *buf* can hold.

    ``btf.scan`` grows its array by doubling (each step a zeroed copy); for vmlinux's
    127,000 records that was a quarter of the scan.  The bound (a record is at least
    12 bytes) is allocated uninitialised and the unused tail given back, never touched.
    Raises :class:`BtfError` for a record of an unknown kind or one that does not fit.
    """
    cdef const unsigned char[::1] v = memoryview(buf).cast("B")
    cdef Py_ssize_t end = v.shape[0]
    cdef const unsigned char *p = &v[0] if end else NULL
    cdef Py_ssize_t off = 0, n = 0, nxt
    cdef uint32_t info, kind
    cdef carray.array out = carray.clone(_U32_TEMPLATE, end // 12 + 1, False)
    cdef unsigned int *o = out.data.as_uints
    while off < end:
        if off + 12 > end:
            raise BtfError(f"type #{n + 1}: truncated type record", section=".BTF", offset=off)
        info = _u32le(p + off + 4)
        kind = (info >> 24) & 0x1F
        if kind == 0 or kind >= 20:
            raise BtfError(f"type #{n + 1}: unknown BTF kind {kind}", section=".BTF", offset=off)
        nxt = off + 12 + _FIXED[kind] + <Py_ssize_t>_PER_VLEN[kind] * (info & 0xFFFF)
        if nxt > end:
            raise BtfError(f"type #{n + 1}: truncated type record", section=".BTF", offset=off)
        o[n] = <unsigned int>off
        n += 1
        off = nxt
    carray.resize(out, n)
    return out


cdef object _name_at(const unsigned char *sp, Py_ssize_t slen, uint32_t off, Py_ssize_t limit):
    """The name at string offset *off* decoded as ``Btf._name`` does, or None where that
    would raise (outside the strings, unterminated, longer than *limit*)."""
    if off == 0:
        return ""
    if off >= <uint32_t>slen:
        return None
    cdef Py_ssize_t stop = off + limit + 1
    if stop > slen:
        stop = slen
    cdef const unsigned char *nul = <const unsigned char *>memchr(sp + off, 0, stop - off)
    if nul == NULL:
        return None
    return PyUnicode_DecodeUTF8(<const char *>sp + off, nul - (sp + off), "replace")


def decode_vlen(types, Py_ssize_t off, strings, Py_ssize_t soff, Py_ssize_t slen,
                Py_ssize_t limit, member_cls, value_cls):
    """The members (STRUCT, UNION) or enumerators (ENUM, ENUM64) of the type record at byte
    *off* of *types*, made as ``Btf._decode`` makes them: ``member_cls(name, type, offset,
    bitfield_size, name_off)`` / ``value_cls(name, value, name_off)``.

    *strings*: a buffer whose ``[soff:soff + slen]`` is the string section (names of a
    BTF without a base).  Returns None for a record of another kind, one that does not
    fit *types*, or a name ``Btf._decode`` would refuse (it then says why).  Never raises
    for well-typed arguments (but what the classes raise).
    """
    cdef const unsigned char[::1] tv = memoryview(types).cast("B")
    cdef const unsigned char[::1] sv = memoryview(strings).cast("B")
    cdef Py_ssize_t tlen = tv.shape[0]
    if soff < 0 or slen < 0 or soff + slen > sv.shape[0] or off < 0 or off + 12 > tlen:
        return None
    cdef const unsigned char *sp = &sv[0] + soff if sv.shape[0] else NULL
    cdef const unsigned char *p = &tv[0] + off
    cdef uint32_t info = _u32le(p + 4)
    cdef uint32_t kind = (info >> 24) & 0x1F
    cdef Py_ssize_t vlen = info & 0xFFFF, i, per
    cdef bint kflag = (info >> 31) != 0
    cdef uint32_t a, b, c
    cdef long long val
    cdef unsigned long long v64
    if kind == 4 or kind == 5 or kind == 19:
        per = 12
    elif kind == 6:
        per = 8
    else:
        return None
    if off + 12 + per * vlen > tlen:
        return None
    if slen == 0 and vlen:
        return None
    cdef list out = []
    p += 12
    for i in range(vlen):
        a = _u32le(p)
        name = _name_at(sp, slen, a, limit)
        if name is None:
            return None
        b = _u32le(p + 4)
        if kind == 6:        # ENUM: a signed 32-bit value, unsigned unless kind_flag
            val = <int>b if kflag else <long long>b
            out.append(value_cls(name, val, a))
        elif kind == 19:     # ENUM64: lo, hi
            c = _u32le(p + 8)
            v64 = (<unsigned long long>c << 32) | b
            if kflag and (v64 >> 63):
                out.append(value_cls(name, <long long>v64, a))
            else:
                out.append(value_cls(name, v64, a))
        else:
            c = _u32le(p + 8)
            if kflag:
                out.append(member_cls(name, b, c & 0xFFFFFF, c >> 24, a))
            else:
                out.append(member_cls(name, b, c, 0, a))
        p += per
    return out
