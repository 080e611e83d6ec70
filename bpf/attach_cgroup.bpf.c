// SPDX-License-Identifier: GPL-2.0
/*
 * attach_cgroup.bpf.c - cgroup hooks for tests/test_attach_cgroup.py.
 *
 * The test sets want_port (in .bss, after load) to the UDP port it listens
 * on, and want_tcp_port to its TCP listener; the programs look only at
 * IPv4 traffic to those ports, so other traffic of the cgroup never
 * disturbs the counts.
 *
 *   count_egress (cgroup_skb/egress): counts those datagrams leaving
 *       sockets of the cgroup in egress_pkts (and their IP bytes in
 *       egress_bytes); lets every packet pass (returns 1).
 *   count_egress2 (cgroup_skb/egress): the same into egress2_pkts: the
 *       program Link.update() swaps in.
 *   drop_egress (cgroup_skb/egress): drops those datagrams (returns 0) and
 *       counts them in dropped_pkts; the sender's sendto() fails with EPERM.
 *   count_sock_create (cgroup/sock_create): counts AF_INET SOCK_DGRAM
 *       sockets created in the cgroup in sock_creates; allows all (returns 1).
 *   count_connect4 (cgroup/connect4): counts connect() calls to
 *       127.0.0.1:want_tcp_port in connects; allows them (returns 1).
 *   count_sockops (sockops): counts active TCP opens to want_tcp_port
 *       (BPF_SOCK_OPS_TCP_CONNECT_CB) in tcp_connects.
 *   any_skb (cgroup/skb): counts those datagrams in any_skb_pkts; its
 *       section names no direction, so attaching needs attach_type=.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define AF_INET 2
#define SOCK_DGRAM 2

__u16 want_port;
__u16 want_tcp_port;
__u64 connects;
__u64 tcp_connects;
__u64 egress_pkts;
__u64 egress_bytes;
__u64 egress2_pkts;
__u64 dropped_pkts;
__u64 sock_creates;
__u64 any_skb_pkts;

/* 1 when skb is an IPv4 UDP datagram to want_port; *len gets its IP length */
static __always_inline int to_want_port(struct __sk_buff *skb, __u32 *len)
{
	struct iphdr ip;
	struct udphdr udp;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	/* cgroup_skb programs see the packet from its network header */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
		return 0;
	if (ip.protocol != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &udp, sizeof(udp)))
		return 0;
	if (!want_port || udp.dest != bpf_htons(want_port))
		return 0;
	*len = bpf_ntohs(ip.tot_len);
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	__u32 len;

	if (to_want_port(skb, &len)) {
		__sync_fetch_and_add(&egress_pkts, 1);
		__sync_fetch_and_add(&egress_bytes, len);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress2(struct __sk_buff *skb)
{
	__u32 len;

	if (to_want_port(skb, &len))
		__sync_fetch_and_add(&egress2_pkts, 1);
	return 1;
}

SEC("cgroup_skb/egress")
int drop_egress(struct __sk_buff *skb)
{
	__u32 len;

	if (to_want_port(skb, &len)) {
		__sync_fetch_and_add(&dropped_pkts, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/sock_create")
int count_sock_create(struct bpf_sock *sk)
{
	if (sk->family == AF_INET && sk->type == SOCK_DGRAM)
		__sync_fetch_and_add(&sock_creates, 1);
	return 1;
}

SEC("cgroup/connect4")
int count_connect4(struct bpf_sock_addr *ctx)
{
	/* user_ip4 and user_port are in network byte order */
	if (want_tcp_port && ctx->user_port == bpf_htons(want_tcp_port) &&
	    ctx->user_ip4 == bpf_htonl(0x7f000001))
		__sync_fetch_and_add(&connects, 1);
	return 1;
}

SEC("sockops")
int count_sockops(struct bpf_sock_ops *skops)
{
	/* remote_port: network byte order in the upper half on little endian */
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB && want_tcp_port &&
	    bpf_ntohl(skops->remote_port) == want_tcp_port)
		__sync_fetch_and_add(&tcp_connects, 1);
	return 1;
}

SEC("cgroup/skb")
int any_skb(struct __sk_buff *skb)
{
	__u32 len;

	if (to_want_port(skb, &len))
		__sync_fetch_and_add(&any_skb_pkts, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
