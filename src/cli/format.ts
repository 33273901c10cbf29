/**
 * How events are printed. The JSON-lines shape is a contract (`watch --json`):
 * later commands and other teams' scripts read it, so fields are only added.
 */
import type { TraceEvent } from '../kernel/index.js';
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
  return out;
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
  return parts.join(' ');
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
