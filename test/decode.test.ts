/** Decoding without a kernel: records and map entries built by hand from the layout. */
import { describe, expect, it } from 'vitest';
import { formatAddr } from '../src/kernel/addr.js';
import type { Binding, NativeOpenOptions } from '../src/kernel/binding.js';
import { decodeBatch, decodeCounters, decodeSummaries } from '../src/kernel/decode.js';
import { canLoadBpf, NEEDS_PRIVILEGE } from '../src/kernel/errors.js';
import { UserError } from '../src/protocol/errors.js';
import {
  AF_INET,
  AF_INET6,
  COUNTER_COUNT,
  COUNTER_INDEX,
  EVENT_LAYOUT,
  KIND_CODE,
  LISTENER_KEY_LAYOUT,
  LISTENER_VALUE_LAYOUT,
  NO_REASON,
  RESET_KEY_LAYOUT,
  SUMMARY_KEY_LAYOUT,
  SUMMARY_VALUE_LAYOUT,
} from '../src/kernel/layout.js';
import { ReasonNames } from '../src/kernel/names.js';
import { openTracer } from '../src/kernel/tracer.js';
import { humanLine, isoMicros, toJsonEvent } from '../src/cli/format.js';

const O = EVENT_LAYOUT.offsets;
const reasons = new ReasonNames(
  (name): Record<number, string> =>
    name === 'sk_rst_reason' ? { 1: 'SK_RST_REASON_NO_SOCKET' } : { 40: 'SKB_DROP_REASON_TCP_LISTEN_OVERFLOW' },
);

interface Rec {
  kind: number;
  family: number;
  laddr: number[];
  raddr: number[];
  lport: number;
  rport: number;
  tsNs?: bigint;
  reason?: number;
  state?: number;
  queue?: number;
  backlog?: number;
  inode?: number;
  netns?: number;
}

function record(r: Rec): Buffer {
  const b = Buffer.alloc(EVENT_LAYOUT.size);
  b.writeBigUInt64LE(r.tsNs ?? 5_000_000_000n, O.ts_ns);
  b.writeBigUInt64LE(BigInt(r.inode ?? 0), O.inode);
  Buffer.from(r.laddr).copy(b, O.laddr);
  Buffer.from(r.raddr).copy(b, O.raddr);
  b.writeUInt32LE(r.netns ?? 4026531840, O.netns);
  b.writeUInt32LE(r.reason ?? NO_REASON, O.reason);
  b.writeUInt32LE(r.queue ?? 0, O.queue);
  b.writeUInt32LE(r.backlog ?? 0, O.backlog);
  b.writeUInt16LE(r.lport, O.lport);
  b.writeUInt16LE(r.rport, O.rport);
  b.writeUInt16LE(r.family, O.family);
  b.writeUInt8(r.kind, O.kind);
  b.writeUInt8(r.state ?? 0, O.state);
  return b;
}

const lo4 = [127, 0, 0, 1];
const lo6 = [...Array(15).fill(0), 1];

interface Row {
  kind: number;
  family: number;
  laddr: number[];
  raddr: number[];
  lport: number;
  rport: number;
  netns?: number;
  reason?: number;
  state?: number;
  count: bigint;
  firstNs: bigint;
  lastNs: bigint;
}

/** Summary rows as the addon's drainSummaries() hands them over: keys and values back to back. */
function summaries(rows: Row[]): { rows: number; keys: Buffer; values: Buffer } {
  const K = SUMMARY_KEY_LAYOUT.offsets;
  const V = SUMMARY_VALUE_LAYOUT.offsets;
  const keys = Buffer.alloc(rows.length * SUMMARY_KEY_LAYOUT.size);
  const values = Buffer.alloc(rows.length * SUMMARY_VALUE_LAYOUT.size);
  rows.forEach((r, i) => {
    const k = i * SUMMARY_KEY_LAYOUT.size;
    const v = i * SUMMARY_VALUE_LAYOUT.size;
    Buffer.from(r.laddr).copy(keys, k + K.laddr);
    Buffer.from(r.raddr).copy(keys, k + K.raddr);
    keys.writeUInt32LE(r.netns ?? 4026531840, k + K.netns);
    keys.writeUInt32LE(r.reason ?? NO_REASON, k + K.reason);
    keys.writeUInt16LE(r.lport, k + K.lport);
    keys.writeUInt16LE(r.rport, k + K.rport);
    keys.writeUInt16LE(r.family, k + K.family);
    keys.writeUInt8(r.kind, k + K.kind);
    keys.writeUInt8(r.state ?? 0, k + K.state);
    values.writeBigUInt64LE(r.count, v + V.count);
    values.writeBigUInt64LE(r.firstNs, v + V.first_ns);
    values.writeBigUInt64LE(r.lastNs, v + V.last_ns);
  });
  return { rows: rows.length, keys, values };
}

