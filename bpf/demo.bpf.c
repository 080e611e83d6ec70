// SPDX-License-Identifier: GPL-2.0
/*
 * demo.bpf.c - the object behind `bpfload demo` (shipped as package data in
 * bpfload/data/demo.bpf.o) and tests/test_demo.py.
 *
 * count_proto (xdp) parses Ethernet + IPv4/IPv6 and, per packet:
 *   proto_stats[proto]   += {1 packet, len bytes}      PERCPU_ARRAY
 *   ports[proto][dport]  += 1   for TCP and UDP        ARRAY_OF_MAPS of HASH
 *   events <- {ts, proto, len, sport, dport, tcp flags} RINGBUF, for every
 *             TCP SYN and every packet of at least big_packet bytes
 * and returns XDP_PASS.  proto: 0 TCP, 1 UDP, 2 ICMP/ICMPv6, 3 other
 * (non-IP, or another IP protocol).  big_packet is a .rodata setting.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

enum { PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_OTHER, NPROTO };

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NPROTO);
	__type(key, __u32);
	__type(value, struct counters);
} proto_stats SEC(".maps");

struct port_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
};

struct port_map tcp_ports SEC(".maps");
struct port_map udp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct port_map);
} ports SEC(".maps") = {
	.values = { [PROTO_TCP] = &tcp_ports, [PROTO_UDP] = &udp_ports },
};

struct event {
	__u64 ts;
	__u32 proto;
	__u32 len;
	__u16 sport;
	__u16 dport;
	__u8 tcp_flags;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

const volatile __u32 big_packet = 1000;

static __always_inline int l4(void *p, void *end, __u8 ipproto, __u32 *proto,
			      __u16 *sport, __u16 *dport, __u8 *flags)
{
	if (ipproto == IPPROTO_TCP) {
		struct tcphdr *t = p;

		if ((void *)(t + 1) > end)
			return -1;
		*proto = PROTO_TCP;
		*sport = bpf_ntohs(t->source);
		*dport = bpf_ntohs(t->dest);
		*flags = ((__u8 *)t)[13];
	} else if (ipproto == IPPROTO_UDP) {
		struct udphdr *u = p;

		if ((void *)(u + 1) > end)
			return -1;
		*proto = PROTO_UDP;
		*sport = bpf_ntohs(u->source);
		*dport = bpf_ntohs(u->dest);
	} else if (ipproto == IPPROTO_ICMP || ipproto == IPPROTO_ICMPV6) {
		*proto = PROTO_ICMP;
	}
	return 0;
}

SEC("xdp")
int count_proto(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 len = end - data, proto = PROTO_OTHER, key;
	__u16 sport = 0, dport = 0;
	__u8 flags = 0;
	struct counters *c;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return XDP_PASS;
		if (l4((void *)ip + ip->ihl * 4, end, ip->protocol, &proto, &sport, &dport, &flags))
			return XDP_PASS;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		if (l4(ip6 + 1, end, ip6->nexthdr, &proto, &sport, &dport, &flags))
			return XDP_PASS;
	}

	key = proto;
	c = bpf_map_lookup_elem(&proto_stats, &key);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
	if (proto == PROTO_TCP || proto == PROTO_UDP) {
		void *inner = bpf_map_lookup_elem(&ports, &key);
		__u32 port = dport;

		if (inner) {
			__u64 *n = bpf_map_lookup_elem(inner, &port);

			if (n) {
				__sync_fetch_and_add(n, 1);
			} else {
				__u64 one = 1;

				bpf_map_update_elem(inner, &port, &one, BPF_NOEXIST);
			}
		}
	}
	if ((proto == PROTO_TCP && (flags & 0x02)) || len >= big_packet) {
		struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (e) {
			e->ts = bpf_ktime_get_ns();
			e->proto = proto;
			e->len = len;
			e->sport = sport;
			e->dport = dport;
			e->tcp_flags = flags;
			e->pad[0] = e->pad[1] = e->pad[2] = 0;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
