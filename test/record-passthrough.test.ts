/**
 * The recorder writes the agent's Watch messages as they came (no decode and
 * re-encode per event): what the agent sent is what the file holds, byte for
 * byte, down to fields this build does not know (a newer agent's), and the
 * readers take those records like any other. No kernel needed: a fake agent
 * on a unix socket serves GetInfo, Snapshot and a Watch stream of chosen bytes.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { runExport, runRecord } from '../src/cli/record.js';
import { frame, parseRecording } from '../src/record/format.js';
import { peekWatch, watchRecord } from '../src/record/passthrough.js';
import { RecordEntry } from '../src/generated/wstrace/v1/record.js';
import {
  Event,
  GetInfoResponse,
  SnapshotResponse,
  StreamStatus,
  TracerService,
  WatchResponse,
} from '../src/generated/wstrace/v1/tracer.js';
import { eventToProto } from '../src/protocol/convert.js';
import type { TraceEvent } from '../src/signals/event.js';

const UNKNOWN_FIELD = 1000;

function event(i: number): Event {
  const e: TraceEvent = {
    kind: 'reset_sent',
    timeMs: 1_700_000_000_000 + i,
    family: 'ipv4',
    laddr: '127.0.0.1',
    lport: 7000,
    raddr: '127.0.0.2',
    rport: 40_000 + i,
    netns: 4026531840,
    state: 'ESTABLISHED',
  } as TraceEvent;
  return eventToProto(e);
}

/** A batch of `n` events whose first event carries a field no wstrace build knows. */
function batchWithUnknownField(n: number): Buffer {
  const first = new BinaryWriter();
  Event.encode(event(0), first);
  first.uint32((UNKNOWN_FIELD << 3) | 2).string('from a newer agent');
  const firstBytes = first.finish();
  const batch = new BinaryWriter();
  batch.uint32((1 << 3) | 2).bytes(firstBytes);
  for (let i = 1; i < n; i++) batch.uint32((1 << 3) | 2).bytes(Event.encode(event(i)).finish());
  const msg = new BinaryWriter();
  msg.uint32((1 << 3) | 2).bytes(batch.finish());
  return Buffer.from(msg.finish());
}

describe('record writes what the agent sent', () => {
  let dir: string;
  let server: grpc.Server;
  let sock: string;
  const sent: Buffer[] = [batchWithUnknownField(3), batchWithUnknownField(1500)];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wst-passthrough-'));
    sock = join(dir, 'agent.sock');
    server = new grpc.Server();
    const info = GetInfoResponse.decode(new Uint8Array());
    const snap = SnapshotResponse.decode(new Uint8Array());
    // Watch's responses are served as bytes, so the stream carries exactly `sent`.
    const service = { ...TracerService, watch: { ...TracerService.watch, responseSerialize: (b: Buffer) => b } };
    server.addService(service as unknown as grpc.ServiceDefinition, {
      getInfo: (_c: unknown, cb: grpc.sendUnaryData<GetInfoResponse>) => cb(null, info),
      snapshot: (_c: unknown, cb: grpc.sendUnaryData<SnapshotResponse>) => cb(null, snap),
      watch: (call: grpc.ServerWritableStream<unknown, Buffer>) => {
        for (const b of sent) call.write(b);
        const status = { ...StreamStatus.decode(new Uint8Array()), message: 'bye', end: true };
        call.write(Buffer.from(WatchResponse.encode({ response: { $case: 'status', value: status } }).finish()));
        call.end();
      },
    } as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  });
  afterAll(async () => {
    await new Promise<void>((r) => server?.tryShutdown(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('every event batch is one record holding the agent bytes unchanged, unknown fields included; export reads every event', async () => {
    const out = join(dir, 'a.wsr');
    const err = new PassThrough();
    let said = '';
    err.on('data', (d: Buffer) => (said += d.toString()));
    const code = await runRecord(
      { out, connect: `unix:${sock}`, tls: {}, ports: [], kinds: [], cgroups: [], maxSize: 1 << 20, rotate: 0, stopped: new Promise(() => {}) },
      err,
    );
    expect(code).toBe(0);
    expect(said).toMatch(/recorded 1503 events/);
    const file = readFileSync(out);
    for (const b of sent) expect(file.includes(b)).toBe(true);
    const entries = parseRecording(file).entries.filter((e) => e.entry?.$case === 'watch');
    const batches = entries.filter((e) => e.entry?.$case === 'watch' && e.entry.value.response?.$case === 'batch');
    expect(batches.map((e) => (e.entry as { value: WatchResponse }).value.response)).toHaveLength(2);
    const lines = new PassThrough();
    let text = '';
    lines.on('data', (d: Buffer) => (text += d.toString()));
    await runExport(out, lines, new PassThrough());
    const exported = text.trim().split('\n').map((l) => JSON.parse(l) as { rport: number });
    expect(exported).toHaveLength(1503);
    expect(exported[1502]!.rport).toBe(40_000 + 1499);
  });

  it('peekWatch counts the events of a batch and names the other kinds without decoding them', () => {
    expect(peekWatch(sent[1]!)).toEqual({ kind: 'batch', events: 1500 });
    const lost = WatchResponse.encode({ response: { $case: 'lost', value: { count: 5, reason: 1 } } }).finish();
    expect(peekWatch(lost)).toEqual({ kind: 'lost', events: 0 });
    const rows = WatchResponse.encode({
      response: { $case: 'summaries', value: { summaries: [], fromUnixMicros: 1, toUnixMicros: 2, eventBudget: 10 } },
    }).finish();
    expect(peekWatch(rows)).toEqual({ kind: 'summaries', events: 0 });
  });

  it('a record built around the bytes decodes to what the generated encoder would have written', () => {
    const msg = WatchResponse.decode(sent[0]!);
    const viaBytes = watchRecord(123_456, sent[0]!);
    const viaEncoder = frame({ timeUnixMicros: 123_456, entry: { $case: 'watch', value: msg } });
    const decode = (b: Buffer) => RecordEntry.decode(b.subarray(12));
    expect(decode(viaBytes)).toEqual(decode(viaEncoder));
  });
});
