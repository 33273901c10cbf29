/**
 * Issue 13, item 1, end to end: a Watch client that stops reading costs the
 * agent at most its queue, however many events it misses. A real `wstrace
 * agent`, reset storms of millions of events in a namespace (the bench's load
 * generator), and a client over raw HTTP/2 that takes the agent's first
 * message and then reads nothing, so the flow-control window stays shut and
 * the backlog can only pile up inside the agent. The same storm with no such
 * client is the yardstick: what a storm costs the agent whoever listens.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findTotalsMap, readEmitted } from '../bench/agent.js';
import { buildLoadgen } from '../bench/loadgen.js';
import { DEFAULT_LIMITS } from '../src/agent/subscriber.js';
import { LostReason, WatchRequest, WatchResponse } from '../src/generated/wstrace/v1/tracer.js';
import { spawnCli } from './helpers/cli.js';
import { following, stuckWatch, tracerClient, type WireMessage } from './helpers/grpc.js';
import { describeKernel, heldProgramIds, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { until } from './helpers/until.js';

/** Closed-port connects per storm phase: each is a reset sent and a reset received, a million events. */
const CONNECTS = 500_000;
/** The closed port of the storm; after phase i, one reset to SENTINEL_PORT + i. */
const STORM_PORT = 9;
const SENTINEL_PORT = 7770;
/** The agent's default --subscriber-queue, in events: all the stalled client may hold. */
const QUEUE = DEFAULT_LIMITS.maxQueued;
/**
 * Limits on the agent's peak VmRSS (MB). A storm grows the agent whoever is
 * subscribed: V8's young generation and old space grow to their working size
 * and the recent-event ring fills (about 50 MB here). A stalled client adds
 * its queue, whose events live long enough to be promoted and then die, so
 * old space runs up to its next full collection: some tens of MB more, once.
 * Keeping the events the client missed, as the agent did before its
 * drop-oldest queue, costs about 180 MB more per million events, every million.
 */
const LIMIT_MB = {
  /** The stalled client's first million, over the same million with no client. */
  firstMillion: 100,
  /** Its second million, over its first. */
  secondMillion: 40,
};

