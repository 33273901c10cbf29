/** `--netns NAME|PATH`: a namespace named by `ip netns`, or any nsfs file. */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { parseSysctlNumbers, SYSCTL_FILES } from '../host/sysctl.js';
import { UserError } from '../protocol/errors.js';

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

/**
 * net.ipv4.ip_local_port_range as a namespace sees it (this process's own
 * without one). Read through nsenter, as /proc/sys/net answers for the
 * reader's namespace, and synchronously, as the range is fixed into the BPF
 * objects before they load; undefined if it cannot be read.
 */
export function ephemeralPortRange(ns?: NetnsRef): [number, number] | undefined {
  const path = SYSCTL_FILES.ipLocalPortRange;
  try {
    const text = ns
      ? execFileSync('nsenter', [`--net=${ns.path}`, 'cat', path], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] })
      : readFileSync(path, 'utf8');
    const [low = 0, high = 0] = parseSysctlNumbers(text, path, 2);
    return low > 0 && low <= high ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}
