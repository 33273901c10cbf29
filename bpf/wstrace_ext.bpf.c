// SPDX-License-Identifier: GPL-2.0
/*
 * Richer hooks, for kernels that allow them: fentry/fexit where BPF
 * trampolines are permitted, kprobes where they are not. The loader loads
 * each variant group on its own (one failing never blocks another), sharing
 * the core object's maps, and falls back from fentry to kprobe to nothing.
 *
 * - tcp_conn_request: SYN-stage listen drops, exact per listener, with cause.
 * - tcp_v4/v6_syn_recv_sock returning NULL on a full queue: ACK-stage
 *   overflow on kernels without SKB_DROP_REASON_TCP_LISTEN_OVERFLOW.
 * - inet_csk_accept: accept-queue residency (enqueue to accept()).
 * - inet_csk_complete_hashdance: the accept queue, before sk_data_ready (6.3).
 * - tcp_v4/v6_send_reset: resets with no socket, on kernels whose
 *   tcp_send_reset tracepoint does not fire for them (before 6.10).
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kernel.h"
#include "wstrace.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/* ---- SYN stage: tcp_conn_request(rsk_ops, af_ops, sk, skb) ---- */

/* The listener's state at entry; the exit compares its drop counter. */
struct conn_entry {
	__u64 sk;
	__u64 skb;
	__u32 drops;
	__u32 cause;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conn_entry);
} conn_at SEC(".maps");

/*
 * Mirrors tcp_conn_request's checks, in its order: a full accept queue drops
 * (ListenOverflows); a full SYN queue drops unless syncookies are on; with
 * syncookies off, a SYN queue three-quarters full drops unproven peers.
 */
static __always_inline __u32 syn_cause(const struct sock *sk)
{
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
	__u32 depth = BPF_CORE_READ(sk, sk_ack_backlog);
	__u32 limit = BPF_CORE_READ(sk, sk_max_ack_backlog);
	struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	struct netns_ipv4 *v4 = __builtin_preserve_access_index(&net->ipv4);
	__u32 qlen = BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
	__u32 cookies = BPF_CORE_READ_BITFIELD_PROBED(v4, sysctl_tcp_syncookies);
	__u32 max_syn = BPF_CORE_READ_BITFIELD_PROBED(v4, sysctl_max_syn_backlog);

	if (depth > limit)
		return WST_SYN_CAUSE_ACCEPT_QUEUE_FULL;
	if (qlen >= limit && cookies == 0)
		return WST_SYN_CAUSE_SYN_QUEUE_FULL;
	if (cookies == 0 && max_syn - qlen < (max_syn >> 2))
		return WST_SYN_CAUSE_UNPROVEN_PEER;
	return WST_SYN_CAUSE_OTHER;
}

static __always_inline void syn_entry(const struct sock *sk, const struct sk_buff *skb)
{
	__u32 zero = 0;
	struct conn_entry *c = bpf_map_lookup_elem(&conn_at, &zero);

	if (!c)
		return;
	c->sk = (__u64)(unsigned long)sk;
	c->skb = (__u64)(unsigned long)skb;
	c->drops = BPF_CORE_READ(sk, sk_drops.counter);
	c->cause = syn_cause(sk);
}

