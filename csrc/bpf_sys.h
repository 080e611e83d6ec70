/*
 * bpf_sys.h: the one door to bpf(2).
 *
 * One static-inline helper per command fills `union bpf_attr` and calls
 * bl_sys_bpf(), which owns EINTR/EAGAIN retry and returns -errno on failure.
 * Nothing else in bpfload calls syscall(__NR_bpf, ...).  Cython sees only
 * the narrow prototypes declared in bpfload/_core/syscall.pyx.
 *
 * Every fd returned is O_CLOEXEC (bpf(2) does that for map/prog/btf fds) and
 * is moved above 2 so that fd 0 is never handed out: the UAPI reads fd 0 in
 * several fields as "no fd".
 */
#ifndef BPFLOAD_BPF_SYS_H
#define BPFLOAD_BPF_SYS_H

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#include "bl_fault.h"
#include "bl_fd.h"

#define BL_PTR(p) ((__u64)(uintptr_t)(p))

/* Fault injection and call counting: csrc/bl_fault.h (one door shared with
 * the event readers' syscalls). */
static inline int bl_sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
    long ret;
    int again = 0;
    int fault = bl_fault_hit(cmd);

    if (fault < 0)
        return fault;
    for (;;) {
        ret = syscall(__NR_bpf, cmd, attr, size);
        if (ret >= 0)
            return (int)ret;
        /* BPF_PROG_TEST_RUN is not retried: the kernel aborts a repeated run on a
         * pending signal after an unknown number of runs whose side effects stay,
         * and a retry would run the program that many times more. */
        if (errno == EINTR && cmd != BPF_PROG_TEST_RUN)
            continue;
        /* PROG_LOAD and BTF_LOAD return EAGAIN when the verifier was
         * interrupted by a signal; libbpf retries a few times. */
        if (errno == EAGAIN && (cmd == BPF_PROG_LOAD || cmd == BPF_BTF_LOAD) && ++again < 5)
            continue;
        return -errno;
    }
}

/* A command that returns a new fd: move it above stdio. */
static inline int bl_sys_bpf_fd(int cmd, union bpf_attr *attr, unsigned int size)
{
    int fd = bl_sys_bpf(cmd, attr, size);
    return fd < 0 ? fd : bl_fd_above_stdio(fd);
}

struct bl_map_create_opts {
    __u32 map_type, key_size, value_size, max_entries, map_flags;
    const char *name;
    __u32 inner_map_fd;
    __u32 numa_node;
    __u32 btf_fd, btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id;
    __u64 map_extra;
};

static inline int bl_map_create(const struct bl_map_create_opts *o)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = o->map_type;
    a.key_size = o->key_size;
    a.value_size = o->value_size;
    a.max_entries = o->max_entries;
    a.map_flags = o->map_flags;
    if (o->name)
        strncpy(a.map_name, o->name, BPF_OBJ_NAME_LEN - 1);
    a.inner_map_fd = o->inner_map_fd;
    a.numa_node = o->numa_node;
    a.btf_fd = o->btf_fd;
    a.btf_key_type_id = o->btf_key_type_id;
    a.btf_value_type_id = o->btf_value_type_id;
    a.btf_vmlinux_value_type_id = o->btf_vmlinux_value_type_id;
    a.map_extra = o->map_extra;
    return bl_sys_bpf_fd(BPF_MAP_CREATE, &a, sizeof(a));
}

static inline int bl_map_elem(int cmd, int fd, const void *key, void *value, __u64 flags)
{
    union bpf_attr a;
    memset(&a, 0, offsetof(union bpf_attr, flags) + sizeof(a.flags));
    a.map_fd = fd;
    a.key = BL_PTR(key);
    a.value = BL_PTR(value);
    a.flags = flags;
    return bl_sys_bpf(cmd, &a, offsetof(union bpf_attr, flags) + sizeof(a.flags));
}

static inline int bl_map_lookup(int fd, const void *key, void *value, __u64 flags)
{
    return bl_map_elem(BPF_MAP_LOOKUP_ELEM, fd, key, value, flags);
}

