/**
 * A real agent (in this process, real BPF) on a temporary unix socket, used
 * through a client built from the .proto: Watch with filters and replay,
 * Snapshot against the namespace's MIB counters, GetInfo, health,
 * reflection and Prometheus.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { parseListen } from '../src/protocol/address.js';
import { delta, describeKernel, TestNetns } from './helpers/kernel.js';
import { collect, eventsOf, following, grpc, healthCheck, listServices, tracerClient, unary } from './helpers/grpc.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

describeKernel('agent over a unix socket', () => {
  let ns: TestNetns;
  let dir: string;
  let agent: RunningAgent;
  let target: string;
  let client: Any;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-agent');
    dir = mkdtempSync(join(tmpdir(), 'wst-agent-'));
    const path = join(dir, 'run', 'agent.sock'); // the agent makes run/ itself
    agent = await startAgent({ listen: { kind: 'unix', path }, tracer: { netns: ns.path }, metrics: '127.0.0.1:0' });
    target = `unix://${path}`;
    client = tracerClient(target);
  });

  afterAll(async () => {
    client?.close();
    await agent?.close();
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens on a 0600 socket in a 0700 directory it made', () => {
    const path = join(dir, 'run', 'agent.sock');
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'run')).mode & 0o777).toBe(0o700);
  });

  it('Watch streams real events, filtered by allow and deny', async () => {
    const call = client.watch({
      allow: [{ ports: [7401] }],
      deny: [{ kinds: ['EVENT_KIND_RESET_RECEIVED'] }],
      follow: true,
    });
    const got = collect(call, (m) => eventsOf(m).length >= 5, 20_000);
    await following(call);
    await ns.traffic('closed-port', 5, 7401);
    await ns.traffic('closed-port', 2, 7402);
    const msgs = await got;
    expect(msgs[0]!.response).toBe('status');
    const evs = eventsOf(msgs);
    expect(evs).toHaveLength(5);
    for (const e of evs) {
      expect(e).toMatchObject({ kind: 'EVENT_KIND_RESET_SENT', localPort: 7401, localAddr: '127.0.0.1', reason: 'NO_SOCKET', netns: ns.inode() });
    }
  });

  it('last and since replay recent events, oldest first, and end without follow', async () => {
    const t0 = Date.now() * 1000;
    await ns.traffic('closed-port', 4, 7403);
    const replayed = async (req: object) => eventsOf(await collect(client.watch({ ...req, follow: false }), () => false));
    // Events travel kernel ring -> agent -> recent ring: wait until all four are there.
    await until(() => replayed({ allow: [{ ports: [7403], kinds: ['EVENT_KIND_RESET_SENT'] }], sinceUnixMicros: t0 }), {
      what: 'the 4 resets sent to port 7403 in the recent ring',
      accept: (evs) => evs.length >= 4,
    });
    const last = eventsOf(
      await collect(client.watch({ allow: [{ ports: [7403], kinds: ['EVENT_KIND_RESET_SENT'] }], last: 3, follow: false }), () => false),
    );
    expect(last).toHaveLength(3);
    expect(last.map((e) => e.timeUnixMicros)).toEqual([...last.map((e) => e.timeUnixMicros)].sort((a, b) => a - b));
    const since = await collect(
      client.watch({ allow: [{ kinds: ['EVENT_KIND_RESET_SENT'] }], sinceUnixMicros: t0, follow: false }),
      () => false,
    );
    expect(eventsOf(since).map((e) => e.localPort)).toEqual([7403, 7403, 7403, 7403]);
    const end = since.at(-1)!;
    expect(end.response).toBe('status');
    expect(end.status!.end).toBe(true);
  });

  it('Snapshot totals move exactly as the namespace MIB counters do', async () => {
    const N = 30;
    const M = 12;
    const s0 = await unary<Any>(client, 'snapshot');
    const k0 = ns.nstat();
    const tw0 = ns.sockstatTcp().tw ?? 0;
    await ns.traffic('closed-port', N, 7404);
    await ns.traffic('timewait', M, 7405);
    await ns.traffic('full-queue', 7406, 1, 5, 0.3);
    const s1 = await unary<Any>(client, 'snapshot');
    const k1 = ns.nstat();
    expect(s1.totals.resetsSent - s0.totals.resetsSent).toBe(delta(k1, k0, 'TcpOutRsts'));
    expect(s1.totals.timewait - s0.totals.timewait).toBe(M);
    expect(s1.timewaitCurrent).toBe(ns.sockstatTcp().tw);
    expect(s1.timewaitCurrent - tw0).toBeGreaterThanOrEqual(M);
    // Host facts are the traced namespace's.
    expect(s1.host.mib.TcpOutRsts - s0.host.mib.TcpOutRsts).toBe(delta(k1, k0, 'TcpOutRsts'));
    expect(s1.host.sysctls['net.core.somaxconn']).toMatch(/^\d+$/);
    const tw = s1.timewait.find((t: Any) => t.remotePort === 7405);
    expect(tw.created).toBe(M);
    const l = s1.listeners.find((x: Any) => x.port === 7406);
    expect(l).toMatchObject({ addr: '127.0.0.1', backlog: 1, live: false });
    expect(l.peak).toBeGreaterThan(l.backlog);
    expect(Number(l.fullHits)).toBeGreaterThan(0);
    const sent = s1.resets.filter((r: Any) => r.direction === 'DIRECTION_SENT' && r.localPort === 7404);
    expect(sent.reduce((a: number, r: Any) => a + Number(r.count), 0)).toBe(N);
  });

  it('GetInfo says which hooks are live', async () => {
    const info = await unary<Any>(client, 'getInfo');
    expect(info.kernel).toBe(execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim());
    expect(info.netns).toBe(ns.path);
    expect(info.hooks.filter((h: Any) => h.attached).map((h: Any) => h.hook)).toEqual(
      expect.arrayContaining(['tcp_send_reset', 'tcp_receive_reset', 'inet_sock_set_state', 'sk_data_ready']),
    );
  });

  it('health says SERVING and reflection lists wstrace.v1.Tracer', async () => {
    expect((await healthCheck(target, 'wstrace.v1.Tracer')).status).toBe('SERVING');
    expect((await healthCheck(target, '')).status).toBe('SERVING');
    expect(await listServices(target)).toContain('wstrace.v1.Tracer');
  });

  it('serves Prometheus text that parses and agrees with Snapshot', async () => {
    await ns.traffic('closed-port', 2, 7407);
    const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+]+|NaN)$/.exec(line);
      expect(m, `unparsable metrics line: ${line}`).not.toBeNull();
      samples.set(m![1]!, Number(m![2]));
    }
    const snap = await unary<Any>(client, 'snapshot');
    expect(samples.get('wstrace_events_total{kind="reset_sent"}')).toBe(Number(snap.totals.resetsSent));
    expect(samples.get('wstrace_lost_events_total{reason="kernel_ring_full"}')).toBe(0);
    expect(samples.get('wstrace_subscribers')).toBe(0);
    expect([...samples.keys()].some((k) => k.startsWith('wstrace_resets_total{direction="sent",lport="7407"'))).toBe(true);
    expect(samples.has('wstrace_timewait_sockets')).toBe(true);
  });

  it('a bad filter gets INVALID_ARGUMENT with one sentence', async () => {
    const call = client.watch({ allow: [{ ports: [70000] }], follow: true });
    await expect(collect(call, () => false, 3000)).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'filter port 70000 is not a TCP port (1-65535).',
    });
  });

  it('a second agent on the same socket is refused with a clear error', async () => {
    await expect(startAgent({ listen: { kind: 'unix', path: join(dir, 'run', 'agent.sock') } })).rejects.toThrow(
      /another agent is already listening on .*agent\.sock: stop it first/,
    );
  });
});

describe('agent listen addresses (no kernel needed)', () => {
  it.each([
    ['unix:/run/x.sock', { kind: 'unix', path: '/run/x.sock' }],
    ['unix:///run/x.sock', { kind: 'unix', path: '/run/x.sock' }],
    ['tcp://127.0.0.1:50051', { kind: 'tcp', host: '127.0.0.1', port: 50051 }],
    ['tcp://[::1]:0', { kind: 'tcp', host: '[::1]', port: 0 }],
  ])('%s', (spec, want) => {
    expect(parseListen(spec)).toEqual(want);
  });

  it.each(['unix:relative.sock', 'tcp://host', 'http://x:1', 'tcp://h:99999'])('%s is refused', (spec) => {
    expect(() => parseListen(spec)).toThrow(/is not an address|needs an absolute path/);
  });

  it('plain TCP without TLS or --insecure is refused in one sentence', async () => {
    await expect(startAgent({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 } })).rejects.toThrow(
      'listening on tcp://127.0.0.1:0 without TLS would let anyone on the network read kernel events: give --tls-cert and --tls-key, or --insecure to accept that.',
    );
  });

  it('a stale socket file is replaced; anything else at the path is left alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wst-stale-'));
    try {
      const stale = join(dir, 'stale.sock');
      execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
      expect(statSync(stale).isSocket()).toBe(true);
      const { prepareUnixSocket } = await import('../src/agent/unix-socket.js');
      await prepareUnixSocket(stale);
      expect(() => statSync(stale)).toThrow();
      const file = join(dir, 'file');
      writeFileSync(file, 'keep me');
      await expect(prepareUnixSocket(file)).rejects.toThrow(/exists and is not a socket/);
      expect(statSync(file).size).toBe(7);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