describe('decodeBatch', () => {
  it('decodes a batch of records with names and wall-clock time', () => {
    const batch = Buffer.concat([
      record({ kind: KIND_CODE.reset_sent, family: AF_INET, laddr: lo4, raddr: lo4, lport: 80, rport: 40000, reason: 1 }),
      record({
        kind: KIND_CODE.accept_queue_full,
        family: AF_INET6,
        laddr: lo6,
        raddr: lo6,
        lport: 8080,
        rport: 50000,
        state: 10,
        queue: 2,
        backlog: 1,
        inode: 12345,
      }),
      record({ kind: KIND_CODE.listen_overflow, family: AF_INET, laddr: lo4, raddr: lo4, lport: 1, rport: 2, reason: 40 }),
      Buffer.alloc(10), // a torn tail is ignored
    ]);
    const evs = decodeBatch(batch, { clockOffsetMs: 1_000, reasons });
    expect(evs).toHaveLength(3);
    expect(evs[0]).toEqual({
      timeMs: 6_000,
      kind: 'reset_sent',
      family: 'ipv4',
      laddr: '127.0.0.1',
      lport: 80,
      raddr: '127.0.0.1',
      rport: 40000,
      netns: 4026531840,
      reason: 'NO_SOCKET',
    });
    expect(evs[1]).toMatchObject({ kind: 'accept_queue_full', family: 'ipv6', laddr: '::1', state: 'LISTEN', queue: 2, backlog: 1, inode: 12345 });
    expect(evs[1]!.reason).toBeUndefined();
    expect(evs[2]!.reason).toBe('TCP_LISTEN_OVERFLOW');
  });

  it('keeps 64-bit timestamps past 2^53 ns to the microsecond', () => {
    const ts = 2n ** 60n + 123_456_789n;
    const [ev] = decodeBatch(record({ kind: 1, family: AF_INET, laddr: lo4, raddr: lo4, lport: 1, rport: 1, tsNs: ts }), {
      clockOffsetMs: 0,
      reasons,
    });
    expect(Math.abs(ev!.timeMs - Number(ts / 1000n) / 1000)).toBeLessThan(0.001 * 2 ** 8);
  });

  it('names an unknown reason by number rather than guessing', () => {
    const [ev] = decodeBatch(record({ kind: 1, family: AF_INET, laddr: lo4, raddr: lo4, lport: 1, rport: 1, reason: 99 }), {
      clockOffsetMs: 0,
      reasons,
    });
    expect(ev!.reason).toBe('SK_RST_REASON_99');
  });
});

describe('decodeSummaries', () => {
  it('decodes summary rows as events are decoded: names, folded ports, wall-clock first and last', () => {
    const raw = summaries([
      { kind: KIND_CODE.reset_sent, family: AF_INET, laddr: lo4, raddr: [10, 0, 0, 9], lport: 9, rport: 0, reason: 1, count: 2n ** 40n, firstNs: 5_000_000_000n, lastNs: 7_500_000_000n },
      { kind: KIND_CODE.timewait, family: AF_INET6, laddr: lo6, raddr: lo6, lport: 0, rport: 8081, state: 5, count: 3n, firstNs: 1_000_000n, lastNs: 2_000_000n, netns: 7 },
      { kind: 200, family: AF_INET, laddr: lo4, raddr: lo4, lport: 1, rport: 0, count: 1n, firstNs: 0n, lastNs: 0n },
    ]);
    const rows = decodeSummaries(raw, { clockOffsetMs: 1_000, reasons });
    // A kind this build does not know (a newer BPF object) is skipped, not misnamed.
    expect(rows).toEqual([
      { kind: 'reset_sent', family: 'ipv4', laddr: '127.0.0.1', lport: 9, raddr: '10.0.0.9', rport: 0, netns: 4026531840, reason: 'NO_SOCKET', count: 2 ** 40, firstMs: 6_000, lastMs: 8_500 },
      { kind: 'timewait', family: 'ipv6', laddr: '::1', lport: 0, raddr: '::1', rport: 8081, netns: 7, state: 'FIN_WAIT2', count: 3, firstMs: 1_001, lastMs: 1_002 },
    ]);
  });

  it('decodes an empty drain', () => {
    expect(decodeSummaries({ rows: 0, keys: Buffer.alloc(0), values: Buffer.alloc(0) }, { clockOffsetMs: 0, reasons })).toEqual([]);
  });
});