/* Every drop path of tcp_conn_request ends in tcp_listendrop(): sk_drops + 1. */
static __always_inline void syn_exit(const struct sock *sk)
{
	__u32 zero = 0;
	struct conn_entry *c = bpf_map_lookup_elem(&conn_at, &zero);
	struct wst_listener_val *v;
	struct wst_event e = {};
	__u32 cause;
	__u64 now;

	if (!c || c->sk != (__u64)(unsigned long)sk)
		return;
	c->sk = 0;
	if ((__u32)BPF_CORE_READ(sk, sk_drops.counter) == c->drops)
		return;
	cause = c->cause & (WST_SYN_CAUSE__MAX - 1);
	if (!sk_tuple(sk, &e, true, false))
		return;
	e.queue = BPF_CORE_READ(sk, sk_ack_backlog);
	e.backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	count(WST_CNT_SYN_DROP);
	v = listener_entry(&e, sk, false);
	if (!v)
		return;
	__sync_fetch_and_add(&v->syn_drops[cause], 1);
	now = bpf_ktime_get_ns();
	if (now - v->last_syn_event_ns < full_event_interval_ns)
		return;
	v->last_syn_event_ns = now;

	/* The peer, from the SYN itself. */
	struct wst_event peer = {};
	if (c->skb && skb_addrs((const struct sk_buff *)c->skb, &peer, false)) {
		__builtin_memcpy(e.raddr, peer.raddr, 16);
		e.rport = peer.rport;
	}
	e.inode = sk_inode(sk, false);
	e.kind = WST_SYN_DROP;
	e.reason = cause;
	e.ts_ns = now;
	emit(&e, WST_KEEP_LPORT);
}

SEC("fentry/tcp_conn_request")
int BPF_PROG(wst_conn_req_fentry, void *rsk_ops, void *af_ops, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_CONN_REQ_FENTRY);
	syn_entry(sk, skb);
	return 0;
}

SEC("fexit/tcp_conn_request")
int BPF_PROG(wst_conn_req_fexit, void *rsk_ops, void *af_ops, struct sock *sk, struct sk_buff *skb, int ret)
{
	hit(WST_P_CONN_REQ_FEXIT);
	syn_exit(sk);
	return 0;
}

SEC("kprobe/tcp_conn_request")
int BPF_KPROBE(wst_conn_req_kprobe, void *rsk_ops, void *af_ops, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_CONN_REQ_KPROBE);
	syn_entry(sk, skb);
	return 0;
}

SEC("kretprobe/tcp_conn_request")
int BPF_KRETPROBE(wst_conn_req_kretprobe)
{
	__u32 zero = 0;
	struct conn_entry *c = bpf_map_lookup_elem(&conn_at, &zero);

	hit(WST_P_CONN_REQ_KRETPROBE);
	if (c && c->sk)
		syn_exit((const struct sock *)c->sk);
	return 0;
}

/* ---- ACK stage: tcp_vX_syn_recv_sock(sk, skb, req, dst, req_unhash, own_req) ---- */

struct synrecv_entry {
	__u64 sk;
	__u64 skb;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct synrecv_entry);
} synrecv_at SEC(".maps");

static __always_inline bool skb_is_ipv4(const struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u8 ver = 0;

	bpf_probe_read_kernel(&ver, 1, head + nh);
	return (ver >> 4) == 4;
}

/* No child and a full queue: the final ACK met a full accept queue. */
static __always_inline void synrecv_exit(const struct sock *sk, const struct sk_buff *skb, __u64 child, bool v6_entry)
{
	struct wst_listener_val *v;
	struct wst_event e = {}, peer = {};

	/* syn_drop's tracepoint route counts the ACK stage itself (cookie ACKs too). */
	if (child || switch_on(listen_drops_settled))
		return;
	/* tcp_v6_syn_recv_sock hands IPv4 packets to tcp_v4_syn_recv_sock: count once. */
	if (v6_entry && skb_is_ipv4(skb))
		return;
	e.queue = BPF_CORE_READ(sk, sk_ack_backlog);
	e.backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	if (e.queue <= e.backlog)
		return;
	if (!sk_tuple(sk, &e, true, false))
		return;
	if (skb_addrs(skb, &peer, false)) {
		__builtin_memcpy(e.raddr, peer.raddr, 16);
		e.rport = peer.rport;
	}
	e.inode = sk_inode(sk, false);
	e.kind = WST_LISTEN_OVERFLOW;
	e.reason = WST_NO_REASON;
	count(WST_CNT_LISTEN_OVERFLOW);
	v = listener_entry(&e, sk, false);
	if (v)
		__sync_fetch_and_add(&v->overflows, 1);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, WST_KEEP_LPORT);
}