static inline int bl_map_update(int fd, const void *key, const void *value, __u64 flags)
{
    return bl_map_elem(BPF_MAP_UPDATE_ELEM, fd, key, (void *)value, flags);
}

static inline int bl_map_delete(int fd, const void *key)
{
    return bl_map_elem(BPF_MAP_DELETE_ELEM, fd, key, NULL, 0);
}

static inline int bl_map_lookup_and_delete(int fd, const void *key, void *value, __u64 flags)
{
    return bl_map_elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value, flags);
}

static inline int bl_map_get_next_key(int fd, const void *key, void *next_key)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = fd;
    a.key = BL_PTR(key);
    a.next_key = BL_PTR(next_key);
    return bl_sys_bpf(BPF_MAP_GET_NEXT_KEY, &a, sizeof(a));
}

static inline int bl_map_freeze(int fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = fd;
    return bl_sys_bpf(BPF_MAP_FREEZE, &a, sizeof(a));
}

/* BPF_PROG_BIND_MAP: the program holds the map (and lists it in its map ids)
 * though no instruction references it (libbpf binds .rodata for metadata). */
static inline int bl_prog_bind_map(int prog_fd, int map_fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_bind_map.prog_fd = prog_fd;
    a.prog_bind_map.map_fd = map_fd;
    return bl_sys_bpf(BPF_PROG_BIND_MAP, &a, sizeof(a));
}

/* One batch command.  *count is in/out as in the UAPI. */
static inline int bl_map_batch(int cmd, int fd, void *in_batch, void *out_batch, void *keys,
                               void *values, __u32 *count, __u64 elem_flags)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.batch.map_fd = fd;
    a.batch.in_batch = BL_PTR(in_batch);
    a.batch.out_batch = BL_PTR(out_batch);
    a.batch.keys = BL_PTR(keys);
    a.batch.values = BL_PTR(values);
    a.batch.count = *count;
    a.batch.elem_flags = elem_flags;
    ret = bl_sys_bpf(cmd, &a, sizeof(a));
    *count = a.batch.count;
    return ret;
}

static inline int bl_obj_pin(int fd, const char *path)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.pathname = BL_PTR(path);
    a.bpf_fd = fd;
    return bl_sys_bpf(BPF_OBJ_PIN, &a, sizeof(a));
}

static inline int bl_obj_get(const char *path, __u32 file_flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.pathname = BL_PTR(path);
    a.file_flags = file_flags;
    return bl_sys_bpf_fd(BPF_OBJ_GET, &a, sizeof(a));
}

static inline int bl_get_fd_by_id(int cmd, __u32 id)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_id = id; /* same slot as prog_id / btf_id / link_id */
    return bl_sys_bpf_fd(cmd, &a, sizeof(a));
}

static inline int bl_obj_get_info_by_fd(int fd, void *info, __u32 *info_len)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.info.bpf_fd = fd;
    a.info.info_len = *info_len;
    a.info.info = BL_PTR(info);
    ret = bl_sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a, sizeof(a));
    *info_len = a.info.info_len;
    return ret;
}

struct bl_prog_load_opts {
    __u32 prog_type, expected_attach_type, prog_flags, kern_version;
    const void *insns;
    __u32 insn_cnt;
    const char *license;
    const char *name;
    __u32 log_level, log_size;
    char *log_buf;
    __u32 prog_btf_fd;
    const void *func_info;
    __u32 func_info_rec_size, func_info_cnt;
    const void *line_info;
    __u32 line_info_rec_size, line_info_cnt;
    __u32 attach_btf_id, attach_btf_obj_fd, attach_prog_fd;
    const int *fd_array;
    __u32 prog_ifindex;
    __u32 log_true_size;    /* out (Linux 6.4+): log bytes the verifier needed, NUL included; 0 before */
};

/* log_true_size follows core_relo_rec_size in the kernel's prog-load attr (Linux 6.4);
 * older UAPI headers do not name it. */
#define BL_LOG_TRUE_SIZE_OFF (offsetof(union bpf_attr, core_relo_rec_size) + sizeof(__u32))
_Static_assert(BL_LOG_TRUE_SIZE_OFF + sizeof(__u32) <= sizeof(union bpf_attr),
               "union bpf_attr too small for log_true_size");