describe('formatAddr', () => {
  it.each([
    [[10, 1, 2, 3], AF_INET, '10.1.2.3'],
    [lo6, AF_INET6, '::1'],
    [[...Array(10).fill(0), 0xff, 0xff, 192, 168, 0, 9], AF_INET6, '::ffff:192.168.0.9'],
    [[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], AF_INET6, '2001:db8::1:0:0:1'],
    [[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], AF_INET6, '2001:db8:1:1:1:1:1:1'],
    [Array(16).fill(0), AF_INET6, '::'],
  ])('%j family %i → %s', (bytes, family, text) => {
    const b = Buffer.alloc(16);
    Buffer.from(bytes).copy(b);
    expect(formatAddr(b, 0, family)).toBe(text);
  });
});

describe('decodeCounters', () => {
  it('decodes totals and keyed map entries', () => {
    const lk = Buffer.alloc(LISTENER_KEY_LAYOUT.size);
    Buffer.from(lo4).copy(lk, LISTENER_KEY_LAYOUT.offsets.addr);
    lk.writeUInt32LE(7, LISTENER_KEY_LAYOUT.offsets.netns);
    lk.writeUInt16LE(8080, LISTENER_KEY_LAYOUT.offsets.port);
    lk.writeUInt16LE(AF_INET, LISTENER_KEY_LAYOUT.offsets.family);
    const lv = Buffer.alloc(LISTENER_VALUE_LAYOUT.size);
    lv.writeBigUInt64LE(10n, LISTENER_VALUE_LAYOUT.offsets.enqueued);
    lv.writeBigUInt64LE(3n, LISTENER_VALUE_LAYOUT.offsets.full_hits);
    lv.writeBigUInt64LE(2n, LISTENER_VALUE_LAYOUT.offsets.overflows);
    lv.writeUInt32LE(5, LISTENER_VALUE_LAYOUT.offsets.peak);
    lv.writeUInt32LE(4, LISTENER_VALUE_LAYOUT.offsets.backlog);
    const rk = Buffer.alloc(RESET_KEY_LAYOUT.size);
    rk.writeUInt32LE(7, RESET_KEY_LAYOUT.offsets.netns);
    rk.writeUInt32LE(1, RESET_KEY_LAYOUT.offsets.reason);
    rk.writeUInt16LE(80, RESET_KEY_LAYOUT.offsets.lport);
    rk.writeUInt8(KIND_CODE.reset_sent, RESET_KEY_LAYOUT.offsets.kind);
    const rv = Buffer.alloc(8);
    rv.writeBigUInt64LE(2n ** 40n);
    // Each slot of the per-CPU array reads back under its own name.
    const totals = Array<number>(COUNTER_COUNT).fill(0);
    totals[COUNTER_INDEX.resetReceived] = 10;
    totals[COUNTER_INDEX.ringDrops] = 60;
    totals[COUNTER_INDEX.events] = 80;
    const c = decodeCounters({ totals, listeners: [[lk, lv]], resets: [[rk, rv]], timewaits: [] }, reasons);
    expect(c.totals).toMatchObject({ resetSent: 0, resetReceived: 10, ringDrops: 60, events: 80 });
    expect(c.listeners[0]).toMatchObject({ addr: '127.0.0.1', port: 8080, netns: 7, enqueued: 10, fullHits: 3, overflows: 2, peak: 5, backlog: 4 });
    expect(c.resets[0]).toEqual({ direction: 'sent', netns: 7, lport: 80, reason: 'NO_SOCKET', count: 2 ** 40 });
  });

  it("a namespace's row with no family and port 0 is its unattributed drops; a listener's row is not", () => {
    const uk = Buffer.alloc(LISTENER_KEY_LAYOUT.size);
    uk.writeUInt32LE(7, LISTENER_KEY_LAYOUT.offsets.netns);
    const uv = Buffer.alloc(LISTENER_VALUE_LAYOUT.size);
    uv.writeBigUInt64LE(3n, LISTENER_VALUE_LAYOUT.offsets.overflows);
    uv.writeBigUInt64LE(2n, LISTENER_VALUE_LAYOUT.offsets.syn_drops + 24);
    const lk = Buffer.alloc(LISTENER_KEY_LAYOUT.size);
    lk.writeUInt32LE(7, LISTENER_KEY_LAYOUT.offsets.netns);
    lk.writeUInt16LE(8080, LISTENER_KEY_LAYOUT.offsets.port);
    lk.writeUInt16LE(AF_INET, LISTENER_KEY_LAYOUT.offsets.family);
    const totals = Array<number>(COUNTER_COUNT).fill(0);
    const c = decodeCounters({ totals, listeners: [[uk, uv], [lk, Buffer.alloc(LISTENER_VALUE_LAYOUT.size)]], resets: [], timewaits: [] }, reasons);
    expect(c.listeners[0]).toMatchObject({ unattributed: true, addr: '', port: 0, netns: 7, overflows: 3, synDrops: { other: 2 } });
    expect(c.listeners[1]!.unattributed).toBeUndefined();
  });

  it('refuses a totals array of the wrong length', () => {
    expect(() => decodeCounters({ totals: [1], listeners: [], resets: [], timewaits: [] }, reasons)).toThrow(`counter array has 1 entries, expected ${COUNTER_COUNT}`);
  });
});

