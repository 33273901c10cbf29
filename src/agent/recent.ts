/**
 * The agent's bounded memory of recent events, for Watch's `last` and `since`.
 *
 * Kept encoded: each pushed batch becomes one buffer of protobuf-encoded
 * events and an offset table, about 50 bytes an event instead of a dozen
 * objects and strings. Memory stays flat however long the agent runs; events
 * are decoded only when a client asks for them.
 */
import { Event } from '../generated/wstrace/v1/tracer.js';
import type { EventPredicate } from './filter.js';

interface Chunk {
  readonly bytes: Buffer;
  /** Event i is bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;
  /** Event times, for `since` without decoding. */
  readonly times: Float64Array;
}

export class RecentEvents {
  private chunks: Chunk[] = [];
  /** Events of chunks[0] that are already older than the capacity allows. */
  private skipped = 0;
  private count = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count;
  }

  push(events: readonly Event[]): void {
    if (this.capacity <= 0 || events.length === 0) return;
    const keep = events.length > this.capacity ? events.slice(events.length - this.capacity) : events;
    const parts = keep.map((ev) => Event.encode(ev).finish());
    const offsets = new Uint32Array(parts.length + 1);
    const times = new Float64Array(parts.length);
    for (let i = 0; i < parts.length; i++) {
      offsets[i + 1] = offsets[i]! + parts[i]!.length;
      times[i] = keep[i]!.timeUnixMicros;
    }
    this.chunks.push({ bytes: Buffer.concat(parts, offsets[parts.length]), offsets, times });
    this.count += parts.length;
    // Forget the oldest beyond capacity: whole chunks, then the head of the first.
    while (this.count > this.capacity) {
      const first = this.chunks[0]!;
      const left = first.times.length - this.skipped;
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
   * Matching events, oldest first: those at or after `sinceMicros` (0: no
   * bound), and of those the newest `last` (0: no limit).
   */
  select(pred: EventPredicate, last: number, sinceMicros: number): Event[] {
    const out: Event[] = [];
    // Walk newest to oldest so `last` and `since` can stop early, then reverse.
    for (let c = this.chunks.length - 1; c >= 0; c--) {
      const chunk = this.chunks[c]!;
      const oldest = c === 0 ? this.skipped : 0;
      for (let i = chunk.times.length - 1; i >= oldest; i--) {
        if (sinceMicros && chunk.times[i]! < sinceMicros) return out.reverse();
        const ev = Event.decode(chunk.bytes.subarray(chunk.offsets[i], chunk.offsets[i + 1]));
        if (!pred(ev)) continue;
        out.push(ev);
        if (last && out.length >= last) return out.reverse();
      }
    }
    return out.reverse();
  }
}
