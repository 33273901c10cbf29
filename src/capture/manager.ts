/**
 * Bounded tcpdump captures run by the agent: argv only, filters from
 * validated parts, limits on duration, packets, bytes, snaplen, how many at
 * once and how often per trigger or caller; a root-only directory with a JSON
 * sidecar per capture; free disk watched while writing; an optional rotating
 * pre-trigger ring that is joined to a capture so the file shows how the
 * burst began. No write error ends the agent: it ends that capture, marked
 * failed with the error's text.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, readdirSync, rmSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../protocol/errors.js';
import { createExclusive, replaceFile, secureDir, writeExclusive } from './files.js';
import { filterExpression, type CaptureTarget } from './filter.js';
import { joinPcaps, readPcap } from './pcap.js';
import { spawnTcpdump, tcpdumpArgv, TIMED_OUT } from './tcpdump.js';

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
  /** Seconds before the same rule may start another capture of the same target. */
  readonly cooldownSec: number;
  /** Seconds before the same caller may start another capture of the same target by hand. */
  readonly manualCooldownSec: number;
  /** Captures started by hand, all callers together, in any minute. */
  readonly manualPerMinute: number;
  /** The free-space floor: no capture starts below it, and a running one stops when it is reached. */
  readonly minFreeBytes: number;
  /** Ceilings on what any request may ask for: above them it is refused, not clamped. */
  readonly maxDurationSec: number;
  readonly maxPackets: number;
  readonly maxBytes: number;
}

export const DEFAULT_LIMITS: CaptureLimits = {
  maxRunning: 2,
  cooldownSec: 30,
  manualCooldownSec: 5,
  manualPerMinute: 30,
  minFreeBytes: 200 << 20,
  maxDurationSec: 3600,
  maxPackets: 10_000_000,
  maxBytes: 2 ** 30,
};

/** Refused requests kept for ListCaptures; older ones are only counted. */
const REFUSED_KEPT = 100;
const RECORDS_KEPT = 1000;
/** How often a running capture's size and the free space are looked at. */
const WATCH_MS = 100;
/** Above this the pre-trigger window is not joined: the join reads both files into memory. */
const JOIN_MAX_BYTES = 64 << 20;

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
  /** duration, packets, bytes, disk, stopped, or error. */
  endedBy?: string;
  bytes?: number;
  /** Packets from before the trigger joined at the front (pre-trigger window). */
  prePackets?: number;
  /** Why it was refused or failed; for a done capture, what was cut short. */
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

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

/** Throws a UserError (INVALID_ARGUMENT over the API) for a bound above its ceiling or not a whole number. */
export function checkBounds(b: Partial<CaptureBounds>, limits: CaptureLimits = DEFAULT_LIMITS): void {
  const whole = (v: number | undefined, max: number) => v === undefined || (Number.isSafeInteger(v) && v >= 1 && v <= max);
  if (b.durationSec !== undefined && !(b.durationSec > 0 && b.durationSec <= limits.maxDurationSec)) {
    throw new UserError(`a capture lasts at most ${limits.maxDurationSec} seconds.`);
  }
  if (!whole(b.packets, limits.maxPackets)) throw new UserError(`a capture keeps at most ${limits.maxPackets} packets.`);
  if (!whole(b.bytes, limits.maxBytes)) throw new UserError(`a capture file is at most ${limits.maxBytes} bytes (${MiB(limits.maxBytes)}).`);
  if (b.snaplen !== undefined && !(Number.isInteger(b.snaplen) && b.snaplen >= 64 && b.snaplen <= 65535)) {
    throw new UserError('snaplen is from 64 to 65535 bytes.');
  }
}

interface Running {
  readonly child: ChildProcess;
  stop(why: string): void;
}

export class CaptureManager {
  readonly dir: string;
  private readonly records: CaptureRecord[] = [];
  private readonly refused: CaptureRecord[] = [];
  private readonly running = new Map<string, Running>();
  /** Start (or, for rules, last refusal) time per cooldown key. */
  private readonly lastByKey = new Map<string, number>();
  private readonly manualStarts: number[] = [];
  private readonly listeners = new Set<(r: CaptureRecord) => void>();
  private readonly limits: CaptureLimits;
  private readonly bounds: CaptureBounds;
  private ring: ChildProcess | undefined;
  private ringPrune: NodeJS.Timeout | undefined;
  private seq = 0;
  private refusedUnkept = 0;

  constructor(private readonly opts: ManagerOptions = {}) {
    this.dir = opts.dir ?? DEFAULT_CAPTURE_DIR;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.bounds = { ...DEFAULT_BOUNDS, ...opts.bounds };
  }

