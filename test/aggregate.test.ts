/** The aggregator on fixture streams: rates, windows, attribution, several sources. No root needed. */
import { describe, expect, it } from 'vitest';
import { Aggregator, shortAddress, type ListenerRow, type TopView } from '../src/aggregate/index.js';
import { batch, info, lost, NETNS, replay, snapshot, type SnapSpec } from './fixtures/aggregate/build.js';

const T0 = 1_800_000_000_000; // a whole second: slot edges are where the test puts them

function listener(view: TopView, port: number, host?: string): ListenerRow {
  const row = view.listeners.find((l) => l.port === port && (host === undefined || l.host === host));
  if (!row) throw new Error(`no listener on port ${port} in ${JSON.stringify(view.listeners.map((l) => l.endpoint))}`);
  return row;
}

/** perSec × seconds: the whole count over the window, which fixtures state exactly. */
const count = (perSec: number | undefined, view: TopView, id = 'local') =>
  Math.round((perSec ?? NaN) * view.sources.find((s) => s.id === id)!.coveredSec);

describe('recorded real run: backlog-1 listener that never accepts, closed-port resets, TIME_WAIT', () => {
  it('shows the full listener, its queue over the limit, SYN-stage drops attributed, and the resets', () => {
    const agg = new Aggregator();
    agg.addSource('local', { local: true });
    const at = replay(agg, 'local', 'full-queue.json', T0, 5200);
    const view = agg.view(at + 300, 10);

    const src = view.sources[0]!;
    expect(src).toMatchObject({ state: 'up', hostname: 'vm', synDropsExact: false, lostKernel: 0, lostSlow: 0 });
    expect(src.hooksLive).toBeGreaterThan(0);
    expect(src.blind).toContain('syn_drop');
    expect(src.sampleAgeMs).toBe(300);
    expect(src.coveredSec).toBeCloseTo(5.08, 1); // 10 s window, 5 s of data so far

    const l = listener(view, 8080);
    expect(view.listeners[0]).toBe(l); // the one in trouble sorts first
    expect(l).toMatchObject({ queue: 2, limit: 1, queueLevel: 'over', peak: 2, comm: 'python3', live: true });
    expect(l.synDropsAttributed).toBe(true);
    // The MIB said 50 ListenOverflows between the first and the last sample, none at the ACK stage.
    expect(count(l.synDropsPerSec, view)).toBe(50);
    expect(l.ackDropsPerSec).toBe(0);
    expect(l.dropLevel).toBe('over');
    expect(l.fds).toEqual({ kind: 'unknown' }); // local, but the top command has not read them yet

    // 30 connects to closed port 9000: 30 resets sent from 9000, 30 received on ephemeral ports.
    expect(count(view.resets.sentPerSec, view)).toBe(30);
    expect(count(view.resets.receivedPerSec, view)).toBe(30);
    expect(view.resets.reasons.map((r) => [r.direction, r.reason, r.count])).toEqual(
      expect.arrayContaining([
        ['sent', 'NO_SOCKET', 30],
        ['received', 'in SYN_SENT', 30],
      ]),
    );
    expect(view.resets.ports.find((p) => p.port === 9000)?.count).toBe(30);
    expect(view.resets.ports.find((p) => p.port === undefined)?.count).toBe(30); // folded ephemeral
    expect(view.resets.peers).toEqual([expect.objectContaining({ addr: '127.0.0.1', count: 60 })]);

    const tw = view.timewait.hosts[0]!;
    expect(tw).toMatchObject({ current: 10, twReuse: 'loopback', portRange: { low: 32768, high: 60999, size: 28232 } });
    expect(count(tw.createdPerSec, view)).toBe(10);
    const dest = view.timewait.destinations[0]!;
    expect(dest).toMatchObject({ endpoint: '127.0.0.1:8081', current: 10, level: 'ok' });
    expect(dest.occupancy).toBeCloseTo(10 / 28232, 8);

    const cap = view.capacity[0]!;
    expect(cap.tcpInuse).toBeGreaterThan(0);
    expect(cap.memState).toBe('normal');
    expect(cap.unattributedPerSec).toBe(0);
  });

  it('after the listener closed, it stays while its drops are in the window, then goes', () => {
    const agg = new Aggregator();
    const at = replay(agg, 'local', 'full-queue.json', T0);
    const tenSec = agg.view(at, 10);
    expect(listener(tenSec, 8080)).toMatchObject({ live: false, queueLevel: 'ok' });
    // The newest 1 s interval saw nothing on 8080: gone from the 1 s view.
    expect(agg.view(at, 1).listeners.find((l) => l.port === 8080)).toBeUndefined();
  });
});

