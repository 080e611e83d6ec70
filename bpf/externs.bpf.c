// SPDX-License-Identifier: GPL-2.0
/*
 * externs.bpf.c - feeds tests/test_externs.py: .kconfig and __ksym externs,
 * written the way libbpf users write them.
 *
 * read_cfg (SEC("syscall"), ctx = struct out below, 64 bytes) copies the
 * resolved externs into its context, which the kernel writes back:
 *   version   = LINUX_KERNEL_VERSION
 *   hz        = CONFIG_HZ (int)
 *   bpf_jit   = CONFIG_BPF_JIT (bool)
 *   syscall   = CONFIG_BPF_SYSCALL (libbpf tristate)
 *   missing   = CONFIG_BPFLOAD_MISSING (weak: 0)
 *   hostname  = CONFIG_DEFAULT_HOSTNAME (char[16])
 *   sched_addr = address of schedule (untyped __ksym: a text symbol, as
 *                  kallsyms has data symbols only with CONFIG_KALLSYMS_ALL)
 * and returns 0.
 *
 * find_task (SEC("syscall"), ctx = {s32 pid; s32 found}) calls the kfuncs
 * bpf_task_from_pid/bpf_task_release and sets found = 1 when the pid exists.
 *
 * read_active (SEC("?syscall"): not loaded by default) reads the typed
 * __ksym bpf_prog_active (a per-CPU int). The kernel resolves a typed data
 * ksym through kallsyms, so it loads only with CONFIG_KALLSYMS_ALL=y; the
 * test checks the relocated instruction either way.
 */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>


extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_JIT __kconfig;
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig;
extern int CONFIG_BPFLOAD_MISSING __kconfig __weak;
extern char CONFIG_DEFAULT_HOSTNAME[16] __kconfig;

extern const void schedule __ksym;
extern const int bpf_prog_active __ksym;

struct out {
	__u32 version;
	__s32 hz;
	__u32 bpf_jit;
	__u32 syscall;
	__s32 missing;
	__u32 spare;
	__u64 sched_addr;
	char hostname[16];
	__u64 pad[2];
};

SEC("syscall")
int read_cfg(struct out *o)
{
	o->version = LINUX_KERNEL_VERSION;
	o->hz = CONFIG_HZ;
	o->bpf_jit = CONFIG_BPF_JIT;
	o->syscall = CONFIG_BPF_SYSCALL;
	o->missing = CONFIG_BPFLOAD_MISSING;
	o->sched_addr = (__u64)&schedule;
	__builtin_memcpy(o->hostname, CONFIG_DEFAULT_HOSTNAME, 16);
	return 0;
}

struct task_struct;
extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

struct find {
	__s32 pid;
	__s32 found;
};

SEC("syscall")
int find_task(struct find *f)
{
	struct task_struct *t = bpf_task_from_pid(f->pid);

	f->found = 0;
	if (!t)
		return 0;
	f->found = 1;
	bpf_task_release(t);
	return 0;
}

SEC("?syscall")
int read_active(__u32 *out)
{
	*out = *(const int *)bpf_this_cpu_ptr(&bpf_prog_active);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
