/**
 * `wstrace doctor`'s checks: pure functions from measured facts to findings.
 * Each finding has the value now, what it limits, a status, the exact fix
 * line, and the evidence. Recommendations follow measured need (the queue
 * seen, the TIME_WAIT seen) with headroom, not fixed magic numbers.
 */
import type { HostFacts } from '../host/index.js';
import type { ListenerSocket, TimewaitGroup } from '../kernel/index.js';

export type Status = 'ok' | 'warn' | 'fail';
export type Area = 'file descriptors' | 'accept queue' | 'ephemeral ports' | 'memory' | 'liveness' | 'wstrace';

export interface Finding {
  readonly area: Area;
  readonly check: string;
  readonly status: Status;
  /** The value now, as a person reads it. */
  readonly value: string;
  /** What it limits. */
  readonly limits: string;
  /** Lines to apply (sysctl.conf or limits.conf syntax); empty when ok. */
  readonly fix: string[];
  /** The kernel's own numbers behind the verdict. */
  readonly evidence: string;
}

/** A listener's SYN stage as a running agent counted it (syn_drop's tracepoint route; zeros elsewhere). */
export interface SynStageFacts {
  /** SYNs dropped with the SYN queue full and cookies off (TCPReqQFullDrop). */
  readonly queueFull: number;
  /** SYNs of unproven peers dropped, the SYN queue three-quarters full without cookies. */
  readonly unproven: number;
  readonly cookies: number;
  readonly synackRetrans: number;
}

export interface ListenerFacts extends ListenerSocket {
  readonly pid?: number;
  readonly comm?: string;
  readonly fds?: { open: number; soft: number; hard: number };
  /** Deepest queue seen by a running agent, when one was asked. */
  readonly peak?: number;
  /** Overflow drops seen by a running agent. */
  readonly overflows?: number;
  readonly syn?: SynStageFacts;
}

export interface DoctorFacts {
  readonly host: HostFacts;
  /** Extra sysctls by dotted name (tcp_rmem, tcp_keepalive_time, ...), as text; absent when unreadable. */
  readonly extra: Record<string, string | undefined>;
  readonly listeners: ListenerFacts[];
  readonly timewait: TimewaitGroup[];
  readonly pageSize: number;
  /** Hooks live/blind, when known. */
  readonly hooks?: Array<{ signal: string; attached: boolean; variant: string; error?: string }>;
}

const pct = (a: number, b: number) => (b > 0 ? (100 * a) / b : 0);
const level = (p: number, warn: number, fail: number): Status => (p >= fail ? 'fail' : p >= warn ? 'warn' : 'ok');
const num = (s: string | undefined) => (s === undefined ? undefined : Number(s.trim().split(/\s+/)[0]));

function fds(f: DoctorFacts): Finding[] {
  const out: Finding[] = [];
  const { fileNr, fileMax, nrOpen } = f.host.sysctls;
  const p = pct(fileNr.allocated, fileMax);
  out.push({
    area: 'file descriptors',
    check: 'fs.file-max',
    status: level(p, 70, 90),
    value: `${fileNr.allocated} of ${fileMax} in use (${p.toFixed(1)}%)`,
    limits: 'file handles on the whole host: every socket is one',
    fix: p >= 70 ? [`fs.file-max = ${Math.max(fileMax * 2, fileNr.allocated * 4)}`] : [],
    evidence: `/proc/sys/fs/file-nr: ${fileNr.allocated} ${fileNr.free} ${fileNr.max}`,
  });
  const seen = new Set<number>();
  for (const l of f.listeners) {
    if (!l.pid || !l.fds || seen.has(l.pid)) continue;
    seen.add(l.pid);
    const used = pct(l.fds.open, l.fds.soft);
    // A server meant for many long-lived connections with the old 1024 default will hit EMFILE.
    const st: Status = used >= 90 ? 'fail' : used >= 70 || l.fds.soft <= 1024 ? 'warn' : 'ok';
    const want = Math.min(nrOpen, Math.max(65536, l.fds.open * 4));
    out.push({
      area: 'file descriptors',
      check: `nofile of ${l.comm ?? 'pid'} (pid ${l.pid})`,
      status: st,
      value: `${l.fds.open} open of soft ${l.fds.soft} / hard ${l.fds.hard} (${used.toFixed(0)}%)`,
      limits: `connections this process can hold (EMFILE beyond); fs.nr_open caps it at ${nrOpen}`,
      fix: st === 'ok' ? [] : [`${l.comm ?? '*'} soft nofile ${want}`, `${l.comm ?? '*'} hard nofile ${want}`, `# or LimitNOFILE=${want} in its systemd unit`],
      evidence: `/proc/${l.pid}/fd has ${l.fds.open} entries; /proc/${l.pid}/limits Max open files ${l.fds.soft} ${l.fds.hard}`,
    });
  }
  return out;
}

