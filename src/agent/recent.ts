/**
 * The agent's bounded memory of recent events, for Watch's `last` and `since`.
 *
 * It keeps the very bytes the hub encoded for the streams (encode.ts), by
 * reference: about 50 bytes an event, no objects, nothing encoded again.
 * Memory stays flat however long the agent runs; events are decoded only
 * when a client asks for them.
 */
import { eventAt, pickEvents, type EncodedEvents } from './encode.js';
import type { EventPredicate } from './filter.js';

const NONE: EncodedEvents = { length: 0, bytes: new Uint8Array(0), offsets: new Uint32Array(1), times: new Float64Array(0) };

export class RecentEvents {
  private chunks: EncodedEvents[] = [];
  /** Events of chunks[0] that are already older than the capacity allows. */
  private skipped = 0;
  private count = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count;
  }

  /** Keeps a reference to `events`: they must not change afterwards (the hub's never do). */
  push(events: EncodedEvents): void {
    if (this.capacity <= 0 || events.length === 0) return;
    this.chunks.push(events);
    this.count += events.length;
    // Forget the oldest beyond capacity: whole chunks, then the head of the first.
    while (this.count > this.capacity) {
      const first = this.chunks[0]!;
      const left = first.length - this.skipped;
      const over = this.count - this.capacity;
      if (over >= left) {
        this.chunks.shift();
        this.skipped = 0;
        this.count -= left;
      } else {
        this.skipped += over;
        this.count -= over;
      }
    }
  }

  /**
   * Matching events, oldest first, in their own buffer: those at or after
   * `sinceMicros` (0: no bound), and of those the newest `last` (0: no limit).
   */
  select(pred: EventPredicate, last: number, sinceMicros: number): EncodedEvents {
    const picked: Array<[EncodedEvents, number]> = [];
    // Walk newest to oldest so `last` and `since` can stop early, then reverse.
    walk: for (let c = this.chunks.length - 1; c >= 0; c--) {
      const chunk = this.chunks[c]!;
      const oldest = c === 0 ? this.skipped : 0;
      for (let i = chunk.length - 1; i >= oldest; i--) {
        if (sinceMicros && chunk.times[i]! < sinceMicros) break walk;
        if (!pred(eventAt(chunk, i))) continue;
        picked.push([chunk, i]);
        if (last && picked.length >= last) break walk;
      }
    }
    if (picked.length === 0) return NONE;
    picked.reverse();
    // Gathered chunk by chunk into one buffer the replay owns.
    const parts = [];
    for (let j = 0; j < picked.length; ) {
      const chunk = picked[j]![0];
      const idx: number[] = [];
      for (; j < picked.length && picked[j]![0] === chunk; j++) idx.push(picked[j]![1]);
      parts.push(pickEvents(chunk, idx, idx.length));
    }
    return parts.length === 1 ? parts[0]! : concatEvents(parts);
  }
}

function concatEvents(parts: readonly EncodedEvents[]): EncodedEvents {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const offsets = new Uint32Array(length + 1);
  const times = new Float64Array(length);
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.bytes.length, 0));
  let k = 0;
  for (const p of parts) {
    bytes.set(p.bytes, offsets[k]);
    times.set(p.times, k);
    for (let i = 0; i < p.length; i++) offsets[k + i + 1] = offsets[k]! + p.offsets[i + 1]!;
    k += p.length;
  }
  return { length, bytes, offsets, times };
}
