/**
 * `wstrace doctor` in test namespaces, where the sysctls are known defaults
 * or set by the test, so each run has one exit code it must give: a listener
 * capped by a low somaxconn and overflowing fails with the fix line (2), and
 * that fix, applied, makes the overflow stop (1: still capped); a fresh
 * namespace warns only about its keepalive default (1); a TIME_WAIT limit set
 * below what is in use fails (2); bad usage is 3.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { startAgent } from '../src/agent/agent.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, spawnCli } from './helpers/cli.js';
import { tracerClient, unary } from './helpers/grpc.js';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function doctor(args: string[]): { code: number; json: Any; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--json', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, json: r.stdout ? (JSON.parse(r.stdout) as Any) : undefined, stderr: r.stderr };
}

const finding = (d: { json: Any }, check: string): Any => d.json.findings.find((x: Any) => x.check.startsWith(check));
/** The findings that are not ok, as [status, check, fix], leaving out the hooks line (what this kernel lets BPF attach to). */
const notOk = (d: { json: Any }) =>
  d.json.findings.filter((f: Any) => f.status !== 'ok' && f.check !== 'hooks').map((f: Any) => [f.status, f.check, f.fix]);

describeKernel('wstrace doctor', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-doctor');
    dir = mkdtempSync(join(tmpdir(), 'wst-doctor-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const somaxconn = (n: number) => execFileSync('ip', ['netns', 'exec', ns.name, 'sysctl', '-qw', `net.core.somaxconn=${n}`]);
  /** Waits until `ss` shows the listener on `port` holding `queue` connections: what doctor then reads. */
  const queued = (port: number, queue: number) =>
    until(() => ns.acceptQueue(port), {
      what: `${queue} connections in the accept queue of 127.0.0.1:${port}`,
      accept: (q) => q?.queue === queue,
    });

  it('a listener capped by somaxconn and overflowing fails with the fix; the fix applied stops the overflow', async () => {
    somaxconn(4);
    const k0 = ns.nstat();
    // backlog 128 asked, somaxconn 4 given; 10 clients; nobody accepts for 6 s.
    // The kernel queues one over the limit (5), then drops.
    const load = ns.traffic('full-queue', 7901, 128, 10, 6);
    await queued(7901, 5);
    const d = doctor(['--netns', ns.path, '--port', '7901', '--write', join(dir, '90-wstrace.conf')]);
    await load;
    expect(delta(ns.nstat(), k0, 'TcpExtListenOverflows')).toBeGreaterThan(0);
    expect(d.code, d.stderr).toBe(2);
    const f = finding(d, 'listener 127.0.0.1:7901');
    expect(f.status).toBe('fail');
    expect(f.value).toBe('queue 5 now, peak 5, limit 4 (= somaxconn)');
    // Twice the deepest queue seen.
    expect(f.fix[0]).toBe('net.core.somaxconn = 10');
    expect(readFileSync(join(dir, '90-wstrace.conf'), 'utf8')).toContain('\nnet.core.somaxconn = 10\n');

    // Apply the printed line in the namespace: the same load no longer overflows.
    somaxconn(10);
    const k1 = ns.nstat();
    const again = ns.traffic('full-queue', 7902, 128, 10, 6);
    await queued(7902, 10);
    const d2 = doctor(['--netns', ns.path, '--port', '7902']);
    await again;
    expect(delta(ns.nstat(), k1, 'TcpExtListenOverflows')).toBe(0);
    // Still capped by somaxconn (a warning), but no longer full: no failure.
    expect(d2.code, d2.stderr).toBe(1);
    const f2 = finding(d2, 'listener 127.0.0.1:7902');
    expect(f2.status).toBe('warn');
    expect(f2.value).toBe('queue 10 now, peak 10, limit 10 (= somaxconn)');
  });

  it('runs on the agent over gRPC (Doctor RPC) with the queue peaks the agent saw', async () => {
    const sock = join(dir, 'agent.sock');
    const agent = await startAgent({ listen: { kind: 'unix', path: sock }, tracer: { netns: ns.path } });
    const client = tracerClient(`unix://${sock}`);
    try {
      somaxconn(4);
      const load = ns.traffic('full-queue', 7904, 128, 10, 6);
      // The agent's own counters must have seen the queue over its limit.
      await until(async () => (await unary<Any>(client, 'snapshot')).listeners.find((l: Any) => l.port === 7904), {
        what: "the agent's Snapshot to show 127.0.0.1:7904 over its limit",
        accept: (l) => l !== undefined && l.peak > l.backlog,
      });
      const run = spawnCli(['doctor', '--json', '--connect', `unix:${sock}`, '--port', '7904']);
      const code = await run.closed;
      await load;
      expect(code, run.stderr()).toBe(2);
      const d = { json: JSON.parse(run.stdout()) as Any };
      expect(d.json.scope).toContain(ns.path);
      const f = finding(d, 'listener 127.0.0.1:7904');
      expect(f.status).toBe('fail');
      expect(f.evidence).toMatch(/; \d+ drops seen by the agent$/); // the agent's peaks were used
    } finally {
      client.close();
      await agent.close();
    }
  });

  it('a fresh namespace: the values /proc shows there, in a stable JSON shape; only the keepalive default warns', async () => {
    const fresh = await TestNetns.create('wst-doctor-fresh');
    try {
      await fresh.traffic('timewait', 7, 7903);
      const d = doctor(['--netns', fresh.path]);
      expect(d.code, d.stderr).toBe(1);
      expect(Object.keys(d.json).sort()).toEqual(['findings', 'host', 'kernel', 'scope', 'status']);
      expect(d.json.status).toBe('warn');
      for (const f of d.json.findings) {
        expect(Object.keys(f).sort()).toEqual(['area', 'check', 'evidence', 'fix', 'limits', 'status', 'value']);
        expect(['ok', 'warn', 'fail']).toContain(f.status);
        expect(Array.isArray(f.fix)).toBe(true);
      }
      // A new namespace's tcp_keepalive_time is the kernel default, 7200 s.
      expect(notOk(d)).toEqual([['warn', 'net.ipv4.tcp_keepalive_time', ['net.ipv4.tcp_keepalive_time = 300', '# the capacity manual suggests 300 s']]]);
      const read = (p: string) => execFileSync('ip', ['netns', 'exec', fresh.name, 'cat', p], { encoding: 'utf8' }).trim();
      expect(finding(d, 'net.ipv4.tcp_max_tw_buckets').value).toBe(
        `7 TIME_WAIT of ${read('/proc/sys/net/ipv4/tcp_max_tw_buckets')}; overflows since boot 0`,
      );
      expect(fresh.sockstatTcp().tw).toBe(7);
      expect(finding(d, 'ip_local_port_range').value).toMatch(/^7 TIME_WAIT to 127\.0\.0\.1:7903 of \d+ ports \(0%\)$/);
      expect(finding(d, 'net.ipv4.tcp_max_syn_backlog').value).toBe(read('/proc/sys/net/ipv4/tcp_max_syn_backlog'));

      // Set what two checks look at: keepalive to what the fix says, the TIME_WAIT limit below the 7 in use.
      await fresh.exec('sysctl', ['-qw', 'net.ipv4.tcp_keepalive_time=300', 'net.ipv4.tcp_max_tw_buckets=4']);
      const d2 = doctor(['--netns', fresh.path]);
      expect(d2.code, d2.stderr).toBe(2);
      expect(d2.json.status).toBe('fail');
      expect(notOk(d2)).toEqual([['fail', 'net.ipv4.tcp_max_tw_buckets', ['net.ipv4.tcp_max_tw_buckets = 14']]]);
      expect(finding(d2, 'net.ipv4.tcp_keepalive_time')).toMatchObject({ status: 'ok', value: '300 s', fix: [] });
    } finally {
      await fresh.destroy();
    }
  });

  it('a --write file it cannot create is bad usage: one sentence, exit 3', () => {
    const d = doctor(['--netns', ns.path, '--write', join(dir, 'no-such-dir', 'x.conf')]);
    expect(d.code).toBe(3);
    expect(d.stderr).toBe(`wstrace: cannot write ${join(dir, 'no-such-dir', 'x.conf')}: ENOENT.\n`);
  });
});

it.each([
  [['--pid', 'abc'], /^error: option '--pid <pid>' argument 'abc' is invalid/],
  [['--port', '70000'], /^error: option '--port <n>' argument '70000' is invalid\. a port is a number from 1 to 65535\./],
  [['--bogus'], /^error: unknown option '--bogus'/],
  [['extra'], /^error: too many arguments for 'doctor'/],
  [['--connect', 'unix:/nonexistent.sock', '--netns', '/run/netns/x'], /^wstrace: --netns is the agent's choice with --connect: start the agent with --netns\.\n$/],
])('doctor %j: bad usage is one sentence and exit 3, apart from the check results', (args, message) => {
  const r = spawnSync(process.execPath, [CLI, 'doctor', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  expect(r.status).toBe(3);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});
