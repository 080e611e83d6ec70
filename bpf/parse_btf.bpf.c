// SPDX-License-Identifier: GPL-2.0
/*
 * parse_btf.bpf.c - feeds the BTF parser tests (tests/test_btf.py): one
 * object whose .BTF holds every kind clang emits for a BPF object (INT, PTR,
 * ARRAY, STRUCT with bitfields (kind_flag), UNION, signed ENUM, ENUM64, FWD,
 * TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC,
 * FLOAT, DECL_TAG, TYPE_TAG) and whose .BTF.ext holds func_info, line_info
 * and CO-RE relocations of several kinds.  For parsing only: never loaded.
 *
 *   struct core_task has preserve_access_index: core_prog's reads of
 *   pid / tgid / nested.inner become FIELD_BYTE_OFFSET relocations,
 *   bpf_core_field_exists a FIELD_EXISTS, bpf_core_type_size a TYPE_SIZE,
 *   bpf_core_enum_value an ENUMVAL_VALUE.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct bits {
	unsigned int a : 3;
	unsigned int b : 5;
	int c : 7;
	unsigned long long d;
};

union num {
	int i;
	float f;
	char c[4];
};

enum sgn { SGN_NEG = -1, SGN_POS = 1 };
enum big { BIG_ONE = 1, BIG_HUGE = 0x100000000ULL };

struct fwd_only;
typedef struct bits bits_t;

struct tagged {
	int x __attribute__((btf_decl_tag("member_tag")));
	int __attribute__((btf_type_tag("user"))) *p;
};

struct core_task {
	int pid;
	int tgid;
	struct {
		int inner;
	} nested;
} __attribute__((preserve_access_index));

struct bits g_bits;
union num g_num;
enum sgn g_sgn = SGN_NEG;
enum big g_big = BIG_HUGE;
struct fwd_only *g_fwd;
bits_t g_td;
struct tagged g_tagged;
float g_float = 1.5f;
float *g_float_p = &g_float;
int *__restrict g_restrict;
volatile int g_volatile;
const volatile int g_const = 3;
int g_decl_tagged __attribute__((btf_decl_tag("var_tag")));
static int g_static;

__noinline int helper_fn(int a, char *b)
{
	return a + g_static++ + (b ? *b : 0);
}

SEC("kprobe/do_nanosleep")
int core_prog(void *ctx)
{
	struct core_task *t = (void *)bpf_get_current_task();
	int pid = BPF_CORE_READ(t, pid);
	int inner = BPF_CORE_READ(t, nested.inner);
	int ex = bpf_core_field_exists(t->tgid);
	int sz = bpf_core_type_size(struct core_task);
	int ev = bpf_core_enum_value(enum sgn, SGN_NEG);

	return pid + inner + ex + sz + ev + helper_fn(g_const, 0) + g_bits.b + g_num.i +
	       g_sgn + (int)g_big + (g_fwd ? 1 : 0) + g_td.c + g_tagged.x + (g_float_p ? 1 : 0) +
	       (g_restrict ? 1 : 0) + g_volatile + g_decl_tagged;
}

char LICENSE[] SEC("license") = "GPL";
