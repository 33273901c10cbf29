/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Filters and helpers shared by the core and the richer-hook BPF objects.
 * Each object gets its own copy of the filter globals; the loader sets both
 * the same way before load.
 */
#ifndef WSTRACE_COMMON_H
#define WSTRACE_COMMON_H

#include "maps.h"

/* Filters, fixed before load so the verifier can prune what they exclude. */
const volatile __u16 filter_ports[WST_MAX_PORTS] = {};
const volatile __u32 filter_nports = 0;
const volatile __u32 filter_netns = 0;
/* At most one accept_queue_full event per listener per interval. */
const volatile __u64 full_event_interval_ns = 100000000ULL;

#define switch_on(name) ({						\
	__u32 __zero = 0;							\
	struct wst_switches *__s = bpf_map_lookup_elem(&switches, &__zero);	\
	__s && __s->name;							\
})

/*
 * The reader is woken only once this much is waiting in the ring; below it,
 * the addon drains on a short timer. A wake-up per record costs an irq_work
 * (a self-IPI) in the traced task for every event; this costs one per batch.
 * The loader sets it to a quarter of the ring.
 */
const volatile __u64 wakeup_bytes = 65536;

/*
 * ip_local_port_range of the traced namespace (0, 0: no folding). Client
 * sockets take a new port from it for every connection; keyed by that port a
 * reset storm would fill the resets map within a second.
 */
const volatile __u16 ephemeral_low = 0;
const volatile __u16 ephemeral_high = 0;

/* Per-program run counts cost a map update per run: only for the kernel matrix. */
const volatile bool count_hits = false;

static __always_inline void hit(__u32 prog)
{
	__u64 *v;

	if (!count_hits)
		return;
	v = bpf_map_lookup_elem(&hits, &prog);

	if (v)
		*v += 1;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&totals, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

static __always_inline void add_keyed(void *map, const void *key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(map, key);

	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(map, key, &one, BPF_NOEXIST) == 0)
		return;
	/* Lost the race to create the key, or the map is full. */
	v = bpf_map_lookup_elem(map, key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		count(WST_CNT_MAP_FULL);
}

static __always_inline bool port_wanted(__u16 a, __u16 b)
{
	if (filter_nports == 0)
		return true;
#pragma unroll
	for (int i = 0; i < WST_MAX_PORTS; i++) {
		if (i >= filter_nports)
			break;
		if (filter_ports[i] == a || filter_ports[i] == b)
			return true;
	}
	return false;
}

static __always_inline bool netns_wanted(__u32 netns)
{
	return filter_netns == 0 || filter_netns == netns;
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* Tuple of a socket (full, request or timewait: all start with sock_common). */
static __always_inline void sk_tuple(const struct sock *sk, struct wst_event *e)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	/*
	 * Moving to CLOSE unhashes the port before the tracepoints run; a full
	 * socket still has it in inet_sport (request and timewait sockets keep
	 * skc_num, and have no inet_sock to read).
	 */
	if (!e->lport && e->state != TCP_TIME_WAIT && e->state != TCP_NEW_SYN_RECV)
		e->lport = __builtin_bswap16(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->netns = sk_netns(sk);
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->raddr, sk, __sk_common.skc_daddr);
	}
}

/*
 * Tuple of a received packet, seen from this host: its destination is local.
 * Returns false when the headers cannot be read.
 */
static __always_inline bool skb_tuple(const struct sk_buff *skb, struct wst_event *e)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	struct wst_ports ports;
	__u8 ver;

	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return false;
	if ((ver >> 4) == 4) {
		struct wst_iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return false;
		e->family = AF_INET;
		__builtin_memcpy(e->laddr, &ip.daddr, 4);
		__builtin_memcpy(e->raddr, &ip.saddr, 4);
	} else if ((ver >> 4) == 6) {
		struct wst_ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return false;
		e->family = AF_INET6;
		__builtin_memcpy(e->laddr, ip6.daddr, 16);
		__builtin_memcpy(e->raddr, ip6.saddr, 16);
	} else {
		return false;
	}
	if (bpf_probe_read_kernel(&ports, sizeof(ports), head + th))
		return false;
	e->lport = __builtin_bswap16(ports.dest);
	e->rport = __builtin_bswap16(ports.source);
	e->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	return true;
}

