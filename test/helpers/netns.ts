/**
 * A throwaway network namespace for kernel tests, and node children running
 * inside it. Everything started here is tracked so destroy() can clean up
 * after a failed test too.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const TRAFFIC = join(dirname(fileURLToPath(import.meta.url)), 'traffic.py');

export const isRoot = process.getuid?.() === 0;

export interface NodeChild {
  readonly process: ChildProcess;
  /** Resolves with the first stdout line matching `pattern`; rejects on exit or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

export class TestNetns {
  private readonly children: ChildProcess[] = [];

  private constructor(readonly name: string) {}

  /** /run/netns/NAME: what the addon and `ip` both accept. */
  get path(): string {
    return `/run/netns/${this.name}`;
  }

  static async create(prefix: string): Promise<TestNetns> {
    const ns = new TestNetns(`${prefix}-${process.pid}`);
    await run('ip', ['netns', 'del', ns.name]).catch(() => undefined); // left by a killed run
    await run('ip', ['netns', 'add', ns.name]);
    await run('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** The namespace's inode, as events carry it. */
  inode(): number {
    return statSync(this.path).ino;
  }

  /** The namespace's MIB counters, as nstat reads them (the referee). */
  nstat(): Record<string, number> {
    const out = execFileSync('ip', ['netns', 'exec', this.name, 'nstat', '-azs', '--json'], { encoding: 'utf8' });
    return (JSON.parse(out) as { kernel: Record<string, number> }).kernel;
  }

  /** TCP line of /proc/net/sockstat in the namespace. */
  sockstatTcp(): Record<string, number> {
    const text = execFileSync('ip', ['netns', 'exec', this.name, 'cat', '/proc/net/sockstat'], { encoding: 'utf8' });
    const line = text.split('\n').find((l) => l.startsWith('TCP:')) ?? '';
    const parts = line.split(/\s+/).slice(1);
    const out: Record<string, number> = {};
    for (let i = 0; i + 1 < parts.length; i += 2) out[parts[i]!] = Number(parts[i + 1]);
    return out;
  }

  /** The accept queue of the listener on `port` as `ss` shows it (Recv-Q now, Send-Q its limit); undefined without one. */
  async acceptQueue(port: number): Promise<{ queue: number; limit: number } | undefined> {
    const row = (await this.exec('ss', ['-ltnH', `sport = :${port}`])).trim().split(/\s+/);
    return row.length >= 3 ? { queue: Number(row[1]), limit: Number(row[2]) } : undefined;
  }

  /**
   * One UDP datagram through the namespace's loopback from each CPU in turn
   * (traffic.py packet-on-every-cpu). On syn_drop's tracepoint route a
   * packet's start sets aside, as the namespace's unattributed drops, its
   * CPU's rises no end took: after this, none wait.
   */
  async packetOnEveryCpu(): Promise<void> {
    await this.traffic('packet-on-every-cpu');
  }

  /** Runs a traffic.py mode inside the namespace without blocking the event loop. */
  async traffic(mode: string, ...args: Array<string | number>): Promise<Record<string, unknown>> {
    const stdout = await this.exec('python3', [TRAFFIC, mode, ...args.map(String)], 60_000);
    return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  }

  /** The same, but blocking this process's event loop while it runs. */
  trafficSync(mode: string, ...args: Array<string | number>): Record<string, unknown> {
    const stdout = execFileSync('ip', ['netns', 'exec', this.name, 'python3', TRAFFIC, mode, ...args.map(String)], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  }

  /** Runs a command inside the namespace and returns its stdout. */
  async exec(command: string, args: string[], timeoutMs = 30_000): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', this.name, command, ...args], {
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    });
    return stdout;
  }

  /** Starts `node -e script ...args` inside the namespace (`ip netns exec` execs, so the pid is node's). */
  spawnNode(script: string, args: Array<string | number>): NodeChild {
    const child = spawn('ip', ['netns', 'exec', this.name, process.execPath, '-e', script, ...args.map(String)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    const waitForLine = (pattern: RegExp, timeoutMs = 20_000) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          for (const line of out.split('\n')) {
            const m = line.match(pattern);
            if (m) return done(() => resolve(m));
          }
        };
        const onExit = (code: number | null) =>
          done(() => reject(new Error(`child exited (${code}) before printing ${pattern}: ${err.trim()}`)));
        const timer = setTimeout(
          () => done(() => reject(new Error(`child did not print ${pattern} within ${timeoutMs} ms: ${err.trim()}`))),
          timeoutMs,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          child.stdout?.off('data', check);
          child.off('exit', onExit);
          settle();
        };
        child.stdout?.on('data', check);
        child.on('exit', onExit);
        check();
      });
    return { process: child, waitForLine };
  }

  /** Kills every child and deletes the namespace; never throws. */
  async destroy(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
  }
}
