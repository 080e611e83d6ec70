// SPDX-License-Identifier: GPL-2.0
/*
 * ringbuf.bpf.c - feeds the ring-buffer reader tests.
 *
 *   rb: RINGBUF, max_entries 16384 (4 pages).
 *
 * Every record is a struct event (24 bytes):
 *   seq, kind (1 = rb_output, 2 = rb_reserve, 3 = rb_alternate),
 *   payload[i] = (seq + i) & 0xff for i in 0..15.
 *
 * All programs are SEC("syscall"): run with BPF_PROG_TEST_RUN and an
 * 8-byte ctx, struct rb_args.
 *   rb_output:    one record (seq) via bpf_ringbuf_output;
 *                 returns 0, or -errno (-EAGAIN when the ring is full).
 *   rb_reserve:   one record (seq) via bpf_ringbuf_reserve + submit;
 *                 returns 0, or 1 when the reservation failed (ring full).
 *   rb_alternate: reserves min(count, 64) records seq, seq + 1, ...;
 *                 submits the even seqs, discards the odd ones; returns the
 *                 number submitted (stops early if a reservation fails).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PAYLOAD_LEN 16
#define MAX_BATCH 64

struct rb_args {
	__u32 seq;
	__u32 count;	/* rb_alternate only */
};

struct event {
	__u32 seq;
	__u32 kind;
	__u8 payload[PAYLOAD_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} rb SEC(".maps");

static __always_inline void fill(struct event *e, __u32 seq, __u32 kind)
{
	e->seq = seq;
	e->kind = kind;
#pragma unroll
	for (int i = 0; i < PAYLOAD_LEN; i++)
		e->payload[i] = (seq + i) & 0xff;
}

SEC("syscall")
int rb_output(struct rb_args *a)
{
	struct event e;

	fill(&e, a->seq, 1);
	return bpf_ringbuf_output(&rb, &e, sizeof(e), 0);
}

SEC("syscall")
int rb_reserve(struct rb_args *a)
{
	struct event *e;

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 1;
	fill(e, a->seq, 2);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("syscall")
int rb_alternate(struct rb_args *a)
{
	__u32 seq = a->seq, count = a->count;
	struct event *e;
	int i, submitted = 0;

	for (i = 0; i < MAX_BATCH && i < count; i++) {
		e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
		if (!e)
			break;
		fill(e, seq + i, 3);
		if ((seq + i) & 1) {
			bpf_ringbuf_discard(e, 0);
		} else {
			bpf_ringbuf_submit(e, 0);
			submitted++;
		}
	}
	return submitted;
}

char LICENSE[] SEC("license") = "GPL";
