/**
 * cgroup id → path → container → pod: every runtime's naming convention from
 * a table, then the same shapes as real cgroups made under this host's
 * cgroup2 mount (a real process and listening socket in each), resolved by
 * the resolver the agent uses, with a stand-in CRI for the names.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ContainerResolver,
  findCgroup2Mount,
  parseCgroup2Mount,
  parseCgroupPath,
  parseProcCgroup,
  type CriApi,
  type PathFacts,
} from '../src/containers/index.js';
import { spawnCli } from './helpers/cli.js';
import { isRoot } from './helpers/netns.js';
import { until } from './helpers/until.js';

const ID = 'a'.repeat(40) + '0123456789abcdef01234567';
const ID2 = 'b'.repeat(64);
const UID = '3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const UID_ = UID.replace(/-/g, '_');

/** Path (relative to the cgroup2 mount) → what its names must say. */
const CONVENTIONS: ReadonlyArray<readonly [string, PathFacts]> = [
  // docker: systemd and cgroupfs drivers
  [`/system.slice/docker-${ID}.scope`, { runtime: 'docker', containerId: ID }],
  [`/docker/${ID}`, { runtime: 'docker', containerId: ID }],
  // containerd: CRI under systemd, and `ctr run` (cgroupfs: /<namespace>/<id>)
  [`/system.slice/cri-containerd-${ID}.scope`, { runtime: 'containerd', containerId: ID }],
  ['/default/web-1', { runtime: 'containerd', containerId: 'web-1', containerdNamespace: 'default' }],
  // CRI-O: the container and its conmon monitor
  [`/machine.slice/crio-${ID}.scope`, { runtime: 'cri-o', containerId: ID }],
  [`/machine.slice/crio-conmon-${ID}.scope`, { runtime: 'cri-o', containerId: ID, monitor: true }],
  // podman: systemd (rootful and a user's) and cgroupfs
  [`/machine.slice/libpod-${ID}.scope`, { runtime: 'podman', containerId: ID }],
  [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope/container`, { runtime: 'podman', containerId: ID }],
  [`/libpod_parent/libpod-${ID}`, { runtime: 'podman', containerId: ID }],
  [`/machine.slice/libpod-conmon-${ID}.scope`, { runtime: 'podman', containerId: ID, monitor: true }],
  // kubepods, systemd driver: each QoS class (guaranteed pods have no class level)
  [
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
    { runtime: 'containerd', containerId: ID, podUid: UID, qos: 'burstable' },
  ],
  [
    `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`,
    { runtime: 'cri-o', containerId: ID, podUid: UID, qos: 'besteffort' },
  ],
  [`/kubepods.slice/kubepods-pod${UID_}.slice/docker-${ID}.scope`, { runtime: 'docker', containerId: ID, podUid: UID, qos: 'guaranteed' }],
  // the pod's own cgroup: a pod, no container
  [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`, { podUid: UID, qos: 'burstable' }],
  // a kind node: the kubelet's tree below a prefix
  [
    `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`,
    { runtime: 'containerd', containerId: ID, podUid: UID, qos: 'besteffort' },
  ],
  // kubepods, cgroupfs driver
  [`/kubepods/burstable/pod${UID}/${ID}`, { containerId: ID, podUid: UID, qos: 'burstable' }],
  [`/kubepods/besteffort/pod${UID}/${ID}`, { containerId: ID, podUid: UID, qos: 'besteffort' }],
  [`/kubepods/pod${UID}/${ID}`, { containerId: ID, podUid: UID, qos: 'guaranteed' }],
  [`/kubepods/burstable/pod${UID}/crio-${ID2}`, { runtime: 'cri-o', containerId: ID2, podUid: UID, qos: 'burstable' }],
  // a nested cgroup inside a container keeps the container
  [`/system.slice/docker-${ID}.scope/init.scope`, { runtime: 'docker', containerId: ID }],
  // nothing to say
  ['/', {}],
  ['/system.slice/ssh.service', {}],
  ['/user.slice/user-0.slice/session-3.scope', {}],
  [`/system.slice/docker-${ID.slice(0, 12)}.scope`, {}],
  ['/other/thing', {}],
  [`/notkube/pod${UID}/${ID}`, {}],
];

