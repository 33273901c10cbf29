/**
 * One source's window turned into rows: differences between the newest
 * sample and the one a window before it, divided by the seconds between.
 */
import { endpoint } from '../protocol/address.js';
import { portKey } from './attribute.js';
import {
  dropLevel,
  fractionLevel,
  memState,
  noticeLevel,
  occupancyLevel,
  queueLevel,
  worst,
} from './levels.js';
import type { Sample } from './sample.js';
import type { SourceRecord, SourceWindow } from './source-state.js';
import type {
  CapacityRow,
  FdFigure,
  ListenerRow,
  ResetPeerRow,
  ResetPortRow,
  ResetReasonRow,
  TimewaitDestRow,
  TimewaitHostRow,
  Workload,
} from './view.js';

export interface Who {
  readonly source: string;
  readonly host: string;
}

/** Counter difference per second; undefined without an interval. */
function rate(cur: number | undefined, base: number | undefined, w: SourceWindow): number | undefined {
  if (!w.base || cur === undefined) return undefined;
  return Math.max(0, cur - (base ?? 0)) / w.seconds;
}

function fdFigure(rec: SourceRecord, pid: number | undefined): FdFigure {
  if (!rec.local) return { kind: 'n/a' };
  const f = pid === undefined ? undefined : rec.fds.get(pid);
  if (!f) return { kind: 'unknown' };
  return { kind: 'known', open: f.open, limit: f.limit, level: fractionLevel(f.open, f.limit) };
}

function resetsOnPort(s: Sample | undefined, netns: number, port: number): number {
  const r = s?.resetPorts.get(portKey(netns, port));
  return r ? r.sent + r.received : 0;
}

export function listenerRows(rec: SourceRecord, w: SourceWindow, who: Who): ListenerRow[] {
  const { latest, base } = w;
  const rows: ListenerRow[] = [];
  const exact = rec.synDropsExact;
  for (const l of latest.listeners.values()) {
    const b = base?.listeners.get(l.key);
    const fullPerSec = rate(l.fullHits, b?.fullHits, w);
    const ackDropsPerSec = rate(l.overflows, b?.overflows, w);
    const synDropsPerSec = exact
      ? rate(l.synDrops, b?.synDrops, w)
      : rate(latest.attributed.get(l.key) ?? 0, base?.attributed.get(l.key) ?? 0, w);
    const resetsPerSec = rate(resetsOnPort(latest, l.netns, l.port), base ? resetsOnPort(base, l.netns, l.port) : undefined, w);
    const cookiesPerSec = rate(l.cookiesSent, b?.cookiesSent, w);
    const synackResentPerSec = rate(l.synackRetrans, b?.synackRetrans, w);
    const busy = [fullPerSec, ackDropsPerSec, synDropsPerSec, resetsPerSec].some((r) => r !== undefined && r > 0);
    // A closed listener stays only while its last moments are in the window.
    if (!l.live && !busy) continue;

    let peak = l.queue;
    for (const s of w.samples) peak = Math.max(peak, s.listeners.get(l.key)?.queue ?? 0);
    const pk = portKey(l.netns, l.port);
    for (const bucket of w.buckets) peak = Math.max(peak, bucket.queuePeak.get(pk) ?? 0);

    rows.push({
      key: `${who.source}|${l.key}`,
      ...who,
      family: l.family,
      addr: l.addr,
      port: l.port,
      endpoint: endpoint(l.addr, l.port),
      netns: l.netns,
      ...(l.pid !== undefined ? { pid: l.pid } : {}),
      comm: l.comm,
      ...(l.workload ? { workload: l.workload } : {}),
      live: l.live,
      queue: l.queue,
      limit: l.limit,
      cappedBySomaxconn: latest.host.somaxconn !== undefined && l.limit === latest.host.somaxconn,
      queueLevel: l.live ? queueLevel(l.queue, l.limit) : 'ok',
      peak,
      peakLevel: queueLevel(peak, l.limit),
      ...(fullPerSec !== undefined ? { fullPerSec } : {}),
      ...(ackDropsPerSec !== undefined ? { ackDropsPerSec } : {}),
      ...(synDropsPerSec !== undefined ? { synDropsPerSec } : {}),
      synDropsAttributed: !exact,
      dropLevel: dropLevel(ackDropsPerSec, synDropsPerSec),
      ...(resetsPerSec !== undefined ? { resetsPerSec } : {}),
      ...(cookiesPerSec !== undefined ? { cookiesPerSec } : {}),
      ...(synackResentPerSec !== undefined ? { synackResentPerSec } : {}),
      fds: fdFigure(rec, l.pid),
    });
  }
  return rows;
}

