/**
 * The wstrace arm: a real `wstrace agent --netns` process and one gRPC
 * subscriber in this process, counting what it receives. What the kernel
 * side emitted is read from the agent's own BPF totals map with bpftool, not
 * through the agent, so the agent cannot grade its own delivery. Beyond the
 * agent's rate budget events come as summary rows: delivery is events
 * received + events in summary rows + losses reported = emitted.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectAgent, type EventSource } from '../src/client/connect.js';
import { LostReason, type GetInfoResponse, type SnapshotResponse } from '../src/generated/wstrace/v1/tracer.js';
import { COUNTER_INDEX } from '../src/kernel/layout.js';
import { stopChild, type Cleanup } from './cleanup.js';
import { BenchError } from './errors.js';
import { cpuSeconds, peakRssBytes } from './proc.js';

const run = promisify(execFile);

export interface AgentOptions {
  readonly root: string;
  readonly netns: string;
  readonly socket: string;
  readonly ringBytes?: number;
  readonly subscriberQueue?: number;
  /** --event-budget; the agent's default when absent, 0 to send every event (what measures the event path). */
  readonly eventBudget?: number;
  /** Serve Prometheus metrics on a free loopback port (`metricsUrl` names it). */
  readonly metrics?: boolean;
}

/** What one subscriber got: events, events counted in summary rows, and losses the agent told it about. */
export interface Received {
  delivered: number;
  summarised: number;
  /** Lost in the kernel: ring full, or beyond the budget with the summary table full. */
  lostKernelRing: number;
  lostSlow: number;
  ended: boolean;
}

/**
 * The kernel side's own tally: records written to the ring, reserve
 * failures, events counted in summary rows beyond the budget, and those
 * that found no summary row.
 */
export interface Emitted {
  readonly events: number;
  readonly ringDrops: number;
  readonly summarised: number;
  readonly summaryLost: number;
}

/** Everything the kernel side emitted: sent, dropped, summarised or lost with the summary table full. */
export function emittedTotal(e: Emitted): number {
  return e.events + e.ringDrops + e.summarised + e.summaryLost;
}

/** What a subscriber accounted for: received one by one or in summary rows, or told lost. */
export function accountedTotal(r: Received): number {
  return r.delivered + r.summarised + r.lostKernelRing + r.lostSlow;
}

export class AgentArm {
  readonly received: Received = { delivered: 0, summarised: 0, lostKernelRing: 0, lostSlow: 0, ended: false };
  private source: EventSource | undefined;
  private streamDone: Promise<void> = Promise.resolve();
  private totalsMapId: number | undefined;
  /** http://127.0.0.1:PORT/metrics, when started with `metrics`. */
  metricsUrl: string | undefined;

  private constructor(
    readonly process: ChildProcess,
    private readonly opts: AgentOptions,
  ) {}

  get pid(): number {
    return this.process.pid!;
  }

