// SPDX-License-Identifier: GPL-2.0
/*
 * usdt_args.bpf.c - feeds tests/test_usdt.py (USDT probes through libbpf's
 * usdt.bpf.h protocol: bpf_usdt_arg(), bpf_usdt_arg_cnt(), bpf_usdt_cookie()
 * read the __bpf_usdt_specs map the loader fills, keyed by the BPF cookie).
 *
 * target_tgid (.rodata, set before load): when non-zero, both programs
 * ignore every other process.
 *
 *   on_usdt (SEC "usdt", attached explicitly with attach_usdt(..., cookie=K)):
 *           on each hit, hits[K] += 1 and the record (K, hit number) gets
 *           the argument count, the usdt cookie and, for each of the 12
 *           argument slots, the value bpf_usdt_arg() read and its return
 *           code (0, or -ENOENT past the probe's last argument).
 *   on_regs (SEC "usdt/bl_usdt_target:bl:regs", the section names the
 *           binary (found in $PATH), provider and probe; BPF_USDT unpacks
 *           the arguments): regs_count += 1, regs_c/regs_l/regs_i = the
 *           probe's three arguments of the last hit.
 *
 * records: hash (cookie << 32 | hit number from 0) -> struct record.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

#define NARGS 12

const volatile __u32 target_tgid = 0;

struct record {
	__s64 arg_cnt;
	__s64 cookie;
	__s64 args[NARGS];
	__s64 rets[NARGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct record);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} hits SEC(".maps");

__u64 regs_count;
__s64 regs_c, regs_l, regs_i;

static __always_inline int other_process(void)
{
	return target_tgid && (bpf_get_current_pid_tgid() >> 32) != target_tgid;
}

SEC("usdt")
int on_usdt(struct pt_regs *ctx)
{
	struct record rec = {};
	__u64 cookie, zero = 0, *n, key;
	long v;
	int i;

	if (other_process())
		return 0;
	cookie = bpf_usdt_cookie(ctx);
	n = bpf_map_lookup_elem(&hits, &cookie);
	if (!n) {
		bpf_map_update_elem(&hits, &cookie, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&hits, &cookie);
		if (!n)
			return 0;
	}
	key = cookie << 32 | __sync_fetch_and_add(n, 1);
	rec.arg_cnt = bpf_usdt_arg_cnt(ctx);
	rec.cookie = cookie;
	for (i = 0; i < NARGS; i++) {
		rec.rets[i] = bpf_usdt_arg(ctx, i, &v);
		rec.args[i] = v;
	}
	bpf_map_update_elem(&records, &key, &rec, BPF_ANY);
	return 0;
}

SEC("usdt/bl_usdt_target:bl:regs")
int BPF_USDT(on_regs, char c, long l, long i)
{
	if (other_process())
		return 0;
	__sync_fetch_and_add(&regs_count, 1);
	regs_c = c;
	regs_l = l;
	regs_i = i;
	return 0;
}
