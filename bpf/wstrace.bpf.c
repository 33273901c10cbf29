// SPDX-License-Identifier: GPL-2.0
/*
 * wstrace kernel side: accept-queue fill, ACK-stage listen overflows, TCP
 * resets sent and received, TIME_WAIT creation. Exact counts go to maps
 * (read by polling); detail goes to a ring buffer that may drop under a
 * flood, and every drop is counted.
 *
 * Only raw tracepoints: they need no tracefs and load on every kernel this
 * project supports. Arguments are the tracepoints' TP_PROTO, in order.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kernel.h"
#include "wstrace.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * What happened to a socket just before it closed. The kernel moves a socket
 * to CLOSE and sends a reset (or gets one, then closes) in one call chain, but
 * on loopback the peer's packets can be processed in between, so this is kept
 * per socket, not per CPU:
 * - a close right after a reset on the same socket is not a TIME_WAIT entry;
 * - a reset sent by a socket just moved to CLOSE reports the state it left.
 * Entries are only trusted for a moment and for the same connection: a socket
 * freed and its memory reused by another must not inherit the memo.
 */
struct closing {
	__u64 ts_ns;
	__u64 ident;		/* sk_ident(): a new socket at the same address differs */
	__u32 close_from;	/* state left when moved to CLOSE, 0 if not yet */
	__u32 reset_seen;
};

#define CLOSING_VALID_NS 100000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct closing);
} closing SEC(".maps");

/* The connection a full socket carries: its ports (and IPv4 peer), all kept through CLOSE. */
static __always_inline __u64 sk_ident(const struct sock *sk)
{
	__u64 ports = ((__u32)BPF_CORE_READ(sk, __sk_common.skc_dport) << 16) |
		      BPF_CORE_READ((struct inet_sock *)sk, inet_sport);

	return (ports << 32) | BPF_CORE_READ(sk, __sk_common.skc_daddr);
}

static __always_inline void closing_forget(const struct sock *sk)
{
	__u64 key = (__u64)(unsigned long)sk;

	bpf_map_delete_elem(&closing, &key);
}

static __always_inline struct closing *closing_get(const struct sock *sk)
{
	__u64 key = (__u64)(unsigned long)sk;
	struct closing *c = bpf_map_lookup_elem(&closing, &key);

	if (c && (bpf_ktime_get_ns() - c->ts_ns > CLOSING_VALID_NS || c->ident != sk_ident(sk))) {
		bpf_map_delete_elem(&closing, &key);
		return 0;
	}
	return c;
}

/*
 * A reset on a socket still open: the close that follows is the reset's, not
 * a TIME_WAIT entry. Only FIN_WAIT2 and CLOSING need saying so: a close from
 * any other state is no TIME_WAIT entry anyway (and listeners, requests and
 * timewaits are not closed by a reset). That keeps the memo, an LRU update,
 * off the common resets (refused connects, aborted established ones).
 */
static __always_inline void note_reset(const struct sock *sk, __u8 state)
{
	__u64 key = (__u64)(unsigned long)sk;
	struct closing c = { .ts_ns = bpf_ktime_get_ns(), .reset_seen = 1 };

	if (state != TCP_FIN_WAIT2 && state != TCP_CLOSING)
		return;
	c.ident = sk_ident(sk);
	bpf_map_update_elem(&closing, &key, &c, BPF_ANY);
}

/* tcp_send_reset(sk, skb) before 6.10; (sk, skb, reason) from 6.10, with sk NULL allowed. */
SEC("raw_tp/tcp_send_reset")
int wst_rst_sent(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	const struct sk_buff *skb = (const struct sk_buff *)ctx->args[1];
	struct wst_event e = {};

	hit(WST_P_RST_SENT);
	/* With the send-reset functions hooked, those resets are counted there. */
	if (skb && switch_on(reset_fn_hooked))
		return 0;
	e.kind = WST_RESET_SENT;
	e.reason = WST_NO_REASON;
	if (bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason))
		e.reason = (__u32)ctx->args[2];

	if (sk) {
		sk_tuple(sk, &e);
		if (!netns_wanted(e.netns) || !port_wanted(e.lport, e.rport))
			return 0;
		if (e.state == TCP_CLOSE) {
			/* Closed just before (linger 0, unread data): say what it left; nothing follows. */
			struct closing *c = closing_get(sk);

			if (c) {
				if (c->close_from)
					e.state = c->close_from;
				closing_forget(sk);
			}
		} else {
			note_reset(sk, e.state);
		}
	} else if (!skb || !skb_tuple(skb, &e) || !netns_wanted(e.netns) || !port_wanted(e.lport, e.rport)) {
		return 0;
	}
	count_reset(&e);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e);
	return 0;
}

/* tcp_receive_reset(sk): the kernel gives no reason; the state is the story. */
SEC("raw_tp/tcp_receive_reset")
int wst_rst_recv(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	struct wst_event e = {};

	hit(WST_P_RST_RECV);
	if (!sk)
		return 0;
	e.kind = WST_RESET_RECEIVED;
	e.reason = WST_NO_REASON;
	sk_tuple(sk, &e);
	if (!netns_wanted(e.netns) || !port_wanted(e.lport, e.rport))
		return 0;
	note_reset(sk, e.state);
	count_reset(&e);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e);
	return 0;
}

