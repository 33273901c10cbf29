/**
 * Client sockets take a new ephemeral port each: keyed by local port, their
 * resets would make one row (or one Prometheus series) per connection. Ports
 * in ip_local_port_range are folded into one "ephemeral" row instead.
 */
import { readFileSync } from 'node:fs';

export function ephemeralRange(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && high) return { low, high };
  } catch {
    // fall through to the kernel default
  }
  return { low: 32768, high: 60999 };
}

export function isEphemeral(port: number, range = ephemeralRange()): boolean {
  return port >= range.low && port <= range.high;
}
