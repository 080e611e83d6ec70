// SPDX-License-Identifier: GPL-2.0
/*
 * uprobe_latency.bpf.c - the BPF side of examples/uprobe_latency.py: a
 * log2 histogram of how long calls of one user-space function take.
 *
 *   lat_entry  (SEC "uprobe"): starts[pid_tgid] = bpf_ktime_get_ns().
 *   lat_return (SEC "uretprobe"): if starts has this thread, d = now -
 *              start; hist[log2(d)] += 1 (bucket b counts calls that took
 *              [2^b, 2^(b+1)) ns; bucket 0 also counts 0 ns); the start is
 *              deleted.  A return without a start (probe attached mid-call)
 *              counts in misses.
 *
 *   starts: HASH u64 pid_tgid -> u64 ns (10240 threads in flight)
 *   hist:   ARRAY of 64 u64 counters
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 misses;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

SEC("uprobe")
int lat_entry(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();

	bpf_map_update_elem(&starts, &id, &now, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int lat_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), *start, *slot;
	__u32 bucket;

	start = bpf_map_lookup_elem(&starts, &id);
	if (!start) {
		__sync_fetch_and_add(&misses, 1);
		return 0;
	}
	bucket = log2_u64(bpf_ktime_get_ns() - *start) & 63;
	bpf_map_delete_elem(&starts, &id);
	slot = bpf_map_lookup_elem(&hist, &bucket);
	if (slot)
		__sync_fetch_and_add(slot, 1);
	return 0;
}
