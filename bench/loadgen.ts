/**
 * The load generator (bench/loadgen.c), compiled at bench time with the
 * system C compiler into build/bench/wsload, and run inside a namespace.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { BenchError } from './errors.js';

export type LoadMode = 'rst' | 'churn' | 'slowaccept' | 'ackstage';

/** What one generator run did, as it printed it. */
export interface LoadResult {
  readonly mode: LoadMode;
  /** Operations done: connects, drops built, ... per mode. */
  readonly ops: number;
  /** From the first op to the last. */
  readonly seconds: number;
  /** ops / seconds: the achieved rate. */
  readonly rate: number;
  /** Target rate, 0 for "as fast as possible". */
  readonly target: number;
  readonly threads: number;
  /** The generator's own CPU time (user + system, all threads). */
  readonly cpuSeconds: number;
  readonly refused: number;
  readonly linger0: number;
  readonly closes: number;
  readonly connects: number;
  readonly accepted: number;
  readonly cycles: number;
  readonly errors: number;
  readonly lastError: string;
}

export interface LoadSpec {
  readonly mode: LoadMode;
  /** ops/s over all threads; 0 = unpaced. */
  readonly rate: number;
  readonly seconds: number;
  readonly count: number;
  readonly threads?: number;
  /** Extra wsload flags (-l, -D, -b, -a, -L, -H, -W). */
  readonly flags?: Record<string, number>;
}

function compilers(): string[] {
  return [process.env.CC, 'cc', 'gcc', 'clang'].filter((c): c is string => !!c);
}

/** Builds build/bench/wsload from bench/loadgen.c when the source is newer. */
export function buildLoadgen(root: string): string {
  const src = join(root, 'bench', 'loadgen.c');
  const outDir = join(root, 'build', 'bench');
  const out = join(outDir, 'wsload');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(outDir, { recursive: true });
  for (const cc of compilers()) {
    try {
      execFileSync(cc, ['-O2', '-Wall', '-pthread', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
      return out;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new BenchError(`compiling bench/loadgen.c with ${cc} failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
    }
  }
  throw new BenchError('no C compiler found for the load generator: install gcc (sudo apt-get install gcc) or set CC.');
}

export function loadArgs(spec: LoadSpec): string[] {
  const args = [spec.mode, '-r', String(spec.rate), '-d', String(spec.seconds), '-n', String(spec.count)];
  args.push('-t', String(spec.threads ?? 1));
  for (const [flag, value] of Object.entries(spec.flags ?? {})) args.push(`-${flag}`, String(value));
  return args;
}

/** Runs the generator inside `netns` (ip netns exec execs it, so the pid is the generator's). */
export function runLoad(bin: string, netns: string, spec: LoadSpec, cleanup: Cleanup): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, bin, ...loadArgs(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanup.child(`load ${child.pid}`, child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    // 'close', not 'exit': the generator's last line may still be in the pipe when it exits.
    child.on('close', (code, signal) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new BenchError(`the load generator failed (${signal ?? `exit ${code}`}): ${err.trim() || out.trim()}`));
        return;
      }
      resolve(JSON.parse(line) as LoadResult);
    });
  });
}

/** The same, blocking this process (the pipeline test wants the JS thread held while the ring fills). */
export function runLoadSync(bin: string, netns: string, spec: LoadSpec): LoadResult {
  const out = execFileSync('ip', ['netns', 'exec', netns, bin, ...loadArgs(spec)], {
    encoding: 'utf8',
    timeout: (spec.seconds + 30) * 1000,
  });
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as LoadResult;
}
