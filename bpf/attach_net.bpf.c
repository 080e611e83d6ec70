// SPDX-License-Identifier: GPL-2.0
/*
 * attach_net.bpf.c - feeds the network attach tests (tests/test_attach_net.py)
 * and examples/xdp_count.py.
 *
 * Every program counts only the test's own traffic (IPv4 ICMP echo, or UDP
 * to a port the test chose), so ARP, IPv6 neighbour discovery and other
 * packets the kernel sends on its own never change a count.
 *
 *   counts  ARRAY u32 -> u64, one slot per program (the C_* indices below).
 *   cfg     ARRAY u32 -> u32: cfg[0] = UDP destination port (host order)
 *           that nf_local_out counts.
 *   xdp_pkts PERCPU_ARRAY u32 -> u64: xdp_count adds every packet it sees to
 *           slot 0 on the CPU that ran it (examples/xdp_count.py sums it).
 *   sock_map SOCKMAP of 2 sockets for sk_msg_count.
 *
 *   xdp_count   (xdp):         counts IPv4 ICMP echo requests in counts[0]
 *                              (and every packet in xdp_pkts[0]); XDP_PASS.
 *   xdp_count2  (xdp):         the same echo requests in counts[1]; XDP_PASS
 *                              (the program Link.update() swaps in).
 *   xdp_drop    (xdp):         counts echo requests in counts[2] and drops
 *                              them (XDP_DROP); passes everything else.
 *   tcx_in      (tcx/ingress): echo requests in counts[3]; TC_ACT_OK.
 *   tcx_out     (tcx/egress):  echo replies in counts[4]; TC_ACT_OK.
 *   tc_count    (tc):          echo requests in counts[5]; TC_ACT_UNSPEC, so
 *                              the next filter runs too (the program for the
 *                              clsact/cls_bpf netlink path: two filters of it
 *                              both count).
 *   nf_local_out (netfilter):  IPv4 UDP to port cfg[0] in counts[6];
 *                              NF_ACCEPT.
 *   sock_count  (socket):      every datagram the socket receives in
 *                              counts[7]; returns skb->len (pass it whole).
 *   sk_msg_count (sk_msg):     every message sent on a socket in sock_map
 *                              in counts[8]; SK_PASS.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define IPPROTO_ICMP_ 1
#define IPPROTO_UDP_ 17
#define ICMP_ECHOREPLY_ 0
#define ICMP_ECHO_ 8
#define TC_ACT_OK 0
#define TC_ACT_UNSPEC (-1)
#define NF_ACCEPT 1

enum { C_XDP, C_XDP2, C_XDP_DROP, C_TCX_IN, C_TCX_OUT, C_TC, C_NF, C_SOCK, C_SK_MSG, C_MAX = 16 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xdp_pkts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} sock_map SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* The ICMP type of an Ethernet/IPv4/ICMP frame in [data, end), or -1. */
static __always_inline int icmp_type(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct icmphdr *icmp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	if (ip->protocol != IPPROTO_ICMP_ || ip->ihl != 5)
		return -1;
	icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) > end)
		return -1;
	return icmp->type;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *all = bpf_map_lookup_elem(&xdp_pkts, &zero);

	if (all)
		*all += 1;	/* per-CPU slot: no atomic needed */
	if (icmp_type((void *)(long)ctx->data, (void *)(long)ctx->data_end) == ICMP_ECHO_)
		bump(C_XDP);
	return XDP_PASS;
}

SEC("xdp")
int xdp_count2(struct xdp_md *ctx)
{
	if (icmp_type((void *)(long)ctx->data, (void *)(long)ctx->data_end) == ICMP_ECHO_)
		bump(C_XDP2);
	return XDP_PASS;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	if (icmp_type((void *)(long)ctx->data, (void *)(long)ctx->data_end) == ICMP_ECHO_) {
		bump(C_XDP_DROP);
		return XDP_DROP;
	}
	return XDP_PASS;
}

SEC("tcx/ingress")
int tcx_in(struct __sk_buff *skb)
{
	if (icmp_type((void *)(long)skb->data, (void *)(long)skb->data_end) == ICMP_ECHO_)
		bump(C_TCX_IN);
	return TC_ACT_OK;
}

SEC("tcx/egress")
int tcx_out(struct __sk_buff *skb)
{
	if (icmp_type((void *)(long)skb->data, (void *)(long)skb->data_end) == ICMP_ECHOREPLY_)
		bump(C_TCX_OUT);
	return TC_ACT_OK;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	if (icmp_type((void *)(long)skb->data, (void *)(long)skb->data_end) == ICMP_ECHO_)
		bump(C_TC);
	return TC_ACT_UNSPEC;	/* next filter / tcx program, then the default */
}

SEC("netfilter")
int nf_local_out(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct iphdr ip;
	struct udphdr udp;
	unsigned char *head;
	__u32 zero = 0, *port;
	__u16 nh;

	port = bpf_map_lookup_elem(&cfg, &zero);
	if (!port || !*port)
		return NF_ACCEPT;
	head = skb->head;
	nh = skb->network_header;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
		return NF_ACCEPT;
	if (ip.version != 4 || ip.protocol != IPPROTO_UDP_)
		return NF_ACCEPT;
	if (bpf_probe_read_kernel(&udp, sizeof(udp), head + nh + ip.ihl * 4))
		return NF_ACCEPT;
	if (bpf_ntohs(udp.dest) == *port)
		bump(C_NF);
	return NF_ACCEPT;
}

SEC("socket")
int sock_count(struct __sk_buff *skb)
{
	bump(C_SOCK);
	return skb->len;
}

SEC("sk_msg")
int sk_msg_count(struct sk_msg_md *msg)
{
	bump(C_SK_MSG);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
