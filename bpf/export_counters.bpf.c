// SPDX-License-Identifier: GPL-2.0
/*
 * export_counters.bpf.c - feeds the Prometheus exporter tests (bpfload export).
 *
 * One program, export_count (SEC("syscall"), run with BPF_PROG_TEST_RUN),
 * takes a struct export_args as its ctx and records one "packet":
 *
 *   flows: PERCPU_HASH, struct flow_key -> struct flow_val
 *          key  {ifindex, port (network byte order), proto, kind (enum flow_kind)}
 *          value {packets += 1, bytes += args.bytes}      (summed over CPUs by the exporter)
 *   lat:   HASH, struct lat_key {op, slot} -> u64 count    (ebpf_exporter's layout:
 *          the last key field is a log2 bucket: slot = the smallest k with
 *          latency <= 2^k, so slot k counts latencies in (2^(k-1), 2^k])
 *   sizes: ARRAY of 8 u64, key = linear bucket index min(bytes / 256, 7)
 *          (BCC's layout: the whole key is the bucket)
 *   cgroups: HASH, u64 cgroup id (bpf_get_current_cgroup_id) -> u64 count
 *   syms:  HASH, u64 kernel address -> u64 (written only from user space: the
 *          ksym decoder test)
 *
 * Returns the log2 slot it used (so a test can check the bucketing).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum flow_kind {
	KIND_NORMAL = 0,
	KIND_RETRANS = 1,
	KIND_DROP = 2,
};

struct flow_key {
	__u32 ifindex;
	__u16 port;		/* network byte order */
	__u8 proto;
	__u8 kind;		/* enum flow_kind */
};

struct flow_val {
	__u64 packets;
	__u64 bytes;
};

struct lat_key {
	__u32 op;
	__u32 slot;
};

struct export_args {
	__u32 ifindex;
	__u16 port;		/* network byte order */
	__u8 proto;
	__u8 kind;
	__u32 op;
	__u32 bytes;
	__u64 latency;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lat_key);
	__type(value, __u64);
} lat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} sizes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} syms SEC(".maps");

/* keeps enum flow_kind in the BTF (the exporter's kind label uses its names) */
enum flow_kind export_kind_anchor SEC(".data") = KIND_NORMAL;

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 k = 0;

	/* smallest k with v <= 2^k (0 and 1 go to slot 0) */
	for (int i = 0; i < 63; i++) {
		if (v <= (1ULL << k))
			break;
		k++;
	}
	return k;
}

static __always_inline void add(void *map, const void *key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, key), zero = 0;

	if (!v) {
		/* NOEXIST: a CPU that created it first keeps its entry */
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(v, n);
}

SEC("syscall")
int export_count(struct export_args *a)
{
	struct flow_key fk = {
		.ifindex = a->ifindex, .port = a->port, .proto = a->proto, .kind = a->kind,
	};
	struct lat_key lk = { .op = a->op };
	struct flow_val *fv, init = {};
	__u32 sz = a->bytes / 256;
	__u64 cg = bpf_get_current_cgroup_id();
	__u64 *s;

	fv = bpf_map_lookup_elem(&flows, &fk);
	if (!fv) {
		bpf_map_update_elem(&flows, &fk, &init, BPF_NOEXIST);
		fv = bpf_map_lookup_elem(&flows, &fk);
		if (!fv)
			return -1;
	}
	fv->packets += 1;		/* this CPU's copy of the value: no other writer */
	fv->bytes += a->bytes;

	lk.slot = log2_slot(a->latency);
	add(&lat, &lk, 1);

	if (sz > 7)
		sz = 7;
	s = bpf_map_lookup_elem(&sizes, &sz);
	if (s)
		__sync_fetch_and_add(s, 1);

	add(&cgroups, &cg, 1);
	return lk.slot;
}

char LICENSE[] SEC("license") = "GPL";
