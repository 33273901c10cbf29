/**
 * For the packaging test: a PATH like a production host's (every command of
 * this machine except compilers and build tools), and a command of an
 * installed tree run as a child whose output the test reads while it runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { onTestFinished } from 'vitest';
import { until } from './until.js';

/**
 * What a host without a toolchain lacks (C/C++ compilers, make, assemblers,
 * linkers, BPF tools), and the clone's own `wstrace` link: the test runs the
 * installed one, never that.
 */
const LEFT_OUT = /^(cc|c\+\+|c89.*|c99.*|gcc.*|g\+\+.*|clang.*|make|gmake|cmake|cpp.*|x86_64-linux-gnu-.*|ld|ld\..*|as|llc.*|llvm.*|bpftool|tcc|wstrace)$/;

/**
 * Fills `dir` with links to every command on the usual system paths except
 * the toolchain (and any wstrace already installed), and returns it as a
 * PATH: npm still finds sh, tar and node; a build step would find no compiler.
 */
export function pathWithoutCompilers(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const from of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!existsSync(from)) continue;
    for (const name of readdirSync(from)) {
      if (LEFT_OUT.test(name) || existsSync(join(dir, name))) continue;
      symlinkSync(join(from, name), join(dir, name));
    }
  }
  // The node running the tests, whichever directory it lives in.
  if (!existsSync(join(dir, 'node'))) symlinkSync(process.execPath, join(dir, 'node'));
  return dir;
}

export interface Command {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr shows `text`; fails if the command exits first, or after `timeoutMs`. */
  waitStderr(text: string | RegExp, timeoutMs?: number): Promise<string>;
  /** The exit code (or the signal that ended it), once its output is all read. */
  readonly closed: Promise<number | NodeJS.Signals>;
}

/** Starts argv[0] with the rest; killed at the end of the test if it still runs. */
export function spawnCommand(argv: string[], env: NodeJS.ProcessEnv): Command {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  let status: number | NodeJS.Signals | undefined;
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('close', (code, signal) => resolve((status = code ?? signal ?? -1))),
  );
  onTestFinished(async () => {
    if (status !== undefined) return;
    child.kill('SIGKILL');
    await closed;
  });
  const seen = (text: string | RegExp) => (typeof text === 'string' ? err.includes(text) : text.test(err));
  const name = `${basename(argv[0]!)} ${argv.slice(1).join(' ')}`;
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    closed,
    async waitStderr(text, timeoutMs = 30_000) {
      await until(() => err, { what: `\`${name}\` to print ${String(text)}`, accept: () => seen(text) || status !== undefined, timeoutMs });
      if (!seen(text)) throw new Error(`\`${name}\` exited (${String(status)}) before printing ${String(text)}: ${err}`);
      return err;
    },
  };
}
