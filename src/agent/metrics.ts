/**
 * Prometheus text on /metrics. Every value is read from the kernel's maps or
 * the socket tables at scrape time (one counters() read and one sock_diag
 * dump a scrape), never rebuilt from the event stream: the ring may drop and
 * the budget summarises, the maps count every event.
 *
 * Label sets are bounded per family (see LabelCap): the first label sets seen
 * keep their own series for the agent's life, later ones fold into one
 * `other` series, so a counter series never moves between rows and stays
 * monotonic. README "Metrics" lists the families, labels and caps.
 */
import { createServer, type Server } from 'node:http';
import { Registry, type Metric } from 'prom-client';
import { clip, endpoint, parseHostPort, UNATTRIBUTED } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import type { Counters, HookStatus, ListenerCounter, SocketDump } from '../kernel/index.js';

export interface MetricsSource {
  counters(): Counters;
  sockets(): Promise<SocketDump>;
  /** Inode of the namespace sockets() describes (the traced one, or the agent's own). */
  readonly dumpNetns: number;
  /** The traced namespace's ip_local_port_range when the tracer opened; undefined when unread. */
  readonly ephemeralPorts?: readonly [number, number] | undefined;
  subscribers(): number;
  lostSlow(): number;
  /** Ring records that reached the agent (EventHub.received): with the kernel's count, what waits in the ring. */
  received(): number;
  /** Program runs the kernel skipped as nested (Tracer.skippedRuns): events in no count. */
  skippedRuns(): number;
  /** Events per second sent in full (0: no budget). */
  readonly eventBudget: number;
  /** Ring buffer size, and the bytes one record takes in it (header and padding included). */
  readonly ringBytes: number;
  readonly recordBytes: number;
  readonly hooks: readonly HookStatus[];
  readonly version: string;
  /** Extra labels of a namespace's series (container, pod), when something knows them. */
  netnsLabels?(netns: number): Readonly<Record<string, string>>;
  /** Who a cgroup belongs to, from a cache that never waits (src/containers); absent: no wstrace_listener_info. */
  workload?(cgroup: number): { containerId?: string; containerName?: string; pod?: string; namespace?: string } | undefined;
}

/** Distinct label sets each family keeps before folding into `other`. */
export const LABEL_CAPS = { listeners: 256, destinations: 256, resets: 512 } as const;
export const OTHER = 'other';
const FOLDED_MEMORY = 65_536;

type Labels = Record<string, string>;
interface Sample {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

/**
 * Sticky admission: a key admitted once keeps its own series; past the cap,
 * new keys fold into `other`. Sticky rather than top-N because a top-N set
 * changes between scrapes and would move counts between series (a counter
 * that drops reads as a reset). A restart of the agent starts over.
 */
export class LabelCap {
  private readonly admitted = new Set<string>();
  /** Distinct keys folded (wstrace_metrics_folded_label_sets); remembered up to a bound, as the maps that feed it are. */
  readonly folded = new Set<string>();
  constructor(readonly cap: number) {}

  admit(key: string): boolean {
    if (this.admitted.has(key)) return true;
    if (this.admitted.size >= this.cap) {
      if (this.folded.size < FOLDED_MEMORY) this.folded.add(key);
      return false;
    }
    this.admitted.add(key);
    return true;
  }
}

/** Sums values per label set, in first-seen order; `max` keeps the largest instead (gauges of folded listeners). */
class Rows {
  private readonly rows = new Map<string, Sample>();
  constructor(private readonly combine: 'sum' | 'max' = 'sum') {}
  add(labels: Labels, value: number, metricName?: string): void {
    const key = `${metricName ?? ''}\u0000${JSON.stringify(labels)}`;
    const old = this.rows.get(key);
    const v = !old ? value : this.combine === 'sum' ? old.value + value : Math.max(old.value, value);
    this.rows.set(key, { labels, value: v, ...(metricName ? { metricName } : {}) });
  }
  get samples(): Sample[] {
    return [...this.rows.values()];
  }
}

/** A family prom-client formats; its samples come from `read` at each scrape. */
function family(registry: Registry, name: string, type: Kind, help: string, read: () => Sample[] | Promise<Sample[]>): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    async get() {
      return { name, help, type, aggregator: 'sum', values: await read() };
    },
  };
  registry.registerMetric(metric as unknown as Metric);
}

