/**
 * `wstrace top` as a person runs it: the built command in a real terminal
 * (tmux), real BPF, real traffic in a test network namespace. What the
 * screen shows is read back with capture-pane; keys go in with send-keys.
 */
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLI, spawnCli } from './helpers/cli.js';
import { describeKernel, heldProgramIds, ROOT, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { Tmux } from './helpers/tmux.js';

const run = promisify(execFile);
/** A tmux server of our own: the person's sessions are never touched, and cleanup is one kill-server. */
const tmux = new Tmux(`wst-top-test-${process.pid}`);

/** A command in a fresh 120×40 tmux window; after it exits the pane shows TOP-EXIT=<code> and stays. */
function startInTmux(name: string, command: string): Promise<void> {
  return tmux.start(name, `${command}; echo TOP-EXIT=$?; sleep 600`, { x: 120, y: 40 });
}

/** The node process running in a pane (the pane's shell is its parent). */
async function paneChild(name: string): Promise<number> {
  const shell = Number((await tmux.cmd('display', '-p', '-t', name, '#{pane_pid}')).trim());
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(shell)], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.includes('node'));
  if (!line) throw new Error(`no node process under pane shell ${shell}: ${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** After the command exits: its code, and whether the terminal is back (main screen, cursor shown). */
async function exited(name: string): Promise<{ code: string | undefined; alternate: string; cursor: string; text: string }> {
  const text = await tmux.waitScreen(name, 'TOP-EXIT=<code>', (s) => /TOP-EXIT=\d+/.test(s));
  const [alternate = '', cursor = ''] = (await tmux.cmd('display', '-p', '-t', name, '#{alternate_on} #{cursor_flag}')).trim().split(' ');
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
    await tmux.kill();
    for (const a of agents.splice(0)) if (a.exitCode === null && a.signalCode === null) a.kill('SIGKILL');
    await Promise.allSettled(traffic.splice(0));
  });

  afterAll(async () => {
    await tmux.destroy();
    await ns?.destroy();
    await ns2?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the full listener with its queue, drops and resets while a load overflows it; q exits 0 and restores the terminal', async () => {
    await startInTmux('top', `${process.execPath} ${CLI} top --netns ${ns.name}`);
    const ready = await tmux.waitScreen('top', 'the panels and a first sample', (s) => s.includes('LISTENERS') && /sample \d/.test(s));
    expect(ready).toMatch(/^wstrace top \S+ +hooks \d+\/\d+ live/m);

    // A backlog-1 listener that never accepts, 12 connects, held 10 s; a closed port answered with resets.
    traffic.push(ns.traffic('full-queue', 8080, 1, 12, 10));
    traffic.push(ns.traffic('closed-port', 60, 9000, '127.0.0.1', 10, 0.3));
    // And 40 connections closed client-first: 40 TIME_WAIT sockets toward 127.0.0.1:8081.
    traffic.push(ns.traffic('timewait', 40, 8081));
    // Each line a person would check, by the row it is on; waited for together, since rows fill in at their own pace.
    const wanted: Array<[what: string, rowWith: string, shows: RegExp]> = [
      ['the owning process', '127.0.0.1:8080', /python3\[\d+\]/],
      ['queue over its limit of 1, marked', '127.0.0.1:8080', / 2\/1! /],
      // Counted per listener (the tracepoint route, 6.3+), so not marked attributed (~).
      ['SYN-stage drops/s: non-zero, exact', '127.0.0.1:8080', / \d+(\.\d)?! /],
      ['fds of python3 against its limit', '127.0.0.1:8080', / \d+\/\d+k? /],
      ['resets sent and received', 'RESETS', /sent [1-9][\d.]*\/s +received [1-9]/],
      ['the reason of the resets sent', 'NO_SOCKET', /sent NO_SOCKET +[1-9]/],
      ['the closed port', ' 9000 ', /9000/],
      ['at least the 40 TIME_WAIT made here', 'TIME_WAIT ', /made [1-9][\d.]*\/s +now (4\d|[5-9]\d|\d{3,}) /],
      ['TIME_WAIT per destination, share of the port range, made/s', '127.0.0.1:8081', /127\.0\.0\.1:8081 +(4\d|[5-9]\d|\d{3,}) +[\d.<]+% +[1-9]/],
    ];
    const s = await tmux.waitScreen('top', wanted.map(([what]) => what).join('; '), (t) =>
      wanted.every(([, rowWith, shows]) => shows.test(row(t, rowWith))),
    );
    for (const [what, rowWith, shows] of wanted) expect(row(s, rowWith), `${what}:\n${s}`).toMatch(shows);
    process.stdout.write(`\n--- top, 120×40, while full-queue, closed-port and timewait ran ---\n${s}\n`);

    const pid = await paneChild('top');
    const programs = heldProgramIds(pid);
    expect(programs.length).toBeGreaterThan(0);
    await tmux.cmd('send-keys', '-t', 'top', 'q');
    const end = await exited('top');
    expect(end.code, end.text).toBe('0');
    expect(end.alternate).toBe('0'); // back on the main screen
    expect(end.cursor).toBe('1'); // cursor shown again
    expect(end.text).not.toContain('LISTENERS');
    expect(await waitProgramsGone(programs)).toEqual([]); // BPF detached
  });

  it.each([
    ['Ctrl-C', async (name: string) => void (await tmux.cmd('send-keys', '-t', name, 'C-c'))],
    ['SIGTERM', async (name: string) => process.kill(await paneChild(name), 'SIGTERM')],
  ])('%s also exits 0, restores the terminal and detaches BPF', async (_how, stop) => {
    await startInTmux('stop', `${process.execPath} ${CLI} top --netns ${ns.name}`);
    await tmux.waitScreen('stop', 'a first sample', (s) => /sample \d/.test(s));
    const programs = heldProgramIds(await paneChild('stop'));
    expect(programs.length).toBeGreaterThan(0);
    await stop('stop');
    const end = await exited('stop');
    expect(end.code, end.text).toBe('0');
    expect([end.alternate, end.cursor]).toEqual(['0', '1']);
    expect(await waitProgramsGone(programs)).toEqual([]);
  });

  it('merges two agents on two sockets into one view with a host column; one going away shows as down', async () => {
    const spawnAgent = async (sock: string, netns: string): Promise<ChildProcess> => {
      const agent = spawnCli(['agent', '--listen', `unix:${sock}`, '--netns', netns], { stdout: 'ignore' });
      agents.push(agent.child);
      await agent.waitStderr('listening on');
      return agent.child;
    };
    const a = join(dir, 'a.sock');
    const b = join(dir, 'b.sock');
    await spawnAgent(a, ns.path);
    const agentB = await spawnAgent(b, ns2.path);

    await startInTmux('multi', `${process.execPath} ${CLI} top --connect unix:${a},unix:${b}`);
    await tmux.waitScreen('multi', 'both hosts up', (s) => /hosts 2\/2 up/.test(s));
    traffic.push(ns.traffic('full-queue', 8080, 1, 12, 10));
    traffic.push(ns2.traffic('closed-port', 60, 9000, '127.0.0.1', 10, 0.3));
    const wanted: Array<[what: string, rowWith: string, shows: RegExp]> = [
      // Both hosts are "vm" here, so the host column tells them apart by socket.
      ["a's full listener", '127.0.0.1:8080', /^.a\.sock +127\.0\.0\.1:8080 .* 2\/1! /],
      ["b's resets", ' 9000 ', /b\.sock +9000 +[1-9]/],
      ['the hooks of each host', ' a.sock ', /hooks \d+\/\d+ live/],
      ['the hooks of each host', ' b.sock ', /hooks \d+\/\d+ live/],
    ];
    const s = await tmux.waitScreen('multi', wanted.map(([what]) => what).join('; '), (t) =>
      wanted.every(([, rowWith, shows]) => shows.test(row(t, rowWith))),
    );
    for (const [what, rowWith, shows] of wanted) expect(row(s, rowWith), `${what}:\n${s}`).toMatch(shows);
    process.stdout.write(`\n--- top --connect, two agents ---\n${s}\n`);

    agentB.kill('SIGTERM');
    const down = await tmux.waitScreen('multi', 'b down', (t) => /b\.sock +DOWN/.test(t));
    expect(row(down, ' b.sock '), down).toMatch(/DOWN: (the agent ended the stream|unreachable).*(retry in \d+s|retrying)/);
    expect(down).toMatch(/hosts 1\/2 up!/);
    expect(row(down, '127.0.0.1:8080'), down).toMatch(/a\.sock/); // the other host carries on

    await tmux.cmd('send-keys', '-t', 'multi', 'q');
    const end = await exited('multi');
    expect(end.code, end.text).toBe('0');
    expect(end.alternate).toBe('0');
  });
});
