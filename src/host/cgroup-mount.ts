/**
 * Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a pure v2 host,
 * /sys/fs/cgroup/unified on a v1+v2 hybrid, never a fixed path. One reading
 * of /proc/self/mountinfo for the `--cgroup` resolver (src/kernel) and the
 * container resolver (src/containers).
 */
import { readFileSync } from 'node:fs';

/** mountinfo writes space, tab, newline and backslash as octal escapes. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The cgroup2 mount point from mountinfo text, undefined when none. The mount
 * of the hierarchy's root is preferred; a mount of a subtree (inside a
 * container with a cgroup namespace) still counts when it is the only one.
 */
export function parseCgroup2Mount(mountinfo: string): string | undefined {
  let best: string | undefined;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional…] - fstype source superopts
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    if (line.slice(sep + 3).split(' ')[0] !== 'cgroup2') continue;
    const fields = line.slice(0, sep).split(' ');
    const mountPoint = unescapeMount(fields[4] ?? '');
    if (fields[3] === '/') return mountPoint;
    best ??= mountPoint;
  }
  return best;
}

/** This host's cgroup2 mount, or undefined when there is none (a v1-only host). */
export function findCgroup2Mount(mountinfoPath = '/proc/self/mountinfo'): string | undefined {
  try {
    return parseCgroup2Mount(readFileSync(mountinfoPath, 'utf8'));
  } catch {
    return undefined;
  }
}
