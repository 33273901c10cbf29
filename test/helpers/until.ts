/**
 * The one way tests wait: for a condition, bounded, never for a fixed time.
 * A loaded machine outruns any constant sleep, and a generous one slows every
 * run on a quiet machine; polling a condition is as fast as the machine allows
 * and says, when it gives up, what it was waiting for and what it last saw.
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

export interface UntilOptions<T> {
  /** What is awaited, as the failure message should name it ("the agent's socket"). */
  readonly what: string;
  /** Give up after this long; generous by default (two shared cores, other tests running). */
  readonly timeoutMs?: number;
  /** Pause between two looks. */
  readonly everyMs?: number;
  /** Decides whether the value is the one awaited; without it, any truthy value is. */
  readonly accept?: (value: T) => boolean;
}

type Truthy<T> = Exclude<T, false | 0 | 0n | '' | null | undefined>;

const GAVE_UP = Symbol('gave up');

/**
 * Calls `condition` (sync or async) until it returns a truthy value, or one
 * `accept` takes, and resolves with that value. A condition that throws has
 * not held yet (a file not written yet, an expect() not met yet). On timeout
 * it rejects with what was awaited and the last value or error seen.
 */
export function until<T>(condition: () => T, opts: UntilOptions<Awaited<T>> & { accept: (value: Awaited<T>) => boolean }): Promise<Awaited<T>>;
export function until<T>(condition: () => T, opts: UntilOptions<Awaited<T>>): Promise<Truthy<Awaited<T>>>;
export async function until<T>(condition: () => T, opts: UntilOptions<Awaited<T>>): Promise<Awaited<T>> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const everyMs = opts.everyMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } | undefined;
  let looks = 0;
  for (;;) {
    looks++;
    try {
      // A probe that hangs (a stuck RPC) must not outlive the deadline either.
      const value = await beforeDeadline(Promise.resolve().then(condition), deadline);
      last = { value };
      if (opts.accept ? opts.accept(value) : value) return value;
    } catch (error) {
      if (error === GAVE_UP) break;
      last = { error };
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(everyMs, left)));
  }
  const seen =
    last === undefined
      ? 'nothing (the first look never finished)'
      : 'error' in last
        ? `error: ${show(last.error instanceof Error ? last.error.message : last.error)}`
        : `value: ${show(last.value)}`;
  throw new Error(`timed out after ${timeoutMs} ms (${looks} looks) waiting for ${opts.what}; last ${seen}`);
}

function beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(GAVE_UP), Math.max(0, deadline - Date.now()));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function show(v: unknown): string {
  const text = typeof v === 'string' ? (v.includes('\n') ? `\n${v}` : JSON.stringify(v)) : inspect(v, { depth: 4, breakLength: 120 });
  return text.length > 4000 ? `${text.slice(0, 4000)}… (${text.length} characters)` : text;
}

/** Whether a process is gone (exited and reaped, or a zombie nobody has reaped yet). */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
