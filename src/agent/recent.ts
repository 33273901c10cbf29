/** The agent's bounded memory of recent events, for Watch's `last` and `since`. */
import type { Event } from '../generated/wstrace/v1/tracer.js';
import type { EventPredicate } from './filter.js';

export class RecentEvents {
  private readonly slots: Array<Event | undefined>;
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<Event | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(events: readonly Event[]): void {
    for (const ev of events) {
      this.slots[this.next] = ev;
      this.next = (this.next + 1) % this.capacity;
      if (this.count < this.capacity) this.count++;
    }
  }

  /**
   * Matching events, oldest first: those at or after `sinceMicros` (0: no
   * bound), and of those the newest `last` (0: no limit).
   */
  select(pred: EventPredicate, last: number, sinceMicros: number): Event[] {
    const out: Event[] = [];
    // Walk newest to oldest so `last` can stop early, then reverse.
    for (let i = 0; i < this.count; i++) {
      const ev = this.slots[(this.next - 1 - i + this.capacity) % this.capacity]!;
      if (sinceMicros && ev.timeUnixMicros < sinceMicros) break;
      if (!pred(ev)) continue;
      out.push(ev);
      if (last && out.length >= last) break;
    }
    return out.reverse();
  }
}
