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
/*
 * --cgroup: wanted cgroup ids, each with its level (depth below the cgroup2
 * root); a socket is wanted when its cgroup or an ancestor is one of them.
 */
const volatile __u64 filter_cgroups[WST_MAX_CGROUPS] = {};
const volatile __u32 filter_cgroup_levels[WST_MAX_CGROUPS] = {};
const volatile __u32 filter_ncgroups = 0;
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

/*
 * The rate budget: full detail for at most this many events per second on the
 * host (budget_cost_ns = 1e9 / events per second; 0: unlimited), with up to a
 * second's worth at once (budget_burst_ns). Events beyond it go to a summary
 * row instead of the ring.
 */
const volatile __u64 budget_cost_ns = 0;
const volatile __u64 budget_burst_ns = 1000000000ULL;

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

	/*
	 * A per-CPU slot, but not one writer: a softirq's event can interrupt a
	 * program between its load and its store here. One atomic add on a
	 * line no other CPU touches costs next to nothing and loses no count.
	 */
	if (v)
		__sync_fetch_and_add(v, 1);
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

/*
 * Field reads. tp_btf programs are handed pointers the verifier knows the BTF
 * type of: a field is one load (the JIT guards it against faults), where
 * raw_tp and kprobe programs pay a bpf_probe_read_kernel() call per field,
 * most of what they cost. Every program passes `direct` as a constant, so
 * only one arm is compiled into it.
 */
#define RD(direct, p, field) ((direct) ? __builtin_preserve_access_index((p)->field) : BPF_CORE_READ(p, field))

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

