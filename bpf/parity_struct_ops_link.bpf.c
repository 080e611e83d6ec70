// SPDX-License-Identifier: GPL-2.0
/*
 * parity_struct_ops_link.bpf.c - a struct_ops variable in .struct_ops.link,
 * feeding tests/test_parity.py: registered through a BPF link (Linux 6.4).
 *
 *   parity_ccl  struct tcp_congestion_ops "parity_ccl" (Reno-like):
 *     ccl_ssthresh, ccl_cong_avoid, ccl_undo_cwnd
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("struct_ops/ccl_ssthresh")
__u32 BPF_PROG(ccl_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (void *)sk;

	return tp->snd_cwnd > 4 ? tp->snd_cwnd / 2 : 2;
}

SEC("struct_ops/ccl_cong_avoid")
void BPF_PROG(ccl_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops/ccl_undo_cwnd")
__u32 BPF_PROG(ccl_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (void *)sk;

	return tp->snd_cwnd;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops parity_ccl = {
	.ssthresh = (void *)ccl_ssthresh,
	.cong_avoid = (void *)ccl_cong_avoid,
	.undo_cwnd = (void *)ccl_undo_cwnd,
	.name = "parity_ccl",
};

char LICENSE[] SEC("license") = "GPL";
