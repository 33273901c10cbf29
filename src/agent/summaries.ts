/**
 * The summary path of the agent. Beyond the kernel's rate budget events are
 * not sent one by one but counted per key in a kernel table; this module
 * drains that table each interval (SummaryPump), holds the rows a slow
 * stream has not taken yet (HeldSummaries) and remembers recent rows for
 * Watch replay (RecentSummaries). Counts are never dropped silently: a row a
 * stream cannot hold is reported to it as lost, with its count.
 */
import { LostReason, type Summary, type SummaryBatch, type WatchResponse } from '../generated/wstrace/v1/tracer.js';
import type { EventSummary } from '../kernel/index.js';
import { summaryAsEvent, summaryToProto } from '../protocol/convert.js';
import type { EventPredicate } from './filter.js';

/** How often the kernel's summary table is drained: the delay before a summarised event is seen. */
export const SUMMARY_INTERVAL_MS = 1000;

/** What the pump needs of the tracer (a fake in unit tests). */
export interface SummarySource {
  readonly eventBudget: number;
  drainSummaries(): Promise<EventSummary[]>;
}

/** Rows of one key, as the kernel keys them: one row per key per batch. */
function keyOf(s: Summary): string {
  return `${s.kind}|${s.family}|${s.localAddr}|${s.localPort}|${s.remoteAddr}|${s.remotePort}|${s.netns}|${s.state}|${s.reason}`;
}

export function countOf(rows: readonly Summary[]): number {
  let n = 0;
  for (const r of rows) n += r.count;
  return n;
}

/**
 * Drains the kernel's summary table every interval and hands each non-empty
 * batch to `publish`. Drains run one after another; `drain()` is also what
 * closing calls, so the rows of the last moments reach streams before they end.
 */
export class SummaryPump {
  private timer: NodeJS.Timeout | undefined;
  private last: number;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The last drain that failed (the tracer closed under it, say), for whoever asks. */
  error: Error | undefined;

  constructor(
    private readonly source: SummarySource,
    private readonly publish: (batch: SummaryBatch) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.last = now();
  }

  start(intervalMs = SUMMARY_INTERVAL_MS): void {
    this.timer = setInterval(() => void this.drain(), intervalMs);
    this.timer.unref();
  }

  /** One drain, after any in flight; resolves once its rows are published. */
  drain(): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.stopped) return;
      let rows: EventSummary[];
      try {
        rows = await this.source.drainSummaries();
      } catch (err) {
        // The table keeps counting: the next drain takes these rows with its own.
        this.error = err as Error;
        return;
      }
      const to = this.now();
      const from = this.last;
      this.last = to;
      if (rows.length === 0) return;
      this.publish({
        summaries: rows.map(summaryToProto),
        fromUnixMicros: Math.round(from * 1000),
        toUnixMicros: Math.round(to * 1000),
        eventBudget: this.source.eventBudget,
      });
    });
    this.chain = run;
    return run;
  }

  /** Drains once more (the last rows), then no more. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.drain();
    this.stopped = true;
  }
}

/**
 * The summary rows one stream has not taken yet, merged per key: a stream
 * that reads slowly holds one row per key however many intervals pass, and
 * the counts stay exact. Past `maxRows` keys, a new key's events are
 * reported to it as lost instead (returned by add()).
 */
export class HeldSummaries {
  private rows = new Map<string, Summary>();
  private from = 0;
  private to = 0;
  private budget = 0;
  /** Events the kernel could not summarise (its table was full), not yet told. */
  private tableLost = 0;
  /** Events this stream received in summary rows. */
  delivered = 0;

  constructor(private readonly maxRows: number) {}

  /** True when something waits to be sent. */
  get pending(): boolean {
    return this.tableLost > 0 || this.rows.size > 0;
  }

  /** Holds the rows; returns how many events could not be held (reported as too slow). */
  add(rows: readonly Summary[], batch: Pick<SummaryBatch, 'fromUnixMicros' | 'toUnixMicros' | 'eventBudget'>): number {
    let dropped = 0;
    for (const r of rows) {
      const k = keyOf(r);
      const had = this.rows.get(k);
      if (had) {
        had.count += r.count;
        had.firstUnixMicros = Math.min(had.firstUnixMicros, r.firstUnixMicros);
        had.lastUnixMicros = Math.max(had.lastUnixMicros, r.lastUnixMicros);
      } else if (this.rows.size < this.maxRows) {
        this.rows.set(k, { ...r });
      } else {
        dropped += r.count;
      }
    }
    if (this.rows.size > 0) {
      this.from = this.from ? Math.min(this.from, batch.fromUnixMicros) : batch.fromUnixMicros;
      this.to = Math.max(this.to, batch.toUnixMicros);
      this.budget = batch.eventBudget;
    }
    return dropped;
  }

  noteTableLost(count: number): void {
    this.tableLost += count;
  }

  /** The next message to send: the table's loss first, then every held row in one batch. */
  next(): WatchResponse | undefined {
    if (this.tableLost > 0) {
      const count = this.tableLost;
      this.tableLost = 0;
      return { response: { $case: 'lost', value: { count, reason: LostReason.LOST_REASON_SUMMARY_TABLE_FULL } } };
    }
    if (this.rows.size === 0) return undefined;
    const summaries = [...this.rows.values()];
    const batch: SummaryBatch = { summaries, fromUnixMicros: this.from, toUnixMicros: this.to, eventBudget: this.budget };
    this.clear();
    this.delivered += countOf(summaries);
    return { response: { $case: 'summaries', value: batch } };
  }

  clear(): void {
    this.rows = new Map();
    this.from = 0;
    this.to = 0;
    this.tableLost = 0;
  }
}

/**
 * Recent summary batches for Watch replay (`last`, `since`), beside the
 * recent-event ring: at most `capacity` rows, the oldest batches forgotten
 * first, so replaying a storm shows what was summarised as well as the
 * events that were sent.
 */
export class RecentSummaries {
  private batches: SummaryBatch[] = [];
  private rows = 0;

  constructor(readonly capacity: number) {}

  push(batch: SummaryBatch): void {
    if (this.capacity <= 0) return;
    this.batches.push(batch);
    this.rows += batch.summaries.length;
    while (this.rows > this.capacity && this.batches.length > 1) this.rows -= this.batches.shift()!.summaries.length;
  }

  /** Matching rows whose last event is at or after `fromMicros`, per batch, oldest first. */
  select(pred: EventPredicate, fromMicros: number): SummaryBatch[] {
    const out: SummaryBatch[] = [];
    for (const b of this.batches) {
      if (b.toUnixMicros < fromMicros) continue;
      const summaries = b.summaries.filter((s) => s.lastUnixMicros >= fromMicros && pred(summaryAsEvent(s)));
      if (summaries.length) out.push({ ...b, summaries });
    }
    return out;
  }
}
