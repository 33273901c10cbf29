/**
 * Fans kernel events out to Watch subscribers, keeps the recent-event ring,
 * and turns the kernel's ring-drop counter into in-band lost notices. The
 * summary rows of events beyond the rate budget take the same way, beside
 * the events (summaries.ts).
 */
import type { Capture, SummaryBatch } from '../generated/wstrace/v1/tracer.js';
import type { RawBatch } from '../kernel/index.js';
import { EventEncoder, type CgroupNames } from './encode.js';
import { RecentEvents } from './recent.js';
import type { Subscriber } from './subscriber.js';
import { countOf, RecentSummaries } from './summaries.js';
import type { EventPredicate } from './filter.js';

export class EventHub {
  readonly recent: RecentEvents;
  /** Recent summary rows, for replay beside the recent events. */
  readonly recentSummaries: RecentSummaries;
  private readonly subscribers = new Set<Subscriber>();
  private readonly encoder: EventEncoder;
  /** Events that reached the agent, all kinds. */
  received = 0;
  /** Events that reached the agent counted in summary rows. */
  summarised = 0;
  /** Lost-to-slowness totals of subscribers that have ended. */
  private lostSlowEnded = 0;

  /** `names`: who a cgroup belongs to, from a cache that never waits (ContainerResolver.peek). */
  constructor(
    recentCapacity: number,
    private readonly names?: (cgroup: number) => CgroupNames | undefined,
  ) {
    this.encoder = new EventEncoder(names);
    this.recent = new RecentEvents(recentCapacity);
    this.recentSummaries = new RecentSummaries(recentCapacity);
  }

  /** A ring batch: encoded once here, the bytes shared by the recent ring and every stream. */
  publish(batch: RawBatch): void {
    const { events, records } = this.encoder.encode(batch);
    this.received += events.length;
    this.recent.push(events);
    for (const s of this.subscribers) s.offer(events, batch, records);
  }

  captureChanged(c: Capture): void {
    for (const s of this.subscribers) s.capture(c);
  }

  kernelLost(count: number): void {
    for (const s of this.subscribers) s.noteKernelLost(count);
  }

  /** One drain of the kernel's summary table: every stream gets the rows its filters match. */
  summaries(batch: SummaryBatch): void {
    if (this.names) for (const s of batch.summaries) if (s.cgroup) Object.assign(s, namesToProto(this.names(s.cgroup)));
    this.summarised += countOf(batch.summaries);
    this.recentSummaries.push(batch);
    for (const s of this.subscribers) s.offerSummaries(batch);
  }

  /** Events beyond the budget the kernel could not summarise (its table was full): told to every stream. */
  summaryLost(count: number): void {
    for (const s of this.subscribers) s.noteSummaryLost(count);
  }

  /**
   * Summary rows to replay beside the `replayed` events a Watch replays
   * (the oldest at `oldestMicros`): those of the same span, from `since`, or
   * from the oldest event when `last` cut the replay short; every row
   * remembered otherwise.
   */
  replaySummaries(pred: EventPredicate, last: number, sinceMicros: number, replayed: number, oldestMicros: number): SummaryBatch[] {
    const cut = last > 0 && replayed >= last ? oldestMicros : 0;
    return this.recentSummaries.select(pred, Math.max(sinceMicros, cut));
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

/** The proto fields (Event, Summary, Listener) of who a cgroup belongs to; none when unknown. */
export function namesToProto(n: CgroupNames | undefined): { container?: string; containerName?: string; pod?: string; namespace?: string } {
  if (!n) return {};
  return {
    ...(n.containerId ? { container: n.containerId } : {}),
    ...(n.containerName ? { containerName: n.containerName } : {}),
    ...(n.pod ? { pod: n.pod } : {}),
    ...(n.namespace ? { namespace: n.namespace } : {}),
  };
}
