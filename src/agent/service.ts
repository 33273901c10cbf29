/**
 * The wstrace.v1.Tracer service. Watch sends the replay the client asked for,
 * then follows; Snapshot and GetInfo answer from the agent's core.
 */
import { status as Status, type Server, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import { UserError } from '../protocol/errors.js';
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
  type WatchRequest,
  type WatchResponse,
} from '../generated/wstrace/v1/tracer.js';
import { decodeStartCapture } from './captures.js';
import { compileFilters, FilterError } from './filter.js';
import type { EventHub } from './hub.js';
import { DEFAULT_LIMITS, Subscriber, type SubscriberLimits } from './subscriber.js';

export interface TracerCore {
  readonly hub: EventHub;
  info(): GetInfoResponse;
  snapshot(): Promise<SnapshotResponse>;
  startCapture(req: StartCaptureRequest): Promise<Capture>;
  listCaptures(): Capture[];
  doctor(req: DoctorRequest): Promise<DoctorResponse>;
}

export class TracerService {
  constructor(
    private readonly core: TracerCore,
    private readonly limits: SubscriberLimits = DEFAULT_LIMITS,
  ) {}

  addToServer(server: Server): void {
    // StartCapture's own decoder: a uint64 the generated one cannot hold is INVALID_ARGUMENT, not INTERNAL.
    const definition = { ...TracerServiceDefinition, startCapture: { ...TracerServiceDefinition.startCapture, requestDeserialize: decodeStartCapture } };
    server.addService(definition, {
      watch: (call: ServerWritableStream<WatchRequest, WatchResponse>) => this.watch(call),
      snapshot: (call: ServerUnaryCall<SnapshotRequest, SnapshotResponse>, cb: sendUnaryData<SnapshotResponse>) =>
        this.snapshot(call, cb),
      getInfo: (_call: ServerUnaryCall<GetInfoRequest, GetInfoResponse>, cb: sendUnaryData<GetInfoResponse>) =>
        cb(null, this.core.info()),
      startCapture: (
        call: ServerUnaryCall<StartCaptureRequest, StartCaptureResponse>,
        cb: sendUnaryData<StartCaptureResponse>,
      ) => {
        this.core.startCapture(call.request).then(
          (capture) => cb(null, { capture }),
          (err: Error) =>
            cb({ code: err instanceof UserError ? Status.INVALID_ARGUMENT : Status.INTERNAL, details: err.message }),
        );
      },
      doctor: (call: ServerUnaryCall<DoctorRequest, DoctorResponse>, cb: sendUnaryData<DoctorResponse>) => {
        this.core.doctor(call.request).then(
          (r) => cb(null, r),
          (err: Error) => cb({ code: err instanceof UserError ? Status.INVALID_ARGUMENT : Status.INTERNAL, details: err.message }),
        );
      },
      listCaptures: (_call: ServerUnaryCall<ListCapturesRequest, ListCapturesResponse>, cb: sendUnaryData<ListCapturesResponse>) =>
        cb(null, { captures: this.core.listCaptures() }),
    });
  }

  private watch(call: ServerWritableStream<WatchRequest, WatchResponse>): void {
    const req = call.request;
    let predicate;
    try {
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
    const replay = req.last || req.sinceUnixMicros ? hub.recent.select(predicate, req.last, req.sinceUnixMicros) : [];
    // Current state first, then the replay, then (with follow) live events.
    sub.status(
      `${replay.length} recent events replayed${req.follow ? ', following' : ''}`,
      hub.recent.size,
    );
    if (replay.length) sub.preload(replay);
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
