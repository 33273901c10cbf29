/**
 * The TypeScript mirror of bpf/wstrace.h's structs. test/layout.test.ts pins
 * every size and offset here to the addon's sizeof/offsetof, so a change to the
 * C header that is not made here fails the tests instead of garbling events.
 * The enums (kinds, counters, hit counters, SYN-drop causes) are not copied:
 * they come from the signal table, as the C header's do.
 */
import { COUNTER_NAMES, KINDS, PROGRAM_HITS as HITS, kind, type CounterName, type EventKind } from '../signals/kinds.js';

export const EVENT_LAYOUT = {
  size: 80,
  offsets: {
    ts_ns: 0,
    inode: 8,
    cgroup: 16,
    laddr: 24,
    raddr: 40,
    netns: 56,
    reason: 60,
    queue: 64,
    backlog: 68,
    lport: 72,
    rport: 74,
    family: 76,
    kind: 78,
    state: 79,
  },
} as const;

export const LISTENER_KEY_LAYOUT = {
  size: 24,
  offsets: { addr: 0, netns: 16, port: 20, family: 22 },
} as const;

export const LISTENER_VALUE_LAYOUT = {
  size: 120,
  offsets: {
    enqueued: 0,
    full_hits: 8,
    overflows: 16,
    last_event_ns: 24,
    inode: 32,
    cgroup: 40,
    peak: 48,
    backlog: 52,
    depth: 56,
    syn_drops: 64,
    last_syn_event_ns: 96,
    cookies_sent: 104,
    synack_retrans: 112,
  },
} as const;

/** enum wst_syn_cause: index into wst_listener_val.syn_drops. */
const synReason = kind('syn_drop').reason;
export const SYN_CAUSES: readonly string[] = synReason && 'causes' in synReason ? synReason.causes : [];

export const RESIDENCY_BUCKETS = 32;

export const RESIDENCY_LAYOUT = {
  size: 272,
  offsets: { buckets: 0, count: 256, sum_ns: 264 },
} as const;

export const RESET_KEY_LAYOUT = {
  size: 24,
  offsets: { cgroup: 0, netns: 8, reason: 12, lport: 16, kind: 18, state: 19 },
} as const;

export const TIMEWAIT_KEY_LAYOUT = {
  size: 32,
  offsets: { cgroup: 0, raddr: 8, netns: 24, rport: 28, family: 30 },
} as const;

/** struct wst_summary_key and wst_summary_val: a summary row of events beyond the rate budget. */
export const SUMMARY_KEY_LAYOUT = {
  size: 56,
  offsets: { cgroup: 0, laddr: 8, raddr: 24, netns: 40, reason: 44, lport: 48, rport: 50, family: 52, kind: 54, state: 55 },
} as const;

export const SUMMARY_VALUE_LAYOUT = {
  size: 24,
  offsets: { count: 0, first_ns: 8, last_ns: 16 },
} as const;

/** Rows each of the two summary maps holds (WST_SUMMARY_ROWS). */
export const SUMMARY_ROWS = 16384;

/** enum wst_counter: index of each total in the per-CPU array. */
export const COUNTER_INDEX = Object.fromEntries(COUNTER_NAMES.map((name, i) => [name, i])) as Readonly<
  Record<CounterName, number>
>;

export const COUNTER_COUNT = COUNTER_NAMES.length;

/** enum wst_kind: the ring record's code of each kind. */
export const KIND_CODE = Object.fromEntries(KINDS.map((k) => [k.name, k.code])) as Readonly<Record<EventKind, number>>;

/** enum wst_prog: hit counter of each BPF program group, for the kernel matrix. */
export const PROGRAM_HITS = HITS;

export const NO_REASON = 0xffffffff;
export const MAX_PORTS = 16;
/** Cgroups one --cgroup filter may name (WST_MAX_CGROUPS). */
export const MAX_CGROUPS = 8;
export const AF_INET = 2;
export const AF_INET6 = 10;
