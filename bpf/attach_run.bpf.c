// SPDX-License-Identifier: GPL-2.0
/*
 * attach_run.bpf.c - feeds `bpfload run` and the system-introspection tests.
 *
 *   on_sys_enter (tracepoint/raw_syscalls/sys_enter): fires on every syscall entry.  When
 *       target_tgid is 0 every process counts; else only the process (thread
 *       group) whose tgid it is.  For each counted syscall it
 *         - adds 1 to syscalls[syscall_nr] (HASH __u32 -> __u64, for --poll),
 *         - writes a struct event {pid (the tgid), syscall_nr, comm} to the
 *           ring buffer `events`; when the ring is full the record is
 *           dropped and `dropped` (.bss) counts it.
 *
 *       When comm_filter is not empty, only tasks whose comm starts with it
 *       count (both filters apply when both are set).
 *
 *   target_tgid, comm_filter (.rodata): set before load
 *       (`bpfload run --set target_tgid=PID --set comm_filter=NAME`).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct event {
	__u32 pid;
	__u32 syscall_nr;
	char comm[16];
};

/* keep struct event in BTF even though only its size is used by the ring */
struct event *unused_event_type __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} syscalls SEC(".maps");

const volatile __u32 target_tgid = 0;
const volatile char comm_filter[16] = "";
__u64 dropped = 0;

SEC("tracepoint/raw_syscalls/sys_enter")
int on_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 nr = (__u32)ctx->id;
	__u64 one = 1, *cnt;
	struct event *e;
	char comm[16];

	if (target_tgid && tgid != target_tgid)
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < sizeof(comm); i++) {
		if (!comm_filter[i])
			break;
		if (comm_filter[i] != comm[i])
			return 0;
	}
	cnt = bpf_map_lookup_elem(&syscalls, &nr);
	if (!cnt && bpf_map_update_elem(&syscalls, &nr, &one, BPF_NOEXIST) != 0)
		cnt = bpf_map_lookup_elem(&syscalls, &nr);	/* another CPU created it */
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->pid = tgid;
	e->syscall_nr = nr;
	__builtin_memcpy(e->comm, comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
