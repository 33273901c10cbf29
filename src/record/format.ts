/**
 * Recording files: a text preamble, then append-only records, each framed as
 *   magic "WSRC" (4 bytes) | length u32 LE | CRC-32 of payload u32 LE | payload
 * where the payload is a RecordEntry (proto/wstrace/v1/record.proto). A file
 * cut short (kill -9, power loss) reads up to its last whole record; a damaged
 * record is skipped by searching for the next magic, and counted.
 */
import { closeSync, fstatSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { RecordEntry } from '../generated/wstrace/v1/record.js';
import { UserError } from '../protocol/errors.js';

export const PREAMBLE = Buffer.from('WSTRACE-RECORDING 1\n');
const MAGIC = Buffer.from('WSRC');
const FRAME = 12;
/** No record is this big; a length beyond it is damage, not data. */
const MAX_RECORD = 64 << 20;

export function frame(entry: RecordEntry): Buffer {
  const payload = Buffer.from(RecordEntry.encode(entry).finish());
  const head = Buffer.alloc(FRAME);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(payload.length, 4);
  head.writeUInt32LE(crc32(payload), 8);
  return Buffer.concat([head, payload]);
}

export interface ReadResult {
  readonly entries: RecordEntry[];
  /** Damaged records skipped. */
  readonly skipped: number;
  /** The file ended inside a record (the recorder was stopped hard). */
  readonly truncated: boolean;
}

/** Reads every whole, intact record. Throws one sentence for a file that is not a recording. */
export function parseRecording(buf: Buffer, name = 'the file'): ReadResult {
  if (buf.length < PREAMBLE.length || !buf.subarray(0, PREAMBLE.length).equals(PREAMBLE)) {
    throw new UserError(`${name} is not a wstrace recording (it does not start with "${PREAMBLE.toString().trim()}").`);
  }
  const entries: RecordEntry[] = [];
  let skipped = 0;
  let truncated = false;
  let at = PREAMBLE.length;
  const resync = (from: number): number => {
    skipped++;
    const next = buf.indexOf(MAGIC, from + 1);
    return next < 0 ? buf.length : next;
  };
  while (at < buf.length) {
    if (buf.length - at < FRAME) {
      truncated = true;
      break;
    }
    if (!buf.subarray(at, at + 4).equals(MAGIC)) {
      at = resync(at);
      continue;
    }
    const len = buf.readUInt32LE(at + 4);
    if (len > MAX_RECORD) {
      at = resync(at);
      continue;
    }
    if (at + FRAME + len > buf.length) {
      // Either the tail was cut, or the length is damaged: look for a later record.
      const next = buf.indexOf(MAGIC, at + 1);
      if (next < 0) {
        truncated = true;
        break;
      }
      skipped++;
      at = next;
      continue;
    }
    const payload = buf.subarray(at + FRAME, at + FRAME + len);
    if (crc32(payload) !== buf.readUInt32LE(at + 8)) {
      at = resync(at);
      continue;
    }
    try {
      entries.push(RecordEntry.decode(payload));
      at += FRAME + len;
    } catch {
      at = resync(at);
    }
  }
  return { entries, skipped, truncated };
}

export function readRecording(path: string): ReadResult {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
  }
  return parseRecording(buf, path);
}

export interface WriterOptions {
  /** Bytes per file; at the cap the recording rotates or stops. */
  readonly maxSize?: number;
  /** Older parts kept as FILE.1 … FILE.N; 0 stops at the cap instead. */
  readonly rotate?: number;
  /** Written at the start of every part (the header, the latest snapshot). */
  readonly startOfPart?: (part: number) => RecordEntry[];
}

/** Appends whole records; one write call per record, so a hard stop leaves whole records only. */
export class RecordingWriter {
  private fd: number;
  private size = 0;
  private part = 0;
  stopped = false;

  constructor(
    readonly path: string,
    private readonly opts: WriterOptions = {},
  ) {
    this.fd = this.openPart();
  }

  private openPart(): number {
    let fd: number;
    try {
      fd = openSync(this.path, 'w', 0o600);
    } catch (err) {
      throw new UserError(`cannot write ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
    }
    writeSync(fd, PREAMBLE);
    this.size = PREAMBLE.length;
    for (const e of this.opts.startOfPart?.(this.part) ?? []) this.size += writeSync(fd, frame(e));
    return fd;
  }

  /** False once the size cap stopped the recording. */
  write(entry: RecordEntry): boolean {
    if (this.stopped) return false;
    const bytes = frame(entry);
    const cap = this.opts.maxSize ?? Infinity;
    if (this.size + bytes.length > cap) {
      if (!this.opts.rotate) {
        this.stopped = true;
        return false;
      }
      closeSync(this.fd);
      for (let i = this.opts.rotate; i >= 1; i--) {
        const from = i === 1 ? this.path : `${this.path}.${i - 1}`;
        try {
          if (i === this.opts.rotate) rmSync(`${this.path}.${i}`, { force: true });
          renameSync(from, `${this.path}.${i}`);
        } catch {
          // that part does not exist yet
        }
      }
      this.part++;
      this.fd = this.openPart();
    }
    this.size += writeSync(this.fd, bytes);
    return true;
  }

  get bytes(): number {
    return fstatSync(this.fd).size;
  }

  get partNumber(): number {
    return this.part;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
