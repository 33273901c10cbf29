/**
 * Throwaway cgroups for kernel tests: directories made under the cgroup2
 * mount (found as wstrace finds it, from /proc/self/mountinfo), and commands
 * started inside them. A command joins its cgroup before it execs, so every
 * socket it makes is charged there. destroy() kills what is left in them and
 * removes the directories, deepest first; it never throws.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { cgroup2Mount } from '../../src/kernel/cgroup.js';
import { until } from './until.js';

export interface CgroupChild {
  readonly process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The first stdout line matching `pattern`; rejects if the command exits first or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Exit code once it has exited and its output is read. */
  readonly closed: Promise<number | null>;
}

export class TestCgroup {
  private readonly children: ChildProcess[] = [];
  private readonly made: TestCgroup[] = [];

  private constructor(
    /** Under the mount: `/wst-cg-123/a`. */
    readonly rel: string,
    readonly mount: string,
  ) {}

  /** Where the cgroup2 hierarchy is mounted here; undefined when it is not. */
  static mountPoint(): string | undefined {
    return cgroup2Mount();
  }

  /** A new cgroup at the top of the hierarchy (one left by a killed run is reused). */
  static create(name: string): TestCgroup {
    const mount = cgroup2Mount();
    if (!mount) throw new Error('no cgroup2 mount in /proc/self/mountinfo');
    const cg = new TestCgroup(`/${name}`, mount);
    mkdirSync(cg.path, { recursive: true });
    return cg;
  }

  /** A cgroup below this one, removed with it. */
  child(name: string): TestCgroup {
    const cg = new TestCgroup(`${this.rel}/${name}`, this.mount);
    mkdirSync(cg.path, { recursive: true });
    this.made.push(cg);
    return cg;
  }

  /** The directory. */
  get path(): string {
    return `${this.mount.replace(/\/+$/, '')}${this.rel}`;
  }

  /** The cgroup id the kernel records for sockets made here: the directory's inode number. */
  id(): number {
    return statSync(this.path).ino;
  }

  /** Pids in it now. */
  pids(): number[] {
    return readFileSync(`${this.path}/cgroup.procs`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  }

  /** Starts `command args` inside this cgroup: a shell writes its own pid to cgroup.procs, then execs. */
  spawn(command: string, args: Array<string | number>): CgroupChild {
    const child = spawn('sh', ['-c', 'echo $$ > "$0" && exec "$@"', `${this.path}/cgroup.procs`, command, ...args.map(String)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const where = this.rel;
    let exited = false;
    void closed.then(() => (exited = true));
    return {
      process: child,
      stdout: () => out,
      stderr: () => err,
      closed,
      async waitForLine(pattern, timeoutMs = 20_000) {
        const line = await until(() => out.split('\n').find((l) => pattern.test(l)) ?? (exited ? 'EXITED' : undefined), {
          what: `${command} in ${where} to print ${String(pattern)}`,
          timeoutMs,
        });
        if (line === 'EXITED') throw new Error(`${command} in cgroup exited before printing ${String(pattern)}: ${err.trim()}`);
        return line;
      },
    } as CgroupChild;
  }

  /** Kills everything started here and in the cgroups below, then removes them all; never throws. */
  async destroy(): Promise<void> {
    for (const cg of this.made) await cg.destroy();
    for (const child of this.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // Anything else that joined (a grandchild) goes too: cgroup.kill where the kernel has it (5.14+).
    if (existsSync(`${this.path}/cgroup.kill`)) {
      try {
        writeFileSync(`${this.path}/cgroup.kill`, '1');
      } catch {
        /* gone already */
      }
    }
    try {
      await until(() => !existsSync(this.path) || this.pids().length === 0, { what: `${this.rel} to be empty`, timeoutMs: 10_000 });
      if (existsSync(this.path)) rmdirSync(this.path);
    } catch {
      /* best effort: a later run reuses the name */
    }
  }
}
