import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBinding, type Binding, type SocketDump } from '../src/kernel/binding.js';
import { isRoot, TestNetns } from './helpers/netns.js';
import { until } from './helpers/until.js';

// Listens with small backlogs on 127.0.0.1 and ::1, then blocks its own event
// loop so nothing is ever accepted: connections pile up in the accept queue.
const NEVER_ACCEPT = `
const net = require('node:net');
const fs = require('node:fs');
const v4 = net.createServer();
const v6 = net.createServer();
v4.listen({ host: '127.0.0.1', port: 0, backlog: 3 }, () => {
  v6.listen({ host: '::1', port: 0, backlog: 5 }, () => {
    fs.writeSync(1, 'ports ' + v4.address().port + ' ' + v6.address().port + '\\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
    process.exit(0);
  });
});
`;

// Opens `count` connections and holds them.
const HOLD_CLIENTS = `
const net = require('node:net');
const [port, count] = process.argv.slice(1).map(Number);
let up = 0;
for (let i = 0; i < count; i++) {
  net.connect(port, '127.0.0.1', () => { if (++up === count) console.log('connected ' + up); }).on('error', (e) => {
    console.error(e.message); process.exit(2);
  });
}
setTimeout(() => process.exit(0), 120000);
`;

// A server that accepts, and closes each connection once the client has sent FIN.
const ECHO_CLOSE = `
const net = require('node:net');
const server = net.createServer((s) => { s.on('error', () => {}); s.resume(); });
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
setTimeout(() => process.exit(0), 120000);
`;

// Active close toward one port, `total` times, `parallel` at a time: the client
// sends FIN first, so every client socket ends in TIME_WAIT.
const ACTIVE_CLOSE = `
const net = require('node:net');
const [port, total, parallel] = process.argv.slice(1).map(Number);
let started = 0, closed = 0;
const next = () => {
  if (started === total) return;
  started++;
  const s = net.connect(port, '127.0.0.1', () => s.end());
  s.on('error', (e) => { console.error(e.message); process.exit(2); });
  s.resume();
  s.on('close', () => { if (++closed === total) console.log('closed ' + closed); else next(); });
};
for (let i = 0; i < parallel; i++) next();
setTimeout(() => { console.error('timed out after ' + closed); process.exit(3); }, 60000);
`;

/** `ss -H` rows: State Recv-Q Send-Q Local Peer (state column only without a state filter). */
function ssRows(text: string): string[][] {
  return text
    .trim()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(/\s+/));
}

describe('dumpSockets arguments', () => {
  it('throws TypeError naming the bad argument', () => {
    const binding = loadBinding() as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => binding.dumpSockets?.(42)).toThrow(TypeError);
    expect(() => binding.dumpSockets?.(42)).toThrow(/^options must be an object/);
    expect(() => binding.dumpSockets?.({ netns: 5 })).toThrow(/^options\.netns must be a non-empty string/);
    expect(() => binding.dumpSockets?.({ netns: '' })).toThrow(TypeError);
    expect(() => binding.readFilesInNetns?.(5, [])).toThrow(/^nsPath must be a non-empty string/);
    expect(() => binding.readFilesInNetns?.('/proc/self/ns/net', 'x')).toThrow(/^paths must be an array/);
    expect(() => binding.readFilesInNetns?.('/proc/self/ns/net', ['/ok', 7])).toThrow(
      /^paths\[1\] must be an absolute file path/,
    );
    expect(() => binding.readFilesInNetns?.('/proc/self/ns/net', ['relative'])).toThrow(TypeError);
  });
});

