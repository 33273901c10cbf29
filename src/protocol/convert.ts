/** Kernel-side types to API messages, and back: the one place that knows both. */
import type { EventKind as KindName, TraceEvent } from '../signals/event.js';
import { kind, kindOfProto } from '../signals/kinds.js';
import { EventKind, Family, type Event } from '../generated/wstrace/v1/tracer.js';

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

export function eventToProto(ev: TraceEvent): Event {
  const out: Event = {
    timeUnixMicros: Math.round(ev.timeMs * 1000),
    kind: kindToProto(ev.kind),
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

/**
 * The inverse, for clients: the same TraceEvent shape the kernel layer makes.
 * Undefined for a kind this build does not know: callers count those
 * (UnknownKinds) and say so, rather than show them as something else.
 */
export function eventFromProto(ev: Event): TraceEvent | undefined {
  const name = kindFromProto(ev.kind);
  if (!name) return undefined;
  const out: TraceEvent = {
    timeMs: ev.timeUnixMicros / 1000,
    kind: name,
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

  note(code: number): void {
    this.count++;
    this.codes.add(code);
  }

  /** What to tell the user (one line, no newline), or undefined when every kind was known. */
  message(): string | undefined {
    if (this.count === 0) return undefined;
    const codes = [...this.codes].sort((a, b) => a - b).join(', ');
    return `${this.count} events of a kind this wstrace does not know (code ${codes}): upgrade wstrace`;
  }
}
