/**
 * The agent's raw-record path against the typed one it replaces: for
 * hundreds of random ring records, the bytes encoded straight from the
 * records are the bytes the generated encoder writes for
 * eventToProto(decodeBatch(...)), the batch framed by hand decodes as the
 * generated WatchResponse, and the filters judged on raw fields pick exactly
 * the events the decoded-event filters pick.
 */
import { describe, expect, it } from 'vitest';
import { batchMessage, encodeEvents, EventEncoder, eventAt, pickEvents, serializeWatchResponse } from '../src/agent/encode.js';
import { compileFilters } from '../src/agent/filter.js';
import { Event, EventBatch, EventKind, TracerService, WatchResponse, type EventFilter } from '../src/generated/wstrace/v1/tracer.js';
import { decodeBatch } from '../src/kernel/decode.js';
import { AF_INET, AF_INET6, EVENT_LAYOUT, NO_REASON } from '../src/kernel/layout.js';
import { ReasonNames } from '../src/kernel/names.js';
import { RawBatch, type DecodeContext, type OwnerLookup } from '../src/kernel/raw.js';
import { KINDS } from '../src/signals/kinds.js';
import { eventToProto } from '../src/protocol/convert.js';

const O = EVENT_LAYOUT.offsets;

/** A small deterministic generator (mulberry32): the same records every run. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ctx: DecodeContext = {
  clockOffsetMs: 1_764_000_000_123.457,
  reasons: new ReasonNames(
    (name): Record<number, string> =>
      name === 'sk_rst_reason'
        ? { 0: 'SK_RST_REASON_NOT_SPECIFIED', 1: 'SK_RST_REASON_NO_SOCKET', 5: 'SK_RST_REASON_' }
        : { 2: 'SKB_DROP_REASON_NO_SOCKET', 40: 'SKB_DROP_REASON_TCP_LISTEN_OVERFLOW' },
  ),
};

/** Inode 11 and 12 are held (12 by a process with no comm), 13 by nobody. */
const owners: OwnerLookup = {
  lookup: (inode) => (inode === 11 ? { pid: 4242, comm: 'wsserver' } : inode === 12 ? { pid: 7, comm: '' } : undefined),
};

const V4 = [
  [127, 0, 0, 1],
  [10, 1, 2, 3],
  [0, 0, 0, 0],
  [255, 255, 255, 255],
];
const v6 = (...groups: number[]): number[] => groups.flatMap((g) => [g >> 8, g & 0xff]);
const V6 = [
  v6(0, 0, 0, 0, 0, 0, 0, 1), // ::1
  v6(0, 0, 0, 0, 0, 0, 0, 0), // ::
  v6(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1), // ::ffff:127.0.0.1
  v6(0xfe80, 0, 0, 0, 0, 0, 1, 2),
  v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1), // two zero runs: the first is compressed
  v6(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6), // none
];
/** Texts a filter may name: canonical ones, and forms no event prints (they must match nothing). */
const ADDR_TEXTS = [
  '127.0.0.1',
  '10.1.2.3',
  '0.0.0.0',
  '::1',
  '::ffff:127.0.0.1',
  'fe80::1:2',
  '2001:db8::1:0:0:1',
  '127.0.0.01',
  '::FFFF:127.0.0.1',
  '0:0:0:0:0:0:0:1',
  '2001:db8:0:0:1::1',
  '',
];
const PORTS = [0, 80, 8080, 40000, 65535];
const NETNS = [0, 4026531840, 4026532177];
const UNKNOWN_KIND = 200;

