/**
 * Writes a recording in parts of bounded size, like a rotated log: at the
 * cap the file becomes FILE.1 (FILE.1 becomes FILE.2, …) and a new part
 * starts with its own header and latest snapshot, so each part reads on its
 * own. A write error (a full disk, an I/O error) stops the writer, never the
 * process: what was written stays whole, and the writer says what it kept.
 */
import { closeSync, ftruncateSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { RecordEntry } from '../generated/wstrace/v1/record.js';
import { UserError } from '../protocol/errors.js';
import { frame, PREAMBLE } from './format.js';

const MiB = 1 << 20;
/** A part: large enough for minutes of a busy host, small enough to copy off it. */
export const DEFAULT_PART_BYTES = 100 * MiB;
/** Older parts kept besides the current one: 1 GiB of disk at most by default. */
export const DEFAULT_OLDER_PARTS = 9;
/**
 * The smallest part: a header and a snapshot take a few KiB on a quiet host
 * and more with many listeners; below this a part would hold little else.
 */
export const MIN_PART_BYTES = MiB;
/** 1 TiB: a cap above this is no cap. */
export const MAX_PART_BYTES = 1024 * 1024 * MiB;
export const MAX_OLDER_PARTS = 1000;

export interface WriterOptions {
  /** Bytes per part, header and snapshot included (DEFAULT_PART_BYTES when absent). */
  readonly maxSize?: number;
  /** Older parts kept as FILE.1 … FILE.N (DEFAULT_OLDER_PARTS when absent); 0 stops at the cap instead. */
  readonly rotate?: number;
  /** Written at the start of every part (the header, the latest snapshot). */
  readonly startOfPart?: (part: number) => RecordEntry[];
}

/** What a stopped or failed writer leaves on disk. */
export interface Kept {
  /** Newest first: FILE, FILE.1, … */
  readonly files: string[];
  readonly bytes: number;
  readonly records: number;
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

/** Appends whole records; one write per record, so a hard stop leaves whole records only. */
export class RecordingWriter {
  private fd = -1;
  private size = 0;
  private records = 0;
  private part = 0;
  /** Bytes and records of the older parts still on disk, newest first. */
  private older: Array<{ bytes: number; records: number }> = [];
  private readonly cap: number;
  private readonly keepOlder: number;
  private fail: ((err: Error) => void) | undefined;
  /** True once the writer stopped: at the cap without rotation, or on a write error. */
  stopped = false;
  /** The write error that stopped the writer, as one sentence that says what was kept. */
  failure: Error | undefined;
  /** Resolves (never rejects) when a write error stops the writer. */
  readonly failed: Promise<Error>;

  constructor(
    readonly path: string,
    private readonly opts: WriterOptions = {},
  ) {
    this.cap = opts.maxSize ?? DEFAULT_PART_BYTES;
    this.keepOlder = opts.rotate ?? DEFAULT_OLDER_PARTS;
    this.failed = new Promise((resolve) => (this.fail = resolve));
    const start = this.startFrames();
    if (start.bytes > this.cap) {
      throw new UserError(
        `a part of ${this.cap} bytes cannot hold the recording's header and first snapshot (${start.bytes} bytes); give --max-size at least ${Math.max(MIN_PART_BYTES, start.bytes)}.`,
      );
    }
    try {
      this.openPart(start.frames);
    } catch (err) {
      this.close();
      throw new UserError(`cannot write ${this.path}: ${errText(err)}.`);
    }
  }

  private startFrames(): { frames: Buffer[]; bytes: number } {
    const frames = [PREAMBLE, ...(this.opts.startOfPart?.(this.part) ?? []).map(frame)];
    return { frames, bytes: frames.reduce((n, b) => n + b.length, 0) };
  }

  /** `frames` starts with the preamble, which is no record. */
  private openPart(frames: Buffer[]): void {
    this.fd = openSync(this.path, 'w', 0o600);
    frames.forEach((b, i) => this.append(b, i > 0 ? 1 : 0));
  }

  /** Writes all of `b` or throws; a short write is retried, as write(2) allows. Size counts whole frames only. */
  private append(b: Buffer, records = 1): void {
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done);
    this.size += b.length;
    this.records += records;
  }

  private rotateParts(): void {
    closeSync(this.fd);
    this.fd = -1;
    for (let i = this.keepOlder; i >= 1; i--) {
      const from = i === 1 ? this.path : `${this.path}.${i - 1}`;
      if (i === this.keepOlder) rmSync(`${this.path}.${i}`, { force: true });
      try {
        renameSync(from, `${this.path}.${i}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    this.older.unshift({ bytes: this.size, records: this.records });
    this.older.length = Math.min(this.older.length, this.keepOlder);
    this.size = 0;
    this.records = 0;
    this.part++;
  }

  /** False once the writer has stopped (see `stopped` and `failure`). */
  write(entry: RecordEntry): boolean {
    return this.stopped ? false : this.writeRecord(frame(entry));
  }

  /** A whole record already framed (format.ts framePayload); false once the writer has stopped. */
  writeRecord(bytes: Buffer): boolean {
    if (this.stopped) return false;
    try {
      if (this.size + bytes.length > this.cap) {
        if (!this.keepOlder) {
          this.stopped = true;
          return false;
        }
        this.rotateParts();
        this.openPart(this.startFrames().frames);
        if (this.size + bytes.length > this.cap) {
          throw new Error(`a record of ${bytes.length} bytes does not fit in a part of ${this.cap} bytes after its header and snapshot`);
        }
      }
      this.append(bytes);
      return true;
    } catch (err) {
      this.stopWith(err);
      return false;
    }
  }

  private stopWith(err: unknown): void {
    this.stopped = true;
    if (this.fd >= 0) {
      // A torn record at the end would read as damage: cut back to the last whole one.
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        // the reader treats a torn tail as the end anyway
      }
    }
    const k = this.kept();
    const files = k.files.join(', ');
    this.failure = new Error(
      `writing ${this.path} failed (${errText(err)}); recording stopped, keeping ${files} (${k.bytes} bytes, ${k.records} records).`,
    );
    this.close();
    this.fail?.(this.failure);
  }

  /** The files this writer leaves, their bytes and records. */
  kept(): Kept {
    const files = this.size > 0 ? [this.path] : [];
    let bytes = this.size;
    let records = this.records;
    this.older.forEach((p, i) => {
      files.push(`${this.path}.${i + 1}`);
      bytes += p.bytes;
      records += p.records;
    });
    return { files, bytes, records };
  }

  /** Bytes in the current part. */
  get bytes(): number {
    return this.size;
  }

  get partNumber(): number {
    return this.part;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = -1;
  }
}
