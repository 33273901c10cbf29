/**
 * One network namespace per trial: the load runs inside it, wstrace is
 * limited to it, and its MIB counters and sockstat are the referee. A fresh
 * one per trial means no TIME_WAIT from an earlier trial expires (and lowers
 * sockstat's tw) in the middle of this one.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Cleanup } from './cleanup.js';

const run = promisify(execFile);

/**
 * Sysctls of every bench namespace, so the kernel's own counts are a clean
 * referee: no TIME_WAIT reuse (a reused one leaves sockstat's tw early), a
 * timewait socket is not killed by a stray RST (RFC 1337), and listener
 * ports (below 10000) never collide with ephemeral ones.
 */
const SYSCTLS: Record<string, string> = {
  'net.ipv4.tcp_tw_reuse': '0',
  'net.ipv4.tcp_rfc1337': '1',
  'net.ipv4.ip_local_port_range': '10000 65535',
};

/** MIB counters (nstat names) and sockstat TCP fields of one namespace. */
export interface KernelCounts {
  readonly mib: Record<string, number>;
  readonly sockstat: Record<string, number>;
}

export class BenchNetns {
  private constructor(
    readonly name: string,
    private readonly cleanup: Cleanup,
  ) {}

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  get inode(): number {
    return statSync(this.path).ino;
  }

  static async create(name: string, cleanup: Cleanup): Promise<BenchNetns> {
    cleanup.checkNotStopping();
    await run('ip', ['netns', 'del', name]).catch(() => undefined); // left by a killed run
    await run('ip', ['netns', 'add', name]);
    const ns = new BenchNetns(name, cleanup);
    cleanup.add(`netns ${name}`, () => ns.destroy());
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    await run('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', ...Object.entries(SYSCTLS).map(([k, v]) => `${k}=${v}`)]);
    return ns;
  }

  /** One read of /proc/net/{snmp,netstat,sockstat} inside the namespace. */
  async counts(): Promise<KernelCounts> {
    const { stdout } = await run('ip', [
      'netns',
      'exec',
      this.name,
      'cat',
      '/proc/net/snmp',
      '/proc/net/netstat',
      '/proc/net/sockstat',
    ]);
    return parseCounts(stdout);
  }

  /**
   * Counts once the namespace is quiet: segments in and out, sockstat and
   * orphans unchanged over `everyMs`. On a busy machine the kernel may finish
   * loopback packets in ksoftirqd well after the load generator has exited.
   */
  async quiet(everyMs = 200, timeoutMs = 10_000): Promise<KernelCounts> {
    const deadline = Date.now() + timeoutMs;
    let prev = await this.counts();
    for (;;) {
      await new Promise((r) => setTimeout(r, everyMs));
      const now = await this.counts();
      if (sameActivity(prev, now) || Date.now() > deadline) return now;
      prev = now;
    }
  }

  async destroy(): Promise<void> {
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
    this.cleanup.remove(`netns ${this.name}`);
  }
}

/**
 * /proc/net/snmp and /proc/net/netstat come as header/value line pairs
 * ("Tcp: ActiveOpens ..." then "Tcp: 12 ..."); nstat names them prefix+field
 * (TcpOutRsts, TcpExtListenOverflows). sockstat is "TCP: inuse 1 orphan 0 tw 3 ...".
 */
export function parseCounts(text: string): KernelCounts {
  const mib: Record<string, number> = {};
  const sockstat: Record<string, number> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^(\w+): (.*)$/.exec(line);
    if (!m) continue;
    const [, prefix, rest] = m as unknown as [string, string, string];
    const next = lines[i + 1];
    const fields = rest.trim().split(/\s+/);
    if (next?.startsWith(`${prefix}: `) && fields.every((f) => /^[A-Za-z]/.test(f))) {
      const values = next.slice(prefix.length + 2).trim().split(/\s+/);
      fields.forEach((f, j) => (mib[prefix + f] = Number(values[j])));
      i++;
    } else if (prefix === 'TCP') {
      for (let j = 0; j + 1 < fields.length; j += 2) sockstat[fields[j]!] = Number(fields[j + 1]);
    }
  }
  return { mib, sockstat };
}

/** Nothing moved between two readings: no segment, no socket state. */
export function sameActivity(a: KernelCounts, b: KernelCounts): boolean {
  const keys = ['TcpInSegs', 'TcpOutSegs', 'TcpOutRsts', 'TcpExtListenOverflows'];
  return (
    keys.every((k) => a.mib[k] === b.mib[k]) &&
    Object.keys(b.sockstat).every((k) => k === 'mem' || a.sockstat[k] === b.sockstat[k])
  );
}

/** after − before for one MIB counter (0 when the kernel lacks it). */
export function mibDelta(before: KernelCounts, after: KernelCounts, key: string): number {
  return (after.mib[key] ?? 0) - (before.mib[key] ?? 0);
}
