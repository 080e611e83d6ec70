// SPDX-License-Identifier: GPL-2.0
/*
 * globaldata.bpf.c - feeds tests/test_globaldata.py: global variables read
 * and written through the mmapped .bss/.data/.rodata maps.
 *
 * bump (xdp), with in = the packet's bytes 0..3 as a little-endian u32:
 *   counter      += step                  (.bss += .data: Python sets step)
 *   hist[in & 7] += 1                     (.bss array)
 *   last          = { in, -(s16)in, "pair!" }   (.bss struct)
 *   last_out      = in * cfg.mul + cfg.bias + table[in & 3]
 *                   (.data struct cfg = {2, -1}, .rodata table = {10,20,30,40})
 *   runs_static  += 1                     (.data.statics: only a static
 *                   variable, so libbpf's rule leaves that map not mmapable)
 *   returns XDP_PASS (2).
 * Packets shorter than 4 bytes change nothing.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair {
	__u32 a;
	__s16 b;
	char tag[6];
};

struct cfg {
	__u32 mul;
	__s32 bias;
};

/* .bss */
__u64 counter;
__u64 hist[8];
struct pair last;
__s64 last_out;

/* .data */
__u32 step = 1;
struct cfg cfg = { 2, -1 };

/* .rodata */
const volatile __u32 table[4] = { 10, 20, 30, 40 };

/* .data.statics: no global variable in this section */
static volatile __u64 runs_static SEC(".data.statics") = 5;

SEC("xdp")
int bump(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u32 in;

	if (data + 4 > data_end)
		return XDP_PASS;
	in = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);

	counter += step;
	hist[in & 7]++;
	last.a = in;
	last.b = -(__s16)in;
	__builtin_memcpy(last.tag, "pair!", 6);
	last_out = (__s64)in * cfg.mul + cfg.bias + table[in & 3];
	runs_static++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
