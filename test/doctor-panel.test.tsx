/** top's capacity panel summarises the agent's Doctor answer. */
import { render } from 'ink-testing-library';
import { expect, it } from 'vitest';
import { Aggregator } from '../src/aggregate/index.js';
import { ColorContext } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI } from '../src/ui/ui-state.js';
import { info, snapshot } from './fixtures/aggregate/build.js';

const T0 = 1_800_000_000_000;

function frame(agg: Aggregator): string {
  const view = agg.view(T0 + 1500, 10);
  const r = render(
    <ColorContext.Provider value={false}>
      <TopScreen view={view} ui={INITIAL_UI} width={160} height={30} nowMs={view.atMs} />
    </ColorContext.Provider>,
  );
  const f = r.lastFrame() ?? '';
  r.unmount();
  return f;
}

it('shows the failing checks of the agent, or that all are ok', () => {
  const agg = new Aggregator();
  agg.up('local', info('web1'));
  agg.snapshot('local', snapshot(T0), T0);
  agg.snapshot('local', snapshot(T0 + 1000), T0 + 1000);
  expect(frame(agg)).not.toContain('doctor:');
  const finding = (status: string, check: string) => ({ area: 'accept queue', check, status, value: '', limits: '', fix: [], evidence: '' });
  agg.doctor('local', { findings: [finding('fail', 'listener 127.0.0.1:8080'), finding('warn', 'net.ipv4.tcp_syncookies'), finding('ok', 'x')], status: 'fail', scope: '' });
  expect(agg.view(T0 + 1500, 10).capacity[0]!.doctor).toEqual({ fail: 1, warn: 1, first: 'accept queue: listener 127.0.0.1:8080' });
  expect(frame(agg)).toContain('doctor: 1 failing, 1 warnings (accept queue: listener 127.0.0.1:8080): run wstrace doctor for the fixes');
  agg.doctor('local', { findings: [finding('ok', 'x')], status: 'ok', scope: '' });
  expect(frame(agg)).toContain('doctor: all checks ok');
});
