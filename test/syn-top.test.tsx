/** top's listener rows with the SYN-stage tracepoint route's counts: SYN cookies and SYN-ACKs resent per second. No root needed. */
import { render } from 'ink-testing-library';
import { expect, it } from 'vitest';
import { Aggregator, type TopView } from '../src/aggregate/index.js';
import { ColorContext } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI } from '../src/ui/ui-state.js';
import { info, snapshot } from './fixtures/aggregate/build.js';

const T0 = 1_800_000_000_000;

/** Two snapshots 1 s apart: 40 cookies and 6 SYN-ACKs resent in between. */
function view(): TopView {
  const agg = new Aggregator();
  agg.addSource('local', { local: true });
  agg.up('local', info('web1', { synHook: true }));
  for (const [s, cookies, resent] of [
    [0, 10, 2],
    [1, 50, 8],
  ] as const) {
    const snap = snapshot(T0 + s * 1000, { listeners: [{ port: 8080, queue: 3, backlog: 128, pid: 7, comm: 'srv' }] });
    Object.assign(snap.listeners[0]!, { syncookiesSent: cookies, synackRetransmits: resent });
    agg.snapshot('local', snap, T0 + s * 1000);
  }
  return agg.view(T0 + 1000, 10);
}

function screen(v: TopView, width: number): string[] {
  const r = render(
    <ColorContext.Provider value={false}>
      <TopScreen view={v} ui={INITIAL_UI} width={width} height={30} nowMs={v.atMs} />
    </ColorContext.Provider>,
  );
  const frame = r.lastFrame() ?? '';
  r.unmount();
  return frame.split('\n');
}

it('wide terminals show SYN cookies and SYN-ACKs resent per second next to the listener', () => {
  const lines = screen(view(), 150);
  const header = lines.find((l) => l.includes('ADDRESS:PORT')) ?? '';
  expect(header).toMatch(/LIMIT BY +COOKIE\/s +RESENT\/s/);
  const row = lines.find((l) => l.includes('127.0.0.1:8080')) ?? '';
  expect(row).toMatch(/ backlog +40 +6\.0$/);
});
