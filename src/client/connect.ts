/**
 * A client of a wstrace agent over gRPC: the EventSource that `watch`, `top`,
 * `info`, `capture` and `doctor --connect` read. A recording (record/replay.ts)
 * offers the same interface.
 */
import { Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import {
  TracerClient,
  TracerService,
  type Capture,
  type DoctorRequest,
  type DoctorResponse,
  type ListCapturesResponse,
  type StartCaptureRequest,
  type StartCaptureResponse,
  type GetInfoResponse,
  type SnapshotResponse,
  type WatchRequest,
  type WatchResponse,
} from '../generated/wstrace/v1/tracer.js';
import { UserError } from '../protocol/errors.js';
import { grpcTarget, parseListen, type ListenAddress } from '../protocol/address.js';
import { channelCredentials, type ClientTls } from '../protocol/tls.js';

export type { ClientTls };

/** A stream of events and snapshots, wherever they come from. */
export interface EventSource {
  info(): Promise<GetInfoResponse>;
  snapshot(): Promise<SnapshotResponse>;
  /** Messages of one Watch stream; break out of the loop to cancel it. */
  watch(request: Partial<WatchRequest>): AsyncIterable<WatchResponse> & { cancel(): void };
  /**
   * The same stream as each message's bytes, as the agent sent them: for a
   * consumer that stores them (the recorder) and need not decode each event.
   */
  watchBytes?(request: Partial<WatchRequest>): AsyncIterable<Buffer> & { cancel(): void };
  /** Only a live agent can capture; a recording cannot. */
  startCapture?(request: Partial<StartCaptureRequest>): Promise<Capture>;
  listCaptures?(): Promise<Capture[]>;
  /** The capacity checklist, run by the agent on its host. */
  doctor?(request: Partial<DoctorRequest>): Promise<DoctorResponse>;
  close(): void;
}

/** Turns a gRPC error into one sentence about the agent. */
export function agentError(err: unknown, where: string): Error {
  const e = err as { code?: number; details?: string; message?: string };
  if (e.code === 14) {
    return new UserError(`cannot reach the wstrace agent at ${where}: is \`sudo wstrace agent\` running, and may this user open its socket?`);
  }
  if (e.code === 3) return new UserError(`the agent refused the request: ${e.details ?? e.message}`);
  // PERMISSION_DENIED: the agent's sentence already says which of its flags grants the call.
  if (e.code === 7) return new UserError(e.details ?? e.message ?? 'the agent refused the request.');
  return new Error(`agent ${where}: ${e.details ?? e.message ?? String(err)}`);
}

const CAPTURE_DEFAULTS: StartCaptureRequest = {
  port: 0,
  host: '',
  direction: '',
  durationSec: 0,
  packets: 0,
  bytes: 0,
  snaplen: 0,
  preSec: 0,
};

const WATCH_DEFAULTS: WatchRequest = { allow: [], deny: [], last: 0, sinceUnixMicros: 0, follow: true };

/** A server stream as an async iterable that ends quietly when we cancel it. */
function follow<T>(call: ClientReadableStream<T>, where: string): AsyncIterable<T> & { cancel(): void } {
  const iterate = async function* (): AsyncGenerator<T> {
    try {
      for await (const msg of call) yield msg as T;
    } catch (err) {
      if ((err as { code?: number }).code === 1) return; // cancelled by us
      throw agentError(err, where);
    } finally {
      call.cancel();
    }
  };
  return Object.assign(iterate(), { cancel: () => call.cancel() });
}

export function connectAgent(address: string | ListenAddress, tls: ClientTls = {}): EventSource {
  const a = typeof address === 'string' ? parseListen(address) : address;
  const where = typeof address === 'string' ? address : grpcTarget(a);
  const client = new TracerClient(grpcTarget(a), channelCredentials(a, tls), {
    'grpc.max_receive_message_length': 64 << 20,
  });
  const deadline = () => ({ deadline: Date.now() + 10_000 });
  const unary = <T>(fn: (cb: (err: unknown, res: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => fn((err, res) => (err ? reject(agentError(err, where)) : resolve(res))));

  return {
    info: () => unary<GetInfoResponse>((cb) => client.getInfo({}, new Metadata(), deadline(), cb)),
    snapshot: () => unary<SnapshotResponse>((cb) => client.snapshot({}, new Metadata(), deadline(), cb)),
    watch(request) {
      return follow(client.watch({ ...WATCH_DEFAULTS, ...request }) as ClientReadableStream<WatchResponse>, where);
    },
    watchBytes(request) {
      const m = TracerService.watch;
      const call = client.makeServerStreamRequest<WatchRequest, Buffer>(
        m.path,
        m.requestSerialize,
        (b: Buffer) => b,
        { ...WATCH_DEFAULTS, ...request },
        new Metadata(),
        {},
      );
      return follow(call, where);
    },
    startCapture: (request) =>
      unary<StartCaptureResponse>((cb) =>
        client.startCapture({ ...CAPTURE_DEFAULTS, ...request }, new Metadata(), deadline(), cb),
      ).then((r) => r.capture!),
    listCaptures: () =>
      unary<ListCapturesResponse>((cb) => client.listCaptures({}, new Metadata(), deadline(), cb)).then((r) => r.captures),
    doctor: (request) =>
      unary<DoctorResponse>((cb) => client.doctor({ ports: [], pid: 0, ...request }, new Metadata(), { deadline: Date.now() + 30_000 }, cb)),
    close: () => client.close(),
  };
}
