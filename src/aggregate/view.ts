/**
 * The view model of `wstrace top`: plain data, already judged. The UI only
 * lays it out; every "is this too close to the limit?" is decided here.
 */

/** The windows rates are computed over, in seconds. */
export type WindowSec = 1 | 10 | 60;
export const WINDOWS: readonly WindowSec[] = [1, 10, 60];

/** ok; warn: close to a limit or worth a look; over: a limit crossed, something dropped. */
export type Level = 'ok' | 'warn' | 'over';

export type SourceState = 'connecting' | 'up' | 'down';

export interface SourceView {
  /** What the source was opened as (the --connect address, or "local"). */
  readonly id: string;
  /** The host column: the host name, or the address when host names repeat. */
  readonly label: string;
  readonly state: SourceState;
  /** True for an agent in this process: fd figures are readable. */
  readonly local: boolean;
  readonly hostname?: string;
  readonly kernel?: string;
  /** Traced scope as the agent reports it: "netns /run/netns/x", "ports 80,443". */
  readonly scope?: string;
  readonly hooksLive: number;
  readonly hooksTotal: number;
  /** Signals with no live hook (syn_drop, accept_residency, ...). */
  readonly blind: readonly string[];
  /** True when a kernel hook counts SYN-stage drops per listener; else they are attributed. */
  readonly synDropsExact: boolean;
  /** Events lost since top connected, by where. */
  readonly lostKernel: number;
  readonly lostSlow: number;
  readonly lostInWindow: number;
  /** The agent's rate budget, events per second sent in full (0: none, every event is sent). */
  readonly eventBudget: number;
  /** Events that came in summary rows (beyond the budget) since top connected, and within the window. */
  readonly summarised: number;
  readonly summarisedInWindow: number;
  /** Events of a kind this wstrace does not know, since top connected: an upgrade would show them. */
  readonly unknownEvents: number;
  /** Captures running on this agent now, and the newest capture file. */
  readonly capturesRunning: number;
  readonly lastCapture?: string;
  /** Age of the newest snapshot; undefined before the first. */
  readonly sampleAgeMs?: number;
  readonly sampleLevel: Level;
  /** Seconds of data the rates cover (less than the window just after start). */
  readonly coveredSec: number;
  /** Why it is down (or the last error), and when the next attempt is. */
  readonly error?: string;
  readonly retryInMs?: number;
}

export type FdFigure =
  | { readonly kind: 'known'; readonly open: number; readonly limit: number; readonly level: Level }
  /** Remote agent: its processes are not readable from here. */
  | { readonly kind: 'n/a' }
  /** Local, but not read (yet), or the process is gone. */
  | { readonly kind: 'unknown' };

/** Who a socket's cgroup belongs to, as the agent named it (any part may be unknown). */
export interface Workload {
  /** Container id (64 hex digits, or a ctr id). */
  readonly container?: string;
  readonly containerName?: string;
  readonly pod?: string;
  /** Kubernetes namespace of the pod. */
  readonly namespace?: string;
}

/** The workload fields of an Event, Summary or Listener message; undefined when it names none. */
export function workloadOf(m: { container?: string; containerName?: string; pod?: string; namespace?: string }): Workload | undefined {
  if (!m.container && !m.pod) return undefined;
  return {
    ...(m.container ? { container: m.container } : {}),
    ...(m.containerName ? { containerName: m.containerName } : {}),
    ...(m.pod ? { pod: m.pod } : {}),
    ...(m.namespace ? { namespace: m.namespace } : {}),
  };
}

export interface ListenerRow {
  /** Unique across sources. */
  readonly key: string;
  readonly source: string;
  readonly host: string;
  readonly family: 'ipv4' | 'ipv6';
  readonly addr: string;
  readonly port: number;
  /** addr:port, IPv6 in brackets. */
  readonly endpoint: string;
  readonly netns: number;
  readonly pid?: number;
  readonly comm: string;
  /** The container and pod of the listening socket, when the agent knew them. */
  readonly workload?: Workload;
  /** False when only the counters remember it (closed since). */
  readonly live: boolean;
  /** Children waiting now, and the accept-queue limit (min(backlog, somaxconn), as the kernel applied it). */
  readonly queue: number;
  readonly limit: number;
  /** True when the limit equals net.core.somaxconn: listen() asked for more and was capped. */
  readonly cappedBySomaxconn: boolean;
  readonly queueLevel: Level;
  /** Deepest queue seen in the window (snapshots and events). */
  readonly peak: number;
  readonly peakLevel: Level;
  /** Enqueues that left the queue full, per second. */
  readonly fullPerSec?: number;
  /** ACK-stage overflow drops per second, exact (kernel counter per listener). */
  readonly ackDropsPerSec?: number;
  /** SYN-stage drops per second: exact with a SYN hook, else attributed from the MIB. */
  readonly synDropsPerSec?: number;
  /** SYN cookies sent and SYN-ACKs resent per second (the SYN-stage tracepoint route; absent without a window or the route). */
  readonly cookiesPerSec?: number;
  readonly synackResentPerSec?: number;
  readonly synDropsAttributed: boolean;
  readonly dropLevel: Level;
  /** Resets sent or received on this port, per second. */
  readonly resetsPerSec?: number;
  readonly fds: FdFigure;
}

