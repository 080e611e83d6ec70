// SPDX-License-Identifier: GPL-2.0
/*
 * attach_uprobe.bpf.c - feeds tests/test_attach_uprobe.py (uprobes and
 * uretprobes on user-space functions).
 *
 * target_tgid (.rodata, set before load): when non-zero, every program
 * ignores calls made by any other process (a filter in the program, on
 * top of the perf event's own pid filter).
 *
 *   up_entry  (SEC "uprobe", attached explicitly): on entry of the probed
 *             function, args[(int)PT_REGS_PARM1] += 1, entry_count += 1,
 *             last_cookie = bpf_get_attach_cookie().
 *   up_return (SEC "uretprobe", attached explicitly): on return,
 *             rets[(int)PT_REGS_RC] += 1, return_count += 1.
 *   up_getpid (SEC "uprobe/libc.so.6:getpid": the section names a
 *             library and a symbol, attach() resolves both): getpid_count += 1.
 *   up_getpid_ret (SEC "uretprobe/libc.so.6:getpid"): getpid_ret = the
 *             value getpid() returned, getpid_ret_count += 1.
 *
 * args and rets are hashes int -> u64 count (1024 entries).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

__u64 entry_count;
__u64 return_count;
__u64 last_cookie;
__u64 getpid_count;
__u64 getpid_ret_count;
__s64 getpid_ret;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __s32);
	__type(value, __u64);
} args SEC(".maps"), rets SEC(".maps");

static __always_inline int other_process(void)
{
	return target_tgid && (bpf_get_current_pid_tgid() >> 32) != target_tgid;
}

static __always_inline void bump(void *map, __s32 key)
{
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(map, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

SEC("uprobe")
int up_entry(struct pt_regs *ctx)
{
	if (other_process())
		return 0;
	bump(&args, (__s32)PT_REGS_PARM1(ctx));
	__sync_fetch_and_add(&entry_count, 1);
	last_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("uretprobe")
int up_return(struct pt_regs *ctx)
{
	if (other_process())
		return 0;
	bump(&rets, (__s32)PT_REGS_RC(ctx));
	__sync_fetch_and_add(&return_count, 1);
	return 0;
}

SEC("uprobe/libc.so.6:getpid")
int up_getpid(struct pt_regs *ctx)
{
	if (other_process())
		return 0;
	__sync_fetch_and_add(&getpid_count, 1);
	return 0;
}

SEC("uretprobe/libc.so.6:getpid")
int up_getpid_ret(struct pt_regs *ctx)
{
	if (other_process())
		return 0;
	getpid_ret = (__s64)PT_REGS_RC(ctx);
	__sync_fetch_and_add(&getpid_ret_count, 1);
	return 0;
}
