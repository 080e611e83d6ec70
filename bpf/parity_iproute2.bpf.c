// SPDX-License-Identifier: GPL-2.0
/*
 * parity_iproute2.bpf.c - a tc object written the iproute2 way, feeding
 * tests/test_parity.py: maps are iproute2's struct bpf_elf_map (defined
 * here as iproute2's include/bpf_elf.h defines it) in the "maps" section.
 * Open it with BpfObject.open(path, map_format="iproute2"); without that,
 * bpfload reads 36-byte definitions as its own struct bpfm_map_custom and
 * says that these look like iproute2's.
 *
 *   tc_counts  ARRAY[2] of u64, PIN_GLOBAL_NS: <pin_root>/tc/globals/tc_counts
 *              [0] packets seen, [1] bytes seen
 *   tc_objmap  ARRAY[1] of u64, PIN_OBJECT_NS: <pin_root>/tc/<sha1 of the file>/tc_objmap
 *              [0] packets seen
 *   tc_inner   ARRAY[1] of u64, id 42, inner_idx 1: the template of tc_outer
 *              and its slot 1
 *   tc_outer   ARRAY_OF_MAPS[4], inner_id 42
 *
 *   tc_count   classifier: bumps tc_counts, tc_objmap and tc_outer[1][0] per
 *              packet; returns TC_ACT_OK (0), or 2 (TC_ACT_SHOT) when slot 1
 *              of tc_outer is empty
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* iproute2: include/bpf_elf.h */
#define PIN_NONE	0
#define PIN_OBJECT_NS	1
#define PIN_GLOBAL_NS	2

struct bpf_elf_map {
	__u32 type;
	__u32 size_key;
	__u32 size_value;
	__u32 max_elem;
	__u32 flags;
	__u32 id;
	__u32 pinning;
	__u32 inner_id;
	__u32 inner_idx;
};

struct bpf_elf_map SEC("maps") tc_counts = {
	.type = BPF_MAP_TYPE_ARRAY, .size_key = 4, .size_value = 8, .max_elem = 2,
	.pinning = PIN_GLOBAL_NS,
};

struct bpf_elf_map SEC("maps") tc_objmap = {
	.type = BPF_MAP_TYPE_ARRAY, .size_key = 4, .size_value = 8, .max_elem = 1,
	.pinning = PIN_OBJECT_NS,
};

struct bpf_elf_map SEC("maps") tc_inner = {
	.type = BPF_MAP_TYPE_ARRAY, .size_key = 4, .size_value = 8, .max_elem = 1,
	.id = 42, .inner_idx = 1,
};

struct bpf_elf_map SEC("maps") tc_outer = {
	.type = BPF_MAP_TYPE_ARRAY_OF_MAPS, .size_key = 4, .size_value = 4, .max_elem = 4,
	.inner_id = 42,
};

static void add(void *map, __u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		__sync_fetch_and_add(v, n);
}

SEC("classifier")
int tc_count(struct __sk_buff *skb)
{
	__u32 slot = 1;
	void *inner;

	add(&tc_counts, 0, 1);
	add(&tc_counts, 1, skb->len);
	add(&tc_objmap, 0, 1);
	inner = bpf_map_lookup_elem(&tc_outer, &slot);
	if (!inner)
		return TC_ACT_SHOT;
	add(inner, 0, 1);
	return TC_ACT_OK;
}

char __license[] SEC("license") = "GPL";
