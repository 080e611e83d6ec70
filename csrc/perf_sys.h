/*
 * perf_sys.h: the syscalls attaching to tracing hooks needs, besides bpf(2).
 *
 *   - perf_event_open(2) with the attr filled here from a small opts struct
 *     (tracepoints, kprobe/uprobe PMUs, software and hardware events);
 *     bl_perf_attr_fill() is separate so the attr can be inspected without
 *     the kernel (a kernel without kprobes still gets its attr tested);
 *   - the perf ioctls that attach, enable and disable;
 *   - mount(2)/umount2(2), for a private tracefs mount when none exists.
 *
 * Like bpf_sys.h: every fd is O_CLOEXEC and above stdio, failures are -errno,
 * and perf_event_open and the attaching ioctls go through the fault door
 * (bl_fault.h) the rollback tests use.
 */
#ifndef BPFLOAD_PERF_SYS_H
#define BPFLOAD_PERF_SYS_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/perf_event.h>

#include "bl_fault.h"
#include "bl_fd.h"

struct bl_perf_opts {
    __u32 type;             /* PERF_TYPE_* or a dynamic PMU type (kprobe, uprobe) */
    __u64 config;
    __u64 config1;          /* used when name is NULL */
    __u64 config2;          /* probe offset for kprobe/uprobe PMUs */
    const char *name;       /* kprobe_func / uprobe_path: pointed to by config1 */
    __u64 sample;           /* sample_period, or sample_freq with freq set */
    __u32 freq;
    __u64 sample_type;
    __u32 wakeup_events;
    __u32 disabled;
};

static inline void bl_perf_attr_fill(struct perf_event_attr *attr, const struct bl_perf_opts *o)
{
    memset(attr, 0, sizeof(*attr));
    attr->size = sizeof(*attr);
    attr->type = o->type;
    attr->config = o->config;
    attr->config1 = o->name ? (__u64)(uintptr_t)o->name : o->config1;
    attr->config2 = o->config2;
    attr->sample_period = o->sample;    /* same slot as sample_freq */
    attr->freq = o->freq ? 1 : 0;
    attr->sample_type = o->sample_type;
    attr->wakeup_events = o->wakeup_events;
    attr->disabled = o->disabled ? 1 : 0;
}

static inline int bl_perf_event_open(const struct bl_perf_opts *o, int pid, int cpu, int group_fd)
{
    struct perf_event_attr attr;
    long fd;
    int fault = bl_fault_hit(BL_OP_PERF_EVENT_OPEN);

    if (fault)
        return fault;
    bl_perf_attr_fill(&attr, o);
    fd = syscall(__NR_perf_event_open, &attr, pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return -errno;
    return bl_fd_above_stdio((int)fd);
}

/* PERF_EVENT_IOC_SET_BPF: run prog_fd on every event (kernels without perf links). */
static inline int bl_perf_set_bpf(int pfd, int prog_fd)
{
    int fault = bl_fault_hit(BL_OP_IOCTL);

    if (fault)
        return fault;
    return ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd) < 0 ? -errno : 0;
}

static inline int bl_perf_enable(int pfd)
{
    int fault = bl_fault_hit(BL_OP_IOCTL);

    if (fault)
        return fault;
    return ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0) < 0 ? -errno : 0;
}

static inline int bl_perf_disable(int pfd)
{
    return ioctl(pfd, PERF_EVENT_IOC_DISABLE, 0) < 0 ? -errno : 0;
}

static inline int bl_mount(const char *source, const char *target, const char *fstype,
                           unsigned long flags)
{
    return mount(source, target, fstype, flags, NULL) < 0 ? -errno : 0;
}

static inline int bl_umount(const char *target, int flags)
{
    return umount2(target, flags) < 0 ? -errno : 0;
}

#endif /* BPFLOAD_PERF_SYS_H */
