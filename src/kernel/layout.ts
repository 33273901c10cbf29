/**
 * The TypeScript mirror of bpf/wstrace.h. test/layout.test.ts pins every
 * number here to the addon's sizeof/offsetof, so a change to the C header
 * that is not made here fails the tests instead of garbling events.
 */
export const EVENT_LAYOUT = {
  size: 72,
  offsets: {
    ts_ns: 0,
    inode: 8,
    laddr: 16,
    raddr: 32,
    netns: 48,
    reason: 52,
    queue: 56,
    backlog: 60,
    lport: 64,
    rport: 66,
    family: 68,
    kind: 70,
    state: 71,
  },
} as const;

export const LISTENER_KEY_LAYOUT = {
  size: 24,
  offsets: { addr: 0, netns: 16, port: 20, family: 22 },
} as const;

export const LISTENER_VALUE_LAYOUT = {
  size: 96,
  offsets: {
    enqueued: 0,
    full_hits: 8,
    overflows: 16,
    last_event_ns: 24,
    inode: 32,
    peak: 40,
    backlog: 44,
    depth: 48,
    syn_drops: 56,
    last_syn_event_ns: 88,
  },
} as const;

/** enum wst_syn_cause: index into wst_listener_val.syn_drops. */
export const SYN_CAUSES = ['ACCEPT_QUEUE_FULL', 'SYN_QUEUE_FULL', 'UNPROVEN_PEER', 'OTHER'] as const;

export const RESIDENCY_BUCKETS = 32;

export const RESIDENCY_LAYOUT = {
  size: 272,
  offsets: { buckets: 0, count: 256, sum_ns: 264 },
} as const;

export const RESET_KEY_LAYOUT = {
  size: 12,
  offsets: { netns: 0, reason: 4, lport: 8, kind: 10, state: 11 },
} as const;

export const TIMEWAIT_KEY_LAYOUT = {
  size: 24,
  offsets: { raddr: 0, netns: 16, rport: 20, family: 22 },
} as const;

/** enum wst_counter: index of each total in the per-CPU array. */
export const COUNTER_INDEX = {
  resetSent: 0,
  resetReceived: 1,
  timewait: 2,
  acceptQueueFull: 3,
  listenOverflow: 4,
  acceptEnqueued: 5,
  ringDrops: 6,
  mapFull: 7,
  events: 8,
  synDrop: 9,
  accepted: 10,
} as const;

export const COUNTER_COUNT = 11;

/** enum wst_kind. */
export const KIND_CODE = {
  resetSent: 1,
  resetReceived: 2,
  timewait: 3,
  acceptQueueFull: 4,
  listenOverflow: 5,
  synDrop: 6,
} as const;

/** enum wst_prog: hit counter of each BPF program, for the kernel matrix. */
export const PROGRAM_HITS = [
  'wst_rst_sent',
  'wst_rst_recv',
  'wst_timewait',
  'wst_acceptq',
  'wst_listen_ovf',
  'wst_conn_req_fentry',
  'wst_conn_req_fexit',
  'wst_conn_req_kprobe',
  'wst_conn_req_kretprobe',
  'wst_synrecv_fexit',
  'wst_synrecv_kprobe',
  'wst_synrecv_kretprobe',
  'wst_accept_fexit',
  'wst_accept_kretprobe',
  'wst_send_reset_fentry',
  'wst_send_reset_kprobe',
  'wst_queue_add_fexit',
  'wst_queue_add_kprobe',
] as const;

export const NO_REASON = 0xffffffff;
export const MAX_PORTS = 16;
export const AF_INET = 2;
export const AF_INET6 = 10;
