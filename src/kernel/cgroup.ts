/**
 * `--cgroup PATH`: a directory of the cgroup2 hierarchy, found from
 * /proc/self/mountinfo (/sys/fs/cgroup on a pure v2 host,
 * /sys/fs/cgroup/unified on a v1/v2 hybrid), never from a fixed path. A
 * cgroup's id, which the kernel records for each socket, is its directory's
 * inode number; its level is its depth below the root (the kernel filter
 * compares the socket's ancestor at that level).
 *
 * The agent runs as root and resolves what any client typed, so nothing
 * outside the cgroup2 mount is ever opened: the path is judged by its shape
 * first (no `..`, no NUL), then each component is checked with lstat to be a
 * real directory on that mount (no symbolic link followed), and the last is
 * opened with O_NOFOLLOW | O_DIRECTORY and checked again through its own
 * descriptor.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, statfsSync } from 'node:fs';
import { findCgroup2Mount, parseCgroup2Mount } from '../host/cgroup-mount.js';
import { clip } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';

/** statfs f_type of cgroup2 (include/uapi/linux/magic.h CGROUP2_SUPER_MAGIC). */
const CGROUP2_SUPER_MAGIC = 0x63677270;

export interface CgroupRef {
  /** The cgroup as the hierarchy names it: `/` for the root, `/system.slice/x.service`. */
  readonly path: string;
  /** Its id: the directory's inode number (what the kernel records per socket). */
  readonly id: number;
  /** Depth below the root (the root is 0). */
  readonly level: number;
  /** Its directory, under the mount. */
  readonly dir: string;
}

/** Where the cgroup2 hierarchy is mounted, from mountinfo text (this process's own by default); undefined when none is. */
export function cgroup2Mount(mountinfo?: string): string | undefined {
  return mountinfo === undefined ? findCgroup2Mount() : parseCgroup2Mount(mountinfo);
}

const ACCEPTED = 'give a directory of the cgroup2 hierarchy, as a path under its mount or relative to it (/system.slice/x.service).';

/**
 * The components of a cgroup path below the mount, or undefined when its
 * shape is not one (a `..`, a NUL, a component past NAME_MAX). A path that
 * starts with the mount point is taken as under it.
 */
export function cgroupComponents(spec: string, mount: string): string[] | undefined {
  if (spec.length === 0 || spec.includes('\0') || Buffer.byteLength(spec) > 4096) return undefined;
  let rest = spec;
  const base = mount.replace(/\/+$/, '');
  if (rest === base) rest = '/';
  else if (base && rest.startsWith(`${base}/`)) rest = rest.slice(base.length);
  const parts = rest.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..' || Buffer.byteLength(p) > 255)) return undefined;
  return parts;
}

/** The cgroup a spec names, checked as the file comment says; every failure is one sentence. */
export function resolveCgroup(spec: string, mount: string | undefined = cgroup2Mount()): CgroupRef {
  if (mount === undefined) {
    throw new UserError('no cgroup2 file system is mounted here (none in /proc/self/mountinfo): --cgroup needs the cgroup v2 hierarchy.');
  }
  const parts = cgroupComponents(spec, mount);
  if (parts === undefined) throw new UserError(`"${clip(spec)}" is not a cgroup path: ${ACCEPTED}`);
  const base = mount.replace(/\/+$/, '');
  const name = `/${parts.join('/')}`;
  let dev: number;
  try {
    // The mount itself, then each component: a directory on the same file system, never a link.
    const root = lstatSync(base || '/');
    if (!root.isDirectory() || statfsSync(base || '/').type !== CGROUP2_SUPER_MAGIC) {
      throw new UserError(`${clip(base)} is not a cgroup2 mount: --cgroup needs the cgroup v2 hierarchy.`);
    }
    dev = root.dev;
    let at = base;
    for (const part of parts) {
      at = `${at}/${part}`;
      const st = lstatSync(at);
      if (!st.isDirectory() || st.dev !== dev) throw new UserError(`"${clip(spec)}" is not a cgroup under ${clip(base)}: ${ACCEPTED}`);
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw cgroupError(spec, base, err);
  }
  const path = `${base}${name === '/' ? '' : name}` || '/';
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isDirectory() || st.dev !== dev || statfsSync(path).type !== CGROUP2_SUPER_MAGIC) {
      throw new UserError(`"${clip(spec)}" is not a cgroup under ${clip(base)}: ${ACCEPTED}`);
    }
    return { path: name, id: st.ino, level: parts.length, dir: path };
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw cgroupError(spec, base, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function cgroupError(spec: string, base: string, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new UserError(`cgroup "${clip(spec)}" not found under ${clip(base)}: ${ACCEPTED}`);
  if (code === 'ENOTDIR' || code === 'ELOOP') return new UserError(`"${clip(spec)}" is not a cgroup under ${clip(base)}: ${ACCEPTED}`);
  if (code === 'EACCES' || code === 'EPERM') return new UserError(`cannot read cgroup "${clip(spec)}": permission denied (run wstrace as root).`);
  return new UserError(`cannot read cgroup "${clip(spec)}": ${code ?? String(err)}.`);
}

/** Directories one walk of a subtree looks at, at most: a runaway hierarchy costs a bounded time. */
const MAX_WALK = 4096;
/** An id not found is looked for again (a new walk) at most this often. */
const REWALK_MS = 1000;

/**
 * A cgroup and every cgroup below it, as the set of their ids, for matching
 * in user space (a Watch filter) what the kernel filter matches through each
 * socket's ancestors. Walked when made, and again when an id not seen before
 * turns up, at most once a second: a container started later under a pod's
 * cgroup joins on its first event, and a storm of unknown ids costs one
 * bounded walk a second. Directory entries are read by type, so no link is
 * followed.
 */
export class CgroupSubtree {
  private ids = new Set<number>();
  private walkedAt = 0;

  constructor(
    readonly ref: CgroupRef,
    private readonly now: () => number = Date.now,
  ) {
    this.walk();
  }

  has(id: number): boolean {
    if (this.ids.has(id)) return true;
    if (this.now() - this.walkedAt < REWALK_MS) return false;
    this.walk();
    return this.ids.has(id);
  }

  private walk(): void {
    const ids = new Set<number>([this.ref.id]);
    const queue = [this.ref.dir];
    let seen = 0;
    while (queue.length && seen < MAX_WALK) {
      const dir = queue.shift()!;
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // removed while walking
      }
      for (const e of entries) {
        if (!e.isDirectory() || seen >= MAX_WALK) continue;
        const path = `${dir}/${e.name}`;
        try {
          ids.add(lstatSync(path).ino);
          queue.push(path);
          seen++;
        } catch {
          /* removed while walking */
        }
      }
    }
    this.ids = ids;
    this.walkedAt = this.now();
  }
}
