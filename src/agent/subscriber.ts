/**
 * One Watch stream. Events wait in a bounded queue; when the client reads too
 * slowly (the stream stops accepting writes) the oldest queued events are
 * dropped and counted, and the count goes to the client as a lost-events
 * notice before the events that follow. The kernel drain and every other
 * subscriber never wait for this one.
 *
 * Events stay the bytes the hub encoded once (encode.ts): the queue holds
 * runs of them, shared with the recent ring and every other stream that
 * takes the whole batch; a stream whose filter takes part of a batch copies
 * that part, so what it holds is its own events, not the batches they came in.
 */
import type { ServerWritableStream } from '@grpc/grpc-js';
import {
  LostReason,
  type Capture,
  type SummaryBatch,
  type WatchRequest,
} from '../generated/wstrace/v1/tracer.js';
import type { RawBatch } from '../kernel/index.js';
import { summaryAsEvent } from '../protocol/convert.js';
import { batchMessage, pickEvents, type EncodedEvents, type WatchMessage } from './encode.js';
import type { WatchFilter } from './filter.js';
import { HeldSummaries } from './summaries.js';

export interface SubscriberLimits {
  /** Events held for a slow reader before the oldest are dropped. */
  readonly maxQueued: number;
  /** Events per batch message. */
  readonly maxBatch: number;
}

export const DEFAULT_LIMITS: SubscriberLimits = { maxQueued: 20_000, maxBatch: 1024 };

/** A Watch call whose serializer also takes encoded messages (serializeWatchResponse). */
export type WatchCall = ServerWritableStream<WatchRequest, WatchMessage>;

/** Events [from, to) of one encoded batch. */
interface Run {
  readonly events: EncodedEvents;
  from: number;
  readonly to: number;
}

/**
 * A bounded FIFO of encoded events that drops its oldest when full: it counts
 * events, holds runs of them (one per batch offered), so memory is
 * O(capacity) whatever the reader does, and every event dropped is counted.
 */
export class EventQueue {
  private runs: Array<Run | undefined> = [];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count;
  }

  /** Appends events [from, to) of `events`; returns how many old events were dropped to make room. */
  push(events: EncodedEvents, from: number, to: number): number {
    const cap = Math.max(1, this.capacity);
    let dropped = 0;
    if (to - from >= cap) {
      // Nothing queued survives, nor the oldest of these.
      dropped = this.count + (to - from - cap);
      this.clear();
      from = to - cap;
    }
    this.runs.push({ events, from, to });
    this.count += to - from;
    let over = this.count - cap;
    while (over > 0) {
      const first = this.runs[this.head]!;
      const k = Math.min(over, first.to - first.from);
      first.from += k;
      this.count -= k;
      dropped += k;
      over -= k;
      if (first.from === first.to) this.runs[this.head++] = undefined;
    }
    this.compact();
    return dropped;
  }

  /** Removes up to n of the oldest events: the byte ranges that hold them, oldest first. */
  take(n: number): { parts: Uint8Array[]; count: number } {
    const parts: Uint8Array[] = [];
    let count = 0;
    while (count < n && this.head < this.runs.length) {
      const r = this.runs[this.head]!;
      const k = Math.min(n - count, r.to - r.from);
      parts.push(r.events.bytes.subarray(r.events.offsets[r.from], r.events.offsets[r.from + k]));
      r.from += k;
      count += k;
      if (r.from === r.to) this.runs[this.head++] = undefined;
    }
    this.count -= count;
    this.compact();
    return { parts, count };
  }

  clear(): void {
    this.runs = [];
    this.head = 0;
    this.count = 0;
  }

  /** Taken runs leave the array once they are half of it: its length stays O(runs held). */
  private compact(): void {
    if (this.head > 64 && this.head * 2 > this.runs.length) {
      this.runs = this.runs.slice(this.head);
      this.head = 0;
    }
  }
}

export class Subscriber {
  private readonly queue: EventQueue;
  /** Indexes of one batch's events this stream takes, reused from batch to batch. */
  private picked = new Uint32Array(0);
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
    private readonly call: WatchCall,
    private readonly predicate: WatchFilter,
    private readonly follow: boolean,
    private readonly limits: SubscriberLimits = DEFAULT_LIMITS,
  ) {
    this.queue = new EventQueue(limits.maxQueued);
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

  /**
   * New events from the kernel: keep the ones this stream wants, judged on
   * the records they were encoded from (event j came from record records[j]
   * of `batch`, which is only valid during this call).
   */
  offer(events: EncodedEvents, batch: RawBatch, records: Uint32Array): void {
    if (this.ended || events.length === 0) return;
    if (this.predicate.all) {
      this.enqueue(events);
      return;
    }
    if (this.picked.length < events.length) this.picked = new Uint32Array(events.length);
    let n = 0;
    for (let j = 0; j < events.length; j++) if (this.predicate.raw(batch, records[j]!)) this.picked[n++] = j;
    if (n === 0) return;
    this.enqueue(n === events.length ? events : pickEvents(events, this.picked, n));
  }

  /** Replay: events sent before any new ones, not subject to the filter again. */
  preload(events: EncodedEvents): void {
    if (events.length) this.enqueue(events);
  }

  private enqueue(events: EncodedEvents): void {
    const dropped = this.queue.push(events, 0, events.length);
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

  private write(msg: WatchMessage): boolean {
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
        const { parts, count } = this.queue.take(this.limits.maxBatch);
        this.delivered += count;
        ok = this.write(batchMessage(parts));
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
