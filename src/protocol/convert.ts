/** Kernel-side types to API messages, and back: the one place that knows both. */
import type { EventKey, EventKind as KindName, EventSummary, TraceEvent } from '../signals/event.js';
import { kind, kindOfProto } from '../signals/kinds.js';
import { EventKind, Family, type Event, type Summary } from '../generated/wstrace/v1/tracer.js';

/** The proto value the signal table gives a kind (test/signals.test.ts checks it against the generated enum). */
export function kindToProto(name: KindName): EventKind {
  return kind(name).proto as EventKind;
}

/** Undefined for a value this build does not know (a newer agent's kind). */
export function kindFromProto(value: EventKind): KindName | undefined {
  return kindOfProto(value)?.name;
}

export function familyToProto(family: 'ipv4' | 'ipv6'): Family {
  return family === 'ipv6' ? Family.FAMILY_IPV6 : Family.FAMILY_IPV4;
}

export function familyFromProto(family: Family): 'ipv4' | 'ipv6' {
  return family === Family.FAMILY_IPV6 ? 'ipv6' : 'ipv4';
}

/** The key fields an Event and a Summary share, in proto shape. */
function keyToProto(k: EventKey) {
  return {
    kind: kindToProto(k.kind),
    family: familyToProto(k.family),
    localAddr: k.laddr,
    localPort: k.lport,
    remoteAddr: k.raddr,
    remotePort: k.rport,
    netns: k.netns,
    state: k.state ?? '',
    reason: k.reason ?? '',
    ...(k.cgroup ? { cgroup: k.cgroup } : {}),
    ...(k.container ? { container: k.container } : {}),
    ...(k.containerName ? { containerName: k.containerName } : {}),
    ...(k.pod ? { pod: k.pod } : {}),
    ...(k.namespace ? { namespace: k.namespace } : {}),
  };
}

export function eventToProto(ev: TraceEvent): Event {
  const out: Event = { timeUnixMicros: Math.round(ev.timeMs * 1000), ...keyToProto(ev), comm: ev.comm ?? '' };
  if (ev.queue !== undefined) out.queue = ev.queue;
  if (ev.backlog !== undefined) out.backlog = ev.backlog;
  if (ev.pid !== undefined) out.pid = ev.pid;
  return out;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The shared key fields back from proto; undefined for a kind this build does not know. */
function keyFromProto(
  m: Pick<
    Event,
    'kind' | 'family' | 'localAddr' | 'localPort' | 'remoteAddr' | 'remotePort' | 'netns' | 'state' | 'reason' | 'cgroup' | 'container' | 'containerName' | 'pod' | 'namespace'
  >,
): EventKey | undefined {
  const name = kindFromProto(m.kind);
  if (!name) return undefined;
  const out: Mutable<EventKey> = {
    kind: name,
    family: familyFromProto(m.family),
    laddr: m.localAddr,
    lport: m.localPort,
    raddr: m.remoteAddr,
    rport: m.remotePort,
    netns: m.netns,
  };
  if (m.state) out.state = m.state;
  if (m.reason) out.reason = m.reason;
  if (m.cgroup) out.cgroup = m.cgroup;
  if (m.container) out.container = m.container;
  if (m.containerName) out.containerName = m.containerName;
  if (m.pod) out.pod = m.pod;
  if (m.namespace) out.namespace = m.namespace;
  return out;
}

/**
 * The inverse, for clients: the same TraceEvent shape the kernel layer makes.
 * Undefined for a kind this build does not know: callers count those
 * (UnknownKinds) and say so, rather than show them as something else.
 */
export function eventFromProto(ev: Event): TraceEvent | undefined {
  const key = keyFromProto(ev);
  if (!key) return undefined;
  const out: Mutable<TraceEvent> = { timeMs: ev.timeUnixMicros / 1000, ...key };
  if (ev.queue !== undefined) out.queue = ev.queue;
  if (ev.backlog !== undefined) out.backlog = ev.backlog;
  if (ev.pid !== undefined) out.pid = ev.pid;
  if (ev.comm) out.comm = ev.comm;
  return out;
}

export function summaryToProto(s: EventSummary): Summary {
  return {
    ...keyToProto(s),
    count: s.count,
    firstUnixMicros: Math.round(s.firstMs * 1000),
    lastUnixMicros: Math.round(s.lastMs * 1000),
  };
}

/** The inverse, for clients; undefined for a kind this build does not know, as eventFromProto. */
export function summaryFromProto(s: Summary): EventSummary | undefined {
  const key = keyFromProto(s);
  if (!key) return undefined;
  return { ...key, count: s.count, firstMs: s.firstUnixMicros / 1000, lastMs: s.lastUnixMicros / 1000 };
}

/**
 * A summary row in the shape of the events it stands for (at the time of the
 * last of them): what Watch filters read, so one predicate serves both.
 */
export function summaryAsEvent(s: Summary): Event {
  return {
    timeUnixMicros: s.lastUnixMicros,
    kind: s.kind,
    family: s.family,
    localAddr: s.localAddr,
    localPort: s.localPort,
    remoteAddr: s.remoteAddr,
    remotePort: s.remotePort,
    netns: s.netns,
    state: s.state,
    reason: s.reason,
    comm: '',
    ...(s.cgroup ? { cgroup: s.cgroup } : {}),
    ...(s.container ? { container: s.container } : {}),
    ...(s.containerName ? { containerName: s.containerName } : {}),
    ...(s.pod ? { pod: s.pod } : {}),
    ...(s.namespace ? { namespace: s.namespace } : {}),
  };
}

/**
 * Events of kinds this build does not know (an agent newer than this client):
 * counted as they are skipped, so the client can say so once instead of
 * dropping them silently or showing them as another kind.
 */
export class UnknownKinds {
  count = 0;
  private readonly codes = new Set<number>();

  /** The events this build knows, as TraceEvents; the rest counted. */
  convert(events: readonly Event[]): TraceEvent[] {
    const out: TraceEvent[] = [];
    for (const ev of events) {
      const e = eventFromProto(ev);
      if (e) out.push(e);
      else this.note(ev.kind);
    }
    return out;
  }

  /** The summary rows this build knows; the events of the rest counted. */
  convertSummaries(rows: readonly Summary[]): EventSummary[] {
    const out: EventSummary[] = [];
    for (const s of rows) {
      const e = summaryFromProto(s);
      if (e) out.push(e);
      else this.note(s.kind, s.count);
    }
    return out;
  }

  note(code: number, events = 1): void {
    this.count += events;
    this.codes.add(code);
  }

  /** What to tell the user (one line, no newline), or undefined when every kind was known. */
  message(): string | undefined {
    if (this.count === 0) return undefined;
    const codes = [...this.codes].sort((a, b) => a - b).join(', ');
    return `${this.count} events of a kind this wstrace does not know (code ${codes}): upgrade wstrace`;
  }
}
