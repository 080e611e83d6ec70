// SPDX-License-Identifier: GPL-2.0
/*
 * ringbuf_bench.bpf.c - one ring buffer record per run, for the event
 * benchmarks (benchmarks/bench_events.py) and the bulk tests: run it with
 * BPF_PROG_TEST_RUN repeat=N to put N records in the ring in one call.
 *
 *   rb:    RINGBUF, max_entries 64 MiB (the benchmark may resize it before
 *          load).
 *   state: ARRAY of 2 u32: [0] the next seq, [1] how many records did not
 *          fit (ring full).  Set [0] to choose the first seq.
 *
 * Records are the struct event of ringbuf.bpf.c (24 bytes, 32 in the ring
 * with its header): seq, kind = 5, payload[i] = (seq + i) & 0xff.
 *
 *   rb_one (xdp; any packet of at least 14 bytes): one record with the next
 *          seq via bpf_ringbuf_output (default wake-up: the kernel signals
 *          epoll when the consumer had caught up, so epoll-driven consumers
 *          such as libbpf's ring_buffer__poll see the records); returns
 *          XDP_PASS (2), or XDP_DROP (1) when the ring was full.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PAYLOAD_LEN 16

struct event {
	__u32 seq;
	__u32 kind;
	__u8 payload[PAYLOAD_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} state SEC(".maps");

SEC("xdp")
int rb_one(struct xdp_md *ctx)
{
	__u32 k_seq = 0, k_drop = 1;
	__u32 *seqp = bpf_map_lookup_elem(&state, &k_seq);
	__u32 *dropp = bpf_map_lookup_elem(&state, &k_drop);
	struct event e;
	__u32 seq;

	if (!seqp || !dropp)
		return XDP_ABORTED;
	seq = *seqp;
	*seqp = seq + 1;
	e.seq = seq;
	e.kind = 5;
#pragma unroll
	for (int i = 0; i < PAYLOAD_LEN; i++)
		e.payload[i] = (seq + i) & 0xff;
	if (bpf_ringbuf_output(&rb, &e, sizeof(e), 0)) {
		*dropp += 1;
		return XDP_DROP;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
