/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types the programs read, declared with only the fields used.
 * CO-RE relocates each access against the running kernel's BTF, so these need
 * the kernel's names, not its layout. Declaring them here (rather than
 * generating vmlinux.h from the build machine's kernel) lets the object build
 * on any machine and still name types that only newer kernels have.
 */
#ifndef WSTRACE_KERNEL_H
#define WSTRACE_KERNEL_H

#define CORE __attribute__((preserve_access_index))

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_FIN_WAIT2 = 5,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
	TCP_NEW_SYN_RECV = 12,
};

typedef struct {
	int counter;
} atomic_t;

struct ns_common {
	unsigned int inum;
} CORE;

/* The established hash: a timewait socket is put in a bucket's chain (nulls list: the end is an odd pointer). */
struct hlist_nulls_node {
	struct hlist_nulls_node *next;
} CORE;

struct hlist_nulls_head {
	struct hlist_nulls_node *first;
} CORE;

struct inet_ehash_bucket {
	struct hlist_nulls_head chain;
} CORE;

struct inet_hashinfo {
	struct inet_ehash_bucket *ehash;
	unsigned int ehash_mask;
} CORE;

/* The namespace's TCP hash tables (its own with tcp_child_ehash_entries, 6.1+; else the global one). */
struct inet_timewait_death_row {
	struct inet_hashinfo *hashinfo;
} CORE;

struct netns_ipv4 {
	__u8 sysctl_tcp_syncookies;
	int sysctl_max_syn_backlog;
	struct inet_timewait_death_row tcp_death_row;
} CORE;

/* 5.17 to 6.0 allocated it apart: a pointer there. */
struct netns_ipv4___dr_ptr {
	struct inet_timewait_death_row *tcp_death_row;
} CORE;

/*
 * The namespace's SNMP counters, per CPU: net_statistics points to a per-CPU
 * struct linux_mib whose mibs[] are indexed by the uapi LINUX_MIB_* numbers
 * (<linux/snmp.h>: append-only, so stable across kernels).
 */
struct netns_mib {
	void *net_statistics;
} CORE;

struct net {
	struct ns_common ns;
	struct netns_ipv4 ipv4;
	struct netns_mib mib;
} CORE;

struct net___dr_ptr {
	struct netns_ipv4___dr_ptr ipv4;
} CORE;

typedef struct {
	struct net *net;
} possible_net_t;

struct in6_addr {
	__u8 s6_addr[16];
};

struct sock;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	unsigned int skc_hash;		/* the ehash bucket's hash: mixes in the netns and IPv6 addresses */
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	struct sock *skc_listener;	/* request sockets: the listener (in a union) */
	unsigned long skc_flags;	/* full sockets: sk_flags (in that union) */
	struct hlist_nulls_node skc_nulls_node;	/* its link in an ehash chain (in a union) */
} CORE;

struct inode {
	unsigned long i_ino;
} CORE;

struct file {
	struct inode *f_inode;
} CORE;

struct socket {
	struct file *file;
} CORE;

/* A cgroup's directory in the cgroup2 mount: its id is the directory's inode number. */
struct kernfs_node {
	__u64 id;
} CORE;

/*
 * A cgroup v2 node. ancestors[level] is the cgroup itself, ancestors[0] the
 * root (6.0+); before, ancestor_ids[] held their ids instead.
 */
struct cgroup {
	struct kernfs_node *kn;
	int level;
	struct cgroup *ancestors[0];
} CORE;

struct cgroup___ids {
	__u64 ancestor_ids[0];
} CORE;

/* The cgroup a socket was charged to when made (5.15+, and stable backports). */
struct sock_cgroup_data {
	struct cgroup *cgroup;
} CORE;

/*
 * Earlier: a union of that pointer with the v1 net_prio/net_cls ids; with
 * either id stored, bit 0 is set and the pointer is gone (the kernel counts
 * the socket in the root cgroup then).
 */
struct sock_cgroup_data___val {
	__u64 val;
} CORE;

/* Bit numbers in sk_flags (CO-RE takes the running kernel's values). */
enum sock_flags {
	SOCK_DEAD = 0,
	SOCK_DONE = 1,
	SOCK_LINGER = 4,
};

struct sock {
	struct sock_common __sk_common;
	unsigned long sk_lingertime;
	__u8 sk_shutdown;	/* a 2-bit field on older kernels: read with BPF_CORE_READ_BITFIELD_PROBED */
	int sk_err;
	atomic_t sk_drops;
	__u16 sk_protocol;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
	struct socket *sk_socket;
	struct sock_cgroup_data sk_cgrp_data;
} CORE;

/* Sequence numbers: what arrived in order, and what the reader took. */
struct tcp_sock {
	__u32 rcv_nxt;
	__u32 copied_seq;
} CORE;

/* Full sockets only: keeps the source port after tcp_set_state(CLOSE) clears skc_num. */
struct inet_sock {
	__be16 inet_sport;
} CORE;


struct request_sock {
	struct sock_common __req_common;
	struct sock *sk;
} CORE;

struct request_sock_queue {
	atomic_t qlen;
	struct request_sock *rskq_accept_tail;
} CORE;



struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
} CORE;

/*
 * A per-CPU array map: pptrs[i] is the per-CPU pointer of entry i, which a
 * lookup on this CPU resolves to this CPU's copy (the difference is this
 * CPU's per-CPU offset).
 */
struct bpf_array {
	void *pptrs[0];
} CORE;

struct net_device {
	possible_net_t nd_net;
} CORE;

/* A route: its device says which namespace a packet is in once TCP has cleared skb->dev. */
struct dst_entry {
	struct net_device *dev;
} CORE;

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned long _skb_refdst;	/* the route, with bit 0 set when not refcounted */
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
} CORE;

/*
 * Only probed for presence: a reason field in the tcp_send_reset event means
 * the tracepoint takes (sk, skb, reason) (6.10+). CO-RE matches field types
 * too, so the field must be the enum, not an integer.
 */
enum sk_rst_reason {
	SK_RST_REASON_NOT_SPECIFIED = 0,
};

struct trace_event_raw_tcp_send_reset {
	enum sk_rst_reason reason;
} CORE;

enum skb_drop_reason {
	SKB_DROP_REASON_TCP_LISTEN_OVERFLOW = 0,
};

/* Wire headers, fixed by the protocols. */
struct wst_iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct wst_ipv6hdr {
	__u8 ver_prio;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct wst_ports {
	__be16 source;
	__be16 dest;
};

#endif /* WSTRACE_KERNEL_H */