export type ResetDirection = 'sent' | 'received';

export interface ResetReasonRow {
  readonly key: string;
  readonly source: string;
  readonly host: string;
  readonly direction: ResetDirection;
  /** The kernel's reason (sent), or the socket state (received: the kernel gives no reason). */
  readonly reason: string;
  readonly perSec: number;
  readonly count: number;
}

export interface ResetPeerRow {
  readonly key: string;
  readonly source: string;
  readonly host: string;
  readonly addr: string;
  readonly sentPerSec: number;
  readonly receivedPerSec: number;
  readonly perSec: number;
  readonly count: number;
  /** The container and pod of our side of the last reset with this peer, when named. */
  readonly workload?: Workload;
}

export interface ResetPortRow {
  readonly key: string;
  readonly source: string;
  readonly host: string;
  /** A local port, or undefined for all ports in ip_local_port_range folded together. */
  readonly port?: number;
  readonly netns: number;
  readonly sentPerSec: number;
  readonly receivedPerSec: number;
  readonly perSec: number;
  readonly count: number;
}

export interface ResetsView {
  readonly sentPerSec?: number;
  readonly receivedPerSec?: number;
  readonly level: Level;
  readonly reasons: readonly ResetReasonRow[];
  /** From events (the stream can lose some under floods; losses are in the header). */
  readonly peers: readonly ResetPeerRow[];
  /** Exact (kernel counters). */
  readonly ports: readonly ResetPortRow[];
}

export interface TimewaitHostRow {
  readonly source: string;
  readonly host: string;
  readonly createdPerSec?: number;
  readonly current: number;
  /** net.ipv4.tcp_max_tw_buckets: TIME_WAIT sockets beyond it are not made. */
  readonly maxBuckets?: number;
  readonly currentLevel: Level;
  /** TcpExtTCPTimeWaitOverflow per second. */
  readonly overflowPerSec?: number;
  readonly overflowLevel: Level;
  readonly portRange?: { readonly low: number; readonly high: number; readonly size: number };
  /** net.ipv4.tcp_tw_reuse. */
  readonly twReuse: 'off' | 'on' | 'loopback' | 'unknown';
}

export interface TimewaitDestRow {
  readonly key: string;
  readonly source: string;
  readonly host: string;
  readonly addr: string;
  /** Remote port; undefined when it groups a peer's own ephemeral ports (connections it opened to us). */
  readonly port?: number;
  readonly endpoint: string;
  readonly current: number;
  readonly createdPerSec?: number;
  /** current / size of ip_local_port_range; undefined for inbound groups. */
  readonly occupancy?: number;
  readonly level: Level;
  /** The container and pod whose connections to it last went to TIME_WAIT, when named. */
  readonly workload?: Workload;
}

export interface TimewaitView {
  readonly hosts: readonly TimewaitHostRow[];
  readonly destinations: readonly TimewaitDestRow[];
}

export interface CapacityRow {
  readonly source: string;
  readonly host: string;
  /** The agent's capacity checklist (Doctor), when it has answered: counts and the first failing or warning check. */
  readonly doctor?: { readonly fail: number; readonly warn: number; readonly first?: string };
  readonly socketsUsed?: number;
  /** TCP sockets, IPv4 + IPv6, not counting TIME_WAIT. */
  readonly tcpInuse?: number;
  /** Host-wide: closed by their process, still in the kernel. */
  readonly orphans?: number;
  /** Host-wide TCP buffer memory, pages, against net.ipv4.tcp_mem. */
  readonly memPages?: number;
  readonly tcpMem?: { readonly low: number; readonly pressure: number; readonly high: number };
  readonly memState: 'normal' | 'above low' | 'pressure' | 'above high' | 'unknown';
  readonly memLevel: Level;
  readonly syncookiesPerSec?: number;
  readonly syncookiesLevel: Level;
  /** SYNs dropped because the SYN queue was full (TcpExtTCPReqQFullDrop). */
  readonly synQueueDropsPerSec?: number;
  /** ListenDrops not explained by ListenOverflows (SYN queue, memory, ...). */
  readonly otherListenDropsPerSec?: number;
  /** SYN-stage overflows no listener was seen full for. */
  readonly unattributedPerSec?: number;
  readonly dropLevel: Level;
  /** fs.file-nr: allocated file handles against fs.file-max. */
  readonly files?: { readonly allocated: number; readonly max: number; readonly level: Level };
  /** The listener process closest to its fd limit. */
  readonly worstFds: FdFigure & { readonly pid?: number; readonly comm?: string };
}

export interface TopView {
  readonly atMs: number;
  readonly window: WindowSec;
  readonly sources: readonly SourceView[];
  readonly listeners: readonly ListenerRow[];
  readonly resets: ResetsView;
  readonly timewait: TimewaitView;
  readonly capacity: readonly CapacityRow[];
}
