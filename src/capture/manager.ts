/**
 * Bounded tcpdump captures run by the agent: argv only, filters from
 * validated parts, limits on duration, packets, bytes, snaplen, how many at
 * once and how often per trigger; a root-only directory with a JSON sidecar
 * per capture; an optional rotating pre-trigger ring that is joined to a
 * capture so the file shows how the burst began.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { UserError } from '../protocol/errors.js';
import { filterExpression, type CaptureTarget } from './filter.js';
import { joinPcaps, readPcap } from './pcap.js';

export const DEFAULT_CAPTURE_DIR = '/var/lib/wstrace/captures';

export interface CaptureBounds {
  readonly durationSec: number;
  readonly packets: number;
  readonly bytes: number;
  readonly snaplen: number;
}

export const DEFAULT_BOUNDS: CaptureBounds = { durationSec: 10, packets: 100_000, bytes: 50 << 20, snaplen: 128 };

export interface CaptureLimits {
  readonly maxRunning: number;
  /** Seconds before the same trigger may start another capture. */
  readonly cooldownSec: number;
  /** Refuse to start below this much free disk. */
  readonly minFreeBytes: number;
}

export const DEFAULT_LIMITS: CaptureLimits = { maxRunning: 2, cooldownSec: 30, minFreeBytes: 200 << 20 };

export type CaptureState = 'running' | 'done' | 'refused' | 'failed';

export interface CaptureRecord {
  id: string;
  state: CaptureState;
  file: string;
  filter: string;
  target: CaptureTarget;
  trigger: { kind: 'manual' | 'rule'; rule?: string; detail: string };
  bounds: CaptureBounds;
  preSec: number;
  startedMs: number;
  endedMs?: number;
  /** duration, packets, bytes, stopped, or error. */
  endedBy?: string;
  bytes?: number;
  /** Packets from before the trigger joined at the front (pre-trigger window). */
  prePackets?: number;
  error?: string;
  /** Counters at the moment of the trigger. */
  counters?: unknown;
}

export interface ManagerOptions {
  readonly dir?: string;
  /** Capture inside this network namespace (nsfs path), as the agent traces it. */
  readonly netnsPath?: string;
  readonly tcpdump?: string;
  readonly limits?: Partial<CaptureLimits>;
  readonly bounds?: Partial<CaptureBounds>;
  /** Keep this many seconds before any trigger, for these ports (0: off). */
  readonly preSec?: number;
  readonly prePorts?: readonly number[];
  /** Counters to store in the sidecar at trigger time. */
  readonly counters?: () => unknown;
}

