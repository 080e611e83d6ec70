// SPDX-License-Identifier: GPL-2.0
/*
 * prog_array.bpf.c - feeds the PROG_ARRAY / tail-call tests: a program
 * array with a BTF static initializer naming programs (libbpf style).
 *
 *   jmp_table: PROG_ARRAY, 4 slots, key/value 4 bytes;
 *              [0] = tail_a, [1] = tail_b; slots 2, 3 empty
 *              (tail_c is loaded but in no slot: tests may put it in one).
 *
 * All programs are xdp.  tail_entry tail-calls jmp_table[packet byte 0]:
 *   byte 0 -> tail_a -> returns 100
 *   byte 1 -> tail_b -> returns 200
 *   slot holding tail_c -> returns 300
 *   empty slot / index >= 4 -> the tail call falls through: returns 1
 *   empty packet -> returns 0
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int tail_a(struct xdp_md *ctx)
{
	return 100;
}

SEC("xdp")
int tail_b(struct xdp_md *ctx)
{
	return 200;
}

SEC("xdp")
int tail_c(struct xdp_md *ctx)
{
	return 300;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jmp_table SEC(".maps") = {
	.values = {
		[0] = (void *)&tail_a,
		[1] = (void *)&tail_b,
	},
};

SEC("xdp")
int tail_entry(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 > data_end)
		return 0;
	bpf_tail_call(ctx, &jmp_table, *(__u8 *)data);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
