/**
 * How events are printed. The JSON-lines shape is a contract (`watch --json`):
 * later commands and other teams' scripts read it, so fields are only added.
 */
import type { EventSummary, TraceEvent } from '../kernel/index.js';
import type { EventKey } from '../signals/event.js';
import type { GetInfoResponse } from '../generated/wstrace/v1/tracer.js';
import { endpoint } from '../protocol/address.js';
import { kindFromProto } from '../protocol/convert.js';

/** ISO 8601 in UTC with microseconds: 2026-11-28T06:50:12.123456Z. */
export function isoMicros(timeMs: number): string {
  const whole = Math.floor(timeMs);
  const micros = Math.floor((timeMs - whole) * 1000);
  return `${new Date(whole).toISOString().slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
}

export interface JsonEvent {
  time: string;
  kind: string;
  family: string;
  laddr: string;
  lport: number;
  raddr: string;
  rport: number;
  netns: number;
  state?: string;
  reason?: string;
  queue?: number;
  backlog?: number;
  pid?: number;
  comm?: string;
  /** cgroup v2 id of the event's socket (its directory's inode number), when the kernel knew it. */
  cgroup?: number;
  /** Who that cgroup belongs to, only when the agent could tell: container id, its name, pod, Kubernetes namespace. */
  container?: string;
  container_name?: string;
  pod?: string;
  namespace?: string;
}

/** The container and pod fields of a JSON line, only those known. */
function ownerFields(k: EventKey): Pick<JsonEvent, 'container' | 'container_name' | 'pod' | 'namespace'> {
  return {
    ...(k.container ? { container: k.container } : {}),
    ...(k.containerName ? { container_name: k.containerName } : {}),
    ...(k.pod ? { pod: k.pod } : {}),
    ...(k.namespace ? { namespace: k.namespace } : {}),
  };
}

export function toJsonEvent(ev: TraceEvent): JsonEvent {
  const out: JsonEvent = {
    time: isoMicros(ev.timeMs),
    kind: ev.kind,
    family: ev.family,
    laddr: ev.laddr,
    lport: ev.lport,
    raddr: ev.raddr,
    rport: ev.rport,
    netns: ev.netns,
  };
  if (ev.state !== undefined) out.state = ev.state;
  if (ev.reason !== undefined) out.reason = ev.reason;
  if (ev.queue !== undefined) out.queue = ev.queue;
  if (ev.backlog !== undefined) out.backlog = ev.backlog;
  if (ev.pid !== undefined) out.pid = ev.pid;
  if (ev.comm !== undefined) out.comm = ev.comm;
  if (ev.cgroup !== undefined) out.cgroup = ev.cgroup;
  return Object.assign(out, ownerFields(ev));
}

/**
 * A summary row as a JSON line: the fields of the events it stands for
 * (`time` is the first of them; a folded port is 0), then `summary`,
 * `count`, `first` and `last`. Only added fields: a reader of events that
 * ignores `summary` still sees the right kind, endpoints and reason.
 */
export interface JsonSummary extends Omit<JsonEvent, 'queue' | 'backlog' | 'pid' | 'comm'> {
  summary: true;
  count: number;
  first: string;
  last: string;
}

export function toJsonSummary(s: EventSummary): JsonSummary {
  const out: JsonSummary = {
    time: isoMicros(s.firstMs),
    kind: s.kind,
    family: s.family,
    laddr: s.laddr,
    lport: s.lport,
    raddr: s.raddr,
    rport: s.rport,
    netns: s.netns,
    summary: true,
    count: s.count,
    first: isoMicros(s.firstMs),
    last: isoMicros(s.lastMs),
  };
  if (s.state !== undefined) out.state = s.state;
  if (s.reason !== undefined) out.reason = s.reason;
  if (s.cgroup !== undefined) out.cgroup = s.cgroup;
  return Object.assign(out, ownerFields(s));
}

/** An endpoint whose port the kernel folded (a client's ephemeral ports) shows `*`. */
function endpointOrAny(addr: string, port: number): string {
  return port ? endpoint(addr, port) : endpoint(addr, 0).replace(/0$/, '*');
}

/**
 * One readable line for a summary row, as humanLine lays out its events:
 * `12:00:01.000000 summary reset_sent x8123 127.0.0.1:9000 > 127.0.0.1:*
 * reason NO_SOCKET (beyond the 10000/s budget, to 12:00:01.950000)`.
 */
export function summaryLine(s: EventSummary, budget: number): string {
  const time = (ms: number) => isoMicros(ms).slice(11, 26);
  const parts = [time(s.firstMs), 'summary', s.kind, `x${s.count}`, ...direction(s.kind, endpointOrAny(s.laddr, s.lport), endpointOrAny(s.raddr, s.rport))];
  if (s.state) parts.push(`state ${s.state}`);
  if (s.reason) parts.push(`reason ${s.reason}`);
  parts.push(`(${budget ? `beyond the ${budget}/s budget` : 'summarised'}, to ${time(s.lastMs)})`);
  return parts.join(' ');
}

/** Sender > receiver for resets, local - remote for TIME_WAIT, the listener first for listener kinds. */
function direction(kind: string, local: string, remote: string): string[] {
  switch (kind) {
    case 'reset_sent':
      return [`${local} > ${remote}`];
    case 'reset_received':
      return [`${remote} > ${local}`];
    case 'timewait':
      return [`${local} - ${remote}`];
    default:
      return [`listener ${local}`, `peer ${remote}`];
  }
}

/** One readable line, tcpdump-style: source > destination, then the details. */
export function humanLine(ev: TraceEvent): string {
  const time = isoMicros(ev.timeMs).slice(11, 26);
  const local = endpoint(ev.laddr, ev.lport);
  const remote = endpoint(ev.raddr, ev.rport);
  const parts: string[] = [time, ev.kind.padEnd(17)];
  switch (ev.kind) {
    case 'reset_sent':
      parts.push(`${local} > ${remote}`);
      break;
    case 'reset_received':
      parts.push(`${remote} > ${local}`);
      break;
    case 'timewait':
      parts.push(`${local} - ${remote}`);
      break;
    default:
      parts.push(`listener ${local}`);
      if (ev.rport) parts.push(`peer ${remote}`);
      parts.push(`queue ${ev.queue ?? '?'}/${ev.backlog ?? '?'}`);
  }
  if (ev.state) parts.push(`state ${ev.state}`);
  if (ev.reason) parts.push(`reason ${ev.reason}`);
  if (ev.pid !== undefined) parts.push(`pid ${ev.pid}${ev.comm ? ` (${ev.comm})` : ''}`);
  const who = ownerText(ev);
  if (who) parts.push(who);
  return parts.join(' ');
}

/** `pod payments/shop container web` or `container 3f2a1b9c0d4e`: who, as short as it stays clear. */
export function ownerText(k: EventKey): string {
  const parts: string[] = [];
  if (k.pod) parts.push(`pod ${k.namespace ? `${k.namespace}/` : ''}${k.pod}`);
  if (k.containerName) parts.push(`container ${k.containerName}`);
  else if (k.container) parts.push(`container ${k.container.length === 64 ? k.container.slice(0, 12) : k.container}`);
  return parts.join(' ');
}

/** The agent's event budget, as `watch` and `agent` say it at start. */
export function describeBudget(budget: number): string {
  return budget
    ? `budget: ${budget} events/s in full for the host; beyond it, exact per-key summaries each second`
    : 'budget: none, every event is sent (--event-budget 0)';
}

/** Hooks live and blind, as `info`, `watch` and `agent` print them at start. */
export function describeInfo(info: GetInfoResponse): string {
  const name = (h: GetInfoResponse['hooks'][number]) => h.signalName || kindFromProto(h.signal) || 'unknown';
  const live = info.hooks.filter((h) => h.attached).map((h) => `${name(h)} (${h.variant} ${h.hook})`);
  const blind = info.hooks.filter((h) => !h.attached).map((h) => `${name(h)} (${h.hook}: ${h.error})`);
  const lines = [`live: ${live.length ? live.join(', ') : 'none'}`];
  if (blind.length) lines.push(`blind: ${blind.join('; ')}`);
  for (const b of info.blind) lines.push(`note: ${b}`);
  return lines.join('\n  ');
}
