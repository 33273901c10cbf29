/** `wstrace watch` as a user runs it: the built command, real traffic, its stdout and stderr. */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';

const CLI = join(ROOT, 'bin/wstrace.js');

describeKernel('wstrace watch --json', () => {
  let ns: TestNetns;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-watch');
  });
  afterAll(() => ns?.destroy());

  it('prints one JSON object per event with the contract fields, and hooks on stderr', async () => {
    const child = spawn(
      process.execPath,
      [CLI, 'watch', '--json', '--duration', '60', '--netns', ns.name, '--port', '7301', '--port', '7302'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Wait for the start line: the hooks are attached by then.
    while (!stderr.includes('live:')) await once(child.stderr, 'data');
    await ns.traffic('closed-port', 3, 7301);
    await ns.traffic('timewait', 2, 7302);
    await ns.traffic('closed-port', 2, 7399); // filtered out by --port
    // Stopped by the user once the traffic is done (a busy machine can be slow: no fixed duration).
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);

    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
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
    expect(stderr).toMatch(/live: .*reset_sent \(raw_tp tcp_send_reset\)/);
    expect(stderr).toMatch(/3 resets sent/);
    expect(stderr).toMatch(/0 lost in the kernel ring/);
  });

  it('--duration stops it by itself, exit 0', async () => {
    const r = spawnSync(process.execPath, [CLI, 'watch', '--json', '--duration', '1', '--netns', ns.name], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/0 events printed/);
  });

  it('stops on SIGINT with exit 0 and detaches', async () => {
    const child = spawn(process.execPath, [CLI, 'watch', '--netns', ns.name], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    while (!stderr.includes('live:')) await once(child.stderr, 'data');
    await ns.traffic('closed-port', 1, 7303);
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
    expect(stderr).toMatch(/1 resets sent/);
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
