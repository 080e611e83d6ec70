// SPDX-License-Identifier: GPL-2.0
/*
 * attach_execsnoop.bpf.c - feeds examples/execsnoop.py (an execsnoop in the
 * style of BCC's tool).
 *
 *   on_exec (tp_btf/sched_process_exec): fires when a task's execve()
 *       succeeded; writes a struct exec_event {pid (tgid), ppid (the
 *       parent's tgid), uid, comm (after exec), filename (as passed to
 *       execve, up to 127 bytes)} to the ring buffer `execs`.  Records that
 *       do not fit are dropped and counted in `dropped` (.bss).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct exec_event {
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	char comm[16];
	char filename[128];
};

struct exec_event *unused_exec_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} execs SEC(".maps");

__u64 dropped = 0;

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct exec_event *e = bpf_ringbuf_reserve(&execs, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->pid = p->tgid;
	e->ppid = p->real_parent->tgid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