  /** Starts the agent, waits until it listens, and subscribes (follow, no filter). */
  static async start(opts: AgentOptions, cleanup: Cleanup): Promise<AgentArm> {
    const args = [join(opts.root, 'bin', 'wstrace.js'), 'agent', '--netns', opts.netns, '--listen', `unix:${opts.socket}`];
    if (opts.ringBytes) args.push('--ring-bytes', String(opts.ringBytes));
    if (opts.subscriberQueue) args.push('--subscriber-queue', String(opts.subscriberQueue));
    if (opts.eventBudget !== undefined) args.push('--event-budget', String(opts.eventBudget));
    if (opts.metrics) args.push('--metrics', '127.0.0.1:0');
    // e.g. BENCH_AGENT_NODE_FLAGS="--cpu-prof --cpu-prof-dir=build/bench/prof" to profile every agent
    const nodeFlags = (process.env.BENCH_AGENT_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
    const child = spawn(process.execPath, [...nodeFlags, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    cleanup.child(`agent ${child.pid}`, child);
    const arm = new AgentArm(child, opts);
    await new Promise<void>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new BenchError(`wstrace agent did not start within 20 s: ${err.trim()}`)), 20_000);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        // The whole line: it also names the metrics port (port 0 was asked for).
        if (/listening on [^\n]*\n/.test(err)) {
          arm.metricsUrl = /metrics on (http:\/\/\S+\/metrics)/.exec(err)?.[1];
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new BenchError(`wstrace agent exited (${code}) at start: ${err.trim()}`));
      });
    });
    await arm.subscribe();
    arm.totalsMapId = findTotalsMap(arm.pid);
    return arm;
  }

  private async subscribe(): Promise<void> {
    const source = connectAgent(`unix:${this.opts.socket}`);
    this.source = source;
    const stream = source.watch({ follow: true });
    const r = this.received;
    let following: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (following = resolve));
    this.streamDone = (async () => {
      for await (const msg of stream) {
        const m = msg.response;
        if (!m) continue;
        if (m.$case === 'batch') r.delivered += m.value.events.length;
        else if (m.$case === 'summaries') for (const s of m.value.summaries) r.summarised += s.count;
        else if (m.$case === 'lost') {
          const kernel = m.value.reason === LostReason.LOST_REASON_KERNEL_RING_FULL || m.value.reason === LostReason.LOST_REASON_SUMMARY_TABLE_FULL;
          if (kernel) r.lostKernelRing += m.value.count;
          else r.lostSlow += m.value.count;
        } else if (m.$case === 'status') {
          // The first status comes once the agent has added this subscriber.
          following();
          if (m.value.end) r.ended = true;
        }
      }
    })();
    this.streamDone.catch(() => undefined);
    await Promise.race([
      ready,
      this.streamDone.then(() => {
        throw new BenchError('the agent ended the Watch stream before following');
      }),
      new Promise((_, reject) => setTimeout(() => reject(new BenchError('the agent did not answer Watch within 10 s')), 10_000)),
    ]);
  }

  /** events, ringDrops, summarised and summaryLost from the kernel map, summed over CPUs. */
  async emitted(): Promise<Emitted> {
    if (this.totalsMapId === undefined) throw new BenchError("cannot find the agent's BPF totals map (is bpftool installed?)");
    return readEmitted(this.totalsMapId);
  }

  snapshot(): Promise<SnapshotResponse> {
    return this.source!.snapshot();
  }

  info(): Promise<GetInfoResponse> {
    return this.source!.info();
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  peakRssBytes(): number {
    return peakRssBytes(this.pid);
  }

  /**
   * Waits until the subscriber has accounted for everything emitted (delivered
   * or reported lost) and the kernel tally has stopped moving, or `timeoutMs`.
   */
  async settle(timeoutMs: number): Promise<Emitted> {
    const deadline = Date.now() + timeoutMs;
    let prev = await this.emitted();
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await this.emitted();
      const stable = emittedTotal(now) === emittedTotal(prev);
      if ((stable && accountedTotal(this.received) >= emittedTotal(now)) || Date.now() > deadline) return now;
      prev = now;
    }
  }

  /** SIGTERM: the agent flushes the ring, reports losses, ends the stream with a status, exits. */
  async stop(): Promise<void> {
    await stopChild(this.process, 'SIGTERM', 5000);
    await Promise.race([this.streamDone.catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    this.source?.close();
  }

  /** Freezes the agent (the kernel ring keeps filling) or lets it run again. */
  pause(on: boolean): void {
    this.process.kill(on ? 'SIGSTOP' : 'SIGCONT');
  }
}

/** A process's per-CPU `totals` map (the BPF side's own tally), found among its file descriptors. */
export function findTotalsMap(pid: number): number | undefined {
  const dir = `/proc/${pid}/fdinfo`;
  for (const fd of readdirSync(dir)) {
    let info: string;
    try {
      info = readFileSync(join(dir, fd), 'utf8');
    } catch {
      continue;
    }
    const id = /^map_id:\s+(\d+)/m.exec(info)?.[1];
    // BPF_MAP_TYPE_PERCPU_ARRAY = 6
    if (!id || !/^map_type:\s+6$/m.test(info)) continue;
    try {
      const shown = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'id', id], { encoding: 'utf8' })) as {
        name?: string;
      };
      if (shown.name === 'totals') return Number(id);
    } catch {
      // not readable: try the next one
    }
  }
  return undefined;
}

/** Records written to the ring, reserve failures and summarised events, from a `totals` map, summed over CPUs. */
export async function readEmitted(totalsMapId: number): Promise<Emitted> {
  const { stdout } = await run('bpftool', ['-j', 'map', 'dump', 'id', String(totalsMapId)]);
  const entries = JSON.parse(stdout) as Array<{ key: string[]; values: Array<{ value: string[] }> }>;
  const sum = (index: number): number => {
    const e = entries.find((x) => parseInt(x.key[0]!, 16) === index);
    if (!e) return 0;
    let total = 0;
    for (const v of e.values) {
      // u64 little-endian, as hex bytes
      let n = 0;
      for (let i = v.value.length - 1; i >= 0; i--) n = n * 256 + parseInt(v.value[i]!, 16);
      total += n;
    }
    return total;
  };
  return {
    events: sum(COUNTER_INDEX.events),
    ringDrops: sum(COUNTER_INDEX.ringDrops),
    summarised: sum(COUNTER_INDEX.summarised),
    summaryLost: sum(COUNTER_INDEX.summaryLost),
  };
}
