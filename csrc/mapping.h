/*
 * mapping.h: mmap(2) of a BPF map fd, for bpfload/_core/mapping.pyx.
 *
 * Global-data maps (ARRAY, BPF_F_MMAPABLE) and arena maps are read and
 * written by user space through a shared mapping of the map fd, with no
 * bpf(2) call.  The mapping holds its own reference on the map: it outlives
 * the fd until munmap.  Setting up a mapping goes through the fault door
 * (csrc/bl_fault.h, op BL_OP_MMAP) like the event readers' mmap, so rollback
 * tests can make it fail; teardown (munmap, detach) has no door.
 *
 * Every helper returns an address / 0, or NULL / -errno.
 */
#ifndef BPFLOAD_MAPPING_H
#define BPFLOAD_MAPPING_H

#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>

#include "bl_fault.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* A shared mapping of `len` bytes of map `fd`.  `at` != NULL asks for exactly
 * that address (an arena's user address): MAP_FIXED_NOREPLACE, so a range
 * already in use fails with EEXIST instead of being replaced. */
static inline void *bl_map_mmap(int fd, size_t len, int writable, void *at, int *err)
{
    int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    int flags = MAP_SHARED | (at ? MAP_FIXED_NOREPLACE : 0);
    void *p;
    int fault = bl_fault_hit(BL_OP_MMAP);

    if (fault < 0) {
        *err = -fault;
        return NULL;
    }
    p = mmap(at, len, prot, flags, fd, 0);
    if (p == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    if (at && p != at) {          /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
        munmap(p, len);
        *err = EEXIST;
        return NULL;
    }
    *err = 0;
    return p;
}

/* Replace the shared mapping by private zero pages at the same address (same
 * protection), so the map behind it is released now while Python views that
 * still point into the range stay valid memory (reading zeros). */
static inline int bl_map_detach(void *addr, size_t len, int writable)
{
    int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    void *p = mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -errno : 0;
}

static inline int bl_map_munmap(void *addr, size_t len)
{
    return munmap(addr, len) < 0 ? -errno : 0;
}

#endif /* BPFLOAD_MAPPING_H */
