// Generated from src/signals/table.ts by `npm run gen`: edit the table, not this file.
// The signals in attach order, each with its hook variants best first.
#pragma once
#include <cstddef>

#include "variants.h"
#include "wstrace.h"

namespace wstrace {

static const std::vector<SignalDef> kSignals = {
    {"reset_sent",
     {
         {"tp_btf", true, "tcp_send_reset", {"wst_rst_sent_btf"}, std::nullopt},
         {"raw_tp", true, "tcp_send_reset", {"wst_rst_sent"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"reset_received",
     {
         {"tp_btf", true, "tcp_receive_reset", {"wst_rst_recv_btf"}, std::nullopt},
         {"raw_tp", true, "tcp_receive_reset", {"wst_rst_recv"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"timewait",
     {
         {"tp_btf", true, "inet_sock_set_state", {"wst_timewait_btf"}, std::nullopt},
         {"raw_tp", true, "inet_sock_set_state", {"wst_timewait"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"accept_queue_full",
     {
         {"tp_btf", true, "sk_data_ready", {"wst_acceptq_btf"}, std::nullopt},
         {"raw_tp", true, "sk_data_ready", {"wst_acceptq"}, std::nullopt},
         {"fexit", false, "inet_csk_complete_hashdance", {"wst_queue_add_fexit"}, std::nullopt},
         {"kprobe", false, "inet_csk_complete_hashdance", {"wst_queue_add_kprobe"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"listen_overflow",
     {
         {"raw_tp", true, "kfree_skb", {"wst_listen_ovf"}, KernelCheck{true, "skb_drop_reason", "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW", "this kernel has no SKB_DROP_REASON_TCP_LISTEN_OVERFLOW (Linux 6.15+)"}},
         {"fexit", false, "tcp_v4/v6_syn_recv_sock", {"wst_synrecv4_fexit", "wst_synrecv6_fexit"}, std::nullopt},
         {"kprobe", false, "tcp_v4/v6_syn_recv_sock", {"wst_synrecv4_kprobe", "wst_synrecv4_kretprobe", "wst_synrecv6_kprobe", "wst_synrecv6_kretprobe"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"syn_drop",
     {
         {"tp_btf", true, "netif_receive_skb, consume_skb, kfree_skb, tcp_retransmit_synack", {"wst_syn_begin_btf", "wst_syn_consumed_btf", "wst_syn_consumed2_btf", "wst_syn_freed_btf", "wst_syn_freed2_btf", "wst_synack_rtx_btf"}, KernelCheck{false, "trace_event_raw_consume_skb", "location", "the tracepoint route needs Linux 6.3+ (consume_skb with a location)"}, static_cast<int>(offsetof(struct wst_switches, listen_drops_settled))},
         {"raw_tp", true, "netif_receive_skb, consume_skb, kfree_skb, tcp_retransmit_synack", {"wst_syn_begin", "wst_syn_consumed", "wst_syn_consumed2", "wst_syn_freed", "wst_syn_freed2", "wst_synack_rtx"}, KernelCheck{false, "trace_event_raw_consume_skb", "location", "the tracepoint route needs Linux 6.3+ (consume_skb with a location)"}, static_cast<int>(offsetof(struct wst_switches, listen_drops_settled))},
         {"fentry", false, "tcp_conn_request", {"wst_conn_req_fentry", "wst_conn_req_fexit"}, std::nullopt},
         {"kprobe", false, "tcp_conn_request", {"wst_conn_req_kprobe", "wst_conn_req_kretprobe"}, std::nullopt},
     },
     std::nullopt,
     -1},
    {"accept_residency",
     {
         {"fexit", false, "inet_csk_accept", {"wst_accept_fexit"}, std::nullopt},
         {"kretprobe", false, "inet_csk_accept", {"wst_accept_kretprobe"}, std::nullopt},
     },
     std::nullopt,
     static_cast<int>(offsetof(struct wst_switches, time_accepts))},
    {"reset_no_socket",
     {
         {"fentry", false, "tcp_v4/v6_send_reset", {"wst_send_reset4_fentry", "wst_send_reset6_fentry"}, std::nullopt},
         {"kprobe", false, "tcp_v4/v6_send_reset", {"wst_send_reset4_kprobe", "wst_send_reset6_kprobe"}, std::nullopt},
     },
     KernelCheck{false, "trace_event_raw_tcp_send_reset", "reason", "tcp_send_reset does not fire for them before Linux 6.10"},
     static_cast<int>(offsetof(struct wst_switches, reset_fn_hooked))},
};

static const NamedValue kKindCodes[] = {
    {"reset_sent", WST_RESET_SENT},
    {"reset_received", WST_RESET_RECEIVED},
    {"timewait", WST_TIMEWAIT},
    {"accept_queue_full", WST_ACCEPT_QUEUE_FULL},
    {"listen_overflow", WST_LISTEN_OVERFLOW},
    {"syn_drop", WST_SYN_DROP},
};

static const NamedValue kCounterIndexes[] = {
    {"resetSent", WST_CNT_RESET_SENT},
    {"resetReceived", WST_CNT_RESET_RECEIVED},
    {"timewait", WST_CNT_TIMEWAIT},
    {"acceptQueueFull", WST_CNT_ACCEPT_QUEUE_FULL},
    {"acceptEnqueued", WST_CNT_ACCEPT_ENQUEUED},
    {"listenOverflow", WST_CNT_LISTEN_OVERFLOW},
    {"synDrop", WST_CNT_SYN_DROP},
    {"accepted", WST_CNT_ACCEPTED},
    {"ringDrops", WST_CNT_RING_DROPS},
    {"mapFull", WST_CNT_MAP_FULL},
    {"events", WST_CNT_EVENTS},
    {"summarised", WST_CNT_SUMMARISED},
    {"summaryLost", WST_CNT_SUMMARY_LOST},
};

static const NamedValue kHitIndexes[] = {
    {"wst_rst_sent_btf", WST_P_RST_SENT_BTF},
    {"wst_rst_sent", WST_P_RST_SENT},
    {"wst_rst_recv_btf", WST_P_RST_RECV_BTF},
    {"wst_rst_recv", WST_P_RST_RECV},
    {"wst_timewait_btf", WST_P_TIMEWAIT_BTF},
    {"wst_timewait", WST_P_TIMEWAIT},
    {"wst_acceptq_btf", WST_P_ACCEPTQ_BTF},
    {"wst_acceptq", WST_P_ACCEPTQ},
    {"wst_queue_add_fexit", WST_P_QUEUE_ADD_FEXIT},
    {"wst_queue_add_kprobe", WST_P_QUEUE_ADD_KPROBE},
    {"wst_listen_ovf", WST_P_LISTEN_OVF},
    {"wst_synrecv_fexit", WST_P_SYNRECV_FEXIT},
    {"wst_synrecv_kprobe", WST_P_SYNRECV_KPROBE},
    {"wst_synrecv_kretprobe", WST_P_SYNRECV_KRETPROBE},
    {"wst_syn_begin_btf", WST_P_SYN_BEGIN_BTF},
    {"wst_syn_consumed_btf", WST_P_SYN_CONSUMED_BTF},
    {"wst_syn_consumed2_btf", WST_P_SYN_CONSUMED2_BTF},
    {"wst_syn_freed_btf", WST_P_SYN_FREED_BTF},
    {"wst_syn_freed2_btf", WST_P_SYN_FREED2_BTF},
    {"wst_synack_rtx_btf", WST_P_SYNACK_RTX_BTF},
    {"wst_syn_begin", WST_P_SYN_BEGIN},
    {"wst_syn_consumed", WST_P_SYN_CONSUMED},
    {"wst_syn_consumed2", WST_P_SYN_CONSUMED2},
    {"wst_syn_freed", WST_P_SYN_FREED},
    {"wst_syn_freed2", WST_P_SYN_FREED2},
    {"wst_synack_rtx", WST_P_SYNACK_RTX},
    {"wst_conn_req_fentry", WST_P_CONN_REQ_FENTRY},
    {"wst_conn_req_fexit", WST_P_CONN_REQ_FEXIT},
    {"wst_conn_req_kprobe", WST_P_CONN_REQ_KPROBE},
    {"wst_conn_req_kretprobe", WST_P_CONN_REQ_KRETPROBE},
    {"wst_accept_fexit", WST_P_ACCEPT_FEXIT},
    {"wst_accept_kretprobe", WST_P_ACCEPT_KRETPROBE},
    {"wst_send_reset_fentry", WST_P_SEND_RESET_FENTRY},
    {"wst_send_reset_kprobe", WST_P_SEND_RESET_KPROBE},
};

static const NamedValue kCauseIndexes[] = {
    {"syn_drop.ACCEPT_QUEUE_FULL", WST_SYN_CAUSE_ACCEPT_QUEUE_FULL},
    {"syn_drop.SYN_QUEUE_FULL", WST_SYN_CAUSE_SYN_QUEUE_FULL},
    {"syn_drop.UNPROVEN_PEER", WST_SYN_CAUSE_UNPROVEN_PEER},
    {"syn_drop.OTHER", WST_SYN_CAUSE_OTHER},
};

}  // namespace wstrace
