/**
 * Records from the ring buffer and entries from the counter maps, decoded by
 * the layouts in layout.ts. A batch is one Buffer holding many records.
 */
import { familyName, formatAddr } from './addr.js';
import {
  COUNTER_COUNT,
  COUNTER_INDEX,
  KIND_CODE,
  LISTENER_KEY_LAYOUT,
  LISTENER_VALUE_LAYOUT,
  NO_REASON,
  PROGRAM_HITS,
  RESET_KEY_LAYOUT,
  RESIDENCY_BUCKETS,
  RESIDENCY_LAYOUT,
  SUMMARY_KEY_LAYOUT,
  SUMMARY_VALUE_LAYOUT,
  TIMEWAIT_KEY_LAYOUT,
} from './layout.js';
import { ReasonNames, tcpStateName } from './names.js';
import { RawBatch, reasonName, type DecodeContext, type OwnerLookup } from './raw.js';
import type { EventSummary, Family, TraceEvent } from '../signals/event.js';
import { kindOfCode, type CounterName } from '../signals/kinds.js';

export type { EventSummary, Family, TraceEvent } from '../signals/event.js';
export type { DecodeContext } from './raw.js';

function u64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 2 ** 32 + view.getUint32(at, true);
}

/**
 * Decodes every whole record in a batch; a trailing partial record is
 * ignored. With `owners`, events of a socket someone holds get its pid/comm.
 */
export function decodeBatch(batch: Uint8Array, ctx: DecodeContext, owners?: OwnerLookup): TraceEvent[] {
  const raw = new RawBatch(batch, ctx, owners);
  const out: TraceEvent[] = [];
  for (let i = 0; i < raw.length; i++) {
    // A kind this build does not know (a newer BPF object) cannot be named: skipped.
    const kind = raw.kind(i);
    if (!kind) continue;
    const ev: TraceEvent = {
      timeMs: raw.timeMs(i),
      kind: kind.name,
      family: raw.family(i),
      laddr: raw.addr(i, 'local'),
      lport: raw.lport(i),
      raddr: raw.addr(i, 'remote'),
      rport: raw.rport(i),
      netns: raw.netns(i),
    };
    const mutable = ev as { -readonly [K in keyof TraceEvent]: TraceEvent[K] };
    const state = raw.state(i);
    if (state) mutable.state = state;
    const reason = raw.reason(i, kind);
    if (reason !== undefined) mutable.reason = reason;
    if (kind.listener) {
      mutable.queue = raw.queue(i);
      mutable.backlog = raw.backlog(i);
    }
    const inode = raw.inode(i);
    if (inode) mutable.inode = inode;
    const cgroup = raw.cgroup(i);
    if (cgroup) mutable.cgroup = cgroup;
    const owner = raw.owner(i);
    if (owner) {
      mutable.pid = owner.pid;
      mutable.comm = owner.comm;
    }
    out.push(ev);
  }
  return out;
}

/** What the addon's drainSummaries() resolves with: `rows` keys and values, back to back. */
export interface RawSummaries {
  readonly rows: number;
  readonly keys: Uint8Array;
  readonly values: Uint8Array;
}

/** Summary rows, decoded as events are; a row of a kind this build does not know is skipped. */
export function decodeSummaries(raw: RawSummaries, ctx: DecodeContext): EventSummary[] {
  const K = SUMMARY_KEY_LAYOUT.offsets;
  const V = SUMMARY_VALUE_LAYOUT.offsets;
  const keys = viewOf(raw.keys);
  const values = viewOf(raw.values);
  const out: EventSummary[] = [];
  for (let i = 0; i < raw.rows; i++) {
    const k = i * SUMMARY_KEY_LAYOUT.size;
    const v = i * SUMMARY_VALUE_LAYOUT.size;
    const kind = kindOfCode(keys.getUint8(k + K.kind));
    if (!kind) continue;
    const family = keys.getUint16(k + K.family, true);
    const row: { -readonly [F in keyof EventSummary]: EventSummary[F] } = {
      kind: kind.name,
      family: familyName(family),
      laddr: formatAddr(raw.keys, k + K.laddr, family),
      lport: keys.getUint16(k + K.lport, true),
      raddr: formatAddr(raw.keys, k + K.raddr, family),
      rport: keys.getUint16(k + K.rport, true),
      netns: keys.getUint32(k + K.netns, true),
      count: u64(values, v + V.count),
      firstMs: u64(values, v + V.first_ns) / 1e6 + ctx.clockOffsetMs,
      lastMs: u64(values, v + V.last_ns) / 1e6 + ctx.clockOffsetMs,
    };
    const state = tcpStateName(keys.getUint8(k + K.state));
    if (state) row.state = state;
    const cgroup = u64(keys, k + K.cgroup);
    if (cgroup) row.cgroup = cgroup;
    const reason = reasonName(kind, keys.getUint32(k + K.reason, true), ctx);
    if (reason !== undefined) row.reason = reason;
    out.push(row);
  }
  return out;
}

