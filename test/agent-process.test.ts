/**
 * `wstrace agent` as its own process, as a service runs it: clients that read
 * slowly, SIGTERM, TLS, and the CLI clients `watch --connect` and `info`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgent } from '../src/agent/agent.js';
import { CLI, spawnCli, type CliProcess } from './helpers/cli.js';
import { collect, eventsOf, following, grpc, stuckWatch, tracerClient, unary, type WireMessage } from './helpers/grpc.js';
import { LostReason, WatchRequest, WatchResponse } from '../src/generated/wstrace/v1/tracer.js';
import { delta, describeKernel, heldProgramIds, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { makePki } from './helpers/pki.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Starts `wstrace agent` and resolves once it says it is listening. */
async function spawnAgent(args: string[]): Promise<CliProcess> {
  const agent = spawnCli(['agent', ...args], { stdout: 'ignore' });
  await agent.waitStderr('listening on');
  return agent;
}

function peakRssMb(pid: number): number {
  const kb = /^VmHWM:\s*(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

describeKernel('agent process', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-agentp');
    dir = mkdtempSync(join(tmpdir(), 'wst-agentp-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a client that never reads is cut down to lost notices; the other gets every event; RSS stays bounded', async () => {
    const sock = join(dir, 'slow.sock');
    // No rate budget: the storm's events must all reach the queues whose policy is under test.
    const agent = await spawnAgent(['--listen', `unix:${sock}`, '--netns', ns.path, '--subscriber-queue', '5000', '--event-budget', '0']);
    const fast = tracerClient(`unix://${sock}`);
    const stuck = await stuckWatch(sock, WatchRequest.encode({ allow: [], deny: [], last: 0, sinceUnixMicros: 0, follow: true }).finish());
    try {
      const s0 = await unary<Any>(fast, 'snapshot');
      let fastEvents = 0;
      const fastLost: WireMessage[] = [];
      const fastCall = fast.watch({ follow: true });
      fastCall.on('data', (m: WireMessage) => {
        if (m.response === 'batch') fastEvents += m.batch!.events.length;
        if (m.response === 'lost') fastLost.push(m);
      });
      fastCall.on('error', () => {});
      // Both subscribers registered before any traffic: the agent has answered each.
      await following(fastCall);
      await stuck.answered;

      // Paced so a reading client keeps up (about 20k events/s); the one that
      // reads nothing falls behind by far more than its queue.
      const N = 20_000;
      await ns.traffic('closed-port', N, 7501, '127.0.0.1', 500, 0.05);
      const s1 = await unary<Any>(fast, 'snapshot');
      const made = s1.totals.resetsSent - s0.totals.resetsSent + (s1.totals.resetsReceived - s0.totals.resetsReceived);
      expect(made).toBe(2 * N);
      expect(s1.totals.lostKernelRing).toBe(0);
      await until(() => fastEvents, { what: `the reading client to get all ${made} events`, accept: (n) => n >= made });
      expect(fastEvents).toBe(made);
      expect(fastLost).toEqual([]);
      expect(peakRssMb(agent.pid)).toBeLessThan(200);

      // Now read the stuck stream: what it missed arrives as counted notices.
      stuck.resume();
      const decoded = () => stuck.messages.map((m) => WatchResponse.decode(m).response);
      const count = () =>
        decoded().reduce((a, r) => a + (r?.$case === 'batch' ? r.value.events.length : r?.$case === 'lost' ? r.value.count : 0), 0);
      await until(count, { what: `events plus lost counts on the stuck stream to reach ${made}`, accept: (n) => n >= made });
      const lost = decoded().filter((r) => r?.$case === 'lost');
      expect(lost.length).toBeGreaterThan(0);
      expect(lost.every((r) => r?.$case === 'lost' && r.value.reason === LostReason.LOST_REASON_SUBSCRIBER_TOO_SLOW)).toBe(true);
      expect(count()).toBe(made); // nothing vanished silently
      fastCall.cancel();
    } finally {
      fast.close();
      stuck.close();
      agent.child.kill('SIGKILL');
    }
  });

  it('SIGTERM ends streams with a status, detaches BPF, removes the socket, exits 0', async () => {
    const sock = join(dir, 'term.sock');
    const agent = await spawnAgent(['--listen', `unix:${sock}`, '--netns', ns.path]);
    const ids = heldProgramIds(agent.pid);
    // This kernel's: resets sent/received, timewait (which also starts listeners for syn_drop), accept queue,
    // ACK-stage overflow, syn_drop's tracepoint route (6: a packet's start, its two packet-end programs each twice, SYN-ACK retransmits), and the loader's per-CPU offset program (run, not attached).
    expect(ids.length).toBe(12);
    const client = tracerClient(`unix://${sock}`);
    const call = client.watch({ follow: true });
    const msgs = collect(call, (m) => m.some((x) => x.status?.end), 20_000);
    await following(call);
    agent.child.kill('SIGTERM');
    const code = await agent.closed;
    const got = await msgs;
    client.close();
    expect(code).toBe(0);
    expect(got.at(-1)).toMatchObject({ response: 'status', status: { message: 'agent shutting down', end: true } });
    expect(existsSync(sock)).toBe(false);
    expect(await waitProgramsGone(ids)).toEqual([]);
    expect(agent.stderr()).toMatch(/stopping/);
  });

  it('watch --connect and info --json are clients of a running agent', async () => {
    const sock = join(dir, 'cli.sock');
    const agent = await spawnAgent(['--listen', `unix:${sock}`, '--netns', ns.path]);
    try {
      const info = JSON.parse(
        execFileSync(process.execPath, [CLI, 'info', '--json', '--connect', `unix:${sock}`], { encoding: 'utf8' }),
      ) as Any;
      expect(info.netns).toBe(ns.path);
      expect(info.pid).toBe(agent.pid);
      const w = spawnCli(['watch', '--json', '--connect', `unix:${sock}`, '--port', '7502', '--kind', 'reset_sent']);
      await w.waitStderr('live:');
      await ns.traffic('closed-port', 3, 7502);
      await until(() => w.stdout(), { what: 'three JSON lines from watch', accept: (out) => out.split('\n').length > 3 });
      w.child.kill('SIGINT');
      expect(await w.closed).toBe(0);
      const lines = w.stdout().trim().split('\n').map((l) => JSON.parse(l) as Any);
      expect(lines).toHaveLength(3);
      expect(lines.every((l) => l.kind === 'reset_sent' && l.lport === 7502)).toBe(true);
      expect(w.stderr()).toMatch(/via unix:/);
    } finally {
      agent.child.kill('SIGTERM');
      await agent.closed;
    }
  });

  it('serves TLS with client certificates on tcp://127.0.0.1:0 (mTLS)', async () => {
    const pki = join(dir, 'pki');
    makePki(pki);
    const agent = await startAgent({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      tls: { cert: join(pki, 'server.crt'), key: join(pki, 'server.key'), clientCa: join(pki, 'ca.crt') },
      tracer: { netns: ns.path },
    });
    const port = agent.address.kind === 'tcp' ? agent.address.port : 0;
    const ca = readFileSync(join(pki, 'ca.crt'));
    try {
      const good = tracerClient(
        `127.0.0.1:${port}`,
        grpc.credentials.createSsl(ca, readFileSync(join(pki, 'client.key')), readFileSync(join(pki, 'client.crt'))),
      );
      const k0 = ns.nstat();
      const call = good.watch({ follow: true, allow: [{ ports: [7503], kinds: ['EVENT_KIND_RESET_SENT'] }] });
      const got = collect(call, (m) => eventsOf(m).length >= 2, 20_000);
      await following(call);
      await ns.traffic('closed-port', 2, 7503);
      expect(eventsOf(await got)).toHaveLength(2);
      expect(delta(ns.nstat(), k0, 'TcpOutRsts')).toBe(2);
      good.close();

      const noCert = tracerClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(ca));
      await expect(unary(noCert, 'getInfo')).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      noCert.close();
      const plain = tracerClient(`127.0.0.1:${port}`);
      await expect(unary(plain, 'getInfo')).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      plain.close();
    } finally {
      await agent.close();
    }
  });
});

it('CLI: tcp without TLS, an unreachable agent and a live socket each get one sentence and exit 1', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 });
  const tcp = run(['agent', '--listen', 'tcp://127.0.0.1:0']);
  expect(tcp.status).toBe(1);
  expect(tcp.stderr).toMatch(/without TLS would let anyone on the network read kernel events/);
  const gone = run(['watch', '--connect', 'unix:/nonexistent/wstrace.sock', '--json']);
  expect(gone.status).toBe(1);
  expect(gone.stderr.trim()).toBe(
    'wstrace: cannot reach the wstrace agent at unix:/nonexistent/wstrace.sock: is `sudo wstrace agent` running, and may this user open its socket?',
  );
  const bad = run(['agent', '--listen', 'http://x']);
  expect(bad.status).toBe(1);
  expect(bad.stderr.trim()).toBe('wstrace: "http://x" is not an address: use unix:/PATH or tcp://HOST:PORT.');
});
