/**
 * The capture core against the real kernel: traffic made on loopback inside a
 * network namespace this file creates, with the namespace's own MIB counters
 * (nstat, /proc/net/sockstat) as the referee.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openTracer, type TraceEvent, type Tracer } from '../src/kernel/index.js';
import { delta, describeKernel, linkedProgramIds, loadedPrograms, TestNetns, waitProgramsGone } from './helpers/kernel.js';
import { until } from './helpers/until.js';
import { SIGNALS } from '../src/signals/table.js';

/** The hooks with a tp_btf variant, forced to their raw_tp one: what kernels that refuse tp_btf run. */
const RAW_TP = { reset_sent: 'raw_tp', reset_received: 'raw_tp', timewait: 'raw_tp', accept_queue_full: 'raw_tp' };

/**
 * The same checks for the hooks this kernel picks (BTF tracepoints, whose
 * programs read fields directly) and for the raw tracepoints they fall back
 * to (probe reads): both must count exactly what the kernel counts.
 */
function captureSuite(name: string, nsPrefix: string, variants?: Readonly<Record<string, string>>): void {
  describeKernel(name, () => {
    let ns: TestNetns;
    let tracer: Tracer;
    let events: TraceEvent[] = [];

    beforeAll(async () => {
      ns = await TestNetns.create(nsPrefix);
      // Unlike this host's (and a new namespace's default): folding must use the traced namespace's range.
      await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=20000 29999']);
      tracer = await openTracer({ netns: ns.path, ...(variants ? { variants } : {}) });
      tracer.subscribe((batch) => events.push(...batch));
    });

    afterAll(async () => {
      tracer?.close();
      await ns?.destroy();
    });

    /** Events of a kind seen since the last reset(), after the ring is drained. */
    function take(kind: TraceEvent['kind']): TraceEvent[] {
      tracer.flush();
      return events.filter((e) => e.kind === kind);
    }

    function reset(): void {
      tracer.flush();
      events = [];
    }

    it('reports every hook live on this kernel', () => {
      const live = tracer.hooks.filter((h) => h.attached).map((h) => h.signal);
      expect(live).toEqual(expect.arrayContaining(['reset_sent', 'reset_received', 'timewait', 'accept_queue_full']));
      // Kernels since 5.5 with BTF take BTF tracepoints; forced, the raw ones.
      const variantOf = (signal: string) => tracer.hooks.find((h) => h.signal === signal)?.variant;
      const want = variants ? 'raw_tp' : 'tp_btf';
      expect(['reset_sent', 'reset_received', 'timewait', 'accept_queue_full'].map(variantOf)).toEqual([want, want, want, want]);
    });

    it('N connects to a closed port: exactly N reset_sent, equal to TcpOutRsts', async () => {
      const N = 40;
      const port = 7101;
      reset();
      const before = ns.nstat();
      const totalsBefore = tracer.counters().totals;
      const out = await ns.traffic('closed-port', N, port);
      expect(out.refused).toBe(N);
      const sent = take('reset_sent').filter((e) => e.lport === port);
      const after = ns.nstat();
      expect(sent).toHaveLength(N);
      for (const e of sent) {
        expect(e).toMatchObject({ family: 'ipv4', laddr: '127.0.0.1', raddr: '127.0.0.1', netns: ns.inode(), reason: 'NO_SOCKET' });
      }
      const outRsts = delta(after, before, 'TcpOutRsts');
      expect(outRsts).toBe(N);
      expect(tracer.counters().totals.resetSent - totalsBefore.resetSent).toBe(outRsts);
      // The kernel skipped no run of these programs (one nested in another on a CPU): nothing is missing from the counts.
      expect(tracer.skippedRuns()).toBe(0);
      const perPort = tracer.counters().resets.filter((r) => r.direction === 'sent' && r.lport === port);
      expect(perPort.reduce((s, r) => s + r.count, 0)).toBe(N);
      // The connecting side got each reset in SYN_SENT.
      expect(take('reset_received').filter((e) => e.rport === port && e.state === 'SYN_SENT')).toHaveLength(N);
    });

    it('IPv6 closed-port resets carry IPv6 addresses', async () => {
      reset();
      await ns.traffic('closed-port', 3, 7102, '::1');
      const sent = take('reset_sent').filter((e) => e.lport === 7102);
      expect(sent).toHaveLength(3);
      expect(sent[0]).toMatchObject({ family: 'ipv6', laddr: '::1', raddr: '::1' });
    });

    it('SO_LINGER 0 close: reset_sent in ESTABLISHED on one side, reset_received on the other', async () => {
      const port = 7103;
      reset();
      const out = await ns.traffic('linger0', port);
      const clientPort = out.client_port as number;
      const sent = take('reset_sent').filter((e) => e.lport === clientPort && e.rport === port);
      const received = take('reset_received').filter((e) => e.lport === port && e.rport === clientPort);
      expect(sent).toHaveLength(1);
      expect(sent[0]!.state).toBe('ESTABLISHED');
      expect(received).toHaveLength(1);
      expect(received[0]!.state).toBe('ESTABLISHED');
    });

    it('M active closes: exactly M timewait events, and sockstat tw rises by M', async () => {
      const M = 25;
      const port = 7104;
      reset();
      const twBefore = ns.sockstatTcp().tw ?? 0;
      await ns.traffic('timewait', M, port);
      const tw = take('timewait').filter((e) => e.rport === port);
      expect(tw).toHaveLength(M);
      expect((ns.sockstatTcp().tw ?? 0) - twBefore).toBe(M);
      const perDest = tracer.counters().timewaits.find((t) => t.rport === port && t.raddr === '127.0.0.1');
      expect(perDest?.count).toBe(M);
      // No reset-caused close was taken for a TIME_WAIT entry.
      expect(new Set(tw.map((e) => e.lport)).size).toBe(M);
    });

    it('linger-0 resets between active closes: TIME_WAIT made still equals TcpExtTW', async () => {
      const M = 150;
      const port = 7110;
      reset();
      const before = ns.nstat();
      const totalsBefore = tracer.totals();
      const out = await ns.traffic('mixed-close', M, port);
      const after = ns.nstat();
      expect(out).toEqual({ resets: M, timewaits: M });
      expect(delta(after, before, 'TcpExtTW')).toBe(M);
      expect(tracer.totals().timewait - totalsBefore.timewait).toBe(M);
      expect(take('timewait').filter((e) => e.rport === port)).toHaveLength(M);
      // The reset-closed ones were not taken for TIME_WAIT entries, and say what they left.
      const sent = take('reset_sent').filter((e) => e.rport === port);
      expect(sent).toHaveLength(M);
      expect(new Set(sent.map((e) => e.state))).toEqual(new Set(['ESTABLISHED']));
    });

    it('a reset received in FIN_WAIT2 closes the socket without a TIME_WAIT, and none is counted', async () => {
      const port = 7111;
      reset();
      const before = ns.nstat();
      const twBefore = tracer.totals().timewait;
      const out = await ns.traffic('reset-in-fin-wait2', port);
      const after = ns.nstat();
      expect(delta(after, before, 'TcpExtTW')).toBe(0);
      expect(tracer.totals().timewait - twBefore).toBe(0);
      const got = take('reset_received').filter((e) => e.lport === out.client_port && e.rport === port);
      expect(got.map((e) => e.state)).toEqual(['FIN_WAIT2']);
      expect(take('timewait').filter((e) => e.rport === port)).toHaveLength(0);
    });

    it('resets on client ports fold into local port 0; a listener inside ip_local_port_range keeps its port', async () => {
      const [low, high] = (await ns.exec('cat', ['/proc/sys/net/ipv4/ip_local_port_range']))
        .trim()
        .split(/\s+/)
        .map(Number) as [number, number];
      const listenPort = low + 7; // a server port inside the ephemeral range, like gRPC's 50051 in the default one
      const M = 30;
      const countsOf = (direction: string) => {
        const rows = tracer.counters().resets.filter((r) => r.direction === direction);
        return {
          folded: rows.filter((r) => r.lport === 0).reduce((n, r) => n + r.count, 0),
          listener: rows.filter((r) => r.lport === listenPort).reduce((n, r) => n + r.count, 0),
          inRange: rows.filter((r) => r.lport >= low && r.lport <= high && r.lport !== listenPort).length,
        };
      };
      const sentBefore = countsOf('sent');
      const receivedBefore = countsOf('received');
      await ns.traffic('mixed-close', M, listenPort);
      const sent = countsOf('sent');
      const received = countsOf('received');
      // Client side: each linger-0 close sent a reset from a new ephemeral port; one row holds them all.
      expect(sent.folded - sentBefore.folded).toBe(M);
      expect(sent.inRange).toBe(0);
      // Server side: the listener's port keeps its own row.
      expect(received.listener - receivedBefore.listener).toBe(M);
      expect(received.inRange).toBe(0);
      expect(tracer.totals().mapFull).toBe(0);
      // Events keep the real port.
      expect(take('reset_sent').some((e) => e.rport === listenPort && e.lport >= low && e.lport <= high)).toBe(true);
    });

    it('a listener port in the ephemeral range, with a connection older than the tracer, keeps its own reset row', async () => {
      const [low] = (await ns.exec('cat', ['/proc/sys/net/ipv4/ip_local_port_range'])).trim().split(/\s+/).map(Number) as [number];
      const port = low + 11;
      // The connection is accepted before this tracer opens; the server resets it once the tracer is open.
      const go = join(mkdtempSync(join(tmpdir(), 'wst-late-')), 'go');
      const load = ns.traffic('late-reset', port, go, 30);
      // The tracer must open after the connection is established (and before the server's reset).
      await until(async () => (await ns.exec('ss', ['-tnH', 'state', 'established', `sport = :${port}`])).trim() !== '', {
        what: `an established connection on port ${port} before the tracer opens`,
      });
      const late = await openTracer({ netns: ns.path, ...(variants ? { variants } : {}) });
      writeFileSync(go, '');
      try {
        const out = await load;
        const rows = late.counters().resets;
        expect(rows.filter((r) => r.direction === 'sent' && r.lport === port).reduce((n, r) => n + r.count, 0)).toBe(1);
        // The client's side of it is folded.
        expect(rows.filter((r) => r.direction === 'received' && r.lport === 0).reduce((n, r) => n + r.count, 0)).toBe(1);
        expect(rows.some((r) => r.lport === out.client_port)).toBe(false);
      } finally {
        late.close();
        rmSync(dirname(go), { recursive: true, force: true });
      }
    });

    it('backlog-1 listener that never accepts: accept_queue_full, peak > limit, ListenOverflows rises', async () => {
      const port = 7105;
      reset();
      const before = ns.nstat();
      await ns.traffic('full-queue', port, 1, 6, 0.5);
      const after = ns.nstat();
      const full = take('accept_queue_full').filter((e) => e.lport === port);
      expect(full.length).toBeGreaterThan(0);
      expect(full[0]!.queue).toBeGreaterThan(full[0]!.backlog!);
      expect(full[0]!.backlog).toBe(1);
      expect(full[0]!.comm).toBe('python3');
      const listener = tracer.counters().listeners.find((l) => l.port === port);
      expect(listener).toBeDefined();
      expect(listener!.peak).toBeGreaterThan(listener!.backlog);
      expect(listener!.fullHits).toBeGreaterThan(0);
      expect(delta(after, before, 'TcpExtListenOverflows')).toBeGreaterThan(0);
    });

    it('ACK-stage overflow: listen_overflow per listener equals ListenOverflows', async (ctx) => {
      const hook = tracer.hooks.find((h) => h.signal === 'listen_overflow');
      if (!hook?.attached) ctx.skip(`listen_overflow is blind on this kernel: ${hook?.error}`);
      const port = 7106;
      reset();
      const before = ns.nstat();
      await ns.traffic('ack-overflow', port, 2, 2, 0.5);
      const after = ns.nstat();
      const drops = take('listen_overflow').filter((e) => e.lport === port);
      const overflows = delta(after, before, 'TcpExtListenOverflows');
      expect(drops.length).toBeGreaterThan(0);
      expect(drops[0]!.reason).toBe('TCP_LISTEN_OVERFLOW');
      const listener = tracer.counters().listeners.find((l) => l.port === port);
      expect(listener?.overflows).toBe(overflows);
      expect(drops).toHaveLength(overflows);
      // Where syn_drop's tracepoint route is live it sees this stage on every path: listen_overflow is live
      // through it, and its own program, which would run on every freed packet only to return, is not attached.
      const route = tracer.hooks.find((h) => h.signal === 'syn_drop');
      if (route?.attached && ['tp_btf', 'raw_tp'].includes(route.variant)) {
        expect(hook).toMatchObject({ variant: route.variant, hook: `${route.hook} (syn_drop's route)` });
        const own = SIGNALS.find((s) => s.name === 'listen_overflow')!.hooks.find((v) => v.variant === hook!.standsDown);
        expect(own).toBeDefined();
        // The kernel keeps 15 characters of a program's name.
        const names = new Set(own!.programs.map((p) => p.slice(0, 15)));
        const programs = loadedPrograms();
        const ids = tracer.programIds().filter((id) => names.has(programs.get(id) ?? ''));
        expect(ids).toHaveLength(own!.programs.length);
        const linked = linkedProgramIds();
        expect(ids.filter((id) => linked.has(id))).toEqual([]);
      }
    });

    it('close() detaches: none of its programs stays loaded', async () => {
      const t = await openTracer({ netns: ns.path, ...(variants ? { variants } : {}) });
      const ids = t.programIds();
      // Every program of every variant attached, as the signal table lists them, and the loader's
      // per-CPU offset program (run on each CPU at load, never attached).
      let programs = 1;
      for (const h of t.hooks.filter((x) => x.attached)) {
        const signal = SIGNALS.find((s) => s.name === h.signal);
        // A signal live through another's programs keeps its own variant loaded, not attached.
        programs += signal?.hooks.find((v) => v.variant === (h.standsDown ?? h.variant))?.programs.length ?? 0;
      }
      expect(ids.length).toBe(programs);
      expect(ids.length).toBeGreaterThanOrEqual(5);
      t.close();
      expect(await waitProgramsGone(ids)).toEqual([]);
    });
  });
}

