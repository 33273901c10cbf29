/**
 * The socket's cgroup (issue 16 item 1), on real cgroups this test makes under
 * the cgroup2 mount, with real processes moved into them before they make
 * their sockets, and their traffic in a test network namespace:
 * - every event and Snapshot row of a listener carries its cgroup's id (the
 *   directory's inode number), from the kernel's record of the socket, not
 *   from whichever task was on the CPU;
 * - `watch --cgroup` keeps, in the kernel, the events of that cgroup and the
 *   cgroups below it, none of another's, and its counts equal the namespace's
 *   MIB counters;
 * - a path that is not a cgroup is refused in one sentence.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFilters } from '../src/agent/filter.js';
import type { Event, EventFilter } from '../src/generated/wstrace/v1/tracer.js';
import { cgroup2Mount, cgroupComponents } from '../src/kernel/cgroup.js';
import { TestCgroup } from './helpers/cgroup.js';
import { CLI, spawnCli } from './helpers/cli.js';
import { following, tracerClient, unary } from './helpers/grpc.js';
import { delta, describeKernel, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

const run = promisify(execFile);
const TRAFFIC = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'traffic.py');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
type JsonLine = Record<string, unknown>;

/**
 * A listener: "abort" accepts each connection and closes it with SO_LINGER 0
 * (one RST per connection); "hold" never accepts (its queue fills).
 */
const ABORT_SERVER = `
import socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(int(sys.argv[2]))
print("listening", flush=True)
while sys.argv[3] == "hold":
    time.sleep(3600)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
`;

/** k connections left open a moment (never accepted), then closed. */
const FILL_CLIENT = `
import socket, sys, time
port, k = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(k):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    held.append(c)
    time.sleep(0.02)
time.sleep(0.3)
for c in held:
    c.close()
`;

/** n connections, one after another, each read until the server's RST ends it; prints how many were reset. */
const RESET_CLIENT = `
import json, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
resets = 0
for _ in range(n):
    c = socket.socket()
    c.settimeout(10)
    try:
        # The RST can beat connect()'s own return: the handshake was done, the reset is this connection's.
        c.connect(("127.0.0.1", port))
        c.recv(1)
    except ConnectionResetError:
        resets += 1
    c.close()
print(json.dumps({"resets": resets}), flush=True)
`;

function jsonLines(text: string): JsonLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as JsonLine);
}

/** The cgroup id of this test process's own cgroup v2 (the root on this host: 1). */
function ownCgroupId(): number {
  const mount = cgroup2Mount()!;
  const own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  return statSync(`${mount.replace(/\/+$/, '')}${own === '/' ? '' : own}`).ino;
}

