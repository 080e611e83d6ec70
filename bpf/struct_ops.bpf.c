// SPDX-License-Identifier: GPL-2.0
/*
 * struct_ops.bpf.c - feeds tests/test_struct_ops.py: a TCP congestion
 * control written in BPF, in a .struct_ops section (registered by a map
 * update, libbpf's original form; libbpf 1.1 loads it too).
 *
 *   bl_cc (struct tcp_congestion_ops, name "bpfload_cc"): Reno, through the
 *   kernel's tcp_reno_* kfuncs, counting its calls in .bss:
 *     bl_init        init_calls += 1   (a socket starts using it)
 *     bl_ssthresh    ssthresh_calls += 1, returns tcp_reno_ssthresh()
 *     bl_cong_avoid  cong_avoid_calls += 1, tcp_reno_cong_avoid()
 *     bl_undo_cwnd   returns tcp_reno_undo_cwnd()
 *     bl_release     release_calls += 1  (a socket stops using it)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

__u64 init_calls;
__u64 ssthresh_calls;
__u64 cong_avoid_calls;
__u64 release_calls;

SEC("struct_ops")
void BPF_PROG(bl_init, struct sock *sk)
{
	__sync_fetch_and_add(&init_calls, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(bl_ssthresh, struct sock *sk)
{
	__sync_fetch_and_add(&ssthresh_calls, 1);
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops")
void BPF_PROG(bl_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&cong_avoid_calls, 1);
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(bl_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC("struct_ops")
void BPF_PROG(bl_release, struct sock *sk)
{
	__sync_fetch_and_add(&release_calls, 1);
}

SEC(".struct_ops")
struct tcp_congestion_ops bl_cc = {
	.init = (void *)bl_init,
	.ssthresh = (void *)bl_ssthresh,
	.cong_avoid = (void *)bl_cong_avoid,
	.undo_cwnd = (void *)bl_undo_cwnd,
	.release = (void *)bl_release,
	.name = "bpfload_cc",
};
