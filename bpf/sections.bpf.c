// SPDX-License-Identifier: GPL-2.0
/*
 * sections.bpf.c - feeds the section-name -> program-type table tests:
 * one trivial program per section name.  For parsing only: the object does
 * not load as a whole (fentry/fexit/lsm are refused on the test machines,
 * uprobe/tp_btf/iter need attach targets resolved at load time).
 *
 * Each program returns the constant shown (0 unless the program type
 * needs something else to pass the verifier).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TRIVIAL(sec, name, ret)			\
	SEC(sec) int name(void *ctx)		\
	{					\
		return ret;			\
	}

TRIVIAL("socket",				p_socket,	0)
TRIVIAL("xdp",					p_xdp,		XDP_PASS)
TRIVIAL("tc",					p_tc,		0)
TRIVIAL("classifier",				p_classifier,	0)
TRIVIAL("kprobe/do_nanosleep",			p_kprobe,	0)
TRIVIAL("kretprobe/do_nanosleep",		p_kretprobe,	0)
TRIVIAL("uprobe//bin/true:main",		p_uprobe,	0)
TRIVIAL("tracepoint/syscalls/sys_enter_getpid",	p_tracepoint,	0)
TRIVIAL("tp/syscalls/sys_enter_getppid",	p_tp,		0)
TRIVIAL("raw_tracepoint/sys_enter",		p_raw_tracept,	0)
TRIVIAL("raw_tp/sys_exit",			p_raw_tp,	0)
TRIVIAL("perf_event",				p_perf_event,	0)
TRIVIAL("cgroup_skb/ingress",			p_cgskb_ingress, 1)
TRIVIAL("cgroup_skb/egress",			p_cgskb_egress,	1)
TRIVIAL("cgroup/sock",				p_cgroup_sock,	1)
TRIVIAL("sk_skb/stream_parser",			p_skskb_parser,	0)
TRIVIAL("sk_skb/stream_verdict",		p_skskb_verdict, 1)
TRIVIAL("sk_msg",				p_sk_msg,	1)
TRIVIAL("lwt_in",				p_lwt_in,	0)
TRIVIAL("tp_btf/sched_switch",			p_tp_btf,	0)
TRIVIAL("iter/task",				p_iter_task,	0)
TRIVIAL("fentry/do_nanosleep",			p_fentry,	0)
TRIVIAL("fexit/do_nanosleep",			p_fexit,	0)
TRIVIAL("lsm/file_open",			p_lsm,		0)
TRIVIAL("syscall",				p_syscall,	0)

char LICENSE[] SEC("license") = "GPL";
