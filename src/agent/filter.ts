/**
 * Watch requests as the agent takes them. Filters, Hubble style: an event
 * passes if it matches any allow filter (or there is none) and no deny
 * filter. Within a filter, every non-empty field must match; within a field,
 * any value. Whatever a caller sends is refused as INVALID_ARGUMENT in one
 * sentence, never INTERNAL, and no error carries the caller's text back whole.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { EventKind, WatchRequest, type Event, type EventFilter } from '../generated/wstrace/v1/tracer.js';
import { resolveNetns } from '../kernel/index.js';
import { clip, isPort } from '../protocol/address.js';

export type EventPredicate = (ev: Event) => boolean;

/** Bad filter input, reported to the client as INVALID_ARGUMENT. */
export class FilterError extends Error {}

/** Namespace inodes are 32-bit on the wire (Event.netns). */
const MAX_INODE = 0xffff_ffff;

/**
 * A filter's namespace as the inode events carry. The agent opens these as
 * root for any caller, so only the shapes resolveNetns accepts are looked
 * at, and every failure is one sentence that does not depend on what exists
 * (no probing the agent's files through it) and echoes at most a clip of
 * the caller's text.
 */
function netnsInode(spec: string): number {
  if (/^\d+$/.test(spec)) {
    const inode = Number(spec);
    if (inode <= MAX_INODE) return inode;
  } else {
    try {
      return resolveNetns(spec).inode;
    } catch {
      // said below, the same whatever the reason
    }
  }
  throw new FilterError(
    `filter netns "${clip(spec)}" is not a network namespace of the agent: give an inode, a name from \`ip netns list\`, /run/netns/NAME or /proc/PID/ns/net.`,
  );
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

/** WatchRequest.since_unix_micros in proto/wstrace/v1/tracer.proto: the request's only int64. */
const SINCE_FIELD = 4;

/**
 * WatchRequest off the wire. The generated decoder throws on an int64
 * outside Number's safe range, and grpc-js answers a throwing decoder with
 * INTERNAL; such a `since` is read as NaN instead, for checkWatchRequest to
 * refuse like any other time that is not one.
 */
export function decodeWatchRequest(buf: Buffer): WatchRequest {
  try {
    return WatchRequest.decode(buf);
  } catch (err) {
    if (!/SAFE_INTEGER/.test((err as Error).message)) throw err;
  }
  const reader = new BinaryReader(buf);
  const kept: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [field, wireType] = reader.tag();
    reader.skip(wireType, field);
    if (field !== SINCE_FIELD) kept.push(buf.subarray(start, reader.pos));
  }
  return { ...WatchRequest.decode(Buffer.concat(kept)), sinceUnixMicros: Number.NaN };
}

/** What compileFilters does not see: the replay bound. */
export function checkWatchRequest(req: WatchRequest): void {
  const since = req.sinceUnixMicros;
  if (!Number.isSafeInteger(since) || since < 0) {
    const shown = Number.isNaN(since) ? 'beyond 2^53' : clip(String(since));
    throw new FilterError(`since_unix_micros ${shown} is not a time: give microseconds since 1970, or 0 for no bound.`);
  }
}
