/**
 * One Snapshot reduced to what the windows need. Ports a client picked from
 * ip_local_port_range are folded together (one row per peer address), so a
 * busy server keeps a few hundred keys per sample instead of one per
 * connection, and 60 s of samples stay small.
 */
import { Direction, type SnapshotResponse } from '../generated/wstrace/v1/tracer.js';
import { workloadOf, type Workload } from './view.js';
import { familyFromProto } from '../protocol/convert.js';
import { listenerKey } from '../signals/event.js';

export interface PortRange {
  readonly low: number;
  readonly high: number;
}

export interface ListenerSample {
  readonly key: string;
  readonly family: 'ipv4' | 'ipv6';
  readonly addr: string;
  readonly port: number;
  readonly netns: number;
  readonly pid?: number;
  readonly comm: string;
  readonly workload?: Workload;
  readonly live: boolean;
  readonly queue: number;
  readonly limit: number;
  readonly fullHits: number;
  readonly overflows: number;
  /** SYN-stage drops of every reason, from the SYN hook (0 without it). */
  readonly synDrops: number;
  /** SYN cookies it sent and SYN-ACKs it resent (syn_drop's tracepoint route; 0 without it). */
  readonly cookiesSent: number;
  readonly synackRetrans: number;
}

export interface ResetReasonSample {
  readonly direction: 'sent' | 'received';
  readonly reason: string;
  readonly count: number;
}

export interface ResetPortSample {
  readonly netns: number;
  /** undefined: every port in ip_local_port_range that is not a listener's. */
  readonly port?: number;
  readonly sent: number;
  readonly received: number;
}

export interface TimewaitSample {
  readonly addr: string;
  readonly family: 'ipv4' | 'ipv6';
  /** undefined: the peer's ephemeral ports folded (it connected to us and we closed first). */
  readonly port?: number;
  readonly created: number;
  readonly current: number;
}

export interface HostSample {
  readonly listenOverflows?: number;
  readonly listenDrops?: number;
  readonly syncookiesSent?: number;
  readonly timewaitOverflow?: number;
  readonly reqQFullDrop?: number;
  readonly socketsUsed?: number;
  readonly tcpInuse?: number;
  readonly orphans?: number;
  readonly memPages?: number;
  readonly somaxconn?: number;
  readonly portRange?: PortRange;
  readonly twReuse?: number;
  readonly maxTwBuckets?: number;
  readonly tcpMem?: { readonly low: number; readonly pressure: number; readonly high: number };
  readonly fileNr?: { readonly allocated: number; readonly max: number };
}

export interface Sample {
  /** When it arrived (the aggregator's clock). */
  readonly at: number;
  /** When the agent took it (the agent's clock): intervals between samples use this. */
  readonly agentMs: number;
  readonly listeners: ReadonlyMap<string, ListenerSample>;
  readonly resetsSent: number;
  readonly resetsReceived: number;
  readonly timewaitMade: number;
  readonly timewaitCurrent: number;
  readonly resetReasons: ReadonlyMap<string, ResetReasonSample>;
  readonly resetPorts: ReadonlyMap<string, ResetPortSample>;
  readonly timewait: ReadonlyMap<string, TimewaitSample>;
  /** True when timewait was cut to its largest destinations. */
  readonly timewaitCapped: boolean;
  readonly host: HostSample;
  /** Cumulative SYN-stage drops attributed to each listener, and to none, since the first sample. */
  attributed: Map<string, number>;
  unattributed: number;
}

/** TIME_WAIT destinations kept per sample; the panel shows a handful. */
export const MAX_TIMEWAIT_KEYS = 512;

const DEFAULT_PORT_RANGE: PortRange = { low: 32768, high: 60999 };


function numbers(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const words = text.trim().split(/\s+/);
  if (words.length === 0 || !words.every((w) => /^-?\d+$/.test(w))) return undefined;
  return words.map(Number);
}

function hostSample(snap: SnapshotResponse): HostSample {
  const mib = snap.host?.mib ?? {};
  const st = snap.host?.sockstat ?? {};
  const sys = snap.host?.sysctls ?? {};
  const one = (name: string) => numbers(sys[name])?.[0];
  const range = numbers(sys['net.ipv4.ip_local_port_range']);
  const mem = numbers(sys['net.ipv4.tcp_mem']);
  const fileNr = numbers(sys['fs.file-nr']);
  const tcp4 = st['TCP.inuse'];
  const tcp6 = st['TCP6.inuse'];
  return {
    listenOverflows: mib.TcpExtListenOverflows,
    listenDrops: mib.TcpExtListenDrops,
    syncookiesSent: mib.TcpExtSyncookiesSent,
    timewaitOverflow: mib.TcpExtTCPTimeWaitOverflow,
    reqQFullDrop: mib.TcpExtTCPReqQFullDrop,
    socketsUsed: st['sockets.used'],
    tcpInuse: tcp4 === undefined && tcp6 === undefined ? undefined : (tcp4 ?? 0) + (tcp6 ?? 0),
    orphans: st['TCP.orphan'],
    memPages: st['TCP.mem'],
    somaxconn: one('net.core.somaxconn'),
    ...(range?.length === 2 ? { portRange: { low: range[0]!, high: range[1]! } } : {}),
    twReuse: one('net.ipv4.tcp_tw_reuse'),
    maxTwBuckets: one('net.ipv4.tcp_max_tw_buckets'),
    ...(mem?.length === 3 ? { tcpMem: { low: mem[0]!, pressure: mem[1]!, high: mem[2]! } } : {}),
    ...(fileNr?.length === 3 ? { fileNr: { allocated: fileNr[0]!, max: fileNr[2]! } } : {}),
  };
}