describe.skipIf(!isRoot)('dumpSockets in a network namespace (needs root: creates namespaces)', () => {
  let ns: TestNetns;
  let binding: Binding;
  const dump = (): Promise<SocketDump> => binding.dumpSockets({ netns: ns.path });

  beforeAll(async () => {
    binding = loadBinding();
    ns = await TestNetns.create('wst-sockdiag');
    // For the TIME_WAIT test: ports enough that none is reused (reuse ends a
    // TIME_WAIT early), and RFC 1337 so a stray RST does not end one either
    // (under this load loopback sends about one RST per hundred connections).
    await ns.exec('sysctl', [
      '-q',
      '-w',
      'net.ipv4.ip_local_port_range=10000 65000',
      'net.ipv4.tcp_tw_reuse=0',
      'net.ipv4.tcp_rfc1337=1',
    ]);
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('starts empty in a fresh namespace', async () => {
    expect(await dump()).toEqual({ listeners: [], timewait: [], timewaitTotal: 0 });
  });

  it('shows a full accept queue with its backlog, as ss does', async () => {
    const server = ns.spawnNode(NEVER_ACCEPT, []);
    const [, v4, v6] = (await server.waitForLine(/^ports (\d+) (\d+)$/)).map(Number);
    const clients = ns.spawnNode(HOLD_CLIENTS, [v4 ?? 0, 3]);
    await clients.waitForLine(/^connected 3$/);

    const find = (d: SocketDump, port: number | undefined) => d.listeners.find((l) => l.port === port);
    const seen = await until(dump, { what: `3 connections queued on port ${v4}`, accept: (d) => find(d, v4)?.queue === 3 });
    const listener = find(seen, v4);
    expect(listener).toMatchObject({ family: 'ipv4', addr: '127.0.0.1', port: v4, queue: 3, backlog: 3, uid: 0 });
    expect(listener?.inode).toBeGreaterThan(0);
    expect(find(seen, v6)).toMatchObject({ family: 'ipv6', addr: '::1', queue: 0, backlog: 5 });

    const ss = ssRows(await ns.exec('ss', ['-ltnH', `sport = :${v4}`]));
    expect(ss).toHaveLength(1);
    // LISTEN rows: Recv-Q is the accept queue now, Send-Q the backlog.
    expect(Number(ss[0]?.[1])).toBe(listener?.queue);
    expect(Number(ss[0]?.[2])).toBe(listener?.backlog);

    clients.process.kill('SIGKILL');
    server.process.kill('SIGKILL');
  });

  it('groups tens of thousands of TIME_WAIT sockets by destination, as ss counts them', async () => {
    const m = 20_000;
    const server = ns.spawnNode(ECHO_CLOSE, []);
    const port = Number((await server.waitForLine(/^port (\d+)$/))[1]);
    const before = await dump();
    const client = ns.spawnNode(ACTIVE_CLOSE, [port, m, 200]);
    await client.waitForLine(new RegExp(`^closed ${m}$`), 60_000);

    const seen = await until(dump, { what: `${m} more TIME_WAIT sockets`, accept: (d) => d.timewaitTotal - before.timewaitTotal >= m });
    const group = seen.timewait.find((g) => g.rport === port);
    expect(group).toEqual({ family: 'ipv4', raddr: '127.0.0.1', rport: port, count: m });
    expect(seen.timewaitTotal).toBe(before.timewaitTotal + m);
    expect(seen.timewait.reduce((sum, g) => sum + g.count, 0)).toBe(seen.timewaitTotal);

    const ss = ssRows(await ns.exec('ss', ['-tanH', 'state', 'time-wait', `dport = :${port}`]));
    expect(ss).toHaveLength(m);
    // The server closed passively: no TIME_WAIT on its side.
    expect(seen.timewait.some((g) => g.rport !== port && g.raddr === '127.0.0.1')).toBe(false);

    // Same numbers through the host facts: sockstat's tw is this namespace's.
    const sockstat = await binding.readFilesInNetns(ns.path, ['/proc/net/sockstat']);
    expect(sockstat[0]).toMatch(new RegExp(`\\btw ${seen.timewaitTotal}\\b`));
    server.process.kill('SIGKILL');
  });

  it('rejects a namespace path that does not exist, or is not a namespace, with one sentence', async () => {
    const missing = `/run/netns/wst-missing-${process.pid}`;
    await expect(binding.dumpSockets({ netns: missing })).rejects.toThrow(
      `cannot enter network namespace ${missing}: No such file or directory`,
    );
    await expect(binding.dumpSockets({ netns: '/etc/hostname' })).rejects.toThrow(
      'cannot enter network namespace /etc/hostname: Invalid argument',
    );
    await expect(binding.readFilesInNetns(missing, ['/proc/net/snmp'])).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('dumps the current namespace without options', async () => {
    const own = await binding.dumpSockets();
    expect(Array.isArray(own.listeners)).toBe(true);
    expect(own.timewaitTotal).toBe(own.timewait.reduce((sum, g) => sum + g.count, 0));
  });
});
