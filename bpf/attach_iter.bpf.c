// SPDX-License-Identifier: GPL-2.0
/*
 * attach_iter.bpf.c - BPF iterators for tests/test_attach_iter.py and
 * examples/tasks.py.  Each program writes text into the iterator's
 * seq_file; user space reads it from the fd BPF_ITER_CREATE gives.
 *
 *   dump_task (iter/task): one "PID COMM" line per process (thread-group
 *       leaders only: other threads are skipped).
 *   dump_thread (iter/task): one "T TGID TID COMM" line per thread: the
 *       program Link.update() swaps in (same target, other output).
 *   ps_task (iter/task): one "PID PPID COMM" line per process, for
 *       examples/tasks.py.
 *   dump_map (iter/bpf_map): one "ID NAME" line per BPF map in the system.
 *   dump_elem (?iter/bpf_map_elem, not loaded unless asked): over a map
 *       with __u32 keys and __u64 values (elems below, or any such map given
 *       at attach): one "KEY VALUE" line per element, then "total SUM" at
 *       the end.  Some kernels refuse map-element iterators at load (EPERM
 *       before verification, libbpf too), hence the "?": the other programs
 *       load without it.
 *   dump_cgroup (iter/cgroup): one "ID" line per cgroup visited (the
 *       cgroup id is its kernfs inode number).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} elems SEC(".maps");

/* running sum of one dump_elem pass (one reader at a time) */
__u64 elem_total;

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task || task->pid != task->tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %s\n", task->tgid, task->comm);
	return 0;
}

SEC("iter/task")
int dump_thread(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	BPF_SEQ_PRINTF(seq, "T %d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

SEC("iter/task")
int ps_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task || task->pid != task->tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->real_parent->tgid, task->comm);
	return 0;
}

SEC("iter/bpf_map")
int dump_map(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	BPF_SEQ_PRINTF(seq, "%u %s\n", map->id, map->name);
	return 0;
}

SEC("?iter/bpf_map_elem")
int dump_elem(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u64 *val = ctx->value;

	if (!key || !val) {	/* the last call of a pass: no element */
		BPF_SEQ_PRINTF(seq, "total %llu\n", elem_total);
		elem_total = 0;
		return 0;
	}
	elem_total += *val;
	BPF_SEQ_PRINTF(seq, "%u %llu\n", *key, *val);
	return 0;
}

SEC("iter/cgroup")
int dump_cgroup(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp)
		return 0;
	BPF_SEQ_PRINTF(seq, "%llu\n", cgrp->kn->id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
