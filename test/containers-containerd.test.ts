/**
 * Real containers from a real containerd (Debian's, with runc), started by
 * the test: a `ctr run` container and a CRI pod whose listeners overflow
 * must come back in the agent's events and Snapshot rows with their
 * container id, and the pod's with its pod name, namespace and container
 * name asked of containerd's own CRI socket. The CRI client is checked
 * against what that socket answers. Nothing is left running (helper stop()).
 */
import { readlinkSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { ContainerResolver, CriClient, findCgroup2Mount } from '../src/containers/index.js';
import { containerdBlocker, TestContainerd } from './helpers/containerd.js';
import { CLI, spawnCli } from './helpers/cli.js';
import { Tmux } from './helpers/tmux.js';
import { following, tracerClient, unary } from './helpers/grpc.js';
import { describeKernel } from './helpers/kernel.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const HELPERS = join(dirname(fileURLToPath(import.meta.url)), 'helpers');
const CTR_PORT = 7471;
const POD_PORT = 7472;
const POD = { name: 'shop', namespace: 'payments', uid: '5b0c1f7e-2d3a-4c5b-9e8f-a1b2c3d4e5f6', container: 'web' };
const OWN_PORT = 7473;
const OWN_UID = '9d8c7b6a-5f4e-4d3c-8b2a-190817161514';
const blocker = containerdBlocker();

describeKernel('real containerd: containers and pods named in events and Snapshot', () => {
  describe.skipIf(blocker !== undefined)(blocker ?? 'containerd', () => {
    const mount = findCgroup2Mount()!;
    const ctrId = `wst-ctr-${process.pid}`;
    let ctd: TestContainerd;
    let dir: string;
    let agent: RunningAgent;
    let client: Any;
    let call: Any;
    const events: Any[] = [];
    let pod: { sandboxId: string; containerId: string } | undefined;

    beforeAll(async () => {
      ctd = await TestContainerd.start('wst-ctd');
      dir = mkdtempSync(join(tmpdir(), 'wst-ctd-agent-'));
      agent = await startAgent({
        listen: { kind: 'unix', path: join(dir, 'agent.sock') },
        // Every namespace (the ctr container has its own), only the test's ports.
        tracer: { ports: [CTR_PORT, POD_PORT, OWN_PORT] },
        containers: { cri: ctd.socket, walkIntervalMs: 200 },
      });
      client = tracerClient(`unix://${join(dir, 'agent.sock')}`);
      call = client.watch({ follow: true });
      const first = following(call);
      call.on('data', (m: Any) => {
        if (m.response === 'batch') events.push(...m.batch.events);
      });
      call.on('error', () => {});
      await first;
    }, 120_000);

    afterAll(async () => {
      call?.cancel();
      client?.close();
      await agent?.close();
      await ctd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }, 120_000);

    it("a `ctr run` container's overflowing listener: events and its Snapshot row carry the container id", async () => {
      const c = ctd.runCtr(ctrId, ['/usr/bin/python3', '/wst/overflow_server.py', String(CTR_PORT), '3'], [[HELPERS, '/wst']]);
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await until(() => out.includes('"listening"'), { what: `the container's listener (ctr output so far: ${out})`, timeoutMs: 30_000 });
      const cgroup = statSync(join(mount, 'default', ctrId)).ino;
      let rounds = 0;
      const named = await until(
        async () => {
          c.stdin!.write('go\n');
          const want = ++rounds;
          await until(() => (out.match(/"connects"/g) ?? []).length >= want, { what: 'a round of connects in the container' });
          return events.find((e) => e.localPort === CTR_PORT && e.container);
        },
        {
          what: `an event of port ${CTR_PORT} named by its container (events of the port: ${JSON.stringify(events.filter((e) => e.localPort === CTR_PORT).slice(-2))})`,
          timeoutMs: 45_000,
          everyMs: 100,
        },
      );
      expect(named).toMatchObject({ cgroup, container: ctrId });
      // A ctr container is no pod: containerd's CRI does not know it, and nothing is made up.
      expect(named.pod || undefined).toBeUndefined();
      expect(events.filter((e) => e.localPort === CTR_PORT).every((e) => e.cgroup === cgroup)).toBe(true);

      const row = await until(
        async () => ((await unary<Any>(client, 'snapshot')).listeners as Any[]).find((l) => l.port === CTR_PORT && l.container),
        { what: `the Snapshot row of port ${CTR_PORT}, named`, timeoutMs: 20_000 },
      );
      expect(row).toMatchObject({ container: ctrId, addr: '127.0.0.1' });
      expect(row.overflows + row.fullHits + row.synDropsAcceptQueueFull).toBeGreaterThan(0);
    }, 90_000);

    it("a CRI pod's overflowing listener: events name the pod, its namespace and the container", async () => {
      pod = await ctd.runPod({ ...POD, command: ['/usr/bin/python3', '/wst/overflow_server.py', String(POD_PORT), '3', '0.3'] });
      const named = await until(() => events.find((e) => e.localPort === POD_PORT && e.pod), {
        what: `an event of port ${POD_PORT} named by its pod (container log: ${ctd.podLog(POD.uid, POD.container)})`,
        timeoutMs: 60_000,
      });
      expect(named).toMatchObject({ container: pod.containerId, containerName: 'web', pod: 'shop', namespace: 'payments' });
      // The cgroup is the kubelet's cgroupfs shape the pod was given: /kubepods/besteffort/pod<uid>/<container id>.
      expect(named.cgroup).toBe(statSync(join(mount, 'kubepods', 'besteffort', `pod${POD.uid}`, pod.containerId)).ino);
    }, 90_000);

    it("the CRI client reads what containerd's CRI socket answers, and finds the pod's network namespace", async () => {
      expect(pod).toBeDefined();
      const cri = new CriClient(ctd.socket);
      try {
        expect(await cri.version()).toMatchObject({ runtimeName: 'containerd', runtimeApiVersion: 'v1' });
        const sandboxes = await cri.listPodSandbox();
        expect(sandboxes.find((s) => s.id === pod!.sandboxId)).toMatchObject({ metadata: { name: 'shop', namespace: 'payments', uid: POD.uid } });
        const containers = await cri.listContainers(pod!.containerId);
        expect(containers).toHaveLength(1);
        expect(containers[0]).toMatchObject({ podSandboxId: pod!.sandboxId, metadata: { name: 'web' } });
        expect(await cri.listContainers('f'.repeat(64))).toEqual([]);
      } finally {
        cri.close();
      }
      const resolver = new ContainerResolver({ cri: ctd.socket });
      try {
        const [found] = await resolver.findPods('shop', 'payments');
        expect(found).toMatchObject({ sandboxId: pod!.sandboxId, pod: 'shop', namespace: 'payments' });
        // A host-network pod: its sandbox's network namespace is this host's.
        expect(readlinkSync(`/proc/${found!.pid}/ns/net`)).toBe(readlinkSync('/proc/self/ns/net'));
        expect(await resolver.findPods('shop', 'elsewhere')).toEqual([]);
      } finally {
        resolver.close();
      }
    }, 60_000);

    it('watch --json and top (their own agents, --cri-socket) name the pod', async () => {
      expect(pod).toBeDefined();
      const w = spawnCli(['watch', '--json', '--duration', '60', '--port', String(POD_PORT), '--cri-socket', ctd.socket]);
      await w.waitStderr('live:');
      // --port keeps events at either end; the pod's clients' own events (their ephemeral port as lport) are named too.
      const atListener = () =>
        w
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"pod":"shop"'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((l) => l.lport === POD_PORT);
      await until(() => atListener() !== undefined, { what: "a watch --json line naming the pod at its listener's port", timeoutMs: 30_000 }).catch((e: Error) => {
        throw new Error(`${e.message}; watch's last lines: ${w.stdout().split('\n').slice(-3).join('\n')}; stderr: ${w.stderr()}`);
      });
      w.child.kill('SIGINT');
      expect(await w.closed).toBe(0);
      const line = atListener();
      expect(line).toMatchObject({ lport: POD_PORT, pod: 'shop', namespace: 'payments', container_name: 'web', container: pod!.containerId });

      const tmux = new Tmux(`wst-ctd-top-${process.pid}`);
      try {
        await tmux.start('top', `${process.execPath} ${CLI} top --port ${POD_PORT} --cri-socket ${ctd.socket}; echo TOP-EXIT=$?; sleep 600`, { x: 140, y: 40 });
        const screen = await tmux.waitScreen('top', 'the pod on its listener row', (s) => /127\.0\.0\.1:7472 .*payments\/shop\/web/.test(s), 45_000);
        expect(screen).toContain('POD/CONTAINER');
        await tmux.cmd('send-keys', '-t', 'top', 'q');
        expect(await tmux.waitScreen('top', 'TOP-EXIT=0', (s) => s.includes('TOP-EXIT='))).toContain('TOP-EXIT=0');
      } finally {
        await tmux.destroy();
      }
    }, 120_000);

    it('a pod in a network namespace of its own: its events name it, and capture --pod runs tcpdump in that namespace', async () => {
      const own = await ctd.runPod({
        name: 'cart',
        namespace: 'shop-ns',
        uid: OWN_UID,
        container: 'api',
        command: ['/usr/bin/python3', '/wst/overflow_server.py', String(OWN_PORT), '3', '0.3'],
        ownNetns: true,
      });
      const named = await until(() => events.find((e) => e.localPort === OWN_PORT && e.pod), {
        what: `an event of port ${OWN_PORT} named by its pod (container log: ${ctd.podLog(OWN_UID, 'api')})`,
        timeoutMs: 60_000,
      });
      expect(named).toMatchObject({ container: own.containerId, containerName: 'api', pod: 'cart', namespace: 'shop-ns' });
      expect(named.netns).not.toBe(statSync('/proc/self/ns/net').ino);

      const run = spawnCli(['capture', '--pod', 'shop-ns/cart', '--cri-socket', ctd.socket, '--port', String(OWN_PORT), '--duration', '2', '--json']);
      expect(await run.closed).toBe(0);
      const path = /network namespace (\/proc\/\d+\/ns\/net)/.exec(run.stderr())?.[1];
      expect(path).toBeDefined();
      // The pod's namespace (the one its events came from), not the host's.
      expect(statSync(path!).ino).toBe(named.netns);
      const c = JSON.parse(run.stdout().trim()) as { state: string; file: string; filter: string };
      try {
        expect(c).toMatchObject({ state: 'done' });
        expect(c.filter).toContain(String(OWN_PORT));
        // More than the pcap header: the pod's own connects to its listener, on its own loopback.
        expect(statSync(c.file).size).toBeGreaterThan(24);
      } finally {
        rmSync(c.file, { force: true });
      }
    }, 120_000);

    it('capture --pod refuses, in one sentence, a pod the runtime does not run and a runtime that does not answer', async () => {
      const none = spawnCli(['capture', '--pod', 'payments/nosuch', '--cri-socket', ctd.socket, '--duration', '1']);
      expect(await none.closed).toBe(1);
      expect(none.stderr().trim()).toMatch(/^wstrace: no running pod is named nosuch in namespace payments in the runtime at \S+: check the name with `kubectl get pods -A`\.$/);
      const gone = spawnCli(['capture', '--pod', 'shop', '--cri-socket', join(dir, 'no-such.sock'), '--duration', '1']);
      expect(await gone.closed).toBe(1);
      expect(gone.stderr().trim().split('\n')).toHaveLength(1);
      expect(gone.stderr()).toMatch(/no container runtime answered at .*no-such\.sock .*--cri-socket/);
    }, 60_000);
  });
});