describe('windows', () => {
  /** One snapshot a second; resets grow 10/s for the first 30 s, then stop. */
  function steady(agg: Aggregator, seconds: number): number {
    agg.up('a', info('h'));
    let at = T0;
    for (let s = 0; s <= seconds; s++) {
      at = T0 + s * 1000;
      agg.snapshot('a', snapshot(at, { totals: { resetsSent: Math.min(s, 30) * 10 } }), at);
    }
    return at;
  }

  it('1 s, 10 s and 60 s rates each cover their own span, and roll over as time goes on', () => {
    const agg = new Aggregator();
    let at = steady(agg, 35);
    expect(agg.view(at, 1).resets.sentPerSec).toBe(0);
    expect(agg.view(at, 10).resets.sentPerSec).toBe(5); // 50 in the last 10 s
    const sixty = agg.view(at, 60);
    expect(sixty.sources[0]!.coveredSec).toBe(35); // only 35 s of data yet
    expect(sixty.resets.sentPerSec).toBeCloseTo(300 / 35, 6);

    const agg2 = new Aggregator();
    at = steady(agg2, 100);
    expect(agg2.view(at, 10).resets.sentPerSec).toBe(0);
    expect(agg2.view(at, 60).sources[0]!.coveredSec).toBe(60);
    expect(agg2.view(at, 60).resets.sentPerSec).toBe(0); // 40..100 s: nothing
    const at2 = T0 + 31_000;
    const agg3 = new Aggregator();
    steady(agg3, 31);
    expect(agg3.view(at2, 1).resets.sentPerSec).toBe(0);
    expect(agg3.view(at2, 10).resets.sentPerSec).toBe(9); // seconds 21..30 grew, 30..31 did not
  });

  it('no rates from a single sample, only levels and current values', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0, { listeners: [{ port: 80, queue: 3, backlog: 2 }] }), T0);
    const v = agg.view(T0 + 100, 10);
    const l = listener(v, 80);
    expect(l).toMatchObject({ queue: 3, limit: 2, queueLevel: 'over' });
    expect(l.fullPerSec).toBeUndefined();
    expect(l.synDropsPerSec).toBeUndefined();
    expect(v.resets.sentPerSec).toBeUndefined();
    expect(v.sources[0]!.coveredSec).toBe(0);
  });

  it('peak is the deepest queue in the window, from samples and events', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0, { listeners: [{ port: 80, queue: 1, backlog: 8 }] }), T0);
    agg.watch('a', batch([{ kind: 'accept_queue_full', lport: 80, queue: 9, backlog: 8 }]), T0 + 400);
    agg.snapshot('a', snapshot(T0 + 1000, { listeners: [{ port: 80, queue: 2, backlog: 8, fullHits: 1 }] }), T0 + 1000);
    for (let s = 2; s <= 12; s++) {
      agg.snapshot('a', snapshot(T0 + s * 1000, { listeners: [{ port: 80, queue: 2, backlog: 8, fullHits: 1 }] }), T0 + s * 1000);
    }
    const at = T0 + 12_000;
    expect(listener(agg.view(at, 60), 80)).toMatchObject({ peak: 9, peakLevel: 'over', queue: 2, queueLevel: 'ok' });
    expect(listener(agg.view(at, 10), 80).peak).toBe(2); // the burst rolled out of the 10 s window
  });

  it('an agent that restarts (counters start again) never shows negative rates', () => {
    const agg = new Aggregator();
    agg.up('a', info('h', { startMicros: 1 }));
    agg.snapshot('a', snapshot(T0, { totals: { resetsSent: 500 } }), T0);
    agg.snapshot('a', snapshot(T0 + 1000, { totals: { resetsSent: 600 } }), T0 + 1000);
    agg.up('a', info('h', { startMicros: 2 }));
    agg.snapshot('a', snapshot(T0 + 2000, { totals: { resetsSent: 3 } }), T0 + 2000);
    expect(agg.view(T0 + 2000, 10).resets.sentPerSec).toBeUndefined();
    agg.snapshot('a', snapshot(T0 + 3000, { totals: { resetsSent: 7 } }), T0 + 3000);
    expect(agg.view(T0 + 3000, 10).resets.sentPerSec).toBe(4);
    // Same without a GetInfo in between: the counters going back are enough.
    agg.snapshot('a', snapshot(T0 + 4000, { totals: { resetsSent: 1 } }), T0 + 4000);
    agg.snapshot('a', snapshot(T0 + 5000, { totals: { resetsSent: 2 } }), T0 + 5000);
    expect(agg.view(T0 + 5000, 10).resets.sentPerSec).toBe(1);
  });
});

