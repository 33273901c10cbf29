/**
 * The top command without a kernel: its feed against fake agents (an agent
 * that ends its stream, one that cannot be reached, one whose polls fail),
 * and what the command says when it cannot run. No root needed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Aggregator } from '../src/aggregate/index.js';
import { runFeed } from '../src/client/feed.js';
import type { EventSource } from '../src/client/connect.js';
import { UserError } from '../src/protocol/errors.js';
import { WatchResponse, type SnapshotResponse } from '../src/generated/wstrace/v1/tracer.js';
import { info, snapshot } from './fixtures/aggregate/build.js';
import { ROOT } from './helpers/kernel.js';
import { until } from './helpers/until.js';

const CLI = join(ROOT, 'bin/wstrace.js');

interface FakeAgent {
  /** Ends the open Watch stream with a status, as an agent shutting down does. */
  endStream(message: string): void;
  readonly opened: number;
}

/**
 * An agent behind the EventSource interface. `script(n)` says how the n-th
 * connection behaves: 'up' serves, 'unreachable' fails GetInfo, 'bad-snapshot'
 * serves a stream but fails every Snapshot.
 */
function fakeAgent(script: (n: number) => 'up' | 'unreachable' | 'bad-snapshot', snap: () => SnapshotResponse) {
  let opened = 0;
  let end: ((message: string) => void) | undefined;
  const open = (): EventSource => {
    const mode = script(opened++);
    let cancelled = false;
    let wake: (() => void) | undefined;
    const pending: WatchResponse[] = [WatchResponse.fromJSON({ status: { message: 'following' } })];
    end = (message) => {
      pending.push(WatchResponse.fromJSON({ status: { message, end: true } }));
      wake?.();
    };
    return {
      info: async () => {
        if (mode === 'unreachable') throw new UserError('cannot reach the wstrace agent at fake: is `sudo wstrace agent` running?');
        return info('fake');
      },
      snapshot: async () => {
        if (mode === 'bad-snapshot') throw new Error('agent fake: deadline exceeded');
        return snap();
      },
      watch() {
        const it = (async function* () {
          while (!cancelled) {
            const next = pending.shift();
            if (next) {
              yield next;
              continue;
            }
            await new Promise<void>((r) => (wake = r));
          }
        })();
        return Object.assign(it, {
          cancel: () => {
            cancelled = true;
            wake?.();
          },
        });
      },
      close: () => undefined,
    };
  };
  const agent: FakeAgent = {
    endStream: (m) => end?.(m),
    get opened() {
      return opened;
    },
  };
  return { open, agent };
}

/** Looks often: the feed here runs on 10 ms polls and 40 ms backoffs. */
const soon = (check: () => boolean, what: string) => until(check, { what, everyMs: 5 });

describe('the feed of one agent', () => {
  it('an agent that goes away shows as down with why and when; it is retried with growing backoff, then up again', async () => {
    let t = 0;
    const { open, agent } = fakeAgent((n) => (n === 0 ? 'up' : n < 3 ? 'unreachable' : 'up'), () => snapshot(Date.now()));
    const agg = new Aggregator();
    agg.addSource('fake');
    const stop = new AbortController();
    const opens: number[] = [];
    const feed = runFeed(
      'fake',
      () => {
        opens.push(Date.now());
        return open();
      },
      agg,
      { signal: stop.signal, pollMs: 10, backoffMs: 40, maxBackoffMs: 100, now: () => (t = Date.now()) },
    );
    const state = () => agg.view(Date.now(), 10).sources[0]!;
    await soon(() => state().state === 'up' && state().sampleAgeMs !== undefined, 'first up');
    expect(state()).toMatchObject({ hostname: 'fake', hooksTotal: 3 });

    agent.endStream('agent shutting down');
    await soon(() => state().state === 'down', 'down');
    expect(state().error).toBe('the agent ended the stream (agent shutting down)');
    expect(state().retryInMs).toBeGreaterThan(0);
    expect(state().retryInMs).toBeLessThanOrEqual(40);

    await soon(() => agent.opened === 2, 'second attempt');
    await soon(() => state().error === 'unreachable (agent running? socket permissions?)', 'unreachable');
    expect(state().state).toBe('down');
    await soon(() => state().state === 'up', 'back up');
    expect(agent.opened).toBe(4);
    // 40 ms, then 80, then 100 (the cap): each wait at least what was announced.
    const gaps = opens.slice(1).map((at, i) => at - opens[i]!);
    expect(gaps[1]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]).toBeGreaterThanOrEqual(95);
    expect(t).toBeGreaterThan(0);

    stop.abort();
    await feed; // resolves: aborting is the only way a feed ends
  });

  it('failing snapshot polls end the session: down with the error, not a crash', async () => {
    const { open } = fakeAgent(() => 'bad-snapshot', () => snapshot(0));
    const agg = new Aggregator();
    const stop = new AbortController();
    const feed = runFeed('fake', open, agg, { signal: stop.signal, pollMs: 10, backoffMs: 1000 });
    await soon(() => agg.view(Date.now(), 10).sources[0]?.state === 'down', 'down');
    expect(agg.view(Date.now(), 10).sources[0]!.error).toBe('agent fake: deadline exceeded');
    stop.abort();
    await feed;
  });

  it('reads the fds of listener processes for a local agent, and stops promptly', async () => {
    const snap = () => snapshot(Date.now(), { listeners: [{ port: 80, pid: 4242, comm: 'srv' }] });
    const { open } = fakeAgent(() => 'up', snap);
    const agg = new Aggregator();
    agg.addSource('local', { local: true });
    const stop = new AbortController();
    const asked: number[] = [];
    const feed = runFeed('local', open, agg, {
      signal: stop.signal,
      pollMs: 10,
      fdsEveryMs: 0,
      readFds: async (pid) => {
        asked.push(pid);
        return { open: 110, limit: 128 };
      },
    });
    await soon(() => agg.view(Date.now(), 10).listeners[0]?.fds.kind === 'known', 'fds');
    expect(asked).toContain(4242);
    expect(agg.view(Date.now(), 10).listeners[0]!.fds).toEqual({ kind: 'known', open: 110, limit: 128, level: 'warn' });
    const t0 = Date.now();
    stop.abort();
    await feed;
    expect(Date.now() - t0).toBeLessThan(500);
  });
});

describe('wstrace top, when it cannot run', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 });

  it('without a terminal: one sentence pointing to watch, exit 1, nothing loaded', () => {
    const r = run('top');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'wstrace: top draws a live screen and needs a terminal; to read events in a pipe or a log, use `wstrace watch` (or `wstrace watch --json`).\n',
    );
  });

  it.each([
    [['top', '--connect', 'unix:/tmp/x.sock', '--port', '80'], /with --connect, press \/ in the screen to filter by port or address, or give them to `wstrace agent`\./],
    [['top', '--window', '5'], /the window is 1, 10 or 60 seconds\./],
    [['top', '--connect', ','], /give one or more agent addresses/],
  ])('bad flags %j: one sentence, exit 1', (args, message) => {
    const r = run(...args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
