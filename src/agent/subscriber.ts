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
  type WatchRequest,
  type WatchResponse,
} from '../generated/wstrace/v1/tracer.js';
import type { EventPredicate } from './filter.js';

export interface SubscriberLimits {
  /** Events held for a slow reader before the oldest are dropped. */
  readonly maxQueued: number;
  /** Events per batch message. */
  readonly maxBatch: number;
}

export const DEFAULT_LIMITS: SubscriberLimits = { maxQueued: 20_000, maxBatch: 1024 };

type Call = ServerWritableStream<WatchRequest, WatchResponse>;

export class Subscriber {
  private queue: Event[] = [];
  private head = 0;
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
  ) {}

  get following(): boolean {
    return this.follow && !this.ended;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** New events from the kernel: keep the ones this stream wants. */
  offer(events: readonly Event[]): void {
    if (this.ended) return;
    let added = false;
    for (const ev of events) {
      if (!this.predicate(ev)) continue;
      this.queue.push(ev);
      added = true;
    }
    if (!added) return;
    const excess = this.queued - this.limits.maxQueued;
    if (excess > 0) {
      this.head += excess;
      this.droppedSlow += excess;
      this.lostSlow += excess;
    }
    this.schedule();
  }

  /** Replay: events sent before any new ones, not subject to the filter again. */
  preload(events: readonly Event[]): void {
    this.queue.push(...events);
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
    this.queue = [];
    this.head = 0;
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
      } else if (this.queued > 0) {
        const events = this.queue.slice(this.head, this.head + this.limits.maxBatch);
        this.head += events.length;
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        } else if (this.head > 4096 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
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
