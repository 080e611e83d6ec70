/*
 * c_poll_ref.c: the C reference bpfload.MapPoller is measured against
 * (benchmarks/bench_events.py).
 *
 * One call = one snapshot, the same work MapPoller.snapshot() does:
 *   1. BPF_MAP_LOOKUP_BATCH of the whole map (chunk = capacity, as libbpf's
 *      bpf_map_lookup_batch would be driven: out_batch of one call is
 *      in_batch of the next, ENOENT ends) into keys[cur] and a raw scratch
 *      buffer (per-CPU maps: ncpus * round_up(value_size, 8) per entry);
 *   2. widen each value (1/2/4/8 bytes) to u64, summed over the CPUs;
 *   3. for each key, find it in the previous snapshot (same position, else a
 *      linear-probing hash index of the previous keys), delta = cur - prev
 *      (a new key counts from 0), rate = delta * 1e9 / elapsed_ns.
 *
 * The caller owns every buffer (two key and two value buffers it swaps).
 * It deliberately does not include csrc/: an independent reference.
 * Returns the entry count or -errno.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>

#define OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define BATCH_ATTR_SZ OFFSETOFEND(union bpf_attr, batch)

static long lookup_batch(int fd, void *keys, void *values, uint32_t key_size,
                         size_t value_stride, size_t capacity)
{
    union bpf_attr attr;
    uint64_t tok[2][32];
    void *in = NULL, *out = tok[0];
    size_t total = 0;
    long ret;

    while (total < capacity) {
        memset(&attr, 0, BATCH_ATTR_SZ);
        attr.batch.map_fd = fd;
        attr.batch.in_batch = (uint64_t)(uintptr_t)in;
        attr.batch.out_batch = (uint64_t)(uintptr_t)out;
        attr.batch.keys = (uint64_t)(uintptr_t)((char *)keys + total * key_size);
        attr.batch.values = (uint64_t)(uintptr_t)((char *)values + total * value_stride);
        attr.batch.count = (uint32_t)(capacity - total);
        ret = syscall(__NR_bpf, BPF_MAP_LOOKUP_BATCH, &attr, BATCH_ATTR_SZ);
        if (ret < 0 && errno != ENOENT)
            return -errno;
        total += attr.batch.count;
        if (ret < 0)
            break;
        in = out;
        out = out == tok[0] ? tok[1] : tok[0];
    }
    return (long)total;
}

static inline uint64_t load_uint(const char *p, uint32_t size)
{
    switch (size) {
    case 8: return *(const uint64_t *)p;
    case 4: return *(const uint32_t *)p;
    case 2: return *(const uint16_t *)p;
    default: return *(const uint8_t *)p;
    }
}

static inline uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n, w;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, k + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    if (i < n) {
        w = 0;
        memcpy(&w, k + i, n - i);
        h = (h ^ w) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
    }
    h *= 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 32);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct cpoll {
    int fd;
    uint32_t key_size, value_size, ncpus;
    size_t capacity, stride, vsize;
    char *keys[2];
    uint64_t *vals[2];
    char *scratch;
    int64_t *deltas;
    double *rates;
    size_t count[2];
    int64_t ts[2];
    int cur;              /* -1 before the first snapshot */
    uint32_t *index;
    size_t index_cap;
};

void *cpoll_new(int fd, uint32_t key_size, uint32_t value_size, uint32_t ncpus, size_t capacity)
{
    struct cpoll *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->fd = fd;
    p->key_size = key_size;
    p->value_size = value_size;
    p->ncpus = ncpus;
    p->capacity = capacity;
    p->stride = ncpus > 1 ? (value_size + 7) & ~7u : value_size;
    p->vsize = p->stride * ncpus;
    p->cur = -1;
    p->keys[0] = malloc(capacity * key_size);
    p->keys[1] = malloc(capacity * key_size);
    p->vals[0] = malloc(capacity * 8);
    p->vals[1] = malloc(capacity * 8);
    p->scratch = malloc(capacity * p->vsize);
    p->deltas = malloc(capacity * 8);
    p->rates = malloc(capacity * 8);
    return p;
}

void cpoll_free(void *h)
{
    struct cpoll *p = h;

    if (!p)
        return;
    free(p->keys[0]); free(p->keys[1]); free(p->vals[0]); free(p->vals[1]);
    free(p->scratch); free(p->deltas); free(p->rates); free(p->index);
    free(p);
}

static int build_index(struct cpoll *p, const char *keys, size_t n)
{
    size_t cap = 16, i;

    while (cap < 2 * n)
        cap <<= 1;
    if (cap > p->index_cap) {
        free(p->index);
        p->index = malloc(cap * sizeof(uint32_t));
        if (!p->index)
            return -ENOMEM;
        p->index_cap = cap;
    }
    memset(p->index, 0xff, cap * sizeof(uint32_t));
    for (i = 0; i < n; i++) {
        uint64_t slot = hash_key(keys + i * p->key_size, p->key_size) & (cap - 1);

        while (p->index[slot] != UINT32_MAX)
            slot = (slot + 1) & (cap - 1);
        p->index[slot] = (uint32_t)i;
    }
    return (int)cap;
}

/* One snapshot; *sum_out receives the sum of all counters (a checksum). */
long cpoll_snapshot(void *h, uint64_t *sum_out)
{
    struct cpoll *p = h;
    int nxt = p->cur < 0 ? 0 : 1 - p->cur, prv = p->cur;
    int64_t t0 = now_ns();
    long n = lookup_batch(p->fd, p->keys[nxt], p->scratch, p->key_size, p->vsize, p->capacity);
    uint64_t *out = p->vals[nxt], total = 0;
    size_t i, pn, cap = 0;
    uint32_t c;
    double per_s;

    if (n < 0)
        return n;
    for (i = 0; i < (size_t)n; i++) {
        const char *e = p->scratch + i * p->vsize;
        uint64_t acc = 0;

        for (c = 0; c < p->ncpus; c++)
            acc += load_uint(e + c * p->stride, p->value_size);
        out[i] = acc;
        total += acc;
    }
    p->count[nxt] = (size_t)n;
    p->ts[nxt] = t0;
    if (prv >= 0) {
        const char *ck = p->keys[nxt], *pk = p->keys[prv];
        const uint64_t *pv = p->vals[prv];
        int64_t dt = p->ts[nxt] - p->ts[prv];

        pn = p->count[prv];
        per_s = 1e9 / (double)(dt > 0 ? dt : 1);
        for (i = 0; i < (size_t)n; i++) {
            long j = -1;

            if (i < pn && memcmp(ck + i * p->key_size, pk + i * p->key_size, p->key_size) == 0) {
                j = (long)i;
            } else {
                uint64_t slot;

                if (!cap) {
                    int r = build_index(p, pk, pn);

                    if (r < 0)
                        return r;
                    cap = (size_t)r;
                }
                slot = hash_key(ck + i * p->key_size, p->key_size) & (cap - 1);
                while (p->index[slot] != UINT32_MAX) {
                    if (!memcmp(ck + i * p->key_size, pk + (size_t)p->index[slot] * p->key_size,
                                p->key_size)) {
                        j = p->index[slot];
                        break;
                    }
                    slot = (slot + 1) & (cap - 1);
                }
            }
            p->deltas[i] = j >= 0 ? (int64_t)(out[i] - pv[j]) : (int64_t)out[i];
            p->rates[i] = (double)p->deltas[i] * per_s;
        }
    } else {
        memset(p->deltas, 0, (size_t)n * 8);
        memset(p->rates, 0, (size_t)n * 8);
    }
    p->cur = nxt;
    *sum_out = total;
    return n;
}
