/** `c` in a real `top`: the selected listener's port is captured by the agent, and the screen says where. */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';

const run = promisify(execFile);
const SOCKET = `wst-topc-test-${process.pid}`;
const tmux = async (...args: string[]) => (await run('tmux', ['-L', SOCKET, ...args], { timeout: 10_000 })).stdout;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitScreen(accept: (s: string) => boolean, ms: number): Promise<string> {
  const end = Date.now() + ms;
  let s = await tmux('capture-pane', '-p', '-t', 'topc');
  while (!accept(s) && Date.now() < end) {
    await sleep(200);
    s = await tmux('capture-pane', '-p', '-t', 'topc');
  }
  return s;
}

describeKernel('top: c starts a capture', () => {
  let ns: TestNetns;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-topc');
    await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT });
  });
  afterAll(async () => {
    await run('tmux', ['-L', SOCKET, 'kill-server']).catch(() => undefined);
    await ns?.destroy();
  });

  it('on the full listener, the agent captures its port and top shows the file', async () => {
    const load = ns.traffic('full-queue', 7951, 1, 5, 12);
    await tmux('new-session', '-d', '-s', 'topc', '-x', '160', '-y', '40', `node ${join(ROOT, 'bin/wstrace.js')} top --netns ${ns.path}; sleep 600`);
    let s = await waitScreen((x) => x.includes('127.0.0.1:7951'), 15_000);
    expect(s).toContain('127.0.0.1:7951');
    await tmux('send-keys', '-t', 'topc', 'c');
    s = await waitScreen((x) => /capture of listener 127\.0\.0\.1:7951 running: \S+\.pcap/.test(x), 10_000);
    const file = /running: (\S+\.pcap)/.exec(s)?.[1];
    expect(file).toMatch(/^\/var\/lib\/wstrace\/captures\/.*7951.*\.pcap$/);
    s = await waitScreen((x) => /captures +1 running/.test(x), 5000);
    expect(s).toMatch(/captures +1 running/);
    await tmux('send-keys', '-t', 'topc', 'q');
    await load;
    expect(existsSync(file!)).toBe(true);
    for (const f of [file!, `${file}.json`]) rmSync(f, { force: true });
  });
});
