/**
 * The wstrace.v1.Tracer service. Watch sends the replay the client asked for,
 * then follows; Snapshot and GetInfo answer from the agent's core.
 *
 * Reading and controlling the host are separate grants. Every caller that can
 * connect may read (Watch, Snapshot, GetInfo, Doctor, ListCaptures: the
 * capture records Watch already streams to every subscriber). Control
 * (StartCapture: root runs tcpdump and writes files) is checked per call.
 */
import { statSync } from 'node:fs';
import { status as Status, type Server, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import type { ListenAddress } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import type { TlsFiles } from '../protocol/tls.js';
import {
  TracerService as TracerServiceDefinition,
  type Capture,
  type DoctorRequest,
  type DoctorResponse,
  type ListCapturesRequest,
  type ListCapturesResponse,
  type StartCaptureRequest,
  type StartCaptureResponse,
  type GetInfoRequest,
  type GetInfoResponse,
  type SnapshotRequest,
  type SnapshotResponse,
} from '../generated/wstrace/v1/tracer.js';
import { decodeStartCapture } from './captures.js';
import { checkDoctorScope } from '../doctor/gather.js';
import { checkWatchRequest, compileFilters, decodeWatchRequest, FilterError } from './filter.js';
import type { EventHub } from './hub.js';
import { serializeWatchResponse } from './encode.js';
import { DEFAULT_LIMITS, Subscriber, type SubscriberLimits, type WatchCall } from './subscriber.js';

export interface TracerCore {
  readonly hub: EventHub;
  info(): GetInfoResponse;
  snapshot(): Promise<SnapshotResponse>;
  startCapture(req: StartCaptureRequest): Promise<Capture>;
  listCaptures(): Capture[];
  doctor(req: DoctorRequest): Promise<DoctorResponse>;
}

/** Who may control the host through the agent's one listener. */
export interface ControlGrant {
  readonly listen: ListenAddress;
  /** --allow-captures: the operator's explicit grant (needed on TCP, and on a unix socket opened to others). */
  readonly allowCaptures: boolean;
  /** TCP clients must present a certificate signed by --tls-client-ca. */
  readonly clientCerts: boolean;
}

/**
 * Refuses, before anything is acquired, a grant that would let a client
 * nobody vetted control the host: a certificate is the only caller identity
 * TCP gives, so --allow-captures needs --tls-client-ca, and never --insecure.
 */
export function controlGrant(listen: ListenAddress, tls: TlsFiles, insecure: boolean, allowCaptures: boolean): ControlGrant {
  if (allowCaptures && insecure) {
    throw new UserError('--allow-captures cannot go with --insecure, which lets clients in without a certificate: use --tls-cert, --tls-key and --tls-client-ca instead.');
  }
  if (allowCaptures && listen.kind === 'tcp' && !tls.clientCa) {
    throw new UserError('--allow-captures on a tcp:// listener needs --tls-client-ca: without client certificates anyone who can reach the port could start root captures.');
  }
  return { listen, allowCaptures, clientCerts: listen.kind === 'tcp' && !!tls.clientCa };
}

/** What a call exposes of its connection: grpc-js fills the certificate only when TLS verified it. */
interface CallerAuth {
  getAuthContext(): { sslPeerCertificate?: unknown };
}

/**
 * Undefined when this call may control the host; else one sentence saying
 * why not and which flag grants it. grpc-js gives no peer credentials on a
 * unix socket, so there the socket's mode is the check: the agent makes it
 * 0600, and one loosened since (chmod, chgrp) lets others in who were never
 * granted control.
 */
export function controlRefusal(grant: ControlGrant, call: CallerAuth): string | undefined {
  if (grant.listen.kind === 'unix') {
    if (grant.allowCaptures) return undefined;
    const path = grant.listen.path;
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      return `captures are off: the agent cannot check who may open its socket ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}).`;
    }
    const euid = process.geteuid?.();
    if ((st.mode & 0o077) === 0 && (euid === undefined || st.uid === euid)) return undefined;
    return `captures are off because the agent's socket ${path} is open to other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, owner uid ${st.uid}): start the agent with --allow-captures to grant them control, or restore mode 0600.`;
  }
  if (!grant.allowCaptures) {
    return grant.clientCerts
      ? "captures are off on this agent's TCP listener: start the agent with --allow-captures to let clients with a certificate from its --tls-client-ca start them."
      : "captures are off on this agent's TCP listener: start the agent with --tls-client-ca and --allow-captures to let clients with a certificate from that CA start them.";
  }
  // Under mTLS the handshake already refused clients without one; checked again so no path grants control to an unverified caller.
  if (!call.getAuthContext().sslPeerCertificate) return "captures need a client certificate signed by the agent's --tls-client-ca.";
  return undefined;
}

