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
 * TIME_WAIT is counted where the kernel made a timewait socket, and only
 * there. inet_sock_set_state shows the full socket leave FIN_WAIT2 or CLOSING
 * for CLOSE when tcp_time_wait() has made one, but tcp_done() makes the same
 * move without one: data reaching an orphan (TCPAbortOnData), TCP_LINGER2 < 0,
 * an orphan's FIN_WAIT2 timer giving up, tcp_max_tw_buckets reached
 * (inet_twsk_alloc() fails: TCPTimeWaitOverflow), a reset, an abort. No
 * tracepoint names the timewait socket. But tcp_time_wait() puts it in the
 * established hash, in the bucket of the full socket it replaces (the same
 * hash), before tcp_done() moves the full socket to CLOSE; when there is no
 * timewait socket nothing of that connection is left in the table (the close
 * unhashes the full socket before the tracepoint). So at that move, a
 * TIME_WAIT entry of this connection in the socket's own bucket is the sign,
 * on every kernel (the hash dance has come before tcp_done() since 2.6).
 *
 * Races, and why they do not miscount:
 * - The look-up runs in the call that made the timewait socket, under the
 *   socket's lock, microseconds after. Its timer (at least the RTO) has not
 *   run; but a packet for this 4-tuple on another CPU in those microseconds
 *   can end it first: a reset (tcp_rfc1337 = 0, the default, lets a reset
 *   end a TIME_WAIT) or a new connection reusing it (tcp_tw_reuse). That
 *   TIME_WAIT is missed (seen once in about 50 TIME_WAITs of a storm full
 *   of resets while the whole test suite loaded a 2-CPU machine; never
 *   seen with the storm alone).
 * - Sockets hashed into the same bucket meanwhile go in at the head: the
 *   chain is walked for up to TW_CHAIN_MAX entries (the kernel sizes the
 *   table to about one socket per bucket).
 * - An older timewait socket of the same 4-tuple cannot be there: the
 *   kernel kills it before it hashes a new connection on that 4-tuple.
 * - The chain is walked under RCU (a BPF program runs inside a read-side
 *   section) with probe reads: a node freed under the walk reads as another
 *   socket, or ends the walk.
 */
#define TW_CHAIN_MAX 8

static __always_inline const struct inet_hashinfo *tcp_hashinfo_of(const struct net *net)
{
	if (bpf_core_field_exists(struct netns_ipv4, tcp_death_row))
		return BPF_CORE_READ(net, ipv4.tcp_death_row.hashinfo);
	if (bpf_core_field_exists(struct netns_ipv4___dr_ptr, tcp_death_row))
		return BPF_CORE_READ((const struct net___dr_ptr *)net, ipv4.tcp_death_row, hashinfo);
	return 0;
}

/*
 * True when the established hash holds a TIME_WAIT socket of this full
 * socket's connection. The close has unhashed the port (skc_num 0): the
 * source port is read from inet_sport, which keeps it.
 */
static __always_inline bool timewait_made(const struct sock *sk, bool direct)
{
	const struct net *net = RD(direct, sk, __sk_common.skc_net.net);
	__u32 hash = RD(direct, sk, __sk_common.skc_hash);
	__be32 daddr = RD(direct, sk, __sk_common.skc_daddr);
	__be16 dport = RD(direct, sk, __sk_common.skc_dport);
	__u16 num = __builtin_bswap16(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	const struct inet_hashinfo *hi = tcp_hashinfo_of(net);
	__u64 node_off = bpf_core_field_offset(struct sock_common, skc_nulls_node);
	const struct hlist_nulls_node *node;
	const void *bucket;

	if (!hi)
		return false;
	bucket = (const void *)BPF_CORE_READ(hi, ehash) +
		 (__u64)(hash & BPF_CORE_READ(hi, ehash_mask)) * bpf_core_type_size(struct inet_ehash_bucket);
	node = BPF_CORE_READ((const struct inet_ehash_bucket *)bucket, chain.first);
#pragma unroll
	for (int i = 0; i < TW_CHAIN_MAX; i++) {
		const struct sock_common *c = (const void *)node - node_off;

		/* A nulls list ends in an odd pointer (the bucket's number, tagged). */
		if (!node || ((unsigned long)node & 1))
			return false;
		if (BPF_CORE_READ(c, skc_hash) == hash && BPF_CORE_READ(c, skc_state) == TCP_TIME_WAIT &&
		    BPF_CORE_READ(c, skc_dport) == dport && BPF_CORE_READ(c, skc_num) == num &&
		    BPF_CORE_READ(c, skc_daddr) == daddr && BPF_CORE_READ(c, skc_net.net) == net)
			return true;
		node = BPF_CORE_READ(node, next);
	}
	return false;
}

/*
 * ---- The kernel's own counters, read where they rise ----
 *
 * The namespace's SNMP counters are per CPU (NET_INC_STATS is a this-CPU
 * add), so a program can read this CPU's copy and see what a call just
 * counted on it. Two routes use that: which reset "received" came from no
 * reset (below), and the SYN-stage listen drops (further down).
 */
#define WST_MAX_CPUS 512

struct mib_key {
	__u32 netns;
	__u32 cpu;
};

/* This CPU's per-CPU offset (0 until first computed), and its address is how it is computed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_offset SEC(".maps");

/* Each CPU's per-CPU offset, as it found it (0: not yet), so one CPU can read another's counters. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WST_MAX_CPUS);
	__type(key, __u32);
	__type(value, __u64);
} cpu_offsets SEC(".maps");

/* Possible CPUs, from the loader. */
const volatile __u32 nr_cpus = 0;

/* syn_drop's tracepoint route, per CPU: see struct wst_settle_state. lost is reported with the runs the kernel skipped. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wst_settle_state);
} settling SEC(".maps");


/* A pointer's value as a plain number (copied through memory: the verifier allows no arithmetic on map pointers). */
static __always_inline __u64 address_of(const void *p)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

/* pptrs[0] of cpu_offset: the per-CPU pointer a lookup resolves per CPU. */
static __always_inline __u64 percpu_base(void)
{
	__u64 at = address_of(&cpu_offset) + bpf_core_field_offset(struct bpf_array, pptrs);
	__u64 base = 0;

	bpf_probe_read_kernel(&base, sizeof(base), (const void *)at);
	return base;
}

static __always_inline __u64 this_cpu_offset(void)
{
	__u32 zero = 0, cpu;
	__u64 *slot = bpf_map_lookup_elem(&cpu_offset, &zero);
	__u64 base, *published;

	if (!slot)
		return 0;
	if (*slot)
		return *slot;
	base = percpu_base();
	if (!base)
		return 0;
	*slot = address_of(slot) - base;
	/* Published for other CPUs (abort_seed). */
	cpu = bpf_get_smp_processor_id();
	published = bpf_map_lookup_elem(&cpu_offsets, &cpu);
	if (published)
		*published = *slot;
	return *slot;
}

/* This CPU's copy of mibs[idx] of the namespace (struct linux_mib is unsigned long mibs[]); false if unreadable. */
static __always_inline bool mib_now(const struct net *net, __u32 idx, __u64 *v)
{
	__u64 stats = (__u64)BPF_CORE_READ(net, mib.net_statistics);
	__u64 offset;

	if (!idx || !stats)
		return false;
	offset = this_cpu_offset();
	if (!offset)
		return false;
	return !bpf_probe_read_kernel(v, sizeof(*v), (const __u64 *)(stats + offset) + idx);
}

/*
 * Run by the loader on each CPU in turn (BPF_PROG_TEST_RUN with a CPU, 5.10+),
 * never attached: every CPU publishes its per-CPU offset at load, so a
 * namespace's first close can take every CPU's baseline even on a CPU that
 * has not traced anything yet.
 */
SEC("raw_tp")
int wst_publish_offset(void *ctx)
{
	this_cpu_offset();
	return 0;
}

/*
 * ---- A reset "received" that no peer sent ----
 *
 * tcp_receive_reset fires in tcp_reset(), and tcp_reset() is also how the
 * kernel ends a socket it has closed for reading when data still reaches it
 * (tcp_rcv_state_process(), step 7: an orphan in FIN_WAIT1/2, or CLOSING,
 * LAST_ACK, CLOSE_WAIT): it counts TCPAbortOnData, calls tcp_reset() at once,
 * and its caller sends a reset. Nothing on the socket tells the two apart at
 * the tracepoint, but the counter does: in that path it rose on this CPU
 * just before, with nothing in between. So where the state allows it, a
 * reset "received" is one only if this CPU's TCPAbortOnData has not risen
 * since last looked at; the rest are counted nowhere (the reset the kernel
 * sends for it is counted as sent).
 *
 * The other places that count TCPAbortOnData are looked at too, so their
 * rises are not taken for one of these:
 * - tcp_done() then the count in FIN_WAIT1 (linger2 < 0, data after the
 *   FIN): the reset the caller then sends (socket in CLOSE, with the packet)
 *   settles it.
 * - close() with SO_LINGER 0 counts after its move to CLOSE and its reset
 *   (if the state needs one): that move (shut down both ways, SO_LINGER
 *   with 0, nothing unread, no error) leaves one count owed, which the next
 *   rise pays.
 *
 * Races, named: a close that migrates to another CPU between its move and
 * its count, or a softirq that interrupts it there (microseconds) and resets
 * an orphan on that CPU, takes one real reset for one of these and the next
 * of these for a real one: the sum stays exact, the two swap. Process and
 * softirq context on one CPU share its entry without a lock.
 */
const volatile __u32 mib_abort_on_data = 0;

struct abort_seen {
	__u64 seen;	/* TCPAbortOnData on this CPU when last looked at */
	__u64 owed;	/* counts announced (a linger-0 close's reset) that have not risen yet */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mib_key);
	__type(value, struct abort_seen);
} abort_seen SEC(".maps");

