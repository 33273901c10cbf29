/**
 * `wstrace watch`: every event, one per line (JSON with --json), until
 * --duration runs out or the user stops it. Events beyond the agent's rate
 * budget come as summary lines, one per key each second, with their exact
 * count. Hooks live/blind go to stderr first; lost events are reported as
 * they are noticed; a summary with the exact counters goes last.
 */
import { UserError } from '../protocol/errors.js';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { kindToProto, UnknownKinds } from '../protocol/convert.js';
import { LostReason, type EventFilter, type SnapshotResponse } from '../generated/wstrace/v1/tracer.js';
import { DEFAULT_EVENT_BUDGET, EVENT_KINDS, resolveNetns, type TracerOptions } from '../kernel/index.js';
import { z } from 'zod';
import { cgroupOptions, checkCgroups, clientOptions, criOptions, criWithConnect } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { describeBudget, describeInfo, humanLine, summaryLine, toJsonEvent, toJsonSummary } from './format.js';
import { openSource } from './source.js';
import { afterSeconds, catchStopSignals } from './signals.js';
import { count, eventBudget, kind, port, repeated, ringBytes, seconds, since } from './values.js';

export const watchOptions = z.object({
  json: flag(z.boolean().default(false), { flags: '--json', help: 'one JSON object per line' }),
  durationSec: flag(seconds.optional(), { flags: '--duration <seconds>', help: 'stop after this many seconds' }),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only events on this local or remote port (repeatable)' }),
  kinds: flag(repeated(kind), { flags: '--kind <kind>', help: 'only this kind of event (repeatable)' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'only this network namespace (ip netns name or nsfs path)' }),
  last: flag(count.optional(), { flags: '--last <n>', help: 'first print up to n recent events the agent remembers' }),
  sinceMs: flag(since.optional(), {
    flags: '--since <time>',
    help: 'first print recent events from this time (ISO 8601, or 30s, 5m, 2h ago)',
  }),
  ringBytes: flag(ringBytes.optional(), { flags: '--ring-bytes <n>', help: 'kernel ring-buffer size in bytes (in-process agent)' }),
  eventBudget: flag(eventBudget.optional(), {
    flags: '--event-budget <n>',
    help: `events per second printed one by one (default ${DEFAULT_EVENT_BUDGET}), beyond it exact summary lines; 0 prints every event (in-process agent)`,
  }),
  ...cgroupOptions.shape,
  ...criOptions.shape,
  ...clientOptions.shape,
});

export type WatchOptions = z.infer<typeof watchOptions>;

export interface WatchIo {
  readonly out: Writable & { writableLength: number };
  readonly err: Writable;
  /** Resolves when the user asks to stop (signals); tests pass their own. */
  readonly stopped?: Promise<void>;
}

/** Past this much unwritten output, events are dropped and counted: memory stays bounded. */
const MAX_PENDING_OUTPUT = 16 << 20;

function totalsDelta(a: SnapshotResponse | undefined, b: SnapshotResponse | undefined) {
  const z = { resetsSent: 0, resetsReceived: 0, timewait: 0, acceptQueueFull: 0, listenOverflows: 0 };
  const ta = a?.totals ?? z;
  const tb = b?.totals ?? z;
  return {
    resetsSent: tb.resetsSent - ta.resetsSent,
    resetsReceived: tb.resetsReceived - ta.resetsReceived,
    timewait: tb.timewait - ta.timewait,
    acceptQueueFull: tb.acceptQueueFull - ta.acceptQueueFull,
    listenOverflows: tb.listenOverflows - ta.listenOverflows,
  };
}

async function* prepend<T>(first: IteratorResult<T>, rest: AsyncIterable<T>): AsyncGenerator<T> {
  if (first.done) return;
  yield first.value;
  yield* rest;
}

