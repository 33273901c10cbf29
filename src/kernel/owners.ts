/**
 * Which process holds a socket, by inode: the same walk `ss -p` does over
 * /proc/PID/fd. Cached, and a miss rescans at most once per `minRescanMs`,
 * so a burst of events for unknown sockets costs one walk, not one each.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface Owner {
  readonly pid: number;
  readonly comm: string;
}

export class SocketOwners {
  private byInode = new Map<number, Owner>();
  private lastScan = -Infinity;

  constructor(
    private readonly procRoot = '/proc',
    private readonly minRescanMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  lookup(inode: number): Owner | undefined {
    const hit = this.byInode.get(inode);
    if (hit) return hit;
    if (this.now() - this.lastScan < this.minRescanMs) return undefined;
    this.rescan();
    return this.byInode.get(inode);
  }

  private rescan(): void {
    this.lastScan = this.now();
    const next = new Map<number, Owner>();
    let pids: string[];
    try {
      pids = readdirSync(this.procRoot).filter((d) => /^\d+$/.test(d));
    } catch {
      return;
    }
    for (const pid of pids) {
      let fds: string[];
      try {
        fds = readdirSync(`${this.procRoot}/${pid}/fd`);
      } catch {
        continue; // exited, or not ours to read
      }
      let comm: string | undefined;
      for (const fd of fds) {
        let target: string;
        try {
          target = readlinkSync(`${this.procRoot}/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (!m) continue;
        const inode = Number(m[1]);
        if (next.has(inode)) continue; // first holder wins, as with ss
        comm ??= readComm(`${this.procRoot}/${pid}/comm`);
        next.set(inode, { pid: Number(pid), comm });
      }
    }
    this.byInode = next;
  }
}

function readComm(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}
