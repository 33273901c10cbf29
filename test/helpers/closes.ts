/**
 * Runs a mode of closes.py (connections that end without a TIME_WAIT, stray
 * segments a listener resets) inside a test namespace, with the rise of that
 * namespace's MIB counters it measured around the traffic.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestNetns } from './netns.js';

export const CLOSES = join(dirname(fileURLToPath(import.meta.url)), 'closes.py');

/** The counters closes.py measures (MIB in closes.py), by their nstat names without the table. */
export type MibName =
  | 'TW'
  | 'TWKilled'
  | 'TCPTimeWaitOverflow'
  | 'TCPAbortOnData'
  | 'TCPAbortOnLinger'
  | 'ListenOverflows'
  | 'ListenDrops'
  | 'OutRsts'
  | 'EstabResets';

export interface ClosesResult {
  readonly mib: Readonly<Record<MibName, number>>;
  /** The rise of sockstat's tw (timewait sockets held) around the traffic. */
  readonly tw: number;
  readonly client_ports: readonly number[];
  readonly source_ports: readonly number[];
  readonly [key: string]: unknown;
}

export async function closes(ns: TestNetns, mode: string, ...args: Array<string | number>): Promise<ClosesResult> {
  const stdout = await ns.exec('python3', [CLOSES, mode, ...args.map(String)], 90_000);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ClosesResult;
}

/** Timewait sockets the kernel made: TcpExtTW and TcpExtTWKilled both count one when its timer is armed. */
export function twMade(out: ClosesResult): number {
  return out.mib.TW + out.mib.TWKilled;
}
