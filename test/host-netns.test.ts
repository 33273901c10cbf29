import { execFile } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBinding } from '../src/kernel/binding.js';
import { mibDelta, parseMib, readHostFacts, type HostFacts } from '../src/host/index.js';
import { isRoot, TestNetns } from './helpers/netns.js';

// Connects `count` times, one after another, to a port nobody listens on:
// each SYN is answered by one RST from the kernel.
const REFUSED = `
const net = require('node:net');
const [count, port] = process.argv.slice(1).map(Number);
let refused = 0;
const one = (left) => {
  if (left === 0) { console.log('refused ' + refused); return; }
  const s = net.connect({ host: '127.0.0.1', port });
  s.setTimeout(5000, () => { s.destroy(); process.exit(2); });
  s.on('connect', () => process.exit(3));
  s.on('error', (e) => { if (e.code === 'ECONNREFUSED') refused++; one(left - 1); });
};
one(count);
`;

// A listener plus `pairs` connections to itself, held open.
const HOLD = `
const net = require('node:net');
const pairs = Number(process.argv[1]);
const server = net.createServer((s) => s.on('error', () => {}));
server.listen(0, '127.0.0.1', () => {
  let up = 0;
  for (let i = 0; i < pairs; i++) {
    net.connect(server.address().port, '127.0.0.1', () => { if (++up === pairs) console.log('ready'); });
  }
});
setTimeout(() => process.exit(0), 60000);
`;

async function closedHostPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(!isRoot)('host facts per network namespace (needs root: creates namespaces)', () => {
  let ns: TestNetns;
  const facts = (): Promise<HostFacts> => readHostFacts({ netns: ns.path, binding: loadBinding() });

  beforeAll(async () => {
    ns = await TestNetns.create('wst-host');
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it('counts RSTs made inside the namespace there, and not those made on the host', async () => {
    const n = 25;
    const before = await facts();
    const out = await ns.exec(process.execPath, ['-e', REFUSED, String(n), '1']);
    expect(out.trim()).toBe(`refused ${n}`);
    const after = await facts();
    const delta = mibDelta(before.mibFlat, after.mibFlat);
    expect(delta.TcpOutRsts).toBe(n);
    expect(delta.TcpAttemptFails).toBe(n);
    expect(delta.TcpActiveOpens).toBe(n);
    // A fresh namespace starts at zero, so its absolute counters are our traffic.
    expect(after.mibFlat.TcpActiveOpens).toBe(n);

    // Ground truth: the same file read by a process living in the namespace.
    const snmp = parseMib(await ns.exec('cat', ['/proc/net/snmp']), 'snmp seen by cat in the namespace');
    expect(snmp.Tcp?.OutRsts).toBe(after.mib.Tcp?.OutRsts);
    expect(snmp.Tcp?.ActiveOpens).toBe(n);

    // Host traffic moves the host's counters and leaves the namespace's alone.
    const k = 10;
    const hostBefore = await readHostFacts();
    const port = await closedHostPort();
    const { stdout: hostOut } = await promisify(execFile)(process.execPath, ['-e', REFUSED, String(k), String(port)], {
      timeout: 20_000,
    });
    expect(hostOut.trim()).toBe(`refused ${k}`);
    const hostAfter = await readHostFacts();
    const nsLater = await facts();
    expect(mibDelta(hostBefore.mibFlat, hostAfter.mibFlat).TcpOutRsts).toBeGreaterThanOrEqual(k);
    expect(mibDelta(after.mibFlat, nsLater.mibFlat).TcpOutRsts).toBe(0);
    expect(hostAfter.mibFlat.TcpActiveOpens).not.toBe(nsLater.mibFlat.TcpActiveOpens);
  });

  it('reads net.* sysctls of the namespace and fs.* of the host', async () => {
    await ns.exec('sysctl', ['-q', '-w', 'net.core.somaxconn=1237']);
    await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=40000 40999']);
    const inside = (await facts()).sysctls;
    const host = (await readHostFacts()).sysctls;
    expect(inside.somaxconn).toBe(1237);
    expect(inside.ipLocalPortRange).toEqual({ low: 40000, high: 40999 });
    expect(host.somaxconn).toBe(Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8')));
    expect(host.somaxconn).not.toBe(1237);
    expect(inside.nrOpen).toBe(host.nrOpen);
    expect(inside.fileMax).toBe(host.fileMax);
    // tcp_mem is host-wide and only visible in the initial namespace: taken from there.
    expect(host.tcpMem).toBeDefined();
    expect(inside.tcpMem).toEqual(host.tcpMem);
  });

  it('sees the TCP sockets in use inside the namespace as sockstat and ss do', async () => {
    const pairs = 4;
    const before = await facts();
    const child = ns.spawnNode(HOLD, [pairs]);
    await child.waitForLine(/^ready$/);
    const now = await facts();
    const ssRows = (await ns.exec('ss', ['-tanH', 'exclude', 'time-wait'])).trim().split('\n').filter(Boolean);
    // One listener, and both ends of every connection.
    expect(now.sockstat.tcp.inuse - before.sockstat.tcp.inuse).toBe(1 + 2 * pairs);
    expect(now.sockstat.tcp.inuse).toBe(ssRows.length);
    child.process.kill('SIGKILL');
  });

  it('never leaves a libuv pool thread in the other namespace', async () => {
    const binding = loadBinding();
    await Promise.all(
      Array.from({ length: 16 }, () => binding.readFilesInNetns(ns.path, ['/proc/net/snmp'])),
    );
    const own = readlinkSync('/proc/self/ns/net');
    // fs.promises.readlink runs on the pool threads; /proc/thread-self names the one it runs on.
    const seen = await Promise.all(Array.from({ length: 32 }, () => readlink('/proc/thread-self/ns/net')));
    expect(new Set(seen)).toEqual(new Set([own]));
  });

  it('rejects a namespace that does not exist with one sentence', async () => {
    const missing = `/run/netns/wst-missing-${process.pid}`;
    await expect(readHostFacts({ netns: missing, binding: loadBinding() })).rejects.toThrow(
      `cannot enter network namespace ${missing}: No such file or directory`,
    );
  });
});
