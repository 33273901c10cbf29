/** `wstrace record`, `report` and `export`: incident forensics from a recording file. */
import { UserError } from '../protocol/errors.js';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { kindToProto, UnknownKinds } from '../protocol/convert.js';
import type { RecordEntry } from '../generated/wstrace/v1/record.js';
import { WatchResponse, type EventFilter, type SnapshotResponse, type WatchRequest } from '../generated/wstrace/v1/tracer.js';
import type { EventSource } from '../client/connect.js';
import { describeDamage, frame, openRecording } from '../record/format.js';
import { peekWatch, watchRecord } from '../record/passthrough.js';
import { readReport, renderReport } from '../record/report.js';
import { DEFAULT_OLDER_PARTS, DEFAULT_PART_BYTES, RecordingWriter } from '../record/writer.js';
import { VERSION } from '../agent/version.js';
import { DEFAULT_EVENT_BUDGET, resolveNetns } from '../kernel/index.js';
import { toJsonEvent, toJsonSummary } from './format.js';
import { openSource } from './source.js';
import { afterSeconds, catchStopSignals } from './signals.js';
import { cgroupOptions, checkCgroups, clientOptions, criOptions, criWithConnect } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { eventBudget, kind, olderParts, partBytes, port, repeated, seconds } from './values.js';

export const recordOptions = z.object({
  out: flag(z.string(), { flags: '-o, --out <file>', help: 'the recording file' }),
  durationSec: flag(seconds.optional(), { flags: '--duration <seconds>', help: 'stop after this many seconds' }),
  maxSize: flag(partBytes.default(DEFAULT_PART_BYTES), {
    flags: '--max-size <size>',
    help: 'cap each file at this size: bytes, or a number with K, M, G or T (powers of 1024), from 1M to 1T',
  }),
  rotate: flag(olderParts.default(DEFAULT_OLDER_PARTS), {
    flags: '--rotate <n>',
    help: `at the cap (--max-size, ${DEFAULT_PART_BYTES / 2 ** 20}M unless given), keep going and keep n older parts (FILE.1 …); 0 stops at the cap`,
  }),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only events on this local or remote port (repeatable)' }),
  kinds: flag(repeated(kind), { flags: '--kind <kind>', help: 'only this kind of event (repeatable)' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'only this network namespace' }),
  eventBudget: flag(eventBudget.optional(), {
    flags: '--event-budget <n>',
    help: `events per second recorded one by one (default ${DEFAULT_EVENT_BUDGET}), beyond it exact summaries; 0 records every event (in-process agent)`,
  }),
  ...cgroupOptions.shape,
  ...criOptions.shape,
  ...clientOptions.shape,
});

export type RecordOptions = z.infer<typeof recordOptions> & {
  /** Tests pass their own stop signal. */
  readonly stopped?: Promise<void>;
};

const now = () => Date.now() * 1000;
/** Summary rows per record: a second's rows arrive in one message, and a record should stay small next to the size cap. */
const RECORD_ROWS = 64;

/** The Watch stream as the agent's bytes; a source without that (none today) has its messages encoded here. */
function watchBytes(source: EventSource, request: Partial<WatchRequest>): AsyncIterable<Uint8Array> & { cancel(): void } {
  if (source.watchBytes) return source.watchBytes(request);
  const typed = source.watch(request);
  const encoded = (async function* () {
    for await (const msg of typed) yield WatchResponse.encode(msg).finish();
  })();
  return Object.assign(encoded, { cancel: () => typed.cancel() });
}

export async function runRecord(opts: RecordOptions, err: Writable): Promise<number> {
  // Before anything loads: a namespace that is not one is one sentence here, not a failure deep in the agent.
  if (opts.netns !== undefined && !opts.connect) resolveNetns(opts.netns);
  checkCgroups(opts.cgroups, opts.connect);
  if (opts.connect && opts.criSocket) throw new UserError(criWithConnect('record'));
  const signals = opts.stopped ? undefined : catchStopSignals();
  try {
    return await recordUntilStopped(opts, err, opts.stopped ?? signals!.stopped);
  } finally {
    signals?.off();
  }
}

