// SPDX-License-Identifier: GPL-2.0
/*
 * arena.bpf.c - feeds tests/test_arena.py: a BPF_MAP_TYPE_ARENA map whose
 * map_extra (the user address of the arena) is given with libbpf's
 * __ulong(), a 64-bit value BTF can only carry as an ENUM64.
 *
 * arena_alloc (syscall): allocates one arena page (bpf_arena_alloc_pages
 *   kfunc), writes 0xc0ffee and 7 into its first two u64, records the page's
 *   user address in .bss alloc_addr; returns 0, or 1 when allocation fails.
 * arena_sum (syscall): reads the four u64 user space wrote at user_base
 *   (a .bss variable the test sets to an address inside the arena), stores
 *   their sum in the fifth u64 and in .bss sum; returns 0.
 * Both run with BPF_PROG_TEST_RUN (syscall programs take a context only).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define __arena __attribute__((address_space(1)))
#ifndef __ulong
#define __ulong(name, val) enum { ___bpf_concat(__unique_value, __COUNTER__) = val } name
#endif
#define NUMA_NO_NODE (-1)

#define ARENA_PAGES 4
#define ARENA_USER_ADDR (1ULL << 44)	/* 16 TiB: page aligned, 4 pages within one 4 GiB */

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ARENA_PAGES);
	__ulong(map_extra, ARENA_USER_ADDR);
} arena SEC(".maps");

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
				    int node_id, __u64 flags) __ksym __weak;

__u64 alloc_addr;
__u64 user_base;
__u64 sum;

SEC("syscall")
int arena_alloc(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	page[0] = 0xc0ffee;
	page[1] = 7;
	alloc_addr = (__u64)page;
	return 0;
}

SEC("syscall")
int arena_sum(void *ctx)
{
	__u64 __arena *p = (__u64 __arena *)user_base;

	if (!user_base)		/* keeps the program tied to the arena map */
		return bpf_arena_alloc_pages(&arena, NULL, 0, NUMA_NO_NODE, 0) ? 2 : 3;
	sum = p[0] + p[1] + p[2] + p[3];
	p[4] = sum;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
