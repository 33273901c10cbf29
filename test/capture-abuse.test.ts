/**
 * Captures run as root and must hold when asked badly or on purpose: bounds
 * above the ceilings refused, the disk watched while writing, refusals that
 * write nothing, a cooldown per target, no write error that ends the agent;
 * tcpdump that dies with whatever started it; a captures directory and files
 * that no other user can redirect. Real tcpdump, real files, loopback only,
 * small tmpfs mounts made (and unmounted) here.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chownSync,
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { CaptureManager, type CaptureRecord } from '../src/capture/manager.js';
import { connectAgent, type EventSource } from '../src/client/connect.js';
import type { Capture } from '../src/generated/wstrace/v1/tracer.js';
import { tracerClient, unary } from './helpers/grpc.js';
import { describeKernel, ROOT } from './helpers/kernel.js';
import { until } from './helpers/until.js';

const CLI = join(ROOT, 'bin/wstrace.js');
const MiB = 2 ** 20;

/** Processes (not zombies) of a capture of `port`: tcpdump and the supervisor around it name its filter. */
function tcpdumpsOf(port: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((d) => {
      try {
        const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
        return argv.some((a) => a.endsWith('tcpdump')) && argv.includes(`tcp and port ${port}`) ? [Number(d)] : [];
      } catch {
        return [];
      }
    });
}

/** Processes holding `file` open. */
function holders(file: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => {
      try {
        return readdirSync(`/proc/${d}/fd`).some((fd) => {
          try {
            return readlinkSync(`/proc/${d}/fd/${fd}`) === file;
          } catch {
            return false;
          }
        });
      } catch {
        return false;
      }
    })
    .map(Number);
}

