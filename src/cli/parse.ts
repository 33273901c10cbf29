/** Flag parsers: each rejects bad input with one sentence (commander prints it). */
import { InvalidArgumentError } from 'commander';
import { isPort } from '../protocol/address.js';
import { EVENT_KINDS, type EventKind } from '../kernel/index.js';

export function parsePort(value: string, previous: number[] | undefined): number[] {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !isPort(n)) throw new InvalidArgumentError('a port is a number from 1 to 65535.');
  return [...(previous ?? []), n];
}

export function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('give a positive number of seconds.');
  return n;
}

export function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 1_000_000) throw new InvalidArgumentError('give a whole number from 1 to 1000000.');
  return n;
}

export function parseRingBytes(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 4096 || (n & (n - 1)) !== 0 || n > 2 ** 30) {
    throw new InvalidArgumentError('the ring size is a power of two from 4096 to 1073741824 bytes.');
  }
  return n;
}

export function parseKind(value: string, previous: EventKind[] | undefined): EventKind[] {
  if (!(EVENT_KINDS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`kinds are ${EVENT_KINDS.join(', ')}.`);
  }
  return [...(previous ?? []), value as EventKind];
}

/**
 * --since: an ISO 8601 time, or a duration back from now (90s, 5m, 2h, 1d),
 * as journalctl and kubectl take it. Returns milliseconds since the epoch.
 */
export function parseSince(value: string, now = Date.now()): number {
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value);
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return now - Number(rel[1]) * unit;
  }
  const t = Date.parse(value);
  if (/^\d{4}-\d\d-\d\d/.test(value) && Number.isFinite(t)) return t;
  throw new InvalidArgumentError('give a time like 2026-11-28T06:50:00Z or a duration back from now like 30s, 5m, 2h.');
}