describe('SYN-stage drop attribution', () => {
  const three = (over: Partial<Record<'a' | 'b' | 'c', object>>, mib: number) =>
    snapshot(T0 + 1000, {
      listeners: [
        { port: 1001, queue: 3, backlog: 2, fullHits: 5, overflows: 2, ...over.a },
        { port: 1002, queue: 0, backlog: 5, ...over.b },
        { port: 1003, queue: 0, backlog: 5, fullHits: 1, ...over.c },
      ],
      mib: { TcpExtListenOverflows: mib, TcpExtListenDrops: mib + 4 },
    });

  function run(cur: ReturnType<typeof snapshot>, events = false, synHook = false): TopView {
    const agg = new Aggregator();
    agg.up('a', info('h', { synHook }));
    agg.snapshot(
      'a',
      snapshot(T0, {
        listeners: [
          { port: 1001, queue: 0, backlog: 2, fullHits: 3 },
          { port: 1002, queue: 0, backlog: 5 },
          { port: 1003, queue: 0, backlog: 5, fullHits: 1 },
        ],
      }),
      T0,
    );
    if (events) agg.watch('a', batch([{ kind: 'accept_queue_full', lport: 1003, queue: 6, backlog: 5 }]), T0 + 500);
    agg.snapshot('a', cur, T0 + 1000);
    return agg.view(T0 + 1000, 10);
  }

  it('the MIB remainder after the ACK-stage drops goes to the listeners seen full, marked attributed', () => {
    // ListenOverflows +11; 2 of them ACK-stage on 1001 (exact). 9 SYN-stage left, for 1001 (queue
    // over its limit) and 1003 (an accept_queue_full event); 1001 filled more often, so it gets the odd one.
    const v = run(three({}, 11), true);
    const [a, b, c] = [listener(v, 1001), listener(v, 1002), listener(v, 1003)];
    expect(a.ackDropsPerSec).toBe(2);
    expect(a.synDropsPerSec).toBe(5);
    expect(c.synDropsPerSec).toBe(4);
    expect(b.synDropsPerSec).toBe(0);
    expect([a, b, c].every((l) => l.synDropsAttributed)).toBe(true);
    expect(a.dropLevel).toBe('over');
    expect(b.dropLevel).toBe('ok');
    expect(v.capacity[0]).toMatchObject({ unattributedPerSec: 0, otherListenDropsPerSec: 4 });
  });

  it('with no listener seen full the remainder stays unattributed, shown host-wide', () => {
    const v = run(three({ a: { queue: 0, fullHits: 3, overflows: 0 } }, 11));
    expect(listener(v, 1001).synDropsPerSec).toBe(0);
    expect(listener(v, 1003).synDropsPerSec).toBe(0);
    expect(v.capacity[0]).toMatchObject({ unattributedPerSec: 11, dropLevel: 'over' });
  });

  it('with a SYN hook the per-listener counts are exact and nothing is attributed', () => {
    const v = run(three({ a: { synDropsAcceptQueueFull: 8 } }, 11), false, true);
    const a = listener(v, 1001);
    expect(a).toMatchObject({ synDropsPerSec: 8, synDropsAttributed: false });
    expect(listener(v, 1003).synDropsPerSec).toBe(0);
    expect(v.capacity[0]!.unattributedPerSec).toBe(1); // 11 − 2 ACK − 8 exact
    expect(v.sources[0]!.synDropsExact).toBe(true);
  });

  it("the agent's unattributed row (drops no listener's packet was seen to make) is no listener: they are the host-wide unattributed", () => {
    const v = run(
      three({ a: { synDropsAcceptQueueFull: 6 }, c: { port: 0, addr: '', backlog: 0, fullHits: 0, overflows: 3, live: false, unattributed: true } }, 11),
      false,
      true,
    );
    expect(v.listeners.map((l) => l.port).sort()).toEqual([1001, 1002]);
    expect(listener(v, 1001)).toMatchObject({ ackDropsPerSec: 2, synDropsPerSec: 6 });
    expect(v.capacity[0]!.unattributedPerSec).toBe(3); // 11 − 2 ACK − 6 SYN on 1001: the row's 3
  });

  it('listeners of another namespace (counters only) never share this namespace’s MIB drops', () => {
    const v = run(
      snapshot(T0 + 1000, {
        listeners: [
          { port: 1001, queue: 0, backlog: 2, fullHits: 3 },
          { port: 1002, queue: 0, backlog: 5 },
          { port: 1003, queue: 0, backlog: 5, fullHits: 1 },
          { port: 2000, queue: 0, backlog: 1, fullHits: 9, live: false, netns: 1234 },
        ],
        mib: { TcpExtListenOverflows: 6 },
      }),
    );
    expect(listener(v, 2000).synDropsPerSec).toBe(0);
    expect(v.capacity[0]!.unattributedPerSec).toBe(6);
  });
});

