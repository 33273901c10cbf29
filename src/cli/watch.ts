/**
 * `wstrace watch`: every event, one per line (JSON with --json), until
 * --duration runs out or the user stops it. Hooks live/blind go to stderr
 * first; a summary with the exact counters and the lost count goes last.
 */
import { release } from 'node:os';
import type { Writable } from 'node:stream';
import { ALWAYS_BLIND, openTracer, type HookStatus, type Tracer, type TracerOptions } from '../kernel/index.js';
import { humanLine, toJsonEvent } from './format.js';

export interface WatchOptions {
  readonly json: boolean;
  readonly durationSec?: number;
  readonly ports: number[];
  readonly netns?: string;
  readonly ringBytes?: number;
}

export interface WatchIo {
  readonly out: Writable & { writableLength: number };
  readonly err: Writable;
  /** Resolves when the user asks to stop (signals); tests pass their own. */
  readonly stopped?: Promise<void>;
  readonly open?: (options: TracerOptions) => Tracer;
}

/** Past this much unwritten output, events are dropped and counted: memory stays bounded. */
const MAX_PENDING_OUTPUT = 16 << 20;

export function describeHooks(hooks: readonly HookStatus[]): string {
  const live = hooks.filter((h) => h.attached).map((h) => `${h.signal} (${h.hook})`);
  const blind = hooks.filter((h) => !h.attached).map((h) => `${h.signal} (${h.hook}: ${h.error})`);
  const lines = [`live: ${live.length ? live.join(', ') : 'none'}`];
  if (blind.length) lines.push(`blind: ${blind.join('; ')}`);
  for (const b of ALWAYS_BLIND) lines.push(`note: ${b}`);
  return lines.join('\n  ');
}

function signalStop(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

export async function runWatch(opts: WatchOptions, io: WatchIo): Promise<number> {
  const open = io.open ?? openTracer;
  const tracer = open({
    ports: opts.ports,
    ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
    ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
  });
  let printed = 0;
  let outputDropped = 0;
  let outputClosed = false;
  try {
    const scope = [
      tracer.netns ? `netns ${tracer.netns.path} (${tracer.netns.inode})` : 'all network namespaces',
      opts.ports.length ? `port ${opts.ports.join(',')}` : 'all ports',
    ].join(', ');
    io.err.write(`wstrace: watching ${scope} on Linux ${release()}\n  ${describeHooks(tracer.hooks)}\n`);

    let stopOutput: () => void = () => {};
    const outputGone = new Promise<void>((resolve) => (stopOutput = resolve));
    io.out.on('error', () => {
      // The reader went away (| head): stop quietly, as other Unix tools do.
      outputClosed = true;
      stopOutput();
    });

    tracer.subscribe((events) => {
      if (outputClosed) return;
      if (io.out.writableLength > MAX_PENDING_OUTPUT) {
        outputDropped += events.length;
        return;
      }
      let chunk = '';
      for (const ev of events) chunk += (opts.json ? JSON.stringify(toJsonEvent(ev)) : humanLine(ev)) + '\n';
      printed += events.length;
      io.out.write(chunk);
    });

    const waits: Promise<void>[] = [io.stopped ?? signalStop(), outputGone];
    let timer: NodeJS.Timeout | undefined;
    if (opts.durationSec !== undefined) {
      waits.push(new Promise((resolve) => (timer = setTimeout(resolve, opts.durationSec! * 1000))));
    }
    await Promise.race(waits);
    if (timer) clearTimeout(timer);

    tracer.flush();
    const totals = tracer.counters().totals;
    const lost = totals.ringDrops;
    const lostParts = [`${lost} lost in the kernel ring`];
    if (outputDropped) lostParts.push(`${outputDropped} dropped because output was too slow`);
    io.err.write(
      `wstrace: ${printed} events printed, ${lostParts.join(', ')}; exact kernel counts: ` +
        `${totals.resetSent} resets sent, ${totals.resetReceived} received, ${totals.timewait} TIME_WAIT, ` +
        `${totals.acceptQueueFull} accept-queue full, ${totals.listenOverflow} listen overflows\n`,
    );
    return 0;
  } finally {
    tracer.close();
  }
}