static __always_inline __u32 sk_netns(const struct sock *sk, bool direct)
{
	if (direct)
		return __builtin_preserve_access_index(sk->__sk_common.skc_net.net->ns.inum);
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * The cgroup a full socket was charged to when it was made (by the task that
 * made it: the socket's own record, where the task on the CPU in softirq is
 * anyone's). 0 with *root set: the old encoding's fallback to the root.
 */
static __always_inline const struct cgroup *full_sk_cgroup(const struct sock *sk, bool *root, bool direct)
{
	__u64 val;

	*root = false;
	if (bpf_core_field_exists(struct sock_cgroup_data, cgroup))
		return RD(direct, sk, sk_cgrp_data.cgroup);
	val = BPF_CORE_READ((const struct sock_cgroup_data___val *)((const void *)sk +
								    bpf_core_field_offset(struct sock, sk_cgrp_data)),
			    val);
	if (!val || (val & 3)) {
		*root = true;
		return 0;
	}
	return (const struct cgroup *)val;
}

/* The id of the ancestor of cg at `level` (cg's own level or above). Probe reads: past struct cgroup's end. */
static __always_inline __u64 cgroup_ancestor_id(const struct cgroup *cg, __u32 level)
{
	const void *at;
	__u64 id = 0;

	if (bpf_core_field_exists(struct cgroup, ancestors)) {
		const struct cgroup *a = 0;

		at = (const void *)cg + bpf_core_field_offset(struct cgroup, ancestors) + (__u64)level * sizeof(void *);
		if (bpf_probe_read_kernel(&a, sizeof(a), at) || !a)
			return 0;
		return BPF_CORE_READ(a, kn, id);
	}
	at = (const void *)cg + bpf_core_field_offset(struct cgroup___ids, ancestor_ids) + (__u64)level * sizeof(__u64);
	if (bpf_probe_read_kernel(&id, sizeof(id), at))
		return 0;
	return id;
}

/*
 * The socket's cgroup id into *id (0: unknown), and whether --cgroup wants
 * it. A request socket (a handshake in progress) has no cgroup data: its
 * listener's is used. A timewait socket has none and no listener to ask: 0.
 * With a filter, an unknown cgroup is not wanted.
 */
static __always_inline bool sk_cgroup(const struct sock *sk, __u8 state, __u64 *id, bool direct)
{
	const struct cgroup *cg;
	bool root;
	int level = 0;

	*id = 0;
	if (state == TCP_TIME_WAIT)
		return filter_ncgroups == 0;
	if (state == TCP_NEW_SYN_RECV) {
		/* In a union: the verifier types it as a number, so probe reads from here. */
		const struct sock *listener = BPF_CORE_READ(sk, __sk_common.skc_listener);

		if (!listener)
			return filter_ncgroups == 0;
		cg = full_sk_cgroup(listener, &root, false);
	} else {
		cg = full_sk_cgroup(sk, &root, direct);
	}
	if (root)
		*id = WST_ROOT_CGROUP;
	else if (cg)
		*id = BPF_CORE_READ(cg, kn, id);
	if (filter_ncgroups == 0)
		return true;
	if (!*id)
		return false;
	if (cg)
		level = BPF_CORE_READ(cg, level);
#pragma unroll
	for (int i = 0; i < WST_MAX_CGROUPS; i++) {
		__u32 want_level;

		if (i >= filter_ncgroups)
			break;
		want_level = filter_cgroup_levels[i];
		if (want_level > (__u32)level)
			continue;
		if (want_level == (__u32)level ? *id == filter_cgroups[i] :
		    cgroup_ancestor_id(cg, want_level) == filter_cgroups[i])
			return true;
	}
	return false;
}

/* Events with no socket to ask (a reset answering a packet no socket took): unknown cgroup. */
static __always_inline bool no_socket_wanted(void)
{
	return filter_ncgroups == 0;
}

/*
 * An event told from a listener's row, not its socket: the row's cgroup is
 * the event's. A row learns its cgroup only through a socket sk_cgroup()
 * let through, so under --cgroup a row with one is wanted, one without is not.
 */
#define row_cgroup_wanted(v) (filter_ncgroups == 0 || (v)->cgroup)

/* 16 address bytes through a BTF pointer: two loads. */
static __always_inline void copy_addr(__u8 *dst, const void *src)
{
	const __u64 *s = src;
	__u64 *d = (__u64 *)dst;

	d[0] = s[0];
	d[1] = s[1];
}

/*
 * Tuple of a socket (full, request or timewait: all start with sock_common),
 * read only as far as the filters need: false as soon as the namespace or
 * the ports are not wanted. For a listener only its own port is matched.
 */
static __always_inline bool sk_tuple(const struct sock *sk, struct wst_event *e, bool listener, bool direct)
{
	e->netns = sk_netns(sk, direct);
	if (!netns_wanted(e->netns))
		return false;
	e->state = RD(direct, sk, __sk_common.skc_state);
	e->lport = RD(direct, sk, __sk_common.skc_num);
	/*
	 * Moving to CLOSE unhashes the port before the tracepoints run; a full
	 * socket still has it in inet_sport (request and timewait sockets keep
	 * skc_num, and have no inet_sock to read). inet_sock lies beyond struct
	 * sock, where a BTF pointer to a sock may not reach: a probe read.
	 */
	if (!e->lport && e->state != TCP_TIME_WAIT && e->state != TCP_NEW_SYN_RECV)
		e->lport = __builtin_bswap16(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->rport = __builtin_bswap16(RD(direct, sk, __sk_common.skc_dport));
	if (!port_wanted(e->lport, listener ? 0 : e->rport))
		return false;
	if (!sk_cgroup(sk, e->state, &e->cgroup, direct))
		return false;
	e->family = RD(direct, sk, __sk_common.skc_family);
	if (e->family == AF_INET6) {
		if (direct) {
			copy_addr(e->laddr, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_rcv_saddr));
			copy_addr(e->raddr, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr));
		} else {
			BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr);
			BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr);
		}
	} else {
		*(__u32 *)e->laddr = RD(direct, sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)e->raddr = RD(direct, sk, __sk_common.skc_daddr);
	}
	return true;
}

/*
 * Addresses and ports of a received packet, seen from this host: its
 * destination is local. False when the headers cannot be read.
 */
