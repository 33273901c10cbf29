/** How a command that runs until stopped learns it should stop, and how long it may run. */

/**
 * Every signal that asks a command to stop: Ctrl-C, `kill`/systemd stop, and
 * the terminal or ssh session going away. Each gets the same clean stop
 * (BPF detached, private socket removed, exit 0) instead of the default
 * death that leaves those behind.
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface StopSignals {
  /** Resolves at the first stop signal. */
  readonly stopped: Promise<void>;
  /** Whether one came already. */
  received(): boolean;
  /** Stops catching them (the command is done). */
  off(): void;
}

/**
 * Catches the stop signals from now until off(): called first thing, so a
 * signal while the agent loads still ends in the clean stop, and a second
 * one during that stop does not cut it short.
 */
export function catchStopSignals(): StopSignals {
  let got = false;
  let resolve!: () => void;
  const stopped = new Promise<void>((r) => (resolve = r));
  const on = () => {
    got = true;
    resolve();
  };
  for (const s of STOP_SIGNALS) process.on(s, on);
  return { stopped, received: () => got, off: () => STOP_SIGNALS.forEach((s) => process.off(s, on)) };
}

/** Resolves at the first stop signal; for a command that then exits anyway. */
export function signalStop(): Promise<void> {
  return catchStopSignals().stopped;
}

/** The longest --duration: 30 days, past which a bound is no bound. */
export const MAX_DURATION_SEC = 30 * 86_400;

/** setTimeout's ceiling (2^31-1 ms, under 25 days); a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fn` after `seconds` (up to MAX_DURATION_SEC), in steps setTimeout
 * can hold. Returns the cancel.
 */
export function afterSeconds(seconds: number, fn: () => void): () => void {
  const end = Date.now() + seconds * 1000;
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = end - Date.now();
    timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(fn, Math.max(0, left));
  };
  arm();
  return () => clearTimeout(timer);
}
