// SPDX-License-Identifier: GPL-2.0
/*
 * wstrace kernel side: accept-queue fill, ACK-stage listen overflows, TCP
 * resets sent and received, TIME_WAIT creation. Exact counts go to maps
 * (read by polling); detail goes to a ring buffer that may drop under a
 * flood, and every drop is counted.
 *
 * Tracepoints only, as BTF-typed ones (tp_btf: fields are plain loads) with
 * raw tracepoints for kernels that refuse those; neither needs tracefs. Each
 * hook's body is written once and inlined into both programs, which pass
 * their arguments (the tracepoint's TP_PROTO, in order) and whether fields
 * can be read directly. The loader loads the variant it attaches, not both.
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
 * A reset received by a socket in FIN_WAIT2 or CLOSING closes it: that close
 * is the reset's, not a TIME_WAIT entry, and TIME_WAIT is counted exactly,
 * so this memo is kept per socket (an LRU entry), not per CPU: on loopback
 * the peer's packets can be processed in between. Entries are only trusted
 * for a moment and for the same connection: a socket freed and its memory
 * reused by another must not inherit the memo.
 */
struct closing {
	__u64 ts_ns;
	__u64 ident;		/* sk_ident(): a new socket at the same address differs */
};

#define CLOSING_VALID_NS 100000000ULL

/* Each CPU evicts from its own LRU list: no lock shared by every CPU's closes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u64);
	__type(value, struct closing);
} closing SEC(".maps");

/* The connection a full socket carries: its ports (and IPv4 peer), all kept through CLOSE. */
static __always_inline __u64 sk_ident(const struct sock *sk, bool direct)
{
	__u64 ports = ((__u32)RD(direct, sk, __sk_common.skc_dport) << 16) |
		      BPF_CORE_READ((struct inet_sock *)sk, inet_sport);

	return (ports << 32) | RD(direct, sk, __sk_common.skc_daddr);
}

/* True (and the memo gone) when a reset was just noted on this connection. */
static __always_inline bool closing_take(const struct sock *sk, bool direct)
{
	__u64 key = (__u64)(unsigned long)sk;
	struct closing *c = bpf_map_lookup_elem(&closing, &key);
	bool fresh;

	if (!c)
		return false;
	fresh = bpf_ktime_get_ns() - c->ts_ns <= CLOSING_VALID_NS && c->ident == sk_ident(sk, direct);
	bpf_map_delete_elem(&closing, &key);
	return fresh;
}

/*
 * A reset on a socket still open: the close that follows is the reset's.
 * Only FIN_WAIT2 and CLOSING need saying so: a close from any other state is
 * no TIME_WAIT entry anyway (and listeners, requests and timewaits are not
 * closed by a reset). That keeps the memo off the common resets (refused
 * connects, aborted established ones).
 */
static __always_inline void note_reset(const struct sock *sk, __u8 state, bool direct)
{
	__u64 key = (__u64)(unsigned long)sk;
	struct closing c;

	if (state != TCP_FIN_WAIT2 && state != TCP_CLOSING)
		return;
	c.ts_ns = bpf_ktime_get_ns();
	c.ident = sk_ident(sk, direct);
	bpf_map_update_elem(&closing, &key, &c, BPF_ANY);
}

/*
 * The state a socket left when moved to CLOSE, for the reset the kernel
 * sends right after it in the same call (tcp_disconnect(), tcp_close() with
 * linger 0 or unread data), so that reset can say what it aborted. Only an
 * interrupt runs between the two, so a few slots per CPU hold it: a store,
 * where an LRU entry per socket cost more than the rest of the close. Were
 * the task moved to another CPU in between (full preemption), that reset
 * shows state CLOSE: its count is kept, only the state it left is lost.
 */
#define CLOSED_SLOTS 4

struct closed_from {
	__u64 sk[CLOSED_SLOTS];
	__u64 ident[CLOSED_SLOTS];	/* skc_daddr, skc_dport: another connection at the same address differs */
	__u8 state[CLOSED_SLOTS];
	__u32 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct closed_from);
} closed SEC(".maps");

static __always_inline __u64 conn_ident(const struct sock *sk, bool direct)
{
	return ((__u64)RD(direct, sk, __sk_common.skc_daddr) << 16) | RD(direct, sk, __sk_common.skc_dport);
}

