/**
 * The recorder's cost: `wstrace record --connect` to a real agent, through a
 * closed-port storm held in the kernel ring while the agent is stopped, then
 * released at once, so the recorder takes events as fast as the agent sends
 * them. Its CPU (utime + stime) from the release until the file stops
 * growing, per 100k events written, is the figure; the recorder writes the
 * agent's Watch bytes as they came (src/record/passthrough.ts), so this is
 * what a recording costs on top of the agent.
 */
import { spawn } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentArm, accountedTotal, emittedTotal } from './agent.js';
import { stopChild } from './cleanup.js';
import { BenchError } from './errors.js';
import { runLoad } from './loadgen.js';
import { BenchNetns } from './netns.js';
import { CEILING_RING_BYTES, type CeilingContext } from './pipeline.js';
import { cpuSeconds, peakRssBytes } from './proc.js';

export interface RecorderResult {
  /** Events the recorder said it wrote (its exit line), and events the kernel emitted. */
  readonly recorded: number;
  readonly emitted: number;
  /** From the agent's release until the file stopped growing. */
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** Recorder CPU over that time, per 100k events written. */
  readonly cpuPer100k: number;
  readonly peakRssBytes: number;
  readonly fileBytes: number;
}

const fileSize = (path: string): number => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

export async function recorderCost(ctx: CeilingContext): Promise<RecorderResult> {
  const ns = await BenchNetns.create(ctx.nsName('rec'), ctx.cleanup);
  const socket = `${ctx.tmpDir}/recorder.sock`;
  const file = join(ctx.tmpDir, `bench-${Date.now()}.wsr`);
  const agent = await AgentArm.start(
    // Every event through the pipeline, and a queue that holds the whole backlog: what is measured is the recorder.
    { root: ctx.root, netns: ns.name, socket, ringBytes: CEILING_RING_BYTES, eventBudget: 0, subscriberQueue: 1_000_000 },
    ctx.cleanup,
  );
  const argv = [join(ctx.root, 'bin', 'wstrace.js'), 'record', '--connect', `unix:${socket}`, '-o', file, '--max-size', '1T', '--rotate', '0'];
  const rec = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  ctx.cleanup.child(`recorder ${rec.pid}`, rec);
  let said = '';
  rec.stderr!.setEncoding('utf8').on('data', (d: string) => (said += d));
  const exited = new Promise<void>((resolve) => rec.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + 20_000;
    while (!said.includes('recording into')) {
      if (rec.exitCode !== null || Date.now() > deadline) throw new BenchError(`wstrace record did not start: ${said.trim()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    agent.pause(true);
    await runLoad(ctx.loadgen, ns.name, { mode: 'rst', rate: 0, seconds: 60, count: ctx.connects, threads: 2, flags: { c: 9 } }, ctx.cleanup);
    const emitted = emittedTotal(await agent.emitted());
    const cpu0 = cpuSeconds(rec.pid!);
    const start = performance.now();
    agent.pause(false);
    // Done when the bench's own subscriber has everything and the file has not grown for 300 ms.
    let size = fileSize(file);
    let grewAt = performance.now();
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      const now = fileSize(file);
      if (now !== size) {
        size = now;
        grewAt = performance.now();
      } else if (accountedTotal(agent.received) >= emitted && performance.now() - grewAt > 300) break;
    }
    const cpu = cpuSeconds(rec.pid!) - cpu0;
    const seconds = (grewAt - start) / 1000;
    const peak = peakRssBytes(rec.pid!);
    await stopChild(rec, 'SIGINT', 10_000);
    await exited;
    const recorded = Number(/recorded (\d+) events/.exec(said)?.[1] ?? NaN);
    if (!Number.isFinite(recorded)) throw new BenchError(`wstrace record did not say what it recorded: ${said.trim()}`);
    return {
      recorded,
      emitted,
      seconds,
      eventsPerSecond: recorded / seconds,
      cpuPer100k: (cpu / recorded) * 1e5,
      peakRssBytes: peak,
      fileBytes: fileSize(file),
    };
  } finally {
    await stopChild(rec, 'SIGKILL', 1000);
    rmSync(file, { force: true });
    await agent.stop();
    await ns.destroy();
  }
}
