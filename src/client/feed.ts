/**
 * One agent's feed into a consumer (top's aggregator): GetInfo, one Watch
 * stream, a Snapshot a second, the Doctor checklist now and then, and a
 * reconnect with backoff when the agent goes away. Never throws: an agent that
 * is down is reported to the sink, with why and when the next try is.
 */
import type { DoctorResponse, GetInfoResponse, SnapshotResponse, WatchResponse } from '../generated/wstrace/v1/tracer.js';
import type { EventSource } from './connect.js';

/** Open files of one process, and its soft limit. */
export interface ProcessFds {
  readonly open: number;
  readonly limit: number;
}

/** Where a feed delivers; the aggregator implements it. */
export interface FeedSink {
  connecting(id: string): void;
  up(id: string, info: GetInfoResponse): void;
  down(id: string, reason: string, retryAt?: number): void;
  watch(id: string, msg: WatchResponse, at: number): void;
  snapshot(id: string, snap: SnapshotResponse, at: number): void;
  doctor(id: string, r: DoctorResponse): void;
  /** Pids of the listener processes seen, whose fds are worth reading. */
  listenerPids(id: string): number[];
  fds(id: string, fds: ReadonlyMap<number, ProcessFds>): void;
}

export interface FeedOptions {
  readonly signal: AbortSignal;
  readonly now?: () => number;
  /** Snapshot poll interval. */
  readonly pollMs?: number;
  /** How often the agent's Doctor checklist is asked for. */
  readonly doctorEveryMs?: number;
  /** How often the fds of listener processes are read (local agents only). */
  readonly fdsEveryMs?: number;
  readonly readFds?: (pid: number) => Promise<ProcessFds | undefined>;
  /** Wait before the first reconnect; doubles up to maxBackoffMs. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** Most processes to read fds of per round: a host with thousands of listener processes stays cheap. */
const MAX_FD_PIDS = 64;
/** A session up this long was healthy: the next failure starts the backoff again from the beginning. */
const HEALTHY_MS = 10_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

function reasonOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // The host column already names the agent: the header needs only the gist.
  return /^cannot reach/.test(text) ? 'unreachable (agent running? socket permissions?)' : text.replace(/\.$/, '');
}

/** One connection's life: info, stream and polls until something ends it; returns why. */
async function session(id: string, source: EventSource, agg: FeedSink, o: Required<Omit<FeedOptions, 'readFds'>> & FeedOptions): Promise<string> {
  agg.connecting(id);
  agg.up(id, await source.info());
  const stream = source.watch({ follow: true });
  let ended: string | undefined;
  const stopPolls = new AbortController();
  // The capacity checklist, from the agent, now and then (it reads a few dozen /proc files).
  const doctorPolls = (async () => {
    while (!stopPolls.signal.aborted && source.doctor) {
      try {
        agg.doctor(id, await source.doctor({}));
      } catch {
        // an older agent, or a busy one: the panel simply says nothing
      }
      await sleep(o.doctorEveryMs ?? 15_000, stopPolls.signal);
    }
  })();
  const polls = (async () => {
    let fdsAt = -Infinity;
    let fdsOf = '';
    while (!stopPolls.signal.aborted) {
      agg.snapshot(id, await source.snapshot(), o.now());
      const pids = agg.listenerPids(id).slice(0, MAX_FD_PIDS);
      // A new listener process is read at once; the others every fdsEveryMs.
      if (o.readFds && (o.now() - fdsAt >= o.fdsEveryMs || pids.join() !== fdsOf)) {
        fdsAt = o.now();
        fdsOf = pids.join();
        const read = o.readFds;
        const facts = await Promise.all(pids.map((pid) => read(pid).catch(() => undefined)));
        const m = new Map<number, ProcessFds>();
        pids.forEach((pid, i) => {
          const f = facts[i];
          if (f) m.set(pid, f);
        });
        agg.fds(id, m);
      }
      await sleep(o.pollMs, stopPolls.signal);
    }
  })().catch((err: unknown) => {
    ended ??= reasonOf(err);
    stream.cancel();
  });
  const cancel = () => stream.cancel();
  o.signal.addEventListener('abort', cancel);
  try {
    for await (const msg of stream) {
      agg.watch(id, msg, o.now());
      const r = msg.response;
      if (r?.$case === 'status' && r.value.end) {
        ended ??= `the agent ended the stream (${r.value.message})`;
        break;
      }
    }
    ended ??= 'the agent closed the stream';
  } catch (err) {
    ended ??= reasonOf(err);
  } finally {
    o.signal.removeEventListener('abort', cancel);
    stopPolls.abort();
    stream.cancel();
    await polls;
    await doctorPolls;
  }
  return ended;
}

/**
 * Feeds one agent into the aggregator until `signal` aborts. An agent that
 * goes away is shown down, with why and when the next try is; never thrown.
 */
export async function runFeed(id: string, open: () => EventSource, agg: FeedSink, options: FeedOptions): Promise<void> {
  const o = {
    now: Date.now,
    pollMs: 1000,
    fdsEveryMs: 2000,
    doctorEveryMs: 15_000,
    backoffMs: 1000,
    maxBackoffMs: 15_000,
    ...options,
  };
  let delay = o.backoffMs;
  while (!o.signal.aborted) {
    const started = o.now();
    let reason: string;
    let source: EventSource | undefined;
    try {
      source = open();
      reason = await session(id, source, agg, o);
    } catch (err) {
      reason = reasonOf(err);
    } finally {
      source?.close();
    }
    if (o.signal.aborted) return;
    if (o.now() - started >= HEALTHY_MS) delay = o.backoffMs;
    agg.down(id, reason, o.now() + delay);
    await sleep(delay, o.signal);
    delay = Math.min(delay * 2, o.maxBackoffMs);
  }
}

