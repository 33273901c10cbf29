/** `wstrace watch` as a user runs it: the built command, real traffic, its stdout and stderr. */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, spawnCli, type CliProcess } from './helpers/cli.js';
import { describeKernel, heldProgramIds, loadedPrograms, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { until } from './helpers/until.js';

/**
 * The BPF programs a running watch holds, once it says it is live; checked to
 * be wstrace's own (names start with wst_), so "gone" later means something.
 */
async function liveWatchPrograms(w: CliProcess): Promise<number[]> {
  await w.waitStderr('live:');
  const ids = heldProgramIds(w.pid);
  expect(ids.length).toBeGreaterThan(0);
  const loaded = loadedPrograms();
  expect(ids.map((id) => loaded.get(id)).filter((name) => !name?.startsWith('wst_'))).toEqual([]);
  return ids;
}

describeKernel('wstrace watch --json', () => {
  let ns: TestNetns;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-watch');
  });
  afterAll(() => ns?.destroy());

  it('prints one JSON object per event with the contract fields, and hooks on stderr', async () => {
    const w = spawnCli(['watch', '--json', '--duration', '60', '--netns', ns.name, '--port', '7301', '--port', '7302']);
    // Wait for the start line: the hooks are attached by then.
    await w.waitStderr('live:');
    await ns.traffic('closed-port', 3, 7301);
    await ns.traffic('timewait', 2, 7302);
    await ns.traffic('closed-port', 2, 7399); // filtered out by --port
    // Stopped by the user once the traffic is done (a busy machine can be slow: no fixed duration).
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);

    const lines = w.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const sent = lines.filter((l) => l.kind === 'reset_sent');
    expect(sent).toHaveLength(3);
    expect(sent[0]).toMatchObject({
      kind: 'reset_sent',
      family: 'ipv4',
      laddr: '127.0.0.1',
      lport: 7301,
      raddr: '127.0.0.1',
      netns: ns.inode(),
      reason: 'NO_SOCKET',
    });
    expect(String(sent[0]!.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Math.abs(Date.parse(String(sent[0]!.time)) - Date.now())).toBeLessThan(60_000);
    expect(lines.filter((l) => l.kind === 'timewait' && l.rport === 7302)).toHaveLength(2);
    expect(lines.some((l) => l.lport === 7399 || l.rport === 7399)).toBe(false);
    const err = w.stderr();
    expect(err).toMatch(/live: .*reset_sent \((?:tp_btf|raw_tp) tcp_send_reset\)/);
    expect(err).toMatch(/3 resets sent/);
    expect(err).toMatch(/0 lost in the kernel ring/);
  });

  it('--duration stops it by itself, exit 0, and detaches', async () => {
    const w = spawnCli(['watch', '--json', '--duration', '1', '--netns', ns.name]);
    const ids = await liveWatchPrograms(w);
    expect(await w.closed).toBe(0);
    expect(w.stderr()).toMatch(/0 events printed/);
    expect(await waitProgramsGone(ids)).toEqual([]);
  });

  it('stops on SIGINT with exit 0 and detaches', async () => {
    const w = spawnCli(['watch', '--netns', ns.name]);
    const ids = await liveWatchPrograms(w);
    await ns.traffic('closed-port', 1, 7303);
    await until(() => w.stdout(), { what: 'the reset printed', accept: (out) => out.includes(':7303') });
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);
    expect(w.stderr()).toMatch(/1 resets sent/);
    expect(await waitProgramsGone(ids)).toEqual([]);
  });

  it('stops when its reader goes away (| head) and detaches', async () => {
    const w = spawnCli(['watch', '--json', '--netns', ns.name]);
    const ids = await liveWatchPrograms(w);
    w.child.stdout!.destroy(); // the reader is gone: the next write fails with EPIPE
    await ns.traffic('closed-port', 3, 7304);
    expect(await w.closed).toBe(0);
    expect(w.stderr()).toMatch(/3 resets sent/);
    expect(await waitProgramsGone(ids)).toEqual([]);
  });
});

it.each([
  [['watch', '--port', 'http'], /option '--port <n>' argument 'http' is invalid\. a port is a number from 1 to 65535\./],
  [['watch', '--duration', '-3'], /give a positive number of seconds/],
  [['watch', '--netns', 'no-such-ns-here'], /network namespace "no-such-ns-here" not found/],
  [['watch', '--bogus'], /unknown option '--bogus'/],
  [['frobnicate'], /unknown command 'frobnicate'/],
])('bad input %j: one clear sentence, exit 1', (args, message) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 });
  expect(r.status).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
});
