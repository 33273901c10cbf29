/**
 * `report` answers "which pods had the most listen drops": exact drops from
 * the listeners' kernel counters in the recorded snapshots, grouped by the
 * pod (or bare container) the agent named, beside the listen-drop events
 * named after them (one by one and in summary rows). A recording carries the
 * names as the Watch and Snapshot messages do, so nothing else is needed.
 */
import { describe, expect, it } from 'vitest';
import { Event, EventKind, GetInfoResponse, Listener, SnapshotResponse, Summary, SummaryBatch, Totals } from '../src/generated/wstrace/v1/tracer.js';
import type { RecordEntry } from '../src/generated/wstrace/v1/record.js';
import { renderReport, ReportBuilder, workloadKey } from '../src/record/report.js';

const empty = <T>(m: { decode(b: Uint8Array): T }): T => m.decode(new Uint8Array(0));
const T0 = 1_700_000_000_000_000;
const at = (sec: number) => T0 + sec * 1_000_000;
const SHOP = { container: 'a'.repeat(64), containerName: 'web', pod: 'shop', namespace: 'payments' };
const CART = { container: 'b'.repeat(64), containerName: 'api', pod: 'cart', namespace: 'payments' };
const BARE = { container: 'c0ffee' + '0'.repeat(58) };

const listener = (port: number, overflows: number, synDrops: number, who: object): Listener => ({
  ...empty(Listener),
  family: 1,
  addr: '0.0.0.0',
  port,
  overflows,
  synDropsAcceptQueueFull: synDrops,
  backlog: 8,
  live: true,
  ...who,
});

const snapshot = (sec: number, listeners: Listener[]): RecordEntry => ({
  timeUnixMicros: at(sec),
  entry: { $case: 'snapshot', value: { ...empty(SnapshotResponse), timeUnixMicros: at(sec), totals: empty(Totals), listeners } },
});

const dropEvent = (port: number, who: object): Event => ({
  ...empty(Event),
  timeUnixMicros: at(1),
  kind: EventKind.EVENT_KIND_SYN_DROP,
  family: 1,
  localAddr: '0.0.0.0',
  localPort: port,
  remoteAddr: '10.0.0.1',
  remotePort: 40000,
  reason: 'ACCEPT_QUEUE_FULL',
  ...who,
});

describe('report: pods by listen drops', () => {
  it('names a pod namespace/pod, a bare container by name or short id', () => {
    expect(workloadKey(SHOP)).toBe('payments/shop');
    expect(workloadKey(BARE)).toBe('c0ffee000000');
    expect(workloadKey({ container: 'web-1' })).toBe('web-1');
    expect(workloadKey({})).toBeUndefined();
  });

  it('ranks pods by their listeners’ exact drops over the recording, two containers of a pod together, with the named events beside', () => {
    const b = new ReportBuilder();
    b.add({ timeUnixMicros: at(0), entry: { $case: 'header', value: { version: 't', info: { ...empty(GetInfoResponse), hostname: 'node1' }, ports: [], kinds: [], netns: '', part: 0 } } });
    b.add(snapshot(0, [listener(8080, 10, 5, SHOP), listener(8081, 0, 0, { ...SHOP, containerName: 'sidecar' }), listener(9090, 100, 0, CART), listener(7070, 0, 0, BARE), listener(22, 50, 0, {})]));
    b.add({
      timeUnixMicros: at(1),
      entry: { $case: 'watch', value: { response: { $case: 'batch', value: { events: [dropEvent(8080, SHOP), dropEvent(8080, SHOP), dropEvent(7070, BARE)] } } } },
    });
    const summary: Summary = { ...empty(Summary), kind: EventKind.EVENT_KIND_LISTEN_OVERFLOW, family: 1, localPort: 9090, count: 7, firstUnixMicros: at(1), lastUnixMicros: at(2), ...CART };
    b.add({ timeUnixMicros: at(2), entry: { $case: 'watch', value: { response: { $case: 'summaries', value: { ...empty(SummaryBatch), summaries: [summary] } } } } });
    b.add(snapshot(3, [listener(8080, 40, 25, SHOP), listener(8081, 3, 0, { ...SHOP, containerName: 'sidecar' }), listener(9090, 130, 0, CART), listener(7070, 1, 0, BARE), listener(22, 90, 0, {})]));
    const r = b.finish({ skipped: 0, damagedBytes: 0, truncated: false });

    // shop: (40-10)+(25-5)+(3-0) = 53; cart: 30; the bare container 1; the host's listener on 22 is no workload.
    expect(r.workloadDrops).toEqual([
      { workload: 'payments/shop', drops: 53, events: 2 },
      { workload: 'payments/cart', drops: 30, events: 7 },
      { workload: 'c0ffee000000', drops: 1, events: 1 },
    ]);
    const text = renderReport(r);
    expect(text).toContain('Pods and containers by listen drops');
    expect(text).toMatch(/payments\/shop +drops 53 +events 2/);
  });

  it("a namespace's unattributed row (drops no listener's packet was seen to make) is listed as unattributed, no workload's", () => {
    const b = new ReportBuilder();
    const unattributed = (overflows: number): Listener => ({ ...listener(0, overflows, 0, {}), family: 0, addr: '', live: false, unattributed: true });
    b.add(snapshot(0, [listener(8080, 1, 0, SHOP), unattributed(0)]));
    b.add(snapshot(1, [listener(8080, 4, 0, SHOP), unattributed(3)]));
    const r = b.finish({ skipped: 0, damagedBytes: 0, truncated: false });
    expect(r.listeners.map((l) => [l.listener, l.overflows])).toEqual([
      ['0.0.0.0:8080', 3],
      ['unattributed', 3],
    ]);
    expect(r.workloadDrops).toEqual([{ workload: 'payments/shop', drops: 3, events: 0 }]);
    const text = renderReport(r);
    expect(text).toMatch(/unattributed +overflows 3 \(stage unknown\)/);
    expect(text).not.toContain(':0 ');
  });

  it('says nothing of pods when no listener and no event was named', () => {
    const b = new ReportBuilder();
    b.add(snapshot(0, [listener(22, 0, 0, {})]));
    b.add(snapshot(1, [listener(22, 9, 0, {})]));
    const r = b.finish({ skipped: 0, damagedBytes: 0, truncated: false });
    expect(r.workloadDrops).toEqual([]);
    expect(renderReport(r)).not.toContain('Pods and containers');
  });
});
