/**
 * Issue 15 item 1: a TIME_WAIT is counted only where the kernel made a
 * timewait socket. Each close below moves the full socket FIN_WAIT2 → CLOSE
 * the way a TIME_WAIT entry does, but without one (or, for the orphan
 * FIN_WAIT2 timer, either way), so wstrace's count must follow the kernel's
 * own: TcpExtTW + TcpExtTWKilled (both counted when a timewait socket's timer
 * is armed, by how long it is: TWKilled for 4 s or less; so since about 5.18,
 * 5.10 counts them when the socket expires: the kernel matrix uses sockstat's
 * tw there), in a namespace of this file's, against both hook variants.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openTracer, type TraceEvent, type Tracer } from '../src/kernel/index.js';
import { delta, describeKernel, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';
import { closes, twMade } from './helpers/closes.js';
import { resetsReallyReceived, TraceInstance } from './helpers/ftrace.js';

function suite(name: string, nsPrefix: string, variant?: 'raw_tp'): void {
  describeKernel(name, () => {
    let ns: TestNetns;
    let tracer: Tracer;
    let events: TraceEvent[] = [];

    beforeAll(async () => {
      ns = await TestNetns.create(nsPrefix);
      tracer = await openTracer({ netns: ns.path, ...(variant ? { variants: { timewait: variant, reset_sent: variant } } : {}) });
      tracer.subscribe((batch) => events.push(...batch));
    });

    afterAll(async () => {
      tracer?.close();
      await ns?.destroy();
    });

    function take(kind: TraceEvent['kind'], port: number): TraceEvent[] {
      tracer.flush();
      return events.filter((e) => e.kind === kind && (e.rport === port || e.lport === port));
    }

    function timewaitsTo(port: number): number {
      return tracer.counters().timewaits.filter((t) => t.rport === port).reduce((s, t) => s + t.count, 0);
    }

    it('hooks timewait with the variant asked for', () => {
      const hook = tracer.hooks.find((h) => h.signal === 'timewait');
      expect(hook?.attached).toBe(true);
      expect(hook?.variant).toBe(variant ?? 'tp_btf');
    });

    it('late answers to clients that left: every abort on data is a reset, no TIME_WAIT but those the kernel made', async () => {
      const N = 40;
      const port = 7501;
      events = [];
      const total0 = tracer.totals();
      const out = await closes(ns, 'late-answer', N, port);
      // Mostly the path: the answer carries the ACK of the orphan's FIN, which aborts on data. Where
      // the delayed ACK went alone first (a slow server), the orphan became a timewait socket in its
      // FIN_WAIT2 substate, which the answer then resets: the kernel made that one, so it counts.
      const made = twMade(out);
      expect(out.mib.TCPAbortOnData + made).toBe(N);
      expect(out.mib.TCPAbortOnData).toBeGreaterThan(N / 2);
      expect(tracer.totals().timewait - total0.timewait).toBe(made);
      expect(timewaitsTo(port)).toBe(made);
      expect(take('timewait', port)).toHaveLength(made);
      // Each client's orphan (or its timewait socket) reset the server: a reset per close, from the client's port.
      const sent = take('reset_sent', port).filter((e) => e.rport === port);
      expect(sent).toHaveLength(N);
      expect(new Set(sent.map((e) => e.lport))).toEqual(new Set(out.client_ports));
      expect(tracer.totals().resetSent - total0.resetSent).toBe(out.mib.OutRsts);
      // The reset says what the orphan left, FIN_WAIT2, where the answer carried the ACK of its FIN
      // (tcp_done() just before). Where the answer met an orphan already in FIN_WAIT2, tcp_reset() closed
      // it with an error first: CLOSE. A timewait socket's reset says TIME_WAIT.
      for (const e of sent) expect(['FIN_WAIT2', 'CLOSE', 'TIME_WAIT']).toContain(e.state);
      expect(sent.filter((e) => e.state === 'TIME_WAIT')).toHaveLength(made);
      expect(sent.some((e) => e.state === 'FIN_WAIT2')).toBe(true);
    });

    it('data to a socket closed for reading: tcp_reset() is no reset received; real ones around it still count', async () => {
      const N = 25;
      const port = 7507;
      events = [];
      const total0 = tracer.totals();
      const out = await closes(ns, 'abort-mix', N, port);
      // Each round: an orphan in FIN_WAIT2 meets data (TCPAbortOnData, tcp_reset(), no reset came) and resets
      // its server (a real one, in CLOSE_WAIT); a linger-0 close (TCPAbortOnData counted after its reset)
      // resets a server closed for reading (a real one, in FIN_WAIT2).
      expect(out.mib.TCPAbortOnData).toBe(2 * N);
      expect(out.mib.OutRsts).toBe(2 * N);
      const received = take('reset_received', port);
      expect(received.filter((e) => e.lport !== port)).toEqual([]);
      expect(received).toHaveLength(2 * N);
      expect(received.filter((e) => e.state === 'CLOSE_WAIT')).toHaveLength(N);
      expect(received.filter((e) => e.state === 'FIN_WAIT2')).toHaveLength(N);
      expect(tracer.totals().resetReceived - total0.resetReceived).toBe(2 * N);
      expect(tracer.totals().resetSent - total0.resetSent).toBe(out.mib.OutRsts);
    });

    it('TCP_LINGER2 < 0: the orphan closes on the ACK of its FIN with a reset, no TIME_WAIT', async () => {
      const N = 30;
      const port = 7502;
      events = [];
      const total0 = tracer.totals();
      const out = await closes(ns, 'linger2', N, port);
      expect(out.mib.TCPAbortOnData).toBe(N);
      expect(twMade(out)).toBe(0);
      expect(tracer.totals().timewait - total0.timewait).toBe(0);
      expect(timewaitsTo(port)).toBe(0);
      const sent = take('reset_sent', port).filter((e) => e.rport === port);
      expect(new Set(sent.map((e) => e.lport))).toEqual(new Set(out.client_ports));
      expect(sent).toHaveLength(N);
      expect(new Set(sent.map((e) => e.state))).toEqual(new Set(['FIN_WAIT2']));
    });

    it('TCP_LINGER2 < 0 on a socket already in FIN_WAIT2: close() moves it to CLOSE, then resets; no TIME_WAIT', async () => {
      const N = 30;
      const port = 7506;
      events = [];
      const total0 = tracer.totals();
      const out = await closes(ns, 'linger2', N, port, 'shutdown-first');
      expect(out.mib.TCPAbortOnLinger).toBe(N);
      expect(twMade(out)).toBe(0);
      expect(tracer.totals().timewait - total0.timewait).toBe(0);
      expect(timewaitsTo(port)).toBe(0);
      const sent = take('reset_sent', port).filter((e) => e.rport === port);
      expect(sent).toHaveLength(N);
      expect(new Set(sent.map((e) => e.lport))).toEqual(new Set(out.client_ports));
      // The state the reset's socket left, not the CLOSE it was already in.
      expect(new Set(sent.map((e) => e.state))).toEqual(new Set(['FIN_WAIT2']));
    });

    it('orphans in FIN_WAIT2 with tcp_fin_timeout 1: TIME_WAITs equal TW + TWKilled, whichever way each went', async () => {
      const N = 30;
      const port = 7503;
      await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_fin_timeout=1']);
      try {
        events = [];
        const total0 = tracer.totals();
        const out = await closes(ns, 'fin-timeout', N, port, 2.5);
        const made = twMade(out);
        expect(tracer.totals().timewait - total0.timewait).toBe(made);
        expect(timewaitsTo(port)).toBe(made);
        expect(take('timewait', port)).toHaveLength(made);
        // The rest gave up on their FIN_WAIT2 timer: a reset each, and no TIME_WAIT.
        const gaveUp = take('reset_sent', port).filter((e) => e.rport === port && e.state === 'FIN_WAIT2');
        expect(gaveUp.length + made).toBe(N);
      } finally {
        await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_fin_timeout=60']);
      }
    });

    it('tcp_max_tw_buckets reached: only the timewait sockets made count, the overflow does not', async () => {
      const N = 30;
      const room = 8;
      const port = 7504;
      const tw0 = ns.sockstatTcp().tw ?? 0;
      await ns.exec('sysctl', ['-q', '-w', `net.ipv4.tcp_max_tw_buckets=${tw0 + room}`]);
      try {
        events = [];
        const total0 = tracer.totals();
        const out = await closes(ns, 'active-close', N, port);
        expect(twMade(out)).toBe(room);
        expect(out.mib.TCPTimeWaitOverflow).toBe(N - room);
        expect((ns.sockstatTcp().tw ?? 0) - tw0).toBe(room);
        expect(tracer.totals().timewait - total0.timewait).toBe(room);
        expect(timewaitsTo(port)).toBe(room);
        expect(take('timewait', port)).toHaveLength(room);
      } finally {
        await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_max_tw_buckets=262144']);
      }
    });

    it('IPv6 active closes, then past tcp_max_tw_buckets: each timewait socket made counts, no other', async () => {
      const N = 20;
      const port = 7507;
      const tw0 = ns.sockstatTcp().tw ?? 0;
      events = [];
      let total0 = tracer.totals();
      const open = await closes(ns, 'active-close', N, port, '::1');
      expect(twMade(open)).toBe(N);
      expect(tracer.totals().timewait - total0.timewait).toBe(N);
      const tw = take('timewait', port);
      expect(tw).toHaveLength(N);
      for (const e of tw) expect(e).toMatchObject({ family: 'ipv6', raddr: '::1', laddr: '::1', state: 'FIN_WAIT2' });
      // sockstat's tw counts IPv4 and IPv6 timewait sockets alike.
      await ns.exec('sysctl', ['-q', '-w', `net.ipv4.tcp_max_tw_buckets=${(ns.sockstatTcp().tw ?? 0) + 2}`]);
      try {
        total0 = tracer.totals();
        const full = await closes(ns, 'active-close', N, port + 1, '::1');
        expect(twMade(full)).toBe(2);
        expect(full.mib.TCPTimeWaitOverflow).toBe(N - 2);
        expect(tracer.totals().timewait - total0.timewait).toBe(2);
      } finally {
        await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_max_tw_buckets=262144']);
      }
      expect((ns.sockstatTcp().tw ?? 0) - tw0).toBe(N + 2);
    });

    it('a WebSocket-style storm (slow accept, clients leaving mid-handshake): TIME_WAIT and resets exact', async () => {
      // Its own port per suite: the trace events below are not per namespace, and the other suite's storm
      // can still be resetting late SYN-ACK retransmits on its port.
      const port = variant ? 7515 : 7505;
      events = [];
      // The kernel's own tcp_receive_reset events on this port, and every tcp_send_reset (ftrace, not BPF).
      const trace = TraceInstance.open(`wst-twx-${process.pid}-${variant ?? 'auto'}`, [
        { event: 'tcp/tcp_receive_reset', filter: `sport == ${port} || dport == ${port}` },
        { event: 'tcp/tcp_send_reset' },
      ]);
      // Every FIN_WAIT2/CLOSING -> CLOSE move on this port (each timewait socket made is one), seen by ftrace, not
      // BPF: when wstrace falls short, the failure names the moves it has no TIME_WAIT event for, with CPU and time.
      // An instance of its own: resetsReallyReceived() reads the next event on a CPU, which these must not be.
      const closing = TraceInstance.open(`wst-twc-${process.pid}-${variant ?? 'auto'}`, [
        {
          event: 'sock/inet_sock_set_state',
          filter: `newstate == 7 && (oldstate == 5 || oldstate == 11) && (sport == ${port} || dport == ${port})`,
        },
      ]);
      // A reset or data reaching a timewait socket on the other CPU in the microseconds between its making and
      // its full socket's close ends it before the hash shows it (a race the BPF source names): the kernel's own
      // count (TW + TWKilled on that CPU) still puts it in the total. tcp_rfc1337=1 keeps resets from ending
      // those in the TIME_WAIT substate; this storm's are in FIN_WAIT2's, which it does not guard.
      await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_rfc1337=1']);
      const nstat0 = ns.nstat();
      const total0 = tracer.totals();
      const skipped0 = tracer.skippedRuns();
      try {
      const out = await closes(ns, 'ws-storm', 300, port, 16, 0.002, 15);
      // The storm made every kind of close (the referee says so).
      expect(out.mib.TCPAbortOnData).toBeGreaterThan(0);
      expect(twMade(out)).toBeGreaterThan(0);
      // Its last resets can still be on their way (a SYN-ACK resent to a client that left is answered
      // with one): compare the kernel's counts and wstrace's read together, until both have settled.
      // Short only by runs the kernel skipped as nested in the same program on a CPU (counted; on a machine
      // this busy the timer and packet programs can interrupt themselves).
      // When short, name the kernel's moves to CLOSE that got no TIME_WAIT event (with CPU and time). The list
      // also holds the moves that made no timewait socket (aborts); the missed ones are among them.
      const unseen = (): string => {
        const seen = new Set(take('timewait', port).map((e) => `${e.lport}>${e.rport}`));
        return closing
          .lines()
          .filter((l) => !seen.has(`${l.fields.sport}>${l.fields.dport}`))
          .map((l) => `cpu${l.cpu} ${l.ts} ${l.fields.sport}>${l.fields.dport} ${l.fields.oldstate}`)
          .join('\n');
      };
      const settled = await until(
        () => {
          const total1 = tracer.totals();
          const nstat1 = ns.nstat();
          const made = delta(nstat1, nstat0, 'TcpExtTW') + delta(nstat1, nstat0, 'TcpExtTWKilled');
          const twShort = made - (total1.timewait - total0.timewait);
          const rstShort = delta(nstat1, nstat0, 'TcpOutRsts') - (total1.resetSent - total0.resetSent);
          // Resets received have no counter of their own: the kernel's own trace events are the referee.
          const { received, abortsOnData } = resetsReallyReceived(trace.lines(), port);
          const rcvShort = received - (total1.resetReceived - total0.resetReceived);
          // Listen drops, both stages, every cause: ListenDrops.
          const drops = delta(nstat1, nstat0, 'TcpExtListenDrops');
          const dropShort = drops - (total1.synDrop - total0.synDrop + total1.listenOverflow - total0.listenOverflow);
          const skipped = tracer.skippedRuns() - skipped0;
          return { made, twShort, rstShort, received, abortsOnData, rcvShort, drops, dropShort, skipped };
        },
        {
          what: 'TIME_WAIT, resets sent and received, and listen drops counted as the kernel did',
          timeoutMs: 20_000,
          accept: (r) =>
            r.twShort >= 0 && r.rstShort >= 0 && r.rcvShort >= 0 && r.dropShort >= 0 && r.twShort + r.rstShort + r.rcvShort + r.dropShort <= r.skipped,
        },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\nmoves to CLOSE from FIN_WAIT2/CLOSING without a timewait event:\n${unseen()}`);
      });
      expect(trace.overruns()).toBe(0);
      expect(settled.made).toBeGreaterThanOrEqual(twMade(out));
      expect(settled.received).toBeGreaterThan(0);
      expect(settled.drops).toBeGreaterThan(0);
      } finally {
        trace.close();
        closing.close();
        await ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_rfc1337=0']);
      }
    });
  });
}

suite('TIME_WAIT only where the kernel made a timewait socket (hooks this kernel picks)', 'wst-twx');
suite('TIME_WAIT only where the kernel made a timewait socket (raw tracepoints)', 'wst-twr', 'raw_tp');
