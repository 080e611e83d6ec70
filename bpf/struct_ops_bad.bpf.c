// SPDX-License-Identifier: GPL-2.0
/*
 * struct_ops_bad.bpf.c - feeds tests/test_struct_ops.py: a struct_ops
 * variable whose local type (a ___flavor of tcp_congestion_ops, as a program
 * built against another kernel's headers would have) sets a member this
 * kernel's struct does not have.  bpfload must refuse it at load, naming the
 * map and the member, before anything reaches the kernel's registration.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct tcp_congestion_ops___bad {
	__u32 (*ssthresh)(struct sock *sk);
	char name[16];
	__u32 bpfload_no_such_member;
};

SEC("struct_ops")
__u32 BPF_PROG(bad_ssthresh, struct sock *sk)
{
	return 2;
}

SEC(".struct_ops")
struct tcp_congestion_ops___bad bad_cc = {
	.ssthresh = (void *)bad_ssthresh,
	.name = "bpfload_bad",
	.bpfload_no_such_member = 1,
};
