/**
 * `wstrace replay FILE`: a recording in the `top` screen, through the same
 * EventSource interface the gRPC client implements, on the recording's own
 * clock: space pauses, ] and [ step a second, j jumps to the worst second.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { Aggregator, type WindowSec } from '../aggregate/index.js';
import { describeDamage } from '../record/format.js';
import { indexRecording } from '../record/recording-index.js';
import { ReplaySource } from '../record/replay.js';
import { runFeed } from '../client/feed.js';
import type { TopIo } from './top.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { RECORDING } from './record.js';
import { catchStopSignals } from './signals.js';
import { speed } from './values.js';

export const replayOptions = z.object({
  speed: flag(speed.default(1), { flags: '--speed <x>', help: 'how fast the recording plays (2, 10x …)' }),
});

/** What the screen's longest window needs behind a moment. */
const PRIME_MS = 65_000;

export async function runReplay(file: string, opts: { speed: number; window: WindowSec }, io: TopIo): Promise<number> {
  const rec = await indexRecording(file);
  if (!io.stdin.isTTY || !io.stdout.isTTY) {
    io.stderr.write(`wstrace: replay draws the top screen and needs a terminal; for the same recording as text, use \`wstrace report ${file}\`.\n`);
    return 1;
  }
  const source = new ReplaySource(rec, opts.speed);
  const clock = source.clock;
  const worst = rec.report.worst[0];
  // A jump rebuilds the screen from the recording, as live top would have seen it up to there.
  let agg = new Aggregator();
  let stop = new AbortController();
  let feed: Promise<void> = Promise.resolve();
  const info = await source.info();
  const restart = () => {
    stop.abort();
    stop = new AbortController();
    agg = new Aggregator();
    agg.addSource('replay');
    agg.up('replay', info);
    const a = agg;
    source.prime(clock.now(), PRIME_MS, { watch: (m, t) => a.watch('replay', m, t), snapshot: (x, t) => a.snapshot('replay', x, t) });
    feed = runFeed('replay', () => ({ info: () => source.info(), snapshot: () => source.snapshot(), watch: (r) => source.watch(r), close: () => undefined }), a, {
      signal: stop.signal,
      now: () => clock.now(),
      pollMs: Math.max(50, 1000 / opts.speed),
    });
  };
  restart();
  const at = () => new Date(clock.now()).toISOString().slice(11, 19);
  // Ink and React load only for a screen: the agent and the other commands never draw.
  const { openScreen } = await import('../ui/screen.js');
  const screen = openScreen({
    getView: (window) => agg.view(clock.now(), window),
    now: () => clock.now(),
    stdin: io.stdin,
    stdout: io.stdout,
    window: opts.window,
    onExtraKey: (k) => {
      switch (k) {
        case ' ':
        case 'p':
          clock.togglePause();
          return clock.paused ? `replay paused at ${at()} (] [ step, j worst second)` : `replaying from ${at()}`;
        case ']':
          clock.step(1000);
          return `replay at ${at()} (paused)`;
        case '[':
          clock.step(-1000);
          restart();
          return `replay at ${at()} (paused)`;
        case 'j':
          if (!worst) return 'replay: no drops or resets in this recording';
          clock.jump(worst.timeMs + 999, true); // the end of that second: its snapshot is in
          restart();
          return `worst second ${at()}: ${worst.drops} drops, ${worst.resetsSent + worst.resetsReceived} resets (paused)`;
        default:
          return undefined;
      }
    },
  });
  // A person quitting a replay by signal (Ctrl-C outside raw mode, kill, a closed terminal) is done with it: exit 0 as for q.
  const signals = catchStopSignals();
  try {
    await Promise.race([screen.quit, signals.stopped]);
  } finally {
    signals.off();
    await screen.close();
    stop.abort();
    source.close();
    await Promise.race([feed, new Promise((r) => setTimeout(r, 1000).unref())]);
  }
  const note = describeDamage(file, rec.damage, !rec.info);
  if (note) io.stderr.write(`wstrace: ${note}\n`);
  return 0;
}

export function registerReplay(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    {
      name: 'replay',
      description: 'a recording in the top screen (space pause, ] [ step, j worst second, q quit); no root needed',
      options: replayOptions,
      args: [RECORDING],
    },
    onAction,
    (o, [file]) => runReplay(file!, { speed: o.speed, window: 10 }, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }),
  );
}
