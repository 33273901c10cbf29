/**
 * Fans kernel events out to Watch subscribers, keeps the recent-event ring,
 * and turns the kernel's ring-drop counter into in-band lost notices.
 */
import type { Capture, Event } from '../generated/wstrace/v1/tracer.js';
import type { TraceEvent } from '../kernel/index.js';
import { eventToProto } from '../protocol/convert.js';
import { RecentEvents } from './recent.js';
import type { Subscriber } from './subscriber.js';

export class EventHub {
  readonly recent: RecentEvents;
  private readonly subscribers = new Set<Subscriber>();
  /** Events that reached the agent, all kinds. */
  received = 0;
  /** Lost-to-slowness totals of subscribers that have ended. */
  private lostSlowEnded = 0;

  constructor(recentCapacity: number) {
    this.recent = new RecentEvents(recentCapacity);
  }

  publish(batch: readonly TraceEvent[]): void {
    const events: Event[] = batch.map(eventToProto);
    this.received += events.length;
    this.recent.push(events);
    for (const s of this.subscribers) s.offer(events);
  }

  captureChanged(c: Capture): void {
    for (const s of this.subscribers) s.capture(c);
  }

  kernelLost(count: number): void {
    for (const s of this.subscribers) s.noteKernelLost(count);
  }

  add(s: Subscriber): void {
    this.subscribers.add(s);
  }

  remove(s: Subscriber): void {
    if (this.subscribers.delete(s)) this.lostSlowEnded += s.lostSlow;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Events dropped because a subscriber was too slow, over all subscribers ever. */
  get lostSlow(): number {
    let n = this.lostSlowEnded;
    for (const s of this.subscribers) n += s.lostSlow;
    return n;
  }

  endAll(message: string): void {
    for (const s of this.subscribers) s.end(message);
    this.subscribers.clear();
  }
}
