/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps shared by the core object (wstrace.bpf.c) and the richer-hook object
 * (wstrace_ext.bpf.c). The loader creates them with the core object and hands
 * the same file descriptors to every extra object it loads (reuse by name), so
 * the definitions here must be identical in both: hence one header.
 */
#ifndef WSTRACE_MAPS_H
#define WSTRACE_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WST_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WST_P__MAX);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wst_listener_key);
	__type(value, struct wst_listener_val);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wst_reset_key);
	__type(value, __u64);
} resets SEC(".maps");

/*
 * Local ports that have a listener: a reset on such a port keeps its own row
 * even inside ip_local_port_range (a gRPC server on 50051, say); other ports
 * in that range fold into port 0. One byte per port, read with one load
 * where a hash lookup cost a reset as much as the rest of its work. Ports,
 * not (netns, port): tracing every namespace, a port that listens in any of
 * them keeps its rows in all. Set by the kernel side as listeners queue
 * children, and by the loader (through mmap: single byte stores, so neither
 * side can undo the other's) from a listener dump at start.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct wst_listening);
} listen_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct wst_tw_key);
	__type(value, __u64);
} timewaits SEC(".maps");

/* Child socket -> when it was queued and on which listener. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct wst_enqueued);
} enqueued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wst_listener_key);
	__type(value, struct wst_residency);
} residency SEC(".maps");

/*
 * The rate budget's one bucket for the host: the time by which the events
 * let through so far have used up the budget (see within_budget()).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} budget SEC(".maps");

/*
 * Summary rows of events beyond the budget, in two maps that take turns:
 * programs add to the one in summary_slot; the loader swaps the other in
 * (the kernel waits for every program run that could still see the old one
 * to end before the update returns), then reads and empties the old one at
 * leisure. No count is lost or counted twice.
 */
struct wst_summary_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WST_SUMMARY_ROWS);
	__type(key, struct wst_summary_key);
	__type(value, struct wst_summary_val);
};

struct wst_summary_map summary_a SEC(".maps");
struct wst_summary_map summary_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct wst_summary_map);
} summary_slot SEC(".maps");

/* Switches the loader sets after it attaches the richer hooks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wst_switches);
} switches SEC(".maps");

#endif /* WSTRACE_MAPS_H */
