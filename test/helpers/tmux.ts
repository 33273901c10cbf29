/**
 * A tmux server of the test's own (`tmux -L NAME`): commands run in a real
 * terminal, the screen is read back with capture-pane, keys go in with
 * send-keys. The person's own sessions are never touched.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { processGone, until } from './until.js';

const run = promisify(execFile);

export class Tmux {
  constructor(readonly socket: string) {}

  async cmd(...args: string[]): Promise<string> {
    return (await run('tmux', ['-L', this.socket, ...args], { timeout: 10_000 })).stdout;
  }

  /** `command` in a new detached session of the given size. */
  async start(session: string, command: string, size: { x: number; y: number }): Promise<void> {
    await this.cmd('new-session', '-d', '-s', session, '-x', String(size.x), '-y', String(size.y), command);
  }

  screen(session: string): Promise<string> {
    return this.cmd('capture-pane', '-p', '-t', session);
  }

  /** Resolves with the screen once `accept` holds; fails with the last screen after `timeoutMs`. */
  waitScreen(session: string, what: string, accept: (screen: string) => boolean, timeoutMs = 20_000): Promise<string> {
    return until(() => this.screen(session), { what: `the ${session} pane to show ${what}`, accept, timeoutMs, everyMs: 200 });
  }

  /**
   * Ends the server and waits until its process is gone: kill-server returns
   * before that, and a new session started meanwhile reaches the dying server
   * ("server exited unexpectedly").
   */
  async kill(): Promise<void> {
    const pid = Number((await this.cmd('display', '-p', '#{pid}').catch(() => '')).trim());
    await this.cmd('kill-server').catch(() => undefined);
    if (pid > 0) await until(() => processGone(pid), { what: `tmux server ${pid} to exit` });
  }

  /** Also removes the socket file kill-server leaves behind. */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${process.getuid?.() ?? 0}`, this.socket), { force: true });
  }
}