  /** Checks the directory now (a bad one stops the agent with one sentence) without creating it. */
  checkDir(): void {
    secureDir(this.dir, { create: false, fixable: this.dir === DEFAULT_CAPTURE_DIR });
  }

  /** Makes the root-only directory and starts the pre-trigger ring when asked. */
  async start(): Promise<void> {
    this.ensureDir();
    if ((this.opts.preSec ?? 0) > 0) await this.startRing();
  }

  private ensureDir(): void {
    secureDir(this.dir, { create: true, fixable: this.dir === DEFAULT_CAPTURE_DIR });
  }

  onChange(fn: (r: CaptureRecord) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Refusals not kept as records: older than the last REFUSED_KEPT, or a rule repeating itself in its cooldown. */
  get refusalsNotKept(): number {
    return this.refusedUnkept;
  }

  list(): CaptureRecord[] {
    return [...this.records, ...this.refused].sort((a, b) => a.startedMs - b.startedMs);
  }

  private async startRing(): Promise<void> {
    const ports = this.opts.prePorts ?? [];
    if (ports.length === 0) throw new UserError('--pre needs the ports to keep: give --port (or rules with ports).');
    // Inside the checked directory, made afresh by root: tcpdump's own file opens there meet no planted link.
    const ringDir = join(this.dir, '.pre');
    rmSync(ringDir, { recursive: true, force: true });
    mkdirSync(ringDir, { mode: 0o700 });
    const filter = `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
    const argv = tcpdumpArgv({ ...this.tcpdumpBase(), snaplen: this.bounds.snaplen, filter, write: join(ringDir, 'pre-%s.pcap'), extra: ['-G', '1'] });
    this.ring = (await spawnTcpdump(argv, 'ignore')).child;
    // Keep a little more than the window; tcpdump starts a new file every second.
    const keepSec = (this.opts.preSec ?? 0) + 2;
    this.ringPrune = setInterval(() => {
      try {
        const cutoff = Date.now() / 1000 - keepSec;
        for (const f of readdirSync(ringDir)) {
          const t = Number(/^pre-(\d+)\.pcap$/.exec(f)?.[1]);
          if (t && t < cutoff) rmSync(join(ringDir, f), { force: true });
        }
      } catch {
        // the ring directory went away: nothing to prune
      }
    }, 1000);
    this.ringPrune.unref();
  }

  private tcpdumpBase() {
    return { ...(this.opts.tcpdump ? { tcpdump: this.opts.tcpdump } : {}), ...(this.opts.netnsPath ? { netnsPath: this.opts.netnsPath } : {}) };
  }

  private freeBytes(): number {
    const fs = statfsSync(this.dir);
    return fs.bavail * fs.bsize;
  }

  /** Forgets cooldown keys that have expired, so callers naming ever new targets cannot grow the map. */
  private pruneKeys(now: number): void {
    if (this.lastByKey.size < 1000) return;
    const longest = Math.max(this.limits.cooldownSec, this.limits.manualCooldownSec) * 1000;
    for (const [k, t] of this.lastByKey) if (now - t >= longest) this.lastByKey.delete(k);
  }

  /**
   * Starts one capture, or records why not (refused: bound, cooldown, rate,
   * disk, directory, tcpdump). Resolves with the record once tcpdump listens
   * or was refused. Bounds above the ceilings throw a UserError.
   */
  async capture(
    target: CaptureTarget,
    trigger: CaptureRecord['trigger'],
    overrides: Partial<CaptureBounds> & { preSec?: number; cooldownKey?: string } = {},
  ): Promise<CaptureRecord> {
    const { preSec: askedPre, cooldownKey: key, ...asked } = overrides;
    checkBounds(asked, this.limits);
    const now = Date.now();
    const bounds: CaptureBounds = { ...this.bounds, ...asked };
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
      preSec: this.ring ? Math.min(askedPre ?? this.opts.preSec ?? 0, this.opts.preSec ?? 0) : 0,
      startedMs: now,
    };
    const manual = trigger.kind === 'manual';
    const cooldownSec = manual ? this.limits.manualCooldownSec : this.limits.cooldownSec;
    const refuse = (why: string) => this.refuse(rec, why, manual ? undefined : key, now);

    if (key !== undefined && !manual) {
      // A rule fires on every matching event: during its cooldown (or after a refusal) it is only counted.
      const last = this.lastByKey.get(key);
      if (last !== undefined && now - last < cooldownSec * 1000) {
        this.refusedUnkept++;
        rec.state = 'refused';
        rec.error = `cooling down: this trigger acted ${((now - last) / 1000).toFixed(0)} s ago (cooldown ${cooldownSec} s).`;
        return rec;
      }
    }
    if (this.running.size >= this.limits.maxRunning) {
      return refuse(`${this.running.size} captures are running already (at most ${this.limits.maxRunning}).`);
    }
    if (manual) {
      const last = key !== undefined ? this.lastByKey.get(key) : undefined;
      if (last !== undefined && now - last < cooldownSec * 1000) {
        return refuse(`cooling down: the same capture was started ${((now - last) / 1000).toFixed(0)} s ago (at most one every ${cooldownSec} s).`);
      }
      while (this.manualStarts.length && now - this.manualStarts[0]! >= 60_000) this.manualStarts.shift();
      if (this.manualStarts.length >= this.limits.manualPerMinute) {
        return refuse(`${this.manualStarts.length} captures were started by hand in the last minute (at most ${this.limits.manualPerMinute}).`);
      }
    }
    try {
      this.ensureDir();
    } catch (err) {
      return refuse((err as Error).message);
    }
    try {
      const free = this.freeBytes();
      if (free < this.limits.minFreeBytes) {
        return refuse(`only ${MiB(free)} free in ${this.dir}: captures need ${MiB(this.limits.minFreeBytes)}.`);
      }
    } catch (err) {
      return refuse(`cannot check free space in ${this.dir}: ${(err as Error).message}.`);
    }
    let argv: string[];
    try {
      argv = tcpdumpArgv({ ...this.tcpdumpBase(), snaplen: bounds.snaplen, filter: rec.filter, write: '-', extra: ['-c', String(bounds.packets)], limitSec: bounds.durationSec });
    } catch (err) {
      return refuse((err as Error).message);
    }
    if (key !== undefined) {
      this.pruneKeys(now);
      this.lastByKey.set(key, now);
    }
    if (manual) this.manualStarts.push(now);
    rec.counters = this.opts.counters?.();

    // tcpdump writes to this descriptor (-w -): its own open would follow a link planted at the name.
    let fd: number;
    try {
      fd = createExclusive(rec.file);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return this.fail(
        rec,
        e.code === 'EEXIST' || e.code === 'ELOOP'
          ? `${rec.file} exists already (a file or link nobody should have put there): it was left untouched and nothing was captured.`
          : `cannot create ${rec.file}: ${e.message}.`,
      );
    }
    let run;
    try {
      run = await spawnTcpdump(argv, fd);
    } catch (err) {
      closeSync(fd);
      rmSync(rec.file, { force: true });
      return refuse((err as Error).message);
    }
    const { child } = run;
    const triggerUs = Date.now() * 1000;
    let stoppedBy: string | undefined;
    let floorNote: string | undefined;
    const stop = (why: string) => {
      if (stoppedBy !== undefined || child.exitCode !== null || child.signalCode !== null) return;
      stoppedBy = why;
      child.kill('SIGINT'); // timeout passes it on; tcpdump flushes and closes the file on SIGINT
    };
    this.running.set(id, { child, stop });
    this.records.push(rec);
    if (this.records.length > RECORDS_KEPT) this.records.shift();
    this.emit(rec);

    const timer = setTimeout(() => stop('duration'), bounds.durationSec * 1000);
    const watch = setInterval(() => {
      try {
        if (fstatSync(fd).size >= bounds.bytes) return stop('bytes');
        const free = this.freeBytes();
        if (free < this.limits.minFreeBytes) {
          floorNote = `stopped at the free-space floor: ${MiB(free)} free in ${this.dir} (floor ${MiB(this.limits.minFreeBytes)}); the packets written so far are kept.`;
          stop('disk');
        }
      } catch {
        // a failed look is retried at the next tick
      }
    }, WATCH_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      clearInterval(watch);
      this.running.delete(id);
      let endedBy = stoppedBy ?? (code === TIMED_OUT ? 'duration' : code === 0 ? 'packets' : 'error');
      if (endedBy === 'error') {
        // tcpdump's own write failed: a full disk is the usual reason, and it is said as such.
        try {
          if (this.freeBytes() < this.limits.minFreeBytes) endedBy = 'disk';
        } catch {
          // keep 'error'
        }
        floorNote = endedBy === 'disk' ? `the disk filled: ${run.lastWords()}; the packets written so far are kept.` : undefined;
        if (endedBy === 'error') rec.error = `tcpdump stopped (exit ${code}): ${run.lastWords()}`;
      }
      if (floorNote) rec.error = floorNote;
      this.finish(rec, endedBy, triggerUs, fd);
    });
    return rec;
  }

  private refuse(rec: CaptureRecord, why: string, ruleKey: string | undefined, now: number): CaptureRecord {
    rec.state = 'refused';
    rec.error = why;
    rec.endedMs = Date.now();
    if (ruleKey !== undefined) {
      // Quiet until the cooldown passes: a storm of matching events must not become a storm of refusals.
      this.pruneKeys(now);
      this.lastByKey.set(ruleKey, now);
    }
    // Kept in memory and bounded: refusals write nothing to disk, so asking cannot fill it.
    this.refused.push(rec);
    if (this.refused.length > REFUSED_KEPT) {
      this.refused.shift();
      this.refusedUnkept++;
    }
    this.emit(rec);
    return rec;
  }

  private fail(rec: CaptureRecord, why: string): CaptureRecord {
    rec.state = 'failed';
    rec.error = why;
    rec.endedMs ??= Date.now();
    if (!this.records.includes(rec)) {
      this.records.push(rec);
      if (this.records.length > RECORDS_KEPT) this.records.shift();
    }
    this.emit(rec);
    return rec;
  }

  /** Joins the pre-trigger window, writes the sidecar; any error marks the capture failed, it never throws. */
  private finish(rec: CaptureRecord, endedBy: string, triggerUs: number, fd: number): void {
    rec.endedMs = Date.now();
    rec.endedBy = endedBy;
    try {
      rec.bytes = fstatSync(fd).size;
    } catch {
      rec.bytes = 0;
    }
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
    try {
      if (rec.preSec > 0 && rec.bytes > JOIN_MAX_BYTES) {
        rec.error ??= `the ${rec.preSec} s before the trigger were not joined: the capture is over ${MiB(JOIN_MAX_BYTES)}.`;
      } else if (rec.preSec > 0) {
        this.joinPre(rec, triggerUs);
      }
      rec.state = 'done';
    } catch (err) {
      rec.state = 'failed';
      rec.error = `cannot join the pre-trigger window into ${rec.file}: ${(err as Error).message}.`;
    }
    try {
      writeExclusive(`${rec.file}.json`, `${JSON.stringify(rec, null, 2)}\n`);
    } catch (err) {
      rec.state = 'failed';
      const e = err as NodeJS.ErrnoException;
      rec.error =
        e.code === 'EEXIST'
          ? `cannot write the sidecar ${rec.file}.json: something was already there (left untouched); the pcap is kept.`
          : `cannot write the sidecar ${rec.file}.json: ${e.message}; the pcap is kept.`;
    }
    this.emit(rec);
  }

  private joinPre(rec: CaptureRecord, triggerUs: number): void {
    const main = readPcap(rec.file);
    const ringDir = join(this.dir, '.pre');
    let pre: NonNullable<ReturnType<typeof readPcap>>[] = [];
    try {
      pre = readdirSync(ringDir)
        .filter((f) => f.endsWith('.pcap') && statSync(join(ringDir, f)).size <= JOIN_MAX_BYTES)
        .map((f) => readPcap(join(ringDir, f)))
        .filter((p): p is NonNullable<typeof p> => p !== undefined);
    } catch {
      // no ring
    }
    if (!main || !pre.length) return;
    const fromUs = triggerUs - rec.preSec * 1e6;
    const kept = pre.map((p) => ({ header: p.header, records: p.records.filter((r) => r.timeUs >= fromUs) }));
    const joined = joinPcaps(kept, triggerUs, main);
    replaceFile(rec.file, joined);
    rec.bytes = joined.length;
    rec.prePackets = kept.flatMap((k) => k.records).filter((r) => r.timeUs < Math.min(triggerUs, main.records[0]?.timeUs ?? Infinity)).length;
  }

  private emit(r: CaptureRecord): void {
    for (const l of this.listeners) {
      try {
        l(r);
      } catch {
        // a listener's failure is not the capture's
      }
    }
  }

  /** Stops every capture (files are kept and closed) and the ring. */
  async close(): Promise<void> {
    if (this.ringPrune) clearInterval(this.ringPrune);
    const children: ChildProcess[] = [];
    for (const r of this.running.values()) {
      r.stop('stopped');
      children.push(r.child);
    }
    if (this.ring) {
      this.ring.kill('SIGINT');
      children.push(this.ring);
    }
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            // The parent-death signal set by setpriv takes tcpdump down with its supervisor.
            setTimeout(() => c.kill('SIGKILL'), 2000).unref();
          }),
      ),
    );
  }
}
