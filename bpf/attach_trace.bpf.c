// SPDX-License-Identifier: GPL-2.0
/*
 * attach_trace.bpf.c - feeds the tracing attach tests (tests/test_attach_tracing.py)
 * and examples/syscount.py.
 *
 *   target_tgid: .rodata, set before load (obj.rodata["target_tgid"] = os.getpid());
 *                every counter below counts only events of that process.
 *   counts:      ARRAY of 4 __u64, one slot per hook kind:
 *                  0 tp_getppid      tracepoint/syscalls/sys_enter_getppid
 *                  1 rawtp_getppid   raw_tp/sys_enter, syscall id == __NR_getppid
 *                  2 tpbtf_getppid   tp_btf/sys_enter, syscall id == __NR_getppid
 *                  3 kprobe / ksyscall programs (never fire here: no kprobes)
 *   cpu_counts:  ARRAY of 256 __u64 keyed by CPU: perf_sample counts the perf
 *                events that fired on each CPU while target_tgid was running.
 *
 *   kp_nanosleep  kprobe/do_nanosleep        loads (KPROBE type) but cannot attach on
 *   ks_getppid    ksyscall/getppid           a kernel without CONFIG_KPROBES
 *   fe_nanosleep  ?fentry/do_nanosleep       autoload off: the test machines refuse
 *                                            fentry at load (EPERM)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPPID_X86_64 110
#define MAX_CPUS 256

const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, __u32);
	__type(value, __u64);
} cpu_counts SEC(".maps");

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	if (mine())
		bump(0);
	return 0;
}

/* raw_tp/sys_enter: args[0] = struct pt_regs *, args[1] = syscall id */
SEC("raw_tp/sys_enter")
int rawtp_getppid(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == NR_GETPPID_X86_64)
		bump(1);
	return 0;
}

/* tp_btf/sys_enter: the same arguments, typed through BTF */
SEC("tp_btf/sys_enter")
int tpbtf_getppid(__u64 *ctx)
{
	if (mine() && ctx[1] == NR_GETPPID_X86_64)
		bump(2);
	return 0;
}

SEC("perf_event")
int perf_sample(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *v;

	if (!mine())
		return 0;
	v = bpf_map_lookup_elem(&cpu_counts, &cpu);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("kprobe/do_nanosleep")
int kp_nanosleep(void *ctx)
{
	if (mine())
		bump(3);
	return 0;
}

SEC("ksyscall/getppid")
int ks_getppid(void *ctx)
{
	if (mine())
		bump(3);
	return 0;
}

SEC("?fentry/do_nanosleep")
int fe_nanosleep(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
