/** `--netns NAME|PATH`: a namespace named by `ip netns`, or any nsfs file. */
import { statSync } from 'node:fs';
import { parseSysctlNumbers, SYSCTL_FILES, type ReadFiles } from '../host/index.js';
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
 * net.ipv4.ip_local_port_range as `read` sees it (host's readCurrentNetns, or
 * netnsReader for another namespace: /proc/sys/net answers for the reader's
 * namespace); undefined if it cannot be read.
 */
export async function ephemeralPortRange(read: ReadFiles): Promise<[number, number] | undefined> {
  const path = SYSCTL_FILES.ipLocalPortRange;
  try {
    const [text = ''] = await read([path]);
    const [low = 0, high = 0] = parseSysctlNumbers(text, path, 2);
    return low > 0 && low <= high ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}
