/** Runs one command inside a Debian kernel under qemu (vm/run.sh), for the kernel matrix. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Kernel series from vm/kernels.json ("5.10", "7.x", ...), oldest first. */
export function kernelIds(): string[] {
  return Object.keys(JSON.parse(readFileSync(join(HERE, 'kernels.json'), 'utf8')) as Record<string, unknown>);
}

/** The exact kernel a series resolved to when vm/fetch.sh last fetched it. */
export interface VmKernel {
  readonly series: string;
  /** What `uname -r` should say in the guest. */
  readonly release: string;
  /** The Debian packages it came from, the image first. */
  readonly packages: readonly { readonly name: string; readonly version: string }[];
}

export interface VmResult {
  /** The command's exit code; 125 when the guest died or timed out. */
  readonly exitCode: number;
  /** Everything the guest printed, line-buffered. */
  readonly output: string;
  /** The kernel booted; undefined when vm/run.sh stopped before booting one. */
  readonly kernel?: VmKernel;
}

const KERNEL_LINE = /^WSTRACE_VM_KERNEL (.*)$/m;

export function runInVm(id: string, command: string[], opts: { timeoutSec?: number } = {}): Promise<VmResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(HERE, 'run.sh'), ['--timeout', String(opts.timeoutSec ?? 300), id, '--', ...command], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = KERNEL_LINE.exec(output)?.[1];
      resolve({ exitCode: code ?? 125, output, ...(line ? { kernel: JSON.parse(line) as VmKernel } : {}) });
    });
  });
}