describe('several sources', () => {
  const busy: SnapSpec = { listeners: [{ port: 8080, queue: 2, backlog: 1, pid: 10, comm: 'srv' }], totals: { resetsSent: 0 } };

  function two(): Aggregator {
    const agg = new Aggregator();
    agg.addSource('unix:/run/a/agent.sock');
    agg.addSource('unix:/run/b/agent.sock');
    agg.up('unix:/run/a/agent.sock', info('web1'));
    agg.up('unix:/run/b/agent.sock', info('web2'));
    for (const [i, at] of [T0, T0 + 1000].entries()) {
      agg.snapshot('unix:/run/a/agent.sock', snapshot(at, { ...busy, totals: { resetsSent: i * 4 } }), at);
      agg.snapshot(
        'unix:/run/b/agent.sock',
        snapshot(at, { listeners: [{ port: 443, pid: 20, comm: 'nginx' }], totals: { resetsSent: i * 6 } }),
        at,
      );
    }
    return agg;
  }

  it('merges rows with a host column, sums the totals, and keeps each host’s figures apart', () => {
    const v = two().view(T0 + 1000, 10);
    expect(v.sources.map((s) => [s.label, s.state])).toEqual([
      ['web1', 'up'],
      ['web2', 'up'],
    ]);
    expect(listener(v, 8080)).toMatchObject({ host: 'web1', queueLevel: 'over', fds: { kind: 'n/a' } });
    expect(listener(v, 443)).toMatchObject({ host: 'web2', queueLevel: 'ok' });
    expect(v.listeners[0]!.port).toBe(8080);
    expect(v.resets.sentPerSec).toBe(10);
    expect(v.capacity.map((c) => c.host)).toEqual(['web1', 'web2']);
    expect(v.capacity[0]!.worstFds).toEqual({ kind: 'n/a' });
    expect(new Set(v.listeners.map((l) => l.key)).size).toBe(2);
  });

  it('hosts with the same name are told apart by their address', () => {
    const agg = new Aggregator();
    agg.up('unix:/tmp/x/a.sock', info('vm'));
    agg.up('unix:/tmp/x/b.sock', info('vm'));
    expect(agg.view(T0, 10).sources.map((s) => s.label)).toEqual(['a.sock', 'b.sock']);
    expect(shortAddress('tcp://10.0.0.5:7443')).toBe('10.0.0.5:7443');
  });

  it('a source going down shows as down with its reason and retry; its rows leave, the others stay', () => {
    const agg = two();
    agg.down('unix:/run/b/agent.sock', 'the agent ended the stream: agent shutting down', T0 + 5000);
    const v = agg.view(T0 + 2000, 10);
    const b = v.sources.find((s) => s.label === 'web2')!;
    expect(b).toMatchObject({ state: 'down', error: 'the agent ended the stream: agent shutting down', retryInMs: 3000, sampleLevel: 'over' });
    expect(b.sampleAgeMs).toBeUndefined();
    expect(v.listeners.map((l) => l.host)).toEqual(['web1']);
    expect(v.resets.sentPerSec).toBe(4);
    expect(v.capacity.map((c) => c.host)).toEqual(['web1']);

    // Back (same agent): its history is still good.
    agg.connecting('unix:/run/b/agent.sock');
    expect(agg.view(T0 + 6000, 10).sources[1]!.state).toBe('down');
    agg.up('unix:/run/b/agent.sock', info('web2'));
    expect(agg.view(T0 + 6000, 10).listeners.map((l) => l.host).sort()).toEqual(['web1', 'web2']);
  });

  it('a source never reached is "connecting", then down with no host name yet', () => {
    const agg = new Aggregator();
    agg.addSource('unix:/nowhere.sock');
    expect(agg.view(T0, 10).sources[0]).toMatchObject({ state: 'connecting', label: 'nowhere.sock', hooksTotal: 0 });
    agg.down('unix:/nowhere.sock', 'unreachable', T0 + 1000);
    expect(agg.view(T0, 10).sources[0]).toMatchObject({ state: 'down', retryInMs: 1000 });
  });
});