/*
 * ---- TIME_WAITs the kernel made, by its own count ----
 *
 * Where the kernel counts TcpExtTW or TcpExtTWKilled when a timewait socket
 * is made (inet_twsk_hashdance_schedule() arms its timer, in tcp_time_wait(),
 * before tcp_done() moves the full socket to CLOSE on the same CPU, with
 * nothing in between that can make another), this CPU's rise of the two
 * since the last move from FIN_WAIT2 or CLOSING to CLOSE it saw is what was
 * made since. It sees what the established hash cannot: a timewait socket
 * ended on another CPU (a reset or data to one in FIN_WAIT2, which rfc1337
 * does not guard) in the microseconds before its close looks for it; and
 * what no run saw: a close whose run the kernel skipped (nested) or never
 * made, whose count then shows at the next close on that CPU. Those are in
 * the total, not in any destination's row and have no event: only a timewait
 * socket found in the hash says whose it is. Kernels that count at expiry
 * (inet_timewait_sock has tw_kill, before ~5.18) leave both indexes 0 and the
 * hash alone decides. Only the timewait program reads and writes tw_seen,
 * and the kernel never nests a program in itself: no lock.
 */
const volatile __u32 mib_tw = 0;
const volatile __u32 mib_tw_killed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mib_key);
	__type(value, __u64);	/* TW + TWKilled on this CPU at the last close looked at */
} tw_seen SEC(".maps");

static __always_inline bool tw_mib_read(__u64 stats, __u64 offset, __u64 *v)
{
	const __u64 *mibs = (const __u64 *)(stats + offset);
	__u64 tw = 0, killed = 0;

	if (bpf_probe_read_kernel(&tw, sizeof(tw), &mibs[mib_tw]) ||
	    bpf_probe_read_kernel(&killed, sizeof(killed), &mibs[mib_tw_killed]))
		return false;
	*v = tw + killed;
	return true;
}

/* What this CPU's TW + TWKilled rose by since its last close; false when unknown (no baseline yet, or not counted at creation). */
static __always_inline bool tw_rise(const struct net *net, __u32 netns, __u64 *rise)
{
	struct mib_key k = { .netns = netns, .cpu = bpf_get_smp_processor_id() };
	__u64 stats = (__u64)BPF_CORE_READ(net, mib.net_statistics);
	__u64 offset, now, *seen;

	if (!mib_tw || !mib_tw_killed || !stats)
		return false;
	offset = this_cpu_offset();
	if (!offset || !tw_mib_read(stats, offset, &now))
		return false;
	seen = bpf_map_lookup_elem(&tw_seen, &k);
	if (!seen) {
		/* No baseline: this close's own is in `now`, the hash decides it; a seed racing in is overwritten. */
		bpf_map_update_elem(&tw_seen, &k, &now, BPF_ANY);
		return false;
	}
	*rise = now - *seen;
	*seen = now;
	return true;
}

/*
 * The baseline: every CPU's count when a socket of the namespace first
 * starts to close (FIN_WAIT1 or CLOSE_WAIT, seen by the timewait program):
 * no socket of it can be closed for reading before. Other CPUs' copies are
 * found through the offsets each CPU publishes in cpu_offsets when the
 * loader runs wst_publish_offset on it (bpf_map_lookup_percpu_elem is
 * 5.19+, and a per-CPU ksym needs the kernel to list data symbols).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} abort_seeded SEC(".maps");	/* the namespace this CPU last saw seeded: spares the hash look-up */

