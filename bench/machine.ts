/** The machine a run was made on, as the report states it. */
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { CpuBusy, loadAverage } from './proc.js';

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryBytes: number;
  readonly kernel: string;
  readonly node: string;
  readonly loadBefore: [number, number, number];
  loadAfter: [number, number, number];
  /** Busy fraction of all CPUs over one second before the run started. */
  readonly busyOutsideBench: number;
}

function cpuModel(): string {
  const fromCpuinfo = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return (fromCpuinfo ?? cpus()[0]?.model ?? 'unknown').trim();
}

export async function describeMachine(): Promise<Machine> {
  const busy = new CpuBusy();
  await new Promise((r) => setTimeout(r, 1000));
  return {
    cpus: cpus().length,
    cpuModel: cpuModel(),
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.versions.node,
    loadBefore: loadAverage(),
    loadAfter: loadAverage(),
    busyOutsideBench: busy.sample(),
  };
}
