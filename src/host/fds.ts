/**
 * Per-process file descriptors against RLIMIT_NOFILE: every connection a
 * server holds is one fd, so "open vs soft limit" is its connection headroom.
 *
 * Processes are not per network namespace, so this reads /proc directly.
 * A process that is gone (exited between listing and reading, or never
 * existed) gives undefined rather than an error: a poller meets that race
 * every day and it is not a fault.
 */
import { opendir, readFile } from 'node:fs/promises';
import { isMissingFile } from './read.js';

export interface FdLimit {
  /** RLIMIT_NOFILE soft limit; Infinity when "unlimited". */
  readonly soft: number;
  /** RLIMIT_NOFILE hard limit; Infinity when "unlimited". */
  readonly hard: number;
}

export interface ProcessFds extends FdLimit {
  readonly pid: number;
  /** Open file descriptors now. */
  readonly open: number;
}

/** The "Max open files" row of /proc/PID/limits. */
export function parseOpenFilesLimit(text: string, source = 'limits text'): FdLimit {
  const row = text.split('\n').find((line) => line.startsWith('Max open files'));
  if (row === undefined) throw new Error(`${source}: no "Max open files" row`);
  const [soft, hard] = row.slice('Max open files'.length).trim().split(/\s+/);
  return { soft: limitValue(soft, source), hard: limitValue(hard, source) };
}

function limitValue(word: string | undefined, source: string): number {
  if (word === 'unlimited') return Infinity;
  if (word === undefined || !/^\d+$/.test(word)) {
    throw new Error(`${source}: "Max open files" has "${word ?? ''}", not a number or "unlimited"`);
  }
  return Number(word);
}

/**
 * Open fds and limits of one process, or undefined when it no longer exists.
 * `procRoot` lets tests point at a fixture tree. Reading another user's
 * process needs root (or CAP_SYS_PTRACE); that failure is thrown.
 */
export async function readProcessFds(pid: number, procRoot = '/proc'): Promise<ProcessFds | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) throw new TypeError(`pid must be a positive integer, got ${String(pid)}`);
  const base = `${procRoot}/${pid}`;
  try {
    // Counted while iterating, not collected: a big server has a million fds.
    let open = 0;
    for await (const _entry of await opendir(`${base}/fd`)) open++;
    const limit = parseOpenFilesLimit(await readFile(`${base}/limits`, 'utf8'), `${base}/limits`);
    return { pid, open, ...limit };
  } catch (err) {
    if (isMissingFile(err)) return undefined;
    if ((err as { code?: unknown }).code === 'EACCES') {
      throw new Error(`cannot read the open files of process ${pid} (${base}/fd): run wstrace as root.`);
    }
    throw err;
  }
}