static __always_inline void closed_put(const struct sock *sk, __u8 state, bool direct)
{
	__u32 zero = 0;
	struct closed_from *c = bpf_map_lookup_elem(&closed, &zero);
	__u32 i;

	if (!c)
		return;
	/* Claim the slot before filling it: an interrupt's close on this CPU takes the next one. */
	i = c->next++ % CLOSED_SLOTS;
	c->sk[i] = (__u64)(unsigned long)sk;
	c->ident[i] = conn_ident(sk, direct);
	c->state[i] = state;
}

/* The state sk left on its way to CLOSE just now on this CPU, or 0; the slot is spent. */
static __always_inline __u8 closed_take(const struct sock *sk, bool direct)
{
	__u32 zero = 0;
	struct closed_from *c = bpf_map_lookup_elem(&closed, &zero);
	__u64 key = (__u64)(unsigned long)sk;

	if (!c)
		return 0;
#pragma unroll
	for (int i = 0; i < CLOSED_SLOTS; i++) {
		if (c->sk[i] == key) {
			c->sk[i] = 0;
			return c->ident[i] == conn_ident(sk, direct) ? c->state[i] : 0;
		}
	}
	return 0;
}

/* tcp_send_reset(sk, skb) before 6.10; (sk, skb, reason) from 6.10, with sk NULL allowed. */
static __always_inline void on_reset_sent(const struct sock *sk, const struct sk_buff *skb, __u64 reason, bool direct)
{
	struct wst_event e = {};

	/* With the send-reset functions hooked, those resets are counted there. */
	if (skb && switch_on(reset_fn_hooked))
		return;
	e.kind = WST_RESET_SENT;
	e.reason = WST_NO_REASON;
	if (bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason))
		e.reason = (__u32)reason;

	if (sk) {
		if (!sk_tuple(sk, &e, false, direct))
			return;
		if (e.state == TCP_CLOSE) {
			/* Closed just before (linger 0, unread data): say what it left. */
			__u8 from = closed_take(sk, direct);

			if (from)
				e.state = from;
		} else {
			note_reset(sk, e.state, direct);
		}
	} else if (!skb || !no_socket_wanted() || !skb_tuple(skb, &e, direct) || !port_wanted(e.lport, e.rport)) {
		return;
	}
	int fold = count_reset(&e);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, fold);
}

SEC("tp_btf/tcp_send_reset")
int wst_rst_sent_btf(__u64 *ctx)
{
	hit(WST_P_RST_SENT_BTF);
	/* ctx[2] is read only where the reason exists: the verifier drops the read elsewhere. */
	on_reset_sent((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1],
		      bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason) ? ctx[2] : 0, true);
	return 0;
}

SEC("raw_tp/tcp_send_reset")
int wst_rst_sent(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_RST_SENT);
	on_reset_sent((const struct sock *)ctx->args[0], (const struct sk_buff *)ctx->args[1],
		      bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason) ? ctx->args[2] : 0, false);
	return 0;
}

/* tcp_receive_reset(sk): the kernel gives no reason; the state is the story. */
static __always_inline void on_reset_received(const struct sock *sk, bool direct)
{
	struct wst_event e = {};

	if (!sk)
		return;
	e.kind = WST_RESET_RECEIVED;
	e.reason = WST_NO_REASON;
	if (!sk_tuple(sk, &e, false, direct))
		return;
	note_reset(sk, e.state, direct);
	int fold = count_reset(&e);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, fold);
}

SEC("tp_btf/tcp_receive_reset")
int wst_rst_recv_btf(__u64 *ctx)
{
	hit(WST_P_RST_RECV_BTF);
	on_reset_received((const struct sock *)ctx[0], true);
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int wst_rst_recv(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_RST_RECV);
	on_reset_received((const struct sock *)ctx->args[0], false);
	return 0;
}

/* The states whose move to CLOSE a reset may follow in the same call chain (tcp_need_reset()). */
#define WST_RESET_MAY_FOLLOW ((1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT) | (1 << TCP_FIN_WAIT1) | (1 << TCP_SYN_RECV))

/*
 * inet_sock_set_state(sk, old, new). The timewait socket itself never passes
 * here: tcp_time_wait() creates it, then tcp_done() moves the full socket from
 * FIN_WAIT2 or CLOSING to CLOSE. That move, when no reset caused it, is one
 * TIME_WAIT entry. This runs on every state change of every socket: all but
 * moves to CLOSE from the few states that matter leave at the first test.
 */
