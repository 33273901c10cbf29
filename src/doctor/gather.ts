/** The I/O behind `wstrace doctor`: host facts, socket tables and processes, as this host sees them. */
import { execFileSync } from 'node:child_process';
import { readHostFacts } from '../host/index.js';
import { readProcessFds } from '../host/fds.js';
import { netnsReader, readCurrentNetns, readOptional } from '../host/read.js';
import { loadBinding, openTracer, resolveNetns, SocketOwners } from '../kernel/index.js';
import { checkPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import type { DoctorFacts, ListenerFacts, SynStageFacts } from './checks.js';

/** What a running agent saw of a listener: queue peak, overflow drops, its SYN stage. */
export interface SeenListener {
  readonly peak: number;
  readonly overflows: number;
  readonly syn?: SynStageFacts;
}

export interface GatherOptions {
  readonly netns?: string;
  /** Hooks and queue peaks already known (the agent passes its own). */
  readonly known?: { hooks: NonNullable<DoctorFacts['hooks']>; peaks: Map<string, SeenListener> };
  readonly ports: readonly number[];
  readonly pid?: number;
}

const EXTRA = [
  'net.ipv4.tcp_rmem',
  'net.ipv4.tcp_wmem',
  'net.ipv4.tcp_max_orphans',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_congestion_control',
  'net.ipv4.tcp_available_congestion_control',
  'net.netfilter.nf_conntrack_max',
  'net.netfilter.nf_conntrack_count',
];

/** The kernel's ceiling for pid_max (PID_MAX_LIMIT on 64-bit). */
export const MAX_PID = 4_194_304;

/**
 * The scope a doctor run is asked for, checked before anything is read, for
 * the CLI and the Doctor RPC alike: ports are TCP ports, a pid (0 or absent:
 * all) is one the kernel could hand out and that runs now, so a typo is said
 * instead of checking nothing.
 */
export function checkDoctorScope(scope: { readonly ports: readonly number[]; readonly pid?: number | undefined }): void {
  for (const p of scope.ports) checkPort(p);
  const pid = scope.pid;
  if (pid === undefined || pid === 0) return;
  if (!Number.isInteger(pid) || pid < 1 || pid > MAX_PID) {
    throw new UserError(`pid ${pid} is not a process id: give a number from 1 to ${MAX_PID}.`);
  }
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it runs, as another user's process.
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new UserError(`no process ${pid}: give the pid of a running process.`);
  }
}

function pageSize(): number {
  try {
    return Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
  } catch {
    return 4096;
  }
}

export async function gatherFacts(o: GatherOptions): Promise<DoctorFacts> {
  const ns = o.netns !== undefined ? resolveNetns(o.netns) : undefined;
  const binding = loadBinding();
  const read = ns ? netnsReader(binding, ns.path) : readCurrentNetns;
  const host = await readHostFacts(ns ? { netns: ns.path, binding } : {});
  const extra: Record<string, string | undefined> = {};
  for (const name of EXTRA) extra[name] = await readOptional(read, `/proc/sys/${name.replaceAll('.', '/')}`);
  const dump = await binding.dumpSockets(ns ? { netns: ns.path } : {});

  let peaks = new Map<string, SeenListener>();
  let hooks: DoctorFacts['hooks'];
  if (o.known) {
    hooks = o.known.hooks;
    peaks = o.known.peaks;
  } else {
    try {
      const t = await openTracer({ resolveOwners: false });
      hooks = t.hooks.map((h) => ({ signal: h.signal, attached: h.attached, variant: h.variant, ...(h.error ? { error: h.error } : {}) }));
      t.close();
    } catch {
      hooks = undefined; // not root: said in the report
    }
  }

  const owners = new SocketOwners();
  const listeners: ListenerFacts[] = [];
  for (const l of dump.listeners) {
    if (o.ports.length && !o.ports.includes(l.port)) continue;
    const owner = owners.lookup(l.inode);
    if (o.pid !== undefined && owner?.pid !== o.pid) continue;
    const fds = owner ? await readProcessFds(owner.pid).catch(() => undefined) : undefined;
    const seen = peaks.get(`${l.addr}|${l.port}`);
    listeners.push({
      ...l,
      ...(owner ? { pid: owner.pid, comm: owner.comm } : {}),
      ...(fds ? { fds: { open: fds.open, soft: fds.soft, hard: fds.hard } } : {}),
      ...(seen ? { peak: seen.peak, overflows: seen.overflows, ...(seen.syn ? { syn: seen.syn } : {}) } : {}),
    });
  }
  return { host, extra, listeners, timewait: dump.timewait, pageSize: pageSize(), ...(hooks ? { hooks } : {}) };
}
