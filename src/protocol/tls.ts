/**
 * Credentials on both ends of the gRPC connection. A unix socket needs none
 * (its file mode is the access control); TCP gets TLS, or plain text only
 * when the user said --insecure. Who may control the host, beyond reading,
 * is the agent's grant (src/agent/service.ts).
 */
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { formatAddress, type ListenAddress } from './address.js';
import { UserError } from './errors.js';

/** The agent's side. */
export interface TlsFiles {
  readonly cert?: string;
  readonly key?: string;
  /** Clients must present a certificate signed by this CA (mTLS). */
  readonly clientCa?: string;
}

/** A client's side. */
export interface ClientTls {
  /** CA that signed the agent's certificate (else the system store). */
  readonly ca?: string;
  /** Client certificate and key, for an agent that requires mTLS. */
  readonly cert?: string;
  readonly key?: string;
  /** Plain TCP, no TLS. */
  readonly insecure?: boolean;
}

export function readPem(what: string, path: string): Buffer {
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

/**
 * The start-up warning for a TCP listener that lets in clients nobody vetted
 * (plain TCP, or TLS without --tls-client-ca): what any of them can read.
 * Undefined for a unix socket or mTLS, where every caller was let in on purpose.
 */
export function exposureWarning(a: ListenAddress, tls: TlsFiles, insecure: boolean): string | undefined {
  if (a.kind === 'unix' || tls.clientCa) return undefined;
  const how = insecure && !tls.cert ? 'is plain TCP without TLS' : 'takes clients without a certificate (no --tls-client-ca)';
  return (
    `${formatAddress(a)} ${how}: anyone who can reach it can read kernel events with peer addresses and ports, ` +
    'host facts (sysctls, kernel counters, socket and memory use, file-descriptor limits) and the names and ids of processes holding listeners; ' +
    'control is off: no client can start a capture (that needs --tls-client-ca and --allow-captures).'
  );
}

export function channelCredentials(a: ListenAddress, tls: ClientTls): ChannelCredentials {
  if (a.kind === 'unix' || tls.insecure) return credentials.createInsecure();
  return credentials.createSsl(
    tls.ca ? readPem('CA certificate', tls.ca) : null,
    tls.key ? readPem('client key', tls.key) : null,
    tls.cert ? readPem('client certificate', tls.cert) : null,
  );
}
