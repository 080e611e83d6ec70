/*
 * bl_fault.h: the one fault-injection door and call counter of every syscall
 * bpfload makes through csrc/ (rollback tests only).
 *
 * Calls are numbered: a bpf(2) command by its `enum bpf_cmd` value (below
 * BL_MAX_CMD), the event readers' calls (csrc/events.h) by BL_OP_* above it.
 * When fail_at > 0, the fail_at-th call from now (counted over every call,
 * or only over fail_cmd when >= 0) fails with fail_errno without entering
 * the kernel.
 *
 * Each Cython extension module has its own copy of a header's statics, so
 * the state lives in one place: bpfload._core.syscall owns bl_fault_own and
 * hands its address out as a capsule (_fault_state()); the other modules
 * point bl_fault at it at import (bl_fault_attach).  Set from Python through
 * bpfload._core.syscall.inject_fault(); read through syscall_count().
 */
#ifndef BPFLOAD_BL_FAULT_H
#define BPFLOAD_BL_FAULT_H

#define BL_MAX_CMD 64

enum bl_fault_op {
    BL_OP_PERF_EVENT_OPEN = BL_MAX_CMD,
    BL_OP_MMAP,
    BL_OP_EPOLL_CREATE,
    BL_OP_EPOLL_CTL,
    BL_OP_EVENTFD,
    BL_OP_DUP,
    BL_OP_IOCTL,
    BL_OP_END
};

struct bl_fault_state {
    long fail_at;
    int fail_cmd;
    int fail_errno;
    unsigned long bpf_calls;            /* bpf(2) calls, every command */
    unsigned long calls[BL_OP_END];     /* per command / operation */
};

static struct bl_fault_state bl_fault_own;
static struct bl_fault_state *bl_fault = &bl_fault_own;

/* Point this module at the state another module owns (NULL: keep our own). */
static inline void bl_fault_attach(void *state)
{
    if (state)
        bl_fault = (struct bl_fault_state *)state;
}

/* Count one call of `op`; -errno when an injected fault fires on it, else 0. */
static inline int bl_fault_hit(int op)
{
    struct bl_fault_state *f = bl_fault;

    if (op >= 0 && op < BL_OP_END)
        f->calls[op]++;
    if (op >= 0 && op < BL_MAX_CMD)
        f->bpf_calls++;
    if (f->fail_at > 0 && (f->fail_cmd < 0 || f->fail_cmd == op)) {
        if (--f->fail_at == 0)
            return -f->fail_errno;
    }
    return 0;
}

#endif /* BPFLOAD_BL_FAULT_H */