static inline int bl_prog_load(struct bl_prog_load_opts *o)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.prog_type = o->prog_type;
    a.expected_attach_type = o->expected_attach_type;
    a.prog_flags = o->prog_flags;
    a.kern_version = o->kern_version;
    a.insns = BL_PTR(o->insns);
    a.insn_cnt = o->insn_cnt;
    a.license = BL_PTR(o->license);
    if (o->name)
        strncpy(a.prog_name, o->name, BPF_OBJ_NAME_LEN - 1);
    a.log_level = o->log_level;
    a.log_size = o->log_size;
    a.log_buf = BL_PTR(o->log_buf);
    a.prog_btf_fd = o->prog_btf_fd;
    a.func_info = BL_PTR(o->func_info);
    a.func_info_rec_size = o->func_info_rec_size;
    a.func_info_cnt = o->func_info_cnt;
    a.line_info = BL_PTR(o->line_info);
    a.line_info_rec_size = o->line_info_rec_size;
    a.line_info_cnt = o->line_info_cnt;
    a.attach_btf_id = o->attach_btf_id;
    if (o->attach_prog_fd)
        a.attach_prog_fd = o->attach_prog_fd;
    else
        a.attach_btf_obj_fd = o->attach_btf_obj_fd;
    a.fd_array = BL_PTR(o->fd_array);
    a.prog_ifindex = o->prog_ifindex;
    ret = bl_sys_bpf_fd(BPF_PROG_LOAD, &a, sizeof(a));
    memcpy(&o->log_true_size, (const char *)&a + BL_LOG_TRUE_SIZE_OFF, sizeof(__u32));
    return ret;
}

struct bl_test_run_opts {
    int prog_fd;
    __u32 repeat, flags, cpu, batch_size;
    const void *data_in;
    __u32 data_size_in;
    void *data_out;
    __u32 data_size_out; /* in: buffer size; out: bytes written */
    const void *ctx_in;
    __u32 ctx_size_in;
    void *ctx_out;
    __u32 ctx_size_out;
    __u32 retval, duration;
};

static inline int bl_prog_test_run(struct bl_test_run_opts *o)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.test.prog_fd = o->prog_fd;
    a.test.repeat = o->repeat;
    a.test.flags = o->flags;
    a.test.cpu = o->cpu;
    a.test.batch_size = o->batch_size;
    a.test.data_in = BL_PTR(o->data_in);
    a.test.data_size_in = o->data_size_in;
    a.test.data_out = BL_PTR(o->data_out);
    a.test.data_size_out = o->data_size_out;
    a.test.ctx_in = BL_PTR(o->ctx_in);
    a.test.ctx_size_in = o->ctx_size_in;
    a.test.ctx_out = BL_PTR(o->ctx_out);
    a.test.ctx_size_out = o->ctx_size_out;
    ret = bl_sys_bpf(BPF_PROG_TEST_RUN, &a, sizeof(a));
    o->data_size_out = a.test.data_size_out;
    o->ctx_size_out = a.test.ctx_size_out;
    o->retval = a.test.retval;
    o->duration = a.test.duration;
    return ret;
}

static inline int bl_btf_load(const void *btf, __u32 size, char *log_buf, __u32 log_size,
                              __u32 log_level)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.btf = BL_PTR(btf);
    a.btf_size = size;
    a.btf_log_buf = BL_PTR(log_buf);
    a.btf_log_size = log_size;
    a.btf_log_level = log_level;
    return bl_sys_bpf_fd(BPF_BTF_LOAD, &a, sizeof(a));
}

/*
 * BPF_LINK_CREATE.  The system's <linux/bpf.h> may be older than the running
 * kernel (Debian 12 ships 6.1 headers: no tcx, no netfilter), so the attr is
 * laid out here as the 6.18 UAPI has it; the kernel zero-checks whatever lies
 * beyond the part it knows.  One opts struct covers every link kind: the
 * fields of the per-kind union that the caller's attach_type does not use
 * stay zero.
 */
