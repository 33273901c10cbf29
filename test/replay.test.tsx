/**
 * Replay: a recording seen through ReplaySource (the EventSource a live
 * agent's client also is) renders the same top screen, for the same moment,
 * as an aggregator that received the same stream live.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Aggregator, type TopView } from '../src/aggregate/index.js';
import type { EventSource } from '../src/client/connect.js';
import { runFeed } from '../src/client/feed.js';
import { readRecording } from '../src/record/format.js';
import { ReplaySource } from '../src/record/replay.js';
import { ColorContext } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI } from '../src/ui/ui-state.js';
import { spawnCli } from './helpers/cli.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

function frame(view: TopView): string {
  const r = render(
    <ColorContext.Provider value={false}>
      <TopScreen view={view} ui={INITIAL_UI} width={120} height={30} nowMs={view.atMs} />
    </ColorContext.Provider>,
  );
  const f = r.lastFrame() ?? '';
  r.unmount();
  return f;
}

describeKernel('wstrace replay', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-replay');
    dir = mkdtempSync(join(tmpdir(), 'wst-replay-'));
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT });
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders the same screen for the same moment as the live stream did', async () => {
    const file = join(dir, 'r.wsr');
    const rec = spawnCli(['record', '-o', file, '--netns', ns.path, '--duration', '5'], { stdout: 'ignore' });
    await rec.waitStderr('recording into');
    await ns.traffic('closed-port', 30, 7961);
    await ns.traffic('full-queue', 7962, 1, 5, 0.5);
    await ns.traffic('timewait', 4, 7963);
    expect(await rec.closed, rec.stderr()).toBe(0); // --duration ended it

    const recording = readRecording(file);
    const entries = recording.entries;
    const header = entries.find((e) => e.entry?.$case === 'header')!;
    const info = header.entry?.$case === 'header' ? header.entry.value.info! : undefined;
    const snaps = entries.filter((e) => e.entry?.$case === 'snapshot').map((e) => e.timeUnixMicros / 1000);
    const T = snaps.at(-2)! + 1; // a moment inside the recording, after a snapshot

    // Live: what a client of the agent received, at the times it received it.
    const live = new Aggregator();
    live.addSource('replay');
    live.up('replay', info!);
    for (const e of entries) {
      const t = e.timeUnixMicros / 1000;
      if (t > T) break;
      if (e.entry?.$case === 'watch') live.watch('replay', e.entry.value, t);
      if (e.entry?.$case === 'snapshot') live.snapshot('replay', e.entry.value, t);
    }

    // Replayed: through the EventSource, paused at T, as `wstrace replay` builds it.
    const source = new ReplaySource(recording);
    source.clock.jump(T, true);
    const replayed = new Aggregator();
    replayed.addSource('replay');
    replayed.up('replay', await source.info());
    source.prime(T, 65_000, { watch: (m, t) => replayed.watch('replay', m, t), snapshot: (s, t) => replayed.snapshot('replay', s, t) });
    // The same source, counting the feed's snapshot polls.
    let polls = 0;
    const counted: EventSource = {
      info: () => source.info(),
      snapshot: () => source.snapshot().finally(() => polls++),
      watch: (req) => source.watch(req),
      close: () => source.close(),
    };
    const stop = new AbortController();
    const feed = runFeed('replay', () => counted, replayed, { signal: stop.signal, now: () => source.clock.now(), pollMs: 20 });
    // Stop once the feed has delivered a snapshot poll and taken the next: the view at T is then what replay shows.
    await until(() => polls, { what: 'two snapshot polls by the replay feed', accept: (n) => n >= 2 });
    stop.abort();
    source.close();
    await feed;

    const a = frame(live.view(T, 10));
    const b = frame(replayed.view(T, 10));
    expect(a).toContain('127.0.0.1:7962');
    expect(b).toBe(a);

    // And the report of the same file agrees with itself over the CLI.
    const report = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bin/wstrace.js'), 'report', file, '--json'], { encoding: 'utf8' })) as {
      totals: { resetsSent: number };
    };
    expect(report.totals.resetsSent).toBeGreaterThanOrEqual(30);
  });
});
