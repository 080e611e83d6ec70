// SPDX-License-Identifier: GPL-2.0
/*
 * maps_legacy.bpf.c - feeds the legacy map-definition tests: two
 * struct bpf_map_def (20 bytes each, see legacy_maps.h) in the "maps"
 * section.  libbpf >= 1.0 refuses this form; bpfload accepts it.
 *
 * legacy_count (xdp), for a packet whose first byte is b and length len:
 *   legacy_hash[b]  += 1   (created as 1 when absent)
 *   legacy_array[0] += len
 *   returns XDP_PASS (2).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "legacy_maps.h"

struct bpf_map_def_legacy legacy_hash SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
	.map_flags = 0,
};

struct bpf_map_def_legacy legacy_array SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 4,
	.map_flags = 0,
};

SEC("xdp")
int legacy_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	__u64 one = 1, *v;
	__u32 b, zero = 0;

	if (data + 1 > data_end)
		return XDP_PASS;
	b = *(__u8 *)data;

	v = bpf_map_lookup_elem(&legacy_hash, &b);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&legacy_hash, &b, &one, BPF_ANY);

	v = bpf_map_lookup_elem(&legacy_array, &zero);
	if (v)
		__sync_fetch_and_add(v, len);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
