// SPDX-License-Identifier: GPL-2.0
/*
 * core_poison.bpf.c - CO-RE relocations that match nothing in the kernel and
 * are not guarded: bpfload poisons the instruction (call 0xbad2310) and the
 * verifier refuses the program at it.  Both programs are "?" (not loaded
 * unless the test turns autoload on), so each can be loaded alone.
 *
 *   poison_field (raw_tp): reads task_struct___mine.nonexistent_field with
 *       BPF_CORE_READ; the "rX = offset" instruction is poisoned.
 *   poison_enum (raw_tp): bpf_core_enum_value() of an enumerator the kernel
 *       lacks; both halves of the ld_imm64 are poisoned.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___mine {
	int nonexistent_field;
} __attribute__((preserve_access_index));

enum bpf_func_id___mine {
	BPF_FUNC_bpfload_no_such_helper = 4321,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} poison_out SEC(".maps");

SEC("?raw_tp/sys_enter")
int poison_field(void *ctx)
{
	struct task_struct___mine *t = (void *)bpf_get_current_task();
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&poison_out, &key);

	if (v)
		*v = BPF_CORE_READ(t, nonexistent_field);
	return 0;
}

SEC("?raw_tp/sys_enter")
int poison_enum(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&poison_out, &key);

	if (v)
		*v = bpf_core_enum_value(enum bpf_func_id___mine, BPF_FUNC_bpfload_no_such_helper);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
