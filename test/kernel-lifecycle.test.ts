/** What is left behind: nothing, after close(), kill -9, or a refused start. */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describeKernel, ROOT, waitProgramsGone } from './helpers/kernel.js';

const TSX = ['--import', 'tsx'];

describeKernel('tracer lifecycle', () => {
  it('kill -9 of a process holding the tracer leaves no wstrace program loaded', async () => {
    const child = spawn(process.execPath, [...TSX, join(ROOT, 'test/helpers/hold-tracer.ts')], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const ids = JSON.parse(line.toString()) as number[];
      // This kernel's: resets sent/received, timewait (which also starts listeners for syn_drop), accept queue,
      // ACK-stage overflow, syn_drop's tracepoint route (6: a packet's start, its two packet-end programs each twice, SYN-ACK retransmits), and the loader's per-CPU offset program (run, not attached).
      expect(ids).toHaveLength(12);
      child.kill('SIGKILL');
      await once(child, 'exit');
      expect(await waitProgramsGone(ids)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

it('without CAP_BPF/CAP_SYS_ADMIN, watch says so in one sentence and exits 1', () => {
  const cli = [process.execPath, join(ROOT, 'bin/wstrace.js'), 'watch', '--json', '--duration', '1'];
  // Root with an empty bounding set has no capabilities after exec; others have none anyway.
  const argv = process.getuid?.() === 0 ? ['setpriv', '--bounding-set=-all', ...cli] : cli;
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: ROOT, timeout: 20_000 });
  expect(r.status).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.trim()).toBe(
    'wstrace: not permitted to load BPF programs: run wstrace with sudo (or grant it CAP_BPF and CAP_PERFMON).',
  );
});