static __always_inline void abort_seed(const struct net *net, __u32 netns)
{
	struct mib_key k = { .netns = netns, .cpu = bpf_get_smp_processor_id() };
	struct abort_seen a = {};
	__u32 zero = 0;
	__u32 *last = bpf_map_lookup_elem(&abort_seeded, &zero);
	bool abort, tw;
	__u64 stats;

	if (!last || *last == netns)
		return;
	*last = netns;
	stats = (__u64)BPF_CORE_READ(net, mib.net_statistics);
	if (!stats)
		return;
	abort = mib_abort_on_data && !bpf_map_lookup_elem(&abort_seen, &k);
	/* TIME_WAITs by the kernel's count (tw_seen, below) take their baselines here too. */
	tw = mib_tw && mib_tw_killed && !bpf_map_lookup_elem(&tw_seen, &k);
	if (!abort && !tw)
		return;
	/* This shape passes 5.10 and 6.1; with a `continue` and both bounds in the loop test they said "infinite loop detected". */
#pragma clang loop unroll(disable)
	for (__u32 cpu = 0; cpu < WST_MAX_CPUS; cpu++) {
		struct mib_key c = { .netns = netns, .cpu = cpu };
		__u64 *offset = bpf_map_lookup_elem(&cpu_offsets, &c.cpu);
		__u64 made;

		if (!offset || cpu >= nr_cpus)
			break;
		/* A CPU that has not said its offset yet (it could not run the loader's program) is skipped. */
		if (*offset && abort &&
		    !bpf_probe_read_kernel(&a.seen, sizeof(a.seen), (const __u64 *)(stats + *offset) + mib_abort_on_data))
			bpf_map_update_elem(&abort_seen, &c, &a, BPF_NOEXIST);
		if (*offset && tw && tw_mib_read(stats, *offset, &made))
			bpf_map_update_elem(&tw_seen, &c, &made, BPF_NOEXIST);
	}
}

/* What this CPU's TCPAbortOnData rose by since last looked at that nothing explains; owe: counts to come. */
static __always_inline __u64 abort_settle(const struct net *net, __u32 netns, __u64 owe)
{
	struct mib_key k = { .netns = netns, .cpu = bpf_get_smp_processor_id() };
	struct abort_seen *a;
	__u64 now, rise, paid;

	if (!mib_now(net, mib_abort_on_data, &now))
		return 0;
	a = bpf_map_lookup_elem(&abort_seen, &k);
	if (!a) {
		/* First look on this CPU: nothing before it is anyone's. */
		struct abort_seen fresh = { .seen = now, .owed = owe };

		bpf_map_update_elem(&abort_seen, &k, &fresh, BPF_NOEXIST);
		return 0;
	}
	rise = now - a->seen;
	paid = rise < a->owed ? rise : a->owed;
	a->seen = now;
	a->owed = a->owed - paid + owe;
	return rise - paid;
}

#define RCV_SHUTDOWN 1
#define SHUTDOWN_MASK 3
/* States in which data to a socket closed for reading makes tcp_reset() (step 7 of tcp_rcv_state_process()). */
#define WST_ABORT_STATES ((1 << TCP_FIN_WAIT1) | (1 << TCP_FIN_WAIT2) | (1 << TCP_CLOSING) | \
			  (1 << TCP_LAST_ACK) | (1 << TCP_CLOSE_WAIT))

/* sk_shutdown: a 2-bit field before 6.2ish, a byte after; direct loads where the pointer allows them. */
#define SK_SHUTDOWN(sk, direct) \
	((direct) ? BPF_CORE_READ_BITFIELD(sk, sk_shutdown) : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown))

/* A reset "received" in tcp_reset() for data on a socket closed for reading, not from the peer. */
static __always_inline bool aborted_on_data(const struct sock *sk, __u32 netns, bool direct)
{
	unsigned char state = RD(direct, sk, __sk_common.skc_state);

	if (!((1 << state) & WST_ABORT_STATES))
		return false;
	if (!(SK_SHUTDOWN(sk, direct) & RCV_SHUTDOWN))
		return false;
	return abort_settle(RD(direct, sk, __sk_common.skc_net.net), netns, 0) > 0;
}

/*
 * A socket moved to CLOSE by close() with SO_LINGER 0 (shut both ways, the
 * flag set with a 0 time, nothing unread, no error: tcp_disconnect() from
 * __tcp_close()): close() counts TCPAbortOnData once it returns, after the
 * reset if it sends one, so the count is owed from here. With unread data
 * close() takes the other branch (TCPAbortOnClose): unread is what lies
 * between what the reader took and what arrived, less a FIN (SOCK_DONE).
 */
static __always_inline void abort_owe_close(const struct sock *sk, __u32 netns, bool direct)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	unsigned long flags;
	__u32 unread;

	if (SK_SHUTDOWN(sk, direct) != SHUTDOWN_MASK)
		return;
	flags = RD(direct, sk, __sk_common.skc_flags);
	if (!(flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_LINGER))) || RD(direct, sk, sk_lingertime))
		return;
	/* tcp_sock lies beyond struct sock, where a BTF pointer to a sock may not reach: probe reads. */
	unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	if (unread > ((flags >> bpf_core_enum_value(enum sock_flags, SOCK_DONE)) & 1))
		return;
	abort_settle(RD(direct, sk, __sk_common.skc_net.net), netns, 1);
}

/* The closed slots (closed_put, closed_take) live in common.h: the send-reset functions' variants read them too. */

