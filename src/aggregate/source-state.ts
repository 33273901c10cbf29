/**
 * Everything remembered about one agent: what it is (GetInfo), its recent
 * samples (one per Snapshot poll, about a minute of them) and its recent
 * events in one-second buckets. Only what the 60 s window needs is kept.
 *
 * Events beyond the agent's rate budget arrive as summary rows, each with
 * its exact count: they fill the same buckets as the events they stand for,
 * in the slot they arrive in. Rates from snapshots (exact kernel counters)
 * never read events, so nothing is counted twice.
 */
import {
  EventKind,
  LostReason,
  type GetInfoResponse,
  type SnapshotResponse,
  type Summary,
  type WatchResponse,
} from '../generated/wstrace/v1/tracer.js';
import { workloadOf, type Workload } from './view.js';
import { UnknownKinds } from '../protocol/convert.js';
import { kindOfProto } from '../signals/kinds.js';
import { attribute, portKey } from './attribute.js';
import { countersWentBack, reduceSnapshot, type Sample } from './sample.js';
import type { SourceState as State } from './view.js';

/** Samples and events older than this (behind the newest) are dropped. */
const KEEP_MS = 65_000;
/** Events are counted in slots this long: a window's edges are off by at most one slot. */
export const SLOT_MS = 100;

/** Distinct reset peers kept per slot; the rest are counted together. */
export const MAX_PEERS_PER_SLOT = 256;
/** The row that counts them. */
export const OTHER_PEERS = '(other peers)';

export interface PeerCount {
  sent: number;
  received: number;
  /** Our side's container and pod in the last of them, when named. */
  workload?: Workload;
}

/** TIME_WAIT destinations whose workload is remembered per slot. */
const MAX_TW_OWNERS_PER_SLOT = 256;

export interface Bucket {
  /** floor(arrival time / SLOT_MS). */
  readonly slot: number;
  /** Resets per remote address. */
  readonly peers: Map<string, PeerCount>;
  /** Deepest queue a listener event reported, per namespace|port. */
  readonly queuePeak: Map<string, number>;
  /** The workload of the last connection to go to TIME_WAIT, per destination address|port. */
  readonly twOwners: Map<string, Workload>;
  lost: number;
  /** Events that arrived in summary rows. */
  summarised: number;
}

export interface ProcessFdFacts {
  readonly open: number;
  /** RLIMIT_NOFILE soft limit; Infinity when unlimited. */
  readonly limit: number;
}

export interface SourceWindow {
  readonly latest: Sample;
  /** Undefined with a single sample: no interval yet. */
  readonly base?: Sample;
  /** Seconds between base and latest, on the agent's clock. */
  readonly seconds: number;
  /** Samples from base to latest, oldest first. */
  readonly samples: readonly Sample[];
  /** Event buckets that arrived between base and latest. */
  readonly buckets: readonly Bucket[];
}

export class SourceRecord {
  state: State = 'connecting';
  info: GetInfoResponse | undefined;
  error: string | undefined;
  retryAt: number | undefined;
  lostKernel = 0;
  lostSlow = 0;
  /** Events that arrived in summary rows since top connected. */
  summarised = 0;
  /** Events of kinds this build does not know (a newer agent): counted, and top says to upgrade. */
  readonly unknownKinds = new UnknownKinds();
  /** The agent's latest capacity checklist summary. */
  doctor: { fail: number; warn: number; first?: string } | undefined;
  /** Captures this agent reported, by id. */
  readonly captures = new Map<string, { state: string; file: string; label: string }>();
  fds: ReadonlyMap<number, ProcessFdFacts> = new Map();
  readonly samples: Sample[] = [];
  readonly buckets: Bucket[] = [];
  /** Listeners events showed full since the last sample: input to attribution. */
  private fullSeen = new Set<string>();

  constructor(
    readonly id: string,
    readonly local: boolean,
  ) {}

  get synDropsExact(): boolean {
    return this.info?.hooks.some((h) => h.signalName === 'syn_drop' && h.attached) ?? false;
  }

  up(info: GetInfoResponse): void {
    // A different agent start means counters began again: old samples no longer subtract.
    if (this.info && this.info.startTimeUnixMicros !== info.startTimeUnixMicros) this.forget();
    this.info = info;
    this.state = 'up';
    this.error = undefined;
    this.retryAt = undefined;
  }

  down(reason: string, retryAt: number | undefined): void {
    this.state = 'down';
    this.error = reason;
    this.retryAt = retryAt;
  }

  /** A first attempt; a source that was down stays down (with its reason) until it is up again. */
  connecting(): void {
    if (this.state === 'up') this.state = 'connecting';
  }

  private forget(): void {
    this.samples.length = 0;
    this.buckets.length = 0;
    this.fullSeen = new Set();
  }

  private bucket(at: number): Bucket {
    const slot = Math.floor(at / SLOT_MS);
    const last = this.buckets[this.buckets.length - 1];
    if (last && last.slot >= slot) return last;
    const b: Bucket = { slot, peers: new Map(), queuePeak: new Map(), twOwners: new Map(), lost: 0, summarised: 0 };
    this.buckets.push(b);
    while (this.buckets.length > 0 && this.buckets[0]!.slot < slot - KEEP_MS / SLOT_MS) this.buckets.shift();
    return b;
  }