/* The return value via bpf_get_func_ret: the argument count differs between kernels. */
SEC("fexit/tcp_v4_syn_recv_sock")
int BPF_PROG(wst_synrecv4_fexit, struct sock *sk, struct sk_buff *skb)
{
	__u64 ret = 0;

	hit(WST_P_SYNRECV_FEXIT);
	bpf_get_func_ret(ctx, &ret);
	synrecv_exit(sk, skb, ret, false);
	return 0;
}

SEC("fexit/tcp_v6_syn_recv_sock")
int BPF_PROG(wst_synrecv6_fexit, struct sock *sk, struct sk_buff *skb)
{
	__u64 ret = 0;

	hit(WST_P_SYNRECV_FEXIT);
	bpf_get_func_ret(ctx, &ret);
	synrecv_exit(sk, skb, ret, true);
	return 0;
}

static __always_inline void synrecv_enter(const struct sock *sk, const struct sk_buff *skb)
{
	__u32 zero = 0;
	struct synrecv_entry *s = bpf_map_lookup_elem(&synrecv_at, &zero);

	hit(WST_P_SYNRECV_KPROBE);
	if (s) {
		s->sk = (__u64)(unsigned long)sk;
		s->skb = (__u64)(unsigned long)skb;
	}
}

static __always_inline void synrecv_return(__u64 child, bool v6_entry)
{
	__u32 zero = 0;
	struct synrecv_entry *s = bpf_map_lookup_elem(&synrecv_at, &zero);

	hit(WST_P_SYNRECV_KRETPROBE);
	if (!s || !s->sk)
		return;
	synrecv_exit((const struct sock *)s->sk, (const struct sk_buff *)s->skb, child, v6_entry);
	s->sk = 0;
}

SEC("kprobe/tcp_v4_syn_recv_sock")
int BPF_KPROBE(wst_synrecv4_kprobe, struct sock *sk, struct sk_buff *skb)
{
	synrecv_enter(sk, skb);
	return 0;
}

SEC("kretprobe/tcp_v4_syn_recv_sock")
int BPF_KRETPROBE(wst_synrecv4_kretprobe, void *ret)
{
	synrecv_return((__u64)(unsigned long)ret, false);
	return 0;
}

SEC("kprobe/tcp_v6_syn_recv_sock")
int BPF_KPROBE(wst_synrecv6_kprobe, struct sock *sk, struct sk_buff *skb)
{
	synrecv_enter(sk, skb);
	return 0;
}

SEC("kretprobe/tcp_v6_syn_recv_sock")
int BPF_KRETPROBE(wst_synrecv6_kretprobe, void *ret)
{
	synrecv_return((__u64)(unsigned long)ret, true);
	return 0;
}

/* ---- Accept-queue residency: inet_csk_accept returns the child ---- */

