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
import { recordsInMemory, type ReplayRecords } from './recording-index.js';

export class ReplayClock {
  private baseReal: number;
  private baseVirtual: number;
  private pausedAt: number | undefined;
  /** Where the latest jump landed: a stream that had gone past it replays from there. */
  landedAt: number;

  constructor(
    readonly startMs: number,
    readonly endMs: number,
    private speed = 1,
    private readonly realNow: () => number = Date.now,
  ) {
    this.baseReal = realNow();
    this.baseVirtual = startMs;
    this.landedAt = startMs;
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
    this.landedAt = t;
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

/** Stands in for a header lost to damage: the screen still draws, and says why the host is unknown. */
const UNKNOWN_INFO: GetInfoResponse = {
  version: '',
  kernel: '',
  hostname: 'unknown (recording header damaged)',
  hooks: [],
  blind: [],
  startTimeUnixMicros: 0,
  netns: '',
  ports: [],
  pid: 0,
  controlAllowed: false,
  eventBudget: 0,
};

export class ReplaySource implements EventSource {
  readonly clock: ReplayClock;
  private readonly info0: GetInfoResponse;
  private readonly records: ReplayRecords;
  private closed = false;

  /** `rec`: a recording indexed on disk (indexRecording), or one already in memory. */
  constructor(rec: ReplayRecords | ReadResult, speed = 1, realNow: () => number = Date.now) {
    this.records = 'entries' in rec ? recordsInMemory(rec) : rec;
    const { startMs, endMs } = this.records;
    if (startMs === undefined || endMs === undefined) {
      throw new UserError('the recording holds no readable record: it is empty, or damaged throughout.');
    }
    this.info0 = this.records.info ?? UNKNOWN_INFO;
    this.clock = new ReplayClock(startMs, endMs, speed, realNow);
  }

  async info(): Promise<GetInfoResponse> {
    return this.info0;
  }

  /** The last snapshot taken at or before the clock. */
  async snapshot(): Promise<SnapshotResponse> {
    const s = this.records.snapshotAt(this.clock.now());
    if (!s) throw new UserError('the recording has no snapshot.');
    return s;
  }

  /** Stream messages as the clock reaches them; after a jump back, from there; open until cancelled. */
  watch(_request: Partial<WatchRequest>): AsyncIterable<WatchResponse> & { cancel(): void } {
    let cancelled = false;
    const gen = async function* (this: ReplaySource): AsyncGenerator<WatchResponse> {
      yield { response: { $case: 'status', value: { message: 'replaying a recording', ringEvents: 0, end: false } } };
      // What is at or before the clock when the stream opens is the past: see prime().
      let last = this.clock.now();
      let landed = this.clock.landedAt;
      while (!cancelled && !this.closed) {
        const now = this.clock.now();
        // Jumped back: replay from where the jump landed, that moment included.
        const back = this.clock.landedAt !== landed && this.clock.landedAt < last;
        landed = this.clock.landedAt;
        for (const e of this.records.between(back ? landed : last, now, back)) {
          if (cancelled || this.closed) return;
          if (e.entry?.$case === 'watch') yield e.entry.value;
        }
        last = now;
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
    for (const e of this.records.between(atMs - lookbackMs, atMs)) {
      if (e.entry?.$case === 'watch') sink.watch(e.entry.value, ms(e));
      else if (e.entry?.$case === 'snapshot') sink.snapshot(e.entry.value, ms(e));
    }
  }

  close(): void {
    this.closed = true;
    this.records.close?.();
  }
}