static __always_inline bool skb_addrs(const struct sk_buff *skb, struct wst_event *e, bool direct)
{
	unsigned char *head = RD(direct, skb, head);
	__u16 nh = RD(direct, skb, network_header);
	__u16 th = RD(direct, skb, transport_header);
	/*
	 * The IP header and the TCP ports in one read, for the usual header
	 * lengths (th - nh): IPv4 without options, IPv6 without extensions.
	 * Constant offsets only: older verifiers refuse variable stack reads.
	 */
	__u8 hdr[sizeof(struct wst_ipv6hdr) + sizeof(struct wst_ports)];
	struct wst_ports ports;
	__u16 iplen = th - nh;

	if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + nh))
		return false;
	if (iplen == sizeof(struct wst_iphdr))
		__builtin_memcpy(&ports, hdr + sizeof(struct wst_iphdr), sizeof(ports));
	else if (iplen == sizeof(struct wst_ipv6hdr))
		__builtin_memcpy(&ports, hdr + sizeof(struct wst_ipv6hdr), sizeof(ports));
	else if (bpf_probe_read_kernel(&ports, sizeof(ports), head + th))
		return false;
	e->lport = __builtin_bswap16(ports.dest);
	e->rport = __builtin_bswap16(ports.source);
	if ((hdr[0] >> 4) == 4) {
		struct wst_iphdr *ip = (struct wst_iphdr *)hdr;

		e->family = AF_INET;
		__builtin_memcpy(e->laddr, &ip->daddr, 4);
		__builtin_memcpy(e->raddr, &ip->saddr, 4);
	} else if ((hdr[0] >> 4) == 6) {
		struct wst_ipv6hdr *ip6 = (struct wst_ipv6hdr *)hdr;

		e->family = AF_INET6;
		__builtin_memcpy(e->laddr, ip6->daddr, 16);
		__builtin_memcpy(e->raddr, ip6->saddr, 16);
	} else {
		return false;
	}
	return true;
}

/*
 * Tuple of a received packet no socket took: the namespace from the device
 * it came in on, checked before the headers are read; false when the filters
 * do not want it. Once TCP has found a socket for a packet, tcp_v4_rcv() and
 * tcp_v6_rcv() clear skb->dev (a listener's packets included): with a socket
 * in hand, its namespace counts and skb_addrs() gives the peer.
 */
static __always_inline bool skb_tuple(const struct sk_buff *skb, struct wst_event *e, bool direct)
{
	if (direct)
		e->netns = __builtin_preserve_access_index(skb->dev->nd_net.net->ns.inum);
	else
		e->netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (!netns_wanted(e->netns))
		return false;
	return skb_addrs(skb, e, direct);
}

/*
 * The state a socket left when moved to CLOSE, for the reset the kernel
 * sends right after it in the same call (tcp_disconnect(), tcp_close() with
 * linger 0 or unread data), so that reset can say what it aborted. Only an
 * interrupt runs between the two, so a few slots per CPU hold it: a store,
 * where an LRU entry per socket cost more than the rest of the close. Were
 * the task moved to another CPU in between (full preemption), that reset
 * shows state CLOSE: its count is kept, only the state it left is lost.
 * Shared by both objects (the loader hands the extra one the core's map).
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

/*
 * The tuple of a reset sent, from this host's side: skb is the packet it
 * answers (NULL for a reset sent on close or abort). The socket is asked
 * first (namespace, filters, state, cgroup). But a listener has no peer, and
 * the packet is what a request or timewait socket answers too: for those the
 * packet gives both ends, its source the peer and its destination the local
 * address actually used (a listener bound to 0.0.0.0 knows no other). With
 * no socket, the packet is all there is.
 */
static __always_inline bool reset_tuple(const struct sock *sk, const struct sk_buff *skb, struct wst_event *e,
					bool direct)
{
	struct wst_event pkt = {};

	if (!sk)
		return skb && no_socket_wanted() && skb_tuple(skb, e, direct) && port_wanted(e->lport, e->rport);
	if (!sk_tuple(sk, e, false, direct))
		return false;
	if (!skb || (e->state != TCP_LISTEN && e->state != TCP_NEW_SYN_RECV && e->state != TCP_TIME_WAIT))
		return true;
	if (skb_addrs(skb, &pkt, direct)) {
		e->family = pkt.family;
		e->lport = pkt.lport;
		e->rport = pkt.rport;
		__builtin_memcpy(e->laddr, pkt.laddr, 16);
		__builtin_memcpy(e->raddr, pkt.raddr, 16);
	}
	return true;
}

static __always_inline __u64 sk_inode(const struct sock *sk, bool direct)
{
	struct socket *so;

	if (direct)
		return __builtin_preserve_access_index(sk->sk_socket->file->f_inode->i_ino);
	so = BPF_CORE_READ(sk, sk_socket);
	if (!so)
		return 0;
	return BPF_CORE_READ(so, file, f_inode, i_ino);
}

/*
 * A port as an index the verifier can bound. Ports read from packets or
 * inet_sport pass through a byte swap, whose range verifiers before about
 * 6.x do not track; the mask is an instruction the compiler cannot drop.
 */