/** Accept-wait bucket bounds kept: every other power of two from 2 µs to 2^25 µs (about 34 s), each exact in the kernel's log2 histogram. */
const WAIT_BOUNDS_LOG2 = Array.from({ length: 13 }, (_, i) => 2 * i + 1);

const DROP_CAUSES = [
  ['ack_stage', (l: ListenerCounter) => l.overflows],
  ['syn_stage', (l: ListenerCounter) => l.synDrops.acceptQueueFull],
  ['reqq_full', (l: ListenerCounter) => l.synDrops.synQueueFull],
  ['unproven_peer', (l: ListenerCounter) => l.synDrops.unprovenPeer],
  ['syn_other', (l: ListenerCounter) => l.synDrops.other],
] as const;

export function buildRegistry(src: MetricsSource): Registry {
  const registry = new Registry();
  const caps = {
    listeners: new LabelCap(LABEL_CAPS.listeners),
    destinations: new LabelCap(LABEL_CAPS.destinations),
    resets: new LabelCap(LABEL_CAPS.resets),
  };
  // One counters() read and one socket dump per scrape, shared by every family.
  let cached: { at: number; counters: Counters } | undefined;
  const counters = () => {
    const now = Date.now();
    if (!cached || now - cached.at > 200) cached = { at: now, counters: src.counters() };
    return cached.counters;
  };
  const ns = (netns: number): Labels => ({ netns: String(netns), ...(src.netnsLabels?.(netns) ?? {}) });
  /** A listener's labels, or the `other` row's when the cap folded it; a namespace's unattributed row is `unattributed`. */
  const listenerLabels = (netns: number, addr: string, port: number, unattributed?: boolean): Labels => {
    const listener = unattributed ? UNATTRIBUTED : endpoint(addr, port);
    return caps.listeners.admit(`${netns}|${listener}`) ? { ...ns(netns), listener } : { netns: OTHER, listener: OTHER };
  };
  const destinationLabels = (netns: number, addr: string, port: number): Labels => {
    const destination = endpoint(addr, port);
    return caps.destinations.admit(`${netns}|${destination}`) ? { ...ns(netns), destination } : { netns: OTHER, destination: OTHER };
  };

  family(registry, 'wstrace_events_total', 'counter', 'Kernel events counted exactly in BPF maps, by kind.', () => {
    const t = counters().totals;
    return [
      { labels: { kind: 'reset_sent' }, value: t.resetSent },
      { labels: { kind: 'reset_received' }, value: t.resetReceived },
      { labels: { kind: 'timewait' }, value: t.timewait },
      { labels: { kind: 'accept_queue_full' }, value: t.acceptQueueFull },
      { labels: { kind: 'listen_overflow' }, value: t.listenOverflow },
      { labels: { kind: 'syn_drop' }, value: t.synDrop },
    ];
  });

  // Listeners: every one sock_diag shows gets its drop series at 0, so a
  // listener's first drops are an increase Prometheus sees, not its first sample.
  family(
    registry,
    'wstrace_listen_drops_total',
    'counter',
    'Connections a listener dropped, by cause: ack_stage (last ACK, accept queue full), syn_stage (SYN, accept queue full), reqq_full (SYN, request queue full, no cookies), unproven_peer, syn_other. SYN-stage causes need a hook this kernel may lack (wstrace_hook_attached{signal="syn_drop"}). listener="unattributed": a namespace\'s drops no listener\'s packet was seen to make (the kernel ran no BPF program where it counted them; its ListenOverflows as unknown_stage), so a namespace\'s series add up to its ListenOverflows and ListenDrops.',
    async () => {
      const rows = new Rows();
      for (const l of (await src.sockets()).listeners)
        for (const [cause] of DROP_CAUSES) rows.add({ ...listenerLabels(src.dumpNetns, l.addr, l.port), cause }, 0);
      for (const l of counters().listeners)
        for (const [cause, of] of DROP_CAUSES)
          rows.add({ ...listenerLabels(l.netns, l.addr, l.port, l.unattributed), cause: l.unattributed && cause === 'ack_stage' ? 'unknown_stage' : cause }, of(l));
      return rows.samples;
    },
  );
  const listenerCounter = (name: string, help: string, of: (l: ListenerCounter) => number) =>
    family(registry, name, 'counter', help, () => {
      const rows = new Rows();
      for (const l of counters().listeners) rows.add(listenerLabels(l.netns, l.addr, l.port, l.unattributed), of(l));
      return rows.samples;
    });
  listenerCounter('wstrace_listener_queue_full_total', 'Enqueues that left a listener accept queue full.', (l) => l.fullHits);
  listenerCounter('wstrace_listener_enqueued_total', 'Connections queued on a listener accept queue.', (l) => l.enqueued);
  listenerCounter(
    'wstrace_listener_syncookies_sent_total',
    'SYN cookies a listener sent (its SYN queue was full), from the SYN-stage tracepoint route (SyncookiesSent per listener).',
    (l) => l.cookiesSent,
  );
  listenerCounter(
    'wstrace_listener_synack_retransmits_total',
    'SYN-ACKs a listener retransmitted (the handshake was not completed in time), from the SYN-stage tracepoint route.',
    (l) => l.synackRetrans,
  );
  const listenerGauge = (name: string, help: string, of: (l: SocketDump['listeners'][number]) => number) =>
    family(registry, name, 'gauge', help, async () => {
      const rows = new Rows('max');
      for (const l of (await src.sockets()).listeners) rows.add(listenerLabels(src.dumpNetns, l.addr, l.port), of(l));
      return rows.samples;
    });
  listenerGauge('wstrace_listener_queue_depth', 'Connections waiting in a listener accept queue now (sock_diag; `other`: the largest folded).', (l) => l.queue);
  // Pod and container labels live on this one family, joined on (netns, listener): the
  // listeners' counters keep their label sets when a name becomes known (no series moves),
  // and it has one series per named listener the listeners cap admitted, never more.
  family(
    registry,
    'wstrace_listener_info',
    'gauge',
    "A listener's Kubernetes pod, namespace and container, 1 per named listener (join: `* on(netns, listener) group_left(pod, namespace, container)`); only listeners within the listeners cap.",
    async () => {
      const rows = new Rows('max');
      if (!src.workload) return rows.samples;
      const seen = new Set<string>();
      const add = (netns: number, addr: string, port: number, cgroup: number | undefined) => {
        const w = cgroup ? src.workload!(cgroup) : undefined;
        if (!w) return;
        const labels = listenerLabels(netns, addr, port);
        const key = `${labels.netns}|${labels.listener}`;
        if (labels.listener === OTHER || seen.has(key)) return;
        seen.add(key);
        const container = w.containerName ?? (w.containerId && /^[0-9a-f]{64}$/.test(w.containerId) ? w.containerId.slice(0, 12) : w.containerId);
        rows.add({ ...labels, pod: w.pod ?? '', namespace: w.namespace ?? '', container: container ?? '' }, 1);
      };
      for (const l of (await src.sockets()).listeners) add(src.dumpNetns, l.addr, l.port, l.cgroup);
      for (const l of counters().listeners) add(l.netns, l.addr, l.port, l.cgroup);
      return rows.samples;
    },
  );
  listenerGauge('wstrace_listener_queue_limit', 'Accept-queue limit the kernel applies to a listener (sock_diag; `other`: the largest folded).', (l) => l.backlog);
  family(
    registry,
    'wstrace_listener_queue_peak',
    'gauge',
    'Deepest accept queue seen per listener since the agent started (`other`: the largest folded).',
    async () => {
      const rows = new Rows('max');
      for (const l of (await src.sockets()).listeners) rows.add(listenerLabels(src.dumpNetns, l.addr, l.port), l.queue);
      for (const l of counters().listeners) if (!l.unattributed) rows.add(listenerLabels(l.netns, l.addr, l.port), l.peak);
      return rows.samples;
    },
  );
  family(
    registry,
    'wstrace_listener_accept_wait_seconds',
    'histogram',
    'Time a connection waited in the accept queue before accept(), per listener (needs fexit or kretprobe on inet_csk_accept).',
    () => {
      const rows = new Rows();
      for (const r of counters().residency) {
        const labels = listenerLabels(r.netns, r.addr, r.port);
        let cumulative = 0;
        let next = 0;
        for (const log2 of WAIT_BOUNDS_LOG2) {
          // bucket i counts waits in [2^i, 2^(i+1)) µs: those below 2^log2 µs are buckets 0..log2-1.
          for (; next < log2; next++) cumulative += r.buckets[next] ?? 0;
          rows.add({ ...labels, le: String(2 ** log2 / 1e6) }, cumulative, 'wstrace_listener_accept_wait_seconds_bucket');
        }
        const total = r.buckets.reduce((a, b) => a + b, 0);
        rows.add({ ...labels, le: '+Inf' }, total, 'wstrace_listener_accept_wait_seconds_bucket');
        rows.add(labels, r.sumNs / 1e9, 'wstrace_listener_accept_wait_seconds_sum');
        rows.add(labels, total, 'wstrace_listener_accept_wait_seconds_count');
      }
      return rows.samples;
    },
  );

  family(
    registry,
    'wstrace_resets_total',
    'counter',
    'TCP resets by direction, local port (a listener port, or "ephemeral": ports of ip_local_port_range with no listener), TCP state and kernel reason.',
    () => {
      const rows = new Rows();
      for (const r of counters().resets) {
        // Client sockets have a new ephemeral port each; the kernel side folds them into port 0.
        const labels = {
          direction: r.direction,
          lport: r.lport === 0 ? 'ephemeral' : String(r.lport),
          state: r.state ?? '',
          reason: r.reason ?? '',
          ...ns(r.netns),
        };
        const key = JSON.stringify(labels);
        rows.add(caps.resets.admit(key) ? labels : { direction: r.direction, lport: OTHER, state: OTHER, reason: OTHER, netns: OTHER }, r.count);
      }
      return rows.samples;
    },
  );

  family(registry, 'wstrace_timewait_created_total', 'counter', 'Sockets that entered TIME_WAIT since the agent started.', () => [
    { labels: {}, value: counters().totals.timewait },
  ]);
  family(registry, 'wstrace_timewait_sockets', 'gauge', 'TIME_WAIT sockets now (sock_diag).', async () => [
    { labels: {}, value: (await src.sockets()).timewaitTotal },
  ]);
  family(
    registry,
    'wstrace_timewait_destination_created_total',
    'counter',
    'Sockets that entered TIME_WAIT since the agent started, per remote address and port.',
    () => {
      const rows = new Rows();
      for (const t of counters().timewaits) rows.add(destinationLabels(t.netns, t.raddr, t.rport), t.count);
      return rows.samples;
    },
  );
  const portRange = src.ephemeralPorts ? src.ephemeralPorts[1] - src.ephemeralPorts[0] + 1 : 0;
  const heldRows = async () => {
    const rows = new Rows();
    for (const g of (await src.sockets()).timewait) rows.add(destinationLabels(src.dumpNetns, g.raddr, g.rport), g.count);
    return rows.samples;
  };
  family(registry, 'wstrace_timewait_destination_sockets', 'gauge', 'TIME_WAIT sockets now, per remote address and port (sock_diag).', heldRows);
  if (portRange > 0) {
    family(
      registry,
      'wstrace_timewait_destination_port_usage_ratio',
      'gauge',
      "TIME_WAIT sockets to a remote address and port as a share of the traced namespace's ephemeral port range: each holds a local port for that destination.",
      async () => (await heldRows()).map((s) => ({ labels: s.labels, value: s.value / portRange })),
    );
    family(registry, 'wstrace_ephemeral_ports', 'gauge', "Ports in the traced namespace's ip_local_port_range when the agent started.", () => [
      { labels: ns(src.dumpNetns), value: portRange },
    ]);
  }

  family(
    registry,
    'wstrace_lost_events_total',
    'counter',
    'Events not delivered, by reason: kernel_ring_full, summary_table_full (beyond the budget, no summary row), subscriber_too_slow, or nested_run_skipped (program runs the kernel skipped as nested: in no count at all).',
    () => {
      const t = counters().totals;
      return [
        { labels: { reason: 'kernel_ring_full' }, value: t.ringDrops },
        { labels: { reason: 'summary_table_full' }, value: t.summaryLost },
        { labels: { reason: 'subscriber_too_slow' }, value: src.lostSlow() },
        { labels: { reason: 'nested_run_skipped' }, value: src.skippedRuns() },
      ];
    },
  );
  family(registry, 'wstrace_keyed_counts_lost_total', 'counter', 'Per-key counts not stored because their BPF map was full (the totals still count them).', () => [
    { labels: {}, value: counters().totals.mapFull },
  ]);
  family(
    registry,
    'wstrace_events_summarised_total',
    'counter',
    'Events beyond the rate budget, counted exactly in per-key summary rows instead of sent one by one.',
    () => [{ labels: {}, value: counters().totals.summarised }],
  );
  family(registry, 'wstrace_event_budget', 'gauge', 'Events per second sent in full for the host (--event-budget); 0: no budget, every event is sent.', () => [
    { labels: {}, value: src.eventBudget },
  ]);
  family(registry, 'wstrace_subscribers', 'gauge', 'Watch streams open now.', () => [{ labels: {}, value: src.subscribers() }]);
  family(registry, 'wstrace_ring_buffer_bytes', 'gauge', 'Size of the kernel ring buffer (--ring-bytes).', () => [{ labels: {}, value: src.ringBytes }]);
  family(
    registry,
    'wstrace_ring_buffer_fill_ratio',
    'gauge',
    'Share of the ring buffer holding records the agent has not read yet, estimated from records written minus records received.',
    () => {
      const pending = Math.max(0, counters().totals.events - src.received());
      return [{ labels: {}, value: Math.min(1, (pending * src.recordBytes) / src.ringBytes) }];
    },
  );
  family(registry, 'wstrace_hook_attached', 'gauge', 'Whether a signal has a live kernel hook (1) or is blind on this kernel (0).', () =>
    src.hooks.map((h) => ({ labels: { signal: h.signal, hook: h.hook, variant: h.variant }, value: h.attached ? 1 : 0 })),
  );
  family(registry, 'wstrace_build_info', 'gauge', 'Always 1; the agent version as a label.', () => [{ labels: { version: src.version }, value: 1 }]);
  family(
    registry,
    'wstrace_metrics_folded_label_sets',
    'gauge',
    "Label sets folded into a family's `other` series because its cap was reached (README: Metrics).",
    () => Object.entries(caps).map(([group, cap]) => ({ labels: { group }, value: cap.folded.size })),
  );
  return registry;
}

export function parseMetricsAddress(spec: string): { host: string; port: number } {
  const hp = parseHostPort(spec);
  if (!hp) throw new UserError(`--metrics "${clip(spec)}" is not HOST:PORT (for example 127.0.0.1:9750).`);
  return { host: hp.host.replace(/^\[|\]$/g, ''), port: hp.port };
}

export async function serveMetrics(registry: Registry, spec: string): Promise<{ server: Server; port: number }> {
  const { host, port } = parseMetricsAddress(spec);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('wstrace serves /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new UserError(`cannot serve metrics on ${spec}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}.`)),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : port };
}
