/**
 * The cgroup v2 hierarchy as files: where it is mounted, and which directory
 * has which cgroup id. A cgroup2 directory's inode number is the cgroup's id
 * (the one BPF reads from the socket), so id → path is a walk that stats
 * directories; there is no reverse lookup short of open_by_handle_at.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export { findCgroup2Mount, parseCgroup2Mount } from '../host/cgroup-mount.js';

export interface WalkLimits {
  /** Directories visited at most: a host with more cgroups than this is indexed in part, and says so. */
  readonly maxDirs: number;
  /** Levels below the mount at most. */
  readonly maxDepth: number;
}

export const DEFAULT_WALK_LIMITS: WalkLimits = { maxDirs: 50_000, maxDepth: 16 };

export interface CgroupIndex {
  /** cgroup id → path relative to the mount, with a leading slash ("/" for the root). */
  readonly paths: Map<number, string>;
  /** The walk stopped at a limit: an id missing here may still exist. */
  readonly truncated: boolean;
}

/**
 * Every cgroup directory under the mount, by id. Breadth first, so a limit
 * cuts the deepest levels (containers nest deep, but whole slices are lost
 * first only on hosts past the limit). Directories that vanish mid-walk are
 * skipped: containers come and go while we look.
 */
export async function walkCgroups(mount: string, limits: WalkLimits = DEFAULT_WALK_LIMITS): Promise<CgroupIndex> {
  const paths = new Map<number, string>();
  let truncated = false;
  let level: string[] = ['/'];
  for (let depth = 0; level.length > 0; depth++) {
    const next: string[] = [];
    for (const rel of level) {
      if (paths.size >= limits.maxDirs) {
        truncated = true;
        break;
      }
      const abs = rel === '/' ? mount : join(mount, rel);
      try {
        const st = await stat(abs);
        paths.set(st.ino, rel);
      } catch {
        continue;
      }
      if (depth >= limits.maxDepth) {
        truncated = true;
        continue;
      }
      let entries;
      try {
        entries = await readdir(abs, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) if (e.isDirectory()) next.push(rel === '/' ? `/${e.name}` : `${rel}/${e.name}`);
    }
    if (truncated && paths.size >= limits.maxDirs) break;
    level = next;
  }
  return { paths, truncated };
}

/** The cgroup v2 path of a process ("0::/path" in /proc/PID/cgroup), or undefined when it has none or is gone. */
export function parseProcCgroup(text: string): string | undefined {
  for (const line of text.split('\n')) if (line.startsWith('0::')) return line.slice(3) || '/';
  return undefined;
}
