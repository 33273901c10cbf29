/**
 * `wstrace top`: one screen that says why this host (or these hosts) refuse
 * or drop connections right now. A gRPC client either way: of an agent in
 * this process (root), or of the agents --connect names (no root needed).
 * One feed per agent (client/feed.ts) fills the aggregator the screen reads.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { Aggregator, type ProcessFdFacts } from '../aggregate/index.js';
import { connectAgent, type EventSource } from '../client/connect.js';
import { runFeed } from '../client/feed.js';
import { readProcessFds } from '../host/fds.js';
import { DEFAULT_EVENT_BUDGET, resolveCgroups, resolveNetns, type TracerOptions } from '../kernel/index.js';
import { UserError } from '../protocol/errors.js';
import type { CaptureAsk } from '../ui/ui-state.js';
import { cgroupOptions, clientOptions, criOptions, criWithConnect } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { catchStopSignals } from './signals.js';
import { openSource, type OpenedSource } from './source.js';
import { agentList, eventBudget, port, repeated, ringBytes, window } from './values.js';

export const topOptions = z.object({
  ...clientOptions.shape,
  /** Agents to read; none: start one in this process. */
  connect: flag(
    z
      .array(agentList)
      .transform((lists) => lists.flat())
      .default([]),
    { flags: '--connect <addr[,addr...]>', help: 'read running agents (unix:/PATH or tcp://HOST:PORT), one host column each' },
  ),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only trace this local or remote port (repeatable; in-process agent)' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'only trace this network namespace (in-process agent)' }),
  ...cgroupOptions.shape,
  ...criOptions.shape,
  window: flag(window.default(10), { flags: '--window <seconds>', help: 'rates over 1, 10 or 60 seconds (key w switches)' }),
  ringBytes: flag(ringBytes.optional(), { flags: '--ring-bytes <n>', help: 'kernel ring-buffer size in bytes (in-process agent)' }),
  eventBudget: flag(eventBudget.optional(), {
    flags: '--event-budget <n>',
    help: `events per second sent in full (default ${DEFAULT_EVENT_BUDGET}), beyond it exact summaries; 0 sends every event (in-process agent)`,
  }),
});

export type TopOptions = z.infer<typeof topOptions>;

export interface TopIo {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WritableStream;
}

export const NO_TTY =
  'top draws a live screen and needs a terminal; to read events in a pipe or a log, use `wstrace watch` (or `wstrace watch --json`).';

/** The agent in this process is closed once, at the end, not by each reconnect. */
function kept(source: EventSource): EventSource {
  return { ...source, close: () => undefined };
}

async function readFds(pid: number): Promise<ProcessFdFacts | undefined> {
  const f = await readProcessFds(pid);
  return f ? { open: f.open, limit: f.soft } : undefined;
}

export async function runTop(opts: TopOptions, io: TopIo): Promise<number> {
  if (
    opts.connect.length &&
    (opts.ports.length || opts.netns !== undefined || opts.cgroups.length || opts.ringBytes !== undefined || opts.eventBudget !== undefined)
  ) {
    // A remote agent's snapshots (listeners, MIB, sockstat) cover its own scope: filtering only its events here would skew the figures.
    throw new UserError(
      '--port, --netns, --cgroup, --ring-bytes and --event-budget shape an agent top starts itself; with --connect, press / in the screen to filter by port or address, or give them to `wstrace agent`.',
    );
  }
  if (opts.connect.length && opts.criSocket) throw new UserError(criWithConnect('top'));
  // Checked before anything is loaded: a namespace that is not one, or no screen to draw on, is said before BPF is attached.
  if (opts.netns !== undefined) resolveNetns(opts.netns);
  resolveCgroups(opts.cgroups);
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
      ...(opts.eventBudget !== undefined ? { eventBudget: opts.eventBudget } : {}),
      ...(opts.cgroups.length ? { cgroups: opts.cgroups } : {}),
    };
    local = await openSource({ tls: opts.tls, tracer, ...(opts.criSocket ? { criSocket: opts.criSocket } : {}) });
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
  const signals = catchStopSignals();
  try {
    await Promise.race([screen.quit, signals.stopped]);
  } finally {
    signals.off();
    await screen.close();
    stop.abort();
    // A poll in flight to a remote agent may wait out its deadline: do not wait for it.
    await Promise.race([Promise.allSettled(running), new Promise((r) => setTimeout(r, 1500).unref())]);
    await local?.close('top stopped');
  }
  return 0;
}

/** Adds `top` to the program; `onAction` receives what to run, as for the other commands. */
export function registerTop(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    {
      name: 'top',
      description: 'live screen: full accept queues, drops, resets, TIME_WAIT, capacity (root, or --connect to agents)',
      options: topOptions,
    },
    onAction,
    (o) => runTop(o, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }),
  );
}
