/*
 * c_ref.c: the C reference the bpfload benchmarks are measured against.
 *
 * Each function does one whole benchmark round (a loop of bpf(2) calls) so
 * that Python calls it once per round through ctypes and the ctypes cost is
 * negligible.  It talks to the kernel the way libbpf does (bpf_map_*_elem and
 * bpf_map_*_batch in tools/lib/bpf/bpf.c): zero the attr up to the last
 * field the command uses, fill it, syscall(__NR_bpf, ...) with that size.
 * It deliberately does not include csrc/bpf_sys.h: it is an independent
 * reference, not bpfload's own code path.
 *
 * Every function returns a count (>= 0) or -errno.  Built by
 * benchmarks/conftest.py with `cc -O2 -shared -fPIC` at the start of a run.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#define OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define ELEM_ATTR_SZ OFFSETOFEND(union bpf_attr, flags)
#define BATCH_ATTR_SZ OFFSETOFEND(union bpf_attr, batch)

static inline long sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
    long ret = syscall(__NR_bpf, cmd, attr, size);
    return ret < 0 ? -errno : ret;
}

/* N x BPF_MAP_LOOKUP_ELEM of u32 keys into one value buffer of value_size
 * bytes.  Returns how many keys were found. */
long cref_lookup_elems(int fd, const uint32_t *keys, size_t n, void *value)
{
    union bpf_attr attr;
    long found = 0, ret;
    size_t i;

    for (i = 0; i < n; i++) {
        memset(&attr, 0, ELEM_ATTR_SZ);
        attr.map_fd = fd;
        attr.key = (uint64_t)(uintptr_t)&keys[i];
        attr.value = (uint64_t)(uintptr_t)value;
        ret = sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr, ELEM_ATTR_SZ);
        if (ret == 0)
            found++;
        else if (ret != -ENOENT)
            return ret;
    }
    return found;
}

/* N x BPF_MAP_UPDATE_ELEM of u32 keys and u64 values.  Returns n. */
long cref_update_elems(int fd, const uint32_t *keys, const uint64_t *values, size_t n,
                       uint64_t flags)
{
    union bpf_attr attr;
    long ret;
    size_t i;

    for (i = 0; i < n; i++) {
        memset(&attr, 0, ELEM_ATTR_SZ);
        attr.map_fd = fd;
        attr.key = (uint64_t)(uintptr_t)&keys[i];
        attr.value = (uint64_t)(uintptr_t)&values[i];
        attr.flags = flags;
        ret = sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, ELEM_ATTR_SZ);
        if (ret < 0)
            return ret;
    }
    return (long)n;
}

/* Dump the whole map with BPF_MAP_LOOKUP_BATCH, `chunk` entries per call,
 * into keys (capacity * key_size bytes) and values (capacity * value_stride
 * bytes; per-CPU maps: ncpus * round_up(value_size, 8) per entry).  The
 * resume token is opaque: two buffers of max(key_size, 8) bytes, out_batch
 * of one call is in_batch of the next.  Returns the number of entries. */
long cref_lookup_batch(int fd, void *keys, void *values, uint32_t key_size,
                       uint32_t value_stride, size_t capacity, uint32_t chunk)
{
    union bpf_attr attr;
    uint64_t tok[2][32]; /* key_size <= 256 */
    void *in = NULL, *out = tok[0];
    size_t total = 0;
    long ret;

    if (key_size > sizeof(tok[0]) || chunk == 0)
        return -EINVAL;
    while (total < capacity) {
        uint32_t n = capacity - total < chunk ? (uint32_t)(capacity - total) : chunk;

        memset(&attr, 0, BATCH_ATTR_SZ);
        attr.batch.map_fd = fd;
        attr.batch.in_batch = (uint64_t)(uintptr_t)in;
        attr.batch.out_batch = (uint64_t)(uintptr_t)out;
        attr.batch.keys = (uint64_t)(uintptr_t)((char *)keys + total * key_size);
        attr.batch.values = (uint64_t)(uintptr_t)((char *)values + total * value_stride);
        attr.batch.count = n;
        ret = sys_bpf(BPF_MAP_LOOKUP_BATCH, &attr, BATCH_ATTR_SZ);
        if (ret < 0 && ret != -ENOENT)
            return ret;
        total += attr.batch.count;
        if (ret == -ENOENT)
            break;
        in = out;
        out = out == tok[0] ? tok[1] : tok[0];
    }
    return (long)total;
}

/* One BPF_MAP_UPDATE_BATCH of `count` entries.  Returns count. */
long cref_update_batch(int fd, const void *keys, const void *values, uint32_t count,
                       uint64_t flags)
{
    union bpf_attr attr;
    long ret;

    memset(&attr, 0, BATCH_ATTR_SZ);
    attr.batch.map_fd = fd;
    attr.batch.keys = (uint64_t)(uintptr_t)keys;
    attr.batch.values = (uint64_t)(uintptr_t)values;
    attr.batch.count = count;
    attr.batch.elem_flags = flags;
    ret = sys_bpf(BPF_MAP_UPDATE_BATCH, &attr, BATCH_ATTR_SZ);
    return ret < 0 ? ret : (long)attr.batch.count;
}

/* Read a per-CPU map of u64 values with batch lookups (as
 * cref_lookup_batch) and sum each entry over its ncpus slots into sums[].
 * Returns the number of entries. */
long cref_percpu_sum(int fd, void *keys, void *scratch, uint64_t *sums, uint32_t key_size,
                     uint32_t ncpus, size_t capacity, uint32_t chunk)
{
    long n = cref_lookup_batch(fd, keys, scratch, key_size, ncpus * 8, capacity, chunk);
    const uint64_t *v = scratch;
    long i;
    uint32_t c;

    if (n < 0)
        return n;
    for (i = 0; i < n; i++) {
        uint64_t acc = 0;

        for (c = 0; c < ncpus; c++)
            acc += v[(size_t)i * ncpus + c];
        sums[i] = acc;
    }
    return n;
}