/*
 * inet_sock_set_state(sk, old, new). The timewait socket itself never passes
 * here: tcp_time_wait() creates it, then tcp_done() moves the full socket from
 * FIN_WAIT2 or CLOSING to CLOSE. That move, when no reset caused it, is one
 * TIME_WAIT entry.
 */
SEC("raw_tp/inet_sock_set_state")
int wst_timewait(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	int oldstate = (int)ctx->args[1];
	int newstate = (int)ctx->args[2];
	struct wst_event e = {};
	bool after_reset = false;

	hit(WST_P_TIMEWAIT);
	if (newstate != TCP_CLOSE || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    !netns_wanted(sk_netns(sk)))
		return 0;
	struct closing *c = closing_get(sk);
	if (c) {
		after_reset = c->reset_seen;
		closing_forget(sk);
	} else if ((1 << oldstate) & ((1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT) | (1 << TCP_FIN_WAIT1) | (1 << TCP_SYN_RECV))) {
		/*
		 * A reset may follow in this call chain (abort, linger 0, unread
		 * data): the kernel's tcp_need_reset() states. Not after SYN_SENT,
		 * LAST_ACK or the TIME_WAIT states, so a storm of refused or
		 * passively closed connections costs no memo.
		 */
		__u64 key = (__u64)(unsigned long)sk;
		struct closing n = { .ts_ns = bpf_ktime_get_ns(), .close_from = oldstate, .ident = sk_ident(sk) };

		bpf_map_update_elem(&closing, &key, &n, BPF_ANY);
	}
	if (after_reset || (oldstate != TCP_FIN_WAIT2 && oldstate != TCP_CLOSING))
		return 0;

	e.kind = WST_TIMEWAIT;
	e.reason = WST_NO_REASON;
	sk_tuple(sk, &e);
	e.state = oldstate;
	if (!port_wanted(e.lport, e.rport))
		return 0;

	struct wst_tw_key k = { .netns = e.netns, .rport = e.rport, .family = e.family };
	__builtin_memcpy(k.raddr, e.raddr, 16);
	count(WST_CNT_TIMEWAIT);
	add_keyed(&timewaits, &k);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e);
	return 0;
}

/*
 * sk_data_ready(sk) on a listener: a child was just queued, at the queue's
 * tail. The kernel refuses new connections while depth > limit
 * (sk_acceptq_is_full), so an enqueue that leaves depth > limit is a "full"
 * sighting.
 */
SEC("raw_tp/sk_data_ready")
int wst_acceptq(struct bpf_raw_tracepoint_args *ctx)
{
	const struct sock *sk = (const struct sock *)ctx->args[0];
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
	struct request_sock *req;

	hit(WST_P_ACCEPTQ);
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN ||
	    BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	req = BPF_CORE_READ(icsk, icsk_accept_queue.rskq_accept_tail);
	on_enqueue(sk, req ? BPF_CORE_READ(req, sk) : 0, BPF_CORE_READ(sk, sk_ack_backlog));
	return 0;
}

/*
 * kfree_skb(skb, location, reason, rx_sk): the final ACK of a handshake met a
 * full accept queue. rx_sk is the listener (skb->sk is not set there). The
 * drop reason exists from 6.15; rx_sk from 6.11. Older kernels prune this.
 */
SEC("raw_tp/kfree_skb")
int wst_listen_ovf(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_LISTEN_OVF);
	if (!bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW))
		return 0;
	if ((__u32)ctx->args[2] != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW))
		return 0;

	const struct sk_buff *skb = (const struct sk_buff *)ctx->args[0];
	const struct sock *lsk = (const struct sock *)ctx->args[3];
	struct wst_listener_val *v;
	struct wst_event e = {};

	if (!skb_tuple(skb, &e))
		return 0;
	if (lsk) {
		/* Key by the listener's bound address, as wst_acceptq does. */
		struct wst_event l = {};

		sk_tuple(lsk, &l);
		__builtin_memcpy(e.laddr, l.laddr, 16);
		e.family = l.family;
		e.lport = l.lport;
		e.netns = l.netns;
		e.queue = BPF_CORE_READ(lsk, sk_ack_backlog);
		e.backlog = BPF_CORE_READ(lsk, sk_max_ack_backlog);
		e.inode = sk_inode(lsk);
		e.state = TCP_LISTEN;
	}
	if (!netns_wanted(e.netns) || !port_wanted(e.lport, 0))
		return 0;
	e.kind = WST_LISTEN_OVERFLOW;
	e.reason = (__u32)ctx->args[2];
	count(WST_CNT_LISTEN_OVERFLOW);
	v = listener_entry(&e, e.inode);
	if (v)
		__sync_fetch_and_add(&v->overflows, 1);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e);
	return 0;
}
