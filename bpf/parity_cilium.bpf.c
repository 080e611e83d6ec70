// SPDX-License-Identifier: GPL-2.0
/*
 * parity_cilium.bpf.c - cilium/ebpf's conventions that libbpf does not accept,
 * feeding tests/test_parity.py.  libbpf refuses this object (its section
 * names); bpfload accepts it the way cilium/ebpf does.
 *
 *   events     PERF_EVENT_ARRAY with no key_size/value_size/max_entries:
 *              cilium sets the sizes to 4 and max_entries to the CPU count
 *   seen       ARRAY[1] of u64: packets count_len saw
 *
 *   count_len  socket/count_len: a socket filter ("socket" + a name: cilium
 *              matches section prefixes); bumps seen[0], sends skb->len to
 *              events on the current CPU, returns 0 (drop)
 *   steer      sk_lookup/steer: an SK_LOOKUP program; returns SK_PASS (1)
 *   xdp_named  xdp/named: an XDP program; returns XDP_PASS (2)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("socket/count_len")
int count_len(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u32 len = skb->len;
	__u64 *v = bpf_map_lookup_elem(&seen, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
	bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU, &len, sizeof(len));
	return 0;
}

SEC("sk_lookup/steer")
int steer(struct bpf_sk_lookup *ctx)
{
	return SK_PASS;
}

SEC("xdp/named")
int xdp_named(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
