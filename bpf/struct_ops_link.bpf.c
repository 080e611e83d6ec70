// SPDX-License-Identifier: GPL-2.0
/*
 * struct_ops_link.bpf.c - feeds tests/test_struct_ops.py: a TCP congestion
 * control in a .struct_ops.link section (registered through a BPF link,
 * 6.4+; libbpf learned this section in 1.2, so the libbpf 1.1 comparison
 * skips this object).
 *
 *   bl_cc_link (struct tcp_congestion_ops, name "bpfload_ccl"): Reno through
 *   the tcp_reno_* kfuncs; bl_link_init counts sockets in init_calls.
 *   bl_unused (a struct_ops program no map refers to): not loaded (libbpf
 *   1.1 fails on such a program; newer libbpf skips it, as bpfload does).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

__u64 init_calls;

SEC("struct_ops")
void BPF_PROG(bl_link_init, struct sock *sk)
{
	__sync_fetch_and_add(&init_calls, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(bl_link_ssthresh, struct sock *sk)
{
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops")
void BPF_PROG(bl_link_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(bl_link_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC("struct_ops")
__u32 BPF_PROG(bl_unused, struct sock *sk)
{
	return 1;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops bl_cc_link = {
	.init = (void *)bl_link_init,
	.ssthresh = (void *)bl_link_ssthresh,
	.cong_avoid = (void *)bl_link_cong_avoid,
	.undo_cwnd = (void *)bl_link_undo_cwnd,
	.name = "bpfload_ccl",
};
