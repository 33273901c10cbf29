/**
 * One trial: a fresh namespace, one arm attached (nothing, a wstrace agent
 * with a subscriber at its default budget or with none, or bpftrace), the step's load, and every count the
 * report needs, read once the namespace has gone quiet.
 */
import { resetsReallyReceived, TraceInstance } from '../test/helpers/ftrace.js';
import { AgentArm, type Emitted, type Received } from './agent.js';
import { progStats, statsDelta, type ProgStats } from './bpfstats.js';
import { BpftraceArm } from './bpftrace.js';
import type { Cleanup } from './cleanup.js';
import type { Totals } from '../src/generated/wstrace/v1/tracer.js';
import { runLoad, type LoadResult, type LoadSpec } from './loadgen.js';
import { BenchNetns, sameActivity, type KernelCounts } from './netns.js';
import type { Arm, Step } from './plan.js';
import { CpuBusy, cpuSeconds } from './proc.js';

export interface WstraceCounts {
  readonly resetsSent: number;
  readonly resetsReceived: number;
  readonly timewait: number;
  readonly acceptEnqueued: number;
  readonly acceptQueueFull: number;
  readonly listenOverflows: number;
  readonly synDrops: number;
  readonly lostKernelRing: number;
  readonly mapFull: number;
  /** Program runs the kernel skipped as nested (recursion_misses of the agent's programs, every namespace): events in no count. */
  readonly skippedRuns: number;
}

export interface WstraceTrial {
  /** Exact counters, from the agent's Snapshot. */
  readonly counts: WstraceCounts;
  /** From the agent's BPF totals map (bpftool). */
  readonly emitted: Emitted;
  /** What the gRPC subscriber got. */
  readonly received: Received;
  /** Agent CPU (utime + stime) from just before the load to the end of the settle. */
  readonly agentCpuSeconds: number;
  readonly agentPeakRssBytes: number;
  /** True when the SYN-stage hook (tcp_conn_request) is live. */
  readonly synHookLive: boolean;
}

export interface Trial {
  readonly scenario: Step['scenario'];
  readonly step: string;
  readonly arm: Arm;
  readonly rep: number;
  readonly load: LoadResult;
  /** The second load, when the step has one. */
  readonly neighbour?: LoadResult;
  /** Kernel counters of the namespace, before the load and after the settle. */
  readonly before: KernelCounts;
  readonly after: KernelCounts;
  /** Busy fraction of all CPUs during the load (other work on the machine shows here). */
  readonly hostBusy: number;
  /**
   * CPU seconds spent during the load: by all CPUs (anything busy), by the arm's own process (the agent,
   * or bpftrace) and by the bench process, where the gRPC subscriber decodes what the agent sends.
   */
  readonly cpu: { readonly machine: number; readonly arm?: number; readonly subscriber: number };
  readonly wstrace?: WstraceTrial;
  /** Map totals bpftrace printed at exit (all namespaces: bpftrace has no namespace filter here). */
  readonly bpftrace?: Record<string, number>;
  /** Runs and run time of the arm's BPF programs over the load (all namespaces: the probes fire for all). */
  readonly bpf?: ProgStats;
  /** Steps with traceResetPorts: resets received by the kernel's own trace events, and what the trace lost. */
  readonly tracedResets?: { readonly received: number; readonly abortsOnData: number; readonly overruns: number };
}

