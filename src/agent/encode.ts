/**
 * Events encoded once, straight from the ring records, and shared: the
 * recent ring keeps the bytes, every Watch stream sends them (the filters
 * pick records by their raw fields), and a batch message is built by hand
 * around them. No Event object is made on the way from the ring to the wire.
 *
 * The bytes are exactly what the generated Event.encode writes for the event
 * eventToProto makes (test/encode.test.ts holds them to it), so the typed
 * Watch contract is unchanged. Field keys are not typed here: each is read
 * off what the generated encoder writes for a message with that one field set.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { Event, EventBatch, WatchResponse } from '../generated/wstrace/v1/tracer.js';
import type { RawBatch, Side } from '../kernel/index.js';
import type { Kind } from '../signals/kinds.js';
import { familyToProto } from '../protocol/convert.js';

/** Who a cgroup belongs to, as the encoder writes it (src/containers' Attribution has these fields). */
export interface CgroupNames {
  readonly containerId?: string;
  readonly containerName?: string;
  readonly pod?: string;
  readonly namespace?: string;
}

/**
 * Encoded events, each framed as one element of `repeated Event events`
 * (key, length, Event), back to back: a run of them is an EventBatch body.
 */
export interface EncodedEvents {
  readonly length: number;
  readonly bytes: Uint8Array;
  /** Element i is bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;
  /** time_unix_micros of each event, for `since` without decoding. */
  readonly times: Float64Array;
}

const NO_EVENT: Event = {
  timeUnixMicros: 0,
  kind: 0,
  family: 0,
  localAddr: '',
  localPort: 0,
  remoteAddr: '',
  remotePort: 0,
  netns: 0,
  state: '',
  reason: '',
  comm: '',
};

/**
 * The key (field number and wire type) at the front of a message holding
 * one field: one byte for fields 1 to 15, which all of these are; a field
 * renumbered past that stops the agent at load rather than garble events.
 */
function keyOf(message: Uint8Array): number {
  const reader = new BinaryReader(message);
  reader.tag();
  if (reader.pos !== 1) throw new Error('wstrace: an Event or Watch field key is longer than one byte: encode.ts writes one-byte keys');
  return message[0]!;
}

const eventKey = (field: Partial<Event>): number => keyOf(Event.encode({ ...NO_EVENT, ...field }).finish());

/** Keys of Event's fields, in field-number order (the order the generated encoder writes them). */
const KEY = {
  time: eventKey({ timeUnixMicros: 1 }),
  kind: eventKey({ kind: 1 }),
  family: eventKey({ family: 1 }),
  localAddr: eventKey({ localAddr: 'x' }),
  localPort: eventKey({ localPort: 1 }),
  remoteAddr: eventKey({ remoteAddr: 'x' }),
  remotePort: eventKey({ remotePort: 1 }),
  netns: eventKey({ netns: 1 }),
  state: eventKey({ state: 'x' }),
  reason: eventKey({ reason: 'x' }),
  queue: eventKey({ queue: 0 }),
  backlog: eventKey({ backlog: 0 }),
  pid: eventKey({ pid: 0 }),
  comm: eventKey({ comm: 'x' }),
  cgroup: eventKey({ cgroup: 0 }),
};
/** EventBatch.events: the frame of each element. */
const ELEMENT_KEY = keyOf(EventBatch.encode({ events: [NO_EVENT] }).finish());
/** WatchResponse.batch: the frame of a whole batch. */
const BATCH_KEY = keyOf(WatchResponse.encode({ response: { $case: 'batch', value: { events: [] } } }).finish());

/** Bytes of a varint; numbers up to 2^53 (times in microseconds are about 2^51). */
function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 4;
  for (v = Math.floor(v / 0x10000000); v > 0; v = Math.floor(v / 0x80)) n++;
  return n;
}

/**
 * A varint of an unsigned 32-bit value, given as a number or as its int32
 * bits (`| 0`): the bits keep a netns inode above 2^31 a small integer on
 * the way, where a number would be boxed for each event.
 */
