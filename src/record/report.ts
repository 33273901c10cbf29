/**
 * `wstrace report`: the incident in one page, from a recording. Counts come
 * from the exact counters in the per-second snapshots (differences between
 * them), peers and reasons from the events; nothing is estimated. Events
 * beyond the agent's rate budget were recorded as summary rows with exact
 * counts: they count in the same tables as the events they stand for.
 */
import type { RecordEntry } from '../generated/wstrace/v1/record.js';
import { LostReason, type Capture, type Event, type GetInfoResponse, type SnapshotResponse, type Summary } from '../generated/wstrace/v1/tracer.js';
import { UNATTRIBUTED } from '../protocol/address.js';
import { eventFromProto, summaryFromProto, UnknownKinds } from '../protocol/convert.js';
import { openRecording, type Damage, type ReadResult } from './format.js';

export interface SecondRow {
  /** Start of the second, ms since the epoch. */
  readonly timeMs: number;
  readonly drops: number;
  readonly resetsSent: number;
  readonly resetsReceived: number;
  readonly timewait: number;
}

export interface Report {
  readonly host: string;
  readonly kernel: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly snapshots: number;
  /** Events recorded one by one. */
  readonly events: number;
  /** Events recorded in summary rows (beyond the agent's budget), and those rows. */
  readonly summarised: number;
  readonly summaryRows: number;
  /** Per kind, the events the stream carried: one by one, and in summary rows. */
  readonly byKind: Array<{ kind: string; events: number; summarised: number }>;
  /** Exact kernel counts over the recording (last snapshot minus first). */
  readonly totals: {
    resetsSent: number;
    resetsReceived: number;
    timewait: number;
    acceptQueueFull: number;
    listenOverflows: number;
    synDrops: number;
  };
  /** The kernel's own counters over the same interval. */
  readonly mib: Record<string, number>;
  readonly lost: { kernelRing: number; tooSlow: number; summaryTable: number };
  readonly timeline: SecondRow[];
  readonly worst: SecondRow[];
  readonly listeners: Array<{ listener: string; overflows: number; synDrops: number; fullHits: number; peak: number; backlog: number }>;
  /**
   * Which pods (or bare containers) had the most listen drops: `drops` from
   * their listeners' kernel counters (ACK- and SYN-stage, exact, over the
   * recording), `events` the listen-drop events named after them.
   */
  readonly workloadDrops: Array<{ workload: string; drops: number; events: number }>;
  /** Resets by reason and by peer count events and summary rows alike (a folded peer port shows as `*`). */
  readonly resetReasons: Array<{ reason: string; count: number }>;
  readonly resetPeers: Array<{ peer: string; count: number }>;
  /** 0 when peer counts are exact; past REPORT_KEYS distinct peers, how far short a count may be. */
  readonly resetPeersOffBy: number;
  readonly timewaitPeaks: Array<{ destination: string; peak: number }>;
  readonly settings: Record<string, string>;
  readonly limitsHit: string[];
  readonly captures: Capture[];
  readonly skipped: number;
  readonly damagedBytes: number;
  readonly truncated: boolean;
  /** No header could be read: host, kernel and the hooks' state are unknown. */
  readonly headerLost: boolean;
  /** Events of kinds this build does not know (a newer recorder's), counted but not shown. */
  readonly unknownKinds: number;
  /** What to tell the user about them; empty when there were none. */
  readonly unknownKindsNote: string;
  readonly blind: string[];
}

const MIB_KEYS = ['TcpOutRsts', 'TcpEstabResets', 'TcpExtListenOverflows', 'TcpExtListenDrops', 'TcpExtTCPTimeWaitOverflow', 'TcpExtSyncookiesSent'];
const SETTINGS = [
  'net.core.somaxconn',
  'net.ipv4.tcp_max_syn_backlog',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.tcp_tw_reuse',
  'net.ipv4.tcp_max_tw_buckets',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_mem',
  'fs.file-max',
];

