/** Kernel-side types to API messages, and back: the one place that knows both. */
import type { EventKind as KindName, TraceEvent } from '../signals/event.js';
import { EventKind, Family, type Event } from '../generated/wstrace/v1/tracer.js';

const KIND_TO_PROTO: Record<KindName, EventKind> = {
  reset_sent: EventKind.EVENT_KIND_RESET_SENT,
  reset_received: EventKind.EVENT_KIND_RESET_RECEIVED,
  timewait: EventKind.EVENT_KIND_TIMEWAIT,
  accept_queue_full: EventKind.EVENT_KIND_ACCEPT_QUEUE_FULL,
  listen_overflow: EventKind.EVENT_KIND_LISTEN_OVERFLOW,
  syn_drop: EventKind.EVENT_KIND_SYN_DROP,
};

const PROTO_TO_KIND = new Map<EventKind, KindName>(
  Object.entries(KIND_TO_PROTO).map(([name, code]) => [code, name as KindName]),
);

export function kindToProto(kind: KindName): EventKind {
  return KIND_TO_PROTO[kind];
}

export function kindFromProto(kind: EventKind): KindName | undefined {
  return PROTO_TO_KIND.get(kind);
}

export function familyToProto(family: 'ipv4' | 'ipv6'): Family {
  return family === 'ipv6' ? Family.FAMILY_IPV6 : Family.FAMILY_IPV4;
}

export function familyFromProto(family: Family): 'ipv4' | 'ipv6' {
  return family === Family.FAMILY_IPV6 ? 'ipv6' : 'ipv4';
}

export function eventToProto(ev: TraceEvent): Event {
  const out: Event = {
    timeUnixMicros: Math.round(ev.timeMs * 1000),
    kind: KIND_TO_PROTO[ev.kind],
    family: familyToProto(ev.family),
    localAddr: ev.laddr,
    localPort: ev.lport,
    remoteAddr: ev.raddr,
    remotePort: ev.rport,
    netns: ev.netns,
    state: ev.state ?? '',
    reason: ev.reason ?? '',
    comm: ev.comm ?? '',
  };
  if (ev.queue !== undefined) out.queue = ev.queue;
  if (ev.backlog !== undefined) out.backlog = ev.backlog;
  if (ev.pid !== undefined) out.pid = ev.pid;
  return out;
}

/** The inverse, for clients: the same TraceEvent shape the kernel layer makes. */
export function eventFromProto(ev: Event): TraceEvent {
  const out: TraceEvent = {
    timeMs: ev.timeUnixMicros / 1000,
    kind: kindFromProto(ev.kind) ?? 'reset_sent',
    family: familyFromProto(ev.family),
    laddr: ev.localAddr,
    lport: ev.localPort,
    raddr: ev.remoteAddr,
    rport: ev.remotePort,
    netns: ev.netns,
  };
  const m = out as { -readonly [K in keyof TraceEvent]: TraceEvent[K] };
  if (ev.state) m.state = ev.state;
  if (ev.reason) m.reason = ev.reason;
  if (ev.queue !== undefined) m.queue = ev.queue;
  if (ev.backlog !== undefined) m.backlog = ev.backlog;
  if (ev.pid !== undefined) m.pid = ev.pid;
  if (ev.comm) m.comm = ev.comm;
  return out;
}
