/**
 * `wstrace top`: one screen that says why this host (or these hosts) refuse
 * or drop connections right now. A gRPC client either way: of an agent in
 * this process (root), or of the agents --connect names (no root needed).
 *
 * Here is the I/O the aggregator must not do: one feed per agent (GetInfo,
 * one Watch stream, a Snapshot a second, reconnect with backoff when it goes
 * away) and, for an agent in this process, the fds of listener processes.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { Aggregator, WINDOWS, type ProcessFdFacts, type WindowSec } from '../aggregate/index.js';
import { connectAgent, type ClientTls, type EventSource } from '../client/connect.js';
import { readProcessFds } from '../host/fds.js';
import { UserError, type TracerOptions } from '../kernel/index.js';
import type { CaptureAsk } from '../ui/ui-state.js';
import { parsePort, parseRingBytes } from './parse.js';
import { openSource, type OpenedSource } from './source.js';

export interface TopOptions {
  /** Agents to read; none: start one in this process. */
  readonly connect: readonly string[];
  readonly tls: ClientTls;
  readonly ports: readonly number[];
  readonly netns?: string;
  readonly ringBytes?: number;
  readonly window: WindowSec;
}

export interface TopIo {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WritableStream;
}

export const NO_TTY =
  'top draws a live screen and needs a terminal; to read events in a pipe or a log, use `wstrace watch` (or `wstrace watch --json`).';