function top<T>(m: ReadonlyMap<string, number>, n: number, make: (k: string, v: number) => T): T[] {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => make(k, v));
}

/**
 * A pod as namespace/pod (its containers' drops are the pod's), a container
 * outside any pod by its name or short id; undefined when the agent named neither.
 */
export function workloadKey(m: { container?: string; containerName?: string; pod?: string; namespace?: string }): string | undefined {
  if (m.pod) return m.namespace ? `${m.namespace}/${m.pod}` : m.pod;
  if (m.containerName) return m.containerName;
  if (m.container) return /^[0-9a-f]{64}$/.test(m.container) ? m.container.slice(0, 12) : m.container;
  return undefined;
}

const drops = (s: SnapshotResponse) => (s.totals?.listenOverflows ?? 0) + (s.totals?.synDrops ?? 0);

/** Distinct keys a report counts before it starts to forget the smallest. */
export const REPORT_KEYS = 100_000;

/**
 * Counts per key in bounded memory: exact up to `limit` keys. Past it the
 * smaller half is forgotten, so a key's count may then fall short of the
 * truth by at most `offBy` (the largest count forgotten); the top entries
 * of a skewed distribution, the ones a report shows, are kept.
 */
export class BoundedCounts {
  private readonly m = new Map<string, number>();
  offBy = 0;

  constructor(
    private readonly limit = REPORT_KEYS,
    private readonly merge: (a: number, b: number) => number = (a, b) => a + b,
  ) {}

  add(key: string, v: number): void {
    const had = this.m.get(key);
    this.m.set(key, had === undefined ? v : this.merge(had, v));
    if (this.m.size > this.limit) this.forget();
  }

  private forget(): void {
    const sorted = [...this.m.values()].sort((a, b) => a - b);
    const cut = sorted[Math.floor(sorted.length / 2)]!;
    for (const [k, v] of this.m) {
      if (v > cut) continue;
      this.m.delete(k);
      this.offBy = Math.max(this.offBy, v);
    }
  }

  top<T>(n: number, make: (k: string, v: number) => T): T[] {
    return top(this.m, n, make);
  }
}

/**
 * The report, built one record at a time in the order written: memory is
 * bounded by the number of snapshots (one timeline row each) and by
 * REPORT_KEYS, never by the number of events.
 */
export class ReportBuilder {
  private info: GetInfoResponse | undefined;
  private first: SnapshotResponse | undefined;
  private last: SnapshotResponse | undefined;
  private prev: SnapshotResponse | undefined;
  private snapshots = 0;
  private events = 0;
  private summarised = 0;
  private summaryRows = 0;
  private readonly kinds = new Map<string, { events: number; summarised: number }>();
  private kernelRing = 0;
  private tooSlow = 0;
  private summaryTable = 0;
  private readonly captures = new Map<string, Capture>();
  private readonly timeline: SecondRow[] = [];
  private readonly reasons = new BoundedCounts();
  private readonly peers = new BoundedCounts();
  private readonly tw = new BoundedCounts(REPORT_KEYS, Math.max);
  /** Listen-drop events per workload. */
  private readonly workloadEvents = new BoundedCounts();
  private readonly unknown = new UnknownKinds();

  add(e: RecordEntry): void {
    const x = e.entry;
    if (x?.$case === 'header') this.info ??= x.value.info;
    if (x?.$case === 'snapshot') this.snapshot(x.value);
    if (x?.$case !== 'watch') return;
    const r = x.value.response;
    if (r?.$case === 'batch') {
      this.events += r.value.events.length;
      for (const ev of r.value.events) this.event(ev);
    }
    if (r?.$case === 'summaries') for (const s of r.value.summaries) this.summary(s);
    if (r?.$case === 'lost') {
      if (r.value.reason === LostReason.LOST_REASON_KERNEL_RING_FULL) this.kernelRing += r.value.count;
      else if (r.value.reason === LostReason.LOST_REASON_SUMMARY_TABLE_FULL) this.summaryTable += r.value.count;
      else this.tooSlow += r.value.count;
    }
    if (r?.$case === 'capture') this.captures.set(r.value.id, r.value);
  }

