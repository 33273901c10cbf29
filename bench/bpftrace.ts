/**
 * The comparison arm: bpftrace (Debian package) on the same tracepoints
 * wstrace uses, counting into maps keyed much as wstrace's are. Classic
 * tracepoints need tracefs; if it is not mounted, it is mounted here and
 * unmounted at the end.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { stopChild, type Cleanup } from './cleanup.js';
import { BenchError } from './errors.js';

const run = promisify(execFile);
const TRACEFS = '/sys/kernel/tracing';

/** TCP states, as include/net/tcp_states.h numbers them (a kernel ABI). */
const TCP_FIN_WAIT2 = 5;
const TCP_CLOSE = 7;
const TCP_LISTEN = 10;
const TCP_CLOSING = 11;
const IPPROTO_TCP = 6;

export function bpftraceVersion(): string | undefined {
  try {
    return execFileSync('bpftrace', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

/**
 * Mounts tracefs when absent; `cleanup` unmounts it (once) at the end.
 * Called before every bpftrace start, since something else on the machine
 * may unmount it between trials.
 */
export async function ensureTracefs(cleanup: Cleanup): Promise<void> {
  if (existsSync(`${TRACEFS}/events/tcp`)) return;
  try {
    await run('mount', ['-t', 'tracefs', 'nodev', TRACEFS]);
  } catch (err) {
    throw new BenchError(`cannot mount tracefs on ${TRACEFS} for bpftrace: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  cleanup.add('tracefs mount', () => run('umount', [TRACEFS]));
}

/** SKB_DROP_REASON_TCP_LISTEN_OVERFLOW's number on this kernel, from the tracepoint's own format. */
export function listenOverflowReason(): number | undefined {
  try {
    const fmt = readFileSync(`${TRACEFS}/events/skb/kfree_skb/format`, 'utf8');
    const m = /\{\s*(\d+),\s*"TCP_LISTEN_OVERFLOW"\s*\}/.exec(fmt);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The probes: one per wstrace hook, each doing comparable work (a filter, a
 * few field reads, a keyed per-CPU count). Keys are low-cardinality so the
 * map dump at exit stays small.
 */
export function bpftraceScript(overflowReason: number | undefined): string {
  const sk = '((struct sock *)args->skaddr)';
  return [
    'BEGIN { printf("ready\\n"); }',
    'tracepoint:tcp:tcp_send_reset { @reset_sent[args->state, args->reason] = count(); }',
    'tracepoint:tcp:tcp_receive_reset { @reset_received[args->family] = count(); }',
    `tracepoint:sock:inet_sock_set_state /args->protocol == ${IPPROTO_TCP} && args->newstate == ${TCP_CLOSE} && ` +
      `(args->oldstate == ${TCP_FIN_WAIT2} || args->oldstate == ${TCP_CLOSING})/ { @timewait[args->dport] = count(); }`,
    `tracepoint:sock:sk_data_ready /args->protocol == ${IPPROTO_TCP} && ${sk}->__sk_common.skc_state == ${TCP_LISTEN}/ ` +
      `{ @enqueued[${sk}->__sk_common.skc_num, ${sk}->sk_ack_backlog > ${sk}->sk_max_ack_backlog] = count(); }`,
    overflowReason === undefined
      ? ''
      : `tracepoint:skb:kfree_skb /args->reason == ${overflowReason}/ { @listen_overflow = count(); }`,
    '',
  ].join('\n');
}

export class BpftraceArm {
  private out = '';

  private constructor(readonly process: ChildProcess) {}

  static async start(script: string, cleanup: Cleanup): Promise<BpftraceArm> {
    await ensureTracefs(cleanup);
    const child = spawn('bpftrace', ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanup.child(`bpftrace ${child.pid}`, child);
    const arm = new BpftraceArm(child);
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (arm.out += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BenchError(`bpftrace did not attach within 30 s: ${err.trim()}`)), 30_000);
      const check = () => {
        if (arm.out.includes('ready')) {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.once('error', (e) => reject(new BenchError(`cannot run bpftrace: ${e.message}`)));
      child.once('exit', (code) => {
        clearTimeout(timer);
        const why = err.split('\n').filter((l) => !l.includes('RLIMIT_MEMLOCK')).join(' ').trim();
        reject(new BenchError(`bpftrace exited (${code}) before attaching: ${why}`));
      });
    });
    return arm;
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** SIGINT: bpftrace prints its maps and exits. Returns each map's total. */
  async stop(): Promise<Record<string, number>> {
    await stopChild(this.process, 'SIGINT', 10_000);
    const totals: Record<string, number> = {};
    for (const m of this.out.matchAll(/^@(\w+)(?:\[[^\]]*\])?: (\d+)$/gm)) {
      totals[m[1]!] = (totals[m[1]!] ?? 0) + Number(m[2]);
    }
    return totals;
  }
}