function findOnPath(cmd: string): string | undefined {
  if (cmd.includes('/')) return cmd;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return join(dir, cmd);
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export class CaptureManager {
  readonly dir: string;
  private readonly records: CaptureRecord[] = [];
  private readonly running = new Map<string, ChildProcess>();
  private readonly lastByTrigger = new Map<string, number>();
  private readonly listeners = new Set<(r: CaptureRecord) => void>();
  private readonly limits: CaptureLimits;
  private readonly bounds: CaptureBounds;
  private ring: ChildProcess | undefined;
  private ringPrune: NodeJS.Timeout | undefined;
  private seq = 0;
  private closing = false;

  constructor(private readonly opts: ManagerOptions = {}) {
    this.dir = opts.dir ?? DEFAULT_CAPTURE_DIR;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.bounds = { ...DEFAULT_BOUNDS, ...opts.bounds };
  }

  /** Makes the root-only directory and starts the pre-trigger ring when asked. */
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    if ((this.opts.preSec ?? 0) > 0) await this.startRing();
  }

  onChange(fn: (r: CaptureRecord) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  list(): CaptureRecord[] {
    return [...this.records];
  }

  private argv(file: string, filter: string, b: CaptureBounds, extra: string[] = []): string[] {
    const tcpdump = findOnPath(this.opts.tcpdump ?? 'tcpdump');
    if (!tcpdump) throw new UserError('tcpdump is not installed: run `apt-get install tcpdump` on the agent host.');
    // -Z root: Debian's tcpdump would drop to user tcpdump and could not write the root-only directory.
    const cmd = [tcpdump, '-i', 'any', '-n', '-U', '-Z', 'root', '-s', String(b.snaplen), ...extra, '-w', file, filter];
    return this.opts.netnsPath ? ['nsenter', `--net=${this.opts.netnsPath}`, '--', ...cmd] : cmd;
  }

  /** Spawns tcpdump and resolves once it says it is listening (packets from then on are kept). */
  private spawnTcpdump(argv: string[]): Promise<ChildProcess> {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      const onData = (d: Buffer) => {
        err += d.toString();
        if (/listening on/.test(err)) {
          child.stderr!.off('data', onData);
          child.stderr!.resume();
          resolve(child);
        }
      };
      child.stderr!.on('data', onData);
      child.once('error', (e) => reject(new UserError(`cannot start tcpdump: ${e.message}.`)));
      child.once('exit', (code) => reject(new UserError(`tcpdump stopped at once (exit ${code}): ${err.trim().split('\n').pop()}`)));
    });
  }

  private async startRing(): Promise<void> {
    const ports = this.opts.prePorts ?? [];
    if (ports.length === 0) throw new UserError('--pre needs the ports to keep: give --port (or rules with ports).');
    const ringDir = join(this.dir, '.pre');
    rmSync(ringDir, { recursive: true, force: true });
    mkdirSync(ringDir, { mode: 0o700 });
    const filter = `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
    this.ring = await this.spawnTcpdump(this.argv(join(ringDir, 'pre-%s.pcap'), filter, this.bounds, ['-G', '1']));
    // Keep a little more than the window; tcpdump starts a new file every second.
    const keepSec = (this.opts.preSec ?? 0) + 2;
    this.ringPrune = setInterval(() => {
      const cutoff = Date.now() / 1000 - keepSec;
      for (const f of readdirSync(ringDir)) {
        const t = Number(/^pre-(\d+)\.pcap$/.exec(f)?.[1]);
        if (t && t < cutoff) rmSync(join(ringDir, f), { force: true });
      }
    }, 1000);
    this.ringPrune.unref();
  }

  /**
   * Starts one capture, or records why not (refused: bound, cooldown, disk,
   * tcpdump). Resolves with the record once tcpdump listens or was refused.
   */
  async capture(
    target: CaptureTarget,
    trigger: CaptureRecord['trigger'],
    overrides: Partial<CaptureBounds> & { preSec?: number; cooldownKey?: string } = {},
  ): Promise<CaptureRecord> {
    const now = Date.now();
    const bounds: CaptureBounds = {
      durationSec: overrides.durationSec ?? this.bounds.durationSec,
      packets: overrides.packets ?? this.bounds.packets,
      bytes: overrides.bytes ?? this.bounds.bytes,
      snaplen: overrides.snaplen ?? this.bounds.snaplen,
    };
    const id = `${stamp(now)}-${trigger.rule ?? trigger.kind}-${target.port ?? target.host}-${++this.seq}`.replace(/[^A-Za-z0-9._-]/g, '_');
    const rec: CaptureRecord = {
      id,
      state: 'running',
      file: join(this.dir, `${id}.pcap`),
      filter: filterExpression(target),
      target,
      trigger,
      bounds,
      // Only what the ring holds: none without a ring, at most its window.
      preSec: this.ring ? Math.min(overrides.preSec ?? this.opts.preSec ?? 0, this.opts.preSec ?? 0) : 0,
      startedMs: now,
      counters: this.opts.counters?.(),
    };
    this.records.push(rec);
    if (this.records.length > 1000) this.records.shift();

    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const refuse = (why: string) => {
      rec.state = 'refused';
      rec.error = why;
      rec.endedMs = Date.now();
      this.emit(rec);
      return rec;
    };
    const key = overrides.cooldownKey;
    if (key !== undefined) {
      const last = this.lastByTrigger.get(key);
      if (last !== undefined && now - last < this.limits.cooldownSec * 1000) {
        return refuse(`cooling down: this trigger started a capture ${((now - last) / 1000).toFixed(0)} s ago (cooldown ${this.limits.cooldownSec} s).`);
      }
    }
    if (this.running.size >= this.limits.maxRunning) {
      return refuse(`${this.running.size} captures are running already (at most ${this.limits.maxRunning}).`);
    }
    try {
      const fs = statfsSync(this.dir);
      const free = fs.bavail * fs.bsize;
      if (free < this.limits.minFreeBytes) {
        return refuse(`only ${(free / 2 ** 20).toFixed(0)} MiB free in ${this.dir}: captures need ${(this.limits.minFreeBytes / 2 ** 20).toFixed(0)} MiB.`);
      }
    } catch (err) {
      return refuse(`cannot check free space in ${this.dir}: ${(err as Error).message}.`);
    }
    if (key !== undefined) this.lastByTrigger.set(key, now);

    // Made 0600 before tcpdump opens it: tcpdump truncates, it keeps the mode.
    writeFileSync(rec.file, '', { mode: 0o600 });
    let child: ChildProcess;
    try {
      child = await this.spawnTcpdump(this.argv(rec.file, rec.filter, bounds, ['-c', String(bounds.packets)]));
    } catch (err) {
      rmSync(rec.file, { force: true });
      return refuse((err as Error).message);
    }
    this.running.set(id, child);
    this.emit(rec);
    const triggerUs = Date.now() * 1000;

    let endedBy = 'packets';
    const stop = (why: string) => {
      if (child.exitCode !== null) return;
      endedBy = why;
      child.kill('SIGINT'); // tcpdump flushes and closes the file on SIGINT
    };
    const timer = setTimeout(() => stop('duration'), bounds.durationSec * 1000);
    const sizeCheck = setInterval(() => {
      try {
        if (statSync(rec.file).size >= bounds.bytes) stop('bytes');
      } catch {
        // not there yet
      }
    }, 200);
    child.once('exit', () => {
      clearTimeout(timer);
      clearInterval(sizeCheck);
      this.running.delete(id);
      this.finish(rec, this.closing && endedBy === 'packets' ? 'stopped' : endedBy, triggerUs);
    });
    return rec;
  }

  private finish(rec: CaptureRecord, endedBy: string, triggerUs: number): void {
    rec.endedMs = Date.now();
    rec.endedBy = endedBy;
    if (rec.preSec > 0) {
      const main = readPcap(rec.file);
      const ringDir = join(this.dir, '.pre');
      let pre: NonNullable<ReturnType<typeof readPcap>>[] = [];
      try {
        pre = readdirSync(ringDir)
          .filter((f) => f.endsWith('.pcap'))
          .map((f) => readPcap(join(ringDir, f)))
          .filter((p): p is NonNullable<typeof p> => p !== undefined);
      } catch {
        // no ring
      }
      if (main && pre.length) {
        const fromUs = triggerUs - rec.preSec * 1e6;
        const kept = pre.map((p) => ({ header: p.header, records: p.records.filter((r) => r.timeUs >= fromUs) }));
        const joined = joinPcaps(kept, triggerUs, main);
        rec.prePackets = kept.flatMap((k) => k.records).filter((r) => r.timeUs < Math.min(triggerUs, main.records[0]?.timeUs ?? Infinity)).length;
        writeFileSync(rec.file, joined, { mode: 0o600 });
      }
    }
    try {
      rec.bytes = statSync(rec.file).size;
    } catch {
      rec.bytes = 0;
    }
    rec.state = 'done';
    writeFileSync(`${rec.file}.json`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    this.emit(rec);
  }

  private emit(r: CaptureRecord): void {
    if (r.state === 'refused') writeFileSync(join(this.dir, `${r.id}.refused.json`), `${JSON.stringify(r, null, 2)}\n`, { mode: 0o600 });
    for (const l of this.listeners) l(r);
  }

  /** Stops every capture (files are kept and closed) and the ring. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.ringPrune) clearInterval(this.ringPrune);
    const waits = [...this.running.values(), ...(this.ring ? [this.ring] : [])].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGINT');
          setTimeout(() => c.kill('SIGKILL'), 2000).unref();
        }),
    );
    for (const [id] of this.running) {
      const r = this.records.find((x) => x.id === id);
      if (r) r.endedMs = Date.now();
    }
    await Promise.all(waits);
  }
}
