// SPDX-License-Identifier: GPL-2.0
/*
 * parity_weak.bpf.c - linker output with an overridden weak function, feeding
 * tests/test_parity.py.  The Makefile compiles this file twice and links the
 * two with `bpftool gen object`:
 *
 *   plain:           the weak pick() (counts in calls[0], returns x + 1) and
 *                    the program use_pick;
 *   -DPARITY_STRONG: the strong pick() (counts in calls[1], returns x * 10).
 *
 * The linker keeps the weak body's bytes in .text but drops its symbol; its
 * map relocation stays, pointing into code no symbol owns.  libbpf and
 * cilium/ebpf skip it; the program must run the strong pick().
 *
 *   use_pick  socket: returns pick(skb->len)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef PARITY_STRONG

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

__weak __noinline int pick(int x)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&calls, &k);

	if (v)
		*v += 1;
	return x + 1;
}

SEC("socket")
int use_pick(struct __sk_buff *skb)
{
	return pick(skb->len);
}

char LICENSE[] SEC("license") = "GPL";

#else /* PARITY_STRONG */

extern struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

__noinline int pick(int x)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&calls, &k);

	if (v)
		*v += 1;
	return x * 10;
}

#endif
