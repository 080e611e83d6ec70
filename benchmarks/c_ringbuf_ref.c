/*
 * c_ringbuf_ref.c: the C references bpfload's ring buffer consumer is
 * measured against (benchmarks/bench_events.py).
 *
 * Two consumers of the same BPF_MAP_TYPE_RINGBUF map fd, each calling a
 * callback once per record, exactly like bpfload.RingBuffer:
 *
 *   crb_*         a plain consumer loop written here over the kernel's mmap
 *                 layout (consumer page RW at offset 0; producer page + data
 *                 mapped twice, RO, at offset page_size), acquire loads of
 *                 the producer position and record header, BUSY/DISCARD
 *                 bits, consumer position committed with a release store at
 *                 the end of each pass over the ring (the cheapest correct
 *                 consumer: no per-record commit).
 *   crb_libbpf_*  libbpf's ring_buffer__new / ring_buffer__poll (Debian's
 *                 libbpf-dev; linked with -lbpf, benchmark-only).
 *
 * The callback is either the C no-op crb_noop (mode CB_C; bpfload can call
 * the same function through its C-callback path) or a Python callable
 * invoked through the C API with a zero-copy read-only memoryview of the
 * record (mode CB_PY_VIEW) or a bytes copy (mode CB_PY_BYTES) - what a
 * hand-written binding of either consumer would do.  Python modes need the
 * GIL: the benchmark loads this library with ctypes.PyDLL.
 *
 * It deliberately does not include csrc/: it is an independent reference.
 * Every function returns a count (>= 0) or -errno.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>

enum { CB_C = 0, CB_PY_VIEW = 1, CB_PY_BYTES = 2 };

/* libbpf's ring_buffer_sample_fn signature. */
int crb_noop(void *ctx, void *data, size_t size)
{
    (void)ctx; (void)data; (void)size;
    return 0;
}

struct cb {
    int mode;
    PyObject *callable;  /* borrowed: the benchmark keeps it alive */
    long calls;
    int failed;
};

static int call_py(struct cb *c, void *data, size_t size)
{
    PyObject *arg, *res;

    if (c->mode == CB_PY_VIEW)
        arg = PyMemoryView_FromMemory(data, (Py_ssize_t)size, PyBUF_READ);
    else
        arg = PyBytes_FromStringAndSize(data, (Py_ssize_t)size);
    if (!arg) {
        c->failed = 1;
        return -ENOMEM;
    }
    res = PyObject_CallOneArg(c->callable, arg);
    Py_DECREF(arg);
    if (!res) {
        c->failed = 1;
        return -EINVAL;
    }
    Py_DECREF(res);
    return 0;
}

static int dispatch(void *ctx, void *data, size_t size)
{
    struct cb *c = ctx;

    c->calls++;
    if (c->mode == CB_C)
        return crb_noop(NULL, data, size);
    return call_py(c, data, size);
}

/* ---- the plain consumer ------------------------------------------------- */

struct crb {
    unsigned long *consumer_pos;
    const unsigned long *producer_pos;
    const char *data;
    unsigned long mask;
    size_t page, size;
    int (*fn)(void *ctx, void *data, size_t size);  /* called through a pointer, as libbpf does */
    struct cb cb;
};

void *crb_new(int map_fd, uint32_t size, int mode, PyObject *callable)
{
    struct crb *r = calloc(1, sizeof(*r));
    void *p;

    if (!r)
        return NULL;
    r->page = (size_t)sysconf(_SC_PAGESIZE);
    r->size = size;
    r->mask = size - 1;
    r->cb.mode = mode;
    r->cb.callable = callable;
    r->fn = dispatch;
    p = mmap(NULL, r->page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    r->consumer_pos = p;
    p = mmap(NULL, r->page + 2 * (size_t)size, PROT_READ, MAP_SHARED, map_fd, (off_t)r->page);
    if (p == MAP_FAILED) {
        munmap(r->consumer_pos, r->page);
        goto fail;
    }
    r->producer_pos = p;
    r->data = (const char *)p + r->page;
    return r;
fail:
    free(r);
    return NULL;
}

long crb_consume(void *h)
{
    struct crb *r = h;
    unsigned long cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE), prod;
    long n = 0;
    int got;

    do {
        got = 0;
        prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);
        while (cons < prod) {
            const uint32_t *hdr = (const uint32_t *)(r->data + (cons & r->mask));
            uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);

            if (len & BPF_RINGBUF_BUSY_BIT)
                break;
            got = 1;
            cons += (((len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT))
                      + BPF_RINGBUF_HDR_SZ + 7) & ~7UL);
            if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
                n++;
                if (r->fn(&r->cb, (void *)(hdr + 2),
                             len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) < 0) {
                    __atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
                    return r->cb.failed ? -EINVAL : n;
                }
            }
        }
        __atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    } while (got && cons >= prod);
    return n;
}

void crb_free(void *h)
{
    struct crb *r = h;

    if (!r)
        return;
    munmap(r->consumer_pos, r->page);
    munmap((void *)r->producer_pos, r->page + 2 * r->size);
    free(r);
}

/* ---- libbpf ------------------------------------------------------------- */

struct crb_libbpf {
    struct ring_buffer *rb;
    struct cb cb;
};

void *crb_libbpf_new(int map_fd, int mode, PyObject *callable)
{
    struct crb_libbpf *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->cb.mode = mode;
    l->cb.callable = callable;
    l->rb = ring_buffer__new(map_fd, dispatch, &l->cb, NULL);
    if (!l->rb) {
        free(l);
        return NULL;
    }
    return l;
}

long crb_libbpf_poll(void *h, int timeout_ms)
{
    struct crb_libbpf *l = h;
    int n = ring_buffer__poll(l->rb, timeout_ms);

    if (l->cb.failed)
        return -EINVAL;
    return n;
}

void crb_libbpf_free(void *h)
{
    struct crb_libbpf *l = h;

    if (!l)
        return;
    ring_buffer__free(l->rb);
    free(l);
}