export interface TrialContext {
  readonly root: string;
  readonly loadgen: string;
  readonly cleanup: Cleanup;
  readonly tmpDir: string;
  readonly bpftraceScript: string | undefined;
  readonly settleMs: number;
  /** Run before the timed load, untimed (Plan.warmup). */
  readonly warmup: LoadSpec | undefined;
  readonly nsName: (tag: string) => string;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

const TRACE_KEY = 'ftrace instance';

/** The kernel's tcp_receive_reset events on these ports and every tcp_send_reset, in a private instance. */
function openResetTrace(ctx: TrialContext, ports: readonly number[]): TraceInstance {
  const on = ports.map((p) => `sport == ${p} || dport == ${p}`).join(' || ');
  const trace = TraceInstance.open(`wstrace-bench-${process.pid}`, [
    { event: 'tcp/tcp_receive_reset', filter: on },
    { event: 'tcp/tcp_send_reset' },
  ]);
  ctx.cleanup.add(TRACE_KEY, () => trace.close());
  return trace;
}

function closeResetTrace(ctx: TrialContext, trace: TraceInstance, ports: readonly number[]): Trial['tracedResets'] {
  try {
    const lines = trace.lines();
    const sum = { received: 0, abortsOnData: 0, overruns: trace.overruns() };
    for (const port of ports) {
      const r = resetsReallyReceived(lines, port);
      sum.received += r.received;
      sum.abortsOnData += r.abortsOnData;
    }
    return sum;
  } finally {
    trace.close();
    ctx.cleanup.remove(TRACE_KEY);
  }
}

export async function runTrial(ctx: TrialContext, step: Step, arm: Arm, rep: number): Promise<Trial> {
  const ns = await BenchNetns.create(ctx.nsName(`${arm === 'wstrace-all' ? 'wall' : arm.slice(0, 4)}${rep}`), ctx.cleanup);
  const other = step.neighbourElsewhere ? await BenchNetns.create(ctx.nsName(`nb${rep}`), ctx.cleanup) : undefined;
  let agent: AgentArm | undefined;
  let bpftrace: BpftraceArm | undefined;
  try {
    if (arm === 'wstrace' || arm === 'wstrace-all') {
      // wstrace-all: no rate budget, so every event is a ring record sent to the subscriber (none summarised).
      const budget = arm === 'wstrace-all' ? { eventBudget: 0 } : {};
      agent = await AgentArm.start({ root: ctx.root, netns: ns.name, socket: `${ctx.tmpDir}/agent.sock`, ...budget }, ctx.cleanup);
    } else if (arm === 'bpftrace' && ctx.bpftraceScript) {
      bpftrace = await BpftraceArm.start(ctx.bpftraceScript, ctx.cleanup);
    }
    await pause(200); // let start-up work (JIT, first scans) die down before timing
    // The warm-up's counts are left out on both sides: the kernel's from `before`, wstrace's from `warm`.
    let warm: Totals | undefined;
    if (ctx.warmup) {
      await runLoad(ctx.loadgen, ns.name, ctx.warmup, ctx.cleanup);
      await ns.quiet();
      warm = agent ? (await agent.snapshot()).totals : undefined;
    }
    const trace = step.traceResetPorts ? openResetTrace(ctx, step.traceResetPorts) : undefined;
    const before = await ns.counts();
    const cpuStart = agent?.cpuSeconds() ?? 0;
    const probePid = agent?.pid ?? bpftrace?.pid;
    const bpfStart = probePid ? progStats(probePid) : undefined;
    const busy = new CpuBusy();
    const machine0 = CpuBusy.read();
    const armPid = agent?.pid ?? bpftrace?.pid;
    const arm0 = armPid ? cpuSeconds(armPid) : 0;
    const self0 = process.cpuUsage();
    const [load, neighbour] = await Promise.all([
      runLoad(ctx.loadgen, ns.name, step.load, ctx.cleanup),
      step.neighbour ? runLoad(ctx.loadgen, (other ?? ns).name, step.neighbour, ctx.cleanup) : undefined,
    ]);
    const hostBusy = busy.sample();
    const self = process.cpuUsage(self0);
    const cpu = {
      machine: CpuBusy.busySeconds(machine0, CpuBusy.read()),
      ...(armPid ? { arm: cpuSeconds(armPid) - arm0 } : {}),
      subscriber: (self.user + self.system) / 1e6,
    };
    const bpf = probePid && bpfStart ? statsDelta(bpfStart, progStats(probePid)) : undefined;

    // The last packets of the load may still be in flight (ksoftirqd on a busy machine).
    let after = await ns.quiet();
    const tracedResets = trace ? closeResetTrace(ctx, trace, step.traceResetPorts!) : undefined;
    let emitted: Emitted | undefined;
    let wstrace: WstraceTrial | undefined;
    if (agent) {
      // Read wstrace between two equal kernel readings, so both sides count the same traffic.
      let snap;
      for (let tries = 0; ; tries++) {
        emitted = await agent.settle(ctx.settleMs);
        snap = await agent.snapshot();
        const again = await ns.counts();
        if (sameActivity(after, again) || tries >= 5) break;
        after = await ns.quiet();
      }
      const t = since(snap.totals!, warm);
      emitted = await agent.emitted();
      const agentCpuSeconds = agent.cpuSeconds() - cpuStart;
      const agentPeakRssBytes = agent.peakRssBytes();
      const info = await agent.info();
      await agent.stop();
      wstrace = {
        counts: {
          resetsSent: t.resetsSent,
          resetsReceived: t.resetsReceived,
          timewait: t.timewait,
          acceptEnqueued: t.acceptEnqueued,
          acceptQueueFull: t.acceptQueueFull,
          listenOverflows: t.listenOverflows,
          synDrops: t.synDrops,
          lostKernelRing: t.lostKernelRing,
          mapFull: t.mapFull,
          skippedRuns: t.skippedRuns,
        },
        emitted,
        received: { ...agent.received },
        agentCpuSeconds,
        agentPeakRssBytes,
        synHookLive: info.hooks.some((h) => h.signalName === 'syn_drop' && h.attached),
      };
      agent = undefined;
    }
    const bpftraceTotals = bpftrace ? await bpftrace.stop() : undefined;
    bpftrace = undefined;
    return {
      scenario: step.scenario,
      step: step.label,
      arm,
      rep,
      load,
      ...(neighbour ? { neighbour } : {}),
      before,
      after,
      ...(tracedResets ? { tracedResets } : {}),
      hostBusy,
      cpu,
      ...(wstrace ? { wstrace } : {}),
      ...(bpftraceTotals ? { bpftrace: bpftraceTotals } : {}),
      ...(bpf ? { bpf } : {}),
    };
  } finally {
    await agent?.stop();
    await bpftrace?.stop();
    await ns.destroy();
    await other?.destroy();
  }
}

/** wstrace's totals since `warm` (the warm-up's left out), or as they are. */
function since(t: Totals, warm: Totals | undefined): Totals {
  if (!warm) return t;
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v - warm[k as keyof Totals]])) as unknown as Totals;
}
