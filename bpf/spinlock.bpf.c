// SPDX-License-Identifier: GPL-2.0
/*
 * spinlock.bpf.c - feeds tests/test_spinlock.py: map values holding a
 * struct bpf_spin_lock and a struct bpf_timer.  The kernel finds both
 * fields through the map's BTF value type, so these maps only work when
 * the loader creates them with the object's BTF.
 *
 * Maps:
 *   locked      HASH   __u32 -> struct locked_val  (16 entries)
 *   locked_arr  ARRAY  __u32 -> struct locked_val  (4 entries)
 *   timers      ARRAY  __u32 -> struct timer_val   (1 entry)
 *
 * struct locked_val keeps the invariant b == 2 * a and c == 3 * a for every
 * writer that holds the lock: user space writes whole values with
 * BPF_F_LOCK, the programs add 1/2/3 under bpf_spin_lock.
 *
 * lock_bump (xdp; BPF_PROG_TEST_RUN repeat=N runs it N times), packet
 * bytes 0..3 = key (u32, little endian), byte 4 = 0: locked, 1: locked_arr:
 *   under the value's lock: a += 1, b += 2, c += 3, bumps += 1
 *   returns XDP_PASS (2), or XDP_ABORTED (0) when the key is absent / the
 *   packet is short.
 *
 * lock_check (xdp), same packet: reads the value under its lock and
 * returns 1 when b == 2 * a and c == 3 * a, else 0 (XDP_ABORTED / absent: 3).
 *
 * timer_arm (syscall): initializes and starts timers[0].timer (1 ms,
 *   CLOCK_MONOTONIC) whose callback sets timers[0].fired = 1 and adds 1 to
 *   timers[0].runs; returns 0, or the failing helper's negative errno.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define CLOCK_MONOTONIC 1

struct locked_val {
	__u64 a;
	struct bpf_spin_lock lock;
	__u64 b;
	__u64 c;
	__u32 bumps;
	__u32 tag;
};

struct timer_val {
	__u64 fired;
	struct bpf_timer timer;
	__u64 runs;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct locked_val);
} locked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct locked_val);
} locked_arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct timer_val);
} timers SEC(".maps");

static __always_inline struct locked_val *value_for(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u32 key;

	if (data + 5 > data_end)
		return 0;
	key = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
	if (p[4])
		return bpf_map_lookup_elem(&locked_arr, &key);
	return bpf_map_lookup_elem(&locked, &key);
}

SEC("xdp")
int lock_bump(struct xdp_md *ctx)
{
	struct locked_val *v = value_for(ctx);

	if (!v)
		return XDP_ABORTED;
	bpf_spin_lock(&v->lock);
	v->a += 1;
	v->b += 2;
	v->c += 3;
	v->bumps += 1;
	bpf_spin_unlock(&v->lock);
	return XDP_PASS;
}

SEC("xdp")
int lock_check(struct xdp_md *ctx)
{
	struct locked_val *v = value_for(ctx);
	__u64 a, b, c;

	if (!v)
		return 3;
	bpf_spin_lock(&v->lock);
	a = v->a;
	b = v->b;
	c = v->c;
	bpf_spin_unlock(&v->lock);
	return b == 2 * a && c == 3 * a;
}

static int timer_cb(void *map, __u32 *key, struct timer_val *v)
{
	v->fired = 1;
	__sync_fetch_and_add(&v->runs, 1);
	return 0;
}

SEC("syscall")
int timer_arm(void *ctx)
{
	struct timer_val *v;
	__u32 zero = 0;
	long err;

	v = bpf_map_lookup_elem(&timers, &zero);
	if (!v)
		return -2;
	err = bpf_timer_init(&v->timer, &timers, CLOCK_MONOTONIC);
	if (err && err != -16)	/* -EBUSY: already initialized by an earlier run */
		return err;
	err = bpf_timer_set_callback(&v->timer, timer_cb);
	if (err)
		return err;
	return bpf_timer_start(&v->timer, 1000000, 0);
}

char LICENSE[] SEC("license") = "GPL";
