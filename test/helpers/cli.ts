/**
 * The built `wstrace` command run as a user runs it, as a child process whose
 * output the test reads while it runs: to wait for what it says ("listening
 * on", "live:"), and for its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { ROOT } from './kernel.js';
import { until } from './until.js';

export const CLI = join(ROOT, 'bin/wstrace.js');

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with stderr once it shows `text`; fails if the command exits first, or after `timeoutMs`. */
  waitStderr(text: string | RegExp, timeoutMs?: number): Promise<string>;
  /** The exit code (or the signal that ended it), once it has exited and its output is all read. */
  readonly closed: Promise<number | NodeJS.Signals>;
  /** The same, right now: undefined while it runs. */
  exitStatus(): number | NodeJS.Signals | undefined;
}

/** Starts the command; called inside a test, which kills it at its end if it still runs. */
export function spawnCli(args: string[], opts: { stdout?: 'pipe' | 'ignore'; env?: NodeJS.ProcessEnv } = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'], env: opts.env ?? process.env });
  let out = '';
  let err = '';
  let status: number | NodeJS.Signals | undefined;
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('close', (code, signal) => resolve((status = code ?? signal ?? -1))),
  );
  // A test that fails half-way must not leave a tracer running: killed when the test ends, unless gone already.
  onTestFinished(async () => {
    if (status !== undefined) return;
    child.kill('SIGKILL');
    await closed;
  });
  const seen = (text: string | RegExp) => (typeof text === 'string' ? err.includes(text) : text.test(err));
  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    closed,
    exitStatus: () => status,
    async waitStderr(text, timeoutMs = 30_000) {
      await until(() => err, {
        what: `\`wstrace ${args.join(' ')}\` to print ${String(text)} on stderr`,
        accept: () => seen(text) || status !== undefined,
        timeoutMs,
      });
      if (!seen(text)) throw new Error(`\`wstrace ${args.join(' ')}\` exited (${String(status)}) before printing ${String(text)}: ${err}`);
      return err;
    },
  };
}