static __always_inline __u64 port_index(__u16 port)
{
	__u64 i = port;

	asm volatile("%0 &= 0xffff" : "+r"(i));
	return i;
}

static __always_inline struct wst_listening *listening(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&listen_ports, &zero);
}

static __always_inline bool is_listen_port(__u16 port)
{
	struct wst_listening *l = listening();

	return l && l->port[port_index(port)];
}

/* How an event's summary row keys its ports (see struct wst_summary_key). */
enum wst_fold {
	WST_KEEP_LPORT,			/* a listener or a server port: keep it, fold the peer's */
	WST_FOLD_LPORT,			/* a client's ephemeral port: fold it, keep the peer's */
	WST_FOLD_UNLESS_LISTENER,	/* decided from listen_ports, when summarising */
};

/*
 * Whether one more event may go to the ring: a token bucket (GCRA) for the
 * whole host in one shared u64, the time by which the events let through
 * so far have used up the budget. Past the budget the check is a plain load
 * of a line that is written at most budget times a second, so a storm on
 * many CPUs does not bounce it; two CPUs passing the check at once can let
 * one event each past the budget, which later ones pay back.
 */
static __always_inline bool within_budget(__u64 now)
{
	__u32 zero = 0;
	__u64 *tat, t;

	if (!budget_cost_ns)
		return true;
	tat = bpf_map_lookup_elem(&budget, &zero);
	if (!tat)
		return true;
	t = *(volatile __u64 *)tat;
	if (t < now) {
		/* Idle since: the bucket is full again. */
		*tat = now + budget_cost_ns;
		return true;
	}
	if (t - now >= budget_burst_ns)
		return false;
	__sync_fetch_and_add(tat, budget_cost_ns);
	return true;
}