struct bl_link_create_attr {
    __u32 prog_fd;
    __u32 target_fd;            /* or target_ifindex (xdp, tcx, netkit) */
    __u32 attach_type;
    __u32 flags;
    union {
        __u32 target_btf_id;
        struct { __u64 iter_info; __u32 iter_info_len; } iter;
        struct { __u64 bpf_cookie; } perf_event;
        struct { __u32 target_btf_id; __u32 pad; __u64 cookie; } tracing;
        struct { __u32 pf; __u32 hooknum; __s32 priority; __u32 flags; } netfilter;
        struct { __u32 relative_fd_or_id; __u32 pad; __u64 expected_revision; } tcx;
        struct {
            __u64 path, offsets, ref_ctr_offsets, cookies;
            __u32 cnt, flags, pid;
        } uprobe_multi;
        __u64 pad[8];
    } u;
};
_Static_assert(offsetof(struct bl_link_create_attr, u) == 16, "link_create union offset");
_Static_assert(sizeof(struct bl_link_create_attr) <= sizeof(union bpf_attr) + 64, "link_create size");

enum bl_link_kind {
    BL_LINK_PLAIN = 0,      /* target_btf_id (tracing, lsm, cgroup, xdp ...) */
    BL_LINK_ITER = 1,       /* iter_info / iter_info_len */
    BL_LINK_PERF_EVENT = 2, /* bpf_cookie */
    BL_LINK_TRACING = 3,    /* target_btf_id + cookie */
    BL_LINK_NETFILTER = 4,  /* pf, hooknum, priority, flags */
    BL_LINK_TCX = 5,        /* relative fd/id, expected_revision */
    BL_LINK_UPROBE_MULTI = 6, /* path, offsets, ref_ctr_offsets, cookies, cnt, flags, pid */
};

struct bl_link_create_opts {
    __u32 prog_fd, target_fd, attach_type, flags;
    __u32 kind;                        /* enum bl_link_kind */
    __u32 target_btf_id;
    const void *iter_info;
    __u32 iter_info_len;
    __u64 cookie;                      /* perf_event / tracing */
    __u32 nf_pf, nf_hooknum, nf_flags;
    __s32 nf_priority;
    __u32 relative_fd_or_id;
    __u64 expected_revision;
    const void *um_path, *um_offsets, *um_ref_ctr_offsets, *um_cookies;
    __u32 um_cnt, um_flags, um_pid;
};

static inline int bl_link_create_ex(const struct bl_link_create_opts *o)
{
    struct bl_link_create_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_fd = o->prog_fd;
    a.target_fd = o->target_fd;
    a.attach_type = o->attach_type;
    a.flags = o->flags;
    switch (o->kind) {
    case BL_LINK_ITER:
        a.u.iter.iter_info = BL_PTR(o->iter_info);
        a.u.iter.iter_info_len = o->iter_info_len;
        break;
    case BL_LINK_PERF_EVENT:
        a.u.perf_event.bpf_cookie = o->cookie;
        break;
    case BL_LINK_TRACING:
        a.u.tracing.target_btf_id = o->target_btf_id;
        a.u.tracing.cookie = o->cookie;
        break;
    case BL_LINK_NETFILTER:
        a.u.netfilter.pf = o->nf_pf;
        a.u.netfilter.hooknum = o->nf_hooknum;
        a.u.netfilter.priority = o->nf_priority;
        a.u.netfilter.flags = o->nf_flags;
        break;
    case BL_LINK_TCX:
        a.u.tcx.relative_fd_or_id = o->relative_fd_or_id;
        a.u.tcx.expected_revision = o->expected_revision;
        break;
    case BL_LINK_UPROBE_MULTI:
        a.u.uprobe_multi.path = BL_PTR(o->um_path);
        a.u.uprobe_multi.offsets = BL_PTR(o->um_offsets);
        a.u.uprobe_multi.ref_ctr_offsets = BL_PTR(o->um_ref_ctr_offsets);
        a.u.uprobe_multi.cookies = BL_PTR(o->um_cookies);
        a.u.uprobe_multi.cnt = o->um_cnt;
        a.u.uprobe_multi.flags = o->um_flags;
        a.u.uprobe_multi.pid = o->um_pid;
        break;
    default:
        a.u.target_btf_id = o->target_btf_id;
    }
    return bl_sys_bpf_fd(BPF_LINK_CREATE, (union bpf_attr *)&a, sizeof(a));
}