/* tcp_send_reset(sk, skb) before 6.10; (sk, skb, reason) from 6.10, with sk NULL allowed. */
static __always_inline void on_reset_sent(const struct sock *sk, const struct sk_buff *skb, __u64 reason, bool direct)
{
	struct wst_event e = {};

	/*
	 * Answering a packet from CLOSE: tcp_done() then TCPAbortOnData in FIN_WAIT1
	 * (linger2 < 0, data after the FIN) came just before; settle it here.
	 */
	if (sk && skb && RD(direct, sk, __sk_common.skc_state) == TCP_CLOSE) {
		__u32 netns = sk_netns(sk, direct);

		if (netns_wanted(netns))
			abort_settle(RD(direct, sk, __sk_common.skc_net.net), netns, 0);
	}
	/* With the send-reset functions hooked, those resets are counted there. */
	if (skb && switch_on(reset_fn_hooked))
		return;
	e.kind = WST_RESET_SENT;
	e.reason = WST_NO_REASON;
	if (bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason))
		e.reason = (__u32)reason;

	if (!reset_tuple(sk, skb, &e, direct))
		return;
	if (sk && e.state == TCP_CLOSE) {
		/* Closed just before (linger 0, unread data, data on an orphan): say what it left. */
		__u8 from = closed_take(sk, direct);

		if (from)
			e.state = from;
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
	__u32 netns;

	if (!sk)
		return;
	netns = sk_netns(sk, direct);
	if (!netns_wanted(netns))
		return;
	/* tcp_reset() on data to a socket closed for reading: the kernel sends that reset, none came (before any filter: it settles the count). */
	if (aborted_on_data(sk, netns, direct))
		return;
	e.kind = WST_RESET_RECEIVED;
	e.reason = WST_NO_REASON;
	if (!sk_tuple(sk, &e, false, direct))
		return;
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
	/* syn_drop's tracepoint route counts the ACK stage too (every path, not only this reason). */
	if (switch_on(listen_drops_settled))
		return 0;
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

/*
 * ---- Listen drops from tracepoints only: SYN stage, cookie ACKs, SYN-ACK retransmits ----
 *
 * No tracepoint fires where the kernel drops a SYN at a listener. In
 * tcp_conn_request() a full accept queue bumps ListenOverflows, every drop
 * bumps ListenDrops (tcp_listendrop()), a full SYN queue without cookies
 * bumps TCPReqQFullDrop, a cookie bumps SyncookiesSent; it returns 0 and
 * tcp_rcv_state_process() consumes the SYN (skb:consume_skb). A cookie's ACK
 * that meets a full accept queue bumps ListenOverflows in syn_recv_sock()
 * and is freed by cookie_v4/v6_check() (skb:kfree_skb, no listener in rx_sk,
 * not reason LISTEN_OVERFLOW); the ACK of a queued request freed by
 * tcp_v4/v6_rcv() (skb:kfree_skb). Which of the two ends a packet, and with
 * which reason, differs between kernels; that some end does, on the CPU that
 * counted, in the same softirq, does not: listeners take packets without the
 * socket lock (no backlog), so the counting and the end never part.
 *
 * So each end reads this CPU's copy of the namespace's counters (they are
 * per CPU: NET_INC_STATS is a this-CPU add) and gives what they rose by since
 * the last settling on this CPU to the listener the packet was addressed to:
 * the SYN stage when it is a SYN, the ACK stage when an ACK. Exact, whatever
 * the path, as long as each packet that counts ends here before the next
 * begins on that CPU. And each packet's start (netif_receive_skb, before IP
 * sees it) settles what rose before it: that rise is no packet's still to
 * come on this CPU, so it is set aside as the namespace's unattributed drops
 * (a row of its own), never given to a listener. A listener's counts are
 * then its own packets' alone, and the namespace's rows add up to its
 * counters.
 *
 * Races and edges, named:
 * - A listener made while tracing (listen(): inet_sock_set_state to LISTEN)
 *   sets the baseline of its namespace on every CPU before its first SYN.
 *   Otherwise the first end seen for a namespace on a CPU has no "before":
 *   it takes every CPU's current counts as the baseline, so drops in flight
 *   on another CPU at that instant, and this packet's own, are not
 *   attributed (at most one packet per CPU, once per namespace, at start).
 * - The kernel skips a run of a program that would nest in a run of the
 *   same program on its CPU: a softirq ending a SYN on the way out of an
 *   interrupt that came while the program ran in process context for another
 *   packet (any freed packet runs it, if only to its first test). Its counts
 *   would be set aside at the next packet's start on that CPU, no listener's. So
 *   each end runs two programs, the same code attached twice (…2 below): the
 *   one the interrupted run is not is free, and settles it. When both run,
 *   the second finds the counters as the first left them and stops there.
 * - An end that interrupts another while it is being settled (between its
 *   counter reads and its update of the settled copy) takes the whole rise
 *   up to its own reads, the interrupted one's included: each counter's
 *   settled value only moves forward, by compare-and-swap, so every unit of
 *   a rise goes to exactly one end and none waits. The sum stays exact; the
 *   interrupted end's listener may lose its share to the interrupting one's
 *   (a window of a few instructions).
 * - The listener is found by the packet's destination among known listener
 *   rows: bound address, then the wildcard (and for IPv4, a dual-stack IPv6
 *   listener). A listener never seen before gets a row under the packet's
 *   address. Two sockets on one address (SO_REUSEPORT) share their row.
 * - Counts that rise on a packet that is not TCP, neither a SYN nor to a
 *   listening port, or that still has a socket when freed (none should), are
 *   set aside at the next packet's start on the CPU: unattributed.
 * - Work the kernel does where it runs no BPF program at all: its counts
 *   rise with no start or end seen, and are set aside the same way. A kernel
 *   may hide some tasks from tracing: on the machine this was built on,
 *   softirq work done on top of its init's threads (a protected sandbox
 *   agent) runs no tracing program, not even counted as a skipped run, while
 *   ftrace's own events show it (every one of 18 SYN retransmits there, none
 *   of 17,000 elsewhere). A whole timer batch of SYNs to a full listener is
 *   then counted with nothing seen. Before packet starts settled, the next
 *   end on that CPU took it, so a batch just before its listener closed went
 *   to the next listener; now it is unattributed. Checked with ftrace's
 *   net:netif_receive_skb filtered to those threads, beside two soaks of 160
 *   full listeners each (test/kernels/route-soak.mjs): the 29 SYNs it showed
 *   received there were the 29 overflows set aside, listener by listener.
 * - A packet's start that interrupts an end being settled in process context
 *   (a softirq on the way out of an interrupt) sets aside the rise that end
 *   read; such an end is never a listener packet's (they end in the softirq
 *   that counted them), so nothing of a listener's is lost.
 */
/*
 * Indexes of the counters in struct linux_mib, as the running kernel numbers
 * them: the enum is anonymous (no CO-RE) and kernels insert new counters in
 * the middle (ListenOverflows is 20 in 6.1, 23 in 6.18), so the loader reads
 * them from the kernel's BTF. 0: not found; nothing is counted then.
 */
const volatile __u32 mib_listen_overflows = 0;
const volatile __u32 mib_listen_drops = 0;
const volatile __u32 mib_reqq_full_drop = 0;
const volatile __u32 mib_syncookies_sent = 0;

struct mib_seen {
	__u64 overflows;	/* ListenOverflows */
	__u64 drops;		/* ListenDrops */
	__u64 reqq_full;	/* TCPReqQFullDrop */
	__u64 cookies;		/* SyncookiesSent */
};

/*
 * Per CPU: the namespace and the ListenDrops and SyncookiesSent it showed when
 * this CPU last found its settled copy equal to them (see mib_risen()), mixed
 * into one word: a run nested in another's write (an interrupt's softirq) can
 * replace it, never tear it into one namespace's name and another's counts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mib_quick SEC(".maps");

static __always_inline __u64 mib_quick_word(__u32 netns, __u64 drops, __u64 cookies)
{
	const __u64 m = 0x9e3779b97f4a7c15ULL;
	__u64 h = ((__u64)netns + 1) * m;

	h = (h ^ drops) * m;
	h = (h ^ cookies) * m;
	return h ^ (h >> 29);
}

/* The counts last settled, per namespace and CPU (only that CPU writes its entry). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mib_key);
	__type(value, struct mib_seen);
} mib_settled SEC(".maps");

/* One CPU's copy of the four counts (struct linux_mib is unsigned long mibs[]). */
static __always_inline bool mib_read(__u64 stats, __u64 offset, struct mib_seen *m)
{
	const __u64 *mibs = (const __u64 *)(stats + offset);

	if (!mib_listen_overflows || !mib_listen_drops || !mib_reqq_full_drop || !mib_syncookies_sent)
		return false;
	return !bpf_probe_read_kernel(&m->overflows, sizeof(__u64), &mibs[mib_listen_overflows]) &&
	       !bpf_probe_read_kernel(&m->drops, sizeof(__u64), &mibs[mib_listen_drops]) &&
	       !bpf_probe_read_kernel(&m->reqq_full, sizeof(__u64), &mibs[mib_reqq_full_drop]) &&
	       !bpf_probe_read_kernel(&m->cookies, sizeof(__u64), &mibs[mib_syncookies_sent]);
}

/* First sight of a namespace on this CPU: every CPU's counts so far are nobody's to attribute. */
static __always_inline void mib_seed(__u32 netns, __u64 stats)
{
	/* Every CPU's offset, as abort_seed finds them (published at load), in the loop shape old verifiers take. */
#pragma clang loop unroll(disable)
	for (__u32 cpu = 0; cpu < WST_MAX_CPUS; cpu++) {
		struct mib_key k = { .netns = netns, .cpu = cpu };
		struct mib_seen m;
		__u64 *offset = bpf_map_lookup_elem(&cpu_offsets, &k.cpu);

		if (!offset || cpu >= nr_cpus)
			break;
		if (*offset && mib_read(stats, *offset, &m))
			bpf_map_update_elem(&mib_settled, &k, &m, BPF_NOEXIST);
	}
}

/* The row of the listener a packet was addressed to (see above); e's local end becomes the listener's. */
static __always_inline struct wst_listener_val *packet_listener(struct wst_event *e)
{
	struct wst_listener_key k = { .netns = e->netns, .port = e->lport, .family = e->family };
	struct wst_listener_val *v;

	__builtin_memcpy(k.addr, e->laddr, 16);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (v)
		return v;
	__builtin_memset(k.addr, 0, 16);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (!v && e->family == AF_INET) {
		k.family = AF_INET6;
		v = bpf_map_lookup_elem(&listeners, &k);
	}
	if (!v)
		return listener_entry(e, 0, false);
	if (k.family != e->family) {
		/* An IPv4 peer of a dual-stack listener: as the kernel shows it, v4-mapped (::ffff:a.b.c.d). */
		__u8 mapped[16] = { [10] = 0xff, [11] = 0xff };

		__builtin_memcpy(mapped + 12, e->raddr, 4);
		__builtin_memcpy(e->raddr, mapped, 16);
	}
	__builtin_memcpy(e->laddr, k.addr, 16);
	e->family = k.family;
	return v;
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&totals, &idx);

	if (v && n)
		__sync_fetch_and_add(v, n);
}

