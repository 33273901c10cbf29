/**
 * Everything the bench makes (namespaces, processes, temp dirs, a tracefs
 * mount) registers its undo here, so Ctrl-C, a failure or a normal end all
 * leave the machine as they found it.
 */
import type { ChildProcess } from 'node:child_process';

type Undo = () => unknown;

/** Thrown by work that would start something after clean-up began. */
export class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

export class Cleanup {
  private readonly undo = new Map<string, Undo>();
  private running: Promise<void> | undefined;
  /** Undos registered after clean-up began. */
  private readonly late: Array<Promise<unknown>> = [];

  /** Registers an undo; once clean-up has begun (Ctrl-C mid-step), runs it at once instead. */
  add(key: string, fn: Undo): void {
    if (this.running) {
      this.late.push(
        Promise.resolve()
          .then(fn)
          .catch(() => undefined),
      );
      return;
    }
    this.undo.set(key, fn);
  }

  get stopping(): boolean {
    return this.running !== undefined;
  }

  /** Throws once clean-up has begun, so nothing new is started after Ctrl-C. */
  checkNotStopping(): void {
    if (this.running) throw new Interrupted();
  }

  remove(key: string): void {
    this.undo.delete(key);
  }

  /** Kills a child (SIGTERM, then SIGKILL) when cleaning up, unless it has exited. */
  child(key: string, child: ChildProcess): void {
    if (this.running) {
      child.kill('SIGKILL');
      throw new Interrupted();
    }
    this.add(key, () => stopChild(child, 'SIGTERM', 2000));
    child.once('exit', () => this.remove(key));
  }

  /** Runs every undo, newest first, and any registered meanwhile; never throws. */
  run(): Promise<void> {
    this.running ??= (async () => {
      for (const [key, fn] of [...this.undo.entries()].reverse()) {
        this.undo.delete(key);
        try {
          await fn();
        } catch {
          // best effort: keep undoing the rest
        }
      }
    })();
    return this.running.then(() => this.settleLate());
  }

  /** Waits (up to 5 s) for undos that started after clean-up began: a trial step still in flight adds them. */
  private async settleLate(): Promise<void> {
    const deadline = Date.now() + 5000;
    await new Promise((r) => setTimeout(r, 300)); // let an in-flight step reach its next add()
    while (Date.now() < deadline) {
      const n = this.late.length;
      await Promise.all(this.late);
      if (this.late.length === n) return;
    }
  }
}

/** Sends `signal`, waits up to `graceMs` for exit, then SIGKILL. Resolves once it has exited. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
    child.kill('SIGCONT'); // a paused child must run to handle the signal
  });
}