function acceptQueue(f: DoctorFacts): Finding[] {
  const out: Finding[] = [];
  const s = f.host.sysctls;
  const mib = f.host.mibFlat;
  const overflows = mib.TcpExtListenOverflows ?? 0;
  for (const l of f.listeners) {
    const peak = Math.max(l.peak ?? 0, l.queue);
    const full = peak > l.backlog || (l.overflows ?? 0) > 0;
    const capped = l.backlog === s.somaxconn;
    const need = Math.max(2 * l.backlog, 2 * peak, 2 * s.somaxconn * (capped && full ? 1 : 0));
    const status: Status = full ? 'fail' : capped ? 'warn' : 'ok';
    out.push({
      area: 'accept queue',
      check: `listener ${l.addr.includes(':') ? `[${l.addr}]` : l.addr}:${l.port}${l.comm ? ` (${l.comm})` : ''}`,
      status,
      value: `queue ${l.queue} now, peak ${peak}, limit ${l.backlog}${capped ? ' (= somaxconn)' : ''}`,
      limits: 'connections waiting for accept(); beyond the limit the kernel drops SYNs and final ACKs',
      fix: full
        ? capped
          ? [`net.core.somaxconn = ${need}`, `# and listen() with a backlog of at least ${need} (the limit is the smaller of the two)`]
          : [`# raise the listen() backlog of this server to at least ${need} (somaxconn ${s.somaxconn} allows it)`]
        : capped
          ? [`net.core.somaxconn = ${2 * s.somaxconn}`, '# this listener asked for somaxconn or more: the limit is somaxconn']
          : [],
      evidence:
        `sock_diag: Recv-Q ${l.queue} Send-Q ${l.backlog}; net.core.somaxconn ${s.somaxconn}; ` +
        `TcpExtListenOverflows ${overflows} since boot` +
        (l.overflows !== undefined ? `; ${l.overflows} drops seen by the agent` : ''),
    });
    if (l.syn) out.push(...synStage(l, l.syn, s.tcpSyncookies));
  }
  out.push({
    area: 'accept queue',
    check: 'net.ipv4.tcp_syncookies',
    status: s.tcpSyncookies === 0 ? 'warn' : 'ok',
    value: `${s.tcpSyncookies}; cookies sent since boot: ${mib.TcpExtSyncookiesSent ?? 0}`,
    limits: 'with 0, a full SYN queue drops new connections instead of answering with cookies',
    fix: s.tcpSyncookies === 0 ? ['net.ipv4.tcp_syncookies = 1'] : [],
    evidence: `TcpExtSyncookiesSent ${mib.TcpExtSyncookiesSent ?? 0}, TcpExtTCPReqQFullDrop ${mib.TcpExtTCPReqQFullDrop ?? 0}`,
  });
  const reqDrops = mib.TcpExtTCPReqQFullDrop ?? 0;
  out.push({
    area: 'accept queue',
    check: 'net.ipv4.tcp_max_syn_backlog',
    status: reqDrops > 0 ? 'warn' : 'ok',
    value: String(s.tcpMaxSynBacklog),
    limits: 'half-open connections per listener',
    fix: reqDrops > 0 ? [`net.ipv4.tcp_max_syn_backlog = ${s.tcpMaxSynBacklog * 2}`] : [],
    evidence: `TcpExtTCPReqQFullDrop ${reqDrops} since boot`,
  });
  return out;
}