function writeVarint(buf: Uint8Array, at: number, v: number): number {
  while (v & ~0x7f) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

/**
 * A varint of high * 2^28 + low (low below 2^28; high below 2^25 for any
 * safe integer, as times in microseconds are), passed as two small integers
 * for the same reason.
 */
function writeVarintParts(buf: Uint8Array, at: number, high: number, low: number): number {
  if (high === 0) return writeVarint(buf, at, low);
  buf[at++] = (low & 0x7f) | 0x80;
  buf[at++] = ((low >>> 7) & 0x7f) | 0x80;
  buf[at++] = ((low >>> 14) & 0x7f) | 0x80;
  buf[at++] = ((low >>> 21) & 0x7f) | 0x80;
  return writeVarint(buf, at, high);
}

/** A string field (key, length, UTF-8); nothing when empty, as proto3 leaves it out. */
function writeString(buf: Uint8Array, at: number, key: number, text: Uint8Array): number {
  if (!text.length) return at;
  buf[at++] = key;
  at = writeVarint(buf, at, text.length);
  buf.set(text, at);
  return at + text.length;
}

function writeVarintField(buf: Uint8Array, at: number, key: number, v: number): number {
  if (!v) return at;
  buf[at++] = key;
  return writeVarint(buf, at, v);
}

const NO_TEXT = new Uint8Array(0);
/** Distinct strings remembered as UTF-8 (addresses, states, reasons, commands) before the table starts over. */
const TEXT_CACHE_MAX = 8192;

/** Room for everything of one event but its strings: keys, varints, frame (about 70 bytes at most). */
const EVENT_FIXED_MAX = 128;
const FAMILY_IPV6 = familyToProto('ipv6');
const FAMILY_IPV4 = familyToProto('ipv4');

/**
 * Encodes ring batches; one per hub. It keeps the text of repeated values
 * (addresses, states, reasons, commands) as UTF-8, found by their raw values
 * where it can, and one scratch buffer it writes into.
 */
export class EventEncoder {
  private scratch = new Uint8Array(1 << 16);
  private records = new Uint32Array(1024);
  /** Each record's time_unix_micros, filled a batch at a time. */
  private recordTimes = new Float64Array(1024);
  /** By string: IPv6 addresses, commands, and every miss below. */
  private readonly text = new Map<string, Uint8Array>();
  /** IPv4 addresses by their 32 bits. */
  private readonly v4 = new Map<number, Uint8Array>();
  /** States by code. */
  private readonly states: Array<Uint8Array | undefined> = [];
  /** Reasons by kind code, then value. */
  private readonly reasons: Array<Map<number, Uint8Array> | undefined> = [];
  /** The encoded name fields by cgroup id, with the names they were made from (a new answer replaces them). */
  private readonly cgroupNames = new Map<number, { names: CgroupNames; bytes: Uint8Array }>();

  /** `names` answers from a cache and never waits (src/containers ContainerResolver.peek): a miss is an event without names. */
  constructor(private readonly names?: (cgroup: number) => CgroupNames | undefined) {}

  /**
   * The batch's events, encoded, and which record each came from (records
   * of a kind this build does not know are skipped, as decodeBatch skips
   * them). `records` is scratch: valid until the next call.
   */
  encode(raw: RawBatch): { events: EncodedEvents; records: Uint32Array } {
    const n = raw.length;
    if (this.records.length < n) this.records = new Uint32Array(n);
    const offsets = new Uint32Array(n + 1);
    const times = new Float64Array(n);
    if (this.recordTimes.length < n) this.recordTimes = new Float64Array(n);
    raw.timesMicros(this.recordTimes);
    let count = 0;
    let at = 0;
    for (let i = 0; i < n; i++) {
      const kind = raw.kind(i);
      if (!kind) continue;
      const time = this.recordTimes[i]!;
      const timeHigh = Math.floor(time / 0x10000000);
      const timeLow = time - timeHigh * 0x10000000;
      const laddr = this.addr(raw, i, 'local');
      const raddr = this.addr(raw, i, 'remote');
      const state = this.state(raw, i);
      const reason = this.reason(raw, i, kind);
      const owner = raw.owner(i);
      const comm = this.utf8(owner?.comm);
      const need = at + EVENT_FIXED_MAX + laddr.length + raddr.length + state.length + reason.length + comm.length;
      if (need > this.scratch.length) this.grow(need);
      let buf = this.scratch;
      buf[at++] = ELEMENT_KEY;
      // One byte for the length, as an event is almost always under 128 bytes; moved over below if not.
      const lengthAt = at++;
      if (time !== 0) {
        buf[at++] = KEY.time;
        at = writeVarintParts(buf, at, timeHigh, timeLow);
      }
      at = writeVarintField(buf, at, KEY.kind, kind.proto);
      at = writeVarintField(buf, at, KEY.family, raw.family(i) === 'ipv6' ? FAMILY_IPV6 : FAMILY_IPV4);
      at = writeString(buf, at, KEY.localAddr, laddr);
      at = writeVarintField(buf, at, KEY.localPort, raw.lport(i));
      at = writeString(buf, at, KEY.remoteAddr, raddr);
      at = writeVarintField(buf, at, KEY.remotePort, raw.rport(i));
      at = writeVarintField(buf, at, KEY.netns, raw.netns(i) | 0);
      at = writeString(buf, at, KEY.state, state);
      at = writeString(buf, at, KEY.reason, reason);
      // Optional fields are written whenever set, zero included.
      if (kind.listener) {
        buf[at++] = KEY.queue;
        at = writeVarint(buf, at, raw.queue(i));
        buf[at++] = KEY.backlog;
        at = writeVarint(buf, at, raw.backlog(i));
      }
      if (owner) {
        buf[at++] = KEY.pid;
        at = writeVarint(buf, at, owner.pid);
      }
      at = writeString(buf, at, KEY.comm, comm);
      // Optional: left out when the kernel did not know it (0), as eventToProto does.
      const cgroup = raw.cgroup(i);
      if (cgroup) {
        const high = Math.floor(cgroup / 0x10000000);
        buf[at++] = KEY.cgroup;
        at = writeVarintParts(buf, at, high, cgroup - high * 0x10000000);
      }
      // Who the cgroup belongs to, when the resolver knew already (fields 16-19, after cgroup's 15).
      if (cgroup && this.names) {
        const tail = this.namesOf(cgroup);
        if (tail.length) {
          if (at + tail.length + EVENT_FIXED_MAX > this.scratch.length) this.grow(at + tail.length + EVENT_FIXED_MAX);
          buf = this.scratch;
          buf.set(tail, at);
          at += tail.length;
        }
      }
      const size = at - lengthAt - 1;
      if (size >= 0x80) {
        const extra = varintSize(size) - 1;
        buf.copyWithin(lengthAt + 1 + extra, lengthAt + 1, at);
        at += extra;
      }
      writeVarint(buf, lengthAt, size);

      this.records[count] = i;
      times[count] = time;
      offsets[++count] = at;
    }
    // A right-sized copy: the scratch is reused, the copy is what the ring and the queues share.
    const events: EncodedEvents = {
      length: count,
      bytes: this.scratch.slice(0, at),
      offsets: count === n ? offsets : offsets.slice(0, count + 1),
      times: count === n ? times : times.slice(0, count),
    };
    return { events, records: this.records };
  }

  private namesOf(cgroup: number): Uint8Array {
    const names = this.names!(cgroup);
    if (!names) return NO_TEXT;
    const known = this.cgroupNames.get(cgroup);
    if (known?.names === names) return known.bytes;
    // The generated encoder leaves the empty defaults of NO_EVENT out: what remains is these fields alone.
    const bytes = Event.encode({
      ...NO_EVENT,
      ...(names.containerId ? { container: names.containerId } : {}),
      ...(names.containerName ? { containerName: names.containerName } : {}),
      ...(names.pod ? { pod: names.pod } : {}),
      ...(names.namespace ? { namespace: names.namespace } : {}),
    }).finish();
    if (this.cgroupNames.size >= TEXT_CACHE_MAX) this.cgroupNames.clear();
    this.cgroupNames.set(cgroup, { names, bytes });
    return bytes;
  }

  private addr(raw: RawBatch, i: number, side: Side): Uint8Array {
    const word = raw.ipv4Key(i, side);
    if (word === undefined) return this.utf8(raw.addr(i, side));
    let b = this.v4.get(word);
    if (b === undefined) {
      b = this.utf8(raw.addr(i, side));
      if (this.v4.size >= TEXT_CACHE_MAX) this.v4.clear();
      this.v4.set(word, b);
    }
    return b;
  }

  private state(raw: RawBatch, i: number): Uint8Array {
    const code = raw.stateCode(i);
    return (this.states[code] ??= this.utf8(raw.state(i)));
  }

  private reason(raw: RawBatch, i: number, kind: Kind): Uint8Array {
    if (!kind.reason) return NO_TEXT;
    const value = raw.reasonCode(i);
    if (value < 0) return NO_TEXT;
    const byValue = (this.reasons[kind.code] ??= new Map());
    let b = byValue.get(value);
    if (b === undefined) {
      b = this.utf8(raw.reason(i, kind));
      if (byValue.size >= TEXT_CACHE_MAX) byValue.clear();
      byValue.set(value, b);
    }
    return b;
  }

  private utf8(s: string | undefined): Uint8Array {
    if (!s) return NO_TEXT;
    let b = this.text.get(s);
    if (b === undefined) {
      b = Buffer.from(s, 'utf8');
      if (this.text.size >= TEXT_CACHE_MAX) this.text.clear();
      this.text.set(s, b);
    }
    return b;
  }

  private grow(need: number): void {
    const next = new Uint8Array(Math.max(need, this.scratch.length * 2));
    next.set(this.scratch);
    this.scratch = next;
  }
}

/** Events i of `from` with i in `picked[0..count)`, copied into their own buffer (in that order). */
export function pickEvents(from: EncodedEvents, picked: ArrayLike<number>, count: number): EncodedEvents {
  const offsets = new Uint32Array(count + 1);
  const times = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    const i = picked[j]!;
    offsets[j + 1] = offsets[j]! + from.offsets[i + 1]! - from.offsets[i]!;
    times[j] = from.times[i]!;
  }
  const bytes = new Uint8Array(offsets[count]!);
  for (let j = 0; j < count; j++) {
    const i = picked[j]!;
    bytes.set(from.bytes.subarray(from.offsets[i], from.offsets[i + 1]), offsets[j]);
  }
  return { length: count, bytes, offsets, times };
}

