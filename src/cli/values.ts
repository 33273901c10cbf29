/**
 * What a flag's value may be: each a zod schema from the text a user typed to
 * the value a command runs with. Its message is the one sentence a user reads
 * after "option '--x <v>' argument 'y' is invalid." (see flags.ts).
 */
import { z } from 'zod';
import { WINDOWS, type WindowSec } from '../aggregate/index.js';
import { isPort, parseListen } from '../protocol/address.js';
import { MAX_OLDER_PARTS, MAX_PART_BYTES, MIN_PART_BYTES } from '../record/writer.js';
import { MAX_PID } from '../doctor/gather.js';
import { MAX_DURATION_SEC } from './signals.js';
import { EVENT_KINDS, type EventKind } from '../signals/event.js';

/** A value read by `read`, which returns undefined for text it does not accept. */
function value<T>(message: string, read: (text: string) => T | undefined) {
  return z.string().transform((text, ctx) => {
    const v = read(text);
    if (v !== undefined) return v;
    ctx.addIssue({ code: 'custom', message, input: text });
    return z.NEVER;
  });
}

const whole = (text: string): number | undefined => (/^\d+$/.test(text) ? Number(text) : undefined);

export const port = value('a port is a number from 1 to 65535.', (t) => {
  const n = whole(t);
  return isPort(n) ? n : undefined;
});

/** A --duration: past MAX_DURATION_SEC (or 1e308) it would be no bound, and timers misread it as none at all. */
export const seconds = value(`give a positive number of seconds, at most ${MAX_DURATION_SEC} (30 days).`, (t) => {
  const n = Number(t);
  return n > 0 && n <= MAX_DURATION_SEC ? n : undefined;
});

function wholeIn(min: number, max: number, message: string) {
  return value(message, (t) => {
    const n = whole(t);
    return n !== undefined && n >= min && n <= max ? n : undefined;
  });
}

export const count = wholeIn(1, 1_000_000, 'give a whole number from 1 to 1000000.');

const SIZE_UNITS = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 } as const;

/** A size as `head -c` and `truncate` write it: bytes, or a whole number with K, M, G or T (powers of 1024). */
export function sizeBytes(text: string): number | undefined {
  const m = /^(\d{1,16})(?:([KMGT])(?:i?B)?|B)?$/i.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toUpperCase() as keyof typeof SIZE_UNITS];
}

/** record --max-size: from the writer's smallest useful part (1 MiB) to 1 TiB. */
export const partBytes = value('give a size from 1M to 1T: a number of bytes, or one with K, M, G or T (powers of 1024).', (t) => {
  const n = sizeBytes(t);
  return n !== undefined && n >= MIN_PART_BYTES && n <= MAX_PART_BYTES ? n : undefined;
});

/** record --rotate: 0 stops at the cap instead of rotating. */
export const olderParts = wholeIn(0, MAX_OLDER_PARTS, `give a whole number of older parts from 0 to ${MAX_OLDER_PARTS}.`);

export const ringBytes = value('the ring size is a power of two from 4096 to 1073741824 bytes.', (t) => {
  const n = Number(t);
  return Number.isInteger(n) && n >= 4096 && (n & (n - 1)) === 0 && n <= 2 ** 30 ? n : undefined;
});

/** --event-budget: events per second sent in full; 0 sends every event (no budget). */
export const eventBudget = wholeIn(0, 1_000_000_000, 'give a whole number of events per second from 0 (every event) to 1000000000.');

export const kind = value(`kinds are ${EVENT_KINDS.join(', ')}.`, (t) =>
  (EVENT_KINDS as readonly string[]).includes(t) ? (t as EventKind) : undefined,
);

/**
 * --since: an ISO 8601 time, or a duration back from now (90s, 5m, 2h, 1d),
 * as journalctl and kubectl take it. Milliseconds since the epoch.
 */
export function sinceTime(text: string, now = Date.now()): number | undefined {
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return now - Number(rel[1]) * unit;
  }
  const t = Date.parse(text);
  return /^\d{4}-\d\d-\d\d/.test(text) && Number.isFinite(t) ? t : undefined;
}

/** Between 1970 and now: earlier cannot be sent as microseconds, later holds nothing to replay yet. */
export const since = value('give a time like 2026-11-28T06:50:00Z or a duration back from now like 30s, 5m, 2h.', (t) => {
  const ms = sinceTime(t);
  return ms !== undefined && ms >= 0 && ms <= Date.now() ? ms : undefined;
});

/** doctor --pid: what the kernel could hand out (pid_max at most 2^22). */
export const pid = wholeIn(1, MAX_PID, `a pid is a whole number from 1 to ${MAX_PID}.`);

export const window = value('the window is 1, 10 or 60 seconds.', (t) => {
  const n = Number(t.replace(/s$/, ''));
  return (WINDOWS as readonly number[]).includes(n) ? (n as WindowSec) : undefined;
});

export const speed = value('the speed is a number from 0.1 to 1000 (like 2 or 10x).', (t) => {
  const n = Number(t.replace(/x$/, ''));
  return Number.isFinite(n) && n > 0 && n <= 1000 ? n : undefined;
});

/** One --connect of top: agent addresses, comma-separated, each parsed now (a feed would retry a typo forever). */
export const agentList = value('give one or more agent addresses: unix:/PATH or tcp://HOST:PORT, comma-separated.', (t) => {
  const list = t
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const parses = (a: string) => {
    try {
      parseListen(a);
      return true;
    } catch {
      return false;
    }
  };
  return list.length && list.every(parses) ? list : undefined;
});

/** A flag given any number of times; none gives an empty list. */
export function repeated<T extends z.ZodType>(one: T) {
  return z.array(one).default([]);
}