describe('cgroup path conventions', () => {
  it.each(CONVENTIONS)('%s', (path, facts) => {
    expect(parseCgroupPath(path)).toEqual(facts);
  });

  it('takes /<namespace>/<id> for a ctr container only in the namespaces it was told of', () => {
    expect(parseCgroupPath('/k8s.io/abc')).toEqual({});
    expect(parseCgroupPath('/k8s.io/abc', ['k8s.io'])).toMatchObject({ runtime: 'containerd', containerId: 'abc' });
  });

  it('finds the cgroup2 mount of a hybrid and a pure v2 host in mountinfo, unescaping it', () => {
    const hybrid = [
      '25 31 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755',
      '26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd',
      '41 25 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    expect(parseCgroup2Mount(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(parseCgroup2Mount('30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate')).toBe('/sys/fs/cgroup');
    // A container's view: a subtree bound in first, the root later wins.
    expect(parseCgroup2Mount('50 1 0:26 /docker/x /mnt/sub rw - cgroup2 cgroup2 rw\n51 1 0:26 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw')).toBe(
      '/mnt/my cg',
    );
    expect(parseCgroup2Mount('26 25 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu')).toBeUndefined();
  });

  it("reads a process's v2 path from /proc/PID/cgroup text", () => {
    expect(parseProcCgroup('12:cpu,cpuacct:/x\n1:name=systemd:/y\n0::/system.slice/a.service\n')).toBe('/system.slice/a.service');
    expect(parseProcCgroup('0::/\n')).toBe('/');
    expect(parseProcCgroup('3:memory:/x\n')).toBeUndefined();
  });
});

/** A CRI that knows one pod with one container, and counts what it is asked. */
function fakeCri(containerId: string, sandboxId: string, podUid: string): CriApi & { calls: number } {
  const pod = { id: sandboxId, metadata: { name: 'shop-7d9f', uid: podUid, namespace: 'payments', attempt: 0 }, state: 0, labels: {} };
  const container = { id: containerId, podSandboxId: sandboxId, metadata: { name: 'web', attempt: 0 }, state: 1, labels: {} };
  const cri = {
    calls: 0,
    version: () => Promise.resolve({ version: '0.1.0', runtimeName: 'fake', runtimeVersion: '1', runtimeApiVersion: 'v1' }),
    listContainers: (id?: string) => (cri.calls++, Promise.resolve(!id || id === containerId ? [container] : [])),
    listPodSandbox: (id?: string) => (cri.calls++, Promise.resolve(!id || id === sandboxId ? [pod] : [])),
    podSandboxStatus: () => Promise.resolve({ status: undefined, info: { info: '{"pid": 1}' } }),
    close: () => {},
  };
  return cri;
}

const mount = findCgroup2Mount();

describe.skipIf(!isRoot || !mount)('real cgroups of every convention', () => {
  const base = `wstrace-test-${process.pid}`;
  /** Relative paths made here, deepest last, so removal goes in reverse. */
  const made: string[] = [];
  const children: ChildProcess[] = [];
  const shapes = [
    `/${base}/system.slice/docker-${ID}.scope`,
    `/${base}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID2}.scope`,
    `/${base}/kubepods/besteffort/pod${UID}/${ID}`,
    `/${base}/machine.slice/crio-${ID}.scope`,
    `/${base}/machine.slice/libpod-${ID2}.scope`,
  ];

  function mkdirs(rel: string): void {
    const parts = rel.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = '/' + parts.slice(0, i).join('/');
      if (made.includes(p)) continue;
      mkdirSync(join(mount!, p));
      made.push(p);
    }
  }

  beforeAll(() => {
    for (const s of shapes) mkdirs(s);
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    // A cgroup can be removed once its last process has exited.
    await until(() => children.every((c) => c.exitCode !== null || c.signalCode !== null), { what: 'the test processes to exit', timeoutMs: 10_000 });
    for (const p of [...made].reverse()) {
      await until(
        () => {
          try {
            rmdirSync(join(mount!, p));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          }
          return true;
        },
        { what: `cgroup ${p} removed`, timeoutMs: 10_000 },
      );
    }
  });

  it('resolves the id of each to its path and container, and names the pod through the CRI', async () => {
    const cri = fakeCri(ID2, 'sandbox-1', UID);
    const resolver = new ContainerResolver({ mount: mount!, cri, walkIntervalMs: 0 });
    try {
      for (const s of shapes) {
        const id = statSync(join(mount!, s)).ino;
        // The event path never waits: the first look misses, and queues the walk.
        expect(resolver.peek(id)).toBeUndefined();
        const a = await resolver.resolve(id);
        expect(a).toMatchObject({ cgroup: id, path: s, ...parseCgroupPath(s.slice(base.length + 1)) });
      }
      const kube = statSync(join(mount!, shapes[1]!)).ino;
      expect(resolver.peek(kube)).toMatchObject({ containerId: ID2, containerName: 'web', pod: 'shop-7d9f', namespace: 'payments', podUid: UID, qos: 'burstable' });
      // docker is not asked (no CRI of its own); an unknown id is no error, and no entry.
      expect(resolver.peek(statSync(join(mount!, shapes[0]!)).ino)).not.toHaveProperty('pod');
      expect(await resolver.resolve(1)).toMatchObject({ path: '/' });
      expect(await resolver.resolve(0xfffffff0)).toBeUndefined();
    } finally {
      resolver.close();
    }
  });

  it("finds a process's cgroup id, and its listening socket's owner, inside a convention's cgroup", async () => {
    const shape = shapes[2]!;
    const child = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(1)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    writeFileSync(join(mount!, shape, 'cgroup.procs'), String(child.pid));
    expect(readFileSync(`/proc/${child.pid}/cgroup`, 'utf8')).toContain(`0::${shape}`);
    const resolver = new ContainerResolver({ mount: mount!, cri: false });
    try {
      const id = resolver.idOfPid(child.pid!);
      expect(id).toBe(statSync(join(mount!, shape)).ino);
      expect(await resolver.resolve(id!)).toMatchObject({ containerId: ID, podUid: UID, qos: 'besteffort' });
    } finally {
      resolver.close();
    }
  });

  it('asks the runtime again, after criRetryMs, for a container it could not name: the names come once it answers', async () => {
    let t = 0;
    let up = false;
    const real = fakeCri(ID2, 'sandbox-1', UID);
    const flaky: CriApi = {
      ...real,
      listContainers: (id) => (up ? real.listContainers(id) : Promise.reject(Object.assign(new Error('connect ENOENT'), { code: 14 }))),
    };
    const said: string[] = [];
    const resolver = new ContainerResolver({ mount: mount!, cri: flaky, walkIntervalMs: 0, criRetryMs: 1000, now: () => t, log: (l) => said.push(l) });
    try {
      const id = statSync(join(mount!, shapes[1]!)).ino;
      expect(await resolver.resolve(id)).not.toHaveProperty('pod');
      up = true;
      // Within the pause the old answer stands and the runtime is not asked.
      expect(resolver.peek(id)).not.toHaveProperty('pod');
      t += 1000;
      // Past it, the next look asks again; meanwhile it still answers what it knew.
      expect(resolver.peek(id)).not.toHaveProperty('pod');
      await resolver.resolve(id);
      await until(() => resolver.peek(id)?.pod, { what: 'the pod named after the runtime came back', timeoutMs: 5000 });
      expect(resolver.peek(id)).toMatchObject({ pod: 'shop-7d9f', namespace: 'payments', containerName: 'web' });
      expect(said).toHaveLength(1);
    } finally {
      resolver.close();
    }
  });

  it('walks at most once per interval however many unknown ids come, and keeps at most maxEntries', async () => {
    let t = 0;
    const resolver = new ContainerResolver({ mount: mount!, cri: false, walkIntervalMs: 1000, maxEntries: 2, now: () => t });
    try {
      const ids = shapes.map((s) => statSync(join(mount!, s)).ino);
      for (const id of ids) resolver.peek(id);
      await resolver.resolve(ids[0]!);
      // All five came from one walk; the cache kept the newest two.
      const known = ids.filter((id) => resolver.peek(id) !== undefined);
      expect(known.length).toBeLessThanOrEqual(2);
      // A new cgroup after the walk: its first miss waits for the interval, then one walk finds it.
      const late = `/${base}/docker/${ID2}`;
      mkdirs(late);
      const lateId = statSync(join(mount!, late)).ino;
      const pending = resolver.resolve(lateId);
      t += 1000;
      expect(await pending).toMatchObject({ runtime: 'docker', containerId: ID2 });
    } finally {
      resolver.close();
    }
  });
});

