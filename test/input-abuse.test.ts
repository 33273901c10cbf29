/**
 * Issue 13, items 7–11, as a careless user or a hostile client meets them:
 * every bad value is one sentence and its documented exit code before
 * anything loads; the agent's Watch and Doctor refuse what cannot be as
 * INVALID_ARGUMENT without opening the caller's paths or echoing their text
 * whole; and every way a person stops a command (SIGINT, SIGTERM, SIGHUP, a
 * reader that goes away) ends it cleanly: exit 0, its private agent directory
 * or socket removed, its BPF programs unloaded.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { recordOptions } from '../src/cli/record.js';
import { CLI, spawnCli } from './helpers/cli.js';
import { tracerClient, unary } from './helpers/grpc.js';
import { describeKernel, heldProgramIds, loadedPrograms, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { Tmux } from './helpers/tmux.js';
import { processGone, until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** setpriv's way to run a command as nobody, as an unprivileged user would. */
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/**
 * The project as nobody can reach it. A clone under /root (CI's) sits behind
 * a 0700 directory; the files themselves are world-readable, so the project
 * is bind-mounted under /tmp for the run and unmounted after.
 */
let nobodyRoot: string | undefined;
function nobodyCli(): string {
  if (!nobodyRoot) {
    nobodyRoot = mkdtempSync(join(tmpdir(), 'wst-nobody-'));
    execFileSync('chmod', ['0755', nobodyRoot]);
    execFileSync('mount', ['--bind', ROOT, nobodyRoot]);
  }
  return join(nobodyRoot, relative(ROOT, CLI));
}
afterAll(() => {
  if (!nobodyRoot) return;
  execFileSync('umount', [nobodyRoot]);
  rmSync(nobodyRoot, { recursive: true, force: true });
});

interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `wstrace ARGS` to its end, with TMPDIR set so a private agent directory it leaves would show. */
function wstrace(args: string[], opts: { tmp?: string; asNobody?: boolean } = {}): Ran {
  const env = { ...process.env };
  delete env.XDG_RUNTIME_DIR;
  if (opts.tmp) env.TMPDIR = opts.tmp;
  const [cmd, ...pre] = opts.asNobody ? [...AS_NOBODY, process.execPath] : [process.execPath];
  const cli = opts.asNobody ? nobodyCli() : CLI;
  const r = spawnSync(cmd!, [...pre, cli, ...args], { encoding: 'utf8', cwd: opts.asNobody ? '/' : ROOT, env, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One sentence on one line, no stack trace. */
function oneSentence(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^wstrace: [^\n]+\.$/);
  return lines[0]!;
}

/** A pid that runs nothing: a child that has exited and been reaped. */
function deadPid(): number {
  const child = spawnSync('true');
  return child.pid!;
}

describe('flags that would run unbounded, or retry a typo forever: one sentence and exit 1', () => {
  const usage = (args: string[]) => {
    const r = wstrace(args);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    const [first = '', help = ''] = r.stderr.trimEnd().split('\n');
    expect(help).toBe('(run with --help for usage)');
    return first;
  };

  it('--duration beyond 30 days (3000000, 1e308) is refused instead of stopping at once', () => {
    for (const value of ['3000000', '1e308']) {
      expect(usage(['watch', '--duration', value])).toBe(
        `error: option '--duration <seconds>' argument '${value}' is invalid. give a positive number of seconds, at most 2592000 (30 days).`,
      );
      expect(usage(['record', '-o', '/nonexistent/x.wsr', '--duration', value])).toMatch(/at most 2592000 \(30 days\)\.$/);
    }
  });

  it('--since before 1970 (99999999999d) is refused instead of failing in serialization', () => {
    expect(usage(['watch', '--since', '99999999999d'])).toMatch(/argument '99999999999d' is invalid\. give a time like .*\.$/);
  });

  it('top --connect parses every address up front', () => {
    for (const list of ['garbage', 'unix:/run/a.sock,garbage', 'tcp://host']) {
      expect(usage(['top', '--connect', list])).toBe(
        `error: option '--connect <addr[,addr...]>' argument '${list}' is invalid. give one or more agent addresses: unix:/PATH or tcp://HOST:PORT, comma-separated.`,
      );
    }
  });

  it('record --max-size takes sizes with suffixes from 1M to 1T, and help says --rotate works without it', () => {
    const size = (text: string) => recordOptions.shape.maxSize.safeParse(text);
    expect(size('100M').data).toBe(100 * 2 ** 20);
    expect(size('1G').data).toBe(2 ** 30);
    expect(size('1T').data).toBe(2 ** 40);
    expect(size('1048576').data).toBe(2 ** 20);
    expect(size('2048KiB').data).toBe(2 ** 21);
    for (const bad of ['10', '1023K', '2T', '1.5G', 'M', '-1M']) expect(size(bad).success, bad).toBe(false);
    expect(usage(['record', '-o', '/nonexistent/x.wsr', '--max-size', '10'])).toMatch(
      /argument '10' is invalid\. give a size from 1M to 1T: a number of bytes, or one with K, M, G or T \(powers of 1024\)\.$/,
    );
    const help = wstrace(['record', '--help']).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('--rotate <n> at the cap (--max-size, 100M unless given), keep going and keep n older parts');
  });

  it('agent refuses TLS flags on a unix listener, before it makes the socket', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wst-input-'));
    try {
      const sock = join(dir, 'run', 'agent.sock');
      const r = wstrace(['agent', '--listen', `unix:${sock}`, '--tls-cert', '/nonexistent']);
      expect(r.status, r.stderr).toBe(1);
      expect(oneSentence(r.stderr)).toBe(
        'wstrace: --tls-cert, --tls-key and --tls-client-ca are for a tcp:// listener (a unix socket is guarded by its file mode): drop them, or listen on tcp://HOST:PORT.',
      );
      expect(existsSync(join(dir, 'run'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('doctor --pid of no process says so and exits 3', () => {
    const pid = deadPid();
    const r = wstrace(['doctor', '--pid', String(pid)]);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toBe('');
    expect(oneSentence(r.stderr)).toBe(`wstrace: no process ${pid}: give the pid of a running process.`);
  });
});

describeKernel('--netns names a network namespace, or one sentence before anything loads', () => {
  let ns: TestNetns;
  let dir: string;
  let tmp: string;
  let regular: string;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-input');
    dir = mkdtempSync(join(tmpdir(), 'wst-input-'));
    tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    regular = join(dir, 'plain-file');
    writeFileSync(regular, 'not a namespace\n');
  });
  afterAll(async () => {
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const COMMANDS: Array<[string, (netns: string) => string[], number]> = [
    ['watch', (n) => ['watch', '--netns', n, '--duration', '5'], 1],
    ['record', (n) => ['record', '-o', join(dir, 'never.wsr'), '--netns', n, '--duration', '5'], 1],
    ['capture', (n) => ['capture', '--netns', n, '--port', '7960', '--duration', '1'], 1],
    ['agent', (n) => ['agent', '--listen', `unix:${join(dir, 'agent-run', 'a.sock')}`, '--netns', n], 1],
    ['top', (n) => ['top', '--netns', n], 1],
    ['doctor', (n) => ['doctor', '--netns', n], 3],
  ];

  it.each(COMMANDS)('%s: a regular file, another namespace type or any other path is "not a network namespace"', (_name, args, exit) => {
    for (const spec of [regular, '/proc/self/ns/mnt', '/etc/shadow', '../../etc/passwd']) {
      const r = wstrace(args(spec), { tmp });
      expect(r.status, `${spec}: ${r.stderr}`).toBe(exit);
      expect(r.stdout).toBe('');
      expect(oneSentence(r.stderr)).toBe(
        `wstrace: "${spec}" is not a network namespace: give a name from \`ip netns list\`, /run/netns/NAME or /proc/PID/ns/net.`,
      );
      // Nothing was started: no private agent directory, no agent socket directory, no recording.
      expect(readdirSync(tmp)).toEqual([]);
      expect(existsSync(join(dir, 'agent-run'))).toBe(false);
      expect(existsSync(join(dir, 'never.wsr'))).toBe(false);
    }
  });

  it('a name that is not there is "not found", with doctor exiting 3 for it; a real one is taken however it is named', () => {
    const r = wstrace(['doctor', '--netns', 'wst-no-such-ns']);
    expect(r.status, r.stderr).toBe(3);
    expect(oneSentence(r.stderr)).toMatch(/^wstrace: network namespace "wst-no-such-ns" not found \(\/run\/netns\/wst-no-such-ns\): /);
    for (const spec of [ns.name, ns.path, `/proc/${process.pid}/ns/net`]) {
      const ok = wstrace(['doctor', '--json', '--netns', spec, '--port', '7960']);
      expect([0, 1, 2], `${spec}: ${ok.stderr}`).toContain(ok.status);
      expect((JSON.parse(ok.stdout) as { scope: string }).scope).toContain(spec);
    }
  });

  it('permission denied is said as such, not as "not found"', () => {
    // Another user's (root's) namespace, as nobody: the kernel answers EACCES.
    const r = wstrace(['watch', '--netns', `/proc/${process.pid}/ns/net`], { asNobody: true });
    expect(r.status, r.stderr).toBe(1);
    expect(oneSentence(r.stderr)).toBe(
      `wstrace: cannot open network namespace /proc/${process.pid}/ns/net: permission denied (run wstrace as root, with access to that namespace).`,
    );
  });

  it('doctor as a non-root user asked to enter a namespace exits 3, not its "warnings" 1', () => {
    const r = wstrace(['doctor', '--netns', ns.name], { asNobody: true });
    expect(r.status, r.stderr).toBe(3);
    expect(oneSentence(r.stderr)).toBe(
      `wstrace: checking network namespace ${ns.name} means entering it, which needs root: run doctor with sudo.`,
    );
  });
});

/** Watch's answer: the error a stream ends with, or 'ok' once the agent sent its first status (code -1: no answer in 10 s). */
function watchAnswer(client: Any, request: object): Promise<{ code: number; details: string } | 'ok'> {
  return new Promise((resolve) => {
    const call = client.watch({ follow: false, ...request });
    const silent = setTimeout(() => {
      resolve({ code: -1, details: 'no answer in 10 s' });
      call.cancel();
    }, 10_000);
    call.on('close', () => clearTimeout(silent));
    call.on('data', () => {
      resolve('ok');
      call.cancel();
    });
    call.on('error', (e: { code: number; details: string }) => resolve(e.code === 1 ? 'ok' : { code: e.code, details: e.details }));
    call.on('end', () => resolve('ok'));
  });
}

function unaryError(client: Any, method: string, request: object): Promise<{ code: number; details: string } | undefined> {
  return unary(client, method, request).then(
    () => undefined,
    (e: { code: number; details: string }) => ({ code: e.code, details: e.details }),
  );
}

const INVALID_ARGUMENT = 3;

describeKernel('Watch and Doctor from any client: INVALID_ARGUMENT in one bounded sentence', () => {
  let dir: string;
  let agent: RunningAgent;
  let client: Any;
  let ns: TestNetns;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-input-rpc');
    dir = mkdtempSync(join(tmpdir(), 'wst-input-rpc-'));
    const path = join(dir, 'agent.sock');
    agent = await startAgent({ listen: { kind: 'unix', path }, tracer: { ports: [7962] } });
    client = tracerClient(`unix:${path}`);
  });
  afterAll(async () => {
    client?.close();
    await agent?.close();
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const filterSentence = (spec: string) =>
    `filter netns "${spec}" is not a network namespace of the agent: give an inode, a name from \`ip netns list\`, /run/netns/NAME or /proc/PID/ns/net.`;

  it('a netns filter opens nothing but /run/netns and /proc/PID/ns/net, says the same whether or not a file exists, and takes real ones', async () => {
    const specs = [
      '/etc/shadow',
      '../../etc/passwd',
      '/nonexistent',
      '/run/netns/../../etc/shadow',
      '/proc/self/ns/mnt',
      '/proc/1/root/etc/shadow',
      'wst-no-such-ns',
      `/run/netns/wst-no-such-ns`,
      '99999999999',
    ];
    for (const spec of specs) {
      const answer = await watchAnswer(client, { allow: [{ netns: [spec] }] });
      expect(answer, spec).toEqual({ code: INVALID_ARGUMENT, details: filterSentence(spec) });
    }
    for (const spec of [ns.name, ns.path, `/proc/${process.pid}/ns/net`, String(ns.inode())]) {
      expect(await watchAnswer(client, { allow: [{ netns: [spec] }] }), spec).toBe('ok');
    }
  });

  it('a 100 KB filter value comes back clipped, not whole', async () => {
    for (const spec of ['h'.repeat(100_000), `/run/netns/${'x'.repeat(100_000)}`]) {
      const answer = await watchAnswer(client, { deny: [{ netns: [spec] }] });
      expect(answer).toEqual({ code: INVALID_ARGUMENT, details: filterSentence(`${spec.slice(0, 80)}…`) });
    }
  });

  it('since beyond 2^53 or before 1970 is INVALID_ARGUMENT, not INTERNAL', async () => {
    expect(await watchAnswer(client, { sinceUnixMicros: '9000000000000000000' })).toEqual({
      code: INVALID_ARGUMENT,
      details: 'since_unix_micros beyond 2^53 is not a time: give microseconds since 1970, or 0 for no bound.',
    });
    expect(await watchAnswer(client, { sinceUnixMicros: -1 })).toEqual({
      code: INVALID_ARGUMENT,
      details: 'since_unix_micros -1 is not a time: give microseconds since 1970, or 0 for no bound.',
    });
    expect(await watchAnswer(client, { sinceUnixMicros: Date.now() * 1000 - 60e6 })).toBe('ok');
  });

  it('Doctor refuses ports 0 and 70000, pid 2^32-1 and a pid that runs nothing; a real scope is answered', async () => {
    const dead = deadPid();
    for (const [request, details] of [
      [{ ports: [0] }, 'port "0" is not a TCP port: give a number from 1 to 65535.'],
      [{ ports: [7962, 70000] }, 'port "70000" is not a TCP port: give a number from 1 to 65535.'],
      [{ pid: 2 ** 32 - 1 }, 'pid 4294967295 is not a process id: give a number from 1 to 4194304.'],
      [{ pid: dead }, `no process ${dead}: give the pid of a running process.`],
    ] as const) {
      expect(await unaryError(client, 'doctor', request), JSON.stringify(request)).toEqual({ code: INVALID_ARGUMENT, details });
    }
    const r = await unary<{ status: string }>(client, 'doctor', { ports: [7962], pid: process.pid });
    expect(['ok', 'warn', 'fail']).toContain(r.status);
  });
});

/** The wst_ programs a process holds once it is live, checked to be wstrace's own so "gone" later means something. */
async function liveProgramsOf(pid: number): Promise<number[]> {
  // While it loads, libbpf's feature probes come and go (held for an instant, unnamed): wait until every program it holds is a wst_ one.
  const held = await until(
    () => {
      const loaded = loadedPrograms();
      return heldProgramIds(pid).map((id) => ({ id, name: loaded.get(id) }));
    },
    { what: `only wstrace's BPF programs held by ${pid}`, accept: (h) => h.length > 0 && h.every((p) => p.name?.startsWith('wst_')) },
  );
  return held.map((p) => p.id);
}

/** The node process a shell started (its direct child running wstrace). */
function wstraceChildOf(shell: number): number | undefined {
  const kids = readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return kids.find((k) => {
    try {
      return readFileSync(`/proc/${k}/cmdline`, 'utf8').includes('wstrace.js');
    } catch {
      return false;
    }
  });
}

describeKernel('every way a person stops a command ends it cleanly: exit 0, nothing left behind', () => {
  let ns: TestNetns;
  let dir: string;
  let tmp: string;
  const tmux = new Tmux(`wst-input-test-${process.pid}`);
  const env = () => {
    const e: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
    delete e.XDG_RUNTIME_DIR;
    return e;
  };

  beforeAll(async () => {
    ns = await TestNetns.create('wst-input-sig');
    dir = mkdtempSync(join(tmpdir(), 'wst-input-sig-'));
    tmp = join(dir, 'tmp');
    mkdirSync(tmp);
  });
  afterAll(async () => {
    await tmux.destroy();
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('watch: SIGHUP (a closed terminal) stops it like Ctrl-C, removes its private agent directory and detaches', async () => {
    const w = spawnCli(['watch', '--netns', ns.name], { env: env() });
    await w.waitStderr('live:');
    const ids = await liveProgramsOf(w.pid);
    expect(readdirSync(tmp).filter((f) => f.startsWith('wstrace-'))).toHaveLength(1); // the private agent's, while it runs
    w.child.kill('SIGHUP');
    expect(await w.closed).toBe(0);
    expect(w.stderr()).toMatch(/0 events printed/);
    expect(readdirSync(tmp)).toEqual([]);
    expect(await waitProgramsGone(ids)).toEqual([]);
  });

  it('agent: SIGHUP stops it, removes its socket and detaches', async () => {
    const sock = join(dir, 'agent.sock');
    const a = spawnCli(['agent', '--listen', `unix:${sock}`, '--netns', ns.name], { env: env() });
    await a.waitStderr('listening on');
    const ids = await liveProgramsOf(a.pid);
    expect(statSync(sock).isSocket()).toBe(true);
    a.child.kill('SIGHUP');
    expect(await a.closed).toBe(0);
    expect(a.stderr()).toMatch(/stopping/);
    expect(existsSync(sock)).toBe(false);
    expect(await waitProgramsGone(ids)).toEqual([]);
  });

  it('record: SIGHUP stops it with the recording whole, the private agent directory removed and BPF detached', async () => {
    const file = join(dir, 'hup.wsr');
    const r = spawnCli(['record', '-o', file, '--netns', ns.name], { env: env() });
    await r.waitStderr('recording into');
    const ids = await liveProgramsOf(r.pid);
    await ns.traffic('closed-port', 3, 7963);
    const events = () => (JSON.parse(wstrace(['report', file, '--json']).stdout) as { events: number }).events;
    await until(events, { what: `the 6 events in ${file}`, accept: (n) => n === 6 });
    r.child.kill('SIGHUP');
    expect(await r.closed).toBe(0);
    expect(r.stderr()).toMatch(/recorded \d+ events and \d+ snapshots/);
    expect(readdirSync(tmp)).toEqual([]);
    expect(await waitProgramsGone(ids)).toEqual([]);
    expect(events()).toBe(6); // 3 resets sent, 3 received: the file reads whole after the stop
  });

  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('replay: %s is a person quitting, exit 0 like q', async (signal) => {
    const recording = join(dir, 'replay.wsr');
    if (!existsSync(recording)) {
      const made = wstrace(['record', '-o', recording, '--netns', ns.name, '--duration', '1']);
      expect(made.status, made.stderr).toBe(0);
    }
    const session = `replay-${signal}`;
    await tmux.start(session, `${process.execPath} ${CLI} replay ${recording}; echo REPLAY-EXIT=$?; sleep 600`, { x: 120, y: 40 });
    await tmux.waitScreen(session, 'the replay screen', (s) => s.includes('LISTENERS'));
    const shell = Number((await tmux.cmd('display', '-p', '-t', session, '#{pane_pid}')).trim());
    const node = wstraceChildOf(shell);
    expect(node).toBeDefined();
    process.kill(node!, signal);
    const screen = await tmux.waitScreen(session, 'REPLAY-EXIT=<code>', (s) => /REPLAY-EXIT=\d+/.test(s));
    expect(/REPLAY-EXIT=(\d+)/.exec(screen)?.[1], screen).toBe('0');
    await tmux.cmd('kill-session', '-t', session);
  });

  it('watch 2>&1 | head -1: a reader that goes away stops it, exit 0, nothing left behind', async () => {
    const status = join(dir, 'pipe-status');
    const shell = spawn(
      'bash',
      ['-c', `"${process.execPath}" "${CLI}" watch --netns ${ns.name} 2>&1 | head -1 > "${join(dir, 'pipe-out')}"; echo "\${PIPESTATUS[0]}" > "${status}"`],
      { cwd: ROOT, env: env(), stdio: 'ignore' },
    );
    const done = new Promise((resolve) => shell.once('close', resolve));
    let node: number | undefined;
    try {
      node = await until(() => wstraceChildOf(shell.pid!), { what: 'watch started by the shell' });
      const ids = await liveProgramsOf(node);
      // head has its line and is gone; the next events meet a closed pipe.
      await until(() => readFileSync(join(dir, 'pipe-out'), 'utf8'), { what: "head's one line", accept: (t) => t.includes('wstrace: watching') });
      await ns.traffic('closed-port', 3, 7964);
      await done;
      expect(readFileSync(status, 'utf8').trim()).toBe('0');
      expect(processGone(node)).toBe(true);
      expect(readdirSync(tmp)).toEqual([]);
      expect(await waitProgramsGone(ids)).toEqual([]);
    } finally {
      // A failed run must not leave a tracer behind: its own two processes, by pid.
      for (const pid of [node, shell.pid]) if (pid !== undefined && !processGone(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
