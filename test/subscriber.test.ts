/**
 * A Watch client that stops reading must cost the agent no more than its
 * queue limit: the oldest events are dropped and counted, never kept. Events
 * reach every stream as the bytes the hub encoded once from the ring records.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { batchMessage, encodeEvents, EventEncoder, serializeWatchResponse, type EncodedEvents, type WatchMessage } from '../src/agent/encode.js';
import { compileFilters } from '../src/agent/filter.js';
import { EventHub } from '../src/agent/hub.js';
import { EventQueue, Subscriber } from '../src/agent/subscriber.js';
import { EventKind, Family, WatchResponse, type Event } from '../src/generated/wstrace/v1/tracer.js';
import { decodeBatch } from '../src/kernel/decode.js';
import { AF_INET, EVENT_LAYOUT, KIND_CODE, NO_REASON } from '../src/kernel/layout.js';
import { ReasonNames } from '../src/kernel/names.js';
import { RawBatch, type DecodeContext } from '../src/kernel/raw.js';
import { eventToProto } from '../src/protocol/convert.js';

const O = EVENT_LAYOUT.offsets;
const ctx: DecodeContext = { clockOffsetMs: 0, reasons: new ReasonNames(() => ({ 1: 'SK_RST_REASON_NO_SOCKET' })) };

/** Ring records of resets sent from 127.0.0.1:8080, event i at i microseconds, to port 40000 + i % 20000. */
function records(first: number, n: number): Buffer {
  const b = Buffer.alloc(n * EVENT_LAYOUT.size);
  for (let k = 0; k < n; k++) {
    const at = k * EVENT_LAYOUT.size;
    const i = first + k;
    b.writeBigUInt64LE(BigInt(i) * 1000n, at + O.ts_ns);
    b.set([127, 0, 0, 1], at + O.laddr);
    b.set([127, 0, 0, 1], at + O.raddr);
    b.writeUInt32LE(1, at + O.netns);
    b.writeUInt32LE(i % 3 ? 1 : NO_REASON, at + O.reason);
    b.writeUInt16LE(8080, at + O.lport);
    b.writeUInt16LE(40000 + (i % 20000), at + O.rport);
    b.writeUInt16LE(AF_INET, at + O.family);
    b.writeUInt8(KIND_CODE.reset_sent, at + O.kind);
  }
  return b;
}

const everything = compileFilters([], []);

/** What the hub hands a stream for a ring batch. */
function offer(sub: Subscriber, encoder: EventEncoder, batch: Buffer): void {
  const raw = new RawBatch(batch, ctx);
  const { events, records: from } = encoder.encode(raw);
  sub.offer(events, raw, from);
}

function event(i: number): Event {
  return {
    timeUnixMicros: i,
    kind: EventKind.EVENT_KIND_RESET_SENT,
    family: Family.FAMILY_IPV4,
    localAddr: '127.0.0.1',
    localPort: 8080,
    remoteAddr: '127.0.0.1',
    remotePort: 40000 + (i % 20000),
    netns: 1,
    state: '',
    reason: 'NO_SOCKET',
    comm: '',
  };
}

/** A stream whose client never reads: every write after the first reports a full buffer, and 'drain' never comes. */
class StalledCall extends EventEmitter {
  cancelled = false;
  destroyed = false;
  written: WatchMessage[] = [];
  write(msg: WatchMessage): boolean {
    this.written.push(msg);
    return false;
  }
  end(): void {}
  /** What the client reads: each message as it went through the Watch serializer. */
  messages(): WatchResponse[] {
    return this.written.map((m) => WatchResponse.decode(serializeWatchResponse(m)));
  }
}

const batches = (msgs: WatchResponse[]) => msgs.flatMap((m) => (m.response?.$case === 'batch' ? m.response.value.events : []));

const tick = () => new Promise((r) => setImmediate(r));

describe('EventQueue', () => {
  const times = (q: EventQueue, n: number) => batches([WatchResponse.decode(batchMessage(q.take(n).parts))]).map((e) => e.timeUnixMicros);
  it('keeps the newest events in order, across and inside batches, and says how many it dropped', () => {
    const q = new EventQueue(3);
    const b: EncodedEvents = encodeEvents([1, 2, 3, 4, 5].map(event));
    expect(q.push(b, 0, 2)).toBe(0);
    expect(q.push(b, 2, 4)).toBe(1);
    expect(q.size).toBe(3);
    expect(times(q, 2)).toEqual([2, 3]);
    expect(q.push(b, 4, 5)).toBe(0);
    expect(times(q, 10)).toEqual([4, 5]);
    expect(q.size).toBe(0);
    // A batch bigger than the queue keeps its newest; what was queued is dropped too.
    q.push(b, 0, 1);
    expect(q.push(b, 0, 5)).toBe(3);
    expect(times(q, 10)).toEqual([3, 4, 5]);
  });
});

