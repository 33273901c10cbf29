/**
 * Random access to a recording for the replay screen, in bounded memory: one
 * pass over the file notes where each block of records starts and the times
 * it spans, and where each snapshot is; the screen then reads back only the
 * blocks around the moment it shows. The same pass builds the report (the
 * replay's "worst second"), so the file is read through once.
 */
import { closeSync, openSync } from 'node:fs';
import type { RecordEntry } from '../generated/wstrace/v1/record.js';
import type { GetInfoResponse, SnapshotResponse } from '../generated/wstrace/v1/tracer.js';
import { UserError } from '../protocol/errors.js';
import { openRecording, readRangeSync, type Damage, type ReadResult } from './format.js';
import { ReportBuilder, type Report } from './report.js';

/** What the replay screen asks of a recording, whether on disk or in memory. */
export interface ReplayRecords {
  /** The agent's GetInfo from the header; undefined when the header was lost. */
  readonly info: GetInfoResponse | undefined;
  /** Time of the earliest and latest record, ms since the epoch; undefined when nothing was readable. */
  readonly startMs: number | undefined;
  readonly endMs: number | undefined;
  /** Records whose time is after `fromMs` (or at it, with `includeFrom`) and at or before `toMs`, in the order written. */
  between(fromMs: number, toMs: number, includeFrom?: boolean): Iterable<RecordEntry>;
  /** The last snapshot at or before `atMs`; the first one when none is. */
  snapshotAt(atMs: number): SnapshotResponse | undefined;
  close?(): void;
}

const ms = (e: RecordEntry) => e.timeUnixMicros / 1000;
const within = (t: number, from: number, to: number, includeFrom: boolean) => (t > from || (includeFrom && t === from)) && t <= to;

/** The snapshot at or before `atMs` in a time-sorted list: the index, or 0 when all are later. */
function lastAtOrBefore(times: ArrayLike<number>, n: number, atMs: number): number {
  let lo = 0;
  let hi = n - 1;
  let best = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid]! <= atMs) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

/** A recording already in memory (a small file, a test). */
export function recordsInMemory(rec: ReadResult): ReplayRecords {
  const header = rec.entries.find((e) => e.entry?.$case === 'header');
  const snaps = rec.entries.filter((e) => e.entry?.$case === 'snapshot').sort((a, b) => ms(a) - ms(b));
  const times = snaps.map(ms);
  const all = rec.entries.map(ms);
  return {
    info: header?.entry?.$case === 'header' ? header.entry.value.info : undefined,
    startMs: all.length ? Math.min(...all) : undefined,
    endMs: all.length ? Math.max(...all) : undefined,
    between: (from, to, includeFrom = false) => rec.entries.filter((e) => within(ms(e), from, to, includeFrom)),
    snapshotAt(atMs) {
      const s = snaps[lastAtOrBefore(times, times.length, atMs)];
      return s?.entry?.$case === 'snapshot' ? s.entry.value : undefined;
    },
  };
}

/** Records per block: small enough to decode on each look, large enough that a 2 GiB file has a few thousand. */
const BLOCK_BYTES = 256 << 10;

interface Block {
  readonly offset: number;
  end: number;
  minMs: number;
  maxMs: number;
}

/** A growable column of numbers: 8 bytes a row, not a JS object. */
class Column {
  data = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
}

export class RecordingIndex implements ReplayRecords {
  info: GetInfoResponse | undefined;
  startMs: number | undefined;
  endMs: number | undefined;
  damage: Damage = { skipped: 0, damagedBytes: 0, truncated: false };
  /** The report of the whole file, from the same pass. */
  report!: Report;
  private readonly blocks: Block[] = [];
  private snapTimes = new Column();
  private snapOffsets = new Column();
  private snapSizes = new Column();
  private fd = -1;
  /** The last blocks decoded: the screen looks at the same moment many times. */
  private cache: Array<{ offset: number; items: Array<{ ms: number; entry: RecordEntry }> }> = [];
  private snapCache: { i: number; snap: SnapshotResponse } | undefined;

