/**
 * A Watch client that stops reading must cost the agent no more than its
 * queue limit: the oldest events are dropped and counted, never kept.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DropOldestQueue, Subscriber } from '../src/agent/subscriber.js';
import { EventKind, Family, type Event, type WatchResponse } from '../src/generated/wstrace/v1/tracer.js';

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
  written: WatchResponse[] = [];
  write(msg: WatchResponse): boolean {
    this.written.push(msg);
    return false;
  }
  end(): void {}
}

const tick = () => new Promise((r) => setImmediate(r));

describe('DropOldestQueue', () => {
  it('keeps the newest entries in order and says how many it dropped', () => {
    const q = new DropOldestQueue<number>(3);
    expect([1, 2, 3, 4, 5].map((n) => q.push(n))).toEqual([0, 0, 0, 1, 1]);
    expect(q.size).toBe(3);
    expect(q.take(2)).toEqual([3, 4]);
    q.push(6);
    expect(q.take(10)).toEqual([5, 6]);
    expect(q.size).toBe(0);
  });
});

describe('a Watch subscriber whose client stops reading', () => {
  it('holds at most maxQueued events through a million, and counts every one it dropped', async () => {
    const call = new StalledCall();
    const limits = { maxQueued: 1000, maxBatch: 100 };
    const sub = new Subscriber(call as never, () => true, true, limits);
    const total = 1_000_000;
    const chunk = 10_000;
    for (let i = 0; i < total; i += chunk) {
      sub.offer(Array.from({ length: chunk }, (_, k) => event(i + k)));
      await tick();
      expect(sub.queued).toBeLessThanOrEqual(limits.maxQueued);
    }
    // The first write found the stream full: since then nothing went out, the rest waits or was dropped.
    const batches = (msgs: WatchResponse[]) => msgs.flatMap((m) => (m.response?.$case === 'batch' ? m.response.value.events : []));
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
    const after = batches(call.written);
    const lost = call.written.flatMap((m) => (m.response?.$case === 'lost' ? [m.response.value.count] : []));
    expect(lost.reduce((a, b) => a + b, 0)).toBe(total - limits.maxQueued);
    expect(after.map((e) => e.timeUnixMicros)).toEqual(
      Array.from({ length: limits.maxQueued }, (_, k) => total - limits.maxQueued + k),
    );
  });
});
