/**
 * `top` on a host with containers: the listener, reset-peer and TIME_WAIT
 * rows say whose they are (pod or container), and `/` matches pod,
 * namespace and container names as it matches addresses. Rendered to a
 * string as a person reads it; no root needed.
 */
import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { Aggregator, type TopView } from '../src/aggregate/index.js';
import { EventKind, type SnapshotResponse, type WatchResponse } from '../src/generated/wstrace/v1/tracer.js';
import { workloadLabel } from '../src/ui/format.js';
import { ColorContext } from '../src/ui/theme.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { INITIAL_UI, listenerRowsOf, peerRowsOf, type UiState } from '../src/ui/ui-state.js';
import { info, NETNS, snapshot } from './fixtures/aggregate/build.js';

const T0 = 1_800_000_000_000;
const SHOP = { container: 'a1b2c3d4e5f6' + '0'.repeat(52), containerName: 'web', pod: 'shop-7d9f', namespace: 'payments' };
const CART = { container: 'ffee00112233' + '1'.repeat(52) };

/** Two listeners, one in a pod and one in a bare container, a third of the host; resets and a TIME_WAIT destination of the pod. */
function containerView(): TopView {
  const agg = new Aggregator();
  agg.up('local', info('node1'));
  for (const s of [0, 1]) {
    const snap: SnapshotResponse = snapshot(T0 + s * 1000, {
      listeners: [
        { port: 8080, queue: 129, backlog: 128, pid: 7, comm: 'shop' },
        { port: 9090, queue: 1, backlog: 128, pid: 8, comm: 'cart' },
        { port: 22, queue: 0, backlog: 128, pid: 1, comm: 'sshd' },
      ],
      timewait: [{ addr: '10.0.0.9', port: 5432, current: 40, created: s * 40 }],
      timewaitCurrent: 40,
    });
    Object.assign(snap.listeners[0]!, SHOP);
    Object.assign(snap.listeners[1]!, CART);
    agg.snapshot('local', snap, T0 + s * 1000);
  }
  const ev = (kind: EventKind, lport: number, raddr: string, rport: number, who: object) => ({
    timeUnixMicros: (T0 + 500) * 1000,
    kind,
    family: 1,
    localAddr: '127.0.0.1',
    localPort: lport,
    remoteAddr: raddr,
    remotePort: rport,
    netns: NETNS,
    state: '',
    reason: '',
    comm: '',
    cgroup: 4242,
    ...who,
  });
  const msg: WatchResponse = {
      response: {
        $case: 'batch',
        value: {
          events: [
            ev(EventKind.EVENT_KIND_RESET_SENT, 8080, '10.0.0.7', 51000, SHOP),
            ev(EventKind.EVENT_KIND_RESET_RECEIVED, 9090, '10.0.0.8', 52000, CART),
            ev(EventKind.EVENT_KIND_TIMEWAIT, 41000, '10.0.0.9', 5432, SHOP),
          ],
        },
      },
  };
  agg.watch('local', msg, T0 + 500);
  return agg.view(T0 + 1000, 10);
}

function screen(view: TopView, ui: Partial<UiState> = {}, width = 120): string[] {
  const r = render(
    <ColorContext.Provider value={false}>
      <TopScreen view={view} ui={{ ...INITIAL_UI, ...ui }} width={width} height={30} nowMs={view.atMs} />
    </ColorContext.Provider>,
  );
  const frame = r.lastFrame() ?? '';
  r.unmount();
  return frame.split('\n');
}

const lineWith = (lines: string[], text: string) => lines.find((l) => l.includes(text)) ?? '';

describe('top with containers', () => {
  it('labels a pod as namespace/pod/container, and a bare container by its short id', () => {
    expect(workloadLabel(SHOP)).toBe('payments/shop-7d9f/web');
    expect(workloadLabel(CART)).toBe('ffee00112233');
    expect(workloadLabel({ container: 'web-1' })).toBe('web-1');
    expect(workloadLabel(undefined)).toBe('');
  });

  it('shows a POD/CONTAINER column naming each listener, a dash for the host', () => {
    const lines = screen(containerView());
    expect(lineWith(lines, 'LISTENERS')).not.toBe('');
    expect(lines.some((l) => l.includes('POD/CONTAINER'))).toBe(true);
    expect(lineWith(lines, '127.0.0.1:8080')).toContain('payments/shop-7d9f/web');
    expect(lineWith(lines, '127.0.0.1:9090')).toContain('ffee00112233');
    expect(lineWith(lines, '127.0.0.1:22')).toMatch(/ - /);
  });

  it('names our side of reset peers and the senders to a TIME_WAIT destination', () => {
    const view = containerView();
    const peers = peerRowsOf(view, INITIAL_UI);
    expect(peers.find((p) => p.addr === '10.0.0.7')?.workload).toMatchObject({ pod: 'shop-7d9f' });
    expect(peers.find((p) => p.addr === '10.0.0.8')?.workload).toMatchObject({ container: CART.container });
    expect(view.timewait.destinations.find((d) => d.port === 5432)?.workload).toMatchObject({ pod: 'shop-7d9f', containerName: 'web' });
    const lines = screen(view, { panel: 'timewait' });
    expect(lineWith(lines, '10.0.0.9:5432')).toContain('payments/shop');
  });

  it('/ matches a pod, a namespace, a container name or id, as it matches an address', () => {
    const view = containerView();
    const ports = (filter: string) => listenerRowsOf(view, { ...INITIAL_UI, filter }).map((r) => r.port);
    expect(ports('shop')).toEqual([8080]);
    expect(ports('payments')).toEqual([8080]);
    expect(ports('web')).toEqual([8080]);
    expect(ports('ffee0011')).toEqual([9090]);
    expect(ports('127.0.0.1').sort()).toEqual([22, 8080, 9090]);
    expect(peerRowsOf(view, { ...INITIAL_UI, filter: 'shop' }).map((p) => p.addr)).toEqual(['10.0.0.7']);
    const lines = screen(view, { filter: 'shop' });
    expect(lineWith(lines, '127.0.0.1:9090')).toBe('');
    expect(lineWith(lines, '127.0.0.1:8080')).not.toBe('');
  });

  it('keeps the screen as it was on a host without containers: no column', () => {
    const agg = new Aggregator();
    agg.up('local', info('node1'));
    for (const s of [0, 1]) agg.snapshot('local', snapshot(T0 + s * 1000, { listeners: [{ port: 22, pid: 1, comm: 'sshd' }] }), T0 + s * 1000);
    expect(screen(agg.view(T0 + 1000, 10)).some((l) => l.includes('POD/CONTAINER'))).toBe(false);
  });
});