function mountTmpfs(at: string, options: string): void {
  mkdirSync(at, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', at]);
}

function unmount(at: string): void {
  try {
    execFileSync('umount', [at], { stdio: 'ignore' });
  } catch {
    execFileSync('umount', ['-l', at], { stdio: 'ignore' });
  }
}

/** `tcpdump -r` reads the file through: what a person does with a capture. */
function packetsIn(file: string): number {
  const out = execFileSync('tcpdump', ['-nr', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter(Boolean).length;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * Loopback traffic to `port`, bounded in bytes and time: 64 KiB writes,
 * paced so a capture watching its disk has ticks to notice (a rate, not a
 * wait for anything). Stops early once `enough()` says so.
 */
async function pour(port: number, enough: () => boolean, maxBytes = 48 * MiB, maxMs = 30_000): Promise<number> {
  const server: Server = createServer((s) => s.resume());
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const start = Date.now();
  let sent = 0;
  try {
    while (sent < maxBytes && Date.now() - start < maxMs && !enough()) {
      if (!sock.write(chunk)) await once(sock, 'drain');
      sent += chunk.length;
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    sock.destroy();
    server.close();
  }
  return sent;
}

async function settled(client: EventSource, id: string): Promise<Capture> {
  const list = await until(() => client.listCaptures!(), {
    what: `capture ${id} to end`,
    accept: (l) => l.some((c) => c.id === id && c.state !== 'running'),
    timeoutMs: 40_000,
  });
  return list.find((c) => c.id === id)!;
}

describeKernel('capture requests: ceilings, the disk floor, refusals, cooldown, write errors (agent on a 16 MiB tmpfs)', () => {
  let base: string;
  let mnt: string;
  let caps: string;
  let agent: RunningAgent;
  let client: EventSource;
  let sock: string;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'wst-abuse-'));
    mnt = join(base, 'disk');
    mountTmpfs(mnt, 'size=16m,mode=0700');
    caps = join(mnt, 'caps');
    sock = join(base, 'agent.sock');
    agent = await startAgent({
      listen: { kind: 'unix', path: sock },
      tracer: { ports: [7931, 7932, 7933, 7934, 7935] },
      captures: { dir: caps, limits: { minFreeBytes: 8 * MiB } },
    });
    client = connectAgent({ kind: 'unix', path: sock });
  });

  afterAll(async () => {
    client?.close();
    await agent?.close();
    if (mnt) unmount(mnt);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('bounds above the ceilings are INVALID_ARGUMENT in one sentence, bytes 2^64-1 included', async () => {
    const wire = tracerClient(`unix:${sock}`);
    try {
      for (const [req, sentence] of [
        [{ port: 7931, bytes: '18446744073709551615' }, /^a capture file is at most 1073741824 bytes \(1024 MiB\)\.$/],
        [{ port: 7931, bytes: 2 ** 31 }, /^a capture file is at most 1073741824 bytes/],
        [{ port: 7931, packets: 100_000_000 }, /^a capture keeps at most 10000000 packets\.$/],
        [{ port: 7931, durationSec: 3601 }, /^a capture lasts at most 3600 seconds\.$/],
      ] as const) {
        const err = (await unary(wire, 'startCapture', req).then(
          () => undefined,
          (e: unknown) => e,
        )) as { code: number; details: string } | undefined;
        expect(err, JSON.stringify(req)).toBeDefined();
        expect(err!.code, err!.details).toBe(3); // INVALID_ARGUMENT
        expect(err!.details).toMatch(sentence);
      }
    } finally {
      wire.close();
    }
    expect((await client.listCaptures!()).filter((c) => c.filter === 'tcp and port 7931')).toEqual([]);
  });

  it('a capture that reaches the free-space floor stops, keeps a readable pcap, and says so; the next is refused', async () => {
    const c = await client.startCapture!({ port: 7932, durationSec: 60, snaplen: 65535 });
    expect(c.state).toBe('running');
    let ended = false;
    const poured = pour(7932, () => ended);
    const done = await settled(client, c.id);
    ended = true;
    await poured;
    expect(done).toMatchObject({ state: 'done', endedBy: 'disk' });
    expect(done.error).toMatch(/^stopped at the free-space floor: \d+ MiB free in .* \(floor 8 MiB\); the packets written so far are kept\.$/);
    expect(Number(done.bytes)).toBeGreaterThan(4 * MiB);
    expect(packetsIn(done.file)).toBeGreaterThan(0);
    const side = JSON.parse(readFileSync(`${done.file}.json`, 'utf8')) as CaptureRecord;
    expect(side).toMatchObject({ state: 'done', endedBy: 'disk', error: done.error });

    const below = await client.startCapture!({ port: 7933 });
    expect(below.state).toBe('refused');
    expect(below.error).toMatch(/^only \d+ MiB free in .*: captures need 8 MiB\.$/);
    expect((await client.info()).pid).toBe(process.pid);
    rmSync(done.file);
    rmSync(`${done.file}.json`);
  });

  it('a disk that fills up under a capture fails that capture with the error text; the agent keeps serving', async () => {
    const c = await client.startCapture!({ port: 7934, durationSec: 60 });
    expect(c.state).toBe('running');
    // Someone else fills the disk: the capture stops at the floor, then its sidecar cannot be written.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const block = Buffer.alloc(MiB);
    try {
      for (;;) writeSync(fd, block);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    const done = await settled(client, c.id);
    expect(done).toMatchObject({ state: 'failed', endedBy: 'disk' });
    expect(done.error).toMatch(/^cannot write the sidecar .*\.json: ENOSPC: no space left on device.*; the pcap is kept\.$/);
    expect(statSync(done.file).isFile()).toBe(true);
    expect((await client.info()).pid).toBe(process.pid);
    rmSync(filler);
    rmSync(done.file);
  });

  it('refused requests write nothing and are kept in bounded memory; the same target again is cooling down', async () => {
    const first = await client.startCapture!({ port: 7935, durationSec: 20 });
    expect(first.state).toBe('running');
    const again = await client.startCapture!({ port: 7935, durationSec: 20 });
    expect(again.state).toBe('refused');
    expect(again.error).toMatch(/^cooling down: the same capture was started \d+ s ago \(at most one every 5 s\)\.$/);
    const files = readdirSync(caps).sort();
    for (let i = 0; i < 300; i++) expect((await client.startCapture!({ port: 7935 })).state).toBe('refused');
    expect(readdirSync(caps).sort()).toEqual(files);
    const listed = await client.listCaptures!();
    const kept = listed.filter((c) => c.state === 'refused').length;
    expect(kept).toBeLessThanOrEqual(100);
    // Every refusal is kept or counted, none lost silently.
    expect(kept + agent.captures.manager.refusalsNotKept).toBeGreaterThanOrEqual(301);
    expect(listed.some((c) => c.id === first.id)).toBe(true);
  });
});

describeKernel('a capture never outlives its bounds or what started it', () => {
  beforeAll(() => {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
  });

  function run(args: string[], env: NodeJS.ProcessEnv = process.env) {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const io = { out: '', err: '' };
    child.stdout.on('data', (d: Buffer) => (io.out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (io.err += d.toString()));
    const closed = new Promise<number | string>((resolve) => child.once('close', (code, sig) => resolve(code ?? sig ?? -1)));
    return { child, io, closed };
  }

  const gone = (port: number, file: string) =>
    until(() => tcpdumpsOf(port).length === 0 && holders(file).length === 0, {
      what: `no process of the capture of port ${port} (tcpdump or one holding ${file})`,
      timeoutMs: 10_000,
    });

  for (const [signal, port] of [
    ['SIGINT', 7941],
    ['SIGTERM', 7942],
  ] as const) {
    it(`\`wstrace capture --duration 30\` stopped by ${signal}: tcpdump ends with it, the file is kept, the private socket is gone`, async () => {
      const runtime = mkdtempSync(join(tmpdir(), 'wst-runtime-'));
      const cli = run(['capture', '--port', String(port), '--duration', '30'], { ...process.env, XDG_RUNTIME_DIR: runtime });
      let file = '';
      try {
        await until(() => /capturing .* into (\S+\.pcap)/.exec(cli.io.err)?.[1], { what: `wstrace capture to say where it writes; stderr: ${cli.io.err}` });
        file = /capturing .* into (\S+\.pcap)/.exec(cli.io.err)![1]!;
        expect(tcpdumpsOf(port).length).toBeGreaterThan(0);
        expect(readdirSync(runtime)).toHaveLength(1); // the in-process agent's private socket directory
        cli.child.kill(signal);
        expect(await cli.closed).toBe(0);
        await gone(port, file);
        expect(readdirSync(runtime)).toEqual([]);
        expect(cli.io.out).toMatch(/\(tcp and port \d+; done, ended by stopped, /);
        expect(packetsIn(file)).toBe(0);
      } finally {
        cli.child.kill('SIGKILL');
        for (const f of [file, `${file}.json`]) if (f) rmSync(f, { force: true });
        rmSync(runtime, { recursive: true, force: true });
      }
    });
  }

  it('an agent killed with SIGKILL mid-capture takes its tcpdump with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wst-kill9-'));
    const sock = join(dir, 'agent.sock');
    const agent = run(['agent', '--listen', `unix:${sock}`, '--captures', join(dir, 'caps'), '--port', '7943']);
    const client = connectAgent({ kind: 'unix', path: sock });
    try {
      await until(() => agent.io.err.includes('listening on'), { what: `the agent to listen; stderr: ${agent.io.err}`, timeoutMs: 30_000 });
      const c = await client.startCapture!({ port: 7943, durationSec: 30 });
      expect(c.state).toBe('running');
      expect(holders(c.file).length).toBeGreaterThan(0);
      agent.child.kill('SIGKILL');
      await agent.closed;
      await gone(7943, c.file);
    } finally {
      client.close();
      agent.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeKernel('the captures directory and files trust no other user', () => {
  let base: string;
  const mounts: string[] = [];
  const managers: CaptureManager[] = [];

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'wst-capdir-'));
  });

  afterAll(async () => {
    for (const m of managers) await m.close();
    for (const m of mounts) unmount(m);
    rmSync(base, { recursive: true, force: true });
  });

  const manager = (dir: string) => {
    const m = new CaptureManager({ dir });
    managers.push(m);
    return m;
  };
  const manual = { kind: 'manual' as const, detail: 'test' };

  it("a directory owned by another user is refused in one sentence, and nothing is written in it", async () => {
    const dir = join(base, 'theirs');
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, 65534, 65534);
    const sentence = new RegExp(`^the captures directory ${dir} is owned by uid 65534, not root: give --captures a directory only root can write, or \`chown root: ${dir} && chmod 700 ${dir}\`\\.$`);
    await expect(manager(dir).start()).rejects.toThrow(sentence);
    const c = await manager(dir).capture({ port: 7951 }, manual, { durationSec: 1 });
    expect(c.state).toBe('refused');
    expect(c.error).toMatch(sentence);
    expect(readdirSync(dir)).toEqual([]);
    expect(statSync(dir).mode & 0o7777).toBe(0o755);
    await expect(startAgent({ listen: { kind: 'unix', path: join(base, 'a.sock') }, tracer: { ports: [7951] }, captures: { dir } })).rejects.toThrow(sentence);
  });

  it('a 1777 directory (a fresh tmpfs mount) is refused, and left as found', async () => {
    const dir = join(base, 'shared');
    mountTmpfs(dir, 'size=1m');
    mounts.push(dir);
    expect(statSync(dir).mode & 0o7777).toBe(0o1777);
    const c = await manager(dir).capture({ port: 7952 }, manual, { durationSec: 1 });
    expect(c.state).toBe('refused');
    expect(c.error).toBe(`the captures directory ${dir} can be written by other users (mode 1777): \`chmod 700 ${dir}\`, or give --captures a private directory.`);
    expect(statSync(dir).mode & 0o7777).toBe(0o1777);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a directory the manager makes is 0700; a root-owned 0755 one is made 0700', async () => {
    const made = join(base, 'made', 'caps');
    await manager(made).start();
    expect(statSync(made).mode & 0o7777).toBe(0o700);
    const open = join(base, 'open');
    mkdirSync(open, { mode: 0o755 });
    await manager(open).start();
    expect(statSync(open).mode & 0o7777).toBe(0o700);
  });

  it('links planted at the next capture names are not followed: the target is untouched and the capture says so', async () => {
    const dir = join(base, 'caps');
    const m = manager(dir);
    await m.start();
    const target = join(base, 'precious');
    writeFileSync(target, 'root-owned contents\n', { mode: 0o644 });
    // The next names: this second or the next few, sequence 1 for the pcap, 2 for the sidecar.
    const now = Date.now();
    for (let s = -1; s < 15; s++) {
      const at = stamp(now + s * 1000);
      symlinkSync(target, join(dir, `${at}-manual-7953-1.pcap`));
      symlinkSync(target, join(dir, `${at}-manual-7954-2.pcap.json`));
    }
    const first = await m.capture({ port: 7953 }, manual, { durationSec: 1 });
    expect(first.state).toBe('failed');
    expect(first.error).toBe(`${first.file} exists already (a file or link nobody should have put there): it was left untouched and nothing was captured.`);
    expect(lstatSync(first.file).isSymbolicLink()).toBe(true);

    const second = await m.capture({ port: 7954 }, manual, { durationSec: 1 });
    expect(second.state).toBe('running');
    await until(() => m.list().find((r) => r.id === second.id)?.state !== 'running', { what: 'the second capture to end' });
    expect(second.state).toBe('failed');
    expect(second.error).toBe(`cannot write the sidecar ${second.file}.json: something was already there (left untouched); the pcap is kept.`);
    expect(statSync(second.file).mode & 0o777).toBe(0o600);
    expect(packetsIn(second.file)).toBe(0);
    expect(lstatSync(`${second.file}.json`).isSymbolicLink()).toBe(true);

    expect(readFileSync(target, 'utf8')).toBe('root-owned contents\n');
    expect(statSync(target).mode & 0o777).toBe(0o644);
  });
});

describe('capture ceilings (no kernel)', () => {
  it('the manager refuses bounds above its ceilings with one sentence', async () => {
    const m = new CaptureManager({ dir: join(tmpdir(), 'wst-never-made') });
    await expect(m.capture({ port: 7960 }, { kind: 'manual', detail: 't' }, { bytes: Number.POSITIVE_INFINITY })).rejects.toThrow(
      'a capture file is at most 1073741824 bytes (1024 MiB).',
    );
    await expect(m.capture({ port: 7960 }, { kind: 'manual', detail: 't' }, { packets: 1.5 })).rejects.toThrow('a capture keeps at most 10000000 packets.');
  });
});