describe.skipIf(!isRoot || !mount)('a runtime that is absent or stuck', () => {
  const base = `/wstrace-cri-test-${process.pid}`;
  const paths = [`${base}/kubepods/burstable/pod${UID}/${ID}`, `${base}/kubepods/burstable/pod${UID}/${ID2}`];
  let dir: string;
  let silent: Server;
  const conns: Socket[] = [];

  beforeAll(async () => {
    for (const p of paths) mkdirSync(join(mount!, p), { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'wst-cri-'));
    // Accepts and never answers: what a hung runtime looks like from here.
    silent = createServer((c) => conns.push(c));
    await new Promise<void>((r) => silent.listen(join(dir, 'silent.sock'), r));
  });

  afterAll(async () => {
    for (const c of conns) c.destroy();
    await new Promise((r) => silent.close(r));
    rmSync(dir, { recursive: true, force: true });
    for (const p of [...paths, `${base}/kubepods/burstable/pod${UID}`, `${base}/kubepods/burstable`, `${base}/kubepods`, base]) {
      try {
        rmdirSync(join(mount!, p));
      } catch {
        // already gone
      }
    }
  });

  it.each([
    ['no socket at all', () => join(dir, 'none.sock')],
    ['a socket that never answers', () => join(dir, 'silent.sock')],
  ])('%s: containers keep their ids and pod UIDs, without names, and it is said once', async (_what, socket) => {
    const said: string[] = [];
    const resolver = new ContainerResolver({ mount: mount!, cri: socket(), criTimeoutMs: 300, walkIntervalMs: 0, log: (l) => said.push(l) });
    try {
      const started = Date.now();
      for (const p of paths) {
        const a = await resolver.resolve(statSync(join(mount!, p)).ino);
        expect(a).toMatchObject({ containerId: p.endsWith(ID) ? ID : ID2, podUid: UID, qos: 'burstable' });
        expect(a).not.toHaveProperty('pod');
      }
      // One failed call, then the runtime is left alone for criRetryMs: no call per id, no line per id.
      expect(Date.now() - started).toBeLessThan(5000);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/^wstrace: no container runtime answers at .*: containers are shown by id, without pod names$/);
    } finally {
      resolver.close();
    }
  });
});

describe('--cri-socket with --connect', () => {
  it.each(['watch', 'record'])('%s refuses it in one sentence: a remote agent asks its own runtime', async (cmd) => {
    const extra = cmd === 'record' ? ['-o', '/nonexistent/x.wsr'] : [];
    const r = spawnCli([cmd, '--connect', 'unix:/nonexistent.sock', '--cri-socket', '/run/containerd/containerd.sock', ...extra]);
    expect(await r.closed).toBe(1);
    expect(r.stderr().trim()).toBe(`wstrace: --cri-socket is for the agent ${cmd} starts itself; with --connect, give it to \`wstrace agent\`.`);
  });
});
