/**
 * In-kernel cost of the BPF programs a process holds, from the kernel's own
 * accounting (kernel.bpf_stats_enabled): run count and nanoseconds per
 * program, read from /proc/PID/fdinfo of the program fds. This splits the
 * wstrace arm's overhead into what the probes cost in the kernel and what
 * the agent and its subscriber cost in user space, and puts bpftrace's
 * probes on the same scale.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';

const SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

export interface ProgStats {
  /** Program runs, all programs summed. */
  readonly runs: number;
  /** Nanoseconds spent in them (stats on only). */
  readonly ns: number;
}

/**
 * Turns run-time stats on for the whole run (they cost a clock read per
 * program run, in every traced arm alike); the old value comes back at
 * clean-up. Returns false when the kernel refuses.
 */
export function enableBpfStats(cleanup: Cleanup): boolean {
  let old: string;
  try {
    old = readFileSync(SYSCTL, 'utf8').trim();
    if (old !== '1') writeFileSync(SYSCTL, '1');
  } catch {
    return false;
  }
  if (old !== '1') cleanup.add('bpf_stats_enabled', () => writeFileSync(SYSCTL, old));
  return true;
}

/** Run counts and time of every BPF program `pid` holds an fd to (each program once). */
export function progStats(pid: number): ProgStats {
  const dir = `/proc/${pid}/fdinfo`;
  const seen = new Set<string>();
  let runs = 0;
  let ns = 0;
  let fds: string[];
  try {
    fds = readdirSync(dir);
  } catch {
    return { runs, ns };
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(join(dir, fd), 'utf8');
    } catch {
      continue;
    }
    const id = /^prog_id:\s+(\d+)/m.exec(info)?.[1];
    const cnt = /^run_cnt:\s+(\d+)/m.exec(info)?.[1];
    // Link fds name their program too, without the stats: count program fds only.
    if (!id || cnt === undefined || seen.has(id)) continue;
    seen.add(id);
    runs += Number(cnt);
    ns += Number(/^run_time_ns:\s+(\d+)/m.exec(info)?.[1] ?? 0);
  }
  return { runs, ns };
}

export function statsDelta(a: ProgStats, b: ProgStats): ProgStats {
  return { runs: b.runs - a.runs, ns: b.ns - a.ns };
}
