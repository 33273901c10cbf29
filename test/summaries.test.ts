/**
 * Events beyond the kernel's rate budget reach every consumer as exact
 * summaries, in the same stream as the events: the agent's Watch stream,
 * `watch --json`, a recording and its report, and top's aggregator. Against
 * the real kernel (a reset storm in a test namespace), events plus summary
 * counts equal what nstat counted, exactly; with no budget (0) every event
 * comes one by one and no summary at all.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { createElement } from 'react';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { HeldSummaries, SummaryPump } from '../src/agent/summaries.js';
import { Aggregator } from '../src/aggregate/index.js';
import { summaryLine, toJsonSummary } from '../src/cli/format.js';
import { connectAgent, type EventSource } from '../src/client/connect.js';
import { EventKind, Family, LostReason, WatchResponse, type Summary, type WatchRequest } from '../src/generated/wstrace/v1/tracer.js';
import type { EventSummary } from '../src/kernel/index.js';
import { ReportBuilder } from '../src/record/report.js';
import { TopScreen } from '../src/ui/TopScreen.js';
import { ColorContext } from '../src/ui/theme.js';
import { INITIAL_UI } from '../src/ui/ui-state.js';
import { batch, info, NETNS, snapshot } from './fixtures/aggregate/build.js';
import { CLI, spawnCli } from './helpers/cli.js';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);

function row(over: Partial<Summary> = {}): Summary {
  return {
    kind: EventKind.EVENT_KIND_RESET_SENT,
    family: Family.FAMILY_IPV4,
    localAddr: '127.0.0.1',
    localPort: 9000,
    remoteAddr: '127.0.0.1',
    remotePort: 0,
    netns: NETNS,
    state: '',
    reason: 'NO_SOCKET',
    count: 100,
    firstUnixMicros: T0 * 1000,
    lastUnixMicros: (T0 + 900) * 1000,
    ...over,
  };
}

const summaries = (rows: Summary[], eventBudget = 10_000): WatchResponse => ({
  response: { $case: 'summaries', value: { summaries: rows, fromUnixMicros: T0 * 1000, toUnixMicros: (T0 + 1000) * 1000, eventBudget } },
});

describe('summary rows, without a kernel', () => {
  it('a slow stream holds one row per key with the exact sum; a key past its limit is counted lost, not dropped silently', () => {
    const held = new HeldSummaries(2);
    const span = { fromUnixMicros: 1, toUnixMicros: 2, eventBudget: 100 };
    expect(held.add([row({ count: 5 }), row({ localPort: 9001, count: 7 })], span)).toBe(0);
    // A second interval: the same keys add up, a third key finds no room and is reported.
    expect(held.add([row({ count: 3, lastUnixMicros: (T0 + 1900) * 1000 }), row({ localPort: 9002, count: 11 })], { ...span, toUnixMicros: 3 })).toBe(11);
    held.noteTableLost(4);
    const lost = held.next()!.response;
    expect(lost).toEqual({ $case: 'lost', value: { count: 4, reason: LostReason.LOST_REASON_SUMMARY_TABLE_FULL } });
    const sent = held.next()!.response;
    expect(sent?.$case).toBe('summaries');
    if (sent?.$case !== 'summaries') return;
    expect(sent.value.summaries.map((s) => [s.localPort, s.count, s.lastUnixMicros])).toEqual([
      [9000, 8, (T0 + 1900) * 1000],
      [9001, 7, (T0 + 900) * 1000],
    ]);
    expect([sent.value.fromUnixMicros, sent.value.toUnixMicros, sent.value.eventBudget]).toEqual([1, 3, 100]);
    expect(held.delivered).toBe(15);
    expect(held.next()).toBeUndefined();
  });

  it('the pump publishes each drain with its interval and the budget, and once more when stopped', async () => {
    let clock = T0;
    const drained: EventSummary[][] = [
      [{ kind: 'reset_sent', family: 'ipv4', laddr: '127.0.0.1', lport: 9000, raddr: '127.0.0.1', rport: 0, netns: 1, reason: 'NO_SOCKET', count: 42, firstMs: T0 + 1, lastMs: T0 + 2 }],
      [],
      [{ kind: 'timewait', family: 'ipv6', laddr: '::1', lport: 0, raddr: '::1', rport: 80, netns: 1, state: 'FIN_WAIT2', count: 3, firstMs: T0 + 5, lastMs: T0 + 6 }],
    ];
    const published: Array<{ rows: number; from: number; to: number; budget: number }> = [];
    const pump = new SummaryPump(
      { eventBudget: 100, drainSummaries: async () => drained.shift() ?? [] },
      (b) => published.push({ rows: b.summaries.reduce((n, s) => n + s.count, 0), from: b.fromUnixMicros, to: b.toUnixMicros, budget: b.eventBudget }),
      () => clock,
    );
    clock += 1000;
    await pump.drain();
    clock += 1000;
    await pump.drain(); // nothing summarised: nothing sent
    clock += 1000;
    await pump.stop();
    await pump.drain(); // stopped: no more drains
    expect(published).toEqual([
      { rows: 42, from: T0 * 1000, to: (T0 + 1000) * 1000, budget: 100 },
      { rows: 3, from: (T0 + 2000) * 1000, to: (T0 + 3000) * 1000, budget: 100 },
    ]);
  });

  it('watch prints a row as a line that names it a summary, with its count; --json adds summary, count, first, last', () => {
    const s: EventSummary = { kind: 'reset_sent', family: 'ipv4', laddr: '127.0.0.1', lport: 9000, raddr: '127.0.0.1', rport: 0, netns: 7, reason: 'NO_SOCKET', count: 8123, firstMs: T0 + 0.5, lastMs: T0 + 950 };
    expect(summaryLine(s, 10_000)).toBe('12:00:00.000500 summary reset_sent x8123 127.0.0.1:9000 > 127.0.0.1:* reason NO_SOCKET (beyond the 10000/s budget, to 12:00:00.950000)');
    expect(toJsonSummary(s)).toEqual({
      time: '2026-12-01T12:00:00.000500Z',
      kind: 'reset_sent',
      family: 'ipv4',
      laddr: '127.0.0.1',
      lport: 9000,
      raddr: '127.0.0.1',
      rport: 0,
      netns: 7,
      reason: 'NO_SOCKET',
      summary: true,
      count: 8123,
      first: '2026-12-01T12:00:00.000500Z',
      last: '2026-12-01T12:00:00.950000Z',
    });
  });

  it('top counts a row as the events it stands for (peers), rates still from snapshots only, and says what was summarised', () => {
    const agg = new Aggregator();
    agg.up('a', { ...info('vm'), eventBudget: 10_000 });
    agg.snapshot('a', snapshot(T0), T0);
    agg.watch('a', batch([{ kind: 'reset_sent', lport: 9000, raddr: '198.51.100.1' }]), T0 + 200);
    agg.watch('a', summaries([row({ remoteAddr: '198.51.100.1', count: 4999 })]), T0 + 900);
    agg.snapshot('a', snapshot(T0 + 1000, { totals: { resetsSent: 5000 }, resets: [{ direction: 'sent', localPort: 9000, reason: 'NO_SOCKET', count: 5000 }] }), T0 + 1000);
    const v = agg.view(T0 + 1000, 1);
    expect(v.resets.peers.map((p) => [p.addr, p.count])).toEqual([['198.51.100.1', 5000]]);
    expect(v.resets.sentPerSec).toBe(5000); // the kernel's count: the summary is not added to it
    expect(v.sources[0]).toMatchObject({ eventBudget: 10_000, summarised: 4999, summarisedInWindow: 4999 });
    const r = render(createElement(ColorContext.Provider, { value: false }, createElement(TopScreen, { view: v, ui: INITIAL_UI, width: 80, height: 24, nowMs: v.atMs })));
    const header = (r.lastFrame() ?? '').split('\n')[0]!;
    r.unmount();
    expect(header).toMatch(/lost 0 +budget 10k\/s, 5k summarised/);
  });

  it('report counts rows in the tables of the events they stand for, and says how many came summarised', () => {
    const b = new ReportBuilder();
    const watch = (m: WatchResponse) => b.add({ timeUnixMicros: T0 * 1000, entry: { $case: 'watch', value: m } });
    watch(batch([{ kind: 'reset_sent', lport: 9000, raddr: '198.51.100.1', rport: 41000 }]));
    watch(summaries([row({ remoteAddr: '198.51.100.1', count: 4999 }), row({ kind: EventKind.EVENT_KIND_RESET_RECEIVED, localPort: 0, remotePort: 9000, reason: '', state: 'SYN_SENT', count: 7 })]));
    const rep = b.finish({ skipped: 0, damagedBytes: 0, truncated: false });
    expect([rep.events, rep.summarised, rep.summaryRows]).toEqual([1, 5006, 2]);
    expect(rep.byKind).toEqual([
      { kind: 'reset_sent', events: 1, summarised: 4999 },
      { kind: 'reset_received', events: 0, summarised: 7 },
    ]);
    // The fixture's event carries no reason; the rows do.
    expect(rep.resetReasons).toEqual([
      { reason: 'sent NO_SOCKET', count: 4999 },
      { reason: 'received SYN_SENT', count: 7 },
      { reason: 'sent unknown', count: 1 },
    ]);
    expect(rep.resetPeers).toEqual([
      { peer: '198.51.100.1:*', count: 4999 },
      { peer: '127.0.0.1:9000', count: 7 },
      { peer: '198.51.100.1:41000', count: 1 },
    ]);
  });
});

/** What one Watch stream has received so far, read as a user of the API would. */
interface Tally {
  /** reset_sent from the storm's port: one by one, and in summary rows. */
  events: number;
  summarised: number;
  /** Every other event: one by one, and in summary rows. */
  otherEvents: number;
  otherSummarised: number;
  lost: number;
  ended: boolean;
}

