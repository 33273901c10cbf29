/**
 * The kernel's own trace events (ftrace, not BPF) as a second referee where
 * no MIB counter exists: a private tracefs instance, so nothing another user
 * of the global trace buffer set up is touched, with its own buffer, events
 * and filters; removed on close. Its per-CPU overrun counts say whether it
 * lost any event (a referee that lost events is no referee).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const TRACEFS = '/sys/kernel/tracing';

export interface TraceLine {
  readonly cpu: number;
  /** Seconds, as the trace clock prints them. */
  readonly ts: number;
  readonly event: string;
  /** The event's printed fields, as key=value pairs. */
  readonly fields: Readonly<Record<string, string>>;
}

function ensureTracefs(): void {
  if (existsSync(join(TRACEFS, 'instances'))) return;
  execFileSync('mount', ['-t', 'tracefs', 'tracefs', TRACEFS]);
}

export class TraceInstance {
  private constructor(
    readonly dir: string,
    private readonly events: readonly string[],
  ) {}

  /** events: "system/name" with an optional filter expression each. */
  static open(name: string, events: ReadonlyArray<{ event: string; filter?: string }>, bufferKb = 8192): TraceInstance {
    ensureTracefs();
    const dir = join(TRACEFS, 'instances', name);
    if (existsSync(dir)) rmdirSync(dir);
    mkdirSync(dir);
    const inst = new TraceInstance(
      dir,
      events.map((e) => e.event),
    );
    try {
      writeFileSync(join(dir, 'buffer_size_kb'), String(bufferKb));
      for (const e of events) {
        if (e.filter) writeFileSync(join(dir, 'events', e.event, 'filter'), e.filter);
        writeFileSync(join(dir, 'events', e.event, 'enable'), '1');
      }
      writeFileSync(join(dir, 'tracing_on'), '1');
    } catch (err) {
      inst.close();
      throw err;
    }
    return inst;
  }

  /** Events lost to a full buffer since the instance opened, over all CPUs. */
  overruns(): number {
    const perCpu = join(this.dir, 'per_cpu');
    return readdirSync(perCpu).reduce((sum, cpu) => {
      const m = /overrun:\s*(\d+)/.exec(readFileSync(join(perCpu, cpu, 'stats'), 'utf8'));
      return sum + (m ? Number(m[1]) : 0);
    }, 0);
  }

  /** Every event in the buffer, in time order. */
  lines(): TraceLine[] {
    const out: TraceLine[] = [];
    for (const line of readFileSync(join(this.dir, 'trace'), 'utf8').split('\n')) {
      const m = /\[(\d+)\]\s+\S+\s+([\d.]+):\s+(\w+):\s+(.*)$/.exec(line);
      if (!m) continue;
      const fields: Record<string, string> = {};
      for (const kv of m[4]!.split(/\s+/)) {
        const eq = kv.indexOf('=');
        if (eq > 0) fields[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      out.push({ cpu: Number(m[1]), ts: Number(m[2]), event: m[3]!, fields });
    }
    return out;
  }

  close(): void {
    try {
      writeFileSync(join(this.dir, 'tracing_on'), '0');
      for (const e of this.events) writeFileSync(join(this.dir, 'events', e, 'enable'), '0');
    } catch {
      // removing the instance below turns everything off anyway
    }
    if (existsSync(this.dir)) rmdirSync(this.dir);
  }
}

/** The port of "addr:port" (IPv4) or "[addr]:port" (IPv6) as tcp_send_reset prints them. */
function portOf(endpoint: string | undefined): number {
  const i = endpoint?.lastIndexOf(':') ?? -1;
  return i < 0 ? -1 : Number(endpoint!.slice(i + 1));
}

/**
 * Resets received by sockets on `port` (either end), as the kernel's own
 * tcp_receive_reset events show them, less those that were no reset at all:
 * tcp_reset() on data to a socket closed for reading, which its caller
 * answers at once, on the same CPU, with a reset from that same socket (a
 * real reset is never answered with one). Needs tcp_receive_reset filtered
 * to the port and tcp_send_reset (6.10+ format: src=, dest=) enabled.
 */
export function resetsReallyReceived(lines: readonly TraceLine[], port: number): { received: number; abortsOnData: number } {
  let received = 0;
  let abortsOnData = 0;
  // What came next on each CPU, scanning backwards once.
  const nextOnCpu = new Map<number, TraceLine>();
  const next: Array<TraceLine | undefined> = [];
  for (let i = lines.length - 1; i >= 0; i--) {
    next[i] = nextOnCpu.get(lines[i]!.cpu);
    nextOnCpu.set(lines[i]!.cpu, lines[i]!);
  }
  lines.forEach((l, i) => {
    if (l.event !== 'tcp_receive_reset') return;
    const sport = Number(l.fields.sport);
    const dport = Number(l.fields.dport);
    if (sport !== port && dport !== port) return;
    // The next event of this CPU: the reset the caller sends, within the same softirq.
    const n = next[i];
    const answered =
      n?.event === 'tcp_send_reset' && n.ts - l.ts < 0.001 && portOf(n.fields.src) === sport && portOf(n.fields.dest) === dport;
    if (answered) abortsOnData++;
    else received++;
  });
  return { received, abortsOnData };
}