  watch(msg: WatchResponse, at: number): void {
    const r = msg.response;
    if (!r) return;
    if (r.$case === 'lost') {
      // The summary table is the kernel's too: events lost before they left it.
      const kernel = r.value.reason === LostReason.LOST_REASON_KERNEL_RING_FULL || r.value.reason === LostReason.LOST_REASON_SUMMARY_TABLE_FULL;
      if (kernel) this.lostKernel += r.value.count;
      else this.lostSlow += r.value.count;
      this.bucket(at).lost += r.value.count;
      return;
    }
    if (r.$case === 'capture') {
      // Captures by id, newest state wins; only running ones and the last file are shown.
      this.captures.set(r.value.id, { state: r.value.state, file: r.value.file, label: r.value.rule || r.value.detail });
      if (this.captures.size > 50) this.captures.delete(this.captures.keys().next().value!);
      return;
    }
    if (r.$case === 'summaries') {
      const b = this.bucket(at);
      for (const s of r.value.summaries) {
        if (!this.count(b, s, s.count)) continue;
        b.summarised += s.count;
        this.summarised += s.count;
      }
      return;
    }
    if (r.$case !== 'batch') return;
    const b = this.bucket(at);
    for (const ev of r.value.events) this.count(b, ev, 1);
  }

  /** `n` events like `ev` (one event, or a summary row of n) into bucket `b`; false for a kind this build does not know. */
  private count(
    b: Bucket,
    ev: Pick<Summary, 'kind' | 'remoteAddr' | 'remotePort' | 'netns' | 'localPort' | 'reason' | 'container' | 'containerName' | 'pod' | 'namespace'> & {
      queue?: number;
    },
    n: number,
  ): boolean {
    switch (ev.kind) {
      case EventKind.EVENT_KIND_RESET_SENT:
      case EventKind.EVENT_KIND_RESET_RECEIVED: {
        // Resets to a spoofed SYN flood come from a new address each: past a point they are one row.
        const addr = b.peers.has(ev.remoteAddr) || b.peers.size < MAX_PEERS_PER_SLOT ? ev.remoteAddr : OTHER_PEERS;
        const p = b.peers.get(addr) ?? { sent: 0, received: 0 };
        if (ev.kind === EventKind.EVENT_KIND_RESET_SENT) p.sent += n;
        else p.received += n;
        const w = workloadOf(ev);
        if (w) p.workload = w;
        b.peers.set(addr, p);
        return true;
      }
      case EventKind.EVENT_KIND_TIMEWAIT: {
        const w = workloadOf(ev);
        const k = `${ev.remoteAddr}|${ev.remotePort}`;
        if (w && (b.twOwners.has(k) || b.twOwners.size < MAX_TW_OWNERS_PER_SLOT)) b.twOwners.set(k, w);
        return true;
      }
      case EventKind.EVENT_KIND_ACCEPT_QUEUE_FULL:
      case EventKind.EVENT_KIND_LISTEN_OVERFLOW:
      case EventKind.EVENT_KIND_SYN_DROP: {
        const k = portKey(ev.netns, ev.localPort);
        // A SYN drop for another reason (SYN queue) says nothing about the accept queue.
        if (ev.kind !== EventKind.EVENT_KIND_SYN_DROP || ev.reason === 'ACCEPT_QUEUE_FULL') this.fullSeen.add(k);
        if (ev.queue !== undefined) b.queuePeak.set(k, Math.max(b.queuePeak.get(k) ?? 0, ev.queue));
        return true;
      }
      default:
        if (kindOfProto(ev.kind)) return true;
        this.unknownKinds.note(ev.kind, n);
        return false;
    }
  }

  snapshot(snap: SnapshotResponse, at: number): void {
    const cur = reduceSnapshot(snap, at);
    let prev = this.samples[this.samples.length - 1];
    if (prev && countersWentBack(prev, cur)) {
      this.forget();
      prev = undefined;
    }
    if (prev) attribute(prev, cur, this.fullSeen, this.synDropsExact);
    this.fullSeen = new Set();
    this.samples.push(cur);
    while (this.samples.length > 2 && this.samples[0]!.at < at - KEEP_MS) this.samples.shift();
  }

  setFds(fds: ReadonlyMap<number, ProcessFdFacts>): void {
    this.fds = fds;
  }

  /**
   * The newest sample and the one about `seconds` before it. Early on, or
   * after a gap, the oldest sample there is: the rates then cover less than
   * the window, and `seconds` says how much.
   */
  window(seconds: number): SourceWindow | undefined {
    const latest = this.samples[this.samples.length - 1];
    if (!latest) return undefined;
    // Polls drift a little: a sample 0.7 s old still counts as "1 s ago".
    const cutoff = latest.at - seconds * 1000 + Math.min(300, seconds * 300);
    let i = this.samples.length - 2;
    while (i > 0 && this.samples[i]!.at > cutoff) i--;
    const base = i >= 0 ? this.samples[i] : undefined;
    if (!base) return { latest, seconds: 0, samples: [latest], buckets: [] };
    let dt = (latest.agentMs - base.agentMs) / 1000;
    if (!(dt > 0)) dt = (latest.at - base.at) / 1000;
    const from = Math.floor(base.at / SLOT_MS);
    const to = Math.floor(latest.at / SLOT_MS);
    return {
      latest,
      base,
      seconds: Math.max(dt, 0.001),
      samples: this.samples.slice(i),
      buckets: this.buckets.filter((b) => b.slot >= from && b.slot <= to),
    };
  }
}
