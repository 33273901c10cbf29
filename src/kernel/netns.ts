/** `--netns NAME|PATH`: a namespace named by `ip netns`, or any nsfs file. */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { UserError } from './errors.js';

export interface NetnsRef {
  /** The file that names it (/run/netns/NAME, /proc/PID/ns/net, ...). */
  readonly path: string;
  /** Its inode: what the kernel side compares against. */
  readonly inode: number;
}

export function resolveNetns(spec: string): NetnsRef {
  const path = spec.includes('/') ? spec : `/run/netns/${spec}`;
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(
      `network namespace "${spec}" not found (${path}): give a name from \`ip netns list\` or a path like /proc/PID/ns/net.`,
    );
  }
  if (st.ino === 0 || st.isDirectory()) {
    throw new UserError(`${path} is not a network namespace file: give a name from \`ip netns list\` or /proc/PID/ns/net.`);
  }
  return { path, inode: st.ino };
}

/** Inode of this process's own network namespace. */
export function ownNetnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

const PORT_RANGE = '/proc/sys/net/ipv4/ip_local_port_range';

function parseRange(text: string): [number, number] | undefined {
  const [low, high] = text.trim().split(/\s+/).map(Number);
  return low && high && low <= high ? [low, high] : undefined;
}

/**
 * net.ipv4.ip_local_port_range as a namespace sees it (this process's own
 * without one). Read through nsenter, as /proc/sys/net answers for the
 * reader's namespace; undefined if it cannot be read.
 */
export function ephemeralPortRange(ns?: NetnsRef): [number, number] | undefined {
  try {
    const text = ns
      ? execFileSync('nsenter', [`--net=${ns.path}`, 'cat', PORT_RANGE], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] })
      : readFileSync(PORT_RANGE, 'utf8');
    return parseRange(text);
  } catch {
    return undefined;
  }
}