/**
 * The SYN queue of one listener, from the agent's per-listener counts: SYNs
 * refused (SYN queue full without cookies, unproven peers), cookies sent
 * (the queue was full), SYN-ACKs resent (handshakes whose last ACK did not
 * come, or came to a full accept queue and was dropped with
 * tcp_abort_on_overflow 0). Said only when something happened.
 */
function synStage(l: ListenerFacts, syn: SynStageFacts, syncookies: number): Finding[] {
  const refused = syn.queueFull + syn.unproven;
  if (!refused && !syn.cookies && !syn.synackRetrans) return [];
  const fix: string[] = [];
  if (syn.queueFull && syncookies === 0) fix.push('net.ipv4.tcp_syncookies = 1');
  if (syn.queueFull || syn.cookies) fix.push(`# raise this server's listen() backlog above ${l.backlog}: it also bounds its SYN queue`);
  if (syn.unproven) fix.push('net.ipv4.tcp_syncookies = 1', '# or raise net.ipv4.tcp_max_syn_backlog: unproven peers are refused past three quarters of it');
  if (!fix.length) fix.push('# SYN-ACKs resent: clients\' last ACKs are lost, or dropped at a full accept queue (see the accept-queue check)');
  return [
    {
      area: 'accept queue',
      check: `SYN queue of ${l.addr.includes(':') ? `[${l.addr}]` : l.addr}:${l.port}${l.comm ? ` (${l.comm})` : ''}`,
      status: refused ? 'fail' : 'warn',
      value: `${syn.queueFull} SYNs dropped with the SYN queue full, ${syn.unproven} unproven peers dropped, ${syn.cookies} SYN cookies sent, ${syn.synackRetrans} SYN-ACKs resent`,
      limits: 'handshakes in progress: the SYN queue holds as many as the accept queue; past it, cookies or drops',
      fix: [...new Set(fix)],
      evidence: `counted per listener by the agent (SYN-stage tracepoints); net.ipv4.tcp_syncookies ${syncookies}`,
    },
  ];
}

function ports(f: DoctorFacts): Finding[] {
  const s = f.host.sysctls;
  const range = s.ipLocalPortRange.high - s.ipLocalPortRange.low + 1;
  const worst = [...f.timewait].sort((a, b) => b.count - a.count)[0];
  const p = worst ? pct(worst.count, range) : 0;
  const tw = f.host.sockstat.tcp.tw;
  const overflow = f.host.mibFlat.TcpExtTCPTimeWaitOverflow ?? 0;
  const out: Finding[] = [
    {
      area: 'ephemeral ports',
      check: 'ip_local_port_range vs TIME_WAIT to one destination',
      status: level(p, 50, 80),
      value: worst ? `${worst.count} TIME_WAIT to ${worst.raddr}:${worst.rport} of ${range} ports (${p.toFixed(0)}%)` : `no TIME_WAIT; ${range} ports`,
      limits: 'outgoing connections to one destination (EADDRNOTAVAIL when used up)',
      fix:
        p >= 50
          ? [`net.ipv4.ip_local_port_range = 1024 65535`, ...(s.tcpTwReuse !== 1 ? ['net.ipv4.tcp_tw_reuse = 1'] : [])]
          : [],
      evidence: `sock_diag TIME_WAIT groups; net.ipv4.ip_local_port_range ${s.ipLocalPortRange.low} ${s.ipLocalPortRange.high}; tcp_tw_reuse ${s.tcpTwReuse}`,
    },
    {
      area: 'ephemeral ports',
      check: 'net.ipv4.tcp_max_tw_buckets',
      status: overflow > 0 ? 'fail' : level(pct(tw, s.tcpMaxTwBuckets), 70, 90),
      value: `${tw} TIME_WAIT of ${s.tcpMaxTwBuckets}; overflows since boot ${overflow}`,
      limits: 'TIME_WAIT sockets kept; beyond it the kernel skips TIME_WAIT (TCPTimeWaitOverflow)',
      fix: overflow > 0 || pct(tw, s.tcpMaxTwBuckets) >= 70 ? [`net.ipv4.tcp_max_tw_buckets = ${Math.max(2 * s.tcpMaxTwBuckets, 2 * tw)}`] : [],
      evidence: `/proc/net/sockstat tw ${tw}; TcpExtTCPTimeWaitOverflow ${overflow}`,
    },
  ];
  return out;
}

