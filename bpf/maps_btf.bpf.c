// SPDX-License-Identifier: GPL-2.0
/*
 * maps_btf.bpf.c - feeds the BTF-defined map tests (".maps" section).
 *
 * Covers both ways of giving key/value sizes (__type and __uint(key_size)),
 * max_entries, map_flags (BPF_F_NO_PREALLOC) and pinning (by name), on
 * HASH, ARRAY, PERCPU_ARRAY and LRU_HASH maps.
 *
 * count_pkts (xdp), for a packet whose first byte is b and length len:
 *   pkt_hash[b]      += 1   (created as 1 when absent)
 *   pkt_array[b]     += 1
 *   pcpu_stats[0]    += 1   (on the CPU that ran it)
 *   pcpu_stats[1]    += len
 *   lru_pinned[b]     = len
 *   returns XDP_PASS (2).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* __type form, with a flag */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pkt_hash SEC(".maps");

/* key_size/value_size form (no BTF key/value types) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
} pkt_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pcpu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lru_pinned SEC(".maps");

static __always_inline void add(void *map, __u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		__sync_fetch_and_add(v, n);
}

SEC("xdp")
int count_pkts(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	__u64 one = 1;
	__u32 b;

	if (data + 1 > data_end)
		return XDP_PASS;
	b = *(__u8 *)data;

	if (bpf_map_update_elem(&pkt_hash, &b, &one, BPF_NOEXIST))
		add(&pkt_hash, b, 1);
	add(&pkt_array, b, 1);
	add(&pcpu_stats, 0, 1);
	add(&pcpu_stats, 1, len);
	bpf_map_update_elem(&lru_pinned, &b, &len, BPF_ANY);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