export interface ResetRows {
  readonly sentPerSec?: number;
  readonly receivedPerSec?: number;
  readonly reasons: ResetReasonRow[];
  readonly peers: ResetPeerRow[];
  readonly ports: ResetPortRow[];
}

export function resetRows(w: SourceWindow, who: Who): ResetRows {
  const { latest, base } = w;
  const reasons: ResetReasonRow[] = [];
  const ports: ResetPortRow[] = [];
  const peers: ResetPeerRow[] = [];
  if (base) {
    for (const [k, r] of latest.resetReasons) {
      const count = r.count - (base.resetReasons.get(k)?.count ?? 0);
      if (count <= 0) continue;
      reasons.push({ key: `${who.source}|${k}`, ...who, direction: r.direction, reason: r.reason, count, perSec: count / w.seconds });
    }
    for (const [k, p] of latest.resetPorts) {
      const was = base.resetPorts.get(k);
      const sent = Math.max(0, p.sent - (was?.sent ?? 0));
      const received = Math.max(0, p.received - (was?.received ?? 0));
      if (sent + received === 0) continue;
      ports.push({
        key: `${who.source}|${k}`,
        ...who,
        ...(p.port !== undefined ? { port: p.port } : {}),
        netns: p.netns,
        sentPerSec: sent / w.seconds,
        receivedPerSec: received / w.seconds,
        perSec: (sent + received) / w.seconds,
        count: sent + received,
      });
    }
    const byPeer = new Map<string, { sent: number; received: number; workload?: Workload }>();
    for (const b of w.buckets) {
      for (const [addr, c] of b.peers) {
        const t = byPeer.get(addr) ?? { sent: 0, received: 0 };
        t.sent += c.sent;
        t.received += c.received;
        if (c.workload) t.workload = c.workload;
        byPeer.set(addr, t);
      }
    }
    for (const [addr, c] of byPeer) {
      peers.push({
        key: `${who.source}|${addr}`,
        ...who,
        addr,
        sentPerSec: c.sent / w.seconds,
        receivedPerSec: c.received / w.seconds,
        perSec: (c.sent + c.received) / w.seconds,
        count: c.sent + c.received,
        ...(c.workload ? { workload: c.workload } : {}),
      });
    }
  }
  const sentPerSec = rate(latest.resetsSent, base?.resetsSent, w);
  const receivedPerSec = rate(latest.resetsReceived, base?.resetsReceived, w);
  return {
    ...(sentPerSec !== undefined ? { sentPerSec } : {}),
    ...(receivedPerSec !== undefined ? { receivedPerSec } : {}),
    reasons,
    peers,
    ports,
  };
}

function twReuse(v: number | undefined): TimewaitHostRow['twReuse'] {
  if (v === 0) return 'off';
  if (v === 1) return 'on';
  if (v === 2) return 'loopback';
  return 'unknown';
}

export function timewaitRows(w: SourceWindow, who: Who): { host: TimewaitHostRow; destinations: TimewaitDestRow[] } {
  const { latest, base } = w;
  const h = latest.host;
  const range = h.portRange ? { ...h.portRange, size: h.portRange.high - h.portRange.low + 1 } : undefined;
  const overflowPerSec = rate(h.timewaitOverflow, base?.host.timewaitOverflow, w);
  const createdPerSec = rate(latest.timewaitMade, base?.timewaitMade, w);
  const host: TimewaitHostRow = {
    ...who,
    ...(createdPerSec !== undefined ? { createdPerSec } : {}),
    current: latest.timewaitCurrent,
    ...(h.maxTwBuckets !== undefined ? { maxBuckets: h.maxTwBuckets } : {}),
    currentLevel: h.maxTwBuckets ? fractionLevel(latest.timewaitCurrent, h.maxTwBuckets) : 'ok',
    ...(overflowPerSec !== undefined ? { overflowPerSec } : {}),
    overflowLevel: dropLevel(overflowPerSec),
    ...(range ? { portRange: range } : {}),
    twReuse: twReuse(h.twReuse),
  };
  const destinations: TimewaitDestRow[] = [];
  for (const [k, d] of latest.timewait) {
    const was = base?.timewait.get(k);
    // Missing from a cut-down base sample is not the same as new.
    const known = base && (was !== undefined || !base.timewaitCapped);
    const createdPerSec = known ? rate(d.created, was?.created ?? 0, w) : undefined;
    if (d.current === 0 && !createdPerSec) continue;
    const occupancy = d.port !== undefined && range ? d.current / range.size : undefined;
    const workload = d.port !== undefined ? lastTwOwner(w, `${d.addr}|${d.port}`) : undefined;
    destinations.push({
      key: `${who.source}|${k}`,
      ...who,
      addr: d.addr,
      ...(d.port !== undefined ? { port: d.port } : {}),
      endpoint: d.port !== undefined ? endpoint(d.addr, d.port) : `${d.addr.includes(':') ? `[${d.addr}]` : d.addr}:*`,
      current: d.current,
      ...(createdPerSec !== undefined ? { createdPerSec } : {}),
      ...(occupancy !== undefined ? { occupancy } : {}),
      level: occupancyLevel(occupancy),
      ...(workload ? { workload } : {}),
    });
  }
  return { host, destinations };
}

