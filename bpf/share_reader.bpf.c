// SPDX-License-Identifier: GPL-2.0
/*
 * share_reader.bpf.c - feeds the map-sharing / pinning tests, together
 * with share_writer.bpf.c: both declare the same map shared_counts
 * (HASH u32 -> u64, 64 entries, pinned by name), so loading both with the
 * same pin directory makes them use one map.
 *
 * share_read (syscall), ctx = struct share_args (16 bytes):
 *   ctx->value = shared_counts[key] (ctx is copied back to the caller);
 *   returns 1 = found, 0 = key absent (ctx->value untouched).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct share_args {
	__u32 key;
	__u32 pad;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared_counts SEC(".maps");

SEC("syscall")
int share_read(struct share_args *a)
{
	__u32 key = a->key;
	__u64 *v;

	v = bpf_map_lookup_elem(&shared_counts, &key);
	if (!v)
		return 0;
	a->value = *v;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
