// SPDX-License-Identifier: GPL-2.0
/*
 * subprog.bpf.c - feeds the bpf-to-bpf call / linker tests.
 *
 * Call graph (x = the packet's first byte):
 *   sub_xdp (section "xdp") -> compute (.text) -> mix (.text)
 *                           -> xdp_local (section "xdp", static)
 *   sub_tc  (section "tc")  -> compute (.text) -> mix (.text)
 * Calls into .text carry ELF relocations; sub_xdp -> xdp_local is a call
 * inside one section that clang resolves itself.
 *
 *   mix(x)           = 3 * x + 1
 *   compute(slot, x) : r = mix(x) + 10 = 3 * x + 11; sub_results[slot] = r;
 *                      returns r
 *   xdp_local(r)     = r + 100
 *
 *   sub_xdp: sub_results[0] = 3x + 11; returns 3x + 111
 *   sub_tc:  sub_results[1] = 3x + 11; returns 3x + 11
 * Empty packets: return 0, no map write.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sub_results SEC(".maps");

/* .text */
static __noinline __u32 mix(__u32 x)
{
	return 3 * x + 1;
}

/* .text: calls another .text function and writes a map */
static __noinline __u32 compute(__u32 slot, __u32 x)
{
	__u64 r = mix(x) + 10;

	bpf_map_update_elem(&sub_results, &slot, &r, BPF_ANY);
	return r;
}

/* lives in the program's own section */
SEC("xdp")
static __noinline __u32 xdp_local(__u32 r)
{
	return r + 100;
}

SEC("xdp")
int sub_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 > data_end)
		return 0;
	return xdp_local(compute(0, *(__u8 *)data));
}

SEC("tc")
int sub_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + 1 > data_end)
		return 0;
	return compute(1, *(__u8 *)data);
}

char LICENSE[] SEC("license") = "GPL";
