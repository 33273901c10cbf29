/** The top screen rendered to a string, read as a person would read it. No root needed. */
import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Aggregator, type TopView } from '../src/aggregate/index.js';
import { App } from '../src/ui/App.js';
import { fit, fitColumns } from '../src/ui/columns.js';
import { compact, perSec } from '../src/ui/format.js';
import { ColorContext, colorFromEnv, levelColor } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI, onKey, type UiState } from '../src/ui/ui-state.js';
import { info, replay, snapshot } from './fixtures/aggregate/build.js';
import { until } from './helpers/until.js';

const T0 = 1_800_000_000_000;

/** The recorded real run, 5 s in: a backlog-1 listener full, SYN-stage drops, closed-port resets, TIME_WAIT. */
function recordedView(window: 1 | 10 | 60 = 10): TopView {
  const agg = new Aggregator();
  agg.addSource('local', { local: true });
  const at = replay(agg, 'local', 'full-queue.json', T0, 5200);
  agg.fds('local', new Map(agg.listenerPids('local').map((pid) => [pid, { open: 14, limit: 1024 }])));
  return agg.view(at + 300, window);
}

function twoHostView(): TopView {
  const agg = new Aggregator();
  for (const [id, host] of [
    ['unix:/run/a.sock', 'web1'],
    ['unix:/run/b.sock', 'web2'],
  ] as const) {
    agg.up(id, info(host));
    for (const s of [0, 1]) {
      agg.snapshot(
        id,
        snapshot(T0 + s * 1000, {
          listeners: [{ port: host === 'web1' ? 8080 : 443, queue: host === 'web1' ? 129 : 3, backlog: 128, pid: 7, comm: 'srv' }],
          totals: { resetsSent: s * 3 },
        }),
        T0 + s * 1000,
      );
    }
  }
  agg.addSource('unix:/run/c.sock');
  agg.down('unix:/run/c.sock', 'unreachable', T0 + 4000);
  return agg.view(T0 + 1000, 10);
}

function screen(view: TopView, opts: { ui?: Partial<UiState>; width?: number; height?: number; color?: boolean } = {}): string[] {
  const r = render(
    <ColorContext.Provider value={opts.color ?? false}>
      <TopScreen view={view} ui={{ ...INITIAL_UI, ...opts.ui }} width={opts.width ?? 80} height={opts.height ?? 24} nowMs={view.atMs} />
    </ColorContext.Provider>,
  );
  const frame = r.lastFrame() ?? '';
  r.unmount();
  return frame.split('\n');
}

const lineWith = (lines: string[], text: string) => lines.find((l) => l.includes(text)) ?? '';

