/**
 * /metrics as Prometheus reads it: names, types and units pass
 * `promtool check metrics` (on a fake source that fills every family, and on
 * a real agent's scrape after real traffic), label sets stay within their
 * caps with an `other` series that keeps counters monotonic, the accept-wait
 * histogram is the kernel's log2 buckets in seconds, and the real scrape
 * agrees with the namespace's own MIB counters.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { buildRegistry, LABEL_CAPS, type MetricsSource } from '../src/agent/metrics.js';
import type { Counters, ListenerCounter, ResidencyCounter, SocketDump } from '../src/kernel/index.js';
import { decodeTotals } from '../src/kernel/decode.js';
import { COUNTER_COUNT } from '../src/kernel/layout.js';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { prometheusMissing, promtool } from './helpers/prometheus.js';

/** The families /metrics serves and their types: a contract dashboards and the shipped rules read. */
const FAMILIES = {
  wstrace_events_total: 'counter',
  wstrace_listen_drops_total: 'counter',
  wstrace_listener_queue_full_total: 'counter',
  wstrace_listener_enqueued_total: 'counter',
  wstrace_listener_syncookies_sent_total: 'counter',
  wstrace_listener_synack_retransmits_total: 'counter',
  wstrace_listener_queue_depth: 'gauge',
  wstrace_listener_queue_limit: 'gauge',
  wstrace_listener_info: 'gauge',
  wstrace_listener_queue_peak: 'gauge',
  wstrace_listener_accept_wait_seconds: 'histogram',
  wstrace_resets_total: 'counter',
  wstrace_timewait_created_total: 'counter',
  wstrace_timewait_sockets: 'gauge',
  wstrace_timewait_destination_created_total: 'counter',
  wstrace_timewait_destination_sockets: 'gauge',
  wstrace_timewait_destination_port_usage_ratio: 'gauge',
  wstrace_ephemeral_ports: 'gauge',
  wstrace_lost_events_total: 'counter',
  wstrace_keyed_counts_lost_total: 'counter',
  wstrace_events_summarised_total: 'counter',
  wstrace_event_budget: 'gauge',
  wstrace_subscribers: 'gauge',
  wstrace_ring_buffer_bytes: 'gauge',
  wstrace_ring_buffer_fill_ratio: 'gauge',
  wstrace_hook_attached: 'gauge',
  wstrace_build_info: 'gauge',
  wstrace_metrics_folded_label_sets: 'gauge',
};

/** name{labels} -> value, every sample line of a scrape. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    expect(m, `unparsable metrics line: ${line}`).not.toBeNull();
    out.set(m![1]!, Number(m![2]));
  }
  return out;
}

/** Sum of the samples of `name` whose labels include every `has` pair. */
function sum(s: Map<string, number>, name: string, has: Record<string, string> = {}): number {
  let n = 0;
  for (const [k, v] of s) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (Object.entries(has).every(([l, val]) => k.includes(`${l}="${val}"`))) n += v;
  }
  return n;
}

const NS = 4026531999;

function listener(port: number, overflows: number, peak = 3): ListenerCounter {
  return {
    family: 'ipv4',
    addr: '10.0.0.1',
    port,
    netns: NS,
    enqueued: overflows + 10,
    fullHits: 1,
    overflows,
    peak,
    backlog: 2,
    depth: 0,
    inode: 0,
    synDrops: { acceptQueueFull: 1, synQueueFull: 2, unprovenPeer: 3, other: 4 },
    cookiesSent: 5,
    synackRetrans: 6,
  } as ListenerCounter;
}

function fakeSource(over: { counters: Partial<Counters>; sockets?: Partial<SocketDump>; events?: number; received?: number }): MetricsSource {
  const totals = { ...decodeTotals(new Array<number>(COUNTER_COUNT).fill(0)), events: over.events ?? 0, timewait: 9 };
  return {
    counters: () => ({ totals, listeners: [], resets: [], timewaits: [], residency: [], hits: {}, ...over.counters }) as Counters,
    sockets: async () => ({ listeners: [], timewait: [], timewaitTotal: 0, ...over.sockets }),
    dumpNetns: NS,
    ephemeralPorts: [40000, 40009],
    subscribers: () => 2,
    lostSlow: () => 0,
    received: () => over.received ?? 0,
    skippedRuns: () => 3,
    eventBudget: 10_000,
    ringBytes: 16_000,
    recordBytes: 80,
    hooks: [
      { hook: 'tcp_send_reset', signal: 'reset_sent', variant: 'tp_btf', attached: true },
      { hook: 'inet_csk_accept', signal: 'accept_residency', variant: '', attached: false, error: 'no hook' },
    ],
    version: '0.0.0-test',
  };
}