async function recordUntilStopped(opts: RecordOptions, err: Writable, stopped: Promise<void>): Promise<number> {
  const opened = await openSource({
    ...(opts.connect ? { connect: opts.connect } : {}),
    tls: opts.tls,
    tracer: {
      ports: opts.ports,
      ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
      ...(opts.eventBudget !== undefined ? { eventBudget: opts.eventBudget } : {}),
      ...(opts.cgroups.length ? { cgroups: opts.cgroups } : {}),
    },
    ...(opts.criSocket ? { criSocket: opts.criSocket } : {}),
  });
  const { source } = opened;
  let writer: RecordingWriter | undefined;
  try {
    const info = await source.info();
    let latest: SnapshotResponse = await source.snapshot();
    const header = (part: number): RecordEntry => ({
      timeUnixMicros: now(),
      entry: {
        $case: 'header',
        value: { version: VERSION, info, ports: opts.ports, kinds: opts.kinds, netns: opts.netns ?? '', part },
      },
    });
    const snapEntry = (s: SnapshotResponse): RecordEntry => ({ timeUnixMicros: now(), entry: { $case: 'snapshot', value: s } });
    writer = new RecordingWriter(opts.out, {
      ...(opts.maxSize ? { maxSize: opts.maxSize } : {}),
      ...(opts.rotate !== undefined ? { rotate: opts.rotate } : {}),
      startOfPart: (part) => [header(part), snapEntry(latest)],
    });
    const w = writer;

    const filter: Partial<EventFilter> = {};
    if (opts.ports.length) filter.ports = opts.ports;
    if (opts.kinds.length) filter.kinds = opts.kinds.map(kindToProto);
    if (opts.netns !== undefined) filter.netns = [opts.netns];
    // In this process's own agent the kernel keeps only these cgroups already.
    if (opts.connect && opts.cgroups.length) filter.cgroups = opts.cgroups;
    const request = {
      allow: Object.keys(filter).length
        ? [{ kinds: [], ports: [], localPorts: [], remotePorts: [], localAddrs: [], remoteAddrs: [], netns: [], cgroups: [], ...filter }]
        : [],
      follow: true,
    };
    const stream = watchBytes(source, request);
    const messages = stream[Symbol.asyncIterator]();
    const first = await messages.next();
    err.write(`wstrace: recording into ${opts.out} (Ctrl-C to stop)\n`);

    let events = 0;
    /** Events that came counted in summary rows (beyond the agent's budget). */
    let summarised = 0;
    let snapshots = 1;
    let stopping = false;
    const poll = setInterval(() => {
      void source.snapshot().then(
        (s) => {
          latest = s;
          if (!stopping && w.write(snapEntry(s))) snapshots++;
        },
        () => {},
      );
    }, 1000);
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      clearInterval(poll);
      if (opened.local) opened.local.tracer.flush();
      const last = await source.snapshot().catch(() => undefined);
      if (last) {
        latest = last;
        w.write(snapEntry(last));
        snapshots++;
      }
      if (opened.local) await opened.close('recording stopped');
      else stream.cancel();
    };
    const cancelTimer = opts.durationSec !== undefined ? afterSeconds(opts.durationSec, () => void stop()) : undefined;
    void stopped.then(stop);
    // A full disk stops the writer: stop the stream and the snapshot timer too, or nothing ends.
    void w.failed.then(stop);

    const write = (msg: Uint8Array | WatchResponse): boolean => {
      const record =
        msg instanceof Uint8Array
          ? watchRecord(now(), msg)
          : frame({ timeUnixMicros: now(), entry: { $case: 'watch', value: msg } });
      if (w.writeRecord(record)) return true;
      if (!w.failure) err.write(`wstrace: ${opts.out} reached --max-size; recording stopped (use --rotate N to keep going)\n`);
      void stop();
      return false;
    };
    /**
     * Each message is written as the agent sent it. Only messages that are not
     * event batches are decoded (a few a second): a summary batch to count its
     * events and split a large one (its rows come all at once each second),
     * a status to see the stream's end.
     */
    const handle = (bytes: Uint8Array): boolean => {
      const { kind, events: n } = peekWatch(bytes);
      // While stopping, what the agent still hands over belongs to the recording: the events the
      // kernel had, the last summary rows and the losses it reports at close.
      if (stopping && kind !== 'batch' && kind !== 'summaries' && kind !== 'lost') return true;
      if (kind === 'batch') {
        if (!write(bytes)) return false;
        events += n;
        return true;
      }
      const msg = WatchResponse.decode(bytes);
      const r = msg.response;
      if (r?.$case === 'summaries') {
        for (let i = 0; i < r.value.summaries.length || i === 0; i += RECORD_ROWS) {
          const rows = r.value.summaries.slice(i, i + RECORD_ROWS);
          const piece = r.value.summaries.length > RECORD_ROWS ? { response: { $case: 'summaries' as const, value: { ...r.value, summaries: rows } } } : bytes;
          if (!write(piece)) return false;
          summarised += rows.reduce((sum, row) => sum + row.count, 0);
        }
        return true;
      }
      if (!write(bytes)) return false;
      return !(r?.$case === 'status' && r.value.end);
    };
    let going = first.done ? true : handle(first.value);
    if (going) {
      for await (const msg of { [Symbol.asyncIterator]: () => messages }) {
        going = handle(msg);
        if (!going) break;
      }
    }
    cancelTimer?.();
    await stop();
    if (w.failure) {
      err.write(`wstrace: ${w.failure.message}\n`);
      return 1;
    }
    const more = summarised ? ` (and ${summarised} more in summary rows, beyond the agent's budget)` : '';
    err.write(`wstrace: recorded ${events} events${more} and ${snapshots} snapshots into ${opts.out} (${w.bytes} bytes, part ${w.partNumber})\n`);
    return 0;
  } finally {
    writer?.close();
    await opened.close();
  }
}

