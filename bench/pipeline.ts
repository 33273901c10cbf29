/**
 * Pipeline ceiling: how many events per second user space takes out of the
 * kernel ring buffer. The producer is taken out of the measurement: the ring
 * is filled while the consumer is held (this process's JS thread blocked, or
 * the agent stopped with SIGSTOP), then the consumer is released and timed
 * until it has taken every event. The load is a closed-port storm (two
 * events per connect), so the backlog is real kernel events, not fakes.
 */
import { openTracer } from '../src/kernel/index.js';
import { AgentArm, accountedTotal, emittedTotal } from './agent.js';
import type { Cleanup } from './cleanup.js';
import { runLoad, runLoadSync, type LoadSpec } from './loadgen.js';
import { BenchNetns } from './netns.js';

/** The largest --subscriber-queue `wstrace agent` takes. */
const MAX_SUBSCRIBER_QUEUE = 1_000_000;

/** Ring big enough for the whole backlog: 80 bytes a record (72 + header). */
export const CEILING_RING_BYTES = 128 << 20;

export interface CeilingResult {
  /** ring → addon → decode → JS subscriber, in one process. */
  readonly path: 'addon' | 'grpc';
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly ringDrops: number;
  /** Events lost on the way (gRPC: slow-subscriber drops), reported. */
  readonly lost: number;
  readonly delivered: number;
  /** gRPC path: the agent's CPU (utime + stime) while it drained the backlog, per 100k events: its cost at saturation. */
  readonly agentCpuPer100k?: number;
  /** gRPC path: this process's CPU (the subscriber decoding every message) over the same drain, per 100k events. */
  readonly subscriberCpuPer100k?: number;
  /** gRPC path: the agent drained a live storm first (CeilingContext.warmConnects). */
  readonly warmed?: boolean;
}

export interface CeilingContext {
  readonly root: string;
  readonly loadgen: string;
  readonly cleanup: Cleanup;
  readonly nsName: (tag: string) => string;
  readonly tmpDir: string;
  /** Closed-port connects to queue up (two events each). */
  readonly connects: number;
  /**
   * Closed-port connects the agent drains live before the ring is filled
   * (full run): an always-on agent has compiled its send path and grown its
   * heap long before a backlog comes; without it the ceiling times V8's
   * compiler and heap growth as much as the pipeline.
   */
  readonly warmConnects?: number;
}

function storm(connects: number): LoadSpec {
  return { mode: 'rst', rate: 0, seconds: 60, count: connects, threads: 2, flags: { c: 9 } };
}

