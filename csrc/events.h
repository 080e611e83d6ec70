/*
 * events.h: the C side of bpfload's event readers (bpfload/_core/events.pyx).
 *
 * Nothing here calls bpf(2): the ring buffer and perf buffer readers talk to
 * the kernel through mmap(2), epoll(7) and perf_event_open(2).  What Cython
 * cannot say directly lives here as static inline helpers:
 *
 *   - acquire loads / release stores / a full fence on the positions the
 *     kernel shares with us (the kernel's smp_load_acquire/smp_store_release
 *     pairs, as in tools/lib/bpf/ringbuf.c and perf's ring_buffer_read_head),
 *   - perf_event_open(2) with the one attr bpfload needs
 *     (PERF_COUNT_SW_BPF_OUTPUT, PERF_SAMPLE_RAW),
 *   - moving a new fd above stdio (fd 0 means "no fd" in several UAPI
 *     fields; bpfload never hands it out),
 *   - the fault door (csrc/bl_fault.h, shared with bpf(2)) on every call that
 *     sets a reader up: perf_event_open, mmap, epoll_create1, epoll_ctl,
 *     eventfd, the fd dup and the enable ioctl.  Teardown calls (munmap,
 *     close, the disable ioctl) and epoll_wait have no door.
 *
 * Every helper returns >= 0 or -errno.
 */
#ifndef BPFLOAD_EVENTS_H
#define BPFLOAD_EVENTS_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/perf_event.h>

#include "bl_fault.h"
#include "bl_fd.h"

/* An injected fault on `op`: return its -errno from the calling helper. */
#define EV_FAULT(op)                          \
    do {                                      \
        int ev_fault_ = bl_fault_hit(op);     \
        if (ev_fault_ < 0)                    \
            return ev_fault_;                 \
    } while (0)

/* ---- memory ordering on shared positions ------------------------------ */

static inline unsigned long ev_load_acquire_ul(const unsigned long *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void ev_store_release_ul(unsigned long *p, unsigned long v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint32_t ev_load_acquire_u32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline __u64 ev_load_acquire_u64(const __u64 *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void ev_store_release_u64(__u64 *p, __u64 v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/*
 * A full barrier between publishing our consumer position and re-reading the
 * producer position.  The kernel's producer stores its position, then
 * (after a full barrier: xchg on the record header) reads ours to decide
 * whether to wake us; without the fence on our side a store->load reorder
 * could make both sides miss each other and leave data behind with no
 * wake-up.  One fence per pass over the ring, not per record.
 */
static inline void ev_full_fence(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- fds --------------------------------------------------------------- */

/* An O_CLOEXEC duplicate of fd, above stdio. */
static inline int ev_dup(int fd)
{
    int nfd;
    EV_FAULT(BL_OP_DUP);
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return nfd < 0 ? -errno : nfd;
}

static inline int ev_epoll_create(void)
{
    int fd;
    EV_FAULT(BL_OP_EPOLL_CREATE);
    fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : bl_fd_above_stdio(fd);
}

/* A non-blocking, close-on-exec eventfd above stdio. */
static inline int ev_eventfd(void)
{
    int fd;
    EV_FAULT(BL_OP_EVENTFD);
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : bl_fd_above_stdio(fd);
}

static inline int ev_epoll_add(int epfd, int fd, uint32_t index)
{
    struct epoll_event e;
    EV_FAULT(BL_OP_EPOLL_CTL);
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    e.data.u32 = index;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

/* epoll_wait into evs; returns the count or -errno (EINTR included: the
 * caller runs signal handlers and retries, PEP 475 style). */
static inline int ev_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    return n < 0 ? -errno : n;
}

static inline uint32_t ev_event_index(const struct epoll_event *evs, int i)
{
    return evs[i].data.u32;
}

/* ---- mmap -------------------------------------------------------------- */

/* mmap(2) -> address, or NULL with *err = errno. */
static inline void *ev_mmap(size_t len, int prot, int fd, long offset, int *err)
{
    void *p;
    int fault = bl_fault_hit(BL_OP_MMAP);
    if (fault < 0) {
        *err = -fault;
        return NULL;
    }
    p = mmap(NULL, len, prot, MAP_SHARED, fd, (off_t)offset);
    if (p == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    *err = 0;
    return p;
}

/*
 * Replace a shared mapping by private zero pages at the same address, so the
 * kernel object behind it (ring buffer, perf event) is released now while
 * Python views that still point into the range stay readable (they read
 * zeros) instead of faulting.  Returns 0 or -errno.
 */
static inline int ev_mmap_detach(void *addr, size_t len)
{
    void *p = mmap(addr, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -errno : 0;
}

static inline int ev_munmap(void *addr, size_t len)
{
    return munmap(addr, len) < 0 ? -errno : 0;
}

/* ---- perf events ------------------------------------------------------- */

/* A PERF_COUNT_SW_BPF_OUTPUT event on one CPU, for a PERF_EVENT_ARRAY slot:
 * every sample carries PERF_SAMPLE_RAW (what bpf_perf_event_output wrote),
 * a wake-up every `wakeup_events` samples.  Returns the fd or -errno. */
static inline int ev_perf_event_open_bpf_output(int cpu, uint32_t wakeup_events)
{
    struct perf_event_attr attr;
    long fd;

    EV_FAULT(BL_OP_PERF_EVENT_OPEN);
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.sample_period = 1;
    attr.wakeup_events = wakeup_events ? wakeup_events : 1;
    fd = syscall(__NR_perf_event_open, &attr, -1 /* pid: any */, cpu, -1 /* group */,
                 PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return -errno;
    return bl_fd_above_stdio((int)fd);
}

static inline int ev_perf_event_enable(int fd)
{
    EV_FAULT(BL_OP_IOCTL);
    return ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0 ? -errno : 0;
}

static inline int ev_perf_event_disable(int fd)
{
    return ioctl(fd, PERF_EVENT_IOC_DISABLE, 0) < 0 ? -errno : 0;
}

#endif /* BPFLOAD_EVENTS_H */
