/**
 * The recorder writes each Watch message as the agent sent it: the record's
 * payload is a RecordEntry built around those bytes, with no decode and
 * re-encode of every event (the agent encoded each event once; doing it again
 * per event on the client was most of the recorder's CPU). What the recorder
 * must know of a message (its kind, how many events it carries) is read off
 * the bytes; only the rare messages that are not event batches are decoded.
 * Fields this build does not know (a newer agent's) are kept as they came.
 */
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { RecordEntry } from '../generated/wstrace/v1/record.js';
import { WatchResponse } from '../generated/wstrace/v1/tracer.js';
import { framePayload } from './format.js';

export type WatchCase = NonNullable<WatchResponse['response']>['$case'];

/** The field number of each member of WatchResponse's oneof, read off the generated decoder. */
const CASE_BY_FIELD = new Map<number, WatchCase>();
for (let field = 1; field < 16; field++) {
  const c = WatchResponse.decode(Uint8Array.of((field << 3) | WireType.LengthDelimited, 0)).response?.$case;
  if (c) CASE_BY_FIELD.set(field, c);
}
const BATCH_FIELD = [...CASE_BY_FIELD].find(([, c]) => c === 'batch')![0];
/** EventBatch.events. */
const EVENTS_FIELD = 1;

/** RecordEntry's tags for its time and its watch member, read off the generated encoder. */
const [TIME_TAG, WATCH_TAG] = (() => {
  const b = RecordEntry.encode({ timeUnixMicros: 1, entry: { $case: 'watch', value: { response: undefined } } }).finish();
  return [b[0]!, b[2]!];
})();

export interface WatchPeek {
  /** The oneof member the message carries; undefined for one this build does not know. */
  readonly kind: WatchCase | undefined;
  /** Events in it, when it is an event batch. */
  readonly events: number;
}

/** Kind and event count of one WatchResponse, from its bytes. Throws on bytes that are not a message. */
export function peekWatch(bytes: Uint8Array): WatchPeek {
  const r = new BinaryReader(bytes);
  let kind: WatchCase | undefined;
  let events = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === BATCH_FIELD && (tag & 7) === WireType.LengthDelimited) {
      const end = r.uint32() + r.pos;
      // A oneof member repeated on the wire: the last one counts, as a decoder would take it.
      kind = 'batch';
      events = 0;
      while (r.pos < end) {
        const t = r.uint32();
        if (t >>> 3 === EVENTS_FIELD) events++;
        r.skip(t & 7);
      }
    } else {
      if (CASE_BY_FIELD.has(field)) {
        kind = CASE_BY_FIELD.get(field);
        events = 0;
      }
      r.skip(tag & 7);
    }
  }
  return { kind, events };
}

/** One whole recording record (frame and payload) holding `watch`, a WatchResponse's bytes, unchanged. */
export function watchRecord(timeUnixMicros: number, watch: Uint8Array): Buffer {
  const w = new BinaryWriter();
  w.uint32(TIME_TAG).int64(timeUnixMicros);
  w.uint32(WATCH_TAG).bytes(watch);
  return framePayload(w.finish());
}
