/**
 * `wstrace doctor` in a test namespace: values equal /proc, a listener capped
 * by a low somaxconn and overflowing fails with the fix line, and that fix,
 * applied in the namespace, makes the overflow stop.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { startAgent } from '../src/agent/agent.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';

const CLI = join(ROOT, 'bin/wstrace.js');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function doctor(args: string[]): { code: number; json: Any; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--json', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, json: r.stdout ? (JSON.parse(r.stdout) as Any) : undefined, stderr: r.stderr };
}

describeKernel('wstrace doctor', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-doctor');
    dir = mkdtempSync(join(tmpdir(), 'wst-doctor-'));
    execFileSync('ip', ['netns', 'exec', ns.name, 'sysctl', '-qw', 'net.core.somaxconn=4']);
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a listener capped by somaxconn and overflowing fails with the fix; the fix applied stops the overflow', async () => {
    const k0 = ns.nstat();
    // backlog 128 asked, somaxconn 4 given; 10 clients; nobody accepts for 4 s.
    const load = ns.traffic('full-queue', 7901, 128, 10, 4);
    await new Promise((r) => setTimeout(r, 1500));
    const d = doctor(['--netns', ns.path, '--port', '7901', '--write', join(dir, '90-wstrace.conf')]);
    await load;
    expect(delta(ns.nstat(), k0, 'TcpExtListenOverflows')).toBeGreaterThan(0);
    expect(d.code).toBe(2);
    const f = d.json.findings.find((x: Any) => x.check.startsWith('listener 127.0.0.1:7901'));
    expect(f.status).toBe('fail');
    expect(f.value).toMatch(/limit 4 \(= somaxconn\)/);
    const fix = (f.fix as string[]).find((l) => l.startsWith('net.core.somaxconn = '))!;
    const n = Number(fix.split(' = ')[1]);
    expect(n).toBeGreaterThanOrEqual(10);
    expect(readFileSync(join(dir, '90-wstrace.conf'), 'utf8')).toContain(fix);

    // Apply the printed line in the namespace: the same load no longer overflows.
    execFileSync('ip', ['netns', 'exec', ns.name, 'sysctl', '-qw', `net.core.somaxconn=${n}`]);
    const k1 = ns.nstat();
    const again = ns.traffic('full-queue', 7902, 128, 10, 3);
    await new Promise((r) => setTimeout(r, 1500));
    const d2 = doctor(['--netns', ns.path, '--port', '7902']);
    await again;
    expect(delta(ns.nstat(), k1, 'TcpExtListenOverflows')).toBe(0);
    const f2 = d2.json.findings.find((x: Any) => x.check.startsWith('listener 127.0.0.1:7902'));
    expect(f2.status).not.toBe('fail'); // still capped by somaxconn (warn), but no longer full
    expect(f2.value).toMatch(new RegExp(`limit ${Math.min(128, n)}`));
  });

  it('runs on the agent over gRPC (Doctor RPC) with the queue peaks the agent saw', async () => {
    const agent = await startAgent({ listen: { kind: 'unix', path: join(dir, 'agent.sock') }, tracer: { netns: ns.path } });
    try {
      execFileSync('ip', ['netns', 'exec', ns.name, 'sysctl', '-qw', 'net.core.somaxconn=4']);
      const load = ns.traffic('full-queue', 7904, 128, 10, 3);
      await new Promise((r) => setTimeout(r, 1500));
      const d = await new Promise<{ code: number; json: Any }>((resolve) => {
        const child = spawn(process.execPath, [CLI, 'doctor', '--json', '--connect', `unix:${join(dir, 'agent.sock')}`, '--port', '7904'], { cwd: ROOT });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', (code) => resolve({ code: code ?? -1, json: JSON.parse(out) as Any }));
      });
      await load;
      expect(d.code).toBe(2);
      expect(d.json.scope).toContain(ns.path);
      const f = d.json.findings.find((x: Any) => x.check.startsWith('listener 127.0.0.1:7904'));
      expect(f.status).toBe('fail');
      expect(f.evidence).toMatch(/drops seen by the agent/);
    } finally {
      await agent.close();
    }
  });

  it('reports the values /proc shows in the namespace, in a stable JSON shape', async () => {
    await ns.traffic('timewait', 7, 7903);
    const d = doctor(['--netns', ns.path]);
    expect([0, 1, 2]).toContain(d.code);
    expect(Object.keys(d.json).sort()).toEqual(['findings', 'host', 'kernel', 'scope', 'status']);
    for (const f of d.json.findings) {
      expect(Object.keys(f).sort()).toEqual(['area', 'check', 'evidence', 'fix', 'limits', 'status', 'value']);
      expect(['ok', 'warn', 'fail']).toContain(f.status);
      expect(Array.isArray(f.fix)).toBe(true);
    }
    const read = (p: string) => execFileSync('ip', ['netns', 'exec', ns.name, 'cat', p], { encoding: 'utf8' }).trim();
    const tw = d.json.findings.find((x: Any) => x.check === 'net.ipv4.tcp_max_tw_buckets');
    expect(tw.value).toContain(`${ns.sockstatTcp().tw} TIME_WAIT of ${read('/proc/sys/net/ipv4/tcp_max_tw_buckets')}`);
    const ports = d.json.findings.find((x: Any) => x.check.startsWith('ip_local_port_range'));
    expect(ports.value).toContain('7 TIME_WAIT to 127.0.0.1:7903');
    const syn = d.json.findings.find((x: Any) => x.check === 'net.ipv4.tcp_max_syn_backlog');
    expect(syn.value).toBe(read('/proc/sys/net/ipv4/tcp_max_syn_backlog'));
  });
});

it('doctor: a bad flag is one sentence and exit 3, apart from the check results', () => {
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--pid', 'abc'], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status).toBe(3);
  expect(r.stderr).toMatch(/option '--pid <pid>' argument 'abc' is invalid/);
});