  private snapshot(s: SnapshotResponse): void {
    this.snapshots++;
    if (!this.first || s.timeUnixMicros < this.first.timeUnixMicros) this.first = s;
    if (!this.last || s.timeUnixMicros >= this.last.timeUnixMicros) this.last = s;
    const a = this.prev;
    this.prev = s;
    for (const t of s.timewait) this.tw.add(`${t.remoteAddr}:${t.remotePort}`, t.current);
    if (!a) return;
    this.timeline.push({
      timeMs: Math.floor(s.timeUnixMicros / 1000),
      drops: drops(s) - drops(a),
      resetsSent: (s.totals?.resetsSent ?? 0) - (a.totals?.resetsSent ?? 0),
      resetsReceived: (s.totals?.resetsReceived ?? 0) - (a.totals?.resetsReceived ?? 0),
      timewait: (s.totals?.timewait ?? 0) - (a.totals?.timewait ?? 0),
    });
  }

  private event(ev: Event): void {
    const p = eventFromProto(ev);
    if (!p) this.unknown.note(ev.kind);
    if (p) this.tally(p, 1, false);
  }

  /** A summary row: `count` events of one key, counted as those events would be. */
  private summary(s: Summary): void {
    const p = summaryFromProto(s);
    if (!p) {
      this.unknown.note(s.kind, s.count);
      return;
    }
    this.summaryRows++;
    this.summarised += p.count;
    this.tally(p, p.count, true);
  }

  private tally(
    p: { kind: string; reason?: string; state?: string; raddr: string; rport: number; container?: string; containerName?: string; pod?: string; namespace?: string },
    n: number,
    summarised: boolean,
  ): void {
    const k = this.kinds.get(p.kind) ?? { events: 0, summarised: 0 };
    if (summarised) k.summarised += n;
    else k.events += n;
    this.kinds.set(p.kind, k);
    if (p.kind === 'listen_overflow' || p.kind === 'syn_drop') {
      const w = workloadKey(p);
      if (w) this.workloadEvents.add(w, n);
    }
    if (p.kind !== 'reset_sent' && p.kind !== 'reset_received') return;
    this.reasons.add(`${p.kind === 'reset_sent' ? 'sent' : 'received'} ${p.reason ?? p.state ?? 'unknown'}`, n);
    const port = p.rport ? String(p.rport) : '*';
    this.peers.add(p.raddr.includes(':') ? `[${p.raddr}]:${port}` : `${p.raddr}:${port}`, n);
  }

