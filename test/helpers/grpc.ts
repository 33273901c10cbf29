/**
 * A Tracer client built from the .proto with @grpc/proto-loader, not from the
 * generated code: what any other team's tool would do. Tests use it to prove
 * the wire format, health and reflection.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { join } from 'node:path';
import { ROOT } from './kernel.js';

const LOAD = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true } as const;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const tracerPkg = grpc.loadPackageDefinition(
  loadSync(join(ROOT, 'proto/wstrace/v1/tracer.proto'), { ...LOAD, includeDirs: [join(ROOT, 'proto')] }),
) as Any;
const healthPkg = grpc.loadPackageDefinition(loadSync(healthProto, LOAD)) as Any;
const reflectionPkg = grpc.loadPackageDefinition(
  loadSync(join(ROOT, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto'), LOAD),
) as Any;

export interface WireEvent {
  kind: string;
  localPort: number;
  remotePort: number;
  localAddr: string;
  remoteAddr: string;
  netns: number;
  state: string;
  reason: string;
  timeUnixMicros: number;
}

export interface WireMessage {
  response: 'batch' | 'lost' | 'status';
  batch?: { events: WireEvent[] };
  lost?: { count: number; reason: string };
  status?: { message: string; end: boolean };
}

export function tracerClient(target: string, creds = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): Any {
  return new tracerPkg.wstrace.v1.Tracer(target, creds, options);
}

export function unary<T>(client: Any, method: string, req: object = {}): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method](req, { deadline: Date.now() + 10_000 }, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}

export function healthCheck(target: string, service: string): Promise<{ status: string }> {
  const c = new healthPkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
  return unary<{ status: string }>(c, 'check', { service }).finally(() => c.close());
}

export function listServices(target: string): Promise<string[]> {
  const c = new reflectionPkg.grpc.reflection.v1.ServerReflection(target, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = c.serverReflectionInfo();
    call.on('data', (msg: Any) => {
      resolve((msg.listServicesResponse?.service ?? []).map((s: { name: string }) => s.name));
      call.end();
      c.close();
    });
    call.on('error', reject);
    call.write({ listServices: '' });
  });
}

/** Collects a Watch stream's messages until `done` says so or the time runs out. */
export function collect(
  call: Any,
  done: (msgs: WireMessage[]) => boolean,
  timeoutMs = 10_000,
): Promise<WireMessage[]> {
  const msgs: WireMessage[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      call.cancel();
      resolve(msgs);
    }, timeoutMs);
    call.on('data', (m: WireMessage) => {
      msgs.push(m);
      if (done(msgs)) {
        clearTimeout(timer);
        call.cancel();
        resolve(msgs);
      }
    });
    call.on('error', (err: { code: number }) => {
      clearTimeout(timer);
      if (err.code === grpc.status.CANCELLED) resolve(msgs);
      else reject(err);
    });
    call.on('end', () => {
      clearTimeout(timer);
      resolve(msgs);
    });
  });
}

/**
 * Resolves with the first message of a Watch stream. The agent answers with a
 * status once the subscriber is registered, so traffic made after this is
 * seen by the stream: the condition a test waits for before making traffic.
 */
export function following(call: Any, timeoutMs = 20_000): Promise<WireMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(() => reject(new Error(`the Watch stream sent nothing within ${timeoutMs} ms`))), timeoutMs);
    const onData = (m: WireMessage) => done(() => resolve(m));
    const onError = (err: Error) => done(() => reject(err));
    const done = (settle: () => void) => {
      clearTimeout(timer);
      call.off('data', onData);
      call.off('error', onError);
      settle();
    };
    call.on('data', onData);
    call.on('error', onError);
  });
}

export function eventsOf(msgs: WireMessage[]): WireEvent[] {
  return msgs.flatMap((m) => (m.response === 'batch' ? m.batch!.events : []));
}

export { grpc };

/**
 * A Watch call made by hand over HTTP/2 that reads nothing until resume():
 * the kind of stuck client a real agent meets. grpc-js clients keep reading
 * into memory while paused; this one leaves the flow-control window closed.
 */
export async function stuckWatch(socketPath: string, requestBytes: Uint8Array) {
  const http2 = await import('node:http2');
  const net = await import('node:net');
  const session = http2.connect('http://localhost', {
    createConnection: () => net.connect(socketPath),
    settings: { initialWindowSize: 65_535 },
  });
  const frame = Buffer.alloc(5 + requestBytes.length);
  frame.writeUInt32BE(requestBytes.length, 1);
  Buffer.from(requestBytes).copy(frame, 5);
  const stream = session.request({
    ':method': 'POST',
    ':path': '/wstrace.v1.Tracer/Watch',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.end(frame);
  stream.pause();
  // The agent's reply headers come with its first message, a status written
  // once the subscriber is registered; a paused stream still gets headers.
  const answered = new Promise<void>((resolve, reject) => {
    stream.once('response', () => resolve());
    stream.once('error', reject);
  });
  const messages: Buffer[] = [];
  let pending = Buffer.alloc(0);
  stream.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      messages.push(pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
    }
  });
  return {
    messages,
    answered,
    resume: () => stream.resume(),
    close: () => {
      stream.close();
      session.close();
    },
  };
}