export interface FeedOptions {
  readonly signal: AbortSignal;
  readonly now?: () => number;
  /** Snapshot poll interval. */
  readonly pollMs?: number;
  /** How often the agent's Doctor checklist is asked for. */
  readonly doctorEveryMs?: number;
  /** How often the fds of listener processes are read (local agents only). */
  readonly fdsEveryMs?: number;
  readonly readFds?: (pid: number) => Promise<ProcessFdFacts | undefined>;
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
async function session(id: string, source: EventSource, agg: Aggregator, o: Required<Omit<FeedOptions, 'readFds'>> & FeedOptions): Promise<string> {
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
        const m = new Map<number, ProcessFdFacts>();
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
export async function runFeed(id: string, open: () => EventSource, agg: Aggregator, options: FeedOptions): Promise<void> {
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

/** The agent in this process is closed once, at the end, not by each reconnect. */
function kept(source: EventSource): EventSource {
  return { ...source, close: () => undefined };
}

async function readFds(pid: number): Promise<ProcessFdFacts | undefined> {
  const f = await readProcessFds(pid);
  return f ? { open: f.open, limit: f.soft } : undefined;
}

export async function runTop(opts: TopOptions, io: TopIo): Promise<number> {
  if (opts.connect.length && (opts.ports.length || opts.netns !== undefined || opts.ringBytes !== undefined)) {
    // A remote agent's snapshots (listeners, MIB, sockstat) cover its own scope: filtering only its events here would skew the figures.
    throw new UserError(
      '--port, --netns and --ring-bytes shape an agent top starts itself; with --connect, press / in the screen to filter by port or address, or give them to `wstrace agent`.',
    );
  }
  // Checked before anything is loaded: no point attaching BPF for a screen that cannot be drawn.
  if (!io.stdin.isTTY || !io.stdout.isTTY) {
    io.stderr.write(`wstrace: ${NO_TTY}\n`);
    return 1;
  }
  const agg = new Aggregator();
  const feeds: Array<{ id: string; open: () => EventSource; local: boolean }> = [];
  let local: OpenedSource | undefined;
  if (opts.connect.length) {
    for (const address of opts.connect) {
      agg.addSource(address);
      feeds.push({ id: address, open: () => connectAgent(address, opts.tls), local: false });
    }
  } else {
    const tracer: TracerOptions = {
      ports: [...opts.ports],
      ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
      ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
    };
    local = await openSource({ tls: opts.tls, tracer });
    agg.addSource('local', { local: true });
    const source = kept(local.source);
    feeds.push({ id: 'local', open: () => source, local: true });
  }

  const stop = new AbortController();
  const running = feeds.map((f) => runFeed(f.id, f.open, agg, { signal: stop.signal, ...(f.local ? { readFds } : {}) }));
  // `c`: the row's agent runs the capture (a fresh client: the feed's may be reconnecting).
  const onCapture = async (ask: CaptureAsk): Promise<string> => {
    const feed = feeds.find((f) => f.id === ask.source);
    if (!feed) return `capture: no agent ${ask.source}`;
    const source = feed.open();
    try {
      if (!source.startCapture) return 'capture: this source cannot capture';
      const c = await source.startCapture({ ...(ask.port ? { port: ask.port } : {}), ...(ask.host ? { host: ask.host } : {}) });
      return c.state === 'refused' ? `capture of ${ask.label} refused: ${c.error}` : `capture of ${ask.label} running: ${c.file}`;
    } finally {
      if (!feed.local) source.close();
    }
  };
  // Ink and React load only for a screen: the agent and the other commands never draw.
  const { openScreen } = await import('../ui/screen.js');
  const screen = openScreen({
    onCapture,
    getView: (window, now) => agg.view(now, window),
    stdin: io.stdin,
    stdout: io.stdout,
    window: opts.window,
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  let onSignal!: () => void;
  const signalled = new Promise<void>((resolve) => (onSignal = resolve));
  for (const s of signals) process.on(s, onSignal);
  try {
    await Promise.race([screen.quit, signalled]);
  } finally {
    for (const s of signals) process.off(s, onSignal);
    await screen.close();
    stop.abort();
    // A poll in flight to a remote agent may wait out its deadline: do not wait for it.
    await Promise.race([Promise.allSettled(running), new Promise((r) => setTimeout(r, 1500).unref())]);
    await local?.close('top stopped');
  }
  return 0;
}

function parseWindow(value: string): WindowSec {
  const n = Number(value.replace(/s$/, ''));
  if (!(WINDOWS as readonly number[]).includes(n)) throw new InvalidArgumentError('the window is 1, 10 or 60 seconds.');
  return n as WindowSec;
}

function parseConnect(value: string, previous: string[] | undefined): string[] {
  const list = value.split(',').map((a) => a.trim()).filter(Boolean);
  if (list.length === 0) throw new InvalidArgumentError('give one or more agent addresses: unix:/PATH or tcp://HOST:PORT, comma-separated.');
  return [...(previous ?? []), ...list];
}

/** Adds `top` to the program; `onAction` receives what to run, as for the other commands. */
export function registerTop(program: Command, onAction: (run: () => Promise<number>) => void): void {
  program
    .command('top')
    .description('live screen: full accept queues, drops, resets, TIME_WAIT, capacity (root, or --connect to agents)')
    .option('--connect <addr[,addr...]>', 'read running agents (unix:/PATH or tcp://HOST:PORT), one host column each', parseConnect)
    .option('--tls-ca <file>', 'CA certificate that signed the agent certificates (tcp://)')
    .option('--tls-cert <file>', 'client certificate, for agents that require mTLS')
    .option('--tls-key <file>', 'client key, for agents that require mTLS')
    .option('--insecure', 'plain TCP to the agents, no TLS')
    .option('--port <n>', 'only trace this local or remote port (repeatable; in-process agent)', parsePort)
    .option('--netns <name|path>', 'only trace this network namespace (in-process agent)')
    .option('--window <seconds>', 'rates over 1, 10 or 60 seconds (key w switches)', parseWindow, 10 as WindowSec)
    .addOption(new Option('--ring-bytes <n>', 'kernel ring-buffer size in bytes (in-process agent)').argParser(parseRingBytes))
    .action(
      (o: {
        connect?: string[];
        tlsCa?: string;
        tlsCert?: string;
        tlsKey?: string;
        insecure?: boolean;
        port?: number[];
        netns?: string;
        window: WindowSec;
        ringBytes?: number;
      }) => {
        onAction(() =>
          runTop(
            {
              connect: o.connect ?? [],
              tls: {
                ...(o.tlsCa ? { ca: o.tlsCa } : {}),
                ...(o.tlsCert ? { cert: o.tlsCert } : {}),
                ...(o.tlsKey ? { key: o.tlsKey } : {}),
                ...(o.insecure ? { insecure: true } : {}),
              },
              ports: o.port ?? [],
              window: o.window,
              ...(o.netns !== undefined ? { netns: o.netns } : {}),
              ...(o.ringBytes !== undefined ? { ringBytes: o.ringBytes } : {}),
            },
            { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
          ),
        );
      },
    );
}