function randomRecord(r: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const b = Buffer.alloc(EVENT_LAYOUT.size);
  const family = r() < 0.03 ? 0 : r() < 0.5 ? AF_INET : AF_INET6;
  const addr = (): number[] =>
    family === AF_INET6 ? (r() < 0.2 ? Array.from({ length: 16 }, () => Math.floor(r() * 256)) : pick(V6)) : pick(V4);
  b.writeBigUInt64LE(BigInt(Math.floor(r() * 2 ** 56)), O.ts_ns);
  b.writeBigUInt64LE(BigInt(pick([0, 0, 11, 12, 13])), O.inode);
  Buffer.from(addr()).copy(b, O.laddr);
  Buffer.from(addr()).copy(b, O.raddr);
  b.writeUInt32LE(pick(NETNS), O.netns);
  b.writeUInt32LE(pick([NO_REASON, NO_REASON, 0, 1, 2, 3, 5, 40, 77]), O.reason);
  b.writeUInt32LE(pick([0, 1, 128, 4096, 2 ** 32 - 1]), O.queue);
  b.writeUInt32LE(pick([0, 1, 511, 65535]), O.backlog);
  b.writeUInt16LE(r() < 0.5 ? pick(PORTS) : Math.floor(r() * 65536), O.lport);
  b.writeUInt16LE(r() < 0.5 ? pick(PORTS) : Math.floor(r() * 65536), O.rport);
  b.writeUInt16LE(family, O.family);
  b.writeUInt8(r() < 0.03 ? UNKNOWN_KIND : pick(KINDS).code, O.kind);
  b.writeUInt8(pick([0, 1, 2, 5, 7, 10, 13, 99]), O.state);
  // cgroup ids: unknown, the root, small, and past 2^32 (inode numbers are 64-bit).
  b.writeBigUInt64LE(BigInt(pick([0, 0, 1, 4242, 2 ** 40 + 7])), O.cgroup);
  return b;
}

function randomBatch(seed: number, n: number): Buffer {
  const r = rng(seed);
  return Buffer.concat(Array.from({ length: n }, () => randomRecord(r)));
}

/** What the typed path sends for a batch: decoded, pid/comm looked up, converted. */
const typed = (batch: Buffer): Event[] => decodeBatch(batch, ctx, owners).map(eventToProto);

describe('events encoded from the raw records', () => {
  it('are byte for byte what the generated encoder writes for the typed path, for 600 random records', () => {
    const batch = randomBatch(1, 600);
    const expected = typed(batch);
    const { events, records } = new EventEncoder().encode(new RawBatch(batch, ctx, owners));
    expect(events.length).toBe(expected.length);
    // The random mix covers what can differ: unknown kinds skipped, IPv6, optional fields set and not, owners.
    expect(expected.length).toBeLessThan(600);
    expect(expected.some((e) => e.family === 2 && e.localAddr.includes('ffff'))).toBe(true);
    expect(expected.some((e) => e.queue !== undefined) && expected.some((e) => e.queue === undefined)).toBe(true);
    expect(expected.some((e) => e.pid === 4242 && e.comm === 'wsserver') && expected.some((e) => e.pid === 7 && e.comm === '')).toBe(true);
    expect(expected.some((e) => e.reason === 'NO_SOCKET') && expected.some((e) => e.state === 'STATE_99')).toBe(true);
    expect(expected.some((e) => e.cgroup === 2 ** 40 + 7) && expected.some((e) => e.cgroup === undefined)).toBe(true);
    for (let j = 0; j < expected.length; j++) {
      const element = events.bytes.subarray(events.offsets[j], events.offsets[j + 1]);
      expect(Buffer.from(element)).toEqual(Buffer.from(EventBatch.encode({ events: [expected[j]!] }).finish()));
      expect(eventAt(events, j)).toEqual(Event.decode(Event.encode(expected[j]!).finish()));
      expect(events.times[j]).toBe(expected[j]!.timeUnixMicros);
      expect(records[j]).toBeGreaterThanOrEqual(j);
    }
    expect(Buffer.from(events.bytes)).toEqual(Buffer.from(encodeEvents(expected).bytes));
  });

  it('a second batch through the same encoder (its caches warm) encodes the same way', () => {
    const enc = new EventEncoder();
    enc.encode(new RawBatch(randomBatch(2, 300), ctx, owners));
    const batch = randomBatch(3, 300);
    expect(Buffer.from(enc.encode(new RawBatch(batch, ctx, owners)).events.bytes)).toEqual(Buffer.from(encodeEvents(typed(batch)).bytes));
  });

  it('framed by hand into a batch message, decode as the generated WatchResponse of the same events', () => {
    const batch = randomBatch(4, 200);
    const expected = typed(batch);
    const { events } = new EventEncoder().encode(new RawBatch(batch, ctx, owners));
    // Split in uneven runs, as a stream's queue hands them over.
    const cut = [0, 3, 50, 51, expected.length];
    const parts = cut.slice(1).map((end, k) => events.bytes.subarray(events.offsets[cut[k]!], events.offsets[end]));
    const msg = batchMessage(parts);
    expect(msg).toEqual(Buffer.from(WatchResponse.encode({ response: { $case: 'batch', value: { events: expected } } }).finish()));
    expect(TracerService.watch.responseDeserialize(serializeWatchResponse(msg))).toEqual(
      WatchResponse.decode(WatchResponse.encode({ response: { $case: 'batch', value: { events: expected } } }).finish()),
    );
    // Messages that are not pre-encoded go through the generated serializer unchanged.
    const lost: WatchResponse = { response: { $case: 'lost', value: { count: 3, reason: 1 } } };
    expect(serializeWatchResponse(lost)).toEqual(TracerService.watch.responseSerialize(lost));
    // A stream's own copy of some events holds exactly those.
    const some = pickEvents(events, [1, 4, 9], 3);
    expect(Array.from({ length: 3 }, (_, j) => eventAt(some, j))).toEqual([1, 4, 9].map((i) => eventAt(events, i)));
  });
});

