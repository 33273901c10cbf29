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
 * Local ports that have a listener: (netns << 16) | port. A reset on such a
 * port keeps its own row even inside ip_local_port_range (a gRPC server on
 * 50051, say); other ports in that range fold into port 0. Filled by the
 * kernel side as listeners queue children, and by the loader from a
 * listener dump at start.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
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

/* Switches the loader sets after it attaches the richer hooks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wst_switches);
} switches SEC(".maps");

#endif /* WSTRACE_MAPS_H */
