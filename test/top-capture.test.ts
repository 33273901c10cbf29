/** `c` in a real `top`: the selected listener's port is captured by the agent, and the screen says where. */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI } from './helpers/cli.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { Tmux } from './helpers/tmux.js';

const run = promisify(execFile);
const tmux = new Tmux(`wst-topc-test-${process.pid}`);

describeKernel('top: c starts a capture', () => {
  let ns: TestNetns;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-topc');
    await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT });
  });
  afterAll(async () => {
    await tmux.destroy();
    await ns?.destroy();
  });

  it('on the full listener, the agent captures its port and top shows the file', async () => {
    const load = ns.traffic('full-queue', 7951, 1, 5, 12);
    let file: string | undefined;
    try {
      await tmux.start('topc', `node ${CLI} top --netns ${ns.path}; sleep 600`, { x: 160, y: 40 });
      await tmux.waitScreen('topc', 'the listener 127.0.0.1:7951', (x) => x.includes('127.0.0.1:7951'));
      await tmux.cmd('send-keys', '-t', 'topc', 'c');
      let s = await tmux.waitScreen('topc', 'the capture message', (x) => /capture of listener 127\.0\.0\.1:7951 running: \S+\.pcap/.test(x));
      file = /running: (\S+\.pcap)/.exec(s)?.[1];
      expect(file).toMatch(/^\/var\/lib\/wstrace\/captures\/.*7951.*\.pcap$/);
      s = await tmux.waitScreen('topc', 'one capture running', (x) => /captures +1 running/.test(x));
      expect(s).toMatch(/captures +1 running/);
      await tmux.cmd('send-keys', '-t', 'topc', 'q');
      await load;
      expect(existsSync(file!)).toBe(true);
    } finally {
      // The capture lands in the real capture directory: never leave one behind, even on failure.
      if (file) for (const f of [file, `${file}.json`]) rmSync(f, { force: true });
    }
  });
});