/*
 * The namespace a received packet is in. tcp_v4/v6_rcv() clear skb->dev
 * before a listener sees the packet; its route (still attached: the SYN's
 * checks read it) has the device.
 */
static __always_inline struct net *packet_net(const struct sk_buff *skb, bool direct)
{
	struct net *net = direct ? __builtin_preserve_access_index(skb->dev->nd_net.net) : BPF_CORE_READ(skb, dev, nd_net.net);
	unsigned long refdst;

	if (net)
		return net;
	refdst = RD(direct, skb, _skb_refdst) & ~1UL;
	if (!refdst)
		return 0;
	return BPF_CORE_READ((const struct dst_entry *)refdst, dev, nd_net.net);
}

/*
 * A TCP segment's ends, seen from this host, and its flags; false when it is
 * not TCP or its headers cannot be read. IPv4 without options and IPv6
 * without extension headers (what a SYN or handshake ACK carries).
 */
static __always_inline bool segment_tuple(const struct sk_buff *skb, struct wst_event *e, __u8 *flags, bool direct)
{
	unsigned char *head = RD(direct, skb, head);
	__u16 nh = RD(direct, skb, network_header);
	__u8 hdr[sizeof(struct wst_ipv6hdr)];
	struct {
		struct wst_ports ports;
		__u8 rest[10];	/* seq, ack_seq, data offset, then the flags byte */
	} tcp;
	__u16 iplen;

	if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + nh))
		return false;
	if ((hdr[0] >> 4) == 4) {
		struct wst_iphdr *ip = (struct wst_iphdr *)hdr;

		if (ip->protocol != IPPROTO_TCP)
			return false;
		iplen = (hdr[0] & 0xf) * 4;
		e->family = AF_INET;
		__builtin_memcpy(e->laddr, &ip->daddr, 4);
		__builtin_memcpy(e->raddr, &ip->saddr, 4);
	} else if ((hdr[0] >> 4) == 6) {
		struct wst_ipv6hdr *ip6 = (struct wst_ipv6hdr *)hdr;

		if (ip6->nexthdr != IPPROTO_TCP)
			return false;
		iplen = sizeof(struct wst_ipv6hdr);
		e->family = AF_INET6;
		__builtin_memcpy(e->laddr, ip6->daddr, 16);
		__builtin_memcpy(e->raddr, ip6->saddr, 16);
	} else {
		return false;
	}
	if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + nh + (iplen & 0x3c)))
		return false;
	e->lport = __builtin_bswap16(tcp.ports.dest);
	e->rport = __builtin_bswap16(tcp.ports.source);
	*flags = tcp.rest[9];
	return true;
}

/*
 * What one counter rose by since its settled value, at most cap, moving the
 * settled value forward by that much. Compare-and-swap: an end that
 * interrupts this one (and moved it meanwhile) is never undone, and no unit
 * is taken twice. A few tries: each failure means an interrupting end took
 * the rise, and nesting is shallow.
 */
static __always_inline __u64 take_rise(__u64 *settled, __u64 now, __u64 cap, struct wst_settle_state *st)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)settled, d;

		if (now <= old)
			return 0;
		d = now - old < cap ? now - old : cap;
		if (__sync_val_compare_and_swap(settled, old, old + d) == old)
			return d;
	}
	/* Interrupted at every try: what is left is the next end's. */
	st->lost++;
	return 0;
}

/*
 * The share of the counts' rise since the last settling on this CPU that a
 * packet's end takes (d), up to the counts its end read (now: what an end
 * that interrupts it adds is that end's to take). A SYN's end takes all of it; another segment's (the
 * ACK stage) takes only the overflows and the ListenDrops each of them made,
 * leaving a SYN-stage rise of an end that had to wait for the next SYN's.
 */
