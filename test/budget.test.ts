/**
 * The kernel's event budget against the real kernel: beyond it, events are
 * not sent one by one but counted in summary rows, and every count still
 * agrees with the namespace's own MIB counters (nstat), per key, whatever
 * the rate and however often the rows are drained.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openTracer, type EventSummary, type TraceEvent, type Tracer } from '../src/kernel/index.js';
import { delta, describeKernel, TestNetns } from './helpers/kernel.js';

/** Events plus the summary rows that stand for more of them. */
function total(events: TraceEvent[], rows: EventSummary[], match: (x: TraceEvent | EventSummary) => boolean): number {
  return events.filter(match).length + rows.filter(match).reduce((n, r) => n + r.count, 0);
}

describeKernel('event budget (real BPF, loopback, test netns)', () => {
  let ns: TestNetns;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-budget');
  });

  afterAll(() => ns?.destroy());

  /** Opens a tracer on the test namespace that keeps every event it is handed. */
  async function traced(options: { eventBudget: number; ringBytes?: number }): Promise<{ tracer: Tracer; events: TraceEvent[] }> {
    const tracer = await openTracer({ netns: ns.path, resolveOwners: false, ...options });
    const events: TraceEvent[] = [];
    tracer.subscribe((batch) => events.push(...batch));
    return { tracer, events };
  }

  it('100 events/s: a reset storm is sent within the budget and summarised beyond it, exactly as nstat counts it, per key', async () => {
    const opened = Date.now();
    const { tracer, events } = await traced({ eventBudget: 100 });
    const rows: EventSummary[] = [];
    try {
      const before = ns.nstat();
      const totalsBefore = tracer.totals();
      // Drained over and over while the storm runs: each swap of the summary maps must lose and repeat nothing.
      let storming = true;
      const storm = Promise.all([ns.traffic('closed-port', 2000, 7401), ns.traffic('closed-port', 1000, 7402, '::1')]).finally(
        () => (storming = false),
      );
      while (storming) rows.push(...(await tracer.drainSummaries()));
      const [v4, v6] = await storm;
      tracer.flush();
      rows.push(...(await tracer.drainSummaries()));
      const seconds = (Date.now() - opened) / 1000;
      const after = ns.nstat();
      const totals = tracer.totals();
      expect([v4!.refused, v6!.refused]).toEqual([2000, 1000]);

      // Detail within the budget: a second's worth at once, then 100 a second (a CPU racing another may pass one more).
      const sent = events.length;
      expect(sent).toBeGreaterThanOrEqual(100);
      expect(sent).toBeLessThanOrEqual(Math.ceil(100 * seconds) + 100 + 2);

      // Every reset either sent as an event or counted in a summary row: the kernel's own count, exactly.
      const outRsts = delta(after, before, 'TcpOutRsts');
      expect(outRsts).toBe(3000);
      expect(total(events, rows, (x) => x.kind === 'reset_sent')).toBe(outRsts);
      expect(total(events, rows, (x) => x.kind === 'reset_received')).toBe(3000);
      expect(totals.resetSent - totalsBefore.resetSent).toBe(outRsts);
      expect(totals.summarised - totalsBefore.summarised).toBe(rows.reduce((n, r) => n + r.count, 0));
      expect(totals.events - totalsBefore.events).toBe(sent);
      expect(totals.summaryLost + totals.ringDrops).toBe(0);

      // Per key: the closed port and the peer's address; the clients' ephemeral ports fold into the port they called.
      const sentTo = (port: number, peer: string) => (x: TraceEvent | EventSummary) => x.kind === 'reset_sent' && x.lport === port && x.raddr === peer;
      const refusedBy = (port: number) => (x: TraceEvent | EventSummary) => x.kind === 'reset_received' && x.rport === port;
      expect(total(events, rows, sentTo(7401, '127.0.0.1'))).toBe(2000);
      expect(total(events, rows, sentTo(7402, '::1'))).toBe(1000);
      expect(total(events, rows, refusedBy(7401))).toBe(2000);
      expect(total(events, rows, refusedBy(7402))).toBe(1000);
      // A storm makes one row per key, not one per connection: four keys, each drained row named as events are.
      const keys = new Set(rows.map((r) => `${r.kind} ${r.family} ${r.laddr}:${r.lport} ${r.raddr}:${r.rport} ${r.state ?? ''} ${r.reason ?? ''}`));
      expect([...keys].sort()).toEqual([
        'reset_received ipv4 127.0.0.1:0 127.0.0.1:7401 SYN_SENT ',
        'reset_received ipv6 ::1:0 ::1:7402 SYN_SENT ',
        'reset_sent ipv4 127.0.0.1:7401 127.0.0.1:0  NO_SOCKET',
        'reset_sent ipv6 ::1:7402 ::1:0  NO_SOCKET',
      ]);
      for (const r of rows) {
        expect(r.netns).toBe(ns.inode());
        expect(r.firstMs).toBeLessThanOrEqual(r.lastMs);
        expect(r.firstMs).toBeGreaterThanOrEqual(opened - 1000);
        expect(r.lastMs).toBeLessThanOrEqual(Date.now() + 1000);
      }
    } finally {
      tracer.close();
    }
  });

  it('TIME_WAIT beyond the budget is summarised per destination, as many as TcpExtTW', async () => {
    const { tracer, events } = await traced({ eventBudget: 10 });
    try {
      const before = ns.nstat();
      await ns.traffic('timewait', 200, 7403);
      tracer.flush();
      const rows = await tracer.drainSummaries();
      const made = delta(ns.nstat(), before, 'TcpExtTW');
      expect(made).toBe(200);
      expect(events.filter((e) => e.kind === 'timewait').length).toBeLessThan(200);
      const toListener = (x: TraceEvent | EventSummary) => x.kind === 'timewait' && x.raddr === '127.0.0.1' && x.rport === 7403;
      expect(total(events, rows, toListener)).toBe(made);
      // The client's ports fold: one row for the destination.
      expect(rows.filter((r) => r.kind === 'timewait').map((r) => [r.lport, r.rport, r.state])).toEqual([[0, 7403, 'FIN_WAIT2']]);
    } finally {
      tracer.close();
    }
  });

  it('a full ring is counted apart from the summaries: sent + summarised + ring-lost = emitted', async () => {
    const { tracer, events } = await traced({ eventBudget: 2000, ringBytes: 4096 });
    try {
      const before = tracer.totals();
      // Blocking run: the JS thread cannot drain the ring while the kernel writes to it.
      ns.trafficSync('closed-port', 3000, 7404);
      tracer.flush();
      const rows = await tracer.drainSummaries();
      const t = tracer.totals();
      const emitted = t.resetSent - before.resetSent + (t.resetReceived - before.resetReceived);
      expect(emitted).toBe(6000);
      expect(t.ringDrops - before.ringDrops).toBeGreaterThan(0);
      expect(t.summarised - before.summarised).toBeGreaterThan(0);
      expect(events.length).toBe(t.events - before.events);
      expect(events.length + rows.reduce((n, r) => n + r.count, 0) + (t.ringDrops - before.ringDrops)).toBe(emitted);
    } finally {
      tracer.close();
    }
  });

  it('budget 0 (forensics): every event is sent, none summarised', async () => {
    const { tracer, events } = await traced({ eventBudget: 0 });
    try {
      const before = ns.nstat();
      await ns.traffic('closed-port', 3000, 7405);
      tracer.flush();
      const rows = await tracer.drainSummaries();
      expect(delta(ns.nstat(), before, 'TcpOutRsts')).toBe(3000);
      expect(events.filter((e) => e.kind === 'reset_sent' && e.lport === 7405)).toHaveLength(3000);
      expect(events.filter((e) => e.kind === 'reset_received' && e.rport === 7405)).toHaveLength(3000);
      expect(rows).toEqual([]);
      expect(tracer.totals().summarised).toBe(0);
    } finally {
      tracer.close();
    }
  });
});