describe('Tracer on a fake binding', () => {
  function fake(overrides: Partial<Binding> = {}): {
    binding: Binding;
    opened: NativeOpenOptions[];
    closed: number[];
    kept: number[][];
    drains: string[];
  } {
    const opened: NativeOpenOptions[] = [];
    const closed: number[] = [];
    const kept: number[][] = [];
    const drains: string[] = [];
    const binding: Binding = {
      open(o) {
        opened.push(o);
        return {
          hooks: () => [
            { signal: 'reset_sent', name: 'tcp_send_reset', variant: 'raw_tp', attached: true, error: '' },
            { signal: 'syn_drop', name: 'tcp_conn_request', variant: '', attached: false, error: 'fentry: load failed' },
          ],
          counters: () => ({ totals: Array(COUNTER_COUNT).fill(0), listeners: [], resets: [], timewaits: [], residency: [], hits: [] }),
          flush: () => o.onBatch(record({ kind: 1, family: AF_INET, laddr: lo4, raddr: lo4, lport: 9, rport: 1 })),
          programIds: () => [1, 2],
          skippedRuns: () => 3,
          routeState: () => ({ lost: 0, stale: 0, twinSkips: 0 }),
          keepPorts: (ports) => kept.push(ports),
          drainSummaries: async () => {
            // A second drain must not start before the first has ended.
            drains.push('start');
            await new Promise((resolve) => setImmediate(resolve));
            drains.push('end');
            const row = { kind: KIND_CODE.reset_received, family: AF_INET, laddr: lo4, raddr: lo4, lport: 0, rport: 80, state: 2 };
            return summaries([{ ...row, count: 5n, firstNs: 1_000_000_000n, lastNs: 2_000_000_000n }]);
          },
          close: () => closed.push(1),
        };
      },
      layout: () => ({}),
      enumNames: () => ({}),
      clockOffsetNs: () => 0n,
      dumpSockets: async () => ({ listeners: [], timewait: [], timewaitTotal: 0 }),
      readFilesInNetns: async () => [],
      loadBlocker: () => undefined,
      ...overrides,
    };
    return { binding, opened, closed, kept, drains };
  }

  it('passes filters down, reports hooks, delivers decoded batches, closes once', async () => {
    const { binding, opened, closed } = fake();
    const t = await openTracer({ binding, ports: [80, 443], ringBytes: 8192 });
    expect(opened[0]).toMatchObject({ ports: [80, 443], netns: 0, ringBytes: 8192, fullEventIntervalNs: 100_000_000 });
    expect(t.hooks).toEqual([
      { hook: 'tcp_send_reset', signal: 'reset_sent', variant: 'raw_tp', attached: true },
      { hook: 'tcp_conn_request', signal: 'syn_drop', variant: '', attached: false, error: 'fentry: load failed' },
    ]);
    const got: string[] = [];
    t.subscribe((evs) => got.push(...evs.map((e) => `${e.kind}:${e.lport}`)));
    t.flush();
    expect(got).toEqual(['reset_sent:9']);
    expect(t.skippedRuns()).toBe(3);
    t.close();
    t.close();
    expect(closed).toEqual([1]);
    expect(() => t.counters()).toThrow(/closed/);
  });

  it('turns EPERM from the kernel into the one-sentence privilege error', async () => {
    const { binding } = fake({
      open: () => {
        throw Object.assign(new Error('failed to load BPF programs: Operation not permitted'), { errno: 1 });
      },
    });
    await expect(openTracer({ binding })).rejects.toThrow(new UserError(NEEDS_PRIVILEGE));
  });

  it("refuses with the binding's own sentence before anything loads", async () => {
    const { binding, opened } = fake({ loadBlocker: () => NEEDS_PRIVILEGE });
    await expect(openTracer({ binding })).rejects.toThrow(new UserError(NEEDS_PRIVILEGE));
    expect(opened).toEqual([]);
  });

  it("folds with the traced namespace's port range, read through the binding, and keeps its listeners' ports", async () => {
    const asked: Array<[string, string[]]> = [];
    const { binding, opened, kept } = fake({
      readFilesInNetns: async (ns, paths) => {
        asked.push([ns, paths]);
        return ['20000\t29999\n'];
      },
      dumpSockets: async () => ({
        listeners: [{ family: 'ipv4', addr: '127.0.0.1', port: 20007, queue: 0, backlog: 5, inode: 1, uid: 0 }],
        timewait: [],
        timewaitTotal: 0,
      }),
    });
    const t = await openTracer({ binding, netns: '/proc/self/ns/net' });
    expect(asked).toEqual([['/proc/self/ns/net', ['/proc/sys/net/ipv4/ip_local_port_range']]]);
    expect(opened[0]?.ephemeralPorts).toEqual([20000, 29999]);
    expect(kept).toEqual([[20007]]);
    t.close();
  });

  it('sends the event budget down: 10,000/s unless told, 0 for every event', async () => {
    const { binding, opened } = fake();
    const a = await openTracer({ binding });
    const b = await openTracer({ binding, eventBudget: 0 });
    expect(opened.map((o) => o.eventBudget)).toEqual([10_000, 0]);
    expect([a.eventBudget, b.eventBudget]).toEqual([10_000, 0]);
    a.close();
    b.close();
  });

  it.each([-1, 1.5, 2e9, Number.NaN])('refuses the event budget %d with a plain sentence', async (eventBudget) => {
    const { binding, opened } = fake();
    await expect(openTracer({ binding, eventBudget })).rejects.toThrow(
      new UserError('the event budget must be a whole number of events per second from 0 (no budget) to 1000000000.'),
    );
    expect(opened).toEqual([]);
  });

  it('drains summaries decoded, one drain at a time, and not once closed', async () => {
    const { binding, drains } = fake();
    const t = await openTracer({ binding });
    const [a, b] = await Promise.all([t.drainSummaries(), t.drainSummaries()]);
    expect(drains).toEqual(['start', 'end', 'start', 'end']);
    expect(a).toEqual([
      { kind: 'reset_received', family: 'ipv4', laddr: '127.0.0.1', lport: 0, raddr: '127.0.0.1', rport: 80, netns: 4026531840, state: 'SYN_SENT', count: 5, firstMs: 1_000, lastMs: 2_000 },
    ]);
    expect(b).toEqual(a);
    t.close();
    expect(() => t.drainSummaries()).toThrow(/closed/);
  });

  it.each([[[0]], [[70000]], [[1.5]], [Array.from({ length: 17 }, (_, i) => i + 1)]])('rejects ports %j', async (ports) => {
    const { binding } = fake();
    await expect(openTracer({ binding, ports })).rejects.toThrow(UserError);
  });
});

