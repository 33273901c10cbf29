/**
 * Replay: a recording seen through ReplaySource (the EventSource a live
 * agent's client also is) renders the same top screen, for the same moment,
 * as an aggregator that received the same stream live.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Aggregator, type TopView } from '../src/aggregate/index.js';
import { runFeed } from '../src/client/feed.js';
import { readRecording } from '../src/record/format.js';
import { ReplaySource } from '../src/record/replay.js';
import { ColorContext } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI } from '../src/ui/ui-state.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';

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
    const rec = spawn(process.execPath, [join(ROOT, 'bin/wstrace.js'), 'record', '-o', file, '--netns', ns.path, '--duration', '5'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    rec.stderr.on('data', (d: Buffer) => (err += d.toString()));
    while (!err.includes('recording into')) await once(rec.stderr, 'data');
    await ns.traffic('closed-port', 30, 7961);
    await ns.traffic('full-queue', 7962, 1, 5, 0.5);
    await ns.traffic('timewait', 4, 7963);
    await once(rec, 'exit');

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
    const stop = new AbortController();
    const feed = runFeed('replay', () => source, replayed, { signal: stop.signal, now: () => source.clock.now(), pollMs: 20 });
    await new Promise((r) => setTimeout(r, 300));
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
