/**
 * Addresses an agent listens on and a client dials, and the one TCP port
 * check every layer uses (flags, filters, capture targets, the kernel's
 * port list).
 */
import { UserError } from './errors.js';

export const DEFAULT_SOCKET = '/run/wstrace/agent.sock';

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** A TCP port a user can name: a whole number from 1 to 65535. */
export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Throws one sentence, naming what the port was for, unless `value` is a port. */
export function checkPort(value: unknown, what = 'port'): number {
  if (!isPort(value)) throw new UserError(`${what} "${clip(String(value))}" is not a TCP port: give a number from 1 to 65535.`);
  return value;
}

/** Caller input echoed in a message, cut short: an error never carries a caller's megabyte back. */
export function clip(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * HOST:PORT with an IPv6 host in brackets, as a bind or dial address: port 0
 * (the kernel picks one) is allowed here. Undefined when it is not that shape.
 */
export function parseHostPort(spec: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})$/.exec(spec);
  if (!m || Number(m[2]) > 65535) return undefined;
  return { host: m[1]!, port: Number(m[2]) };
}

export function parseListen(spec: string): ListenAddress {
  if (spec.startsWith('unix:')) {
    const path = spec.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/')) throw new UserError(`"${clip(spec)}" needs an absolute path: unix:/run/wstrace/agent.sock.`);
    return { kind: 'unix', path };
  }
  const hp = spec.startsWith('tcp://') ? parseHostPort(spec.slice('tcp://'.length)) : undefined;
  if (hp) return { kind: 'tcp', ...hp };
  throw new UserError(`"${clip(spec)}" is not an address: use unix:/PATH or tcp://HOST:PORT.`);
}

export function formatAddress(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `tcp://${a.host}:${a.port}`;
}

/** grpc-js target string for an address. */
export function grpcTarget(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `${a.host}:${a.port}`;
}

/**
 * The name a namespace's row of unattributed listen drops (Listener.unattributed)
 * has where a listener's endpoint would be: the metrics' listener label, report's listener column.
 */
export const UNATTRIBUTED = 'unattributed';

/** "addr:port", with IPv6 addresses in brackets (as ss and curl write them). */
export function endpoint(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}
