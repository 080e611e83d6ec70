// SPDX-License-Identifier: GPL-2.0
/*
 * verifier_reject.bpf.c - feeds the verifier-error tests: one program the
 * verifier rejects and one valid program in the same object.
 *
 *   bad_deref (xdp): dereferences the result of bpf_map_lookup_elem
 *       without a NULL check -> rejected, the log ends with
 *       "R0 invalid mem access 'map_value_or_null'".
 *   good_prog (xdp): returns XDP_PASS (2); loads fine on its own.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);	/* not ARRAY: newer verifiers know
						   an in-range constant-key array
						   lookup is never NULL */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rej_map SEC(".maps");

SEC("xdp")
int bad_deref(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&rej_map, &key);

	return *v;	/* no NULL check: the verifier refuses this */
}

SEC("xdp")
int good_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