  private constructor(readonly path: string) {}

  /** Reads the file through once; throws one sentence when it cannot be read or is not a recording. */
  static async build(path: string): Promise<RecordingIndex> {
    const file = await openRecording(path);
    const ix = new RecordingIndex(path);
    const report = new ReportBuilder();
    let inOrder = true;
    for await (const r of file.records()) {
      report.add(r.entry);
      const t = ms(r.entry);
      const e = r.entry.entry;
      if (e?.$case === 'header') ix.info ??= e.value.info;
      ix.startMs = Math.min(ix.startMs ?? t, t);
      ix.endMs = Math.max(ix.endMs ?? t, t);
      let b = ix.blocks.at(-1);
      if (!b || r.offset - b.offset >= BLOCK_BYTES) ix.blocks.push((b = { offset: r.offset, end: r.offset, minMs: t, maxMs: t }));
      b.end = r.offset + r.size;
      b.minMs = Math.min(b.minMs, t);
      b.maxMs = Math.max(b.maxMs, t);
      if (e?.$case === 'snapshot') {
        if (ix.snapTimes.length && t < ix.snapTimes.data[ix.snapTimes.length - 1]!) inOrder = false;
        ix.snapTimes.push(t);
        ix.snapOffsets.push(r.offset);
        ix.snapSizes.push(r.size);
      }
    }
    if (!inOrder) ix.sortSnapshots();
    ix.damage = file.damage;
    ix.report = report.finish(ix.damage);
    try {
      ix.fd = openSync(path, 'r');
    } catch (err) {
      throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
    }
    return ix;
  }

  /** A clock stepped back mid-recording leaves snapshots out of order: the screen wants them by time. */
  private sortSnapshots(): void {
    const n = this.snapTimes.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => this.snapTimes.data[a]! - this.snapTimes.data[b]!);
    const [t, o, s] = [new Column(), new Column(), new Column()];
    for (const i of order) {
      t.push(this.snapTimes.data[i]!);
      o.push(this.snapOffsets.data[i]!);
      s.push(this.snapSizes.data[i]!);
    }
    [this.snapTimes, this.snapOffsets, this.snapSizes] = [t, o, s];
  }

  private decodeBlock(b: Block): Array<{ ms: number; entry: RecordEntry }> {
    const hit = this.cache.find((c) => c.offset === b.offset);
    if (hit) return hit.items;
    const items: Array<{ ms: number; entry: RecordEntry }> = [];
    for (const r of readRangeSync(this.fd, b.offset, b.end)) items.push({ ms: ms(r.entry), entry: r.entry });
    this.cache = [{ offset: b.offset, items }, ...this.cache].slice(0, 2);
    return items;
  }

  *between(fromMs: number, toMs: number, includeFrom = false): Generator<RecordEntry> {
    for (const b of this.blocks) {
      if (b.maxMs < fromMs || b.minMs > toMs) continue;
      if (this.fd < 0) return;
      for (const x of this.decodeBlock(b)) if (within(x.ms, fromMs, toMs, includeFrom)) yield x.entry;
    }
  }

  snapshotAt(atMs: number): SnapshotResponse | undefined {
    const n = this.snapTimes.length;
    if (!n || this.fd < 0) return undefined;
    const i = lastAtOrBefore(this.snapTimes.data, n, atMs);
    if (this.snapCache?.i === i) return this.snapCache.snap;
    const off = this.snapOffsets.data[i]!;
    for (const r of readRangeSync(this.fd, off, off + this.snapSizes.data[i]!)) {
      if (r.entry.entry?.$case !== 'snapshot') continue;
      this.snapCache = { i, snap: r.entry.entry.value };
      return r.entry.entry.value;
    }
    return undefined;
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    this.cache = [];
  }
}

/** Indexes a recording for replay (and reports it) in one streamed pass. */
export function indexRecording(path: string): Promise<RecordingIndex> {
  return RecordingIndex.build(path);
}