function watchTally(source: EventSource, port: number, request: Partial<WatchRequest> = {}): { tally: Tally; following: Promise<void>; cancel(): void } {
  const tally: Tally = { events: 0, summarised: 0, otherEvents: 0, otherSummarised: 0, lost: 0, ended: false };
  const stream = source.watch({ follow: true, ...request });
  let following!: () => void;
  const ready = new Promise<void>((resolve) => (following = resolve));
  const mine = (kind: EventKind, lport: number) => kind === EventKind.EVENT_KIND_RESET_SENT && lport === port;
  void (async () => {
    for await (const msg of stream) {
      const r = msg.response;
      if (r?.$case === 'status') {
        following();
        if (r.value.end) tally.ended = true;
      } else if (r?.$case === 'batch') {
        for (const e of r.value.events) {
          if (mine(e.kind, e.localPort)) tally.events++;
          else tally.otherEvents++;
        }
      } else if (r?.$case === 'summaries') {
        for (const s of r.value.summaries) {
          if (mine(s.kind, s.localPort)) tally.summarised += s.count;
          else tally.otherSummarised += s.count;
        }
      } else if (r?.$case === 'lost') {
        tally.lost += r.value.count;
      }
    }
  })().catch(() => undefined);
  return { tally, following: ready, cancel: () => stream.cancel() };
}

