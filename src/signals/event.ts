/**
 * What one kernel event means, independent of where it came from (the ring
 * buffer, the gRPC stream, a recording). The kernel layer decodes into it;
 * the protocol converts it; aggregators and consumers read it.
 */
import { KINDS, type EventKind } from './kinds.js';

export type Family = 'ipv4' | 'ipv6';

export type { EventKind } from './kinds.js';

/** The event kinds, in the signal table's order. */
export const EVENT_KINDS: readonly EventKind[] = KINDS.map((k) => k.name);

export interface TraceEvent {
  /** Wall-clock time, milliseconds since the epoch (microsecond precision). */
  readonly timeMs: number;
  readonly kind: EventKind;
  readonly family: Family;
  readonly laddr: string;
  readonly lport: number;
  readonly raddr: string;
  readonly rport: number;
  /** Network namespace inode. */
  readonly netns: number;
  /** TCP state of the socket, when there was one. */
  readonly state?: string;
  /**
   * Kernel reason name (sk_rst_reason / skb_drop_reason) when the kernel gave
   * one; for syn_drop, the cause wstrace judged (ACCEPT_QUEUE_FULL, ...).
   */
  readonly reason?: string;
  /** Accept-queue depth and limit, for listener events. */
  readonly queue?: number;
  readonly backlog?: number;
  /** Local socket inode, when the socket had one (used to find its process). */
  readonly inode?: number;
  pid?: number;
  comm?: string;
}

/** The identity of a listener across snapshots, samples and rows. */
export function listenerKey(family: Family, addr: string, port: number, netns: number): string {
  return `${family}|${addr}|${port}|${netns}`;
}