function memory(f: DoctorFacts): Finding[] {
  const out: Finding[] = [];
  const m = f.host.sysctls.tcpMem;
  const pages = f.host.sockstat.tcp.memPages;
  const inuse = f.host.sockstat.tcp.inuse;
  if (m) {
    const st: Status = pages >= m.high ? 'fail' : pages >= m.pressure ? 'warn' : 'ok';
    out.push({
      area: 'memory',
      check: 'net.ipv4.tcp_mem',
      status: st,
      value:
        `${pages} pages in use; thresholds ${m.low} / ${m.pressure} / ${m.high}` +
        (inuse > 0 ? `; measured ${Math.round((pages * f.pageSize) / inuse)} B of buffers per TCP socket now` : ''),
      limits: 'TCP buffer memory on the host: pressure above the middle value, allocation failures above the last',
      fix: st === 'ok' ? [] : [`net.ipv4.tcp_mem = ${m.low * 2} ${m.pressure * 2} ${m.high * 2}`],
      evidence: `/proc/net/sockstat TCP mem ${pages} (pages of ${f.pageSize} B), inuse ${inuse}`,
    });
  }
  const maxOrphans = num(f.extra['net.ipv4.tcp_max_orphans']);
  const orphans = f.host.sockstat.tcp.orphan;
  if (maxOrphans) {
    out.push({
      area: 'memory',
      check: 'net.ipv4.tcp_max_orphans',
      status: level(pct(orphans, maxOrphans), 50, 90),
      value: `${orphans} orphans of ${maxOrphans}`,
      limits: 'closed sockets still flushing; beyond it they are reset ("too many orphaned sockets")',
      fix: pct(orphans, maxOrphans) >= 50 ? [`net.ipv4.tcp_max_orphans = ${maxOrphans * 2}`] : [],
      evidence: `/proc/net/sockstat orphan ${orphans}`,
    });
  }
  const oom = f.host.mibFlat.TcpExtTCPAbortOnMemory ?? 0;
  out.push({
    area: 'memory',
    check: 'out-of-memory aborts',
    status: oom > 0 ? 'fail' : 'ok',
    value: `${oom} since boot`,
    limits: 'connections reset because TCP memory ran out',
    fix: oom > 0 && m ? [`net.ipv4.tcp_mem = ${m.low * 2} ${m.pressure * 2} ${m.high * 2}`] : [],
    evidence: `TcpExtTCPAbortOnMemory ${oom}; tcp_rmem ${f.extra['net.ipv4.tcp_rmem'] ?? '?'}; tcp_wmem ${f.extra['net.ipv4.tcp_wmem'] ?? '?'}`,
  });
  return out;
}

