/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of what crosses from the BPF programs to user space:
 * the ring-buffer event record, the counter-map keys and values, and the
 * enums they use. Included by bpf/wstrace.bpf.c and by the addon; the
 * TypeScript decoder is pinned to it by test/layout.test.ts (sizes and offsets
 * exported by the addon).
 */
#ifndef WSTRACE_H
#define WSTRACE_H

#define WST_MAX_PORTS 16
/* Cgroups a --cgroup filter names, each with its descendants. */
#define WST_MAX_CGROUPS 8
/* The root of the cgroup2 hierarchy (its directory's inode number). */
#define WST_ROOT_CGROUP 1
#define WST_NO_REASON 0xffffffffu

/*
 * The enums numbering kinds, SYN-drop causes, counters and hit counters are
 * written from the signal table (src/signals/table.ts) by `npm run gen`.
 */
#include "signals.gen.h"

/* Accept-queue residency histogram: bucket i holds waits in [2^i, 2^(i+1)) us. */
#define WST_RESIDENCY_BUCKETS 32

/* Ring-buffer record. Largest fields first; no implicit padding. */
struct wst_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u64 inode;		/* local socket's inode, 0 when it has none */
	__u64 cgroup;		/* cgroup v2 id of the socket (a request's: its listener's), 0 when unknown */
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
	__u64 cgroup;		/* listener's cgroup v2 id, 0 until seen through the socket */
	__u32 peak;		/* deepest queue seen */
	__u32 backlog;		/* limit at last sighting */
	__u32 depth;		/* depth at last sighting */
	__u32 _pad;
	__u64 syn_drops[WST_SYN_CAUSE__MAX];	/* SYN-stage drops by cause */
	__u64 last_syn_event_ns;	/* rate limit for syn_drop events */
	__u64 cookies_sent;	/* SYN cookies sent (SyncookiesSent), tracepoint route only */
	__u64 synack_retrans;	/* SYN-ACKs retransmitted (TCPSynRetrans's server side) */
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
	__u32 listen_drops_settled;	/* syn_drop's tracepoint route counts both stages: the ACK-stage hooks stand down */
};

/* Per socket cgroup, local port, direction, state and reason. */
struct wst_reset_key {
	__u64 cgroup;		/* as in the event, 0 when unknown */
	__u32 netns;
	__u32 reason;
	__u16 lport;
	__u8 kind;		/* WST_RESET_SENT or WST_RESET_RECEIVED */
	__u8 state;
	__u32 _pad;
};

/* Local ports with a listener, one byte each (the listen_ports map's one value). */
struct wst_listening {
	__u8 port[65536];
};

/* Per destination (remote address and port) and the cgroup of the sockets that went to TIME_WAIT. */
/*
 * syn_drop's tracepoint route, per CPU: first_running while the first of the
 * twin programs runs; lost: rises an end could not take, interrupted at every
 * try (they wait for the next end); settled: the packet the first twin last
 * saw through; stale: marks the second twin never cleared, found by the first
 * twin's next run (its second run skipped, or settled instead of cleared).
 */
struct wst_settle_state {
	__u32 first_running;
	__u32 pad;
	__u64 lost;
	__u64 settled;
	__u64 stale;
};

struct wst_tw_key {
	__u64 cgroup;		/* as in the event, 0 when unknown */
	__u8 raddr[16];
	__u32 netns;
	__u16 rport;
	__u16 family;
};

/*
 * Events beyond the rate budget are not put in the ring: each adds one to
 * the summary row of its key instead. Ports are folded so a storm makes few
 * rows: a row keeps the local port, or (when the local port is a client's
 * ephemeral one, folded to 0) the remote port instead; listener events keep
 * the listener and the peer's address. Rows per summary map:
 */
#define WST_SUMMARY_ROWS 16384

struct wst_summary_key {
	__u64 cgroup;		/* as in the event: a storm's rows still say whose socket */
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 netns;
	__u32 reason;		/* as in the event, or WST_NO_REASON */
	__u16 lport;		/* 0: folded */
	__u16 rport;		/* 0: folded */
	__u16 family;
	__u8 kind;
	__u8 state;
};

struct wst_summary_val {
	__u64 count;		/* events this row stands for */
	__u64 first_ns;		/* bpf_ktime_get_ns() of the first and last of them */
	__u64 last_ns;
};

#endif /* WSTRACE_H */
