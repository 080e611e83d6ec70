// SPDX-License-Identifier: GPL-2.0
/*
 * core_task.bpf.c - feeds the CO-RE tests: task_struct read the way libbpf
 * users read it, every relocation kind clang emits, relocated by bpfload
 * against the running kernel's BTF.
 *
 *   core_raw_tp (raw_tp/sys_enter): BPF_PROG_TEST_RUN-able (it runs in the
 *       calling task); reads the current task through bpf_get_current_task()
 *       and BPF_CORE_READ (probe reads: ALU "rX = off" relocations) into
 *       core_out[0].
 *   core_tp_btf (tp_btf/sys_enter): the same task read through
 *       bpf_get_current_task_btf() with direct loads (LDX offset
 *       relocations, one of them with a load-size change) into core_out[1].
 *       The kernel cannot test-run tp_btf programs (BPF_PROG_TEST_RUN is
 *       EFAULT for them on 6.18): the test attaches it and makes a syscall
 *       from the thread whose id it put in want_tid (other tasks are ignored).
 *   fill_common (static subprogram, .text): called by both programs, so its
 *       relocations are rebased into two linked programs.
 *
 * Local "flavors" (type___suffix) prove the values really are relocated:
 *   task_struct___old  declares pid at offset 4 and flags as a u64; the
 *                      kernel's offsets and 4-byte flags must win;
 *   task_struct___mine has a field the kernel lacks: existence checks give
 *                      0 and the guarded read is poisoned but dead code;
 *   bpf_func_id___mine BPF_FUNC_trace_printk with a wrong local value (1234)
 *                      and an enumerator the kernel lacks;
 *   list_head___mine   matches the kernel's list_head (type_matches = 1).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define GUARD_UNTOUCHED 0x5a5a5a5aULL

struct task_struct___old {
	int pad;
	pid_t pid;
	unsigned long long flags;
} __attribute__((preserve_access_index));

struct task_struct___mine {
	int nonexistent_field;
} __attribute__((preserve_access_index));

struct list_head___mine {
	struct list_head *next;
	struct list_head *prev;
} __attribute__((preserve_access_index));

enum bpf_func_id___mine {
	BPF_FUNC_trace_printk___mine = 1234,
	BPF_FUNC_bpfload_no_such_helper = 4321,
};

struct bpfload_no_such_type {
	int x;
};

struct core_out {
	__u32 pid;		/* task->pid: the thread id */
	__u32 tgid;		/* task->tgid: the process id */
	__u32 ppid;		/* task->real_parent->tgid */
	__s32 comm_len;		/* bpf_core_read_str() result */
	char comm[16];		/* task->comm */
	__u64 comm0;		/* task->comm[0] (array index accessor) */
	__u64 pid_old;		/* pid through task_struct___old */
	__u64 flags;		/* task->flags */
	__u64 flags_old;	/* flags through the u64 of task_struct___old */
	__u64 pid_exists;	/* bpf_core_field_exists(task->pid) */
	__u64 missing_exists;	/* bpf_core_field_exists(mine->nonexistent_field) */
	__u64 guarded;		/* GUARD_UNTOUCHED unless the missing field "exists" */
	__u64 type_exists;	/* struct task_struct */
	__u64 type_missing;	/* struct bpfload_no_such_type */
	__u64 type_size;	/* sizeof(struct task_struct) in the kernel */
	__u64 type_matches;	/* list_head___mine matches list_head */
	__u64 type_mismatch;	/* task_struct___mine does not match task_struct */
	__u64 enum_exists;	/* BPF_FUNC_trace_printk___mine */
	__u64 enum_missing;	/* BPF_FUNC_bpfload_no_such_helper */
	__u64 enum_value;	/* BPF_FUNC_trace_printk___mine: 6, not 1234 */
	__u64 pid_offset;	/* offsetof(task_struct___old, pid) in the kernel */
	__u64 comm_size;	/* sizeof(task->comm) */
	__u64 pid_signed;	/* pid_t is signed */
	__u64 reset_on_fork;	/* bitfield task->sched_reset_on_fork */
	__u64 in_execve;	/* bitfield task->in_execve */
	__u64 kernel_type_id;	/* bpf_core_type_id_kernel(struct task_struct) */
	__u64 seen;		/* 1 once the program ran */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct core_out);
} core_out SEC(".maps");