captureSuite('kernel capture (real BPF, loopback, test netns)', 'wst-cap');
captureSuite('kernel capture through raw tracepoints (the fallback where tp_btf is refused)', 'wst-cap-raw', RAW_TP);

describeKernel('kernel capture under a storm with a tiny ring buffer', () => {
  let ns: TestNetns;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-ring');
  });
  afterAll(() => ns?.destroy());

  it('loses events, counts every loss, and keeps the map counters exact', async () => {
    const tracer = await openTracer({ netns: ns.path, ringBytes: 4096 });
    let delivered = 0;
    tracer.subscribe((b) => (delivered += b.length));
    try {
      const N = 1500;
      const before = ns.nstat();
      // Blocking run: the JS thread cannot drain while the kernel writes.
      ns.trafficSync('closed-port', N, 7201);
      tracer.flush();
      const after = ns.nstat();
      const totals = tracer.counters().totals;
      expect(totals.ringDrops).toBeGreaterThan(0);
      expect(totals.resetSent).toBe(delta(after, before, 'TcpOutRsts'));
      expect(totals.resetSent).toBe(N);
      expect(totals.resetReceived).toBe(N);
      // Nothing vanished silently: each event was either delivered or counted lost.
      expect(delivered + totals.ringDrops).toBe(totals.resetSent + totals.resetReceived);
      expect(tracer.lost()).toBe(totals.ringDrops);
    } finally {
      tracer.close();
    }
  });
});