function inRange(port: number, r: PortRange): boolean {
  return port >= r.low && port <= r.high;
}

export function reduceSnapshot(snap: SnapshotResponse, at: number): Sample {
  const host = hostSample(snap);
  const range = host.portRange ?? DEFAULT_PORT_RANGE;

  const listeners = new Map<string, ListenerSample>();
  const listenerPorts = new Set<string>();
  for (const l of snap.listeners) {
    // A namespace's drops no listener's packet was seen to make: not a listener. What the MIB
    // counts beyond the listeners' exact drops is shown host-wide as unattributed (attribute.ts).
    if (l.unattributed) continue;
    const family = familyFromProto(l.family);
    const key = listenerKey(family, l.addr, l.port, l.netns);
    listenerPorts.add(`${l.netns}|${l.port}`);
    listeners.set(key, {
      key,
      family,
      addr: l.addr,
      port: l.port,
      netns: l.netns,
      ...(l.pid !== undefined ? { pid: l.pid } : {}),
      comm: l.comm,
      ...(workloadOf(l) ? { workload: workloadOf(l)! } : {}),
      live: l.live,
      queue: l.queue,
      limit: l.backlog,
      fullHits: l.fullHits,
      overflows: l.overflows,
      synDrops: l.synDropsAcceptQueueFull + l.synDropsSynQueueFull + l.synDropsUnprovenPeer + l.synDropsOther,
      cookiesSent: l.syncookiesSent,
      synackRetrans: l.synackRetransmits,
    });
  }

  const resetReasons = new Map<string, ResetReasonSample>();
  const resetPorts = new Map<string, ResetPortSample>();
  for (const r of snap.resets) {
    const direction = r.direction === Direction.DIRECTION_RECEIVED ? 'received' : 'sent';
    const reason = r.reason || (r.state ? `in ${r.state}` : 'unknown');
    const rk = `${direction}|${reason}`;
    const prevReason = resetReasons.get(rk);
    resetReasons.set(rk, { direction, reason, count: (prevReason?.count ?? 0) + r.count });

    // The agent sends ephemeral local ports already folded, as port 0; older agents sent each one.
    // A listener's port stays itself even inside the ephemeral range.
    const own = r.localPort !== 0 && (listenerPorts.has(`${r.netns}|${r.localPort}`) || !inRange(r.localPort, range));
    const pk = own ? `${r.netns}|${r.localPort}` : `${r.netns}|ephemeral`;
    const prevPort = resetPorts.get(pk) ?? { netns: r.netns, ...(own ? { port: r.localPort } : {}), sent: 0, received: 0 };
    resetPorts.set(pk, {
      ...prevPort,
      sent: prevPort.sent + (direction === 'sent' ? r.count : 0),
      received: prevPort.received + (direction === 'received' ? r.count : 0),
    });
  }

  let tw = new Map<string, TimewaitSample>();
  for (const d of snap.timewait) {
    const family = familyFromProto(d.family);
    // A peer's ephemeral port on our TIME_WAIT socket means it connected to us: fold per peer.
    const outbound = !inRange(d.remotePort, range);
    const key = outbound ? `${family}|${d.remoteAddr}|${d.remotePort}` : `${family}|${d.remoteAddr}|eph`;
    const prev = tw.get(key);
    tw.set(key, {
      addr: d.remoteAddr,
      family,
      ...(outbound ? { port: d.remotePort } : {}),
      created: (prev?.created ?? 0) + d.created,
      current: (prev?.current ?? 0) + d.current,
    });
  }
  let timewaitCapped = false;
  if (tw.size > MAX_TIMEWAIT_KEYS) {
    timewaitCapped = true;
    tw = new Map(
      [...tw.entries()].sort((a, b) => b[1].current - a[1].current || b[1].created - a[1].created).slice(0, MAX_TIMEWAIT_KEYS),
    );
  }

  const t = snap.totals;
  return {
    at,
    agentMs: snap.timeUnixMicros / 1000,
    listeners,
    resetsSent: t?.resetsSent ?? 0,
    resetsReceived: t?.resetsReceived ?? 0,
    timewaitMade: t?.timewait ?? 0,
    timewaitCurrent: snap.timewaitCurrent,
    resetReasons,
    resetPorts,
    timewait: tw,
    timewaitCapped,
    host,
    attributed: new Map(),
    unattributed: 0,
  };
}

/** True when `cur` cannot follow `prev`: the agent restarted and its counters began again. */
export function countersWentBack(prev: Sample, cur: Sample): boolean {
  return cur.resetsSent < prev.resetsSent || cur.resetsReceived < prev.resetsReceived || cur.timewaitMade < prev.timewaitMade;
}