function liveness(f: DoctorFacts): Finding[] {
  const out: Finding[] = [];
  const ka = num(f.extra['net.ipv4.tcp_keepalive_time']);
  if (ka !== undefined) {
    out.push({
      area: 'liveness',
      check: 'net.ipv4.tcp_keepalive_time',
      status: ka > 600 ? 'warn' : 'ok',
      value: `${ka} s`,
      limits: 'how long a dead peer of an idle long-lived connection keeps its socket',
      fix: ka > 600 ? ['net.ipv4.tcp_keepalive_time = 300', '# the capacity manual suggests 300 s'] : [],
      evidence: `/proc/sys/net/ipv4/tcp_keepalive_time ${ka}`,
    });
  }
  const fin = f.host.sysctls.tcpFinTimeout;
  out.push({
    area: 'liveness',
    check: 'net.ipv4.tcp_fin_timeout',
    status: fin > 60 ? 'warn' : 'ok',
    value: `${fin} s`,
    limits: 'time an orphaned socket stays in FIN_WAIT2 (TIME_WAIT itself is a fixed 60 s)',
    fix: fin > 60 ? ['net.ipv4.tcp_fin_timeout = 30'] : [],
    evidence: `/proc/sys/net/ipv4/tcp_fin_timeout ${fin}`,
  });
  const cc = f.extra['net.ipv4.tcp_congestion_control']?.trim();
  const avail = f.extra['net.ipv4.tcp_available_congestion_control']?.trim() ?? '';
  if (cc) {
    out.push({
      area: 'liveness',
      check: 'congestion control',
      status: 'ok',
      value: `${cc}; available: ${avail || '?'}${/\bbbr\b/.test(avail) ? '' : ' (bbr: modprobe tcp_bbr)'}`,
      limits: 'throughput and queueing of each connection (information only)',
      fix: [],
      evidence: '/proc/sys/net/ipv4/tcp_congestion_control',
    });
  }
  const ctMax = num(f.extra['net.netfilter.nf_conntrack_max']);
  const ctCount = num(f.extra['net.netfilter.nf_conntrack_count']);
  if (ctMax && ctCount !== undefined) {
    const p = pct(ctCount, ctMax);
    out.push({
      area: 'liveness',
      check: 'net.netfilter.nf_conntrack_max',
      status: level(p, 70, 90),
      value: `${ctCount} of ${ctMax} (${p.toFixed(0)}%)`,
      limits: 'tracked connections; when full, new ones are dropped ("table full, dropping packet")',
      fix: p >= 70 ? [`net.netfilter.nf_conntrack_max = ${Math.max(ctMax * 2, ctCount * 2)}`] : [],
      evidence: '/proc/sys/net/netfilter/nf_conntrack_count and _max',
    });
  }
  return out;
}

function hooks(f: DoctorFacts): Finding[] {
  if (!f.hooks) {
    return [{ area: 'wstrace', check: 'hooks', status: 'ok', value: 'not checked (needs root, or --connect to an agent)', limits: 'what wstrace can see here', fix: [], evidence: '' }];
  }
  const blind = f.hooks.filter((h) => !h.attached);
  return [
    {
      area: 'wstrace',
      check: 'hooks',
      status: blind.length ? 'warn' : 'ok',
      value: `${f.hooks.length - blind.length} live (${f.hooks.filter((h) => h.attached).map((h) => `${h.signal}: ${h.variant}`).join(', ')})` +
        (blind.length ? `; blind: ${blind.map((h) => h.signal).join(', ')}` : ''),
      limits: 'what wstrace can see on this kernel',
      fix: [],
      evidence: blind.map((h) => `${h.signal}: ${h.error ?? ''}`).join('; '),
    },
  ];
}

const ORDER: Record<Status, number> = { fail: 0, warn: 1, ok: 2 };

export function runChecks(f: DoctorFacts): Finding[] {
  const all = [...fds(f), ...acceptQueue(f), ...ports(f), ...memory(f), ...liveness(f), ...hooks(f)];
  return all.sort((a, b) => ORDER[a.status] - ORDER[b.status]);
}

/** Exit codes: 0 all ok, 1 warnings, 2 failures (3 is bad usage, set by the CLI). */
export function exitCode(findings: readonly Finding[]): number {
  if (findings.some((x) => x.status === 'fail')) return 2;
  if (findings.some((x) => x.status === 'warn')) return 1;
  return 0;
}