describe('host facts and events', () => {
  it('lost events are counted by cause and in the window', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0), T0);
    agg.watch('a', lost(7, 'kernel'), T0 + 200);
    agg.watch('a', lost(3, 'slow'), T0 + 300);
    agg.snapshot('a', snapshot(T0 + 1000), T0 + 1000);
    const s = agg.view(T0 + 1000, 1).sources[0]!;
    expect(s).toMatchObject({ lostKernel: 7, lostSlow: 3, lostInWindow: 10, sampleLevel: 'warn' });
  });

  it('capacity: tcp_mem thresholds, syncookies, fd use of local listener processes', () => {
    const agg = new Aggregator();
    agg.addSource('local', { local: true });
    agg.up('local', info('h'));
    const listeners = [{ port: 80, pid: 42, comm: 'srv' }];
    agg.snapshot('local', snapshot(T0, { listeners, sockstat: { ...{ 'TCP.mem': 2500 } } }), T0);
    agg.snapshot(
      'local',
      snapshot(T0 + 2000, { listeners, mib: { TcpExtSyncookiesSent: 10 }, sockstat: { 'TCP.mem': 2500, 'TCP.inuse': 5 } }),
      T0 + 2000,
    );
    agg.fds('local', new Map([[42, { open: 990, limit: 1024 }]]));
    expect(agg.listenerPids('local')).toEqual([42]);
    const v = agg.view(T0 + 2000, 10);
    expect(v.capacity[0]).toMatchObject({
      memPages: 2500,
      tcpMem: { low: 1000, pressure: 2000, high: 3000 },
      memState: 'pressure',
      memLevel: 'over',
      syncookiesPerSec: 5,
      syncookiesLevel: 'warn',
      tcpInuse: 5,
      worstFds: { kind: 'known', open: 990, limit: 1024, level: 'over', pid: 42, comm: 'srv' },
    });
    expect(listener(v, 80).fds).toEqual({ kind: 'known', open: 990, limit: 1024, level: 'over' });
  });

  it('TIME_WAIT: occupancy of the port range per destination, overflows, inbound peers folded', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0, { timewait: [{ addr: '10.0.0.9', port: 5432, created: 0, current: 0 }] }), T0);
    agg.snapshot(
      'a',
      snapshot(T0 + 1000, {
        totals: { timewait: 20000 },
        timewaitCurrent: 26000,
        timewait: [
          { addr: '10.0.0.9', port: 5432, created: 20000, current: 26000 },
          { addr: '192.0.2.7', port: 40001, current: 1 },
          { addr: '192.0.2.7', port: 40002, current: 1 },
        ],
        mib: { TcpExtTCPTimeWaitOverflow: 3 },
        sysctls: { 'net.ipv4.ip_local_port_range': '32768 60999', 'net.ipv4.tcp_tw_reuse': '0', 'net.ipv4.tcp_max_tw_buckets': '131072' },
      }),
      T0 + 1000,
    );
    const v = agg.view(T0 + 1000, 10);
    expect(v.timewait.hosts[0]).toMatchObject({ createdPerSec: 20000, current: 26000, overflowPerSec: 3, overflowLevel: 'over', twReuse: 'off' });
    const [db, peer] = v.timewait.destinations;
    expect(db).toMatchObject({ endpoint: '10.0.0.9:5432', current: 26000, createdPerSec: 20000, level: 'over' });
    expect(db!.occupancy).toBeCloseTo(26000 / 28232, 6);
    expect(peer).toMatchObject({ endpoint: '192.0.2.7:*', current: 2, level: 'ok' });
    expect(peer!.occupancy).toBeUndefined();
  });

  it('reset peers come from events, exact per-port counts from the kernel maps', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0, { listeners: [{ port: 8080 }] }), T0);
    agg.watch(
      'a',
      batch([
        { kind: 'reset_sent', lport: 8080, raddr: '198.51.100.1' },
        { kind: 'reset_sent', lport: 8080, raddr: '198.51.100.1' },
        { kind: 'reset_received', lport: 41000, raddr: '198.51.100.2', rport: 443 },
      ]),
      T0 + 500,
    );
    agg.snapshot(
      'a',
      snapshot(T0 + 1000, {
        listeners: [{ port: 8080 }],
        totals: { resetsSent: 2, resetsReceived: 1 },
        resets: [
          { direction: 'sent', localPort: 8080, reason: 'TCP_ABORT_ON_DATA', state: 'ESTABLISHED', count: 2 },
          { direction: 'received', localPort: 41000, state: 'ESTABLISHED', count: 1 },
        ],
      }),
      T0 + 1000,
    );
    const v = agg.view(T0 + 1000, 1);
    expect(v.resets.peers.map((p) => [p.addr, p.count, p.sentPerSec])).toEqual([
      ['198.51.100.1', 2, 2],
      ['198.51.100.2', 1, 0],
    ]);
    expect(v.resets.ports.map((p) => [p.port, p.count])).toEqual([
      [8080, 2],
      [undefined, 1],
    ]);
    expect(listener(v, 8080).resetsPerSec).toBe(2);
    expect(v.resets.level).toBe('warn');
    expect(NETNS).toBeGreaterThan(0);
  });

  it('local port 0 from the agent means its ephemeral ports folded: one "ephemeral" row', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0), T0);
    agg.snapshot(
      'a',
      snapshot(T0 + 1000, {
        resets: [
          { direction: 'received', localPort: 0, state: 'SYN_SENT', count: 3 },
          { direction: 'received', localPort: 40001, state: 'ESTABLISHED', count: 2 },
          { direction: 'sent', localPort: 9000, reason: 'NO_SOCKET', count: 3 },
        ],
      }),
      T0 + 1000,
    );
    const ports = agg.view(T0 + 1000, 1).resets.ports;
    expect(ports.map((p) => [p.port, p.count])).toEqual([
      [undefined, 5],
      [9000, 3],
    ]);
  });

  it('a flood of resets from ever-new addresses stays bounded: the rest count as one row', () => {
    const agg = new Aggregator();
    agg.up('a', info('h'));
    agg.snapshot('a', snapshot(T0), T0);
    const flood = Array.from({ length: 5000 }, (_, i) => ({
      kind: 'reset_sent' as const,
      lport: 80,
      raddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    }));
    agg.watch('a', batch(flood), T0 + 500);
    agg.snapshot('a', snapshot(T0 + 1000), T0 + 1000);
    const peers = agg.view(T0 + 1000, 1).resets.peers;
    expect(peers[0]).toMatchObject({ addr: '(other peers)', count: 5000 - 256 });
    expect(peers.length).toBe(200); // and the view lists at most 200 rows of anything
  });
});
