/**
 * The agent: holds the tracer, serves wstrace.v1.Tracer plus health and
 * reflection over gRPC, optionally Prometheus. Every resource registers its
 * closer on one Teardown as it is acquired, so a start that fails midway and
 * close() release the same things, newest first.
 */
import { Server, type ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { unlinkSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { join } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import {
  blindNotes,
  DEFAULT_RING_BYTES,
  EVENT_KINDS,
  EVENT_LAYOUT,
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
import type { DoctorRequest, DoctorResponse, GetInfoResponse, HostFacts } from '../generated/wstrace/v1/tracer.js';
import { kindToProto } from '../protocol/convert.js';
import { AgentCaptures, captureToProto, type CaptureOptions } from './captures.js';
import { exitCode, runChecks } from '../doctor/checks.js';
import { gatherFacts } from '../doctor/gather.js';
import { EventHub } from './hub.js';
import { formatAddress, type ListenAddress } from '../protocol/address.js';
import { serverCredentials, type TlsFiles } from '../protocol/tls.js';
import { prepareUnixSocket } from './unix-socket.js';
import { buildRegistry, serveMetrics } from './metrics.js';
import { controlGrant, controlRefusal, TracerService, type ControlGrant, type TracerCore } from './service.js';
import { buildSnapshot } from './snapshot.js';
import { ContainerResolver, type Attribution, type ResolverOptions } from '../containers/index.js';
import { DEFAULT_LIMITS, type SubscriberLimits } from './subscriber.js';
import { SummaryPump } from './summaries.js';
import { Teardown } from './teardown.js';
import { VERSION } from './version.js';

export interface AgentOptions {
  readonly listen: ListenAddress;
  readonly tls?: TlsFiles;
  readonly insecure?: boolean;
  /** Lets callers control the host (StartCapture) where the listener alone would not: see controlGrant. */
  readonly allowCaptures?: boolean;
  /** HOST:PORT for Prometheus, off when absent. */
  readonly metrics?: string;
  /** Tracer options; `binding` runs the agent on a fake addon. */
  readonly tracer?: TracerOptions;
  /** Events kept for Watch `last`/`since`. */
  readonly recentEvents?: number;
  readonly limits?: SubscriberLimits;
  /** Reads host facts for the traced namespace; injectable for tests. */
  readonly hostFacts?: (netnsPath: string | undefined) => Promise<HostFacts>;
  /** Captures: directory, bounds, rules, pre-trigger window. */
  readonly captures?: CaptureOptions;
  /** Who cgroups belong to (the CRI socket, limits), or false to show cgroup ids only. */
  readonly containers?: ResolverOptions | false;
}

export interface RunningAgent {
  /** Where it listens, with the real port for tcp://HOST:0. */
  readonly address: ListenAddress;
  readonly metricsPort?: number;
  readonly tracer: Tracer;
  readonly hub: EventHub;
  readonly captures: AgentCaptures;
  /** Who may control the host through the listener. */
  readonly grant: ControlGrant;
  info(): GetInfoResponse;
  /** Ends streams with a status, stops serving, detaches BPF, removes the socket. Safe to call twice. */
  close(message?: string): Promise<void>;
}

const KERNEL_LOSS_POLL_MS = 500;
/** sock_diag dumps are shared by callers within this window (a scrape asks several times). */
const DUMP_SHARE_MS = 250;
/** How long open streams get to finish before the gRPC server is forced down. */
const SHUTDOWN_GRACE_MS = 2000;

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  // Checked before anything is acquired: a bad flag leaves nothing to undo.
  const grant = controlGrant(opts.listen, opts.tls ?? {}, opts.insecure ?? false, opts.allowCaptures ?? false);
  const creds = serverCredentials(opts.listen, opts.tls ?? {}, opts.insecure ?? false);
  const teardown = new Teardown();
  try {
    return await assemble(opts, creds, grant, teardown);
  } catch (err) {
    throw await teardown.failed(err);
  }
}

/** Acquires everything in order; each closer is registered the moment its resource exists. */
async function assemble(opts: AgentOptions, creds: ServerCredentials, grant: ControlGrant, teardown: Teardown): Promise<RunningAgent> {
  if (opts.listen.kind === 'unix') await prepareUnixSocket(opts.listen.path);
  const tracer = await openTracer(opts.tracer ?? {});
  teardown.add('tracer', () => tracer.close());
  const startMicros = Date.now() * 1000;
  const ports = opts.tracer?.ports ?? [];

  const containers =
    opts.containers === false ? undefined : new ContainerResolver({ log: (line) => process.stderr.write(`${line}\n`), ...opts.containers });
  if (containers) teardown.add('container names', () => containers.close());
  const hub = new EventHub(opts.recentEvents ?? 65_536, containers ? (id) => containers.peek(id) : undefined);
  teardown.add('event feed', tracer.subscribeRaw((batch) => hub.publish(batch)));

  const captures = new AgentCaptures(tracer, opts.captures ?? {}, ports);
  teardown.add('captures', () => captures.close());
  await captures.start();
  captures.manager.onChange((r) => hub.captureChanged(captureToProto(r)));

  const loss = watchKernelLoss(tracer, hub);
  teardown.add('kernel loss poll', () => loss.stop());

  // Events beyond the budget wait in the kernel's summary table until drained: every second, and once more at close.
  const pump = new SummaryPump(tracer, (batch) => hub.summaries(batch));
  pump.start();
  teardown.add('summary drain', () => pump.stop());

  const sockets = sharedSocketDump(tracer);
  const info = agentInfo(tracer, ports, startMicros, grant);
  const hostFacts = opts.hostFacts ?? (await import('./host-facts.js')).readHostFactsProto;
  const core: TracerCore = {
    hub,
    info,
    snapshot: snapshotOf(tracer, sockets, hostFacts, containers),
    startCapture: (req) => captures.request(req),
    doctor: (req) => doctorOf(tracer, req),
    listCaptures: () => captures.list(),
  };
  const { server, health } = grpcServer(new TracerService(core, grant, opts.limits ?? DEFAULT_LIMITS));
  teardown.add('gRPC server', () => shutdownServer(server));
  const address = await bindServer(server, opts.listen, creds);
  // Released before the server stops, so no new client connects while streams drain.
  if (address.kind === 'unix') teardown.add('socket file', () => removeSocketFile(address.path));

  let endMessage = 'agent shutting down';
  teardown.add('streams', async () => {
    health.setStatus('', 'NOT_SERVING');
    health.setStatus('wstrace.v1.Tracer', 'NOT_SERVING');
    // Subscribers get every event the kernel already has, its summary rows and the loss count, before their end.
    tracer.flush();
    await pump.stop();
    loss.report();
    hub.endAll(endMessage);
  });

  let metricsPort: number | undefined;
  if (opts.metrics) {
    const registry = buildRegistry({
      counters: () => tracer.counters(),
      sockets,
      dumpNetns: tracer.netns?.inode ?? ownNetnsInode(),
      ephemeralPorts: tracer.ephemeralPorts,
      subscribers: () => hub.subscriberCount,
      lostSlow: () => hub.lostSlow,
      received: () => hub.received,
      skippedRuns: () => tracer.skippedRuns(),
      eventBudget: tracer.eventBudget,
      ringBytes: opts.tracer?.ringBytes ?? DEFAULT_RING_BYTES,
      // A ring record is the event plus an 8-byte header, rounded up to 8 bytes.
      recordBytes: Math.ceil((EVENT_LAYOUT.size + 8) / 8) * 8,
      hooks: tracer.hooks,
      version: VERSION,
      ...(containers ? { workload: (cgroup: number) => containers.peek(cgroup) } : {}),
    });
    const metrics = await serveMetrics(registry, opts.metrics);
    teardown.add('metrics server', () => closeHttp(metrics.server));
    metricsPort = metrics.port;
  }

  const close = (message?: string): Promise<void> => {
    if (message !== undefined && !teardown.closed) endMessage = message;
    return teardown.close();
  };
  return { address, ...(metricsPort !== undefined ? { metricsPort } : {}), tracer, hub, captures, grant, info, close };
}

/**
 * Turns the kernel's loss counters into lost notices on every stream, polled:
 * ring drops, and events beyond the budget its summary table had no row for.
 */
function watchKernelLoss(tracer: Tracer, hub: EventHub): { report(): void; stop(): void } {
  let reported = 0;
  let reportedSummary = 0;
  const report = () => {
    const t = tracer.totals();
    if (t.ringDrops > reported) hub.kernelLost(t.ringDrops - reported);
    reported = t.ringDrops;
    if (t.summaryLost > reportedSummary) hub.summaryLost(t.summaryLost - reportedSummary);
    reportedSummary = t.summaryLost;
  };
  const timer = setInterval(report, KERNEL_LOSS_POLL_MS);
  timer.unref();
  return { report, stop: () => clearInterval(timer) };
}

function sharedSocketDump(tracer: Tracer): () => Promise<SocketDump> {
  let dump: { at: number; p: Promise<SocketDump> } | undefined;
  return () => {
    if (!dump || Date.now() - dump.at > DUMP_SHARE_MS) dump = { at: Date.now(), p: tracer.dumpSockets() };
    return dump.p;
  };
}

/** The agent's info; `controlAllowed` as a caller with a verified certificate would get it (the service answers each caller). */
function agentInfo(tracer: Tracer, ports: readonly number[], startMicros: number, grant: ControlGrant): () => GetInfoResponse {
  const verified = { getAuthContext: () => ({ sslPeerCertificate: {} }) };
  return () => ({
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
    ports: [...ports],
    pid: process.pid,
    controlAllowed: controlRefusal(grant, verified) === undefined,
    eventBudget: tracer.eventBudget,
  });
}

function snapshotOf(
  tracer: Tracer,
  sockets: () => Promise<SocketDump>,
  hostFacts: (netnsPath: string | undefined) => Promise<HostFacts>,
  containers: ContainerResolver | undefined,
): TracerCore['snapshot'] {
  const owners = new SocketOwners();
  const dumpNetns = tracer.netns?.inode ?? ownNetnsInode();
  return async () => {
    const [socks, host] = await Promise.all([sockets(), hostFacts(tracer.netns?.path)]);
    return buildSnapshot({
      counters: tracer.counters(),
      skippedRuns: tracer.skippedRuns(),
      sockets: socks,
      dumpNetns,
      host,
      owner: (inode) => owners.lookup(inode),
      ...(containers ? { names: (cgroup, pid) => peekNames(containers, cgroup, pid) } : {}),
      nowMs: Date.now(),
    });
  };
}

/** A listener's cgroup, or its owner's when the kernel did not say, as the resolver knows it now. */
function peekNames(containers: ContainerResolver, cgroup: number | undefined, pid: number | undefined): Attribution | undefined {
  const id = cgroup || (pid ? containers.idOfPid(pid) : undefined);
  return id ? containers.peek(id) : undefined;
}

/** The doctor's checks, with the hooks and queue peaks this agent has already seen. */
async function doctorOf(tracer: Tracer, req: DoctorRequest): Promise<DoctorResponse> {
  const peaks = new Map(
    tracer.counters().listeners.map((l) => [
      `${l.addr}|${l.port}`,
      {
        peak: l.peak,
        overflows: l.overflows + l.synDrops.acceptQueueFull,
        syn: { queueFull: l.synDrops.synQueueFull, unproven: l.synDrops.unprovenPeer, cookies: l.cookiesSent, synackRetrans: l.synackRetrans },
      },
    ]),
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
}

function grpcServer(service: TracerService): { server: Server; health: HealthImplementation } {
  const server = new Server();
  service.addToServer(server);
  const health = new HealthImplementation({ '': 'SERVING', 'wstrace.v1.Tracer': 'SERVING' });
  health.addToServer(server);
  const protoDir = join(packageRoot(), 'proto');
  new ReflectionService(loadSync(join(protoDir, 'wstrace/v1/tracer.proto'), { includeDirs: [protoDir] })).addToServer(server);
  return { server, health };
}

/** Binds; a unix socket is made 0600 (umask), a tcp port 0 comes back as the real one. */
function bindServer(server: Server, listen: ListenAddress, creds: ServerCredentials): Promise<ListenAddress> {
  return new Promise((resolve, reject) => {
    const oldMask = listen.kind === 'unix' ? process.umask(0o177) : undefined;
    server.bindAsync(listen.kind === 'unix' ? `unix://${listen.path}` : `${listen.host}:${listen.port}`, creds, (err, port) => {
      if (oldMask !== undefined) process.umask(oldMask);
      if (err) reject(new UserError(`cannot listen on ${formatAddress(listen)}: ${err.message}.`));
      else resolve(listen.kind === 'tcp' ? { ...listen, port } : listen);
    });
  });
}

/** Lets open calls finish, then forces whatever is left. */
function shutdownServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

function removeSocketFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function closeHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
