/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of what crosses from the BPF programs to user space:
 * the ring-buffer event record, the counter-map keys and values, and the
 * enums they use. Included by bpf/wstrace.bpf.c and by the addon; the
 * TypeScript decoder is pinned to it by a test (offsets exported by the addon).
 */
#ifndef WSTRACE_H
#define WSTRACE_H

#define WST_MAX_PORTS 16
#define WST_NO_REASON 0xffffffffu

/* Event kinds. Stable numbers: they are part of the record. */
enum wst_kind {
	WST_RESET_SENT = 1,
	WST_RESET_RECEIVED = 2,
	WST_TIMEWAIT = 3,
	WST_ACCEPT_QUEUE_FULL = 4,
	WST_LISTEN_OVERFLOW = 5,
	WST_SYN_DROP = 6,	/* reason holds enum wst_syn_cause */
};

/* Why a SYN was dropped at the listener, judged from its queues at entry. */
enum wst_syn_cause {
	WST_SYN_ACCEPTQ_FULL = 0,	/* accept queue full (ListenOverflows) */
	WST_SYN_SYNQ_FULL = 1,		/* SYN queue full and no syncookies */
	WST_SYN_UNPROVEN = 2,		/* SYN queue 3/4 full: unproven peer dropped */
	WST_SYN_OTHER = 3,		/* anything else (memory, LSM, ...) */
	WST_SYN__MAX = 4,
};

/* Accept-queue residency histogram: bucket i holds waits in [2^i, 2^(i+1)) us. */
#define WST_RESIDENCY_BUCKETS 32

/* Indexes of the per-CPU totals array. */
enum wst_counter {
	WST_CNT_RESET_SENT = 0,
	WST_CNT_RESET_RECEIVED = 1,
	WST_CNT_TIMEWAIT = 2,
	WST_CNT_ACCEPT_QUEUE_FULL = 3,	/* enqueues that left a queue full */
	WST_CNT_LISTEN_OVERFLOW = 4,	/* ACK-stage drops, LISTEN_OVERFLOW */
	WST_CNT_ACCEPT_ENQUEUED = 5,	/* children queued on any listener */
	WST_CNT_RING_DROPS = 6,		/* ring-buffer reserve failures */
	WST_CNT_MAP_FULL = 7,		/* keyed counter not stored: map full */
	WST_CNT_EVENTS = 8,		/* records written to the ring */
	WST_CNT_SYN_DROP = 9,		/* SYN-stage listen drops (richer hook) */
	WST_CNT_ACCEPTED = 10,		/* accepts timed for residency */
	WST_CNT__MAX = 11,
};

/* Ring-buffer record. Largest fields first; no implicit padding. */
struct wst_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u64 inode;		/* local socket's inode, 0 when it has none */
	__u8 laddr[16];		/* local address (IPv4 in the first 4 bytes) */
	__u8 raddr[16];		/* remote address */
	__u32 netns;		/* network namespace inode */
	__u32 reason;		/* kernel enum value, or WST_NO_REASON */
	__u32 queue;		/* accept-queue depth (listener events) */
	__u32 backlog;		/* accept-queue limit (listener events) */
	__u16 lport;		/* host byte order */
	__u16 rport;		/* host byte order */
	__u16 family;		/* AF_INET or AF_INET6 */
	__u8 kind;		/* enum wst_kind */
	__u8 state;		/* TCP state of the socket, 0 when none */
};

/* Per listener: keyed by its bound address, not by socket pointer. */
struct wst_listener_key {
	__u8 addr[16];
	__u32 netns;
	__u16 port;
	__u16 family;
};

struct wst_listener_val {
	__u64 enqueued;		/* children queued */
	__u64 full_hits;	/* enqueues that left the queue full */
	__u64 overflows;	/* ACK-stage drops (LISTEN_OVERFLOW) */
	__u64 last_event_ns;	/* rate limit for accept_queue_full events */
	__u64 inode;		/* listener socket inode */
	__u32 peak;		/* deepest queue seen */
	__u32 backlog;		/* limit at last sighting */
	__u32 depth;		/* depth at last sighting */
	__u32 _pad;
	__u64 syn_drops[WST_SYN__MAX];	/* SYN-stage drops by cause */
	__u64 last_syn_event_ns;	/* rate limit for syn_drop events */
};

/* A child waiting in an accept queue, for residency timing. */
struct wst_enqueued {
	__u64 ts_ns;
	struct wst_listener_key listener;
};

struct wst_residency {
	__u64 buckets[WST_RESIDENCY_BUCKETS];
	__u64 count;
	__u64 sum_ns;
};

/* Set by the loader once it knows which richer hooks are attached. */
struct wst_switches {
	__u32 time_accepts;	/* an accept hook is attached: record enqueue times */
	__u32 reset_fn_hooked;	/* send-reset functions hooked: the tracepoint keeps only active resets */
};

/*
 * Hit counters, one per program, so a kernel matrix can say "fired" for each
 * hook variant without needing its traffic to pass the filters.
 */
enum wst_prog {
	WST_P_RST_SENT = 0,
	WST_P_RST_RECV = 1,
	WST_P_TIMEWAIT = 2,
	WST_P_ACCEPTQ = 3,
	WST_P_LISTEN_OVF = 4,
	WST_P_CONN_REQ_FENTRY = 5,
	WST_P_CONN_REQ_FEXIT = 6,
	WST_P_CONN_REQ_KPROBE = 7,
	WST_P_CONN_REQ_KRETPROBE = 8,
	WST_P_SYNRECV_FEXIT = 9,
	WST_P_SYNRECV_KPROBE = 10,
	WST_P_SYNRECV_KRETPROBE = 11,
	WST_P_ACCEPT_FEXIT = 12,
	WST_P_ACCEPT_KRETPROBE = 13,
	WST_P_SEND_RESET_FENTRY = 14,
	WST_P_SEND_RESET_KPROBE = 15,
	WST_P_QUEUE_ADD_FEXIT = 16,
	WST_P_QUEUE_ADD_KPROBE = 17,
	WST_P__MAX = 18,
};

/* Per local port, direction, state and reason. */
struct wst_reset_key {
	__u32 netns;
	__u32 reason;
	__u16 lport;
	__u8 kind;		/* WST_RESET_SENT or WST_RESET_RECEIVED */
	__u8 state;
};

/* Per destination (remote address and port). */
struct wst_tw_key {
	__u8 raddr[16];
	__u32 netns;
	__u16 rport;
	__u16 family;
};

#endif /* WSTRACE_H */
