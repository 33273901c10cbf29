/** The agent's recent-event memory: bounded, oldest first, `last` and `since` as Watch uses them. */
import { describe, expect, it } from 'vitest';
import { EventKind, Family, type Event } from '../src/generated/wstrace/v1/tracer.js';
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

describe('recent events', () => {
  it('keeps the newest `capacity` events across batches, oldest first, exactly as pushed', () => {
    const r = new RecentEvents(10);
    const pushed = Array.from({ length: 27 }, (_, i) => ev(i, i === 25 ? { queue: 3, backlog: 1, pid: 42, comm: 'srv' } : {}));
    r.push(pushed.slice(0, 4));
    r.push(pushed.slice(4, 5));
    r.push(pushed.slice(5, 20));
    r.push(pushed.slice(20));
    expect(r.size).toBe(10);
    expect(r.select(all, 0, 0)).toEqual(pushed.slice(17));
  });

  it('a batch larger than the capacity keeps its newest events', () => {
    const r = new RecentEvents(3);
    const pushed = Array.from({ length: 8 }, (_, i) => ev(i));
    r.push(pushed);
    expect(r.size).toBe(3);
    expect(r.select(all, 0, 0).map((e) => e.localPort)).toEqual([1005, 1006, 1007]);
  });

  it('last takes the newest matching n; since stops at the first older event', () => {
    const r = new RecentEvents(100);
    for (let i = 0; i < 50; i += 5) r.push(Array.from({ length: 5 }, (_, j) => ev(i + j)));
    const sent = (e: Event) => e.kind === EventKind.EVENT_KIND_RESET_SENT;
    expect(r.select(sent, 3, 0).map((e) => e.localPort)).toEqual([1045, 1047, 1049]);
    const since = ev(40).timeUnixMicros;
    expect(r.select(all, 0, since).map((e) => e.localPort)).toEqual(Array.from({ length: 10 }, (_, i) => 1040 + i));
    expect(r.select(sent, 2, since).map((e) => e.localPort)).toEqual([1047, 1049]);
  });

  it('capacity 0 keeps nothing', () => {
    const r = new RecentEvents(0);
    r.push([ev(1)]);
    expect(r.size).toBe(0);
    expect(r.select(all, 0, 0)).toEqual([]);
  });
});
