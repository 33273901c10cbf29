/**
 * The aggregator of `wstrace top`: fed, per source, with what the agent said
 * (GetInfo, Watch messages, Snapshot polls) and when it arrived, plus fd
 * facts for a local agent; asked for a TopView at any time. No I/O, no
 * clock of its own: every input carries its time, so tests replay fixtures.
 */
import type { DoctorResponse, GetInfoResponse, SnapshotResponse, WatchResponse } from '../generated/wstrace/v1/tracer.js';
import { noticeLevel, sampleLevel, worst } from './levels.js';
import { capacityRow, listenerRows, resetRows, timewaitRows, type Who } from './rows.js';
import { SourceRecord, type ProcessFdFacts } from './source-state.js';
import type {
  CapacityRow,
  ListenerRow,
  ResetPeerRow,
  ResetPortRow,
  ResetReasonRow,
  SourceView,
  TimewaitDestRow,
  TimewaitHostRow,
  TopView,
  WindowSec,
} from './view.js';

/** Rows kept per list after merging: more than any screen shows. */
const MAX_ROWS = 200;

export interface SourceOptions {
  /** An agent in this process: fd facts can be read for its listeners. */
  readonly local?: boolean;
}

/** "unix:/run/a/agent.sock" → "agent.sock"; "tcp://h:9" → "h:9": short enough for a column. */
export function shortAddress(id: string): string {
  const unix = /^unix:(?:\/\/)?(.*)$/.exec(id);
  if (unix) return unix[1]!.split('/').filter(Boolean).pop() ?? id;
  return id.replace(/^[a-z]+:\/\//, '');
}

function scopeOf(info: GetInfoResponse): string {
  const parts = [info.netns ? `netns ${info.netns}` : 'all netns'];
  if (info.ports.length) parts.push(`ports ${info.ports.join(',')}`);
  return parts.join(', ');
}

export function byTrouble(a: ListenerRow, b: ListenerRow): number {
  const drops = (r: ListenerRow) => (r.ackDropsPerSec ?? 0) + (r.synDropsPerSec ?? 0);
  return (
    drops(b) - drops(a) ||
    (b.fullPerSec ?? 0) - (a.fullPerSec ?? 0) ||
    b.queue / Math.max(1, b.limit) - a.queue / Math.max(1, a.limit) ||
    (b.resetsPerSec ?? 0) - (a.resetsPerSec ?? 0) ||
    a.port - b.port ||
    a.key.localeCompare(b.key)
  );
}

const byRate = <T extends { perSec: number; key: string }>(a: T, b: T) => b.perSec - a.perSec || a.key.localeCompare(b.key);

function lastCaptureFile(m: ReadonlyMap<string, { state: string; file: string }>): string | undefined {
  const done = [...m.values()].filter((c) => c.state !== 'refused' && c.file);
  return done.at(-1)?.file;
}

export class Aggregator {
  private readonly records = new Map<string, SourceRecord>();

  addSource(id: string, options: SourceOptions = {}): void {
    if (!this.records.has(id)) this.records.set(id, new SourceRecord(id, options.local ?? false));
  }

  private rec(id: string): SourceRecord {
    this.addSource(id);
    return this.records.get(id)!;
  }

  connecting(id: string): void {
    this.rec(id).connecting();
  }

  up(id: string, info: GetInfoResponse): void {
    this.rec(id).up(info);
  }

  /** The agent went away or could not be reached; `retryAt` is when the next attempt is due. */
  down(id: string, reason: string, retryAt?: number): void {
    this.rec(id).down(reason, retryAt);
  }

  watch(id: string, msg: WatchResponse, at: number): void {
    this.rec(id).watch(msg, at);
  }

  /** The agent's Doctor answer: kept as counts and the first check that is not ok. */
  doctor(id: string, r: DoctorResponse): void {
    const bad = r.findings.filter((f) => f.status !== 'ok');
    const first = bad[0];
    this.rec(id).doctor = {
      fail: bad.filter((f) => f.status === 'fail').length,
      warn: bad.filter((f) => f.status === 'warn').length,
      ...(first ? { first: `${first.area}: ${first.check}` } : {}),
    };
  }

  snapshot(id: string, snap: SnapshotResponse, at: number): void {
    this.rec(id).snapshot(snap, at);
  }

  /** Open fds and limits of listener processes, by pid (local agents only). */
  fds(id: string, fds: ReadonlyMap<number, ProcessFdFacts>): void {
    this.rec(id).setFds(fds);
  }

  /** Pids of live listeners of a source's newest sample: whose fds are worth reading. */
  listenerPids(id: string): number[] {
    const latest = this.records.get(id)?.samples.at(-1);
    if (!latest) return [];
    const pids = new Set<number>();
    for (const l of latest.listeners.values()) if (l.live && l.pid !== undefined) pids.add(l.pid);
    return [...pids];
  }

  private labels(): Map<string, string> {
    const counts = new Map<string, number>();
    for (const r of this.records.values()) {
      const h = r.info?.hostname;
      if (h) counts.set(h, (counts.get(h) ?? 0) + 1);
    }
    const out = new Map<string, string>();
    for (const r of this.records.values()) {
      const h = r.info?.hostname;
      out.set(r.id, h && counts.get(h) === 1 ? h : shortAddress(r.id));
    }
    return out;
  }

  view(at: number, window: WindowSec): TopView {
    const labels = this.labels();
    const sources: SourceView[] = [];
    const listeners: ListenerRow[] = [];
    const reasons: ResetReasonRow[] = [];
    const peers: ResetPeerRow[] = [];
    const ports: ResetPortRow[] = [];
    const twHosts: TimewaitHostRow[] = [];
    const destinations: TimewaitDestRow[] = [];
    const capacity: CapacityRow[] = [];
    let sent: number | undefined;
    let received: number | undefined;
    const add = (a: number | undefined, b: number | undefined) => (b === undefined ? a : (a ?? 0) + b);

    for (const rec of this.records.values()) {
      const who: Who = { source: rec.id, host: labels.get(rec.id) ?? rec.id };
      // A down agent's last numbers would read as current: it shows in the header only.
      const w = rec.state === 'up' ? rec.window(window) : undefined;
      const latest = rec.samples.at(-1);
      const ageMs = latest ? Math.max(0, at - latest.at) : undefined;
      const info = rec.info;
      const hooks = info?.hooks ?? [];
      const lostInWindow = w ? w.buckets.reduce((n, b) => n + b.lost, 0) : 0;
      const summarisedInWindow = w ? w.buckets.reduce((n, b) => n + b.summarised, 0) : 0;
      sources.push({
        id: rec.id,
        label: who.host,
        state: rec.state,
        local: rec.local,
        ...(info ? { hostname: info.hostname, kernel: info.kernel, scope: scopeOf(info) } : {}),
        hooksLive: hooks.filter((h) => h.attached).length,
        hooksTotal: hooks.length,
        blind: hooks.filter((h) => !h.attached).map((h) => h.signalName || h.hook),
        synDropsExact: rec.synDropsExact,
        lostKernel: rec.lostKernel,
        lostSlow: rec.lostSlow,
        lostInWindow,
        eventBudget: info?.eventBudget ?? 0,
        summarised: rec.summarised,
        summarisedInWindow,
        unknownEvents: rec.unknownKinds.count,
        capturesRunning: [...rec.captures.values()].filter((c) => c.state === 'running').length,
        ...(lastCaptureFile(rec.captures) ? { lastCapture: lastCaptureFile(rec.captures)! } : {}),
        ...(ageMs !== undefined && rec.state === 'up' ? { sampleAgeMs: ageMs } : {}),
        sampleLevel: rec.state === 'up' ? worst(sampleLevel(ageMs), noticeLevel(lostInWindow)) : 'over',
        coveredSec: w?.base ? w.seconds : 0,
        ...(rec.error !== undefined ? { error: rec.error } : {}),
        ...(rec.retryAt !== undefined && rec.state === 'down' ? { retryInMs: Math.max(0, rec.retryAt - at) } : {}),
      });
      if (!w) continue;
      listeners.push(...listenerRows(rec, w, who));
      const r = resetRows(w, who);
      sent = add(sent, r.sentPerSec);
      received = add(received, r.receivedPerSec);
      reasons.push(...r.reasons);
      peers.push(...r.peers);
      ports.push(...r.ports);
      const tw = timewaitRows(w, who);
      twHosts.push(tw.host);
      destinations.push(...tw.destinations);
      capacity.push({ ...capacityRow(rec, w, who), ...(rec.doctor ? { doctor: rec.doctor } : {}) });
    }

    return {
      atMs: at,
      window,
      sources,
      listeners: listeners.sort(byTrouble).slice(0, MAX_ROWS),
      resets: {
        ...(sent !== undefined ? { sentPerSec: sent } : {}),
        ...(received !== undefined ? { receivedPerSec: received } : {}),
        level: noticeLevel(add(sent, received)),
        reasons: reasons.sort(byRate).slice(0, MAX_ROWS),
        peers: peers.sort(byRate).slice(0, MAX_ROWS),
        ports: ports.sort(byRate).slice(0, MAX_ROWS),
      },
      timewait: {
        hosts: twHosts,
        destinations: destinations
          .sort((a, b) => b.current - a.current || (b.createdPerSec ?? 0) - (a.createdPerSec ?? 0) || a.key.localeCompare(b.key))
          .slice(0, MAX_ROWS),
      },
      capacity,
    };
  }
}