static inline int bl_link_create(int prog_fd, int target_fd, __u32 attach_type, __u32 flags,
                                 __u32 target_btf_id)
{
    struct bl_link_create_opts o;
    memset(&o, 0, sizeof(o));
    o.prog_fd = prog_fd;
    o.target_fd = target_fd;
    o.attach_type = attach_type;
    o.flags = flags;
    o.target_btf_id = target_btf_id;
    return bl_link_create_ex(&o);
}

/* BPF_LINK_UPDATE: swap the program; with BPF_F_REPLACE only if old_prog_fd is attached. */
static inline int bl_link_update(int link_fd, int new_prog_fd, __u32 flags, int old_prog_fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.link_update.link_fd = link_fd;
    a.link_update.new_prog_fd = new_prog_fd;
    a.link_update.flags = flags;
    a.link_update.old_prog_fd = old_prog_fd;
    return bl_sys_bpf(BPF_LINK_UPDATE, &a, sizeof(a));
}

/* BPF_LINK_DETACH: the hook lets go of the program; the link fd stays valid. */
static inline int bl_link_detach(int link_fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.link_detach.link_fd = link_fd;
    return bl_sys_bpf(BPF_LINK_DETACH, &a, sizeof(a));
}

/* BPF_PROG_ATTACH / BPF_PROG_DETACH (cgroups, sockmaps, flow dissector ...). */
static inline int bl_prog_attach(int target_fd, int prog_fd, __u32 attach_type, __u32 attach_flags,
                                 int replace_prog_fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.target_fd = target_fd;
    a.attach_bpf_fd = prog_fd;
    a.attach_type = attach_type;
    a.attach_flags = attach_flags;
    a.replace_bpf_fd = replace_prog_fd;
    return bl_sys_bpf(BPF_PROG_ATTACH, &a, sizeof(a));
}

static inline int bl_prog_detach(int target_fd, int prog_fd, __u32 attach_type)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.target_fd = target_fd;
    a.attach_bpf_fd = prog_fd;
    a.attach_type = attach_type;
    return bl_sys_bpf(BPF_PROG_DETACH, &a, sizeof(a));
}

/* BPF_ITER_CREATE: a readable fd producing one pass of the iterator's output. */
static inline int bl_iter_create(int link_fd, __u32 flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.iter_create.link_fd = link_fd;
    a.iter_create.flags = flags;
    return bl_sys_bpf_fd(BPF_ITER_CREATE, &a, sizeof(a));
}

/* BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID: the next id after start_id in *next_id. */
static inline int bl_get_next_id(int cmd, __u32 start_id, __u32 *next_id)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.start_id = start_id;
    ret = bl_sys_bpf(cmd, &a, sizeof(a));
    if (ret == 0)
        *next_id = a.next_id;
    return ret;
}

/* BPF_PROG_QUERY: ids of the programs attached at (target_fd, attach_type). */
static inline int bl_prog_query(int target_fd, __u32 attach_type, __u32 query_flags,
                                __u32 *attach_flags, __u32 *prog_ids, __u32 *prog_cnt)
{
    union bpf_attr a;
    int ret;
    memset(&a, 0, sizeof(a));
    a.query.target_fd = target_fd;
    a.query.attach_type = attach_type;
    a.query.query_flags = query_flags;
    a.query.prog_ids = BL_PTR(prog_ids);
    a.query.prog_cnt = *prog_cnt;
    ret = bl_sys_bpf(BPF_PROG_QUERY, &a, sizeof(a));
    *prog_cnt = a.query.prog_cnt;
    if (attach_flags)
        *attach_flags = a.query.attach_flags;
    return ret;
}

static inline int bl_raw_tracepoint_open(const char *name, int prog_fd)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.raw_tracepoint.name = BL_PTR(name);
    a.raw_tracepoint.prog_fd = prog_fd;
    return bl_sys_bpf_fd(BPF_RAW_TRACEPOINT_OPEN, &a, sizeof(a));
}

#endif /* BPFLOAD_BPF_SYS_H */
