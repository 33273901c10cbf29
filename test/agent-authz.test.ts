/**
 * Reading events and controlling the host are separate grants. Whoever can
 * connect may read; starting a capture (root runs tcpdump and writes files)
 * needs the agent's own unix socket, or, over TCP, --allow-captures with
 * client certificates (--tls-client-ca). Real agents, real BPF, real TLS
 * certificates made with openssl, loopback only.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { connectAgent } from '../src/client/connect.js';
import { CLI, spawnCli, type CliProcess } from './helpers/cli.js';
import { collect, eventsOf, following, grpc, tracerClient, unary } from './helpers/grpc.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { makePki } from './helpers/pki.js';
import { Tmux } from './helpers/tmux.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const execFileAsync = promisify(execFile);

/** Runs the built command to its end without blocking this process (an in-process agent must keep answering). */
async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], { cwd: ROOT, timeout: 60_000 });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** What wstrace itself wrote on stderr, without Node's warnings. */
const ownLines = (stderr: string) => stderr.split('\n').filter((l) => l && !/^\(node:\d+\)|^\(Use `node --trace/.test(l));

/** The error a unary call ended with, or undefined when it succeeded. */
async function refusal(client: Any, method: string, req: object = {}): Promise<{ code: number; details: string } | undefined> {
  return unary(client, method, req).then(
    () => undefined,
    (e: { code: number; details: string }) => e,
  );
}

const OFF_WITHOUT_CA =
  "captures are off on this agent's TCP listener: start the agent with --tls-client-ca and --allow-captures to let clients with a certificate from that CA start them.";
const OFF_WITH_CA =
  "captures are off on this agent's TCP listener: start the agent with --allow-captures to let clients with a certificate from its --tls-client-ca start them.";

describeKernel('control needs a grant: TCP reads by default, the unix socket controls', () => {
  let ns: TestNetns;
  let dir: string;
  let pki: string;
  let ca: Buffer;
  const clientCert = () => grpc.credentials.createSsl(ca, readFileSync(join(pki, 'client.key')), readFileSync(join(pki, 'client.crt')));
  const tcpPort = (a: RunningAgent) => (a.address.kind === 'tcp' ? a.address.port : 0);
  const capturesIn = (d: string) => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };

  beforeAll(async () => {
    ns = await TestNetns.create('wst-authz');
    dir = mkdtempSync(join(tmpdir(), 'wst-authz-'));
    pki = join(dir, 'pki');
    makePki(pki);
    ca = readFileSync(join(pki, 'ca.crt'));
  });
  afterAll(async () => {
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('TLS without a client CA: Watch streams events, StartCapture is PERMISSION_DENIED and wstrace capture --connect says why', async () => {
    const caps = join(dir, 'caps-tls');
    const agent = await startAgent({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      tls: { cert: join(pki, 'server.crt'), key: join(pki, 'server.key') },
      tracer: { netns: ns.path },
      captures: { dir: caps },
    });
    const port = tcpPort(agent);
    const client = tracerClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(ca));
    try {
      const call = client.watch({ follow: true, allow: [{ ports: [7961], kinds: ['EVENT_KIND_RESET_SENT'] }] });
      const got = collect(call, (m) => eventsOf(m).length >= 2, 20_000);
      await following(call);
      await ns.traffic('closed-port', 2, 7961);
      const events = eventsOf(await got);
      expect(events.length).toBeGreaterThanOrEqual(2);
      expect(events.every((e) => e.kind === 'EVENT_KIND_RESET_SENT' && e.localPort === 7961)).toBe(true);

      expect(await refusal(client, 'startCapture', { port: 7961 })).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: OFF_WITHOUT_CA });
      expect(await unary<Any>(client, 'getInfo')).toMatchObject({ controlAllowed: false });
      const info = await cli(['info', '--connect', `tcp://127.0.0.1:${port}`, '--tls-ca', join(pki, 'ca.crt')]);
      expect(info.stdout).toContain('control: off for this client: it may read events, not start captures');

      const run = await cli(['capture', '--connect', `tcp://127.0.0.1:${port}`, '--tls-ca', join(pki, 'ca.crt'), '--port', '7961']);
      expect(run.status).toBe(1);
      // Node's own deprecation note about TLS to an IP address may precede it: the command says one thing.
      expect(ownLines(run.stderr)).toEqual([`wstrace: ${OFF_WITHOUT_CA}`]);
      // Listing is reading: allowed, and nothing was started or written.
      expect(await unary<Any>(client, 'listCaptures')).toMatchObject({ captures: [] });
      expect(capturesIn(caps).filter((f) => f.endsWith('.pcap'))).toEqual([]);
    } finally {
      client.close();
      await agent.close();
    }
  });

  it('mTLS without --allow-captures: a client with a certificate reads, and StartCapture is PERMISSION_DENIED', async () => {
    const agent = await startAgent({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      tls: { cert: join(pki, 'server.crt'), key: join(pki, 'server.key'), clientCa: join(pki, 'ca.crt') },
      tracer: { netns: ns.path },
      captures: { dir: join(dir, 'caps-mtls') },
    });
    const client = tracerClient(`127.0.0.1:${tcpPort(agent)}`, clientCert());
    try {
      expect(await unary<Any>(client, 'snapshot')).toHaveProperty('totals');
      expect(await unary<Any>(client, 'getInfo')).toMatchObject({ netns: ns.path, controlAllowed: false });
      expect(await refusal(client, 'startCapture', { port: 7962 })).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: OFF_WITH_CA });
      expect(capturesIn(join(dir, 'caps-mtls')).filter((f) => f.endsWith('.pcap'))).toEqual([]);
    } finally {
      client.close();
      await agent.close();
    }
  });

  it('mTLS with --allow-captures: wstrace capture --connect with a client certificate captures; info says control is allowed', async () => {
    const caps = join(dir, 'caps-allowed');
    const agent = spawnCli(
      [
        ...['agent', '--listen', 'tcp://127.0.0.1:0', '--netns', ns.path, '--captures', caps, '--allow-captures'],
        ...['--tls-cert', join(pki, 'server.crt'), '--tls-key', join(pki, 'server.key'), '--tls-client-ca', join(pki, 'ca.crt')],
      ],
      { stdout: 'ignore' },
    );
    try {
      const port = /listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(await agent.waitStderr(/listening on tcp:\/\/\S+:\d+/))![1]!;
      expect(agent.stderr()).toMatch(/control: captures allowed to clients with a certificate from --tls-client-ca/);
      expect(agent.stderr()).not.toMatch(/WARNING/);
      const tls = ['--tls-ca', join(pki, 'ca.crt'), '--tls-cert', join(pki, 'client.crt'), '--tls-key', join(pki, 'client.key')];
      const info = await cli(['info', '--json', '--connect', `tcp://127.0.0.1:${port}`, ...tls]);
      expect(info.status).toBe(0);
      expect(JSON.parse(info.stdout)).toMatchObject({ controlAllowed: true });

      const run = await cli(['capture', '--connect', `tcp://127.0.0.1:${port}`, ...tls, '--port', '7963', '--duration', '1']);
      expect(run.stderr).toMatch(/capturing tcp and port 7963 into /);
      expect(run.status).toBe(0);
      const file = /^(\S+\.pcap) /.exec(run.stdout)?.[1];
      expect(file).toBeDefined();
      expect(file!.startsWith(`${caps}/`)).toBe(true);
      expect(readdirSync(caps)).toContain(file!.slice(caps.length + 1));

      // The same certificate-less TLS client that may read is still refused control.
      const noCert = tracerClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(ca));
      await expect(unary(noCert, 'getInfo')).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      noCert.close();
    } finally {
      agent.child.kill('SIGTERM');
      await agent.closed;
    }
  });

  it('the start-up warning of --insecure and of TLS without a client CA says what is exposed and that control is off', async () => {
    const exposed =
      'anyone who can reach it can read kernel events with peer addresses and ports, host facts (sysctls, kernel counters, socket and memory use, file-descriptor limits) and the names and ids of processes holding listeners; control is off: no client can start a capture (that needs --tls-client-ca and --allow-captures).';
    const tls = ['--tls-cert', join(pki, 'server.crt'), '--tls-key', join(pki, 'server.key')];
    for (const [flags, how] of [
      [['--insecure'], 'is plain TCP without TLS'],
      [tls, 'takes clients without a certificate (no --tls-client-ca)'],
    ] as const) {
      const agent: CliProcess = spawnCli(['agent', '--listen', 'tcp://127.0.0.1:0', '--netns', ns.path, ...flags], { stdout: 'ignore' });
      try {
        await agent.waitStderr('listening on');
        const port = /listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(agent.stderr())![1]!;
        expect(agent.stderr()).toContain(`wstrace agent: WARNING: tcp://127.0.0.1:${port} ${how}: ${exposed}\n`);
        expect(agent.stderr()).toMatch(/control: off, events only/);
      } finally {
        agent.child.kill('SIGTERM');
        await agent.closed;
      }
    }
  });

  it("the agent's unix socket controls by default; opened to other users, control needs --allow-captures", async () => {
    const sock = join(dir, 'run', 'agent.sock');
    const caps = join(dir, 'caps-unix');
    let agent = await startAgent({ listen: { kind: 'unix', path: sock }, tracer: { netns: ns.path }, captures: { dir: caps } });
    let client = connectAgent({ kind: 'unix', path: sock });
    try {
      expect(await client.info()).toMatchObject({ controlAllowed: true });
      const c = await client.startCapture!({ port: 7964, durationSec: 1 });
      expect(c.state).toBe('running');
      expect(c.file.startsWith(`${caps}/`)).toBe(true);

      // An operator who loosens the socket lets others in who were never granted control.
      chmodSync(sock, 0o666);
      expect(await client.info()).toMatchObject({ controlAllowed: false });
      await expect(client.startCapture!({ port: 7965, durationSec: 1 })).rejects.toThrow(
        `captures are off because the agent's socket ${sock} is open to other users (mode 0666, owner uid 0): start the agent with --allow-captures to grant them control, or restore mode 0600.`,
      );
    } finally {
      client.close();
      await agent.close();
    }

    agent = await startAgent({ listen: { kind: 'unix', path: sock }, tracer: { netns: ns.path }, captures: { dir: caps }, allowCaptures: true });
    client = connectAgent({ kind: 'unix', path: sock });
    try {
      chmodSync(sock, 0o666);
      expect(await client.info()).toMatchObject({ controlAllowed: true });
      expect((await client.startCapture!({ port: 7966, durationSec: 1 })).state).toBe('running');
    } finally {
      client.close();
      await agent.close();
    }
  });

  it("top's c key on an agent that refuses control shows the agent's sentence", async () => {
    const tmux = new Tmux(`wst-authz-test-${process.pid}`);
    const agent = await startAgent({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      tls: { cert: join(pki, 'server.crt'), key: join(pki, 'server.key') },
      tracer: { netns: ns.path },
      captures: { dir: join(dir, 'caps-top') },
    });
    const load = ns.traffic('full-queue', 7967, 1, 5, 12);
    try {
      const connect = `tcp://127.0.0.1:${tcpPort(agent)}`;
      await tmux.start('authz', `node ${CLI} top --connect ${connect} --tls-ca ${join(pki, 'ca.crt')}; sleep 600`, { x: 240, y: 40 });
      await tmux.waitScreen('authz', 'the listener 127.0.0.1:7967', (x) => x.includes('127.0.0.1:7967'));
      await tmux.cmd('send-keys', '-t', 'authz', 'c');
      const s = await tmux.waitScreen('authz', 'the refusal', (x) => x.includes("captures are off on this agent's TCP listener"));
      expect(s).toContain(`capture: ${OFF_WITHOUT_CA}`);
      await tmux.cmd('send-keys', '-t', 'authz', 'q');
    } finally {
      await load;
      await tmux.destroy();
      await agent.close();
    }
  });
});

describe('--allow-captures where no client could be vetted is refused at start', () => {
  it.each([
    [
      ['--listen', 'tcp://127.0.0.1:0', '--insecure', '--allow-captures'],
      '--allow-captures cannot go with --insecure, which lets clients in without a certificate: use --tls-cert, --tls-key and --tls-client-ca instead.',
    ],
    [
      ['--listen', 'tcp://127.0.0.1:0', '--tls-cert', '/nonexistent.crt', '--tls-key', '/nonexistent.key', '--allow-captures'],
      '--allow-captures on a tcp:// listener needs --tls-client-ca: without client certificates anyone who can reach the port could start root captures.',
    ],
  ])('agent %j', async (args, sentence) => {
    const run = await cli(['agent', ...args]);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`wstrace: ${sentence}\n`);
  });
});