describe('cgroup paths, as --cgroup reads them (no kernel needed)', () => {
  it('the cgroup2 mount comes from mountinfo: a v1/v2 hybrid, a pure v2 host, an escaped mount point', () => {
    const hybrid = [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    expect(cgroup2Mount(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2Mount('29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate')).toBe(
      '/sys/fs/cgroup',
    );
    expect(cgroup2Mount('50 23 0:40 / /mnt/my\\040cgroups rw - cgroup2 none rw')).toBe('/mnt/my cgroups');
    expect(cgroup2Mount('32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu')).toBeUndefined();
  });

  it('a path is taken under the mount, absolute or relative to it; `..` and NUL are refused by their shape', () => {
    const m = '/sys/fs/cgroup/unified';
    expect(cgroupComponents('/system.slice/x.service', m)).toEqual(['system.slice', 'x.service']);
    expect(cgroupComponents('system.slice/x.service', m)).toEqual(['system.slice', 'x.service']);
    expect(cgroupComponents('/sys/fs/cgroup/unified/system.slice', m)).toEqual(['system.slice']);
    expect(cgroupComponents('/sys/fs/cgroup/unified', m)).toEqual([]);
    expect(cgroupComponents('/', m)).toEqual([]);
    expect(cgroupComponents('/a/./b//', m)).toEqual(['a', 'b']);
    expect(cgroupComponents('/a/../../etc', m)).toBeUndefined();
    expect(cgroupComponents('..', m)).toBeUndefined();
    expect(cgroupComponents('/a\0b', m)).toBeUndefined();
    expect(cgroupComponents('', m)).toBeUndefined();
  });
});

describeKernel('the socket\'s cgroup in the kernel (real cgroups, a test netns)', () => {
  let ns: TestNetns;
  let top: TestCgroup;
  let a: TestCgroup;
  let b: TestCgroup;
  let dir: string;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-cg');
    top = TestCgroup.create(`wst-cg-${process.pid}`);
    a = top.child('a');
    b = top.child('b');
    dir = mkdtempSync(join(tmpdir(), 'wst-cg-'));
  });
  afterAll(async () => {
    await top?.destroy();
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a listener\'s events and Snapshot rows (listener, reset, TIME_WAIT) carry its cgroup\'s id; a socket of this process carries its own cgroup\'s', async () => {
    const sock = join(dir, 'agent.sock');
    const agent = spawnCli(['agent', '--listen', `unix:${sock}`, '--netns', ns.path, '--event-budget', '0'], { stdout: 'ignore' });
    await agent.waitStderr('listening on');
    const client = tracerClient(`unix://${sock}`);
    const events: Any[] = [];
    const call = client.watch({ follow: true });
    call.on('data', (m: Any) => {
      if (m.response === 'batch') events.push(...m.batch.events);
    });
    call.on('error', () => {});
    try {
      await following(call);
      // A listener of cgroup a that never accepts, its queue filled by clients of cgroup b: the kernel
      // sees it full while handling b's packets (on loopback, in b's task), yet it is a's socket.
      const full = a.spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', ABORT_SERVER, 7611, 1, 'hold']);
      await full.waitForLine(/listening/);
      const clients = b.spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', FILL_CLIENT, 7611, 4]);
      expect(await clients.closed).toBe(0);
      // A listener in cgroup b that nobody connects to: the kernel never sees it, sock_diag does.
      const idle = b.spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', ABORT_SERVER, 7612, 8, 'hold']);
      await idle.waitForLine(/listening/);
      // Both ends in this test's own process tree: its own cgroup.
      await ns.traffic('linger0', 7613);
      // Three client sockets of cgroup a go to TIME_WAIT toward 7614.
      const tw = a.spawn('ip', ['netns', 'exec', ns.name, 'python3', TRAFFIC, 'timewait', 3, 7614]);
      expect(await tw.closed).toBe(0);

      const onPort = (p: number) => events.filter((e) => e.localPort === p);
      const touching = (p: number) => events.filter((e) => e.localPort === p || e.remotePort === p);
      // linger0: the client's reset sent, and the server's child receiving it.
      await until(
        () => onPort(7611).some((e) => e.kind === 'EVENT_KIND_ACCEPT_QUEUE_FULL') && touching(7613).length >= 2 && touching(7614).length >= 3,
        { what: 'the accept queue of 7611 seen full, both ends of the reset on 7613, the TIME_WAITs toward 7614' },
      );
      const listenerEvents = onPort(7611).filter((e) => e.kind === 'EVENT_KIND_LISTEN_OVERFLOW' || e.kind === 'EVENT_KIND_ACCEPT_QUEUE_FULL');
      expect(listenerEvents.length).toBeGreaterThan(0);
      for (const e of onPort(7611)) expect({ kind: e.kind, cgroup: e.cgroup }).toEqual({ kind: e.kind, cgroup: a.id() });
      // Closed: its Snapshot row is then the kernel's own.
      full.process.kill('SIGKILL');
      await full.closed;
      for (const e of touching(7614)) expect({ kind: e.kind, cgroup: e.cgroup }).toEqual({ kind: e.kind, cgroup: a.id() });
      for (const e of touching(7613)) expect({ kind: e.kind, cgroup: e.cgroup }).toEqual({ kind: e.kind, cgroup: ownCgroupId() });

      const snap = await unary<Any>(client, 'snapshot');
      const row = (port: number) => snap.listeners.find((l: Any) => l.port === port);
      // 7611 is closed now: its row is the kernel's, which kept the listener's cgroup.
      expect(row(7611)).toMatchObject({ live: false, cgroup: a.id() });
      expect(row(7611).fullHits).toBeGreaterThan(0);
      // 7612 never queued a child: its row is sock_diag's, which reports the socket's cgroup too.
      expect(row(7612)).toMatchObject({ live: true, cgroup: b.id() });
      // Reset and TIME_WAIT rows are kept per cgroup too.
      const received7613 = snap.resets.filter((r: Any) => r.localPort === 7613 && r.direction === 'DIRECTION_RECEIVED');
      expect(received7613.map((r: Any) => [r.count, r.cgroup])).toEqual([[1, ownCgroupId()]]);
      const tw7614 = snap.timewait.filter((d: Any) => d.remotePort === 7614);
      expect(tw7614.map((d: Any) => [d.created, d.cgroup])).toEqual([[3, a.id()]]);
    } finally {
      call.cancel();
      client.close();
      agent.child.kill('SIGINT');
      await agent.closed;
    }
  });

  it('`watch --cgroup` keeps, in the kernel, that cgroup and the ones below it: exact against the namespace\'s counters', async () => {
    const port = 7621;
    const connections = 40;
    const server = a.spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', ABORT_SERVER, port, 64, 'abort']);
    await server.waitForLine(/listening/);
    // An agent that keeps every cgroup: with --connect, the agent filters the stream itself.
    const sock = join(dir, 'filter.sock');
    const agent = spawnCli(['agent', '--listen', `unix:${sock}`, '--netns', ns.path, '--event-budget', '0'], { stdout: 'ignore' });
    await agent.waitStderr('listening on');
    // a by its path relative to the mount, b by its full path, their parent by its relative path.
    const watches = {
      a: spawnCli(['watch', '--json', '--event-budget', '0', '--netns', ns.name, '--cgroup', a.rel]),
      b: spawnCli(['watch', '--json', '--event-budget', '0', '--netns', ns.name, '--cgroup', b.path]),
      both: spawnCli(['watch', '--json', '--event-budget', '0', '--netns', ns.name, '--cgroup', top.rel]),
      remote: spawnCli(['watch', '--json', '--connect', `unix:${sock}`, '--cgroup', top.rel]),
    };
    for (const w of Object.values(watches)) await w.waitStderr('live:');
    expect(watches.a.stderr()).toContain(`cgroup ${a.rel} and below`);

    const before = ns.nstat();
    // The clients in b: the server's RSTs are a's sockets' events, their receipt b's.
    const clients = b.spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', RESET_CLIENT, port, connections]);
    expect(await clients.closed).toBe(0);
    expect(JSON.parse(clients.stdout().trim())).toEqual({ resets: connections });
    const after = ns.nstat();
    const sent = delta(after, before, 'TcpOutRsts');
    // EstabResets counts both ends of each connection (the server's abort closes its child from
    // ESTABLISHED too); TCPAbortOnData counts the server's linger-0 closes alone: the rest is the clients'.
    const aborts = delta(after, before, 'TcpExtTCPAbortOnData');
    const received = delta(after, before, 'TcpEstabResets') - aborts;
    expect([sent, aborts, received]).toEqual([connections, connections, connections]);

    const count = (w: keyof typeof watches, kind: string) => jsonLines(watches[w].stdout()).filter((l) => l.kind === kind).length;
    await until(
      () =>
        count('a', 'reset_sent') >= sent &&
        count('b', 'reset_received') >= received &&
        count('both', 'reset_received') >= received &&
        count('remote', 'reset_received') >= received,
      { what: 'every reset in the watches' },
    );
    for (const w of Object.values(watches)) {
      w.child.kill('SIGINT');
      expect(await w.closed).toBe(0);
    }
    agent.child.kill('SIGINT');
    await agent.closed;
    const lines = {
      a: jsonLines(watches.a.stdout()),
      b: jsonLines(watches.b.stdout()),
      both: jsonLines(watches.both.stdout()),
      remote: jsonLines(watches.remote.stdout()),
    };
    const tally = (ls: JsonLine[]) => {
      const t: Record<string, number> = {};
      for (const l of ls) t[`${String(l.kind)} ${String(l.cgroup)}`] = (t[`${String(l.kind)} ${String(l.cgroup)}`] ?? 0) + 1;
      return t;
    };
    // Nothing but the cgroup's own sockets' events, and all of them: the MIB counters' figures.
    expect(tally(lines.a)).toEqual({ [`reset_sent ${a.id()}`]: sent });
    expect(tally(lines.b)).toEqual({ [`reset_received ${b.id()}`]: received });
    // The parent keeps both of its children's.
    expect(tally(lines.both)).toEqual({ [`reset_sent ${a.id()}`]: sent, [`reset_received ${b.id()}`]: received });
    // The same through an agent that traced everything, filtered by it for this stream.
    expect(tally(lines.remote)).toEqual(tally(lines.both));
    for (const l of lines.a) expect(l).toMatchObject({ lport: port, netns: ns.inode() });
  });

  it('a Watch filter by cgroup path keeps that cgroup and those below it, one made later too; an id keeps that cgroup alone', async () => {
    const none: EventFilter = { kinds: [], ports: [], localPorts: [], remotePorts: [], localAddrs: [], remoteAddrs: [], netns: [], cgroups: [] };
    const ev = (cgroup?: number): Event => ({
      timeUnixMicros: 0,
      kind: 1,
      family: 1,
      localAddr: '127.0.0.1',
      localPort: 1,
      remoteAddr: '127.0.0.1',
      remotePort: 2,
      netns: 1,
      state: '',
      reason: '',
      comm: '',
      ...(cgroup ? { cgroup } : {}),
    });
    const byPath = compileFilters([{ ...none, cgroups: [top.rel] }], []);
    expect([top.id(), a.id(), b.id()].map((id) => byPath(ev(id)))).toEqual([true, true, true]);
    expect([byPath(ev(1)), byPath(ev())]).toEqual([false, false]);
    // A cgroup made after the filter (a container started later in a pod) is found on a later look.
    const late = top.child('late');
    await until(() => byPath(ev(late.id())), { what: 'a cgroup made later to match its parent\'s filter', timeoutMs: 5_000 });
    const byId = compileFilters([{ ...none, cgroups: [String(top.id())] }], []);
    expect([byId(ev(top.id())), byId(ev(a.id()))]).toEqual([true, false]);
    expect(() => compileFilters([{ ...none, cgroups: [`${top.rel}/../../etc`] }], [])).toThrow(
      /^filter cgroup ".*" is not a cgroup of the agent: give a path of its cgroup2 hierarchy \(under its mount, or relative to it\) or a cgroup id\.$/,
    );
  });

  it('a --cgroup that names no cgroup is refused in one sentence, before anything loads', async () => {
    const mount = cgroup2Mount()!;
    const refused = async (args: string[]) => {
      const r = await run(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      return r.stderr.trim();
    };
    expect(await refused(['watch', '--cgroup', '/wst-no-such-cgroup'])).toBe(
      `wstrace: cgroup "/wst-no-such-cgroup" not found under ${mount}: give a directory of the cgroup2 hierarchy, as a path under its mount or relative to it (/system.slice/x.service).`,
    );
    expect(await refused(['watch', '--cgroup', `${top.rel}/../../etc`])).toMatch(/^wstrace: ".*" is not a cgroup path: give a directory/);
    expect(await refused(['record', '-o', join(dir, 'x.wsr'), '--cgroup', `${a.rel}/cgroup.procs`])).toMatch(/is not a cgroup under/);
    expect(await refused(['agent', '--listen', `unix:${join(dir, 'x.sock')}`, ...Array.from({ length: 9 }, () => ['--cgroup', a.rel]).flat()])).toBe(
      'wstrace: at most 8 cgroups can be watched at once.',
    );
    expect(await refused(['top', '--connect', `unix:${join(dir, 'none.sock')}`, '--cgroup', a.rel])).toMatch(
      /^wstrace: --port, --netns, --cgroup, --ring-bytes and --event-budget shape an agent top starts itself/,
    );
  });
});