static __always_inline void accepted(__u64 child)
{
	struct wst_enqueued *q;
	struct wst_residency zero = {}, *r;
	__u64 wait_us;
	__u32 bucket = 0;

	if (!child)
		return;
	q = bpf_map_lookup_elem(&enqueued, &child);
	if (!q)
		return;
	__u64 wait_ns = bpf_ktime_get_ns() - q->ts_ns;
	struct wst_listener_key key = q->listener;
	bpf_map_delete_elem(&enqueued, &child);

	wait_us = wait_ns / 1000;
#pragma unroll
	for (int i = 0; i < WST_RESIDENCY_BUCKETS - 1; i++) {
		if (wait_us >> (i + 1))
			bucket = i + 1;
	}
	r = bpf_map_lookup_elem(&residency, &key);
	if (!r) {
		bpf_map_update_elem(&residency, &key, &zero, BPF_NOEXIST);
		r = bpf_map_lookup_elem(&residency, &key);
		if (!r) {
			count(WST_CNT_MAP_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&r->buckets[bucket & (WST_RESIDENCY_BUCKETS - 1)], 1);
	__sync_fetch_and_add(&r->count, 1);
	__sync_fetch_and_add(&r->sum_ns, wait_ns);
	count(WST_CNT_ACCEPTED);
}

/* The return value is read with bpf_get_func_ret: the argument list changed in 6.10. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(wst_accept_fexit)
{
	__u64 ret = 0;

	hit(WST_P_ACCEPT_FEXIT);
	bpf_get_func_ret(ctx, &ret);
	accepted(ret);
	return 0;
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(wst_accept_kretprobe, void *ret)
{
	hit(WST_P_ACCEPT_KRETPROBE);
	accepted((__u64)(unsigned long)ret);
	return 0;
}

/*
 * ---- Accept queue on kernels without the sk_data_ready tracepoint (< 6.3):
 * inet_csk_complete_hashdance(sk, child, req, own_req) queues child on
 * listener sk and returns it (the helper it calls to queue is inlined) ----
 */
SEC("fexit/inet_csk_complete_hashdance")
int BPF_PROG(wst_queue_add_fexit, struct sock *sk, struct sock *child)
{
	__u64 ret = 0;

	hit(WST_P_QUEUE_ADD_FEXIT);
	bpf_get_func_ret(ctx, &ret);
	if (ret && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN)
		on_enqueue(sk, child, false, BPF_CORE_READ(sk, sk_ack_backlog), false);
	return 0;
}

/* At entry the child is not queued yet: it will be the one more (when own_req). */
SEC("kprobe/inet_csk_complete_hashdance")
int BPF_KPROBE(wst_queue_add_kprobe, struct sock *sk, struct sock *child, void *req, bool own_req)
{
	hit(WST_P_QUEUE_ADD_KPROBE);
	if (own_req && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN)
		on_enqueue(sk, child, false, BPF_CORE_READ(sk, sk_ack_backlog) + 1, false);
	return 0;
}

/* ---- Resets from tcp_vX_send_reset(sk, skb), sk NULL for no socket ---- */

static __always_inline void send_reset(const struct sock *sk, const struct sk_buff *skb)
{
	struct wst_event e = {};
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 flags = 0;

	/* The function returns at once, sending nothing, for a reset: so do we. */
	bpf_probe_read_kernel(&flags, 1, head + th + 13);
	if (flags & 0x04)
		return;
	/* A listener's, request's or timewait's reset takes both ends from the packet, as the tracepoint's does. */
	if (!reset_tuple(sk, skb, &e, false))
		return;
	if (sk && e.state == TCP_CLOSE) {
		/* Closed just before (data on an orphan, linger2 < 0): say what it left. */
		__u8 from = closed_take(sk, false);

		if (from)
			e.state = from;
	}
	e.kind = WST_RESET_SENT;
	e.reason = WST_NO_REASON;
	int fold = count_reset(&e);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, fold);
}

SEC("fentry/tcp_v4_send_reset")
int BPF_PROG(wst_send_reset4_fentry, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_SEND_RESET_FENTRY);
	send_reset(sk, skb);
	return 0;
}

SEC("fentry/tcp_v6_send_reset")
int BPF_PROG(wst_send_reset6_fentry, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_SEND_RESET_FENTRY);
	send_reset(sk, skb);
	return 0;
}

SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(wst_send_reset4_kprobe, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_SEND_RESET_KPROBE);
	send_reset(sk, skb);
	return 0;
}

SEC("kprobe/tcp_v6_send_reset")
int BPF_KPROBE(wst_send_reset6_kprobe, struct sock *sk, struct sk_buff *skb)
{
	hit(WST_P_SEND_RESET_KPROBE);
	send_reset(sk, skb);
	return 0;
}
