/**
 * The agent: holds the tracer, serves wstrace.v1.Tracer plus health and
 * reflection over gRPC, optionally Prometheus, and shuts all of it down in
 * one place.
 */
import { Server } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { unlinkSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { join } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import {
  blindNotes,
  EVENT_KINDS,
  openTracer,
  ownNetnsInode,
  packageRoot,
  SocketOwners,
  type EventKind,
  type SocketDump,
  type Tracer,
  type TracerOptions,
} from '../kernel/index.js';
import { UserError } from '../protocol/errors.js';
import type { GetInfoResponse, HostFacts } from '../generated/wstrace/v1/tracer.js';
import { kindToProto } from '../protocol/convert.js';
import { AgentCaptures, captureToProto, type CaptureOptions } from './captures.js';
import { exitCode, runChecks } from '../doctor/checks.js';
import { gatherFacts } from '../doctor/gather.js';
import { EventHub } from './hub.js';
import { formatAddress, type ListenAddress } from '../protocol/address.js';
import { serverCredentials, type TlsFiles } from '../protocol/tls.js';
import { prepareUnixSocket } from './unix-socket.js';
import { buildRegistry, serveMetrics } from './metrics.js';
import { TracerService } from './service.js';
import { buildSnapshot } from './snapshot.js';
import { DEFAULT_LIMITS, type SubscriberLimits } from './subscriber.js';
import { VERSION } from './version.js';

export interface AgentOptions {
  readonly listen: ListenAddress;
  readonly tls?: TlsFiles;
  readonly insecure?: boolean;
  /** HOST:PORT for Prometheus, off when absent. */
  readonly metrics?: string;
  readonly tracer?: TracerOptions;
  /** Events kept for Watch `last`/`since`. */
  readonly recentEvents?: number;
  readonly limits?: SubscriberLimits;
  /** Reads host facts for the traced namespace; injectable for tests. */
  readonly hostFacts?: (netnsPath: string | undefined) => Promise<HostFacts>;
  /** Captures: directory, bounds, rules, pre-trigger window. */
  readonly captures?: CaptureOptions;
  /** Opens the tracer; tests may pass a fake-backed one. */
  readonly open?: (options: TracerOptions) => Tracer;
}

export interface RunningAgent {
  /** Where it listens, with the real port for tcp://HOST:0. */
  readonly address: ListenAddress;
  readonly metricsPort?: number;
  readonly tracer: Tracer;
  readonly hub: EventHub;
  readonly captures: AgentCaptures;
  info(): GetInfoResponse;
  /** Ends streams with a status, stops serving, detaches BPF, removes the socket. */
  close(message?: string): Promise<void>;
}

const KERNEL_LOSS_POLL_MS = 500;

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const creds = serverCredentials(opts.listen, opts.tls ?? {}, opts.insecure ?? false);
  if (opts.listen.kind === 'unix') await prepareUnixSocket(opts.listen.path);
  const tracer = (opts.open ?? openTracer)(opts.tracer ?? {});
  const startMicros = Date.now() * 1000;
  const hub = new EventHub(opts.recentEvents ?? 65_536);
  const owners = new SocketOwners();
  const hostFacts = opts.hostFacts ?? (await import('./host-facts.js')).readHostFactsProto;
  const dumpNetns = tracer.netns?.inode ?? ownNetnsInode();

  tracer.subscribe((events) => hub.publish(events));
  let captures: AgentCaptures;
  try {
    captures = new AgentCaptures(tracer, opts.captures ?? {}, opts.tracer?.ports ?? []);
    await captures.start();
  } catch (err) {
    tracer.close();
    throw err;
  }
  captures.manager.onChange((r) => hub.captureChanged(captureToProto(r)));
  let lastRingDrops = 0;
  const reportKernelLoss = () => {
    const drops = tracer.lost();
    if (drops > lastRingDrops) hub.kernelLost(drops - lastRingDrops);
    lastRingDrops = drops;
  };
  const lossTimer = setInterval(reportKernelLoss, KERNEL_LOSS_POLL_MS);
  lossTimer.unref();

  const info = (): GetInfoResponse => ({
    version: VERSION,
    kernel: release(),
    hostname: hostname(),
    hooks: tracer.hooks.map((h) => ({
      hook: h.hook,
      signal: (EVENT_KINDS as readonly string[]).includes(h.signal) ? kindToProto(h.signal as EventKind) : 0,
      signalName: h.signal,
      variant: h.variant,
      attached: h.attached,
      error: h.error ?? '',
    })),
    blind: blindNotes(tracer.hooks),
    startTimeUnixMicros: startMicros,
    netns: tracer.netns?.path ?? '',
    ports: [...(opts.tracer?.ports ?? [])],
    pid: process.pid,
  });

  // sock_diag dumps are shared by callers within a short window (a scrape asks several times).
  let dump: { at: number; p: Promise<SocketDump> } | undefined;
  const sockets = () => {
    if (!dump || Date.now() - dump.at > 250) dump = { at: Date.now(), p: tracer.dumpSockets() };
    return dump.p;
  };

  const service = new TracerService(
    {
      hub,
      info,
      async snapshot() {
        const [socks, host] = await Promise.all([sockets(), hostFacts(tracer.netns?.path)]);
        return buildSnapshot({
          counters: tracer.counters(),
          sockets: socks,
          dumpNetns,
          host,
          owner: (inode) => owners.lookup(inode),
          nowMs: Date.now(),
        });
      },
      startCapture: (req) => captures.request(req),
      async doctor(req) {
        const peaks = new Map(
          tracer.counters().listeners.map((l) => [`${l.addr}|${l.port}`, { peak: l.peak, overflows: l.overflows + l.synDrops.acceptQueueFull }]),
        );
        const hooks = tracer.hooks.map((h) => ({ signal: h.signal, attached: h.attached, variant: h.variant, ...(h.error ? { error: h.error } : {}) }));
        const findings = runChecks(
          await gatherFacts({
            ...(tracer.netns ? { netns: tracer.netns.path } : {}),
            ports: req.ports,
            ...(req.pid ? { pid: req.pid } : {}),
            known: { hooks, peaks },
          }),
        );
        return {
          findings: findings.map((f) => ({ ...f, fix: [...f.fix] })),
          status: ['ok', 'warn', 'fail'][exitCode(findings)]!,
          scope: tracer.netns ? `netns ${tracer.netns.path}` : "the agent's network namespace",
        };
      },
      listCaptures: () => captures.list(),
    },
    opts.limits ?? DEFAULT_LIMITS,
  );

  const server = new Server();
  service.addToServer(server);
  const health = new HealthImplementation({ '': 'SERVING', 'wstrace.v1.Tracer': 'SERVING' });
  health.addToServer(server);
  const protoDir = join(packageRoot(), 'proto');
  new ReflectionService(
    loadSync(join(protoDir, 'wstrace/v1/tracer.proto'), { includeDirs: [protoDir] }),
  ).addToServer(server);

  let address = opts.listen;
  let metricsServer: HttpServer | undefined;
  let metricsPort: number | undefined;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const oldMask = opts.listen.kind === 'unix' ? process.umask(0o177) : undefined;
      server.bindAsync(opts.listen.kind === 'unix' ? `unix://${opts.listen.path}` : `${opts.listen.host}:${opts.listen.port}`, creds, (err, p) => {
        if (oldMask !== undefined) process.umask(oldMask);
        if (err) reject(new UserError(`cannot listen on ${formatAddress(opts.listen)}: ${err.message}.`));
        else resolve(p);
      });
    });
    if (address.kind === 'tcp') address = { ...address, port };
    if (opts.metrics) {
      const m = await serveMetrics(
        buildRegistry({
          counters: () => tracer.counters(),
          sockets,
          subscribers: () => hub.subscriberCount,
          lostSlow: () => hub.lostSlow,
        }),
        opts.metrics,
      );
      metricsServer = m.server;
      metricsPort = m.port;
    }
  } catch (err) {
    server.forceShutdown();
    await captures.close();
    tracer.close();
    clearInterval(lossTimer);
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (message = 'agent shutting down'): Promise<void> => {
    closing ??= (async () => {
      clearInterval(lossTimer);
      health.setStatus('', 'NOT_SERVING');
      health.setStatus('wstrace.v1.Tracer', 'NOT_SERVING');
      tracer.flush();
      reportKernelLoss();
      hub.endAll(message);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await captures.close();
      tracer.close();
      if (opts.listen.kind === 'unix') {
        try {
          unlinkSync(opts.listen.path);
        } catch {
          // already gone
        }
      }
    })();
    return closing;
  };

  return { address, ...(metricsPort !== undefined ? { metricsPort } : {}), tracer, hub, captures, info, close };
}