describeKernel('summaries through the agent and every consumer (real BPF, reset storms in a test netns)', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-summ');
    dir = mkdtempSync(join(tmpdir(), 'wst-summ-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function withAgent<T>(eventBudget: number, body: (agent: RunningAgent, source: EventSource) => Promise<T>): Promise<T> {
    const path = join(dir, `agent-${eventBudget}.sock`);
    const agent = await startAgent({ listen: { kind: 'unix', path }, tracer: { netns: ns.path, eventBudget, resolveOwners: false }, metrics: '127.0.0.1:0' });
    const source = connectAgent({ kind: 'unix', path });
    try {
      return await body(agent, source);
    } finally {
      source.close();
      await agent.close();
    }
  }

  it('budget 100/s: a 5000-reset storm comes as events plus summary rows that add up to TcpOutRsts exactly, on every stream and in replay', async () => {
    await withAgent(100, async (agent, source) => {
      expect((await source.info()).eventBudget).toBe(100);
      const all = watchTally(source, 7501);
      // A second stream filtered to the other kind: the filter applies to summary rows as to events.
      const received = watchTally(source, 7501, { allow: [{ kinds: [EventKind.EVENT_KIND_RESET_RECEIVED], ports: [], localPorts: [], remotePorts: [], localAddrs: [], remoteAddrs: [], netns: [], cgroups: [] }] });
      await Promise.all([all.following, received.following]);
      const t0 = Date.now() * 1000;
      const before = ns.nstat();
      const s0 = await source.snapshot();
      const out = await ns.traffic('closed-port', 5000, 7501);
      expect(out.refused).toBe(5000);
      const sent = delta(ns.nstat(), before, 'TcpOutRsts');
      expect(sent).toBe(5000);
      // Rows are drained each second: wait for the last drain, no longer.
      const got = await until(() => ({ ...all.tally }), {
        what: `events + summary counts of the storm to reach the ${sent} resets sent and ${sent} received nstat counted`,
        accept: (t) => t.events + t.summarised >= sent && t.otherEvents + t.otherSummarised >= sent,
      });
      expect(got.events + got.summarised).toBe(sent);
      expect(got.otherEvents + got.otherSummarised).toBe(sent); // the resets the clients received
      expect(got.summarised).toBeGreaterThan(0);
      expect(got.lost).toBe(0);
      // The budget held the detail to about a second's worth: the rest came summarised.
      expect(got.events).toBeLessThan(sent / 2);
      const rcv = await until(() => ({ ...received.tally }), {
        what: 'the resets received on the filtered stream',
        accept: (t) => t.otherEvents + t.otherSummarised >= sent,
      });
      // No reset sent got through the filter, in either form; every reset received did.
      expect([rcv.events, rcv.summarised, rcv.otherEvents + rcv.otherSummarised]).toEqual([0, 0, sent]);
      // The agent's own count of what it summarised is what the unfiltered stream was told.
      const s1 = await source.snapshot();
      expect(s1.totals!.summarised - s0.totals!.summarised).toBe(got.summarised + got.otherSummarised);
      // And Prometheus: the budget, and the events summarised (the agent summarised nothing before the storm).
      const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
      expect(text).toMatch(/^wstrace_event_budget 100$/m);
      expect(text).toMatch(new RegExp(`^wstrace_events_summarised_total ${s1.totals!.summarised}$`, 'm'));
      expect(s0.totals!.summarised).toBe(0);
      // Replay of the storm's span: its events and its summary rows, the same exact total.
      const replayed = watchTally(source, 7501, { follow: false, sinceUnixMicros: t0 });
      await until(() => replayed.tally.ended, { what: 'the replay to end' });
      expect(replayed.tally.events + replayed.tally.summarised).toBe(sent);
      expect(replayed.tally.summarised).toBeGreaterThan(0);
      all.cancel();
      received.cancel();
      expect(agent.hub.summarised).toBeGreaterThanOrEqual(got.summarised);
    });
  });

  it('`watch --json --event-budget 100`: summary lines plus event lines equal nstat, and the last line says how many were summarised', async () => {
    const w = spawnCli(['watch', '--json', '--event-budget', '100', '--netns', ns.name, '--port', '7502']);
    await w.waitStderr('live:');
    expect(w.stderr()).toMatch(/budget: 100 events\/s in full/);
    const before = ns.nstat();
    await ns.traffic('closed-port', 5000, 7502);
    const sent = delta(ns.nstat(), before, 'TcpOutRsts');
    expect(sent).toBe(5000);
    // Stopped as soon as the storm is over: what the kernel still holds (ring, summary table) is printed before the end.
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);
    const lines = w.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const mine = lines.filter((l) => l.kind === 'reset_sent' && l.lport === 7502);
    const summaryLines = mine.filter((l) => l.summary === true);
    const counted = mine.reduce((n, l) => n + (l.summary === true ? Number(l.count) : 1), 0);
    expect(counted).toBe(sent);
    expect(summaryLines.length).toBeGreaterThan(0);
    for (const l of summaryLines) expect(l).toMatchObject({ laddr: '127.0.0.1', raddr: '127.0.0.1', rport: 0, reason: 'NO_SOCKET', netns: ns.inode() });
    const all = lines.reduce((n, l) => n + (l.summary === true ? Number(l.count) : 1), 0);
    const summarised = lines.filter((l) => l.summary === true).reduce((n, l) => n + Number(l.count), 0);
    expect(w.stderr()).toMatch(
      new RegExp(`${all - summarised} events printed, ${summarised} more in ${lines.length - (all - summarised)} summary lines \\(beyond the 100/s budget\\)`),
    );
    expect(w.stderr()).toMatch(/5000 resets sent, 5000 received/);
  });

  it('`record --event-budget 100` then `report`: the storm totals exactly, and the report says how many came as summaries', async () => {
    const file = join(dir, 'storm.wsr');
    const rec = spawnCli(['record', '-o', file, '--netns', ns.path, '--event-budget', '100'], { stdout: 'ignore' });
    await rec.waitStderr('recording into');
    const before = ns.nstat();
    await ns.traffic('closed-port', 5000, 7503);
    const sent = delta(ns.nstat(), before, 'TcpOutRsts');
    expect(sent).toBe(5000);
    rec.child.kill('SIGINT');
    expect(await rec.closed).toBe(0);
    expect(rec.stderr()).toMatch(/recorded \d+ events \(and \d+ more in summary rows, beyond the agent's budget\)/);
    const report = JSON.parse(execFileSync(process.execPath, [CLI, 'report', file, '--json'], { cwd: ROOT, encoding: 'utf8' })) as {
      summarised: number;
      byKind: Array<{ kind: string; events: number; summarised: number }>;
      totals: { resetsSent: number };
    };
    const k = report.byKind.find((x) => x.kind === 'reset_sent')!;
    expect(k.events + k.summarised).toBe(sent);
    expect(k.summarised).toBeGreaterThan(0);
    expect(report.summarised).toBeGreaterThanOrEqual(k.summarised);
    const text = execFileSync(process.execPath, [CLI, 'report', file], { cwd: ROOT, encoding: 'utf8' });
    expect(text).toMatch(new RegExp(`and ${report.summarised} more in \\d+ summary rows`));
    expect(text).toMatch(new RegExp(`reset_sent +${k.events} +${k.summarised} +${sent}\n`));
    // export prints the rows as watch --json does: the same total.
    const lines = execFileSync(process.execPath, [CLI, 'export', file, '--ndjson'], { cwd: ROOT, encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.kind === 'reset_sent').reduce((n, l) => n + (l.summary === true ? Number(l.count) : 1), 0)).toBe(sent);
  });

  it('`watch --event-budget 0` (forensics): every event one by one, no summary line', async () => {
    const w = spawnCli(['watch', '--json', '--event-budget', '0', '--netns', ns.name, '--port', '7504']);
    await w.waitStderr('live:');
    expect(w.stderr()).toMatch(/budget: none, every event is sent/);
    const before = ns.nstat();
    await ns.traffic('closed-port', 5000, 7504);
    const sent = delta(ns.nstat(), before, 'TcpOutRsts');
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);
    const lines = w.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.summary !== undefined)).toEqual([]);
    expect(lines.filter((l) => l.kind === 'reset_sent' && l.lport === 7504)).toHaveLength(sent);
    expect(w.stderr()).toMatch(new RegExp(`${lines.length} events printed, 0 lost in the kernel ring`));
  });
});