/* One more event in its summary row, in whichever map is in the slot now. */
static __always_inline void summarise(const struct wst_event *e, int fold)
{
	struct wst_summary_key k = {
		.cgroup = e->cgroup,
		.netns = e->netns,
		.reason = e->reason,
		.family = e->family,
		.kind = e->kind,
		.state = e->state,
	};
	struct wst_summary_val first = { .count = 1, .first_ns = e->ts_ns, .last_ns = e->ts_ns }, *v;
	__u32 zero = 0;
	bool folded = fold == WST_FOLD_LPORT ||
		      (fold == WST_FOLD_UNLESS_LISTENER && !is_listen_port(e->lport));
	void *rows;

	__builtin_memcpy(k.laddr, e->laddr, 16);
	__builtin_memcpy(k.raddr, e->raddr, 16);
	k.lport = folded ? 0 : e->lport;
	k.rport = folded ? e->rport : 0;
	rows = bpf_map_lookup_elem(&summary_slot, &zero);
	if (!rows) {
		count(WST_CNT_SUMMARY_LOST);
		return;
	}
	v = bpf_map_lookup_elem(rows, &k);
	if (!v) {
		if (bpf_map_update_elem(rows, &k, &first, BPF_NOEXIST) == 0) {
			count(WST_CNT_SUMMARISED);
			return;
		}
		/* Lost the race to create the row, or the map is full. */
		v = bpf_map_lookup_elem(rows, &k);
		if (!v) {
			count(WST_CNT_SUMMARY_LOST);
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	/* Racy between CPUs, and only ever off by the events of one moment. */
	if (e->ts_ns > v->last_ns)
		v->last_ns = e->ts_ns;
	count(WST_CNT_SUMMARISED);
}

/*
 * The event goes to the ring while the budget allows, else to its summary
 * row: decided before a ring slot is reserved. e->ts_ns must be set.
 */
static __always_inline void emit(const struct wst_event *src, int fold)
{
	struct wst_event *e;

	if (!within_budget(src->ts_ns)) {
		summarise(src, fold);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(WST_CNT_RING_DROPS);
		return;
	}
	__builtin_memcpy(e, src, sizeof(*e));
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				  BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	count(WST_CNT_EVENTS);
}

/*
 * Counts a reset per local port, direction, state and reason. Returns how
 * its summary row folds ports: the resets map's rule, a port in
 * ip_local_port_range without a listener is a client's and folds into 0.
 */
static __always_inline int count_reset(const struct wst_event *e)
{
	struct wst_reset_key k = {
		.cgroup = e->cgroup,
		.netns = e->netns,
		.reason = e->reason,
		.lport = e->lport,
		.kind = e->kind,
		.state = e->state,
	};
	int fold = WST_KEEP_LPORT;

	if (e->lport >= ephemeral_low && e->lport <= ephemeral_high && !is_listen_port(e->lport)) {
		k.lport = 0;
		fold = WST_FOLD_LPORT;
	}
	count(e->kind == WST_RESET_SENT ? WST_CNT_RESET_SENT : WST_CNT_RESET_RECEIVED);
	add_keyed(&resets, &k);
	return fold;
}

/* The listener's row, made on first sight (sk, when known, gives the inode then). */
static __always_inline struct wst_listener_val *listener_entry(const struct wst_event *e, const struct sock *sk, bool direct)
{
	struct wst_listener_key k = { .netns = e->netns, .port = e->lport, .family = e->family };
	struct wst_listener_val zero = {}, *v;

	__builtin_memcpy(k.addr, e->laddr, 16);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (v) {
		/* A row first made from a packet alone learns its listener's cgroup here. */
		if (!v->cgroup && e->cgroup)
			v->cgroup = e->cgroup;
		return v;
	}
	zero.inode = sk ? sk_inode(sk, direct) : 0;
	zero.cgroup = e->cgroup;
	bpf_map_update_elem(&listeners, &k, &zero, BPF_NOEXIST);
	/* Port 0 is a namespace's unattributed row (syn_drop's route), no port that listens. */
	if (e->lport) {
		struct wst_listening *l = listening();

		if (l)
			l->port[port_index(e->lport)] = 1;
	}
	v = bpf_map_lookup_elem(&listeners, &k);
	if (!v)
		count(WST_CNT_MAP_FULL);
	return v;
}

/* The child last queued on a listener: the tail of its accept queue (probe reads: beyond struct sock). */
static __always_inline const struct sock *queue_tail_child(const struct sock *sk)
{
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
	struct request_sock *req = BPF_CORE_READ(icsk, icsk_accept_queue.rskq_accept_tail);

	return req ? BPF_CORE_READ(req, sk) : 0;
}

/*
 * A child was queued on listener sk, leaving `depth` in its accept queue:
 * count it, note the peak, time it for residency, and report the queue full
 * (rate-limited) when depth > limit, the kernel's own test for refusing more.
 * `child` 0 with from_queue: the child is the queue's tail, read only when
 * needed.
 */
static __always_inline void on_enqueue(const struct sock *sk, const struct sock *child, bool from_queue, __u32 depth,
				       bool direct)
{
	struct wst_listener_val *v;
	struct wst_event e = {};
	__u64 now;

	if (!sk_tuple(sk, &e, true, direct))
		return;
	e.queue = depth;
	e.backlog = RD(direct, sk, sk_max_ack_backlog);
	count(WST_CNT_ACCEPT_ENQUEUED);

	v = listener_entry(&e, sk, direct);
	if (!v)
		return;
	__sync_fetch_and_add(&v->enqueued, 1);
	if (switch_on(time_accepts)) {
		if (from_queue)
			child = queue_tail_child(sk);
		if (child) {
			__u64 key = (__u64)(unsigned long)child;
			struct wst_enqueued q = { .ts_ns = bpf_ktime_get_ns() };

			__builtin_memcpy(q.listener.addr, e.laddr, 16);
			q.listener.netns = e.netns;
			q.listener.port = e.lport;
			q.listener.family = e.family;
			bpf_map_update_elem(&enqueued, &key, &q, BPF_ANY);
		}
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
	if (from_queue && !child)
		child = queue_tail_child(sk);
	if (child) {
		e.rport = __builtin_bswap16(BPF_CORE_READ(child, __sk_common.skc_dport));
		if (e.family == AF_INET6)
			BPF_CORE_READ_INTO(&e.raddr, child, __sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO((__u32 *)e.raddr, child, __sk_common.skc_daddr);
	}
	e.inode = sk_inode(sk, direct);
	e.kind = WST_ACCEPT_QUEUE_FULL;
	e.reason = WST_NO_REASON;
	e.ts_ns = now;
	emit(&e, WST_KEEP_LPORT);
}

#endif /* WSTRACE_COMMON_H */
