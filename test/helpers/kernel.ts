/**
 * Shared by the kernel tests: whether this process can load BPF, a network
 * namespace per test file (so the kernel's MIB counters there are the
 * referee), and the traffic generator run inside it.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { until } from './until.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function bpfBlocker(): string | undefined {
  const caps = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  const eff = BigInt(`0x${caps}`);
  const has = (bit: bigint) => (eff & (1n << bit)) !== 0n;
  if (!has(21n) && !(has(38n) && has(39n))) return 'this process lacks CAP_SYS_ADMIN or CAP_BPF+CAP_PERFMON (run the tests as root)';
  if (!has(12n)) return 'this process lacks CAP_NET_ADMIN, needed to create test network namespaces';
  try {
    readFileSync('/sys/kernel/btf/vmlinux', { flag: 'r' }).subarray(0, 1);
  } catch {
    return 'this kernel has no BTF at /sys/kernel/btf/vmlinux';
  }
  return undefined;
}

export const BPF_BLOCKER = bpfBlocker();

/**
 * describe() for tests that load BPF. They skip only when BPF cannot load,
 * and say why; with WSTRACE_REQUIRE_KERNEL=1 (set by .ci/run) they fail instead.
 */
export function describeKernel(name: string, body: () => void): void {
  if (BPF_BLOCKER && process.env.WSTRACE_REQUIRE_KERNEL === '1') {
    describe(name, () => {
      throw new Error(`kernel tests are required here but cannot run: ${BPF_BLOCKER}`);
    });
    return;
  }
  describe.skipIf(BPF_BLOCKER !== undefined)(
    BPF_BLOCKER ? `${name} [skipped: ${BPF_BLOCKER}]` : name,
    body,
  );
}

export { TestNetns } from './netns.js';

/** Every BPF program loaded on this machine: id -> name. */
export function loadedPrograms(): Map<number, string> {
  const out = execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' });
  return new Map((JSON.parse(out) as Array<{ id: number; name?: string }>).map((p) => [p.id, p.name ?? '']));
}

/** IDs of the BPF programs some link attaches on this machine. */
export function linkedProgramIds(): Set<number> {
  const out = execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' });
  return new Set((JSON.parse(out) as Array<{ prog_id: number }>).map((l) => l.prog_id));
}

/** IDs of every BPF program loaded on this machine. */
export function loadedProgramIds(): Set<number> {
  return new Set(loadedPrograms().keys());
}

/** BPF programs a process holds open, from its fdinfo: what bpftool would list for it. */
export function heldProgramIds(pid: number): number[] {
  const ids: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:bpf-prog') continue;
      const m = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.push(Number(m[1]));
    } catch {
      // that fd was closed meanwhile
    }
  }
  return ids;
}

/**
 * Resolves with [] once none of `ids` is loaded (the kernel frees programs
 * asynchronously after the last fd closes); fails naming the ones left.
 */
export async function waitProgramsGone(ids: number[], timeoutMs = 20_000): Promise<number[]> {
  return until(() => ids.filter((id) => loadedProgramIds().has(id)), {
    what: `BPF programs ${ids.join(', ')} to be unloaded`,
    accept: (left) => left.length === 0,
    timeoutMs,
    everyMs: 100,
  });
}

export function delta(after: Record<string, number>, before: Record<string, number>, key: string): number {
  return (after[key] ?? 0) - (before[key] ?? 0);
}
