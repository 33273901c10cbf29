/**
 * Where a number starts to matter. "over" means a limit was crossed or
 * something was dropped; "warn" means close enough to look at.
 */
import type { Level } from './view.js';

/** The kernel calls an accept queue full when it holds more than the limit (sk_acceptq_is_full). */
export function queueLevel(queue: number, limit: number): Level {
  if (queue > limit) return 'over';
  if (limit >= 4 && queue >= limit * 0.8) return 'warn';
  return 'ok';
}

/** Something was lost: any of it is worth seeing. */
export function dropLevel(...perSec: Array<number | undefined>): Level {
  return perSec.some((r) => r !== undefined && r > 0) ? 'over' : 'ok';
}

/** Happening at all is worth a look, not an alarm (full hits, syncookies). */
export function noticeLevel(perSec: number | undefined): Level {
  return perSec !== undefined && perSec > 0 ? 'warn' : 'ok';
}

export function fractionLevel(used: number, limit: number, warnAt = 0.8, overAt = 0.95): Level {
  if (!(limit > 0) || !Number.isFinite(limit)) return 'ok';
  const f = used / limit;
  if (f >= overAt) return 'over';
  if (f >= warnAt) return 'warn';
  return 'ok';
}

/** TIME_WAIT toward one destination holds one local port each: half the range is already a crowd. */
export function occupancyLevel(occupancy: number | undefined): Level {
  if (occupancy === undefined) return 'ok';
  if (occupancy >= 0.9) return 'over';
  if (occupancy >= 0.5) return 'warn';
  return 'ok';
}

export type MemState = 'normal' | 'above low' | 'pressure' | 'above high' | 'unknown';

/** net.ipv4.tcp_mem: below low no pressure, from pressure on the kernel moderates buffers, above high allocations fail. */
export function memState(pages: number | undefined, mem: { low: number; pressure: number; high: number } | undefined): {
  state: MemState;
  level: Level;
} {
  if (pages === undefined || mem === undefined) return { state: 'unknown', level: 'ok' };
  if (pages > mem.high) return { state: 'above high', level: 'over' };
  if (pages >= mem.pressure) return { state: 'pressure', level: 'over' };
  if (pages > mem.low) return { state: 'above low', level: 'warn' };
  return { state: 'normal', level: 'ok' };
}

/** Snapshots are polled about once a second; older than a few means the agent is slow or gone. */
export function sampleLevel(ageMs: number | undefined): Level {
  if (ageMs === undefined) return 'warn';
  if (ageMs > 10_000) return 'over';
  if (ageMs > 3_000) return 'warn';
  return 'ok';
}

export function worst(...levels: Level[]): Level {
  if (levels.includes('over')) return 'over';
  if (levels.includes('warn')) return 'warn';
  return 'ok';
}
