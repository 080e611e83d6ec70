// SPDX-License-Identifier: GPL-2.0
/*
 * attach_run_perf.bpf.c - feeds the perf-buffer path of `bpfload run`.
 *
 *   on_sys_enter_perf (tp_btf/sys_enter): for every syscall of the process
 *       whose tgid is target_tgid (.rodata; 0 = every process), sends a
 *       struct event {pid (the tgid), syscall_nr, comm} with
 *       bpf_perf_event_output to the PERF_EVENT_ARRAY `pevents` (on the
 *       current CPU's slot).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct event {
	__u32 pid;
	__u32 syscall_nr;
	char comm[16];
};

struct event *unused_event_type __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} pevents SEC(".maps");

const volatile __u32 target_tgid = 0;

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter_perf, struct pt_regs *regs, long id)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct event e = {};

	if (target_tgid && tgid != target_tgid)
		return 0;
	e.pid = tgid;
	e.syscall_nr = (__u32)id;
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	bpf_perf_event_output(ctx, &pevents, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