/** Fills the ring with the JS thread blocked, then times the addon and decoder draining it. */
export async function addonCeiling(ctx: CeilingContext): Promise<CeilingResult> {
  const ns = await BenchNetns.create(ctx.nsName('ceil-addon'), ctx.cleanup);
  // Every event through the ring: this measures the pipeline, not the kernel's event budget.
  const tracer = await openTracer({ netns: ns.path, ringBytes: CEILING_RING_BYTES, eventBudget: 0 });
  ctx.cleanup.add('ceiling tracer', () => tracer.close());
  try {
    let delivered = 0;
    let lastAt = 0;
    tracer.subscribe((batch) => {
      delivered += batch.length;
      lastAt = performance.now();
    });
    runLoadSync(ctx.loadgen, ns.name, storm(ctx.connects)); // blocks: nothing is drained meanwhile
    const { events, ringDrops } = tracer.counters().totals;
    const start = performance.now();
    const deadline = Date.now() + 60_000;
    while (delivered < events && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    const seconds = (lastAt - start) / 1000;
    return {
      path: 'addon',
      events,
      seconds,
      eventsPerSecond: delivered / seconds,
      ringDrops,
      lost: 0,
      delivered,
    };
  } finally {
    tracer.close();
    ctx.cleanup.remove('ceiling tracer');
    await ns.destroy();
  }
}

/**
 * The same through a `wstrace agent` process and gRPC to one subscriber here.
 * The agent is stopped while the ring fills; its subscriber queue is made
 * big enough to hold the backlog, so this measures throughput, not the
 * slow-subscriber policy.
 */
export async function grpcCeiling(ctx: CeilingContext): Promise<CeilingResult> {
  const ns = await BenchNetns.create(ctx.nsName('ceil-grpc'), ctx.cleanup);
  const agent = await AgentArm.start(
    {
      root: ctx.root,
      netns: ns.name,
      socket: `${ctx.tmpDir}/ceiling.sock`,
      ringBytes: CEILING_RING_BYTES,
      // Every event through the pipeline: a rate budget would measure the kernel's summaries instead.
      eventBudget: 0,
      // two events a connect, with room; the agent accepts at most 1,000,000
      subscriberQueue: Math.min(MAX_SUBSCRIBER_QUEUE, 2 * ctx.connects + 100_000),
    },
    ctx.cleanup,
  );
  try {
    const r = agent.received;
    if (ctx.warmConnects) {
      await runLoad(ctx.loadgen, ns.name, storm(ctx.warmConnects), ctx.cleanup);
      const warmed = emittedTotal(await agent.emitted());
      const until = Date.now() + 60_000;
      while (accountedTotal(r) < warmed && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
    }
    const delivered0 = r.delivered;
    const lostSlow0 = r.lostSlow;
    const before = await agent.emitted();
    agent.pause(true);
    await runLoad(ctx.loadgen, ns.name, storm(ctx.connects), ctx.cleanup);
    const emitted = await agent.emitted();
    const cpu0 = agent.cpuSeconds();
    const sub0 = process.cpuUsage();
    const start = performance.now();
    let lastAt = start;
    let seen = delivered0;
    agent.pause(false);
    const deadline = Date.now() + 120_000;
    while (accountedTotal(r) < emittedTotal(emitted) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 2));
      if (r.delivered !== seen) {
        seen = r.delivered;
        lastAt = performance.now();
      }
    }
    const seconds = (lastAt - start) / 1000;
    const cpu = agent.cpuSeconds() - cpu0;
    const sub = process.cpuUsage(sub0);
    const delivered = r.delivered - delivered0;
    return {
      path: 'grpc',
      agentCpuPer100k: delivered ? (cpu / delivered) * 1e5 : Number.NaN,
      subscriberCpuPer100k: delivered ? ((sub.user + sub.system) / 1e6 / delivered) * 1e5 : Number.NaN,
      events: emitted.events - before.events,
      seconds,
      eventsPerSecond: delivered / seconds,
      ringDrops: emitted.ringDrops - before.ringDrops,
      lost: r.lostSlow - lostSlow0,
      delivered,
      warmed: Boolean(ctx.warmConnects),
    };
  } finally {
    await agent.stop();
    await ns.destroy();
  }
}

/** Small ring for the loss check: 4096 records, so a held agent must drop. */
export const LOSS_RING_BYTES = 1 << 18;

export interface LossResult {
  readonly ringBytes: number;
  /** events + ringDrops, from the kernel's totals map. */
  readonly emitted: number;
  readonly ringDrops: number;
  readonly delivered: number;
  readonly reportedRing: number;
  readonly reportedSlow: number;
  /** (delivered + reported) ÷ emitted: 1 when every loss was reported. */
  readonly accounted: number;
}

/**
 * Delivery when the kernel ring overflows: an agent with a small ring is
 * stopped (SIGSTOP) while a storm runs, so the ring fills and the kernel
 * drops; once it runs again, the subscriber must get every event that made
 * it into the ring plus lost-event notices for the rest.
 */
export async function lossCheck(ctx: CeilingContext): Promise<LossResult> {
  const ns = await BenchNetns.create(ctx.nsName('loss'), ctx.cleanup);
  const agent = await AgentArm.start(
    // No rate budget: the storm must reach the small ring for it to overflow.
    { root: ctx.root, netns: ns.name, socket: `${ctx.tmpDir}/loss.sock`, ringBytes: LOSS_RING_BYTES, eventBudget: 0 },
    ctx.cleanup,
  );
  try {
    agent.pause(true);
    await runLoad(ctx.loadgen, ns.name, storm(Math.min(ctx.connects, 50_000)), ctx.cleanup);
    agent.pause(false);
    // The agent turns ring drops into notices on a 500 ms poll: settle waits for them.
    const emitted = await agent.settle(10_000);
    const r = agent.received;
    const total = emittedTotal(emitted);
    return {
      ringBytes: LOSS_RING_BYTES,
      emitted: total,
      ringDrops: emitted.ringDrops,
      delivered: r.delivered,
      reportedRing: r.lostKernelRing,
      reportedSlow: r.lostSlow,
      accounted: total ? accountedTotal(r) / total : 1,
    };
  } finally {
    await agent.stop();
    await ns.destroy();
  }
}