export async function runWatch(opts: WatchOptions, io: WatchIo): Promise<number> {
  // Before anything loads: a namespace that is not one is one sentence here, not a failure deep in the agent.
  if (opts.netns !== undefined && !opts.connect) resolveNetns(opts.netns);
  checkCgroups(opts.cgroups, opts.connect);
  if (opts.connect && opts.criSocket) throw new UserError(criWithConnect('watch'));
  const signals = io.stopped ? undefined : catchStopSignals();
  // A reader that went away (`| head`, on stdout or on stderr with 2>&1) is a stop, as for other Unix tools: exit 0, nothing left behind.
  const readerGone = new Promise<void>((resolve) => {
    io.out.on('error', () => resolve());
    io.err.on('error', () => resolve());
  });
  try {
    return await watchUntilStopped(opts, io, Promise.race([io.stopped ?? signals!.stopped, readerGone.then(() => 'gone' as const)]));
  } finally {
    signals?.off();
  }
}

async function watchUntilStopped(opts: WatchOptions, io: WatchIo, stopped: Promise<void | 'gone'>): Promise<number> {
  const tracer: TracerOptions = {
    ports: opts.ports,
    ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
    ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
    ...(opts.eventBudget !== undefined ? { eventBudget: opts.eventBudget } : {}),
    ...(opts.cgroups.length ? { cgroups: opts.cgroups } : {}),
  };
  const opened = await openSource({
    ...(opts.connect ? { connect: opts.connect } : {}),
    tls: opts.tls,
    tracer,
    ...(opts.criSocket ? { criSocket: opts.criSocket } : {}),
  });
  const { source } = opened;
  let closed = false;
  const close = async (message?: string) => {
    if (closed) return;
    closed = true;
    await opened.close(message);
  };
  try {
    const info = await source.info();
    const before = await source.snapshot();

    const filter: Partial<EventFilter> = {};
    if (opts.ports.length) filter.ports = opts.ports;
    if (opts.kinds.length) filter.kinds = opts.kinds.map(kindToProto);
    if (opts.netns !== undefined) filter.netns = [opts.netns];
    // In this process's own agent the kernel keeps only these cgroups already.
    if (opts.connect && opts.cgroups.length) filter.cgroups = opts.cgroups;
    const stream = source.watch({
      allow: Object.keys(filter).length ? [{ kinds: [], ports: [], localPorts: [], remotePorts: [], localAddrs: [], remoteAddrs: [], netns: [], cgroups: [], ...filter }] : [],
      follow: true,
      last: opts.last ?? 0,
      sinceUnixMicros: opts.sinceMs !== undefined ? Math.round(opts.sinceMs * 1000) : 0,
    });

    // The agent answers a new stream with a status first: from then on nothing
    // is missed, so that is when to say "watching".
    const messages = stream[Symbol.asyncIterator]();
    const first = await messages.next();
    const scope = [
      opts.netns !== undefined ? `netns ${opts.netns}` : info.netns ? `netns ${info.netns}` : 'all network namespaces',
      opts.ports.length ? `port ${opts.ports.join(',')}` : 'all ports',
      opts.cgroups.length ? `cgroup ${opts.cgroups.join(',')} and below` : '',
      opts.kinds.length && opts.kinds.length < EVENT_KINDS.length ? `kinds ${opts.kinds.join(',')}` : '',
    ].filter(Boolean);
    io.err.write(
      `wstrace: watching ${scope.join(', ')} on ${info.hostname} (Linux ${info.kernel}) via ${opened.where}\n  ${describeInfo(info)}\n  ${describeBudget(info.eventBudget)}\n`,
    );

    let printed = 0;
    /** Events shown in summary lines, and those lines. */
    let summarised = 0;
    let summaryLines = 0;
    const unknown = new UnknownKinds();
    let outputDropped = 0;
    let outputClosed = false;
    const lost = { kernel: 0, slow: 0, summaryTable: 0 };
    let after: SnapshotResponse | undefined;

    const stop = async () => {
      if (opened.local) {
        // Everything the kernel has already written reaches this stream before it ends.
        opened.local.tracer.flush();
        after = await source.snapshot().catch(() => undefined);
        await close('watch stopped');
      } else {
        after = await source.snapshot().catch(() => undefined);
        stream.cancel();
      }
    };
    const cancelTimer = opts.durationSec !== undefined ? afterSeconds(opts.durationSec, () => void stop()) : undefined;
    void stopped.then((why) => {
      if (why === 'gone') outputClosed = true;
      return stop();
    });

    const rest = { [Symbol.asyncIterator]: () => messages };
    for await (const msg of prepend(first, rest)) {
      const r = msg.response;
      if (!r) continue;
      if (r.$case === 'batch') {
        if (outputClosed) continue;
        if (io.out.writableLength > MAX_PENDING_OUTPUT) {
          outputDropped += r.value.events.length;
          continue;
        }
        let chunk = '';
        const known = unknown.convert(r.value.events);
        for (const e of known) chunk += (opts.json ? JSON.stringify(toJsonEvent(e)) : humanLine(e)) + '\n';
        printed += known.length;
        io.out.write(chunk);
      } else if (r.$case === 'summaries') {
        if (outputClosed) continue;
        const rows = unknown.convertSummaries(r.value.summaries);
        const events = rows.reduce((n, s) => n + s.count, 0);
        if (io.out.writableLength > MAX_PENDING_OUTPUT) {
          outputDropped += events;
          continue;
        }
        let chunk = '';
        for (const s of rows) chunk += (opts.json ? JSON.stringify(toJsonSummary(s)) : summaryLine(s, r.value.eventBudget)) + '\n';
        summarised += events;
        summaryLines += rows.length;
        io.out.write(chunk);
      } else if (r.$case === 'lost') {
        const why = r.value.reason;
        if (why === LostReason.LOST_REASON_KERNEL_RING_FULL) lost.kernel += r.value.count;
        else if (why === LostReason.LOST_REASON_SUMMARY_TABLE_FULL) lost.summaryTable += r.value.count;
        else lost.slow += r.value.count;
        const text =
          why === LostReason.LOST_REASON_KERNEL_RING_FULL
            ? 'kernel ring buffer full'
            : why === LostReason.LOST_REASON_SUMMARY_TABLE_FULL
              ? "beyond the budget, and the kernel's summary table was full"
              : 'this client read too slowly';
        io.err.write(`wstrace: ${r.value.count} events lost (${text})\n`);
      } else if (r.$case === 'capture') {
        const c = r.value;
        io.err.write(`wstrace: capture ${c.state} (${c.trigger}${c.rule ? ` ${c.rule}` : ''}: ${c.detail}) ${c.state === 'refused' ? c.error : c.file}\n`);
      } else if (r.$case === 'status' && r.value.end) {
        if (!opened.local) io.err.write(`wstrace: the agent ended the stream: ${r.value.message}\n`);
        break;
      }
    }
    cancelTimer?.();

    const d = totalsDelta(before, after);
    const note = unknown.message();
    if (note) io.err.write(`wstrace: ${note}\n`);
    const lostParts = [`${lost.kernel} lost in the kernel ring`];
    if (lost.summaryTable) lostParts.push(`${lost.summaryTable} lost with the summary table full`);
    if (lost.slow) lostParts.push(`${lost.slow} lost because this client was too slow`);
    if (outputDropped) lostParts.push(`${outputDropped} dropped because output was too slow`);
    io.err.write(
      `wstrace: ${printed} events printed, ` +
        (summarised || info.eventBudget ? `${summarised} more in ${summaryLines} summary lines${info.eventBudget ? ` (beyond the ${info.eventBudget}/s budget)` : ''}, ` : '') +
        `${lostParts.join(', ')}; exact kernel counts ` +
        `(${opened.local ? 'this watch' : 'whole agent, this watch'}): ` +
        `${d.resetsSent} resets sent, ${d.resetsReceived} received, ${d.timewait} TIME_WAIT, ` +
        `${d.acceptQueueFull} accept-queue full, ${d.listenOverflows} listen overflows\n`,
    );
    return 0;
  } finally {
    await close();
  }
}

export function registerWatch(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'watch', description: 'print kernel events as they happen (root, or --connect to an agent)', options: watchOptions },
    onAction,
    (o) => runWatch(o, { out: process.stdout, err: process.stderr }),
  );
}
