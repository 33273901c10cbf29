/**
 * The container and pod names the raw encoder writes are byte for byte what
 * the generated encoder writes for the same event with those fields set, for
 * names short and long (an event past 127 bytes moves its length varint),
 * for cgroups named, unnamed and unknown, and when a cgroup's answer changes.
 * Summary rows get the same names on their way through the hub.
 */
import { describe, expect, it } from 'vitest';
import { EventEncoder, type CgroupNames } from '../src/agent/encode.js';
import { EventHub } from '../src/agent/hub.js';
import { Event, EventBatch, EventKind, type Summary } from '../src/generated/wstrace/v1/tracer.js';
import { decodeBatch } from '../src/kernel/decode.js';
import { AF_INET, EVENT_LAYOUT, NO_REASON } from '../src/kernel/layout.js';
import { ReasonNames } from '../src/kernel/names.js';
import { RawBatch, type DecodeContext, type OwnerLookup } from '../src/kernel/raw.js';
import { eventToProto } from '../src/protocol/convert.js';
import { KINDS } from '../src/signals/kinds.js';

const O = EVENT_LAYOUT.offsets;
const ctx: DecodeContext = { clockOffsetMs: 1_764_000_000_123.457, reasons: new ReasonNames(() => ({})) };
const owners: OwnerLookup = { lookup: (inode) => (inode === 11 ? { pid: 4242, comm: 'wsserver' } : undefined) };

const POD: CgroupNames = { containerId: 'a'.repeat(64), containerName: 'web', pod: 'shop-7d9f', namespace: 'payments' };
const LONG: CgroupNames = { containerId: 'b'.repeat(64), containerName: 'x'.repeat(60), pod: 'p'.repeat(63), namespace: 'n'.repeat(63) };
const BARE: CgroupNames = { containerId: 'wst-ctr-1' };
const CGROUPS = [0, 1, 4242, 4243, 2 ** 40 + 7];

function record(i: number): Buffer {
  const b = Buffer.alloc(EVENT_LAYOUT.size);
  b.writeBigUInt64LE(BigInt(1_000_000 + i * 1000), O.ts_ns);
  b.writeBigUInt64LE(BigInt(i % 3 === 0 ? 11 : 0), O.inode);
  Buffer.from([127, 0, 0, 1]).copy(b, O.laddr);
  Buffer.from([10, 0, 0, (i % 200) + 1]).copy(b, O.raddr);
  b.writeUInt32LE(4026531840, O.netns);
  b.writeUInt32LE(NO_REASON, O.reason);
  b.writeUInt16LE(8080, O.lport);
  b.writeUInt16LE(40000 + i, O.rport);
  b.writeUInt16LE(AF_INET, O.family);
  b.writeUInt8(KINDS[i % KINDS.length]!.code, O.kind);
  b.writeUInt8(10, O.state);
  b.writeBigUInt64LE(BigInt(CGROUPS[i % CGROUPS.length]!), O.cgroup);
  return b;
}

function expected(batch: Buffer, names: (cgroup: number) => CgroupNames | undefined): Buffer {
  const events = decodeBatch(batch, ctx, owners).map((ev) => {
    const e: Event = eventToProto(ev);
    const n = e.cgroup ? names(e.cgroup) : undefined;
    if (n?.containerId) e.container = n.containerId;
    if (n?.containerName) e.containerName = n.containerName;
    if (n?.pod) e.pod = n.pod;
    if (n?.namespace) e.namespace = n.namespace;
    return e;
  });
  return Buffer.concat(events.map((e) => EventBatch.encode({ events: [e] }).finish()));
}

describe('container and pod names in the raw encoder', () => {
  it('are the generated encoder’s bytes, for named, unnamed and unknown cgroups, short and long names', () => {
    const table = new Map<number, CgroupNames>([
      [4242, POD],
      [4243, LONG],
      [2 ** 40 + 7, BARE],
    ]);
    const names = (c: number) => table.get(c);
    const batch = Buffer.concat(Array.from({ length: 120 }, (_, i) => record(i)));
    const enc = new EventEncoder(names);
    const got = enc.encode(new RawBatch(batch, ctx, owners)).events;
    expect(Buffer.from(got.bytes)).toEqual(expected(batch, names));
    const decoded = Array.from({ length: got.length }, (_, j) => EventBatch.decode(got.bytes.subarray(got.offsets[j], got.offsets[j + 1])).events[0]!);
    expect(decoded.some((e) => e.pod === 'shop-7d9f' && e.namespace === 'payments' && e.containerName === 'web')).toBe(true);
    expect(decoded.some((e) => e.container === 'wst-ctr-1' && e.pod === undefined)).toBe(true);
    expect(decoded.some((e) => e.cgroup === 1 && e.container === undefined)).toBe(true);

    // A cgroup named later (the resolver answered): the next batch carries the new names.
    table.set(1, { containerId: 'c'.repeat(64) });
    table.set(4242, { ...POD, containerName: 'web2' });
    const again = enc.encode(new RawBatch(batch, ctx, owners)).events;
    expect(Buffer.from(again.bytes)).toEqual(expected(batch, names));
  });

  it('without a resolver, nothing is added (the existing contract)', () => {
    const batch = Buffer.concat(Array.from({ length: 20 }, (_, i) => record(i)));
    expect(Buffer.from(new EventEncoder().encode(new RawBatch(batch, ctx, owners)).events.bytes)).toEqual(expected(batch, () => undefined));
  });

  it('summary rows through the hub carry the names of their cgroup', () => {
    const hub = new EventHub(16, (c) => (c === 4242 ? POD : undefined));
    const row = (cgroup: number): Summary => ({
      kind: EventKind.EVENT_KIND_RESET_SENT,
      family: 1,
      localAddr: '127.0.0.1',
      localPort: 8080,
      remoteAddr: '10.0.0.1',
      remotePort: 0,
      netns: 1,
      state: '',
      reason: '',
      count: 5,
      firstUnixMicros: 1,
      lastUnixMicros: 2,
      ...(cgroup ? { cgroup } : {}),
    });
    const batch = { summaries: [row(4242), row(7), row(0)], fromUnixMicros: 0, toUnixMicros: 3, eventBudget: 10 };
    hub.summaries(batch);
    expect(batch.summaries[0]).toMatchObject({ container: POD.containerId, containerName: 'web', pod: 'shop-7d9f', namespace: 'payments' });
    expect(batch.summaries[1]!.pod).toBeUndefined();
    expect(batch.summaries[2]!.container).toBeUndefined();
  });
});