/** The workload the newest slot that saw a TIME_WAIT to `key` (address|port) named. */
function lastTwOwner(w: SourceWindow, key: string): Workload | undefined {
  for (let i = w.buckets.length - 1; i >= 0; i--) {
    const o = w.buckets[i]!.twOwners.get(key);
    if (o) return o;
  }
  return undefined;
}

export function capacityRow(rec: SourceRecord, w: SourceWindow, who: Who): CapacityRow {
  const { latest, base } = w;
  const h = latest.host;
  const bh = base?.host;
  const mem = memState(h.memPages, h.tcpMem);
  const syncookiesPerSec = rate(h.syncookiesSent, bh?.syncookiesSent, w);
  const synQueueDropsPerSec = rate(h.reqQFullDrop, bh?.reqQFullDrop, w);
  const otherListenDropsPerSec =
    h.listenDrops !== undefined && h.listenOverflows !== undefined && bh?.listenDrops !== undefined && bh.listenOverflows !== undefined
      ? rate(h.listenDrops - h.listenOverflows, bh.listenDrops - bh.listenOverflows, w)
      : undefined;
  const unattributedPerSec = rate(latest.unattributed, base?.unattributed, w);

  let worstFds: CapacityRow['worstFds'] = rec.local ? { kind: 'unknown' } : { kind: 'n/a' };
  if (rec.local) {
    let best = -1;
    for (const l of latest.listeners.values()) {
      if (!l.live || l.pid === undefined) continue;
      const f = rec.fds.get(l.pid);
      if (!f) continue;
      const fill = Number.isFinite(f.limit) && f.limit > 0 ? f.open / f.limit : 0;
      if (fill > best) {
        best = fill;
        worstFds = { kind: 'known', open: f.open, limit: f.limit, level: fractionLevel(f.open, f.limit), pid: l.pid, comm: l.comm };
      }
    }
  }

  return {
    ...who,
    ...(h.socketsUsed !== undefined ? { socketsUsed: h.socketsUsed } : {}),
    ...(h.tcpInuse !== undefined ? { tcpInuse: h.tcpInuse } : {}),
    ...(h.orphans !== undefined ? { orphans: h.orphans } : {}),
    ...(h.memPages !== undefined ? { memPages: h.memPages } : {}),
    ...(h.tcpMem ? { tcpMem: h.tcpMem } : {}),
    memState: mem.state,
    memLevel: mem.level,
    ...(syncookiesPerSec !== undefined ? { syncookiesPerSec } : {}),
    syncookiesLevel: noticeLevel(syncookiesPerSec),
    ...(synQueueDropsPerSec !== undefined ? { synQueueDropsPerSec } : {}),
    ...(otherListenDropsPerSec !== undefined ? { otherListenDropsPerSec } : {}),
    ...(unattributedPerSec !== undefined ? { unattributedPerSec } : {}),
    dropLevel: worst(dropLevel(synQueueDropsPerSec, otherListenDropsPerSec, unattributedPerSec)),
    ...(h.fileNr ? { files: { ...h.fileNr, level: fractionLevel(h.fileNr.allocated, h.fileNr.max) } } : {}),
    worstFds,
  };
}
