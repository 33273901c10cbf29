/**
 * Issue 15 item 3: a reset a listener sends carries the peer it answers. The
 * listener's own socket has no peer (and, bound to the wildcard address, no
 * local address either); the packet answered has both. Checked against the
 * source ports the traffic really used, with the namespace's OutRsts and
 * ListenOverflows as the count, for both hook variants.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openTracer, type TraceEvent, type Tracer } from '../src/kernel/index.js';
import { describeKernel, TestNetns } from './helpers/kernel.js';
import { closes } from './helpers/closes.js';

function suite(name: string, nsPrefix: string, variant?: 'raw_tp'): void {
  describeKernel(name, () => {
    let ns: TestNetns;
    let tracer: Tracer;
    let events: TraceEvent[] = [];
    const all: TraceEvent[] = [];

    beforeAll(async () => {
      ns = await TestNetns.create(nsPrefix);
      tracer = await openTracer({ netns: ns.path, ...(variant ? { variants: { reset_sent: variant } } : {}) });
      tracer.subscribe((batch) => {
        events.push(...batch);
        all.push(...batch);
      });
    });

    afterAll(async () => {
      tracer?.close();
      await ns?.destroy();
    });

    function listenerResets(port: number): TraceEvent[] {
      tracer.flush();
      return events.filter((e) => e.kind === 'reset_sent' && e.state === 'LISTEN' && e.lport === port);
    }

    for (const [family, host, any] of [
      ['ipv4', '127.0.0.1', '0.0.0.0'],
      ['ipv6', '::1', '::'],
    ] as const) {
      it(`stray ACKs to a wildcard ${family} listener: each reset names the packet's source and the address it reached`, async () => {
        const N = 25;
        const port = family === 'ipv4' ? 7601 : 7602;
        events = [];
        const resets0 = tracer.totals().resetSent;
        const out = await closes(ns, 'stray-acks', N, port, host);
        expect(out.mib.OutRsts).toBe(N);
        const got = listenerResets(port);
        expect(got).toHaveLength(N);
        expect(got.map((e) => e.rport).sort()).toEqual([...out.source_ports].sort());
        for (const e of got) {
          expect(e).toMatchObject({ family, laddr: host, raddr: host, lport: port, netns: ns.inode() });
          expect(e.raddr).not.toBe(any);
          expect(e.laddr).not.toBe(any);
        }
        expect(tracer.totals().resetSent - resets0).toBe(out.mib.OutRsts);
        // Counted under the listener's port, as before.
        const row = tracer.counters().resets.filter((r) => r.direction === 'sent' && r.lport === port && r.state === 'LISTEN');
        expect(row.reduce((s, r) => s + r.count, 0)).toBe(N);
      });
    }

    it('tcp_abort_on_overflow: the listener resets each handshake its full queue refused, naming the client', async () => {
      const port = 7603;
      await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_abort_on_overflow=1']);
      try {
        events = [];
        const out = await closes(ns, 'abort-overflow', port, 2, 4);
        const refused = out.mib.ListenOverflows ?? 0;
        expect(refused).toBeGreaterThan(0);
        const got = listenerResets(port);
        expect(got).toHaveLength(refused);
        for (const e of got) {
          expect(e).toMatchObject({ raddr: '127.0.0.1', laddr: '127.0.0.1' });
          expect(out.client_ports).toContain(e.rport);
        }
        expect(new Set(got.map((e) => e.rport)).size).toBe(refused);
      } finally {
        await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_abort_on_overflow=0']);
      }
    });

    it('no reset event of this file has an unspecified peer (every packet answered had one)', () => {
      tracer.flush();
      expect(all.filter((e) => e.kind === 'reset_sent').length).toBeGreaterThan(50);
      const unspecified = all.filter((e) => e.kind === 'reset_sent' && (e.rport === 0 || e.raddr === '0.0.0.0' || e.raddr === '::'));
      expect(unspecified).toEqual([]);
    });
  });
}

suite('resets sent by a listener carry the peer (hooks this kernel picks)', 'wst-rpx');
suite('resets sent by a listener carry the peer (raw tracepoints)', 'wst-rpr', 'raw_tp');
