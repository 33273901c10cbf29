/**
 * The agent's recent-event memory: bounded, oldest first, `last` and `since`
 * as Watch uses them, holding the bytes the hub encoded for the streams.
 */
import { describe, expect, it } from 'vitest';
import { EventKind, Family, type Event } from '../src/generated/wstrace/v1/tracer.js';
import { encodeEvents, eventAt, type EncodedEvents } from '../src/agent/encode.js';
import { RecentEvents } from '../src/agent/recent.js';

function ev(i: number, extra: Partial<Event> = {}): Event {
  return {
    timeUnixMicros: 1_700_000_000_000_000 + i * 1000,
    kind: i % 2 ? EventKind.EVENT_KIND_RESET_SENT : EventKind.EVENT_KIND_TIMEWAIT,
    family: Family.FAMILY_IPV4,
    localAddr: '127.0.0.1',
    localPort: 1000 + i,
    remoteAddr: '10.0.0.1',
    remotePort: 80,
    netns: 4026531840,
    state: 'ESTABLISHED',
    reason: i % 2 ? 'NOT_SPECIFIED' : '',
    comm: '',
    ...extra,
  };
}
const all = () => true;

/** The ring as Watch reads it: the selected events, decoded. */
class Ring extends RecentEvents {
  add(events: Event[]): void {
    this.push(encodeEvents(events));
  }
  events(pred: (e: Event) => boolean, last: number, since: number): Event[] {
    const got = this.select(pred, last, since);
    return Array.from({ length: got.length }, (_, j) => eventAt(got, j));
  }
}

describe('recent events', () => {
  it('keeps the newest `capacity` events across batches, oldest first, exactly as pushed', () => {
    const r = new Ring(10);
    const pushed = Array.from({ length: 27 }, (_, i) => ev(i, i === 25 ? { queue: 3, backlog: 1, pid: 42, comm: 'srv' } : {}));
    r.add(pushed.slice(0, 4));
    r.add(pushed.slice(4, 5));
    r.add(pushed.slice(5, 20));
    r.add(pushed.slice(20));
    expect(r.size).toBe(10);
    expect(r.events(all, 0, 0)).toEqual(pushed.slice(17));
  });

  it('a batch larger than the capacity keeps its newest events', () => {
    const r = new Ring(3);
    const pushed = Array.from({ length: 8 }, (_, i) => ev(i));
    r.add(pushed);
    expect(r.size).toBe(3);
    expect(r.events(all, 0, 0).map((e) => e.localPort)).toEqual([1005, 1006, 1007]);
  });

  it('last takes the newest matching n; since stops at the first older event', () => {
    const r = new Ring(100);
    for (let i = 0; i < 50; i += 5) r.add(Array.from({ length: 5 }, (_, j) => ev(i + j)));
    const sent = (e: Event) => e.kind === EventKind.EVENT_KIND_RESET_SENT;
    expect(r.events(sent, 3, 0).map((e) => e.localPort)).toEqual([1045, 1047, 1049]);
    const since = ev(40).timeUnixMicros;
    expect(r.events(all, 0, since).map((e) => e.localPort)).toEqual(Array.from({ length: 10 }, (_, i) => 1040 + i));
    expect(r.events(sent, 2, since).map((e) => e.localPort)).toEqual([1047, 1049]);
  });

  it('keeps the encoded bytes it was given, and replays them unchanged', () => {
    const r = new RecentEvents(100);
    const batches: EncodedEvents[] = [0, 10, 20].map((i) => encodeEvents(Array.from({ length: 10 }, (_, j) => ev(i + j))));
    for (const b of batches) r.push(b);
    const got = r.select(all, 15, 0);
    const tail = (b: EncodedEvents, from: number) => b.bytes.subarray(b.offsets[from]);
    expect(Buffer.from(got.bytes)).toEqual(Buffer.concat([tail(batches[1]!, 5), tail(batches[2]!, 0)]));
    expect(Array.from(got.times)).toEqual(Array.from({ length: 15 }, (_, j) => ev(15 + j).timeUnixMicros));
  });

  it('capacity 0 keeps nothing', () => {
    const r = new Ring(0);
    r.add([ev(1)]);
    expect(r.size).toBe(0);
    expect(r.events(all, 0, 0)).toEqual([]);
  });
});
