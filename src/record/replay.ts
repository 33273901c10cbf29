/**
 * A recording as an EventSource: the same interface the gRPC client offers,
 * so `top` shows a recording exactly as it showed the live agent. Time is a
 * virtual clock over the recording that can run faster, pause, step and jump.
 */
import type { RecordEntry } from '../generated/wstrace/v1/record.js';
import type { GetInfoResponse, SnapshotResponse, WatchRequest, WatchResponse } from '../generated/wstrace/v1/tracer.js';
import { UserError } from '../protocol/errors.js';
import type { EventSource } from '../client/connect.js';
import type { ReadResult } from './format.js';

export class ReplayClock {
  private baseReal: number;
  private baseVirtual: number;
  private pausedAt: number | undefined;

  constructor(
    readonly startMs: number,
    readonly endMs: number,
    private speed = 1,
    private readonly realNow: () => number = Date.now,
  ) {
    this.baseReal = realNow();
    this.baseVirtual = startMs;
  }

  /** Virtual now, in ms since the epoch, within the recording. */
  now(): number {
    const v = this.pausedAt ?? this.baseVirtual + (this.realNow() - this.baseReal) * this.speed;
    return Math.min(v, this.endMs);
  }

  get paused(): boolean {
    return this.pausedAt !== undefined;
  }

  togglePause(): void {
    if (this.pausedAt === undefined) this.pausedAt = this.now();
    else this.jump(this.pausedAt, false);
  }

  /** Moves to a moment; stays paused if paused (`keepPaused`). */
  jump(toMs: number, keepPaused = this.paused): void {
    const t = Math.max(this.startMs, Math.min(this.endMs, toMs));
    this.baseReal = this.realNow();
    this.baseVirtual = t;
    this.pausedAt = keepPaused ? t : undefined;
  }

  step(ms: number): void {
    this.jump(this.now() + ms, true);
  }

  get finished(): boolean {
    return this.now() >= this.endMs;
  }
}

const ms = (e: RecordEntry) => e.timeUnixMicros / 1000;

export class ReplaySource implements EventSource {
  readonly clock: ReplayClock;
  private readonly info0: GetInfoResponse;
  private readonly snaps: RecordEntry[];
  private readonly watches: RecordEntry[];
  private closed = false;

  constructor(rec: ReadResult, speed = 1, realNow: () => number = Date.now) {
    const header = rec.entries.find((e) => e.entry?.$case === 'header');
    if (!header || header.entry?.$case !== 'header' || !header.entry.value.info) {
      throw new UserError('the recording has no header: it is empty or was cut before its first record.');
    }
    this.info0 = header.entry.value.info;
    this.snaps = rec.entries.filter((e) => e.entry?.$case === 'snapshot').sort((a, b) => ms(a) - ms(b));
    this.watches = rec.entries.filter((e) => e.entry?.$case === 'watch');
    const times = rec.entries.map(ms);
    this.clock = new ReplayClock(Math.min(...times), Math.max(...times), speed, realNow);
  }

  async info(): Promise<GetInfoResponse> {
    return this.info0;
  }

  /** The last snapshot taken at or before the clock. */
  async snapshot(): Promise<SnapshotResponse> {
    const now = this.clock.now();
    let best = this.snaps[0];
    for (const s of this.snaps) if (ms(s) <= now) best = s;
    if (!best || best.entry?.$case !== 'snapshot') throw new UserError('the recording has no snapshot.');
    return best.entry.value;
  }

  /** Stream messages as the clock reaches them; after a jump back, from there; open until cancelled. */
  watch(_request: Partial<WatchRequest>): AsyncIterable<WatchResponse> & { cancel(): void } {
    let cancelled = false;
    const gen = async function* (this: ReplaySource): AsyncGenerator<WatchResponse> {
      yield { response: { $case: 'status', value: { message: 'replaying a recording', ringEvents: 0, end: false } } };
      // What is at or before the clock when the stream opens is the past: see prime().
      let last = this.clock.now();
      let i = this.watches.findIndex((e) => ms(e) > last);
      while (!cancelled && !this.closed) {
        const now = this.clock.now();
        if (now < last) i = this.watches.findIndex((e) => ms(e) >= now); // jumped back
        if (i < 0) i = this.watches.length;
        last = now;
        while (i < this.watches.length && ms(this.watches[i]!) <= now) {
          const e = this.watches[i++]!;
          if (e.entry?.$case === 'watch') yield e.entry.value;
        }
        // At the end the stream stays open: the screen keeps the last moment, and a jump back replays.
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    return Object.assign(gen.call(this), { cancel: () => (cancelled = true) });
  }

  /**
   * Feeds what a live client would have received in the `lookbackMs` before
   * `atMs` (stream messages and snapshots, at their own times) to `sink`:
   * after a jump, the screen is built as if it had been watching all along.
   */
  prime(atMs: number, lookbackMs: number, sink: { watch(msg: WatchResponse, at: number): void; snapshot(s: SnapshotResponse, at: number): void }): void {
    const from = atMs - lookbackMs;
    const entries = [...this.watches, ...this.snaps].filter((e) => ms(e) > from && ms(e) <= atMs).sort((a, b) => ms(a) - ms(b));
    for (const e of entries) {
      if (e.entry?.$case === 'watch') sink.watch(e.entry.value, ms(e));
      else if (e.entry?.$case === 'snapshot') sink.snapshot(e.entry.value, ms(e));
    }
  }

  close(): void {
    this.closed = true;
  }
}
