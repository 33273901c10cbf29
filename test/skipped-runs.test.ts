/**
 * Runs the kernel skipped as nested (bpf_prog_info.recursion_misses) are
 * events in no count: a user comparing wstrace's totals with the kernel's
 * counters must see how many there were, in the Snapshot beside the other
 * losses. The kernel cannot be made to skip on demand, so the real addon is
 * wrapped to add a known number to what the kernel reports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgent } from '../src/agent/agent.js';
import { connectAgent } from '../src/client/connect.js';
import { loadBinding, type Binding, type NativeTracer } from '../src/kernel/binding.js';
import { describeKernel, TestNetns } from './helpers/kernel.js';

const EXTRA = 7;

describeKernel('skipped runs in the Snapshot', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-skipped');
    dir = mkdtempSync(join(tmpdir(), 'wst-skipped-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("Snapshot totals carry the runs the kernel skipped, as the tracer reads them", async () => {
    const real = loadBinding();
    const binding: Binding = {
      ...real,
      open(options) {
        const native = real.open(options);
        return new Proxy(native, {
          get(target, key) {
            if (key === 'skippedRuns') return () => target.skippedRuns() + EXTRA;
            const v = Reflect.get(target, key, target) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }) as NativeTracer;
      },
    };
    const path = join(dir, 'agent.sock');
    const agent = await startAgent({ listen: { kind: 'unix', path }, tracer: { binding, resolveOwners: false, netns: ns.path } });
    const source = connectAgent({ kind: 'unix', path });
    try {
      const snap = await source.snapshot();
      const now = agent.tracer.skippedRuns();
      expect(snap.totals!.skippedRuns).toBeGreaterThanOrEqual(EXTRA);
      expect(snap.totals!.skippedRuns).toBeLessThanOrEqual(now);
    } finally {
      source.close();
      await agent.close();
    }
  });
});
