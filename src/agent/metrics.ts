/**
 * Prometheus text on /metrics. Values are read from the kernel maps at scrape
 * time (collect callbacks), so a scrape costs one map read and nothing runs
 * between scrapes.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { clip, parseHostPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import type { Counters, SocketDump } from '../kernel/index.js';

export interface MetricsSource {
  counters(): Counters;
  sockets(): Promise<SocketDump>;
  subscribers(): number;
  lostSlow(): number;
  /** Events per second sent in full (0: no budget). */
  readonly eventBudget: number;
}

function setCounter(c: Counter<string>, labels: Record<string, string | number>, value: number): void {
  c.inc(labels, value);
}

export function buildRegistry(src: MetricsSource): Registry {
  const registry = new Registry();
  // One counters() read per scrape, shared by every collect callback below.
  let cached: { at: number; counters: Counters } | undefined;
  const counters = () => {
    const now = Date.now();
    if (!cached || now - cached.at > 200) cached = { at: now, counters: src.counters() };
    return cached.counters;
  };

  new Counter({
    name: 'wstrace_events_total',
    help: 'Kernel events counted exactly in BPF maps, by kind.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const t = counters().totals;
      this.reset();
      setCounter(this, { kind: 'reset_sent' }, t.resetSent);
      setCounter(this, { kind: 'reset_received' }, t.resetReceived);
      setCounter(this, { kind: 'timewait' }, t.timewait);
      setCounter(this, { kind: 'accept_queue_full' }, t.acceptQueueFull);
      setCounter(this, { kind: 'listen_overflow' }, t.listenOverflow);
    },
  });
  new Counter({
    name: 'wstrace_resets_total',
    help: 'TCP resets by direction, local port ("ephemeral": ports of ip_local_port_range with no listener), state and kernel reason.',
    labelNames: ['direction', 'lport', 'state', 'reason', 'netns'],
    registers: [registry],
    collect() {
      this.reset();
      // Client sockets have a new ephemeral port each; the kernel side folds them into port 0.
      for (const r of counters().resets) {
        const lport = r.lport === 0 ? 'ephemeral' : String(r.lport);
        setCounter(this, { direction: r.direction, lport, state: r.state ?? '', reason: r.reason ?? '', netns: r.netns }, r.count);
      }
    },
  });
  new Counter({
    name: 'wstrace_listener_full_total',
    help: 'Enqueues that left the listener accept queue full.',
    labelNames: ['listener', 'netns'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of counters().listeners) setCounter(this, { listener: `${l.addr}:${l.port}`, netns: l.netns }, l.fullHits);
    },
  });
  new Counter({
    name: 'wstrace_listener_overflows_total',
    help: 'ACK-stage listen overflow drops per listener.',
    labelNames: ['listener', 'netns'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of counters().listeners) setCounter(this, { listener: `${l.addr}:${l.port}`, netns: l.netns }, l.overflows);
    },
  });
  new Gauge({
    name: 'wstrace_listener_queue_peak',
    help: 'Deepest accept queue seen per listener since the agent started.',
    labelNames: ['listener', 'netns'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of counters().listeners) this.set({ listener: `${l.addr}:${l.port}`, netns: l.netns }, l.peak);
    },
  });
  new Gauge({
    name: 'wstrace_listener_queue_depth',
    help: 'Accept-queue depth now, per listener (sock_diag).',
    labelNames: ['listener'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const l of (await src.sockets()).listeners) this.set({ listener: `${l.addr}:${l.port}` }, l.queue);
    },
  });
  new Gauge({
    name: 'wstrace_listener_queue_limit',
    help: 'Accept-queue limit per listener (sock_diag).',
    labelNames: ['listener'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const l of (await src.sockets()).listeners) this.set({ listener: `${l.addr}:${l.port}` }, l.backlog);
    },
  });
  new Gauge({
    name: 'wstrace_timewait_sockets',
    help: 'TIME_WAIT sockets now (sock_diag).',
    registers: [registry],
    async collect() {
      this.set((await src.sockets()).timewaitTotal);
    },
  });
  new Counter({
    name: 'wstrace_timewait_created_total',
    help: 'TIME_WAIT sockets made since the agent started.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(counters().totals.timewait);
    },
  });
  new Counter({
    name: 'wstrace_lost_events_total',
    help: 'Events not delivered, by reason: kernel_ring_full, summary_table_full (beyond the budget, no summary row) or subscriber_too_slow.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const t = counters().totals;
      setCounter(this, { reason: 'kernel_ring_full' }, t.ringDrops);
      setCounter(this, { reason: 'summary_table_full' }, t.summaryLost);
      setCounter(this, { reason: 'subscriber_too_slow' }, src.lostSlow());
    },
  });
  new Counter({
    name: 'wstrace_events_summarised_total',
    help: 'Events beyond the rate budget, counted exactly in per-key summary rows instead of sent one by one.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(counters().totals.summarised);
    },
  });
  new Gauge({
    name: 'wstrace_event_budget',
    help: 'Events per second sent in full for the host (--event-budget); 0: no budget, every event is sent.',
    registers: [registry],
    collect() {
      this.set(src.eventBudget);
    },
  });
  new Gauge({
    name: 'wstrace_subscribers',
    help: 'Watch streams open now.',
    registers: [registry],
    collect() {
      this.set(src.subscribers());
    },
  });
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