/** Event objects encoded with the generated encoder and framed the same way (replay of decoded events, tests). */
export function encodeEvents(events: readonly Event[]): EncodedEvents {
  const parts = events.map((ev) => EventBatch.encode({ events: [ev] }).finish());
  const offsets = new Uint32Array(parts.length + 1);
  parts.forEach((p, i) => (offsets[i + 1] = offsets[i]! + p.length));
  const bytes = new Uint8Array(offsets[parts.length]!);
  parts.forEach((p, i) => bytes.set(p, offsets[i]));
  return { length: events.length, bytes, offsets, times: Float64Array.from(events, (e) => e.timeUnixMicros) };
}

/** Event i, decoded. */
export function eventAt(events: EncodedEvents, i: number): Event {
  const element = events.bytes.subarray(events.offsets[i], events.offsets[i + 1]);
  // The element's own frame (key, length) comes first: EventBatch reads it.
  return EventBatch.decode(element).events[0]!;
}

/**
 * A WatchResponse holding one EventBatch of these element runs, framed by
 * hand: the events inside are the shared bytes, copied once into the message.
 */
export function batchMessage(parts: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = Buffer.allocUnsafe(1 + varintSize(total) + total);
  out[0] = BATCH_KEY;
  let at = writeVarint(out, 1, total);
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What a Watch stream writes: a message to encode, or one already encoded (batchMessage). */
export type WatchMessage = WatchResponse | Buffer;

/** Watch's response serializer: the generated one, except that encoded messages go as they are. */
export function serializeWatchResponse(value: WatchMessage): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(WatchResponse.encode(value).finish());
}