describe('a Watch subscriber whose client stops reading', () => {
  it('holds at most maxQueued events through a million, and counts every one it dropped', async () => {
    const call = new StalledCall();
    const limits = { maxQueued: 1000, maxBatch: 100 };
    const sub = new Subscriber(call as never, everything, true, limits);
    const encoder = new EventEncoder();
    const total = 1_000_000;
    const chunk = 10_000;
    for (let i = 0; i < total; i += chunk) {
      offer(sub, encoder, records(i, chunk));
      await tick();
      expect(sub.queued).toBeLessThanOrEqual(limits.maxQueued);
    }
    // The first write found the stream full: since then nothing went out, the rest waits or was dropped.
    expect(call.written.length).toBe(1);
    expect(sub.queued).toBe(limits.maxQueued);
    expect(sub.delivered + sub.queued + sub.lostSlow).toBe(total);
    // What is left is the newest events, oldest first.
    call.write = (msg) => {
      call.written.push(msg);
      return true;
    };
    call.emit('drain');
    await tick();
    const read = call.messages();
    const after = batches(read);
    const lost = read.flatMap((m) => (m.response?.$case === 'lost' ? [m.response.value.count] : []));
    expect(lost.reduce((a, b) => a + b, 0)).toBe(total - limits.maxQueued);
    expect(after.map((e) => e.timeUnixMicros)).toEqual(
      Array.from({ length: limits.maxQueued }, (_, k) => total - limits.maxQueued + k),
    );
    // The lost notice comes before the events that follow the gap.
    const order = read.map((m) => m.response?.$case);
    expect(order.indexOf('lost')).toBeLessThan(order.lastIndexOf('batch'));
  });
});

/** A stream whose client reads everything at once. */
class OpenCall extends StalledCall {
  override write(msg: WatchMessage): boolean {
    this.written.push(msg);
    return true;
  }
}

describe('events from one encode, shared', () => {
  it('every stream reads the typed events of the batch, each through its own filter; the ring replays the same', async () => {
    const hub = new EventHub(1000);
    const all = new OpenCall();
    const some = new OpenCall();
    const filter = compileFilters([{ kinds: [], ports: [], localPorts: [], remotePorts: [40003, 40007], localAddrs: ['127.0.0.1'], remoteAddrs: [], netns: ['1'], cgroups: [] }], []);
    hub.add(new Subscriber(all as never, everything, true));
    hub.add(new Subscriber(some as never, filter, true));
    const batch = records(0, 10);
    hub.publish(new RawBatch(batch, ctx));
    await tick();
    const typed = decodeBatch(batch, ctx).map(eventToProto);
    expect(batches(all.messages())).toEqual(batches([{ response: { $case: 'batch', value: { events: typed } } }]));
    expect(batches(some.messages()).map((e) => e.remotePort)).toEqual([40003, 40007]);
    const replay = hub.recent.select(everything, 0, 0);
    expect(replay.length).toBe(10);
    expect(WatchResponse.decode(batchMessage([replay.bytes]))).toEqual(all.messages()[0]);
  });

  it('a filtered stream that is not read holds copies of its own events, not the batches they came in', async () => {
    const call = new StalledCall();
    const limits = { maxQueued: 100, maxBatch: 100 };
    const filter = compileFilters([{ kinds: [], ports: [], localPorts: [], remotePorts: [40000], localAddrs: [], remoteAddrs: [], netns: [], cgroups: [] }], []);
    const sub = new Subscriber(call as never, filter, true, limits);
    const encoder = new EventEncoder();
    // 20,000 events a batch, one of which this stream wants.
    for (let i = 0; i < 50; i++) offer(sub, encoder, records(i * 20_000, 20_000));
    await tick();
    expect(sub.queued + sub.delivered).toBe(50);
    // What it holds: buffers of one event each, not 50 batches of 20,000.
    const held = (sub as unknown as { queue: EventQueue }).queue.take(1000).parts;
    expect(held.length).toBe(sub.queued);
    for (const p of held) expect(p.buffer.byteLength).toBeLessThan(100);
  });
});
