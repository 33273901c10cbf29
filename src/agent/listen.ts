/**
 * Where the agent listens. A root-only unix socket by default; TCP only with
 * TLS, or with an explicit --insecure that is warned about.
 */
import { ServerCredentials } from '@grpc/grpc-js';
import { chmodSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { UserError } from '../kernel/errors.js';

export const DEFAULT_SOCKET = '/run/wstrace/agent.sock';

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface TlsFiles {
  readonly cert?: string;
  readonly key?: string;
  readonly clientCa?: string;
}

export function parseListen(spec: string): ListenAddress {
  if (spec.startsWith('unix:')) {
    const path = spec.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/')) throw new UserError(`"${spec}" needs an absolute path: unix:/run/wstrace/agent.sock.`);
    return { kind: 'unix', path };
  }
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})$/.exec(spec);
  if (m && Number(m[2]) <= 65535) return { kind: 'tcp', host: m[1]!, port: Number(m[2]) };
  throw new UserError(`"${spec}" is not an address: use unix:/PATH or tcp://HOST:PORT.`);
}

export function formatAddress(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `tcp://${a.host}:${a.port}`;
}

/** grpc-js target string for an address. */
export function grpcTarget(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `${a.host}:${a.port}`;
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UserError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
  }
}

export function serverCredentials(a: ListenAddress, tls: TlsFiles, insecure: boolean): ServerCredentials {
  if (a.kind === 'unix') return ServerCredentials.createInsecure();
  if (tls.cert || tls.key) {
    if (!tls.cert || !tls.key) throw new UserError('TLS needs both --tls-cert and --tls-key.');
    const ca = tls.clientCa ? readPem('client CA', tls.clientCa) : null;
    return ServerCredentials.createSsl(
      ca,
      [{ cert_chain: readPem('TLS certificate', tls.cert), private_key: readPem('TLS key', tls.key) }],
      ca !== null,
    );
  }
  if (!insecure) {
    throw new UserError(
      `listening on ${formatAddress(a)} without TLS would let anyone on the network read kernel events: give --tls-cert and --tls-key, or --insecure to accept that.`,
    );
  }
  return ServerCredentials.createInsecure();
}

/** True when something accepts connections on the unix socket at `path`. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket's directory (0700 when we create it), refuses a live
 * socket, and removes a stale one. Anything that is not a socket is left alone.
 */
export async function prepareUnixSocket(path: string): Promise<void> {
  const dir = dirname(path);
  try {
    statSync(dir);
  } catch {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new UserError(`${path} exists and is not a socket: remove it or choose another --listen path.`);
  if (await socketIsLive(path)) {
    throw new UserError(`another agent is already listening on ${path}: stop it first, or choose another --listen path.`);
  }
  unlinkSync(path);
}
