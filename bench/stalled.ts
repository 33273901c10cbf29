/**
 * A Watch client that never reads, during a reset storm of millions of events
 * (issue 13, item 1). Memory per subscriber must be bounded by its queue
 * whatever the client does (DESIGN.md, "Safe as root"), so the agent's RSS
 * must not grow with the storm. Each run is a real `wstrace agent` in a fresh
 * namespace with the bench's reading subscriber and, unless it is the
 * control run, a client that takes the agent's first message and then reads
 * nothing. The agent's VmRSS is sampled before, during and after the storm;
 * afterwards the stalled client reads again, so its losses can be held to
 * what the kernel emitted, to the event.
 */
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { DEFAULT_LIMITS } from '../src/agent/subscriber.js';
import { TracerClient, LostReason, type WatchResponse } from '../src/generated/wstrace/v1/tracer.js';
import { AgentArm, emittedTotal } from './agent.js';
import type { Cleanup } from './cleanup.js';
import { BenchError } from './errors.js';
import { runLoad, type LoadSpec } from './loadgen.js';
import { BenchNetns } from './netns.js';
import { rssBytes } from './proc.js';

/** The agent's --subscriber-queue when none is given. */
export const DEFAULT_SUBSCRIBER_QUEUE = DEFAULT_LIMITS.maxQueued;

/** How far apart the peaks over start of the smallest and largest storm may be: "flat". */
export const FLAT_BYTES = 40e6;

/** Peak over start the brief asks for with a stalled client. */
export const STALLED_RSS_BUDGET_BYTES = 40e6;

export interface StalledContext {
  readonly root: string;
  readonly loadgen: string;
  readonly cleanup: Cleanup;
  readonly nsName: (tag: string) => string;
  readonly tmpDir: string;
}

/** One client's tally: events received and the losses the agent reported to it. */
export interface Tally {
  readonly delivered: number;
  readonly lostRing: number;
  readonly lostSlow: number;
}

export interface StalledResult {
  /** False for the control run: the same storm with the reading subscriber only. */
  readonly stalledClient: boolean;
  /** Events the storm was sized for (two per closed-port connect). */
  readonly stormEvents: number;
  readonly stormSeconds: number;
  /** events + ring drops, from the agent's BPF totals map (bpftool, not through the agent). */
  readonly emitted: number;
  readonly ringDrops: number;
  readonly subscriberQueue: number;
  /** Agent VmRSS before the storm, the largest sample until every event was handled, and then, bytes. */
  readonly rss: { readonly start: number; readonly peak: number; readonly end: number };
  /** VmRSS every 100 ms from start to end, MB (for a plot from the JSON). */
  readonly rssSeriesMb: number[];
  readonly reader: Tally;
  /** What the stalled client got once it read again: the events it never read are its reported losses. */
  readonly stalled?: Tally;
  /** The agent's wstrace_lost_events_total{reason="subscriber_too_slow"} before the stalled client read again. */
  readonly metricLostSlow: number;
}

/** (delivered + reported lost) ÷ emitted for one client. */
export function accounted(t: Tally, emitted: number): number {
  return emitted ? (t.delivered + t.lostRing + t.lostSlow) / emitted : 1;
}

function storm(events: number): LoadSpec {
  // Closed-port connects on two threads, as fast as the machine goes: two events each (RST sent, RST received).
  return { mode: 'rst', rate: 0, seconds: 120, count: Math.ceil(events / 2), threads: 2, flags: { c: 9 } };
}

/**
 * A Watch stream on its own HTTP/2 connection that takes the agent's first
 * message (the status sent once the agent has added the subscriber) and then
 * reads nothing. Nothing consumes the readable, so grpc-js stops pulling from
 * the HTTP/2 stream once its buffer holds 16 messages, no WINDOW_UPDATE goes
 * back, and the agent's writes stop at the 64 KiB flow-control window: the
 * backlog stays in the agent, not in this process or its socket.
 */
class StalledWatch {
  private readonly client: TracerClient;
  private readonly call: ClientReadableStream<WatchResponse>;

