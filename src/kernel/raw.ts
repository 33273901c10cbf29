/**
 * A batch of ring records read where they lie: one accessor per field, by
 * record index, on the addon's buffer. For consumers that must not make an
 * object per event (the agent encodes records straight to protobuf and
 * filters them on these fields). decodeBatch reads through the same
 * accessors, so both paths print an event the same way.
 */
import { familyName, formatAddr, type AddressBytes } from './addr.js';
import { AF_INET, AF_INET6, EVENT_LAYOUT, NO_REASON } from './layout.js';
import { ReasonNames, tcpStateName } from './names.js';
import type { Owner } from './owners.js';
import type { Family } from '../signals/event.js';
import { KINDS, type Kind } from '../signals/kinds.js';

const O = EVENT_LAYOUT.offsets;
const SIZE = EVENT_LAYOUT.size;

/** Kinds by ring code (a u8): an array index instead of a map lookup per record. */
const KIND_BY_CODE: ReadonlyArray<Kind | undefined> = (() => {
  const t = new Array<Kind | undefined>(256).fill(undefined);
  for (const k of KINDS) t[k.code] = k;
  return t;
})();

export interface DecodeContext {
  /** Wall-clock milliseconds = ktime ns / 1e6 + this. */
  readonly clockOffsetMs: number;
  readonly reasons: ReasonNames;
}

/** A record's (or summary row's) `reason` as its kind's table entry says to read it. */
export function reasonName(kind: Kind, value: number, ctx: DecodeContext): string | undefined {
  const r = kind.reason;
  if (!r || value === NO_REASON) return undefined;
  if ('causes' in r) return r.causes[value] ?? `CAUSE_${value}`;
  return ctx.reasons.name(r.kernelEnum, r.prefix, value);
}

/** Who holds a socket, by inode (SocketOwners; a table in tests). */
export interface OwnerLookup {
  lookup(inode: number): Owner | undefined;
}

/** Which address of a record. */
export type Side = 'local' | 'remote';

export class RawBatch {
  /** Whole records in the batch (a trailing partial one is not counted). */
  readonly length: number;
  private readonly view: DataView;

  /**
   * `bytes` is the addon's batch buffer: valid only while the listener runs,
   * so nothing may keep a RawBatch (or a view of it) past that call.
   */
  constructor(
    readonly bytes: Uint8Array,
    private readonly ctx: DecodeContext,
    private readonly owners?: OwnerLookup,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.length = Math.floor(bytes.byteLength / SIZE);
  }

  /** The record's kind; undefined for a code this build does not know (a newer BPF object): skip it. */
  kind(i: number): Kind | undefined {
    return KIND_BY_CODE[this.view.getUint8(i * SIZE + O.kind)];
  }

  /** Wall-clock milliseconds since the epoch, microsecond precision. */
  timeMs(i: number): number {
    return this.u64(i * SIZE + O.ts_ns) / 1e6 + this.ctx.clockOffsetMs;
  }

  /**
   * Every record's time in whole microseconds since the epoch (timeMs
   * rounded), into `into[i]`: one call a batch, so no number is boxed per record.
   */
  timesMicros(into: Float64Array): void {
    for (let i = 0; i < this.length; i++) into[i] = Math.round(this.timeMs(i) * 1000);
  }

  /** The raw address family (AF_INET, AF_INET6). */
  familyCode(i: number): number {
    return this.view.getUint16(i * SIZE + O.family, true);
  }

  family(i: number): Family {
    return familyName(this.familyCode(i));
  }

  lport(i: number): number {
    return this.view.getUint16(i * SIZE + O.lport, true);
  }

  rport(i: number): number {
    return this.view.getUint16(i * SIZE + O.rport, true);
  }

  netns(i: number): number {
    return this.view.getUint32(i * SIZE + O.netns, true);
  }

  /** Printable address; one string per distinct address, not one per call. */
  addr(i: number, side: Side): string {
    const at = i * SIZE + (side === 'local' ? O.laddr : O.raddr);
    return formatAddr(this.bytes, at, this.familyCode(i));
  }

  /** An IPv4 address as one number (a key for its text); undefined when the record is not IPv4. */
  ipv4Key(i: number, side: Side): number | undefined {
    if (this.familyCode(i) !== AF_INET) return undefined;
    return this.view.getInt32(i * SIZE + (side === 'local' ? O.laddr : O.raddr), false);
  }

  /** Whether the address prints as `a` does (parseAddress), compared as bytes. */
  addrIs(i: number, side: Side, a: AddressBytes): boolean {
    const family = this.familyCode(i);
    if (a.family === 0) return family !== AF_INET && family !== AF_INET6;
    if (family !== a.family) return false;
    const at = i * SIZE + (side === 'local' ? O.laddr : O.raddr);
    const n = family === AF_INET ? 4 : 16;
    for (let k = 0; k < n; k++) if (this.bytes[at + k] !== a.bytes[k]) return false;
    return true;
  }

  /** The TCP state as recorded (0: none); state() names it. */
  stateCode(i: number): number {
    return this.view.getUint8(i * SIZE + O.state);
  }

  /** TCP state name, when the record has one. */
  state(i: number): string | undefined {
    return tcpStateName(this.stateCode(i));
  }

  /** The reason value as recorded, -1 when there is none; reason() names it. */
  reasonCode(i: number): number {
    const value = this.view.getUint32(i * SIZE + O.reason, true);
    return value === NO_REASON ? -1 : value;
  }

  /** The reason name its kind's table entry gives the record's reason value, when it has one. */
  reason(i: number, kind: Kind): string | undefined {
    return reasonName(kind, this.view.getUint32(i * SIZE + O.reason, true), this.ctx);
  }

  /** Accept-queue depth (meaningful for listener kinds). */
  queue(i: number): number {
    return this.view.getUint32(i * SIZE + O.queue, true);
  }

  backlog(i: number): number {
    return this.view.getUint32(i * SIZE + O.backlog, true);
  }

  /** Local socket inode, 0 when the record has none. */
  inode(i: number): number {
    return this.u64(i * SIZE + O.inode);
  }

  /** cgroup v2 id of the record's socket (its directory's inode number), 0 when unknown. */
  cgroup(i: number): number {
    return this.u64(i * SIZE + O.cgroup);
  }

  /** The process holding the record's socket, when the tracer looks owners up and finds one. */
  owner(i: number): Owner | undefined {
    if (!this.owners) return undefined;
    const inode = this.inode(i);
    return inode ? this.owners.lookup(inode) : undefined;
  }

  private u64(at: number): number {
    return this.view.getUint32(at + 4, true) * 2 ** 32 + this.view.getUint32(at, true);
  }
}