/**
 * The per-CPU totals summed, by the names the signal table gives them
 * (src/signals/table.ts documents each). ringDrops counts events the ring
 * had no room for: counted, never silent.
 */
export type Totals = { readonly [K in CounterName]: number };

export interface SynDrops {
  readonly acceptQueueFull: number;
  readonly synQueueFull: number;
  readonly unprovenPeer: number;
  readonly other: number;
}

export interface ListenerCounter {
  readonly family: Family;
  readonly addr: string;
  readonly port: number;
  readonly netns: number;
  readonly enqueued: number;
  readonly fullHits: number;
  readonly overflows: number;
  readonly peak: number;
  readonly backlog: number;
  readonly depth: number;
  readonly inode: number;
  /** The listener's cgroup v2 id, 0 until the kernel saw it through its socket. */
  readonly cgroup: number;
  /** SYN-stage drops by cause (zero unless a syn_drop hook is live). */
  readonly synDrops: SynDrops;
  /** SYN cookies sent for this listener (syn_drop's tracepoint route only). */
  readonly cookiesSent: number;
  /** SYN-ACKs it retransmitted (syn_drop's tracepoint route only). */
  readonly synackRetrans: number;
  /**
   * The namespace's row of listen drops no listener's packet was seen to make
   * (no address, port 0; the tracepoint route only): its ListenOverflows are in
   * overflows, its other drops by counter in synDrops. The namespace's rows sum
   * to the kernel's counters.
   */
  readonly unattributed?: true;
}

/** Accept-queue residency of one listener: bucket i counts waits in [2^i, 2^(i+1)) microseconds. */
export interface ResidencyCounter {
  readonly family: Family;
  readonly addr: string;
  readonly port: number;
  readonly netns: number;
  readonly buckets: number[];
  readonly count: number;
  readonly sumNs: number;
}

export interface ResetCounter {
  readonly direction: 'sent' | 'received';
  readonly netns: number;
  readonly lport: number;
  readonly state?: string;
  readonly reason?: string;
  readonly count: number;
  /** cgroup v2 id of the sockets (rows are per cgroup too); absent when unknown. */
  readonly cgroup?: number;
}

export interface TimewaitCounter {
  readonly family: Family;
  readonly netns: number;
  readonly raddr: string;
  readonly rport: number;
  readonly count: number;
  /** cgroup v2 id of the sockets that went to TIME_WAIT (rows are per cgroup too); absent when unknown. */
  readonly cgroup?: number;
}

export interface Counters {
  readonly totals: Totals;
  readonly listeners: ListenerCounter[];
  readonly resets: ResetCounter[];
  readonly timewaits: TimewaitCounter[];
  readonly residency: ResidencyCounter[];
  /** Runs of each BPF program, by program name (the kernel matrix's "fired"). */
  readonly hits: Readonly<Record<string, number>>;
}

