/**
 * One Watch stream. Events wait in a bounded queue; when the client reads too
 * slowly (the stream stops accepting writes) the oldest queued events are
 * dropped and counted, and the count goes to the client as a lost-events
 * notice before the events that follow. The kernel drain and every other
 * subscriber never wait for this one.
 */
import type { ServerWritableStream } from '@grpc/grpc-js';
import {
  LostReason,
  type Capture,
  type Event,
  type SummaryBatch,
  type WatchRequest,
  type WatchResponse,
} from '../generated/wstrace/v1/tracer.js';
import { summaryAsEvent } from '../protocol/convert.js';
import type { EventPredicate } from './filter.js';
import { HeldSummaries } from './summaries.js';

export interface SubscriberLimits {
  /** Events held for a slow reader before the oldest are dropped. */
  readonly maxQueued: number;
  /** Events per batch message. */
  readonly maxBatch: number;
}

export const DEFAULT_LIMITS: SubscriberLimits = { maxQueued: 20_000, maxBatch: 1024 };

type Call = ServerWritableStream<WatchRequest, WatchResponse>;

/**
 * A fixed-capacity FIFO that overwrites its oldest entry when full: memory is
 * O(capacity) whatever the reader does, and a taken slot is cleared at once.
 */
export class DropOldestQueue<T> {
  private readonly slots: Array<T | undefined>;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<T | undefined>(Math.max(1, capacity));
  }

  get size(): number {
    return this.count;
  }

  /** Appends; returns how many old entries were dropped to make room (0 or 1). */
  push(item: T): number {
    const cap = this.slots.length;
    if (this.count < cap) {
      this.slots[(this.start + this.count) % cap] = item;
      this.count++;
      return 0;
    }
    this.slots[this.start] = item;
    this.start = (this.start + 1) % cap;
    return 1;
  }

  /** Removes and returns up to n of the oldest entries. */
  take(n: number): T[] {
    const cap = this.slots.length;
    const k = Math.min(n, this.count);
    const out = new Array<T>(k);
    for (let i = 0; i < k; i++) {
      out[i] = this.slots[this.start]!;
      this.slots[this.start] = undefined;
      this.start = (this.start + 1) % cap;
    }
    this.count -= k;
    return out;
  }

  clear(): void {
    this.slots.fill(undefined);
    this.start = 0;
    this.count = 0;
  }
}

export class Subscriber {
  private readonly queue: DropOldestQueue<Event>;
  /** Summary rows not sent yet, merged per key (as many keys as the queue holds events). */
  private readonly held: HeldSummaries;
  private droppedSlow = 0;
  private kernelLost = 0;
  private waitingDrain = false;
  private scheduled = false;
  private ended = false;
  /** Totals for this stream, for metrics and tests. */
  delivered = 0;
  lostSlow = 0;

  constructor(
    private readonly call: Call,
    private readonly predicate: EventPredicate,
    private readonly follow: boolean,
    private readonly limits: SubscriberLimits = DEFAULT_LIMITS,
  ) {
    this.queue = new DropOldestQueue(limits.maxQueued);
    this.held = new HeldSummaries(limits.maxQueued);
  }

  /** Events this stream was sent in summary rows. */
  get summarised(): number {
    return this.held.delivered;
  }

  /** Summary rows of one interval: keep the ones this stream wants; never dropped, but counted lost past the limit. */
  offerSummaries(batch: SummaryBatch): void {
    if (this.ended) return;
    const rows = batch.summaries.filter((s) => this.predicate(summaryAsEvent(s)));
    if (rows.length) this.holdSummaries({ ...batch, summaries: rows });
  }

  /** Replay: summary rows already selected for this stream. */
  preloadSummaries(batches: readonly SummaryBatch[]): void {
    for (const b of batches) this.holdSummaries(b);
  }

  /** The kernel's summary table was full: events that may or may not have matched here. */
  noteSummaryLost(count: number): void {
    if (this.ended || count <= 0) return;
    this.held.noteTableLost(count);
    this.schedule();
  }

  private holdSummaries(batch: SummaryBatch): void {
    const dropped = this.held.add(batch.summaries, batch);
    this.droppedSlow += dropped;
    this.lostSlow += dropped;
    this.schedule();
  }

  get following(): boolean {
    return this.follow && !this.ended;
  }

  get queued(): number {
    return this.queue.size;
  }

  /** New events from the kernel: keep the ones this stream wants. */
  offer(events: readonly Event[]): void {
    if (this.ended) return;
    let added = false;
    let dropped = 0;
    for (const ev of events) {
      if (!this.predicate(ev)) continue;
      dropped += this.queue.push(ev);
      added = true;
    }
    if (!added) return;
    this.droppedSlow += dropped;
    this.lostSlow += dropped;
    this.schedule();
  }

  /** Replay: events sent before any new ones, not subject to the filter again. */
  preload(events: readonly Event[]): void {
    let dropped = 0;
    for (const ev of events) dropped += this.queue.push(ev);
    this.droppedSlow += dropped;
    this.lostSlow += dropped;
    this.schedule();
  }

  /** The kernel ring dropped events; they may or may not have matched here. */
  noteKernelLost(count: number): void {
    if (this.ended || count <= 0) return;
    this.kernelLost += count;
    this.schedule();
  }

  /** Sends what is queued, then a final status, then ends the stream. */
  end(message: string): void {
    if (this.ended) return;
    this.ended = true;
    this.flush(true);
    this.write({ response: { $case: 'status', value: { message, ringEvents: 0, end: true } } });
    this.call.end();
  }

  /** The client went away: forget everything. */
  cancel(): void {
    this.ended = true;
    this.queue.clear();
    this.held.clear();
  }

  /** A capture changed state: sent at once, never dropped (rare and small). */
  capture(c: Capture): void {
    if (!this.ended) this.write({ response: { $case: 'capture', value: c } });
  }

  status(message: string, ringEvents: number): void {
    this.write({ response: { $case: 'status', value: { message, ringEvents, end: false } } });
  }

  private schedule(): void {
    if (this.scheduled || this.waitingDrain || this.ended) return;
    this.scheduled = true;
    // Coalesce the kernel batches of one loop turn into fewer, larger messages.
    setImmediate(() => {
      this.scheduled = false;
      this.flush(false);
    });
  }

  private write(msg: WatchResponse): boolean {
    if (this.call.cancelled || this.call.destroyed) return false;
    return this.call.write(msg);
  }

  private flush(final: boolean): void {
    while (final || !this.waitingDrain) {
      let ok: boolean;
      if (this.kernelLost) {
        ok = this.write({ response: { $case: 'lost', value: { count: this.kernelLost, reason: LostReason.LOST_REASON_KERNEL_RING_FULL } } });
        this.kernelLost = 0;
      } else if (this.droppedSlow) {
        ok = this.write({
          response: { $case: 'lost', value: { count: this.droppedSlow, reason: LostReason.LOST_REASON_SUBSCRIBER_TOO_SLOW } },
        });
        this.droppedSlow = 0;
      } else if (this.held.pending) {
        ok = this.write(this.held.next()!);
      } else if (this.queued > 0) {
        const events = this.queue.take(this.limits.maxBatch);
        this.delivered += events.length;
        ok = this.write({ response: { $case: 'batch', value: { events } } });
      } else {
        return;
      }
      if (!ok && !final) {
        this.waitingDrain = true;
        this.call.once('drain', () => {
          this.waitingDrain = false;
          this.flush(false);
        });
      }
    }
  }
}
