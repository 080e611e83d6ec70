// SPDX-License-Identifier: GPL-2.0
/*
 * parity_struct_ops.bpf.c - struct_ops variables, feeding tests/test_parity.py.
 *
 *   dummy      struct bpf_dummy_ops (the kernel's struct_ops for tests: its
 *              programs run with BPF_PROG_TEST_RUN; it cannot be registered)
 *     dummy_1  test_1: returns 7 (bpf_dummy_ops programs may call no map helper)
 *     dummy_2  test_2: returns a1 + a2 + a3 + a4
 *   parity_cc  struct tcp_congestion_ops "parity_cc" (a congestion control
 *              that copies Reno): data members name and flags, three programs
 *     cc_ssthresh, cc_cong_avoid, cc_undo_cwnd
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("struct_ops/test_1")
int BPF_PROG(dummy_1, struct bpf_dummy_ops_state *state)
{
	return 7;
}

SEC("struct_ops/test_2")
int BPF_PROG(dummy_2, struct bpf_dummy_ops_state *state, int a1, unsigned short a2,
	     char a3, unsigned long a4)
{
	return a1 + a2 + a3 + (int)a4;
}

SEC(".struct_ops")
struct bpf_dummy_ops dummy = {
	.test_1 = (void *)dummy_1,
	.test_2 = (void *)dummy_2,
};

SEC("struct_ops/cc_ssthresh")
__u32 BPF_PROG(cc_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (void *)sk;

	return tp->snd_cwnd > 4 ? tp->snd_cwnd / 2 : 2;
}

SEC("struct_ops/cc_cong_avoid")
void BPF_PROG(cc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops/cc_undo_cwnd")
__u32 BPF_PROG(cc_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (void *)sk;

	return tp->snd_cwnd;
}

SEC(".struct_ops")
struct tcp_congestion_ops parity_cc = {
	.ssthresh = (void *)cc_ssthresh,
	.cong_avoid = (void *)cc_cong_avoid,
	.undo_cwnd = (void *)cc_undo_cwnd,
	.flags = 0,
	.name = "parity_cc",
};

char LICENSE[] SEC("license") = "GPL";
