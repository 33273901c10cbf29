/**
 * Watch requests as the agent takes them. Filters, Hubble style: an event
 * passes if it matches any allow filter (or there is none) and no deny
 * filter. Within a filter, every non-empty field must match; within a field,
 * any value. Whatever a caller sends is refused as INVALID_ARGUMENT in one
 * sentence, never INTERNAL, and no error carries the caller's text back whole.
 *
 * A filter is compiled twice over: for decoded events (replay, summary rows)
 * and for ring records read in place (live events: no object per event). The
 * two agree on every record (test/encode.test.ts).
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { EventKind, WatchRequest, type Event, type EventFilter } from '../generated/wstrace/v1/tracer.js';
import { CgroupSubtree, parseAddress, resolveCgroup, resolveNetns, type AddressBytes, type RawBatch } from '../kernel/index.js';
import { clip, isPort } from '../protocol/address.js';

export type EventPredicate = (ev: Event) => boolean;

/** Record i of a ring batch, judged by its raw fields. */
export type RawPredicate = (batch: RawBatch, i: number) => boolean;

/** A Watch request's filters: called on a decoded event, or `raw` on a record. */
export interface WatchFilter extends EventPredicate {
  readonly raw: RawPredicate;
  /** No filter at all: every event passes (nothing to look at). */
  readonly all: boolean;
}

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

/** Does a socket's cgroup id (0: unknown) match. */
type CgroupMatch = (id: number) => boolean;

/**
 * A filter's cgroup: a number is that id alone; a path is that cgroup and
 * every one below it, resolved under the agent's cgroup2 mount only (the
 * checks of resolveCgroup: no `..`, no link followed), and refused in the
 * same sentence whatever the reason, as netns is.
 */
function cgroupMatch(spec: string): CgroupMatch {
  if (/^\d{1,16}$/.test(spec) && Number(spec) > 0 && Number.isSafeInteger(Number(spec))) {
    const id = Number(spec);
    return (x) => x === id;
  }
  try {
    const subtree = new CgroupSubtree(resolveCgroup(spec));
    return (x) => x !== 0 && subtree.has(x);
  } catch {
    throw new FilterError(
      `filter cgroup "${clip(spec)}" is not a cgroup of the agent: give a path of its cgroup2 hierarchy (under its mount, or relative to it) or a cgroup id.`,
    );
  }
}

/**
 * Addresses as record bytes. A text no event prints as (a typo, a leading
 * zero) matches nothing, as it does in the decoded predicate; the field still
 * counts as set.
 */
function addressBytes(texts: readonly string[]): AddressBytes[] {
  return texts.flatMap((t) => parseAddress(t) ?? []);
}

function compileOne(f: EventFilter): { event: EventPredicate; raw: RawPredicate } {
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
  const cgroups = f.cgroups.map(cgroupMatch);
  const event: EventPredicate = (ev) =>
    (kinds.size === 0 || kinds.has(ev.kind)) &&
    (ports.size === 0 || ports.has(ev.localPort) || ports.has(ev.remotePort)) &&
    (lports.size === 0 || lports.has(ev.localPort)) &&
    (rports.size === 0 || rports.has(ev.remotePort)) &&
    (laddrs.size === 0 || laddrs.has(ev.localAddr)) &&
    (raddrs.size === 0 || raddrs.has(ev.remoteAddr)) &&
    (netns.size === 0 || netns.has(ev.netns)) &&
    (cgroups.length === 0 || cgroups.some((m) => m(ev.cgroup ?? 0)));
  const lbytes = addressBytes(f.localAddrs);
  const rbytes = addressBytes(f.remoteAddrs);
  const raw: RawPredicate = (b, i) =>
    (kinds.size === 0 || kinds.has(b.kind(i)?.proto ?? 0)) &&
    (ports.size === 0 || ports.has(b.lport(i)) || ports.has(b.rport(i))) &&
    (lports.size === 0 || lports.has(b.lport(i))) &&
    (rports.size === 0 || rports.has(b.rport(i))) &&
    (laddrs.size === 0 || lbytes.some((a) => b.addrIs(i, 'local', a))) &&
    (raddrs.size === 0 || rbytes.some((a) => b.addrIs(i, 'remote', a))) &&
    (netns.size === 0 || netns.has(b.netns(i))) &&
    (cgroups.length === 0 || cgroups.some((m) => m(b.cgroup(i))));
  return { event, raw };
}

export function compileFilters(allow: readonly EventFilter[], deny: readonly EventFilter[]): WatchFilter {
  const a = allow.map(compileOne);
  const d = deny.map(compileOne);
  if (a.length === 0 && d.length === 0) return Object.assign(() => true, { raw: () => true, all: true });
  const event: EventPredicate = (ev) => (a.length === 0 || a.some((p) => p.event(ev))) && !d.some((p) => p.event(ev));
  const raw: RawPredicate = (b, i) => (a.length === 0 || a.some((p) => p.raw(b, i))) && !d.some((p) => p.raw(b, i));
  return Object.assign(event, { raw, all: false });
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
