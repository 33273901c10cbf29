/**
 * Snapshot: the exact kernel counters joined with the live socket tables
 * (sock_diag) and host facts, keyed the way a person reads them.
 */
import type { Counters, ListenerCounter, Owner, SocketDump } from '../kernel/index.js';
import {
  Direction,
  Family,
  type HostFacts,
  type Listener,
  type ResetCount,
  type SnapshotResponse,
  type TimewaitDestination,
} from '../generated/wstrace/v1/tracer.js';
import { familyToProto } from '../protocol/convert.js';
import { listenerKey } from '../signals/event.js';
import type { CgroupNames } from './encode.js';
import { namesToProto } from './hub.js';

export interface SnapshotInputs {
  readonly counters: Counters;
  readonly sockets: SocketDump;
  /** Inode of the namespace the socket dump came from. */
  readonly dumpNetns: number;
  readonly host: HostFacts;
  readonly owner: (inode: number) => Owner | undefined;
  /**
   * Who a listener belongs to, by its socket's cgroup or else its owner's
   * (a cache that never waits: a new cgroup is named from a later snapshot).
   */
  readonly names?: (cgroup: number | undefined, pid: number | undefined) => CgroupNames | undefined;
  readonly nowMs: number;
  /** Program runs the kernel skipped as nested (Tracer.skippedRuns): events in no count. */
  readonly skippedRuns?: number;
}

const NO_SYN_DROPS = {
  synDropsAcceptQueueFull: 0,
  synDropsSynQueueFull: 0,
  synDropsUnprovenPeer: 0,
  synDropsOther: 0,
  syncookiesSent: 0,
  synackRetransmits: 0,
};

/** The listener's SYN-stage counts (drops by cause, cookies, SYN-ACK retransmits). */
function synDrops(c: ListenerCounter): typeof NO_SYN_DROPS {
  return {
    synDropsAcceptQueueFull: c.synDrops.acceptQueueFull,
    synDropsSynQueueFull: c.synDrops.synQueueFull,
    synDropsUnprovenPeer: c.synDrops.unprovenPeer,
    synDropsOther: c.synDrops.other,
    syncookiesSent: c.cookiesSent,
    synackRetransmits: c.synackRetrans,
  };
}

/**
 * Resets by key, one row per kernel map entry. Local port 0 is the ephemeral
 * ports of the traced namespace without a listener, folded by the kernel side
 * (bpf/common.h count_reset).
 */
function resetRows(counters: Counters): ResetCount[] {
  return counters.resets.map((r) => ({
    direction: r.direction === 'sent' ? Direction.DIRECTION_SENT : Direction.DIRECTION_RECEIVED,
    netns: r.netns,
    localPort: r.lport,
    state: r.state ?? '',
    reason: r.reason ?? '',
    count: r.count,
    ...(r.cgroup ? { cgroup: r.cgroup } : {}),
  }));
}

export function buildSnapshot(inp: SnapshotInputs): SnapshotResponse {
  const { counters, sockets } = inp;
  const listeners = new Map<string, Listener>();
  for (const l of sockets.listeners) {
    const owner = inp.owner(l.inode);
    listeners.set(listenerKey(l.family, l.addr, l.port, inp.dumpNetns), {
      family: familyToProto(l.family),
      addr: l.addr,
      port: l.port,
      netns: inp.dumpNetns,
      queue: l.queue,
      backlog: l.backlog,
      peak: l.queue,
      fullHits: 0,
      overflows: 0,
      enqueued: 0,
      inode: l.inode,
      ...(owner ? { pid: owner.pid } : {}),
      comm: owner?.comm ?? '',
      live: true,
      unattributed: false,
      ...NO_SYN_DROPS,
      ...(l.cgroup ? { cgroup: l.cgroup } : {}),
    });
  }
  for (const c of counters.listeners) {
    const key = listenerKey(c.family, c.addr, c.port, c.netns);
    const live = listeners.get(key);
    if (live) {
      live.peak = Math.max(live.peak, c.peak);
      live.fullHits = c.fullHits;
      live.overflows = c.overflows;
      live.enqueued = c.enqueued;
      Object.assign(live, synDrops(c));
      if (!live.cgroup && c.cgroup) live.cgroup = c.cgroup;
      continue;
    }
    const owner = c.inode ? inp.owner(c.inode) : undefined;
    listeners.set(key, {
      family: c.unattributed ? Family.FAMILY_UNSPECIFIED : familyToProto(c.family),
      addr: c.addr,
      port: c.port,
      netns: c.netns,
      queue: 0,
      backlog: c.backlog,
      peak: c.peak,
      fullHits: c.fullHits,
      overflows: c.overflows,
      enqueued: c.enqueued,
      inode: c.inode,
      ...(owner ? { pid: owner.pid } : {}),
      comm: owner?.comm ?? '',
      live: false,
      ...synDrops(c),
      ...(c.cgroup ? { cgroup: c.cgroup } : {}),
      unattributed: c.unattributed === true,
    });
  }
  if (inp.names) for (const l of listeners.values()) Object.assign(l, namesToProto(inp.names(l.cgroup, l.pid)));
  for (const r of counters.residency) {
    const l = listeners.get(listenerKey(r.family, r.addr, r.port, r.netns));
    if (l) l.residency = { buckets: r.buckets, count: r.count, sumNs: r.sumNs };
  }

  // A row per destination and cgroup; sock_diag's count now (timewait sockets
  // have no cgroup) goes on the destination's first row, so rows still add up.
  const tw = new Map<string, TimewaitDestination>();
  const firstRow = new Map<string, TimewaitDestination>();
  for (const c of counters.timewaits) {
    const row: TimewaitDestination = {
      family: familyToProto(c.family),
      netns: c.netns,
      remoteAddr: c.raddr,
      remotePort: c.rport,
      created: c.count,
      current: 0,
      ...(c.cgroup ? { cgroup: c.cgroup } : {}),
    };
    const destination = `${c.family}|${c.raddr}|${c.rport}`;
    tw.set(`${destination}|${c.cgroup ?? 0}`, row);
    if (!firstRow.has(destination)) firstRow.set(destination, row);
  }
  for (const g of sockets.timewait) {
    const key = `${g.family}|${g.raddr}|${g.rport}`;
    const known = firstRow.get(key);
    if (known) known.current = g.count;
    else
      tw.set(key, {
        family: familyToProto(g.family),
        netns: inp.dumpNetns,
        remoteAddr: g.raddr,
        remotePort: g.rport,
        created: 0,
        current: g.count,
      });
  }

  const t = counters.totals;
  return {
    timeUnixMicros: Math.round(inp.nowMs * 1000),
    totals: {
      resetsSent: t.resetSent,
      resetsReceived: t.resetReceived,
      timewait: t.timewait,
      acceptQueueFull: t.acceptQueueFull,
      listenOverflows: t.listenOverflow,
      acceptEnqueued: t.acceptEnqueued,
      lostKernelRing: t.ringDrops,
      mapFull: t.mapFull,
      synDrops: t.synDrop,
      accepted: t.accepted,
      summarised: t.summarised,
      summaryLost: t.summaryLost,
      eventsSent: t.events,
      skippedRuns: inp.skippedRuns ?? 0,
    },
    listeners: [...listeners.values()],
    resets: resetRows(counters),
    timewait: [...tw.values()],
    timewaitCurrent: sockets.timewaitTotal,
    host: inp.host,
  };
}
