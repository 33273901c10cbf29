/**
 * Events and Snapshot rows come back named by container and pod: real
 * cgroups of the runtimes' shapes made under this host's cgroup2 mount, a
 * real process in each making a real listener overflow in a test namespace,
 * a real agent (BPF) resolving the socket's cgroup id. Pod names come from a
 * stand-in CRI here (test/containerd.test.ts asks a real containerd); `watch
 * --json` prints the new fields only when known.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { findCgroup2Mount, type CriApi } from '../src/containers/index.js';
import { spawnCli } from './helpers/cli.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { following, tracerClient, unary } from './helpers/grpc.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const ID = 'c0ffee'.repeat(10) + 'beef';
const ID2 = 'd'.repeat(64);
const UID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const TRAFFIC = join(ROOT, 'test/helpers/traffic.py');

function fakeCri(): CriApi {
  const pod = { id: 'sb1', metadata: { name: 'shop-7d9f', uid: UID, namespace: 'payments', attempt: 0 }, state: 0, labels: {} };
  const container = { id: ID2, podSandboxId: 'sb1', metadata: { name: 'web', attempt: 0 }, state: 1, labels: {} };
  return {
    version: () => Promise.resolve({ version: '0.1.0', runtimeName: 'stand-in', runtimeVersion: '1', runtimeApiVersion: 'v1' }),
    listContainers: (id?: string) => Promise.resolve(!id || id === ID2 ? [container] : []),
    listPodSandbox: (id?: string) => Promise.resolve(!id || id === 'sb1' ? [pod] : []),
    podSandboxStatus: () => Promise.resolve({ info: {} }),
    close: () => {},
  };
}

describeKernel('container and pod names on real cgroups, through the agent', () => {
  const mount = findCgroup2Mount()!;
  const base = `/wstrace-agent-test-${process.pid}`;
  const shapes = {
    docker: `${base}/system.slice/docker-${ID}.scope`,
    kube: `${base}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${ID2}.scope`,
    plain: `${base}/system.slice/plain.service`,
    crio: `${base}/machine.slice/crio-${ID}.scope`,
    podman: `${base}/machine.slice/libpod-${ID2}.scope`,
    kubeCgroupfs: `${base}/kubepods/besteffort/pod${UID}/${ID}`,
  };
  const made: string[] = [];
  const children: ChildProcess[] = [];
  let ns: TestNetns;
  let dir: string;
  let agent: RunningAgent;
  let client: Any;
  let call: Any;
  const events: Any[] = [];

  function mkdirs(rel: string): void {
    const parts = rel.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = '/' + parts.slice(0, i).join('/');
      if (made.includes(p)) continue;
      mkdirSync(join(mount, p));
      made.push(p);
    }
  }

  /** A command run inside a cgroup (moved in before it execs, so its sockets are born there) and the test namespace. */
  function runIn(cgroup: string, args: string[]): ChildProcess {
    const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@"', join(mount, cgroup), ns.name, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    return child;
  }

  /** traffic.py full-queue in a cgroup: a listener that never accepts, and more connects than its backlog. */
  function overflow(cgroup: string, port: number): Promise<number | null> {
    const child = runIn(cgroup, ['python3', TRAFFIC, 'full-queue', String(port), '1', '5', '0.3']);
    return new Promise((resolve) => child.on('exit', resolve));
  }

  beforeAll(async () => {
    for (const s of Object.values(shapes)) mkdirs(s);
    ns = await TestNetns.create('wst-ctrs');
    dir = mkdtempSync(join(tmpdir(), 'wst-ctrs-'));
    agent = await startAgent({
      listen: { kind: 'unix', path: join(dir, 'agent.sock') },
      tracer: { netns: ns.path },
      containers: { cri: fakeCri(), walkIntervalMs: 100 },
      metrics: '127.0.0.1:0',
    });
    client = tracerClient(`unix://${join(dir, 'agent.sock')}`);
    call = client.watch({ follow: true });
    const first = following(call);
    call.on('data', (m: Any) => {
      if (m.response === 'batch') events.push(...m.batch.events);
    });
    call.on('error', () => {});
    await first;
  });

  afterAll(async () => {
    call?.cancel();
    client?.close();
    await agent?.close();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await until(() => children.every((c) => c.exitCode !== null || c.signalCode !== null), { what: 'the test processes gone', timeoutMs: 10_000 });
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    // A cgroup goes once its last process has been reaped.
    for (const p of [...made].reverse()) {
      await until(
        () => {
          try {
            rmdirSync(join(mount, p));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          }
          return true;
        },
        { what: `cgroup ${p} removed`, timeoutMs: 10_000 },
      );
    }
  });

  /** Overflows again until the listener's events come back named (the first ones may go out before the lookup ends). */
  async function namedEvents(cgroup: string, port: number): Promise<Any[]> {
    return until(
      async () => {
        await overflow(cgroup, port);
        const mine = events.filter((e) => e.localPort === port && e.cgroup);
        return mine.length && mine.at(-1).container ? mine : undefined;
      },
      { what: `named events of the listener on port ${port}`, timeoutMs: 45_000, everyMs: 50 },
    );
  }

  it("names a docker container's listener by its container id, and asks no CRI for it", async () => {
    const evs = await namedEvents(shapes.docker, 7461);
    const id = statSync(join(mount, shapes.docker)).ino;
    const last = evs.at(-1);
    expect(last).toMatchObject({ cgroup: id, container: ID });
    expect(last.pod || undefined).toBeUndefined();
    // Every event of that listener carries its cgroup; none is dropped for lack of a name.
    expect(evs.every((e) => e.cgroup === id)).toBe(true);
  });

  it("names a kubepods container by its pod, namespace and container name (CRI), and its listener's Snapshot row", async () => {
    const evs = await namedEvents(shapes.kube, 7462);
    expect(evs.at(-1)).toMatchObject({ container: ID2, containerName: 'web', pod: 'shop-7d9f', namespace: 'payments' });

    // A listener that stays: its Snapshot row names the pod (found through the socket's or its owner's cgroup).
    const hold = runIn(shapes.kube, ['python3', '-c', 'import socket,sys\ns=socket.socket()\ns.bind(("127.0.0.1",7463))\ns.listen(4)\nprint("up",flush=True)\nsys.stdin.read()']);
    await new Promise((r) => hold.stdout!.once('data', r));
    const row = await until(
      async () => ((await unary<Any>(client, 'snapshot')).listeners as Any[]).find((l) => l.port === 7463 && l.pod),
      { what: 'the Snapshot row of the listener on 7463, named', timeoutMs: 20_000 },
    );
    expect(row).toMatchObject({ container: ID2, containerName: 'web', pod: 'shop-7d9f', namespace: 'payments' });

    // Prometheus: one info series for the named listener, to join its counters on (netns, listener).
    const scrape = async () => (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    const info = await until(async () => (await scrape()).split('\n').find((l) => l.startsWith('wstrace_listener_info{') && l.includes('127.0.0.1:7463')), {
      what: 'wstrace_listener_info of the listener on 7463',
      timeoutMs: 20_000,
    });
    expect(info).toMatch(/pod="shop-7d9f"/);
    expect(info).toMatch(/namespace="payments"/);
    expect(info).toMatch(/container="web"/);
    expect(info).toMatch(new RegExp(`netns="${ns.inode()}"`));
    expect(info).toMatch(/ 1$/);
    // The counters keep their label sets: no pod label on them.
    expect((await scrape()).split('\n').filter((l) => l.startsWith('wstrace_listen_drops_total{') && l.includes('pod='))).toEqual([]);
    hold.stdin!.end();
  });

  it.each([
    ['CRI-O', 'crio', 7466, { container: ID }],
    ['podman', 'podman', 7467, { container: ID2 }],
    ['kubepods (cgroupfs driver)', 'kubeCgroupfs', 7468, { container: ID }],
  ] as const)('names a %s container by its id', async (_name, shape, port, want) => {
    const evs = await namedEvents(shapes[shape], port);
    expect(evs.at(-1)).toMatchObject({ cgroup: statSync(join(mount, shapes[shape])).ino, ...want });
  });

  it('leaves a cgroup that is no container as its id', async () => {
    const id = statSync(join(mount, shapes.plain)).ino;
    await overflow(shapes.plain, 7464);
    await until(() => events.some((e) => e.localPort === 7464 && e.cgroup === id), { what: 'an event of the plain cgroup' });
    // Given time to be looked up (a later run), still no container: there is none.
    await overflow(shapes.plain, 7464);
    const mine = events.filter((e) => e.localPort === 7464);
    expect(mine.every((e) => e.cgroup === id && !e.container && !e.pod)).toBe(true);
  });

  it('watch --json prints container only when known, beside the existing fields', async () => {
    const w = spawnCli(['watch', '--json', '--duration', '120', '--netns', ns.name, '--port', '7465']);
    await w.waitStderr('live:');
    await until(
      async () => {
        await overflow(shapes.docker, 7465);
        return w.stdout().includes(`"container":"${ID}"`);
      },
      { what: 'a watch --json line with the container', timeoutMs: 45_000 },
    );
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);
    const lines = w
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const named = lines.find((l) => l.container === ID)!;
    expect(named).toMatchObject({ lport: 7465, netns: ns.inode(), cgroup: statSync(join(mount, shapes.docker)).ino });
    expect(named).not.toHaveProperty('pod');
    expect(named).not.toHaveProperty('namespace');
    expect(Object.keys(named)).toEqual(expect.arrayContaining(['time', 'kind', 'family', 'laddr', 'lport', 'raddr', 'rport', 'netns']));
  });
});