static __always_inline __u64 sk_inode(const struct sock *sk)
{
	struct socket *so = BPF_CORE_READ(sk, sk_socket);

	if (!so)
		return 0;
	return BPF_CORE_READ(so, file, f_inode, i_ino);
}

static __always_inline void emit(const struct wst_event *src)
{
	struct wst_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(WST_CNT_RING_DROPS);
		return;
	}
	__builtin_memcpy(e, src, sizeof(*e));
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				  BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	count(WST_CNT_EVENTS);
}

static __always_inline __u64 listen_port_key(__u32 netns, __u16 port)
{
	return ((__u64)netns << 16) | port;
}

static __always_inline void count_reset(const struct wst_event *e)
{
	struct wst_reset_key k = {
		.netns = e->netns,
		.reason = e->reason,
		.lport = e->lport,
		.kind = e->kind,
		.state = e->state,
	};

	if (e->lport >= ephemeral_low && e->lport <= ephemeral_high) {
		__u64 lp = listen_port_key(e->netns, e->lport);

		if (!bpf_map_lookup_elem(&listen_ports, &lp))
			k.lport = 0;
	}

	count(e->kind == WST_RESET_SENT ? WST_CNT_RESET_SENT : WST_CNT_RESET_RECEIVED);
	add_keyed(&resets, &k);
}

static __always_inline struct wst_listener_val *listener_entry(const struct wst_event *e, __u64 inode)
{
	struct wst_listener_key k = { .netns = e->netns, .port = e->lport, .family = e->family };
	struct wst_listener_val zero = {}, *v;

	__builtin_memcpy(k.addr, e->laddr, 16);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (v)
		return v;
	zero.inode = inode;
	bpf_map_update_elem(&listeners, &k, &zero, BPF_NOEXIST);
	{
		__u64 lp = listen_port_key(e->netns, e->lport);
		__u8 one = 1;

		bpf_map_update_elem(&listen_ports, &lp, &one, BPF_ANY);
	}
	v = bpf_map_lookup_elem(&listeners, &k);
	if (!v)
		count(WST_CNT_MAP_FULL);
	return v;
}


/*
 * A child was queued on listener sk, leaving `depth` in its accept queue:
 * count it, note the peak, time it for residency, and report the queue full
 * (rate-limited) when depth > limit, the kernel's own test for refusing more.
 */
static __always_inline void on_enqueue(const struct sock *sk, const struct sock *child, __u32 depth)
{
	struct wst_listener_val *v;
	struct wst_event e = {};
	__u64 now;

	sk_tuple(sk, &e);
	if (!netns_wanted(e.netns) || !port_wanted(e.lport, 0))
		return;
	e.queue = depth;
	e.backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	e.inode = sk_inode(sk);
	count(WST_CNT_ACCEPT_ENQUEUED);

	v = listener_entry(&e, e.inode);
	if (!v)
		return;
	__sync_fetch_and_add(&v->enqueued, 1);
	if (child && switch_on(time_accepts)) {
		__u64 key = (__u64)(unsigned long)child;
		struct wst_enqueued q = { .ts_ns = bpf_ktime_get_ns() };

		__builtin_memcpy(q.listener.addr, e.laddr, 16);
		q.listener.netns = e.netns;
		q.listener.port = e.lport;
		q.listener.family = e.family;
		bpf_map_update_elem(&enqueued, &key, &q, BPF_ANY);
	}
	v->depth = e.queue;
	v->backlog = e.backlog;
	if (e.queue > v->peak)
		v->peak = e.queue;
	if (e.queue <= e.backlog)
		return;

	__sync_fetch_and_add(&v->full_hits, 1);
	count(WST_CNT_ACCEPT_QUEUE_FULL);
	now = bpf_ktime_get_ns();
	if (now - v->last_event_ns < full_event_interval_ns)
		return;
	v->last_event_ns = now;

	/* The peer: the child's remote end. */
	if (child) {
		e.rport = __builtin_bswap16(BPF_CORE_READ(child, __sk_common.skc_dport));
		if (e.family == AF_INET6)
			BPF_CORE_READ_INTO(&e.raddr, child, __sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO((__u32 *)e.raddr, child, __sk_common.skc_daddr);
	}
	e.kind = WST_ACCEPT_QUEUE_FULL;
	e.reason = WST_NO_REASON;
	e.ts_ns = now;
	emit(&e);
}

#endif /* WSTRACE_COMMON_H */
