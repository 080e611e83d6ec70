// SPDX-License-Identifier: GPL-2.0
/*
 * typed_values.bpf.c - feeds the typed-view tests (tests/test_typed.py):
 * maps whose BTF key/value types cover every kind the typed view decodes.
 *
 * Maps:
 *   recs    HASH          struct flow_key -> struct rec
 *   pcpu    PERCPU_ARRAY  __u32 -> struct counters        (2 entries)
 *   shorts  ARRAY         __u32 -> __s16                  (4 entries)
 *
 * typed_fill (syscall), args struct fill_args {addr, port}:
 *   recs[{addr, port, proto = 6}] = the FILLED record below, with
 *       count = addr + port
 *   pcpu[0].packets += 1, .bytes += port, .last = BLUE   (on the running CPU)
 *   shorts[1] = -1234
 *   returns 0 (1 if an update failed).
 *
 * typed_check (syscall), args struct fill_args {addr, port}:
 *   compares recs[{addr, port, proto = 17}] (written from user space) with
 *   the EXPECTED record below and returns a bitmask of the fields that
 *   differ (0: all equal; 1 << 31: no such entry).
 *
 * FILLED (by typed_fill) and EXPECTED (by typed_check) hold the same values:
 *   temp = -40, color = BLUE, sign = MINUS, wide = WIDE_BIG,
 *   name = "filled", hist = {1, 2, 3, 0xffffffff},
 *   samples = {{443, -1, "ab"}, {8080, 127, "vwxyz"}},
 *   word.u32 = 0x01020304, lo = 5, mid = -9, hi = 0xabcdef, ok = 1,
 *   x = 7, y = 65535, neg = -(1 << 40), matrix = {{1, 2, 3}, {4, 5, 6}},
 *   ratio = 0.5
 * and count = addr + port (FILLED) / count = 0x1122334455667788 (EXPECTED).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 0, GREEN = 1, BLUE = 7 };
enum sign { MINUS = -5, ZERO = 0, PLUS = 5 };			/* signed ENUM */
enum wide { WIDE_SMALL = 1, WIDE_BIG = 0x123456789ULL };	/* ENUM64 */

struct flow_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct sample {
	__u16 port;
	__s8 delta;
	char tag[5];
};

union word {
	__u32 u32;
	__u8 bytes[4];
};

struct rec {
	__u64 count;
	__s32 temp;
	enum color color;
	enum sign sign;
	enum wide wide;
	char name[16];
	__u32 hist[4];
	struct sample samples[2];
	union word word;
	unsigned int lo : 3;		/* bitfields */
	int mid : 5;
	unsigned int hi : 24;
	_Bool ok;
	struct {			/* anonymous member */
		__u16 x;
		__u16 y;
	};
	__s64 neg;
	__u8 matrix[2][3];
	float ratio;
};

struct counters {
	__u64 packets;
	__u32 bytes;
	enum color last;
};

struct fill_args {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct flow_key);
	__type(value, struct rec);
} recs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct counters);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s16);
} shorts SEC(".maps");

/* A float is only stored, never computed with: the bits of 0.5f. */
#define HALF_BITS 0x3f000000u

static __always_inline void set_common(struct rec *r)
{
	r->temp = -40;
	r->color = BLUE;
	r->sign = MINUS;
	r->wide = WIDE_BIG;
	__builtin_memcpy(r->name, "filled", 7);
	r->hist[0] = 1;
	r->hist[1] = 2;
	r->hist[2] = 3;
	r->hist[3] = 0xffffffff;
	r->samples[0].port = 443;
	r->samples[0].delta = -1;
	r->samples[0].tag[0] = 'a';
	r->samples[0].tag[1] = 'b';
	r->samples[1].port = 8080;
	r->samples[1].delta = 127;
	__builtin_memcpy(r->samples[1].tag, "vwxyz", 5);
	r->word.u32 = 0x01020304;
	r->lo = 5;
	r->mid = -9;
	r->hi = 0xabcdef;
	r->ok = 1;
	r->x = 7;
	r->y = 65535;
	r->neg = -(1LL << 40);
	r->matrix[0][0] = 1;
	r->matrix[0][1] = 2;
	r->matrix[0][2] = 3;
	r->matrix[1][0] = 4;
	r->matrix[1][1] = 5;
	r->matrix[1][2] = 6;
	*(__u32 *)&r->ratio = HALF_BITS;
}

SEC("syscall")
int typed_fill(struct fill_args *a)
{
	struct flow_key k = { .addr = a->addr, .port = a->port, .proto = 6 };
	struct rec r = {};
	struct counters *c;
	__u32 zero = 0, one = 1;
	__s16 s = -1234;

	set_common(&r);
	r.count = (__u64)a->addr + a->port;
	if (bpf_map_update_elem(&recs, &k, &r, BPF_ANY))
		return 1;
	c = bpf_map_lookup_elem(&pcpu, &zero);
	if (c) {
		c->packets += 1;
		c->bytes += a->port;
		c->last = BLUE;
	}
	if (bpf_map_update_elem(&shorts, &one, &s, BPF_ANY))
		return 1;
	return 0;
}

SEC("syscall")
int typed_check(struct fill_args *a)
{
	struct flow_key k = { .addr = a->addr, .port = a->port, .proto = 17 };
	struct rec *r;
	int bad = 0;

	r = bpf_map_lookup_elem(&recs, &k);
	if (!r)
		return 1 << 31;
	if (r->count != 0x1122334455667788ULL)
		bad |= 1 << 0;
	if (r->temp != -40)
		bad |= 1 << 1;
	if (r->color != BLUE)
		bad |= 1 << 2;
	if (r->sign != MINUS)
		bad |= 1 << 3;
	if (r->wide != WIDE_BIG)
		bad |= 1 << 4;
	if (r->name[0] != 'f' || r->name[5] != 'd' || r->name[6] != 0 || r->name[15] != 0)
		bad |= 1 << 5;
	if (r->hist[0] != 1 || r->hist[1] != 2 || r->hist[2] != 3 || r->hist[3] != 0xffffffff)
		bad |= 1 << 6;
	if (r->samples[0].port != 443 || r->samples[0].delta != -1 || r->samples[0].tag[0] != 'a' ||
	    r->samples[0].tag[1] != 'b' || r->samples[0].tag[2] != 0)
		bad |= 1 << 7;
	if (r->samples[1].port != 8080 || r->samples[1].delta != 127 ||
	    r->samples[1].tag[0] != 'v' || r->samples[1].tag[4] != 'z')
		bad |= 1 << 8;
	if (r->word.u32 != 0x01020304)
		bad |= 1 << 9;
	if (r->lo != 5)
		bad |= 1 << 10;
	if (r->mid != -9)
		bad |= 1 << 11;
	if (r->hi != 0xabcdef)
		bad |= 1 << 12;
	if (r->ok != 1)
		bad |= 1 << 13;
	if (r->x != 7 || r->y != 65535)
		bad |= 1 << 14;
	if (r->neg != -(1LL << 40))
		bad |= 1 << 15;
	if (r->matrix[0][0] != 1 || r->matrix[0][2] != 3 || r->matrix[1][0] != 4 ||
	    r->matrix[1][2] != 6)
		bad |= 1 << 16;
	if (*(__u32 *)&r->ratio != HALF_BITS)
		bad |= 1 << 17;
	return bad;
}

char LICENSE[] SEC("license") = "GPL";