/* core_tp_btf records only this thread (set by the test after load). */
__u32 want_tid;

/* Relocation kinds that do not depend on how the task is reached. */
static __noinline int fill_common(struct task_struct *t, struct core_out *o)
{
	o->comm_len = bpf_core_read_str(o->comm, sizeof(o->comm), &t->comm);
	o->comm0 = BPF_CORE_READ(t, comm[0]);
	o->pid_exists = bpf_core_field_exists(t->pid);
	o->missing_exists = bpf_core_field_exists(((struct task_struct___mine *)t)->nonexistent_field);
	o->guarded = GUARD_UNTOUCHED;
	if (bpf_core_field_exists(((struct task_struct___mine *)t)->nonexistent_field))
		o->guarded = BPF_CORE_READ((struct task_struct___mine *)t, nonexistent_field);
	o->type_exists = bpf_core_type_exists(struct task_struct);
	o->type_missing = bpf_core_type_exists(struct bpfload_no_such_type);
	o->type_size = bpf_core_type_size(struct task_struct);
	o->type_matches = bpf_core_type_matches(struct list_head___mine);
	o->type_mismatch = bpf_core_type_matches(struct task_struct___mine);
	o->enum_exists = bpf_core_enum_value_exists(enum bpf_func_id___mine,
						    BPF_FUNC_trace_printk___mine);
	o->enum_missing = bpf_core_enum_value_exists(enum bpf_func_id___mine,
						     BPF_FUNC_bpfload_no_such_helper);
	o->enum_value = bpf_core_enum_value(enum bpf_func_id___mine, BPF_FUNC_trace_printk___mine);
	o->pid_offset = bpf_core_field_offset(struct task_struct___old, pid);
	o->comm_size = bpf_core_field_size(t->comm);
	o->pid_signed = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);
	o->kernel_type_id = bpf_core_type_id_kernel(struct task_struct);
	o->seen = 1;
	return 0;
}

SEC("raw_tp/sys_enter")
int core_raw_tp(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct task_struct___old *old = (void *)t;
	__u32 key = 0;
	struct core_out *o = bpf_map_lookup_elem(&core_out, &key);

	if (!o)
		return 0;
	o->pid = BPF_CORE_READ(t, pid);
	o->tgid = BPF_CORE_READ(t, tgid);
	o->ppid = BPF_CORE_READ(t, real_parent, tgid);
	o->pid_old = BPF_CORE_READ(old, pid);
	o->flags = BPF_CORE_READ(t, flags);
	o->reset_on_fork = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);
	o->in_execve = BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
	return fill_common(t, o);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(core_tp_btf, struct pt_regs *regs, long id)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct___old *old = (void *)t;
	__u32 key = 1;
	struct core_out *o;

	if (t->pid != want_tid)
		return 0;
	o = bpf_map_lookup_elem(&core_out, &key);
	if (!o)
		return 0;
	o->pid = t->pid;
	o->tgid = t->tgid;
	o->ppid = t->real_parent->tgid;
	o->pid_old = old->pid;
	o->flags = t->flags;
	o->flags_old = old->flags;	/* u64 locally, u32 in the kernel: 8-byte load -> 4 */
	o->reset_on_fork = BPF_CORE_READ_BITFIELD(t, sched_reset_on_fork);
	o->in_execve = BPF_CORE_READ_BITFIELD(t, in_execve);
	return fill_common(t, o);
}

char LICENSE[] SEC("license") = "GPL";
