/**
 * Just enough of the classic pcap format to join a pre-trigger capture with
 * the capture that followed: one global header, then records in time order.
 */
import { readFileSync } from 'node:fs';

const GLOBAL_HEADER = 24;
const RECORD_HEADER = 16;

export interface PcapRecords {
  /** The 24-byte global header (magic, version, snaplen, link type). */
  readonly header: Buffer;
  /** Each record (header and data) with its time in microseconds. */
  readonly records: Array<{ readonly timeUs: number; readonly bytes: Buffer }>;
}

export function readPcap(path: string): PcapRecords | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return undefined;
  }
  if (buf.length < GLOBAL_HEADER) return undefined;
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nanos = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  if (!le && magic !== 0xd4c3b2a1 && magic !== 0x4d3cb2a1) return undefined;
  const u32 = (at: number) => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const records: PcapRecords['records'] = [];
  let at = GLOBAL_HEADER;
  // A capture still being written may end in a partial record: stop there.
  while (at + RECORD_HEADER <= buf.length) {
    const incl = u32(at + 8);
    if (at + RECORD_HEADER + incl > buf.length) break;
    const frac = u32(at + 4);
    records.push({ timeUs: u32(at) * 1e6 + (nanos ? Math.floor(frac / 1000) : frac), bytes: buf.subarray(at, at + RECORD_HEADER + incl) });
    at += RECORD_HEADER + incl;
  }
  return { header: buf.subarray(0, GLOBAL_HEADER), records };
}

/** One pcap from several of the same link type: records before `untilUs` from the first group, then all of `main`. */
export function joinPcaps(pre: PcapRecords[], untilUs: number, main: PcapRecords): Buffer {
  const before = pre
    .flatMap((p) => p.records)
    .filter((r) => r.timeUs < untilUs)
    .sort((a, b) => a.timeUs - b.timeUs);
  const firstMain = main.records[0]?.timeUs ?? Infinity;
  return Buffer.concat([main.header, ...before.filter((r) => r.timeUs < firstMain).map((r) => r.bytes), ...main.records.map((r) => r.bytes)]);
}