describe('privilege check', () => {
  it.each([
    ['000001ffffffffff', true], // root
    ['0000000000200000', true], // CAP_SYS_ADMIN only
    ['000000c000000000', true], // CAP_BPF + CAP_PERFMON
    ['0000008000000000', false], // CAP_BPF alone
    ['0000000000000000', false],
  ])('CapEff %s → %s', (mask, ok) => {
    expect(canLoadBpf(mask)).toBe(ok);
  });
});

describe('output formats', () => {
  it('prints ISO 8601 with microseconds', () => {
    expect(isoMicros(Date.UTC(2026, 10, 28, 6, 50, 12, 123) + 0.456)).toBe('2026-11-28T06:50:12.123456Z');
  });

  it('JSON lines carry the contract fields only when known', () => {
    const ev = decodeBatch(
      record({ kind: KIND_CODE.accept_queue_full, family: AF_INET, laddr: lo4, raddr: lo4, lport: 8080, rport: 5, queue: 2, backlog: 1, state: 10 }),
      { clockOffsetMs: 0, reasons },
    )[0]!;
    ev.pid = 42;
    ev.comm = 'server';
    expect(Object.keys(toJsonEvent(ev))).toEqual([
      'time', 'kind', 'family', 'laddr', 'lport', 'raddr', 'rport', 'netns', 'state', 'queue', 'backlog', 'pid', 'comm',
    ]);
    expect(humanLine(ev)).toMatch(/accept_queue_full +listener 127\.0\.0\.1:8080 peer 127\.0\.0\.1:5 queue 2\/1 state LISTEN pid 42 \(server\)$/);
  });
});
