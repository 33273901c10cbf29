/**
 * Watch filters, Hubble style: an event passes if it matches any allow filter
 * (or there is none) and no deny filter. Within a filter, every non-empty
 * field must match; within a field, any value.
 */
import { EventKind, type Event, type EventFilter } from '../generated/wstrace/v1/tracer.js';
import { resolveNetns } from '../kernel/index.js';
import { isPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';

export type EventPredicate = (ev: Event) => boolean;

/** Bad filter input, reported to the client as INVALID_ARGUMENT. */
export class FilterError extends Error {}

function netnsInode(spec: string): number {
  if (/^\d+$/.test(spec)) return Number(spec);
  try {
    return resolveNetns(spec).inode;
  } catch (err) {
    throw new FilterError(err instanceof UserError ? err.message : String(err));
  }
}

function compileOne(f: EventFilter): EventPredicate {
  for (const k of f.kinds) {
    if (!(k in EventKind) || k === EventKind.EVENT_KIND_UNSPECIFIED || k === EventKind.UNRECOGNIZED) {
      throw new FilterError(`filter kind ${k} is not an event kind.`);
    }
  }
  for (const p of [...f.ports, ...f.localPorts, ...f.remotePorts]) {
    if (!isPort(p)) throw new FilterError(`filter port ${p} is not a TCP port (1-65535).`);
  }
  const kinds = new Set(f.kinds);
  const ports = new Set(f.ports);
  const lports = new Set(f.localPorts);
  const rports = new Set(f.remotePorts);
  const laddrs = new Set(f.localAddrs);
  const raddrs = new Set(f.remoteAddrs);
  const netns = new Set(f.netns.map(netnsInode));
  return (ev) =>
    (kinds.size === 0 || kinds.has(ev.kind)) &&
    (ports.size === 0 || ports.has(ev.localPort) || ports.has(ev.remotePort)) &&
    (lports.size === 0 || lports.has(ev.localPort)) &&
    (rports.size === 0 || rports.has(ev.remotePort)) &&
    (laddrs.size === 0 || laddrs.has(ev.localAddr)) &&
    (raddrs.size === 0 || raddrs.has(ev.remoteAddr)) &&
    (netns.size === 0 || netns.has(ev.netns));
}

export function compileFilters(allow: readonly EventFilter[], deny: readonly EventFilter[]): EventPredicate {
  const a = allow.map(compileOne);
  const d = deny.map(compileOne);
  if (a.length === 0 && d.length === 0) return () => true;
  return (ev) => (a.length === 0 || a.some((p) => p(ev))) && !d.some((p) => p(ev));
}