/** One line for the agent's start: who may control the host through this listener. */
export function describeControl(grant: ControlGrant): string {
  if (grant.listen.kind === 'unix') {
    return grant.allowCaptures
      ? `control: captures allowed to whoever can open ${grant.listen.path} (--allow-captures)`
      : `control: captures allowed to whoever can open ${grant.listen.path} while it stays mode 0600 (the agent's user)`;
  }
  return grant.allowCaptures
    ? 'control: captures allowed to clients with a certificate from --tls-client-ca (--allow-captures)'
    : 'control: off, events only (--allow-captures with --tls-client-ca grants captures)';
}

export class TracerService {
  constructor(
    private readonly core: TracerCore,
    private readonly grant: ControlGrant,
    private readonly limits: SubscriberLimits = DEFAULT_LIMITS,
  ) {}

  addToServer(server: Server): void {
    // Own decoders for StartCapture and Watch: a 64-bit number the generated ones cannot hold is INVALID_ARGUMENT, not INTERNAL.
    // Watch's serializer also sends event batches the hub already encoded, as they are.
    const definition = {
      ...TracerServiceDefinition,
      startCapture: { ...TracerServiceDefinition.startCapture, requestDeserialize: decodeStartCapture },
      watch: { ...TracerServiceDefinition.watch, requestDeserialize: decodeWatchRequest, responseSerialize: serializeWatchResponse },
    };
    server.addService(definition, {
      watch: (call: WatchCall) => this.watch(call),
      snapshot: (call: ServerUnaryCall<SnapshotRequest, SnapshotResponse>, cb: sendUnaryData<SnapshotResponse>) =>
        this.snapshot(call, cb),
      getInfo: (call: ServerUnaryCall<GetInfoRequest, GetInfoResponse>, cb: sendUnaryData<GetInfoResponse>) =>
        cb(null, { ...this.core.info(), controlAllowed: controlRefusal(this.grant, call) === undefined }),
      startCapture: (
        call: ServerUnaryCall<StartCaptureRequest, StartCaptureResponse>,
        cb: sendUnaryData<StartCaptureResponse>,
      ) => {
        const refusal = controlRefusal(this.grant, call);
        if (refusal !== undefined) {
          cb({ code: Status.PERMISSION_DENIED, details: refusal });
          return;
        }
        this.core.startCapture(call.request).then(
          (capture) => cb(null, { capture }),
          (err: Error) =>
            cb({ code: err instanceof UserError ? Status.INVALID_ARGUMENT : Status.INTERNAL, details: err.message }),
        );
      },
      doctor: (call: ServerUnaryCall<DoctorRequest, DoctorResponse>, cb: sendUnaryData<DoctorResponse>) => {
        // The scope is checked first: a port or pid that cannot be is the caller's mistake (INVALID_ARGUMENT), said before any work.
        Promise.resolve(call.request)
          .then((req) => {
            checkDoctorScope(req);
            return this.core.doctor(req);
          })
          .then(
            (r) => cb(null, r),
            (err: Error) => cb({ code: err instanceof UserError ? Status.INVALID_ARGUMENT : Status.INTERNAL, details: err.message }),
          );
      },
      listCaptures: (_call: ServerUnaryCall<ListCapturesRequest, ListCapturesResponse>, cb: sendUnaryData<ListCapturesResponse>) =>
        cb(null, { captures: this.core.listCaptures() }),
    });
  }

  private watch(call: WatchCall): void {
    const req = call.request;
    let predicate;
    try {
      checkWatchRequest(req);
      predicate = compileFilters(req.allow, req.deny);
    } catch (err) {
      // grpc-js sends an 'error' emitted on a server stream as the call's status.
      call.emit('error', {
        code: err instanceof FilterError ? Status.INVALID_ARGUMENT : Status.INTERNAL,
        details: (err as Error).message,
      });
      return;
    }
    const hub = this.core.hub;
    const sub = new Subscriber(call, predicate, req.follow, this.limits);
    const replay = req.last || req.sinceUnixMicros ? hub.recent.select(predicate, req.last, req.sinceUnixMicros) : undefined;
    const summaries = replay
      ? hub.replaySummaries(predicate, req.last, req.sinceUnixMicros, replay.length, replay.times[0] ?? 0)
      : [];
    const rows = summaries.reduce((n, b) => n + b.summaries.length, 0);
    // Current state first, then the replay, then (with follow) live events.
    sub.status(
      `${replay?.length ?? 0} recent events${rows ? ` and ${rows} summary rows` : ''} replayed${req.follow ? ', following' : ''}`,
      hub.recent.size,
    );
    if (replay) sub.preload(replay);
    if (rows) sub.preloadSummaries(summaries);
    if (!req.follow) {
      setImmediate(() => sub.end('replay complete'));
      return;
    }
    hub.add(sub);
    const drop = () => {
      sub.cancel();
      hub.remove(sub);
    };
    call.on('cancelled', drop);
    call.on('error', drop);
    call.on('close', () => hub.remove(sub));
  }

  private snapshot(_call: ServerUnaryCall<SnapshotRequest, SnapshotResponse>, cb: sendUnaryData<SnapshotResponse>): void {
    this.core.snapshot().then(
      (s) => cb(null, s),
      (err: Error) => cb({ code: Status.INTERNAL, details: `snapshot failed: ${err.message}` }),
    );
  }
}
