// SPDX-License-Identifier: GPL-2.0
/*
 * mim_btf.bpf.c - feeds the BTF map-in-map tests: ARRAY_OF_MAPS and
 * HASH_OF_MAPS declared with __array(values, struct inner_def), with
 * libbpf-style static initializers (.values = { [slot] = &map }), plus an
 * outer map without an initializer.
 *
 *   btf_aom[0] = inner_a, btf_aom[2] = inner_b      (slots 1, 3 empty)
 *   btf_hom[1] = inner_b, btf_hom[5] = inner_c      (other keys absent)
 *   btf_aom_empty: no slot filled
 *
 * All programs are SEC("syscall"): run them with BPF_PROG_TEST_RUN and a
 * 16-byte ctx, struct mim_args.  Each looks up outer[slot], then
 * inner[key], and copies the value to ctx->value (copied back to the
 * caller); returns 1 = found, 0 = outer slot empty, 2 = key not in inner
 * (cannot happen for the ARRAY inners with key < 4).
 *   aom_read -> btf_aom, hom_read -> btf_hom, empty_read -> btf_aom_empty.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct mim_args {
	__u32 slot;	/* key in the outer map */
	__u32 key;	/* key in the inner map */
	__u64 value;	/* out: value read */
};

struct inner_def {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_def inner_a SEC(".maps");
struct inner_def inner_b SEC(".maps");
struct inner_def inner_c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_def);
} btf_aom SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct inner_def);
} btf_hom SEC(".maps") = {
	.values = { [1] = &inner_b, [5] = &inner_c },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_def);
} btf_aom_empty SEC(".maps");

static __always_inline int read_through(void *outer, struct mim_args *a)
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
int aom_read(struct mim_args *a)
{
	return read_through(&btf_aom, a);
}

SEC("syscall")
int hom_read(struct mim_args *a)
{
	return read_through(&btf_hom, a);
}

SEC("syscall")
int empty_read(struct mim_args *a)
{
	return read_through(&btf_aom_empty, a);
}

char LICENSE[] SEC("license") = "GPL";
