/**
 * `wstrace top` as a person runs it: the built command in a real terminal
 * (tmux), real BPF, real traffic in a test network namespace. What the
 * screen shows is read back with capture-pane; keys go in with send-keys.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { describeKernel, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'bin/wstrace.js');
/** A tmux server of our own: the person's sessions are never touched, and cleanup is one kill-server. */
const SOCKET = `wst-top-test-${process.pid}`;

async function tmux(...args: string[]): Promise<string> {
  const { stdout } = await run('tmux', ['-L', SOCKET, ...args], { timeout: 10_000 });
  return stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A command in a fresh 120×40 tmux window; after it exits the pane shows TOP-EXIT=<code> and stays. */
async function startInTmux(name: string, command: string): Promise<void> {
  // The previous test's kill-server returns before that server is gone; a new
  // session can reach the dying one ("server exited unexpectedly"): try again.
  for (let attempt = 1; ; attempt++) {
    try {
      await tmux('new-session', '-d', '-s', name, '-x', '120', '-y', '40', `${command}; echo TOP-EXIT=$?; sleep 600`);
      return;
    } catch (err) {
      if (attempt >= 5 || !/server exited unexpectedly|no server running|lost server/.test(String(err))) throw err;
      await sleep(300);
    }
  }
}

const screen = (name: string) => tmux('capture-pane', '-p', '-t', name);

/** Polls the screen until `accept` holds (at most `ms`); returns the last screen either way. */
async function waitScreen(name: string, accept: (s: string) => boolean, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let s = await screen(name);
  while (!accept(s) && Date.now() < deadline) {
    await sleep(200);
    s = await screen(name);
  }
  return s;
}

/** The node process running in a pane (the pane's shell is its parent). */
async function paneChild(name: string): Promise<number> {
  const shell = Number((await tmux('display', '-p', '-t', name, '#{pane_pid}')).trim());
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(shell)], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.includes('node'));
  if (!line) throw new Error(`no node process under pane shell ${shell}: ${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** BPF programs a process holds, from its fdinfo. */
function heldPrograms(pid: number): number[] {
  const ids: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:bpf-prog') continue;
      const m = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.push(Number(m[1]));
    } catch {
      // fd closed meanwhile
    }
  }
  return ids;
}

/** After the command exits: its code, and whether the terminal is back (main screen, cursor shown). */
async function exited(name: string): Promise<{ code: string | undefined; alternate: string; cursor: string; text: string }> {
  const text = await waitScreen(name, (s) => /TOP-EXIT=\d+/.test(s), 10_000);
  const [alternate = '', cursor = ''] = (await tmux('display', '-p', '-t', name, '#{alternate_on} #{cursor_flag}')).trim().split(' ');
  return { code: /TOP-EXIT=(\d+)/.exec(text)?.[1], alternate, cursor, text };
}

function row(text: string, needle: string): string {
  return text.split('\n').find((l) => l.includes(needle)) ?? '';
}

describeKernel('wstrace top in a terminal', () => {
  let ns: TestNetns;
  let ns2: TestNetns;
  let dir: string;
  const agents: ChildProcess[] = [];
  const traffic: Array<Promise<unknown>> = [];

  beforeAll(async () => {
    // bin/wstrace.js runs dist/: make sure it is this source.
    await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, timeout: 120_000 });
    ns = await TestNetns.create('wst-top');
    ns2 = await TestNetns.create('wst-top2');
    dir = mkdtempSync(join(tmpdir(), 'wst-top-'));
  }, 150_000);

  afterEach(async () => {
    await tmux('kill-server').catch(() => undefined);
    for (const a of agents.splice(0)) if (a.exitCode === null && a.signalCode === null) a.kill('SIGKILL');
    await Promise.allSettled(traffic.splice(0));
  });

  afterAll(async () => {
    // kill-server leaves its socket file behind.
    rmSync(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${process.getuid?.() ?? 0}`, SOCKET), { force: true });
    await ns?.destroy();
    await ns2?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the full listener with its queue, drops and resets while a load overflows it; q exits 0 and restores the terminal', async () => {
    await startInTmux('top', `${process.execPath} ${CLI} top --netns ${ns.name}`);
    const ready = await waitScreen('top', (s) => s.includes('LISTENERS') && /sample \d/.test(s), 20_000);
    expect(ready).toMatch(/^wstrace top \S+ +hooks \d+\/\d+ live/m);

    // A backlog-1 listener that never accepts, 12 connects, held 10 s; a closed port answered with resets.
    traffic.push(ns.traffic('full-queue', 8080, 1, 12, 10));
    traffic.push(ns.traffic('closed-port', 60, 9000, '127.0.0.1', 10, 0.3));
    // And 40 connections closed client-first: 40 TIME_WAIT sockets toward 127.0.0.1:8081.
    traffic.push(ns.traffic('timewait', 40, 8081));
    const s = await waitScreen(
      'top',
      (t) =>
        / 2\/1! /.test(row(t, '127.0.0.1:8080')) &&
        /\d~!/.test(row(t, '127.0.0.1:8080')) &&
        / \d+\/\d+k? /.test(row(t, '127.0.0.1:8080')) &&
        /RESETS +sent [1-9]/.test(t) &&
        /now (4\d|[5-9]\d|\d{3,}) /.test(row(t, 'TIME_WAIT ')),
      20_000,
    );
    const listener = row(s, '127.0.0.1:8080');
    expect(listener, s).toMatch(/python3\[\d+\]/); // the owning process
    expect(listener, s).toMatch(/ 2\/1! /); // queue over its limit of 1, marked
    expect(listener, s).toMatch(/ \d+(\.\d)?~! /); // SYN-stage drops/s: non-zero, attributed
    expect(listener, s).toMatch(/ \d+\/\d+k? /); // fds of python3 against its limit
    expect(row(s, 'RESETS'), s).toMatch(/sent [1-9][\d.]*\/s +received [1-9]/);
    expect(row(s, 'NO_SOCKET'), s).toMatch(/sent NO_SOCKET +[1-9]/);
    expect(row(s, ' 9000 '), s).not.toBe('');
    expect(row(s, 'TIME_WAIT '), s).toMatch(/made [1-9][\d.]*\/s +now (4\d|[5-9]\d|\d{3,}) /); // at least the 40 made here
    expect(row(s, '127.0.0.1:8081'), s).toMatch(/127\.0\.0\.1:8081 +(4\d|[5-9]\d|\d{3,}) +[\d.<]+% +[1-9]/); // per destination, share of the port range, made/s
    process.stdout.write(`\n--- top, 120×40, while full-queue, closed-port and timewait ran ---\n${s}\n`);

    const pid = await paneChild('top');
    const programs = heldPrograms(pid);
    expect(programs.length).toBeGreaterThan(0);
    await tmux('send-keys', '-t', 'top', 'q');
    const end = await exited('top');
    expect(end.code, end.text).toBe('0');
    expect(end.alternate).toBe('0'); // back on the main screen
    expect(end.cursor).toBe('1'); // cursor shown again
    expect(end.text).not.toContain('LISTENERS');
    expect(await waitProgramsGone(programs)).toEqual([]); // BPF detached
  });

  it.each([
    ['Ctrl-C', async (name: string) => void (await tmux('send-keys', '-t', name, 'C-c'))],
    ['SIGTERM', async (name: string) => process.kill(await paneChild(name), 'SIGTERM')],
  ])('%s also exits 0, restores the terminal and detaches BPF', async (_how, stop) => {
    await startInTmux('stop', `${process.execPath} ${CLI} top --netns ${ns.name}`);
    expect(await waitScreen('stop', (s) => /sample \d/.test(s), 20_000)).toMatch(/sample \d/);
    const programs = heldPrograms(await paneChild('stop'));
    await stop('stop');
    const end = await exited('stop');
    expect(end.code, end.text).toBe('0');
    expect([end.alternate, end.cursor]).toEqual(['0', '1']);
    expect(await waitProgramsGone(programs)).toEqual([]);
  });

  it('merges two agents on two sockets into one view with a host column; one going away shows as down', async () => {
    const spawnAgent = async (sock: string, netns: string): Promise<ChildProcess> => {
      const child = spawn(process.execPath, [CLI, 'agent', '--listen', `unix:${sock}`, '--netns', netns], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      agents.push(child);
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!err.includes('listening on')) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start: ${err}`);
        await sleep(50);
      }
      return child;
    };
    const a = join(dir, 'a.sock');
    const b = join(dir, 'b.sock');
    await spawnAgent(a, ns.path);
    const agentB = await spawnAgent(b, ns2.path);

    await startInTmux('multi', `${process.execPath} ${CLI} top --connect unix:${a},unix:${b}`);
    expect(await waitScreen('multi', (s) => /hosts 2\/2 up/.test(s), 20_000)).toMatch(/hosts 2\/2 up/);
    traffic.push(ns.traffic('full-queue', 8080, 1, 12, 10));
    traffic.push(ns2.traffic('closed-port', 60, 9000, '127.0.0.1', 10, 0.3));
    const s = await waitScreen(
      'multi',
      (t) => / 2\/1! /.test(row(t, '127.0.0.1:8080')) && /b\.sock +\d/.test(row(t, ' 9000 ')),
      20_000,
    );
    // Both hosts are "vm" here, so the host column tells them apart by socket.
    expect(row(s, '127.0.0.1:8080'), s).toMatch(/^.a\.sock +127\.0\.0\.1:8080 .* 2\/1! /);
    expect(row(s, ' 9000 '), s).toMatch(/b\.sock +9000 +[1-9]/);
    expect(row(s, ' a.sock ') + row(s, ' b.sock '), s).toMatch(/hooks \d+\/\d+ live/);
    process.stdout.write(`\n--- top --connect, two agents ---\n${s}\n`);

    agentB.kill('SIGTERM');
    const down = await waitScreen('multi', (t) => /b\.sock +DOWN/.test(t), 10_000);
    expect(row(down, ' b.sock '), down).toMatch(/DOWN: (the agent ended the stream|unreachable).*(retry in \d+s|retrying)/);
    expect(down).toMatch(/hosts 1\/2 up!/);
    expect(row(down, '127.0.0.1:8080'), down).toMatch(/a\.sock/); // the other host carries on

    await tmux('send-keys', '-t', 'multi', 'q');
    const end = await exited('multi');
    expect(end.code, end.text).toBe('0');
    expect(end.alternate).toBe('0');
  });
});
