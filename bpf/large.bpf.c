// SPDX-License-Identifier: GPL-2.0
/*
 * large.bpf.c - feeds benchmarks/bench_load.py: a large object for timing
 * open + load split into parse, relocate and verifier parts.
 *
 * 16 maps and 48 xdp programs (prog_0 .. prog_47); each program calls two
 * shared subprograms and touches every map several times, so relocation has
 * real work (hundreds of map references a program).  prog_N returns
 * XDP_PASS and bumps counts_N % 16 [first packet byte].
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAP(n) \
	struct { \
		__uint(type, BPF_MAP_TYPE_ARRAY); \
		__uint(max_entries, 256); \
		__type(key, __u32); \
		__type(value, __u64); \
	} counts_##n SEC(".maps");

MAP(0) MAP(1) MAP(2) MAP(3) MAP(4) MAP(5) MAP(6) MAP(7)
MAP(8) MAP(9) MAP(10) MAP(11) MAP(12) MAP(13) MAP(14) MAP(15)

static __noinline __u64 mix(__u64 x)
{
	return x * 2654435761u + 7;
}

static __noinline __u64 fold(__u64 x, __u32 k)
{
	return mix(x ^ k) >> 3;
}

#define BUMP(m, k) do { \
	__u64 *v = bpf_map_lookup_elem(&counts_##m, &k); \
	if (v) \
		*v += fold(*v, k); \
	} while (0)

#define BUMP_ALL(k) \
	BUMP(0, k); BUMP(1, k); BUMP(2, k); BUMP(3, k); BUMP(4, k); BUMP(5, k); \
	BUMP(6, k); BUMP(7, k); BUMP(8, k); BUMP(9, k); BUMP(10, k); BUMP(11, k); \
	BUMP(12, k); BUMP(13, k); BUMP(14, k); BUMP(15, k)

#define PROG(n) \
SEC("xdp") int prog_##n(struct xdp_md *ctx) \
{ \
	void *data = (void *)(long)ctx->data; \
	void *end = (void *)(long)ctx->data_end; \
	__u32 k; \
	if (data + 1 > end) \
		return XDP_PASS; \
	k = *(__u8 *)data; \
	BUMP_ALL(k); \
	k = (k + n) & 0xff; \
	BUMP_ALL(k); \
	return XDP_PASS; \
}

PROG(0) PROG(1) PROG(2) PROG(3) PROG(4) PROG(5) PROG(6) PROG(7)
PROG(8) PROG(9) PROG(10) PROG(11) PROG(12) PROG(13) PROG(14) PROG(15)
PROG(16) PROG(17) PROG(18) PROG(19) PROG(20) PROG(21) PROG(22) PROG(23)
PROG(24) PROG(25) PROG(26) PROG(27) PROG(28) PROG(29) PROG(30) PROG(31)
PROG(32) PROG(33) PROG(34) PROG(35) PROG(36) PROG(37) PROG(38) PROG(39)
PROG(40) PROG(41) PROG(42) PROG(43) PROG(44) PROG(45) PROG(46) PROG(47)

char LICENSE[] SEC("license") = "GPL";
