/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Generated from src/signals/table.ts by `npm run gen`: edit the table, not this file. */
#ifndef WSTRACE_SIGNALS_GEN_H
#define WSTRACE_SIGNALS_GEN_H

/* Event kinds: the ring record's `kind`. Stable numbers, never reused. */
enum wst_kind {
	WST_RESET_SENT = 1,	/* This host sent a TCP reset. */
	WST_RESET_RECEIVED = 2,	/* This host received a TCP reset. */
	WST_TIMEWAIT = 3,	/* A socket entered TIME_WAIT (this host closed first). */
	WST_ACCEPT_QUEUE_FULL = 4,	/* A listener's accept queue was seen full. */
	WST_LISTEN_OVERFLOW = 5,	/* The last ACK of a handshake was dropped because the accept queue was full. */
	WST_SYN_DROP = 6,	/* A SYN was dropped at a listener, with the cause wstrace judged. reason holds enum wst_syn_cause. */
};

/* syn_drop: the reason wstrace judged (an index). */
enum wst_syn_cause {
	WST_SYN_CAUSE_ACCEPT_QUEUE_FULL = 0,
	WST_SYN_CAUSE_SYN_QUEUE_FULL = 1,
	WST_SYN_CAUSE_UNPROVEN_PEER = 2,
	WST_SYN_CAUSE_OTHER = 3,
	WST_SYN_CAUSE__MAX = 4,
};

/* Indexes of the per-CPU totals array. */
enum wst_counter {
	WST_CNT_RESET_SENT = 0,	/* reset_sent: resets sent */
	WST_CNT_RESET_RECEIVED = 1,	/* reset_received: resets received */
	WST_CNT_TIMEWAIT = 2,	/* timewait: TIME_WAIT entries */
	WST_CNT_ACCEPT_QUEUE_FULL = 3,	/* accept_queue_full: enqueues that left a queue full */
	WST_CNT_ACCEPT_ENQUEUED = 4,	/* accept_queue_full: children queued on any listener */
	WST_CNT_LISTEN_OVERFLOW = 5,	/* listen_overflow: ACK-stage drops, LISTEN_OVERFLOW */
	WST_CNT_SYN_DROP = 6,	/* syn_drop: SYN-stage listen drops */
	WST_CNT_ACCEPTED = 7,	/* accept_residency: accepts timed for residency */
	WST_CNT_RING_DROPS = 8,	/* ring-buffer reserve failures */
	WST_CNT_MAP_FULL = 9,	/* keyed counter not stored: map full */
	WST_CNT_EVENTS = 10,	/* records written to the ring */
	WST_CNT_SUMMARISED = 11,	/* events beyond the rate budget, added to a summary row instead of the ring */
	WST_CNT_SUMMARY_LOST = 12,	/* events beyond the rate budget that found no summary row: the summary map was full */
	WST_CNT__MAX = 13,
};

/*
 * Hit counters, one per program group, so a kernel matrix can say "fired" for
 * each hook variant without needing its traffic to pass the filters.
 */
enum wst_prog {
	WST_P_RST_SENT_BTF = 0,	/* reset_sent tp_btf */
	WST_P_RST_SENT = 1,	/* reset_sent raw_tp */
	WST_P_RST_RECV_BTF = 2,	/* reset_received tp_btf */
	WST_P_RST_RECV = 3,	/* reset_received raw_tp */
	WST_P_TIMEWAIT_BTF = 4,	/* timewait tp_btf */
	WST_P_TIMEWAIT = 5,	/* timewait raw_tp */
	WST_P_ACCEPTQ_BTF = 6,	/* accept_queue_full tp_btf */
	WST_P_ACCEPTQ = 7,	/* accept_queue_full raw_tp */
	WST_P_QUEUE_ADD_FEXIT = 8,	/* accept_queue_full fexit */
	WST_P_QUEUE_ADD_KPROBE = 9,	/* accept_queue_full kprobe */
	WST_P_LISTEN_OVF = 10,	/* listen_overflow raw_tp */
	WST_P_SYNRECV_FEXIT = 11,	/* listen_overflow fexit */
	WST_P_SYNRECV_KPROBE = 12,	/* listen_overflow kprobe */
	WST_P_SYNRECV_KRETPROBE = 13,	/* listen_overflow kprobe */
	WST_P_SYN_BEGIN_BTF = 14,	/* syn_drop tp_btf */
	WST_P_SYN_CONSUMED_BTF = 15,	/* syn_drop tp_btf */
	WST_P_SYN_CONSUMED2_BTF = 16,	/* syn_drop tp_btf */
	WST_P_SYN_FREED_BTF = 17,	/* syn_drop tp_btf */
	WST_P_SYN_FREED2_BTF = 18,	/* syn_drop tp_btf */
	WST_P_SYNACK_RTX_BTF = 19,	/* syn_drop tp_btf */
	WST_P_SYN_BEGIN = 20,	/* syn_drop raw_tp */
	WST_P_SYN_CONSUMED = 21,	/* syn_drop raw_tp */
	WST_P_SYN_CONSUMED2 = 22,	/* syn_drop raw_tp */
	WST_P_SYN_FREED = 23,	/* syn_drop raw_tp */
	WST_P_SYN_FREED2 = 24,	/* syn_drop raw_tp */
	WST_P_SYNACK_RTX = 25,	/* syn_drop raw_tp */
	WST_P_CONN_REQ_FENTRY = 26,	/* syn_drop fentry */
	WST_P_CONN_REQ_FEXIT = 27,	/* syn_drop fentry */
	WST_P_CONN_REQ_KPROBE = 28,	/* syn_drop kprobe */
	WST_P_CONN_REQ_KRETPROBE = 29,	/* syn_drop kprobe */
	WST_P_ACCEPT_FEXIT = 30,	/* accept_residency fexit */
	WST_P_ACCEPT_KRETPROBE = 31,	/* accept_residency kretprobe */
	WST_P_SEND_RESET_FENTRY = 32,	/* reset_no_socket fentry */
	WST_P_SEND_RESET_KPROBE = 33,	/* reset_no_socket kprobe */
	WST_P__MAX = 34,
};

#endif /* WSTRACE_SIGNALS_GEN_H */
