// SPDX-License-Identifier: GPL-2.0
/*
 * parse_relocs.bpf.c - feeds the ELF parser tests (tests/test_elf.py) with
 * every relocation kind.  For parsing only: never loaded.
 *
 *   MAP        ld_imm64 of a BTF map                       (counters)
 *   DATA       named variables in .data / .bss / .rodata, a static .bss
 *              variable (relocated against the section symbol, offset in
 *              the instruction's imm), custom .data.tbl / .rodata.cfg
 *   CALL       .text global function (relocation against its symbol),
 *              .text static function (against the .text section symbol),
 *              same-section static function in "tc" (no relocation:
 *              synthesized), .text -> .text (no relocation)
 *   FUNC_ADDR  bpf_loop callback in .text (static) and in the program's
 *              own section
 *   EXTERN     a __ksym variable, a __kconfig variable, a kfunc call
 *
 *   "?tc" makes reloc_tc a program that is not autoloaded.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

int data_var = 1;				/* .data */
__u64 bss_var;					/* .bss */
static __u64 bss_static;			/* .bss, local symbol */
const volatile __u32 ro_var = 7;		/* .rodata */
__u32 tbl[4] SEC(".data.tbl") = { 1, 2, 3, 4 };	/* .data.tbl */
const volatile __u64 cfg_val SEC(".rodata.cfg") = 9;
__u32 hidden_var __hidden;			/* .bss, STV_HIDDEN */

extern const void bpf_prog_active __ksym;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

static __noinline __u64 text_leaf(__u64 x)		/* .text, static */
{
	return x * 2 + bss_static++;
}

__noinline __u64 text_global(__u64 x)			/* .text, global */
{
	return text_leaf(x) + data_var;
}

static long text_cb(__u32 i, void *ctx)			/* .text callback */
{
	bss_var += i;
	return 0;
}

SEC("xdp")
static long xdp_cb(__u32 i, void *ctx)			/* same-section callback */
{
	hidden_var += i;
	return 0;
}

SEC("xdp")
int reloc_xdp(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += text_global(ro_var) + tbl[1] + cfg_val;
	bpf_loop(4, text_cb, 0, 0);
	bpf_loop(2, xdp_cb, 0, 0);
	return text_leaf(LINUX_KERNEL_VERSION) + (long)&bpf_prog_active;
}

SEC("tc")
static __noinline int tc_local(int x)			/* static, in "tc" */
{
	return x + 3;
}

SEC("?tc")
int reloc_tc(struct __sk_buff *skb)
{
	bpf_rcu_read_lock();
	bpf_rcu_read_unlock();
	return text_leaf(skb->len) + bss_static;
}

SEC("tc")
int reloc_tc_local(struct __sk_buff *skb)
{
	return tc_local(skb->len) + tc_local(1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
__u32 _version SEC("version") = 0x060c00;
