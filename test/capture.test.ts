/**
 * Captures with the real tcpdump on loopback, in a test network namespace:
 * a rule fires once for a reset storm and the file holds the resets and the
 * seconds before; bounds, refusals, injection attempts and a missing tcpdump.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { validateTarget, filterExpression } from '../src/capture/filter.js';
import { parseRules } from '../src/capture/rules.js';
import { connectAgent, type EventSource } from '../src/client/connect.js';
import { describeKernel, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

function rstLines(file: string, port: number): string[] {
  const out = execFileSync('tcpdump', ['-nr', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter((l) => /Flags \[R/.test(l) && l.includes(`.${port}`));
}

describeKernel('captures (real tcpdump, loopback, test netns)', () => {
  let ns: TestNetns;
  let dir: string;
  let agent: RunningAgent;
  let client: EventSource;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-capture');
    dir = mkdtempSync(join(tmpdir(), 'wst-capture-'));
    const rules = join(dir, 'rules.conf');
    execFileSync('sh', ['-c', `printf '%s\\n' '# test rules' 'storm: resets port 7701 above 20/s for 1s capture for 3s' > ${rules}`]);
    agent = await startAgent({
      listen: { kind: 'unix', path: join(dir, 'agent.sock') },
      tracer: { netns: ns.path, ports: [7701, 7702, 7703] },
      captures: { dir: join(dir, 'caps'), rulesFile: rules, preSec: 3, limits: { maxRunning: 1, cooldownSec: 60 } },
    });
    client = connectAgent({ kind: 'unix', path: join(dir, 'agent.sock') });
  });

  afterAll(async () => {
    client?.close();
    await agent?.close();
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a reset storm fires the rule once; the pcap has the resets and the seconds before the trigger', async () => {
    // About 100 connects/s (200 events/s) for 4 s: the rule (20/s for 1 s) fires; the cooldown keeps it to one.
    await ns.traffic('closed-port', 400, 7701, '127.0.0.1', 25, 0.25);
    const caps = await until(() => client.listCaptures!(), {
      what: 'the storm rule\'s capture to be done',
      accept: (l) => l.some((c) => c.rule === 'storm' && c.state === 'done'),
      timeoutMs: 30_000,
    });
    const fired = caps.filter((c) => c.rule === 'storm');
    expect(fired.filter((c) => c.state !== 'refused')).toHaveLength(1);
    const cap = fired.find((c) => c.state === 'done')!;
    expect(cap.endedBy).toBe('duration');
    expect(cap.filter).toBe('tcp and port 7701');
    expect(rstLines(cap.file, 7701).length).toBeGreaterThan(0);
    expect(cap.preSec).toBe(3);
    expect(Number(cap.prePackets)).toBeGreaterThan(0);
    // Root-only files and directory, and a sidecar saying what fired.
    expect(statSync(join(dir, 'caps')).mode & 0o777).toBe(0o700);
    expect(statSync(cap.file).mode & 0o777).toBe(0o600);
    const side = JSON.parse(readFileSync(`${cap.file}.json`, 'utf8')) as Record<string, unknown>;
    expect(side).toMatchObject({ state: 'done', trigger: { kind: 'rule', rule: 'storm' }, endedBy: 'duration' });
    expect((side.counters as { resetSent: number }).resetSent).toBeGreaterThan(0);
    expect(statSync(`${cap.file}.json`).mode & 0o777).toBe(0o600);
  });

  it('bounds: duration ends a capture, a second one at once is refused (at most one running), bytes end one', async () => {
    await until(() => client.listCaptures!(), { what: 'no capture running', accept: (l) => l.every((c) => c.state !== 'running') });
    const first = await client.startCapture!({ port: 7702, durationSec: 2 });
    expect(first.state).toBe('running');
    const second = await client.startCapture!({ port: 7702, durationSec: 2 });
    expect(second.state).toBe('refused');
    expect(second.error).toMatch(/at most 1/);
    const done = await until(() => client.listCaptures!(), {
      what: 'the first capture to end by its duration',
      accept: (l) => l.find((c) => c.id === first.id)?.state === 'done',
    });
    expect(done.find((c) => c.id === first.id)!.endedBy).toBe('duration');

    const big = await client.startCapture!({ port: 7703, durationSec: 20, bytes: 3000 });
    await ns.traffic('closed-port', 200, 7703);
    const after = await until(() => client.listCaptures!(), {
      what: 'the byte-bounded capture to end',
      accept: (l) => l.find((c) => c.id === big.id)?.state === 'done',
    });
    const b = after.find((c) => c.id === big.id)!;
    expect(b.endedBy).toBe('bytes');
    expect(Number(b.bytes)).toBeLessThan(3000 + 64 * 1024);
  });

  it('injection attempts are refused before anything runs', async () => {
    const before = (await client.listCaptures!()).length;
    for (const bad of [
      { port: 7702, host: '127.0.0.1 or port 22' },
      { port: 7702, host: '$(reboot)' },
      { port: 7702, direction: 'src or dst' },
      { host: '' },
    ]) {
      await expect(client.startCapture!(bad)).rejects.toThrow(/is not an IP address|is not src or dst|needs a port or a host/);
    }
    expect((await client.listCaptures!()).length).toBe(before);
  });
});

describeKernel('captures without tcpdump', () => {
  it('are refused in one sentence and the agent keeps serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wst-notcpdump-'));
    const agent = await startAgent({
      listen: { kind: 'unix', path: join(dir, 'a.sock') },
      tracer: { ports: [7799] },
      captures: { dir: join(dir, 'caps') },
    });
    const client = connectAgent({ kind: 'unix', path: join(dir, 'a.sock') });
    const path = process.env.PATH;
    try {
      process.env.PATH = '/nonexistent'; // the agent looks tcpdump up on its PATH at each capture
      const c = await client.startCapture!({ port: 7799 });
      process.env.PATH = path;
      expect(c.state).toBe('refused');
      expect(c.error).toBe('tcpdump is not installed: run `apt-get install tcpdump` on the agent host.');
      expect((await client.info()).pid).toBe(process.pid);
    } finally {
      process.env.PATH = path;
      client.close();
      await agent.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('capture filters and rules (no kernel)', () => {
  it('builds filters only from validated parts', () => {
    expect(filterExpression(validateTarget({ port: 443, host: '::1', direction: 'dst' }))).toBe('tcp and dst port 443 and dst host ::1');
    expect(() => validateTarget({ port: 443, host: 'example.com' })).toThrow('capture host "example.com" is not an IP address.');
    expect(() => validateTarget({ port: '443; id' })).toThrow(/is not a TCP port/);
  });

  it('parses rules and names the line of any mistake', () => {
    const rules = parseRules('a: resets port 443 above 100/s for 2s capture for 10s\n\n# c\nb: listen_overflow capture\nc: timewait_dest above 80% capture', 'r.conf');
    expect(rules.map((r) => [r.name, r.signal, r.port, r.ratePerSec, r.forSec, r.captureSec, r.percent])).toEqual([
      ['a', 'resets', 443, 100, 2, 10, undefined],
      ['b', 'listen_overflow', undefined, undefined, 1, undefined, undefined],
      ['c', 'timewait_dest', undefined, undefined, 1, undefined, 80],
    ]);
    expect(() => parseRules('a: resets capture\nb: resets port http capture', 'r.conf')).toThrow('r.conf:2: "http" after "port" is not a port (1-65535).');
    expect(() => parseRules('x: floods capture', 'r.conf')).toThrow(/r.conf:1: "floods" is not a signal/);
    expect(() => parseRules('x: resets above 5/s', 'r.conf')).toThrow('r.conf:1: a rule ends with "capture" (optionally "capture for 10s").');
  });
});
