/**
 * Capture filters are built here, from validated parts only: an address that
 * parses as an IP, a port number, a direction word. Nothing a user typed is
 * passed to tcpdump as text it would interpret.
 */
import { isIP } from 'node:net';
import { checkPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';

export interface CaptureTarget {
  /** Local or remote port to capture. */
  readonly port?: number;
  /** An IPv4 or IPv6 address. */
  readonly host?: string;
  /** Only packets from (src) or to (dst) the host/port; both when absent. */
  readonly direction?: 'src' | 'dst';
}

export function validateTarget(t: { port?: unknown; host?: unknown; direction?: unknown }): CaptureTarget {
  const out: { port?: number; host?: string; direction?: 'src' | 'dst' } = {};
  if (t.port !== undefined) {
    out.port = checkPort(t.port, 'capture port');
  }
  if (t.host !== undefined && t.host !== '') {
    if (typeof t.host !== 'string' || isIP(t.host) === 0) {
      throw new UserError(`capture host "${String(t.host)}" is not an IP address.`);
    }
    out.host = t.host;
  }
  if (t.direction !== undefined && t.direction !== '') {
    if (t.direction !== 'src' && t.direction !== 'dst') {
      throw new UserError(`capture direction "${String(t.direction)}" is not src or dst.`);
    }
    out.direction = t.direction;
  }
  if (out.port === undefined && out.host === undefined) {
    throw new UserError('a capture needs a port or a host: wstrace never captures everything.');
  }
  return out;
}

/** The pcap-filter expression for a validated target: `tcp and dst port 443 and dst host ::1`. */
export function filterExpression(t: CaptureTarget): string {
  const dir = t.direction ? `${t.direction} ` : '';
  const parts = ['tcp'];
  if (t.port !== undefined) parts.push(`${dir}port ${t.port}`);
  if (t.host !== undefined) parts.push(`${dir}host ${t.host}`);
  return parts.join(' and ');
}