static __always_inline void claim(struct mib_seen *was, const struct mib_seen *now, bool syn,
				  struct wst_settle_state *st, struct mib_seen *d)
{
	d->overflows = take_rise(&was->overflows, now->overflows, ~0ULL, st);
	d->drops = take_rise(&was->drops, now->drops, syn ? ~0ULL : d->overflows, st);
	d->reqq_full = syn ? take_rise(&was->reqq_full, now->reqq_full, ~0ULL, st) : 0;
	d->cookies = syn ? take_rise(&was->cookies, now->cookies, ~0ULL, st) : 0;
}

/*
 * The counts' rise on this CPU, given to the listener of the packet whose end
 * found it. Nothing when the packet cannot be a listener's (not TCP, or
 * neither a SYN nor to a port that listens): the rise waits for the next end.
 */
static __always_inline void attribute(const struct sk_buff *skb, __u32 netns, struct mib_seen *was,
				      const struct mib_seen *seen, __u32 drop_reason, bool direct, struct wst_settle_state *st)
{
	struct wst_listener_val *v;
	struct wst_event e = { .netns = netns };
	struct mib_seen d;
	__u8 flags = 0;
	bool syn;
	__u64 now;

	/* A stray count must not invent a row: a SYN, or a segment to a port that listens (listen() marks it). */
	if (!segment_tuple(skb, &e, &flags, direct))
		return;
	syn = (flags & 0x12) == 0x02;
	if (!syn && !is_listen_port(e.lport))
		return;
	/* Taken even for a port or container not traced: theirs, not the next packet's. */
	claim(was, seen, syn, st, &d);
	if (!port_wanted(e.lport, 0))
		return;
	v = packet_listener(&e);
	if (!v || !row_cgroup_wanted(v))
		return;
	e.cgroup = v->cgroup;
	e.inode = v->inode;
	e.queue = v->depth;
	e.backlog = v->backlog;
	e.state = TCP_LISTEN;
	now = bpf_ktime_get_ns();

	if (syn) {
		/* A SYN: its drop's cause, from which counter rose with ListenDrops. */
		__u64 full = d.overflows, reqq = d.reqq_full, rest = 0;
		__u32 cause = WST_SYN_CAUSE_ACCEPT_QUEUE_FULL, other = WST_SYN_CAUSE_OTHER;

		if (d.drops > full + reqq)
			rest = d.drops - full - reqq;
		if (d.cookies)
			__sync_fetch_and_add(&v->cookies_sent, d.cookies);
		if (!full && !reqq && !rest)
			return;
		if (full)
			__sync_fetch_and_add(&v->syn_drops[WST_SYN_CAUSE_ACCEPT_QUEUE_FULL], full);
		if (reqq)
			__sync_fetch_and_add(&v->syn_drops[WST_SYN_CAUSE_SYN_QUEUE_FULL], reqq);
		if (rest) {
			/*
			 * Dropped without a counter of its own: without cookies,
			 * tcp_conn_request's drop of unproven peers (SYN queue
			 * three-quarters of tcp_max_syn_backlog); else something rarer.
			 */
			struct net *net = packet_net(skb, direct);
			struct netns_ipv4 *v4 = __builtin_preserve_access_index(&net->ipv4);

			if (!BPF_CORE_READ_BITFIELD_PROBED(v4, sysctl_tcp_syncookies))
				other = WST_SYN_CAUSE_UNPROVEN_PEER;
			__sync_fetch_and_add(&v->syn_drops[other & (WST_SYN_CAUSE__MAX - 1)], rest);
		}
		count_n(WST_CNT_SYN_DROP, full + reqq + rest);
		if (!full)
			cause = reqq ? WST_SYN_CAUSE_SYN_QUEUE_FULL : other;
		if (now - v->last_syn_event_ns < full_event_interval_ns)
			return;
		v->last_syn_event_ns = now;
		e.kind = WST_SYN_DROP;
		e.reason = cause;
	} else {
		/* An ACK (or anything else) to a listener: the ACK stage, one event per packet. */
		if (!d.overflows)
			return;
		__sync_fetch_and_add(&v->overflows, d.overflows);
		count_n(WST_CNT_LISTEN_OVERFLOW, d.overflows);
		e.kind = WST_LISTEN_OVERFLOW;
		e.reason = drop_reason;
	}
	e.ts_ns = now;
	emit(&e, WST_KEEP_LPORT);
}

/*
 * This CPU's settled copy of a namespace's counts, when they rose since (their
 * values now in *now); 0 when nothing rose (the common case), the namespace is
 * not traced, or this is its first sight on this CPU (its baseline is set then
 * if `seed`).
 */
static __always_inline struct mib_seen *mib_risen(const struct net *net, struct mib_key *k, struct mib_seen *now, bool seed, bool direct)
{
	struct mib_seen *was;
	__u64 stats, offset, word, *q;
	__u32 zero = 0;

	if (!net)
		return 0;
	k->netns = direct ? __builtin_preserve_access_index(net->ns.inum) : BPF_CORE_READ(net, ns.inum);
	if (!netns_wanted(k->netns))
		return 0;
	stats = (__u64)BPF_CORE_READ(net, mib.net_statistics);
	offset = this_cpu_offset();
	if (!stats || !offset || !mib_listen_drops || !mib_syncookies_sent)
		return 0;
	/*
	 * Every packet runs this: first the two counts any rise moves (each
	 * overflow and each full SYN queue is also a ListenDrop; a cookie drops
	 * nothing), the rest only when one of them did. Unmoved since this CPU
	 * last found its settled copy equal to them: nothing rose, and the
	 * settled map is not even looked up (a storm's packets, one namespace).
	 */
	if (bpf_probe_read_kernel(&now->drops, sizeof(__u64), (const __u64 *)(stats + offset) + mib_listen_drops) ||
	    bpf_probe_read_kernel(&now->cookies, sizeof(__u64), (const __u64 *)(stats + offset) + mib_syncookies_sent))
		return 0;
	word = mib_quick_word(k->netns, now->drops, now->cookies);
	q = bpf_map_lookup_elem(&mib_quick, &zero);
	if (q && *q == word)
		return 0;
	k->cpu = bpf_get_smp_processor_id();
	was = bpf_map_lookup_elem(&mib_settled, k);
	if (!was) {
		if (seed)
			mib_seed(k->netns, stats);
		return 0;
	}
	if (now->drops == was->drops && now->cookies == was->cookies) {
		/* Settled equals them: so it stays until they move (it only moves up to what they show). */
		if (q)
			*q = word;
		return 0;
	}
	if (!mib_read(stats, offset, now))
		return 0;
	return was;
}

