// SPDX-License-Identifier: GPL-2.0
/*
 * maps_custom.bpf.c - feeds the custom map-definition tests: bpfload's own
 * struct bpfm_map_custom (36 bytes, see bpfm.h) in the "maps" section,
 * plain maps and two map-in-map sets tied together by map_id/relation_id/
 * inner_index.  libbpf refuses this form; bpfload accepts it.
 *
 * All programs are SEC("syscall") (BPF_PROG_TYPE_SYSCALL, sleepable): run
 * them with BPF_PROG_TEST_RUN and a 16-byte ctx, struct mim_args below.
 * Results come back in the return value and in ctx->value (the kernel
 * copies the ctx back to the caller).
 *
 *   plain_write: plain_hash[key] = value, then plain_array[key] = value;
 *                returns 0, or the failing update's -errno (key >= 1024
 *                fails on the array with -E2BIG after the hash was written).
 *   aom_write / hom_write: inner = aom_outer[slot] / hom_outer[slot];
 *                inner[key] = value; returns 1 = written, 0 = slot empty,
 *                negative = -errno of the inner update.
 *   aom_read / hom_read: inner = outer[slot]; ctx->value = inner[key];
 *                returns 1 = found, 0 = slot empty, 2 = key not in inner.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "bpfm.h"

struct mim_args {
	__u32 slot;	/* key in the outer map */
	__u32 key;	/* key in the inner map */
	__u64 value;	/* in: value to write; out: value read */
};

/* plain maps: 1024 entries, no flags, not pinned, map_id -1 */
BMAP_COM_EXT0(plain_hash, BPF_MAP_TYPE_HASH, __u32, __u64);
BMAP_COM_EXT0(plain_array, BPF_MAP_TYPE_ARRAY, __u32, __u64);

/*
 * ARRAY_OF_MAPS set: outer id 10, template = id 11.
 *   aom_outer[0] = aom_inner0, aom_outer[1] = aom_inner1, slots 2, 3 empty.
 */
BMAP_BASE(aom_outer, BPF_MAP_TYPE_ARRAY_OF_MAPS, __u32, __u32, 4, 0, 0, 10, 11, NO_PREPOPULATE);
BMAP_BASE(aom_inner0, BPF_MAP_TYPE_ARRAY, __u32, __u64, 4, 0, 0, 11, 10, 0);
BMAP_BASE(aom_inner1, BPF_MAP_TYPE_ARRAY, __u32, __u64, 4, 0, 0, 12, 10, 1);

/*
 * HASH_OF_MAPS set: outer id 20, template = id 21.
 *   hom_outer[3] = hom_inner3, hom_outer[7] = hom_inner7;
 *   hom_spare (id 23) is created but put in no slot.
 */
BMAP_BASE(hom_outer, BPF_MAP_TYPE_HASH_OF_MAPS, __u32, __u32, 16, 0, 0, 20, 21, NO_PREPOPULATE);
BMAP_BASE(hom_inner3, BPF_MAP_TYPE_HASH, __u32, __u64, 16, 0, 0, 21, 20, 3);
BMAP_BASE(hom_inner7, BPF_MAP_TYPE_HASH, __u32, __u64, 16, 0, 0, 22, 20, 7);
BMAP_BASE(hom_spare, BPF_MAP_TYPE_HASH, __u32, __u64, 16, 0, 0, 23, 20, NO_PREPOPULATE);

static __always_inline int inner_write(void *outer, struct mim_args *a)
{
	__u32 slot = a->slot, key = a->key;
	__u64 value = a->value;
	void *inner;
	int err;

	inner = bpf_map_lookup_elem(outer, &slot);
	if (!inner)
		return 0;
	err = bpf_map_update_elem(inner, &key, &value, BPF_ANY);
	return err ? err : 1;
}

static __always_inline int inner_read(void *outer, struct mim_args *a)
{
	__u32 slot = a->slot, key = a->key;
	void *inner;
	__u64 *v;

	inner = bpf_map_lookup_elem(outer, &slot);
	if (!inner)
		return 0;
	v = bpf_map_lookup_elem(inner, &key);
	if (!v)
		return 2;
	a->value = *v;
	return 1;
}

SEC("syscall")
int plain_write(struct mim_args *a)
{
	__u32 key = a->key;
	__u64 value = a->value;
	int err;

	err = bpf_map_update_elem(&plain_hash, &key, &value, BPF_ANY);
	if (err)
		return err;
	return bpf_map_update_elem(&plain_array, &key, &value, BPF_ANY);
}

SEC("syscall")
int aom_write(struct mim_args *a)
{
	return inner_write(&aom_outer, a);
}

SEC("syscall")
int aom_read(struct mim_args *a)
{
	return inner_read(&aom_outer, a);
}

SEC("syscall")
int hom_write(struct mim_args *a)
{
	return inner_write(&hom_outer, a);
}

SEC("syscall")
int hom_read(struct mim_args *a)
{
	return inner_read(&hom_outer, a);
}

char LICENSE[] SEC("license") = "GPL";