  finish(damage: Damage): Report {
    const { first, last, info } = this;
    const t0 = first?.totals;
    const t1 = last?.totals;
    const d = (k: keyof NonNullable<typeof t0>) => (t1?.[k] ?? 0) - (t0?.[k] ?? 0);
    const timeline = this.timeline;
    const score = (r: SecondRow) => r.drops * 10 + r.resetsSent + r.resetsReceived;
    const worst = [...timeline].filter((r) => score(r) > 0).sort((a, b) => score(b) - score(a)).slice(0, 5);

    const listenerName = (l: { addr: string; port: number; unattributed: boolean }) => (l.unattributed ? UNATTRIBUTED : `${l.addr}:${l.port}`);
    const before = new Map((first?.listeners ?? []).map((l) => [listenerName(l), l]));
    const listeners = (last?.listeners ?? [])
      .map((l) => {
        const b = before.get(listenerName(l));
        const syn = (x: typeof l | undefined) =>
          (x?.synDropsAcceptQueueFull ?? 0) + (x?.synDropsSynQueueFull ?? 0) + (x?.synDropsUnprovenPeer ?? 0) + (x?.synDropsOther ?? 0);
        return {
          listener: listenerName(l),
          overflows: l.overflows - (b?.overflows ?? 0),
          synDrops: syn(l) - syn(b),
          fullHits: l.fullHits - (b?.fullHits ?? 0),
          peak: l.peak,
          backlog: l.backlog,
        };
      })
      .filter((l) => l.overflows + l.synDrops + l.fullHits > 0)
      .sort((a, b) => b.overflows + b.synDrops + b.fullHits - (a.overflows + a.synDrops + a.fullHits));

    // Exact drops per workload: each listener's counter deltas, under the name its last row had.
    const byWorkload = new Map<string, { drops: number; events: number }>();
    for (const l of last?.listeners ?? []) {
      const w = workloadKey(l);
      if (!w) continue;
      const row = listeners.find((x) => x.listener === listenerName(l));
      const t = byWorkload.get(w) ?? { drops: 0, events: 0 };
      t.drops += row ? row.overflows + row.synDrops : 0;
      byWorkload.set(w, t);
    }
    for (const { workload, events } of this.workloadEvents.top(REPORT_KEYS, (workload, events) => ({ workload, events }))) {
      const t = byWorkload.get(workload) ?? { drops: 0, events: 0 };
      t.events = events;
      byWorkload.set(workload, t);
    }
    const workloadDrops = [...byWorkload.entries()]
      .map(([workload, c]) => ({ workload, ...c }))
      .filter((w) => w.drops + w.events > 0)
      .sort((a, b) => b.drops - a.drops || b.events - a.events)
      .slice(0, 10);

    const sysctls = first?.host?.sysctls ?? {};
    const settings = Object.fromEntries(SETTINGS.filter((k) => k in sysctls).map((k) => [k, sysctls[k]!]));
    const mib = Object.fromEntries(MIB_KEYS.map((k) => [k, (last?.host?.mib[k] ?? 0) - (first?.host?.mib[k] ?? 0)]));
    const limitsHit: string[] = [];
    for (const l of listeners) {
      if (l.peak > l.backlog) limitsHit.push(`accept queue of ${l.listener} full (peak ${l.peak} > limit ${l.backlog}; somaxconn ${settings['net.core.somaxconn'] ?? '?'})`);
    }
    if ((mib.TcpExtTCPTimeWaitOverflow ?? 0) > 0) limitsHit.push(`tcp_max_tw_buckets (${settings['net.ipv4.tcp_max_tw_buckets'] ?? '?'}) overflowed ${mib.TcpExtTCPTimeWaitOverflow} times`);
    // SYN-stage drops no hook saw: the kernel's count, attributed to the listeners seen full.
    const unseen = (mib.TcpExtListenOverflows ?? 0) - d('listenOverflows') - d('synDrops');
    if (unseen > 0) {
      const full = listeners.filter((l) => l.fullHits > 0).map((l) => l.listener);
      limitsHit.push(
        `${unseen} listen overflows counted only by the kernel (SYN stage)` +
          (full.length ? `, attributed to ${full.join(', ')} (seen full)` : ''),
      );
    }

    return {
      host: info?.hostname ?? '',
      kernel: info?.kernel ?? '',
      fromMs: (first?.timeUnixMicros ?? 0) / 1000,
      toMs: (last?.timeUnixMicros ?? 0) / 1000,
      snapshots: this.snapshots,
      events: this.events,
      summarised: this.summarised,
      summaryRows: this.summaryRows,
      byKind: [...this.kinds.entries()].map(([kind, c]) => ({ kind, ...c })),
      totals: {
        resetsSent: d('resetsSent'),
        resetsReceived: d('resetsReceived'),
        timewait: d('timewait'),
        acceptQueueFull: d('acceptQueueFull'),
        listenOverflows: d('listenOverflows'),
        synDrops: d('synDrops'),
      },
      mib,
      lost: { kernelRing: this.kernelRing, tooSlow: this.tooSlow, summaryTable: this.summaryTable },
      timeline,
      worst,
      listeners: listeners.slice(0, 10),
      workloadDrops,
      resetReasons: this.reasons.top(10, (reason, count) => ({ reason, count })),
      resetPeers: this.peers.top(10, (peer, count) => ({ peer, count })),
      resetPeersOffBy: this.peers.offBy,
      timewaitPeaks: this.tw.top(10, (destination, peak) => ({ destination, peak })),
      settings,
      limitsHit,
      captures: [...this.captures.values()].filter((c) => c.state !== 'running'),
      skipped: damage.skipped,
      damagedBytes: damage.damagedBytes,
      truncated: damage.truncated,
      headerLost: !info,
      unknownKinds: this.unknown.count,
      unknownKindsNote: this.unknown.message() ?? '',
      blind: info?.blind ?? [],
    };
  }
}