describe('TopScreen at 80×24', () => {
  it('names the full listener, its queue 2/1 with a marker, its drops and owner; resets and TIME_WAIT below', () => {
    const lines = screen(recordedView());
    expect(lines.length).toBeLessThanOrEqual(23); // one screen, one line short of the terminal
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);

    expect(lines[0]).toMatch(/^wstrace top vm +hooks 5\/7 live +lost 0 +sample 0\.3s/);
    const row = lineWith(lines, '127.0.0.1:8080');
    expect(row).toMatch(/python3\[\d+\]/);
    expect(row).toMatch(/ 2\/1! /); // queue over its limit, marked without colour
    expect(row).toMatch(/ 9\.8~! /); // SYN-stage drops/s, attributed, over
    expect(row).toMatch(/ 14\/1k$/); // fds of the listening process
    expect(lineWith(lines, '~ SYN-stage drops attributed')).not.toBe('');

    expect(lineWith(lines, 'RESETS')).toMatch(/sent 5\.9\/s +received 5\.9\/s/);
    expect(lineWith(lines, 'NO_SOCKET')).toMatch(/sent NO_SOCKET +5\.9/);
    expect(lineWith(lines, 'NO_SOCKET')).toMatch(/ephemeral +5\.9/);
    expect(lineWith(lines, ' 9000 ')).not.toBe('');
    expect(lineWith(lines, '127.0.0.1:8081')).toMatch(/127\.0\.0\.1:8081 +10 +<\.1% +2\.0$/);
    expect(lineWith(lines, 'TIME_WAIT')).toMatch(/made 2\.0\/s +now 10 +overflow 0\/s +ports 32768-60999/);
    expect(lineWith(lines, 'python3[')).not.toBe('');
    expect(lines.at(-1)).toMatch(/^q quit +tab panel/);
  });

  it('the listener panel has the keyboard first: its title and the selected row are marked', () => {
    const lines = screen(recordedView());
    expect(lineWith(lines, 'LISTENERS')).toMatch(/^▸LISTENERS +1 shown, 1 full/);
    expect(lineWith(lines, '127.0.0.1:8080').startsWith('>')).toBe(true);
  });

  it('colour says the level, unless NO_COLOR; the marks stay either way', () => {
    expect([levelColor('over', true), levelColor('warn', true), levelColor('ok', true)]).toEqual(['red', 'yellow', undefined]);
    expect(levelColor('over', false)).toBeUndefined();
    expect(colorFromEnv({})).toBe(true);
    expect(colorFromEnv({ NO_COLOR: '1' })).toBe(false);
    expect(lineWith(screen(recordedView(), { color: true }), '127.0.0.1:8080')).toMatch(/ 2\/1! /);
  });

  it('wide terminals get more columns, and resets next to TIME_WAIT from 160 columns', () => {
    const wide = screen(recordedView(), { width: 130, height: 30 });
    expect(lineWith(wide, 'ADDRESS:PORT')).toMatch(/FULL\/s.*NETNS +LIMIT BY/);
    expect(lineWith(wide, 'tcp_mem LOW/PRESS/HIGH')).not.toBe('');
    const wider = screen(recordedView(), { width: 170, height: 30 });
    expect(lineWith(wider, 'RESETS')).toMatch(/RESETS.*TIME_WAIT/);
  });

  it('several hosts: a host column, each host’s status line, and a host that is down says so', () => {
    const lines = screen(twoHostView());
    expect(lines[0]).toMatch(/hosts 2\/3 up!/);
    expect(lineWith(lines, ' web1 ')).toMatch(/hooks 3\/3 live|hooks 2\/3 live/);
    expect(lineWith(lines, ' c.sock')).toMatch(/DOWN: unreachable, retry in 3s/);
    expect(lineWith(lines, ':8080')).toMatch(/^.web1 +127\.0\.0\.1:8080 .* 129\/128! /);
    expect(lineWith(lines, ':443')).toMatch(/^.web2 +127\.0\.0\.1:443 .* 3\/128 /);
    // Remote agents: fds are not readable from here (the column makes room first at 80 columns).
    expect(lineWith(lines, 'ADDRESS:PORT')).not.toMatch(/FDS/);
    expect(lineWith(screen(twoHostView(), { width: 100 }), ':8080')).toMatch(/ n\/a$/);
    expect(lines.findIndex((l) => l.includes(':8080'))).toBeLessThan(lines.findIndex((l) => l.includes(':443')));
  });

  it('help replaces the panels and explains the marks', () => {
    const lines = screen(recordedView(), { ui: { help: true } });
    expect(lineWith(lines, 'SYN-stage drops attributed from the MIB')).toMatch(/^ +~ /);
    expect(lineWith(lines, 'LISTENERS')).toBe('');
  });

  it('a filter keeps matching rows and says so', () => {
    const none = screen(recordedView(), { ui: { filter: '9999' } });
    expect(lineWith(none, 'LISTENERS')).toMatch(/0 matching/);
    expect(lineWith(none, 'no listener matches the filter')).not.toBe('');
    expect(none.at(-1)).toMatch(/filter 9999/);
    const some = screen(recordedView(), { ui: { filter: '8080' } });
    expect(lineWith(some, '127.0.0.1:8080')).not.toBe('');
    expect(lineWith(some, '127.0.0.1:8081')).toBe(''); // the TIME_WAIT destination is filtered out
  });

  it('before the first snapshot: no rows, nothing made up', () => {
    const agg = new Aggregator();
    agg.addSource('local', { local: true });
    agg.up('local', info('h'));
    const lines = screen(agg.view(T0, 10));
    expect(lineWith(lines, 'no listening sockets seen yet')).not.toBe('');
    expect(lineWith(lines, 'waiting for the first snapshot')).not.toBe('');
    expect(lines[0]).toMatch(/sample -/);
  });
});

