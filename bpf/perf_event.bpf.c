// SPDX-License-Identifier: GPL-2.0
/*
 * perf_event.bpf.c - feeds the perf-event-array reader tests.
 *
 *   events: PERF_EVENT_ARRAY, key/value 4 bytes, max_entries 128 (given
 *           explicitly: at least the number of CPUs).  Records go to the
 *           perf event in the slot of the CPU running the program
 *           (BPF_F_CURRENT_CPU): the test must open one there.
 *
 * Every record starts with a struct event (24 bytes):
 *   seq, kind (1 = pe_output, 3 = pe_alternate, 4 = pe_with_pkt),
 *   payload[i] = (seq + i) & 0xff for i in 0..15.
 *
 * All programs are xdp; the packet (at least 14 bytes for
 * BPF_PROG_TEST_RUN) carries seq in bytes 0..3 and count in bytes 4..7,
 * both little-endian.  Packets shorter than 8 bytes: return 1, no record.
 *   pe_output:    one record (seq); returns 0 or the helper's -errno
 *                 (-ENOENT: no perf event open in this CPU's slot).
 *   pe_with_pkt:  one record (seq) followed by the first 14 bytes of the
 *                 packet (sample is 38 bytes); returns 0 or -errno.
 *   pe_alternate: for min(count, 64) seqs seq, seq + 1, ...: emits the
 *                 even ones, skips the odd ones; returns the number
 *                 emitted (stops at the first failure).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PAYLOAD_LEN 16
#define MAX_BATCH 64
#define PKT_BYTES 14

struct event {
	__u32 seq;
	__u32 kind;
	__u8 payload[PAYLOAD_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 128);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

static __always_inline void fill(struct event *e, __u32 seq, __u32 kind)
{
	e->seq = seq;
	e->kind = kind;
#pragma unroll
	for (int i = 0; i < PAYLOAD_LEN; i++)
		e->payload[i] = (seq + i) & 0xff;
}

static __always_inline __u32 le32(const __u8 *p)
{
	return p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
}

/* reads seq and count from the packet; returns 0 when it is too short */
static __always_inline int parse(struct xdp_md *ctx, __u32 *seq, __u32 *count)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 8 > data_end)
		return 0;
	*seq = le32(data);
	*count = le32(data + 4);
	return 1;
}

SEC("xdp")
int pe_output(struct xdp_md *ctx)
{
	struct event e;
	__u32 seq, count;

	if (!parse(ctx, &seq, &count))
		return 1;
	fill(&e, seq, 1);
	return bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
}

SEC("xdp")
int pe_with_pkt(struct xdp_md *ctx)
{
	struct event e;
	__u32 seq, count;

	if (!parse(ctx, &seq, &count))
		return 1;
	fill(&e, seq, 4);
	/* the upper 32 bits of flags: packet bytes to append to the sample */
	return bpf_perf_event_output(ctx, &events,
				     BPF_F_CURRENT_CPU | ((__u64)PKT_BYTES << 32),
				     &e, sizeof(e));
}

SEC("xdp")
int pe_alternate(struct xdp_md *ctx)
{
	struct event e;
	__u32 seq, count;
	int i, emitted = 0;

	if (!parse(ctx, &seq, &count))
		return 1;
	for (i = 0; i < MAX_BATCH && i < count; i++) {
		if ((seq + i) & 1)
			continue;
		fill(&e, seq + i, 3);
		if (bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e)))
			break;
		emitted++;
	}
	return emitted;
}

char LICENSE[] SEC("license") = "GPL";
