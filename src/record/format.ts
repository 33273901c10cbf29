/**
 * Recording files: a text preamble, then append-only records, each framed as
 *   magic "WSRC" (4 bytes) | length u32 LE | CRC-32 of payload u32 LE | payload
 * where the payload is a RecordEntry (proto/wstrace/v1/record.proto). A file
 * cut short (kill -9, power loss) reads up to its last whole record; a damaged
 * record is skipped by searching for the next magic, and counted.
 *
 * Files are read in chunks, never whole: a recording can be larger than
 * memory (or than the 2 GiB a single Buffer holds), and a reader keeps at
 * most one chunk and one record.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { RecordEntry } from '../generated/wstrace/v1/record.js';
import { UserError } from '../protocol/errors.js';

export const PREAMBLE = Buffer.from('WSTRACE-RECORDING 1\n');
const MAGIC = Buffer.from('WSRC');
const FRAME = 12;
/** No record is this big; a length beyond it is damage, not data. */
export const MAX_RECORD = 64 << 20;
/** How much a reader asks the file for at a time. */
export const CHUNK = 1 << 20;

export function frame(entry: RecordEntry): Buffer {
  return framePayload(RecordEntry.encode(entry).finish());
}

/** A record around a payload that is already a RecordEntry's bytes. */
export function framePayload(payload: Uint8Array): Buffer {
  const head = Buffer.alloc(FRAME);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(payload.length, 4);
  head.writeUInt32LE(crc32(payload), 8);
  return Buffer.concat([head, payload]);
}

/** What a reader passed over instead of reading. */
export interface Damage {
  /** Damaged records skipped (each run of bytes between two good records counts once). */
  readonly skipped: number;
  /** Bytes in them. */
  readonly damagedBytes: number;
  /** The file ended inside a record (the recorder was stopped hard). */
  readonly truncated: boolean;
}

export interface ReadResult extends Damage {
  readonly entries: RecordEntry[];
}

/** One good record and where it sits in the file. */
export interface Found {
  readonly entry: RecordEntry;
  readonly offset: number;
  readonly size: number;
}

/**
 * A payload whose checksum agrees can still be garbage (a bad writer, or a
 * collision): a record that does not decode, or decodes to nothing a
 * recorder writes, is damage too.
 */
function decode(payload: Buffer): RecordEntry | undefined {
  try {
    const e = RecordEntry.decode(payload);
    if (!e.entry) return undefined;
    if (e.entry.$case === 'watch' && !e.entry.value.response) return undefined;
    return e;
  } catch {
    return undefined;
  }
}

const MORE = Symbol('more');
const END = Symbol('end');

/**
 * The framing rules over a byte stream fed in pieces: the same records and
 * the same damage whether the file comes in one buffer or in chunks.
 */
class Scanner implements Damage {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** File offset of buf[0]. */
  private base: number;
  private eof = false;
  /** Inside a damaged run whose end (the next marker) is not in the buffer yet. */
  private inDamage = false;
  skipped = 0;
  damagedBytes = 0;
  truncated = false;
  /** Bytes the scanner needs before it can say more. */
  wanted = CHUNK;

  constructor(offset: number) {
    this.base = offset;
  }

  get offset(): number {
    return this.base + this.pos;
  }

  push(chunk: Buffer): void {
    const rest = this.buf.subarray(this.pos);
    this.buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    this.base += this.pos;
    this.pos = 0;
  }

  end(): void {
    this.eof = true;
  }

  private damaged(bytes: number): void {
    if (!this.inDamage) this.skipped++;
    this.damagedBytes += bytes;
  }

  /** Drops bytes up to the next marker after pos; false when more input is needed to find it. */
  private skip(): boolean {
    const next = this.buf.indexOf(MAGIC, this.pos + 1);
    if (next >= 0) {
      this.damaged(next - this.pos);
      this.inDamage = false;
      this.pos = next;
      return true;
    }
    if (this.eof) {
      this.damaged(this.buf.length - this.pos);
      this.inDamage = false;
      this.pos = this.buf.length;
      return true;
    }
    // A marker may straddle the chunk boundary: keep its first three bytes.
    const keep = Math.max(this.pos, this.buf.length - (MAGIC.length - 1));
    this.damaged(keep - this.pos);
    this.inDamage = true;
    this.pos = keep;
    this.wanted = CHUNK;
    return false;
  }

  next(): Found | typeof MORE | typeof END {
    for (;;) {
      const avail = this.buf.length - this.pos;
      if (avail < FRAME) {
        if (!this.eof) {
          this.wanted = CHUNK;
          return MORE;
        }
        if (avail > 0) {
          if (this.inDamage) this.damaged(avail);
          else this.truncated = true;
          this.pos = this.buf.length;
        }
        return END;
      }
      const at = this.pos;
      if (this.buf.compare(MAGIC, 0, 4, at, at + 4) !== 0) {
        if (!this.skip()) return MORE;
        continue;
      }
      this.inDamage = false;
      const len = this.buf.readUInt32LE(at + 4);
      if (len > MAX_RECORD) {
        if (!this.skip()) return MORE;
        continue;
      }
      if (avail < FRAME + len) {
        if (!this.eof) {
          this.wanted = Math.max(CHUNK, FRAME + len - avail);
          return MORE;
        }
        // Either the tail was cut, or the length is damaged: look for a later record.
        if (this.buf.indexOf(MAGIC, at + 1) < 0) {
          this.truncated = true;
          this.pos = this.buf.length;
          return END;
        }
        this.skip();
        continue;
      }
      const payload = this.buf.subarray(at + FRAME, at + FRAME + len);
      const entry = crc32(payload) === this.buf.readUInt32LE(at + 8) ? decode(payload) : undefined;
      if (!entry) {
        if (!this.skip()) return MORE;
        continue;
      }
      this.pos = at + FRAME + len;
      return { entry, offset: this.base + at, size: FRAME + len };
    }
  }
}

