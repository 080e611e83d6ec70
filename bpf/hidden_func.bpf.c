// SPDX-License-Identifier: GPL-2.0
/*
 * hidden_func.bpf.c - `__hidden` global subprograms (libbpf-bootstrap's usdt.bpf.h
 * pattern: bpf_usdt_arg() is `__weak __hidden`).
 *
 * A global function the kernel verifies on its own, knowing only its BTF
 * prototype: a pointer argument is "memory or NULL", so `*res = ...` without
 * a NULL check is refused ("invalid mem access 'mem_or_null'").  A function
 * whose ELF symbol is hidden is marked static in the BTF the loader gives
 * the kernel (libbpf's rule), and a static function is verified in its
 * caller's context, where `res` is the caller's stack slot: then it loads.
 *
 *   arg_at(ctx_byte, n, res)  (__hidden):        *res = ctx_byte * n; returns 0
 *   arg_cnt(res)              (__weak __hidden): *res = 3; returns 0
 *   hidden_xdp (section "xdp"): x = first packet byte (0 if none);
 *     hidden_results[0] = x * 7 + 3 (arg_at(x, 7) + arg_cnt), returns XDP_PASS (2)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hidden_results SEC(".maps");

/* verifies only in the caller's context: `res` is written without a NULL check */
__hidden __noinline int arg_at(__u64 x, __u64 n, long *res)
{
	*res = x * n;
	return 0;
}

__weak __hidden __noinline int arg_cnt(long *res)
{
	*res = 3;
	return 0;
}

SEC("xdp")
int hidden_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 x = 0;
	long a = 0, c = 0;
	__u32 key = 0;
	__u64 r;

	if (data + 1 <= data_end)
		x = *(__u8 *)data;
	arg_at(x, 7, &a);
	arg_cnt(&c);
	r = a + c;
	bpf_map_update_elem(&hidden_results, &key, &r, BPF_ANY);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
