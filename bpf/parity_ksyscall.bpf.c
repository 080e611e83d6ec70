// SPDX-License-Identifier: GPL-2.0
/*
 * parity_ksyscall.bpf.c - feeds tests/test_parity.py (syscall wrappers).
 *
 * BPF_KSYSCALL (bpf_tracing.h) reads the system call's arguments through
 * the extern LINUX_HAS_SYSCALL_WRAPPER (.kconfig): with the arch wrapper
 * (__x64_sys_NAME) they sit in the pt_regs the wrapper receives, without it
 * in the probe's own registers.  The loader must detect which.
 *
 *   ks_kill       ksyscall/kill      counts kill(2) calls with sig 0 in
 *                                    hits[0] (loads; this kernel has no kprobes,
 *                                    so it cannot attach)
 *   kret_kill     kretsyscall/kill   counts returns in hits[1] (likewise)
 *   wrapper_value syscall            returns LINUX_HAS_SYSCALL_WRAPPER (1 or 0):
 *                                    run it with test_run to see the value the
 *                                    loader gave the kconfig extern
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("ksyscall/kill")
int BPF_KSYSCALL(ks_kill, pid_t pid, int sig)
{
	if (sig == 0)
		bump(0);
	return 0;
}

SEC("kretsyscall/kill")
int BPF_KRETPROBE(kret_kill, int ret)
{
	bump(1);
	return 0;
}

SEC("syscall")
int wrapper_value(void *ctx)
{
	return LINUX_HAS_SYSCALL_WRAPPER ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
