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

/** What identifies an event, and a summary row of events: kind, tuple, namespace, state, reason. */
export interface EventKey {
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
  /**
   * cgroup v2 id of the socket the event concerns (the inode number of its
   * directory under the cgroup2 mount; 1 is the root), from the socket's own
   * cgroup data; a handshake's is its listener's. Absent when unknown (a
   * timewait socket, a packet no socket took).
   */
  readonly cgroup?: number;
  /**
   * Who that cgroup belongs to, when the agent could tell (src/containers):
   * the container id, its name in its pod, the pod and its Kubernetes
   * namespace. Not part of the key: the same cgroup always names the same.
   */
  readonly container?: string;
  readonly containerName?: string;
  readonly pod?: string;
  readonly namespace?: string;
}

export interface TraceEvent extends EventKey {
  /** Wall-clock time, milliseconds since the epoch (microsecond precision). */
  readonly timeMs: number;
  /** Accept-queue depth and limit, for listener events. */
  readonly queue?: number;
  readonly backlog?: number;
  /** Local socket inode, when the socket had one (used to find its process). */
  readonly inode?: number;
  pid?: number;
  comm?: string;
}

/**
 * Events of one key that came beyond the kernel's rate budget: not sent one
 * by one, counted here, exactly. Ports are folded as the kernel keys them: a
 * client's ephemeral local port is 0 and rport is the peer's (service) port;
 * otherwise lport is kept and rport is 0. Listener kinds keep the listener
 * and the peer's address; TIME_WAIT keeps the destination.
 */
export interface EventSummary extends EventKey {
  /** How many events this row stands for. */
  readonly count: number;
  /** Wall-clock time of the first and the last of them, as TraceEvent.timeMs. */
  readonly firstMs: number;
  readonly lastMs: number;
}

/** The identity of a listener across snapshots, samples and rows. */
export function listenerKey(family: Family, addr: string, port: number, netns: number): string {
  return `${family}|${addr}|${port}|${netns}`;
}