  constructor(socket: string) {
    // A local subchannel pool: never share a connection (and its window) with the reading subscriber.
    this.client = new TracerClient(`unix:${socket}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    this.call = this.client.watch({ allow: [], deny: [], last: 0, sinceUnixMicros: 0, follow: true });
    this.call.on('error', () => undefined); // cancelled at the end; any other failure shows as a short tally
  }

  /** Resolves once the agent's first status has arrived: the subscriber is in place. */
  following(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new BenchError(`the stalled client got no answer to Watch within ${timeoutMs / 1000} s`)), timeoutMs);
      const look = () => {
        const msg = this.call.read() as WatchResponse | null;
        if (!msg) return;
        this.call.off('readable', look); // and read nothing more until drain()
        clearTimeout(timer);
        if (msg.response?.$case !== 'status') reject(new BenchError(`the stalled client's first message was ${msg.response?.$case}, not a status`));
        else resolve();
      };
      this.call.on('readable', look);
    });
  }

  /** Reads again, counting, until `total` events are accounted for or `timeoutMs` passes. */
  async drain(total: number, timeoutMs: number): Promise<Tally> {
    const t = { delivered: 0, lostRing: 0, lostSlow: 0 };
    this.call.on('data', (msg: WatchResponse) => {
      const m = msg.response;
      if (m?.$case === 'batch') t.delivered += m.value.events.length;
      else if (m?.$case === 'lost') {
        if (m.value.reason === LostReason.LOST_REASON_KERNEL_RING_FULL) t.lostRing += m.value.count;
        else t.lostSlow += m.value.count;
      }
    });
    const deadline = Date.now() + timeoutMs;
    while (t.delivered + t.lostRing + t.lostSlow < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return t;
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** Reads one series of the agent's Prometheus text. */
async function metric(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new BenchError(`the agent's metrics have no ${series}`);
  return Number(line.slice(series.length + 1));
}

export async function stalledRun(
  ctx: StalledContext,
  stormEvents: number,
  stalledClient: boolean,
  subscriberQueue?: number,
): Promise<StalledResult> {
  const ns = await BenchNetns.create(ctx.nsName(stalledClient ? 'stalled' : 'control'), ctx.cleanup);
  const socket = `${ctx.tmpDir}/stalled.sock`;
  const agent = await AgentArm.start(
    // Every event through the agent (no rate budget): the storm must reach the queues it measures.
    { root: ctx.root, netns: ns.name, socket, metrics: true, eventBudget: 0, ...(subscriberQueue ? { subscriberQueue } : {}) },
    ctx.cleanup,
  );
  let stalled: StalledWatch | undefined;
  let sampler: NodeJS.Timeout | undefined;
  try {
    const url = agent.metricsUrl;
    if (!url) throw new BenchError('the agent did not say where its metrics are');
    if (stalledClient) {
      stalled = new StalledWatch(socket);
      await stalled.following(10_000);
    }
    const subscribers = await metric(url, 'wstrace_subscribers');
    if (subscribers !== (stalledClient ? 2 : 1)) throw new BenchError(`the agent counts ${subscribers} Watch clients, not ${stalledClient ? 2 : 1}`);

    const series: number[] = [];
    const sample = () => {
      const b = rssBytes(agent.pid);
      series.push(b);
      return b;
    };
    const start = sample();
    sampler = setInterval(sample, 100);
    const began = performance.now();
    await runLoad(ctx.loadgen, ns.name, storm(stormEvents), ctx.cleanup);
    const stormSeconds = (performance.now() - began) / 1000;
    // Once the reader has every event or a notice for it, the agent has handled them all.
    const emitted = await agent.settle(30_000);
    clearInterval(sampler);
    const end = sample();
    const total = emittedTotal(emitted);
    const r = agent.received;
    const metricLostSlow = await metric(url, 'wstrace_lost_events_total{reason="subscriber_too_slow"}');
    const stalledTally = stalled ? await stalled.drain(total, 60_000) : undefined;
    return {
      stalledClient,
      stormEvents,
      stormSeconds,
      emitted: total,
      ringDrops: emitted.ringDrops,
      subscriberQueue: subscriberQueue ?? DEFAULT_SUBSCRIBER_QUEUE,
      rss: { start, peak: Math.max(...series), end },
      rssSeriesMb: series.map((b) => Math.round(b / 1e5) / 10),
      reader: { delivered: r.delivered, lostRing: r.lostKernelRing, lostSlow: r.lostSlow },
      ...(stalledTally ? { stalled: stalledTally } : {}),
      metricLostSlow,
    };
  } finally {
    clearInterval(sampler);
    stalled?.close();
    await agent.stop();
    await ns.destroy();
  }
}