describe('keys', () => {
  const view = recordedView();
  const press = (ui: UiState, ...keys: Array<[string, Parameters<typeof onKey>[2]?]>) =>
    keys.reduce((u, [input, key]) => onKey(u, input, key ?? {}, view, 0).ui, ui);

  it('tab and shift-tab move between panels; ↑/↓ stay within the rows', () => {
    expect(press(INITIAL_UI, ['', { tab: true }]).panel).toBe('resets');
    expect(press(INITIAL_UI, ['', { tab: true, shift: true }]).panel).toBe('capacity');
    const resets = press(INITIAL_UI, ['', { tab: true }], ['', { downArrow: true }], ['', { downArrow: true }], ['', { downArrow: true }]);
    expect(resets.selected.resets).toBe(2); // one peer, two ports: the last
    expect(press(resets, ['', { upArrow: true }]).selected.resets).toBe(1);
  });

  it('c on a selection asks for a capture of that listener or peer, on its agent', () => {
    const listener = onKey(INITIAL_UI, 'c', {}, view, 0);
    expect(listener.capture).toMatchObject({ label: 'listener 127.0.0.1:8080', port: 8080 });
    expect(listener.ui.message?.text).toBe('capture: asking for listener 127.0.0.1:8080…');
    const peer = onKey(press(INITIAL_UI, ['', { tab: true }]), 'c', {}, view, 0);
    expect(peer.capture).toMatchObject({ label: 'peer 127.0.0.1', host: '127.0.0.1' });
    expect(onKey(press(INITIAL_UI, ['', { tab: true, shift: true }]), 'c', {}, view, 0).capture).toBeUndefined();
  });

  it('s cycles the sort, / edits a filter (enter applies, esc cancels), p pauses, w changes the window', () => {
    expect(press(INITIAL_UI, ['s']).sort.listeners).toBe(1);
    const typing = press(INITIAL_UI, ['/'], ['8'], ['0'], ['8'], ['1'], ['', { backspace: true }]);
    expect(typing.editing).toBe('808');
    expect(press(typing, ['', { return: true }])).toMatchObject({ filter: '808', editing: undefined });
    expect(press(typing, ['', { escape: true }])).toMatchObject({ filter: '', editing: undefined });
    expect(press(INITIAL_UI, ['q'], ['p']).paused).toBe(true); // q is reported, not applied
    expect(press(INITIAL_UI, ['w']).window).toBe(60);
    expect(press(INITIAL_UI, ['w'], ['w']).window).toBe(1);
    expect(onKey(INITIAL_UI, 'q', {}, view, 0).quit).toBe(true);
    expect(onKey(INITIAL_UI, 'c', { ctrl: true }, view, 0).quit).toBe(true);
    expect(onKey({ ...INITIAL_UI, editing: '' }, 'q', {}, view, 0).quit).toBeUndefined(); // typing a filter
  });
});

describe('App with a terminal', () => {
  afterEach(() => vi.useRealTimers());

  it('reads keys from stdin, redraws from the view source, and reports quit', async () => {
    const view = recordedView();
    let calls = 0;
    const windows: number[] = [];
    const onQuit = vi.fn();
    const r = render(
      <ColorContext.Provider value={false}>
        <App
          getView={(w) => {
            calls++;
            windows.push(w);
            return view;
          }}
          onQuit={onQuit}
          onCapture={async (ask) => `capture of ${ask.label} running: /var/lib/wstrace/captures/x.pcap`}
          refreshMs={20}
          now={() => view.atMs}
          size={{ columns: 80, rows: 24 }}
        />
      </ColorContext.Provider>,
    );
    // A loaded machine can take longer than any fixed sleep to redraw: wait for what a person would see, bounded.
    const shows = (what: string, accept: (frame: string) => boolean) => until(() => r.lastFrame() ?? '', { what, accept, everyMs: 10 });
    await shows('the listener row', (f) => f.includes('127.0.0.1:8080'));
    await until(() => calls, { what: 'a second call of the view source', accept: (n) => n > 1, everyMs: 10 });

    r.stdin.write('/8080\r'); // typed fast: one chunk
    await shows('the filter in the footer', (f) => /filter 8080/.test(f));

    r.stdin.write('c');
    // The footer truncates at 80 columns.
    await shows('the capture message', (f) => f.includes('capture of listener 127.0.0.1:8080 running: /var/lib/wstrace/cap'));

    r.stdin.write('p');
    await shows('PAUSED', (f) => f.includes('PAUSED'));
    const paused = calls;
    // Paused means no call for several refresh periods (20 ms each): an absence can only be checked over time.
    // The timer may fire once between the PAUSED frame and React's effect clean-up; after that, none.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const settled = calls;
    expect(settled - paused).toBeLessThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(settled);

    r.stdin.write('w');
    r.stdin.write('p');
    await until(() => windows.at(-1), { what: 'the view asked for the 60 s window', accept: (w) => w === 60, everyMs: 10 });
    await shows('PAUSED gone', (f) => !f.includes('PAUSED'));

    r.stdin.write('\t');
    await shows('the resets panel marked', (f) => /▸RESETS/.test(f));

    r.stdin.write('q');
    await until(() => onQuit.mock.calls.length, { what: 'onQuit called', accept: (n) => n >= 1, everyMs: 10 });
    expect(onQuit).toHaveBeenCalledTimes(1);
    r.unmount();
  });
});

