/** Per-process facts from /proc: CPU time and peak RSS. */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

const TICKS_PER_SECOND = 100; // USER_HZ on every Linux ABI Node supports

/** utime + stime of a process, seconds (fields 14 and 15 of /proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Peak resident set size (VmHWM), bytes. */
export function peakRssBytes(pid: number): number {
  return statusKb(pid, 'VmHWM') * 1024;
}

/** Resident set size now (VmRSS), bytes. */
export function rssBytes(pid: number): number {
  return statusKb(pid, 'VmRSS') * 1024;
}

function statusKb(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  return kb ? Number(kb) : 0;
}

/** Busy fraction of all CPUs between two readings of /proc/stat. */
export class CpuBusy {
  private last = CpuBusy.read();

  static read(): { busy: number; total: number } {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  }

  /** CPU seconds all CPUs spent busy between two readings of {@link CpuBusy.read} (tick-sampled). */
  static busySeconds(from: { busy: number }, to: { busy: number }): number {
    return (to.busy - from.busy) / TICKS_PER_SECOND;
  }

  /** Busy fraction since the last call (or construction). */
  sample(): number {
    const now = CpuBusy.read();
    const d = now.total - this.last.total;
    const frac = d > 0 ? (now.busy - this.last.busy) / d : 0;
    this.last = now;
    return frac;
  }
}

export function loadAverage(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = loadavg();
  return [a, b, c];
}