export async function runReport(file: string, json: boolean, out: Writable): Promise<number> {
  const report = await readReport(file);
  out.write(json ? `${JSON.stringify(report)}\n` : renderReport(report));
  return 0;
}

/** Streams: a recording larger than memory exports with memory to spare, at the pace the reader of stdout takes. */
export async function runExport(file: string, out: Writable, err: Writable = process.stderr): Promise<number> {
  const rec = await openRecording(file);
  const unknown = new UnknownKinds();
  let chunk = '';
  let header = false;
  const flush = async () => {
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
    chunk = '';
  };
  for await (const e of rec) {
    if (e.entry?.$case === 'header') header = true;
    const r = e.entry?.$case === 'watch' ? e.entry.value.response : undefined;
    if (r?.$case === 'batch') for (const ev of unknown.convert(r.value.events)) chunk += `${JSON.stringify(toJsonEvent(ev))}\n`;
    else if (r?.$case === 'summaries') for (const s of unknown.convertSummaries(r.value.summaries)) chunk += `${JSON.stringify(toJsonSummary(s))}\n`;
    else continue;
    if (chunk.length > 1 << 20) await flush();
  }
  await flush();
  for (const note of [unknown.message(), describeDamage(file, rec.damage, !header)]) if (note) err.write(`wstrace: ${note}\n`);
  return 0;
}

/** The positional argument of report, export and replay. */
export const RECORDING = ['<file>', 'a recording made by wstrace record'] as const;

export const reportOptions = z.object({ json: flag(z.boolean().default(false), { flags: '--json', help: 'the same, as data' }) });

export const exportOptions = z.object({
  ndjson: flag(z.boolean().default(false), { flags: '--ndjson', help: 'JSON lines (the only format for now)' }),
});

export function registerRecord(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'record', description: 'record events and per-second snapshots to a file, for replay and report', options: recordOptions },
    onAction,
    (o) => runRecord(o, process.stderr),
  );
}

export function registerReport(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'report', description: 'the incident in one page, from a recording (no root needed)', options: reportOptions, args: [RECORDING] },
    onAction,
    (o, [file]) => runReport(file!, o.json, process.stdout),
  );
}

export function registerExport(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    {
      name: 'export',
      description: 'the events of a recording as JSON lines, as watch --json prints them',
      options: exportOptions,
      args: [RECORDING],
    },
    onAction,
    (_o, [file]) => runExport(file!, process.stdout),
  );
}