describe('pieces', () => {
  it('numbers fit their columns', () => {
    expect([perSec(undefined), perSec(0), perSec(0.01), perSec(9.84), perSec(12.4), perSec(15300)]).toEqual(['-', '0', '<.1', '9.8', '12', '15k']);
    expect([compact(950), compact(1024), compact(20480), compact(1_048_576), compact(Infinity)]).toEqual(['950', '1k', '20k', '1M', '∞']);
    expect(fit('2001:db8:0:0:0:0:0:1:8080', 14)).toBe('2001:db…1:8080');
    expect(fit('2/1!', 7, 'right')).toBe('   2/1!');
  });

  it('columns drop by priority to fit, and the flexible one takes the rest', () => {
    const cols = fitColumns(
      [
        { title: 'A', width: 10, flex: true, cell: () => '' },
        { title: 'B', width: 30, priority: 1, cell: () => '' },
        { title: 'C', width: 30, cell: () => '' },
      ],
      60,
    );
    expect(cols.map((c) => [c.title, c.width])).toEqual([
      ['A', 27],
      ['C', 30],
    ]);
  });

  it('the frame is one line shorter than any terminal from 80×24 up; panels share the rows by size', () => {
    // Three hosts with 17 rows each for every panel: more than any of these terminals can show.
    const agg = new Aggregator();
    for (const h of ['a', 'b', 'c']) {
      const id = `unix:/run/${h}.sock`;
      agg.up(id, info(`web-${h}`));
      for (const s of [0, 1]) {
        agg.snapshot(
          id,
          snapshot(T0 + s * 1000, {
            listeners: Array.from({ length: 17 }, (_, i) => ({ port: 8000 + i, queue: i, backlog: 128, pid: 7, comm: 'srv' })),
            resets: Array.from({ length: 17 }, (_, i) => ({ direction: 'sent' as const, localPort: 9000 + i, reason: 'NO_SOCKET', count: s * (i + 1) })),
            timewait: Array.from({ length: 17 }, (_, i) => ({ addr: `10.0.0.${i + 1}`, port: 443, created: s * (i + 1), current: s * (i + 1) })),
          }),
          T0 + s * 1000,
        );
      }
    }
    const view = agg.view(T0 + 1000, 10);
    /** Rows of a panel: between its title line and the next panel's, less the title and the column titles. */
    const rows = (lines: string[], title: RegExp, next: RegExp) => lines.findIndex((l) => next.test(l)) - lines.findIndex((l) => title.test(l)) - 2;
    for (const [width, height, listeners, resets, timewait] of [
      [80, 24, 3, 2, 2],
      [100, 30, 6, 4, 3],
      [200, 60, 23, 22, 22], // resets and TIME_WAIT side by side, same rows
    ] as const) {
      const lines = screen(view, { width, height });
      const at = `${width}×${height}`;
      expect(lines.length, at).toBe(height - 1);
      expect(Math.max(...lines.map((l) => l.length)), at).toBeLessThan(width);
      expect(lines.slice(1, 4).map((l) => l.slice(0, 21)), at).toEqual([' web-a hooks 2/3 live', ' web-b hooks 2/3 live', ' web-c hooks 2/3 live']);
      expect(rows(lines, /^.LISTENERS/, /^ RESETS/), at).toBe(listeners);
      if (width >= 160) {
        expect(lines.find((l) => l.startsWith(' RESETS')), at).toMatch(/TIME_WAIT/);
        expect(rows(lines, /^ RESETS/, /^ CAPACITY/), at).toBe(resets);
      } else {
        expect(rows(lines, /^ RESETS/, /^ TIME_WAIT/), at).toBe(resets);
        expect(rows(lines, /^ TIME_WAIT/, /^ CAPACITY/), at).toBe(timewait);
      }
      expect(rows(lines, /^ CAPACITY/, /^q quit/), at).toBe(3);
      expect(lines.at(-1), at).toMatch(/^q quit +tab panel/);
    }
  });
});