static __always_inline void settle_end(const struct sk_buff *skb, __u32 drop_reason, bool direct, struct wst_settle_state *st)
{
	struct mib_seen now, *was;
	struct mib_key k;

	was = mib_risen(packet_net(skb, direct), &k, &now, true, false);
	if (was)
		attribute(skb, k.netns, was, &now, drop_reason, direct, st);
}

/*
 * The start of a received packet (netif_receive_skb, before IP and TCP see
 * it): whatever its namespace's counts rose by on this CPU since the last
 * settling cannot be this packet's, nor a later one's. Every packet that
 * counts ends before the next begins on its CPU (softirqs do not nest), so a
 * rise found here is one no end was seen for: counted where the kernel ran
 * no BPF program (see "Races and edges"), or on a packet that cannot be a
 * listener's. It goes to the namespace's unattributed row (no address, port
 * 0), so listener rows plus that row add up to the kernel's counters, and no
 * listener is given another's drops.
 */
static __always_inline void settle_begin(const struct sk_buff *skb, bool direct)
{
	struct mib_seen now, d, *was;
	struct mib_key k;
	struct wst_settle_state *st;
	struct wst_event e = {};
	struct wst_listener_val *v;
	__u64 rest = 0;
	__u32 zero = 0;

	if (!skb || !switch_on(listen_drops_settled))
		return;
	/*
	 * The device it arrives on is in its namespace. Only a namespace whose
	 * listener packets were seen has a baseline: every other packet on the
	 * host adds no entry (the map holds namespaces × CPUs).
	 */
	was = mib_risen(direct ? __builtin_preserve_access_index(skb->dev->nd_net.net) : BPF_CORE_READ(skb, dev, nd_net.net), &k, &now, false,
			direct);
	if (!was)
		return;
	st = bpf_map_lookup_elem(&settling, &zero);
	if (!st)
		return;
	/* All of it, as a SYN's end takes it. */
	claim(was, &now, true, st, &d);
	/* The namespace's row of its own: no address, no port, no family. */
	e.netns = k.netns;
	v = listener_entry(&e, 0, false);
	if (!v)
		return;
	/* Which stage is not known: ListenOverflows as overflows, the other drops by their counter. */
	if (d.drops > d.overflows + d.reqq_full)
		rest = d.drops - d.overflows - d.reqq_full;
	if (d.overflows)
		__sync_fetch_and_add(&v->overflows, d.overflows);
	if (d.reqq_full)
		__sync_fetch_and_add(&v->syn_drops[WST_SYN_CAUSE_SYN_QUEUE_FULL], d.reqq_full);
	if (rest)
		__sync_fetch_and_add(&v->syn_drops[WST_SYN_CAUSE_OTHER], rest);
	if (d.cookies)
		__sync_fetch_and_add(&v->cookies_sent, d.cookies);
	count_n(WST_CNT_LISTEN_OVERFLOW, d.overflows);
	count_n(WST_CNT_SYN_DROP, d.reqq_full + rest);
}

/*
 * One end, from either twin (first: the one attached first, which the kernel
 * runs first). The first marks the packet once it has seen it through and
 * says while it runs (first_running); the second, finding its own packet
 * marked while no first twin runs, only clears the mark. While a first twin
 * runs, the second settles whatever the mark: that is when the kernel skips
 * a first run (nested in it, on this CPU), and a mark the first left long ago
 * for a packet at the same address (its second run skipped, nested in the
 * second's own run) must not make the second skip the one end no other run
 * settles. A mark left behind is overwritten at the first's next run
 * (counted in stale); a packet settled twice finds nothing new the second
 * time. The other tracepoint's twins may run inside a first twin's run: the
 * flag is restored, not cleared, when they finish.
 */
static __always_inline void settle(const struct sk_buff *skb, __u32 drop_reason, bool direct, bool first, __u32 prog)
{
	__u32 zero = 0, was_running;
	struct wst_settle_state *st;

	/*
	 * Every packet freed on the host passes here: most are sent ones, which
	 * still have their socket. A packet to a listener has none (TCP takes
	 * the listener from the lookup, and a socket stolen from the packet is
	 * cleared from it), so that one load spares the rest the counters' reads.
	 */
	if (!first) {
		hit(prog);
		if (!skb || RD(direct, skb, sk))
			return;
		st = bpf_map_lookup_elem(&settling, &zero);
		if (!st)
			return;
		if (st->settled == (__u64)(unsigned long)skb && !st->first_running) {
			st->settled = 0;
			return;
		}
		settle_end(skb, drop_reason, direct, st);
		return;
	}
	/* The first twin says it runs from its start, whatever the packet: an end nested in any of its runs skips it. */
	st = bpf_map_lookup_elem(&settling, &zero);
	if (!st)
		return;
	/* Kept for a first twin of the other tracepoint that this run interrupted. */
	was_running = st->first_running;
	st->first_running = 1;
	hit(prog);
	if (skb && !RD(direct, skb, sk)) {
		settle_end(skb, drop_reason, direct, st);
		if (st->settled)
			st->stale++;
		st->settled = (__u64)(unsigned long)skb;
	}
	st->first_running = was_running;
}

/*
 * inet_sock_set_state(sk, old, new) to LISTEN, from the timewait program
 * (one program per tracepoint: every state change of every socket runs it):
 * a listener begins. Its namespace's counts so far are nobody's (the
 * baseline, on every CPU, before any SYN can reach it), and it gets its row
 * under its bound address now, so its drops find it even before it queues a
 * child. Only while the tracepoint route is live.
 */
