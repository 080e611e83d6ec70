// SPDX-License-Identifier: GPL-2.0
/*
 * metadata.bpf.c - feeds tests/test_globaldata.py: .rodata bound to every
 * program with BPF_PROG_BIND_MAP (as libbpf does), so bpftool shows the
 * bpf_metadata_* variables.
 *
 * meta_pass (xdp) returns XDP_PASS (2) and never reads .rodata: the map is
 * among the program's map ids only because the loader bound it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

volatile const char bpf_metadata_version[] SEC(".rodata") = "1.2.3";
volatile const __u32 bpf_metadata_build SEC(".rodata") = 42;

SEC("xdp")
int meta_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