describe('Watch filters on raw records', () => {
  it('pick exactly the events the decoded-event filters pick, for random filters over 400 random records', () => {
    const batch = randomBatch(5, 400);
    const raw = new RawBatch(batch, ctx, owners);
    const { events, records } = new EventEncoder().encode(raw);
    const decoded = typed(batch);
    const r = rng(6);
    const some = <T>(xs: readonly T[], p: number): T[] => xs.filter(() => r() < p);
    const protos = KINDS.map((k) => k.proto as EventKind);
    const ports = PORTS.filter((p) => p > 0); // a filter may not name port 0
    const randomFilter = (): EventFilter => ({
      kinds: some(protos, 0.25),
      ports: some(ports, 0.15),
      localPorts: some(ports, 0.1),
      remotePorts: some(ports, 0.1),
      localAddrs: some(ADDR_TEXTS, 0.15),
      remoteAddrs: some(ADDR_TEXTS, 0.15),
      netns: some(NETNS.map(String), 0.2),
      cgroups: some(['1', '4242', String(2 ** 40 + 7)], 0.15),
    });
    let passed = 0;
    let judged = 0;
    const disagree: unknown[] = [];
    for (let k = 0; k < 300; k++) {
      const allow = Array.from({ length: Math.floor(r() * 3) }, randomFilter);
      const deny = Array.from({ length: Math.floor(r() * 2) }, randomFilter);
      const filter = compileFilters(allow, deny);
      for (let j = 0; j < events.length; j++) {
        const want = filter(decoded[j]!);
        if (filter.raw(raw, records[j]!) !== want) disagree.push({ allow, deny, event: decoded[j] });
        judged++;
        if (want) passed++;
      }
    }
    expect(disagree.slice(0, 3)).toEqual([]);
    // Neither all nor nothing: the filters did cut.
    expect(passed).toBeGreaterThan(judged * 0.05);
    expect(passed).toBeLessThan(judged * 0.95);
    expect(compileFilters([], []).all).toBe(true);
  });

  it('an address filter matches on the printed text, whatever the bytes look like', () => {
    const batch = randomBatch(7, 400);
    const raw = new RawBatch(batch, ctx, owners);
    const decoded = typed(batch);
    const { records } = new EventEncoder().encode(raw);
    for (const text of ADDR_TEXTS) {
      const filter = compileFilters([{ kinds: [], ports: [], localPorts: [], remotePorts: [], localAddrs: [text], remoteAddrs: [], netns: [], cgroups: [] }], []);
      const hits = decoded.flatMap((e, j) => (filter.raw(raw, records[j]!) ? [e.localAddr] : []));
      expect(hits.every((a) => a === text)).toBe(true);
      expect(hits.length).toBe(decoded.filter((e) => e.localAddr === text).length);
    }
  });
});