static __always_inline void on_set_state(const struct sock *sk, int oldstate, int newstate, bool direct)
{
	struct wst_event e = {};
	bool may_tw = oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING;

	if (newstate != TCP_CLOSE || !(may_tw || ((1 << oldstate) & WST_RESET_MAY_FOLLOW)))
		return;
	if (RD(direct, sk, sk_protocol) != IPPROTO_TCP || !netns_wanted(sk_netns(sk, direct)))
		return;
	if (!may_tw) {
		/*
		 * A reset may follow in this call (abort, linger 0, unread
		 * data): note the state left for it. Not after SYN_SENT,
		 * LAST_ACK or the TIME_WAIT states, nor when an error closes it
		 * (a reset received, a timeout: sk_err is set before the close
		 * and the kernel sends no reset after).
		 */
		if (!RD(direct, sk, sk_err))
			closed_put(sk, oldstate, direct);
		return;
	}
	/* A reset noted on this socket (note_reset) closed it: no TIME_WAIT. */
	if (closing_take(sk, direct))
		return;

	e.kind = WST_TIMEWAIT;
	e.reason = WST_NO_REASON;
	if (!sk_tuple(sk, &e, false, direct))
		return;
	e.state = oldstate;

	struct wst_tw_key k = { .netns = e.netns, .rport = e.rport, .family = e.family };
	__builtin_memcpy(k.raddr, e.raddr, 16);
	count(WST_CNT_TIMEWAIT);
	add_keyed(&timewaits, &k);
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, WST_FOLD_UNLESS_LISTENER);
}

SEC("tp_btf/inet_sock_set_state")
int wst_timewait_btf(__u64 *ctx)
{
	hit(WST_P_TIMEWAIT_BTF);
	on_set_state((const struct sock *)ctx[0], (int)ctx[1], (int)ctx[2], true);
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int wst_timewait(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_TIMEWAIT);
	on_set_state((const struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], false);
	return 0;
}

/*
 * sk_data_ready(sk) on a listener: a child was just queued, at the queue's
 * tail. The kernel refuses new connections while depth > limit
 * (sk_acceptq_is_full), so an enqueue that leaves depth > limit is a "full"
 * sighting.
 */
static __always_inline void on_data_ready(const struct sock *sk, bool direct)
{
	if (RD(direct, sk, __sk_common.skc_state) != TCP_LISTEN || RD(direct, sk, sk_protocol) != IPPROTO_TCP)
		return;
	on_enqueue(sk, 0, true, RD(direct, sk, sk_ack_backlog), direct);
}

SEC("tp_btf/sk_data_ready")
int wst_acceptq_btf(__u64 *ctx)
{
	hit(WST_P_ACCEPTQ_BTF);
	on_data_ready((const struct sock *)ctx[0], true);
	return 0;
}

SEC("raw_tp/sk_data_ready")
int wst_acceptq(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_ACCEPTQ);
	on_data_ready((const struct sock *)ctx->args[0], false);
	return 0;
}

/*
 * kfree_skb(skb, location, reason, rx_sk): the final ACK of a handshake met a
 * full accept queue. rx_sk is the listener (skb->sk is not set there). The
 * drop reason exists from 6.15; rx_sk from 6.11. Older kernels prune this.
 * Every dropped packet passes here; all but these leave at the first test.
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

	if (lsk) {
		/* Key by the listener's bound address, as wst_acceptq does; the peer from the packet. */
		struct wst_event peer = {};

		if (!sk_tuple(lsk, &e, true, false))
			return 0;
		if (skb_tuple(skb, &peer, false)) {
			__builtin_memcpy(e.raddr, peer.raddr, 16);
			e.rport = peer.rport;
		}
		e.queue = BPF_CORE_READ(lsk, sk_ack_backlog);
		e.backlog = BPF_CORE_READ(lsk, sk_max_ack_backlog);
		e.inode = sk_inode(lsk, false);
		e.state = TCP_LISTEN;
	} else if (!no_socket_wanted() || !skb_tuple(skb, &e, false) || !port_wanted(e.lport, 0)) {
		return 0;
	}
	e.kind = WST_LISTEN_OVERFLOW;
	e.reason = (__u32)ctx->args[2];
	count(WST_CNT_LISTEN_OVERFLOW);
	v = listener_entry(&e, lsk, false);
	if (v) {
		__sync_fetch_and_add(&v->overflows, 1);
		/* No listener socket given: the one found from the packet, once seen through its socket. */
		if (!e.cgroup)
			e.cgroup = v->cgroup;
	}
	e.ts_ns = bpf_ktime_get_ns();
	emit(&e, WST_KEEP_LPORT);
	return 0;
}