function rssMb(pid: number): number {
  const kb = /^VmRSS:\s*(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** One series of the agent's Prometheus text, summed over its labels when a name alone is given. */
async function metric(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const exact = series.includes('{');
  return text
    .split('\n')
    .filter((l) => (exact ? l.startsWith(`${series} `) : l.startsWith(`${series}{`) || l.startsWith(`${series} `)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** A Watch client of the sentinel ports, reading all it gets: it costs the agent nothing during the storm. */
async function watchSentinels(sock: string, phases: number): Promise<{ readonly seen: Set<number>; close(): void }> {
  const client = tracerClient(`unix://${sock}`);
  const ports = Array.from({ length: phases }, (_, i) => SENTINEL_PORT + i);
  const call = client.watch({ follow: true, allow: [{ ports }] });
  const seen = new Set<number>();
  call.on('error', () => undefined); // cancelled at the end
  await following(call);
  call.on('data', (m: WireMessage) => {
    for (const ev of m.batch?.events ?? []) seen.add(ports.includes(ev.localPort) ? ev.localPort : ev.remotePort);
  });
  return {
    seen,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

describeKernel('a Watch client that never reads, during a reset storm', () => {
  let ns: TestNetns;
  let dir: string;
  let loadgen: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-stalled');
    dir = mkdtempSync(join(tmpdir(), 'wst-stalled-'));
    loadgen = buildLoadgen(ROOT);
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  interface Storm {
    /** Agent VmRSS before the storm, MB. */
    readonly startMb: number;
    /** Its largest sample from the start until each phase's events were all handled, MB. */
    readonly peakMb: number[];
    /** Records the BPF side wrote to the ring, and the ones it had no room for (its own tally). */
    readonly ringEvents: number;
    readonly ringDrops: number;
    /** The agent's count of events dropped for a slow client (metrics). */
    readonly lostSlow: number;
  }

  /**
   * Starts an agent, lets `subscribe` connect its client, runs the storm's
   * phases, each until the agent has handled every event; then `after` runs
   * (the client reads again), and the agent is stopped and must leave nothing.
   */
  async function underStorm<C>(
    phases: number,
    subscribe: (sock: string) => Promise<C>,
    after: (client: C, storm: Storm) => Promise<void>,
  ): Promise<Storm> {
    const sock = join(dir, 'agent.sock');
    // No rate budget (--event-budget 0): every storm event goes through the agent's queues, which is what is measured.
    const agent = spawnCli(['agent', '--listen', `unix:${sock}`, '--netns', ns.path, '--metrics', '127.0.0.1:0', '--event-budget', '0'], {
      stdout: 'ignore',
    });
    const url = /metrics on (http:\/\/\S+\/metrics)\n/.exec(await agent.waitStderr(/metrics on http:\/\/\S+\/metrics\n/))![1]!;
    const programs = heldProgramIds(agent.pid);
    const totalsMap = findTotalsMap(agent.pid);
    expect(totalsMap, "the agent's BPF totals map").toBeDefined();
    const sentinels = await watchSentinels(sock, phases);
    const client = await subscribe(sock);
    const startMb = rssMb(agent.pid);
    let peak = startMb;
    const sample = () => (peak = Math.max(peak, rssMb(agent.pid)));
    const sampler = setInterval(sample, 100);
    let storm: Storm;
    try {
      const peakMb: number[] = [];
      for (let i = 0; i < phases; i++) {
        const args = ['rst', '-r', '0', '-d', '60', '-n', String(CONNECTS), '-t', '2', '-c', String(STORM_PORT)];
        const out = await ns.exec(loadgen, args, 90_000);
        expect((JSON.parse(out.trim().split('\n').pop()!) as { refused: number }).refused).toBe(CONNECTS);
        // One more reset, on a port of its own: the ring and the agent keep order, so once the
        // sentinel client has it, every event of this phase was handled. Sent again until it
        // arrives, should the ring have had no room for the first.
        const port = SENTINEL_PORT + i;
        await until(
          async () => {
            if (!sentinels.seen.has(port)) await ns.exec(loadgen, ['rst', '-r', '0', '-d', '10', '-n', '1', '-c', String(port)]);
            return sentinels.seen.has(port);
          },
          { what: `the agent to pass on a reset to port ${port} made after phase ${i + 1}`, everyMs: 200, timeoutMs: 60_000 },
        );
        peakMb.push(sample());
      }
      clearInterval(sampler);
      expect(await metric(url, 'wstrace_events_total')).toBeGreaterThanOrEqual(2 * CONNECTS * phases);
      const ring = await readEmitted(totalsMap!);
      // Each storm event must reach the agent, or the test proves nothing (hence no rate budget).
      expect(ring.events + ring.ringDrops, 'records the BPF side wrote to the ring or had no room for').toBeGreaterThanOrEqual(2 * CONNECTS * phases);
      storm = {
        startMb,
        peakMb,
        ringEvents: ring.events,
        ringDrops: ring.ringDrops,
        lostSlow: await metric(url, 'wstrace_lost_events_total{reason="subscriber_too_slow"}'),
      };
      await after(client, storm);
    } finally {
      clearInterval(sampler);
      sentinels.close();
    }
    agent.child.kill('SIGTERM');
    expect(await agent.closed).toBe(0);
    expect(await waitProgramsGone(programs)).toEqual([]);
    return storm;
  }

  it('costs the agent its queue, not the millions of events it missed, and reports every one lost', { timeout: 240_000 }, async () => {
    // A million events with no client but the sentinels': what the storm alone costs the agent.
    const alone = await underStorm(1, async () => undefined, async () => undefined);
    expect(alone.lostSlow).toBe(0);

    const stalled = await underStorm(
      2,
      async (sock) => {
        const stuck = await stuckWatch(sock, WatchRequest.encode({ allow: [], deny: [], last: 0, sinceUnixMicros: 0, follow: true }).finish());
        await stuck.answered; // the agent has added the subscriber: the storm is offered to it
        return stuck;
      },
      async (stuck, storm) => {
        try {
          // The backlog was dropped inside the agent, not held in the client's socket or window.
          expect(storm.lostSlow).toBeGreaterThan(storm.ringEvents - 2 * QUEUE);
          // Reading again, the client gets its queue and a notice for every event it missed.
          stuck.resume();
          const tally = () => {
            const t = { events: 0, slow: 0, ring: 0 };
            for (const m of stuck.messages) {
              const r = WatchResponse.decode(m).response;
              if (r?.$case === 'batch') t.events += r.value.events.length;
              else if (r?.$case === 'lost' && r.value.reason === LostReason.LOST_REASON_SUBSCRIBER_TOO_SLOW) t.slow += r.value.count;
              else if (r?.$case === 'lost') t.ring += r.value.count;
            }
            return t;
          };
          const total = storm.ringEvents + storm.ringDrops;
          const got = await until(tally, {
            what: `the stalled client to account for all ${total} events`,
            accept: (t) => t.events + t.slow + t.ring >= total,
            timeoutMs: 30_000,
          });
          expect(got).toEqual({ events: storm.ringEvents - storm.lostSlow, slow: storm.lostSlow, ring: storm.ringDrops });
        } finally {
          stuck.close();
        }
      },
    );

    const said = `agent VmRSS: alone ${alone.startMb.toFixed(0)} → ${alone.peakMb[0]!.toFixed(0)} MB; with the stalled client ${stalled.startMb.toFixed(0)} → ${stalled.peakMb.map((p) => p.toFixed(0)).join(' → ')} MB`;
    const grewAlone = alone.peakMb[0]! - alone.startMb;
    const grewFirst = stalled.peakMb[0]! - stalled.startMb;
    expect(grewFirst - grewAlone, said).toBeLessThan(LIMIT_MB.firstMillion);
    expect(stalled.peakMb[1]! - stalled.peakMb[0]!, said).toBeLessThan(LIMIT_MB.secondMillion);
  });
});