describe('metrics from a fake source (no kernel)', () => {
  const residency: ResidencyCounter = {
    family: 'ipv4',
    addr: '10.0.0.1',
    port: 8080,
    netns: NS,
    // 1 wait of 1-2 µs, 2 of 8-16 µs, 1 of 2^20-2^21 µs (about 1-2 s).
    buckets: Array.from({ length: 32 }, (_, i) => ({ 0: 1, 3: 2, 20: 1 })[i] ?? 0),
    count: 4,
    sumNs: 1_500_030_000,
  };
  const source = fakeSource({
    counters: { listeners: [listener(8080, 5)], residency: [residency], timewaits: [{ family: 'ipv4', netns: NS, raddr: '10.0.0.9', rport: 5432, count: 9 }] },
    sockets: {
      listeners: [{ family: 'ipv4', addr: '10.0.0.1', port: 8080, queue: 1, backlog: 2, inode: 1, uid: 0 }],
      timewait: [{ family: 'ipv4', raddr: '10.0.0.9', rport: 5432, count: 9 }],
      timewaitTotal: 9,
    },
    events: 1000,
    received: 900,
  });

  it('every family has HELP and TYPE, the pinned names and types, and passes `promtool check metrics`', async (ctx) => {
    const text = await buildRegistry(source).metrics();
    const types = Object.fromEntries([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(types).toEqual(FAMILIES);
    for (const name of Object.keys(FAMILIES)) expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
    const missing = prometheusMissing();
    if (missing) ctx.skip(missing);
    expect(promtool(['check', 'metrics'], text)).toEqual({ status: 0, output: '' });
  });

  it('the accept-wait histogram: the log2 microsecond buckets, cumulative, in seconds', async () => {
    const s = samples(await buildRegistry(source).metrics());
    const l = 'netns="4026531999",listener="10.0.0.1:8080"';
    const bucket = (le: string) => s.get(`wstrace_listener_accept_wait_seconds_bucket{${l},le="${le}"}`);
    expect(bucket('0.000002')).toBe(1); // under 2 µs: bucket 0
    expect(bucket('0.000008')).toBe(1); // under 8 µs: buckets 0-2
    expect(bucket('0.000032')).toBe(3); // under 32 µs: buckets 0-4
    expect(bucket('0.524288')).toBe(3); // under 2^19 µs: not yet the slow one
    expect(bucket('2.097152')).toBe(4); // under 2^21 µs: all four
    expect(bucket('+Inf')).toBe(4);
    expect(s.get(`wstrace_listener_accept_wait_seconds_count{${l}}`)).toBe(4);
    expect(s.get(`wstrace_listener_accept_wait_seconds_sum{${l}}`)).toBeCloseTo(1.50003, 9);
  });

  it('TIME_WAIT per destination as a share of the port range; ring fill from records written minus read; health', async () => {
    const s = samples(await buildRegistry(source).metrics());
    const d = 'netns="4026531999",destination="10.0.0.9:5432"';
    expect(s.get(`wstrace_timewait_destination_sockets{${d}}`)).toBe(9);
    expect(s.get(`wstrace_timewait_destination_port_usage_ratio{${d}}`)).toBeCloseTo(0.9, 12);
    expect(s.get('wstrace_ephemeral_ports{netns="4026531999"}')).toBe(10);
    // 100 records not read yet, 80 bytes each, in a 16000-byte ring.
    expect(s.get('wstrace_ring_buffer_fill_ratio')).toBe(0.5);
    expect(s.get('wstrace_lost_events_total{reason="nested_run_skipped"}')).toBe(3);
    expect(s.get('wstrace_hook_attached{signal="accept_residency",hook="inet_csk_accept",variant=""}')).toBe(0);
    expect(s.get('wstrace_subscribers')).toBe(2);
    expect(s.get('wstrace_build_info{version="0.0.0-test"}')).toBe(1);
  });

  it('SYN-stage drops by cause, SYN cookies and SYN-ACK retransmits per listener', async () => {
    const s = samples(await buildRegistry(source).metrics());
    const l = 'netns="4026531999",listener="10.0.0.1:8080"';
    const causes = Object.fromEntries(
      ['ack_stage', 'syn_stage', 'reqq_full', 'unproven_peer', 'syn_other'].map((c) => [c, s.get(`wstrace_listen_drops_total{${l},cause="${c}"}`)]),
    );
    expect(causes).toEqual({ ack_stage: 5, syn_stage: 1, reqq_full: 2, unproven_peer: 3, syn_other: 4 });
    expect(s.get(`wstrace_listener_syncookies_sent_total{${l}}`)).toBe(5);
    expect(s.get(`wstrace_listener_synack_retransmits_total{${l}}`)).toBe(6);
  });

  it("a namespace's unattributed row is listener=\"unattributed\", its ListenOverflows as unknown_stage, so the namespace's series add up to the kernel's", async () => {
    const unattributed: ListenerCounter = {
      ...listener(0, 3, 0),
      addr: '',
      synDrops: { acceptQueueFull: 0, synQueueFull: 1, unprovenPeer: 0, other: 2 },
      cookiesSent: 4,
      synackRetrans: 0,
      unattributed: true,
    };
    const s = samples(await buildRegistry(fakeSource({ counters: { listeners: [listener(8080, 5), unattributed] } })).metrics());
    const u = 'netns="4026531999",listener="unattributed"';
    const causes = Object.fromEntries(
      ['unknown_stage', 'ack_stage', 'syn_stage', 'reqq_full', 'unproven_peer', 'syn_other'].map((c) => [c, s.get(`wstrace_listen_drops_total{${u},cause="${c}"}`)]),
    );
    expect(causes).toEqual({ unknown_stage: 3, ack_stage: undefined, syn_stage: 0, reqq_full: 1, unproven_peer: 0, syn_other: 2 });
    expect(s.get(`wstrace_listener_syncookies_sent_total{${u}}`)).toBe(4);
    // ListenOverflows of the namespace: the listener's two stages plus the unattributed row's.
    expect(sum(s, 'wstrace_listen_drops_total', { cause: 'ack_stage' }) + sum(s, 'wstrace_listen_drops_total', { cause: 'syn_stage' }) + sum(s, 'wstrace_listen_drops_total', { cause: 'unknown_stage' })).toBe(5 + 1 + 3);
    // It has no queue: no peak series, and nothing named ":0".
    expect([...s.keys()].filter((k) => k.includes('listener_queue_peak') && k.includes('unattributed'))).toEqual([]);
    expect([...s.keys()].filter((k) => k.includes('listener=":0"'))).toEqual([]);
  });

  it('a listener sock_diag lists but the maps never counted has its drop series at 0 (so its first drops are an increase)', async () => {
    const s = samples(
      await buildRegistry(
        fakeSource({ counters: {}, sockets: { listeners: [{ family: 'ipv6', addr: '::1', port: 9000, queue: 0, backlog: 128, inode: 2, uid: 0 }] } }),
      ).metrics(),
    );
    for (const cause of ['ack_stage', 'syn_stage', 'reqq_full', 'unproven_peer', 'syn_other'])
      expect(s.get(`wstrace_listen_drops_total{netns="4026531999",listener="[::1]:9000",cause="${cause}"}`)).toBe(0);
    expect(s.get('wstrace_listener_queue_limit{netns="4026531999",listener="[::1]:9000"}')).toBe(128);
  });

  it('past the cap, new listeners fold into `other`; the admitted stay, and every counter only grows', async () => {
    const cap = LABEL_CAPS.listeners;
    const listeners = Array.from({ length: cap + 44 }, (_, i) => listener(10_000 + i, i));
    const registry = buildRegistry(fakeSource({ counters: { listeners } }));
    const first = samples(await registry.metrics());
    const drops = [...first.keys()].filter((k) => k.startsWith('wstrace_listen_drops_total{') && k.includes('cause="ack_stage"'));
    expect(drops).toHaveLength(cap + 1);
    const folded = listeners.slice(cap).reduce((n, l) => n + l.overflows, 0);
    expect(first.get('wstrace_listen_drops_total{netns="other",listener="other",cause="ack_stage"}')).toBe(folded);
    expect(sum(first, 'wstrace_listen_drops_total', { cause: 'ack_stage' })).toBe(listeners.reduce((n, l) => n + l.overflows, 0));
    expect(first.get('wstrace_metrics_folded_label_sets{group="listeners"}')).toBe(44);

    // A busier newcomer does not push out an admitted listener (top-N would, and counters would jump between series).
    listeners.push(listener(20_000, 1_000_000));
    listeners[0] = listener(10_000, 7);
    const second = samples(await registry.metrics());
    expect(second.get('wstrace_listen_drops_total{netns="4026531999",listener="10.0.0.1:10000",cause="ack_stage"}')).toBe(7);
    expect(second.get('wstrace_listen_drops_total{netns="other",listener="other",cause="ack_stage"}')).toBe(folded + 1_000_000);
    for (const [k, v] of first) if (k.includes('_total{')) expect(second.get(k), k).toBeGreaterThanOrEqual(v);
  });

  it('reset label sets past their cap fold into one `other` row with their counts', async () => {
    const resets = Array.from({ length: LABEL_CAPS.resets + 10 }, (_, i) => ({
      direction: 'sent' as const,
      netns: NS,
      lport: 1000 + i,
      state: 'ESTABLISHED',
      reason: 'NOT_SPECIFIED',
      count: 2,
    }));
    const s = samples(await buildRegistry(fakeSource({ counters: { resets } })).metrics());
    expect([...s.keys()].filter((k) => k.startsWith('wstrace_resets_total{'))).toHaveLength(LABEL_CAPS.resets + 1);
    expect(s.get('wstrace_resets_total{direction="sent",lport="other",state="other",reason="other",netns="other"}')).toBe(20);
    expect(sum(s, 'wstrace_resets_total')).toBe(2 * resets.length);
  });
});

describe('the shipped Prometheus rules', () => {
  it('pass `promtool check rules`, and `promtool test rules` exercises every alert', (ctx) => {
    const missing = prometheusMissing();
    if (missing) ctx.skip(missing);
    const dir = join(ROOT, 'contrib/prometheus');
    const check = promtool(['check', 'rules', 'wstrace.rules.yml'], undefined, dir);
    expect(check.output).toContain('SUCCESS');
    expect(check.status).toBe(0);
    const unit = promtool(['test', 'rules', 'wstrace.rules.test.yml'], undefined, dir);
    expect(unit.output).toMatch(/SUCCESS$/);
    expect(unit.status).toBe(0);
    // Every alert the rules define is named in the unit tests, firing at least once.
    const alerts = [...readFileSync(join(dir, 'wstrace.rules.yml'), 'utf8').matchAll(/^\s+- alert: (\S+)$/gm)].map((m) => m[1]!);
    const tests = readFileSync(join(dir, 'wstrace.rules.test.yml'), 'utf8');
    expect(alerts).toHaveLength(5);
    for (const a of alerts) expect(tests, a).toMatch(new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`));
  });
});

describeKernel('metrics of a real agent after real traffic', () => {
  let ns: TestNetns;
  let dir: string;
  let agent: RunningAgent;

  beforeAll(async () => {
    ns = await TestNetns.create('wst-metrics');
    dir = mkdtempSync(join(tmpdir(), 'wst-metrics-'));
    agent = await startAgent({ listen: { kind: 'unix', path: join(dir, 'agent.sock') }, tracer: { netns: ns.path, resolveOwners: false }, metrics: '127.0.0.1:0' });
  });
  afterAll(async () => {
    await agent?.close();
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a scrape after drops, resets and TIME_WAIT passes `promtool check metrics` and equals the namespace's nstat", async (ctx) => {
    const scrape = async () => (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    const k0 = ns.nstat();
    const s0 = samples(await scrape());
    await ns.traffic('ack-overflow', 7621, 2, 2, 0.5);
    await ns.traffic('closed-port', 3, 7622);
    await ns.traffic('timewait', 5, 7623);
    await ns.packetOnEveryCpu(); // rises no end took (where the kernel ran no BPF program) set aside now, not later
    const k1 = ns.nstat();
    const text = await scrape();
    const s1 = samples(text);
    const d = (name: string, has: Record<string, string> = {}) => sum(s1, name, has) - sum(s0, name, has);
    expect(d('wstrace_listen_drops_total', { listener: '127.0.0.1:7621', cause: 'ack_stage' }) + d('wstrace_listen_drops_total', { listener: 'unattributed', cause: 'unknown_stage' })).toBe(
      delta(k1, k0, 'TcpExtListenOverflows'),
    );
    expect(delta(k1, k0, 'TcpExtListenOverflows')).toBeGreaterThan(0);
    expect(d('wstrace_resets_total', { direction: 'sent' })).toBe(delta(k1, k0, 'TcpOutRsts'));
    expect(d('wstrace_resets_total', { direction: 'sent', lport: '7622' })).toBe(3);
    expect(d('wstrace_timewait_destination_created_total', { destination: '127.0.0.1:7623' })).toBe(delta(k1, k0, 'TcpExtTW'));
    expect(d('wstrace_timewait_created_total')).toBe(5);
    expect(sum(s1, 'wstrace_timewait_destination_sockets', { destination: '127.0.0.1:7623' })).toBe(ns.sockstatTcp().tw);
    expect(s1.get(`wstrace_listen_drops_total{netns="${ns.inode()}",listener="127.0.0.1:7621",cause="ack_stage"}`)).toBeGreaterThan(0);
    const missing = prometheusMissing();
    if (missing) ctx.skip(missing);
    expect(promtool(['check', 'metrics'], text)).toEqual({ status: 0, output: '' });
  });
});
