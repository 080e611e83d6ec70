// SPDX-License-Identifier: GPL-2.0
/*
 * globals.bpf.c - feeds the global-data tests: .data, .bss, .rodata
 * (const volatile config, set before load) and .rodata.str1.1 (a string
 * literal).
 *
 * compute (xdp), with in = the packet's bytes 0..3 as a little-endian u32:
 *   out          = (__u64)in * cfg_mult + cfg_add     (defaults: out = in)
 *   bss_out      = out
 *   bss_in       = in
 *   bss_tag_char = "bpfload-globals"[in & 15]  (byte 15 is the NUL)
 *   bss_calls   += 1
 *   data_calls  += 1                          (starts at 100)
 *   returns (__u32)out.
 * Packets shorter than 4 bytes: returns XDP_PASS (2), changes nothing
 * (BPF_PROG_TEST_RUN needs at least 14 bytes anyway).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* .data */
int data_magic = 0x1234abcd;	/* never written by the program */
__u32 data_calls = 100;

/* .bss */
__u64 bss_out;
__u32 bss_in;
__u32 bss_calls;
char bss_tag_char;

/* .rodata: rewrite before load to change the program's arithmetic */
const volatile __u32 cfg_mult = 1;
const volatile __u64 cfg_add = 0;

SEC("xdp")
int compute(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const char *tag = "bpfload-globals";	/* -> .rodata.str1.1 */
	__u8 *p = data;
	__u32 in;
	__u64 out;

	if (data + 4 > data_end)
		return XDP_PASS;
	in = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
	out = (__u64)in * cfg_mult + cfg_add;

	bss_out = out;
	bss_in = in;
	bss_tag_char = tag[in & 15];
	bss_calls++;
	data_calls++;
	return (__u32)out;
}

char LICENSE[] SEC("license") = "GPL";