/** The report of records already in memory (a parsed buffer). */
export function buildReport(rec: ReadResult): Report {
  const b = new ReportBuilder();
  for (const e of rec.entries) b.add(e);
  return b.finish(rec);
}

/** The report of a recording file, streamed: memory does not grow with the file. */
export async function readReport(path: string): Promise<Report> {
  const file = await openRecording(path);
  const b = new ReportBuilder();
  for await (const e of file) b.add(e);
  return b.finish(file.damage);
}

const BARS = '▁▂▃▄▅▆▇█';

export function sparkline(values: number[]): string {
  const max = Math.max(0, ...values);
  if (max === 0) return values.map(() => ' ').join('');
  return values.map((v) => (v === 0 ? ' ' : BARS[Math.min(7, Math.floor((v / max) * 7.999))])).join('');
}

const iso = (ms: number) => new Date(ms).toISOString().replace('.000', '');

export function renderReport(r: Report): string {
  const lines: string[] = [];
  const span = ((r.toMs - r.fromMs) / 1000).toFixed(0);
  lines.push(`wstrace report: ${r.host || 'unknown host'} (Linux ${r.kernel || '?'}), ${iso(r.fromMs)} to ${iso(r.toMs)} (${span} s)`);
  lines.push(
    `  ${r.events} events` +
      (r.summarised ? ` and ${r.summarised} more in ${r.summaryRows} summary rows (beyond the agent's budget)` : '') +
      `, ${r.snapshots} snapshots` +
      (r.skipped ? `, ${r.skipped} damaged records skipped (${r.damagedBytes} bytes)` : '') +
      (r.truncated ? ', ends mid-record (recorder stopped hard)' : '') +
      `; lost: ${r.lost.kernelRing} in the kernel ring, ${r.lost.tooSlow} by a slow recorder` +
      (r.lost.summaryTable ? `, ${r.lost.summaryTable} beyond the budget with the summary table full` : ''),
  );
  const t = r.totals;
  lines.push('', 'Totals (exact kernel counts)          kernel MIB over the same interval');
  lines.push(`  resets sent       ${String(t.resetsSent).padStart(8)}          TcpOutRsts            ${r.mib.TcpOutRsts}`);
  lines.push(`  resets received   ${String(t.resetsReceived).padStart(8)}          TcpEstabResets        ${r.mib.TcpEstabResets}`);
  lines.push(`  listen overflows  ${String(t.listenOverflows).padStart(8)}          TcpExtListenOverflows ${r.mib.TcpExtListenOverflows}`);
  lines.push(`  SYN-stage drops   ${String(t.synDrops).padStart(8)}          TcpExtListenDrops     ${r.mib.TcpExtListenDrops}`);
  lines.push(`  queue-full seen   ${String(t.acceptQueueFull).padStart(8)}`);
  lines.push(`  TIME_WAIT made    ${String(t.timewait).padStart(8)}          TcpExtTCPTimeWaitOverflow ${r.mib.TcpExtTCPTimeWaitOverflow}`);
  if (r.byKind.length) {
    lines.push('', 'Events in the stream by kind       one by one   in summaries        total');
    for (const k of r.byKind) {
      lines.push(`  ${k.kind.padEnd(30)} ${String(k.events).padStart(10)} ${String(k.summarised).padStart(14)} ${String(k.events + k.summarised).padStart(12)}`);
    }
  }
  if (r.timeline.length) {
    const cols = r.timeline.slice(-120);
    lines.push('', `Per second (last ${cols.length} s)`);
    lines.push(`  drops     |${sparkline(cols.map((x) => x.drops))}| max ${Math.max(...cols.map((x) => x.drops))}/s`);
    lines.push(`  resets    |${sparkline(cols.map((x) => x.resetsSent + x.resetsReceived))}| max ${Math.max(...cols.map((x) => x.resetsSent + x.resetsReceived))}/s`);
    lines.push(`  TIME_WAIT |${sparkline(cols.map((x) => x.timewait))}| max ${Math.max(...cols.map((x) => x.timewait))}/s`);
  }
  if (r.worst.length) {
    lines.push('', 'Worst seconds');
    for (const w of r.worst) lines.push(`  ${iso(w.timeMs)}  drops ${w.drops}  resets sent ${w.resetsSent} received ${w.resetsReceived}  TIME_WAIT ${w.timewait}`);
  }
  if (r.listeners.length) {
    lines.push('', 'Listeners by overflow');
    for (const l of r.listeners)
      lines.push(
        l.listener === UNATTRIBUTED
          ? // The namespace's drops no listener's packet was seen to make: which stage is not known.
            `  ${l.listener.padEnd(28)} overflows ${l.overflows} (stage unknown)  other drops ${l.synDrops}  (counted where the kernel ran no BPF program)`
          : `  ${l.listener.padEnd(28)} ACK-stage ${l.overflows}  SYN-stage ${l.synDrops}  full ${l.fullHits}  peak ${l.peak}/${l.backlog}`,
      );
  }
  if (r.workloadDrops.length) {
    lines.push('', 'Pods and containers by listen drops (kernel counters of their listeners; events named after them)');
    for (const w of r.workloadDrops) lines.push(`  ${w.workload.padEnd(36)} drops ${w.drops}  events ${w.events}`);
  }
  if (r.resetReasons.length) {
    lines.push('', r.summarised ? 'Resets by reason (events, summary rows included)' : 'Resets by reason (events)');
    for (const x of r.resetReasons) lines.push(`  ${x.reason.padEnd(36)} ${x.count}`);
    const what = r.summarised ? 'events, summary rows included: * is a folded port' : 'events';
    lines.push(
      r.resetPeersOffBy
        ? `Resets by peer (${what}; over ${REPORT_KEYS} peers, so a count may be short by up to ${r.resetPeersOffBy})`
        : `Resets by peer (${what})`,
    );
    for (const x of r.resetPeers) lines.push(`  ${x.peer.padEnd(36)} ${x.count}`);
  }
  if (r.timewaitPeaks.length) {
    lines.push('', 'TIME_WAIT peaks per destination');
    for (const x of r.timewaitPeaks) lines.push(`  ${x.destination.padEnd(36)} ${x.peak}`);
  }
  lines.push('', 'Settings at the start');
  for (const [k, v] of Object.entries(r.settings)) lines.push(`  ${k.padEnd(30)} ${v}`);
  lines.push('', r.limitsHit.length ? 'Limits hit' : 'Limits hit: none seen');
  for (const l of r.limitsHit) lines.push(`  ${l}`);
  if (r.captures.length) {
    lines.push('', 'Captures');
    for (const c of r.captures) lines.push(`  ${c.state} ${c.rule || c.trigger}: ${c.state === 'refused' ? c.error : c.file}`);
  }
  if (r.headerLost) lines.push('note: the recording header is damaged: host, kernel and the hooks that were live are unknown');
  if (r.unknownKindsNote) lines.push(`note: ${r.unknownKindsNote}`);
  for (const b of r.blind) lines.push(`note: ${b}`);
  return `${lines.join('\n')}\n`;
}
