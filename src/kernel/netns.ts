/**
 * `--netns NAME|PATH`: a namespace named by `ip netns`, /run/netns/NAME, or
 * /proc/PID/ns/net. Nothing else is opened: the agent resolves Watch filters
 * as root for any caller, so a path outside those two places (/etc/shadow,
 * ../../x) is refused by its shape alone, before any file is touched.
 */
import { readlinkSync, statfsSync, statSync } from 'node:fs';
import { parseSysctlNumbers, SYSCTL_FILES, type ReadFiles } from '../host/index.js';
import { clip } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';

export interface NetnsRef {
  /** The file that names it (/run/netns/NAME, /proc/PID/ns/net). */
  readonly path: string;
  /** Its inode: what the kernel side compares against. */
  readonly inode: number;
}

/** statfs f_type of nsfs (include/uapi/linux/magic.h NSFS_MAGIC): every namespace file is on it. */
const NSFS_MAGIC = 0x6e736673;

/** Where `ip netns add` bind-mounts the namespaces it names. */
const NAMED_DIR = '/run/netns';

/** Why a spec names no network namespace; the message says it for a person at the command line. */
export type NetnsProblem = 'shape' | 'missing' | 'denied' | 'not-net';

export class NetnsError extends UserError {
  constructor(
    message: string,
    readonly problem: NetnsProblem,
  ) {
    super(message);
  }
}

const ACCEPTED = 'give a name from `ip netns list`, /run/netns/NAME or /proc/PID/ns/net.';

/** A name `ip netns add` takes: one path component, not . or .., within NAME_MAX. */
function isNetnsName(name: string): boolean {
  return name.length > 0 && Buffer.byteLength(name) <= 255 && name !== '.' && name !== '..' && !/[/\0]/.test(name);
}

/**
 * The file a spec names, or undefined when it is neither a valid `ip netns`
 * name nor one of the two accepted paths. Shape only: no file is touched.
 */
export function netnsPath(spec: string): string | undefined {
  if (isNetnsName(spec)) return `${NAMED_DIR}/${spec}`;
  if (spec.startsWith(`${NAMED_DIR}/`) && isNetnsName(spec.slice(NAMED_DIR.length + 1))) return spec;
  if (/^\/proc\/(?:[1-9]\d{0,9}|self|thread-self)\/ns\/net$/.test(spec)) return spec;
  return undefined;
}

/**
 * The namespace a spec names, checked to be a network namespace: the file is
 * on nsfs, and /proc/PID/ns/net's link says `net:[inode]` of that very inode
 * (a /run/netns bind mount has no link to read: there nsfs and the place
 * `ip netns` keeps network namespaces are the proof). Each failure is a
 * NetnsError: not found, permission denied (never reported as not found), or
 * not a network namespace.
 */
export function resolveNetns(spec: string): NetnsRef {
  const path = netnsPath(spec);
  if (path === undefined) throw new NetnsError(`"${clip(spec)}" is not a network namespace: ${ACCEPTED}`, 'shape');
  let ino: number;
  try {
    const st = statSync(path);
    if (!st.isFile() || statfsSync(path).type !== NSFS_MAGIC) {
      throw new NetnsError(`${clip(path)} is not a network namespace: ${ACCEPTED}`, 'not-net');
    }
    ino = st.ino;
    if (path.startsWith('/proc/') && readlinkSync(path) !== `net:[${ino}]`) {
      throw new NetnsError(`${clip(path)} is not a network namespace: ${ACCEPTED}`, 'not-net');
    }
  } catch (err) {
    if (err instanceof NetnsError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ESRCH') {
      const where = path === spec ? '' : ` (${clip(path)})`;
      throw new NetnsError(`network namespace "${clip(spec)}" not found${where}: ${ACCEPTED}`, 'missing');
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new NetnsError(`cannot open network namespace ${clip(path)}: permission denied (run wstrace as root, with access to that namespace).`, 'denied');
    }
    throw new NetnsError(`cannot open network namespace ${clip(path)}: ${code ?? String(err)}.`, 'denied');
  }
  return { path, inode: ino };
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