export interface RawCounters {
  readonly totals: number[];
  readonly listeners: Array<[Uint8Array, Uint8Array]>;
  readonly resets: Array<[Uint8Array, Uint8Array]>;
  readonly timewaits: Array<[Uint8Array, Uint8Array]>;
  readonly residency?: Array<[Uint8Array, Uint8Array]>;
  readonly hits?: number[];
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** struct wst_listener_key: a listener by its bound address. */
function decodeListenerKey(k: Uint8Array): { family: Family; addr: string; port: number; netns: number } {
  const LK = LISTENER_KEY_LAYOUT.offsets;
  const kv = viewOf(k);
  const family = kv.getUint16(LK.family, true);
  return {
    family: familyName(family),
    addr: formatAddr(k, LK.addr, family),
    port: kv.getUint16(LK.port, true),
    netns: kv.getUint32(LK.netns, true),
  };
}

export function decodeTotals(raw: readonly number[]): Totals {
  if (raw.length !== COUNTER_COUNT) {
    throw new Error(`counter array has ${raw.length} entries, expected ${COUNTER_COUNT}`);
  }
  return Object.fromEntries(Object.entries(COUNTER_INDEX).map(([name, idx]) => [name, raw[idx] ?? 0])) as unknown as Totals;
}

export function decodeCounters(raw: RawCounters, reasons: ReasonNames): Counters {
  const totals = decodeTotals(raw.totals);

  const LV = LISTENER_VALUE_LAYOUT.offsets;
  const listeners = raw.listeners.map(([k, v]): ListenerCounter => {
    const vv = viewOf(v);
    return {
      ...decodeListenerKey(k),
      enqueued: u64(vv, LV.enqueued),
      fullHits: u64(vv, LV.full_hits),
      overflows: u64(vv, LV.overflows),
      peak: vv.getUint32(LV.peak, true),
      backlog: vv.getUint32(LV.backlog, true),
      depth: vv.getUint32(LV.depth, true),
      inode: u64(vv, LV.inode),
      cgroup: u64(vv, LV.cgroup),
      synDrops: {
        acceptQueueFull: u64(vv, LV.syn_drops),
        synQueueFull: u64(vv, LV.syn_drops + 8),
        unprovenPeer: u64(vv, LV.syn_drops + 16),
        other: u64(vv, LV.syn_drops + 24),
      },
      cookiesSent: u64(vv, LV.cookies_sent),
      synackRetrans: u64(vv, LV.synack_retrans),
      ...(viewOf(k).getUint16(LISTENER_KEY_LAYOUT.offsets.family, true) === 0 ? { unattributed: true as const } : {}),
    };
  });

  const RK = RESET_KEY_LAYOUT.offsets;
  const resets = raw.resets.map(([k, v]): ResetCounter => {
    const kv = viewOf(k);
    const reason = kv.getUint32(RK.reason, true);
    const state = tcpStateName(kv.getUint8(RK.state));
    const out: { -readonly [K in keyof ResetCounter]: ResetCounter[K] } = {
      direction: kv.getUint8(RK.kind) === KIND_CODE.reset_sent ? 'sent' : 'received',
      netns: kv.getUint32(RK.netns, true),
      lport: kv.getUint16(RK.lport, true),
      count: u64(viewOf(v), 0),
    };
    const cgroup = u64(kv, RK.cgroup);
    if (cgroup) out.cgroup = cgroup;
    if (state) out.state = state;
    if (reason !== NO_REASON) out.reason = reasons.resetReason(reason);
    return out;
  });

  const TK = TIMEWAIT_KEY_LAYOUT.offsets;
  const timewaits = raw.timewaits.map(([k, v]): TimewaitCounter => {
    const kv = viewOf(k);
    const family = kv.getUint16(TK.family, true);
    const cgroup = u64(kv, TK.cgroup);
    return {
      family: familyName(family),
      netns: kv.getUint32(TK.netns, true),
      raddr: formatAddr(k, TK.raddr, family),
      rport: kv.getUint16(TK.rport, true),
      count: u64(viewOf(v), 0),
      ...(cgroup ? { cgroup } : {}),
    };
  });

  const RV = RESIDENCY_LAYOUT.offsets;
  const residency = (raw.residency ?? []).map(([k, v]): ResidencyCounter => {
    const vv = viewOf(v);
    return {
      ...decodeListenerKey(k),
      buckets: Array.from({ length: RESIDENCY_BUCKETS }, (_, i) => u64(vv, RV.buckets + i * 8)),
      count: u64(vv, RV.count),
      sumNs: u64(vv, RV.sum_ns),
    };
  });
  const hits = Object.fromEntries(PROGRAM_HITS.map((name, i) => [name, raw.hits?.[i] ?? 0]));

  return { totals, listeners, resets, timewaits, residency, hits };
}