function notRecording(name: string): UserError {
  return new UserError(`${name} is not a wstrace recording (it does not start with "${PREAMBLE.toString().trim()}").`);
}

function cannotRead(path: string, err: unknown): UserError {
  return new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
}

/** Reads every whole, intact record of a recording held in memory. Throws one sentence for one that is not a recording. */
export function parseRecording(buf: Buffer, name = 'the file'): ReadResult {
  if (buf.length < PREAMBLE.length || !buf.subarray(0, PREAMBLE.length).equals(PREAMBLE)) throw notRecording(name);
  const s = new Scanner(PREAMBLE.length);
  s.push(buf.subarray(PREAMBLE.length));
  s.end();
  const entries: RecordEntry[] = [];
  for (let r = s.next(); r !== END; r = s.next()) if (r !== MORE) entries.push(r.entry);
  return { entries, skipped: s.skipped, damagedBytes: s.damagedBytes, truncated: s.truncated };
}

/**
 * The records of a file from `from` to `to` (byte offsets), read in chunks
 * with blocking reads: for the replay screen, which asks for a few records
 * at a time, at known places.
 */
export function* readRangeSync(fd: number, from: number, to: number): Generator<Found, Damage> {
  const s = new Scanner(from);
  let at = from;
  for (;;) {
    const r = s.next();
    if (r === END) return s;
    if (r !== MORE) {
      yield r;
      continue;
    }
    const want = Math.min(s.wanted, to - at);
    if (want <= 0) {
      s.end();
      continue;
    }
    const chunk = Buffer.allocUnsafe(want);
    const n = readSync(fd, chunk, 0, want, at);
    if (n === 0) s.end();
    else s.push(chunk.subarray(0, n));
    at += n;
  }
}

/**
 * A recording file read front to back in chunks: iterate it for its
 * records; `damage` says what was passed over once the iteration ends.
 */
export class RecordingFile implements AsyncIterable<RecordEntry> {
  private scanner: Scanner | undefined;

  private constructor(readonly path: string) {}

  /** Checks that the file is a recording before anything reads it through. */
  static async open(path: string): Promise<RecordingFile> {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw cannotRead(path, err);
    }
    try {
      const head = Buffer.alloc(PREAMBLE.length);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      if (bytesRead < PREAMBLE.length || !head.equals(PREAMBLE)) throw notRecording(path);
    } catch (err) {
      throw err instanceof UserError ? err : cannotRead(path, err);
    } finally {
      await fh.close();
    }
    return new RecordingFile(path);
  }

  get damage(): Damage {
    const s = this.scanner;
    return { skipped: s?.skipped ?? 0, damagedBytes: s?.damagedBytes ?? 0, truncated: s?.truncated ?? false };
  }

  /** Every good record with its place in the file, in the order written. */
  async *records(): AsyncGenerator<Found> {
    let fh;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      throw cannotRead(this.path, err);
    }
    const s = (this.scanner = new Scanner(PREAMBLE.length));
    let at = PREAMBLE.length;
    try {
      for (;;) {
        const r = s.next();
        if (r === END) return;
        if (r !== MORE) {
          yield r;
          continue;
        }
        const chunk = Buffer.allocUnsafe(s.wanted);
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(chunk, 0, chunk.length, at));
        } catch (err) {
          throw cannotRead(this.path, err);
        }
        if (n === 0) s.end();
        else s.push(chunk.subarray(0, n));
        at += n;
      }
    } finally {
      await fh.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordEntry> {
    for await (const r of this.records()) yield r.entry;
  }
}

/** Opens a recording for streaming; throws one sentence when it cannot be read or is not a recording. */
export function openRecording(path: string): Promise<RecordingFile> {
  return RecordingFile.open(path);
}

/**
 * A whole recording in memory, for small files and tests; the commands
 * stream with openRecording or indexRecording instead.
 */
export function readRecording(path: string): ReadResult {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw cannotRead(path, err);
  }
  try {
    const head = Buffer.alloc(PREAMBLE.length);
    if (readSync(fd, head, 0, head.length, 0) < PREAMBLE.length || !head.equals(PREAMBLE)) throw notRecording(path);
    const entries: RecordEntry[] = [];
    const it = readRangeSync(fd, PREAMBLE.length, Infinity);
    for (;;) {
      const r = it.next();
      if (r.done) return { entries, ...damageOf(r.value) };
      entries.push(r.value.entry);
    }
  } finally {
    closeSync(fd);
  }
}

function damageOf(d: Damage): Damage {
  return { skipped: d.skipped, damagedBytes: d.damagedBytes, truncated: d.truncated };
}

/** One sentence for a person about what could not be read, or undefined when everything could. */
export function describeDamage(name: string, d: Damage, headerLost = false): string | undefined {
  const parts: string[] = [];
  if (d.skipped) parts.push(`${d.skipped} damaged record${d.skipped === 1 ? '' : 's'} (${d.damagedBytes} bytes) skipped`);
  if (headerLost) parts.push('its header is lost, so host and kernel are unknown');
  if (d.truncated) parts.push('it ends mid-record (the recorder was stopped hard)');
  return parts.length ? `${name}: ${parts.join('; ')}; everything else was read.` : undefined;
}
