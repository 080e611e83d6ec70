# cython: language_level=3
"""CO-RE helper in compiled code: the essential-name index of a raw BTF type section.

Compute only: no syscalls, and nothing imported from bpfload but
:mod:`bpfload.errors`.  :mod:`bpfload.btf.core` looks up CO-RE candidates by
*essential* name (the name without a ``___flavor`` suffix).  For vmlinux
(~130,000 types) building a Python dict of every name was the dominant cost
of a process's first CO-RE load; :class:`EssentialIndex` walks the raw type
records once in C, hashes each name's essential prefix (FNV-1a, 64 bits)
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
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memset

from bpfload.errors import BtfError

__all__ = ["EssentialIndex", "essential_len"]


cdef enum:
    UNDERSCORE = 95
    MAX_SEGMENTS = 8


cdef struct Segment:
    Py_ssize_t base          # first string offset this segment holds
    const unsigned char *p
    Py_ssize_t length


cdef inline Py_ssize_t _essential_len(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = n - 5
    while i >= 0:
        if (s[i] != UNDERSCORE and s[i + 1] == UNDERSCORE and s[i + 2] == UNDERSCORE
                and s[i + 3] == UNDERSCORE and s[i + 4] != UNDERSCORE):
            return i + 1
        i -= 1
    return n


cdef inline uint64_t _hash(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h | 1  # 0 marks an empty slot


def essential_len(name):
    """Length in bytes of the essential part of *name* (str or bytes).  Never raises."""
    cdef bytes b = name.encode() if isinstance(name, str) else bytes(name)
    return _essential_len(<const unsigned char *>b, len(b))


cdef class EssentialIndex:
    """Type ids of one BTF blob grouped by essential name.

    ``EssentialIndex(types, offsets, segments, start_id)``: *types* is the
    raw type section, *offsets* (``array('I')``) the byte offset of each
    record in it (type ``start_id + i`` at ``offsets[i]``), *segments* the
    string sections names may point into as ``[(first offset, bytes), ...]``
    (for split BTF: the base's, then this blob's).  Anonymous types are not
    indexed.

    Raises :class:`BtfError` for a record offset outside *types* or a name
    offset outside every segment; ``TypeError``/``ValueError`` for bad
    arguments.
    """

    cdef uint64_t *slot_hash
    cdef uint32_t *slot_head     # first type index + 1 with this hash (0: none)
    cdef uint32_t *chain         # per type index: next type index + 1 with the same hash
    cdef Py_ssize_t mask
    cdef Py_ssize_t ntypes
    cdef readonly Py_ssize_t start_id
    cdef readonly Py_ssize_t named
    cdef object _keep            # the buffers the segments point into

    def __cinit__(self):
        self.slot_hash = NULL
        self.slot_head = NULL
        self.chain = NULL

    def __dealloc__(self):
        PyMem_Free(self.slot_hash)
        PyMem_Free(self.slot_head)
        PyMem_Free(self.chain)

    def __init__(self, types, offsets, segments, Py_ssize_t start_id):
        cdef const unsigned char[::1] tv = memoryview(types).cast("B")
        cdef const unsigned int[::1] ov = memoryview(offsets).cast("B").cast("I")
        cdef Segment segs[MAX_SEGMENTS]
        cdef Py_ssize_t nseg = 0
        cdef const unsigned char[::1] sv
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
        self._keep = keep
        self.start_id = start_id
        cdef Py_ssize_t n = ov.shape[0]
        cdef Py_ssize_t tlen = tv.shape[0]
        self.ntypes = n
        cdef Py_ssize_t cap = 16
        while cap < 2 * n:
            cap *= 2
        self.mask = cap - 1
        self.slot_hash = <uint64_t *>PyMem_Malloc(cap * sizeof(uint64_t))
        self.slot_head = <uint32_t *>PyMem_Malloc(cap * sizeof(uint32_t))
        self.chain = <uint32_t *>PyMem_Malloc((n + 1) * sizeof(uint32_t))
        if self.slot_hash == NULL or self.slot_head == NULL or self.chain == NULL:
            raise MemoryError()
        memset(self.slot_hash, 0, cap * sizeof(uint64_t))
        memset(self.slot_head, 0, cap * sizeof(uint32_t))
        memset(self.chain, 0, (n + 1) * sizeof(uint32_t))

        cdef const unsigned char *tp = &tv[0] if tlen else NULL
        cdef Py_ssize_t idx, off, local, k, slen, elen, slot
        cdef uint32_t name_off
        cdef uint64_t h
        cdef const unsigned char *s
        cdef const unsigned char *nul
        cdef Py_ssize_t bad = -1, bad_kind = 0, named = 0
        with nogil:
            # backwards, so that prepending keeps every chain in ascending id order
            idx = n - 1
            while idx >= 0:
                off = ov[idx]
                if off + 4 > tlen:
                    bad = idx
                    bad_kind = 1
                    break
                name_off = (<uint32_t>tp[off] | (<uint32_t>tp[off + 1] << 8)
                            | (<uint32_t>tp[off + 2] << 16) | (<uint32_t>tp[off + 3] << 24))
                if name_off != 0:
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
                        bad_kind = 2
                        break
                    if slen:
                        elen = _essential_len(s, slen)
                        h = _hash(s, elen)
                        slot = <Py_ssize_t>(h & <uint64_t>self.mask)
                        while self.slot_hash[slot] != 0 and self.slot_hash[slot] != h:
                            slot = (slot + 1) & self.mask
                        self.slot_hash[slot] = h
                        self.chain[idx] = self.slot_head[slot]
                        self.slot_head[slot] = <uint32_t>(idx + 1)
                        named += 1
                idx -= 1
        self.named = named
        if bad >= 0:
            if bad_kind == 1:
                raise BtfError(f"type [{start_id + bad}]: record offset {ov[bad]} outside the "
                               f"type section", section=".BTF")
            raise BtfError(f"type [{start_id + bad}]: name offset outside the string section",
                           section=".BTF")

    def lookup(self, name):
        """Ids of the types whose essential name hashes like *name* (str), ascending.

        *name* should itself be an essential name.  The result may hold ids
        of other names (hash collisions): compare names after decoding.
        Never raises for a str.
        """
        cdef bytes b = name.encode()
        cdef const unsigned char *p = b
        cdef uint64_t h = _hash(p, len(b))
        cdef Py_ssize_t slot = <Py_ssize_t>(h & <uint64_t>self.mask)
        cdef uint32_t cur
        cdef list out = []
        while self.slot_hash[slot] != 0:
            if self.slot_hash[slot] == h:
                cur = self.slot_head[slot]
                while cur != 0:
                    out.append(self.start_id + cur - 1)
                    cur = self.chain[cur - 1]
                break
            slot = (slot + 1) & self.mask
        return out

    def __len__(self):
        return self.named

    def __repr__(self):
        return f"<EssentialIndex {self.named} named types of {self.ntypes}>"
