// SPDX-License-Identifier: GPL-2.0
/*
 * extern_func.bpf.c - a call to an extern function with no definition.
 *
 * `fwd` is declared, never defined (a link input compiled alone, or a
 * forgotten definition): its BTF FUNC has extern linkage, which the kernel
 * refuses for the whole BTF ("Invalid func linkage").  Loaders must name
 * the function instead (libbpf: "failed to find BTF for extern 'fwd'").
 *
 *   call_fwd (section "xdp"): returns fwd(1)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int fwd(int x);

SEC("xdp")
int call_fwd(struct xdp_md *ctx)
{
	return fwd(1);
}

char LICENSE[] SEC("license") = "GPL";