static __always_inline void syn_listen(const struct sock *sk)
{
	struct wst_event e = {};
	struct net *net;
	__u64 stats;
	__u32 netns;

	if (!switch_on(listen_drops_settled) || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	netns = BPF_CORE_READ(net, ns.inum);
	if (!netns_wanted(netns))
		return;
	stats = (__u64)BPF_CORE_READ(net, mib.net_statistics);
	if (stats)
		mib_seed(netns, stats);
	/* listen() without bind() takes its port after this: no row for port 0. */
	if (sk_tuple(sk, &e, true, false) && e.lport)
		listener_entry(&e, sk, false);
}

/* The states whose move to CLOSE a reset may follow in the same call chain (tcp_need_reset()). */
#define WST_RESET_MAY_FOLLOW ((1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT) | (1 << TCP_FIN_WAIT1) | (1 << TCP_SYN_RECV))

/*
 * inet_sock_set_state(sk, old, new). The timewait socket itself never passes
 * here: tcp_time_wait() creates it, then tcp_done() moves the full socket from
 * FIN_WAIT2 or CLOSING to CLOSE. That move, when the timewait socket is in
 * the established hash (timewait_made), is one TIME_WAIT entry; the kernel's
 * own count, where it counts at creation, adds those made that the hash no
 * longer shows or no run saw (tw_rise). This runs on every
 * state change of every socket: all but moves to CLOSE from the few states
 * that matter leave at the first test.
 */
static __always_inline void on_set_state(const struct sock *sk, int oldstate, int newstate, bool direct)
{
	struct wst_event e = {};
	bool may_tw = oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING;
	bool found;
	__u64 rise = 0;
	__u32 netns;

	if (newstate == TCP_LISTEN) {
		syn_listen(sk);
		return;
	}
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_CLOSE_WAIT) {
		/* The first close in a namespace: baselines for resets received that no peer sent, and for TIME_WAITs made. */
		netns = sk_netns(sk, direct);
		if (netns_wanted(netns))
			abort_seed(RD(direct, sk, __sk_common.skc_net.net), netns);
		return;
	}
	if (newstate != TCP_CLOSE || oldstate == TCP_LISTEN)
		return;
	netns = sk_netns(sk, direct);
	if (RD(direct, sk, sk_protocol) != IPPROTO_TCP || !netns_wanted(netns))
		return;
	/* Not when an error closes it (a reset received, a timeout: sk_err is set before the close). */
	if (!RD(direct, sk, sk_err))
		abort_owe_close(sk, netns, direct);
	if (!(may_tw || ((1 << oldstate) & WST_RESET_MAY_FOLLOW)))
		return;
	found = may_tw && timewait_made(sk, direct);
	/* Made by the kernel's count but not found (or not seen at all): in the total only. */
	if (may_tw && tw_rise(RD(direct, sk, __sk_common.skc_net.net), netns, &rise) && rise > (found ? 1 : 0))
		count_n(WST_CNT_TIMEWAIT, rise - (found ? 1 : 0));
	if (!found) {
		/*
		 * No timewait socket: a reset may follow in this call (abort,
		 * linger 0, unread data, data on an orphan in FIN_WAIT2, linger2
		 * < 0): note the state left for it. Not after SYN_SENT, LAST_ACK
		 * or the TIME_WAIT states, nor when an error closes it (a reset
		 * received, a timeout: sk_err is set before the close and the
		 * kernel sends no reset after).
		 */
		if (!RD(direct, sk, sk_err))
			closed_put(sk, oldstate, direct);
		return;
	}

	e.kind = WST_TIMEWAIT;
	e.reason = WST_NO_REASON;
	if (!sk_tuple(sk, &e, false, direct))
		return;
	e.state = oldstate;

	struct wst_tw_key k = { .cgroup = e.cgroup, .netns = e.netns, .rport = e.rport, .family = e.family };
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

/* netif_receive_skb(skb): every received packet's start, where rises no end took are set aside. */
SEC("tp_btf/netif_receive_skb")
int wst_syn_begin_btf(__u64 *ctx)
{
	hit(WST_P_SYN_BEGIN_BTF);
	settle_begin((const struct sk_buff *)ctx[0], true);
	return 0;
}

SEC("raw_tp/netif_receive_skb")
int wst_syn_begin(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_SYN_BEGIN);
	settle_begin((const struct sk_buff *)ctx->args[0], false);
	return 0;
}

/*
 * consume_skb(skb, location): where tcp_rcv_state_process() leaves a SYN,
 * taken or dropped; kfree_skb(skb, location, reason[, rx_sk]): where
 * ACK-stage drops end (and SYNs on kernels that free them). Each twice (the
 * ...2 twins): a run the kernel skips as nested in one is made by the other.
 */
SEC("tp_btf/consume_skb")
int wst_syn_consumed_btf(__u64 *ctx)
{
	settle((const struct sk_buff *)ctx[0], WST_NO_REASON, true, true, WST_P_SYN_CONSUMED_BTF);
	return 0;
}

SEC("tp_btf/consume_skb")
int wst_syn_consumed2_btf(__u64 *ctx)
{
	settle((const struct sk_buff *)ctx[0], WST_NO_REASON, true, false, WST_P_SYN_CONSUMED2_BTF);
	return 0;
}

SEC("raw_tp/consume_skb")
int wst_syn_consumed(struct bpf_raw_tracepoint_args *ctx)
{
	settle((const struct sk_buff *)ctx->args[0], WST_NO_REASON, false, true, WST_P_SYN_CONSUMED);
	return 0;
}

SEC("raw_tp/consume_skb")
int wst_syn_consumed2(struct bpf_raw_tracepoint_args *ctx)
{
	settle((const struct sk_buff *)ctx->args[0], WST_NO_REASON, false, false, WST_P_SYN_CONSUMED2);
	return 0;
}

SEC("tp_btf/kfree_skb")
int wst_syn_freed_btf(__u64 *ctx)
{
	settle((const struct sk_buff *)ctx[0], (__u32)ctx[2], true, true, WST_P_SYN_FREED_BTF);
	return 0;
}

SEC("tp_btf/kfree_skb")
int wst_syn_freed2_btf(__u64 *ctx)
{
	settle((const struct sk_buff *)ctx[0], (__u32)ctx[2], true, false, WST_P_SYN_FREED2_BTF);
	return 0;
}

SEC("raw_tp/kfree_skb")
int wst_syn_freed(struct bpf_raw_tracepoint_args *ctx)
{
	settle((const struct sk_buff *)ctx->args[0], (__u32)ctx->args[2], false, true, WST_P_SYN_FREED);
	return 0;
}

SEC("raw_tp/kfree_skb")
int wst_syn_freed2(struct bpf_raw_tracepoint_args *ctx)
{
	settle((const struct sk_buff *)ctx->args[0], (__u32)ctx->args[2], false, false, WST_P_SYN_FREED2);
	return 0;
}

/* tcp_retransmit_synack(sk, req): sk is the listener; the kernel counts TCPSynRetrans just before. */
static __always_inline void on_synack_rtx(const struct sock *sk, bool direct)
{
	struct wst_listener_val *v;
	struct wst_event e = {};

	if (!sk || !sk_tuple(sk, &e, true, direct))
		return;
	v = listener_entry(&e, sk, direct);
	if (v)
		__sync_fetch_and_add(&v->synack_retrans, 1);
}

SEC("tp_btf/tcp_retransmit_synack")
int wst_synack_rtx_btf(__u64 *ctx)
{
	hit(WST_P_SYNACK_RTX_BTF);
	on_synack_rtx((const struct sock *)ctx[0], true);
	return 0;
}

SEC("raw_tp/tcp_retransmit_synack")
int wst_synack_rtx(struct bpf_raw_tracepoint_args *ctx)
{
	hit(WST_P_SYNACK_RTX);
	on_synack_rtx((const struct sock *)ctx->args[0], false);
	return 0;
}
